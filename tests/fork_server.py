"""The fork server (a zygote) for the tests' subprocesses: import once, fork per launch.

Every stdio test server and every `python -m hub ...` a test starts is a fresh interpreter
importing the `mcp` SDK (0.85-1.6 s of CPU each, and the suite starts well over a thousand).
This process imports what the given scripts import at top level (plus the event loop the scripts
run on), then forks one child per launch request, so each launch costs a fork instead of an import.

    python tests/fork_server.py SOCKET FD [--exclude MODULE ...] [PRELOAD_SCRIPT ...]

`--exclude MODULE`: never preload MODULE or its submodules, even where a script imports them (a
module that reads its environment or its stdio at import, such as `hub.cli`'s consoles, must be
imported by each child, with the child's own environment and stdio).

It serves on the Unix socket SOCKET (its directory must be private: mode 0700), which its starter
has bound and made listen, and hands over as the inherited fd FD (`tests.fork_session`), so
launches can connect at once: they wait in the listen backlog while this process preloads. It
writes `ready`
and a newline to its stdout once it accepts launches, and serves until SIGTERM/SIGINT or until
its parent (the pytest process that started it) dies. `tests/fork_launcher.py` is its client; one launch is:

1. the launcher sends a 4-byte big-endian length, then that many bytes of JSON
   `{"argv": [script, *args] or ["-m", module, *args], "cwd": str, "env": {name: value}}` (the
   arguments `python` would be given), with its fds 0, 1, 2 attached (SCM_RIGHTS) to the first
   bytes;
2. the zygote forks; the child takes those fds as its 0, 1, 2 (and new `sys.stdin`/`stdout`/
   `stderr` over them, buffered as `PYTHONUNBUFFERED` and a tty say), its own session, the cwd,
   exactly that environment, `sys.argv` and `sys.path[0]` as a direct start would have, default
   signal handlers, and runs the script (`runpy.run_path`) or the module (`runpy.run_module`,
   `alter_sys=True`) as `__main__`; it always ends by `os._exit` with the exit code (SystemExit
   honoured; an uncaught exception prints its traceback on stderr and exits 1;
   KeyboardInterrupt ends it by SIGINT, as CPython does). A module launch whose environment
   differs from the zygote's in a variable read at interpreter start-up or by a preloaded
   module at import (`STARTUP_ENV`), or in its locale, is refused: the launcher then starts it
   directly (a script launch is not: the hub gives its stdio servers a minimal environment);
3. the zygote answers `pid <child pid>\\n`, and once the child has been reaped
   `exit <wait status>\\n` (the raw `os.waitpid` status), then closes the connection;
4. a connection that closes before its child was reaped (the launcher was SIGKILLed) gets its
   child SIGKILLed: no child outlives its launcher.

Single-threaded by design (a fork with threads running copies their locks mid-use): one select
loop over the listening socket, the connections and a self-pipe woken by SIGCHLD
(`signal.set_wakeup_fd`). Children also get `PR_SET_PDEATHSIG` SIGKILL, so they die with the
zygote, and the zygote gets SIGTERM when its parent dies (and checks `os.getppid()` every second
in case that arrived before it was set).
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import importlib
import io
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

_PR_SET_PDEATHSIG = 1
_REQUEST_TIMEOUT_SECONDS = 5.0
"""How long a connected launcher may take to send its whole request."""
_MAX_REQUEST_BYTES = 1 << 20
_EXTRA_PRELOADS = ("anyio._backends._asyncio", "uvloop", "mcp.server.stdio", "mcp.server.lowlevel")
"""What the scripts import when they run rather than at top level (the asyncio backend, uvloop
for `use_uvloop=True`, the SDK's stdio transport)."""
LOG_ENV = "MCPHUB_TEST_FORK_LOG"
STARTUP_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSAFEPATH",
    "PYTHONNOUSERSITE",
    "PYTHONHASHSEED",
    "PYTHONWARNINGS",
    "PYTHONDEVMODE",
    "PYTHONOPTIMIZE",
    "PYTHONUTF8",
    "PYTHONIOENCODING",
    "PYTHONMALLOC",
    "PYTHONFAULTHANDLER",
    "PYTHONTRACEMALLOC",
    "PYTHONASYNCIODEBUG",
    "PYTHONINTMAXSTRDIGITS",
    "PYTHONCOERCECLOCALE",
    "TYPER_USE_RICH",
)
"""Variables a fork cannot honour: the interpreter reads them once at start-up (the path, the
hash seed, warnings, the stdio encoding), or a preloaded module at import (typer's
`TYPER_USE_RICH`); the locale is compared by its effect (`effective_locale`).
`PYTHONUNBUFFERED` is honoured (the child's stdio is rebuilt)."""


