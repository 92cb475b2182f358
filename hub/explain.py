"""Route inspection: everything that decides what happens to a call of one exposed name, for one
principal (`mcphub explain NAME`, `POST /admin/explain`).

One answer to "why can't this principal call that tool?": the route (exposed name, server,
original name and why it got that name), the servers that would serve it (fallback chain and the
member serving now, with their states), the policy decision for the principal (the deciding
rule's index in `policies:` and its text), the rate limits that apply, the server's timeout,
retry and idempotency settings, the definition's pin status, and a verdict with its reasons.

Pure: it reads the catalog, the policy, the config and what the router and the pin store say,
and changes nothing (no bucket is charged, no server is contacted).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

from hub.catalog import Catalog, Kind, Route
from hub.config import HubConfig, PolicyRule, TokenBucketConfig
from hub.policy import Policy
from hub.principals import Principal
from hub.suggestions import close_names

__all__ = ["explain", "principal_for"]

PlanFn = Callable[[str, Kind, str], dict[str, Any]]
"""`(server_id, kind, original) -> {"chain", "members", "serving"}` (`Router.plan`)."""
StatesFn = Callable[[str], dict[str, str]]
"""`server_id -> {member id: state}` for the members of a logical server."""
DiffFn = Callable[[Route], dict[str, Any]]
"""What differs between a route's pinned and current definition (`hub.endpoint.pins_admin.pin_diff`)."""


def _rule_text(rule: PolicyRule) -> dict[str, Any]:
    """A policy rule as written in the config (only the keys that were set)."""
    return rule.model_dump(mode="json", exclude_defaults=True)


def _bucket(config: TokenBucketConfig | None) -> dict[str, Any] | None:
    if config is None:
        return None
    return {"requests_per_second": config.requests_per_second, "burst": config.burst}


def _find(catalog: Catalog, name: str) -> Route | None:
    """The route of `name`: an exposed tool or prompt name, or an exposed resource URI/template."""
    route = catalog.tool_route(name) or catalog.prompt_route(name)
    if route is not None:
        return route
    for candidate in catalog.routes():
        if candidate.kind in ("resources", "resource_templates") and candidate.exposed == name:
            return candidate
    owner = catalog.resource_owner(name)
    if owner is not None:  # a resource the server may serve without listing it (template, link)
        return Route("resources", name, owner[0], owner[1])
    return None


def _naming_reason(route: Route) -> str:
    if route.kind in ("resources", "resource_templates"):
        return f"resource URIs are exposed as <server_id>+<uri> ({route.server_id}+{route.original})"
    notes = {
        None: "the plain <prefix>__<original> name",
        "sanitized": "characters outside [A-Za-z0-9_-] became '_'",
        "shortened": "longer than 64 characters: shortened with a hash suffix",
        "collision": "clashed with another name: resolved deterministically (see naming rules)",
    }
    return notes.get(route.note, route.note or "")


def _rate_limits(config: HubConfig, principal: Principal | None, exposed: str) -> dict[str, Any]:
    limits = config.rate_limits
    per_principal = None
    if principal is not None:
        per_principal = limits.principals.get(principal.id, limits.per_principal)
    route_limit: dict[str, Any] | None = None
    for pattern, bucket in limits.routes.items():
        if fnmatch.fnmatchcase(exposed, pattern):
            route_limit = {"glob": pattern, **(_bucket(bucket) or {})}
            break
    return {"per_principal": _bucket(per_principal), "route": route_limit}


def _settings(config: HubConfig, route: Route) -> dict[str, Any] | None:
    server = config.servers.get(route.server_id)
    if server is None:
        return None
    tool = route.original if route.kind == "tools" else None
    return {
        "timeout_seconds": server.timeout_for(tool),
        "max_timeout_seconds": server.hard_timeout_for(tool),
        "idempotent": route.kind != "tools" or server.is_idempotent(route.original),
        "retry": server.retry.model_dump(mode="json"),
        "breaker": server.breaker.model_dump(mode="json"),
        "max_result_bytes": server.max_result_bytes,
        "max_concurrency": server.max_concurrency,
        "max_queue": server.max_queue,
        "fallback": list(server.fallback),
    }


