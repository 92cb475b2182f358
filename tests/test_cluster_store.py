"""The shared-state layer (`hub.cluster.store`, `hub.cluster.redis_store`) against a real Redis:
TTLs, set-if-absent, publish/subscribe between replicas, and an outage: calls fail at once
while Redis is down, and the store reconnects and re-subscribes by itself when it is back."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from hub.cluster.redis_store import RedisStore
from hub.cluster.store import RESUBSCRIBED, ChannelItem, MemoryStore, SharedStateUnavailable
from tests.cluster_fixtures import RedisServer
from tests.conftest import ROOT, until

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running_store(url: str, replica_id: str = "") -> AsyncIterator[RedisStore]:
    errors: list[str] = []
    store = RedisStore(url, timeout_seconds=2.0, replica_id=replica_id or None, on_error=errors.append)
    async with store.running():
        with anyio.fail_after(10):
            await until(lambda: store.health().status == "ok")
        yield store


async def _absent(store: RedisStore | MemoryStore, key: str) -> bool:
    return await store.get(key) is None


async def _next(items: AsyncIterator[ChannelItem]) -> ChannelItem:
    with anyio.fail_after(10):
        return await items.__anext__()


async def test_a_value_set_with_a_ttl_is_read_back_until_it_expires(redis_server: RedisServer) -> None:
    async with running_store(redis_server.url) as store:
        await store.set("k", b"v", 0.3)
        assert await store.get("k") == b"v"
        with anyio.fail_after(10):
            await until(lambda: _absent(store, "k"))
        await store.set("gone", b"x", 60)
        await store.delete("gone")
        assert await store.get("gone") is None
        assert await store.get("never") is None


async def test_set_if_absent_lets_exactly_one_of_many_concurrent_writers_win(redis_server: RedisServer) -> None:
    async with running_store(redis_server.url, "a") as a, running_store(redis_server.url, "b") as b:
        wins: list[str] = []

        async def claim(store: RedisStore, who: str) -> None:
            if await store.set_if_absent("owner", who.encode(), 60):
                wins.append(who)

        async with anyio.create_task_group() as tg:
            for index in range(20):
                tg.start_soon(claim, a if index % 2 else b, f"writer-{index}")
        assert len(wins) == 1
        assert await b.get("owner") == wins[0].encode()
        assert not await a.set_if_absent("owner", b"late", 60)


async def test_a_message_published_by_one_replica_reaches_every_subscriber_once(redis_server: RedisServer) -> None:
    async with running_store(redis_server.url, "a") as a, running_store(redis_server.url, "b") as b:
        async with a.subscribe("news") as on_a, b.subscribe("news") as on_b:
            assert await _next(on_a) is RESUBSCRIBED and await _next(on_b) is RESUBSCRIBED
            await b.publish("news", b"one")
            await a.publish("other", b"not for news")
            await a.publish("news", b"two")
            assert [await _next(on_a), await _next(on_a)] == [b"one", b"two"]
            assert [await _next(on_b), await _next(on_b)] == [b"one", b"two"]


async def test_with_redis_down_calls_fail_at_once_and_the_store_recovers_and_resubscribes_by_itself(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.cluster.redis_store")
    async with running_store(redis_server.url, "a") as a, running_store(redis_server.url, "b") as b:
        async with b.subscribe("news") as on_b:
            assert await _next(on_b) is RESUBSCRIBED
            await redis_server.killed()
            with anyio.fail_after(10):
                await until(lambda: a.health().status == "unavailable" and b.health().status == "unavailable")
            assert a.health().reason
            for _ in range(3):
                with pytest.raises(SharedStateUnavailable):
                    await a.get("k")
                with pytest.raises(SharedStateUnavailable):
                    await a.publish("news", b"lost")
            await redis_server.restarted()
            assert await _next(on_b) is RESUBSCRIBED  # re-subscribed on the new server
            with anyio.fail_after(10):
                await until(lambda: a.health().status == "ok")
            await a.publish("news", b"after")
            assert await _next(on_b) == b"after"
    messages = [r.getMessage() for r in caplog.records if r.name == "hub.cluster.redis_store"]
    assert sum("shared state unavailable" in m for m in messages) == 2  # once per store, not per call
    assert sum("shared state back" in m for m in messages) == 2


async def test_the_memory_store_keeps_ttls_and_delivers_to_its_own_subscribers() -> None:
    store = MemoryStore()
    assert not store.shared and store.health().status == "local"
    await store.set("k", b"v", 0.2)
    assert await store.set_if_absent("k", b"w", 60) is False
    assert await store.get("k") == b"v"
    with anyio.fail_after(10):
        await until(lambda: _absent(store, "k"))
    assert await store.set_if_absent("k", b"w", 60) is True
    async with store.subscribe("news") as items:
        assert await _next(items) is RESUBSCRIBED
        await store.publish("news", b"hello")
        assert await _next(items) == b"hello"


@pytest.mark.slow
def test_a_hub_without_redis_url_never_imports_redis_and_one_with_it_shares_state(tmp_path: Path) -> None:
    # redis-py loads OpenTelemetry's SDK when it is installed: a hub running alone must not pay
    # for it (nor for redis-py itself).
    script = (
        "import sys\n"
        "from hub.app import Hub\n"
        "from hub.config import parse_config\n"
        "alone = Hub(parse_config({'servers': {}, 'state_dir': sys.argv[1]}, file='<t>'))\n"
        "alone.http_app()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'redis')\n"
        "print(alone.store.shared, alone.pin_sync is None, loaded)\n"
        "cluster = {'redis_url': 'redis://127.0.0.1:1/0'}\n"
        "replica = Hub(parse_config({'servers': {}, 'state_dir': sys.argv[1], 'cluster': cluster}, file='<t>'))\n"
        "print(replica.store.shared, replica.pin_sync is None, 'redis' in sys.modules)\n"
    )
    env = {"PATH": "", "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["False True []", "True False True"]
