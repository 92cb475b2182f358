"""`mcphub explain`'s table: an explanation (`hub.explain.explain`, as `/me/explain` and
`/admin/explain` answer it) laid out for people, one row per thing that decides the call."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_explanation"]


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
