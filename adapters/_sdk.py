"""Private names of the `mcp` SDK (2.3) that the hub relies on, each in one function with the
reason it is needed. `tests/test_tasks.py` fails when an SDK upgrade removes one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.client.session import ClientSession
from mcp.shared.dispatcher import CallOptions, ProgressFnT


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
    request still goes through the session's own stamping (`ClientSession._stamp`: protocol
    version header) and its dispatcher (`ClientSession._dispatcher`), so ids, timeouts,
    progress and cancellation behave as for any other request.

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
