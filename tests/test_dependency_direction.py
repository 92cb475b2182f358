"""The dependency direction stays one way (`docs/architecture.md`, "The layers"): cli -> app ->
endpoint / servers -> core -> config, errors, with `adapters/` below everything. Read from the
source with `ast` (no import runs): the outbound side (`hub/servers/`), the core, the config and
the adapters never import the endpoint side (`hub.endpoint`) or the command line (`hub.cli`),
not even for type checking."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

_UPPER = ("hub.endpoint", "hub.cli")
"""The packages only the layers above them may import."""

_ABOVE_OR_BESIDE = (
    "hub/endpoint/",  # the endpoint side itself
    "hub/cli/",  # the command line
    "hub/app.py",  # the composition root, above everything it wires
    "hub/__main__.py",  # `python -m hub` is `mcphub`
    "hub/cluster/",  # replicas: beside the endpoint (its session copies act on the endpoint's sessions)
)


def _imported(tree: ast.Module) -> list[tuple[int, str]]:
    """Every module an import statement anywhere in `tree` names (inside functions and
    `TYPE_CHECKING` blocks too), with its line; `from hub import cli` names `hub.cli`."""
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.append((node.lineno, node.module))
            names += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return names


def _is_upper(module: str) -> bool:
    return any(module == upper or module.startswith((upper + ".", upper + "_")) for upper in _UPPER)


def _lower_modules() -> list[Path]:
    """The modules of the outbound side, the core, the config and the adapters."""
    paths = [*(ROOT / "hub").rglob("*.py"), *(ROOT / "adapters").rglob("*.py")]
    return sorted(path for path in paths if not path.relative_to(ROOT).as_posix().startswith(_ABOVE_OR_BESIDE))


def upward_imports(path: Path) -> list[str]:
    """`<path>:<line> imports <module>` for each import of the endpoint side or the command line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(ROOT).as_posix()
    return [f"{where}:{line} imports {module}" for line, module in _imported(tree) if _is_upper(module)]


def test_the_servers_the_core_the_config_and_the_adapters_never_import_the_endpoint_or_the_cli() -> None:
    lower = _lower_modules()
    assert {"hub/servers/connection.py", "hub/policy.py", "hub/router.py", "adapters/stdio.py"} <= {
        path.relative_to(ROOT).as_posix() for path in lower
    }
    assert [found for path in lower for found in upward_imports(path)] == []


def test_an_import_of_the_endpoint_or_the_cli_counts_wherever_it_stands() -> None:
    # The check itself: an import inside a function and one under TYPE_CHECKING both count.
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from hub.endpoint.faces import AggregateFace\n"
        "def f() -> None:\n"
        "    from hub import cli\n"
        "    import hub.cli_search\n"
    )
    tree = ast.parse(source)
    found = [module for _, module in _imported(tree) if _is_upper(module)]
    assert found == ["hub.endpoint.faces", "hub.endpoint.faces.AggregateFace", "hub.cli", "hub.cli_search"]
