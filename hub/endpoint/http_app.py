"""The Starlette app of the endpoint: its routes and the middleware every request passes.

Every HTTP request passes, in order: the drain's gate (`hub.endpoint.drain`: 503 once the hub
stops accepting), Host/Origin validation (`hub.endpoint.http_guards`: 421/403), authentication
with the path's scope (`hub.endpoint.authentication`: 401/403/429), and the request gate
(`hub.endpoint.http_guards`: 415 for a non-JSON POST to an MCP path, 413 past `max_body_bytes`,
-32600 for a JSON-RPC batch) before any MCP handling; the HTTP server's own limits
(`hub.endpoint.http_server`: 431, 408) come before all of these.

Routes: the faces' MCP paths (`/mcp`, `/servers/<server_id>/mcp`, `/profiles/<name>/mcp`, each
served by its face's session manager, `hub.endpoint.session_manager`), `/healthz`, `/metrics`
(Prometheus text), RFC 9728 protected resource metadata, the JSON APIs of
`hub.endpoint.admin_api` and the pins admin API (`hub.endpoint.pins_admin`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.authority import parse_allowed_host
from hub.config import HubConfig
from hub.endpoint.auth_middleware import PRM_PATH, AuthMiddleware, protected_resource_metadata
from hub.endpoint.drain import DrainGate
from hub.endpoint.endpoint import Endpoint
from hub.endpoint.http_guards import HostOriginGuard, RequestGate
from hub.endpoint.pins_admin import trust_routes
from hub.endpoint.profiles import PROFILE_PREFIX
from hub.endpoint.session_manager import SessionManager
from hub.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

__all__ = ["allowed_hosts", "build_http_app"]

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(config: HubConfig) -> list[str]:
    """Host header values the endpoint accepts (DNS-rebinding protection, MCP transport spec):
    the loopback names on any port, the listen host, `public_url`'s host, and `allowed_hosts`."""
    hosts = [f"{name}:*" for name in _LOOPBACK_NAMES] + list(_LOOPBACK_NAMES)
    listen_host = config.listen.host
    if listen_host not in ("0.0.0.0", "::", "") and listen_host not in _LOOPBACK_NAMES:
        bracketed = f"[{listen_host}]" if ":" in listen_host else listen_host
        hosts += [bracketed, f"{bracketed}:*"]
    if config.public_url:
        netloc = config.public_url.split("://", 1)[1]
        hosts.append(netloc)
        if ":" not in netloc.rsplit("]", 1)[-1]:
            hosts.append(f"{netloc}:*")
    hosts += config.allowed_hosts
    # A listen host that is no Host value (an IPv6 address with a zone id) is left out, not fatal.
    return [host for host in dict.fromkeys(hosts) if parse_allowed_host(host) is not None]


class _TrimHeaderWhitespace:
    """Strip optional whitespace around header values (RFC 9110 section 5.5: "a field value does
    not include leading or trailing whitespace"). uvicorn's httptools parser keeps trailing
    whitespace, and the SDK compares `Mcp-Name`/`Mcp-Method` with the body byte for byte."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            if any(value[:1] in _OWS or value[-1:] in _OWS for _, value in headers):
                scope = {**scope, "headers": [(name, value.strip(b" \t")) for name, value in headers]}
        await self._app(scope, receive, send)


_OWS = (b" ", b"\t")


class _FacePaths:
    """The faces' MCP paths, served straight by their session managers: a request for `/mcp`,
    `/servers/<server_id>/mcp` or `/profiles/<name>/mcp` with GET, POST or DELETE skips
    Starlette's router and its two exception middlewares (a few percent of the hub's CPU per
    call: four layers of ASGI callables and a route match).
    Anything else, and any path spelled otherwise (a trailing slash, an empty segment), is the
    Starlette app's, with the same routes for these paths (405 for another method, 404 for an
    unknown server or profile, 500 for an error)."""

    def __init__(
        self, app: ASGIApp, aggregate: SessionManager, servers: _PerServerApp, profiles: _PerServerApp
    ) -> None:
        self._app = app
        self._aggregate = aggregate
        self._by_prefix = {"servers": servers, PROFILE_PREFIX.strip("/"): profiles}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _MCP_METHODS:
            path: str = scope["path"]
            if path == "/mcp":
                await self._aggregate(scope, receive, send)
                return
            if path.endswith("/mcp"):
                parts = path.split("/")
                if len(parts) == 4 and not parts[0] and parts[2]:
                    faces = self._by_prefix.get(parts[1])
                    if faces is not None:
                        await faces.serve(parts[2], scope, receive, send)
                        return
        await self._app(scope, receive, send)


_MCP_METHODS = frozenset(("GET", "POST", "DELETE"))


class _PerServerApp:
    """ASGI app for `/servers/{server_id}/mcp` (or `/profiles/{profile}/mcp`): the face's own
    session manager, or 404."""

    def __init__(self, apps: Mapping[str, SessionManager], param: str = "server_id", noun: str = "server") -> None:
        self._apps = apps
        self._param = param
        self._noun = noun

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.serve(scope["path_params"][self._param], scope, receive, send)

    async def serve(self, key: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request for the face named `key`, or answer 404."""
        app = self._apps.get(key)
        if app is None:
            response = JSONResponse({"error": f"unknown {self._noun} {key!r}"}, status_code=404)
            await response(scope, receive, send)
            return
        await app(scope, receive, send)


