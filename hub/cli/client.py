"""How `mcphub` talks to a running hub's HTTP API (`/me...`, `/admin/...`): bearer auth, and
every refusal (401, 403, 404, 429 with `Retry-After`) phrased as one line for the user."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx2

from adapters.tls import client_tls_context
from hub.cli.runner import fail, rate_limited

__all__ = [
    "ADMIN_TIMEOUT_SECONDS",
    "RateLimitWatch",
    "admin_get",
    "admin_request",
    "auth_headers",
    "refusal",
    "retry_after_seconds",
]

ADMIN_TIMEOUT_SECONDS = 10.0
"""How long a read of the admin API may take, in seconds."""


def auth_headers(token: str | None) -> dict[str, str]:
    """`Authorization: Bearer <token>` when a token is given (RFC 6750 2.1), else none."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def retry_after_seconds(response: httpx2.Response) -> float | None:
    """The `Retry-After` of an answer in seconds (delay-seconds or HTTP-date, RFC 9110 10.2.3)."""
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class RateLimitWatch:
    """An httpx2 response hook that remembers the hub's HTTP 429 (per-principal rate limit).

    The SDK's Streamable HTTP client turns a 429 whose body is not a JSON-RPC error into a
    generic -32603 "Server returned an error response", so `call` asks this watch what happened.
    """

    def __init__(self) -> None:
        self.limited = False
        self.retry_after_seconds: float | None = None

    async def __call__(self, response: httpx2.Response) -> None:
        if response.status_code == 429:
            self.limited = True
            self.retry_after_seconds = retry_after_seconds(response)


def refusal(response: httpx2.Response, path: str) -> str:
    """One line for a non-200 answer of the hub, with its OAuth error when it gave one."""
    if response.status_code == 429:
        return rate_limited(retry_after_seconds(response))
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
    hint = ""
    if response.status_code == 401:
        hint = " (pass a token with --token or MCPHUB_TOKEN)"
    return f"the hub answered HTTP {response.status_code} for {path}" + (f": {detail}" if detail else "") + hint


async def admin_request(
    method: str,
    url: str,
    path: str,
    token: str | None,
    *,
    params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    timeout_seconds: float = ADMIN_TIMEOUT_SECONDS,
    accept: tuple[int, ...] = (200,),
    refused: tuple[int, ...] = (),
) -> tuple[int, Any]:
    """`method url + path` (query `params`, JSON `body`): its status and JSON body when the
    status is in `accept`.

    :raises CliError: a status in `refused` (the hub's own `error` as the message), or any
        other status not in `accept` (`refusal`: 401, 403, 429 with `Retry-After`, ...).
    :raises httpx2.HTTPError: the hub could not be reached (within `timeout_seconds`).
    """
    async with httpx2.AsyncClient(
        verify=client_tls_context(), timeout=timeout_seconds, headers=auth_headers(token)
    ) as client:
        response = await client.request(method, url.rstrip("/") + path, params=params, json=body)
    label = path if method == "GET" else f"{method} {path}"
    if response.status_code in refused:
        fail(str(response.json().get("error", refusal(response, label))))
    if response.status_code not in accept:
        fail(refusal(response, label))
    return response.status_code, response.json()


async def admin_get(url: str, path: str, token: str | None) -> Any:
    """`GET url + path` and its JSON body (`admin_request`, 200 only)."""
    _, data = await admin_request("GET", url, path, token)
    return data
