"""Which principal may see and use which route.

One decision function, `Policy.decide`, serves both purposes: the faces filter `tools/list`,
`resources/list`, `resources/templates/list` and `prompts/list` with it, and guard every
`tools/call`, `resources/read`, `prompts/get` and `completion/complete` with it, so a principal
can use exactly what it can see (the Kong "tools/list exposed denied tools" bug class,
SECURITY.md case 6). Decisions are made on the route's exposed name (`<prefix>__<name>`,
`<server_id>+<uri>`) as the catalog assigned it, never on the string a client sent, so case
variants, the bare original name or the per-server face cannot reach around a rule. Resource
URIs are decided in their RFC 3986 normal form (`hub.uris`: `fx+fixture://INFO` and
`fx+fixture://%69nfo` are `fx+fixture://info`), and globs with a scheme are normalised alike.

Rules (config `policies:`) are tried in order and the first that applies to the caller (by
principal id or by scope) decides; within it deny beats allow. With no `policies:` section every
principal holding `hub:call` may use every route; with one, a caller no rule applies to may use
nothing. The client of `mcphub serve --stdio` (principal `local`: the operator who started the hub
with this config) is not subject to policies. Refusals of calls are logged to the `hub.audit`
logger (principal, route, rule), never with a token.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from cachetools import LRUCache

from hub.config import PolicyRule
from hub.errors import RateLimited
from hub.principals import Principal
from hub.uris import normalize_uri_pattern

__all__ = ["Access", "Decision", "Policy", "RouteLimits", "audit_logger", "audit_refusal"]

audit_logger = logging.getLogger("hub.audit")
"""Audit events: authentication failures, refused calls, rate-limited principals."""

_CACHE_SIZE: Final = 65_536


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one (principal, route): `allowed`, and the index of the rule in
    `policies:` that decided (None: no policies section, or no rule applied)."""

    allowed: bool
    rule: int | None
    reason: str


_ALLOW_ALL = Decision(True, None, "no policies configured")
_NO_CALL_SCOPE = Decision(False, None, "principal lacks hub:call")
_NO_RULE = Decision(False, None, "no policy rule applies to the principal")


class Policy:
    """The `policies:` rules as a decision function (pure; decisions are cached per principal
    and route).

    :param rules: the rules in file order; None when the config has no `policies:` section.
    """

    def __init__(self, rules: Sequence[PolicyRule] | None) -> None:
        self._rules = None if rules is None else tuple(rules)
        # Resource globs are matched against normalised URIs (hub.uris), so they are normalised too.
        self._globs = [
            (tuple(map(normalize_uri_pattern, rule.deny)), tuple(map(normalize_uri_pattern, rule.allow)))
            for rule in self._rules or ()
        ]
        self._cache: LRUCache[tuple[str, frozenset[str], str, str], Decision] = LRUCache(_CACHE_SIZE)

    def decide(self, principal: Principal, server_id: str, exposed: str) -> Decision:
        """May `principal` see and use the route `exposed` (exposed name or URI) of `server_id`?"""
        key = (principal.id, principal.scopes, server_id, exposed)
        decision = self._cache.get(key)
        if decision is None:
            decision = self._cache[key] = self._decide(principal, server_id, exposed)
        return decision

    def allows(self, principal: Principal, server_id: str, exposed: str) -> bool:
        """`decide(...).allowed`."""
        return self.decide(principal, server_id, exposed).allowed

    def restricts(self, principal: Principal) -> bool:
        """False when `principal` may use every route (no `policies:` and it holds `hub:call`),
        so listings need no per-item decision."""
        return (self._rules is not None and principal.source != "local") or "hub:call" not in principal.scopes

    def view_of(self, principal: Principal) -> Hashable:
        """What `principal`'s listings depend on: "all" (nothing restricts it), "none" (it may
        see nothing: no `hub:call`, or no rule applies) or the index of the rule that decides
        for it. `decide` gives two principals with the same view the same answer for every
        route, so they can share prepared lists (`hub.prepared_lists`)."""
        if "hub:call" not in principal.scopes:
            return "none"
        if self._rules is None or principal.source == "local":
            return "all"
        return next((index for index, rule in enumerate(self._rules) if _applies(rule, principal)), "none")

    def rule_for(self, principal: Principal) -> PolicyRule | None:
        """The rule that decides for `principal`: the first that applies to it (by principal id
        or by scope), whatever the route; None without `policies:`, for the stdio client
        (`local`), for a caller without `hub:call`, or when no rule applies. Its `catalog` sets
        the caller's catalog mode (`hub.endpoint.search_mode`)."""
        if self._rules is None or principal.source == "local" or "hub:call" not in principal.scopes:
            return None
        return next((rule for rule in self._rules if _applies(rule, principal)), None)

    def _decide(self, principal: Principal, server_id: str, exposed: str) -> Decision:
        if "hub:call" not in principal.scopes:
            return _NO_CALL_SCOPE
        if self._rules is None or principal.source == "local":
            return _ALLOW_ALL
        for index, rule in enumerate(self._rules):
            if not _applies(rule, principal):
                continue
            deny, allow = self._globs[index]
            if any(fnmatch.fnmatchcase(exposed, pattern) for pattern in deny):
                return Decision(False, index, "denied by a deny glob")
            if rule.servers is not None and server_id not in rule.servers:
                return Decision(False, index, "server not in the rule's servers")
            if allow and not any(fnmatch.fnmatchcase(exposed, pattern) for pattern in allow):
                return Decision(False, index, "matches no allow glob")
            return Decision(True, index, "allowed")
        return _NO_RULE


