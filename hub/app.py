"""Composition root: config -> catalog, fleet, router, endpoint -> a running service."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
from starlette.types import ASGIApp

from hub.catalog import Catalog
from hub.catalog_search import CatalogSearch
from hub.cluster.answers import Answers
from hub.cluster.fanout import ResourceFanout
from hub.cluster.keys import ClusterKeys
from hub.cluster.session_ids import SessionIds
from hub.cluster.session_state import SessionState
from hub.cluster.store import SharedStore, store_for
from hub.config import HubConfig
from hub.config.trust import force_locked, lockfile_path, pinning_for
from hub.endpoint import (
    DrainPhase,
    DrainReport,
    Endpoint,
    EndpointServices,
    HttpLimits,
    HttpServer,
    bind_socket,
    build_http_app,
    run_event_loop,
)
from hub.endpoint.authentication import Authenticator
from hub.endpoint.drain import Drain
from hub.endpoint.era_bridge import Bridge
from hub.endpoint.rate_limits import RateLimiter
from hub.endpoint.search_mode import MAX_SEARCH_LIMIT, search_configured
from hub.endpoint.server_requests import Subscriptions
from hub.endpoint.task_relay import TaskRelay
from hub.errors import ConfigError
from hub.federation import Federation
from hub.gc_tuning import freeze_startup_heap, tune_for_serving
from hub.lockfile import LockEntries, read_lockfile, write_lockfile
from hub.metrics import HubMetrics
from hub.pin_store import PinStore, ReadOnlyPinStore, StatePinStore
from hub.pins import Pins
from hub.policy import Access, Policy
from hub.prepared_lists import warm_lists
from hub.reload import ReloadReport, effective_config, plan_reload
from hub.reload_apply import ReloadApplication
from hub.router import Router
from hub.search import DEFAULT_LIMIT as DEFAULT_SEARCH_LIMIT
from hub.servers import Fleet, ServerConnection, ServerState, ServerStatus
from hub.signals import Changes
from hub.startup import default_max_concurrent_starts
from hub.state import StateFile, state_path
from hub.tracing import CallTracer, tracer_provider_from_config

if TYPE_CHECKING:
    from hub.cluster.pins import PinSync, RedisPinStore

# Besides the hub itself: what the command line (`hub.cli`) uses of the layers below, so that
# it imports `hub.app` only (cli -> app -> endpoint / servers -> core): the types it prints or
# passes on, the lockfile functions and the search limits of its options.
__all__ = [
    "DEFAULT_SEARCH_LIMIT",
    "MAX_SEARCH_LIMIT",
    "DrainPhase",
    "DrainReport",
    "HttpServer",
    "Hub",
    "LockEntries",
    "ServerState",
    "ServerStatus",
    "force_locked",
    "freeze_startup_heap",
    "lockfile_path",
    "read_lockfile",
    "run_event_loop",
    "startup_bound_seconds",
    "tune_for_serving",
    "write_lockfile",
]

logger = logging.getLogger(__name__)


def startup_bound_seconds(config: HubConfig) -> float:
    """How long every server's first start attempt can take at most, in seconds: the longest
    attempt (start-up timeout plus the listing's timeout), once per round of stdio servers the
    start slots (`max_concurrent_starts`) let through, plus 5 s."""
    attempts = [s.startup_timeout_seconds + s.timeout_seconds for s in config.servers.values()]
    stdio = sum(1 for sid, s in config.servers.items() for _, m in s.members(sid) if m.kind == "stdio")
    slots = config.max_concurrent_starts or default_max_concurrent_starts()
    return max(attempts, default=0.0) * max(1, math.ceil(stdio / slots)) + 5.0


class Hub:
    """The hub's objects, wired: `catalog` <- `fleet` snapshots; `endpoint` -> `router` -> `fleet`.

    :param config: the validated config.
    :param on_server_started: awaited with each server's `ServerStatus` as soon as its first start
        attempt has succeeded or failed.
    :param on_started: awaited once every server has finished its first start attempt (bounded by
        `startup_bound_seconds`).
    :param config_loader: reads the config anew for `reload()` (e.g. the file the hub was
        started with, plus command-line overrides); None: this hub cannot reload.
    :param tracer_provider: an OpenTelemetry `TracerProvider` for per-request spans. Default:
        one built from `config.tracing` / `OTEL_EXPORTER_OTLP_ENDPOINT`, or none (tracing off).
    :param pins_read_only: read the pins from the state file but never write them (`mcphub
        check --connect`: show pin status without pinning anything).
    :raises ConfigError: a server is `pinning: locked` and the lockfile is missing or invalid.
    """

    def __init__(
        self,
        config: HubConfig,
        *,
        on_server_started: Callable[[ServerStatus], Awaitable[None]] | None = None,
        on_started: Callable[[Hub], Awaitable[None]] | None = None,
        config_loader: Callable[[], HubConfig] | None = None,
        tracer_provider: Any = None,
        pins_read_only: bool = False,
    ) -> None:
        self.config = config
        self.state = StateFile(state_path(config.state_dir, config.source))
        """The hub's state file (hub_id, pins), kept across restarts (`hub.state`)."""
        self.hub_id = self.state.hub_id(config.hub_id)
        """This hub's identity among federated hubs: `hub_id` from the config, else the stored one."""
        self.metrics = HubMetrics()
        self.store = store_for(config.cluster, on_error=self.metrics.shared_state_error)
        """The state replicas share (`hub.cluster`): Redis at `cluster.redis_url`, else memory."""
        self.metrics.watch_shared_state(self.store.health)
        pin_store: PinStore = (ReadOnlyPinStore if pins_read_only else StatePinStore)(self.state)
        shared_pins: RedisPinStore | None = None
        if config.cluster is not None and config.cluster.redis_url is not None:
            # Imported only for replicas: redis-py loads OpenTelemetry's SDK when it is installed.
            from hub.cluster.pins import PinSync, RedisPinStore

            pin_store = shared_pins = RedisPinStore(
                config.cluster.redis_url,
                config.cluster.redis_timeout_seconds,
                pin_store,
                read_only=pins_read_only,
                replica_id=self.store.replica_id,
            )
        self.pins = Pins(pin_store, on_change=self.metrics.definition_changed)
        """Tool-definition pins (`hub.pins`), kept in the state file (and in Redis with
        `cluster.redis_url`, shared by the replicas: `hub.cluster.pins`)."""
        self.pins.set_lock(_read_lock(config))
        provider = tracer_provider if tracer_provider is not None else tracer_provider_from_config(config.tracing)
        self.tracer = CallTracer(provider) if provider is not None else None
        self.catalog = Catalog(config, self.pins)
        self.fleet = Fleet(
            config,
            on_snapshot=self.catalog.set_snapshot,
            federation=Federation(
                self.hub_id, config.max_federation_depth, inject=self.tracer.inject if self.tracer else None
            ),
        )
        self.router = Router(self.fleet, tracer=self.tracer)
        self.keys = ClusterKeys.from_config(config.cluster)
        """What this hub seals with: the replicas' shared key (`cluster.secret_env`), or a random one."""
        self.endpoint = _build_endpoint(
            config, self.catalog, self.fleet, self.router, self.keys, self.store, self.metrics, self.tracer
        )
        self.pin_sync: PinSync | None = None if shared_pins is None else PinSync(self.store, shared_pins, self.catalog)
        """Adopts pins the other replicas change (with Redis only)."""
        self.fleet.events.target = self.metrics
        self.metrics.watch(lambda: self.fleet.connections.values(), self.catalog, self.endpoint.open_sessions)
        self._config_loader = config_loader
        if config_loader is not None:
            self.endpoint.reload_handler = self._reload_over_http
        self._reload_lock = anyio.Lock()
        self._on_server_started = on_server_started
        self._on_started = on_started

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Hub]:
        """Connect the shared store, start every server (each in its own supervised task), and
        stop them all on exit."""
        try:
            # Pins are stored in the background once the fleet's start-up (or a reload's) settled
            # (`hub.pin_writer`); the writer stops after the fleet, storing what is left.
            pins_stored = self.catalog.pin_writer.running(self.fleet.startup.wait_settled)
            async with self.store.running(), pins_stored, self.fleet, anyio.create_task_group() as tg:
                if self.endpoint.fanout is not None:
                    tg.start_soon(self.endpoint.fanout.run)
                if self.pin_sync is not None:
                    tg.start_soon(self.pin_sync.run)
                if self._on_server_started is not None or self._on_started is not None:
                    tg.start_soon(self._announce_started)
                yield self
                tg.cancel_scope.cancel()
        finally:
            if self.pin_sync is not None:
                self.pin_sync.close()
            if self.tracer is not None:
                self.tracer.shutdown()

    # ---- hot reload ----

    async def _reload_over_http(self) -> tuple[int, dict[str, Any]]:
        report = await self.reload()
        return (400 if report.status == "rejected" else 200), report.as_json()

    async def reload(self, new_config: HubConfig | None = None) -> ReloadReport:
        """Apply a new config while serving: `new_config`, or the config loader's fresh read.

        A config that does not load or validate is rejected whole (`status="rejected"`, `error`
        says why, also logged) and the running one is untouched. Otherwise added servers start,
        replaced ones (any difference in their entry) start anew beside the old connection, are
        switched in once their first attempt is over, and the old connection is drained (its
        in-flight requests finish, at most `drain_timeout_seconds`) and stopped; removed ones
        leave the catalog at once and are drained and stopped; unchanged ones are untouched.
        Settings that cannot change live are kept and listed in `restart_required`. Clients get
        `list_changed` through the catalog. An unchanged server left `failed` by its crash-loop
        cap or because it could not be launched is restarted. List requests wait for added
        servers' first start attempts (bounded by their `startup_timeout_seconds`). Reloads
        run one at a time.

        :raises RuntimeError: the hub is not running.
        """
        async with self._reload_lock:
            if new_config is None:
                if self._config_loader is None:
                    return ReloadReport("rejected", error="this hub was not started from a config file")
                try:
                    new_config = await anyio.to_thread.run_sync(self._config_loader)
                except ConfigError as exc:
                    logger.error("reload rejected, the running config stays: %s", exc)
                    self.metrics.reloaded("rejected")
                    return ReloadReport("rejected", error=str(exc))
            old = self.config
            plan = plan_reload(old, new_config)
            config = effective_config(old, new_config, plan)
            try:
                lock = await anyio.to_thread.run_sync(_read_lock, config)
            except ConfigError as exc:
                logger.error("reload rejected, the running config stays: %s", exc)
                self.metrics.reloaded("rejected")
                return ReloadReport("rejected", error=str(exc))
            for key in plan.restart_required:
                logger.warning("reload: %s changed but needs a restart to take effect; keeping the running value", key)
            report = ReloadReport("applied" if plan.changes_servers else "unchanged", plan=plan)
            self.config = self.endpoint.config = config
            relock = lock is not None or self.pins.has_lock
            if relock:
                self.pins.set_lock(lock)  # the GitOps approval: a reviewed lockfile, then a reload
            if plan.changes_servers:
                logger.info(
                    "reload: %d added, %d removed, %d replaced, %d unchanged",
                    len(plan.added),
                    len(plan.removed),
                    len(plan.replaced),
                    len(plan.unchanged),
                )
                await ReloadApplication(old, config, report, self.fleet, self.catalog, self.endpoint).run()
            if relock:
                await self.catalog.refresh()
            for server_id in plan.unchanged:
                for member in self.fleet.members(server_id):
                    if member.awaiting_restart:  # crash loop or cannot launch: a reload gives it a new start
                        logger.info("reload: restarting %s, failed and waiting for a restart", member.server_id)
                        member.restart()
            self.metrics.reloaded(report.status)
            return report

    async def _announce_started(self) -> None:
        with anyio.move_on_after(startup_bound_seconds(self.config)):
            async with anyio.create_task_group() as tg:
                for connection in self.fleet.connections.values():
                    tg.start_soon(self._announce_one, connection)
        if self._on_started is not None:
            await self._on_started(self)

    async def _announce_one(self, connection: ServerConnection) -> None:
        await connection.wait_first_attempt()
        if self._on_server_started is not None:
            await self._on_server_started(connection.status())

    # ---- drain for a deploy ----

    async def drain(
        self,
        cause: str,
        grace_seconds: float,
        *,
        stop_accepting: Callable[[], None],
        on_phase: Callable[[DrainPhase, DrainReport], Awaitable[None]] | None = None,
    ) -> DrainReport:
        """Drain the HTTP endpoint before a stop (`hub.endpoint.drain`): `/readyz` answers 503 at once;
        new requests are served for `grace_seconds`; then `stop_accepting()` (the HTTP server
        closes its listening socket) and new requests on open connections get 503; SSE streams
        end cleanly; requests in flight get `drain_timeout_seconds` (read now, so a reload's value
        applies) before the MCP requests still running are failed with -32000. Returns once
        nothing is in flight; the caller then stops the HTTP server, whose lifespan stops the
        fleet. `self.endpoint.drain.hurry(cause)` cuts it short.

        :param cause: what started it, for the log (`SIGTERM`).
        :param on_phase: awaited as each phase begins, with the report so far.
        """
        return await self.endpoint.drain.run(
            cause=cause,
            grace_seconds=grace_seconds,
            timeout_seconds=self.config.drain_timeout_seconds,
            stop_accepting=stop_accepting,
            end_streams=self.endpoint.end_streams,
            on_phase=on_phase,
        )

    def http_app(self) -> ASGIApp:
        """The HTTP app; its lifespan runs the fleet."""

        @contextlib.asynccontextmanager
        async def lifespan() -> AsyncIterator[None]:
            async with self.running():
                yield

        return build_http_app(self.endpoint, lifespan)

    # ---- serving and reporting: what the command line (`hub.cli`) runs ----

    def bind_http(self) -> tuple[HttpServer, str]:
        """Bind `config.listen` now (port 0: any free one, known before serving) and build the
        HTTP server of `http_app()` on it, with the config's head/body limits
        (`max_header_bytes`, `header_timeout_seconds`, `body_timeout_seconds`), leaving SIGINT and
        SIGTERM to the caller (`hub.cli.shutdown` drains on them).

        :returns: the server (`await server.serve()` runs it until `server.stop()`) and the URL
            of its MCP endpoint (`http://host:port/mcp`, an IPv6 host in brackets, RFC 3986 3.2.2).
        :raises OSError: the address is in use or cannot be bound.
        """
        sock = bind_socket(self.config.listen.host, self.config.listen.port)
        host, port = sock.getsockname()[:2]
        shown_host = f"[{host}]" if ":" in host else host
        server = HttpServer(self.http_app(), sock, limits=HttpLimits.from_config(self.config), handle_signals=False)
        return server, f"http://{shown_host}:{port}/mcp"

    async def serve_stdio(self) -> None:
        """Serve the aggregated catalog on this process's stdin/stdout until stdin closes (inside
        `running()`). Its list requests wait for every server's first start attempt."""
        await self.endpoint.serve_stdio()

    def hurry_drain(self, cause: str) -> None:
        """Cut a running `drain()` short (a second signal): skip what is left of the grace and of
        the wait, and fail the MCP requests in flight at once with -32000."""
        self.endpoint.drain.hurry(cause)

    async def wait_started(self) -> None:
        """Wait (inside `running()`) until every server has had its first start attempt, servers
        a reload is adding included; at most `startup_bound_seconds(config)`, then return anyway."""
        with anyio.move_on_after(startup_bound_seconds(self.config)):
            await self.fleet.startup.wait_settled()

    def server_statuses(self) -> list[ServerStatus]:
        """Every server connection's `ServerStatus` now (a server with replicas: one per member,
        `<server_id>/<n>`), in config order."""
        return [connection.status() for connection in self.fleet.connections.values()]

    def server_status(self, server_id: str) -> ServerStatus:
        """One server connection's `ServerStatus` now (`state` is its health: `open` or
        `degraded` refine a connected server's `ready`).

        :param server_id: a server's id, or a replica member's `<server_id>/<n>`.
        :raises KeyError: no such server connection (never configured, or removed by a reload).
        """
        return self.fleet.connections[server_id].status()

    async def wait_for_server(
        self, server_id: str, *states: ServerState, where: Callable[[ServerStatus], bool] | None = None
    ) -> ServerStatus:
        """Wait until the server's connection is in one of `states` (its life: `starting`,
        `ready`, `restarting`, `failed`, `disabled`, `stopped`; none given: any) and
        `where(status)` holds for its `ServerStatus` (whose `state` is the health: `open` or
        `degraded` refine a connected server's `ready`), at once if they do; return that status.

        Re-checked at each change of the connection (state, `restarts`, `last_error`,
        `in_flight`, dedicated connections, each health check), never polled; a change of the
        breaker or the queue from a request alone does not wake it. Unbounded: the caller
        bounds it (`anyio.fail_after`).

        :param server_id: a server's id, or a replica member's `<server_id>/<n>`.
        :raises KeyError: no such server connection now (a reload replacing the server during
            the wait leaves this waiting on the connection it replaced).
        """
        connection = self.fleet.connections[server_id]

        def holds(c: ServerConnection) -> bool:
            return (not states or c.state in states) and (where is None or where(c.status()))

        await connection.wait_until(holds)
        return connection.status()

    def server_changes(self, server_id: str) -> Changes:
        """The signal notified at each change of the server connection's `ServerStatus` that
        `wait_for_server` wakes on, for a wait on a condition over several servers or hubs
        (`hub.signals.wait_for_any`).

        :raises KeyError: no such server connection now.
        """
        return self.fleet.connections[server_id].changes

    def routes_json(self) -> list[dict[str, Any]]:
        """Every route with its server's state and fallback chain, as `GET /admin/routes` answers."""
        return self.endpoint.admin.routes_json()

    def lock_entries(self, server_ids: Iterable[str]) -> LockEntries:
        """The definitions the lockfile records for `server_ids` (tools, prompts, resource
        templates as last listed, with their fingerprints: `hub.lockfile`)."""
        return {
            (server_id, kind, name): definition
            for server_id in server_ids
            for (kind, name), definition in self.catalog.definitions(server_id).items()
        }


