# -*- test-case-name: test.config.test_build -*-
"""
Typed decoding and validation: an expanded YAML tree to a L{Config}.

This is steps 12 to 14 of llama-swap's loading pipeline: decode every key
with its default, re-attach the macro declarations, then normalise and
validate in llama-swap's order.  Unlike llama-swap, which stops at the first
error, every problem is reported into the shared L{Problems} collector with
its key path, so the user sees all of them (and their lines) at once.

The keys each section knows are declared once, in L{KNOWN_KEYS}; the
unknown-key warnings and the JSON schema test both read them.
"""

from __future__ import annotations

import difflib
import os
import re
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .errors import KeyPath, Location, PathPart, Problem, Problems, formatPath
from .expanded import ExpandedTree
from .goquote import goQuote
from .limits import (
    CORS_KEYS,
    LIMITS_KEYS,
    SECURITY_KEYS,
    decodeLimits,
    decodeSecurity,
    idleOverride,
)
from .model import (
    DEFAULT_GROUP_ID,
    DEFAULT_MAX_WAIT_FOR_SWAP,
    DEFAULT_SESSION_ID_HEADERS,
    DEFAULT_UNLOAD_TIMEOUT,
    MODEL_TIMEOUTS,
    PEER_TIMEOUTS,
    PROTECTED_PARAMS,
    Capabilities,
    Compat,
    Config,
    Filters,
    FrozenDict,
    GroupConfig,
    HooksConfig,
    ModelConfig,
    PeerConfig,
    PerformanceConfig,
    ProfileConfig,
    RoutingConfig,
    SelectorConfig,
    StoreConfig,
    Timeouts,
    UIConfig,
    UpstreamConfig,
    sanitizeSetParams,
)

# --------------------------------------------------------------------------
# The keys each section knows.  Unknown keys get a warning; the JSON schema
# must list exactly these (test.config.test_schema checks it).

GLOBAL_KEYS = frozenset(
    {
        "apiKeys",
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
        "metricsMaxInMemory",
        "models",
        "peers",
        "performance",
        "profiles",
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
        "env",
        "filters",
        "healthCheckTimeout",
        "macros",
        "metadata",
        "name",
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
ROUTING_KEYS = frozenset({"router", "scheduler"})
ROUTER_KEYS = frozenset({"use", "settings"})
ROUTER_SETTINGS_KEYS = frozenset({"groups", "matrix"})
SCHEDULER_KEYS = frozenset({"use", "settings"})
SCHEDULER_SETTINGS_KEYS = frozenset({"fifo"})
FIFO_KEYS = frozenset({"priority", "maxWaitForSwap"})
HOOKS_KEYS = frozenset({"on_startup"})
ON_STARTUP_KEYS = frozenset({"preload"})
STORE_KEYS = frozenset({"path"})
UI_KEYS = frozenset({"activity"})
UI_ACTIVITY_KEYS = frozenset({"session_id"})
PERFORMANCE_KEYS = frozenset({"disabled", "every"})
UPSTREAM_KEYS = frozenset({"ignorePaths"})

KNOWN_KEYS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "global": GLOBAL_KEYS,
        "model": MODEL_KEYS,
        "model.filters": MODEL_FILTER_KEYS,
        "model.timeouts": TIMEOUT_KEYS,
        "limits": LIMITS_KEYS,
        "security": SECURITY_KEYS,
        "security.cors": CORS_KEYS,
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
    }
)

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
MODALITIES = ("text", "audio", "image")
SELECTOR_STRATEGIES = ("warm", "pin", "spillover")
COMFYUI_MODEL_ID = "comfyui_auto"
COMFYUI_MIN_CONCURRENCY = 50
MIN_PERFORMANCE_EVERY_NS = 5_000_000_000
DEFAULT_PERFORMANCE_EVERY_NS = 5_000_000_000

# --------------------------------------------------------------------------
# Go syntax: quoting, durations and URL parsing, so messages read like
# llama-swap's and the same inputs are accepted or rejected.

_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_DURATION_UNIT = re.compile(r"[^0-9.]*")


def parseGoDuration(text: str) -> int:
    """
    Parse a Go duration string (C{"5s"}, C{"1m30s"}, C{"500ms"}) into
    nanoseconds, with Go's C{time.ParseDuration} rules.

    @raise ValueError: with Go's message when C{text} is not a duration.
    """
    invalid = ValueError(f"time: invalid duration {goQuote(text)}")
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if rest == "":
        raise invalid
    total = 0
    while rest:
        if not (rest[0] == "." or "0" <= rest[0] <= "9"):
            raise invalid
        match = _DURATION_NUMBER.match(rest)
        assert match is not None
        whole, fraction = match.group(1), match.group(2) or ""
        if not whole and not fraction:
            raise invalid
        rest = rest[match.end() :]
        unitMatch = _DURATION_UNIT.match(rest)
        assert unitMatch is not None
        unitName = unitMatch.group(0)
        if not unitName:
            raise ValueError(f"time: missing unit in duration {goQuote(text)}")
        if unitName not in _DURATION_UNITS:
            raise ValueError(f"time: unknown unit {goQuote(unitName)} in duration {goQuote(text)}")
        rest = rest[len(unitName) :]
        unit = _DURATION_UNITS[unitName]
        total += int(whole or "0") * unit
        if fraction:
            total += int(fraction) * unit // 10 ** len(fraction)
        if total > 2**63 - 1:
            raise invalid
    return -total if negative else total


def _fixedPoint(value: int, digits: int) -> str:
    whole, fraction = divmod(value, 10**digits)
    if not fraction:
        return str(whole)
    return f"{whole}." + str(fraction).rjust(digits, "0").rstrip("0")


def formatGoDuration(nanoseconds: int) -> str:
    """
    Render a duration the way Go's C{Duration.String} does (C{"1m30s"},
    C{"500ms"}, C{"1h0m0s"}).
    """
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)
    if value < 1_000_000_000:
        if value < 1_000:
            return f"{sign}{value}ns"
        if value < 1_000_000:
            return sign + _fixedPoint(value, 3) + "\u00b5s"
        return sign + _fixedPoint(value, 6) + "ms"
    out = _fixedPoint(value % 60_000_000_000, 9) + "s"
    minutes = value // 60_000_000_000
    if minutes:
        out = f"{minutes % 60}m" + out
        if minutes // 60:
            out = f"{minutes // 60}h" + out
    return sign + out


