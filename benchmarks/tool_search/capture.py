"""Capture the tool listings of real third-party MCP servers into `catalog.json`.

The quality benchmark searches a snapshot, so it runs without starting any server; this script
refreshes the snapshot from the live servers (stdio, each listed through every page):

    python benchmarks/tool_search/capture.py            # all servers it can find
    python benchmarks/tool_search/capture.py --install  # first install the extra npm/PyPI servers

Where the servers come from:

- `mcp-server-time`, `mcp-server-git`: the hub's own venv (dependencies of the hub).
- `server-everything`, `server-memory`: the npm cache of the test suite, `.cache/npm`
  (`tests/conftest.py: npm_servers` installs it).
- the other npm reference servers: `.cache/npm-search` (this script's own folder; `--install`).
- `mcp-server-fetch`, `mcp-server-sqlite`: a venv each under `.cache/pypi-search` (`--install`),
  since they disagree on the `mcp` version.

Servers that need a credential get a dummy one: listing tools never calls the remote API. A
server that cannot be started is reported and left out (the previous snapshot is not merged).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters, stdio_client

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CATALOG_PATH = HERE / "catalog.json"
NPM_TESTS = ROOT / ".cache" / "npm"
NPM_SEARCH = ROOT / ".cache" / "npm-search"
PYPI_SEARCH = ROOT / ".cache" / "pypi-search"
NPM_PACKAGES = (
    "@modelcontextprotocol/server-filesystem@2026.8.31",
    "@modelcontextprotocol/server-sequential-thinking@2026.8.31",
    "@modelcontextprotocol/server-github@2025.4.8",
    "@modelcontextprotocol/server-gitlab@2025.4.25",
    "@modelcontextprotocol/server-slack@2025.4.25",
    "@modelcontextprotocol/server-brave-search@0.6.2",
    "@modelcontextprotocol/server-google-maps@0.6.2",
    "@modelcontextprotocol/server-postgres@0.6.2",
)
PYPI_PACKAGES = {
    # One venv each: they disagree on `mcp` (fetch needs 2.x, sqlite breaks on it).
    "fetch": ("mcp-server-fetch==2026.10.24",),
    "sqlite": ("mcp-server-sqlite==2025.4.25", "mcp<2"),
}
LIST_TIMEOUT_SECONDS = 60.0
INSTALL_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class ServerSpec:
    """One server to list: its server_id in the benchmark catalog and how to start it."""

    server_id: str
    package: str
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def _node(folder: Path, package: str, *args: str) -> tuple[str, tuple[str, ...]]:
    script = folder / "node_modules" / "@modelcontextprotocol" / package / "dist" / "index.js"
    return "node", (str(script), *args)


def _venv_bin(venv: Path, name: str) -> str:
    return str(venv / "bin" / name)


def server_specs(workdir: Path) -> list[ServerSpec]:
    """Every server of the benchmark catalog; `workdir` holds a scratch git repo and files."""
    repo = workdir / "repo"
    sqlite_db = workdir / "bench.db"
    own_bin = Path(sys.executable).parent
    specs = [
        ServerSpec("time", "mcp-server-time (PyPI)", str(own_bin / "mcp-server-time"), ("--local-timezone", "UTC")),
        ServerSpec("git", "mcp-server-git (PyPI)", str(own_bin / "mcp-server-git"), ("--repository", str(repo))),
        ServerSpec("fetch", "mcp-server-fetch (PyPI)", _venv_bin(PYPI_SEARCH / "fetch", "mcp-server-fetch")),
        ServerSpec(
            "sqlite",
            "mcp-server-sqlite (PyPI)",
            _venv_bin(PYPI_SEARCH / "sqlite", "mcp-server-sqlite"),
            ("--db-path", str(sqlite_db)),
        ),
    ]
    npm: list[tuple[str, Path, str, tuple[str, ...], dict[str, str]]] = [
        ("everything", NPM_TESTS, "server-everything", (), {}),
        ("memory", NPM_TESTS, "server-memory", (), {"MEMORY_FILE_PATH": str(workdir / "memory.jsonl")}),
        ("filesystem", NPM_SEARCH, "server-filesystem", (str(workdir),), {}),
        ("thinking", NPM_SEARCH, "server-sequential-thinking", (), {}),
        ("github", NPM_SEARCH, "server-github", (), {"GITHUB_PERSONAL_ACCESS_TOKEN": "dummy"}),
        ("gitlab", NPM_SEARCH, "server-gitlab", (), {"GITLAB_PERSONAL_ACCESS_TOKEN": "dummy"}),
        ("slack", NPM_SEARCH, "server-slack", (), {"SLACK_BOT_TOKEN": "xoxb-dummy", "SLACK_TEAM_ID": "T0"}),
        ("brave", NPM_SEARCH, "server-brave-search", (), {"BRAVE_API_KEY": "dummy"}),
        ("maps", NPM_SEARCH, "server-google-maps", (), {"GOOGLE_MAPS_API_KEY": "dummy"}),
        ("postgres", NPM_SEARCH, "server-postgres", ("postgresql://127.0.0.1:1/none",), {}),
    ]
    for server_id, folder, package, args, env in npm:
        command, full_args = _node(folder, package, *args)
        specs.append(ServerSpec(server_id, f"@modelcontextprotocol/{package} (npm)", command, full_args, env))
    return specs


def install_extras() -> None:
    """Install the extra npm servers into `.cache/npm-search` and the PyPI ones into their venv."""
    NPM_SEARCH.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(NPM_SEARCH), *NPM_PACKAGES],
        check=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    for name, packages in PYPI_PACKAGES.items():
        venv = PYPI_SEARCH / name
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=INSTALL_TIMEOUT_SECONDS)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", *packages],
            check=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
        )


async def list_server(spec: ServerSpec, errlog: Any) -> list[dict[str, Any]]:
    """Every tool of one server (all pages), as the `tools/list` JSON of each tool."""
    params = StdioServerParameters(command=spec.command, args=list(spec.args), env=spec.env or None)
    tools: list[dict[str, Any]] = []
    with anyio.fail_after(LIST_TIMEOUT_SECONDS):
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=LIST_TIMEOUT_SECONDS) as client:
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor, cache_mode="refresh")
                tools.extend(t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
    return tools


def _prepare(workdir: Path) -> None:
    """A scratch git repository with one commit, for mcp-server-git."""
    repo = workdir / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("hello\n")
    for args in (
        ["init", "-q", str(repo)],
        ["-C", str(repo), "add", "README.md"],
        ["-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first"],
    ):
        subprocess.run(["git", *args], check=True, timeout=30)


def _installed(spec: ServerSpec) -> bool:
    return Path(spec.args[0] if spec.command == "node" else spec.command).exists()


async def _list_all(specs: Sequence[ServerSpec], errlog: Any) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for spec in specs:
        try:
            tools = await list_server(spec, errlog)
        except Exception as exc:  # a server that cannot start is reported and left out
            print(f"skip {spec.server_id}: {type(exc).__name__}: {exc}")
            continue
        servers[spec.server_id] = {"package": spec.package, "tools": tools}
        print(f"{spec.server_id}: {len(tools)} tools")
    return servers


def capture(only: Sequence[str]) -> dict[str, Any]:
    """List every server (or those in `only`) and return the snapshot document."""
    with tempfile.TemporaryDirectory(prefix="tool-search-capture-") as tmp:
        workdir = Path(tmp)
        _prepare(workdir)
        specs = []
        for spec in server_specs(workdir):
            if only and spec.server_id not in only:
                continue
            if not _installed(spec):
                print(f"skip {spec.server_id}: not installed ({spec.package}; see --install)")
                continue
            specs.append(spec)
        with open(workdir / "servers.log", "w") as errlog:  # the servers' stderr (noise here)
            servers = anyio.run(_list_all, specs, errlog)
    return {
        "captured": datetime.date.today().isoformat(),
        "note": "tools/list of real MCP servers (original names); exposed names are <server_id>__<name>",
        "servers": servers,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="install the extra npm and PyPI servers first")
    parser.add_argument("--only", nargs="*", default=[], help="server_ids to list (default: all)")
    parser.add_argument("--output", type=Path, default=CATALOG_PATH)
    args = parser.parse_args(argv)
    if args.install:
        install_extras()
    os.environ.setdefault("npm_config_update_notifier", "false")
    document = capture(tuple(args.only))
    args.output.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    total = sum(len(s["tools"]) for s in document["servers"].values())
    print(f"wrote {args.output}: {len(document['servers'])} servers, {total} tools")


if __name__ == "__main__":
    main()
