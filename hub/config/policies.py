"""Who may use which route (policy rules) and how often (token-bucket rate limits)."""

from __future__ import annotations

from pydantic import Field, model_validator

from hub.config.auth import PrincipalId, Scope
from hub.config.base import Model
from hub.config.catalog import CatalogOverride
from hub.config.servers import ServerId

__all__ = ["PolicyRule", "RateLimitsConfig", "TokenBucketConfig"]


class PolicyRule(Model):
    """One policy rule: who it applies to (`principal` or `scope`) and which routes it allows.

    Rules are tried in order; the first one that applies to the caller decides. Within it, a
    route is allowed when it is on one of `servers` (if given) and matches an `allow` glob (or
    `allow` is empty and `servers` is given), and no `deny` glob matches (deny wins). Globs
    (`*`, `?`, `[...]`) match exposed names: `<prefix>__<name>` for tools and prompts,
    `<server_id>+<uri>` for resources and resource templates, whichever face is used."""

    principal: PrincipalId | None = None
    """Applies to this principal id."""

    scope: Scope | None = None
    """Applies to callers holding this scope (after the scope hierarchy is applied)."""

    servers: list[ServerId] | None = None
    """Only routes of these servers can be allowed by this rule."""

    allow: list[str] = Field(default_factory=list)
    """Globs on exposed names this rule allows."""

    deny: list[str] = Field(default_factory=list)
    """Globs on exposed names this rule refuses, whatever `allow` says."""

    catalog: CatalogOverride | None = None
    """The catalog mode of the callers this rule applies to (search mode or the full list; see
    `catalog`), over the endpoint's (the hub-wide `catalog`, or a profile's). As for access, only
    the first rule that applies to a caller counts. Default: the endpoint's."""

    @model_validator(mode="after")
    def _one_subject(self) -> PolicyRule:
        if (self.principal is None) == (self.scope is None):
            raise ValueError("give exactly one of principal or scope")
        if not self.allow and self.servers is None:
            raise ValueError("allows nothing: give allow globs and/or servers")
        return self


class TokenBucketConfig(Model):
    """A token bucket: `burst` requests at once, refilled at `requests_per_second`."""

    requests_per_second: float = Field(gt=0)
    """Sustained rate, in requests per second."""

    burst: int = Field(ge=1)
    """Bucket size: how many requests may arrive at once."""


class RateLimitsConfig(Model):
    """Rate limits per principal (HTTP 429 with `Retry-After` when exceeded) and per principal
    and route (a JSON-RPC error carrying `retry_after_seconds`). None by default."""

    per_principal: TokenBucketConfig | None = None
    """HTTP requests to `/mcp` and `/servers/<id>/mcp` per principal."""

    principals: dict[PrincipalId, TokenBucketConfig] = Field(default_factory=dict)
    """Overrides of `per_principal` for named principals."""

    routes: dict[str, TokenBucketConfig] = Field(default_factory=dict)
    """Calls, reads and gets per principal of the routes whose exposed name matches the glob
    (first matching glob in file order)."""
