"""The test run's fork server: one zygote (`tests/fork_server.py`) for every test process of a run.

Its hooks are `tests/conftest.py`'s (it imports them). The process that runs pytest (the
xdist controller, or the only process of a run without workers) starts the zygote as it
configures, before any worker exists: it binds the zygote's Unix socket itself and hands it over
listening, so a launch can connect from the first moment (it waits in the listen backlog while
the zygote imports what it preloads), and it puts the socket's path in `MCPHUB_TEST_FORK_SOCKET`,
which the workers inherit. Every worker's test servers and `mcphub` runs are then forked by that
one zygote: its import of the SDK, the test servers' modules and the CLI's (~1.1 s of CPU) is
paid once per run rather than once per worker, and no worker waits for one to start.

The zygote is not started under `MCPHUB_TEST_FORK=0` or `--collect-only`, and is stopped at once
in a run without workers whose every test is in the pure tier (marker `unit`: no subprocess). It
is stopped (with any child left) at the end of the run; what it wrote on its stderr (nothing,
unless something went wrong, or a line per launch and its CPU under `MCPHUB_TEST_FORK_LOG=1`)
is shown in the run's summary. While it cannot be reached, a launcher starts its script itself
(`tests/fork_launcher.py`).
"""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORK_SERVER = str(ROOT / "tests" / "fork_server.py")
FORK_LAUNCHER = str(ROOT / "tests" / "fork_launcher.py")
FORK_ENV = "MCPHUB_TEST_FORK"
"""`MCPHUB_TEST_FORK=0`: start every test server and `mcphub` directly, without the fork server."""
FORK_SOCKET_ENV = "MCPHUB_TEST_FORK_SOCKET"
"""The Unix socket of the run's fork server while it runs. An environment variable: the xdist
workers inherit it from the process that started them."""
_FORK_READY_SECONDS = 60.0

SERVERS = ROOT / "tests" / "servers"
FORK_PRELOAD = (
    *sorted(str(path) for path in SERVERS.glob("*.py") if path.name != "auth_server.py"),
    *sorted(str(path) for path in (ROOT / "hub" / "cli").glob("*.py")),
)
"""What the fork server imports: what the stdio test servers import (not the auth server's
imports: it runs inside the test process) and what `python -m hub` imports at start-up, except
`hub.cli` itself (`FORK_EXCLUDE`)."""
FORK_EXCLUDE = ("hub.cli", "task_support")
"""Never preloaded: `hub.cli` builds its rich consoles at import from the environment and
stdout (COLUMNS, a tty), so each `python -m hub` child imports it (a few small modules) with its
own; `task_support` is imported by bare name from `tests/servers/` (not on the zygote's path)."""


def _listen_unix(path: str) -> socket.socket:
    """A Unix stream socket bound to `path` (mode 0600) and listening, with room in its backlog
    for the launches of every test process at once."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener


def start_fork_server(
    path: str, *preload: str, exclude: tuple[str, ...] = (), log: str | None = None, wait: bool = True
) -> subprocess.Popen[bytes]:
    """Start `tests/fork_server.py` on the Unix socket `path` (in a 0700 directory), importing
    what the `preload` scripts import (but no module of `exclude` nor their submodules). The
    socket is bound and listening when this returns; with `wait`, the zygote also accepts
    launches by then (else a launch waits in the backlog until it does). Its stderr goes to
    `log` (default: `zygote.log` next to the socket).

    :raises RuntimeError: with `wait`, it did not say `ready` within 60 s (it is stopped then).
    :raises OSError: `path` could not be bound."""
    listener = _listen_unix(path)
    with listener, open(log or os.path.join(os.path.dirname(path), "zygote.log"), "ab") as stderr:
        # Not traced by coverage (a fixture server never was): its children would inherit it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS_")}
        fd = listener.fileno()
        excluded = (arg for name in exclude for arg in ("--exclude", name))
        process = subprocess.Popen(
            [sys.executable, FORK_SERVER, path, str(fd), *excluded, *preload],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if wait else subprocess.DEVNULL,
            stderr=stderr,
            pass_fds=(fd,),
            start_new_session=True,
        )
    if not wait:
        return process
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = process.stdout.readline() if selector.select(timeout=_FORK_READY_SECONDS) else b""
    process.stdout.close()
    if ready != b"ready\n":
        stop_fork_server(process)
        raise RuntimeError("the fork server did not start")
    return process


def stop_fork_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the fork server (it SIGKILLs and reaps every child left), SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class _RunForkServer:
    """The run's zygote: its process and its private directory (socket and log)."""

    process: subprocess.Popen[bytes]
    directory: str

    @property
    def log(self) -> Path:
        return Path(self.directory) / "zygote.log"

    def stop(self) -> str:
        """Stop it: returns what it wrote on its stderr."""
        if os.environ.get(FORK_SOCKET_ENV) == os.path.join(self.directory, "zygote.sock"):
            del os.environ[FORK_SOCKET_ENV]
        stop_fork_server(self.process)
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        shutil.rmtree(self.directory, ignore_errors=True)
        return text


_STASH = pytest.StashKey[_RunForkServer]()
_LOG_STASH = pytest.StashKey[str]()


def _wanted(config: pytest.Config) -> bool:
    if hasattr(config, "workerinput"):
        return False  # an xdist worker: it uses the zygote whose socket it inherited
    return os.environ.get(FORK_ENV, "1") != "0" and not config.getoption("collectonly")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Start the run's zygote before any worker starts (they inherit its socket's path)."""
    if not _wanted(config):
        return
    directory = tempfile.mkdtemp(prefix="mcphub-fork-")  # mode 0700: private to this user
    path = os.path.join(directory, "zygote.sock")
    try:
        process = start_fork_server(path, *FORK_PRELOAD, exclude=FORK_EXCLUDE, wait=False)
    except OSError as exc:  # the run goes on, slower: every launcher starts its script itself
        shutil.rmtree(directory, ignore_errors=True)
        config.stash[_LOG_STASH] = f"the fork server did not start ({exc}): every test server started directly\n"
        return
    config.stash[_STASH] = _RunForkServer(process, directory)
    os.environ[FORK_SOCKET_ENV] = path


def pytest_collection_finish(session: pytest.Session) -> None:
    """In a run without workers, stop the zygote at once when no test can launch anything."""
    running = session.config.stash.get(_STASH, None)
    if running is not None and session.items and all(item.get_closest_marker("unit") for item in session.items):
        session.config.stash[_LOG_STASH] = running.stop()


def _stop(config: pytest.Config) -> None:
    running = config.stash.get(_STASH, None)
    if running is not None and _LOG_STASH not in config.stash:
        config.stash[_LOG_STASH] = running.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Stop the zygote once every test process is done, and show what it wrote, if anything."""
    _stop(config)
    text = config.stash.get(_LOG_STASH, "")
    if text:
        terminalreporter.section("the fork server's log (tests/fork_server.py)")
        terminalreporter.write(text if text.endswith("\n") else text + "\n")


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop(config)  # a run that ended without a summary
