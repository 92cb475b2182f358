"""OpenTelemetry spans when an exporter is configured: a SERVER span per routed request, a
CLIENT span per attempt to a server, an HTTP SERVER span per HTTP request; nothing otherwise.

Tracing is on when `tracing.otlp_endpoint` is set in the config or the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` variable is (OpenTelemetry SDK environment specification); the
SDK and the OTLP/HTTP exporter (`pip install 'mcp-federation-hub[otel]'`) are imported only
then, so a hub without tracing imports nothing and pays one `is None` test per request.

Spans (names and attributes follow the OpenTelemetry semantic conventions for MCP where they
have one, plus the hub's own `mcphub.*`):

- SERVER `<method> <route>` (e.g. `tools/call time__get_current_time`) per routed request
  (`tools/call`, `resources/read`, `prompts/get`, `completion/complete`): `mcp.method.name`,
  `mcp.protocol.version`, `mcphub.route`, `mcphub.server_id`, `mcphub.outcome`,
  `mcphub.request_id`. Its parent is the trace context in the request's `params._meta`
  (SEP-414), else the HTTP span around it, else the request's `traceparent` header; when
  `_meta` gives the parent, the HTTP span is recorded as a link (semantic conventions for MCP,
  "Context propagation": MCP and transport contexts are independent).
- CLIENT `<method> <original name>` (resources: `<method>`) per attempt the router makes at a
  server member, child of the SERVER span, so retries, failover to replicas and fallbacks show
  as sibling spans: `mcp.method.name`, `gen_ai.tool.name` / `gen_ai.prompt.name`,
  `gen_ai.operation.name` (`execute_tool`), `mcp.protocol.version`, `network.transport`
  (`pipe` for stdio, `tcp`), `mcphub.server_id` (the member, e.g. `a/1` for a replica),
  `mcphub.route`, `mcphub.outcome` (`ok`, `tool_error`, `server_error`, `timeout`,
  `unavailable`, `rejected` (circuit open or queue full), `too_large`, `cancelled`,
  `internal_error`), `mcphub.delivered` (for `unavailable`), and `error.type` /
  `rpc.response.status_code` (the JSON-RPC code) on a server's error. Its context is what
  goes out in the request (`hub.trace_context`).
- HTTP SERVER spans from `opentelemetry-instrumentation-asgi` (in the `otel` extra) around
  every HTTP request but `/healthz`, `/readyz` and `/metrics` (override with
  `OTEL_PYTHON_ASGI_EXCLUDED_URLS`), outermost, so requests refused before MCP (401, 413, 429)
  are traced too; it reads the `traceparent` header.

Status is ERROR unless the outcome is `ok` or `tool_error`. Exception messages are not
recorded (a server's error text may carry its secrets); the outcome and code are.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from mcp import MCPError

from hub.admission import ServerRejected
from hub.config import TracingConfig
from hub.errors import ServerTimeout, ServerUnavailable
from hub.result_cap import ResultTooLarge

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link
    from starlette.types import ASGIApp

    from hub.servers import ServerConnection

__all__ = ["OTLP_ENDPOINT_ENV", "CallTracer", "SpanRecord", "tracer_provider_from_config"]

logger = logging.getLogger(__name__)

OTLP_ENDPOINT_ENV: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
_TRACER_NAME: Final = "mcp-federation-hub"
_OK_OUTCOMES: Final = frozenset({"ok", "tool_error"})
_UNTRACED_PATHS: Final = r"/(healthz|readyz|metrics)$"
"""Probes and scrapes (regex on the URL): no HTTP span, unless the variables below say otherwise."""
_EXCLUDED_URLS_ENV: Final = "OTEL_PYTHON_ASGI_EXCLUDED_URLS"
_ALL_EXCLUDED_URLS_ENV: Final = "OTEL_PYTHON_EXCLUDED_URLS"
_METHOD_OF_KIND: Final = {
    "tools": "tools/call",
    "resources": "resources/read",
    "prompts": "prompts/get",
    "resource_templates": "completion/complete",
}
"""The method of an attempt made outside a traced request (no SERVER span to take it from)."""

_T = TypeVar("_T")


def tracer_provider_from_config(config: TracingConfig) -> TracerProvider | None:
    """A `TracerProvider` exporting over OTLP/HTTP in batches, or None when no endpoint is
    configured or the `otel` extra is not installed (then a warning says so)."""
    endpoint = config.otlp_endpoint or os.environ.get(OTLP_ENDPOINT_ENV)
    if not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "tracing is configured but OpenTelemetry is not installed; "
            "install 'mcp-federation-hub[otel]' to export spans (tracing is off)"
        )
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
    # An explicit config endpoint is a base URL; the environment variable is handled by the
    # exporter itself (it appends /v1/traces per the OTLP exporter specification).
    exporter = (
        OTLPSpanExporter(endpoint=f"{config.otlp_endpoint.rstrip('/')}/v1/traces")
        if config.otlp_endpoint
        else (OTLPSpanExporter())
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    logger.info("tracing on: OTLP/HTTP spans to %s", endpoint)
    return provider


class SpanRecord:
    """The attributes a routed request learns as it goes; the span gets them when it ends."""

    __slots__ = ("method", "outcome", "route", "server_id")

    def __init__(self) -> None:
        self.method = ""
        self.route = ""
        self.server_id = ""
        self.outcome = "internal_error"


_current_record: contextvars.ContextVar[SpanRecord | None] = contextvars.ContextVar("mcphub_span", default=None)
"""The record of the routed request whose SERVER span is open (its attempts read method and route)."""


class CallTracer:
    """Opens the hub's spans on `provider` (an OpenTelemetry `TracerProvider`) and injects the
    current trace context with the configured propagators (`OTEL_PROPAGATORS`)."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import propagate, trace

        self.provider = provider
        self._tracer = provider.get_tracer(_TRACER_NAME)
        self._trace = trace
        self._propagate = propagate
        self._fields = frozenset(propagate.get_global_textmap().fields)

    def inject(self, carrier: dict[str, str]) -> None:
        """Write the current context's trace fields into `carrier` (`hub.trace_context.Injector`)."""
        self._propagate.inject(carrier)

    @contextlib.contextmanager
    def span(
        self,
        method: str,
        request_id: str | None,
        record: SpanRecord,
        meta: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        protocol_version: str | None = None,
    ) -> Iterator[None]:
        """A SERVER span around one routed request whose `params._meta` is `meta` and, over
        HTTP, whose headers are `headers` (they give its parent); `record` is read when it ends."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        parent, links = self._parent(meta, headers)
        record.method = method
        token = _current_record.set(record)
        try:
            with self._tracer.start_as_current_span(method, context=parent, kind=SpanKind.SERVER, links=links) as span:
                try:
                    yield
                finally:
                    if record.route:
                        span.update_name(f"{method} {record.route}")
                    span.set_attribute("mcp.method.name", method)
                    if protocol_version:
                        span.set_attribute("mcp.protocol.version", protocol_version)
                    span.set_attribute("mcphub.route", record.route)
                    span.set_attribute("mcphub.server_id", record.server_id)
                    span.set_attribute("mcphub.outcome", record.outcome)
                    if request_id is not None:
                        span.set_attribute("mcphub.request_id", request_id)
                    if record.outcome not in _OK_OUTCOMES:
                        span.set_status(Status(StatusCode.ERROR, record.outcome))
        finally:
            _current_record.reset(token)

    async def attempt(
        self, kind: str, original: str, connection: ServerConnection, send: Callable[[], Awaitable[_T]]
    ) -> _T:
        """`await send()` (one attempt at `connection` for original name or URI `original` of
        catalog `kind`) inside a CLIENT span; returns its result, raises what it raises."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        record = _current_record.get()
        method = record.method if record is not None and record.method else _METHOD_OF_KIND.get(kind, kind)
        name = method if kind in ("resources", "resource_templates") else f"{method} {original}"
        attributes: dict[str, Any] = {
            "mcp.method.name": method,
            "mcphub.server_id": connection.server_id,
            "network.transport": "pipe" if connection.config.kind == "stdio" else "tcp",
        }
        if kind == "tools":
            attributes["gen_ai.tool.name"] = original
            attributes["gen_ai.operation.name"] = "execute_tool"
        elif kind == "prompts":
            attributes["gen_ai.prompt.name"] = original
        if record is not None:
            attributes["mcphub.route"] = record.route
        with self._tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            outcome = "internal_error"
            try:
                result = await send()
                outcome = "tool_error" if getattr(result, "is_error", False) else "ok"
                return result
            except BaseException as exc:
                outcome = _attempt_outcome(exc)
                if isinstance(exc, MCPError):
                    span.set_attribute("error.type", str(exc.code))
                    span.set_attribute("rpc.response.status_code", str(exc.code))
                else:
                    span.set_attribute("error.type", outcome)
                if isinstance(exc, ServerUnavailable):
                    span.set_attribute("mcphub.delivered", exc.delivered)
                raise
            finally:
                if connection.protocol_version:
                    span.set_attribute("mcp.protocol.version", connection.protocol_version)
                span.set_attribute("mcphub.outcome", outcome)
                if outcome not in _OK_OUTCOMES:
                    span.set_status(Status(StatusCode.ERROR, outcome))

    def instrument_asgi(self, app: ASGIApp) -> ASGIApp:
        """`app` inside `opentelemetry-instrumentation-asgi`'s middleware (HTTP SERVER spans,
        W3C headers extracted), or `app` itself when that package is not installed."""
        try:
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        except ImportError:
            logger.warning(
                "opentelemetry-instrumentation-asgi is not installed (it comes with the 'otel' extra): "
                "no HTTP spans; trace context is still read from _meta and the traceparent header"
            )
            return app
        excluded = os.environ.get(_EXCLUDED_URLS_ENV) or os.environ.get(_ALL_EXCLUDED_URLS_ENV) or _UNTRACED_PATHS
        wrapped: ASGIApp = OpenTelemetryMiddleware(
            app,
            excluded_urls=excluded,
            tracer_provider=self.provider,
            exclude_spans=["receive", "send"],  # a span per ASGI message: SSE streams would drown the trace
        )
        return wrapped

    def shutdown(self) -> None:
        """Flush pending spans and stop the exporter."""
        self.provider.shutdown()

    # ---- parents ----

    def _parent(
        self, meta: Mapping[str, Any] | None, headers: Mapping[str, str] | None
    ) -> tuple[Context | None, list[Link] | None]:
        """`(parent context, links)` of a SERVER span: the `_meta` context (linking the ambient
        HTTP span), else the ambient context (None), else the headers' context."""
        ambient = self._trace.get_current_span().get_span_context()
        if meta:
            carrier = {key: value for key in self._fields if isinstance(value := meta.get(key), str)}
            context = self._extract(carrier) if carrier else None
            if context is not None:
                return context, ([self._trace.Link(ambient)] if ambient.is_valid else None)
        if ambient.is_valid or headers is None:
            return None, None
        return self._extract(headers), None

    def _extract(self, carrier: Mapping[str, str]) -> Context | None:
        """The context `carrier` holds, or None when it holds no valid span context."""
        try:
            context = self._propagate.extract(carrier)
        except (ValueError, TypeError):
            return None
        return context if self._trace.get_current_span(context).get_span_context().is_valid else None


def _attempt_outcome(exc: BaseException) -> str:
    """The `mcphub.outcome` of an attempt that raised `exc`."""
    if isinstance(exc, ServerRejected):
        return "rejected"
    if isinstance(exc, ResultTooLarge):
        return "too_large"
    if isinstance(exc, ServerUnavailable):
        return "unavailable"
    if isinstance(exc, ServerTimeout):
        return "timeout"
    if isinstance(exc, MCPError):
        return "server_error"
    if not isinstance(exc, Exception):
        return "cancelled"
    return "internal_error"
