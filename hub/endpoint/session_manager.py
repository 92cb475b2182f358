"""Streamable HTTP sessions that any replica can serve: one `SessionManager` per face.

It takes the place of the SDK's `StreamableHTTPSessionManager` on the hub's faces and reuses
its parts (the per-session `StreamableHTTPServerTransport`, the `JSONRPCDispatcher`, the
`Connection` and `serve_connection` driver; the modern-era single-exchange handler), changing
what the SDK cannot be told (MCP transport spec 2025-11-25, "Session Management"):

- **The id is the session.** An `initialize` POST without `Mcp-Session-Id` gets a sealed id
  (`hub.cluster.session_ids`) carrying the principal, the face, the negotiated version and the
  client's `initialize` params.
- **First sight rebuilds.** A request whose id this replica does not hold is served when the id
  opens under the replicas' key, names this face, is presented by the principal that opened it,
  has not outlived `session_max_lifetime_seconds` and was not DELETEd
  (`hub.cluster.session_state`): the session is rebuilt as initialized (the sealed params
  preset on its `Connection`, its `logging/setLevel` level restored) and the request served as
  if the handshake had happened here. Any other id gets the 404 an unknown session gets, the
  same for every reason (SECURITY.md case 7).
- **DELETE ends it everywhere** (a revocation in the shared store; the replicas holding a copy
  drop it). A copy idle for `session_idle_timeout_seconds` is freed; its id stays valid.
- **Answers go where they are awaited.** With Redis, a client's answer to a request another
  replica sent it mid-call is passed to that replica (`hub.cluster.answers`).

Modern-era requests (`MCP-Protocol-Version` not a handshake-era version) have no session and go
to the SDK's single-exchange handler, as in the SDK's manager. In both eras a plain request
(`tools/call`, `resources/read`, `prompts/get`, `completion/complete`) takes the lean path
instead (`hub.endpoint.fast_path`): served in the request's own task, answered with JSON unless
the call streams.

The sessions a face holds are kept in `hub.endpoint.held_sessions`; the requests this manager
reads before the SDK's transport answers them are handed on by `hub.endpoint.asgi_exchange`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final, Protocol

import anyio
import anyio.abc
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.runner import serve_connection
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, PARSE_ERROR, InitializeRequestParams
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from adapters._sdk import handle_modern_request
from hub.cluster.answers import Answers
from hub.cluster.session_ids import SessionClaims, SessionIds, SessionIdTooLarge, session_key
from hub.cluster.session_state import SessionState
from hub.endpoint.asgi_exchange import SESSION_HEADER, VERSION_HEADER, jsonrpc_error, post_answer, replay, served
from hub.endpoint.auth_middleware import principal_of
from hub.endpoint.fast_path import FastPath
from hub.endpoint.held_sessions import HeldSession, HeldSessions
from hub.signals import Changes

__all__ = ["DEFAULT_MAX_SESSIONS", "SessionHooks", "SessionManager", "principal_name"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS: Final = 10_000
"""Sessions one face holds at most on one replica (the SDK's default); past it an `initialize`
gets 503, and a session seen for the first time too."""

_INITIALIZE_ONLY: Final = frozenset({"initialize"})


def principal_name(scope: Scope) -> str:
    """Who a request comes from, as a session id binds it: `<auth source>:<principal id>`."""
    principal = principal_of(Request(scope))
    return f"{principal.source}:{principal.id}"


_NOT_FOUND = "Session not found"
_HEADERS: Final = frozenset({SESSION_HEADER, VERSION_HEADER})


class SessionHooks(Protocol):
    """What a replica's copy of a session takes from the others (`hub.cluster.session_copies`)."""

    async def rebuilt(self, connection: Connection, session_id: str) -> None:
        """The session was rebuilt here from its id (before its first request is served)."""
        ...

    def level_set(self, connection: Connection, level: str) -> None:
        """The session's client set its level through another replica."""
        ...

    async def subscription(self, connection: Connection, uri: str, present: bool) -> None:
        """The session's client subscribed to `uri` (`present`) or unsubscribed elsewhere."""
        ...


class SessionManager:
    """The Streamable HTTP sessions of one face (see the module docstring); an ASGI app.

    :param server: the face's MCP server.
    :param face: the face's name in session ids (`""` for `/mcp`, the server_id for
        `/servers/<id>/mcp`).
    :param ids: mints and opens session ids (the hub's `session-id` key).
    :param state: revocations and log levels (the shared store).
    :param idle_timeout_seconds: how long a copy may go with no request in flight before this
        replica frees it (`session_idle_timeout_seconds`).
    :param hooks: what a copy of a session takes from the other replicas (its level and
        subscriptions, `hub.cluster.session_copies`); None: nothing.
    :param answers: routes client answers to the replica that asked (`hub.cluster.answers`);
        None: answers stay where they land.
    :param changes: the signal `changes` notifies (shared by an endpoint's faces); default its own.
    """

    def __init__(
        self,
        server: Server[Any],
        *,
        face: str,
        ids: SessionIds,
        state: SessionState,
        idle_timeout_seconds: float | None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        hooks: SessionHooks | None = None,
        answers: Answers | None = None,
        changes: Changes | None = None,
    ) -> None:
        self.server = server
        self.face = face
        self._ids = ids
        self._state = state
        self._idle_timeout_seconds = idle_timeout_seconds
        self._max_sessions = max_sessions
        self._hooks = hooks
        self._answers = answers if answers is not None and answers.enabled else None
        self._held = HeldSessions(changes)
        self.changes = self._held.changes
        """Notified when a session starts or stops being held here, and at each `rebuilt` and
        `applied` (`changes.wait_for(...)` instead of polling `open_sessions`/`holds`)."""
        self._tg: anyio.abc.TaskGroup | None = None
        self._lifespan_state: Any = None
        self._fast = FastPath(server)
        self.rebuilt = 0
        """Sessions rebuilt here from their id (for tests and diagnostics)."""
        self.applied = 0
        """Levels and subscriptions set through other replicas applied to copies held here."""
        state.on_revoked(self._drop)
        state.on_level(self._level_set)
        state.on_subscription(self._subscription_changed)

    @property
    def open_sessions(self) -> int:
        """Handshake-era sessions this replica holds on this face now."""
        return len(self._held)

    def transports(self) -> list[StreamableHTTPServerTransport]:
        """The transports of the sessions held now (to end their GET streams on a drain)."""
        return self._held.transports()

    @property
    def fast_path(self) -> FastPath:
        """The lean path of this face's plain requests (`hub.endpoint.fast_path`)."""
        return self._fast

    def holds(self, session_id: str) -> bool:
        """Whether this replica holds the session of `session_id` now."""
        return session_id in self._held

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Serve while the block runs: the face server's lifespan is entered once, and every
        session held ends when the block exits."""
        async with self.server.lifespan(self.server) as lifespan_state, anyio.create_task_group() as tg:
            self._lifespan_state, self._tg = lifespan_state, tg
            self._fast.lifespan_state = lifespan_state
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
                self._tg = None
                self._held.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request of this face. The body cap (413) and the one-message rule are
        the request gate's (`hub.endpoint.http_guards.RequestGate`), in front of every path."""
        if self._tg is None:
            raise RuntimeError("SessionManager.run() is not running")
        headers = {name: value for name, value in scope["headers"] if name in _HEADERS}
        version = headers.get(VERSION_HEADER)
        if version is not None and version.decode("latin-1") not in HANDSHAKE_PROTOCOL_VERSIONS:
            if scope["method"] == "POST":  # a plain request takes the lean path (hub.endpoint.fast_path)
                request = Request(scope, receive)
                posted = await request.body()
                if await self._fast.serve_modern(posted, request, receive, send):
                    return
                receive = replay(posted, receive)
            await handle_modern_request(self.server, None, False, self._lifespan_state, scope, receive, send)
            return
        raw_id = headers.get(SESSION_HEADER)
        if raw_id is None:
            await self._open(scope, receive, send)
            return
        session_id = raw_id.decode("latin-1")
        claims = await self._claims(session_id, scope)
        if claims is None:
            await jsonrpc_error(_NOT_FOUND, 404)(scope, receive, send)
            return
        if scope["method"] == "DELETE":
            await self._state.revoke(session_id, claims)
            await Response(status_code=200, headers={MCP_SESSION_ID_HEADER: session_id})(scope, receive, send)
            return
        body: bytes | None = None
        if scope["method"] == "POST":
            request = Request(scope, receive)
            body = await request.body()
            if self._answers is not None:
                routed = self._answers.route(body)
                if routed.forward_to is not None:
                    # The client's answer to a request another replica sent: that replica waits.
                    await self._answers.forward(routed.forward_to, session_key(session_id), routed.body)
                    await Response(status_code=202, headers={MCP_SESSION_ID_HEADER: session_id})(scope, receive, send)
                    return
                body = routed.body
        held = await self._held_or_rebuilt(session_id, claims)
        if held is None:
            await self._at_capacity(scope, receive, send)
            return
        if body is not None:
            if await self._fast.serve_session(body, held.transport, held.connection, request, receive, send):
                return
            receive = replay(body, receive)
        await held.transport.handle_request(scope, receive, send)

    async def _held_or_rebuilt(self, session_id: str, claims: SessionClaims) -> HeldSession | None:
        """This replica's copy of the session, rebuilt once however many requests arrive for it
        together (they wait for its start; other sessions do not); None at `max_sessions`."""
        return await self._held.once(session_id, lambda: self._admit(session_id, claims, rebuild=True))

    async def _claims(self, session_id: str, scope: Scope) -> SessionClaims | None:
        """What `session_id` says when this request may use it, else None (404): it opens,
        names this face, comes from the principal that opened it, has not expired and was
        not DELETEd. A copy held here that has ended or expired is dropped on the way."""
        held = self._held.get(session_id)
        if held is not None and held.ending:
            self._held.forget(session_id, held.transport)  # its task is winding down: rebuild instead
            held = None
        claims = held.claims if held is not None else self._ids.open(session_id)
        if claims is None or claims.face != self.face:
            return None
        if claims.principal != principal_name(scope):
            logger.warning("refused session %s: presented by another principal", session_key(session_id))
            return None
        if held is not None and self._ids.expires_at(claims) <= time.time():
            self._drop(held.key)
            return None
        if await self._state.revoked(session_id):
            if held is not None:
                self._drop(held.key)
            return None
        return claims

    async def _at_capacity(self, scope: Scope, receive: Receive, send: Send) -> None:
        logger.warning("refused a session on face %r: %d sessions open", self.face, self._max_sessions)
        await jsonrpc_error("Too many open sessions", 503, INTERNAL_ERROR)(scope, receive, send)

    async def _admit(self, session_id: str, claims: SessionClaims, *, rebuild: bool) -> HeldSession | None:
        if len(self._held) >= self._max_sessions:
            return None
        transport = StreamableHTTPServerTransport(mcp_session_id=session_id, idle_timeout=self._idle_timeout_seconds)
        held = HeldSession(transport, claims, session_key(session_id))
        self._held.add(session_id, held)
        assert self._tg is not None
        try:
            await self._tg.start(self._run_session, held, rebuild)
        except BaseException:
            self._held.forget(session_id, transport)
            raise
        if rebuild:
            self.rebuilt += 1
            self.changes.notify()
            logger.info("session %s rebuilt on face %r", held.key, self.face)
        return held

    async def _run_session(self, held: HeldSession, rebuild: bool, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        transport = held.transport
        session_id = transport.mcp_session_id
        assert session_id is not None
        async with transport.connect() as (read_stream, write_stream), contextlib.AsyncExitStack() as closing:
            try:
                if self._answers is not None:
                    write_stream = self._answers.write_stream(write_stream)
                    deliver = functools.partial(post_answer, transport, held.claims.protocol_version)
                    closing.callback(self._answers.receive(held.key, deliver))
                dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
                    read_stream, write_stream, inline_methods=_INITIALIZE_ONLY
                )
                connection = held.connection = Connection.for_loop(dispatcher, session_id=session_id)
                if rebuild:
                    # The handshake happened on another replica (or before a restart): commit
                    # what it negotiated, as the SDK's runner does once `initialize` succeeds.
                    connection.client_params = held.claims.client_params()
                    connection.protocol_version = held.claims.protocol_version
                    connection.initialized.set()
                    if self._hooks is not None:
                        try:
                            await self._hooks.rebuilt(connection, session_id)
                        except Exception:  # served without what could not be restored, not refused
                            logger.exception("session %s: its level and subscriptions were not restored", held.key)
                task_status.started()
                idle_scope = transport.idle_scope if transport.idle_scope is not None else anyio.CancelScope()
                with idle_scope:
                    await serve_connection(
                        self.server, dispatcher, connection=connection, lifespan_state=self._lifespan_state
                    )
                if idle_scope.cancelled_caught:
                    logger.info("session %s idle: its copy on this replica is freed", held.key)
            except Exception:
                logger.exception("session %s crashed", held.key)
            finally:
                self._held.forget(session_id, transport)
                self._fast.end_session(transport)
                with anyio.CancelScope(shield=True):
                    await transport.terminate()

    def _level_set(self, key: str, level: str) -> None:
        connection = self._held.connection(key)
        if connection is not None and self._hooks is not None:
            self._hooks.level_set(connection, level)
            self.applied += 1
            self.changes.notify()

    def _subscription_changed(self, key: str, uri: str, present: bool) -> None:
        connection = self._held.connection(key)
        if connection is not None and self._hooks is not None and self._tg is not None:
            self._tg.start_soon(self._apply_subscription, self._hooks, connection, uri, present)

    async def _apply_subscription(self, hooks: SessionHooks, connection: Connection, uri: str, present: bool) -> None:
        await hooks.subscription(connection, uri, present)
        self.applied += 1
        self.changes.notify()

    def _drop(self, key: str) -> None:
        """Free this replica's copy of the session `key` names (revoked or expired): its
        requests and GET stream end, and the session task winds down."""
        held = self._held.pop_key(key)
        if held is not None and self._tg is not None:
            self._tg.start_soon(held.transport.terminate)

    async def _open(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request without a session id: only an `initialize` POST opens a session."""
        if scope["method"] != "POST":
            await jsonrpc_error("Bad Request: Missing session ID", 400)(scope, receive, send)
            return
        body = await Request(scope, receive).body()
        try:
            message = json.loads(body)
        except ValueError:
            await jsonrpc_error("Parse error", 400, PARSE_ERROR)(scope, receive, send)
            return
        if not isinstance(message, dict) or message.get("method") != "initialize" or "id" not in message:
            await jsonrpc_error("Bad Request: Missing session ID", 400)(scope, receive, send)
            return
        request_id = message["id"]
        try:
            params = InitializeRequestParams.model_validate(message.get("params") or {}, by_name=False)
            session_id, claims = self._ids.mint(principal_name(scope), self.face, params)
        except ValidationError:
            await jsonrpc_error("Invalid initialize params", 400, INVALID_PARAMS, request_id)(scope, receive, send)
            return
        except SessionIdTooLarge as exc:
            await jsonrpc_error(str(exc), 400, INVALID_PARAMS, request_id)(scope, receive, send)
            return
        # A new id: no other request can name it before this one is answered.
        held = await self._admit(session_id, claims, rebuild=False)
        if held is None:
            await self._at_capacity(scope, receive, send)
            return
        status: int | None = None
        try:
            status = await served(held.transport, scope, replay(body, receive), send)
        finally:
            if status is None or status >= 400:
                # Nothing was established (refused, failed or cancelled): the id was never handed out.
                self._held.forget(session_id, held.transport)
                with anyio.CancelScope(shield=True):
                    await held.transport.terminate()
