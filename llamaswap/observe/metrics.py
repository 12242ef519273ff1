# -*- test-case-name: test.observe.test_metrics -*-
"""
Prometheus metrics (C{GET /metrics}): per model requests by status, tokens,
time to first byte, duration, queue wait, loads and their duration, start
failures and the current lifecycle state, plus the process's own CPU,
memory and file descriptors.

llama-swap exports only system and GPU gauges there; request and model
metrics are ours (its users asked for them, llama-swap #262, #255).  Each
L{Metrics} has its own L{CollectorRegistry}, never the global one, so two
llamaswaps in one process (tests, reloads) do not collide.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterable, Mapping, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from .usage import TokenMetrics

#: Lifecycle states, as the C{llamaswap_model_state} enum has them.
STATES = ("stopped", "starting", "ready", "stopping", "shutdown")

_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
)
_LOAD_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_SPEED_BUCKETS = (1, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240)


def metricFamily(
    registry: CollectorRegistry,
    kind: Callable[..., Any],
    name: str,
    documentation: str,
    labels: Sequence[str] = ("model",),
    **options: Any,
) -> Any:
    """
    A metric family of C{kind} (L{Counter}, L{Gauge}, ...) registered in
    C{registry}, labelled by model unless C{labels} says otherwise.
    """
    return kind(name, documentation, list(labels), registry=registry, **options)


class _Children:
    """
    A labelled metric's children by label values, each looked up in the
    metric once: C{labels()} validates and sorts its arguments and takes
    a lock on every call, and the request path calls it up to nine times.
    The label values are bounded (configured models, known paths, status
    codes), and so is this cache.
    """

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._metric.labels(*values)
        return child


class Metrics:
    """
    The metric families and the calls that move them.

    @ivar registry: where they are registered.
    """

    def __init__(self, models: Iterable[str] = (), processMetrics: bool = True) -> None:
        """
        @param models: model IDs whose state gauge starts as C{stopped}.
        @param processMetrics: include C{process_*} metrics of this process.
        """
        registry = self.registry = CollectorRegistry(auto_describe=True)
        family = partial(metricFamily, registry)
        self.requests = family(
            Counter,
            "llamaswap_requests",
            "Model requests finished, by model, path and HTTP status.",
            ("model", "path", "status"),
        )
        self.keyRequests = family(
            Counter,
            "llamaswap_key_requests",
            "Model requests finished, by API key name (never the key), model and HTTP status.",
            ("key", "model", "status"),
        )
        self.inputTokens = family(
            Counter,
            "llamaswap_input_tokens",
            "Prompt tokens reported by upstreams.",
        )
        self.outputTokens = family(
            Counter,
            "llamaswap_output_tokens",
            "Generated tokens reported by upstreams.",
        )
        self.cachedTokens = family(
            Counter,
            "llamaswap_cached_tokens",
            "Prompt tokens served from the upstream's cache.",
        )
        self.duration = family(
            Histogram,
            "llamaswap_request_duration_seconds",
            "Wall time of model requests, from arrival to the end of the response.",
            buckets=_LATENCY_BUCKETS,
        )
        self.ttfb = family(
            Histogram,
            "llamaswap_time_to_first_byte_seconds",
            "Time from a request's arrival to the first response body byte, "
            "measured by llamaswap (queueing and loading included).",
            buckets=_LATENCY_BUCKETS,
        )
        self.queueWait = family(
            Histogram,
            "llamaswap_queue_wait_seconds",
            "Time requests waited for their model (queued or loading).",
            buckets=_LATENCY_BUCKETS,
        )
        self.promptSpeed = family(
            Histogram,
            "llamaswap_prompt_tokens_per_second",
            "Prompt processing speed of requests that reported it.",
            buckets=_SPEED_BUCKETS,
        )
        self.genSpeed = family(
            Histogram,
            "llamaswap_generation_tokens_per_second",
            "Generation speed of requests that reported it.",
            buckets=_SPEED_BUCKETS,
        )
        self.inFlight = family(
            Gauge,
            "llamaswap_requests_in_flight",
            "Model requests granted their model and not yet finished.",
        )
        self.loads = family(
            Counter,
            "llamaswap_model_loads",
            "Model starts (swaps in), successful or not.",
        )
        self.loadDuration = family(
            Histogram,
            "llamaswap_model_load_duration_seconds",
            "Time from starting a model's process to its readiness.",
            buckets=_LOAD_BUCKETS,
        )
        self.startFailures = family(
            Counter,
            "llamaswap_model_start_failures",
            "Starts that did not reach ready (exited, timed out or were aborted).",
        )
        self.state = family(
            Enum,
            "llamaswap_model_state",
            "Current lifecycle state of each model.",
            states=list(STATES),
        )
        self.modelMemory = family(
            Gauge,
            "llamaswap_model_memory_bytes",
            "Memory each model needs (configured, or estimated from its GGUF file).",
        )
        self.memoryBudget = family(
            Gauge,
            "llamaswap_memory_budget_bytes",
            "The memory budget per device (memoryBudget).",
            ("device",),
        )
        self.memoryInUse = family(
            Gauge,
            "llamaswap_memory_in_use_bytes",
            "Memory held by the models not stopped, per device of the budget.",
            ("device",),
        )
        self._needs: Mapping[str, Mapping[str, int]] = {}
        self._occupying: set[str] = set()
        self._requests = _Children(self.requests)
        self._duration = _Children(self.duration)
        self._ttfb = _Children(self.ttfb)
        self._queueWait = _Children(self.queueWait)
        self._inputTokens = _Children(self.inputTokens)
        self._outputTokens = _Children(self.outputTokens)
        self._cachedTokens = _Children(self.cachedTokens)
        self._promptSpeed = _Children(self.promptSpeed)
        self._genSpeed = _Children(self.genSpeed)
        self._inFlight = _Children(self.inFlight)
        self._keyRequests = _Children(self.keyRequests)
        for model in models:
            self.state.labels(model=model).state("stopped")
        if processMetrics:
            ProcessCollector(registry=registry)

    # -- requests ----------------------------------------------------------------

    def requestStarted(self, model: str) -> None:
        self._inFlight(model).inc()

    def requestEnded(self, model: str) -> None:
        self._inFlight(model).dec()

    def requestFinished(
        self,
        model: str,
        path: str,
        status: int,
        duration: float,
        ttfb: float | None = None,
        queueWait: float | None = None,
        tokens: TokenMetrics | None = None,
    ) -> None:
        """
        Count a finished request (times in seconds).
        """
        self._requests(model, path, str(status)).inc()
        self._duration(model).observe(max(duration, 0.0))
        if ttfb is not None:
            self._ttfb(model).observe(max(ttfb, 0.0))
        if queueWait is not None:
            self._queueWait(model).observe(max(queueWait, 0.0))
        if tokens is not None:
            if tokens.inputTokens > 0:
                self._inputTokens(model).inc(tokens.inputTokens)
            if tokens.outputTokens > 0:
                self._outputTokens(model).inc(tokens.outputTokens)
            if tokens.cacheTokens > 0:
                self._cachedTokens(model).inc(tokens.cacheTokens)
            if tokens.promptPerSecond > 0:
                self._promptSpeed(model).observe(tokens.promptPerSecond)
            if tokens.tokensPerSecond > 0:
                self._genSpeed(model).observe(tokens.tokensPerSecond)

    def keyRequestFinished(self, key: str, model: str, status: int) -> None:
        """
        Count a finished request made with the API key named C{key}.
        """
        self._keyRequests(key, model, str(status)).inc()

    # -- models ----------------------------------------------------------------

    def stateChanged(self, model: str, state: str) -> None:
        if state in STATES:
            self.state.labels(model=model).state(state)
        if state in ("starting", "ready", "stopping"):
            self._occupying.add(model)
        else:
            self._occupying.discard(model)
        if self._needs:
            self._updateInUse()

    def memoryConfigured(
        self,
        sizes: Mapping[str, int | None],
        budget: Mapping[str, int],
        needs: Mapping[str, Mapping[str, int]],
    ) -> None:
        """
        Set each model's memory (known ones), the budget per device and
        each model's share per device (for the in-use gauge).
        """
        for model, size in sizes.items():
            if size is not None:
                self.modelMemory.labels(model=model).set(size)
        for device, size in budget.items():
            self.memoryBudget.labels(device=device).set(size)
        self._needs = needs
        self._updateInUse()

    def _updateInUse(self) -> None:
        used = {device: 0 for needs in self._needs.values() for device in needs}
        for model in self._occupying:
            for device, n in self._needs.get(model, {}).items():
                used[device] += n
        for device, n in used.items():
            self.memoryInUse.labels(device=device).set(n)

    def loadStarted(self, model: str) -> None:
        self.loads.labels(model=model).inc()

    def loadFinished(self, model: str, seconds: float, ok: bool) -> None:
        if ok:
            self.loadDuration.labels(model=model).observe(max(seconds, 0.0))
        else:
            self.startFailures.labels(model=model).inc()

    # -- output ------------------------------------------------------------------

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """
        The exposition in the format the scraper's C{Accept} header asks
        for (Prometheus text by default, OpenMetrics on request).

        @return: the body and its content type.
        """
        encoder, contentType = choose_encoder(accept)
        return encoder(self.registry), contentType


__all__ = ["STATES", "Metrics"]
