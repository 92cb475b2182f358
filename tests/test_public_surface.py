"""The public surface of each module is a decision: these are exactly the exported names, and
each one exists. Changing a list here is changing the API."""

from __future__ import annotations

import importlib

import pytest

EXPORTS = {
    "hub.errors": [
        "AuthError",
        "ConfigError",
        "HubError",
        "RateLimited",
        "RouteNotFound",
        "ServerError",
        "ServerProtocolError",
        "ServerTimeout",
        "ServerUnavailable",
        "describe_failure",
    ],
    "hub.config": [
        "DEFAULT_HOST",
        "DEFAULT_PORT",
        "HUB_ID_PATTERN",
        "HUB_SCOPES",
        "LOOPBACK_HOSTS",
        "ApiKeyConfig",
        "AuthConfig",
        "BreakerConfig",
        "FilterConfig",
        "HubConfig",
        "JwtConfig",
        "ListenConfig",
        "PolicyRule",
        "RateLimitsConfig",
        "TokenBucketConfig",
        "is_loopback_url",
        "require_auth_beyond_loopback",
        "OAuthConfig",
        "ReplicaConfig",
        "RetryConfig",
        "SERVER_ID_PATTERN",
        "ServerConfig",
        "TracingConfig",
        "json_schema",
        "load_config",
        "parse_config",
    ],
    "hub.config_loader": [
        "CLIENT_SERVER_TYPES",
        "IGNORED_CLIENT_ENTRY_KEYS",
        "ConfigDocument",
        "config_error",
        "prepare_document",
        "read_document",
        "server_id_from_client_name",
        "workspace_folder",
    ],
    "hub.config_schema": ["REMOTE_ONLY_KEYS", "REPLICA_MEMBER_KEYS", "STDIO_ONLY_KEYS", "complete_schema"],
    "hub.naming": [
        "MAX_NAME_LENGTH",
        "NAME_PATTERN",
        "NameAssignment",
        "SEPARATOR",
        "assign_names",
        "exposed_resource_uri",
        "sanitize",
        "split_resource_uri",
    ],
    "hub.resource_links": ["expose_uris"],
    "hub.explain": ["MAX_SUGGESTIONS", "explain", "principal_for"],
    "hub.cli_explain": ["print_explanation"],
    "hub.state": ["STATE_FILE_NAME", "StateFile", "default_state_path", "new_hub_id", "state_path"],
    "hub.catalog": ["Catalog", "ChangeListener", "Kind", "Route", "ServerView", "snapshot_offers"],
    "hub.servers": ["Fleet", "ServerConnection", "ServerSnapshot", "ServerState", "ServerStatus"],
    "hub.router": ["ProgressFn", "Router"],
    "hub.limits": ["BreakerState", "CircuitBreaker", "ConcurrencyLimiter", "RetryBudget", "ServerRejected"],
    "hub.resilience": [
        "DeliveryMark",
        "EventSink",
        "Failure",
        "ResilienceEvents",
        "ResultTooLarge",
        "classify_failure",
        "delivery_mark",
        "is_transport_size_abort",
        "oversized",
        "track_delivery",
    ],
    "hub.faces": [
        "AggregateFace",
        "Face",
        "HUB_NAME",
        "CACHE_HINTS",
        "FaceServices",
        "HubServer",
        "LIST_TTL_MS",
        "RATE_LIMITED",
        "ServerFace",
        "SessionRegistry",
        "build_mcp_server",
    ],
    "hub.relay": [
        "ANONYMOUS",
        "CURRENT_CHANNEL",
        "LOG_LEVELS",
        "ClientChannel",
        "SamplingResult",
        "SessionChannel",
        "Subscriptions",
        "principal_id",
        "refusal",
    ],
    "hub.bridge": ["HANDLE_PREFIX", "SERVER_STATE_PREFIX", "Bridge", "BridgedCall"],
    "hub.endpoint": ["Endpoint", "HttpServer", "allowed_hosts", "bind_socket", "run_event_loop"],
    "hub.app": ["DEFAULT_CONFIG_NAME", "Hub", "demo_config", "resolve_config", "startup_bound_seconds"],
    "hub.cli": ["app", "main"],
    "hub.auth": [
        "ANONYMOUS",
        "AuthMiddleware",
        "Authenticator",
        "JwksCache",
        "LOCAL",
        "NOBODY",
        "PRM_PATH",
        "Principal",
        "ScopeHierarchy",
        "principal_of",
        "protected_resource_metadata",
        "required_scope",
    ],
    "hub.policy": ["Access", "Decision", "Policy", "audit_logger", "audit_refusal"],
    "hub.ratelimit": ["RateLimiter", "TokenBucket"],
    "hub.search": [
        "DEFAULT_LIMIT",
        "MAX_SCORED_TOOLS",
        "Allowed",
        "ConceptExpander",
        "FieldWeights",
        "SearchHit",
        "SemanticScorer",
        "SyncReport",
        "SynonymExpander",
        "ToolIndex",
        "default_index",
        "query_words",
        "tool_text",
        "words",
    ],
    "hub.search.index": [
        "DEFAULT_LIMIT",
        "MAX_SCORED_TOOLS",
        "Allowed",
        "ConceptExpander",
        "FieldWeights",
        "SearchHit",
        "SemanticScorer",
        "SyncReport",
        "ToolIndex",
    ],
    "hub.search.tokens": ["MAX_SCHEMA_DEPTH", "STOPWORDS", "ToolText", "query_words", "tool_text", "words"],
    "hub.search.concepts": ["DEFAULT_SYNONYMS", "SynonymExpander", "default_path", "parse_groups"],
    "hub.search.semantic": ["BATCH_SIZE", "EmbeddingScorer", "Embedder", "MiniLMEmbedder", "Vectors"],
    "adapters": [
        "ClientCredentialsAuth",
        "HttpPool",
        "sse_transport",
        "stdio_transport",
        "streamable_http_transport",
        "watch_closed",
    ],
    "adapters.oauth": ["ClientCredentialsAuth", "OAuthTokenError", "REFRESH_LEEWAY_SECONDS"],
    "hub.logs": [
        "JsonFormatter",
        "LogFormat",
        "TextFormatter",
        "current_request_id",
        "current_server_id",
        "new_request_id",
        "request_id_var",
        "server_id_var",
        "setup_logging",
    ],
    "hub.metrics": ["CONTENT_TYPE", "NO_SERVER", "RESOURCE_ROUTE", "UNKNOWN_ROUTE", "CatalogSizes", "HubMetrics"],
    "hub.tracing": ["OTLP_ENDPOINT_ENV", "CallTracer", "SpanRecord", "tracer_provider_from_config"],
    "hub.reload": ["LIVE_SETTINGS", "ReloadPlan", "ReloadReport", "effective_config", "plan_reload"],
}


@pytest.mark.parametrize("module_name", sorted(EXPORTS))
def test_a_module_exports_exactly_its_intended_names(module_name: str) -> None:
    module = importlib.import_module(module_name)

    assert sorted(module.__all__) == sorted(EXPORTS[module_name])
    assert all(hasattr(module, name) for name in module.__all__)


def test_adapters_never_import_the_hub() -> None:
    """adapters/ sits below hub/ (DESIGN.md layout): it depends on mcp and httpx2 only."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "adapters"
    offenders = [p.name for p in root.glob("*.py") if "from hub" in p.read_text() or "import hub" in p.read_text()]

    assert offenders == []
