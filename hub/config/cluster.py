"""Config of a hub that runs as several replicas: the top-level `cluster` block.

```yaml
cluster:
  secret_env: MCPHUB_CLUSTER_KEY          # a key shared by every replica (>= 32 bytes)
  previous_secret_envs: [MCPHUB_OLD_KEY]  # still accepted, never used to seal (key rotation)
  redis_url: redis://redis:6379/0         # shared state (optional)
  redis_timeout_seconds: 0.5              # bound on each Redis call
```

Both keys are optional. Without `cluster`, one hub behaves as a single process always did
(a random key per process, state in memory). The key seals what a client holds between
requests (handshake-era session ids, `requestState`), so that any replica can open what
another sealed; Redis holds only what must be shared between replicas. The field lives on a
mixin that `hub.config` adds to `HubConfig`, so the file stays one document.
"""

from __future__ import annotations

import re
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from hub.config.base import secret_from_env

__all__ = ["DEFAULT_SESSION_MAX_LIFETIME_SECONDS", "MIN_CLUSTER_KEY_BYTES", "ClusterConfig", "HubClusterSettings"]

MIN_CLUSTER_KEY_BYTES: Final = 32
"""A cluster key holds at least this many bytes (AES-256-GCM; the SDK's own floor)."""

DEFAULT_SESSION_MAX_LIFETIME_SECONDS: Final = 86_400.0
"""A handshake-era session's longest life, in seconds (24 h)."""

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _key_from_env(name: str, info: ValidationInfo) -> bytes:
    key = secret_from_env(name, info).encode()
    if len(key) < MIN_CLUSTER_KEY_BYTES:
        raise ValueError(
            f"environment variable {name} holds {len(key)} bytes; a cluster key needs at least "
            f"{MIN_CLUSTER_KEY_BYTES} (make one with: python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return key


class ClusterConfig(BaseModel):
    """What the replicas of one hub share: a key and, optionally, a Redis."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    secret_env: str | None = Field(default=None, pattern=_ENV_NAME)
    """Environment variable holding the key every replica shares (at least 32 bytes, read once at
    load; unset or shorter fails the load). It seals handshake-era session ids and
    `requestState`, so any replica opens what another sealed. Default: none (a random key per
    process: sessions and `requestState` are then bound to the replica that made them)."""

    previous_secret_envs: list[str] = Field(default_factory=list)
    """Environment variables of earlier keys, still accepted when opening, never used to seal:
    rotate by adding the new key as `secret_env` and the old one here on every replica, then
    dropping the old one once what it sealed has expired. Default: none."""

    redis_url: str | None = Field(default=None, pattern=r"^rediss?://\S+$")
    """Redis holding what the replicas must share (`redis://` or `rediss://`, with a database
    number and credentials as Redis URLs allow). Default: none (state in memory)."""

    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    """The longest any one Redis call may take, connecting included, in seconds. A call that
    fails or takes longer marks shared state unavailable (the hub serves with this replica's
    local state, says so in `/readyz` and `mcphub_shared_state_up`, and reconnects in the
    background); meanwhile calls fail at once, so a dead Redis costs a request at most this
    once per outage. Default: 0.5."""

    _keys: tuple[bytes, ...] = PrivateAttr(default=())

    @field_validator("previous_secret_envs")
    @classmethod
    def _check_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(_ENV_NAME, name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return names

    @model_validator(mode="after")
    def _read_keys(self, info: ValidationInfo) -> ClusterConfig:
        if self.secret_env is None:
            if self.previous_secret_envs:
                raise ValueError("previous_secret_envs needs secret_env (the key that seals)")
            return self
        names = [self.secret_env, *self.previous_secret_envs]
        if len(set(names)) != len(names):
            raise ValueError("secret_env and previous_secret_envs name the same variable twice")
        keys = tuple(_key_from_env(name, info) for name in names)
        if len(set(keys)) != len(keys):
            raise ValueError("two cluster key variables hold the same key")
        self._keys = keys
        return self

    @property
    def keys(self) -> tuple[bytes, ...]:
        """The keys read at load: the sealing key first, then the previous ones (empty without
        `secret_env`). Never logged or shown."""
        return self._keys


class HubClusterSettings(BaseModel):
    """The `cluster` and `session_max_lifetime_seconds` fields of `HubConfig` (a mixin, see
    the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    cluster: ClusterConfig | None = None
    """Replicas of this hub: the key they share and their Redis (see `ClusterConfig`).
    Default: none (one process, state in memory)."""

    session_max_lifetime_seconds: float = Field(default=DEFAULT_SESSION_MAX_LIFETIME_SECONDS, ge=60, le=30 * 86_400)
    """How long a handshake-era session lives at most, in seconds from its `initialize`: its id
    (sealed, `hub.cluster.session_ids`) opens on any replica until then, whether or not a
    replica still holds the session in memory (`session_idle_timeout_seconds` only frees a
    replica's copy; the next request rebuilds it). After that, or after a DELETE, every replica
    answers 404 and the client initializes again (MCP transport spec, session management).
    Default: 86400 (24 h)."""
