"""Sealed handshake-era session ids (`hub.cluster.session_ids`): pure functions of a key."""

from __future__ import annotations

import time

import mcp_types as types
import pytest
from mcp_types import InitializeRequestParams

from hub.cluster.keys import ClusterKeys
from hub.cluster.session_ids import MAX_SESSION_ID_CHARS, SessionIds, SessionIdTooLarge, session_key

KEY = b"k" * 32
LIFETIME = 3600.0


def _ids(key: bytes = KEY) -> SessionIds:
    return SessionIds(ClusterKeys([key]).codec("session-id"), LIFETIME)


def _params(version: str = "2025-06-18", **info: object) -> InitializeRequestParams:
    return InitializeRequestParams(
        protocol_version=version,
        capabilities=types.ClientCapabilities(sampling=types.SamplingCapability()),
        client_info=types.Implementation(name="client", version="1.2", **info),  # type: ignore[arg-type]
    )


def test_a_session_id_opens_on_any_holder_of_the_key_with_everything_the_handshake_committed() -> None:
    session_id, minted = _ids().mint("api_key:caller", "", _params())
    opened = _ids().open(session_id)  # another SessionIds over the same key: another replica
    assert opened == minted
    assert opened.principal == "api_key:caller" and opened.face == ""
    assert opened.protocol_version == "2025-06-18"
    params = opened.client_params()
    assert params.client_info.name == "client" and params.capabilities.sampling is not None
    assert session_id.startswith("v1.") and all(0x21 <= ord(c) <= 0x7E for c in session_id)


def test_an_unknown_version_is_sealed_as_the_version_initialize_settles_on() -> None:
    _, claims = _ids().mint("p", "", _params("1999-01-01"))
    assert claims.protocol_version == "2025-11-25"


def test_a_changed_id_an_id_under_another_key_or_garbage_does_not_open() -> None:
    session_id, _ = _ids().mint("p", "", _params())
    middle = len(session_id) // 2
    flipped = session_id[:middle] + ("A" if session_id[middle] != "A" else "B") + session_id[middle + 1 :]
    assert _ids().open(flipped) is None
    assert _ids(b"x" * 32).open(session_id) is None
    for garbage in ("", "v1.", "v1.!!!!", "0123456789abcdef0123456789abcdef", "v1." + "A" * 5000):
        assert _ids().open(garbage) is None


def test_ids_of_two_identical_handshakes_differ_and_have_distinct_keys() -> None:
    first, _ = _ids().mint("p", "", _params())
    second, _ = _ids().mint("p", "", _params())
    assert first != second and session_key(first) != session_key(second)


def test_an_id_opens_until_its_lifetime_ends() -> None:
    now = round(time.time(), 3)  # ids keep milliseconds
    session_id, claims = _ids().mint("p", "", _params(), now=now)
    assert _ids().open(session_id, now=now + LIFETIME - 1) == claims
    assert _ids().open(session_id, now=now + LIFETIME) is None
    assert _ids().remaining_seconds(claims, now=now + 10) == pytest.approx(LIFETIME - 10)
    assert _ids().remaining_seconds(claims, now=now + 2 * LIFETIME) == 1.0


def test_a_large_client_info_is_cut_down_and_params_too_large_even_then_are_refused() -> None:
    # Random-looking text does not compress: a description this long cannot fit.
    noise = "".join(f"{i * 7919 % 100003:05d}" for i in range(2000))
    session_id, claims = _ids().mint("p", "", _params(description=noise, title="T"))
    assert len(session_id) <= MAX_SESSION_ID_CHARS
    assert claims.client["clientInfo"] == {"name": "client", "version": "1.2", "title": "T"}
    huge = InitializeRequestParams(
        protocol_version="2025-06-18",
        capabilities=types.ClientCapabilities(experimental={"x": {"noise": noise}}),
        client_info=types.Implementation(name="client", version="1"),
    )
    with pytest.raises(SessionIdTooLarge):
        _ids().mint("p", "", huge)
