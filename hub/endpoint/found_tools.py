"""Found tools (search mode's `expose_found`, the on-demand style): the tools a client's searches
found are added to that client's `tools/list`, and the client is told with `list_changed`.

Who "the client" is depends on the era:

- **handshake era**: the session (`session:<connection>`); its found set is dropped when the
  session ends, and `notifications/tools/list_changed` goes to that session only.
- **modern era** (2026-07-28): there is no session, so the found set belongs to the principal
  (`principal:<id>`, the key the hub already uses for a modern-era client's state): every
  client of that principal on that face shares it, which also keeps `tools/list` a function of
  the authorization presented, never of a connection (MCP: a list "MUST NOT vary
  per-connection"). A set is forgotten `session_idle_timeout_seconds` after its last search,
  and at most `MAX_CLIENTS` sets are kept (least recently used go first). The change is
  announced as a `tools` event on that principal's own `subscriptions/listen` streams only
  (`TargetedBus`), not to every listener of the face.

Sets live in this process: behind several replicas, a modern-era client whose next request
lands on another replica sees that replica's set for it (its found tools stay callable by name
and through `call_tool` everywhere; only the listing differs).
"""

from __future__ import annotations

import contextvars
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

import anyio.lowlevel
from cachetools import TTLCache
from mcp.server.subscriptions import InMemorySubscriptionBus, ServerEvent

__all__ = ["LISTENER_KEY", "MAX_CLIENTS", "FoundTools", "TargetedBus"]

logger = logging.getLogger(__name__)

MAX_CLIENTS: Final = 10_000
"""Most clients (sessions or principals) whose found sets one face keeps."""

LISTENER_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar("hub_listener_key", default=None)
"""The client key of the `subscriptions/listen` stream being opened in this context (set by the
faces' listen handler around the SDK's, which subscribes to the bus in the same task)."""


class FoundTools:
    """Per client key, the exposed names its searches found, least recently found first.

    :param ttl_seconds: how long a set is kept after its last change.
    :param max_clients: most sets kept (least recently used dropped first).
    """

    def __init__(self, ttl_seconds: float, max_clients: int = MAX_CLIENTS) -> None:
        self._sets: TTLCache[str, OrderedDict[str, None]] = TTLCache(max_clients, ttl_seconds)

    def add(self, client_key: str, names: Iterable[str], cap: int) -> bool:
        """Record that `client_key` found `names` (most relevant first), keeping its `cap` most
        recently found. :returns: whether the set of names changed (then its list did)."""
        found = self._sets.get(client_key)
        found = OrderedDict() if found is None else found
        before = set(found)
        for name in reversed(list(names)):  # the best hit ends up most recent
            found[name] = None
            found.move_to_end(name)
        while len(found) > cap:
            found.popitem(last=False)
        self._sets[client_key] = found  # also restarts its time to live
        return set(found) != before

    def names(self, client_key: str) -> list[str]:
        """The names `client_key` found (empty when none, or forgotten)."""
        found = self._sets.get(client_key)
        return list(found) if found is not None else []

    def forget(self, client_key: str) -> None:
        """Drop the set of a client that is gone (a handshake-era session that ended)."""
        self._sets.pop(client_key, None)


class TargetedBus(InMemorySubscriptionBus):
    """An `InMemorySubscriptionBus` that can also deliver to the listen streams of one client:
    each listener is registered under the `LISTENER_KEY` of the context that subscribed it."""

    def __init__(self) -> None:
        super().__init__()
        self._targets: dict[str, dict[object, Callable[[ServerEvent], None]]] = {}

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        unsubscribe = super().subscribe(listener)
        key = LISTENER_KEY.get()
        if key is None:
            return unsubscribe
        token = object()
        self._targets.setdefault(key, {})[token] = listener

        def both() -> None:
            unsubscribe()
            targets = self._targets.get(key)
            if targets is not None:
                targets.pop(token, None)
                if not targets:
                    del self._targets[key]

        return both

    def listeners_of(self, key: str) -> int:
        """How many open listen streams `key` has on this bus."""
        return len(self._targets.get(key, {}))

    async def publish_to(self, key: str, event: ServerEvent) -> None:
        """Deliver `event` to the listen streams of client `key` only (none open: nothing)."""
        for listener in list(self._targets.get(key, {}).values()):
            try:
                listener(event)
            except Exception:  # fan-out boundary, as the SDK's bus: one bad listener is skipped
                logger.exception("subscription listener raised; continuing")
        await anyio.lowlevel.checkpoint()
