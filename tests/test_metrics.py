"""Observability at the endpoint: Prometheus `/metrics` (own registry per hub, bounded labels)
and OpenTelemetry spans per routed request (SDK in-memory exporter, a real hub on loopback)."""

from __future__ import annotations

import anyio
import pytest
from mcp import MCPError
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from hub.app import Hub
from hub.config import parse_config
from tests.clients import http_client, mcp_client
from tests.test_reload import faulty, serve_hub

pytestmark = pytest.mark.anyio


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_two_hubs_in_one_process_have_their_own_registries() -> None:
    config = parse_config({"servers": {"a": faulty("a")}}, file="<test>")
    first, second = Hub(config), Hub(config)
    first.metrics.observe_call("tools/call", "a__echo", "a", "ok", 0.01)
    assert b'mcphub_calls_total{method="tools/call",outcome="ok",route="a__echo",server_id="a"} 1.0' in (
        first.metrics.render()
    )
    assert b"mcphub_calls_total{" not in second.metrics.render()


async def test_metrics_count_routed_calls_by_route_server_and_outcome_and_spans_carry_the_same() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = parse_config({"servers": {"fx": faulty("fx"), "other": faulty("other")}}, file="<test>")
    async with serve_hub(Hub(config, tracer_provider=provider)) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                await client.call_tool("fx__echo", {"text": "one"})
                await client.call_tool("fx__echo", {"text": "two"})
                with pytest.raises(MCPError):  # a JSON-RPC error answered by fx itself
                    await client.call_tool("fx__fail_times", {"n": 1, "key": "m"})
                with pytest.raises(MCPError):
                    await client.call_tool("fx__no_such_tool_$(rm -rf)", {})
                with pytest.raises(MCPError):
                    await client.call_tool("nobody__owns_this", {})
            async with http_client() as http:
                response = await http.get(f"{hub.base_url}/metrics")
            catalog_tools = len(hub.hub.catalog.tools)
    text = response.text
    samples = _samples(text)
    assert response.headers["content-type"].startswith("text/plain")
    calls = "mcphub_calls_total"
    assert _value(samples, calls, method="tools/call", route="fx__echo", server_id="fx", outcome="ok") == 2
    assert _value(samples, calls, method="tools/call", route="fx__fail_times", server_id="fx", outcome="server_error")
    # Names that are not routes collapse into one label value; the owner is named only when the
    # prefix belongs to a configured server.
    assert _value(samples, calls, method="tools/call", route="<unknown>", server_id="fx", outcome="not_found") == 1
    assert _value(samples, calls, method="tools/call", route="<unknown>", server_id="", outcome="not_found") == 1
    assert "no_such_tool" not in text and "nobody" not in text
    assert _value(samples, "mcphub_call_duration_seconds_count", method="tools/call", server_id="fx") == 4
    assert _value(samples, "mcphub_server_state", server_id="other", state="ready") == 1
    assert _value(samples, "mcphub_server_state", server_id="other", state="failed") == 0
    fx_states = [
        key for key, value in samples.items() if key[0] == "mcphub_server_state" and ("server_id", "fx") in key[1]
    ]
    assert sum(samples[key] for key in fx_states) == 1
    assert _value(samples, "mcphub_server_restarts_total", server_id="other") == 0
    assert _value(samples, "mcphub_server_in_flight", server_id="fx") == 0
    tools = _value(samples, "mcphub_catalog_items", kind="tools")
    assert tools == catalog_tools > 0

    spans = [
        span
        for span in exporter.get_finished_spans()
        if span.name.startswith("tools/call") and span.kind is SpanKind.SERVER  # CLIENT spans: tests/test_tracing.py
    ]
    by_outcome = sorted(str((span.attributes or {})["mcphub.outcome"]) for span in spans)
    assert by_outcome == ["not_found", "not_found", "ok", "ok", "server_error"]
    echo = next(span for span in spans if span.name == "tools/call fx__echo")
    attributes = echo.attributes or {}
    assert attributes["mcphub.server_id"] == "fx"
    assert attributes["mcphub.route"] == "fx__echo"
    assert len(str(attributes["mcphub.request_id"])) == 16


def test_tracing_is_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    hub = Hub(parse_config({"servers": {"a": faulty("a")}}, file="<test>"))
    assert hub.tracer is None


def test_breaker_retry_failover_and_queue_events_of_the_fleet_reach_the_hubs_metrics() -> None:
    hub = Hub(parse_config({"servers": {"a": faulty("a")}}, file="<test>"))
    events = hub.fleet.events  # the sink the router, breakers and limiters report to
    events.emit("on_breaker_change", "a", "open")
    events.emit("on_breaker_change", "a", "half_open")
    events.emit("on_retry", "a")
    events.emit("on_failover", "a", "b")
    events.emit("on_rejected", "a")
    samples = _samples(hub.metrics.render().decode())
    assert _value(samples, "mcphub_breaker_opens_total", server_id="a") == 1
    assert _value(samples, "mcphub_retries_total", server_id="a") == 1
    assert _value(samples, "mcphub_failovers_total", server_id="a") == 1
    assert _value(samples, "mcphub_rejected_total", server_id="a") == 1
    assert _value(samples, "mcphub_queue_depth", server_id="a") == 0


def test_an_otlp_endpoint_in_the_config_turns_tracing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    config = parse_config(
        {"servers": {}, "tracing": {"otlp_endpoint": "http://127.0.0.1:4318", "service_name": "hub-test"}},
        file="<test>",
    )
    hub = Hub(config)
    assert hub.tracer is not None
    assert hub.tracer.provider.resource.attributes["service.name"] == "hub-test"
    hub.tracer.shutdown()  # nothing was recorded, so nothing is sent
