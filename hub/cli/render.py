"""What `mcphub` prints for people: tables whose names are never cut (servers, routes, search
results) and `mcphub explain`'s table (an explanation, `hub.explain.explain`, as `/me/explain`
and `/admin/explain` answer it, one row per thing that decides the call). `--json` bypasses it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Final

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hub.cli.runner import out
from hub.logs import counted

__all__ = ["Cell", "print_explanation", "print_routes", "print_servers", "print_table"]


def _bucket(limit: dict[str, Any] | None) -> str:
    if limit is None:
        return "none"
    return f"{limit['requests_per_second']:g}/s, burst {limit['burst']}"


def _policy(policy: dict[str, Any] | None) -> str:
    if policy is None:
        return "not evaluated (no principal given)"
    verdict = "allowed" if policy["allowed"] else "DENIED"
    if policy["rule_index"] is None:
        return f"{verdict}: {policy['reason']}"
    return f"{verdict} by policies[{policy['rule_index']}] {policy['rule']}: {policy['reason']}"


def _servers(servers: dict[str, Any]) -> str:
    states = ", ".join(f"{sid} {state}" for sid, state in servers["states"].items()) or "-"
    chain = " -> ".join(servers["chain"])
    return f"chain {chain}; serving now: {servers['serving'] or 'none'} ({states})"


def _settings(settings: dict[str, Any] | None) -> str:
    if settings is None:
        return "-"
    retry, breaker = settings["retry"], settings["breaker"]
    return (
        f"timeout {settings['timeout_seconds']:g} s (hard maximum {settings['max_timeout_seconds']:g} s); "
        f"{'idempotent' if settings['idempotent'] else 'not idempotent (never re-sent once delivered)'}; "
        f"retry {retry['attempts']} rounds; breaker opens after {breaker['failures']} failures "
        f"for {breaker['cooldown_seconds']:g} s; results up to {settings['max_result_bytes']} bytes; "
        f"{settings['max_concurrency']} in flight, {settings['max_queue']} queued"
    )


def _pin(pin: dict[str, Any] | None) -> str:
    if not pin:
        return "-"
    parts = [str(pin.get("status", "?"))]
    for key in ("fingerprint", "first_seen", "last_changed"):
        if pin.get(key):
            parts.append(f"{key.replace('_', ' ')} {pin[key]}")
    if pin.get("pending"):
        parts.append("a changed definition awaits approval (`mcphub pins diff`)")
    return "; ".join(parts)


def print_explanation(data: dict[str, Any], console: Console) -> None:
    """Print one explanation: the deciding facts as a two-column table, then the verdict."""
    verdict = data["verdict"]
    if not data["found"]:
        console.print(f"no route named {data['name']!r}", markup=False)
        if data.get("suggestions"):
            console.print(f"did you mean: {', '.join(data['suggestions'])}?", markup=False)
        return
    route = data["route"]
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("route", f"{route['exposed']} ({route['kind']}) -> server {route['server_id']}, {route['original']}")
    table.add_row("name", data["naming"])
    principal = data.get("principal")
    if principal is not None:
        scopes = " ".join(principal["scopes"]) or "-"
        table.add_row("principal", f"{principal['principal']} ({principal['source']}), scopes: {scopes}")
    table.add_row("policy", _policy(data["policy"]))
    table.add_row("servers", _servers(data["servers"]))
    limits = data["rate_limits"]
    route_limit = limits["route"]
    route_text = "none" if route_limit is None else f"{route_limit['glob']}: {_bucket(route_limit)}"
    table.add_row("rate limits", f"per principal {_bucket(limits['per_principal'])}; per route {route_text}")
    table.add_row("settings", _settings(data["settings"]))
    table.add_row("pin", _pin(data["pin"]))
    console.print(table)
    word = "callable" if verdict["callable"] else "NOT callable"
    console.print(f"verdict: {word}: " + "; ".join(verdict["reasons"]), markup=False)


_SQUEEZED_COLUMN_CELLS: Final = 6
"""The least width (content and padding) a table leaves each wrapping column."""

Cell = str | Text
"""A table cell: plain text (never markup), or a styled `Text`."""


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], whole: Collection[int]) -> None:
    """Print a table for people. The columns at the indexes in `whole` (the names people copy:
    exposed names, server ids) are never wrapped or cut; the others wrap, folding long words,
    the widest first, to make room. When even that does not fit the console, the table is
    printed wider than the console (the terminal wraps its lines) rather than cut a name.
    A `str` cell is plain text (never markup); a `Text` cell keeps its style."""
    table = Table()
    for index, header in enumerate(headers):
        if index in whole:
            table.add_column(header, no_wrap=True, overflow="ignore")
        else:
            table.add_column(header, overflow="fold")
    cells = [[Text(cell) if isinstance(cell, str) else cell for cell in row] for row in rows]
    for row in cells:
        table.add_row(*row)
    needed = len(headers) + 1  # borders
    for index, header in enumerate(headers):
        if index in whole:
            needed += max([cell_len(header)] + [row[index].cell_len for row in cells]) + 2
        else:
            needed += _SQUEEZED_COLUMN_CELLS
    if needed > out.width:
        table.width = needed
    out.print(table, crop=False)


_STATE_COLOURS: Final = {
    "ready": "green",
    "degraded": "yellow",
    "open": "red",
    "failed": "red",
    "restarting": "yellow",
    "starting": "yellow",
}


def print_servers(servers: list[dict[str, Any]]) -> None:
    """The servers table: one row per server connection (`ServerStatus.as_json()` shapes)."""
    headers = ("server", "state", "transport", "protocol", "tools", "resources", "prompts", "restarts")
    rows: list[list[Cell]] = []
    for s in servers:
        name = Text(s["server_id"])
        if s.get("replica_of"):
            name.append(f" (replica of {s['replica_of']})", style="dim")
        failures = s.get("consecutive_failures", 0)
        rows.append(
            [
                name,
                Text(s["state"], style=_STATE_COLOURS.get(s["state"], "dim")),
                s["transport"],
                s["protocol_version"] or "-",
                str(s["tools"]),
                str(s["resources"] + s["resource_templates"]),
                str(s["prompts"]),
                str(s["restarts"]),
                s.get("breaker", "closed") + (f" ({counted(failures, 'failure')})" if failures else ""),
                s["last_error"] or "",
            ]
        )
    print_table((*headers, "breaker", "last error"), rows, whole=(0,))


def print_routes(routes: list[dict[str, Any]]) -> None:
    """The routes table: one row per route (`/me/routes` shapes), exposed names never cut."""
    headers = ("exposed name", "kind", "server", "original", "server state", "fallback chain", "serving now", "note")
    rows: list[list[Cell]] = [
        [
            r["exposed"],
            r["kind"],
            r["server_id"],
            r["original"],
            r["server_state"],
            " -> ".join(r.get("chain") or [r["server_id"]]),
            r.get("serving") or "-",
            "; ".join(r.get("notes") or ([r["note"]] if r["note"] else [])),
        ]
        for r in routes
    ]
    print_table(headers, rows, whole=(0,))
