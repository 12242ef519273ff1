# -*- test-case-name: test.config.test_decode_settings -*-
"""
The top-level settings: logging, ports, timers, store, UI, performance,
upstream paths, API keys, limits and security, and the startup hooks.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

from attrs import frozen

from .decode_keys import decodeAPIKeys, decodeAuth
from .errors import Problems
from .goformats import formatGoDuration
from .goquote import goQuote
from .keys import (
    AUTH_KEYS,
    LIMITS_KEYS,
    ON_STARTUP_KEYS,
    PERFORMANCE_KEYS,
    SECURITY_KEYS,
    STORE_KEYS,
    UI_ACTIVITY_KEYS,
    UI_KEYS,
    UPSTREAM_KEYS,
)
from .limits import LimitsConfig, SecurityConfig, decodeLimits, decodeSecurity
from .model import (
    DEFAULT_SESSION_ID_HEADERS,
    DEFAULT_UNLOAD_TIMEOUT,
    APIKey,
    AuthConfig,
    Config,
    HooksConfig,
    PerformanceConfig,
    StoreConfig,
    UIConfig,
    UpstreamConfig,
)
from .sections import Section

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_TO_STDOUT = ("proxy", "upstream", "both", "none")
LOG_TIME_FORMATS = (
    "ansic",
    "unixdate",
    "rubydate",
    "rfc822",
    "rfc822z",
    "rfc850",
    "rfc1123",
    "rfc1123z",
    "rfc3339",
    "rfc3339nano",
    "kitchen",
    "stamp",
    "stampmilli",
    "stampmicro",
    "stampnano",
)
MIN_PERFORMANCE_EVERY_NS = 5_000_000_000
DEFAULT_PERFORMANCE_EVERY_NS = 5_000_000_000


@frozen
class Settings:
    """
    The decoded top-level scalars and small sections; field names are
    L{Config}'s.
    """

    healthCheckTimeout: int
    logLevel: str
    logTimeFormat: str
    logToStdout: str
    metricsMaxInMemory: int
    captureBuffer: int
    store: StoreConfig | None
    ui: UIConfig
    performance: PerformanceConfig
    startPort: int
    globalTTL: int
    unloadTimeout: int
    sendLoadingState: bool
    includeAliasesInList: bool
    apiKeys: tuple[APIKey, ...]
    auth: AuthConfig
    upstream: UpstreamConfig
    limits: LimitsConfig
    security: SecurityConfig


def decodeSettings(top: Section, problems: Problems) -> Settings:
    """
    Decode the top-level settings, in llama-swap's order.
    """
    healthCheckTimeout = max(top.integer("healthCheckTimeout", 120), 15)
    if "logRequests" in top.data:
        top.optionalBoolean("logRequests")
        problems.warn("logRequests is deprecated and ignored", ("logRequests",))
    logLevel = _logLevel(top, problems)
    logTimeFormat = _logTimeFormat(top, problems)
    performance = _performance(top.section("performance", PERFORMANCE_KEYS), problems)

    startPort = top.integer("startPort", 5800)
    if startPort < 1:
        problems.error("startPort must be greater than 1", ("startPort",))
    globalTTL = top.integer("globalTTL", 0)
    if globalTTL < 0:
        problems.error("globalTTL must be >= 0", ("globalTTL",))
    unloadTimeout = top.integer("unloadTimeout", DEFAULT_UNLOAD_TIMEOUT)
    if unloadTimeout < 0:
        problems.error("unloadTimeout must be >= 0", ("unloadTimeout",))
    if unloadTimeout == 0:
        unloadTimeout = DEFAULT_UNLOAD_TIMEOUT

    ui = _ui(top.section("ui", UI_KEYS))
    store = _store(top, problems)
    upstream = _upstream(top.section("upstream", UPSTREAM_KEYS), problems)
    limits = decodeLimits(top.section("limits", LIMITS_KEYS), problems.error)
    security = decodeSecurity(top.section("security", SECURITY_KEYS), problems.error)

    logToStdout = top.string("logToStdout", "proxy")
    if logToStdout not in LOG_TO_STDOUT:
        problems.error("logToStdout must be one of: proxy, upstream, both, none", ("logToStdout",))
    metricsMaxInMemory = top.integer("metricsMaxInMemory", 1000)
    captureBuffer = top.integer("captureBuffer", 5)
    sendLoadingState = top.boolean("sendLoadingState", False)
    includeAliasesInList = top.boolean("includeAliasesInList", False)
    apiKeys = decodeAPIKeys(top, problems)
    auth = decodeAuth(top.section("auth", AUTH_KEYS))
    return Settings(
        healthCheckTimeout=healthCheckTimeout,
        logLevel=logLevel,
        logTimeFormat=logTimeFormat,
        logToStdout=logToStdout,
        metricsMaxInMemory=metricsMaxInMemory,
        captureBuffer=captureBuffer,
        store=store,
        ui=ui,
        performance=performance,
        startPort=startPort,
        globalTTL=globalTTL,
        unloadTimeout=unloadTimeout,
        sendLoadingState=sendLoadingState,
        includeAliasesInList=includeAliasesInList,
        apiKeys=apiKeys,
        auth=auth,
        upstream=upstream,
        limits=limits,
        security=security,
    )


def _logLevel(top: Section, problems: Problems) -> str:
    return _oneOf(top, problems, "logLevel", LOG_LEVELS, "info", ", using info")


def _logTimeFormat(top: Section, problems: Problems) -> str:
    return _oneOf(
        top, problems, "logTimeFormat", LOG_TIME_FORMATS, "", "; log lines will have no timestamp"
    )


def _oneOf(
    top: Section,
    problems: Problems,
    key: str,
    valid: tuple[str, ...],
    default: str,
    otherwise: str,
) -> str:
    """
    The setting C{key}, trimmed and lower-cased, if it is one of C{valid};
    else C{default}, with a warning saying so (C{otherwise}) unless empty.
    """
    raw = top.string(key, default)
    name = raw.strip().lower()
    if name in valid:
        return name
    if name:
        problems.warn(
            f"unknown {key} {goQuote(raw)}{otherwise} (valid: {', '.join(valid)})", (key,)
        )
    return default


def _performance(section: Section, problems: Problems) -> PerformanceConfig:
    disabled = section.boolean("disabled", False)
    every = section.duration("every", 0)
    if every == 0:
        every = DEFAULT_PERFORMANCE_EVERY_NS
    if every < MIN_PERFORMANCE_EVERY_NS:
        problems.error(
            f"performance: every must be at least 5s, got {formatGoDuration(every)}",
            ("performance", "every"),
        )
    return PerformanceConfig(disabled=disabled, every=every / 1e9)


def _ui(section: Section) -> UIConfig:
    activity = section.section("activity", UI_ACTIVITY_KEYS)
    names = activity.strings("session_id", DEFAULT_SESSION_ID_HEADERS)
    return UIConfig(sessionIDHeaders=normalizeHeaderNames(names))


def _store(top: Section, problems: Problems) -> StoreConfig | None:
    if not top.has("store"):
        return None
    section = top.section("store", STORE_KEYS)
    path = section.string("path", "")
    reason = checkStorePath(path)
    if reason is not None:
        problems.error(reason, ("store", "path"))
    return StoreConfig(path=path)


def _upstream(section: Section, problems: Problems) -> UpstreamConfig:
    patterns = []
    for i, pattern in enumerate(section.strings("ignorePaths")):
        try:
            patterns.append(re.compile(pattern))
        except re.error as e:
            problems.error(
                f"upstream.ignorePaths: invalid regular expression {goQuote(pattern)}: {e}",
                ("upstream", "ignorePaths", i),
            )
    if not patterns:
        return UpstreamConfig()
    return UpstreamConfig(ignorePaths=tuple(patterns))


def decodeHooks(hooks: Section, names: Config, problems: Problems) -> HooksConfig:
    """
    Startup hooks; C{names} resolves the models to preload (IDs, aliases,
    legacy profile names).
    """
    onStartup = hooks.section("on_startup", ON_STARTUP_KEYS)
    preload = []
    for i, name in enumerate(onStartup.strings("preload")):
        name = name.strip()
        if not name:
            continue
        real = names.realModelName(name)
        if real is None:
            problems.warn(
                f"unknown model {goQuote(name)} is not preloaded",
                onStartup.at("preload") + (i,),
            )
            continue
        preload.append(real)
    profile = onStartup.string("profile", "").strip()
    return HooksConfig(preload=tuple(preload), profile=profile)


def checkStorePath(path: str) -> str | None:
    """
    The reason C{store.path} is unusable, or L{None}: it must be a writable
    regular file, or not exist in a writable directory.
    """
    if not path.strip():
        return "store.path must not be empty"
    try:
        os.stat(path)
    except FileNotFoundError:
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            return f"store.path: directory {directory} is not writable: no such file or directory"
        if not os.access(directory, os.W_OK):
            return f"store.path: directory {directory} is not writable: permission denied"
        return None
    except OSError as e:
        return f"store.path: {(e.strerror or str(e)).lower()}"
    if os.path.isdir(path):
        return f"store.path: {path} is a directory, not a file"
    if not os.access(path, os.W_OK):
        return f"store.path: {path} is not writable: permission denied"
    return None


def normalizeHeaderNames(names: Iterable[str]) -> tuple[str, ...]:
    """
    Trim, drop blanks, and de-duplicate case-insensitively keeping the
    first spelling.
    """
    seen: set[str] = set()
    out = []
    for name in names:
        name = name.strip()
        if not name or name.lower() in seen:
            continue
        seen.add(name.lower())
        out.append(name)
    return tuple(out)