def _pin(route: Route, diff: DiffFn | None) -> dict[str, Any] | None:
    """The definition's pin status: state (`pinned`, `changed`, `new`, `held`), mode, current
    and pinned fingerprints, when it was first seen and last changed, and the pending diff."""
    status = route.pin
    if status is None:
        return None
    pin: dict[str, Any] = {
        "status": status.state,
        "mode": status.mode,
        "fingerprint": status.current,
        "pinned": status.pinned,
        "first_seen": status.first_seen,
        "last_changed": status.last_changed,
        "pending_since": status.pending_since,
        "reason": status.reason,
        "held": not status.served,
    }
    if status.reason is not None and diff is not None:
        pin["pending"] = diff(route)
    return pin


def explain(
    name: str,
    principal: Principal | None,
    *,
    catalog: Catalog,
    policy: Policy,
    config: HubConfig,
    plan: PlanFn,
    states: StatesFn,
    pin_diff: DiffFn | None = None,
    visible_names: Callable[[], list[str]] | None = None,
    hidden: Callable[[Route], bool] | None = None,
) -> dict[str, Any]:
    """What decides a call of `name` by `principal` (None: no principal, policy not evaluated).

    :returns: a JSON-able mapping: `name`, `found`, and when found `route`, `naming`, `servers`,
        `policy`, `rate_limits`, `settings`, `pin`, `verdict` (`callable` and `reasons`, one
        sentence each); when not found `suggestions` (close names from `visible_names`, never a
        name the principal may not see).
    :param hidden: routes to answer exactly like an unknown name (what a principal without
        `hub:admin` may not see when it asks about itself).
    """
    route = _find(catalog, name)
    if route is not None and hidden is not None and hidden(route):
        route = None
    if route is None:
        candidates = visible_names() if visible_names is not None else []
        return {
            "name": name,
            "found": False,
            "suggestions": close_names(name, candidates),
            "verdict": {"callable": False, "reasons": [f"no route is named {name!r}"]},
        }
    reasons: list[str] = []
    decision_json: dict[str, Any] | None = None
    allowed = True
    if principal is not None:
        decision = policy.decide(principal, route.server_id, route.exposed)
        allowed = decision.allowed
        rules: tuple[PolicyRule, ...] = tuple(config.policies or ())
        rule = rules[decision.rule] if decision.rule is not None and decision.rule < len(rules) else None
        decision_json = {
            "allowed": decision.allowed,
            "rule_index": decision.rule,
            "rule": _rule_text(rule) if rule is not None else None,
            "reason": decision.reason,
        }
        if not decision.allowed:
            where = f"policies[{decision.rule}]" if decision.rule is not None else "the policy"
            reasons.append(f"{principal.id} may not use it: {where}: {decision.reason}")
    routing = plan(route.server_id, route.kind, route.original)
    member_states = {sid: state for server_id in routing["chain"] for sid, state in states(server_id).items()}
    if routing["serving"] is None:
        down = ", ".join(f"{sid} is {state}" for sid, state in member_states.items()) or "no server offers it"
        reasons.append(f"no server can serve it now ({down})")
    pin = _pin(route, pin_diff)
    if route.held:
        reasons.append(
            f"its definition is held by pinning ({route.pin.reason if route.pin else 'held'}): "
            f"approve it with `mcphub pins approve {route.exposed}`"
        )
    callable_now = allowed and routing["serving"] is not None and not route.held
    if callable_now:
        reasons.append(f"served by {routing['serving']}")
    return {
        "name": name,
        "found": True,
        "route": {
            "exposed": route.exposed,
            "kind": route.kind,
            "server_id": route.server_id,
            "original": route.original,
            "note": route.note,
            "notes": route.notes(),
            "served": route.served,
        },
        "naming": _naming_reason(route),
        "servers": {**routing, "states": member_states},
        "principal": principal.as_json() if principal is not None else None,
        "policy": decision_json,
        "rate_limits": _rate_limits(config, principal, route.exposed),
        "settings": _settings(config, route),
        "pin": pin,
        "verdict": {"callable": callable_now, "reasons": reasons},
    }


def principal_for(
    principal_id: str, scopes: list[str], config: HubConfig, expand: Callable[[list[str]], frozenset[str]]
) -> Principal:
    """The principal `principal_id` as the hub would see it: with its API key's scopes when the
    id is one of `auth.api_keys`, else with `scopes` (e.g. what a JWT subject's tokens carry,
    given by the operator); the scope hierarchy applied either way."""
    keys: Mapping[str, list[str]] = {}
    if not isinstance(config.auth, str):
        keys = {key.id: list(key.scopes) for key in config.auth.api_keys}
    if principal_id in keys:
        return Principal(principal_id, expand(keys[principal_id]), "api_key")
    return Principal(principal_id, expand(scopes), "jwt")
