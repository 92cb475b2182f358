"""How `hub.servers.failures.classify` reads an exception raised while talking to a server: the
one place the server connection decides whether a server answered, its connection is gone, one
HTTP exchange failed, or a deadline ran out (pure function, plain asserts)."""

from __future__ import annotations

import anyio
import httpx2
import pytest
from mcp import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, METHOD_NOT_FOUND, REQUEST_TIMEOUT

from hub.errors import ServerProtocolError, ServerTimeout, ServerUnavailable
from hub.servers.failures import SERVER_EXCHANGE_ERRORS, Breakage, classify
from hub.servers.state import ConnectionLost


@pytest.mark.parametrize("code", [INTERNAL_ERROR, METHOD_NOT_FOUND, REQUEST_TIMEOUT, -32602])
def test_a_servers_own_error_response_is_an_answer(code: int) -> None:
    assert classify(MCPError(code, "no")) is Breakage.ANSWERED


def test_the_sdk_finding_the_connection_closed_means_it_is_gone() -> None:
    assert classify(MCPError(CONNECTION_CLOSED, "Connection closed")) is Breakage.CLOSED


@pytest.mark.parametrize(
    "message",
    [
        "SSE stream ended without a response",
        "SSE stream failed: peer closed connection",
        "SSE stream ended and reconnection attempts were exhausted",
    ],
)
def test_the_sdk_abandoning_one_requests_sse_answer_is_one_failed_exchange(message: str) -> None:
    assert classify(MCPError(CONNECTION_CLOSED, message)) is Breakage.REQUEST_FAILED


def test_a_servers_own_minus_32000_answer_is_an_answer_not_the_connection_closing() -> None:
    # -32000 is also JSON-RPC's first implementation-defined server error: servers use it freely.
    assert classify(MCPError(CONNECTION_CLOSED, "busy, try later")) is Breakage.ANSWERED


def test_the_pools_stand_in_for_a_broken_exchange_is_one_failed_exchange() -> None:
    stand_in = MCPError(INTERNAL_ERROR, "broke", {"reason": "exchange_failed", "error": "ReadError"})
    assert classify(stand_in) is Breakage.REQUEST_FAILED


@pytest.mark.parametrize("exc", [anyio.BrokenResourceError(), anyio.ClosedResourceError()])
def test_broken_or_closed_transport_streams_mean_the_connection_broke(exc: Exception) -> None:
    assert classify(exc) is Breakage.BROKEN


def test_an_http_timeout_is_a_failed_exchange_not_a_hub_deadline() -> None:
    # httpx2's timeouts are transport errors: one HTTP exchange failed, the session may live on.
    assert classify(httpx2.ReadTimeout("read timed out")) is Breakage.REQUEST_FAILED
    assert classify(httpx2.ConnectError("refused")) is Breakage.REQUEST_FAILED


def test_a_hub_deadline_is_a_timeout() -> None:
    assert classify(TimeoutError()) is Breakage.TIMED_OUT
    assert classify(ServerTimeout("s", "no answer")) is Breakage.TIMED_OUT


def test_a_connection_the_hub_already_found_unavailable_stays_unavailable() -> None:
    assert classify(ServerUnavailable("s", "not connected", delivered=False)) is Breakage.UNAVAILABLE
    assert classify(ConnectionLost("s", "closed", delivered=True, generation=3)) is Breakage.UNAVAILABLE


def test_a_server_breaking_mcp_is_a_protocol_failure_and_anything_else_is_not_classified() -> None:
    assert classify(ServerProtocolError("s", "pagination repeats")) is Breakage.PROTOCOL
    assert classify(ValueError("a bug")) is None


def test_every_exchange_error_the_connection_catches_is_classified() -> None:
    samples = [MCPError(INTERNAL_ERROR, "x"), anyio.BrokenResourceError(), httpx2.ReadError("x")]
    assert all(isinstance(sample, SERVER_EXCHANGE_ERRORS) for sample in samples)
    assert all(classify(sample) is not None for sample in samples)
