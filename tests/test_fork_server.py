"""The fork server (`tests/fork_server.py`) and its launcher (`tests/fork_launcher.py`): a script
or module started through them looks to its starter exactly as a direct `python script` or
`python -m module` start does (`mcphub` too: `tests.conftest.hub_command`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from anyio.abc import ByteReceiveStream

from tests import fork_launcher
from tests.conftest import hub_command, until
from tests.fork_server import STARTUP_ENV, effective_locale
from tests.fork_session import FORK_LAUNCHER, FORK_SOCKET_ENV, start_fork_server, stop_fork_server

pytestmark = pytest.mark.anyio

_PROBE = """\
import atexit, json, os, sys
data = sys.stdin.read()
sys.stderr.write("to stderr\\n")
atexit.register(lambda: sys.stdout.write("atexit ran"))
print(json.dumps({
    "stdin": data,
    "argv": sys.argv,
    "cwd": os.getcwd(),
    "env": dict(os.environ),
    "path0": sys.path[0],
    "name": __name__,
    "pid": os.getpid(),
    "ppid": os.getppid(),
}))
sys.exit(int(sys.argv[1]))
"""

_STDIO_PROBE = """\
import json, sys
def shape(stream):
    return [stream.line_buffering, stream.write_through, type(stream.buffer).__name__, stream.encoding,
            stream.errors, stream.mode, stream is getattr(sys, "__" + stream.name.strip("<>") + "__", None)]
print(json.dumps({"stdin": shape(sys.stdin), "stdout": shape(sys.stdout), "stderr": shape(sys.stderr)}))
"""

_SLEEPER = """\
import os, sys, time
print(os.getpid(), flush=True)
sys.stdin.read()  # until the test closes stdin (or a signal ends it)
"""


@contextmanager
def _running_zygote() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A fork server of the test's own (its socket path and process), preloading nothing extra."""
    directory = tempfile.mkdtemp(prefix="mcphub-fork-test-")
    path = os.path.join(directory, "zygote.sock")
    process = start_fork_server(path)
    try:
        yield path, process
    finally:
        stop_fork_server(process)
        shutil.rmtree(directory)


@pytest.fixture(scope="module")
def zygote() -> Iterator[tuple[str, int]]:
    """One fork server for the module: its socket path and pid."""
    with _running_zygote() as (path, process):
        yield path, process.pid


@pytest.fixture
def own_zygote() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A fork server the test may stop."""
    with _running_zygote() as running:
        yield running


def _alive(pid: int) -> bool:
    """Whether `pid` exists at all (a zombie counts)."""
    return Path(f"/proc/{pid}").exists()


def _script(tmp_path: Path, name: str, text: str) -> str:
    script = tmp_path / "scripts" / name
    script.parent.mkdir(exist_ok=True)
    script.write_text(text)
    return str(script)


async def _pid_line(stdout: ByteReceiveStream) -> int:
    """The sleeper's first stdout line (its pid), read whole however the pipe splits it."""
    line = b""
    while not line.endswith(b"\n"):
        line += await stdout.receive()
    return int(line)


def _assert_ran_alike(
    forked: subprocess.CompletedProcess[bytes], direct: subprocess.CompletedProcess[bytes], code: int, zygote: int
) -> dict[str, Any]:
    """A probe forked by the zygote (its parent: `zygote`, not a launcher that started it itself)
    exited, wrote and saw (stdin, argv, cwd, environment, `sys.path[0]`, `__name__`) as started
    directly: returns what the direct one saw."""
    assert forked.returncode == direct.returncode == code
    assert forked.stderr == direct.stderr == b"to stderr\n"
    forked_json, _, forked_tail = forked.stdout.decode().partition("\n")
    direct_json, _, direct_tail = direct.stdout.decode().partition("\n")
    assert forked_tail == direct_tail == "atexit ran"
    seen, expected = json.loads(forked_json), json.loads(direct_json)
    assert seen["ppid"] == zygote
    for key in ("stdin", "argv", "cwd", "env", "path0", "name"):
        assert seen[key] == expected[key], key
    return dict(expected)


def _launched(socket_path: str, script: str, *args: str) -> list[str]:
    return [sys.executable, "-I", "-S", FORK_LAUNCHER, socket_path, script, *args]


