"""The token issuer's signing keys (a JWKS document, RFC 7517), fetched and cached for JWT
verification (`hub.endpoint.authentication.Authenticator`, `auth.jwt.jwks_url`).

Fetched asynchronously with httpx2 (bounded in time and size), cached for `jwks_cache_seconds`,
and refetched on an unknown `kid` at most once per `jwks_refresh_min_seconds`; a failed fetch
keeps the keys already known.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import TYPE_CHECKING, Final

import anyio
import httpx2

from hub.errors import AuthError

if TYPE_CHECKING:
    import jwt

__all__ = ["JWKS_FETCH_TIMEOUT_SECONDS", "MAX_JWKS_BYTES", "JwksCache", "invalid_token"]

logger = logging.getLogger("hub.endpoint.authentication")

JWKS_FETCH_TIMEOUT_SECONDS: Final = 5.0
MAX_JWKS_BYTES: Final = 1024 * 1024


def invalid_token(description: str) -> AuthError:
    """The 401 `invalid_token` refusal (RFC 6750 section 3.1) with `description`."""
    return AuthError(401, "invalid_token", description)


class JwksCache:
    """The issuer's signing keys from its JWKS URL (RFC 7517), fetched with httpx2.

    Keys are reused for `cache_seconds`; a token whose `kid` is unknown triggers a refetch only
    when the last fetch is at least `refresh_min_seconds` old. A failed fetch keeps the keys
    already known.

    :raises AuthError: (`key`) 401 for an unknown `kid`; 503 when no keys could ever be fetched.
    """

    def __init__(self, url: str, http: httpx2.AsyncClient, *, cache_seconds: float, refresh_min_seconds: float) -> None:
        self._url = url
        self._http = http
        self._cache_seconds = cache_seconds
        self._refresh_min_seconds = refresh_min_seconds
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._lock = anyio.Lock()
        self.fetches = 0
        """How many fetches were attempted (for tests and metrics)."""

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key that signed a token with header `kid`."""
        if time.monotonic() - self._fetched_at >= self._cache_seconds:
            await self._refresh(min_age=self._cache_seconds)
        found = self._lookup(kid)
        if found is None and time.monotonic() - self._fetched_at >= self._refresh_min_seconds:
            await self._refresh(min_age=self._refresh_min_seconds)
            found = self._lookup(kid)
        if found is not None:
            return found
        if not self._keys:
            raise AuthError(503, None, "the token issuer's signing keys are unavailable; try again later")
        raise invalid_token("token signed with an unknown key")

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self, *, min_age: float) -> None:
        import jwt  # PyJWT loads with the first JWKS: a hub without `auth.jwt` never imports it

        async with self._lock:
            if self.fetches and time.monotonic() - self._fetched_at < min_age:
                return  # another request refreshed while this one waited
            self._fetched_at = time.monotonic()
            self.fetches += 1
            try:
                with anyio.fail_after(JWKS_FETCH_TIMEOUT_SECONDS):
                    response = await self._http.get(self._url, headers={"Accept": "application/json"})
                response.raise_for_status()
                if len(response.content) > MAX_JWKS_BYTES:
                    raise ValueError(f"JWKS document larger than {MAX_JWKS_BYTES} bytes")
                keyset = jwt.PyJWKSet.from_dict(json.loads(response.content))
            except Exception as exc:  # any failure: keep the keys we have, say why in the log
                logger.warning("could not fetch JWKS from %s: %s", self._url, _describe(exc))
                return
            self._keys = {key.key_id: key for key in keyset.keys}
            logger.info("fetched %d signing keys from %s", len(self._keys), self._url)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {JWKS_FETCH_TIMEOUT_SECONDS:g} s"
    return type(exc).__name__
