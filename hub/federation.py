"""Loop-free federation: hub chains on requests, identity advertisements, loop detection.

A hub may list another hub as a server (hub-of-hubs). Two hubs that list each other, directly
or through others, must neither grow their catalogs without bound nor forward a call around the
circle forever. Two mechanisms, one for each:

**Requests carry the chain of hubs they passed through.** Every request a hub sends to a server
carries the hub ids it has passed through: in `params._meta["io.mcphub/chain"]` (a JSON list,
every transport) and, over Streamable HTTP, in the `Mcp-Hub-Chain` header (comma-separated). The
chain is the one of the client request being served (set by the faces for its duration, see
`inbound_chain`) plus this hub's id; requests a hub makes on its own (listing, health checks)
carry just its own id. A hub refuses a request whose chain already holds its own id, or holds
more than `max_federation_depth` hubs (default 4), with JSON-RPC error `FEDERATION_LOOP`
(-32010) naming the chain, on every face, in both eras and on stdio.

The same pass over each outgoing request adds its W3C trace context (`traceparent`,
`tracestate`, ... in `_meta` per SEP-414, and as HTTP headers of the same names), as
`hub.trace_context` decides: the attempt's span when tracing is on, else the client request's
trace context forwarded unchanged.

**Hubs advertise who they are and whom they federate.** Each hub advertises
`{"hub_id": <its id>, "hubs": [<its id>, <every hub id its servers advertise>...]}` under the key
`io.mcphub/federation` in two places:

- `capabilities.experimental` of its `initialize` (handshake era) and `server/discover` (modern
  era) results: the one field of the connect-time answer that both eras carry and the SDK
  client keeps (`Client.server_capabilities.experimental`), where `serverInfo` is not
  reliable for this (the spec says it SHOULD NOT be relied upon, and the modern era moves it
  into `_meta`);
- `_meta` of every list result (`tools/list`, `resources/list`, `resources/templates/list`,
  `prompts/list`), so a change is seen at the next re-list.

A per-server face (`/servers/<id>/mcp`) advertises this hub plus what that one server
advertises. A server whose advertisement says it is this hub, or lists this hub, is refused
(`LoopingServer`): the server connection marks it `failed` with the reason "federation loop:
...", it contributes nothing, and it is not restarted until a reload or `mcphub restart`.

The race of two hubs connecting to each other at the same moment: a hub records a server's
advertisement as soon as it is connected, *before* it lists that server, and its own
advertisement (served on its list results) includes what it recorded. Say A and B list each
other. A lists B after A recorded B; B lists A after B recorded A. If neither saw itself in the
other's list result, B answered A's list before recording A and A answered B's list before
recording B, so B recorded A after A recorded B after B recorded A: impossible. So in one
start-up round at least one side sees the loop and drops the other, and both catalogs stay
bounded (a per-server `max_tools` cap bounds what one server contributes in any case).

The SDK's transport types come from `adapters._sdk`. Behaviour relied on (tested end to end):
the SDK's JSON-RPC dispatcher writes each request to the transport's write stream as a
`SessionMessage` in the task of its caller, and the Streamable HTTP transport sends the
per-message `ClientMessageMetadata.headers` with that request's POST.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from mcp import MCPError
from mcp.shared.message import ClientMessageMetadata, SessionMessage
from mcp_types import INVALID_REQUEST, JSONRPCRequest

from adapters._sdk import Transport, TransportStreams
from adapters.write_stream import WriteStreamWrapper
from hub.config.hub import DEFAULT_MAX_FEDERATION_DEPTH, HUB_ID_PATTERN
from hub.errors import HubError, ServerError
from hub.trace_context import Injector, outbound_fields

__all__ = [
    "CHAIN_HEADER",
    "CHAIN_META_KEY",
    "FEDERATION_KEY",
    "FEDERATION_LOOP",
    "MAX_ADVERTISED_HUBS",
    "Advertisement",
    "Federation",
    "FederationLoop",
    "LoopingServer",
    "inbound_chain",
    "looping_server",
]

logger = logging.getLogger(__name__)

CHAIN_HEADER: Final = "Mcp-Hub-Chain"
"""HTTP header of the hub chain on Streamable HTTP requests: hub ids, comma-separated, oldest first."""
CHAIN_META_KEY: Final = "io.mcphub/chain"
"""Request `params._meta` key of the hub chain (every transport): a JSON list of hub ids."""
FEDERATION_KEY: Final = "io.mcphub/federation"
"""Key of a hub's advertisement in `capabilities.experimental` and in list results' `_meta`."""
FEDERATION_LOOP: Final = -32010
"""JSON-RPC error code of a request refused for its hub chain (implementation-defined range)."""
MAX_ADVERTISED_HUBS: Final = 256
"""At most this many hub ids are taken from one server's advertisement (the rest are ignored)."""
MAX_CHAIN_ENTRIES: Final = 65
"""A chain is read up to this many entries (more than any allowed `max_federation_depth`)."""

