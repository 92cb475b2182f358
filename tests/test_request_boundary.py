"""The one error boundary of the endpoint (`hub.endpoint.request_boundary`), pure tier (no I/O): every
`HubError` the hub defines maps to its JSON-RPC code and its outcome label, and the boundary
middleware answers and counts each kind of failure of a handler that way."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, cast

import anyio
import mcp_types as types
import pydantic
import pytest
from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.server.session import ServerSession
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, REQUEST_TIMEOUT

import hub
from hub.admission import ServerRejected
from hub.catalog import Catalog
from hub.cluster.session_ids import SessionIdTooLarge
from hub.cluster.store import SharedStateUnavailable
from hub.config import parse_config
from hub.endpoint.faces import AggregateFace
from hub.endpoint.request_boundary import RequestBoundary, answer_of
from hub.endpoint.session_registry import SessionRegistry
from hub.errors import (
    RATE_LIMITED,
    AuthError,
    ConfigError,
    HubError,
    RateLimited,
    RouteNotFound,
    ServerError,
    ServerProtocolError,
    ServerTimeout,
    ServerUnavailable,
)
from hub.federation import CHAIN_META_KEY, FEDERATION_LOOP, Federation, FederationLoop, LoopingServer
from hub.launch import CannotLaunch
from hub.metrics import NO_SERVER, UNKNOWN_ROUTE, HubMetrics
from hub.pages import InvalidCursor
from hub.pin_status import DEFINITION_HELD, DefinitionHeld, PinStatus
from hub.pins import PinError
from hub.push_era import PushNeedsHandshakeEra
from hub.result_cap import ResultTooLarge
from hub.servers import ConnectionLost

pytestmark = pytest.mark.anyio

HUB_ID = "hub-under-test"
MODERN = "2026-07-28"

_HELD = DefinitionHeld(
    "fx",
    "tools",
    "fx__echo",
    "echo",
    PinStatus(state="held", mode="approve", current="sha256:new", pinned="sha256:old"),
)

# (the error, its JSON-RPC code, its outcome label, the `data` it carries)
CASES: list[tuple[HubError, int, str, Any]] = [
    # hub/errors.py
    (ConfigError("bad value", file="hub.yaml", key_path="servers.fx"), INTERNAL_ERROR, "internal_error", None),
    (ServerError("fx", "it broke"), INTERNAL_ERROR, "internal_error", {"server_id": "fx"}),
    (ServerUnavailable("fx", "not connected", delivered=False), CONNECTION_CLOSED, "unavailable", {"server_id": "fx"}),
    (ServerTimeout("fx", "no answer within 30 s"), REQUEST_TIMEOUT, "timeout", {"server_id": "fx"}),
    (ServerProtocolError("fx", "not JSON-RPC"), INTERNAL_ERROR, "internal_error", {"server_id": "fx"}),
    (
        RouteNotFound("tool", "fx__ecko", ["fx__echo"]),
        INVALID_PARAMS,
        "not_found",
        {"kind": "tool", "name": "fx__ecko", "suggestions": ["fx__echo"]},
    ),
    (AuthError(401, None, "no credentials"), INTERNAL_ERROR, "internal_error", None),
    (RateLimited("fx__echo", 1.23456), RATE_LIMITED, "rate_limited", {"retry_after_seconds": 1.235}),
    # the HubErrors of other modules
    (InvalidCursor("tools"), INVALID_PARAMS, "invalid", {"reason": "invalid_cursor"}),
    (_HELD, DEFINITION_HELD, "held", _HELD.data()),
    (PinError("fx is locked"), INTERNAL_ERROR, "internal_error", None),
    (
        FederationLoop("loop", HUB_ID, ("other", HUB_ID), 4),
        FEDERATION_LOOP,
        "internal_error",
        {"reason": "federation_loop", "hub_id": HUB_ID, "chain": ["other", HUB_ID], "max_federation_depth": 4},
    ),
    (LoopingServer("fx", "it federates this hub"), INTERNAL_ERROR, "internal_error", {"server_id": "fx"}),
    (ServerRejected("fx", "circuit open"), CONNECTION_CLOSED, "unavailable", {"server_id": "fx"}),
    (
        ConnectionLost("fx", "closed during tools/call", delivered=True, generation=3),
        CONNECTION_CLOSED,
        "unavailable",
        {"server_id": "fx"},
    ),
    (CannotLaunch("fx", "command not found: nope"), CONNECTION_CLOSED, "unavailable", {"server_id": "fx"}),
    (ResultTooLarge("fx", 1024), INTERNAL_ERROR, "internal_error", {"server_id": "fx"}),
    (
        PushNeedsHandshakeEra("fx", "sampling/createMessage", "tools/call"),
        INTERNAL_ERROR,
        "internal_error",
        {"server_id": "fx"},
    ),
    (SharedStateUnavailable("redis down"), INTERNAL_ERROR, "internal_error", None),
    (SessionIdTooLarge("initialize params too large"), INTERNAL_ERROR, "internal_error", None),
]


def _every_hub_error_class() -> set[type[HubError]]:
    for module in pkgutil.walk_packages(hub.__path__, "hub."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: set[type[HubError]] = set()
    todo: list[type[HubError]] = [HubError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def test_the_table_names_every_hub_error_the_hub_defines() -> None:
    assert _every_hub_error_class() == {type(exc) for exc, *_ in CASES}


@pytest.mark.parametrize(("exc", "code", "outcome", "data"), CASES, ids=lambda v: type(v).__name__)
def test_each_hub_error_maps_to_its_json_rpc_code_data_and_outcome(
    exc: HubError, code: int, outcome: str, data: Any
) -> None:
    answer = answer_of(exc)

    assert answer.error.code == code
    assert answer.outcome == outcome
    assert answer.error.error.data == data
    assert answer.error.message == str(exc)


def test_a_malformed_hub_chain_is_an_invalid_request() -> None:
    answer = answer_of(FederationLoop("malformed", HUB_ID, (), 4))

    assert answer.error.code == INVALID_REQUEST
    assert answer.error.error.data["reason"] == "federation_malformed"


# ---------------------------------------------------------------- the middleware


def _boundary() -> tuple[RequestBoundary, HubMetrics]:
    metrics = HubMetrics()
    face = AggregateFace(Catalog(parse_config({}, file="<test>")))
    return RequestBoundary(face, SessionRegistry(), Federation(HUB_ID), metrics=metrics), metrics


def _modern_call(name: str = "fx__echo", meta: dict[str, Any] | None = None) -> ServerRequestContext[Any]:
    # A modern-era request has no session for the boundary to record; it never touches `session`.
    return ServerRequestContext(
        session=cast(ServerSession, None),
        lifespan_context={},
        protocol_version=MODERN,
        method="tools/call",
        params={"name": name, "arguments": {}},
        request_id=1,
        meta=cast(types.RequestParamsMeta, meta),
    )


def _raising(exc: BaseException) -> Callable[[ServerRequestContext[Any, Any]], Any]:
    async def handler(ctx: ServerRequestContext[Any, Any]) -> Any:
        raise exc

    return handler


def _labels() -> dict[str, str]:
    """The metric labels of `_modern_call()`'s request (a name no server owns)."""
    return {"method": "tools/call", "route": UNKNOWN_ROUTE, "server_id": NO_SERVER}


