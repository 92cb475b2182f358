"""W3C trace context across the hub: read from every request that arrives, written on every
request the hub sends, so a call through several hubs stays one trace.

**Where it travels.** MCP carries trace context in the request's `params._meta` under the
unprefixed keys `traceparent`, `tracestate` and `baggage`, with W3C Trace Context and W3C
Baggage value formats (SEP-414, "Document OpenTelemetry Trace Context Propagation Conventions",
Final; the OpenTelemetry semantic conventions for MCP, "Context propagation", say the same and
that `_meta` is the MCP-level carrier, independent of the transport's). That works on every
transport, stdio included. Over HTTP the same values also travel as the W3C `traceparent` /
`tracestate` headers (W3C Trace Context, section 3), for proxies and HTTP-level tracing.

**Inbound.** `_meta` wins: a request whose `_meta` holds a valid `traceparent` is read from
there; otherwise from its HTTP headers (clients and proxies that only set headers). A
`traceparent` that is not W3C version-00 shaped (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all
zero; later versions by their first four fields) is ignored, and with it its `tracestate`.

**Outbound** (`outbound_fields`, called by the one write-stream wrapper of `hub.federation`,
which adds them to `_meta` and to the per-message HTTP headers in the same pass as the hub
chain):

- tracing on: what the configured OpenTelemetry propagators (`OTEL_PROPAGATORS`, default W3C
  trace context and baggage) inject for the current context, i.e. the CLIENT span of the
  attempt (`hub.tracing`);
- tracing off: the trace context the client's request arrived with (`traceparent` and
  `tracestate`, never `baggage`), forwarded unchanged. A hub that does not trace is then
  invisible in the trace rather than a break in it: the spans of the hubs and servers behind
  it stay children of the spans of the hubs and clients before it. This costs two dictionary
  look-ups per request and imports nothing.

A `tracestate` longer than 512 characters is cut to its leading list members that fit (W3C
Trace Context 3.3.1.5); characters outside printable ASCII drop the value (it would not be a
valid header).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "Injector",
    "inbound_trace",
    "outbound_fields",
    "read_trace_context",
]

TRACEPARENT: Final = "traceparent"
"""`_meta` key (SEP-414) and HTTP header (W3C Trace Context) of the parent span."""
TRACESTATE: Final = "tracestate"
"""`_meta` key (SEP-414) and HTTP header (W3C Trace Context) of vendor trace state."""
MAX_TRACESTATE_CHARS: Final = 512
"""A forwarded `tracestate` is cut to whole list members within this many characters."""

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16

Injector = Callable[[dict[str, str]], None]
"""Writes the current trace context into a carrier dict (`opentelemetry.propagate.inject`)."""

inbound_trace: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "mcphub_inbound_trace", default=None
)
"""The trace context of the client request being served (`read_trace_context`), set by the
faces for its duration; None when it came without one, and for work the hub does on its own."""


def read_trace_context(meta: Mapping[str, Any] | None, headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """The valid W3C trace context of a request: `{"traceparent": ..., "tracestate": ...}`
    (tracestate only when present), from `_meta` when it holds a valid `traceparent`, else from
    the HTTP `headers`; None when neither does."""
    if meta:
        traceparent = meta.get(TRACEPARENT)
        if traceparent is not None:
            found = _valid(traceparent, meta.get(TRACESTATE))
            if found is not None:
                return found
    if headers is not None:
        traceparent = headers.get(TRACEPARENT)
        if traceparent is not None:
            return _valid(traceparent, headers.get(TRACESTATE))
    return None


def outbound_fields(inject: Injector | None) -> Mapping[str, str] | None:
    """The trace fields for a request sent now (keys are both `_meta` keys and HTTP header
    names): with `inject` (tracing on) what it writes for the current context, else, or when it
    writes nothing (no span is current), the served request's `inbound_trace`."""
    if inject is not None:
        carrier: dict[str, str] = {}
        inject(carrier)
        if carrier:
            return carrier
    return inbound_trace.get()


def _valid(traceparent: Any, tracestate: Any) -> dict[str, str] | None:
    if not isinstance(traceparent, str):
        return None
    traceparent = traceparent.strip()
    match = _TRACEPARENT.fullmatch(traceparent)
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    if version == "00" and rest is not None:
        return None  # version 00 has exactly four fields
    if rest is not None and not _PRINTABLE.fullmatch(rest):
        return None
    found = {TRACEPARENT: traceparent}
    state = _tracestate(tracestate)
    if state:
        found[TRACESTATE] = state
    return found


def _tracestate(value: Any) -> str | None:
    """`value` as a forwardable tracestate: printable ASCII, at most 512 characters of whole
    list members (W3C Trace Context 3.3.1.5 lets a vendor drop members from the end)."""
    if not isinstance(value, str) or not _PRINTABLE.fullmatch(value):
        return None
    value = value.strip()
    if len(value) <= MAX_TRACESTATE_CHARS:
        return value or None
    kept: list[str] = []
    size = 0
    for member in value.split(","):
        member = member.strip()
        if not member:
            continue
        added = len(member) + (1 if kept else 0)
        if size + added > MAX_TRACESTATE_CHARS:
            break
        kept.append(member)
        size += added
    return ",".join(kept) or None
