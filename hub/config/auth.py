"""Authentication of the endpoint's callers: API keys, JWT access tokens, the hub's scopes."""

from __future__ import annotations

import hashlib
from typing import Annotated, Final

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from hub.config.base import Model, check_secure_url, env_of

__all__ = [
    "HUB_SCOPES",
    "MIN_API_KEY_CHARS",
    "MIN_HMAC_SECRET_BYTES",
    "ApiKeyConfig",
    "AuthConfig",
    "JwtConfig",
    "PrincipalId",
    "Scope",
]

HUB_SCOPES: Final = ("hub:call", "hub:admin", "hub:metrics")
"""The hub's own scopes: `hub:call` uses routes (`/mcp`, `/servers/<id>/mcp`), `hub:admin` the
admin API (and implies the other two), `hub:metrics` reads `/metrics`."""

_PRINCIPAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:/-]{0,127}$"
_SCOPE_PATTERN = r"^[\x21\x23-\x5B\x5D-\x7E]{1,128}$"  # RFC 6749 section 3.3 scope-token
_ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES256K", "ES384", "ES512", "EdDSA"}
)
_HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
MIN_API_KEY_CHARS: Final = 16
MIN_HMAC_SECRET_BYTES: Final = 32

Scope = Annotated[str, Field(pattern=_SCOPE_PATTERN)]
PrincipalId = Annotated[str, Field(pattern=_PRINCIPAL_PATTERN)]


