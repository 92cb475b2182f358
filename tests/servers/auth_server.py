"""A small OAuth 2.0 authorization server for tests: one token endpoint, client credentials only.

`serve_auth_server(clients)` serves `POST /token` (RFC 6749 section 4.4) on 127.0.0.1:<free port>
in the caller's event loop and yields an `AuthServer` that records every token it issued, so a
test can count them and look for them in the hub's output. Clients authenticate with HTTP Basic
or form fields (RFC 6749 section 2.3.1). A refused client gets 401 `invalid_client` with an
`error_description` that echoes the secret it presented, as a careless server might: the hub
must never show that text.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.signals import Changes
from tests.conftest import serve_app


@dataclass(frozen=True)
class Registration:
    """A client the server knows: its secret and the lifetime of the tokens it gets."""

    secret: str
    expires_in_seconds: int | None = 3600


@dataclass(frozen=True)
class IssuedToken:
    client_id: str
    access_token: str
    form: dict[str, str]
    """The token request's form fields, without `client_secret`."""


@dataclass
class AuthServer:
    clients: dict[str, Registration]
    """The registered clients; a test may remove one (revocation) and put it back."""
    token_url: str = ""
    issued: list[IssuedToken] = field(default_factory=list)
    refused: int = 0
    """Token requests answered with an error."""
    changes: Changes = field(default_factory=Changes)
    """Notified after every token request, issued or refused (a test waits on it for the hub's
    renewal instead of pacing calls)."""

    def tokens_for(self, client_id: str) -> list[str]:
        return [t.access_token for t in self.issued if t.client_id == client_id]

    def _client(self, request: Request, form: Mapping[str, str]) -> tuple[str, str]:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return unquote(client_id), unquote(secret)
        return form.get("client_id", ""), form.get("client_secret", "")

    async def token(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        client_id, secret = self._client(request, form)
        registration = self.clients.get(client_id)
        if registration is None or not secrets.compare_digest(registration.secret, secret):
            self.refused += 1
            self.changes.notify()
            body = {"error": "invalid_client", "error_description": f"client {client_id} sent the secret {secret}"}
            return JSONResponse(body, 401, headers={"WWW-Authenticate": 'Basic realm="token"'})
        if form.get("grant_type") != "client_credentials":
            self.refused += 1
            self.changes.notify()
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        access_token = f"at-{secrets.token_urlsafe(24)}"
        self.issued.append(
            IssuedToken(client_id, access_token, {k: v for k, v in form.items() if k != "client_secret"})
        )
        self.changes.notify()
        answer: dict[str, object] = {"access_token": access_token, "token_type": "bearer"}
        if registration.expires_in_seconds is not None:
            answer["expires_in"] = registration.expires_in_seconds
        if "scope" in form:
            answer["scope"] = form["scope"]
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})


@asynccontextmanager
async def serve_auth_server(clients: Mapping[str, Registration]) -> AsyncIterator[AuthServer]:
    """Serve the token endpoint on loopback until the block exits; `token_url` is set on entry."""
    server = AuthServer(dict(clients))
    async with serve_app(Starlette(routes=[Route("/token", server.token, methods=["POST"])])) as base_url:
        server.token_url = f"{base_url}/token"
        yield server
