"""Pins shared by the replicas through Redis (`cluster.redis_url`): a pin made or a definition
approved on one replica is served the same way on every other.

`RedisPinStore` is a `hub.pin_store.PinStore`: the pins document lives in one Redis hash
(`mcphub:pins`), one field per server, pin and pending definition, so that replicas writing at
once merge instead of overwriting each other: each save applies only what this replica changed
since the document it last adopted (fields set or removed), atomically (MULTI/EXEC), then
publishes on the `pins` channel. The state file keeps a copy (written first, as without Redis),
which serves when Redis cannot be reached at start.

`PinSync` runs in the hub's lifespan: on another replica's publication it stores what this
replica has pending, re-reads the hash, adopts it (`hub.pins.Pins.adopt`) and rebuilds the
catalog (clients get `list_changed` when what is served changed).

Redis down: pins and approvals are kept in this replica's memory and state file, and pushed
when Redis is back (what this replica changed since its last adopted document; a replica that
never reached Redis only adds what Redis lacks: a fresh replica never overrides the replicas'
decisions with its own trust on first use), then the replica adopts the merged hash.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from typing import Any, Final, cast

import anyio
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hub.catalog import Catalog
from hub.cluster.redis_store import KEY_PREFIX, REDIS_ERRORS, describe
from hub.cluster.store import SharedStore
from hub.pin_store import PinStore

__all__ = ["CHANNEL", "HASH_KEY", "PinSync", "RedisPinStore", "flatten", "unflatten"]

logger = logging.getLogger(__name__)

HASH_KEY: Final = KEY_PREFIX + "pins"
"""The Redis hash holding the pins document, one field per entry."""

CHANNEL: Final = "pins"
"""The store channel a replica publishes on after changing pins (the message: its replica id)."""

_SECTIONS: Final = ("servers", "pins", "pending")


def flatten(document: Mapping[str, Any]) -> dict[str, str]:
    """The hash fields of a pins document: `["servers", sid]`, `["pins", sid, kind, name]` and
    `["pending", sid, kind, name]` (as JSON) -> the entry (as JSON)."""
    fields: dict[str, str] = {}
    for sid, entry in (document.get("servers") or {}).items():
        fields[json.dumps(["servers", sid])] = json.dumps(entry, sort_keys=True)
    for section in ("pins", "pending"):
        for sid, kinds in (document.get(section) or {}).items():
            for kind, entries in kinds.items():
                for name, entry in entries.items():
                    fields[json.dumps([section, sid, kind, name])] = json.dumps(entry, sort_keys=True)
    return fields


def unflatten(fields: Mapping[bytes | str, bytes | str]) -> dict[str, Any]:
    """The pins document of hash fields (`flatten`'s inverse); malformed fields are skipped."""
    document: dict[str, Any] = {"version": 1, "servers": {}, "pins": {}, "pending": {}}
    for raw_path, raw_entry in fields.items():
        try:
            path = json.loads(raw_path)
            entry = json.loads(raw_entry)
        except ValueError:
            continue
        if not isinstance(path, list) or not path or path[0] not in _SECTIONS or not isinstance(entry, dict):
            continue
        if path[0] == "servers" and len(path) == 2:
            document["servers"][path[1]] = entry
        elif path[0] != "servers" and len(path) == 4:
            document[path[0]].setdefault(path[1], {}).setdefault(path[2], {})[path[3]] = entry
    return document


class RedisPinStore:
    """Pins in Redis, with the state file's copy as the local fallback (module docstring).

    :param url: the Redis URL (`cluster.redis_url`).
    :param timeout_seconds: bound on each Redis call (`cluster.redis_timeout_seconds`).
    :param local: the state file's store (written first on every save; read when Redis is down).
    :param read_only: never write, to Redis or the file (`mcphub check --connect`).
    :param replica_id: published after each save, so the replica ignores its own publication.
    """

    def __init__(
        self, url: str, timeout_seconds: float, local: PinStore, *, read_only: bool = False, replica_id: str = ""
    ) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds, retry=Retry(NoBackoff(), 0)
        )
        self._local = local
        self._read_only = read_only
        self.replica_id = replica_id
        self._base: dict[str, str] | None = None
        """The hash fields of the document last adopted from Redis (None: never reached it)."""
        self.unsynced = False
        """Whether a save could not reach Redis (pushed when Redis is back)."""

    # ---- PinStore ----

    def load(self) -> Mapping[str, Any] | None:
        """The pins in Redis; when Redis holds none yet, the state file's (Redis is seeded with
        them, adding only what it lacks, and read again); when Redis cannot be reached, the
        state file's (pushed and re-read by `PinSync` once Redis answers)."""
        try:
            document = self.pull()
            if document is None:
                local = self._local.load()
                if local is not None and not self._read_only:
                    self._add_missing(flatten(local))
                    document = self.pull()
                elif local is not None:
                    return local
        except REDIS_ERRORS as exc:
            logger.warning("pins: Redis unavailable at start (%s); using the state file's copy", describe(exc))
            self.unsynced = True
            return self._local.load()
        self._base = flatten(document) if document is not None else {}
        return document

    def save(self, document: Mapping[str, Any]) -> None:
        """Write the state file's copy (raises `OSError` as `StatePinStore` does), then apply
        this replica's changes to Redis and publish; a Redis failure is logged once and the
        changes are pushed when Redis is back."""
        self._local.save(document)
        if self._read_only:
            return
        try:
            self.push(document)
        except REDIS_ERRORS as exc:
            if not self.unsynced:
                logger.warning("pins: Redis unavailable (%s); kept locally, shared when it is back", describe(exc))
            self.unsynced = True

    # ---- Redis ----

    def pull(self) -> dict[str, Any] | None:
        """The document in Redis now (None: Redis holds no pins). Blocking: call it in a thread.

        :raises RedisError, OSError: Redis cannot be reached.
        """
        fields = self._client.hgetall(HASH_KEY)
        return unflatten(fields) if fields else None

    def adopted(self, document: Mapping[str, Any]) -> None:
        """Record `document` (pulled from Redis) as the base later saves are compared with."""
        self._base = flatten(document)

    def push(self, document: Mapping[str, Any]) -> None:
        """Apply what changed in `document` since the adopted base to Redis (atomically), then
        publish; without a base, add only the fields Redis lacks. Blocking.

        :raises RedisError, OSError: Redis cannot be reached.
        """
        fields = flatten(document)
        if self._base is None:  # never adopted Redis's pins: add only what it lacks (stays unsynced)
            self._add_missing(fields)
            return
        changed = {field: value for field, value in fields.items() if self._base.get(field) != value}
        removed = [field for field in self._base if field not in fields]
        if changed or removed:
            pipe = self._client.pipeline(transaction=True)
            if changed:
                pipe.hset(HASH_KEY, mapping=cast(Any, changed))
            if removed:
                pipe.hdel(HASH_KEY, *removed)
            pipe.publish(KEY_PREFIX + CHANNEL, self.replica_id)
            pipe.execute()
        self._base = fields
        self.unsynced = False

    def _add_missing(self, fields: Mapping[str, str]) -> None:
        pipe = self._client.pipeline(transaction=True)
        for field, value in fields.items():
            pipe.hsetnx(HASH_KEY, field, value)
        pipe.publish(KEY_PREFIX + CHANNEL, self.replica_id)
        pipe.execute()

    def reconnect(self) -> None:
        """Drop pooled connections (after an outage they are dead, and each would fail once)."""
        self._client.connection_pool.disconnect()

    def close(self) -> None:
        """Close its connections (the hub stops)."""
        self._client.close()


