"""What every config model shares: the pydantic base (unknown keys refused, frozen, field
docstrings as documentation), the environment a load reads `*_env` secrets from, and the
loopback and secure-URL rules."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict, ValidationInfo

__all__ = ["LOOPBACK_HOSTS", "Model", "check_secure_url", "env_of", "is_loopback_url", "secret_from_env"]


class Model(BaseModel):
    """The base of the config models: an unknown key is an error, a loaded config is immutable,
    and each field's docstring is its documentation (in the JSON schema too)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
"""Hosts that count as loopback for `auth: none` and for plain-http URLs (JWKS, token endpoints)."""


def env_of(info: ValidationInfo) -> Mapping[str, str]:
    """The environment a load reads `*_env` variables from: `parse_config`'s `env` (passed as
    validation context `{"env": ...}`), else `os.environ`."""
    context = info.context if isinstance(info.context, dict) else {}
    env = context.get("env")
    return env if env is not None else os.environ


def is_loopback_url(url: str) -> bool:
    """Whether `url`'s host is a loopback name or address."""
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return host in LOOPBACK_HOSTS


def check_secure_url(value: str, what: str) -> str:
    """`value`, if it is an https URL (or http on loopback), for a URL a secret is sent to.

    :raises ValueError: naming `what` and the value.
    """
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s#]*)?", value):
        raise ValueError(f"{what} must be an http(s) URL, got {value!r}")
    if value.startswith("http://") and not is_loopback_url(value):
        raise ValueError(f"{what} must use https (plain http is accepted only on loopback), got {value!r}")
    return value


def secret_from_env(name: str, info: ValidationInfo) -> str:
    """The value of the environment variable `name` (see `env_of`), read once at load.

    :raises ValueError: the variable is unset or empty.
    """
    value = env_of(info).get(name, "")
    if not value:
        raise ValueError(f"environment variable {name} is {'empty' if name in env_of(info) else 'not set'}")
    return value
