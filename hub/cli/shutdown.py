"""How `mcphub serve` (over HTTP) stops: SIGTERM and SIGINT start a drain (`Hub.drain`), a
second one stops at once, and the exit status says which.

- **SIGTERM** (Kubernetes, systemd, `docker stop`): a drain with the grace,
  `shutdown_grace_seconds` (default 5): `/readyz` answers 503 at once and new requests are
  served during the grace, so the balancer takes the replica out before it stops accepting.
- **SIGINT** (Ctrl-C): the same drain without the grace: a hub run by hand stops at once
  when nothing is in flight, and otherwise waits for the requests in flight (at most
  `drain_timeout_seconds`).
- **A second SIGTERM or SIGINT** during the drain stops at once: the grace and the wait are
  cut short and the MCP requests in flight fail with -32000; the exit status is then 128 plus
  the second signal's number (143 for SIGTERM, 130 for SIGINT), the shell's convention for a
  process ended by a signal. Later signals are ignored; SIGKILL remains.
- After a drain (including one whose wait ran out and failed the requests still running) the
  HTTP server stops, its lifespan stops the fleet (every server shut down as on any exit),
  and the exit status is 0.

`mcphub serve --stdio` is unaffected: it ends when its host closes stdin.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from hub.app import DrainPhase, DrainReport, HttpServer, Hub

__all__ = ["serve_until_signalled"]

logger = logging.getLogger(__name__)


async def serve_until_signalled(
    hub: Hub,
    server: HttpServer,
    *,
    on_phase: Callable[[DrainPhase, DrainReport], Awaitable[None]] | None = None,
) -> int:
    """Run `server` (from `Hub.bind_http`, which leaves the signals to its caller) until SIGTERM or SIGINT, drain `hub`,
    stop; return the exit status (0, or 128 + the signal that stopped it at once).

    :param on_phase: awaited as each phase of the drain begins (`Hub.drain`).
    """
    hurried_by: int | None = None

    async def drain_then_stop(signum: int) -> None:
        grace = hub.config.shutdown_grace_seconds if signum == signal.SIGTERM else 0.0
        try:
            await hub.drain(signal.Signals(signum).name, grace, stop_accepting=server.stop_accepting, on_phase=on_phase)
        finally:
            server.stop()

    async def watch_signals(tg: anyio.abc.TaskGroup, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        nonlocal hurried_by
        first: int | None = None
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if first is None:
                    first = signum
                    tg.start_soon(drain_then_stop, signum)
                elif hurried_by is None:
                    hurried_by = signum
                    logger.warning("%s during the drain: stopping at once", name)
                    hub.hurry_drain(name)
                else:
                    logger.info("%s ignored: already stopping at once", name)

    async with anyio.create_task_group() as tg:
        await tg.start(watch_signals, tg)
        await server.serve()
        tg.cancel_scope.cancel()
    return 0 if hurried_by is None else 128 + hurried_by