class PinSync:
    """Keeps this replica's pins equal to the replicas' (see the module docstring).

    :param store: the shared store (its `pins` channel).
    :param pin_store: the Redis pin store the catalog's pins persist through.
    :param catalog: the catalog (its pins are adopted, then it is rebuilt).
    """

    def __init__(self, store: SharedStore, pin_store: RedisPinStore, catalog: Catalog) -> None:
        self._store = store
        self._pin_store = pin_store
        self._catalog = catalog
        self.adoptions = 0
        """Documents adopted from Redis so far (for tests and diagnostics)."""

    def close(self) -> None:
        """Close the pin store's Redis connections (the hub stops)."""
        self._pin_store.close()

    async def run(self) -> None:
        """Follow the `pins` channel until cancelled (the hub runs it in its lifespan)."""
        async with self._store.subscribe(CHANNEL) as items:
            async for item in items:
                if isinstance(item, bytes) and item.decode(errors="replace") == self._store.replica_id:
                    continue  # our own save
                if not isinstance(item, bytes):  # (re)subscribed: Redis may have restarted
                    await anyio.to_thread.run_sync(self._pin_store.reconnect)
                try:
                    await self.resync()
                except REDIS_ERRORS as exc:
                    logger.info("pins: resync postponed until Redis answers (%s)", describe(exc))

    async def resync(self) -> None:
        """Push what this replica kept while Redis was away, store what it has pending, then
        adopt the document in Redis and rebuild the catalog.

        :raises RedisError, OSError: Redis cannot be reached.
        """
        pins = self._catalog.pins
        if pins is None:
            return
        if self._pin_store.unsynced:
            document = pins.document()
            await anyio.to_thread.run_sync(self._pin_store.push, document)
        for _ in range(3):
            await self._catalog.flush_pins()
            pulled: dict[str, Any] | None = await anyio.to_thread.run_sync(self._pin_store.pull)
            if pins.dirty:
                continue  # changed while reading: store that first, then read again
            if pulled is not None:
                self._pin_store.adopted(pulled)
                pins.adopt(copy.deepcopy(pulled))
                self.adoptions += 1
            break
        await self._catalog.refresh()
