"""`hub.policy.Policy`: which principal may see and use which route, decided on exposed names
(first applicable rule decides; deny wins within it). Pure: rules and principals in memory."""

from __future__ import annotations

import pytest

from hub.config import PolicyRule
from hub.endpoint.authentication import LOCAL, Principal
from hub.policy import Policy

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"hub:call"}), "api_key")
BOB = Principal("bob", frozenset({"hub:call", "team:ops"}), "jwt")
CAROL = Principal("carol", frozenset({"hub:call"}), "api_key")
MUTE = Principal("mute", frozenset({"hub:metrics"}), "api_key")


def _policy() -> Policy:
    return Policy(
        [
            PolicyRule(principal="alice", allow=["fx__*", "fx+fixture://*"], deny=["fx__delete_*"]),
            PolicyRule(scope="team:ops", servers=["ops"]),
            PolicyRule(scope="hub:call", allow=["public__*"]),
        ]
    )


def test_without_policies_every_principal_holding_hub_call_may_use_every_route() -> None:
    policy = Policy(None)
    decision = policy.decide(ALICE, "fx", "fx__anything")
    assert (decision.allowed, decision.rule) == (True, None)
    assert not policy.restricts(ALICE)


def test_a_principal_without_hub_call_may_use_nothing_whatever_the_rules() -> None:
    for policy in (Policy(None), _policy()):
        decision = policy.decide(MUTE, "public", "public__echo")
        assert (decision.allowed, decision.rule) == (False, None)
        assert policy.restricts(MUTE)


def test_deny_beats_allow_within_the_rule_that_applies() -> None:
    policy = _policy()
    assert policy.decide(ALICE, "fx", "fx__echo").allowed
    denied = policy.decide(ALICE, "fx", "fx__delete_all")
    assert (denied.allowed, denied.rule, denied.reason) == (False, 0, "denied by a deny glob")


def test_the_first_rule_that_applies_decides_and_later_rules_are_not_consulted() -> None:
    # alice also holds hub:call (rule 2 would allow public__*), but rule 0 applies to her first.
    decision = _policy().decide(ALICE, "public", "public__echo")
    assert (decision.allowed, decision.rule, decision.reason) == (False, 0, "matches no allow glob")


def test_a_rule_with_servers_allows_only_routes_of_those_servers() -> None:
    policy = _policy()
    assert policy.decide(BOB, "ops", "ops__restart").allowed
    other = policy.decide(BOB, "fx", "fx__echo")
    assert (other.allowed, other.rule, other.reason) == (False, 1, "server not in the rule's servers")


def test_a_caller_no_rule_applies_to_may_use_nothing() -> None:
    policy = Policy([PolicyRule(principal="alice", allow=["*"])])
    decision = policy.decide(CAROL, "fx", "fx__echo")
    assert (decision.allowed, decision.rule) == (False, None)
    assert policy.view_of(CAROL) == "none"


def test_resource_globs_match_the_normalised_uri() -> None:
    policy = _policy()
    assert policy.decide(ALICE, "fx", "fx+fixture://info").allowed


def test_the_stdio_client_is_not_subject_to_policies() -> None:
    policy = _policy()
    assert policy.decide(LOCAL, "ops", "ops__restart").allowed
    assert policy.view_of(LOCAL) == "all" and policy.rule_for(LOCAL) is None


def test_principals_decided_by_the_same_rule_share_a_view() -> None:
    policy = _policy()
    dave = Principal("dave", frozenset({"hub:call", "team:ops"}), "api_key")
    assert policy.view_of(BOB) == policy.view_of(dave) == 1
    assert policy.view_of(CAROL) == 2 and policy.view_of(ALICE) == 0