_HEX = frozenset("0123456789abcdefABCDEF")
_HOST_SAFE = frozenset("-_.~!$&'()*+,;=:[]<>\"")
_USERINFO_SAFE = frozenset("-._:~!$&'()*+,;=%@")


def _unescapeError(text: str, host: bool = False) -> str | None:
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            if i + 2 >= len(text) or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
                return f"invalid URL escape {goQuote(text[i : i + 3])}"
            if host and int(text[i + 1], 16) < 8 and text[i : i + 3] != "%25":
                return f"invalid URL escape {goQuote(text[i : i + 3])}"
            i += 3
            continue
        if host and ord(char) < 0x80 and not (char.isalnum() or char in _HOST_SAFE):
            return f"invalid character {goQuote(char)} in host name"
        i += 1
    return None


def _validOptionalPort(port: str) -> bool:
    if port == "":
        return True
    return port[0] == ":" and all("0" <= c <= "9" for c in port[1:])


def _hostError(host: str) -> str | None:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            return "missing ']' in host"
        if not _validOptionalPort(host[end + 1 :]):
            return f"invalid port {goQuote(host[end + 1 :])} after host"
        return None
    colon = host.rfind(":")
    if colon != -1 and not _validOptionalPort(host[colon:]):
        return f"invalid port {goQuote(host[colon:])} after host"
    return _unescapeError(host, host=True)


def _goParse(raw: str) -> str | None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return "net/url: invalid control character in URL"
    if raw == "*":
        return None
    scheme, rest = "", raw
    for i, char in enumerate(raw):
        if char.isascii() and char.isalpha():
            continue
        if char.isascii() and (char.isdigit() or char in "+-."):
            if i == 0:
                break
            continue
        if char == ":":
            if i == 0:
                return "missing protocol scheme"
            scheme, rest = raw[:i], raw[i + 1 :]
        break
    if rest.endswith("?") and rest.count("?") == 1:
        rest = rest[:-1]
    else:
        rest = rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return None
        if ":" in rest.partition("/")[0]:
            return "first path segment in URL cannot contain colon"
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        at = authority.rfind("@")
        error = _hostError(authority[at + 1 :])
        if error:
            return error
        if at >= 0:
            userinfo = authority[:at]
            if not all(c.isalnum() or c in _USERINFO_SAFE for c in userinfo):
                return "net/url: invalid userinfo"
            error = _unescapeError(userinfo)
            if error:
                return error
    return _unescapeError(rest)


def goURLError(raw: str) -> str | None:
    """
    The error Go's C{url.Parse} reports for C{raw} (C{parse "...": ...}),
    or L{None} when Go accepts it.
    """
    base, hashSign, fragment = raw.partition("#")
    error = _goParse(base)
    if error:
        return f"parse {goQuote(base)}: {error}"
    if hashSign:
        error = _unescapeError(fragment)
        if error:
            return f"parse {goQuote(raw)}: {error}"
    return None


# --------------------------------------------------------------------------
# Decoding helpers.

_TRUE_WORDS = frozenset({"y", "yes", "on", "true"})
_FALSE_WORDS = frozenset({"n", "no", "off", "false"})


def describeValue(value: Any) -> str:
    """
    A short description of a YAML value for type errors: C{string "abcd"},
    C{integer 5}, C{a list}.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean " + ("true" if value else "false")
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        return "string " + goQuote(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _scalarText(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def suggestKey(key: str, known: Iterable[str]) -> str | None:
    """
    The known key C{key} was probably meant to be, if one is close.
    """
    known = sorted(known)

    def squash(k: str) -> str:
        return k.lower().replace("_", "").replace("-", "")

    for candidate in known:
        if squash(candidate) == squash(key):
            return candidate
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if close:
        return close[0]
    # Short keys: one swapped, dropped, added or changed letter (tll, ttll).
    for candidate in known:
        if _editDistance(squash(key), squash(candidate)) <= 1 + (len(candidate) > 6):
            return candidate
    return None


def _editDistance(a: str, b: str) -> int:
    """
    Damerau-Levenshtein distance (with adjacent transpositions).
    """
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ca != cb),
            )
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


class _Section:
    """
    One YAML mapping being decoded, with the key path it lives at.
    """

    def __init__(self, problems: Problems, data: Mapping[Any, Any], path: KeyPath) -> None:
        self.problems = problems
        self.data = data
        self.path = path

    @classmethod
    def of(
        cls,
        problems: Problems,
        value: Any,
        path: KeyPath,
        known: frozenset[str] | None,
    ) -> _Section:
        """
        Wrap C{value}, which should be a mapping (null is an empty one),
        and warn about keys not in C{known}.
        """
        if value is None:
            value = {}
        elif not isinstance(value, Mapping):
            problems.error(f"must be a mapping, got {describeValue(value)}", path)
            value = {}
        section = cls(problems, value, path)
        if known is not None:
            section.checkKeys(known)
        return section

    def checkKeys(
        self, known: frozenset[str], exempt: Callable[[str], bool] = lambda key: False
    ) -> None:
        """
        Warn about every key not in C{known} (and not C{exempt}).
        """
        for key in self.data:
            name = str(key)
            if name in known or exempt(name):
                continue
            warnUnknownKey(self.problems, self.path + (name,), known)

    def at(self, key: PathPart) -> KeyPath:
        return self.path + (key,)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def section(self, key: str, known: frozenset[str] | None) -> _Section:
        return _Section.of(self.problems, self.data.get(key), self.at(key), known)

    def mapping(self, key: str) -> Mapping[str, Any]:
        """
        A free-form mapping (metadata, setParams); keys become strings.
        """
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.error(f"must be a mapping, got {describeValue(value)}", self.at(key))
            return {}
        return {str(k): v for k, v in value.items()}

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        result = toInt(value, self.at(key), self.problems)
        return default if result is None else result

    def optionalBoolean(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return None
        return toBool(value, self.at(key), self.problems)

    def boolean(self, key: str, default: bool) -> bool:
        result = self.optionalBoolean(key)
        return default if result is None else result

    def string(self, key: str, default: str) -> str:
        value = self.data.get(key)
        if value is None:
            return default
        result = toStr(value, self.at(key), self.problems)
        return default if result is None else result

    def strings(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        if key not in self.data:
            return tuple(default)
        return toStrList(self.data[key], self.at(key), self.problems)

    def duration(self, key: str, default: int) -> int:
        """
        A Go duration string, in nanoseconds.
        """
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, str):
            try:
                return parseGoDuration(value.strip())
            except ValueError:
                pass
        self.problems.error(
            'must be a duration such as "5s", "1m30s" or "500ms", got ' + describeValue(value),
            self.at(key),
        )
        return default


def toInt(value: Any, path: KeyPath, problems: Problems) -> int | None:
    """
    C{value} as an integer, or L{None} after reporting a type error.
    Booleans are not integers; integral floats are.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    problems.error(f"must be an integer, got {describeValue(value)}", path)
    return None