class ApiKeyConfig(Model):
    """One API key. The key itself is never stored: give its SHA-256 (`mcphub keys new ID`
    prints both) or the name of an environment variable that holds it."""

    id: PrincipalId
    """The principal id this key authenticates as (shown in logs, `mcphub whoami`, policies)."""

    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """Lowercase hex SHA-256 of the key."""

    key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding the key (at least 16 characters); read once at load."""

    scopes: list[Scope] = Field(default_factory=list)
    """Scopes granted to this key, e.g. `[hub:call, team-a]`."""

    _digest: bytes = PrivateAttr(default=b"")

    @model_validator(mode="after")
    def _resolve_key(self, info: ValidationInfo) -> ApiKeyConfig:
        if (self.key_sha256 is None) == (self.key_env is None):
            raise ValueError("give exactly one of key_sha256 or key_env")
        if self.key_sha256 is not None:
            self._digest = bytes.fromhex(self.key_sha256)
        else:
            assert self.key_env is not None
            value = env_of(info).get(self.key_env, "")
            if len(value) < MIN_API_KEY_CHARS:
                problem = "is not set" if not value else f"holds fewer than {MIN_API_KEY_CHARS} characters"
                raise ValueError(f"environment variable {self.key_env} {problem}")
            self._digest = hashlib.sha256(value.encode()).digest()
        return self

    @property
    def digest(self) -> bytes:
        """SHA-256 of the key (32 bytes)."""
        return self._digest


class JwtConfig(Model):
    """JWT access tokens from an OAuth 2.1 authorization server (MCP authorization spec,
    "Token Validation"; RFC 9068). Signature, `exp`, `nbf`, `iss` and `aud` are all enforced."""

    issuer: str
    """Expected `iss` claim (the authorization server's issuer identifier); also listed as the
    authorization server in the protected resource metadata (RFC 9728)."""

    audience: str | list[str] | None = None
    """Accepted `aud` value(s): this hub's resource URL (RFC 8707). Default: `<public_url>/mcp`."""

    jwks_url: str | None = None
    """JWKS document with the issuer's public keys (fetched asynchronously, cached, refreshed on
    an unknown `kid`). https, or http on loopback."""

    public_key_file: str | None = None
    """PEM file with the one public key that signs tokens (instead of `jwks_url`)."""

    hs256_secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding a shared HMAC secret (at least 32 bytes), for HS256/384/512
    tokens (instead of `jwks_url`)."""

    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    """Accepted `alg` values. Asymmetric algorithms (RS*, PS*, ES*, EdDSA) for `jwks_url` and
    `public_key_file`, HS* for `hs256_secret_env`; mixing them, or `none`, is refused."""

    scope_claim: str = "scope"
    """Claim holding the scopes: a space-separated string (RFC 9068 `scope`) or a list (`scp`)."""

    principal_claim: str = "sub"
    """Claim that names the principal."""

    leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    """Clock skew tolerated on `exp` and `nbf`, in seconds. Default: 30."""

    jwks_cache_seconds: float = Field(default=3600.0, gt=0)
    """How long fetched JWKS keys are used before a refetch, in seconds. Default: 3600."""

    jwks_refresh_min_seconds: float = Field(default=30.0, ge=0)
    """Minimum time between two JWKS fetches caused by tokens with an unknown `kid`, in seconds
    (so forged `kid`s cannot make the hub hammer the issuer). Default: 30."""

    _hmac_secret: bytes = PrivateAttr(default=b"")

    @field_validator("jwks_url")
    @classmethod
    def _check_jwks_url(cls, value: str | None) -> str | None:
        return None if value is None else check_secure_url(value, "jwks_url")

    @model_validator(mode="after")
    def _check_keys(self, info: ValidationInfo) -> JwtConfig:
        sources = [self.jwks_url, self.public_key_file, self.hs256_secret_env]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("give exactly one of jwks_url, public_key_file or hs256_secret_env")
        algorithms = set(self.algorithms)
        if any(alg.lower() == "none" for alg in algorithms):
            raise ValueError("algorithm 'none' is never accepted")
        allowed = _HMAC_ALGORITHMS if self.hs256_secret_env else _ASYMMETRIC_ALGORITHMS
        wrong = sorted(algorithms - allowed)
        if wrong:
            kind = "an HMAC secret" if self.hs256_secret_env else "public keys"
            raise ValueError(f"algorithms {wrong} cannot be used with {kind} (allowed: {sorted(allowed)})")
        if self.hs256_secret_env:
            secret = env_of(info).get(self.hs256_secret_env, "").encode()
            if len(secret) < MIN_HMAC_SECRET_BYTES:
                problem = "is not set" if not secret else f"holds fewer than {MIN_HMAC_SECRET_BYTES} bytes"
                raise ValueError(f"environment variable {self.hs256_secret_env} {problem}")
            self._hmac_secret = secret
        return self

    @property
    def hmac_secret(self) -> bytes:
        """The HS* secret read from `hs256_secret_env` (empty for public-key configs)."""
        return self._hmac_secret


class AuthConfig(Model):
    """Authentication of the endpoint's callers (`/mcp`, `/servers/<id>/mcp`, `/admin/...`).
    Both API keys and JWTs travel as `Authorization: Bearer <value>`."""

    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    """Static API keys, each with its principal id and scopes."""

    jwt: JwtConfig | None = None
    """JWT access tokens from an OAuth authorization server."""

    authorization_servers: list[str] = Field(default_factory=list)
    """Authorization servers listed in the protected resource metadata (RFC 9728). Default:
    `[jwt.issuer]` when `jwt` is set."""

    scope_implies: dict[Scope, list[Scope]] = Field(default_factory=dict)
    """Scope hierarchy beyond the built-in one (`hub:admin` implies `hub:call` and
    `hub:metrics`): a scope implies the listed scopes, transitively."""

    @model_validator(mode="after")
    def _something_configured(self) -> AuthConfig:
        if not self.api_keys and self.jwt is None:
            raise ValueError("configure api_keys and/or jwt, or write `auth: none` for a loopback-only hub")
        ids = [key.id for key in self.api_keys]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate api key ids: {duplicates}")
        digests = [key.digest for key in self.api_keys]
        if len(set(digests)) != len(digests):
            raise ValueError("two api keys have the same key")
        for url in self.authorization_servers:
            check_secure_url(url, "authorization_servers entry")
        return self
