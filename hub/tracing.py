"""OpenTelemetry spans, one per routed request, when an exporter is configured; nothing otherwise.

Tracing is on when `tracing.otlp_endpoint` is set in the config or the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` variable is (OpenTelemetry SDK environment specification); the
SDK and the OTLP/HTTP exporter (`pip install 'mcp-federation-hub[otel]'`) are imported only
then, so a hub without tracing imports nothing and pays one `is None` test per request.

Span: name `<method> <route>` (e.g. `tools/call time__get_current_time`), kind SERVER, attributes
`mcp.method.name`, `mcphub.route`, `mcphub.server_id`, `mcphub.outcome`, `mcphub.request_id`;
status ERROR unless the outcome is `ok` or `tool_error`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from hub.config import TracingConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["OTLP_ENDPOINT_ENV", "CallTracer", "SpanRecord", "tracer_provider_from_config"]

logger = logging.getLogger(__name__)

OTLP_ENDPOINT_ENV: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
_TRACER_NAME: Final = "mcp-federation-hub"
_OK_OUTCOMES: Final = frozenset({"ok", "tool_error"})


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

    __slots__ = ("outcome", "route", "server_id")

    def __init__(self) -> None:
        self.route = ""
        self.server_id = ""
        self.outcome = "internal_error"


class CallTracer:
    """Opens a span per routed request on `provider` (an OpenTelemetry `TracerProvider`)."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer(_TRACER_NAME)

    @contextlib.contextmanager
    def span(self, method: str, request_id: str | None, record: SpanRecord) -> Iterator[None]:
        """A SERVER span around one routed request; `record` is read when it ends."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        with self._tracer.start_as_current_span(method, kind=SpanKind.SERVER, end_on_exit=True) as span:
            try:
                yield
            finally:
                if record.route:
                    span.update_name(f"{method} {record.route}")
                span.set_attribute("mcp.method.name", method)
                span.set_attribute("mcphub.route", record.route)
                span.set_attribute("mcphub.server_id", record.server_id)
                span.set_attribute("mcphub.outcome", record.outcome)
                if request_id is not None:
                    span.set_attribute("mcphub.request_id", request_id)
                if record.outcome not in _OK_OUTCOMES:
                    span.set_status(Status(StatusCode.ERROR, record.outcome))

    def shutdown(self) -> None:
        """Flush pending spans and stop the exporter."""
        self.provider.shutdown()
