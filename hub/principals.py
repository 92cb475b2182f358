"""Who called the endpoint: a `Principal` (an API key id, a JWT's subject, `local` for stdio) and
its scopes.

The endpoint's authentication (`hub.endpoint.authentication`) makes one per request; the core
decides on it (`hub.policy`, `hub.explain`, `hub.prepared_lists`), so it lives below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: `id` (API key id or the JWT's principal claim), its scopes
    (hierarchy applied) and where it came from."""

    id: str
    scopes: frozenset[str]
    source: Literal["api_key", "jwt", "none", "local"]

    def as_json(self) -> dict[str, Any]:
        return {"principal": self.id, "scopes": sorted(self.scopes), "source": self.source}
