"""The admin API of tool-definition pins (`hub.pins`), under `/admin` (so `hub:admin` only):

- `GET /admin/pins`: `{"pins": [row, ...]}`, every definition of the configured servers with
  pinning on, listed now or pinned before;
- `GET /admin/pins/diff?name=NAME`: what differs between the pin (or lockfile entry) of `NAME`
  and what its server lists now (the row plus `description`, a unified diff, and `changes`);
- `POST /admin/pins/approve`: body `{"target": NAME or SERVER_ID}` (or `{"name": ...}`,
  `{"server": ...}`) or `{"all": true}` pins what is pending, answering
  `{"approved": [row, ...], "skipped": [{server_id, reason}, ...]}`.

A row: `exposed` (the name or URI clients use), `server_id`, `kind` (`tools`, `prompts`,
`resource_templates`), `original`, `listed` (in the catalog now), `status` (`pinned`, `changed`,
`new`, `held`), `reason`, `mode`, `pinned` and `current` fingerprints, `first_seen`,
`last_changed` and `pending_since` (ISO 8601, UTC). Errors: 404 for an unknown name or server,
409 for a name that is also a server id (say which with `name` or `server`) or for a `locked`
server (its lockfile decides), 400 for a bad body.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from hub.catalog import Catalog
from hub.naming import SEPARATOR, exposed_resource_uri
from hub.pin_fingerprints import fingerprint
from hub.pindiff import definition_diff
from hub.pins import PinError

__all__ = ["approve", "pin_diff", "pin_rows", "trust_routes"]


def _exposed(catalog: Catalog, server_id: str, kind: str, original: str) -> str:
    route = catalog.route_of(kind, server_id, original)
    if route is not None:
        return route.exposed
    if kind == "resource_templates":
        return exposed_resource_uri(server_id, original)
    prefix = catalog.server_config(server_id).exposed_prefix(server_id)
    return f"{prefix}{SEPARATOR}{original}" if prefix else original


def pin_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """One row per definition of every configured server whose pinning is on (see the module
    docstring), servers in id order, then kind and original name."""
    rows: list[dict[str, Any]] = []
    pins = catalog.pins
    if pins is None:
        return rows
    for server_id in sorted(catalog.server_ids()):
        mode = catalog.pinning_mode(server_id)
        if mode == "off":
            continue
        current = catalog.definitions(server_id)
        names = set(current) | (set(pins.pinned_names(server_id)) if mode != "locked" else set())
        for kind, original in sorted(names):
            route = catalog.route_of(kind, server_id, original)
            status = catalog.pin_status(kind, server_id, original)
            row: dict[str, Any] = {
                "exposed": _exposed(catalog, server_id, kind, original),
                "server_id": server_id,
                "kind": kind,
                "original": original,
                "listed": route is not None and route.listed,
            }
            if status is not None:
                row.update(status.as_json())
            else:  # pinned, but the server does not list it (now)
                record = pins.pin_record(server_id, kind, original) or {}
                row.update(
                    status="pinned",
                    reason=None,
                    mode=mode,
                    pinned=record.get("fingerprint"),
                    current=None,
                    first_seen=record.get("first_seen"),
                    last_changed=record.get("last_changed"),
                    pending_since=None,
                )
            rows.append(row)
    return rows


def pin_diff(catalog: Catalog, server_id: str, kind: str, original: str) -> dict[str, Any]:
    """What differs between a definition's pin (or lockfile entry) and what its server lists now:
    `{"description": <unified diff>, "changes": [{path, change, old?, new?}, ...]}` (both empty
    when they match, or when the server does not list it). Per route, for `mcphub pins diff`
    and route inspection."""
    current = catalog.definitions(server_id).get((kind, original))
    if catalog.pins is None or current is None:
        return {"description": "", "changes": []}
    pinned = catalog.pins.pinned_definition(server_id, catalog.pinning_mode(server_id), kind, original)
    if pinned is not None and fingerprint(pinned) == current[0]:
        return {"description": "", "changes": []}
    return definition_diff(pinned, current[1])


async def approve(catalog: Catalog, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Approve what `body` names (see the module docstring); `(HTTP status, JSON body)`. The
    catalog is rebuilt (clients get `list_changed`) and the pins are stored."""
    pins = catalog.pins
    if pins is None:
        return 409, {"error": "pinning is not available on this hub"}
    rows = pin_rows(catalog)
    selected: list[dict[str, Any]]
    if body.get("all") is True:
        selected = rows
    else:
        target = body.get("target")
        by_name = body.get("name", target)
        by_server = body.get("server", target)
        named = [r for r in rows if r["exposed"] == by_name] if isinstance(by_name, str) else []
        server = isinstance(by_server, str) and by_server in catalog.server_ids()
        if named and server and "name" not in body and "server" not in body:
            return 409, {"error": f"'{target}' is both a route and a server; send {{'name': ...}} or {{'server': ...}}"}
        if named:
            selected = named
        elif server:
            selected = [r for r in rows if r["server_id"] == by_server]
            if not selected and catalog.pinning_mode(str(by_server)) == "off":
                return 409, {"error": f"server '{by_server}' has pinning off: there is nothing to approve"}
        else:
            return 404, {"error": f"no pinned route or server named {by_name or by_server!r}"}
    approved: list[tuple[str, str, str]] = []
    skipped: list[dict[str, str]] = []
    by_server_rows: dict[str, list[tuple[str, str]]] = {}
    for row in selected:
        by_server_rows.setdefault(row["server_id"], []).append((row["kind"], row["original"]))
    for server_id, names in sorted(by_server_rows.items()):
        try:
            done = pins.approve(server_id, catalog.pinning_mode(server_id), names)
        except PinError as exc:
            if body.get("all") is True:
                skipped.append({"server_id": server_id, "reason": str(exc)})
                continue
            return 409, {"error": str(exc)}
        approved.extend((server_id, kind, original) for kind, original in done)
    if approved:
        await catalog.refresh()
    after = {(r["server_id"], r["kind"], r["original"]): r for r in pin_rows(catalog)}
    return 200, {"approved": [after[key] for key in approved if key in after], "skipped": skipped}


def trust_routes(catalog: Catalog) -> list[HttpRoute]:
    """The `/admin/pins*` routes, for the endpoint's Starlette app."""

    async def list_pins(request: Request) -> Response:
        return JSONResponse({"pins": pin_rows(catalog)})

    async def diff(request: Request) -> Response:
        name = request.query_params.get("name", "")
        rows = [r for r in pin_rows(catalog) if r["exposed"] == name]
        if not rows:
            return JSONResponse({"error": f"no pinned route named {name!r}"}, status_code=404)
        row = rows[0]
        return JSONResponse({**row, **pin_diff(catalog, row["server_id"], row["kind"], row["original"])})

    async def approve_pins(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not ({"all", "target", "name", "server"} & body.keys()):
            return JSONResponse({"error": "send {'target': NAME or SERVER_ID} or {'all': true}"}, status_code=400)
        status, answer = await approve(catalog, body)
        return JSONResponse(answer, status_code=status)

    return [
        HttpRoute("/admin/pins", endpoint=list_pins, methods=["GET"]),
        HttpRoute("/admin/pins/diff", endpoint=diff, methods=["GET"]),
        HttpRoute("/admin/pins/approve", endpoint=approve_pins, methods=["POST"]),
    ]
