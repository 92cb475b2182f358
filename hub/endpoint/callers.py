"""Who a request on a face comes from, read from its `ServerRequestContext`: the principal,
the client (the key that per-client state is kept under), the handshake-era session id, and
the relay channel back to that client.

A client is its session in the handshake era (`session:<hex>`, `SessionRegistry.client_key`)
and its principal in the modern era (`principal:<id>`, which has no session): subscriptions,
found tools, per-client server connections and listen streams are all keyed so.
"""

from __future__ import annotations

from typing import Any

from mcp.server import ServerRequestContext
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request

from hub.endpoint.auth_middleware import principal_of
from hub.endpoint.server_requests import SessionChannel, principal_id
from hub.endpoint.session_registry import SessionRegistry
from hub.principals import Principal

__all__ = ["caller_principal", "client_channel", "client_key", "is_modern", "session_id"]


def is_modern(ctx: ServerRequestContext[Any]) -> bool:
    """Whether the request came in the modern era (2026-07-28: no session, per-request `_meta`)."""
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def caller_principal(ctx: ServerRequestContext[Any]) -> Principal:
    """The request's `Principal` (`hub.endpoint.authentication`; the local one over stdio)."""
    request = ctx.request
    return principal_of(request if isinstance(request, Request) else None)


def client_key(ctx: ServerRequestContext[Any]) -> str:
    """The key of the request's client: `principal:<id>` in the modern era, its session's
    `SessionRegistry.client_key` in the handshake era."""
    if is_modern(ctx):
        return f"principal:{principal_id(ctx)}"
    return SessionRegistry.client_key(ctx.session)


def session_id(ctx: ServerRequestContext[Any]) -> str | None:
    """The `Mcp-Session-Id` of a handshake-era request over HTTP (None over stdio)."""
    return ctx.request.headers.get(MCP_SESSION_ID_HEADER) if isinstance(ctx.request, Request) else None


def client_channel(ctx: ServerRequestContext[Any], registry: SessionRegistry) -> SessionChannel:
    """The relay channel to the request's client (`hub.endpoint.server_requests`): its session's
    `logging/setLevel` (from `registry`) filters the logs relayed to a handshake-era client (a
    modern-era client opts in per request with `_meta` logLevel, `hub.endpoint.server_requests`)."""
    return SessionChannel(ctx, client_key(ctx), None if is_modern(ctx) else registry.level(ctx.session))
