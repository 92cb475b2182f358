"""Compare HTTP servers for the hub's front door: server CPU per request, and what each does with
an oversized head, a slow head, a slow body, an idle connection, and an early 413 to `urllib`.

    python benchmarks/front_door.py [--requests N] [--wait SECONDS] [--alt-python PATH]

Each server runs in its own process on 127.0.0.1 serving the same tiny ASGI app (this module's
`app`); the client is this process. CPU per request is the server process tree's user+system
time over N sequential keep-alive requests (a GET, and a POST with an MCP-sized JSON body),
after a warm-up. Servers:

- `uvicorn-httptools`: uvicorn 0.54 with httptools, stock (what the hub ran before).
- `uvicorn-h11`: uvicorn with h11 and `h11_max_incomplete_event_size=65536`.
- `hub`: `hub.endpoint.http_server.HttpServer` (uvicorn + httptools + `HubHttpProtocol`), defaults.
- `hypercorn` and `granian`: only with `--alt-python`, a Python that has them installed (they are
  not project dependencies): hypercorn 0.18 (uvloop worker, `read_timeout=10`,
  `h11_max_incomplete_size=65536`), granian 2.8 (1 worker, uvloop, header read timeout 10 s).

A probe reports the status line the client read, `reset` (connection reset before an answer),
`closed` (closed without an answer) and the seconds until the server ended the connection, or
`open` if it still was after `--wait` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
_OK = b'{"ok":true}'
_MCP_BODY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "fx__echo", "arguments": {"text": "x" * 200}},
    }
).encode()


async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """`/early413` answers 413 at once (body unread); anything else reads its body, answers 200."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/early413":
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"9"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": b"too large"})
        return
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_OK)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _OK})


