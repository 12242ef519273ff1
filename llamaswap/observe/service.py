# -*- test-case-name: test.web.test_api -*-
"""
The observability parts of one llamaswap, built and wired together: the
event bus, Prometheus metrics, the activity store and capture cache, the
request tracker and the model load watcher.

L{ObservabilityService} is a child service of L{llamaswap.app.LlamaSwap},
which hands its parts (C{events}, C{metrics}, C{activity}, C{tracker}) to
whoever uses them.  It reads the configuration, the supervisors and the
active profile through the app's holders, never a copy.  Starting it opens
nothing blocking (the store opens on first use); stopping it ends the
C{/api/events} streams and closes the store after its queued writes.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request

from ..backlog import Later, runNow
from ..config.memory import budgetFields, modelNeeds
from ..config.model import Config
from ..holder import Holder
from ..upstream.supervisor import Supervisor
from .activity import ActivityLog, ActivityRecord
from .captures import CaptureCache
from .events import Event, EventBus, EventStream, modelStatus
from .loads import LoadHistory, LoadWatcher
from .logs import Monitor
from .metrics import Metrics
from .monitors import LogMonitors
from .store import ActivityStore, Pool
from .tracking import Tracker

log = Logger()


class ObservabilityService(Service):
    """
    Owns and wires the observability objects of one llamaswap.
    """

    def __init__(
        self,
        config: Holder[Config],
        supervisors: Mapping[str, Supervisor],
        clock: IReactorTime,
        *,
        activeProfile: Holder[str | None],
        logs: LogMonitors | None = None,
        processMetrics: bool = True,
        openPool: Callable[[str, Any], Pool] | None = None,
        later: Later = runNow,
    ) -> None:
        """
        @param config: the current configuration.
        @param supervisors: model ID to its supervisor (the app's
            L{llamaswap.upstream.registry.Upstreams}).
        @param activeProfile: the runtime profile, announced when it changes.
        @param logs: the L{llamaswap.observe.monitors.LogMonitors} whose
            C{proxy} and C{upstream} logs the event stream carries.
        @param openPool: where the activity store runs its jobs (L{None}:
            where the store chooses).
        @param later: runs the recording of finished requests when the
            proxy is quiet (L{llamaswap.backlog.Backlog.later}).
        """
        self.configHolder = config
        self.supervisors = supervisors
        self.activeProfile = activeProfile
        self.logs = logs
        self.clock = clock
        config = self.configHolder.value
        self.events = EventBus()
        self.metrics = Metrics(config.models, processMetrics=processMetrics)
        self._configureMemory(config)
        storePath = config.store.path if config.store is not None else None
        self.store = ActivityStore(
            storePath, keep=config.metricsMaxInMemory, reactor=clock, openPool=openPool
        )
        self.captures = CaptureCache.fromMegabytes(config.captureBuffer)
        self.activity = ActivityLog(self.store, self.captures, self._announce)
        self.tracker = Tracker(
            self.clock,
            publish=self.events.publish,
            activity=self.activity,
            metrics=self.metrics,
            captures=self.captures,
            modelState=self.modelState,
            knownModel=self.knownModel,
            listening=lambda: self.events.subscribers,
            later=later,
        )
        self.loads = LoadWatcher(
            supervisors,
            self.clock,
            self._publishStatus,
            statusPayload=self.modelStatus,
            metrics=self.metrics,
            history=LoadHistory(),
            onLoad=self._recordLoad,
            listening=lambda: self.events.subscribers,
        )
        self.streams: set[EventStream] = set()
        self._unsubscribe: list[Callable[[], None]] = []

    # -- lifecycle ----------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.loads.start()
        self.store.recentLoads().addCallbacks(
            self.loads.history.seed,
            lambda f: log.failure("reading past load times failed", f),
        )
        self._followLogs()
        self._unsubscribe.append(self.activeProfile.addObserver(self._profileChanged))
        self._unsubscribe.append(self.configHolder.addObserver(self._configChanged))
        addObserver = getattr(self.supervisors, "addObserver", None)
        if addObserver is not None:  # an Upstreams registry: a reload changes it
            self._unsubscribe.append(addObserver(self.loads.replaced))

    def stopService(self) -> None:
        super().stopService()
        for unsubscribe in self._unsubscribe:
            try:
                unsubscribe()
            except Exception:
                pass
        self._unsubscribe = []
        self.loads.stop()
        for stream in list(self.streams):
            stream.close()
        self.streams.clear()
        self.store.close()

    # -- status -------------------------------------------------------------

    def modelState(self, model: str) -> str | None:
        """
        The state name of a local model (named by ID or alias).
        """
        supervisors = self.supervisors
        supervisor = supervisors.get(model)
        if supervisor is None:
            real = self.configHolder.value.realModelName(model)
            supervisor = supervisors.get(real) if real else None
        return supervisor.state.value if supervisor is not None else None

    def knownModel(self, name: str) -> bool:
        """
        Whether C{name} is a local model, alias or peer model.
        """
        config = self.configHolder.value
        return config.realModelName(name) is not None or (
            config.resolvePeerModel(name) is not None
        )

    def modelStatus(self) -> list[dict[str, Any]]:
        states = {m: s.state.value for m, s in self.supervisors.items()}
        return modelStatus(self.configHolder.value, states)

    def _configureMemory(self, config: Config) -> None:
        """
        Set the memory gauges' sizes and budget from C{config} (at start
        and after every reload).
        """
        self.metrics.memoryConfigured(
            {m: c.memoryNeed for m, c in config.models.items()},
            config.memory.budget,
            modelNeeds(config),
        )

    def memoryStatus(self) -> dict[str, Any] | None:
        """
        The C{memory} event: the budget and what the models not stopped
        hold of it, per device; L{None} without a budget.
        """
        config = self.configHolder.value
        if not config.memory.budget:
            return None
        running = [m for m, s in self.supervisors.items() if s.state.value in _OCCUPYING]
        return budgetFields(config, running)

    def _publishStatus(self, kind: str, data: Any) -> None:
        """
        Publish for the load watcher; a C{modelStatus} is followed by the
        C{memory} event when there is a budget.
        """
        self.events.publish(kind, data)
        if kind == "modelStatus":
            memory = self.memoryStatus()
            if memory is not None:
                self.events.publish("memory", memory)

    def uiConfig(self) -> dict[str, Any]:
        config = self.configHolder.value
        return {"activity": {"session_id": list(config.ui.sessionIDHeaders)}}

    # -- the event stream -------------------------------------------------------

    def openStream(self, request: Request) -> EventStream:
        """
        Serve C{/api/events} on C{request}: the initial burst (log
        histories, model status, UI config, active profile, in-flight
        snapshot, loads in progress), then live events.
        """
        stream = EventStream(
            request, self.clock, resync=lambda: Event("inflight", self.tracker.snapshot())
        )
        self.streams.add(stream)
        stream.onClose(lambda: self.streams.discard(stream))
        stream.start(self._initial(), self.events)
        return stream

    def _initial(self) -> list[Event]:
        events = []
        for monitor in self._monitors():
            history = monitor.history()
            if history:
                events.append(
                    Event("logData", {"source": monitor.name, "data": _text(history)})
                )
        events.append(Event("modelStatus", self.modelStatus()))
        memory = self.memoryStatus()
        if memory is not None:
            events.append(Event("memory", memory))
        events.append(Event("uiConfig", self.uiConfig()))
        events.append(Event("profileChanged", {"active": self.activeProfile.value}))
        events.append(Event("inflight", self.tracker.snapshot()))
        events.extend(Event("loadProgress", p) for p in self.loads.current())
        return events

    # -- feeds ---------------------------------------------------------------

    def _followLogs(self) -> None:
        for monitor in self._monitors():

            def deliver(data: bytes, source: str = monitor.name) -> None:
                if self.events.subscribers:
                    self.events.publish("logData", {"source": source, "data": _text(data)})

            subscription = monitor.subscribe(deliver)
            self._unsubscribe.append(subscription.cancel)

    def _monitors(self) -> list[Monitor]:
        """
        The logs the event stream carries: the proxy's and the upstreams'.
        """
        return [] if self.logs is None else [self.logs.proxy, self.logs.upstream]

    def _configChanged(self, old: Config, new: Config) -> None:
        """
        A reload: the memory gauges follow, and event stream clients get
        the new model list (models added or removed change no state, so
        the load watcher would not tell them).
        """
        self._configureMemory(new)
        self._publishStatus("modelStatus", self.modelStatus())

    def _profileChanged(self, old: str | None, new: str | None) -> None:
        self.events.publish("profileChanged", {"active": new})
        self.events.publish("modelStatus", self.modelStatus())

    def _announce(self, record: ActivityRecord) -> None:
        self.events.publish("activity", {"id": record.id})

    def _recordLoad(self, ts: float, model: str, durationMs: int, ok: bool) -> None:
        self.store.recordLoad(ts, model, durationMs, ok).addErrback(
            lambda f: log.failure("recording a load time failed", f)
        )


#: States in which a model holds its memory.
_OCCUPYING = frozenset({"starting", "ready", "stopping"})


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


__all__ = ["ObservabilityService"]