def toBool(value: Any, path: KeyPath, problems: Problems) -> bool | None:
    """
    C{value} as a boolean; like yaml.v3, C{yes/no/on/off/y/n} are accepted
    (in any case) for compatibility with YAML 1.1 files.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    problems.error(f"must be a boolean, got {describeValue(value)}", path)
    return None


def toStr(value: Any, path: KeyPath, problems: Problems) -> str | None:
    """
    C{value} as a string; other scalars are taken as their text, like
    yaml.v3 does.
    """
    text = _scalarText(value)
    if text is None:
        problems.error(f"must be a string, got {describeValue(value)}", path)
    return text


def toStrList(value: Any, path: KeyPath, problems: Problems) -> tuple[str, ...]:
    """
    C{value} as a list of strings (null is an empty list; a null item is
    C{""}).
    """
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        problems.error(f"must be a list of strings, got {describeValue(value)}", path)
        return ()
    out = []
    for i, item in enumerate(value):
        if item is None:
            out.append("")
            continue
        text = toStr(item, path + (i,), problems)
        if text is not None:
            out.append(text)
    return tuple(out)


def warnUnknownKey(problems: Problems, path: KeyPath, known: Iterable[str]) -> None:
    """
    Warn that the key at C{path} is not one llamaswap knows, suggesting
    the closest known key.
    """
    key = str(path[-1])
    message = f"{formatPath(path)}: unknown key (ignored)"
    suggestion = suggestKey(key, known)
    if suggestion is not None:
        message += f"; did you mean '{suggestion}'?"
    elif len(path) == 1:
        message += "; keys starting with 'x-' are left for your own use, such as YAML anchors"
    problems.warn(message, path)


def _topLevelExempt(key: str) -> bool:
    return key.startswith(("x-", "."))


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


# --------------------------------------------------------------------------


def buildConfig(expanded: ExpandedTree, problems: Problems) -> Config | None:
    """
    Decode and validate an expanded tree.

    Every error and warning goes into C{problems}, each with its key path.

    @return: the configuration, or L{None} if any error was reported.
    """
    config = _Builder(expanded, _LaterStage(problems)).build()
    if problems.hasErrors():
        return None
    return config


class _LaterStage(Problems):
    """
    A view of the shared collector for a later loading stage: an error
    about a key an earlier stage already rejected (C{startPort: abcd} is
    reported by macro expansion too) is not reported a second time.
    """

    def __init__(self, shared: Problems) -> None:
        self.shared = shared
        self.sourceMap = shared.sourceMap
        self.rejected = {p.path for p in shared.errors}

    def error(
        self,
        message: str,
        path: Sequence[PathPart] = (),
        location: Location | None = None,
    ) -> None:
        if tuple(path) in self.rejected:
            return
        self.shared.error(message, path, location)

    def warn(
        self,
        message: str,
        path: Sequence[PathPart] = (),
        location: Location | None = None,
    ) -> None:
        self.shared.warn(message, path, location)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.shared)

    def __len__(self) -> int:
        return len(self.shared)

    @property
    def errors(self) -> list[Problem]:
        return self.shared.errors

    @property
    def warnings(self) -> list[Problem]:
        return self.shared.warnings

    def hasErrors(self) -> bool:
        return self.shared.hasErrors()


class _Builder:
    """
    The state of one L{buildConfig} run.
    """

    def __init__(self, expanded: ExpandedTree, problems: Problems) -> None:
        self.expanded = expanded
        self.problems = problems
        self.aliases: dict[str, str] = {}
        self.models: dict[str, ModelConfig] = {}
        self.legacyProfiles: dict[str, tuple[str, ...]] = {}
        self.routingValid = True
        self.allModelIDs: frozenset[str] = frozenset()

    def error(self, message: str, path: Sequence[PathPart]) -> None:
        self.problems.error(message, path)

    def warn(self, message: str, path: Sequence[PathPart]) -> None:
        self.problems.warn(message, path)

    # -- names ------------------------------------------------------------

    def realModelName(self, name: str, legacy: bool = False) -> str | None:
        """
        The model ID for a model ID or alias (or, with C{legacy}, a v1
        profile name) among the models decoded so far.
        """
        if name in self.models:
            return name
        real = self.aliases.get(name)
        if real is None and legacy:
            resolved = Config(
                models=FrozenDict(self.models),
                aliases=FrozenDict(self.aliases),
                legacyProfiles=FrozenDict(self.legacyProfiles),
            ).resolveLegacyProfile(name)
            real = None if resolved is None else resolved[1]
        return real

    # -- the whole thing --------------------------------------------------

    def build(self) -> Config:
        top = _Section.of(self.problems, self.expanded.tree, (), None)
        top.checkKeys(GLOBAL_KEYS, _topLevelExempt)

        healthCheckTimeout = max(top.integer("healthCheckTimeout", 120), 15)
        if "logRequests" in top.data:
            top.optionalBoolean("logRequests")
            self.warn("logRequests is deprecated and ignored", ("logRequests",))
        logLevel = self.logLevel(top)
        logTimeFormat = self.logTimeFormat(top)
        performance = self.performance(top.section("performance", PERFORMANCE_KEYS))

        startPort = top.integer("startPort", 5800)
        if startPort < 1:
            self.error("startPort must be greater than 1", ("startPort",))
        globalTTL = top.integer("globalTTL", 0)
        if globalTTL < 0:
            self.error("globalTTL must be >= 0", ("globalTTL",))
        unloadTimeout = top.integer("unloadTimeout", DEFAULT_UNLOAD_TIMEOUT)
        if unloadTimeout < 0:
            self.error("unloadTimeout must be >= 0", ("unloadTimeout",))
        if unloadTimeout == 0:
            unloadTimeout = DEFAULT_UNLOAD_TIMEOUT

        ui = self.ui(top.section("ui", UI_KEYS))
        store = self.store(top)
        upstream = self.upstream(top.section("upstream", UPSTREAM_KEYS))
        limits = decodeLimits(top.section("limits", LIMITS_KEYS), self.error)
        security = decodeSecurity(top.section("security", SECURITY_KEYS), self.error)

        logToStdout = top.string("logToStdout", "proxy")
        if logToStdout not in LOG_TO_STDOUT:
            self.error("logToStdout must be one of: proxy, upstream, both, none", ("logToStdout",))
        metricsMaxInMemory = top.integer("metricsMaxInMemory", 1000)
        captureBuffer = top.integer("captureBuffer", 5)
        sendLoadingState = top.boolean("sendLoadingState", False)
        includeAliasesInList = top.boolean("includeAliasesInList", False)
        apiKeys = top.strings("apiKeys")

        modelSections = self.modelSections(top.section("models", None))
        self.allModelIDs = frozenset(modelSections)
        self.aliasMap(modelSections)
        for modelID, section in modelSections.items():
            model = self.model(
                modelID,
                section,
                healthCheckTimeout=healthCheckTimeout,
                globalTTL=globalTTL,
                unloadTimeout=unloadTimeout,
                sendLoadingState=sendLoadingState,
            )
            self.models[modelID] = model
        self.shadowedAliases()

        profilesSection = top.section("profiles", None)
        self.decodeLegacyProfiles(profilesSection)

        routing = self.routing(top)
        hooks = self.hooks(top.section("hooks", HOOKS_KEYS))
        self.validateAPIKeys(apiKeys)
        peers = self.peers(top.section("peers", None))
        selectors = self.selectors(top.section("selectors", None))
        profiles = self.profiles(profilesSection)

        config = Config(
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
            macros=tuple(self.expanded.globalMacros),
            models=FrozenDict(self.models),
            aliases=FrozenDict(self.aliases),
            hooks=hooks,
            peers=FrozenDict(peers),
            routing=routing,
            profiles=FrozenDict(profiles),
            legacyProfiles=FrozenDict(self.legacyProfiles),
            selectors=FrozenDict(selectors),
            upstream=upstream,
            limits=limits,
            security=security,
        )
        self.validatePeerNamespace(config)
        self.validateSelectors(config)
        self.validateProfiles(config)
        return config

    # -- globals ----------------------------------------------------------

    def logLevel(self, top: _Section) -> str:
        raw = top.string("logLevel", "info")
        level = raw.strip().lower()
        if level in LOG_LEVELS:
            return level
        if level:
            self.warn(
                f"unknown logLevel {goQuote(raw)}, using info (valid: debug, info, warn, error)",
                ("logLevel",),
            )
        return "info"

    def logTimeFormat(self, top: _Section) -> str:
        raw = top.string("logTimeFormat", "")
        name = raw.strip().lower()
        if name in LOG_TIME_FORMATS:
            return name
        if name:
            self.warn(
                f"unknown logTimeFormat {goQuote(raw)}; log lines will have no"
                " timestamp (valid: " + ", ".join(LOG_TIME_FORMATS) + ")",
                ("logTimeFormat",),
            )
        return ""

    def performance(self, section: _Section) -> PerformanceConfig:
        disabled = section.boolean("disabled", False)
        every = section.duration("every", 0)
        if every == 0:
            every = DEFAULT_PERFORMANCE_EVERY_NS
        if every < MIN_PERFORMANCE_EVERY_NS:
            self.error(
                f"performance: every must be at least 5s, got {formatGoDuration(every)}",
                ("performance", "every"),
            )
        return PerformanceConfig(disabled=disabled, every=every / 1e9)

    def ui(self, section: _Section) -> UIConfig:
        activity = section.section("activity", UI_ACTIVITY_KEYS)
        names = activity.strings("session_id", DEFAULT_SESSION_ID_HEADERS)
        return UIConfig(sessionIDHeaders=normalizeHeaderNames(names))

    def store(self, top: _Section) -> StoreConfig | None:
        if not top.has("store"):
            return None
        section = top.section("store", STORE_KEYS)
        path = section.string("path", "")
        reason = checkStorePath(path)
        if reason is not None:
            self.error(reason, ("store", "path"))
        return StoreConfig(path=path)

    def upstream(self, section: _Section) -> UpstreamConfig:
        patterns = []
        for i, pattern in enumerate(section.strings("ignorePaths")):
            try:
                patterns.append(re.compile(pattern))
            except re.error as e:
                self.error(
                    f"upstream.ignorePaths: invalid regular expression {goQuote(pattern)}: {e}",
                    ("upstream", "ignorePaths", i),
                )
        if not patterns:
            return UpstreamConfig()
        return UpstreamConfig(ignorePaths=tuple(patterns))

    def validateAPIKeys(self, apiKeys: Sequence[str]) -> None:
        for i, key in enumerate(apiKeys):
            if key == "":
                self.error("empty api key found in apiKeys", ("apiKeys", i))
            elif " " in key:
                self.error(f"apiKeys[{i}]: api key cannot contain spaces", ("apiKeys", i))

    # -- models -----------------------------------------------------------

    def modelSections(self, models: _Section) -> dict[str, _Section]:
        sections = {}
        for key in sorted(models.data, key=str):
            modelID = str(key)
            sections[modelID] = _Section.of(
                self.problems, models.data[key], ("models", modelID), MODEL_KEYS
            )
        return dict(sorted(sections.items()))

    def aliasMap(self, sections: Mapping[str, _Section]) -> None:
        for modelID, section in sections.items():
            for i, alias in enumerate(section.strings("aliases")):
                if alias in self.aliases:
                    self.error(
                        f"duplicate alias {alias} found in model: {modelID}",
                        ("models", modelID, "aliases", i),
                    )
                    continue
                self.aliases[alias] = modelID

    def shadowedAliases(self) -> None:
        for alias, modelID in self.aliases.items():
            if alias in self.models and alias != modelID:
                self.warn(
                    f"alias {goQuote(alias)} of model {modelID} is shadowed by the"
                    " model with that ID",
                    ("models", modelID, "aliases"),
                )

    def model(
        self,
        modelID: str,
        m: _Section,
        healthCheckTimeout: int,
        globalTTL: int,
        unloadTimeout: int,
        sendLoadingState: bool,
    ) -> ModelConfig:
        path = ("models", modelID)
        port = self.expanded.ports.get(modelID)
        defaultProxy = "http://localhost:${PORT}" if port is None else f"http://localhost:{port}"

        if "healthCheckTimeout" in m.data:
            m.integer("healthCheckTimeout", 0)
            self.warn(
                "ignored: every model uses the global healthCheckTimeout",
                path + ("healthCheckTimeout",),
            )

        concurrencyLimit = m.integer("concurrencyLimit", 0)
        compatSection = m.section("compat", COMPAT_KEYS)
        ignoreWebsockets = compatSection.boolean("ignoreWebsockets", False)
        if modelID == COMFYUI_MODEL_ID:
            concurrencyLimit = max(concurrencyLimit, COMFYUI_MIN_CONCURRENCY)
            ignoreWebsockets = True

        ttl = m.integer("ttl", -1)
        if ttl == -1:
            ttl = globalTTL
        elif ttl < 0:
            self.error(f"model {modelID}: invalid TTL value {ttl}", path + ("ttl",))

        modelUnloadTimeout = m.integer("unloadTimeout", 0)
        if modelUnloadTimeout < 0:
            self.error(
                f"model {modelID}: invalid unloadTimeout value {modelUnloadTimeout}",
                path + ("unloadTimeout",),
            )
        if modelUnloadTimeout == 0:
            modelUnloadTimeout = unloadTimeout

        capabilities = self.capabilities(modelID, m.section("capabilities", CAPABILITY_KEYS))
        filters = self.modelFilters(m.section("filters", MODEL_FILTER_KEYS))
        aliases = list(m.strings("aliases"))
        for key in filters.setParamsByID:
            if key == modelID:
                continue
            keyPath = path + ("filters", "setParamsByID", key)
            if key in self.allModelIDs:
                self.error(
                    f"model {modelID} filters.setParamsByID: key '{key}'"
                    " conflicts with an existing model ID",
                    keyPath,
                )
                continue
            owner = self.aliases.get(key)
            if owner is not None:
                if owner != modelID:
                    self.error(
                        f"duplicate alias '{key}' in model {modelID}"
                        f" filters.setParamsByID, already used by model {owner}",
                        keyPath,
                    )
                continue
            self.aliases[key] = modelID
            aliases.append(key)

        proxy = m.string("proxy", defaultProxy)
        if "${" not in proxy:
            reason = goURLError(proxy)
            if reason is not None:
                self.error(f"model {modelID}: invalid proxy URL: {reason}", path + ("proxy",))

        modelSendLoadingState = m.optionalBoolean("sendLoadingState")
        return ModelConfig(
            id=modelID,
            cmd=m.string("cmd", ""),
            cmdStop=m.string("cmdStop", ""),
            proxy=proxy,
            aliases=tuple(aliases),
            env=m.strings("env"),
            checkEndpoint=m.string("checkEndpoint", "/health"),
            ttl=ttl,
            unloadTimeout=modelUnloadTimeout,
            unlisted=m.boolean("unlisted", False),
            useModelName=m.string("useModelName", ""),
            name=m.string("name", ""),
            description=m.string("description", ""),
            concurrencyLimit=concurrencyLimit,
            filters=filters,
            macros=tuple(self.expanded.modelMacros.get(modelID, ())),
            metadata=m.mapping("metadata"),
            sendLoadingState=(
                sendLoadingState if modelSendLoadingState is None else modelSendLoadingState
            ),
            timeouts=self.timeouts(m.section("timeouts", TIMEOUT_KEYS), MODEL_TIMEOUTS),
            compat=Compat(ignoreWebsockets=ignoreWebsockets),
            capabilities=capabilities,
            healthCheckTimeout=healthCheckTimeout,
            port=port,
        )

    def capabilities(self, modelID: str, c: _Section) -> Capabilities:
        inputs = c.strings("in")
        outputs = c.strings("out")
        for field, values in (("in", inputs), ("out", outputs)):
            for i, value in enumerate(values):
                if value not in MODALITIES:
                    self.error(
                        f"model {modelID}: capabilities.{field}: invalid modality"
                        f" {goQuote(value)}, must be one of: text, audio, image",
                        c.at(field) + (i,),
                    )
        context = c.integer("context", 0)
        if context < 0:
            self.error(f"model {modelID}: capabilities.context: must be >= 0", c.at("context"))
        return Capabilities(
            inputs=inputs,
            outputs=outputs,
            tools=c.boolean("tools", False),
            reranker=c.boolean("reranker", False),
            context=context,
        )

    def timeouts(self, t: _Section, defaults: Timeouts) -> Timeouts:
        return Timeouts(
            connect=t.integer("connect", defaults.connect),
            keepalive=t.integer("keepalive", defaults.keepalive),
            responseHeader=t.integer("responseHeader", defaults.responseHeader),
            tlsHandshake=t.integer("tlsHandshake", defaults.tlsHandshake),
            expectContinue=t.integer("expectContinue", defaults.expectContinue),
            idleConn=t.integer("idleConn", defaults.idleConn),
            idle=idleOverride(t.integer("idle", -1)),
        )

    def setParams(self, value: Any, path: KeyPath) -> Mapping[str, Any]:
        """
        A parameter mapping, sanitised: C{model} dropped (with a warning),
        keys sorted.
        """
        if value is None:
            return FrozenDict()
        if not isinstance(value, Mapping):
            self.error(f"must be a mapping, got {describeValue(value)}", path)
            return FrozenDict()
        params = {str(k): v for k, v in value.items()}
        for name in PROTECTED_PARAMS:
            if name in params:
                self.warn(
                    f"the {name!r} parameter is protected and is never set",
                    path + (name,),
                )
        return sanitizeSetParams(params)

    def modelFilters(self, f: _Section) -> Filters:
        stripParams = f.string("stripParams", "")
        if "strip_params" in f.data:
            legacy = f.string("strip_params", "")
            if stripParams == "":
                stripParams = legacy
            self.warn("strip_params is the legacy spelling of stripParams", f.at("strip_params"))
        byID = {
            name: self.setParams(params, f.at("setParamsByID") + (name,))
            for name, params in f.mapping("setParamsByID").items()
        }
        return Filters(
            stripParams=stripParams,
            setParams=self.setParams(f.raw("setParams"), f.at("setParams")),
            setParamsByID=byID,
        )

    def peerFilters(self, f: _Section) -> Filters:
        return Filters(
            stripParams=f.string("stripParams", ""),
            setParams=self.setParams(f.raw("setParams"), f.at("setParams")),
        )

    # -- legacy v1 profiles -----------------------------------------------

    def decodeLegacyProfiles(self, profiles: _Section) -> None:
        for key, value in profiles.data.items():
            name = str(key)
            if not isinstance(value, (list, tuple)):
                continue
            path = ("profiles", name)
            if not name.strip():
                self.error("profiles: profile names cannot be empty", path)
            members: list[str] = []
            for i, member in enumerate(toStrList(value, path, self.problems)):
                real = self.realModelName(member)
                if real is None:
                    self.error(
                        f"profiles.{name}[{i}] references unknown model {goQuote(member)}",
                        path + (i,),
                    )
                elif real not in members:
                    members.append(real)
            self.warn(
                f"profiles.{name}: the legacy list form of profiles is deprecated"
                " (llama-swap no longer accepts it); to run models together use a"
                " group with swap: false",
                path,
            )
            self.legacyProfiles[name] = tuple(members)

    # -- routing ----------------------------------------------------------

    def routing(self, top: _Section) -> RoutingConfig:
        routingSection = top.section("routing", ROUTING_KEYS)
        router = routingSection.section("router", ROUTER_KEYS)
        use = router.string("use", "")
        settings = router.section("settings", ROUTER_SETTINGS_KEYS)

        legacyGroups = top.raw("groups")
        legacyMatrix = top.raw("matrix")
        hasTopLevel = legacyMatrix is not None or _nonEmpty(legacyGroups)
        hasRouting = (
            use != "" or settings.raw("matrix") is not None or _nonEmpty(settings.raw("groups"))
        )

        groupsValue: Any = None
        groupsPath: KeyPath = ("groups",)
        matrixValue: Any = None
        matrixPath: KeyPath = ("matrix",)
        if hasTopLevel and hasRouting:
            self.routingValid = False
            self.error(
                "config uses both the legacy top-level 'matrix'/'groups' keys and the"
                " new 'routing.router' block; please migrate the top-level keys into"
                " 'routing.router' and remove them",
                ("routing", "router"),
            )
        if hasTopLevel:
            groupsValue, matrixValue = legacyGroups, legacyMatrix
            if matrixValue is not None and _nonEmpty(groupsValue):
                self.routingValid = False
                self.error("config cannot use both 'groups' and 'matrix'", ("matrix",))
                matrixValue = None
        else:
            if use == "matrix":
                matrixValue = settings.raw("matrix")
                matrixPath = ("routing", "router", "settings", "matrix")
                if matrixValue is None:
                    self.routingValid = False
                    self.error(
                        "routing.router.use is 'matrix' but routing.router.settings.matrix"
                        " is not set",
                        ("routing", "router", "use"),
                    )
            elif use in ("group", ""):
                groupsValue = settings.raw("groups")
                groupsPath = ("routing", "router", "settings", "groups")
            else:
                self.routingValid = False
                self.error(
                    f"routing.router.use: unknown router {goQuote(use)} (valid: group, matrix)",
                    ("routing", "router", "use"),
                )
            if use != "matrix" and settings.raw("matrix") is not None:
                self.warn(
                    "ignored: routing.router.use is not 'matrix'",
                    ("routing", "router", "settings", "matrix"),
                )
        # Type-check whichever spellings were given, even if inactive.
        for value, path in (
            (legacyGroups, ("groups",)),
            (settings.raw("groups"), ("routing", "router", "settings", "groups")),
        ):
            if value is not None and not isinstance(value, Mapping):
                self.error(f"must be a mapping, got {describeValue(value)}", path)

        matrix = None
        groups: dict[str, GroupConfig] = {}
        if matrixValue is not None:
            matrix = self.matrix(matrixValue, matrixPath)
        else:
            groups = self.groups(groupsValue, groupsPath)

        scheduler = routingSection.section("scheduler", SCHEDULER_KEYS)
        schedulerUse = scheduler.string("use", "") or "fifo"
        if schedulerUse != "fifo":
            self.error(
                f"routing.scheduler.use: unknown scheduler {goQuote(schedulerUse)} (valid: fifo)",
                ("routing", "scheduler", "use"),
            )
        fifo = scheduler.section("settings", SCHEDULER_SETTINGS_KEYS).section("fifo", FIFO_KEYS)
        priority = self.priority(fifo)
        maxWaitForSwap = fifo.integer("maxWaitForSwap", DEFAULT_MAX_WAIT_FOR_SWAP)
        if maxWaitForSwap < 0:
            self.error(
                "routing.scheduler.settings.fifo.maxWaitForSwap must be >= 0",
                fifo.at("maxWaitForSwap"),
            )
        return RoutingConfig(
            use="matrix" if matrixValue is not None else "group",
            groups=FrozenDict(groups),
            matrix=matrix,
            scheduler="fifo",
            priority=FrozenDict(priority),
            maxWaitForSwap=maxWaitForSwap,
        )

    def matrix(self, value: Any, path: KeyPath) -> Any:
        if not isinstance(value, Mapping):
            self.routingValid = False
            self.error(f"must be a mapping, got {describeValue(value)}", path)
            return None
        _Section(self.problems, value, path).checkKeys(MATRIX_KEYS)
        try:
            from .matrixdsl import compileMatrix
        except ImportError:
            self.routingValid = False
            self.error("matrix: the matrix router is not available", path)
            return None
        program = compileMatrix(value, tuple(self.models), self.problems, path)
        if program is None:
            self.routingValid = False
        return program

    def groups(self, value: Any, path: KeyPath) -> dict[str, GroupConfig]:
        groups: dict[str, GroupConfig] = {}
        if isinstance(value, Mapping):
            for key, body in value.items():
                groupID = str(key)
                groupPath = path + (groupID,)
                g = _Section.of(self.problems, body, groupPath, GROUP_KEYS)
                if groupID == DEFAULT_GROUP_ID:
                    self.warn(
                        f"the group name {DEFAULT_GROUP_ID} is reserved; this definition"
                        " is replaced by the automatic group of ungrouped models",
                        groupPath,
                    )
                    continue
                members = self.groupMembers(groupID, g)
                groups[groupID] = GroupConfig(
                    id=groupID,
                    swap=g.boolean("swap", True),
                    exclusive=g.boolean("exclusive", True),
                    persistent=g.boolean("persistent", False),
                    members=members,
                )

        memberOf: dict[str, str] = {}
        for groupID, group in groups.items():
            seen: set[str] = set()
            for i, member in enumerate(group.members):
                memberPath = path + (groupID, "members", i)
                if member in seen:
                    self.routingValid = False
                    self.error(
                        f"duplicate model member {member} found in group: {groupID}",
                        memberPath,
                    )
                    continue
                seen.add(member)
                if member in memberOf:
                    self.routingValid = False
                    self.error(
                        f"model member {member} is used in multiple groups:"
                        f" {memberOf[member]} and {groupID}",
                        memberPath,
                    )
                    continue
                memberOf[member] = groupID

        orphans = tuple(sorted(m for m in self.models if m not in memberOf))
        groups[DEFAULT_GROUP_ID] = GroupConfig(id=DEFAULT_GROUP_ID, members=orphans)
        return groups

    def groupMembers(self, groupID: str, g: _Section) -> tuple[str, ...]:
        members = []
        for i, member in enumerate(g.strings("members")):
            memberPath = g.at("members") + (i,)
            if member in self.models:
                members.append(member)
                continue
            real = self.aliases.get(member)
            if real is None:
                self.routingValid = False
                self.error(f"no model config for {goQuote(member)}", memberPath)
                continue
            self.warn(
                f"group member {goQuote(member)} is an alias of model {goQuote(real)};"
                " the model ID is used",
                memberPath,
            )
            members.append(real)
        return tuple(members)

    def priority(self, fifo: _Section) -> dict[str, int]:
        explicit: dict[str, int] = {}
        viaAlias: dict[str, int] = {}
        for name, value in fifo.mapping("priority").items():
            keyPath = fifo.at("priority") + (name,)
            level = toInt(value, keyPath, self.problems) if value is not None else 0
            real = self.realModelName(name, legacy=True)
            if real is None:
                self.error(
                    "routing.scheduler.settings.fifo.priority references unknown model "
                    + goQuote(name),
                    keyPath,
                )
                continue
            if level is None:
                continue
            if real == name:
                explicit[real] = level
            else:
                viaAlias.setdefault(real, level)
        return {**viaAlias, **explicit}

    # -- hooks ------------------------------------------------------------

    def hooks(self, hooks: _Section) -> HooksConfig:
        onStartup = hooks.section("on_startup", ON_STARTUP_KEYS)
        preload = []
        for i, name in enumerate(onStartup.strings("preload")):
            name = name.strip()
            if not name:
                continue
            real = self.realModelName(name, legacy=True)
            if real is None:
                self.warn(
                    f"unknown model {goQuote(name)} is not preloaded",
                    onStartup.at("preload") + (i,),
                )
                continue
            preload.append(real)
        return HooksConfig(preload=tuple(preload))

    # -- peers ------------------------------------------------------------

    def peers(self, peers: _Section) -> dict[str, PeerConfig]:
        out = {}
        for key in sorted(peers.data, key=str):
            peerID = str(key)
            path = ("peers", peerID)
            p = _Section.of(self.problems, peers.data[key], path, PEER_KEYS)
            proxy = p.string("proxy", "")
            if proxy == "":
                self.error("proxy is required", path + ("proxy",))
            else:
                reason = goURLError(proxy)
                if reason is not None:
                    self.error(f"invalid peer proxy URL ({proxy}): {reason}", path + ("proxy",))
            models = p.strings("models")
            if not models:
                self.error("peer models can not be empty", path + ("models",))
            out[peerID] = PeerConfig(
                id=peerID,
                proxy=proxy,
                models=tuple(dict.fromkeys(models)),
                apiKey=p.string("apiKey", ""),
                filters=self.peerFilters(p.section("filters", PEER_FILTER_KEYS)),
                timeouts=self.timeouts(p.section("timeouts", TIMEOUT_KEYS), PEER_TIMEOUTS),
            )
        return out

    def validatePeerNamespace(self, config: Config) -> None:
        owners: dict[str, tuple[str, str]] = {}
        for peerID, peer in sorted(config.peers.items()):
            for modelID in peer.models:
                fqn = peer.fqn(modelID)
                if fqn in owners:
                    otherPeer, otherModel = owners[fqn]
                    self.error(
                        f"peer model name {goQuote(fqn)} is ambiguous between"
                        f" peers.{otherPeer} model {goQuote(otherModel)} and"
                        f" peers.{peerID} model {goQuote(modelID)}",
                        ("peers", peerID, "models"),
                    )
                    continue
                owners[fqn] = (peerID, modelID)
        suffix = "conflicts with fully qualified peer model name"
        for fqn in sorted(owners):
            if fqn in config.models:
                self.error(f"model ID {goQuote(fqn)} {suffix}", ("models", fqn))
            for modelID, model in config.models.items():
                if fqn in model.aliases:
                    self.error(
                        f"model {modelID} alias {goQuote(fqn)} {suffix}",
                        ("models", modelID, "aliases"),
                    )
            if fqn in config.selectors:
                self.error(f"selector ID {goQuote(fqn)} {suffix}", ("selectors", fqn))
            for profileID, profile in config.profiles.items():
                if fqn in profile.pins:
                    self.error(
                        f"profile {profileID} pin {goQuote(fqn)} {suffix}",
                        ("profiles", profileID, "pins", fqn),
                    )
            legacy = config.resolveLegacyProfile(fqn)
            if legacy is not None:
                self.error(
                    f"profile {legacy[0]} model name {goQuote(fqn)} {suffix}",
                    ("profiles", legacy[0]),
                )

    # -- selectors --------------------------------------------------------

    def selectors(self, selectors: _Section) -> dict[str, SelectorConfig]:
        out = {}
        for key, value in selectors.data.items():
            selectorID = str(key)
            s = _Section.of(self.problems, value, ("selectors", selectorID), SELECTOR_KEYS)
            settings = s.section("settings", SELECTOR_SETTINGS_KEYS)
            out[selectorID] = SelectorConfig(
                id=selectorID,
                strategy=s.string("strategy", ""),
                targets=s.strings("targets"),
                spillover=settings.integer("spillover", 1),
                name=s.string("name", ""),
                description=s.string("description", ""),
                unlisted=s.boolean("unlisted", False),
                metadata=s.mapping("metadata"),
            )
        return out

    def validateSelectors(self, config: Config) -> None:
        for selectorID, selector in config.selectors.items():
            path = ("selectors", selectorID)
            if not selectorID.strip():
                self.error("selectors: selector names cannot be empty", path)
                continue
            if selectorID in config.models:
                self.error(
                    f"selectors.{selectorID}: name conflicts with model ID {goQuote(selectorID)}",
                    path,
                )
            elif selectorID in config.aliases:
                self.error(
                    f"selectors.{selectorID}: name conflicts with model alias"
                    f" {goQuote(selectorID)}",
                    path,
                )
            strategy = selector.strategy
            if strategy == "":
                self.error(f"selectors.{selectorID}.strategy is required", path)
                continue
            if strategy not in SELECTOR_STRATEGIES:
                self.error(
                    f"selectors.{selectorID}.strategy: unknown strategy {goQuote(strategy)}"
                    " (valid: warm, pin, spillover)",
                    path + ("strategy",),
                )
                continue
            if not selector.targets:
                self.error(
                    f"selectors.{selectorID}.targets must contain at least one entry",
                    path + ("targets",),
                )
                continue
            resolved: list[tuple[str, bool]] = []
            targetsOK = True
            for i, target in enumerate(selector.targets):
                targetPath = path + ("targets", i)
                if target in config.selectors:
                    targetsOK = False
                    self.error(
                        f"selectors.{selectorID}.targets[{i}] references selector"
                        f" {goQuote(target)}; selector chaining is not supported",
                        targetPath,
                    )
                    continue
                local = config.realModelName(target)
                peer = None if local is not None else config.resolvePeerModel(target)
                if local is None and peer is None:
                    targetsOK = False
                    self.error(
                        f"selectors.{selectorID}.targets[{i}] references unknown model"
                        f" {goQuote(target)}",
                        targetPath,
                    )
                    continue
                if strategy == "warm" and local is None:
                    targetsOK = False
                    self.error(
                        f"selectors.{selectorID}.targets[{i}] must resolve to a local"
                        f' model for strategy "warm"',
                        targetPath,
                    )
                    continue
                if local is not None:
                    resolved.append((local, True))
                else:
                    assert peer is not None
                    resolved.append((config.peers[peer[0]].fqn(peer[1]), False))
            if strategy != "spillover":
                continue
            if selector.spillover < 1:
                self.error(
                    f"selectors.{selectorID}.settings.spillover must be >= 1",
                    path + ("settings", "spillover"),
                )
            seen: set[str] = set()
            for name, _ in resolved:
                if name in seen:
                    targetsOK = False
                    self.error(
                        f"selectors.{selectorID}.targets contains duplicate resolved model"
                        f" {goQuote(name)}",
                        path + ("targets",),
                    )
                seen.add(name)
            if targetsOK and self.routingValid:
                self.spilloverCoexistence(
                    config, selectorID, [name for name, local in resolved if local]
                )

    def spilloverCoexistence(self, config: Config, selectorID: str, targets: Sequence[str]) -> None:
        if len(targets) <= 1:
            return
        path = ("selectors", selectorID, "targets")
        routing = config.routing
        if routing.use == "matrix":
            if routing.matrix is None or not routing.matrix.canContainAll(targets):
                self.error(
                    f"selectors.{selectorID}.targets must all appear together in one"
                    " expanded matrix set",
                    path,
                )
            return
        first = config.groupOf(targets[0])
        if first is None:
            self.error(
                f"selectors.{selectorID} target {goQuote(targets[0])} is not in a routing group",
                path,
            )
            return
        if first.swap:
            self.error(
                f"selectors.{selectorID} spillover targets must share a group with swap: false",
                path,
            )
            return
        for target in targets[1:]:
            if target not in first.members:
                self.error(
                    f"selectors.{selectorID} spillover targets must share one routing group",
                    path,
                )
                return

    # -- profiles ---------------------------------------------------------

    def profiles(self, profiles: _Section) -> dict[str, ProfileConfig]:
        out = {}
        for key, value in profiles.data.items():
            name = str(key)
            path = ("profiles", name)
            if isinstance(value, (list, tuple)):
                continue
            if value is not None and not isinstance(value, Mapping):
                self.error(
                    "profile must be a mapping with description and pins (or, in the"
                    " legacy form, a list of model IDs), got " + describeValue(value),
                    path,
                )
                continue
            p = _Section.of(self.problems, value, path, PROFILE_KEYS)
            pins = {}
            for pin, target in p.mapping("pins").items():
                if target is None:
                    pins[pin] = ""
                    continue
                text = toStr(target, path + ("pins", pin), self.problems)
                if text is not None:
                    pins[pin] = text
            out[name] = ProfileConfig(
                name=name, description=p.string("description", ""), pins=FrozenDict(pins)
            )
        return out

    def validateProfiles(self, config: Config) -> None:
        for name, profile in config.profiles.items():
            path = ("profiles", name)
            if not name.strip():
                self.error("profiles: profile names cannot be empty", path)
                continue
            if not profile.pins:
                self.error(f"profiles.{name}.pins must contain at least one entry", path)
                continue
            for pin, target in profile.pins.items():
                pinPath = path + ("pins", pin)
                if not pin.strip():
                    self.error(f"profiles.{name}.pins: pin names cannot be empty", pinPath)
                    continue
                if target == "":
                    continue
                if target in config.selectors:
                    continue
                if config.resolveBaseModel(target) is None:
                    self.error(
                        f"profiles.{name}.pins.{pin} references unknown model {goQuote(target)}",
                        pinPath,
                    )


def _nonEmpty(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) > 0


__all__ = [
    "KNOWN_KEYS",
    "buildConfig",
    "checkStorePath",
    "describeValue",
    "formatGoDuration",
    "goQuote",
    "goURLError",
    "normalizeHeaderNames",
    "parseGoDuration",
    "suggestKey",
]
