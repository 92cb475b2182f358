"""Traces that cross hubs: W3C trace context read from `_meta` (SEP-414) and the `traceparent`
header, written on every request a hub sends (in `_meta` on every transport and as headers
over HTTP), a SERVER span per routed request and a CLIENT span per attempt at a server; a hub
with tracing off forwards the trace context unchanged. Real hubs on loopback, real stdio and
HTTP servers, each hub with its own in-memory span exporter."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp.client.streamable_http import streamable_http_client
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from hub.app import Hub
from hub.config import parse_config
from hub.signals import Changes
from hub.trace_context import TRACEPARENT, TRACESTATE, inbound_trace, outbound_fields, read_trace_context
from tests.clients import http_client, mcp_client
from tests.conftest import ROOT, RunningHub, http_fixture, stdio_entry, tool_text
from tests.test_reload import faulty, serve_hub

pytestmark = pytest.mark.anyio

LEAKY_SERVER = str(ROOT / "tests" / "servers" / "leaky_server.py")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"
CLIENT_TRACESTATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


def _leaky_entry(**extra: Any) -> dict[str, Any]:
    return stdio_entry(LEAKY_SERVER, **extra)


class _EndedSpans(SpanProcessor):
    """Notifies `changes` on `loop` at the end of each span (a span may end in any thread)."""

    def __init__(self, changes: Changes, loop: asyncio.AbstractEventLoop) -> None:
        self._changes = changes
        self._loop = loop

    def on_end(self, span: ReadableSpan) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._changes.notify)


class Traced:
    """A tracer provider of one hub and what it exported."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.changes = Changes()
        """Notified (on the event loop that made this object) after each span ends."""
        self.provider.add_span_processor(_EndedSpans(self.changes, asyncio.get_running_loop()))

    def spans(self, kind: SpanKind, name: str | None = None) -> list[ReadableSpan]:
        found = [s for s in self.exporter.get_finished_spans() if s.kind is kind and (name is None or s.name == name)]
        return sorted(found, key=lambda s: s.start_time or 0)

    def one(self, kind: SpanKind, name: str) -> ReadableSpan:
        (span,) = self.spans(kind, name)
        return span

    def http_spans(self) -> list[ReadableSpan]:
        """The ASGI instrumentation's spans (its attribute names follow OTEL_SEMCONV_STABILITY_OPT_IN)."""
        return [
            s for s in self.spans(SpanKind.SERVER) if {"http.method", "http.request.method"} & set(s.attributes or {})
        ]


@asynccontextmanager
async def traced_hub(
    servers: dict[str, Any], hub_id: str, traced: Traced | None, **settings: Any
) -> AsyncIterator[RunningHub]:
    """A hub on loopback with tracing on `traced`'s provider (None: tracing off)."""
    with tempfile.TemporaryDirectory(prefix=f"mcphub-{hub_id}-") as state_dir:
        config = parse_config({"servers": servers, "hub_id": hub_id, "state_dir": state_dir, **settings}, file="<t>")
        hub = Hub(config, tracer_provider=traced.provider if traced is not None else None)
        async with serve_hub(hub) as running:
            yield running


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def _trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return _hex(span.context.trace_id, 32)


def _span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return _hex(span.context.span_id, 16)


def _parent_id(span: ReadableSpan) -> str | None:
    return _hex(span.parent.span_id, 16) if span.parent is not None else None


def _attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


# ---------------------------------------------------------------- pure rules


def test_trace_context_is_read_from_meta_first_then_headers_and_invalid_values_are_ignored() -> None:
    meta = {TRACEPARENT: CLIENT_TRACEPARENT, TRACESTATE: CLIENT_TRACESTATE}
    header_tp = f"00-{'1' * 32}-{'2' * 16}-00"
    assert read_trace_context(meta, {TRACEPARENT: header_tp}) == meta
    assert read_trace_context({"other": 1}, {TRACEPARENT: f" {header_tp} "}) == {TRACEPARENT: header_tp}
    assert read_trace_context(None, None) is None
    for bad in (
        f"00-{'0' * 32}-{CLIENT_SPAN_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE_ID}-{CLIENT_SPAN_ID}-01",  # version ff is invalid
        f"00-{TRACE_ID.upper()}-{CLIENT_SPAN_ID}-01",  # hex is lowercase
        f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01-extra",  # version 00 has four fields
        f"00-{TRACE_ID}-{CLIENT_SPAN_ID}",
        7,
    ):
        # An invalid `_meta` traceparent falls back to the header; its tracestate goes with it.
        assert read_trace_context({TRACEPARENT: bad, TRACESTATE: "a=b"}, {TRACEPARENT: header_tp}) == {
            TRACEPARENT: header_tp
        }
        assert read_trace_context({TRACEPARENT: bad}, None) is None
    future = f"01-{TRACE_ID}-{CLIENT_SPAN_ID}-01-more"  # a later version: its first four fields count
    assert read_trace_context({TRACEPARENT: future}, None) == {TRACEPARENT: future}
    assert read_trace_context({TRACEPARENT: CLIENT_TRACEPARENT, TRACESTATE: "a=b\r\nx: y"}, None) == {
        TRACEPARENT: CLIENT_TRACEPARENT  # not printable ASCII: no header could carry it
    }


