"""The HTTP boundary of authentication: every request gets its `Principal` (or its 401/403)
before any MCP handling, and the RFC 9728 protected resource metadata.

`AuthMiddleware` authenticates with `hub.endpoint.authentication.Authenticator`, checks the
scope the path needs (`required_scope`), applies the per-principal rate limit, and attaches the
principal to the ASGI scope: `scope["state"]["principal"]` (read back with `principal_of`), and
`scope["user"]` / `scope["auth"]` as the SDK's `AuthenticatedUser` and Starlette's
`AuthCredentials`. A 401 carries `WWW-Authenticate: Bearer resource_metadata="<...>/.well-known/
oauth-protected-resource<path>"` (RFC 9728 section 5.1); a principal lacking the scope gets 403
`error="insufficient_scope"` naming only that scope (RFC 6750 section 3.1).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Final

from cachetools import LRUCache
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.config import HUB_SCOPES, AuthConfig, HubConfig
from hub.endpoint.authentication import LOCAL, NOBODY, Authenticator
from hub.endpoint.rate_limits import RateLimiter
from hub.errors import AuthError
from hub.principals import Principal

__all__ = ["PRM_PATH", "AuthMiddleware", "principal_of", "protected_resource_metadata", "required_scope"]

audit_logger = logging.getLogger("hub.audit")

PRM_PATH: Final = "/.well-known/oauth-protected-resource"
_BOUND_PRINCIPALS: Final = 1024
"""Principals whose SDK view (`AuthMiddleware._bind`) is kept (least recently used dropped)."""


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
