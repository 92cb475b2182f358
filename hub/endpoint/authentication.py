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

The principal is attached to the ASGI scope three ways: `scope["state"]["principal"]` (the
hub's `Principal`, read back with `principal_of`), and `scope["user"]` / `scope["auth"]` as the
SDK's `AuthenticatedUser` and Starlette's `AuthCredentials` (for SDK handlers that read them).
Each handshake-era session is bound to the principal that opened it by the hub's session
manager (`hub.endpoint.session_manager`: the principal is sealed into the session id; another
principal's request for it gets 404, exactly as for an unknown session).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

import anyio
import httpx2
from cachetools import LRUCache
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.config import HUB_SCOPES, AuthConfig, HubConfig, JwtConfig
from hub.endpoint.rate_limits import RateLimiter
from hub.errors import AuthError
from hub.principals import Principal

if TYPE_CHECKING:
    import jwt

__all__ = [
    "ANONYMOUS",
    "LOCAL",
    "NOBODY",
    "PRM_PATH",
    "AuthMiddleware",
    "Authenticator",
    "JwksCache",
    "ScopeHierarchy",
    "principal_of",
    "protected_resource_metadata",
    "required_scope",
]

logger = logging.getLogger(__name__)
audit_logger = logging.getLogger("hub.audit")

MAX_TOKEN_CHARS: Final = 8192
"""Longer bearer values are refused without being parsed."""
JWKS_FETCH_TIMEOUT_SECONDS: Final = 5.0
MAX_JWKS_BYTES: Final = 1024 * 1024
PRM_PATH: Final = "/.well-known/oauth-protected-resource"
_BOUND_PRINCIPALS: Final = 1024
"""Principals whose SDK view (`AuthMiddleware._bind`) is kept (least recently used dropped)."""
_BUILTIN_IMPLIES: Final[Mapping[str, tuple[str, ...]]] = {"hub:admin": ("hub:call", "hub:metrics")}


ANONYMOUS: Final = Principal("anonymous", frozenset(HUB_SCOPES), "none")
"""The caller of a hub configured with `auth: none` (loopback only): may do everything."""
LOCAL: Final = Principal("local", frozenset(HUB_SCOPES), "local")
"""The client of `mcphub serve --stdio` (the local user who started the hub)."""
NOBODY: Final = Principal("nobody", frozenset(), "none")
"""What an HTTP request that somehow bypassed authentication counts as: may do nothing."""


def _invalid(description: str) -> AuthError:
    return AuthError(401, "invalid_token", description)


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
        raise _invalid("token signed with an unknown key")

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


class Authenticator:
    """Turns a request's credentials into a `Principal`.

    :param config: the hub config (`auth`, `public_url`).
    :param http: client for JWKS fetches (default: a new one, closed by `aclose`).
    """

    def __init__(self, config: HubConfig, http: httpx2.AsyncClient | None = None) -> None:
        self._auth: AuthConfig | None = config.auth if isinstance(config.auth, AuthConfig) else None
        self.hierarchy = ScopeHierarchy(self._auth.scope_implies if self._auth else None)
        self._audiences = config.audiences
        self._owns_http = http is None
        self._http = http if http is not None else httpx2.AsyncClient(follow_redirects=False)
        self._jwt: JwtConfig | None = self._auth.jwt if self._auth else None
        self._key_principals: dict[str, tuple[object, Principal]] = {}
        """Per API key id: the key entry and its principal (scopes expanded once, not per request)."""
        self._static_key: Any = None
        self.jwks: JwksCache | None = None
        if self._jwt is not None:
            if self._jwt.jwks_url:
                self.jwks = JwksCache(
                    self._jwt.jwks_url,
                    self._http,
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
        if self._owns_http:
            await self._http.aclose()

    async def authenticate(self, headers: Headers, query_string: bytes = b"") -> Principal:
        """The principal of a request with these headers.

        :raises AuthError: 401 without credentials or with invalid ones; 503 when the issuer's
            keys cannot be fetched.
        """
        if self._auth is None:
            return ANONYMOUS
        if query_string and "access_token" in parse_qs(query_string.decode("latin-1")):
            raise _invalid("tokens are not accepted in the query string; send Authorization: Bearer")
        header = headers.get("authorization")
        if header is None:
            raise AuthError(401, None, "authentication required")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _invalid("send the token as Authorization: Bearer <token>")
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid("token too long")
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
            raise _invalid("unknown API key" if auth.api_keys else "invalid token")
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
            raise _invalid("malformed token") from None
        if header.get("alg") not in config.algorithms:
            raise _invalid("token algorithm not accepted")
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
            raise _invalid("token expired") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise _invalid("token not issued for this resource (audience)") from None
        except jwt.InvalidIssuerError:
            raise _invalid("token from an unexpected issuer") from None
        except jwt.InvalidSignatureError:
            raise _invalid("bad token signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid(f"token lacks the {exc.claim} claim") from None
        except jwt.PyJWTError:
            raise _invalid("invalid token") from None
        subject = claims.get(config.principal_claim)
        if not isinstance(subject, str) or not subject:
            raise _invalid(f"token's {config.principal_claim} claim is not a string")
        raw = claims.get(config.scope_claim, "")
        if isinstance(raw, str):
            scopes = raw.split()
        elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            scopes = raw
        else:
            raise _invalid(f"token's {config.scope_claim} claim is neither a string nor a list of strings")
        return Principal(subject, self.hierarchy.expand(scopes), "jwt")


def required_scope(path: str) -> str | None:
    """The scope a path needs: None for public paths (`/healthz`, `/readyz`, the RFC 9728
    metadata), `""` for any authenticated principal (`/me`, unknown paths), else a hub scope
    (`hub:call` for the MCP paths `/mcp`, `/servers/<id>/mcp`, `/profiles/<name>/mcp`, and for
    `/me/search`, the search the model gets)."""
    if path in ("/healthz", "/readyz") or path.startswith("/.well-known/"):
        return None
    if path in ("/mcp", "/me/search") or path.startswith(("/servers/", "/profiles/")):
        return "hub:call"
    if path == "/admin" or path.startswith("/admin/"):
        return "hub:admin"
    if path == "/metrics":
        return "hub:metrics"
    return ""


def _resource_path(path: str) -> str:
    """The MCP resource a request path belongs to (`/mcp`, `/servers/<id>/mcp` or
    `/profiles/<name>/mcp`)."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[1] in ("servers", "profiles"):
        return f"/{parts[1]}/{parts[2]}/mcp"
    return "/mcp"


def _base_url(config: HubConfig, scope: Scope) -> str:
    if config.public_url:
        return config.public_url
    request = Request(scope)
    return f"{request.url.scheme}://{request.url.netloc}"


def protected_resource_metadata(config: HubConfig, base_url: str, resource_path: str = "/mcp") -> dict[str, Any]:
    """The RFC 9728 protected resource metadata document of `resource_path`: `resource`,
    `authorization_servers` (`auth.authorization_servers`, default the JWT issuer),
    `scopes_supported` (the hub's scopes and those the policies name), `bearer_methods_supported`."""
    auth = config.auth if isinstance(config.auth, AuthConfig) else None
    servers = list(auth.authorization_servers) if auth else []
    if not servers and auth and auth.jwt:
        servers = [auth.jwt.issuer]
    scopes = set(HUB_SCOPES) | {rule.scope for rule in config.policies or () if rule.scope}
    return {
        "resource": f"{base_url}{resource_path}",
        "authorization_servers": servers,
        "scopes_supported": sorted(scopes),
        "bearer_methods_supported": ["header"],
        "resource_name": "MCP federation hub",
    }


def principal_of(request: Request | None) -> Principal:
    """The principal of a request handled by the endpoint: `LOCAL` for stdio (no HTTP request),
    the authenticated one for HTTP, `NOBODY` if an HTTP request somehow carries none."""
    if request is None:
        return LOCAL
    principal = request.scope.get("state", {}).get("principal")
    return principal if isinstance(principal, Principal) else NOBODY


class AuthMiddleware:
    """ASGI middleware: authenticates every HTTP request, enforces the scope its path needs
    (`required_scope`), applies the per-principal request rate limit (429 + `Retry-After`), and
    attaches the principal to the scope.

    :param app: the endpoint's Starlette app.
    :param config: the hub config.
    :param authenticator: turns credentials into principals.
    :param limiter: the rate limits.
    """

    def __init__(self, app: ASGIApp, config: HubConfig, authenticator: Authenticator, limiter: RateLimiter) -> None:
        self._app = app
        self._config = config
        self._authenticator = authenticator
        self._limiter = limiter
        self._bound: LRUCache[Principal, tuple[AuthCredentials, AuthenticatedUser]] = LRUCache(_BOUND_PRINCIPALS)
        """What each recent principal puts in a request's scope for the SDK, built once."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope["path"]
        needed = required_scope(path)
        headers = Headers(scope=scope)
        try:
            principal = await self._authenticator.authenticate(headers, scope.get("query_string", b""))
        except AuthError as exc:
            if needed is None:  # public path: served without a principal
                principal = NOBODY
            else:
                self._audit(exc, path, scope)
                await self._refuse(exc, needed, scope, receive, send)
                return
        if needed and needed not in principal.scopes:
            forbidden = AuthError(403, "insufficient_scope", f"this needs the {needed} scope", needed)
            self._audit(forbidden, path, scope, principal)
            await self._refuse(forbidden, needed, scope, receive, send)
            return
        if needed == "hub:call" and self._limiter.limits_requests:
            wait = await self._limiter.check_request(principal.id)
            if wait > 0:
                audit_logger.warning("rate limited: principal=%s path=%s", principal.id, path)
                await _send_json(
                    send,
                    429,
                    {"error": "rate_limited", "error_description": "too many requests", "retry_after_seconds": wait},
                    [(b"retry-after", str(max(1, math.ceil(wait))).encode())],
                )
                return
        scope.setdefault("state", {})["principal"] = principal
        if self._authenticator.enabled and principal is not NOBODY:  # `auth: none`: one principal, nothing to bind
            scope["auth"], scope["user"] = self._bind(principal)
        await self._app(scope, receive, send)

    def _bind(self, principal: Principal) -> tuple[AuthCredentials, AuthenticatedUser]:
        """The SDK's view of `principal` (`scope["auth"]`, `scope["user"]`), made once per
        principal and shared by its requests (nothing downstream changes them)."""
        bound = self._bound.get(principal)
        if bound is None:
            scopes = sorted(principal.scopes)
            user = AuthenticatedUser(
                AccessToken(
                    token="",  # the SDK only compares principals; the credential itself stays out of the scope
                    client_id=principal.id,
                    scopes=scopes,
                    subject=principal.id,
                    claims={"iss": principal.source},
                )
            )
            bound = self._bound[principal] = (AuthCredentials(scopes), user)
        return bound

    def _audit(self, exc: AuthError, path: str, scope: Scope, principal: Principal | None = None) -> None:
        client = scope.get("client")
        audit_logger.warning(
            "refused: status=%d error=%s principal=%s path=%s client=%s reason=%s",
            exc.status,
            exc.error or "-",
            principal.id if principal else "-",
            path,
            client[0] if client else "-",
            exc.description,
        )

    async def _refuse(self, exc: AuthError, needed: str, scope: Scope, receive: Receive, send: Send) -> None:
        metadata_url = f"{_base_url(self._config, scope)}{PRM_PATH}{_resource_path(scope['path'])}"
        parts = [f'resource_metadata="{metadata_url}"']
        if exc.error is not None:
            parts.insert(0, f'error="{exc.error}"')
            parts.append(f'error_description="{exc.description}"')
        scope_hint = exc.scope or needed
        if scope_hint:
            parts.append(f'scope="{scope_hint}"')
        extra = [(b"www-authenticate", ("Bearer " + ", ".join(parts)).encode())] if exc.status in (401, 403) else []
        body = {"error": exc.error or "unauthorized", "error_description": exc.description}
        await _send_json(send, exc.status, body, extra)


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
