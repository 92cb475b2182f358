"""The keys a hub seals with: shared by its replicas (`cluster.secret_env`), else one random key
per process.

What a client holds between two requests and hands back (a handshake-era session id, a
modern-era `requestState`) is sealed with AES-256-GCM by the SDK's `AESGCMRequestStateCodec`
(HKDF-derived keys, a key id per token, the token format bound into the associated data), so
any replica holding the same key opens what another sealed, and rotation is a ring: the first
key seals, every key opens. Each purpose gets keys of its own (HMAC-SHA256 of the configured
key and the purpose's name), so a token sealed for one purpose never opens as another.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from typing import Final, Literal

from mcp.server.request_state import AESGCMRequestStateCodec

from hub.config.cluster import ClusterConfig

__all__ = ["ClusterKeys", "Purpose"]

Purpose = Literal["request-state", "session-id"]
"""What a sealed token is for."""

_RANDOM_KEY_BYTES: Final = 32


class ClusterKeys:
    """The sealing keys of one hub.

    :param keys: the configured keys, the sealing one first (see `ClusterConfig.keys`); empty:
        one random key for this process (nothing sealed survives it or opens on another).
    """

    def __init__(self, keys: Sequence[bytes] = ()) -> None:
        self.shared = bool(keys)
        """Whether the keys come from the config (replicas share them)."""
        self._keys = tuple(keys) if keys else (os.urandom(_RANDOM_KEY_BYTES),)

    @classmethod
    def from_config(cls, cluster: ClusterConfig | None) -> ClusterKeys:
        """The keys of `cluster` (None, or no `secret_env`: a random per-process key)."""
        return cls(cluster.keys if cluster is not None else ())

    def for_purpose(self, purpose: Purpose) -> list[bytes]:
        """32-byte keys for one purpose, in ring order (the first seals)."""
        label = f"mcphub/{purpose}/v1".encode()
        return [hmac.new(key, label, hashlib.sha256).digest() for key in self._keys]

    def codec(self, purpose: Purpose) -> AESGCMRequestStateCodec:
        """An AES-256-GCM codec sealing with the first key of `purpose` and opening with all."""
        return AESGCMRequestStateCodec(self.for_purpose(purpose))
