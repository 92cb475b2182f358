"""The command line talks to the hub through `hub.app` only (issue 13: the dependency direction
is cli -> app -> endpoint / servers -> core -> config / errors). Pure: it reads the source of
`hub/cli/` with `ast`, it imports nothing and starts nothing."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

CLI = ROOT / "hub" / "cli"

ALLOWED: dict[str, str] = {
    "hub.app": "the composition root: builds and runs the hub, and re-exports the types the CLI prints",
    "hub.cli": "the command line's own modules",
    "hub.config": "the config models the CLI validates, overrides and writes (`keys new`, `serve --host`)",
    "hub.errors": "the `HubError` tree the CLI turns into one line and an exit code",
    "hub.logs": "logging set-up (`--log-level`, `--log-format`) and `counted` for console lines",
}
"""The modules of `hub` a module of `hub/cli/` may import (itself or below), and why."""


def _hub_imports(source: str) -> list[tuple[int, str]]:
    """`(line, module)` for every import of a `hub` module in `source`, relative ones resolved
    against `hub.cli`, including those inside functions and `if TYPE_CHECKING:` blocks."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "hub")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = "hub.cli" if node.level == 1 else "hub"
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module == "hub":  # `from hub import cli`: the names are modules
                found.extend((node.lineno, f"hub.{alias.name}") for alias in node.names)
            elif module.split(".")[0] == "hub":
                found.append((node.lineno, module))
    return found


def _allowed(module: str) -> bool:
    return any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED)


def _violations(source: str) -> list[str]:
    return [f"line {line}: {module}" for line, module in sorted(_hub_imports(source)) if not _allowed(module)]


def test_no_module_of_the_command_line_imports_the_hub_below_its_composition_root() -> None:
    modules = sorted(CLI.rglob("*.py"))
    assert len(modules) >= 10  # the package is there and this test reads it
    found = {path.relative_to(ROOT).as_posix(): _violations(path.read_text(encoding="utf-8")) for path in modules}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_the_layering_check_catches_every_form_of_import_that_reaches_past_the_app() -> None:
    source = """
import hub.endpoint
from hub.servers import ServerState
from hub import drain
from .. import router
from ..http_server import HttpServer
from hub.app import Hub
from hub.config import HubConfig
from hub.cli.runner import out
from . import runner
import json

def later() -> None:
    from hub.catalog import Catalog
"""
    assert _violations(source) == [
        "line 2: hub.endpoint",
        "line 3: hub.servers",
        "line 4: hub.drain",
        "line 5: hub.router",
        "line 6: hub.http_server",
        "line 14: hub.catalog",
    ]
