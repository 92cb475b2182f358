"""A value a request handler leaves for a server middleware around it.

The SDK shapes and re-validates every handler result inside its handler chain (mcp 2.3,
`mcp.server.runner`), and only a middleware's own result escapes that. So when the hub has a
result already in wire form (a prepared list page, a server's plain answer, a handshake-era
`CreateTaskResult`), the handler returns what the SDK expects and leaves the real value in a
`HandlerSlot`; the middleware that opened the slot around the chain takes it out afterwards and
puts it into (or in place of) the SDK-shaped result. `hub.prepared_lists`, `hub.wire_results` and
`hub.endpoint.tasks` use one each.

A slot lives in a context variable, so it belongs to one request (the lean path and the SDK's
dispatcher both run a request's middleware and handler in one task).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["HandlerSlot"]

_T = TypeVar("_T")
_R = TypeVar("_R")


class _Held(Generic[_T]):
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: _T | None = None


class HandlerSlot(Generic[_T]):
    """One kind of value handlers leave for a middleware (module docstring).

    :param name: the context variable's name (for debugging).
    """

    def __init__(self, name: str) -> None:
        self._var: contextvars.ContextVar[_Held[_T] | None] = contextvars.ContextVar(name, default=None)

    @property
    def open(self) -> bool:
        """Whether a middleware waits for a value in this request."""
        return self._var.get() is not None

    def leave(self, value: _T) -> bool:
        """Leave `value` for the middleware around this request; False when none opened the slot
        (the caller then returns the value in the SDK's own form)."""
        held = self._var.get()
        if held is None:
            return False
        held.value = value
        return True

    async def around(self, call_next: Callable[[], Awaitable[_R]]) -> tuple[_R, _T | None]:
        """Run `call_next()` with the slot open: its result, and the value the handler left
        (None when it left none)."""
        held: _Held[_T] = _Held()
        token = self._var.set(held)
        try:
            result = await call_next()
        finally:
            self._var.reset(token)
        return result, held.value