def test_a_long_tracestate_is_cut_to_the_whole_members_that_fit_in_512_characters() -> None:
    members = [f"v{i:02d}={'x' * 40}" for i in range(20)]  # 44 characters each
    found = read_trace_context({TRACEPARENT: CLIENT_TRACEPARENT, TRACESTATE: ",".join(members)}, None)
    assert found is not None
    assert found[TRACESTATE] == ",".join(members[:11])  # 11 * 44 + 10 commas = 494
    assert len(found[TRACESTATE]) <= 512


def test_outgoing_fields_are_the_injected_context_else_the_forwarded_one() -> None:
    def inject(carrier: dict[str, str]) -> None:
        carrier[TRACEPARENT] = "injected"

    assert outbound_fields(None) is None
    assert outbound_fields(inject) == {TRACEPARENT: "injected"}
    token = inbound_trace.set({TRACEPARENT: CLIENT_TRACEPARENT})
    try:
        assert outbound_fields(None) == {TRACEPARENT: CLIENT_TRACEPARENT}
        assert outbound_fields(inject) == {TRACEPARENT: "injected"}
        assert outbound_fields(lambda carrier: None) == {TRACEPARENT: CLIENT_TRACEPARENT}  # no span is current
    finally:
        inbound_trace.reset(token)


