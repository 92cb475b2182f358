"""Config documents checked against the committed JSON schema (config/hub.schema.json) as well
as loaded: every config a test expects to load goes through `parse_checked` or `load_checked`,
so the schema is shown to accept it too (tests/test_schema.py checks the other direction)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from hub.config import HubConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "config" / "hub.schema.json"


@functools.cache
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(document: Any) -> list[str]:
    """Where and why `document` (parsed YAML/JSON, before any `${...}` is resolved) breaks the schema."""
    return [
        f"{'.'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
        for error in _validator().iter_errors(document)
    ]


def read_yaml(path: Path) -> Any:
    """A config file as an editor's schema check sees it (YAML, or JSON, which is YAML too)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def parse_checked(data: Any, *, env: Mapping[str, str] | None = None, file: str = "hub.yaml") -> HubConfig:
    """`parse_config(data)`, after asserting that the schema accepts `data` as well."""
    assert schema_errors(data) == [], data
    return parse_config(data, file=file, env={} if env is None else env)


def load_checked(path: Path, *, env: Mapping[str, str] | None = None) -> HubConfig:
    """`load_config(path)`, after asserting that the schema accepts the file as well."""
    assert schema_errors(read_yaml(path)) == [], path
    return load_config(path, env={} if env is None else env)
