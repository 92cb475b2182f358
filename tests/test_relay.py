"""Server-to-client traffic through the hub, end to end with real clients and real subprocess
servers: log messages and logging/setLevel, resource subscriptions (routed, relayed under the
exposed URI, cleaned up when the client goes away), cancellation on client disconnect, and
JSON-RPC ids that many clients reuse at once."""

from __future__ import annotations

import logging
import warnings

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning

from hub.signals import Changes
from tests.clients import mcp_client
from tests.conftest import LogLines, fixture_entry, running_hub
from tests.conftest import tool_text as _text

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("server_era", ["legacy", "modern"])
async def test_log_messages_reach_only_the_calling_client_at_the_level_it_set(server_era: str) -> None:
    async with running_hub({"fx": fixture_entry("fx", protocol=server_era)}) as hub:
        received: dict[str, list[str]] = {"caller": [], "bystander": []}

        def collect(who: str):  # type: ignore[no-untyped-def]
            async def on_log(params: types.LoggingMessageNotificationParams) -> None:
                received[who].append(params.level)

            return on_log

        with anyio.fail_after(20), warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            async with (
                mcp_client(hub.url, mode="legacy", logging_callback=collect("caller")) as caller,
                mcp_client(hub.url, mode="legacy", logging_callback=collect("bystander")) as bystander,
            ):
                await caller.call_tool("fx__log", {})
                await caller.set_logging_level("warning")
                await caller.call_tool("fx__log", {})
                await bystander.call_tool("fx__echo", {"text": "x"})
    assert received["caller"] == ["debug", "info", "warning", "error", "warning", "error"]
    assert received["bystander"] == []


async def test_subscriptions_are_routed_relayed_under_the_exposed_uri_and_cleaned_up_on_disconnect(
    caplog: pytest.LogCaptureFixture, log_lines: LogLines
) -> None:
    caplog.set_level(logging.INFO, logger="hub.server_stderr")
    async with running_hub({"fx": fixture_entry("fx", protocol="legacy")}) as hub:
        updates: dict[str, list[str]] = {"a": [], "b": []}
        updated = Changes()

        def handler(who: str):  # type: ignore[no-untyped-def]
            async def on_message(message: object) -> None:
                if isinstance(message, types.ResourceUpdatedNotification):
                    updates[who].append(str(message.params.uri))
                    updated.notify()

            return on_message

        subscriptions = hub.hub.endpoint.subscriptions
        with anyio.fail_after(20), warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            async with mcp_client(hub.url, mode="legacy", message_handler=handler("a")) as a:
                assert a.server_capabilities.resources and a.server_capabilities.resources.subscribe
                async with mcp_client(hub.url, mode="legacy", message_handler=handler("b")) as b:
                    await a.subscribe_resource("fx+fixture://info")
                    await b.subscribe_resource("fx+fixture://info")
                    await log_lines.wait_for("subscribed: fixture://info")
                    await a.call_tool("fx__touch", {})
                    await updated.wait_for(lambda: bool(updates["a"] and updates["b"]))
                    await b.unsubscribe_resource("fx+fixture://info")
                    assert not log_lines.seen("unsubscribed")  # a still subscribed
                    await a.call_tool("fx__touch", {})
                    await updated.wait_for(lambda: len(updates["a"]) >= 2)
                assert len(subscriptions) == 1
            # a disconnected without unsubscribing: the hub unsubscribes at the server.
            await log_lines.wait_for("unsubscribed: fixture://info")
            assert len(subscriptions) == 0
    assert updates["a"] == ["fx+fixture://info", "fx+fixture://info"]
    assert updates["b"] == ["fx+fixture://info"]


@pytest.mark.parametrize("client_mode", ["legacy", "auto"])
async def test_a_client_that_disconnects_mid_call_cancels_the_server_side_work(
    client_mode: str, caplog: pytest.LogCaptureFixture, log_lines: LogLines
) -> None:
    caplog.set_level(logging.INFO, logger="hub.server_stderr")
    async with running_hub({"fx": fixture_entry("fx", protocol="legacy")}) as hub:
        with anyio.fail_after(20):
            async with mcp_client(hub.url, mode=client_mode) as client:
                started = anyio.Event()

                async def progress(p: float, total: float | None, message: str | None) -> None:
                    started.set()

                with anyio.move_on_after(10) as scope:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(
                            lambda: client.call_tool(
                                "fx__slow", {"seconds": 60, "steps": 60}, progress_callback=progress
                            )
                        )
                        await started.wait()
                        tg.cancel_scope.cancel()
                assert not scope.cancelled_caught
            await log_lines.wait_for("slow: cancelled")


