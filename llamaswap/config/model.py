# -*- test-case-name: test.config.test_model,test.config.test_build -*-
"""
The typed, immutable configuration that the rest of llamaswap reads.

L{llamaswap.config.build.buildConfig} produces a L{Config} from an expanded
YAML tree; nothing here parses or validates.  Every collection is a tuple or
a L{FrozenDict} so a loaded configuration can be shared freely between the
router, the processes and the HTTP layer.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping, NoReturn, TypeVar
from urllib.parse import SplitResult, urlsplit

from attrs import field, frozen

from .expanded import MacroList
from .limits import LimitsConfig, SecurityConfig
from .redact import redactCommand

K = TypeVar("K")
V = TypeVar("V")

DEFAULT_GROUP_ID = "(default)"
COMFYUI_MODEL_ID = "comfyui_auto"
DEFAULT_CONCURRENCY_LIMIT = 10
DEFAULT_UNLOAD_TIMEOUT = 10
DEFAULT_MAX_WAIT_FOR_SWAP = 30
DEFAULT_SESSION_ID_HEADERS = ("X-Session-ID", "X-Litellm-Session-Id")
DEFAULT_IGNORE_PATHS_PATTERN = r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$"
PROTECTED_PARAMS = ("model",)
LEGACY_PROFILE_SEPARATORS = ("/", ":")


class FrozenDict(dict[K, V]):
    """
    A dict that refuses mutation.

    It stays a real C{dict} so that C{json.dumps} serialises it (parameters
    injected into request bodies, metadata in listings), and it is hashable
    when its values are, so frozen attrs classes holding it stay hashable.
    """

    def _immutable(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("FrozenDict is immutable")

    __setitem__ = _immutable
    __delitem__ = _immutable
    __ior__ = _immutable  # type: ignore[assignment]
    clear = _immutable
    pop = _immutable
    popitem = _immutable
    setdefault = _immutable
    update = _immutable

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"

    def __copy__(self) -> FrozenDict[K, V]:
        return self

    def __deepcopy__(self, memo: object) -> FrozenDict[K, V]:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


EMPTY: FrozenDict[Any, Any] = FrozenDict()


def freeze(value: Any) -> Any:
    """
    A deeply immutable copy of plain YAML data: mappings become
    L{FrozenDict} (keys as strings, source order kept), lists become tuples.
    """
    if isinstance(value, Mapping):
        return FrozenDict((str(k), freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """
    A mutable deep copy of frozen data (for injecting into a request body).
    """
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


@frozen
class Timeouts:
    """
    Timeouts, in seconds, for the HTTP connections to one upstream; 0 means
    no timeout.
    """

    connect: int = 30
    keepalive: int = 30
    responseHeader: int = 0
    tlsHandshake: int = 10
    expectContinue: int = 1
    idleConn: int = 90
    #: Seconds without a byte from the upstream before a relay is cut;
    #: L{None}: C{limits.upstreamIdleTimeout}; 0: never.
    idle: int | None = None


MODEL_TIMEOUTS = Timeouts()
PEER_TIMEOUTS = Timeouts(responseHeader=60)


@frozen
class Filters:
    """
    Request-body rewrites for one model or peer.

    @ivar stripParams: the raw comma-separated list as configured.
    @ivar setParams: parameters forced into every JSON body; C{model}
        already removed, keys in sorted order.
    @ivar setParamsByID: requested name to the parameters forced when that
        name was requested (models only); each inner mapping is sanitised
        like C{setParams}.
    """

    stripParams: str = ""
    setParams: Mapping[str, Any] = field(factory=FrozenDict, converter=freeze)
    setParamsByID: Mapping[str, Mapping[str, Any]] = field(factory=FrozenDict, converter=freeze)

    @property
    def sanitizedStripParams(self) -> tuple[str, ...]:
        """
        The parameters to remove: split on commas, trimmed, blanks and
        C{model} dropped, de-duplicated and sorted.
        """
        return sanitizeStripParams(self.stripParams)

    def paramsForID(self, requested: str) -> Mapping[str, Any] | None:
        """
        The C{setParamsByID} parameters for the requested name, if any.
        """
        return self.setParamsByID.get(requested)


@functools.lru_cache(maxsize=256)
def sanitizeStripParams(raw: str) -> tuple[str, ...]:
    """
    Split a C{stripParams} string into the sorted, unique parameter names
    to remove, never including the protected C{model}.
    """
    names = {p.strip() for p in raw.split(",")}
    names -= {""}
    names -= set(PROTECTED_PARAMS)
    return tuple(sorted(names))


def sanitizeSetParams(params: Mapping[str, Any]) -> FrozenDict[str, Any]:
    """
    C{params} without the protected C{model} key, keys sorted.
    """
    return FrozenDict((k, freeze(params[k])) for k in sorted(params) if k not in PROTECTED_PARAMS)


@frozen
class Capabilities:
    """
    What a model can do, advertised in listings.

    @ivar inputs: input modalities (C{capabilities.in}).
    @ivar outputs: output modalities (C{capabilities.out}).
    """

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    tools: bool = False
    reranker: bool = False
    context: int = 0

    def isEmpty(self) -> bool:
        """
        Whether nothing was configured (every field at its zero value).
        """
        return self == Capabilities()


@frozen
class Compat:
    """
    Compatibility switches for one model.
    """

    ignoreWebsockets: bool = False


@frozen
class ModelConfig:
    """
    One local model (C{models.<id>}), fully defaulted.

    @ivar id: the model ID.
    @ivar cmd: the command line as a string (see
        L{llamaswap.config.cmdline.splitCommand}); macros expanded.
    @ivar cmdStop: the stop command; may still hold C{${PID}}.
    @ivar aliases: explicit aliases, then the automatic aliases from
        C{filters.setParamsByID} keys.
    @ivar ttl: seconds of idleness before unloading, C{globalTTL} applied;
        0 means never.
    @ivar unloadTimeout: graceful stop timeout for unload/TTL, global
        default applied.
    @ivar concurrencyLimit: as configured (after the C{comfyui_auto} rule);
        see L{effectiveConcurrencyLimit}.
    @ivar sendLoadingState: the global value applied when unset.
    @ivar healthCheckTimeout: always the global value.
    @ivar macros: this model's own macro declarations, unexpanded.
    @ivar port: the port allocated for C{${PORT}}, if the command used it.
    @ivar promptCache: save and restore llama-server's slots across
        swaps (the global C{promptCache} applied when unset).
    @ivar memory: C{memory} in bytes, if configured.
    @ivar devices: the budget devices it uses (empty: all).
    @ivar estimatedMemory: the estimate from its GGUF file (see
        L{llamaswap.config.ggufsize}), if it loads one.
    """

    id: str
    cmd: str = ""
    cmdStop: str = ""
    proxy: str = ""
    aliases: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    checkEndpoint: str = "/health"
    ttl: int = 0
    unloadTimeout: int = DEFAULT_UNLOAD_TIMEOUT
    unlisted: bool = False
    useModelName: str = ""
    name: str = ""
    description: str = ""
    concurrencyLimit: int = 0
    filters: Filters = Filters()
    macros: MacroList = ()
    metadata: Mapping[str, Any] = field(factory=FrozenDict, converter=freeze)
    sendLoadingState: bool = False
    timeouts: Timeouts = MODEL_TIMEOUTS
    compat: Compat = Compat()
    capabilities: Capabilities = Capabilities()
    healthCheckTimeout: int = 120
    port: int | None = None
    promptCache: bool = False
    memory: int | None = None
    devices: tuple[str, ...] = ()
    estimatedMemory: int | None = None

    @property
    def memoryNeed(self) -> int | None:
        """
        The bytes the memory budget charges: C{memory} if configured, else
        the estimate from its GGUF file, else L{None} (unknown).
        """
        return self.memory if self.memory is not None else self.estimatedMemory

    @property
    def effectiveConcurrencyLimit(self) -> int:
        """
        The admission cap the scheduler uses: 0 or negative means 10.
        """
        if self.concurrencyLimit > 0:
            return self.concurrencyLimit
        return DEFAULT_CONCURRENCY_LIMIT

    @property
    def proxyURL(self) -> SplitResult:
        """
        L{proxy} split into its parts.
        """
        return urlsplit(self.proxy)

    @property
    def healthCheckDisabled(self) -> bool:
        """
        Whether C{checkEndpoint} is C{none}: no health polling.
        """
        return self.checkEndpoint.strip() == "none"


@frozen
class PeerConfig:
    """
    A remote llama-swap (or OpenAI-compatible server), C{peers.<id>}.

    @ivar models: the model IDs it serves, duplicates removed, in order.
    """

    id: str
    proxy: str
    models: tuple[str, ...]
    apiKey: str = ""
    filters: Filters = Filters()
    timeouts: Timeouts = PEER_TIMEOUTS

    @property
    def proxyURL(self) -> SplitResult:
        """
        L{proxy} split into its parts.
        """
        return urlsplit(self.proxy)

    def fqn(self, modelID: str) -> str:
        """
        The fully-qualified name of one of this peer's models.
        """
        return peerModelFQN(self.id, modelID)


def peerModelFQN(peerID: str, modelID: str) -> str:
    """
    C{<peerID>/<modelID>}; both parts may themselves contain slashes.
    """
    return f"{peerID}/{modelID}"


@frozen
class GroupConfig:
    """
    A group of models for the group router.
    """

    id: str
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False
    members: tuple[str, ...] = ()


@frozen
class RoutingConfig:
    """
    The normalised routing configuration, whichever spelling was used.

    @ivar use: C{"group"} or C{"matrix"}.
    @ivar groups: group ID to group, including C{(default)}; empty when the
        matrix router is in use.
    @ivar matrix: the compiled matrix program, or L{None}.
    @ivar scheduler: always C{"fifo"}.
    @ivar priority: model ID to FIFO priority (aliases resolved); models not
        listed have priority 0.
    @ivar maxWaitForSwap: seconds a queued swap may wait behind traffic to a
        running model before that traffic is held back.
    @ivar swapOverlap: C{"auto"} (start a swap's target while the models it
        evicts exit, when provably safe: see L{llamaswap.routing.overlap})
        or C{"off"}.
    """

    use: str = "group"
    groups: Mapping[str, GroupConfig] = field(factory=FrozenDict)
    matrix: Any = None
    scheduler: str = "fifo"
    priority: Mapping[str, int] = field(factory=FrozenDict)
    maxWaitForSwap: int = DEFAULT_MAX_WAIT_FOR_SWAP
    swapOverlap: str = "auto"

    def priorityOf(self, modelID: str) -> int:
        """
        The FIFO priority of a model ID (0 unless configured).
        """
        return self.priority.get(modelID, 0)


@frozen
class ProfileConfig:
    """
    A runtime-selectable set of name rewrites (C{profiles.<name>}).

    @ivar pins: requested name to target; C{""} disables that name.
    """

    name: str
    description: str = ""
    pins: Mapping[str, str] = field(factory=FrozenDict)


@frozen
class SelectorConfig:
    """
    A virtual model name resolved per request (C{selectors.<id>}).

    @ivar spillover: C{settings.spillover}, used by the C{spillover}
        strategy.
    """

    id: str
    strategy: str
    targets: tuple[str, ...]
    spillover: int = 1
    name: str = ""
    description: str = ""
    unlisted: bool = False
    metadata: Mapping[str, Any] = field(factory=FrozenDict, converter=freeze)


@frozen
class StoreConfig:
    """
    Where activity is persisted.
    """

    path: str


#: The default cap on the prompt cache's files: 4 GiB.
DEFAULT_PROMPT_CACHE_MAX_BYTES = 4 * 2**30
#: The default bound, in seconds, on saving or restoring a model's slots.
DEFAULT_PROMPT_CACHE_TIMEOUT = 60


@frozen
class PromptCacheConfig:
    """
    The prompt cache (save llama-server slots across swaps).

    @ivar enabled: the default of every model's C{promptCache}.
    @ivar directory: where slot files go; C{""} for the default under
        llamaswap's state directory.
    @ivar maxBytes: the cap on their total size.
    @ivar timeout: seconds a save or a restore may take.
    """

    enabled: bool = False
    directory: str = ""
    maxBytes: int = DEFAULT_PROMPT_CACHE_MAX_BYTES
    timeout: int = DEFAULT_PROMPT_CACHE_TIMEOUT


@frozen
class PerformanceConfig:
    """
    System performance sampling.

    @ivar every: sampling period in seconds (at least 5).
    """

    disabled: bool = False
    every: float = 5.0


@frozen
class UIConfig:
    """
    Settings of the web UI.

    @ivar sessionIDHeaders: request headers that carry a session ID
        (C{ui.activity.session_id}), normalised.
    """

    sessionIDHeaders: tuple[str, ...] = DEFAULT_SESSION_ID_HEADERS


def _defaultIgnorePaths() -> tuple[re.Pattern[str], ...]:
    return (re.compile(DEFAULT_IGNORE_PATHS_PATTERN),)


@frozen
class UpstreamConfig:
    """
    Behaviour of C{/upstream/<model>/<path>}.

    @ivar ignorePaths: compiled patterns; a matching path never triggers a
        swap.
    """

    ignorePaths: tuple[re.Pattern[str], ...] = field(factory=_defaultIgnorePaths)

    def isIgnored(self, path: str) -> bool:
        """
        Whether C{path} matches (anywhere, like Go's C{MatchString}) one of
        the patterns.
        """
        return any(p.search(path) for p in self.ignorePaths)


@frozen
class HooksConfig:
    """
    Startup hooks.

    @ivar preload: model IDs to start at startup (aliases resolved, unknown
        names dropped).
    @ivar profile: the profile (C{profiles.<name>}) to activate at startup
        and after each reload, or C{""} for none.
    """

    preload: tuple[str, ...] = ()
    profile: str = ""


#: The command template of a discovered model (C{modelsDir.cmd}).
DEFAULT_MODELS_DIR_CMD = "llama-server --port ${PORT} --model ${MODEL_PATH}"


@frozen
class MemoryConfig:
    """
    The memory budget (C{memoryBudget}, C{memoryReserve}).

    @ivar budget: device to bytes (one pool is
        L{llamaswap.routing.memory.POOL}); empty when there is no budget.
    @ivar auto: whether the budget was detected (C{memoryBudget: auto}).
    @ivar reserve: bytes kept back from a detected budget, per device
        (default 1 GiB).
    """

    budget: Mapping[str, int] = field(factory=FrozenDict, converter=freeze)
    auto: bool = False
    reserve: int = 1024**3

    @property
    def enabled(self) -> bool:
        """
        Whether models are scheduled by memory.
        """
        return bool(self.budget) or self.auto


@frozen
class RequestTTLConfig:
    """
    Per-request keep-alive (C{requestTTL}): a request's C{ttl} or
    C{keep_alive} sets its model's idle timeout.

    @ivar enabled: whether the fields are honoured (otherwise they are
        passed upstream untouched).
    @ivar max: the longest idle timeout a request may set, in seconds
        (C{0}: no cap; "never unload" is capped too).
    """

    enabled: bool = True
    max: int = 0


@frozen
class ModelsDirConfig:
    """
    A folder of C{*.gguf} models served without configuration
    (C{modelsDir}, C{--models-dir}).

    @ivar watch: whether files added to or removed from the folder are
        noticed without a restart (L{llamaswap.modelswatch}).
    """

    path: str
    cmd: str = DEFAULT_MODELS_DIR_CMD
    watch: bool = True


#: The scopes a key may hold (see L{APIKey}).
SCOPES = ("inference", "monitor", "admin")
ALL_SCOPES = frozenset(SCOPES)
#: Twelve hours, in seconds: how long a UI login lasts by default.
DEFAULT_SESSION_TTL = 12 * 60 * 60


@frozen
class APIKey:
    """
    One entry of C{apiKeys}.

    @ivar key: the secret (never shown: left out of C{repr}).
    @ivar name: what labels the key's requests (activity, events, metrics,
        the UI); a plain string key is named C{key-<n>} by its position.
    @ivar scopes: a subset of L{SCOPES}; a plain string key has them all.
    @ivar models: the names (IDs, aliases, C{fnmatch} globs) the key may
        use for inference; L{None} for every model.
    @ivar concurrencyLimit: most requests in flight at once with this key
        (0: no limit).
    """

    key: str = field(repr=False)
    name: str
    scopes: frozenset[str] = ALL_SCOPES
    models: tuple[str, ...] | None = None
    concurrencyLimit: int = 0


def toAPIKeys(entries: Any) -> tuple[APIKey, ...]:
    """
    C{entries} as L{APIKey}s: a plain string is a full-access key named by
    its position (C{key-1}, ...), as in llama-swap's string-only list.
    """
    return tuple(
        APIKey(key=e, name=f"key-{i + 1}") if isinstance(e, str) else e
        for i, e in enumerate(entries)
    )


@frozen
class AuthConfig:
    """
    The C{auth} section: UI login sessions.

    @ivar sessionSecret: signs session cookies; empty for a random secret
        per process (sessions then end with the process).
    @ivar sessionTTL: seconds a login lasts.
    """

    sessionSecret: str = field(default="", repr=False)
    sessionTTL: int = DEFAULT_SESSION_TTL


@frozen
class Config:
    """
    A complete, validated configuration.

    @ivar logLevel: one of C{debug}, C{info}, C{warn}, C{error}.
    @ivar logTimeFormat: a Go time layout name (lower case) or C{""}.
    @ivar models: model ID to model, sorted by ID.
    @ivar aliases: alias to model ID (explicit and C{setParamsByID} ones).
    @ivar legacyProfiles: llama-swap v1 list-form profiles: name to the
        model IDs that run together.
    @ivar macros: the global macro declarations, unexpanded.
    @ivar apiKeys: the keys clients present (empty: no authentication);
        plain strings given here are converted by L{toAPIKeys}.
    @ivar auth: UI login sessions.
    """

    healthCheckTimeout: int = 120
    logLevel: str = "info"
    logTimeFormat: str = ""
    logToStdout: str = "proxy"
    metricsMaxInMemory: int = 1000
    captureBuffer: int = 5
    store: StoreConfig | None = None
    ui: UIConfig = UIConfig()
    performance: PerformanceConfig = PerformanceConfig()
    startPort: int = 5800
    globalTTL: int = 0
    unloadTimeout: int = DEFAULT_UNLOAD_TIMEOUT
    sendLoadingState: bool = False
    includeAliasesInList: bool = False
    apiKeys: tuple[APIKey, ...] = field(default=(), converter=toAPIKeys)
    auth: AuthConfig = AuthConfig()
    macros: MacroList = ()
    models: Mapping[str, ModelConfig] = field(factory=FrozenDict)
    aliases: Mapping[str, str] = field(factory=FrozenDict)
    hooks: HooksConfig = HooksConfig()
    peers: Mapping[str, PeerConfig] = field(factory=FrozenDict)
    routing: RoutingConfig = RoutingConfig()
    profiles: Mapping[str, ProfileConfig] = field(factory=FrozenDict)
    legacyProfiles: Mapping[str, tuple[str, ...]] = field(factory=FrozenDict)
    selectors: Mapping[str, SelectorConfig] = field(factory=FrozenDict)
    upstream: UpstreamConfig = UpstreamConfig()
    promptCache: PromptCacheConfig = PromptCacheConfig()
    memory: MemoryConfig = MemoryConfig()
    requestTTL: RequestTTLConfig = RequestTTLConfig()
    modelsDir: ModelsDirConfig | None = None
    limits: LimitsConfig = LimitsConfig()
    security: SecurityConfig = SecurityConfig()
    #: Values substituted from C{${env.NAME}}: masked wherever a command
    #: is shown (L{llamaswap.config.redact}).
    envSecrets: frozenset[str] = frozenset()

    def shownCommand(self, command: str) -> str:
        """
        C{command} as llamaswap shows it: secrets masked.
        """
        return redactCommand(command, self.envSecrets)

    def realModelName(self, name: str) -> str | None:
        """
        The model ID C{name} refers to: a model ID, else an alias, else a
        legacy profile name (C{profile/model} or C{profile:model}).
        """
        if name in self.models:
            return name
        real = self.aliases.get(name)
        if real is not None:
            return real
        legacy = self.resolveLegacyProfile(name)
        if legacy is not None:
            return legacy[1]
        return None

    def findModel(self, name: str) -> tuple[ModelConfig, str] | None:
        """
        The model C{name} refers to and its ID, or L{None}.
        """
        real = self.realModelName(name)
        if real is None:
            return None
        return self.models[real], real

    def resolveLegacyProfile(self, name: str) -> tuple[str, str] | None:
        """
        For a v1 profile name C{profile/model} (or C{profile:model}), the
        profile and the member's model ID.  The member may be named by ID
        or alias.
        """
        for profile, members in self.legacyProfiles.items():
            for separator in LEGACY_PROFILE_SEPARATORS:
                prefix = profile + separator
                if not name.startswith(prefix):
                    continue
                rest = name[len(prefix) :]
                real = rest if rest in self.models else self.aliases.get(rest)
                if real is not None and real in members:
                    return profile, real
        return None

    def resolvePeerModel(self, name: str) -> tuple[str, str] | None:
        """
        The peer and peer model ID C{name} refers to: an exact
        fully-qualified name first, else a bare model ID offered by exactly
        one peer.
        """
        for byFQN in (True, False):
            found: set[tuple[str, str]] = set()
            for peer in self.peers.values():
                for modelID in peer.models:
                    candidate = peer.fqn(modelID) if byFQN else modelID
                    if candidate == name:
                        found.add((peer.id, modelID))
            if len(found) == 1:
                return found.pop()
            if found:
                return None
        return None

    def resolveBaseModel(self, name: str) -> str | None:
        """
        C{name} resolved without profiles: a local model ID (IDs and
        aliases first), else C{name} itself when it names a peer model.
        """
        real = self.realModelName(name)
        if real is not None:
            return real
        if self.resolvePeerModel(name) is not None:
            return name
        return None

    def groupOf(self, modelID: str) -> GroupConfig | None:
        """
        The group a model ID belongs to (group router only).
        """
        for group in self.routing.groups.values():
            if modelID in group.members:
                return group
        return None
