"""How the bridge seals `requestState` (`hub.endpoint.era_bridge.Bridge.security`): the replicas' shared
ring opens what any of them sealed, a rotated ring still opens the old key's states, a state
from another ring or a tampered one is refused, and the TTL and principal binding are the
configured ones. Pure: the bridge's codec in memory, no task group, no I/O."""

from __future__ import annotations

import pytest
from mcp.server.request_state import InvalidRequestState

from hub.endpoint.era_bridge import HANDLE_PREFIX, Bridge
from hub.endpoint.server_requests import principal_id

pytestmark = pytest.mark.unit

OLD, NEW = b"o" * 32, b"n" * 32
STATE = (HANDLE_PREFIX + "a-suspended-call").encode()


def test_a_state_sealed_by_one_replica_is_opened_by_another_sharing_the_ring() -> None:
    sealed = Bridge(60, [OLD]).security.codec.seal(STATE)
    assert STATE.decode() not in sealed  # sealed, not merely encoded
    assert Bridge(60, [OLD]).security.codec.unseal(sealed) == STATE


def test_after_a_key_rotation_states_sealed_with_the_previous_key_still_open() -> None:
    before = Bridge(60, [OLD]).security.codec.seal(STATE)
    rotated = Bridge(60, [NEW, OLD]).security.codec
    assert rotated.unseal(before) == STATE
    # The ring's first key seals: once OLD is retired, what the rotated ring sealed still opens.
    assert Bridge(60, [NEW]).security.codec.unseal(rotated.seal(STATE)) == STATE


def test_a_state_from_another_ring_is_refused() -> None:
    sealed = Bridge(60, [OLD]).security.codec.seal(STATE)
    with pytest.raises(InvalidRequestState):
        Bridge(60, [NEW]).security.codec.unseal(sealed)


def test_a_tampered_state_is_refused() -> None:
    codec = Bridge(60, [OLD]).security.codec
    sealed = codec.seal(STATE)
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    for forged in (flipped, sealed[:-8], "not-a-state", ""):
        with pytest.raises(InvalidRequestState):
            codec.unseal(forged)


def test_a_bridge_without_keys_seals_with_a_random_key_of_its_own() -> None:
    sealed = Bridge(60).security.codec.seal(STATE)
    with pytest.raises(InvalidRequestState):
        Bridge(60).security.codec.unseal(sealed)


def test_states_live_for_the_configured_ttl_and_are_bound_to_the_calling_principal() -> None:
    security = Bridge(12.5, [OLD]).security
    assert security.ttl == 12.5
    assert security.bind_principal is principal_id