@pytest.mark.e2e
async def test_fifty_clients_reusing_the_same_request_ids_each_get_only_their_own_results_and_progress() -> None:
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        results: dict[int, str] = {}
        progress: dict[int, list[float]] = {}

        async def caller(index: int) -> None:
            # Every client numbers its requests from the same start, so the hub sees 50 x the same ids.
            async with mcp_client(hub.url, mode="legacy" if index % 2 else "auto") as client:
                seen: list[float] = []

                async def on_progress(p: float, total: float | None, message: str | None) -> None:
                    seen.append(p)

                await client.call_tool("fx__slow", {"seconds": 0.2, "steps": 3}, progress_callback=on_progress)
                results[index] = _text(await client.call_tool("fx__echo", {"text": f"caller-{index}"}))
                progress[index] = seen

        with anyio.fail_after(45):
            async with anyio.create_task_group() as tg:
                for index in range(50):
                    tg.start_soon(caller, index)
    assert results == {index: f"caller-{index}" for index in range(50)}
    assert progress == {index: [1.0, 2.0, 3.0] for index in range(50)}


@pytest.mark.e2e
async def test_per_client_isolation_gives_each_client_session_its_own_server_and_closes_it_with_the_session() -> None:
    entry = fixture_entry("fx", protocol="legacy", isolation="per_client")
    async with running_hub({"fx": entry}) as hub:
        connection = hub.hub.fleet.get("fx")
        assert connection is not None

        arrived: list[str] = []
        both_asked = anyio.Event()

        def sampler(answer: str):  # type: ignore[no-untyped-def]
            async def sampling(ctx: object, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
                # Answer only once both clients are being asked: both calls are in flight at once.
                arrived.append(answer)
                if len(arrived) == 2:
                    both_asked.set()
                await both_asked.wait()
                return types.CreateMessageResult(
                    role="assistant", content=types.TextContent(type="text", text=answer), model="m"
                )

            return sampling

        async def elicitation(ctx: object, params: types.ElicitRequestParams) -> types.ElicitResult:
            return types.ElicitResult(action="accept", content={"name": "ada"})

        texts: dict[str, str] = {}
        pids: dict[str, str] = {}
        with anyio.fail_after(30):
            async with (
                mcp_client(
                    hub.url, mode="legacy", sampling_callback=sampler("one"), elicitation_callback=elicitation
                ) as a,
                mcp_client(
                    hub.url, mode="legacy", sampling_callback=sampler("two"), elicitation_callback=elicitation
                ) as b,
            ):

                async def ask(name: str, client: Client) -> None:
                    texts[name] = _text(await client.call_tool("fx__ask", {}))
                    pids[name] = _text(await client.call_tool("fx__pid", {}))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask, "a", a)
                    tg.start_soon(ask, "b", b)
                assert connection.dedicated_connections == 2
            await connection.wait_until(lambda c: not c.dedicated_connections)
    assert texts == {"a": "sampled=one elicited=ada action=accept", "b": "sampled=two elicited=ada action=accept"}
    assert pids["a"] != pids["b"]


@pytest.mark.parametrize("server_era", ["legacy", "modern"])
async def test_a_modern_client_listening_for_a_resource_gets_its_updates_under_the_exposed_uri(
    server_era: str, caplog: pytest.LogCaptureFixture, log_lines: LogLines
) -> None:
    caplog.set_level(logging.INFO, logger="hub.server_stderr")
    async with running_hub({"fx": fixture_entry("fx", protocol=server_era)}) as hub:
        subscriptions = hub.hub.endpoint.subscriptions
        with anyio.fail_after(20):
            async with mcp_client(hub.url) as client:
                async with client.listen(resource_subscriptions=["fx+fixture://info"]) as stream:
                    assert len(subscriptions) == 1
                    # The hub subscribes at the server in the background of the stream's start
                    # (a modern-era server: by reopening its own listen stream), so touch until
                    # an update comes through; bounded in count and by fail_after.
                    event: object = None
                    for _ in range(40):
                        await client.call_tool("fx__touch", {})
                        with anyio.move_on_after(0.25):
                            event = await stream.__anext__()
                        if event is not None:
                            break
                # The stream's end reaches the hub, which drops the subscription.
                await subscriptions.changes.wait_for(lambda: not len(subscriptions))
            if server_era == "legacy":
                await log_lines.wait_for("unsubscribed: fixture://info")
    assert getattr(event, "uri", None) == "fx+fixture://info"