async def test_a_launched_script_gets_the_stdio_argv_cwd_environment_and_exit_code_of_a_direct_start(
    zygote: tuple[str, int], tmp_path: Path
) -> None:
    socket_path, zygote_pid = zygote
    script = _script(tmp_path, "probe.py", _PROBE)
    env = {"PATH": os.environ["PATH"], "FORK_PROBE": "a value", "HOME": str(tmp_path)}
    with anyio.fail_after(60):
        direct = await anyio.run_process(
            [sys.executable, script, "7"], input=b"line one\nline two\n", env=env, cwd=tmp_path, check=False
        )
        forked = await anyio.run_process(
            _launched(socket_path, script, "7"), input=b"line one\nline two\n", env=env, cwd=tmp_path, check=False
        )
    expected = _assert_ran_alike(forked, direct, 7, zygote_pid)
    assert expected["env"]["FORK_PROBE"] == "a value" and expected["stdin"] == "line one\nline two\n"


async def test_the_launcher_imports_no_module_built_on_enum_or_re(zygote: tuple[str, int], tmp_path: Path) -> None:
    """It starts once per forked server: `socket`, `signal` and `json` (through `enum` and `re`)
    doubled its CPU, so it uses their C modules (`tests/fork_launcher.py`)."""
    socket_path, _ = zygote
    script = _script(tmp_path, "quiet.py", "")
    command = [sys.executable, "-I", "-S", "-X", "importtime", FORK_LAUNCHER, socket_path, script]
    with anyio.fail_after(60):
        launched = await anyio.run_process(command, check=False)
    assert launched.returncode == 0
    # `-X importtime` writes "import time: self | cumulative | name" on stderr per module imported.
    imported = {line.rsplit("|", 1)[1].strip() for line in launched.stderr.decode().splitlines() if "|" in line}
    assert "_socket" in imported  # the report is there: the launcher's own imports are in it
    assert not imported & {"enum", "re", "socket", "signal", "json", "typing"}, sorted(imported)


def test_the_launchers_request_is_what_json_dumps_makes_of_it() -> None:
    """Built without `json` (above): the same bytes, with quotes, control characters, non-ASCII
    text and the lone surrogates of undecodable environment bytes (`os.fsdecode`)."""
    argv = ["-m", "hub", 'say "hi"', "tab\there", "caf\u00e9"]
    env = {"PATH": "/usr/bin", "ODD": "line\nbreak\x00\\", "BYTES": b"\xff\xfe".decode("utf-8", "surrogateescape")}
    for args, cwd, environment in ((argv, "/tmp/\u00e9t\u00e9", env), ([], "/", {})):
        expected = json.dumps({"argv": args, "cwd": cwd, "env": environment}).encode()
        assert fork_launcher._request(args, cwd, environment) == expected


def _module(tmp_path: Path, name: str, text: str) -> Path:
    """A package `name` under `tmp_path/modules` whose `__main__` is `text`; returns its parent."""
    package = tmp_path / "modules" / name
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(text)
    return package.parent


def _startup_env() -> dict[str, str]:
    """The variables of `STARTUP_ENV` as this process (and so the zygote) has them."""
    return {name: os.environ[name] for name in STARTUP_ENV if name in os.environ}


@pytest.mark.parametrize(
    ("unbuffered", "locale"), [(False, True), (True, True), (False, False)], ids=["buffered", "unbuffered", "no-locale"]
)
async def test_a_module_launch_gets_the_argv_path_stdio_environment_and_exit_code_of_python_dash_m(
    zygote: tuple[str, int], tmp_path: Path, unbuffered: bool, locale: bool
) -> None:
    """Also under a minimal environment (as the SDK's `stdio_client` gives `mcphub serve
    --stdio`): no locale variable, which a direct start coerces to LC_CTYPE=C.UTF-8 (PEP 538)."""
    socket_path, zygote_pid = zygote
    if not locale and effective_locale(os.environ) != "C.UTF-8":
        pytest.skip("the zygote runs in another locale than the coerced C.UTF-8: it refuses the launch")
    cwd = _module(tmp_path, "probe", _PROBE)
    _module(tmp_path, "stdioprobe", _STDIO_PROBE)
    env = {"PATH": os.environ["PATH"], "FORK_PROBE": "a value", "HOME": str(tmp_path)}
    if locale:
        env |= _startup_env() | {
            name: os.environ[name] for name in ("LANG", "LC_ALL", "LC_CTYPE") if name in os.environ
        }
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    with anyio.fail_after(60):
        direct = await anyio.run_process(
            [sys.executable, "-m", "probe", "5"], input=b"line one\n", env=env, cwd=cwd, check=False
        )
        forked = await anyio.run_process(
            _launched(socket_path, "-m", "probe", "5"), input=b"line one\n", env=env, cwd=cwd, check=False
        )
        direct_stdio = await anyio.run_process([sys.executable, "-m", "stdioprobe"], env=env, cwd=cwd)
        forked_stdio = await anyio.run_process(_launched(socket_path, "-m", "stdioprobe"), env=env, cwd=cwd)
    expected = _assert_ran_alike(forked, direct, 5, zygote_pid)
    assert expected["argv"] == [str(cwd / "probe" / "__main__.py"), "5"] and expected["path0"] == str(cwd)
    assert json.loads(forked_stdio.stdout) == json.loads(direct_stdio.stdout)
    assert json.loads(direct_stdio.stdout)["stdout"][1] is unbuffered  # write_through
    if not locale:
        assert expected["env"]["LC_CTYPE"] == "C.UTF-8"


