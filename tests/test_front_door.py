"""The HTTP front door, over real loopback sockets: the head limit (431) and the head and body
deadlines (408, closed connections), readable refusals of oversized bodies (413, even for a client
that writes its whole body before it reads), non-JSON POSTs (415) and JSON-RPC batches (-32600),
exact Host/Origin parsing (421/403), and a listening socket that no stdio server inherits (a
child that outlives a `kill -9` of the hub does not keep the port)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp_types import INVALID_REQUEST

from hub.app import Hub
from hub.authority import Authority, HostAllowList, parse_authority, parse_origin
from hub.config import parse_config
from hub.endpoint.http_server import HttpLimits, HttpServer, bind_socket
from hub.errors import ConfigError
from tests.clients import http_client, mcp_client
from tests.conftest import faulty_entry, fixture_entry, hub_command, tool_text, until

pytestmark = pytest.mark.anyio

_MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
_DISCOVER = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "server/discover",
    "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    },
}
"""A modern-era `server/discover` (2026-07-28: the protocol envelope travels in `_meta`)."""


@asynccontextmanager
async def _front_door(servers: dict[str, Any] | None = None, **settings: Any) -> AsyncIterator[tuple[Hub, int]]:
    """A hub with `settings` served on 127.0.0.1:<free port> with the HTTP limits its config
    sets (as `mcphub serve` does); yields (hub, port) once every server had its first start."""
    with tempfile.TemporaryDirectory(prefix="mcphub-state-") as state_dir:
        config = parse_config({"servers": servers or {}, "state_dir": state_dir, **settings}, file="<test>")
        hub = Hub(config)
        sock = bind_socket("127.0.0.1", 0)
        server = HttpServer(hub.http_app(), sock, limits=HttpLimits.from_config(config))
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve)
                try:
                    with anyio.fail_after(30):
                        await hub.wait_started()
                    yield hub, sock.getsockname()[1]
                finally:
                    server.stop()
        finally:
            sock.close()


async def _exchange(port: int, data: bytes, *, timeout_seconds: float = 15.0) -> bytes:
    """Send `data` on a new connection and read until the server ends it; everything read."""
    received = b""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        with anyio.fail_after(timeout_seconds):
            await stream.send(data)
            while True:
                try:
                    received += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return received


def _status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


def _get(path: str, port: int, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


def _with_host(host: str) -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


async def _healthz_ok(port: int) -> bool:
    return _status(await _exchange(port, _get("/healthz", port))) == 200


# --- item 7: head limit and deadlines -------------------------------------------------------------


async def test_a_request_head_over_max_header_bytes_gets_a_readable_431_and_the_hub_keeps_serving() -> None:
    async with _front_door() as (_, port):
        head = _get("/healthz", port, "X-Big: " + "a" * (1024 * 1024))
        response = await _exchange(port, head)
        assert await _healthz_ok(port)
    assert _status(response) == 431
    assert b"\r\nconnection: close\r\n" in response.lower()


async def test_a_request_head_just_under_max_header_bytes_is_served() -> None:
    async with _front_door(max_header_bytes=8192) as (_, port):
        under = await _exchange(port, _get("/healthz", port, "X-Pad: " + "a" * 7000))
        over = await _exchange(port, _get("/healthz", port, "X-Pad: " + "a" * 9000))
    assert _status(under) == 200
    assert _status(over) == 431


async def test_a_head_sent_in_many_small_pieces_within_the_deadline_is_served() -> None:
    async with _front_door(max_header_bytes=4096) as (_, port):
        body = json.dumps(_DISCOVER).encode()
        request = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n"
            f"Mcp-Method: server/discover\r\nX-Pad: {'p' * 3000}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + body
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            received = b""
            with anyio.fail_after(15):
                for start in range(0, len(request), 97):  # 97-byte writes: the head spans many reads
                    await stream.send(request[start : start + 97])
                while True:
                    try:
                        received += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
    assert _status(received) == 200
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["id"] == 1


async def test_pipelined_requests_on_one_connection_are_all_answered() -> None:
    async with _front_door() as (_, port):
        keep = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        response = await _exchange(port, keep * 2 + _get("/healthz", port))
    assert response.count(b"HTTP/1.1 200 OK") == 3


async def test_a_client_that_sends_its_head_too_slowly_gets_408_and_is_disconnected() -> None:
    async with _front_door(header_timeout_seconds=0.5) as (_, port):
        response = await _exchange(port, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        assert await _healthz_ok(port)
    assert _status(response) == 408


async def test_a_connection_that_never_sends_a_request_is_closed_after_the_header_timeout() -> None:
    async with _front_door(header_timeout_seconds=0.5) as (_, port):
        response = await _exchange(port, b"")
    assert response == b""


async def test_a_client_that_sends_its_body_too_slowly_gets_408_and_is_disconnected() -> None:
    async with _front_door(body_timeout_seconds=0.5) as (_, port):
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{"
        )
        response = await _exchange(port, head.encode())
        assert await _healthz_ok(port)
    assert _status(response) == 408


async def test_hundreds_of_half_sent_requests_are_all_closed_after_the_deadlines() -> None:
    async with _front_door(header_timeout_seconds=0.5, body_timeout_seconds=0.5) as (_, port):
        half_head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode()
        half_body = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{"
        ).encode()
        responses: list[bytes] = []

        async def half_sent(data: bytes) -> None:
            # `_exchange` returns only once the hub has closed the connection (bounded by 30 s).
            responses.append(await _exchange(port, data, timeout_seconds=30))

        async with anyio.create_task_group() as tg:
            for index in range(200):
                tg.start_soon(half_sent, half_head if index % 2 else half_body)
        assert await _healthz_ok(port)
    assert len(responses) == 200, "every half-sent request was closed"
    # Each is told 408, except a connection whose first bytes the hub had not read yet when its
    # head deadline passed (a loaded machine): that one counts as a connection that sent
    # nothing and is closed without an answer.
    assert {_status(response) for response in responses if response} == {408}


async def test_the_front_door_limits_have_their_documented_defaults() -> None:
    config = parse_config({}, file="<test>")
    assert (config.max_header_bytes, config.header_timeout_seconds, config.body_timeout_seconds) == (65536, 10.0, 30.0)
    assert HttpLimits.from_config(config) == HttpLimits()


# --- item 8: readable 413, 415, batches, Host/Origin ----------------------------------------------


def _urllib_post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=_MCP_HEADERS, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def test_a_5_mib_body_from_urllib_gets_a_readable_413_and_the_hub_keeps_serving() -> None:
    async with _front_door({"fx": fixture_entry("fx")}) as (_, port):
        url = f"http://127.0.0.1:{port}/mcp"
        body = json.dumps({**_DISCOVER, "params": {"_meta": {"pad": "x" * (5 * 1024 * 1024)}}}).encode()
        status, answer = await anyio.to_thread.run_sync(_urllib_post, url, body)
        with anyio.fail_after(15):
            async with mcp_client(url) as client:
                after = await client.call_tool("fx__echo", {"text": "small"})
    assert status == 413
    assert json.loads(answer)["error"]["code"] == INVALID_REQUEST
    assert tool_text(after) == "small"


async def test_an_unauthenticated_5_mib_body_from_urllib_gets_a_readable_401() -> None:
    auth = {"api_keys": [{"id": "ci", "key_sha256": "0" * 64, "scopes": ["hub:call"]}]}
    async with _front_door(auth=auth) as (_, port):
        body = b"{" + b" " * (5 * 1024 * 1024) + b"}"
        status, _ = await anyio.to_thread.run_sync(_urllib_post, f"http://127.0.0.1:{port}/mcp", body)
    assert status == 401


@pytest.mark.parametrize("version", ["2025-06-18", "2025-03-26", "2026-07-28"])
async def test_a_json_rpc_batch_gets_invalid_request_in_either_era(version: str) -> None:
    async with _front_door() as (_, port):
        async with http_client(timeout=15) as http:
            response = await http.post(
                f"http://127.0.0.1:{port}/mcp",
                content=json.dumps([_DISCOVER, {**_DISCOVER, "id": 2}]),
                headers={**_MCP_HEADERS, "MCP-Protocol-Version": version, "Mcp-Method": "server/discover"},
            )
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == INVALID_REQUEST
    assert body["id"] is None


async def test_a_body_that_is_not_json_still_gets_the_parse_error_and_an_object_gets_through() -> None:
    async with _front_door() as (_, port):
        async with http_client(timeout=15) as http:
            url = f"http://127.0.0.1:{port}/mcp"
            headers = {**_MCP_HEADERS, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"}
            broken = await http.post(url, content=b"[{", headers=headers)
            discover = await http.post(url, content=b"\n " + json.dumps(_DISCOVER).encode(), headers=headers)
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == -32700
    assert discover.status_code == 200
    assert discover.json()["id"] == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_post_to_an_mcp_path_that_is_not_json_gets_415(content_type: str | None) -> None:
    async with _front_door({"fx": fixture_entry("fx")}) as (_, port):
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        async with http_client(timeout=15) as http:
            aggregate = await http.post(f"http://127.0.0.1:{port}/mcp", content=b"{}", headers=headers)
            one_server = await http.post(f"http://127.0.0.1:{port}/servers/fx/mcp", content=b"{}", headers=headers)
    assert (aggregate.status_code, one_server.status_code) == (415, 415)
    assert aggregate.json()["error"]["code"] == INVALID_REQUEST


async def test_a_json_content_type_with_parameters_and_any_case_is_accepted() -> None:
    async with _front_door() as (_, port):
        async with http_client(timeout=15) as http:
            response = await http.post(
                f"http://127.0.0.1:{port}/mcp",
                content=json.dumps(_DISCOVER),
                headers={
                    **_MCP_HEADERS,
                    "Content-Type": "Application/JSON; charset=utf-8",
                    "MCP-Protocol-Version": "2026-07-28",
                    "Mcp-Method": "server/discover",
                },
            )
    assert response.status_code == 200


_FOREIGN_HOSTS = [
    "localhost:80.evil.com",
    "localhost:8765@evil.com",
    "127.0.0.1:1.evil.com",
    "[::1]x",
    "[::1]:80x",
    "localhost.",
    "localhost:",
    "localhost:1:2",
    "localhost:99999",
    "127.1",
    "evil.com",
    "localhost.evil.com",
    "evil.com#localhost",
]


@pytest.mark.parametrize("host", _FOREIGN_HOSTS)
async def test_a_host_with_anything_after_or_around_the_allowed_one_gets_421(host: str) -> None:
    async with _front_door() as (_, port):
        response = await _exchange(port, _with_host(host))
    assert _status(response) == 421


async def test_allowed_host_forms_are_accepted_and_foreign_origins_get_403() -> None:
    async with _front_door(allowed_hosts=["hub.internal:8443"]) as (_, port):
        accepted = [
            _status(await _exchange(port, _with_host(host)))
            for host in (
                "127.0.0.1",
                f"127.0.0.1:{port} ",
                "LocalHost:1",
                "[::1]:8765",
                "[0:0::1]",
                "hub.internal:8443",
            )
        ]
        origins = {
            origin: _status(await _exchange(port, _get("/healthz", port, f"Origin: {origin}")))
            for origin in (
                "http://localhost:3000",
                "https://hub.internal:8443",
                "http://localhost:80.evil.com",
                "http://localhost.evil.com",
                "https://hub.internal",
                "null",
            )
        }
    assert accepted == [200] * 6
    assert origins == {
        "http://localhost:3000": 200,
        "https://hub.internal:8443": 200,
        "http://localhost:80.evil.com": 403,
        "http://localhost.evil.com": 403,
        "https://hub.internal": 403,
        "null": 403,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("LocalHost:8765", Authority("localhost", 8765)),
        ("[0:0::1]:80", Authority("[::1]", 80)),
        ("10.0.0.1", Authority("10.0.0.1", None)),
        ("my_service.internal:1", Authority("my_service.internal", 1)),
        ("localhost:80.evil.com", None),
        ("user@localhost", None),
        ("localhost/path", None),
        ("[::1", None),
        ("[fe80::1%eth0]", None),
        ("0127.0.0.1", None),
        ("-bad.example", None),
        ("ex ample.com", None),
        ("exämple.com", None),
        ("", None),
    ],
)
def test_a_host_value_is_parsed_into_host_and_port_exactly(value: str, expected: Authority | None) -> None:
    assert parse_authority(value) == expected


def test_an_origin_gets_its_scheme_default_port_and_a_host_entry_without_port_matches_it() -> None:
    allowed = HostAllowList(["hub.example.com", "localhost:*"])
    assert parse_origin("https://hub.example.com") == Authority("hub.example.com", 443)
    assert allowed.allows_origin("https://hub.example.com")
    assert allowed.allows_origin("http://hub.example.com:80")
    assert not allowed.allows_origin("https://hub.example.com:8443")
    assert not allowed.allows_origin("https://hub.example.com/")
    assert not allowed.allows_origin("file://hub.example.com")
    assert allowed.allows_origin("http://localhost:5173")


@pytest.mark.parametrize("entry", ["localhost:80.evil", "*.example.com", "hub.example.com/", "[::1"])
def test_a_malformed_allowed_hosts_entry_is_refused_at_load(entry: str) -> None:
    with pytest.raises(ConfigError, match="allowed_hosts"):
        parse_config({"allowed_hosts": [entry]}, file="<test>")


# --- item 9 and the config keys through `mcphub serve` --------------------------------------------


def _listening_inode(port: int) -> str:
    """The inode of the socket listening on 127.0.0.1:`port` (/proc/net/tcp, state 0A)."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":
            return fields[9]
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def _fd_targets(pid: int) -> dict[int, str]:
    targets = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue  # closed while we looked
    return targets


