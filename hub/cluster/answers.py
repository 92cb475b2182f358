"""Client answers to the hub's server-to-client requests, routed to the replica that asked.

In the handshake era the hub sends requests to a client in the middle of a call (sampling,
elicitation, roots relayed from a server: MCP 2025-11-25 "Sampling", "Elicitation") on the SSE
stream of that call's POST, held by the replica serving the call. The client answers with a
POST of its own, which a balancer without stickiness may send to another replica. So, with
Redis:

- every request a replica sends to a client gets the id `mcphub:<replica id>:<n>` (`n` the
  SDK's own id, a JSON-RPC id may be a string), so that the answer names the replica waiting;
- a replica receiving an answer whose id names another replica publishes it on that replica's
  channel `answers:<replica id>` and answers the client 202, as it would for an answer of its
  own; the waiting replica hands it to its copy of the session (the id back to `n`), and the
  call goes on.

An answer to a replica that is gone (stopped, or its copy of the session freed) is dropped
(logged): the call it belonged to ended with it. Without Redis nothing is renamed or forwarded.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Protocol, Self

from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCRequest

from hub.cluster.store import SharedStateUnavailable, SharedStore, listening

__all__ = ["ID_PREFIX", "Answers", "Routed"]

logger = logging.getLogger(__name__)

ID_PREFIX: Final = "mcphub:"
"""What the ids of the hub's requests to clients start with (with Redis)."""


class _Sink(Protocol):
    async def send(self, item: SessionMessage, /) -> None: ...
    async def aclose(self) -> None: ...


class _RenamingWriteStream:
    """The session's write stream, giving each request to the client a replica-named id."""

    def __init__(self, inner: _Sink, prefix: str) -> None:
        self._inner = inner
        self._prefix = prefix

    async def send(self, item: SessionMessage, /) -> None:
        message = item.message
        if isinstance(message, JSONRPCRequest) and isinstance(message.id, int):
            renamed = message.model_copy(update={"id": f"{self._prefix}{message.id}"})
            item = SessionMessage(message=renamed, metadata=item.metadata)
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


@dataclass(frozen=True, slots=True)
class Routed:
    """Where a POST body goes: here (`body`, an answer's id given back to the SDK), or to
    the replica `forward_to`."""

    body: bytes
    forward_to: str | None = None


class Answers:
    """This replica's side of the routing (see the module docstring).

    :param store: the shared store (does nothing unless `store.shared`).
    """

    def __init__(self, store: SharedStore) -> None:
        self._store = store
        self._prefix = f"{ID_PREFIX}{store.replica_id}:"
        self._receivers: dict[str, Callable[[bytes], Awaitable[None]]] = {}
        self.forwarded = 0
        """Answers this replica passed to another (for tests and diagnostics)."""
        self.received = 0
        """Answers another replica passed to this one and a session here took."""

    @property
    def enabled(self) -> bool:
        """Whether answers are routed (replicas share a Redis)."""
        return self._store.shared

    def write_stream(self, inner: Any) -> Any:
        """`inner` (a session's write stream) renaming the ids of requests to the client."""
        return _RenamingWriteStream(inner, self._prefix) if self.enabled else inner

    def route(self, body: bytes) -> Routed:
        """Where the POST `body` of a session's client goes (anything but a JSON-RPC answer
        with a replica-named id stays here unchanged)."""
        if not self.enabled or (b'"result"' not in body and b'"error"' not in body):
            return Routed(body)
        try:
            message = json.loads(body)
        except ValueError:
            return Routed(body)
        if not isinstance(message, dict) or "method" in message:
            return Routed(body)
        answer_id = message.get("id")
        if not isinstance(answer_id, str) or not answer_id.startswith(ID_PREFIX):
            return Routed(body)
        replica, _, number = answer_id[len(ID_PREFIX) :].rpartition(":")
        if not number.isdigit():
            return Routed(body)
        if replica != self._store.replica_id:
            return Routed(body, forward_to=replica)
        return Routed(json.dumps({**message, "id": int(number)}).encode())

    async def forward(self, replica: str, session: str, body: bytes) -> None:
        """Pass the answer `body` of the session keyed `session` to `replica`; lost (logged)
        while Redis is unavailable."""
        payload = json.dumps({"session": session, "body": body.decode(errors="replace")}).encode()
        try:
            await self._store.publish(f"answers:{replica}", payload)
        except SharedStateUnavailable as exc:
            logger.warning("an answer for replica %s of session %s is lost: %s", replica, session, exc.reason)
            return
        self.forwarded += 1

    def receive(self, session: str, deliver: Callable[[bytes], Awaitable[None]]) -> Callable[[], None]:
        """Hand answers for the session keyed `session` to `deliver(body)` (the id already
        given back); returns the function that stops it."""
        self._receivers[session] = deliver

        def stop() -> None:
            if self._receivers.get(session) is deliver:
                del self._receivers[session]

        return stop

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Take answers from the other replicas while the block runs (with Redis only)."""
        async with listening(self._listen, enabled=self.enabled):
            yield

    async def _listen(self) -> None:
        async with self._store.subscribe(f"answers:{self._store.replica_id}") as items:
            async for item in items:
                if not isinstance(item, bytes):
                    continue
                try:
                    message = json.loads(item)
                    session, body = str(message["session"]), str(message["body"]).encode()
                except (ValueError, KeyError, TypeError):
                    logger.warning("dropped a malformed forwarded answer")
                    continue
                deliver = self._receivers.get(session)
                if deliver is None:
                    logger.info("dropped an answer for session %s: not held here any more", session)
                    continue
                routed = self.route(body)
                if routed.forward_to is not None:
                    continue  # not ours: never passed on twice
                try:
                    await deliver(routed.body)
                except Exception:  # one session's failure must not stop the others' answers
                    logger.exception("an answer for session %s could not be delivered", session)
                    continue
                self.received += 1