async def test_a_module_launch_whose_start_up_variables_differ_from_the_zygotes_starts_directly(
    zygote: tuple[str, int], tmp_path: Path
) -> None:
    socket_path, _ = zygote
    cwd = _module(tmp_path, "probe", _PROBE)
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"  # read once, at start-up
    env = {**os.environ, "PYTHONHASHSEED": seed}
    with anyio.fail_after(60):
        async with await anyio.open_process(_launched(socket_path, "-m", "probe", "4"), env=env, cwd=cwd) as launcher:
            assert launcher.stdin is not None and launcher.stdout is not None
            await launcher.stdin.aclose()
            output = b"".join([chunk async for chunk in launcher.stdout])
            assert await launcher.wait() == 4
    seen = json.loads(output.decode().partition("\n")[0])
    assert seen["pid"] == launcher.pid  # refused by the zygote: the launcher exec'd `python -m probe`
    assert seen["env"]["PYTHONHASHSEED"] == seed and seen["name"] == "__main__"


async def _serve_until_signals(command: list[str], config: Path) -> tuple[int, str, bool]:
    """Run `command` (`mcphub serve -c config --port 0`) until it printed its catalog line, then
    SIGHUP it, wait for its reload's log line, SIGTERM it; returns its exit code, its stderr and
    whether its stdout was detached from the started process (a launcher that got a child)."""
    stderr = b""
    async with await anyio.open_process(command) as process:
        assert process.stdout is not None and process.stderr is not None
        output = b""
        while b"in the catalog" not in output:
            output += await process.stdout.receive()
        detached = os.readlink(f"/proc/{process.pid}/fd/1") == os.devnull
        process.send_signal(signal.SIGHUP)
        while b"reload" not in stderr:
            stderr += await process.stderr.receive()
        process.send_signal(signal.SIGTERM)
        stderr += b"".join([chunk async for chunk in process.stderr])
        code = await process.wait()
    return code, stderr.decode(), detached


@pytest.mark.slow
async def test_mcphub_serve_forked_reloads_on_sighup_and_drains_on_sigterm_as_a_direct_start(tmp_path: Path) -> None:
    if not os.environ.get(FORK_SOCKET_ENV):
        pytest.skip("the session's fork server does not run (MCPHUB_TEST_FORK=0)")
    config = tmp_path / "hub.yaml"
    config.write_text(json.dumps({"servers": {}, "state_dir": str(tmp_path), "shutdown_grace_seconds": 0}))
    args = ("serve", "-c", str(config), "--port", "0")
    with anyio.fail_after(120):
        direct = await _serve_until_signals(hub_command(*args, direct=True), config)
        forked = await _serve_until_signals(hub_command(*args), config)
    assert forked[0] == direct[0] == 0
    assert not direct[2] and forked[2]  # the second was served by a forked child
    for text in ("SIGHUP: reloading the config", "SIGTERM"):
        assert text in direct[1] and text in forked[1], text