def _applies(rule: PolicyRule, principal: Principal) -> bool:
    """Whether `rule` applies to `principal` (its `principal` id, or its `scope` held)."""
    if rule.principal is not None and rule.principal != principal.id:
        return False
    return rule.scope is None or rule.scope in principal.scopes


def audit_refusal(principal: Principal, kind: str, exposed: str, decision: Decision) -> None:
    """Log one refused use of a route (principal, route, rule; never a token)."""
    audit_logger.warning(
        "refused: principal=%s kind=%s route=%s rule=%s reason=%s",
        principal.id,
        kind,
        exposed,
        "-" if decision.rule is None else f"policies[{decision.rule}]",
        decision.reason,
    )


class RouteLimits(Protocol):
    """The per-route rate limits `Access` applies (the endpoint's `RateLimiter`,
    `hub.endpoint.rate_limits`, counted in memory or across replicas in Redis)."""

    async def check_route(self, principal_id: str, exposed: str) -> float:
        """0 when `principal_id` may use route `exposed` now (the use is counted), else the
        seconds until it may."""
        ...


class Access:
    """What the faces apply to each request: the policy (visibility and use) and the per-route
    rate limits.

    :param policy: the decision function.
    :param limiter: the per-route rate limits (the per-principal request limit is applied by the
        HTTP middleware, `hub.endpoint.auth_middleware.AuthMiddleware`).
    """

    def __init__(self, policy: Policy, limiter: RouteLimits) -> None:
        self.policy = policy
        self.limiter = limiter

    def restricts(self, principal: Principal) -> bool:
        """See `Policy.restricts`."""
        return self.policy.restricts(principal)

    def view_of(self, principal: Principal) -> Hashable:
        """See `Policy.view_of`."""
        return self.policy.view_of(principal)

    def visible(self, principal: Principal, route: tuple[str, str] | None) -> bool:
        """May `principal` see `route` (`(server_id, exposed)`; None for no route) in a listing?"""
        return route is not None and self.policy.allows(principal, *route)

    async def admit(self, principal: Principal, kind: str, route: tuple[str, str]) -> bool:
        """May `principal` use `route` now? A refusal is audit-logged. The per-route rate limit
        is counted only for a use the policy allows (across replicas with Redis, `hub.endpoint.rate_limits`).

        :raises RateLimited: the principal is over its limit for this route.
        """
        decision = self.policy.decide(principal, *route)
        if not decision.allowed:
            audit_refusal(principal, kind, route[1], decision)
            return False
        wait = await self.limiter.check_route(principal.id, route[1])
        if wait > 0:
            audit_logger.warning("rate limited: principal=%s route=%s", principal.id, route[1])
            raise RateLimited(route[1], wait)
        return True
