"""The MCP requests of one face, served (`FaceHandlers`): one method per request, registered
with the SDK's lowlevel `Server` by `hub.endpoint.mcp_server.build_mcp_server`.

A routed request (`tools/call`, `resources/read`, `prompts/get`, `completion/complete`) reads
top to bottom as four steps:

1. **resolve** the exposed name or URI to `(server_id, original)` through the face
   (`settled`: waiting for a starting server when the caller may know of it);
2. **admit** it for the request's principal (`admitted`: policy and the per-route rate limit,
   `hub.policy`), then pinning (`_refuse_held`): a name the caller may not use answers exactly
   like an unknown one (`RouteNotFound`, -32602, with suggestions from what it may see);
3. **route** it (`routed`): through `hub.router.Router` under the original name, with the
   caller's relay channel in context (`hub.endpoint.server_requests`), in the caller's era (multi-round-trip
   requests passed through or bridged, `hub.endpoint.era_bridge`);
4. **expose** the answer: resource URIs moved into the face's namespace (`Face.expose_result`)
   and the server's hop-level `_meta` stamps dropped (`hub.endpoint.era_routing.restamped`). A
   plain answer stays the server's JSON (`hub.wire_results.WireResult`: the rewrites are done on
   it) and is handed to the SDK through `hub.wire_results.held`.

Lists read the catalog (no server round trip): filtered by policy for the principal, a page at a
time with keyset cursors (`hub.pages`; an invalid cursor -> `InvalidCursor`, -32602), with the
hub's federation advertisement in `_meta` and the face's `ttlMs` (`hub.list_freshness`).

Handlers raise `HubError`s; `hub.endpoint.request_boundary` turns them into JSON-RPC errors.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ToolsListChanged
from mcp_types import LOG_LEVEL_META_KEY

from hub.catalog import Kind, listing_key
from hub.client_channel import CURRENT_CHANNEL
from hub.endpoint.callers import caller_principal, client_channel, client_key, is_modern, session_id
from hub.endpoint.era_routing import restamped, send_in_callers_era
from hub.endpoint.face_services import FaceServices
from hub.endpoint.faces import AggregateFace, Face
from hub.endpoint.found_tools import TargetedBus
from hub.endpoint.search_mode import FaceSearch
from hub.endpoint.session_registry import NOTIFY_TIMEOUT_SECONDS, SessionRegistry
from hub.endpoint.tasks import FaceTasks
from hub.errors import HubError, RouteNotFound, ServerUnavailable
from hub.federation import FEDERATION_KEY, inbound_chain
from hub.list_freshness import list_ttl_ms
from hub.pages import Page, page_of
from hub.policy import Access
from hub.prepared_lists import PreparedLists
from hub.router import Router
from hub.servers import ServerConnection, ServerState
from hub.suggestions import suggest
from hub.wire_results import WireResult, held

__all__ = ["FaceHandlers"]

# The request path's modules share the faces' logger: operators and tests filter on "hub.endpoint.faces".
logger = logging.getLogger("hub.endpoint.faces")

_ItemT = TypeVar("_ItemT", types.Tool, types.Prompt, types.Resource, types.ResourceTemplate)
_Owner = tuple[str, str] | None
_Context = ServerRequestContext[Any]


class FaceHandlers:
    """The request handlers of one face (see the module docstring).

    Every list is filtered, and every use guarded, by `access` for the request's principal: a
    route the principal may not use is absent from its lists and answers exactly like an
    unknown name (-32602), so its existence does not leak.

    :param face: what the face lists and how its names resolve.
    :param router: where routed requests go, under original names.
    :param registry: the face's handshake-era sessions (log levels, `list_changed`).
    :param bus: the face's subscription bus (search mode's found tools are announced on it).
    :param access: the policy and per-route rate limits.
    :param services: the fleet, bridge, subscriptions and shared session state of the face.
    :param tasks: the face's task surface (`hub.endpoint.tasks`: task-augmented `tools/call`).
    :param page_size: most items per list page (`list_page_size`).
    :param search: the face's search mode (`hub.endpoint.search_mode`): for a caller in search mode,
        `tools/list` offers `search_tools` and `call_tool` (and the tools it keeps listed), and
        calls of those two are served by it, `call_tool` through `direct_call`. None: always
        the full list.
    """

    def __init__(
        self,
        face: Face,
        router: Router,
        registry: SessionRegistry,
        bus: InMemorySubscriptionBus,
        access: Access,
        services: FaceServices,
        tasks: FaceTasks,
        *,
        page_size: int,
        search: FaceSearch | None = None,
    ) -> None:
        self._face = face
        self._router = router
        self._registry = registry
        self._bus = bus
        self._access = access
        self._services = services
        self._tasks = tasks
        self._page_size = page_size
        self._search = search
        self.lists = PreparedLists(access, face.route_key, page_size, face.cursor_scope)
        """The face's prepared list pages (`hub.prepared_lists`; its middleware is in the chain)."""
        self._scope = services.scope
        """The one server this face fronts (None: the whole fleet): what its lists wait for."""

    # ------------------------------------------------------------ tools

    async def list_tools(self, ctx: _Context, params: types.PaginatedRequestParams | None) -> Any:
        """A dict of wire keys (`hub.prepared_lists`), or search mode's `ListToolsResult`."""
        await self.started()
        search = self._search
        searching = search.listing(caller_principal(ctx), client_key(ctx)) if search is not None else None
        if searching is None:
            return self.lists.result(ctx, caller_principal(ctx), "tools", self._face.tools(), params, self.envelope())
        page = self.listed(ctx, "tools", searching, params, narrowed=True)
        return types.ListToolsResult(
            tools=page.items, next_cursor=page.next_cursor, _meta=self.advertised(), ttl_ms=self.ttl()
        )

    async def call_tool(self, ctx: _Context, params: types.CallToolRequestParams) -> Any:
        """`tools/call`: search mode's two tools (`hub.endpoint.search_mode`), or `direct_call`. A plain
        result the server sent is left for `hub.wire_results.middleware` (`held`)."""
        search = self._search
        if search is not None and search.serves(principal := caller_principal(ctx), params.name):
            return held(
                await search.call(
                    ctx, params, principal, client_key(ctx), self.direct_call, lambda: self.announce_found(ctx)
                )
            )
        return held(await self.direct_call(ctx, params))

    async def direct_call(self, ctx: _Context, params: types.CallToolRequestParams) -> Any:
        """`tools/call` of an exposed name: resolve, admit, route, expose. A plain result comes
        back as the server sent it (`hub.wire_results.WireResult`)."""
        face, tasks = self._face, self._tasks
        owner = await self.settled(ctx, params.name, face.resolve_tool)
        allowed, disclose = await self.admitted(ctx, "tools", params.name)
        if owner is None or not allowed:
            raise await self.not_found(ctx, "tools", params.name, disclose=disclose)
        _refuse_held(face, "tools", owner, params.name)
        progress = None
        if ctx.meta and ctx.meta.get("progress_token") is not None:
            progress = ctx.session.report_progress
        level = self.log_level(ctx)

        async def send(**mrtr: Any) -> Any:  # a model, or a WireResult (hub.wire_results)
            extra = {"log_level": level, "wire": True, **mrtr}
            if (task := tasks.task_param(ctx, params)) is not None:
                extra["task"] = task
            return await self._router.call_tool(owner[0], owner[1], params.arguments, progress, **extra)

        result = await self.routed(ctx, owner[0], params.input_responses, params.request_state, send)
        if tasks.is_task(result):
            return tasks.created(ctx, face.route_key("tools", params.name) or owner, owner, result)
        return face.expose_result(owner[0], result)

    async def announce_found(self, ctx: _Context) -> None:
        """Tell the client of `ctx` (only it) that its `tools/list` changed: its session in the
        handshake era, its principal's listen streams in the modern era (`hub.endpoint.found_tools`)."""
        if is_modern(ctx):
            if isinstance(self._bus, TargetedBus):
                await self._bus.publish_to(client_key(ctx), ToolsListChanged())
            return
        with anyio.move_on_after(NOTIFY_TIMEOUT_SECONDS):
            try:
                await self._registry.standing(ctx.session).send_tool_list_changed()
            except Exception as exc:  # a client that went away does not fail its search
                logger.debug("list_changed not delivered to a session: %r", exc)

    # ------------------------------------------------------------ resources

    async def list_resources(self, ctx: _Context, params: types.PaginatedRequestParams | None) -> Any:
        """A dict of wire keys (`hub.prepared_lists`)."""
        await self.started()
        return self.lists.result(
            ctx, caller_principal(ctx), "resources", self._face.resources(), params, self.envelope()
        )

    async def list_resource_templates(self, ctx: _Context, params: types.PaginatedRequestParams | None) -> Any:
        """A dict of wire keys (`hub.prepared_lists`)."""
        await self.started()
        templates = self._face.resource_templates()
        return self.lists.result(ctx, caller_principal(ctx), "resource_templates", templates, params, self.envelope())

    async def read_resource(self, ctx: _Context, params: types.ReadResourceRequestParams) -> Any:
        """`resources/read` of an exposed URI: resolve, admit, route, expose (a server's
        `cacheScope` becomes `private`: behind the hub, the caller is a principal). A plain
        result comes back as the server sent it and is answered as a JSON object
        (`hub.wire_results`)."""
        face = self._face
        owner = face.resolve_uri(str(params.uri))
        if owner is None or not (await self.admitted(ctx, "resources", str(params.uri)))[0]:
            raise RouteNotFound("resource", str(params.uri))
        _refuse_held(face, "resources", owner, str(params.uri))

        async def send(**mrtr: Any) -> Any:  # a model, or a WireResult (hub.wire_results)
            return await self._router.read_resource(owner[0], owner[1], wire=True, **mrtr)

        result = face.expose_result(
            owner[0], await self.routed(ctx, owner[0], params.input_responses, params.request_state, send)
        )
        # A server's "public" is about its own callers; behind the hub the caller is a principal.
        if isinstance(result, WireResult):
            return held(result.privately_cached())
        if isinstance(result, types.ReadResourceResult) and "cache_scope" in result.model_fields_set:
            result = result.model_copy(update={"cache_scope": "private"})
        return result

    async def subscribe(self, ctx: _Context, params: types.SubscribeRequestParams) -> types.EmptyResult:
        """`resources/subscribe` (handshake era): forwarded to the owning server through the
        shared subscription table, and recorded for the session (any replica serves it)."""
        exposed = str(params.uri)
        owner = self._face.resolve_uri(exposed)
        if owner is None or not (await self.admitted(ctx, "resources", exposed))[0]:
            raise RouteNotFound("resource", exposed)
        await self._services.subscriptions.subscribe(
            SessionRegistry.client_key(ctx.session), ctx.session, exposed, *owner
        )
        if (sid := session_id(ctx)) is not None:
            await self._services.sessions.set_subscribed(sid, exposed, True)
        return types.EmptyResult()

    async def unsubscribe(self, ctx: _Context, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        """`resources/unsubscribe` (handshake era); an unknown URI is not an error."""
        exposed = str(params.uri)
        owner = self._face.resolve_uri(exposed)
        if owner is not None:
            await self._services.subscriptions.unsubscribe(SessionRegistry.client_key(ctx.session), exposed, *owner)
        if (sid := session_id(ctx)) is not None:
            await self._services.sessions.set_subscribed(sid, exposed, False)
        return types.EmptyResult()

    # ------------------------------------------------------------ prompts and completions

    async def list_prompts(self, ctx: _Context, params: types.PaginatedRequestParams | None) -> Any:
        """A dict of wire keys (`hub.prepared_lists`)."""
        await self.started()
        return self.lists.result(ctx, caller_principal(ctx), "prompts", self._face.prompts(), params, self.envelope())

    async def get_prompt(self, ctx: _Context, params: types.GetPromptRequestParams) -> Any:
        """`prompts/get` of an exposed name: resolve, admit, route, expose (a plain result as the
        server sent it: `hub.wire_results`)."""
        face = self._face
        owner = await self.settled(ctx, params.name, face.resolve_prompt)
        allowed, disclose = await self.admitted(ctx, "prompts", params.name)
        if owner is None or not allowed:
            raise await self.not_found(ctx, "prompts", params.name, disclose=disclose)
        _refuse_held(face, "prompts", owner, params.name)

        async def send(**mrtr: Any) -> Any:  # a model, or a WireResult (hub.wire_results)
            return await self._router.get_prompt(owner[0], owner[1], params.arguments, wire=True, **mrtr)

        result = await self.routed(ctx, owner[0], params.input_responses, params.request_state, send)
        return held(face.expose_result(owner[0], result))

    async def complete(self, ctx: _Context, params: types.CompleteRequestParams) -> Any:
        """`completion/complete` of a prompt's or a resource template's argument: the reference
        is resolved and admitted like the prompt or template itself, then routed. A plain result
        is answered as the JSON object the server sent (`hub.wire_results`)."""
        face, ref = self._face, params.ref
        owner: tuple[str, str] | None
        original_ref: types.PromptReference | types.ResourceTemplateReference
        if isinstance(ref, types.PromptReference):
            owner = await self.settled(ctx, ref.name, face.resolve_prompt)
            allowed, disclose = await self.admitted(ctx, "prompts", ref.name)
            if owner is None or not allowed:
                raise await self.not_found(ctx, "prompts", ref.name, disclose=disclose)
            _refuse_held(face, "prompts", owner, ref.name)
            original_ref = ref.model_copy(update={"name": owner[1]})
        else:
            owner = face.resolve_uri(ref.uri)
            if owner is None or not (await self.admitted(ctx, "resource_templates", ref.uri))[0]:
                raise RouteNotFound("resource template", ref.uri)
            _refuse_held(face, "resource_templates", owner, ref.uri)
            original_ref = ref.model_copy(update={"uri": owner[1]})
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = params.context.arguments if params.context else None
        result = await self._router.complete(owner[0], original_ref, argument, context, wire=True)
        return held(result.restamped() if isinstance(result, WireResult) else restamped(result))

    # ------------------------------------------------------------ logging

    async def set_level(self, ctx: _Context, params: types.SetLevelRequestParams) -> types.EmptyResult:
        """Record the session's level (the hub filters what it relays) and forward it to every
        server of the face (handshake-era servers: `logging/setLevel`; modern-era servers: the
        per-request opt-in); a server that fails is logged and skipped."""
        self._registry.set_level(ctx.session, params.level)
        if (sid := session_id(ctx)) is not None:
            await self._services.sessions.set_log_level(sid, params.level)

        async def forward(connection: ServerConnection) -> None:
            try:
                await connection.set_logging_level(params.level)
            except (HubError, MCPError) as exc:
                logger.info("logging/setLevel not forwarded to %s: %s", connection.server_id, exc)

        async with anyio.create_task_group() as tg:
            for connection in self._services.connections():
                if connection.state is ServerState.READY:
                    tg.start_soon(forward, connection)
        return types.EmptyResult()

    def log_level(self, ctx: _Context) -> str | None:
        """The logging opt-in to pass to a modern-era server: the modern-era client's own
        (`_meta` logLevel), or for a handshake-era client its `logging/setLevel` (default debug:
        handshake-era servers send every level until told otherwise)."""
        if is_modern(ctx):
            requested = (ctx.meta or {}).get(LOG_LEVEL_META_KEY)
            return requested if isinstance(requested, str) else None
        return self._registry.level(ctx.session) or "debug"

    # ------------------------------------------------------------ resolve and admit

    async def settled(self, ctx: _Context, name: str, resolve: Callable[[str], _Owner]) -> _Owner:
        """`resolve(name)`; when it finds nothing while a server is starting, wait for the
        first start attempts of the face, then for the server whose prefix `name` carries if
        it is restarting (only when the caller may use that name), and resolve again."""
        owner = resolve(name)
        if owner is not None:
            return owner
        router = self._router
        if router.starting(self._scope):
            await router.wait_started(self._scope)
            owner = resolve(name)
        claimed = self._face.claimed_by(name) if owner is None else None
        if claimed is not None and self.may_wait_for(ctx, claimed, name) and await router.wait_serving(claimed):
            owner = resolve(name)
        return owner

    def may_wait_for(self, ctx: _Context, server_id: str, name: str) -> bool:
        """Whether waiting for `server_id` on a name it does not list (yet) discloses nothing:
        no policy restricts the caller, or the policy lets it use `name` on the aggregated face."""
        principal = caller_principal(ctx)
        if not self._access.restricts(principal):
            return True
        return isinstance(self._face, AggregateFace) and self._access.visible(principal, (server_id, name))

    async def admitted(self, ctx: _Context, kind: Kind, name: str) -> tuple[bool, bool]:
        """`(admitted, disclose)` for using `name`: whether the principal may use it, and whether
        a refusal may say that its server is down.

        :raises RateLimited: the principal is over its per-route limit.
        """
        principal = caller_principal(ctx)
        restricted = self._access.restricts(principal)
        key = self._face.route_key(kind, name)
        if key is None:
            return False, not restricted
        return await self._access.admit(principal, kind, key), not restricted

    async def not_found(self, ctx: _Context, kind: Kind, name: str, *, disclose: bool = True) -> HubError:
        """RouteNotFound for the tool or prompt `name`, with the names the caller may see spelled
        most like it as suggestions; unless the name belongs to a server that is down (and
        `disclose`, i.e. no policy restricts the caller): then that server's ServerUnavailable,
        so the caller learns which server to wait for. Suggestions come only from what the
        caller may see, so a hidden name is answered like an unknown one."""
        server_id = self._face.claimed_by(name) if disclose else None
        if server_id is not None:
            try:
                self._router.require_ready(server_id)
            except ServerUnavailable as exc:
                return exc
        return RouteNotFound(
            "tool" if kind == "tools" else "prompt", name, await suggest(name, self.visible_names(ctx, kind))
        )

    def visible_names(self, ctx: _Context, kind: Kind) -> list[str]:
        """The tool or prompt names the request's principal may see (the "did you mean"
        candidates; computed on the error path only)."""
        if kind == "tools":
            return [tool.name for tool in self.visible(ctx, "tools", self._face.tools())]
        return [prompt.name for prompt in self.visible(ctx, "prompts", self._face.prompts())]

    def visible(self, ctx: _Context, kind: Kind, items: Sequence[_ItemT]) -> list[_ItemT]:
        """The `items` the request's principal may see."""
        principal = caller_principal(ctx)
        if not self._access.restricts(principal):
            return list(items)
        face = self._face
        return [item for item in items if self._access.visible(principal, face.route_key(kind, listing_key(item)))]

    # ------------------------------------------------------------ route

    async def routed(
        self,
        ctx: _Context,
        server_id: str,
        input_responses: types.InputResponses | None,
        request_state: str | None,
        send: Callable[..., Awaitable[types.Result]],
    ) -> Any:
        """Send one routed request with the caller's channel in context (`hub.endpoint.server_requests`: the
        server's requests, logs and progress reach this client), in the caller's era
        (`hub.endpoint.era_routing`: passed through, or bridged, `hub.endpoint.era_bridge`).

        :raises MCPError: -32602 `invalid_request_state` for a `requestState` the hub did not make.
        """
        channel = client_channel(ctx, self._registry)
        token = CURRENT_CHANNEL.set(channel)
        try:
            return await send_in_callers_era(
                ctx, channel, self._services, server_id, input_responses, request_state, send
            )
        finally:
            CURRENT_CHANNEL.reset(token)

    # ------------------------------------------------------------ lists

    async def started(self) -> None:
        """Lists wait until every server of the face has had its first start attempt (each
        bounded by its `startup_timeout_seconds`): clients cache the first list they get. A
        list from another hub (a request with a hub chain) is answered at once: a hub re-lists
        on `list_changed`, and two hubs that start side by side listing each other would
        otherwise each wait for the other's first list."""
        if inbound_chain.get():
            return
        await self._router.wait_started(self._scope)

    def listed(
        self,
        ctx: _Context,
        kind: Kind,
        items: Sequence[_ItemT],
        params: types.PaginatedRequestParams | None,
        *,
        narrowed: bool = False,
    ) -> Page[_ItemT]:
        """The page of `items` (sorted by listing key) that the request's cursor asks for, cut
        from what its principal may see (hub.pages), or from all of `items` when they are
        `narrowed` to it already (search mode's list).

        :raises InvalidCursor: the cursor is not one of this list on this face.
        """
        principal = caller_principal(ctx)
        access, face = self._access, self._face

        def may_see(item: _ItemT) -> bool:
            return access.visible(principal, face.route_key(kind, listing_key(item)))

        cursor = params.cursor if params is not None else None
        admit = may_see if access.restricts(principal) and not narrowed else None
        return page_of(items, kind, cursor, self._page_size, admit=admit, scope=face.cursor_scope)

    def advertised(self) -> dict[str, Any]:
        """List results' `_meta`: this hub's federation advertisement (hub.federation)."""
        return {FEDERATION_KEY: self._services.fleet.federation.advertisement(self._scope)}

    def envelope(self) -> dict[str, Any]:
        """A list result's `_meta` and `ttlMs` (wire keys)."""
        return {"_meta": self.advertised(), "ttlMs": self.ttl()}

    def ttl(self) -> int:
        """List results' `ttlMs`: until the face's servers' lists could next change by expiry
        (every member of a replicated server), at most `LIST_TTL_MS` (hub.list_freshness)."""
        fleet = self._services.fleet
        return list_ttl_ms(fleet.members(self._scope) if self._scope else fleet.connections.values())


def _refuse_held(face: Face, kind: Kind, owner: tuple[str, str], name: str) -> None:
    """:raises DefinitionHeld: pinning holds the definition (checked after the policy, so a
    route the caller may not use still answers like an unknown one)."""
    held = face.hold(kind, owner, name)
    if held is not None:
        raise held
