"""Prometheus metrics of one hub, served at `/metrics` in the Prometheus text format.

Each `HubMetrics` has its own `CollectorRegistry` (never the process-global one), so several hubs
in one process (tests) do not clash. Event counts (calls, retries, breaker opens, reloads) are
recorded as they happen; states (server state, restarts, in-flight requests, catalog size) are
read from the live objects at scrape time, so they can never drift from what `/readyz` shows.

Cardinality is bounded by the config, never by clients: the `route` label is an exposed name
only when the catalog has that route at the time of the call; every other name a client sends
collapses into `route="<unknown>"`. Resource URIs are not labels (a template matches unboundedly
many): resource reads carry `route="<resource>"`.

Metric names (all prefixed `mcphub_`):

| name | type | labels |
| --- | --- | --- |
| `mcphub_calls_total` | counter | method, route, server_id, outcome |
| `mcphub_call_duration_seconds` | histogram | method, server_id |
| `mcphub_retries_total` | counter | server_id |
| `mcphub_failovers_total` | counter | server_id (the one failed over from) |
| `mcphub_retry_budget_exhausted_total` | counter | server_id |
| `mcphub_rejected_total` | counter | server_id (queue full, fail-fast) |
| `mcphub_health_checks_total` | counter | server_id, ok |
| `mcphub_breaker_opens_total` | counter | server_id |
| `mcphub_reloads_total` | counter | result (`applied`, `unchanged`, `rejected`) |
| `mcphub_definition_changes_total` | counter | server_id, kind (`tools`, `prompts`, `resource_templates`) |
| `mcphub_server_state` | gauge (1 for the current state, else 0) | server_id, state |
| `mcphub_server_restarts_total` | counter | server_id |
| `mcphub_server_in_flight` | gauge | server_id |
| `mcphub_queue_depth` | gauge | server_id |
| `mcphub_catalog_items` | gauge | kind (`tools`, `resources`, `resource_templates`, `prompts`) |
| `mcphub_sessions` | gauge | (none) |
| `mcphub_shared_state_up` | gauge (1: the shared store answers, or none is configured; 0: Redis unavailable) | (none) |
| `mcphub_shared_state_errors_total` | counter | operation (`get`, `set`, `publish`, `ratelimit`, `connect`, ...) |
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hub.cluster.store import StoreHealth
from hub.servers import ServerConnection, ServerState

__all__ = ["CONTENT_TYPE", "NO_SERVER", "RESOURCE_ROUTE", "UNKNOWN_ROUTE", "CatalogSizes", "HubMetrics"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
"""The `Content-Type` of `/metrics` (Prometheus text exposition format 0.0.4)."""

UNKNOWN_ROUTE: Final = "<unknown>"
"""The `route` label of a call whose name is not in the catalog (or has no server)."""

RESOURCE_ROUTE: Final = "<resource>"
"""The `route` label of every `resources/read` (URIs are unbounded, so never labels)."""

NO_SERVER: Final = ""
"""The `server_id` label of a call that reached no server (unknown name)."""

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Histogram buckets in seconds: from a local stdio tool (~ms) to a long remote call."""


class CatalogSizes(Protocol):
    """What the collector reads from the catalog: the merged listings."""

    @property
    def tools(self) -> Sequence[object]: ...
    @property
    def resources(self) -> Sequence[object]: ...
    @property
    def resource_templates(self) -> Sequence[object]: ...
    @property
    def prompts(self) -> Sequence[object]: ...


class _LiveCollector(Collector):
    """Reads server states, restarts, in-flight requests, queue depth and catalog size at scrape time."""

    def __init__(
        self,
        connections: Callable[[], Iterable[ServerConnection]],
        catalog: CatalogSizes,
        sessions: Callable[[], int] | None,
    ) -> None:
        self._connections = connections
        self._catalog = catalog
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = GaugeMetricFamily(
            "mcphub_server_state",
            "1 for the state each server is in now, 0 for the others.",
            labels=["server_id", "state"],
        )
        restarts = CounterMetricFamily(
            "mcphub_server_restarts",
            "Times each server's current connection has been restarted or reconnected.",
            labels=["server_id"],
        )
        in_flight = GaugeMetricFamily(
            "mcphub_server_in_flight", "Requests sent to each server and not answered yet.", labels=["server_id"]
        )
        queue = GaugeMetricFamily(
            "mcphub_queue_depth", "Requests waiting for a concurrency slot of each server.", labels=["server_id"]
        )
        for connection in list(self._connections()):
            status = connection.status()
            sid = status.server_id
            for value in ServerState:
                state.add_metric([sid, value.value], 1.0 if status.state is value else 0.0)
            restarts.add_metric([sid], float(status.restarts))
            in_flight.add_metric([sid], float(status.in_flight))
            queue.add_metric([sid], float(status.queued))
        catalog = GaugeMetricFamily("mcphub_catalog_items", "Items in the merged catalog, by kind.", labels=["kind"])
        for kind in ("tools", "resources", "resource_templates", "prompts"):
            catalog.add_metric([kind], float(len(getattr(self._catalog, kind))))
        yield from (state, restarts, in_flight, queue, catalog)
        if self._sessions is not None:
            yield GaugeMetricFamily(
                "mcphub_sessions", "Handshake-era client sessions open on the endpoint.", value=self._sessions()
            )


class _SharedStateCollector(Collector):
    """Reads whether the shared store answers at scrape time (`hub.cluster.store`)."""

    def __init__(self, health: Callable[[], StoreHealth]) -> None:
        self._health = health

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "mcphub_shared_state_up",
            "1 while the state replicas share answers (or none is configured), 0 while Redis is unavailable.",
            value=1.0 if self._health().up else 0.0,
        )


