"""Inbound authentication: every HTTP request becomes a `Principal` before any MCP handling.

The endpoint is an OAuth 2.1 resource server (MCP authorization spec 2025-06-18, 2025-11-25 and
2026-07-28, "Authorization"; SECURITY.md section A):

- Credentials travel only as `Authorization: Bearer <value>`; a token in the query string is
  refused (spec: "MUST NOT be included in the URI query string").
- API keys (`auth.api_keys`) are kept as SHA-256 digests and compared in constant time against
  every configured key.
- JWTs (`auth.jwt`) are verified with PyJWT: signature, `exp`, `nbf`, `iss` and `aud` (the hub's
  resource URL, RFC 8707) are all enforced, `alg: none` is never accepted, and the configured
  algorithms are either all asymmetric or all HMAC (config validation), so a public key can
  never be used as an HMAC secret. JWKS documents are fetched asynchronously with httpx2,
  cached, and refetched on an unknown `kid` at most once per `jwks_refresh_min_seconds`.
- A 401 carries `WWW-Authenticate: Bearer resource_metadata="<...>/.well-known/
  oauth-protected-resource<path>"` (RFC 9728 section 5.1) plus `error="invalid_token"` when a
  token was presented; a principal lacking the scope a path needs gets 403
  `error="insufficient_scope"` naming only that scope (RFC 6750 section 3.1).
- Scope hierarchy: `hub:admin` implies `hub:call` and `hub:metrics`; `auth.scope_implies` adds
  more. A principal's scopes are stored expanded.

The HTTP boundary (the scope each path needs, the principal attached to the ASGI scope, 401/403
answers, the RFC 9728 metadata) is `hub.endpoint.auth_middleware`; the JWKS cache is
`hub.endpoint.jwks`.
Each handshake-era session is bound to the principal that opened it by the hub's session
manager (`hub.endpoint.session_manager`: the principal is sealed into the session id; another
principal's request for it gets 404, exactly as for an unknown session).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

import httpx2
from starlette.datastructures import Headers

from adapters.tls import client_tls_context
from hub.config import HUB_SCOPES, AuthConfig, HubConfig, JwtConfig
from hub.endpoint.jwks import JwksCache, invalid_token
from hub.errors import AuthError
from hub.principals import Principal

__all__ = ["ANONYMOUS", "LOCAL", "NOBODY", "Authenticator", "ScopeHierarchy"]

logger = logging.getLogger(__name__)

MAX_TOKEN_CHARS: Final = 8192
"""Longer bearer values are refused without being parsed."""
_BUILTIN_IMPLIES: Final[Mapping[str, tuple[str, ...]]] = {"hub:admin": ("hub:call", "hub:metrics")}


ANONYMOUS: Final = Principal("anonymous", frozenset(HUB_SCOPES), "none")
"""The caller of a hub configured with `auth: none` (loopback only): may do everything."""
LOCAL: Final = Principal("local", frozenset(HUB_SCOPES), "local")
"""The client of `mcphub serve --stdio` (the local user who started the hub)."""
NOBODY: Final = Principal("nobody", frozenset(), "none")
"""What an HTTP request that somehow bypassed authentication counts as: may do nothing."""


class ScopeHierarchy:
    """Scope implications (`hub:admin` -> `hub:call`, `hub:metrics`, plus `auth.scope_implies`),
    applied transitively."""

    def __init__(self, extra: Mapping[str, Iterable[str]] | None = None) -> None:
        implies: dict[str, set[str]] = {scope: set(implied) for scope, implied in _BUILTIN_IMPLIES.items()}
        for scope, implied in (extra or {}).items():
            implies.setdefault(scope, set()).update(implied)
        self._implies = implies

    def expand(self, scopes: Iterable[str]) -> frozenset[str]:
        """`scopes` and everything they imply."""
        result: set[str] = set()
        pending = list(scopes)
        while pending:
            scope = pending.pop()
            if scope not in result:
                result.add(scope)
                pending.extend(self._implies.get(scope, ()))
        return frozenset(result)


class Authenticator:
    """Turns a request's credentials into a `Principal`.

    :param config: the hub config (`auth`, `public_url`).
    :param http: client for JWKS fetches (default: a new one on the process's TLS context
        (`adapters.tls`), built only when the config names a `jwks_url`, closed by `aclose`).
    """

    def __init__(self, config: HubConfig, http: httpx2.AsyncClient | None = None) -> None:
        self._auth: AuthConfig | None = config.auth if isinstance(config.auth, AuthConfig) else None
        self.hierarchy = ScopeHierarchy(self._auth.scope_implies if self._auth else None)
        self._audiences = config.audiences
        self._jwt: JwtConfig | None = self._auth.jwt if self._auth else None
        self._owned_http: httpx2.AsyncClient | None = None
        """The JWKS client this authenticator built, and closes."""
        self._key_principals: dict[str, tuple[object, Principal]] = {}
        """Per API key id: the key entry and its principal (scopes expanded once, not per request)."""
        self._static_key: Any = None
        self.jwks: JwksCache | None = None
        if self._jwt is not None:
            if self._jwt.jwks_url:
                if http is None:
                    http = self._owned_http = httpx2.AsyncClient(verify=client_tls_context(), follow_redirects=False)
                self.jwks = JwksCache(
                    self._jwt.jwks_url,
                    http,
                    cache_seconds=self._jwt.jwks_cache_seconds,
                    refresh_min_seconds=self._jwt.jwks_refresh_min_seconds,
                )
            elif self._jwt.public_key_file:
                self._static_key = Path(self._jwt.public_key_file).read_bytes()
            else:
                self._static_key = self._jwt.hmac_secret

    @property
    def enabled(self) -> bool:
        """False for `auth: none`: every HTTP caller is `ANONYMOUS`."""
        return self._auth is not None

    async def aclose(self) -> None:
        if self._owned_http is not None:
            await self._owned_http.aclose()

    async def authenticate(self, headers: Headers, query_string: bytes = b"") -> Principal:
        """The principal of a request with these headers.

        :raises AuthError: 401 without credentials or with invalid ones; 503 when the issuer's
            keys cannot be fetched.
        """
        if self._auth is None:
            return ANONYMOUS
        if query_string and "access_token" in parse_qs(query_string.decode("latin-1")):
            raise invalid_token("tokens are not accepted in the query string; send Authorization: Bearer")
        header = headers.get("authorization")
        if header is None:
            raise AuthError(401, None, "authentication required")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise invalid_token("send the token as Authorization: Bearer <token>")
        if len(token) > MAX_TOKEN_CHARS:
            raise invalid_token("token too long")
        if self._jwt is not None and token.count(".") == 2:
            return await self._from_jwt(token, self._jwt)
        return self._from_api_key(token, self._auth)

    def _from_api_key(self, token: str, auth: AuthConfig) -> Principal:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for key in auth.api_keys:  # every key is compared, so timing tells nothing
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            raise invalid_token("unknown API key" if auth.api_keys else "invalid token")
        cached = self._key_principals.get(found.id)
        if cached is None or cached[0] is not found:
            cached = self._key_principals[found.id] = (
                found,
                Principal(found.id, self.hierarchy.expand(found.scopes), "api_key"),
            )
        return cached[1]

    async def _from_jwt(self, token: str, config: JwtConfig) -> Principal:
        import jwt  # PyJWT loads at the first JWT: a hub without `auth.jwt` never imports it

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise invalid_token("malformed token") from None
        if header.get("alg") not in config.algorithms:
            raise invalid_token("token algorithm not accepted")
        key: Any = self._static_key
        if self.jwks is not None:
            kid = header.get("kid")
            key = await self.jwks.key(kid if isinstance(kid, str) else None)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=config.algorithms,
                audience=self._audiences,
                issuer=config.issuer,
                leeway=config.leeway_seconds,
                options={"require": ["exp", "iss", "aud", config.principal_claim]},
            )
        except jwt.ExpiredSignatureError:
            raise invalid_token("token expired") from None
        except jwt.ImmatureSignatureError:
            raise invalid_token("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise invalid_token("token not issued for this resource (audience)") from None
        except jwt.InvalidIssuerError:
            raise invalid_token("token from an unexpected issuer") from None
        except jwt.InvalidSignatureError:
            raise invalid_token("bad token signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise invalid_token(f"token lacks the {exc.claim} claim") from None
        except jwt.PyJWTError:
            raise invalid_token("invalid token") from None
        subject = claims.get(config.principal_claim)
        if not isinstance(subject, str) or not subject:
            raise invalid_token(f"token's {config.principal_claim} claim is not a string")
        raw = claims.get(config.scope_claim, "")
        if isinstance(raw, str):
            scopes = raw.split()
        elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            scopes = raw
        else:
            raise invalid_token(f"token's {config.scope_claim} claim is neither a string nor a list of strings")
        return Principal(subject, self.hierarchy.expand(scopes), "jwt")