def effective_locale(env: Mapping[str, str]) -> str:
    """The LC_CTYPE locale an interpreter started with `env` runs in: LC_ALL, else LC_CTYPE,
    else LANG; "C" or "POSIX" (or none) is coerced to "C.UTF-8" unless LC_ALL is set or
    PYTHONCOERCECLOCALE=0 (PEP 538)."""
    ctype = env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or "C"
    if ctype in ("C", "POSIX") and not env.get("LC_ALL") and env.get("PYTHONCOERCECLOCALE") != "0":
        return "C.UTF-8"
    return ctype


def coerce_c_locale(env: dict[str, str]) -> None:
    """Set LC_CTYPE=C.UTF-8 in `env` where CPython's start-up would (PEP 538: the legacy C
    locale coerced, and the variable set so that the process's children inherit it)."""
    ctype = env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or "C"
    if ctype in ("C", "POSIX") and effective_locale(env) == "C.UTF-8":
        env["LC_CTYPE"] = "C.UTF-8"


def _set_parent_death_signal(signum: int) -> None:
    """Linux `prctl(PR_SET_PDEATHSIG, signum)`: get `signum` when the parent exits (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)


def _excluded(name: str, exclude: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in exclude)


def preload(scripts: list[str], exclude: tuple[str, ...] = ()) -> list[str]:
    """Import every module the `scripts` import at their top level, and `_EXTRA_PRELOADS`, except
    the modules in `exclude` and their submodules.

    :returns: the module names that could not be imported (a child imports those itself).
    """
    names: list[str] = []
    for script in scripts:
        tree = ast.parse(Path(script).read_text(encoding="utf-8"), filename=script)
        for node in tree.body:
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module != "__future__":
                names.append(node.module)
    failed: list[str] = []
    for name in [*names, *_EXTRA_PRELOADS]:
        if _excluded(name, exclude):
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            failed.append(name)
    return failed


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the launcher closed the connection mid-request")
        data += chunk
    return bytes(data)


def _read_request(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    """One launch request: its JSON object and the three fds sent with it (the caller owns them)."""
    conn.settimeout(_REQUEST_TIMEOUT_SECONDS)
    head, fds, flags, _ = socket.recv_fds(conn, 4, 3)
    try:
        if flags & socket.MSG_CTRUNC or len(fds) != 3:
            raise ConnectionError(f"expected 3 fds with the request, got {len(fds)}")
        head += _recv_exactly(conn, 4 - len(head))
        (size,) = struct.unpack(">I", head)
        if size > _MAX_REQUEST_BYTES:
            raise ConnectionError(f"request of {size} bytes")
        request = json.loads(_recv_exactly(conn, size))
        if not isinstance(request, dict):
            raise ConnectionError("the request is not a JSON object")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


class Zygote:
    """The select loop: accept launches, fork, reap, report exits, kill orphans."""

    def __init__(self, path: str, listener: socket.socket) -> None:
        """Serve on `listener`, bound to the Unix socket `path` and listening (removed at the end)."""
        self.path = path
        self.listener = listener
        self.listener.setblocking(False)
        self.wakeup_r, self.wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "wakeup")
        self.children: dict[int, socket.socket | None] = {}
        """Each live (unreaped) child and the connection of its launcher (None once that closed)."""
        self.stopping = False
        self.parent = os.getppid()
        self.startup_env = {name: os.environ.get(name) for name in STARTUP_ENV}
        self.locale = effective_locale(os.environ)
        self.log_launches = os.environ.get(LOG_ENV) == "1"
        """`MCPHUB_TEST_FORK_LOG=1`: a line on stderr per child as it is reaped (its CPU and what
        it ran), and the CPU used at the end."""
        self.launched: dict[int, str] = {}
        """With `log_launches`: what each live child runs (the first words of its argv)."""

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def serve(self) -> None:
        """Serve launches until SIGTERM/SIGINT or the parent's death; then SIGKILL every child left."""
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a C handler, so the wakeup fd fires
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.set_wakeup_fd(self.wakeup_w)
        try:
            while not self.stopping and os.getppid() == self.parent:
                for key, _ in self.selector.select(timeout=1.0):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wakeup":
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.wakeup_r, 512)
                    else:
                        self._on_launcher_readable(key.fileobj, key.data)  # type: ignore[arg-type]
                self._reap()
        finally:
            self._stop()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            request, fds = _read_request(conn)
        except (OSError, ValueError) as exc:
            print(f"fork_server: bad request: {exc}", file=sys.stderr, flush=True)
            conn.close()
            return
        refusal = self._refusal(request)
        if refusal is not None:  # the launcher starts it directly
            print(f"fork_server: refused: {refusal}", file=sys.stderr, flush=True)
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory: the launcher starts the script itself
            print(f"fork_server: fork failed: {exc}", file=sys.stderr, flush=True)
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        if pid == 0:
            self._become_child(conn, request, fds)  # never returns
        for fd in fds:
            os.close(fd)  # the child has them; a copy here would keep EOF from its peers
        self.children[pid] = conn
        if self.log_launches:
            self.launched[pid] = " ".join(map(str, request["argv"][:3]))  # type: ignore[index]
        conn.settimeout(None)
        try:
            conn.sendall(f"pid {pid}\n".encode())
        except OSError:
            self._launcher_gone(conn, pid)
            return
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def _refusal(self, request: dict[str, object]) -> str | None:
        """Why this launch must not be forked, or None."""
        if threading.active_count() != 1:
            return "threads are running"  # never fork with threads running
        argv, env = request.get("argv"), request.get("env")
        if not isinstance(argv, list) or not argv or not isinstance(env, dict):
            return "no argv or env"
        if argv[0] == "-m":
            if len(argv) < 2:
                return "-m without a module"
            differing = [name for name, value in self.startup_env.items() if env.get(name) != value]
            if effective_locale(env) != self.locale:
                differing.append(f"the locale ({effective_locale(env)})")
            if differing:
                return f"{argv[1]}: start-up variables differ: {', '.join(differing)}"
        return None

    def _on_launcher_readable(self, conn: socket.socket, pid: int) -> None:
        try:
            data = conn.recv(64)
        except OSError:
            data = b""
        if not data:  # the launcher is gone before its child was reaped
            self._launcher_gone(conn, pid)

    def _launcher_gone(self, conn: socket.socket, pid: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn)
        conn.close()
        if pid in self.children:
            self.children[pid] = None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.log_launches:
                cpu, ran = usage.ru_utime + usage.ru_stime, self.launched.pop(pid, "?")
                print(f"fork_server: child {pid} used {cpu:.3f} s of CPU: {ran}", file=sys.stderr)
            conn = self.children.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(conn)
                with contextlib.suppress(OSError):
                    conn.sendall(f"exit {status}\n".encode())
                conn.close()

    def _stop(self) -> None:
        signal.set_wakeup_fd(-1)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid, conn in list(self.children.items()):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            if conn is not None:
                conn.close()
        self.children.clear()
        self.selector.close()
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self.log_launches:
            times = os.times()
            own, forked = times.user + times.system, times.children_user + times.children_system
            print(f"fork_server: CPU {own:.1f} s own, {forked:.1f} s in its forked children", file=sys.stderr)

    def _close_in_child(self) -> None:
        """Drop every object of the zygote that holds an fd, so none leaks into the script."""
        signal.set_wakeup_fd(-1)
        for conn in self.children.values():
            if conn is not None:
                conn.close()
        self.selector.close()
        self.listener.close()
        os.close(self.wakeup_r)
        os.close(self.wakeup_w)

    def _become_child(self, conn: socket.socket, request: dict[str, object], fds: list[int]) -> None:
        code = 1
        try:
            os.setsid()  # as a direct start by the hub: its own session and process group
            _set_parent_death_signal(signal.SIGKILL)
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            conn.close()
            self._close_in_child()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in fds:
                if fd > 2:
                    os.close(fd)
            argv = [str(arg) for arg in request["argv"]]  # type: ignore[attr-defined]
            env = {str(k): str(v) for k, v in request["env"].items()}  # type: ignore[attr-defined]
            coerce_c_locale(env)
            os.chdir(str(request["cwd"]))
            os.environ.clear()
            os.environ.update(env)
            _reopen_stdio(unbuffered=bool(env.get("PYTHONUNBUFFERED")))
            code = run_main(argv)
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            os._exit(code)