def _counted(metrics: HubMetrics, outcome: str) -> float:
    return metrics.registry.get_sample_value("mcphub_calls_total", {**_labels(), "outcome": outcome}) or 0.0


def _validation_error() -> pydantic.ValidationError:
    try:
        types.CallToolRequestParams.model_validate({"arguments": {}})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("a tools/call without a name validated")


@pytest.mark.parametrize(
    ("exc", "code", "outcome", "data"),
    [case for case in CASES if not isinstance(case[0], FederationLoop)],
    ids=lambda v: type(v).__name__,
)
async def test_a_hub_error_raised_by_a_handler_leaves_the_boundary_as_its_json_rpc_error_and_is_counted(
    exc: HubError, code: int, outcome: str, data: Any
) -> None:
    boundary, metrics = _boundary()

    with anyio.fail_after(5), pytest.raises(MCPError) as raised:
        await boundary(_modern_call(), _raising(exc))

    assert raised.value.code == code
    assert raised.value.error.data == data
    assert _counted(metrics, outcome) == 1


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (MCPError(-32042, "the server's own error", {"x": 1}), "server_error"),
        (MCPError(INVALID_PARAMS, "bad"), "invalid"),
    ],
)
async def test_a_servers_own_json_rpc_error_passes_the_boundary_with_its_code(error: MCPError, outcome: str) -> None:
    boundary, metrics = _boundary()

    with anyio.fail_after(5), pytest.raises(MCPError) as raised:
        await boundary(_modern_call(), _raising(error))

    assert raised.value.code == error.code
    assert raised.value.error.data == error.error.data
    assert _counted(metrics, outcome) == 1


