"""A routed request sent in its caller's era, and the answer made the hub's own.

The handlers (`hub.endpoint.handlers.FaceHandlers.routed`) hand every routed request here with a `send`
that reaches the router; what happens depends on both sides' eras (README "Server-to-client
traffic and protocol eras"):

- a handshake-era client's request is sent as is; when the server turns out to push requests
  over its modern-era connection (`hub.push_era.PushNeedsHandshakeEra`), once more;
- a modern-era client's request resuming a bridged call (`requestState` is a hub handle) goes
  to that call (`hub.endpoint.era_bridge.Bridge.resume`);
- a modern-era client's request to a modern-era server is passed through with its
  `inputResponses` and the server's own `requestState` (unwrapped; an `InputRequiredResult`
  comes back with its state wrapped again for the hub's `requestState` boundary);
- a modern-era client's request to a handshake-era server is bridged (`Bridge.start`): the
  server's questions become `InputRequiredResult` rounds.

Every answer leaves without the server's hop-level `_meta` stamps (`restamped`): the hub's own
are the ones its clients see.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import mcp_types as types
from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp_types import INVALID_PARAMS, PROTOCOL_VERSION_META_KEY, SERVER_INFO_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from hub.endpoint.era_bridge import HANDLE_PREFIX, SERVER_STATE_PREFIX
from hub.endpoint.face_services import FaceServices
from hub.endpoint.server_requests import SessionChannel
from hub.push_era import PushNeedsHandshakeEra
from hub.wire_results import WireResult

__all__ = ["restamped", "send_in_callers_era"]

_ResultT = TypeVar("_ResultT", bound=types.Result)

_HOP_META_KEYS = (SERVER_INFO_META_KEY, PROTOCOL_VERSION_META_KEY)
"""`_meta` stamps that describe one hop (who answered, in which era): a server's stamps are
dropped so that the hub's own are the ones its clients see."""


async def send_in_callers_era(
    ctx: ServerRequestContext[Any],
    channel: SessionChannel,
    services: FaceServices,
    server_id: str,
    input_responses: types.InputResponses | None,
    request_state: str | None,
    send: Callable[..., Awaitable[types.Result]],
) -> Any:
    """The answer to one routed request to `server_id`, sent by `send` (which takes the
    modern era's `allow_input_required`, `input_responses` and `request_state` keywords) in the
    era of the client of `ctx` (see the module docstring); `channel` is that client's.

    :raises MCPError: -32602 `invalid_request_state` for a `requestState` the hub did not make.
    """
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        try:
            return restamped(await send())
        except PushNeedsHandshakeEra:  # sent once more, over the handshake-era connection
            return restamped(await send())
    if request_state is not None and request_state.startswith(HANDLE_PREFIX):
        return await services.bridge.resume(ctx, request_state, input_responses)
    server_state: str | None = None
    if request_state is not None:
        if not request_state.startswith(SERVER_STATE_PREFIX):
            raise MCPError(INVALID_PARAMS, "Invalid or expired requestState", {"reason": "invalid_request_state"})
        server_state = request_state[len(SERVER_STATE_PREFIX) :] or None
    if services.is_modern(server_id):
        try:
            result = await send(allow_input_required=True, input_responses=input_responses, request_state=server_state)
        except PushNeedsHandshakeEra:
            pass  # sent once more below, bridged, over the handshake-era connection
        else:
            return _wrap_server_state(result)
    return restamped(await services.bridge.start(ctx, channel.client_key, channel, send))


def restamped(result: _ResultT) -> _ResultT:
    """`result` without the server's hop-level `_meta` stamps (content is untouched); a
    `hub.wire_results.WireResult` likewise, on its JSON."""
    if isinstance(result, WireResult):
        return cast(_ResultT, result.restamped())
    meta = result.meta
    if not meta or not any(key in meta for key in _HOP_META_KEYS):
        return result
    kept = {key: value for key, value in meta.items() if key not in _HOP_META_KEYS}
    return result.model_copy(update={"meta": kept or None})


def _wrap_server_state(result: types.Result) -> types.Result:
    """A modern-era server's `InputRequiredResult` with its `request_state` wrapped for the
    hub's boundary (sealed on the way out, unwrapped unchanged on the way back)."""
    if isinstance(result, types.InputRequiredResult):
        return result.model_copy(update={"request_state": SERVER_STATE_PREFIX + (result.request_state or "")})
    return restamped(result)
