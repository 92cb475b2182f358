"""The raw `tools/call`, `prompts/get`, `resources/read` and `completion/complete`: sent through
the SDK session's dispatcher, the answer kept as the server sent it when it is plain (issue 12,
item 2: no pydantic round trip of a routed result). `prompts/get` (`get_prompt_raw`),
`resources/read` (`read_resource_raw`) and `completion/complete` (`complete_raw`) go the same
way as the `tools/call` described here, for any prompt, resource or completion (the SDK checks
their answers against no schema of the server's), when they are first requests (no
`inputResponses`/`requestState`: `ServerConnection` decides).

`ServerConnection.call_tool(..., wire=True)` (what the face's handlers ask for) sends the request
here when the SDK would do nothing with the answer but validate it:

- the tool is in the server's last listing (`ServerConnection.snapshot`) **without** an
  `outputSchema` (with one, the SDK checks `structuredContent` against it; a tool the listing
  does not have makes the SDK re-list first), and
- it is a first request (no `inputResponses`/`requestState` of a multi-round-trip retry) and
  not task-augmented.

The request goes out as the SDK's own `call_tool` would send it: the session's stamp (protocol
version, `Mcp-*` headers, the modern era's `_meta` envelope, the hub's per-request additions),
over the same transport. To a remote server it goes through the session's dispatcher (request
id, progress, cancellation: `adapters._sdk.send_raw_request`). To a stdio server it goes
through the transport's request-id multiplexer (`adapters.stdio_mux.RequestMux`, found by
`stdio_route`), which does the same without the SDK's per-request machinery: the stamp
(`adapters._sdk.stamped_params`) plus the hub chain and trace context the transport's
write-stream wrapper adds to the SDK's requests (`hub.federation`), an id of its own, the
request's progress run by the caller, `notifications/cancelled` when the caller gives up, the
request marked delivered as its write starts (`hub.retry_rules.mark_delivered`), and
`MCPError(CONNECTION_CLOSED)` when the transport ends, as the SDK raises it. The answer:

- a plain result (`hub.wire_results.PLAIN`: `plain_call_result`, `plain_prompt_result`,
  `plain_read_result`, `plain_complete_result`), taken as the SDK client takes a result on
  that connection's revision (`hub.wire_results.in_era`: a later revision's keys dropped),
  comes back as a `hub.wire_results.WireResult`, otherwise untouched (the hub's rewrites of it,
  resource URIs, `cacheScope`, hop stamps, are made on that JSON by the handlers);
- anything else (an image, a resource link, an `InputRequiredResult`, a task, an unexpected
  field, a null, a key the connection's revision requires missing) and any error the server
  answered with (its code, message and `data` kept) are handed to the SDK's own method
  (`call_tool`, `get_prompt`, `read_resource`, `complete`) as the answer to its request
  (`adapters._sdk.replaying`: nothing is sent twice), so it gets exactly the SDK's
  processing: validation, the multi-round-trip loop, task claims, a re-list and resend after
  `HEADER_MISMATCH`.

Transport failures, timeouts and cancellation leave as they leave the SDK's own methods
(`hub.servers.failures` maps them the same way).
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import mcp_types as types
from mcp import Client, ClientSession, MCPError
from mcp.shared.dispatcher import ProgressFnT
from opentelemetry.propagate import inject

from adapters._sdk import replaying, send_raw_request, stamped_params
from adapters.stdio_mux import RequestMux
from hub.federation import CHAIN_META_KEY, Federation
from hub.retry_rules import mark_delivered
from hub.servers.state import ServerSnapshot
from hub.wire_results import PLAIN, WireResult, in_era

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = [
    "Listed",
    "StdioRoute",
    "call_tool_raw",
    "complete_raw",
    "get_prompt_raw",
    "read_resource_raw",
    "schema_free",
    "stdio_route",
]

_T = TypeVar("_T")


class Listed(Protocol):
    """What has a server's last listing (a `ServerConnection`)."""

    @property
    def snapshot(self) -> ServerSnapshot: ...


_SCHEMA_FREE: weakref.WeakKeyDictionary[Listed, tuple[ServerSnapshot, frozenset[str]]] = weakref.WeakKeyDictionary()
"""Per connection: its last snapshot, and the names of its listed tools without an `outputSchema`."""


@dataclass(frozen=True, slots=True)
class StdioRoute:
    """How a raw request goes out over a stdio connection: through its transport's request-id
    multiplexer, stamped with the hub chain and trace context of `federation` (what its
    write-stream wrapper adds to the SDK's requests, `hub.federation`)."""

    mux: RequestMux
    federation: Federation | None


def stdio_route(connection: ServerConnection, client: Client) -> StdioRoute | None:
    """The `StdioRoute` of `client` when it is the current client of `connection` or of one of
    its dedicated connections (`isolation.Clones`) and that one's transport is stdio; None
    otherwise (a remote server: the SDK's dispatcher carries the request)."""
    owner: ServerConnection | None = connection
    if connection._client is not client:
        owner = next((clone for clone in connection.clones if clone._client is client), None)
    # While `owner._client` is `client`, `owner.link.mux` is the mux of its transport (`ServerLink.mux`).
    mux = owner.link.mux if owner is not None else None
    return StdioRoute(mux, owner.federation) if owner is not None and mux is not None else None