def _serve_hub(port: int, protocol: str) -> None:
    sys.path.insert(0, str(ROOT))
    from hub.endpoint import run_event_loop
    from hub.endpoint.http_server import HttpServer, bind_socket

    sock = bind_socket("127.0.0.1", port)
    server = HttpServer(app, sock)  # type: ignore[arg-type]
    if protocol == "httptools":  # the same runner with uvicorn's stock protocol, for comparison
        server._server.config.http = "httptools"
    run_event_loop(server.serve)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _commands(port: int, alt_python: str | None, scratch: Path) -> dict[str, list[str]]:
    uvicorn = [sys.executable, "-m", "uvicorn", "front_door:app", "--port", str(port), "--loop", "uvloop"]
    uvicorn += ["--log-level", "error", "--no-access-log", "--app-dir", str(HERE)]
    commands = {
        "uvicorn-httptools": [*uvicorn, "--http", "httptools"],
        "uvicorn-h11": [*uvicorn, "--http", "h11", "--h11-max-incomplete-event-size", "65536"],
        "hub": [sys.executable, str(Path(__file__).resolve()), "--serve-hub", str(port), "hub"],
        "hub-runner-stock-protocol": [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-hub",
            str(port),
            "httptools",
        ],
    }
    if alt_python:
        toml = scratch / "hypercorn.toml"
        toml.write_text("h11_max_incomplete_size = 65536\nread_timeout = 10\nloglevel = 'ERROR'\n")
        commands["hypercorn"] = [alt_python, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "-k", "uvloop"]
        commands["hypercorn"] += ["--config", str(toml), "front_door:app"]
        commands["granian"] = [alt_python, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"]
        commands["granian"] += ["--port", str(port), "--workers", "1", "--loop", "uvloop", "--http", "1"]
        commands["granian"] += ["--http1-header-read-timeout", "10000", "--log-level", "error", "front_door:app"]
    return commands


def _tree_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of `pid` and all its descendants."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        tree.update(children)
        frontier += children
    ticks = 0
    for member in tree:
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    total = 0
    for entry in [pid, *_children(pid)]:
        for line in Path(f"/proc/{entry}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as file:
            found += [int(child) for child in file.read().split()]
    return found + [grandchild for child in found for grandchild in _children(child)]


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection")
    return chunk


def _read_response(sock: socket.socket, buffer: bytearray) -> None:
    while b"\r\n\r\n" not in buffer:
        buffer += _recv(sock)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(rest) < length:
        rest += _recv(sock)
    buffer[:] = rest[length:]


def _cpu_per_request(pid: int, port: int, request: bytes, count: int) -> float:
    """Server CPU µs per request over `count` sequential keep-alive requests (a new connection
    when the server ends one: hypercorn does after 1000 requests)."""

    def run(n: int) -> None:
        sock, buffer, done = None, bytearray(), 0
        try:
            while done < n:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port))
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    buffer.clear()
                try:
                    sock.sendall(request)
                    _read_response(sock, buffer)
                    done += 1
                except ConnectionError:
                    sock.close()
                    sock = None
        finally:
            if sock is not None:
                sock.close()

    run(count // 10)  # warm-up
    before = _tree_cpu_seconds(pid)
    run(count)
    return (_tree_cpu_seconds(pid) - before) / count * 1e6


def _probe(port: int, data: bytes, wait: float) -> str:
    """Send `data`, then report what the server answers and when it ends the connection."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(wait)
        try:
            sock.sendall(data)
        except OSError:
            return f"reset while sending ({time.monotonic() - start:.1f} s)"
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            status = received.split(b"\r\n", 1)[0].decode(errors="replace") or "nothing"
            return f"{status}; still open after {wait:.0f} s"
        except ConnectionResetError:
            return f"reset ({time.monotonic() - start:.1f} s)"
        status = received.split(b"\r\n", 1)[0].decode(errors="replace") or "closed, no answer"
        return f"{status} ({time.monotonic() - start:.1f} s)"


def _urllib_413(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/early413", data=b"x" * (5 * 1024 * 1024), headers={"Content-Type": "application/json"}
    )
    try:
        urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code} read"
    except OSError as error:
        return f"{type(error).__name__}: {getattr(error, 'reason', error)}"
    return "200?"


def _start(name: str, command: list[str], port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    process = subprocess.Popen(command, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.1)


def _requests(port: int) -> tuple[bytes, bytes]:
    host = f"Host: 127.0.0.1:{port}\r\n"
    get = f"GET /healthz HTTP/1.1\r\n{host}\r\n".encode()
    post = (
        f"POST /mcp HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
        "Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n"
        f"Mcp-Method: tools/call\r\nMcp-Name: fx__echo\r\nContent-Length: {len(_MCP_BODY)}\r\n\r\n"
    ).encode() + _MCP_BODY
    return get, post


def _behaviour(pid: int, port: int, wait: float) -> dict[str, str]:
    host = f"Host: 127.0.0.1:{port}\r\n"
    row: dict[str, str] = {}
    peak_before = _rss_kib(pid)
    big = f"GET /healthz HTTP/1.1\r\n{host}X-Big: ".encode() + b"a" * (32 * 1024 * 1024) + b"\r\n\r\n"
    row["32 MiB head"] = _probe(port, big, wait)
    row["peak RSS +MiB"] = f"{(_rss_kib(pid) - peak_before) / 1024:.0f}"
    probes = {
        "1 MiB head": f"GET /healthz HTTP/1.1\r\n{host}X-Big: ".encode() + b"a" * (1024 * 1024) + b"\r\n\r\n",
        "slow head": f"GET /healthz HTTP/1.1\r\n{host}X-Slow: ".encode(),
        "slow body": f"POST /mcp HTTP/1.1\r\n{host}Content-Length: 100\r\n\r\n{{".encode(),
        "idle": b"",
    }
    results: dict[str, str] = {}
    threads = [
        threading.Thread(target=lambda k=key, d=data: results.__setitem__(k, _probe(port, d, wait)))
        for key, data in probes.items()
    ]
    for thread in threads:
        thread.start()
    results["urllib 5 MiB, early 413"] = _urllib_413(port)
    for thread in threads:
        thread.join()
    row.update({key: results[key] for key in [*probes, "urllib 5 MiB, early 413"]})
    return row


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="requests per CPU sample (default 5000)")
    parser.add_argument("--rounds", type=int, default=5, help="CPU samples per server, interleaved (default 5)")
    parser.add_argument("--wait", type=float, default=35.0, help="seconds a probe waits for the server (35)")
    parser.add_argument("--alt-python", help="a Python with hypercorn and granian installed")
    parser.add_argument("--only", nargs="*", help="servers to measure (default: all)")
    parser.add_argument("--no-probes", action="store_true", help="CPU figures only")
    parser.add_argument("--serve-hub", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_hub is not None:
        _serve_hub(int(args.serve_hub[0]), args.serve_hub[1])
        return
    with tempfile.TemporaryDirectory() as scratch:
        names = list(_commands(0, args.alt_python, Path(scratch)))
        names = [name for name in names if not args.only or name in args.only]
        ports = {name: _free_port() for name in names}
        servers = {
            name: (_start(name, _commands(ports[name], args.alt_python, Path(scratch))[name], ports[name]), ports[name])
            for name in names
        }
        try:
            samples: dict[str, dict[str, list[float]]] = {name: {"GET": [], "POST": []} for name in names}
            for _ in range(args.rounds):  # interleaved, so a burst of load elsewhere hits every server alike
                for name, (process, port) in servers.items():
                    get, post = _requests(port)
                    samples[name]["GET"].append(_cpu_per_request(process.pid, port, get, args.requests))
                    samples[name]["POST"].append(_cpu_per_request(process.pid, port, post, args.requests))
            for name, (process, port) in servers.items():
                row = {"server": name}
                for kind in ("GET", "POST"):
                    row[f"{kind} µs (median)"] = f"{statistics.median(samples[name][kind]):.1f}"
                    row[f"{kind} µs (min)"] = f"{min(samples[name][kind]):.1f}"
                if not args.no_probes:
                    row.update(_behaviour(process.pid, port, args.wait))
                print(json.dumps(row, ensure_ascii=False), flush=True)
        finally:
            for process, _ in servers.values():
                _stop(process)


if __name__ == "__main__":
    main()
