"""Every private name of the `mcp` SDK (2.3) that the hub relies on, each behind one alias or
function here with the reason it is needed, so an SDK upgrade has one place to look.
`tests/test_sdk_private_names.py` fails, naming the missing one, when an upgrade removes any
of `PRIVATE_NAMES`.

- `Transport`, `TransportStreams` (`mcp.client._transport`): the SDK's transport protocol types;
  2.3 has no public alias for them (typing only).
- `create_process`, `drain_stdout`, `stop_process` (`mcp.client.stdio`): the SDK's own process
  start (own process group), stdout drain and shutdown escalation (close stdin, 2 s, SIGTERM
  the group, 2 s, SIGKILL); the hub frames stdout itself (`adapters.stdio`), so it cannot use
  the public `stdio_client` whole.
- `send_raw_request` (`ClientSession._stamp`, `ClientSession._dispatcher`): a request whose
  result is not validated against the negotiated revision (2025-11-25 task results).
- `stamp_each_request` (`ClientSession._stamp`): a per-request `_meta` addition (the calling
  client's capabilities, 2026-07-28); the SDK stamps the connection's own with no override.
- `connection_of`, `on_connection_closed` (`ServerSession._connection`): the lowlevel server
  has no public handle on a handshake-era client connection outside a request (SDK-NOTES 2.5).
- `handle_modern_request` (`mcp.server._streamable_http_modern`): the SDK's handler of one
  modern-era (2026-07-28) POST, which its `StreamableHTTPSessionManager` calls for a request
  whose `MCP-Protocol-Version` is not a handshake-era version. The hub serves Streamable HTTP
  with a session manager of its own (`hub.cluster.sessions`: sealed session ids any replica
  serves, which the SDK's manager cannot mint or rebuild), and routes modern-era requests to
  the same handler so both eras behave exactly as with the SDK's manager.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from mcp.client._transport import Transport, TransportStreams
from mcp.client.session import ClientSession
from mcp.client.stdio import _create_platform_compatible_process as create_process
from mcp.client.stdio import _drain_stdout as drain_stdout
from mcp.client.stdio import _stop_server_process as stop_process
from mcp.server._streamable_http_modern import handle_modern_request
from mcp.server.session import ServerSession
from mcp.shared.dispatcher import CallOptions, ProgressFnT

__all__ = [
    "PRIVATE_NAMES",
    "Transport",
    "TransportStreams",
    "connection_of",
    "create_process",
    "drain_stdout",
    "handle_modern_request",
    "on_connection_closed",
    "send_raw_request",
    "stamp_each_request",
    "stop_process",
]

PRIVATE_NAMES: Final[tuple[tuple[str, str], ...]] = (
    ("mcp.client._transport", "Transport"),
    ("mcp.client._transport", "TransportStreams"),
    ("mcp.client.stdio", "_create_platform_compatible_process"),
    ("mcp.client.stdio", "_drain_stdout"),
    ("mcp.client.stdio", "_stop_server_process"),
    ("mcp.server._streamable_http_modern", "handle_modern_request"),
)
"""`(module, name)` of every private module-level name imported here."""

PRIVATE_ATTRIBUTES: Final[tuple[tuple[str, str], ...]] = (
    ("ClientSession", "_stamp"),
    ("ClientSession", "_dispatcher"),
    ("ServerSession", "_connection"),
)
"""`(class, attribute)` of every private instance attribute used here (checked on live objects)."""


async def send_raw_request(
    session: ClientSession,
    method: str,
    params: Mapping[str, Any],
    *,
    on_progress: ProgressFnT | None = None,
) -> dict[str, Any]:
    """Send one request on `session` and return its result as the server sent it (a JSON
    object), without the SDK's validation of the result against the negotiated revision.

    Why: the 2025-11-25 revision answers a task-augmented `tools/call` (`params.task`) with a
    `CreateTaskResult` (`{"task": {...}}`, 2025-11-25 "Tasks"), but `ClientSession.send_request`
    validates every `tools/call` result of a 2025-11-25 session as a `CallToolResult` (its
    surface map leaves the experimental tasks out), so the public API rejects the answer. The
    request still goes through the session's own stamping (protocol version header) and its
    dispatcher, so ids, timeouts, progress and cancellation behave as for any other request.

    :param on_progress: receives `notifications/progress` for this request (the request id is
        its progress token).
    :raises MCPError: the server's error response, or CONNECTION_CLOSED.
    """
    data: dict[str, Any] = {"method": method, "params": dict(params)}
    opts: CallOptions = {}
    session._stamp(data, opts)
    if on_progress is not None:
        opts["on_progress"] = on_progress
    return await session._dispatcher.send_raw_request(method, data.get("params"), opts)


def stamp_each_request(session: ClientSession, add: Callable[[dict[str, Any]], None]) -> None:
    """After the SDK stamps a request of `session` (protocol version, the connection's own
    client info and capabilities in `_meta`), call `add(data)` with the request (`{"method",
    "params"}`) so it can add or replace per-request `_meta` entries."""
    session_any: Any = session
    original = session_any._stamp

    def stamp(data: dict[str, Any], opts: Any) -> None:
        original(data, opts)
        add(data)

    session_any._stamp = stamp


def connection_of(session: ServerSession) -> object:
    """The client connection a handshake-era server session belongs to: one object per
    connection, the same across the requests of that connection (an identity key)."""
    connection: object = session._connection
    return connection


def on_connection_closed(session: ServerSession, callback: Callable[[], None]) -> None:
    """Call `callback` once, when the client connection of `session` closes (its exit stack
    unwinds: DELETE, idle expiry, the client gone, the hub stopping)."""
    session._connection.exit_stack.callback(callback)