_HUB_ID = re.compile(HUB_ID_PATTERN)

inbound_chain: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("mcphub_hub_chain", default=())
"""The hub chain of the client request being served (set by the faces for its duration); empty
for work the hub does on its own."""


class FederationLoop(HubError):
    """A request refused for its hub chain: it already passed through this hub (`loop`), it
    passed through more than `max_federation_depth` hubs (`too_deep`), or the chain is not a
    list of hub ids (`malformed`). JSON-RPC `FEDERATION_LOOP` (-32600 for `malformed`) at the
    faces, with `data = {"reason", "hub_id", "chain", "max_federation_depth"}`."""

    def __init__(
        self, reason: Literal["loop", "too_deep", "malformed"], hub_id: str, chain: tuple[str, ...], max_depth: int
    ) -> None:
        self.reason = reason
        self.hub_id = hub_id
        self.chain = chain
        self.max_depth = max_depth
        path = " -> ".join((*chain, hub_id))
        if reason == "loop":
            message = f"federation loop: {path} (this request already passed through hub {hub_id!r})"
        elif reason == "too_deep":
            message = (
                f"federation chain too long: {path} ({len(chain)} hubs before this one; "
                f"max_federation_depth is {max_depth})"
            )
        else:
            message = f"malformed hub chain ({CHAIN_HEADER} / _meta {CHAIN_META_KEY}): expected hub ids"
        super().__init__(message)

    @property
    def code(self) -> int:
        return INVALID_REQUEST if self.reason == "malformed" else FEDERATION_LOOP

    @property
    def data(self) -> dict[str, Any]:
        return {
            "reason": "federation_loop" if self.reason == "loop" else f"federation_{self.reason}",
            "hub_id": self.hub_id,
            "chain": list(self.chain),
            "max_federation_depth": self.max_depth,
        }


class LoopingServer(ServerError):
    """A server is this hub, or federates it (its advertisement lists this hub), or refused this
    hub's own request as a federation loop: serving it would feed the catalog back into itself.
    The server is held `failed` until a reload or restart."""

    def __init__(self, server_id: str, detail: str) -> None:
        super().__init__(server_id, f"federation loop: {detail}")


@dataclass(frozen=True, slots=True)
class Advertisement:
    """What a hub says about itself: its `hub_id` and the `hubs` it federates (itself included)."""

    hub_id: str
    hubs: frozenset[str]

    @classmethod
    def parse(cls, value: Any) -> Advertisement | None:
        """The advertisement in a `{"hub_id": ..., "hubs": [...]}` object, or None when `value`
        is not one (a server that is not a hub). Invalid ids are skipped; at most
        `MAX_ADVERTISED_HUBS` are kept."""
        if not isinstance(value, Mapping):
            return None
        hub_id = value.get("hub_id")
        if not isinstance(hub_id, str) or not _HUB_ID.fullmatch(hub_id):
            return None
        listed = value.get("hubs")
        hubs = {hub_id}
        if isinstance(listed, list):
            for item in listed[:MAX_ADVERTISED_HUBS]:
                if isinstance(item, str) and _HUB_ID.fullmatch(item):
                    hubs.add(item)
        return cls(hub_id, frozenset(hubs))

    @classmethod
    def found_in(cls, *places: Mapping[str, Any] | None) -> Advertisement | None:
        """The first advertisement under `FEDERATION_KEY` in `places` (a list result's `_meta`,
        `capabilities.experimental`), or None."""
        for place in places:
            if place is not None and FEDERATION_KEY in place:
                found = cls.parse(place[FEDERATION_KEY])
                if found is not None:
                    return found
        return None

    def as_json(self) -> dict[str, Any]:
        return {"hub_id": self.hub_id, "hubs": sorted(self.hubs)}


