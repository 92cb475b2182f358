"""The processes a benchmark starts: spawn, wait until they serve, read their CPU and memory, stop them.

Every wait here is bounded; every process started through `Process` is stopped by `started(...)`
on exit, also on SIGTERM/SIGINT to the benchmark, together with any descendant it left behind.
CPU and memory come from /proc (Linux): `cpu_times` reads utime+stime of one process (all its
threads, not its children), `rss_bytes` its resident set (VmRSS).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

START_TIMEOUT_SECONDS = 60.0
"""Longest wait for a process to print its port or to answer its readiness probe (seconds). Generous:
the machine the benchmark runs on may be shared and loaded."""
STOP_TIMEOUT_SECONDS = 10.0
"""Longest wait for a process to exit after SIGTERM before it is killed (seconds)."""
SLOW_STOP_SECONDS = 5.0
"""A graceful stop longer than this is logged (seconds)."""
POLL_SECONDS = 0.05
"""Interval of the bounded polls below (readiness probes, exit of a non-child)."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def cpu_times(pid: int) -> tuple[float, float] | None:
    """(utime, stime) of `pid` itself (all its threads, not its children), in seconds; None if gone."""
    fields = _proc_stat(pid)
    if fields is None:
        return None
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # fields 14 and 15 of proc(5)


def rss_bytes(pid: int) -> int | None:
    """Resident set size of `pid` (VmRSS of /proc/<pid>/status), in bytes; None if gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def _start_time(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields else None  # field 22: starttime, tells a recycled pid apart


def descendants(root: int) -> list[int]:
    """Every live process whose parent chain reaches `root` (stdio servers may run in sessions of
    their own, so the process group is not enough)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Process:
    """A child process. Its stdout is read by a thread (so a wait for `PORT=<n>` is bounded); its
    stderr goes to a temporary file, shown when something fails.

    :param name: shown in logs and errors.
    :param argv: the command line (no shell).
    :param env: extra environment variables on top of this process's own.
    :param stop_timeout_seconds: how long `stop()` waits after SIGTERM before SIGKILL.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS,
    ) -> None:
        self.name = name
        self.stop_timeout_seconds = stop_timeout_seconds
        self.started_at = time.perf_counter()
        """`time.perf_counter()` just before the spawn (for start-up times)."""
        self._stderr = tempfile.TemporaryFile()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, **env} if env else None,
        )
        self.pid = self.proc.pid
        self._extra: list[tuple[int, str | None]] = []
        threading.Thread(target=self._read_stdout, name=f"{name} stdout", daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def wait_port(self, timeout: float = START_TIMEOUT_SECONDS) -> int:
        """The port from the `PORT=<n>` line the process prints once listening.

        :raises RuntimeError: it exited first, or printed no such line within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"{self.name} printed no PORT= within {timeout:g} s{self.stderr_tail()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before listening{self.stderr_tail()}")
            if line.startswith("PORT="):
                return int(line.removeprefix("PORT="))

    def adopt_descendants(self) -> list[int]:
        """Remember the current descendants (to stop any the process leaves behind) and return them."""
        pids = descendants(self.pid)
        self._extra = [(pid, _start_time(pid)) for pid in pids]
        return pids

    def stderr_tail(self, chars: int = 3000) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")[-chars:]
        return f"\n--- {self.name} stderr (tail) ---\n{text}" if text.strip() else ""

    def stop(self) -> None:
        """SIGTERM, bounded wait, SIGKILL; then the same for descendants it left behind."""
        if self.proc.poll() is None:
            t0 = time.perf_counter()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout_seconds)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) ignored SIGTERM for {self.stop_timeout_seconds:g} s; killing it")
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            else:
                if (took := time.perf_counter() - t0) > SLOW_STOP_SECONDS:
                    log(f"{self.name} took {took:.1f} s to stop after SIGTERM")
        for pid, started_time in self._extra:
            _stop_pid(pid, started_time, f"{self.name} child")
        self._stderr.close()


CHILD_GRACE_SECONDS = 3.0
"""How long a stdio server may take to exit by itself once its parent is gone (its stdin closed)."""


def _stop_pid(pid: int, started_time: str | None, name: str) -> None:
    """Stop `pid` if it is still the process we saw (same start time): give it `CHILD_GRACE_SECONDS`
    to exit by itself (a stdio server exits when its stdin closes), then SIGTERM, then SIGKILL."""

    def alive() -> bool:
        return started_time is not None and _start_time(pid) == started_time

    def wait_gone(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while alive() and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)  # polling for exit; no other notification exists for a non-child

    wait_gone(CHILD_GRACE_SECONDS)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive():
            return
        log(f"{name} (pid {pid}) outlived its parent by {CHILD_GRACE_SECONDS:g} s; sending {sig.name}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        wait_gone(STOP_TIMEOUT_SECONDS / 2)


class Processes(list[Process]):
    """The processes of one run, stopped in reverse order by `started`."""

    def stop(self, process: Process) -> None:
        """Stop one of them now (and forget it)."""
        try:
            process.stop()
        finally:
            with contextlib.suppress(ValueError):
                self.remove(process)


@contextlib.contextmanager
def started() -> Iterator[Processes]:
    """Yield a list to add started processes to; stop them all on exit, also on SIGINT or SIGTERM
    to this process (both end in KeyboardInterrupt)."""

    def on_signal(signum: int, frame: Any) -> None:
        # Handled as SIGINT: inside `asyncio.Runner.run` its own SIGINT handler cancels the main
        # task and then raises KeyboardInterrupt; an exception raised here instead could land in
        # an event-loop callback and be swallowed there.
        signal.raise_signal(signal.SIGINT)

    processes = Processes()
    previous_term = signal.signal(signal.SIGTERM, on_signal)
    # A shell starts background jobs with SIGINT ignored, and Python keeps it so: undo that, so
    # that both signals reach this process.
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield processes
    finally:
        for process in reversed(processes):
            try:
                process.stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping {process.name} failed: {exc!r}")
        processes.clear()
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def wait_ready(
    url: str,
    process: Process,
    timeout: float = START_TIMEOUT_SECONDS,
    headers: Mapping[str, str] | None = None,
) -> httpx2.Response:
    """Poll `GET url` until it answers 200 (bounded); fail early if the process exits.

    :returns: the first 200 response.
    :raises RuntimeError: the process exited, or no 200 within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx2.Client(trust_env=False, timeout=2.0, headers=headers) as client:
        while time.monotonic() < deadline:
            if process.proc.poll() is not None:
                raise RuntimeError(f"{process.name} exited ({process.proc.returncode}){process.stderr_tail()}")
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return response
                last = f"HTTP {response.status_code}: {response.text[:300]}"
            except httpx2.TransportError as exc:
                last = repr(exc)
            time.sleep(POLL_SECONDS)  # poll interval of a bounded readiness probe
    raise RuntimeError(f"{url} not ready within {timeout:g} s (last: {last}){process.stderr_tail()}")
