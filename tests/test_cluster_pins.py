"""Pins shared by replicas through a real Redis (`hub.cluster.pins`): a replica that starts after
another pinned a server serves that server's changed definitions as held, and an approval made on
one replica is served by the other."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import MCPError

from hub.cluster.pins import flatten, unflatten
from hub.pin_status import DEFINITION_HELD
from tests.clients import http_client, mcp_client
from tests.cluster_fixtures import RedisServer
from tests.conftest import ROOT, running_hub, stdio_entry, tool_text

pytestmark = pytest.mark.anyio

RUGPULL_SERVER = str(ROOT / "tests" / "servers" / "rugpull_server.py")


def _rugpull(*args: str) -> dict[str, Any]:
    return stdio_entry(RUGPULL_SERVER, *args)


def test_the_pins_document_round_trips_through_one_hash_field_per_entry() -> None:
    entry = {"fingerprint": "sha256:ab", "definition": {"name": "a|b\x00c"}, "first_seen": "2026-01-01T00:00:00+00:00"}
    document = {
        "version": 1,
        "servers": {"rp": {"first_seen": "2026-01-01T00:00:00+00:00"}},
        "pins": {"rp": {"tools": {"a|b\x00c": entry, "x": entry}}},
        "pending": {"rp": {"prompts": {"p": entry}}},
    }
    fields = flatten(document)
    assert len(fields) == 4
    assert unflatten(fields) == document
    assert unflatten({b"not json": b"{}", b'["pins", "only-two"]': b"{}"}) == {
        "version": 1,
        "servers": {},
        "pins": {},
        "pending": {},
    }


async def test_a_definition_approved_on_one_replica_is_served_on_the_other(redis_server: RedisServer) -> None:
    cluster = {"redis_url": redis_server.url, "redis_timeout_seconds": 2.0}
    with anyio.fail_after(60):
        # Hub A meets the server first and pins it (trust on first use), in Redis.
        async with running_hub({"rp": _rugpull()}, pinning="block", cluster=cluster) as a:
            await a.hub.catalog.changes.wait_for(lambda: a.hub.catalog.pin_status("tools", "rp", "echo") is not None)
            # The pins reach Redis with A's first write (`hub.pin_writer`: in the background, once
            # its start-up settled); B must not start before, or it pins the pulled server itself.
            writer = a.hub.catalog.pin_writer
            await writer.changes.wait_for(lambda: writer.writes >= 1)
            # Hub B starts later and meets the server already pulled: it has never seen the
            # original, yet holds the changed definitions, because the pins are shared.
            async with running_hub({"rp": _rugpull("--pulled")}, pinning="block", cluster=cluster) as b:
                async with mcp_client(b.url, cache=None) as on_b:
                    with pytest.raises(MCPError) as held:
                        await on_b.call_tool("rp__echo", {"text": "hi"})
                    # B's pending definitions reach A through Redis; approve them on A.
                    # Each adoption from Redis rebuilds the catalog (`catalog.changes`).
                    await a.hub.catalog.changes.wait_for(lambda: a.hub.pins.pending_names("rp") != [])
                    async with http_client(timeout=15) as http:
                        approved = await http.post(f"{a.base_url}/admin/pins/approve", json={"name": "rp__echo"})
                    await b.hub.catalog.changes.wait_for(
                        lambda: (
                            (s := b.hub.catalog.pin_status("tools", "rp", "echo")) is not None and s.state == "pinned"
                        )
                    )
                    echoed = tool_text(await on_b.call_tool("rp__echo", {"text": "hi", "secret": "s"}))
                    with pytest.raises(MCPError) as backdoor:
                        await on_b.call_tool("rp__backdoor", {})
    assert held.value.code == DEFINITION_HELD and held.value.data["reason"] == "changed"
    assert approved.status_code == 200 and [r["exposed"] for r in approved.json()["approved"]] == ["rp__echo"]
    assert echoed == "hi"
    assert backdoor.value.code == DEFINITION_HELD  # approved only what was approved
    assert b.hub.pin_sync is not None and b.hub.pin_sync.adoptions >= 1
