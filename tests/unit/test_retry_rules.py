"""The retry predicate's input (`hub.retry_rules.classify_failure`): which failures are safe to
send again, decided from what the hub can prove (the table in `hub.retry_rules`'s docstring)."""

from __future__ import annotations

import pytest
from mcp import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND

from hub.admission import ServerRejected
from hub.errors import RouteNotFound, ServerProtocolError, ServerTimeout, ServerUnavailable
from hub.retry_rules import Failure, classify_failure
from hub.servers.state import ConnectionLost

pytestmark = pytest.mark.unit


def test_a_server_that_was_not_connected_failed_without_delivery() -> None:
    assert classify_failure(ServerUnavailable("fx", "not connected", delivered=False)) is Failure.NOT_DELIVERED


def test_a_refusal_by_the_breaker_or_a_full_queue_was_never_delivered() -> None:
    refused = ServerRejected("fx", "busy")
    assert refused.delivered is False
    assert classify_failure(refused) is Failure.NOT_DELIVERED


def test_a_connection_lost_after_the_write_may_have_reached_the_server() -> None:
    lost = ConnectionLost("fx", "closed", delivered=True, generation=7)
    assert classify_failure(lost) is Failure.LOST
    assert classify_failure(ConnectionLost("fx", "closed", delivered=False, generation=7)) is Failure.NOT_DELIVERED


def test_a_timeout_may_have_reached_the_server() -> None:
    assert classify_failure(ServerTimeout("fx", "no answer within 1 s")) is Failure.LOST


def test_only_an_internal_error_answer_counts_as_a_server_failure() -> None:
    assert classify_failure(MCPError(INTERNAL_ERROR, "boom")) is Failure.SERVER_ERROR
    for code in (INVALID_PARAMS, METHOD_NOT_FOUND, -32001, 1234):
        assert classify_failure(MCPError(code, "an answer")) is None


@pytest.mark.parametrize(
    "exc",
    [
        RouteNotFound("tool", "fx__nope"),
        ServerProtocolError("fx", "speaks 2024-11-05"),
        ValueError("not a server failure"),
        MCPError(CONNECTION_CLOSED, "closed (raw SDK error, mapped elsewhere)"),
    ],
)
def test_anything_that_is_not_a_server_failure_is_passed_on_not_retried(exc: BaseException) -> None:
    assert classify_failure(exc) is None