def _build_endpoint(
    config: HubConfig,
    catalog: Catalog,
    fleet: Fleet,
    router: Router,
    keys: ClusterKeys,
    store: SharedStore,
    metrics: HubMetrics,
    tracer: CallTracer | None,
) -> Endpoint:
    """The endpoint and every collaborator its faces share, built and wired to the catalog and
    the fleet: the authenticator, the policy and rate limits (counted in `store`), the sealed
    session ids and the shared session state, the era bridge (sealing with `keys`), resource
    subscriptions (and their fan-out between replicas when `store` is shared), tasks, the tool
    search index and the drain."""
    policy = Policy(config.policies)
    rate_limiter = RateLimiter(config.rate_limits, store)
    access = Access(policy, rate_limiter)
    session_ids = SessionIds(keys.codec("session-id"), config.session_max_lifetime_seconds)
    bridge = Bridge(config.input_required_ttl_seconds, keys.for_purpose("request-state"))
    subscriptions = Subscriptions(fleet.get, bridge.spawn)
    fanout: ResourceFanout | None = None
    if store.shared:

        def runs_per_replica(server_id: str) -> bool:
            """Whether `server_id` is a stdio server (a process of its own on each replica)."""
            connection = fleet.get(server_id)
            return connection is not None and connection.config.kind == "stdio"

        fanout = ResourceFanout(store, runs_per_replica)
        fanout.attach(subscriptions)
    tasks = TaskRelay(fleet, access)
    fleet.on_resource_updated = subscriptions.updated
    fleet.on_task_status = tasks.status_changed
    for connection in fleet.connections.values():
        connection.on_resource_updated = subscriptions.updated
        connection.on_task_status = tasks.status_changed
    services = EndpointServices(
        store=store,
        authenticator=Authenticator(config),
        policy=policy,
        rate_limiter=rate_limiter,
        access=access,
        session_ids=session_ids,
        session_state=SessionState(store, session_ids),
        answers=Answers(store),
        bridge=bridge,
        subscriptions=subscriptions,
        tasks=tasks,
        search=CatalogSearch(catalog, eager=search_configured(config)),
        drain=Drain(),
        fanout=fanout,
    )
    endpoint = Endpoint(config, catalog, fleet, router, services, metrics=metrics, tracer=tracer)
    catalog.add_listener(endpoint.on_catalog_change)
    catalog.add_listener(services.search.on_catalog_change)
    catalog.add_listener(warm_lists(catalog))  # list pages' definitions, as servers arrive
    # A changed set of federated hubs is re-advertised on list results: clients re-list.
    fleet.federation.add_listener(lambda: endpoint.on_catalog_change("", frozenset({"tools"}), every_face=True))
    return endpoint


def _read_lock(config: HubConfig) -> LockEntries | None:
    """The lockfile's entries when some server is `pinning: locked`, else None.

    :raises ConfigError: the lockfile is missing or invalid (a locked hub never starts open).
    """
    if not any(pinning_for(config, server_id) == "locked" for server_id in config.servers):
        return None
    return read_lockfile(lockfile_path(config))