async def test_an_uncaught_exception_exits_1_with_its_traceback_and_a_signal_death_is_passed_on(
    zygote: tuple[str, int], tmp_path: Path
) -> None:
    socket_path, _ = zygote
    raising = _script(tmp_path, "raising.py", "raise ValueError('boom')\n")
    killed = _script(tmp_path, "killed.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    with anyio.fail_after(60):
        raised = await anyio.run_process(_launched(socket_path, raising), check=False)
        died = await anyio.run_process(_launched(socket_path, killed), check=False)
    assert raised.returncode == 1
    assert raised.stderr.startswith(b"Traceback") and raised.stderr.endswith(b"ValueError: boom\n")
    assert died.returncode == -signal.SIGKILL


async def test_sigterm_to_the_launcher_reaches_the_child_and_the_launcher_exits_as_it_did(
    zygote: tuple[str, int], tmp_path: Path
) -> None:
    socket_path, _ = zygote
    script = _script(tmp_path, "sleeper.py", _SLEEPER)
    with anyio.fail_after(60):
        async with await anyio.open_process(_launched(socket_path, script)) as launcher:
            assert launcher.stdout is not None
            child = await _pid_line(launcher.stdout)
            assert child != launcher.pid and _alive(child)
            launcher.send_signal(signal.SIGTERM)
            assert await launcher.wait() == -signal.SIGTERM
            await until(lambda: not _alive(child))


async def test_a_sigkilled_launcher_takes_its_child_with_it(zygote: tuple[str, int], tmp_path: Path) -> None:
    socket_path, _ = zygote
    script = _script(tmp_path, "sleeper.py", _SLEEPER)
    with anyio.fail_after(60):
        async with await anyio.open_process(_launched(socket_path, script)) as launcher:
            assert launcher.stdout is not None
            child = await _pid_line(launcher.stdout)
            launcher.kill()
            assert await launcher.wait() == -signal.SIGKILL
            await until(lambda: not _alive(child))  # killed and reaped by the zygote


async def test_closing_stdin_ends_the_child_and_the_launcher_with_it(zygote: tuple[str, int], tmp_path: Path) -> None:
    socket_path, _ = zygote
    script = _script(tmp_path, "sleeper.py", _SLEEPER)
    with anyio.fail_after(60):
        async with await anyio.open_process(_launched(socket_path, script)) as launcher:
            assert launcher.stdin is not None and launcher.stdout is not None
            child = await _pid_line(launcher.stdout)
            await launcher.stdin.aclose()  # the launcher holds no copy: the child sees EOF
            assert await launcher.wait() == 0
            assert b"".join([chunk async for chunk in launcher.stdout]) == b""  # stdout at EOF
            await until(lambda: not _alive(child))


async def test_a_childs_stdout_reaches_eof_when_it_exits_while_a_later_child_still_runs(
    zygote: tuple[str, int], tmp_path: Path
) -> None:
    socket_path, _ = zygote
    script = _script(tmp_path, "sleeper.py", _SLEEPER)
    with anyio.fail_after(60):
        async with await anyio.open_process(_launched(socket_path, script)) as first:
            assert first.stdin is not None and first.stdout is not None
            await _pid_line(first.stdout)
            async with await anyio.open_process(_launched(socket_path, script)) as second:
                assert second.stdin is not None and second.stdout is not None
                later = await _pid_line(second.stdout)
                await first.stdin.aclose()
                # EOF only if no other process (the zygote, the later child) holds the pipe
                assert b"".join([chunk async for chunk in first.stdout]) == b""
                assert await first.wait() == 0 and _alive(later)
                await second.stdin.aclose()
                assert await second.wait() == 0


async def test_stopping_the_zygote_leaves_no_child_behind(
    own_zygote: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    path, process = own_zygote
    script = _script(tmp_path, "sleeper.py", _SLEEPER)
    with anyio.fail_after(60):
        async with await anyio.open_process(_launched(path, script)) as launcher:
            assert launcher.stdout is not None
            child = await _pid_line(launcher.stdout)
            await anyio.to_thread.run_sync(stop_fork_server, process)
            assert not _alive(child)  # SIGKILLed and reaped before the zygote exited
            assert await launcher.wait() == -signal.SIGKILL


async def test_without_a_zygote_the_launcher_becomes_the_script_itself(tmp_path: Path) -> None:
    script = _script(tmp_path, "probe.py", _PROBE)
    nowhere = str(tmp_path / "no-zygote.sock")
    with anyio.fail_after(60):
        async with await anyio.open_process(_launched(nowhere, script, "3"), cwd=tmp_path) as launcher:
            assert launcher.stdin is not None and launcher.stdout is not None
            await launcher.stdin.send(b"direct\n")
            await launcher.stdin.aclose()
            output = b""
            async for chunk in launcher.stdout:
                output += chunk
            assert await launcher.wait() == 3
    seen = json.loads(output.decode().partition("\n")[0])
    assert seen["pid"] == launcher.pid  # exec'd in place: the launcher's own process
    assert seen["stdin"] == "direct\n" and seen["argv"] == [script, "3"] and seen["name"] == "__main__"
