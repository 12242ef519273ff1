# -*- test-case-name: test.config.test_schema -*-
"""
The keys each section of the configuration knows, declared once.

Every decoder warns about keys not listed here; C{llamaswap/config.schema.json}
must list exactly these (C{test.config.test_schema} checks it).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

GLOBAL_KEYS = frozenset(
    {
        "apiKeys",
        "auth",
        "captureBuffer",
        "globalTTL",
        "groups",
        "healthCheckTimeout",
        "hooks",
        "includeAliasesInList",
        "logLevel",
        "logRequests",
        "logTimeFormat",
        "logToStdout",
        "macros",
        "matrix",
        "memoryBudget",
        "memoryReserve",
        "metricsMaxInMemory",
        "models",
        "modelsDir",
        "peers",
        "performance",
        "profiles",
        "promptCache",
        "promptCacheDir",
        "promptCacheMaxBytes",
        "promptCacheTimeout",
        "requestTTL",
        "routing",
        "selectors",
        "sendLoadingState",
        "startPort",
        "store",
        "ui",
        "unloadTimeout",
        "upstream",
        "limits",
        "security",
    }
)
MODEL_KEYS = frozenset(
    {
        "aliases",
        "capabilities",
        "checkEndpoint",
        "cmd",
        "cmdStop",
        "compat",
        "concurrencyLimit",
        "description",
        "devices",
        "env",
        "filters",
        "healthCheckTimeout",
        "macros",
        "memory",
        "metadata",
        "name",
        "promptCache",
        "proxy",
        "sendLoadingState",
        "timeouts",
        "ttl",
        "unlisted",
        "unloadTimeout",
        "useModelName",
    }
)
MODEL_FILTER_KEYS = frozenset({"stripParams", "strip_params", "setParams", "setParamsByID"})
PEER_FILTER_KEYS = frozenset({"stripParams", "setParams"})
TIMEOUT_KEYS = frozenset(
    {
        "connect",
        "keepalive",
        "responseHeader",
        "tlsHandshake",
        "expectContinue",
        "idleConn",
        "idle",
    }
)
CAPABILITY_KEYS = frozenset({"in", "out", "tools", "reranker", "context"})
COMPAT_KEYS = frozenset({"ignoreWebsockets"})
PEER_KEYS = frozenset({"proxy", "apiKey", "models", "filters", "timeouts"})
GROUP_KEYS = frozenset({"swap", "exclusive", "persistent", "members"})
MATRIX_KEYS = frozenset({"vars", "evict_costs", "sets"})
SELECTOR_KEYS = frozenset(
    {"strategy", "targets", "settings", "name", "description", "unlisted", "metadata"}
)
SELECTOR_SETTINGS_KEYS = frozenset({"spillover"})
PROFILE_KEYS = frozenset({"description", "pins"})
ROUTING_KEYS = frozenset({"router", "scheduler", "swapOverlap"})
ROUTER_KEYS = frozenset({"use", "settings"})
ROUTER_SETTINGS_KEYS = frozenset({"groups", "matrix"})
SCHEDULER_KEYS = frozenset({"use", "settings"})
SCHEDULER_SETTINGS_KEYS = frozenset({"fifo"})
FIFO_KEYS = frozenset({"priority", "maxWaitForSwap"})
HOOKS_KEYS = frozenset({"on_startup"})
ON_STARTUP_KEYS = frozenset({"preload", "profile"})
STORE_KEYS = frozenset({"path"})
UI_KEYS = frozenset({"activity"})
UI_ACTIVITY_KEYS = frozenset({"session_id"})
PERFORMANCE_KEYS = frozenset({"disabled", "every"})
UPSTREAM_KEYS = frozenset({"ignorePaths"})
REQUEST_TTL_KEYS = frozenset({"enabled", "max"})
MODELS_DIR_KEYS = frozenset({"path", "cmd", "watch"})
API_KEY_KEYS = frozenset({"key", "name", "scopes", "models", "concurrencyLimit"})
AUTH_KEYS = frozenset({"sessionSecret", "sessionTTL"})
LIMITS_KEYS = frozenset(
    {
        "maxRequestBodyBytes",
        "maxConnections",
        "headerTimeout",
        "bodyTimeout",
        "upstreamIdleTimeout",
    }
)
SECURITY_KEYS = frozenset({"cors", "allowedHosts"})
CORS_KEYS = frozenset(
    {
        "allowedOrigins",
        "allowCredentials",
        "allowedMethods",
        "allowedHeaders",
        "exposedHeaders",
        "maxAge",
        "allowPrivateNetwork",
    }
)

KNOWN_KEYS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "global": GLOBAL_KEYS,
        "model": MODEL_KEYS,
        "model.filters": MODEL_FILTER_KEYS,
        "model.timeouts": TIMEOUT_KEYS,
        "model.capabilities": CAPABILITY_KEYS,
        "model.compat": COMPAT_KEYS,
        "peer": PEER_KEYS,
        "peer.filters": PEER_FILTER_KEYS,
        "peer.timeouts": TIMEOUT_KEYS,
        "group": GROUP_KEYS,
        "matrix": MATRIX_KEYS,
        "selector": SELECTOR_KEYS,
        "selector.settings": SELECTOR_SETTINGS_KEYS,
        "profile": PROFILE_KEYS,
        "routing": ROUTING_KEYS,
        "routing.router": ROUTER_KEYS,
        "routing.router.settings": ROUTER_SETTINGS_KEYS,
        "routing.scheduler": SCHEDULER_KEYS,
        "routing.scheduler.settings": SCHEDULER_SETTINGS_KEYS,
        "routing.scheduler.settings.fifo": FIFO_KEYS,
        "hooks": HOOKS_KEYS,
        "hooks.on_startup": ON_STARTUP_KEYS,
        "store": STORE_KEYS,
        "ui": UI_KEYS,
        "ui.activity": UI_ACTIVITY_KEYS,
        "performance": PERFORMANCE_KEYS,
        "upstream": UPSTREAM_KEYS,
        "requestTTL": REQUEST_TTL_KEYS,
        "modelsDir": MODELS_DIR_KEYS,
        "apiKey": API_KEY_KEYS,
        "auth": AUTH_KEYS,
        "limits": LIMITS_KEYS,
        "security": SECURITY_KEYS,
        "security.cors": CORS_KEYS,
    }
)