@pytest.mark.slow
def test_a_hub_with_tracing_off_imports_no_opentelemetry_sdk_or_instrumentation() -> None:
    script = (
        "import sys\n"
        "from hub.app import Hub\n"
        "from hub.config import parse_config\n"
        "hub = Hub(parse_config({'servers': {}, 'state_dir': sys.argv[1]}, file='<t>'))\n"
        "hub.http_app()\n"
        "assert hub.tracer is None\n"
        "prefixes = ('opentelemetry.sdk', 'opentelemetry.instrumentation')\n"
        "print(sorted(m for m in sys.modules if m.startswith(prefixes)))\n"
    )
    with tempfile.TemporaryDirectory() as state_dir:
        env = {"PATH": "", "HOME": state_dir, "XDG_STATE_HOME": state_dir}
        done = subprocess.run(
            [sys.executable, "-c", script, state_dir], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------- real hubs


@pytest.mark.parametrize(("client_mode", "b_to_a"), [("legacy", "legacy"), ("auto", "auto")])
async def test_a_call_through_two_hubs_to_a_stdio_server_is_one_trace_with_parent_links(
    client_mode: str, b_to_a: str
) -> None:
    """client -> hub B -> hub A -> stdio server: B's SERVER and CLIENT spans and A's SERVER and
    CLIENT spans all carry the client's trace id, each the child of the one before, and the
    stdio server receives A's CLIENT span in `_meta`."""
    traced_a, traced_b = Traced(), Traced()
    async with (
        traced_hub({"leaky": _leaky_entry()}, "hub-a", traced_a) as a,
        traced_hub({"a": {"url": a.url, "protocol": b_to_a}}, "hub-b", traced_b) as b,
    ):
        with anyio.fail_after(30):
            async with mcp_client(b.url, mode=client_mode) as client:
                meta: Any = {TRACEPARENT: CLIENT_TRACEPARENT, TRACESTATE: CLIENT_TRACESTATE}
                seen = json.loads(tool_text(await client.call_tool("a__leaky__seen_trace", {}, meta=meta)))
            # A's HTTP span ends once its response is written, which may be after B read it.
            await traced_a.changes.wait_for(
                lambda: _http_span_under(traced_a, traced_b.one(SpanKind.CLIENT, "tools/call leaky__seen_trace"))
            )
    b_server = traced_b.one(SpanKind.SERVER, "tools/call a__leaky__seen_trace")
    b_client = traced_b.one(SpanKind.CLIENT, "tools/call leaky__seen_trace")
    a_server = traced_a.one(SpanKind.SERVER, "tools/call leaky__seen_trace")
    a_client = traced_a.one(SpanKind.CLIENT, "tools/call seen_trace")
    for span in (b_server, b_client, a_server, a_client):
        assert _trace_id(span) == TRACE_ID, span.name
    assert _parent_id(b_server) == CLIENT_SPAN_ID and b_server.parent is not None and b_server.parent.is_remote
    assert _parent_id(b_client) == _span_id(b_server)
    assert _parent_id(a_server) == _span_id(b_client)
    assert _parent_id(a_client) == _span_id(a_server)
    assert b_server.parent.trace_state.get("rojo") == "00f067aa0ba902b7"
    # The MCP span's parent comes from `_meta`; the HTTP request that carried it is a link.
    (a_http,) = [s for s in traced_a.http_spans() if _parent_id(s) == _span_id(b_client)]
    assert _trace_id(a_http) == TRACE_ID  # the traceparent header B sent
    assert [_span_id_of(link.context) for link in a_server.links] == [_span_id(a_http)]
    assert {_span_id_of(link.context) for link in b_server.links} <= {_span_id(s) for s in traced_b.http_spans()}
    assert len(b_server.links) == 1
    assert _attr(b_client, "mcphub.server_id") == "a" and _attr(b_client, "mcphub.route") == "a__leaky__seen_trace"
    assert _attr(b_client, "mcphub.outcome") == "ok" and _attr(b_client, "network.transport") == "tcp"
    assert _attr(b_client, "gen_ai.tool.name") == "leaky__seen_trace"
    assert _attr(a_client, "mcphub.server_id") == "leaky" and _attr(a_client, "network.transport") == "pipe"
    assert _attr(a_client, "mcp.method.name") == "tools/call"
    # The stdio server got A's CLIENT span as its parent, in `_meta` (stdio has no headers).
    assert seen == {
        "meta": {TRACEPARENT: f"00-{TRACE_ID}-{_span_id(a_client)}-01", TRACESTATE: CLIENT_TRACESTATE},
        "header": {},
    }


def _span_id_of(context: Any) -> str:
    return _hex(context.span_id, 16)


def _http_span_under(traced: Traced, parent: ReadableSpan) -> bool:
    return any(_parent_id(s) == _span_id(parent) for s in traced.http_spans())


async def test_a_traceparent_header_alone_parents_the_http_span_and_the_mcp_span_under_it() -> None:
    traced = Traced()
    async with traced_hub({"leaky": _leaky_entry()}, "hub-a", traced) as a:
        with anyio.fail_after(30):
            async with (
                http_client(headers={TRACEPARENT: CLIENT_TRACEPARENT}) as http,
                mcp_client(streamable_http_client(a.url, http_client=http)) as client,
            ):
                seen = json.loads(tool_text(await client.call_tool("leaky__seen_trace", {})))
    server = traced.one(SpanKind.SERVER, "tools/call leaky__seen_trace")
    (http_span,) = [s for s in traced.http_spans() if _span_id(s) == _parent_id(server)]
    assert _parent_id(http_span) == CLIENT_SPAN_ID and _trace_id(http_span) == TRACE_ID
    assert _trace_id(server) == TRACE_ID and not server.links
    a_client = traced.one(SpanKind.CLIENT, "tools/call seen_trace")
    assert seen["meta"] == {TRACEPARENT: f"00-{TRACE_ID}-{_span_id(a_client)}-01"}


@pytest.mark.parametrize("client_mode", ["legacy", "auto"])
async def test_a_hub_with_tracing_off_forwards_the_trace_context_unchanged_to_every_server(client_mode: str) -> None:
    """Hub B does not trace: its servers get the client's traceparent and tracestate in `_meta`
    (and over HTTP as headers too), and a tracing hub behind it parents its spans on the client's."""
    traced_a = Traced()
    async with AsyncExitStack() as stack:
        leaky_url, _process = await stack.enter_async_context(http_fixture(script=LEAKY_SERVER))
        a = await stack.enter_async_context(traced_hub({"leaky": _leaky_entry()}, "hub-a", traced_a))
        servers = {"direct": {"url": leaky_url}, "local": _leaky_entry(), "a": {"url": a.url}}
        b = await stack.enter_async_context(traced_hub(servers, "hub-b", None))
        assert b.hub.tracer is None
        with anyio.fail_after(30):
            async with mcp_client(b.url, mode=client_mode) as client:
                meta: Any = {TRACEPARENT: CLIENT_TRACEPARENT, TRACESTATE: CLIENT_TRACESTATE}
                direct = json.loads(tool_text(await client.call_tool("direct__seen_trace", {}, meta=meta)))
                local = json.loads(tool_text(await client.call_tool("local__seen_trace", {}, meta=meta)))
                untraced = json.loads(tool_text(await client.call_tool("direct__seen_trace", {})))
                await client.call_tool("a__leaky__seen_trace", {}, meta=meta)
    forwarded = {TRACEPARENT: CLIENT_TRACEPARENT, TRACESTATE: CLIENT_TRACESTATE}
    assert direct == {"meta": forwarded, "header": forwarded}
    assert local == {"meta": forwarded, "header": {}}  # stdio: `_meta` only
    assert untraced == {"meta": {}, "header": {}}  # nothing in, nothing out
    a_server = traced_a.one(SpanKind.SERVER, "tools/call leaky__seen_trace")
    assert _trace_id(a_server) == TRACE_ID and _parent_id(a_server) == CLIENT_SPAN_ID


async def test_retries_and_fallbacks_are_sibling_client_spans_of_the_one_server_span() -> None:
    traced = Traced()
    servers = {
        "fx": faulty("fx", idempotent=["fail_times"], fallback=["fb"]),
        "fb": faulty("fb"),
    }
    async with traced_hub(servers, "hub-a", traced) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                result = await client.call_tool("fx__fail_times", {"n": 1, "key": "t"})
    assert tool_text(result) == "ok after 1 failures"
    server = traced.one(SpanKind.SERVER, "tools/call fx__fail_times")
    attempts = traced.spans(SpanKind.CLIENT, "tools/call fail_times")
    assert [_attr(s, "mcphub.server_id") for s in attempts] == ["fx", "fb", "fx"]  # failover, then a retry round
    assert [_attr(s, "mcphub.outcome") for s in attempts] == ["server_error", "server_error", "ok"]
    assert [_attr(s, "error.type") for s in attempts] == ["-32603", "-32603", None]
    assert {_parent_id(s) for s in attempts} == {_span_id(server)}
    assert {_attr(s, "mcphub.route") for s in attempts} == {"fx__fail_times"}
    assert _attr(server, "mcphub.outcome") == "ok"


async def test_http_spans_cover_refused_requests_but_not_probes() -> None:
    traced = Traced()
    async with traced_hub({"fx": faulty("fx")}, "hub-a", traced, max_body_bytes=1024) as hub:
        with anyio.fail_after(30):
            async with http_client() as http:
                assert (await http.get(f"{hub.base_url}/healthz")).status_code == 200
                refused = await http.post(
                    hub.url,
                    content=b"x" * 4096,
                    headers={"content-type": "application/json", TRACEPARENT: CLIENT_TRACEPARENT},
                )
            assert refused.status_code == 413

            def refused_span() -> list[ReadableSpan]:
                return [
                    s
                    for s in traced.http_spans()
                    if 413 in (_attr(s, "http.status_code"), _attr(s, "http.response.status_code"))
                ]

            await traced.changes.wait_for(lambda: bool(refused_span()))
    (span,) = refused_span()
    assert _trace_id(span) == TRACE_ID and _parent_id(span) == CLIENT_SPAN_ID
    assert not [s for s in traced.http_spans() if "healthz" in s.name or "readyz" in s.name]


async def test_http_spans_can_be_turned_off_by_the_standard_exclusion_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_ASGI_EXCLUDED_URLS", ".*")
    traced = Traced()
    async with traced_hub({"fx": faulty("fx")}, "hub-a", traced) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                await client.call_tool("fx__echo", {"text": "hi"}, meta={TRACEPARENT: CLIENT_TRACEPARENT})
    assert traced.http_spans() == []
    server = traced.one(SpanKind.SERVER, "tools/call fx__echo")
    assert _parent_id(server) == CLIENT_SPAN_ID and not server.links
    assert _parent_id(traced.one(SpanKind.CLIENT, "tools/call echo")) == _span_id(server)