def _parse_chain(value: Any, source: str) -> tuple[str, ...] | None:
    """A chain from `_meta` (a list) or the header (a comma-separated string); None if malformed."""
    if value is None:
        return ()
    if source == "header":
        if not isinstance(value, str):
            return None
        items: list[Any] = [item.strip() for item in value.split(",", MAX_CHAIN_ENTRIES)[:MAX_CHAIN_ENTRIES]]
        if items == [""]:
            return ()
    elif isinstance(value, list):
        items = value[:MAX_CHAIN_ENTRIES]
    else:
        return None
    if not all(isinstance(item, str) and _HUB_ID.fullmatch(item) for item in items):
        return None
    return tuple(items)


Listener = Callable[[], Awaitable[None]]


class Federation:
    """This hub's side of federation: its id, the chain rules, and the advertisements of the
    servers it is connected to.

    :param hub_id: this hub's id (`Hub.hub_id`: config `hub_id`, else the state file's).
    :param max_depth: `max_federation_depth`, hubs a request may have passed through before
        this one. Default: 4.
    :param inject: writes the current trace context into outgoing requests (tracing on:
        `CallTracer.inject`); None forwards the served request's trace context unchanged.
    """

    def __init__(
        self, hub_id: str, max_depth: int = DEFAULT_MAX_FEDERATION_DEPTH, *, inject: Injector | None = None
    ) -> None:
        self.hub_id = hub_id
        self.max_depth = max_depth
        self.inject = inject
        self._records: dict[object, tuple[str, Advertisement]] = {}
        self._listeners: list[Listener] = []

    # ---- inbound: the chain of a request to this hub ----

    def check_inbound(self, meta: Mapping[str, Any] | None, headers: Mapping[str, str] | None) -> tuple[str, ...]:
        """The hub chain a request arrived with (`_meta` and, over HTTP, the header), checked.

        :raises FederationLoop: the chain holds this hub's id or more than `max_depth` hubs,
            or is malformed.
        """
        meta_chain = _parse_chain(meta.get(CHAIN_META_KEY) if meta else None, "meta")
        header_chain = _parse_chain(headers.get(CHAIN_HEADER) if headers is not None else None, "header")
        if meta_chain is None or header_chain is None:
            raise FederationLoop("malformed", self.hub_id, (), self.max_depth)
        chain = meta_chain if len(meta_chain) >= len(header_chain) else header_chain
        if self.hub_id in meta_chain or self.hub_id in header_chain:
            raise FederationLoop("loop", self.hub_id, chain, self.max_depth)
        if len(chain) > self.max_depth:
            raise FederationLoop("too_deep", self.hub_id, chain, self.max_depth)
        return chain

    # ---- outbound: the chain of a request from this hub ----

    def outbound_chain(self) -> tuple[str, ...]:
        """The chain for a request sent now: the served request's chain plus this hub."""
        return (*inbound_chain.get(), self.hub_id)

    def outbound_trace(self) -> Mapping[str, str] | None:
        """The trace context fields for a request sent now (`hub.trace_context.outbound_fields`)."""
        return outbound_fields(self.inject)

    def stamp(self, transport: Transport) -> contextlib.AbstractAsyncContextManager[TransportStreams]:
        """`transport` whose every outgoing request carries `outbound_chain()` (in `_meta`, and
        as the `Mcp-Hub-Chain` header where the transport sends per-message headers) and
        `outbound_trace()` (in `_meta` and as headers of the same names), in one pass."""
        return _stamped(transport, self)

    # ---- advertisements ----

    def hubs(self, scope: str | None = None) -> frozenset[str]:
        """This hub and every hub its connected servers advertise (`scope`: only that server's)."""
        hubs = {self.hub_id}
        for server_id, advertisement in self._records.values():
            if scope is None or server_id == scope:
                hubs |= advertisement.hubs
        return frozenset(hubs)

    def advertisement(self, scope: str | None = None) -> dict[str, Any]:
        """What this hub advertises (the value under `FEDERATION_KEY`); `scope`: the per-server
        face of that server_id."""
        return Advertisement(self.hub_id, self.hubs(scope)).as_json()

    def add_listener(self, listener: Listener) -> None:
        """Awaited whenever `hubs()` changes (the faces tell their clients to re-list)."""
        self._listeners.append(listener)

    async def admit(self, owner: object, server_id: str, advertisement: Advertisement | None) -> None:
        """Record what the server connection `owner` (of logical `server_id`) advertises, or
        refuse it when it is this hub or federates it (then nothing is recorded for it).

        :raises LoopingServer: the advertisement names this hub.
        """
        if advertisement is not None and self.hub_id in advertisement.hubs:
            self.forget(owner)
            if advertisement.hub_id == self.hub_id:
                detail = f"server {server_id!r} is this hub ({self.hub_id})"
            else:
                detail = (
                    f"server {server_id!r} is hub {advertisement.hub_id!r}, which federates this hub "
                    f"({self.hub_id}): {', '.join(sorted(advertisement.hubs))}"
                )
            raise LoopingServer(server_id, detail)
        before = self.hubs()
        if advertisement is None:
            self._records.pop(owner, None)
        else:
            self._records[owner] = (server_id.partition("/")[0], advertisement)
        await self._changed(before)

    def forget(self, owner: object) -> None:
        """Drop what `owner` advertised (its connection is down or gone). Listeners are not
        told: the server's names leave the catalog at the same time, which tells clients to
        re-list, and a stale, larger set can only name a loop that was real."""
        self._records.pop(owner, None)

    async def _changed(self, before: frozenset[str]) -> None:
        if self.hubs() == before:
            return
        logger.info("federated hubs: %s", ", ".join(sorted(self.hubs())))
        for listener in list(self._listeners):
            try:
                await listener()
            except Exception:
                logger.exception("a federation change listener failed")


