"""How the HTTP server under the endpoint stops: uvicorn's `Server`, with its own signal
handling optional and its stop prompt.

uvicorn notices a stop (`should_exit`) at its main loop's next 0.1 s tick; its shutdown then
sleeps 0.1 s after asking each connection to close and checks every 0.1 s whether they have, so
a stop takes 0.1-0.3 s however idle the server is (a `mcphub serve` drain, a replica's rolling
restart, and each of the hundreds of hubs the test suite serves, pay it). `HubServer` keeps
uvicorn's sequence and bound but waits on events instead:

1. `request_stop()` wakes the main loop at once (uvicorn's own signal handler, when installed,
   sets `should_exit`, still seen at the next tick);
2. stop accepting (the listening sockets close), and ask every connection to close once its
   response is done (an idle keep-alive connection closes at once: uvicorn's
   `connection.shutdown()`);
3. wait, up to the config's `timeout_graceful_shutdown` seconds (`HttpServer`: 5), until every
   connection has closed (each closing connection tells the server: `HubServerState`, set by
   `HubHttpProtocol.connection_lost`) and every request task has ended; past the bound the
   tasks still running are cancelled, as uvicorn does;
4. the app's lifespan shutdown (unless uvicorn was forced to exit by a second signal).

A second SIGINT/SIGTERM under uvicorn's handler (`force_exit`) is noticed within 0.1 s, as with
uvicorn. Relies on uvicorn 0.54's `Server.main_loop`, `on_tick`, `shutdown`, `servers`,
`server_state` (`connections`, `tasks`), `lifespan`, `force_exit` and `capture_signals`, and a
connection's `shutdown()` (covered by tests/test_drain.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from uvicorn.server import ServerState

__all__ = ["HubServer", "HubServerState"]

logger = logging.getLogger("uvicorn.error")  # where uvicorn reports its own shutdown

_TICK_SECONDS = 0.1
"""uvicorn's main-loop tick: the Date header is renewed every 10 ticks, and `should_exit` set by
its signal handler (or `force_exit` by a second signal) is noticed at the next one."""


class HubServerState(ServerState):
    """uvicorn's state shared by a server and its connections, plus `connection_closed`: set
    each time a connection closes (`HubHttpProtocol.connection_lost`), which the server's
    shutdown waits on."""

    def __init__(self) -> None:
        super().__init__()
        self.connection_closed = asyncio.Event()


class HubServer(uvicorn.Server):
    """uvicorn's server, installing its SIGINT/SIGTERM handlers only when asked to, and stopping
    promptly (the module docstring)."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals
        self.server_state: HubServerState = HubServerState()
        self._stop_requested = asyncio.Event()

    def request_stop(self) -> None:
        """Stop serving: the main loop ends now and the shutdown begins. Call it from the
        server's event loop."""
        self.should_exit = True
        self._stop_requested.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._handle_signals:
            yield
            return
        with super().capture_signals():
            yield

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000  # uvicorn's wrap: a day of ticks
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TICK_SECONDS):
                    await self._stop_requested.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        logger.info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                await self._closed()
        except TimeoutError:
            tasks = self.server_state.tasks
            logger.error("Cancel %s running task(s), timeout graceful shutdown exceeded", len(tasks))
            for task in tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _closed(self) -> None:
        """Return once every connection has closed and every request task has ended (or at the
        tick after `force_exit` was set)."""
        state = self.server_state
        while state.connections and not self.force_exit:
            state.connection_closed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TICK_SECONDS):
                    await state.connection_closed.wait()
        while state.tasks and not self.force_exit:
            await asyncio.wait(set(state.tasks), timeout=_TICK_SECONDS)
        for server in self.servers:
            await server.wait_closed()
