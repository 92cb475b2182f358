"""Handshake-era session ids that any replica can open: the session, sealed into its own id.

A session id (`Mcp-Session-Id`, MCP transport spec 2025-11-25 "Session Management") is a
token sealed with AES-256-GCM under the replicas' shared key, purpose `session-id`
(`hub.cluster.keys`), carrying everything a replica needs to serve the session without having
seen its handshake:

- `principal`: who opened it (`<auth source>:<principal id>`, e.g. `api_key:caller`); another
  principal presenting the id gets the 404 an unknown session gets (SECURITY.md case 7);
- `face`: the endpoint it belongs to (`""` for `/mcp`, the server_id for `/servers/<id>/mcp`);
- `protocol_version`: the version negotiated by `initialize`;
- `client`: the `initialize` params (the client's capabilities and `clientInfo`);
- `created`: when it was opened (Unix seconds, the replicas' wall clocks), and a random nonce.

The token is `v1.` followed by base64url (RFC 4648 section 5), so every character is visible
ASCII (0x21-0x7E) as the transport spec requires, and it is at most `MAX_SESSION_ID_CHARS`
characters: the JSON payload is compressed before sealing, and when a client's `initialize`
params are still too large, `clientInfo` is cut down to its `name`, `version` and `title`
(what servers use); params that do not fit even then are refused (`SessionIdTooLarge`).

Lifetime: a session id opens until `created + lifetime_seconds`
(`session_max_lifetime_seconds`, default 24 h); after that every replica answers 404 and the
client initializes again. A DELETE ends it earlier everywhere (`hub.cluster.session_state`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import zlib
from dataclasses import dataclass
from typing import Any, Final

from mcp.server.request_state import InvalidRequestState, RequestStateCodec
from mcp_types import InitializeRequestParams
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import ValidationError

from hub.errors import HubError

__all__ = [
    "MAX_SESSION_ID_CHARS",
    "SessionClaims",
    "SessionIdTooLarge",
    "SessionIds",
    "negotiated_version",
    "session_key",
]

MAX_SESSION_ID_CHARS: Final = 4096
"""The longest session id the hub mints, in characters (well under any proxy's header limit and
the hub's own `max_header_bytes`)."""

_PAYLOAD_VERSION: Final = 1
_NONCE_BYTES: Final = 8
_SEAL_OVERHEAD_CHARS: Final = 64
"""`v1.`, key id, GCM nonce and tag, base64url padding: what sealing adds to the payload."""
_MAX_PAYLOAD_BYTES: Final = (MAX_SESSION_ID_CHARS - _SEAL_OVERHEAD_CHARS) * 3 // 4
_KEPT_CLIENT_INFO: Final = ("name", "version", "title")


class SessionIdTooLarge(HubError):
    """A client's `initialize` params do not fit in a session id (see the module docstring)."""


def negotiated_version(requested: str) -> str:
    """The handshake-era version `initialize` settles on for `requested` (the SDK's rule: the
    client's version when the hub speaks it, else the latest handshake-era version)."""
    return requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION


def session_key(session_id: str) -> str:
    """A short stable digest of a session id (32 hex digits): how the shared store, log lines
    and replica messages name a session without carrying the id itself."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """What a session id carries (see the module docstring)."""

    principal: str
    face: str
    protocol_version: str
    client: dict[str, Any]
    """The `initialize` params as JSON (`protocolVersion`, `capabilities`, `clientInfo`)."""
    created: float
    nonce: str

    def client_params(self) -> InitializeRequestParams:
        """The client's `initialize` params (as the handshake committed them)."""
        return InitializeRequestParams.model_validate(self.client, by_name=False)

    def _payload(self) -> dict[str, Any]:
        return {
            "v": _PAYLOAD_VERSION,
            "p": self.principal,
            "f": self.face,
            "pv": self.protocol_version,
            "c": self.client,
            "t": self.created,
            "n": self.nonce,
        }


def _compressed(payload: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode(), 9)


class SessionIds:
    """Mints and opens sealed session ids.

    :param codec: the `session-id` codec of the hub's keys (`ClusterKeys.codec("session-id")`).
    :param lifetime_seconds: how long an id opens after its session was created.
    """

    def __init__(self, codec: RequestStateCodec, lifetime_seconds: float) -> None:
        self._codec = codec
        self.lifetime_seconds = lifetime_seconds

    def mint(
        self, principal: str, face: str, params: InitializeRequestParams, *, now: float | None = None
    ) -> tuple[str, SessionClaims]:
        """A new session id for `principal` on `face`, opened by `initialize` with `params`.

        :raises SessionIdTooLarge: the params do not fit even with `clientInfo` cut down.
        """
        client = params.model_dump(by_alias=True, mode="json", exclude_none=True)
        claims = SessionClaims(
            principal=principal,
            face=face,
            protocol_version=negotiated_version(params.protocol_version),
            client=client,
            # Rounded as sealed (milliseconds), so the claims minted equal the claims opened.
            created=round(time.time() if now is None else now, 3),
            nonce=secrets.token_hex(_NONCE_BYTES),
        )
        payload = _compressed(claims._payload())
        if len(payload) > _MAX_PAYLOAD_BYTES:
            info = client.get("clientInfo") or {}
            trimmed = {**client, "clientInfo": {k: info[k] for k in _KEPT_CLIENT_INFO if k in info}}
            claims = SessionClaims(principal, face, claims.protocol_version, trimmed, claims.created, claims.nonce)
            payload = _compressed(claims._payload())
            if len(payload) > _MAX_PAYLOAD_BYTES:
                raise SessionIdTooLarge(
                    f"the initialize params take {len(payload)} bytes compressed; a session id holds at most "
                    f"{_MAX_PAYLOAD_BYTES} (declare fewer capabilities)"
                )
        return self._codec.seal(payload), claims

    def open(self, session_id: str, *, now: float | None = None) -> SessionClaims | None:
        """The claims of `session_id`, or None when it is not one this hub's keys sealed (any
        change to it), is malformed, or has outlived `lifetime_seconds`."""
        if len(session_id) > MAX_SESSION_ID_CHARS:
            return None
        try:
            payload = json.loads(zlib.decompress(self._codec.unseal(session_id)))
            claims = SessionClaims(
                principal=str(payload["p"]),
                face=str(payload["f"]),
                protocol_version=str(payload["pv"]),
                client=dict(payload["c"]),
                created=float(payload["t"]),
                nonce=str(payload["n"]),
            )
            if payload.get("v") != _PAYLOAD_VERSION:
                return None
            claims.client_params()
        except (InvalidRequestState, zlib.error, ValueError, KeyError, TypeError, ValidationError):
            return None
        if self.expires_at(claims) <= (time.time() if now is None else now):
            return None
        return claims

    def expires_at(self, claims: SessionClaims) -> float:
        """When the session of `claims` ends at the latest (Unix seconds)."""
        return claims.created + self.lifetime_seconds

    def remaining_seconds(self, claims: SessionClaims, *, now: float | None = None) -> float:
        """Seconds left in the session's lifetime (at least 1: a TTL for what the store keeps)."""
        return max(1.0, self.expires_at(claims) - (time.time() if now is None else now))
