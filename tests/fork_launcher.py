"""The process a test (or the hub) starts for a forked server or CLI: it asks the zygote for a child.

    python -I -S tests/fork_launcher.py SOCKET SCRIPT [ARG ...]
    python -I -S tests/fork_launcher.py SOCKET -m MODULE [ARG ...]

It is started hundreds of times per test run, so its own start must stay cheap: run it with `-I -S`,
and it imports the C modules of the standard library only (`_socket`, `_signal`, `_struct`,
`_json`) plus `os`, never the Python wrappers (`socket`, `signal` and `json` import `enum` or
`re`, which more than doubled its CPU: ~25 ms a start against ~12 ms). Then it:

- connects to the zygote (`tests/fork_server.py`) at the Unix socket SOCKET and sends
  `[SCRIPT, *ARGS]` (or `["-m", MODULE, *ARGS]`), its cwd, its environment and its fds 0, 1, 2;
  once the zygote answers the child's pid, it closes its own 0, 1, 2 (onto /dev/null), so the
  starter's pipes reach EOF exactly when the child's end closes, as if the child were its own;
- forwards SIGTERM, SIGINT and SIGHUP to the child;
- exits as the child did: the same exit code, or killed by the same signal. If the zygote dies
  before reporting, the child died with it (`PR_SET_PDEATHSIG`) and the launcher kills itself
  with SIGKILL.

When the zygote cannot be reached (none runs, or it refuses), it becomes the script instead:
`os.execv(sys.executable, [sys.executable, SCRIPT, *ARGS])` (or `-m MODULE ...`), a direct start.
"""

import _json
import _signal
import _socket
import _struct
import os
import sys

_CONNECT_TIMEOUT_SECONDS = 10.0
"""How long to wait for the zygote to accept a launch and answer the child's pid."""
_FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP)


class _Forwarder:
    """Forwards the signals in `_FORWARDED` to the child once its pid is known (held until then)."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.pending: list[int] = []
        for signum in _FORWARDED:
            _signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.pid is None:
            self.pending.append(signum)
            return
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def started(self, pid: int) -> None:
        self.pid = pid
        for signum in self.pending:
            self._on_signal(signum, None)
        self.pending.clear()

    def restore(self) -> None:
        for signum in _FORWARDED:
            _signal.signal(signum, _signal.SIG_DFL if signum != _signal.SIGINT else _signal.default_int_handler)


class _Lines:
    """Lines from the zygote's connection."""

    def __init__(self, conn: _socket.socket) -> None:
        self.conn = conn
        self.buffer = b""

    def next(self) -> str | None:
        while b"\n" not in self.buffer:
            chunk = self.conn.recv(256)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


def _request(argv: list[str], cwd: str, env: dict[str, str]) -> bytes:
    """The launch request's JSON, byte for byte what `json.dumps` makes of
    `{"argv": argv, "cwd": cwd, "env": env}` (strings escaped to ASCII by the same C function)."""
    text = _json.encode_basestring_ascii
    pairs = ", ".join(f"{text(name)}: {text(value)}" for name, value in env.items())
    return f'{{"argv": [{", ".join(map(text, argv))}], "cwd": {text(cwd)}, "env": {{{pairs}}}}}'.encode()


def _exec_directly(argv: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, *argv])


def _exit_as(status: int) -> None:
    """End this process as a child that ended with wait status `status` did."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum != _signal.SIGKILL:
            _signal.signal(signum, _signal.SIG_DFL)  # SIGKILL's own handler cannot be set
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # a signal that does not end a process by default
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[2:] == ["-m"]:
        sys.stderr.write("usage: fork_launcher.py SOCKET SCRIPT [ARG ...] | -m MODULE [ARG ...]\n")
        os._exit(2)
    path, argv = sys.argv[1], sys.argv[2:]
    forwarder = _Forwarder()
    request = _request(argv, os.getcwd(), dict(os.environ))
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.settimeout(_CONNECT_TIMEOUT_SECONDS)
        conn.connect(path)
        message = _struct.pack(">I", len(request)) + request
        fds = (_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _struct.pack("3i", 0, 1, 2))
        sent = conn.sendmsg([message], [fds])  # what `socket.send_fds` sends
        if sent < len(message):
            # Never an empty send: once the whole request is sent the zygote may have forked,
            # the child run and exited, and the zygote closed the connection, which makes even
            # an empty send fail (EPIPE) and would start the script a second time.
            conn.sendall(message[sent:])
        lines = _Lines(conn)
        answer = lines.next()
    except OSError:
        answer = None
    if answer is None or not answer.startswith("pid "):
        conn.close()  # had the zygote forked, the closed connection gets the child killed
        forwarder.restore()
        for signum in forwarder.pending:
            os.kill(os.getpid(), signum)
        _exec_directly(argv)
        return
    _detach_stdio()
    forwarder.started(int(answer.split()[1]))
    conn.settimeout(None)
    try:
        report = lines.next()
    except OSError:
        report = None
    if report is None or not report.startswith("exit "):
        os.kill(os.getpid(), _signal.SIGKILL)  # the zygote died, and the child with it
    _exit_as(int(report.split()[1]))  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
