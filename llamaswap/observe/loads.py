# -*- test-case-name: test.observe.test_events -*-
"""
Model lifecycle as events and metrics: C{modelStatus} on every state
change, machine-readable load progress while a model starts, load
durations and start failures for Prometheus, and the history of load
times that makes the expected load time (llama-swap has no such thing: its
UI only shows a spinner).

A C{loadProgress} event is C{{"model", "phase", "elapsed_ms",
"expected_ms", "progress", "message"}}: C{phase} is C{starting} (sent when
the start begins and then every L{TICK} seconds), C{ready} or C{failed};
C{expected_ms} is the median of the model's recent successful loads (null
before the first); C{progress} is elapsed/expected, held below 1 until the
model is ready; C{message} is the upstream's latest output line.
"""

from __future__ import annotations

from collections import deque
from statistics import median
from typing import Any, Callable, Mapping

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..upstream.lifecycle import State
from ..upstream.supervisor import Watchable

log = Logger()

#: Seconds between progress events of a loading model.
TICK = 1.0
#: Loads remembered per model.
HISTORY = 20
#: Longest output line quoted in progress events.
MESSAGE_LIMIT = 200


class LoadHistory:
    """
    Recent successful load durations per model, in milliseconds.
    """

    def __init__(self, keep: int = HISTORY) -> None:
        self._keep = keep
        self._durations: dict[str, deque[int]] = {}

    def add(self, model: str, durationMs: int) -> None:
        self._durations.setdefault(model, deque(maxlen=self._keep)).append(int(durationMs))

    def seed(self, loads: Mapping[str, list[int]]) -> None:
        """
        Put stored loads before the ones seen since.
        """
        for model, durations in loads.items():
            seen = list(self._durations.get(model, ()))
            self._durations[model] = deque(list(durations) + seen, maxlen=self._keep)

    def expected(self, model: str) -> int | None:
        """
        The median of the model's recent loads, or L{None} before any.
        """
        durations = self._durations.get(model)
        if not durations:
            return None
        return int(median(durations))


class _Loading:
    __slots__ = ("startedAt", "message", "timer")

    def __init__(self, startedAt: float) -> None:
        self.startedAt = startedAt
        self.message = ""
        self.timer: IDelayedCall | None = None


class LoadWatcher:
    """
    Watches every supervisor and reports their state changes and loads.
    """

    def __init__(
        self,
        supervisors: Mapping[str, Watchable],
        clock: IReactorTime,
        publish: Callable[[str, Any], None],
        *,
        statusPayload: Callable[[], Any],
        metrics: Any = None,
        history: LoadHistory | None = None,
        onLoad: Callable[[float, str, int, bool], None] | None = None,
        tick: float = TICK,
        listening: Callable[[], object] = lambda: True,
    ) -> None:
        """
        @param publish: C{publish(kind, data)}, usually L{EventBus.publish}.
        @param statusPayload: builds the C{modelStatus} payload.
        @param metrics: a L{llamaswap.observe.metrics.Metrics}, or L{None}.
        @param onLoad: C{onLoad(ts, model, durationMs, ok)} after each load
            attempt (to persist it).
        @param listening: whether anyone receives the events; when not,
            their payloads (every model's status, the memory figures) are
            not built, which a swap would otherwise pay for several times.
        """
        self._supervisors = supervisors
        self._clock = clock
        self._publish = publish
        self._statusPayload = statusPayload
        self._metrics = metrics
        self.history = history if history is not None else LoadHistory()
        self._onLoad = onLoad
        self._tick = tick
        self._listening = listening
        self._loading: dict[str, _Loading] = {}
        self._removers: dict[str, list[Callable[[], None]]] = {}

    def start(self) -> None:
        """
        Begin watching (a model already starting is picked up).
        """
        for modelID, supervisor in self._supervisors.items():
            self._watch(modelID, supervisor)

    def _watch(self, modelID: str, supervisor: Watchable) -> None:
        self._removers[modelID] = [
            supervisor.addStateReporter(self._changed),
            supervisor.addOutputObserver(self._output),
        ]
        state = supervisor.state
        if self._metrics is not None:
            self._metrics.stateChanged(modelID, state.value)
        if state is State.STARTING:
            self._begin(modelID)

    def replaced(
        self, modelID: str, old: Watchable | None, new: Watchable | None
    ) -> None:
        """
        A reload put C{new} in place of C{old} for C{modelID} (an
        L{llamaswap.upstream.registry.Upstreams} observer): watch the new
        supervisor instead.
        """
        for remove in self._removers.pop(modelID, []):
            remove()
        if new is not None:
            self._watch(modelID, new)

    def stop(self) -> None:
        for removers in self._removers.values():
            for remove in removers:
                remove()
        self._removers = {}
        for loading in self._loading.values():
            if loading.timer is not None and loading.timer.active():
                loading.timer.cancel()
        self._loading.clear()

    def current(self) -> list[dict[str, Any]]:
        """
        Progress of the models loading now (for a new connection).
        """
        return [self._progress(m, "starting") for m in sorted(self._loading)]

    # -- observers ----------------------------------------------------------

    def _changed(self, model: str, old: State, new: State) -> None:
        if self._metrics is not None:
            self._metrics.stateChanged(model, new.value)
        if new is State.STARTING:
            self._begin(model)
        elif old is State.STARTING:
            self._end(model, new is State.READY)
        if self._listening():
            self._publish("modelStatus", self._statusPayload())

    def _output(self, model: str, stream: str, line: str) -> None:
        loading = self._loading.get(model)
        if loading is not None and line.strip():
            loading.message = line.strip()[:MESSAGE_LIMIT]

    # -- loads --------------------------------------------------------------

    def _begin(self, model: str) -> None:
        if model in self._loading:
            return
        self._loading[model] = _Loading(self._clock.seconds())
        if self._metrics is not None:
            self._metrics.loadStarted(model)
        self._report(model)

    def _report(self, model: str) -> None:
        loading = self._loading.get(model)
        if loading is None:
            return
        loading.timer = None
        if self._listening():
            self._publish("loadProgress", self._progress(model, "starting"))
        loading.timer = self._clock.callLater(self._tick, self._report, model)

    def _end(self, model: str, ok: bool) -> None:
        loading = self._loading.get(model)
        if loading is None:
            return
        if loading.timer is not None and loading.timer.active():
            loading.timer.cancel()
        now = self._clock.seconds()
        elapsed = now - loading.startedAt
        payload = self._progress(model, "ready" if ok else "failed") if self._listening() else None
        del self._loading[model]
        if ok:
            self.history.add(model, int(elapsed * 1000))
        if self._metrics is not None:
            self._metrics.loadFinished(model, elapsed, ok)
        if self._onLoad is not None:
            try:
                self._onLoad(now, model, int(elapsed * 1000), ok)
            except Exception:
                log.failure("recording the load of {model} failed", model=model)
        if payload is not None:
            self._publish("loadProgress", payload)

    def _progress(self, model: str, phase: str) -> dict[str, Any]:
        loading = self._loading[model]
        elapsed = int((self._clock.seconds() - loading.startedAt) * 1000)
        expected = self.history.expected(model)
        progress: float | None
        if phase == "ready":
            progress = 1.0
        elif expected:
            progress = round(min(elapsed / expected, 0.99), 3)
        else:
            progress = None
        return {
            "model": model,
            "phase": phase,
            "elapsed_ms": elapsed,
            "expected_ms": expected,
            "progress": progress,
            "message": loading.message,
        }


__all__ = ["LoadHistory", "LoadWatcher", "TICK"]