def schema_free(connection: Listed, name: str) -> bool:
    """Whether original tool `name` is in `connection`'s last listing without an `outputSchema`
    (worked out once per listing)."""
    snapshot = connection.snapshot
    cached = _SCHEMA_FREE.get(connection)
    if cached is None or cached[0] is not snapshot:
        names = frozenset(tool.name for tool in snapshot.tools if tool.output_schema is None)
        cached = _SCHEMA_FREE[connection] = (snapshot, names)
    return name in cached[1]


async def call_tool_raw(
    connection: Listed,
    client: Client,
    name: str,
    arguments: dict[str, Any] | None,
    meta: dict[str, Any] | None,
    on_progress: ProgressFnT,
    full: Callable[[], Awaitable[_T]],
    route: StdioRoute | None = None,
) -> WireResult | _T:
    """`tools/call` of original tool `name` over `client` (module docstring): a `WireResult`
    for a plain answer, else what `full` (the SDK's own `call_tool` as the connection makes it)
    returns for the answer. A tool `schema_free` does not vouch for goes through `full` as is.
    With `route` (`stdio_route`) the request goes through the stdio transport's multiplexer.

    :raises MCPError: the server's error, as `full` raises it.
    """
    if not schema_free(connection, name):
        return await full()
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    if meta is not None:
        params["_meta"] = dict(meta)
    return await _raw(client, "tools/call", params, name, on_progress, full, route)


async def get_prompt_raw(
    client: Client,
    name: str,
    arguments: dict[str, str] | None,
    full: Callable[[], Awaitable[_T]],
    route: StdioRoute | None = None,
) -> WireResult | _T:
    """`prompts/get` of original prompt `name` over `client`: a `WireResult` for a plain answer
    (`hub.wire_results.plain_prompt_result`), else what `full` (the SDK's own `get_prompt`)
    returns for the answer; `route` as `call_tool_raw`.

    :raises MCPError: the server's error, as `full` raises it.
    """
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    return await _raw(client, "prompts/get", params, name, None, full, route)


async def read_resource_raw(
    client: Client, uri: str, full: Callable[[], Awaitable[_T]], route: StdioRoute | None = None
) -> WireResult | _T:
    """`resources/read` of original `uri` over `client`: a `WireResult` for a plain answer
    (`hub.wire_results.plain_read_result`), else what `full` (the SDK's own `read_resource`)
    returns for the answer. The request is the SDK's (`{"uri": uri}`, the session's stamp: in
    the modern era its `Mcp-Name` header); `route` as `call_tool_raw`.

    :raises MCPError: the server's error, as `full` raises it.
    """
    return await _raw(client, "resources/read", {"uri": uri}, None, None, full, route)


async def complete_raw(
    client: Client,
    ref: types.PromptReference | types.ResourceTemplateReference,
    argument: dict[str, str],
    context_arguments: dict[str, str] | None,
    full: Callable[[], Awaitable[_T]],
    route: StdioRoute | None = None,
) -> WireResult | _T:
    """`completion/complete` of `argument` (`{"name", "value"}`) of original `ref` over `client`:
    a `WireResult` for a plain answer (`hub.wire_results.plain_complete_result`), else what
    `full` (the SDK's own `complete`) returns for the answer; `route` as `call_tool_raw`.

    :raises MCPError: the server's error, as `full` raises it.
    """
    params: dict[str, Any] = {
        "ref": ref.model_dump(by_alias=True, mode="json", exclude_none=True),
        "argument": {"name": argument["name"], "value": argument["value"]},
    }
    if context_arguments is not None:
        params["context"] = {"arguments": context_arguments}
    return await _raw(client, "completion/complete", params, None, None, full, route)


async def _raw(
    client: Client,
    method: str,
    params: dict[str, Any],
    name: str | None,
    on_progress: ProgressFnT | None,
    full: Callable[[], Awaitable[_T]],
    route: StdioRoute | None,
) -> WireResult | _T:
    session = client.session
    try:
        if route is None:
            raw = await send_raw_request(session, method, params, on_progress=on_progress, name=name)
        else:
            stamped = _stamped(session, method, params, route.federation)
            raw = await route.mux.request(method, stamped, on_progress=on_progress, on_write=mark_delivered)
    except MCPError as exc:
        with replaying(session, method, exc):
            return await full()
    data = in_era(method, raw, session.protocol_version)
    if data is not None and PLAIN[method](data):
        return WireResult(data, method)
    with replaying(session, method, raw):
        return await full()


def _stamped(
    session: ClientSession, method: str, params: dict[str, Any], federation: Federation | None
) -> dict[str, Any]:
    """`params` as the SDK session and the transport's wrappers would send them: the session's
    stamp, then the hub chain and trace context (`hub.federation`: its write-stream wrapper on
    the SDK's path), or without a federation the trace context the SDK's dispatcher injects
    (SEP-414, the configured OpenTelemetry propagators)."""
    stamped = stamped_params(session, method, params)
    meta = stamped.get("_meta")
    if not isinstance(meta, dict):
        meta = {}
    if federation is not None:
        meta[CHAIN_META_KEY] = list(federation.outbound_chain())
        meta.update(federation.outbound_trace() or {})
    else:
        inject(meta)
    if meta:
        stamped["_meta"] = meta
    return stamped
