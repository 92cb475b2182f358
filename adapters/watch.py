"""A transport wrapper that tells when the server side of a connection has ended.

`mcp.Client` offers no event for "the connection is gone" while idle; `watch_closed` sets an
`anyio.Event` when the transport's read stream ends (a stdio child exited, an HTTP stream broke)
or the transport exits, so a supervisor can reconnect without waiting for the next request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import anyio

from adapters._sdk import Transport, TransportStreams

__all__ = ["watch_closed"]


class _WatchedReadStream:
    """A transport's read stream that sets `closed` when the server side ends."""

    def __init__(self, inner: Any, closed: anyio.Event) -> None:
        self._inner = inner
        self._closed = closed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._closed.set()
            raise

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._closed.set()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._closed.set()
        result: bool | None = await self._inner.__aexit__(exc_type, exc, tb)
        return result


@asynccontextmanager
async def watch_closed(transport: Transport, closed: anyio.Event) -> AsyncIterator[TransportStreams]:
    """Enter `transport`; `closed` is set once its read stream ends or it exits."""
    try:
        async with transport as (read_stream, write_stream):
            yield _WatchedReadStream(read_stream, closed), write_stream
    finally:
        closed.set()
