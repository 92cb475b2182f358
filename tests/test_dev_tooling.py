"""The developer tooling the README promises: pre-commit hooks that run what `make lint` runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PRE_COMMIT = Path(sys.executable).with_name("pre-commit")


def test_the_pre_commit_config_is_valid_and_runs_ruff_ruff_format_and_mypy_from_the_venv() -> None:
    config = ROOT / ".pre-commit-config.yaml"
    done = subprocess.run(
        [str(PRE_COMMIT), "validate-config", str(config)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    hooks = {hook["id"]: hook for repo in yaml.safe_load(config.read_text())["repos"] for hook in repo["hooks"]}
    assert set(hooks) == {"ruff", "ruff-format", "mypy"}
    assert all(hook["entry"].startswith(".venv/bin/") for hook in hooks.values())


def test_the_pre_commit_hooks_pass_on_a_module_of_the_hub() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: pre-commit runs inside a git repository")
    done = subprocess.run(
        [str(PRE_COMMIT), "run", "--files", "hub/errors.py"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split(".")[0] for line in done.stdout.splitlines() if line.endswith("Passed")] == [
        "ruff check",
        "ruff format",
        "mypy (strict)",
    ]