async def test_invalid_params_are_left_to_the_sdk_and_counted_as_invalid() -> None:
    boundary, metrics = _boundary()

    with anyio.fail_after(5), pytest.raises(pydantic.ValidationError):
        await boundary(_modern_call(), _raising(_validation_error()))

    assert _counted(metrics, "invalid") == 1


async def test_an_unexpected_exception_is_an_internal_error_whose_details_stay_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    boundary, metrics = _boundary()

    with anyio.fail_after(5), pytest.raises(MCPError) as raised:
        await boundary(_modern_call(), _raising(RuntimeError("secret detail of a bug")))

    assert raised.value.code == INTERNAL_ERROR
    assert "secret detail" not in raised.value.message
    assert _counted(metrics, "internal_error") == 1
    assert any(record.exc_info and "secret detail of a bug" in str(record.exc_info[1]) for record in caplog.records)


async def test_a_result_with_is_error_counts_as_a_tool_error_and_a_result_as_ok() -> None:
    boundary, metrics = _boundary()

    async def failing(ctx: ServerRequestContext[Any, Any]) -> Any:
        return types.CallToolResult(content=[], is_error=True)

    async def succeeding(ctx: ServerRequestContext[Any, Any]) -> Any:
        return types.CallToolResult(content=[])

    with anyio.fail_after(5):
        await boundary(_modern_call(), failing)
        await boundary(_modern_call(), succeeding)

    assert _counted(metrics, "tool_error") == 1
    assert _counted(metrics, "ok") == 1


async def test_a_wire_dict_result_with_is_error_counts_as_a_tool_error() -> None:
    boundary, metrics = _boundary()

    async def failing(ctx: ServerRequestContext[Any, Any]) -> Any:
        return {"content": [], "isError": True}  # what the SDK's chain returns: the shaped wire dict

    async def succeeding(ctx: ServerRequestContext[Any, Any]) -> Any:
        return {"content": [], "isError": False}

    with anyio.fail_after(5):
        await boundary(_modern_call(), failing)
        await boundary(_modern_call(), succeeding)

    assert _counted(metrics, "tool_error") == 1
    assert _counted(metrics, "ok") == 1


async def test_a_request_that_already_passed_through_this_hub_is_refused_before_it_is_served() -> None:
    boundary, metrics = _boundary()
    served = False

    async def handler(ctx: ServerRequestContext[Any, Any]) -> Any:
        nonlocal served
        served = True
        return types.CallToolResult(content=[])

    with anyio.fail_after(5), pytest.raises(MCPError) as raised:
        await boundary(_modern_call(meta={CHAIN_META_KEY: ["other", HUB_ID]}), handler)

    assert raised.value.code == FEDERATION_LOOP
    assert raised.value.error.data["reason"] == "federation_loop"
    assert not served
    assert _counted(metrics, "internal_error") == 0
