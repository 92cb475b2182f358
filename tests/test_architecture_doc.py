"""`docs/architecture.md` stays the map of the code: every path it names exists, and every
module of `hub/` and `adapters/` is named in it."""

from __future__ import annotations

import re

from tests.conftest import ROOT

DOC = ROOT / "docs" / "architecture.md"
_PATH = re.compile(r"`((?:hub|adapters|tests|benchmarks|config|deploy)/[A-Za-z0-9_./-]*)`")


def _named() -> set[str]:
    return set(_PATH.findall(DOC.read_text(encoding="utf-8")))


def test_every_path_the_architecture_map_names_exists() -> None:
    named = _named()
    assert len(named) > 80
    assert sorted(path for path in named if not (ROOT / path).exists()) == []


def test_every_module_of_the_hub_and_its_adapters_is_on_the_map() -> None:
    named = _named()
    modules = {
        path.relative_to(ROOT).as_posix()
        for package in ("hub", "adapters")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py" or path.parent.name in ("adapters", "servers", "endpoint")
    }
    modules.discard("hub/__init__.py")
    assert sorted(modules - named) == []
