"""OAuth 2.0 client credentials (RFC 6749 section 4.4) for the hub's own connections to servers.

`ClientCredentialsAuth` is an `httpx2.Auth`: attached to a server's HTTP client, it puts
`Authorization: Bearer <access token>` on every request, fetching the token from a configured
token endpoint, caching it, replacing it shortly before it expires, and fetching a new one once
when the server answers HTTP 401 (RFC 6750 section 3.1 `invalid_token`) before giving up.

Why not the SDK's `ClientCredentialsOAuthProvider` (mcp.client.auth.extensions): it is built for
discovery, not for a configured token endpoint. Its first request goes out without a token, and
every 401 runs RFC 9728 protected-resource discovery against the server and RFC 8414 metadata
discovery against the authorization server; the token endpoint comes only from that metadata
(else `<server origin>/token`), so a plain `token_url` in front of a server that publishes no
metadata (the usual enterprise gateway) cannot be expressed. Client-credentials tokens carry no
refresh token, so it never replaces a token before expiry: the expired token is sent, answered
401, and only then is discovery run again. It holds one lock across every request it
authenticates until the response headers arrive (a server's concurrent calls would queue behind
each other), and it puts the token endpoint's response body into its error message. Authlib's
`AsyncOAuth2Client` is built on plain httpx, and its httpx-free parts would add a dependency for a
form post and a JSON parse. So this is a small `httpx2.Auth` that reuses the SDK's pieces: the
`OAuthToken` model (RFC 6749 section 5.1) for the token response, `OAuthTokenError` for failures,
and `resource_url_from_server_url` for the RFC 8707 `resource` value.

Secrets never leave this module except on the wire, and the client secret only ever goes to the
configured token endpoint (no discovery can redirect it, and redirects are not followed): error
messages name the token endpoint (no query, no userinfo), the HTTP status and the RFC 6749
section 5.2 `error` code, never the client secret, a token, or the endpoint's
`error_description`.
"""

from __future__ import annotations

import base64
import logging
import math
import re
import time
from collections.abc import AsyncGenerator
from typing import Final, Literal
from urllib.parse import quote

import anyio
import httpx2
from mcp.client.auth.exceptions import OAuthTokenError
from mcp.shared.auth import OAuthToken
from pydantic import ValidationError

__all__ = ["REFRESH_LEEWAY_SECONDS", "ClientCredentialsAuth", "OAuthTokenError"]

logger = logging.getLogger(__name__)

REFRESH_LEEWAY_SECONDS: Final = 30.0
"""A token is replaced this many seconds before it expires, or after 90% of its lifetime when
that comes sooner (a 60 s token is replaced after 54 s)."""

_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}")
"""RFC 6749 section 5.2: the `error` value's character set (bounded for a log line)."""