class HubMetrics:
    """One hub's metrics and their registry.

    Call `watch(...)` once the fleet and catalog exist; then `observe_call` per routed request,
    `retry`, `breaker_opened` and `reloaded` on those events, and serve `render()` at `/metrics`.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._calls = Counter(
            "mcphub_calls",
            "Routed requests (tools/call, resources/read, prompts/get, completion/complete) by outcome.",
            ["method", "route", "server_id", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "mcphub_call_duration_seconds",
            "Time from a routed request's arrival at the endpoint to its answer, in seconds.",
            ["method", "server_id"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._retries = Counter(
            "mcphub_retries",
            "Requests re-sent (retry or fallback) after a failure.",
            ["server_id"],
            registry=self.registry,
        )
        self._breaker_opens = Counter(
            "mcphub_breaker_opens", "Times a server's circuit breaker opened.", ["server_id"], registry=self.registry
        )
        self._reloads = Counter("mcphub_reloads", "Config reloads by result.", ["result"], registry=self.registry)
        self._failovers = Counter(
            "mcphub_failovers", "Requests moved to another server or replica.", ["server_id"], registry=self.registry
        )
        self._budget_exhausted = Counter(
            "mcphub_retry_budget_exhausted",
            "Retries refused because the server's retry budget was used up.",
            ["server_id"],
            registry=self.registry,
        )
        self._rejected = Counter(
            "mcphub_rejected",
            "Requests refused at once because the server's queue was full.",
            ["server_id"],
            registry=self.registry,
        )
        self._health_checks = Counter(
            "mcphub_health_checks", "Periodic health checks by result.", ["server_id", "ok"], registry=self.registry
        )
        self._definition_changes = Counter(
            "mcphub_definition_changes",
            "Tool, prompt and resource-template definitions seen changed or new against their pin or the lockfile.",
            ["server_id", "kind"],
            registry=self.registry,
        )
        self._shared_state_errors = Counter(
            "mcphub_shared_state_errors",
            "Calls to the shared store (Redis) that failed or timed out, by operation.",
            ["operation"],
            registry=self.registry,
        )

    def watch_shared_state(self, health: Callable[[], StoreHealth]) -> None:
        """Expose `mcphub_shared_state_up` from `health()` (the shared store's, read at scrape time)."""
        self.registry.register(_SharedStateCollector(health))

    def shared_state_error(self, operation: str) -> None:
        """Count one failed call to the shared store (`operation`: `get`, `publish`, `connect`, ...)."""
        self._shared_state_errors.labels(operation).inc()

    def watch(
        self,
        connections: Callable[[], Iterable[ServerConnection]],
        catalog: CatalogSizes,
        sessions: Callable[[], int] | None = None,
    ) -> None:
        """Expose the live state of `connections()` (the current connection of every server and
        replica: state, restarts, in-flight requests, queue depth), `catalog` (sizes) and
        `sessions()` (open handshake-era client sessions)."""
        self.registry.register(_LiveCollector(connections, catalog, sessions))

    # ---- hub.retry_rules.ResilienceEvents (set as the fleet's and router's event target) ----

    def on_call(self, route: str, server_id: str, outcome: str, seconds: float) -> None:
        """Ignored: calls are counted once, at the endpoint (`observe_call`), with exposed names."""

    def on_retry(self, server_id: str) -> None:
        self.retry(server_id)

    def on_failover(self, from_server_id: str, to_server_id: str) -> None:
        self._failovers.labels(from_server_id).inc()

    def on_budget_exhausted(self, server_id: str) -> None:
        self._budget_exhausted.labels(server_id).inc()

    def on_breaker_change(self, server_id: str, state: str) -> None:
        if state == "open":
            self.breaker_opened(server_id)

    def on_queue_depth(self, server_id: str, depth: int) -> None:
        """Ignored: `mcphub_queue_depth` is read from each connection at scrape time."""

    def on_rejected(self, server_id: str) -> None:
        self._rejected.labels(server_id).inc()

    def on_health_check(self, server_id: str, ok: bool) -> None:
        self._health_checks.labels(server_id, "true" if ok else "false").inc()

    def observe_call(self, method: str, route: str, server_id: str, outcome: str, seconds: float) -> None:
        """Record one routed request.

        :param route: the exposed name, `UNKNOWN_ROUTE` or `RESOURCE_ROUTE` (never a raw
            client-supplied string that is not in the catalog).
        :param outcome: `ok`, `tool_error` (an `isError` result), `not_found`, `unavailable`,
            `timeout`, `server_error` (the server's own JSON-RPC error), `invalid`, `cancelled`,
            `held` (a definition held by pinning) or `internal_error`.
        :param seconds: wall time from arrival to answer.
        """
        self._calls.labels(method, route, server_id, outcome).inc()
        self._latency.labels(method, server_id).observe(seconds)

    def retry(self, server_id: str) -> None:
        """Count one re-sent request to `server_id` (retry or fallback)."""
        self._retries.labels(server_id).inc()

    def breaker_opened(self, server_id: str) -> None:
        """Count one opening of `server_id`'s circuit breaker."""
        self._breaker_opens.labels(server_id).inc()

    def definition_changed(self, server_id: str, kind: str) -> None:
        """Count one definition of `server_id` newly seen changed or new (`hub.pins`)."""
        self._definition_changes.labels(server_id, kind).inc()

    def reloaded(self, result: str) -> None:
        """Count one reload attempt by result (`applied`, `unchanged` or `rejected`)."""
        self._reloads.labels(result).inc()

    def render(self) -> bytes:
        """The whole registry in the Prometheus text format (serve with `CONTENT_TYPE`)."""
        return generate_latest(self.registry)