def _gone_or_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@asynccontextmanager
async def _mcphub_serve(
    config: dict[str, Any], directory: Path, *, direct: bool = False
) -> AsyncIterator[tuple[anyio.abc.Process, int]]:
    """`mcphub serve --json` on 127.0.0.1:0 in a subprocess (`hub_command`; `direct=True`: a
    fresh interpreter, the very process started); yields (process, port) once every server had
    its first start attempt; killed afterwards if still running."""
    path = directory / "hub.yaml"
    path.write_text(json.dumps({"state_dir": str(directory), **config}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPHUB_")}
    process = await anyio.open_process(
        hub_command("serve", "-c", str(path), "--port", "0", "--json", direct=direct),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert process.stdout is not None
        stdout = BufferedByteReceiveStream(process.stdout)
        port = 0
        with anyio.fail_after(60):
            while True:
                event = json.loads(await stdout.receive_until(b"\n", 1 << 20))
                if event.get("event") == "listening":
                    port = int(event["url"].rsplit(":", 1)[1].split("/", 1)[0])
                elif event.get("event") == "ready":
                    break
        yield process, port
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.move_on_after(10, shield=True):
            await process.aclose()  # the pipes too: a forked hub's close a moment after its launcher died


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
async def test_a_stdio_child_inherits_no_hub_socket_and_the_port_is_free_after_the_hub_is_killed(
    tmp_path: Path,
) -> None:
    config = {"servers": {"stubborn": faulty_entry("stubborn", "--ignore-stdin-eof")}}
    child = 0
    try:
        # Direct: the test reads the hub's own fds by its pid, and SIGKILLs it then binds its port
        # at once (a forked hub dies a moment after its launcher, when the zygote kills it).
        async with _mcphub_serve(config, tmp_path, direct=True) as (hub_process, port):
            with anyio.fail_after(30):
                async with mcp_client(f"http://127.0.0.1:{port}/mcp") as client:
                    child = int(tool_text(await client.call_tool("stubborn__pid", {})))
            listening = f"socket:[{_listening_inode(port)}]"
            hub_fds, child_fds = _fd_targets(hub_process.pid), _fd_targets(child)
            own_stdio = {child_fds.get(fd) for fd in (0, 1, 2)}
            shared = {
                target
                for fd, target in child_fds.items()
                if fd > 2 and target.startswith(("socket:", "pipe:")) and target not in own_stdio
            } & set(hub_fds.values())
            hub_process.send_signal(signal.SIGKILL)
            with anyio.fail_after(10):
                await hub_process.wait()
        assert listening in hub_fds.values()
        assert listening not in child_fds.values()
        assert shared == set()
        assert not _gone_or_zombie(child), "the child ended with the hub: the check below would prove nothing"
        with socket.socket() as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))
            again.listen()
    finally:
        if child:
            os.kill(child, signal.SIGKILL)
            with anyio.fail_after(10):
                await until(lambda: _gone_or_zombie(child))


@pytest.mark.e2e
async def test_mcphub_serve_applies_the_header_limit_and_deadlines_from_its_config(tmp_path: Path) -> None:
    config = {"max_header_bytes": 2048, "header_timeout_seconds": 0.5, "body_timeout_seconds": 0.5}
    async with _mcphub_serve(config, tmp_path) as (_, port):
        too_big = await _exchange(port, _get("/healthz", port, "X-Pad: " + "a" * 4096))
        slow_head = await _exchange(port, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        slow_body = await _exchange(
            port,
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Content-Length: 10\r\n\r\n{".encode(),
        )
        healthy = await _exchange(port, _get("/healthz", port))
    assert [_status(r) for r in (too_big, slow_head, slow_body, healthy)] == [431, 408, 408, 200]
