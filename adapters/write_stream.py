"""A base for wrappers of a transport's write stream (the stream the SDK writes each outgoing
`SessionMessage` to): everything is passed through to the wrapped stream; a subclass overrides
`send` to look at or replace each message on its way out (the hub marks delivery and adds its
hub chain and trace context this way)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

__all__ = ["WriteStreamWrapper"]


class WriteStreamWrapper:
    """Delegates every attribute and operation of a transport write stream to `inner`.

    :param inner: the transport's write stream (an anyio send stream of `SessionMessage`).
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send(self, item: Any) -> None:
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> WriteStreamWrapper:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        result: bool | None = await self._inner.__aexit__(exc_type, exc, tb)
        return result
