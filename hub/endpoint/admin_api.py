"""The hub's JSON APIs for people and tools: readiness (`/readyz`), the caller's own view (`/me`,
`/me/routes`, `/me/explain`, `/me/search`) and the admin API (`/admin/servers`, `/admin/routes`,
`/admin/explain`, `POST /admin/reload`, `POST /admin/servers/<id>/restart`), over one `Endpoint`.

Every route here sits behind the endpoint's guards and authentication (`hub.endpoint.http_app`;
the scope each path needs is `hub.endpoint.auth_middleware.required_scope`'s): `/readyz` is public
(details for `hub:admin` only), `/me*` needs any authenticated principal (`/me/search`:
`hub:call`), `/admin/*` needs `hub:admin`. A `?profile=` naming no profile is 404.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.catalog import Route as CatalogRoute
from hub.endpoint.auth_middleware import principal_of
from hub.endpoint.pins_admin import pin_diff
from hub.endpoint.profiles import ProfileFace
from hub.endpoint.search_mode import MAX_QUERY_CHARS, MAX_SEARCH_LIMIT
from hub.explain import explain, principal_for
from hub.principals import Principal
from hub.servers import ServerConnection, ServerState

if TYPE_CHECKING:
    from hub.endpoint.endpoint import Endpoint

__all__ = ["MAX_RESTART_WAIT_SECONDS", "AdminApi"]

MAX_RESTART_WAIT_SECONDS: Final = 300.0
"""The longest `POST /admin/servers/<id>/restart?wait=S` holds its answer, in seconds."""


def _best_state(members: list[ServerConnection]) -> str:
    """A logical server's state for the route table: the best of its replica members'."""
    states = [m.health_state for m in members]
    for good in (ServerState.READY, ServerState.DEGRADED, ServerState.OPEN):
        if good in states:
            return good.value
    return states[0].value if states else "unknown"


class AdminApi:
    """Readiness, the caller's own view and the admin API of `endpoint` (read at each request, so
    a reload's config applies).

    :param endpoint: the faces, their catalog, fleet, router, policy and drain.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    def routes(self) -> list[Route]:
        """The routes of these APIs (`/readyz`, `/me*`, `/admin/*` but the pins', which are
        `hub.endpoint.pins_admin`'s); the scopes they need are `hub.endpoint.authentication`'s."""
        return [
            Route("/readyz", endpoint=self.readyz, methods=["GET"]),
            Route("/admin/servers", endpoint=self.admin_servers, methods=["GET"]),
            Route("/admin/routes", endpoint=self.admin_routes, methods=["GET"]),
            Route("/me", endpoint=self.me, methods=["GET"]),
            Route("/me/routes", endpoint=self.my_routes, methods=["GET"]),
            Route("/me/explain", endpoint=self.my_explain, methods=["GET"]),
            Route("/me/search", endpoint=self.my_search, methods=["GET"]),
            Route("/admin/explain", endpoint=self.admin_explain, methods=["GET"]),
            Route("/admin/reload", endpoint=self.admin_reload, methods=["POST"]),
            Route("/admin/servers/{server_id:path}/restart", endpoint=self.admin_restart, methods=["POST"]),
        ]

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """`(HTTP status, body)` of /readyz: 200 when at least one server is connected (`ready`,
        `degraded`, or `open`: discovery and fallbacks still work; or none is configured) and
        every enabled server has finished its first start attempt. `status` is `ready` when every
        server is `ready`, else `degraded`; each server (each replica member) is listed with its
        state. With Redis configured, `shared_state` is `ok` or `unavailable` (with
        `shared_state_reason`, for `hub:admin` only); an unavailable Redis never makes the hub unready: it serves
        with this replica's local state meanwhile. From the start of a drain (`hub.endpoint.drain`: SIGTERM) on, 503
        with `status: draining` and `drain: {phase, requests_in_flight, open_streams}`, whatever the servers'
        states."""
        statuses = [c.status() for c in self._endpoint.fleet.connections.values()]
        enabled = [s for s in statuses if s.state is not ServerState.DISABLED]
        serving = [s for s in enabled if s.state in (ServerState.READY, ServerState.DEGRADED, ServerState.OPEN)]
        ready = [s for s in enabled if s.state is ServerState.READY]
        starting = [s for s in enabled if s.state is ServerState.STARTING]
        if not enabled or (serving and not starting):
            status = "ready" if len(ready) == len(enabled) else "degraded"
            code = 200
        else:
            status = "starting" if starting else "unavailable"
            code = 503
        body: dict[str, Any] = {"status": status}
        if self._endpoint.store.shared:
            health = self._endpoint.store.health()
            body["shared_state"] = health.status
            if health.reason is not None:
                body["shared_state_reason"] = health.reason
        body["servers"] = [s.as_json() for s in statuses]
        drain = self._endpoint.drain
        if drain.draining:
            code, body["status"] = 503, "draining"
            body["drain"] = {
                "phase": drain.phase.value,
                "requests_in_flight": drain.requests_in_flight,
                "open_streams": drain.open_streams,
            }
        return code, body

    def readiness_for(self, principal: Principal) -> tuple[int, dict[str, Any]]:
        """`readiness()` as `principal` may see it: with authentication on, callers without
        `hub:admin` get the overall status and per-state counts only (no server ids, errors or
        addresses)."""
        code, body = self.readiness()
        if not self._endpoint.authenticator.enabled or "hub:admin" in principal.scopes:
            return code, body
        counts: dict[str, int] = {}
        for server in body["servers"]:
            counts[server["state"]] = counts.get(server["state"], 0) + 1
        reduced: dict[str, Any] = {"status": body["status"], "servers_by_state": counts}
        if "shared_state" in body:
            reduced["shared_state"] = body["shared_state"]
        return code, reduced

    def routes_json(
        self, principal: Principal | None = None, profile: ProfileFace | None = None
    ) -> list[dict[str, Any]]:
        """Every route with its server's state, its fallback chain (`[server_id, fallbacks
        offering the same original...]`), its candidate members in order and the member that
        would serve it now (`serving`, None when none can), whether it is `served` (False: reserved
        for its server while that server is down) and `listed`, its `pin` status (`hub.pins`, or
        None), its `hygiene` findings and every `notes` line for people, for `/admin/routes`; or
        only the routes `principal` may use (`/me/routes`, `mcphub routes`); with `profile`, only
        the routes that profile serves (`?profile=`, `mcphub routes --profile`)."""
        rows = []
        for route in self._endpoint.catalog.routes():
            if principal is not None and not self._endpoint.policy.allows(principal, route.server_id, route.exposed):
                continue
            if profile is not None and profile.route_key(route.kind, route.exposed) is None:
                continue
            plan = self._endpoint.router.plan(route.server_id, route.kind, route.original)
            members = self._endpoint.fleet.members(route.server_id)
            rows.append(
                {
                    "exposed": route.exposed,
                    "kind": route.kind,
                    "server_id": route.server_id,
                    "original": route.original,
                    "note": route.note,
                    "server_state": _best_state(members),
                    "fallbacks": list(route.fallbacks),
                    "chain": plan["chain"],
                    "members": plan["members"],
                    "serving": plan["serving"],
                    "served": route.served,
                    "listed": route.listed,
                    "pin": route.pin.as_json() if route.pin is not None else None,
                    "hygiene": list(route.hygiene),
                    "notes": route.notes(),
                }
            )
        return rows

    async def search_json(
        self, principal: Principal, query: str, limit: int, profile: str | None = None
    ) -> dict[str, Any]:
        """What `search_tools` answers `principal` on `/mcp` (or on profile `profile`), for people
        (`GET /me/search`, `mcphub search`): the caller's catalog `mode` there, and per result its
        rank, exposed name, server, original name, title, description, the words that matched
        (`matched`: per field, `related` for words found through synonyms; never a score) and
        the definition as `tools/list` gives it.

        :raises KeyError: no such profile.
        """
        search = self._endpoint.face_search(profile)
        hits = await search.find(principal, query, limit)
        reasons = await self._endpoint.search.reasons(hits, query)
        results = []
        for rank, (hit, matched) in enumerate(zip(hits, reasons, strict=True), start=1):
            route = self._endpoint.catalog.tool_route(hit.name)
            results.append(
                {
                    "rank": rank,
                    "name": hit.name,
                    "server_id": route.server_id if route is not None else None,
                    "original": route.original if route is not None else None,
                    "title": hit.tool.title,
                    "description": hit.tool.description,
                    "matched": {field: list(found) for field, found in matched.items()},
                    "tool": hit.tool.model_dump(mode="json", by_alias=True, exclude_none=True),
                }
            )
        return {"query": query, "profile": profile, "mode": search.settings(principal).mode, "results": results}

    def explain(self, name: str, principal: Principal | None, *, full: bool = True) -> dict[str, Any]:
        """`hub.explain.explain` for this hub: everything that decides a call of `name` by
        `principal`. With `full=False` (a principal asking about itself without `hub:admin`) a
        route the principal may not see is answered exactly like an unknown name."""
        catalog, policy = self._endpoint.catalog, self._endpoint.policy

        def visible_names() -> list[str]:
            return [
                r.exposed
                for r in catalog.routes()
                if principal is None or policy.allows(principal, r.server_id, r.exposed)
            ]

        def states(server_id: str) -> dict[str, str]:
            return {m.server_id: m.health_state.value for m in self._endpoint.fleet.members(server_id)}

        def hidden(route: CatalogRoute) -> bool:
            return not full and principal is not None and not policy.allows(principal, route.server_id, route.exposed)

        return explain(
            name,
            principal,
            catalog=catalog,
            policy=policy,
            config=self._endpoint.config,
            plan=self._endpoint.router.plan,
            states=states,
            pin_diff=lambda route: pin_diff(catalog, route.server_id, route.kind, route.original),
            visible_names=visible_names,
            hidden=hidden,
        )

    def _profile_of(self, request: Request) -> tuple[ProfileFace | None, Response | None]:
        """The profile a request's `?profile=` names (None when it names none), or a 404."""
        name = request.query_params.get("profile")
        if name is None:
            return None, None
        face = self._endpoint.profile_face(name)
        if face is None:
            return None, JSONResponse({"error": f"unknown profile {name!r}"}, status_code=404)
        return face, None

    async def readyz(self, request: Request) -> Response:
        code, body = self.readiness_for(principal_of(request))
        return JSONResponse(body, status_code=code)

    async def me(self, request: Request) -> Response:
        return JSONResponse(principal_of(request).as_json())

    async def my_routes(self, request: Request) -> Response:
        profile, refusal = self._profile_of(request)
        if refusal is not None:
            return refusal
        return JSONResponse({"routes": self.routes_json(principal_of(request), profile)})

    async def my_search(self, request: Request) -> Response:
        # The search the model gets on /mcp (or ?profile=), for the caller's own principal.
        query = request.query_params.get("q", "")
        if not query.strip() or len(query) > MAX_QUERY_CHARS:
            return JSONResponse(
                {"error": f"give what to search for as ?q=<words> (1-{MAX_QUERY_CHARS} characters)"},
                status_code=400,
            )
        raw_limit = request.query_params.get("limit", "8")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_SEARCH_LIMIT:
            return JSONResponse({"error": f"limit must be 1-{MAX_SEARCH_LIMIT}"}, status_code=400)
        profile, refusal = self._profile_of(request)
        if refusal is not None:
            return refusal
        name = profile.name if profile is not None else None
        return JSONResponse(await self.search_json(principal_of(request), query, int(raw_limit), name))

    async def admin_servers(self, request: Request) -> Response:
        return JSONResponse({"servers": [c.status().as_json() for c in self._endpoint.fleet.connections.values()]})

    async def admin_routes(self, request: Request) -> Response:
        profile, refusal = self._profile_of(request)
        if refusal is not None:
            return refusal
        return JSONResponse({"routes": self.routes_json(None, profile)})

    async def my_explain(self, request: Request) -> Response:
        # Any principal may ask about itself; without hub:admin it learns nothing about
        # routes it may not see (they answer like unknown names).
        name = request.query_params.get("name", "")
        if not name:
            return JSONResponse({"error": "give the route to explain as ?name=<exposed name>"}, status_code=400)
        principal = principal_of(request)
        return JSONResponse(self.explain(name, principal, full="hub:admin" in principal.scopes))

    async def admin_explain(self, request: Request) -> Response:
        name = request.query_params.get("name", "")
        if not name:
            return JSONResponse({"error": "give the route to explain as ?name=<exposed name>"}, status_code=400)
        principal_id = request.query_params.get("principal")
        principal = (
            principal_for(
                principal_id,
                request.query_params.getlist("scope"),
                self._endpoint.config,
                self._endpoint.authenticator.hierarchy.expand,
            )
            if principal_id
            else None
        )
        return JSONResponse(self.explain(name, principal))

    async def admin_reload(self, request: Request) -> Response:
        if self._endpoint.reload_handler is None:
            return JSONResponse({"status": "rejected", "error": "this hub cannot reload"}, status_code=409)
        code, body = await self._endpoint.reload_handler()
        return JSONResponse(body, status_code=code)

    async def admin_restart(self, request: Request) -> Response:
        # Asks the server's supervisor to restart it (also out of a crash-loop `failed`): 202
        # with its status before the restart; with `?wait=S` (0 < S <= MAX_RESTART_WAIT_SECONDS)
        # the answer waits for the restarted server to be `ready` or `degraded`, 200 with its
        # status then, 504 with its status (state, last_error) when S seconds pass first.
        # 404 for an unknown server_id, 400 for a bad `wait`.
        server_id = request.path_params["server_id"]
        connection = self._endpoint.fleet.get(server_id)
        if connection is None:
            return JSONResponse({"error": f"no server '{server_id}'"}, status_code=404)
        raw_wait = request.query_params.get("wait", "0")
        try:
            wait_seconds = float(raw_wait)
        except ValueError:
            wait_seconds = math.nan
        if not 0 <= wait_seconds <= MAX_RESTART_WAIT_SECONDS:
            return JSONResponse(
                {"error": f"wait must be a number of seconds from 0 to {MAX_RESTART_WAIT_SECONDS:g}"}, status_code=400
            )
        before = connection.status()
        connection.restart()
        if wait_seconds == 0:
            return JSONResponse(before.as_json(), status_code=202)

        def restarted(c: ServerConnection) -> bool:
            return c.state in (ServerState.READY, ServerState.DEGRADED) and c.restarts > before.restarts

        with anyio.move_on_after(wait_seconds):
            await connection.wait_until(restarted)
        return JSONResponse(connection.status().as_json(), status_code=200 if restarted(connection) else 504)