def build_http_app(
    endpoint: Endpoint, lifespan: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None
) -> ASGIApp:
    """The Starlette app of `endpoint`: `/mcp`, `/servers/<id>/mcp`, `/profiles/<name>/mcp`,
    `/healthz`, `/readyz`, `/metrics` (Prometheus text), `/me`, `/me/routes[?profile=]`,
    `/me/search?q=&limit=&profile=`, `/admin/*` (including `POST /admin/reload` and
    `/admin/routes[?profile=]`; an unknown profile is 404), wrapped in Host/Origin
    validation, authentication and the request gate (415 for a non-JSON POST to an MCP
    path, 413 past `max_body_bytes` decided from `Content-Length` or while streaming,
    before the body is buffered whole, -32600 for a JSON-RPC batch).

    :param lifespan: entered around serving (the composition root passes the fleet's).
    """
    config = endpoint.config
    aggregate = endpoint.open_session_managers()
    server_endpoint = _PerServerApp(endpoint.server_apps)
    profile_endpoint = _PerServerApp(endpoint.profile_apps, "profile", "profile")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def resource_metadata(request: Request) -> Response:
        if not endpoint.authenticator.enabled:
            return JSONResponse({"error": "authentication is not configured on this hub"}, status_code=404)
        resource_path = "/" + request.path_params.get("resource", "mcp").strip("/")
        parts = resource_path.split("/")
        if resource_path != "/mcp" and not (
            len(parts) == 4
            and parts[3] == "mcp"
            and (
                (parts[1] == "servers" and endpoint.has_server_face(parts[2]))
                or (parts[1] == "profiles" and endpoint.profile_face(parts[2]) is not None)
            )
        ):
            return JSONResponse({"error": f"no protected resource at {resource_path}"}, status_code=404)
        base = endpoint.config.public_url or f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse(
            protected_resource_metadata(endpoint.config, base, resource_path),
            headers={"Cache-Control": "public, max-age=3600"},
        )

    async def metrics(request: Request) -> Response:
        if endpoint.metrics is None:
            return Response("metrics are off\n", status_code=404, media_type="text/plain")
        return Response(endpoint.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if lifespan is not None:
                await stack.enter_async_context(lifespan())
            stack.push_async_callback(endpoint.authenticator.aclose)
            await stack.enter_async_context(endpoint.serving())
            yield

    app = Starlette(
        routes=[
            Route("/mcp", endpoint=aggregate, methods=["GET", "POST", "DELETE"]),
            Route("/servers/{server_id}/mcp", endpoint=server_endpoint, methods=["GET", "POST", "DELETE"]),
            Route(PROFILE_PREFIX + "{profile}/mcp", endpoint=profile_endpoint, methods=["GET", "POST", "DELETE"]),
            Route("/healthz", endpoint=healthz, methods=["GET"]),
            *endpoint.admin.routes(),
            Route(PRM_PATH, endpoint=resource_metadata, methods=["GET"]),
            Route(PRM_PATH + "/{resource:path}", endpoint=resource_metadata, methods=["GET"]),
            Route("/metrics", endpoint=metrics, methods=["GET"]),
            *trust_routes(endpoint.catalog),
        ],
        lifespan=app_lifespan,
    )
    gated = RequestGate(
        _TrimHeaderWhitespace(_FacePaths(app, aggregate, server_endpoint, profile_endpoint)), config.max_body_bytes
    )
    authenticated = AuthMiddleware(gated, config, endpoint.authenticator, endpoint.rate_limiter)
    guarded = HostOriginGuard(authenticated, allowed_hosts(config))
    # Before the guards: once the hub stops accepting, a request gets 503 whoever sends it.
    draining = DrainGate(guarded, endpoint.drain)
    # Outermost: requests refused at the door (503, 413, 421, 401, 429) get HTTP spans too.
    return endpoint.tracer.instrument_asgi(draining) if endpoint.tracer is not None else draining
