"""The hub's configuration: YAML (or JSON) -> validated pydantic models.

`from hub.config import HubConfig, load_config, ...` is the way in; the modules hold one
concept each (see docs/architecture.md, "Configuration"). `python -m hub.config` prints the
JSON schema (`config/hub.schema.json`).
"""

from __future__ import annotations

from hub.config.auth import HUB_SCOPES, ApiKeyConfig, AuthConfig, JwtConfig
from hub.config.base import LOOPBACK_HOSTS, is_loopback_url
from hub.config.hub import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    HUB_ID_PATTERN,
    HubConfig,
    ListenConfig,
    TracingConfig,
    require_auth_beyond_loopback,
)
from hub.config.loader import json_schema, load_config, parse_config
from hub.config.policies import PolicyRule, RateLimitsConfig, TokenBucketConfig
from hub.config.server_settings import BreakerConfig, FilterConfig, OAuthConfig, RetryConfig, ServerSettings
from hub.config.servers import (
    SERVER_ID_PATTERN,
    MemberConfig,
    RemoteServer,
    ReplicaConfig,
    ReplicaGroup,
    ServerEntry,
    StdioServer,
)
from hub.config.sources import CONFIG_ENV, DEFAULT_CONFIG_NAME, DEMO_FLEET_PATH, demo_config, resolve_config

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_NAME",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEMO_FLEET_PATH",
    "HUB_ID_PATTERN",
    "HUB_SCOPES",
    "LOOPBACK_HOSTS",
    "SERVER_ID_PATTERN",
    "ApiKeyConfig",
    "AuthConfig",
    "BreakerConfig",
    "FilterConfig",
    "HubConfig",
    "JwtConfig",
    "ListenConfig",
    "MemberConfig",
    "OAuthConfig",
    "PolicyRule",
    "RateLimitsConfig",
    "RemoteServer",
    "ReplicaConfig",
    "ReplicaGroup",
    "RetryConfig",
    "ServerEntry",
    "ServerSettings",
    "StdioServer",
    "TokenBucketConfig",
    "TracingConfig",
    "demo_config",
    "is_loopback_url",
    "json_schema",
    "load_config",
    "parse_config",
    "require_auth_beyond_loopback",
    "resolve_config",
]