def _reopen_stdio(*, unbuffered: bool) -> None:
    """New `sys.stdin`, `sys.stdout`, `sys.stderr` over fds 0, 1, 2, made as CPython makes them
    at start-up (`create_stdio` in Python/pylifecycle.c): binary layer unbuffered for the
    writers under `PYTHONUNBUFFERED` (and text written through), else stdout line-buffered on a
    tty only and stderr always; newline "\\n"; the zygote's encoding and error handlers (the
    variables that choose those are in `STARTUP_ENV`)."""
    streams = []
    for fd, name, old in (
        (0, "<stdin>", sys.__stdin__),
        (1, "<stdout>", sys.__stdout__),
        (2, "<stderr>", sys.__stderr__),
    ):
        writing = fd != 0
        buffering = 0 if unbuffered and writing else -1
        binary = open(fd, "wb" if writing else "rb", buffering=buffering, closefd=False)
        raw = binary if buffering == 0 else binary.raw  # type: ignore[attr-defined]
        raw.name = name
        line_buffering = not unbuffered and (fd == 2 or raw.isatty())
        stream = io.TextIOWrapper(
            binary,  # type: ignore[arg-type]
            encoding=old.encoding if old is not None else "utf-8",
            errors=old.errors if old is not None else "strict",
            newline="\n",
            line_buffering=line_buffering,
            write_through=unbuffered,
        )
        stream.mode = "w" if writing else "r"  # type: ignore[misc]
        streams.append(stream)
    sys.stdin = sys.__stdin__ = streams[0]
    sys.stdout = sys.__stdout__ = streams[1]
    sys.stderr = sys.__stderr__ = streams[2]


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def run_main(argv: list[str]) -> int:
    """Run what `python *argv` runs, as `__main__`, as the interpreter would: `argv` is
    `[script, *args]` (`runpy.run_path`; `sys.path[0]` the script's directory) or
    `["-m", module, *args]` (`runpy.run_module` with `alter_sys=True`: `sys.argv[0]` the module's
    file; `sys.path[0]` the cwd). Returns the exit code (0, SystemExit's code, 1 after printing
    an uncaught exception's traceback); a KeyboardInterrupt ends the process by SIGINT. Exit
    handlers (`atexit`) run and stdout/stderr are flushed before it returns."""
    import atexit

    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = ["-m", *argv[2:]]  # what CPython shows while it looks the module up
            sys.path[0] = os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            with contextlib.suppress(Exception):
                print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        _flush_stdio()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    # CPython runs these at a normal exit; os._exit would skip them (a private name of the
    # standard library, not of the SDK; tests/test_fork_server.py covers an atexit handler).
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    _flush_stdio()
    return code & 0xFF


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: fork_server.py SOCKET FD [--exclude MODULE ...] [PRELOAD_SCRIPT ...]")
    _set_parent_death_signal(signal.SIGTERM)
    listener = socket.socket(fileno=int(sys.argv[2]))
    exclude: list[str] = []
    scripts = sys.argv[3:]
    while len(scripts) >= 2 and scripts[0] == "--exclude":
        exclude.append(scripts[1])
        scripts = scripts[2:]
    failed = preload(scripts, tuple(exclude))
    if failed:
        print(f"fork_server: not preloaded: {', '.join(failed)}", file=sys.stderr, flush=True)
    leaked = sorted(name for name in sys.modules if _excluded(name, tuple(exclude)))
    if leaked:  # a preloaded module imported an excluded one: its children would share its state
        sys.exit(f"fork_server: excluded modules were imported by preloaded ones: {', '.join(leaked)}")
    zygote = Zygote(sys.argv[1], listener)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the readiness pipe is done with: nobody reads it any more
    os.close(devnull)
    zygote.serve()


if __name__ == "__main__":
    main()
