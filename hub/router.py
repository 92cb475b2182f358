"""Dispatch of routed requests to the server connection that owns them.

The endpoint resolves an exposed name to a `Route` (catalog); the router sends the request to
that route's server under the original name, within the server's `timeout_seconds`, and returns
the server's result unchanged (content, structuredContent, isError). Retry, fallback and circuit
breaking belong here too (see the resilience issue); today a route has exactly one server.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.shared.dispatcher import ProgressFnT

from hub.errors import ServerUnavailable
from hub.servers import Fleet, ServerConnection

__all__ = ["ProgressFn", "Router"]

ProgressFn = ProgressFnT
"""`(progress, total, message)`, as `notifications/progress` carries them."""


class Router:
    """Sends requests to server connections by server_id.

    :raises ServerUnavailable: (every method) the server is not configured or not connected.
    :raises ServerTimeout: (every method) no answer within the server's `timeout_seconds`.
    :raises MCPError: (every method) the server's own error response, code unchanged.
    """

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def _connection(self, server_id: str) -> ServerConnection:
        connection = self._fleet.get(server_id)
        if connection is None:
            raise ServerUnavailable(server_id, "not configured")
        return connection

    def require_ready(self, server_id: str) -> None:
        """:raises ServerUnavailable: `server_id` is not configured or not connected."""
        self._connection(server_id).require_ready()

    async def call_tool(
        self,
        server_id: str,
        name: str,
        arguments: dict[str, Any] | None,
        progress: ProgressFn | None = None,
        **mrtr: Any,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """`tools/call` of original tool `name` on `server_id`; progress is relayed to `progress`.

        :param mrtr: `input_responses`, `request_state`, `allow_input_required`, `log_level`,
            passed to `ServerConnection.call_tool` (2026-07-28 multi-round-trip requests).
        """
        return await self._connection(server_id).call_tool(name, arguments, progress_callback=progress, **mrtr)

    async def read_resource(
        self, server_id: str, uri: str, **mrtr: Any
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        """`resources/read` of original `uri` on `server_id`; `mrtr` as `call_tool`."""
        return await self._connection(server_id).read_resource(uri, **mrtr)

    async def get_prompt(
        self, server_id: str, name: str, arguments: dict[str, str] | None, **mrtr: Any
    ) -> types.GetPromptResult | types.InputRequiredResult:
        """`prompts/get` of original prompt `name` on `server_id`; `mrtr` as `call_tool`."""
        return await self._connection(server_id).get_prompt(name, arguments, **mrtr)

    async def complete(
        self,
        server_id: str,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
    ) -> types.CompleteResult:
        """`completion/complete` on `server_id`; `ref` already carries the original name or URI template."""
        return await self._connection(server_id).complete(ref, argument, context_arguments)