class ClientCredentialsAuth(httpx2.Auth):
    """`Authorization: Bearer` from the client credentials grant, cached and refreshed.

    The token is fetched on the first request, reused until `REFRESH_LEEWAY_SECONDS` before its
    `expires_in` (or 90% of it, whichever comes first; forever when the answer gives none), and
    replaced once when the server answers a request with HTTP 401; the request is then retried
    once. One object serves one server and may outlive many connections to it.

    :param token_url: the authorization server's token endpoint (https; the caller validates it).
    :param client_id: the OAuth client id the hub was registered with.
    :param client_secret: its secret; sent only to `token_url`.
    :param http: the client that sends token requests (its timeout applies; it is not closed here).
    :param scope: space-separated scopes to request (RFC 6749 section 3.3). Default: none.
    :param audience: sent as `audience` (the Auth0/Okta convention for the API's identifier).
        Default: not sent.
    :param resource: sent as `resource` (RFC 8707 section 2; the MCP authorization spec says
        clients MUST send it: the server's canonical URL). Default: not sent.
    :param token_endpoint_auth_method: `client_secret_basic` (HTTP Basic, RFC 6749 section 2.3.1,
        the default) or `client_secret_post` (form fields).
    :param timeout_seconds: bound on one token request, in seconds. Default: 30.
    :param name: names the server in log lines.

    Errors surface from the request being authenticated: `OAuthTokenError` when the token
    endpoint cannot be reached, refuses the credentials or answers without a valid token.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        http: httpx2.AsyncClient,
        scope: str | None = None,
        audience: str | None = None,
        resource: str | None = None,
        token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic",
        timeout_seconds: float = 30.0,
        name: str = "",
    ) -> None:
        self._token_url = httpx2.URL(token_url)
        self._client_id = client_id
        self._client_secret = client_secret
        self._http = http
        self._form = {"grant_type": "client_credentials"}
        for key, value in (("scope", scope), ("audience", audience), ("resource", resource)):
            if value:
                self._form[key] = value
        self._method = token_endpoint_auth_method
        self._timeout_seconds = timeout_seconds
        self._name = name
        self._lock = anyio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    @property
    def token(self) -> str | None:
        """The cached access token, if any (to mask it in text that came from the server)."""
        return self._token

    def _endpoint(self) -> str:
        return str(self._token_url.copy_with(query=None, userinfo=b"", fragment=None))

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """Send `request` with the cached token (fetched or renewed first when due); on HTTP 401,
        send it once more with a new token. :raises OAuthTokenError: no token could be obtained."""
        token = await self._valid_token(stale=None)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        # The server refused this token (revoked, rotated keys, clock skew): one new token, one retry.
        await response.aread()
        token = await self._valid_token(stale=token)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            logger.warning(
                "server %s answered HTTP 401 to a fresh token from %s; giving up on this request",
                self._name,
                self._endpoint(),
            )

    async def _valid_token(self, *, stale: str | None) -> str:
        """The cached token unless it is due for renewal or equals `stale`; otherwise a new one.
        One token request at a time: concurrent callers wait for it and share its result."""
        async with self._lock:
            if self._token is not None and self._token != stale and time.monotonic() < self._refresh_at:
                return self._token
            self._token = None
            token = await self._fetch()
            self._token = token.access_token
            lifetime = math.inf if token.expires_in is None else float(token.expires_in)
            self._refresh_at = time.monotonic() + lifetime - min(REFRESH_LEEWAY_SECONDS, lifetime / 10)
            logger.info(
                "server %s: OAuth token from %s, expires in %s",
                self._name,
                self._endpoint(),
                "(no expiry given)" if token.expires_in is None else f"{token.expires_in} s",
            )
            return self._token

    async def _fetch(self) -> OAuthToken:
        """POST the client credentials grant (RFC 6749 section 4.4.2) and parse the answer.

        :raises OAuthTokenError: unreachable endpoint, error status, or no valid token in the answer.
        """
        form = dict(self._form)
        headers = {"Accept": "application/json"}
        if self._method == "client_secret_basic":
            # RFC 6749 section 2.3.1: both parts form-urlencoded before the Basic encoding.
            pair = f"{quote(self._client_id, safe='')}:{quote(self._client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form |= {"client_id": self._client_id, "client_secret": self._client_secret}
        endpoint = self._endpoint()
        try:
            response = await self._http.post(self._token_url, data=form, headers=headers, timeout=self._timeout_seconds)
        except httpx2.TimeoutException:
            raise OAuthTokenError(f"the OAuth token endpoint {endpoint} did not answer in time") from None
        except httpx2.HTTPError as exc:
            raise OAuthTokenError(f"cannot reach the OAuth token endpoint {endpoint}: {type(exc).__name__}") from None
        if response.status_code != 200:
            code = _error_code(response)
            verdict = "refused the client credentials" if response.status_code in (400, 401, 403) else "failed"
            raise OAuthTokenError(f"the OAuth token endpoint {endpoint} {verdict}: HTTP {response.status_code}{code}")
        try:
            return OAuthToken.model_validate_json(response.content)
        except ValidationError:
            raise OAuthTokenError(
                f"the OAuth token endpoint {endpoint} answered without a valid bearer token (RFC 6749 section 5.1)"
            ) from None


def _error_code(response: httpx2.Response) -> str:
    """` (<error>)` from an RFC 6749 section 5.2 error answer, or empty; never the description."""
    try:
        body = response.json()
    except ValueError:
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    return f" ({code})" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""