def looping_server(server_id: str, exc: BaseException) -> LoopingServer | None:
    """The `LoopingServer` in `exc` (a connection's failure, exception groups walked), or one
    made from a server's `FEDERATION_LOOP` refusal of this hub's own request (the server is
    this hub, or a hub id clash); None when the failure is something else."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = looping_server(server_id, inner)
            if found is not None:
                return found
        return None
    if isinstance(exc, LoopingServer):
        return exc
    if isinstance(exc, MCPError) and exc.code == FEDERATION_LOOP:
        data = exc.error.data
        if isinstance(data, dict) and str(data.get("reason", "")).startswith("federation_"):
            return LoopingServer(server_id, f"the server refused this hub's request: {exc.message}")
    cause = exc.__cause__
    return looping_server(server_id, cause) if cause is not None else None


# ---------------------------------------------------------------- the outgoing side


class _ChainingWriteStream(WriteStreamWrapper):
    """A transport write stream that adds the hub chain and the trace context to every
    JSON-RPC request written.

    The SDK writes a request in the task of its caller, so `inbound_chain` and the trace
    context (context variables) are those of the client request and attempt it is sent for."""

    def __init__(self, inner: Any, federation: Federation) -> None:
        super().__init__(inner)
        self._federation = federation

    async def send(self, item: Any) -> None:
        if isinstance(item, SessionMessage) and isinstance(item.message, JSONRPCRequest):
            item = _with_chain(item, self._federation.outbound_chain(), self._federation.outbound_trace())
        await self._inner.send(item)


def _with_chain(item: SessionMessage, chain: tuple[str, ...], trace: Mapping[str, str] | None) -> SessionMessage:
    request = item.message
    assert isinstance(request, JSONRPCRequest)
    params = dict(request.params or {})
    meta = params.get("_meta")
    trace = trace or {}
    params["_meta"] = {**(meta if isinstance(meta, dict) else {}), CHAIN_META_KEY: list(chain), **trace}
    metadata = item.metadata
    header = {CHAIN_HEADER: ",".join(chain), **trace}
    if isinstance(metadata, ClientMessageMetadata):
        metadata = dataclasses.replace(metadata, headers={**(metadata.headers or {}), **header})
    elif metadata is None:
        metadata = ClientMessageMetadata(headers=header)
    return SessionMessage(message=request.model_copy(update={"params": params}), metadata=metadata)


@contextlib.asynccontextmanager
async def _stamped(transport: Transport, federation: Federation) -> AsyncIterator[TransportStreams]:
    async with transport as (read_stream, write_stream):
        yield read_stream, _ChainingWriteStream(write_stream, federation)  # type: ignore[misc]
