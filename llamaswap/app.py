# -*- test-case-name: test.test_app -*-
"""
The running llamaswap: one configuration, its upstreams and its router.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Mapping

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.web.server import Site

from . import __version__
from .backlog import Backlog
from .compat import ioWaiting
from .config.cmdline import splitCommand
from .config.diff import ConfigDiff, pinnedPorts
from .config.model import Config, ModelConfig
from .holder import Holder
from .listen import ListenAddress
from .observe.commands import runnerFor
from .observe.hardware import HardwareDetector
from .observe.hostmetrics import registerHostMetrics
from .observe.monitors import LogMonitors
from .observe.performance import PerformanceMonitor
from .observe.promptcachestats import PromptCacheStats
from .observe.service import ObservabilityService
from .observe.tracking import Tracker
from .promptcachesetup import preparePromptCaches
from .reload import Reloader, ReloadResult, fileLoader
from .routing.router import Router
from .upstream.leftovers import (
    LeftoverRegistry,
    LeftoversInUse,
    MarkedEnviron,
    newMarker,
    reapLeftovers,
)
from .upstream.lifecycle import State
from .upstream.registry import Upstreams
from .upstream.spec import UpstreamSpec
from .upstream.standby import StandbyLaunchers
from .upstream.supervisor import Supervisor
from .web.client import UpstreamAgent, UpstreamEndpoints, idleConnectionLimit
from .web.forward import Forwarder
from .web.h1client import ConnectionPool
from .web.peers import PeerRouter
from .web.site import WebParts, buildSite
from .web.statusagent import StatusAgent
from .web.tunnel import Tunneler
from .web.warm import StartWarmer


def specFor(model: ModelConfig, config: Config) -> UpstreamSpec:
    """
    What the supervisor needs to run C{model}.
    """
    return UpstreamSpec(
        modelID=model.id,
        argv=splitCommand(model.cmd),
        proxy=model.proxy,
        env=tuple(model.env),
        checkEndpoint=model.checkEndpoint,
        healthCheckTimeout=float(model.healthCheckTimeout),
        unloadTimeout=float(model.unloadTimeout),
        ttl=float(model.ttl),
        cmdStop=model.cmdStop or None,
        secrets=config.envSecrets,
    )


def defaultRuntimeDir() -> str:
    """
    Where run-time state goes: systemd's C{RuntimeDirectory}, else
    C{$XDG_RUNTIME_DIR/llamaswap}, else a per-user directory in C{/tmp}.
    """
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        return runtime.split(":")[0]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "llamaswap")
    return f"/tmp/llamaswap-{os.getuid()}"


def stateFileFor(runtimeDir: str, listen: ListenAddress | None) -> str:
    """
    The leftover-upstreams file of the instance listening on C{listen}
    (instances on different addresses do not share one).
    """
    key = listen.endpoint if listen is not None else "default"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return os.path.join(runtimeDir, f"upstreams-{digest}.json")


class LlamaSwap(MultiService):
    """
    The service owning everything one configuration runs; the only place
    that knows every collaborator and hands each part the few it uses.

    @ivar configHolder: the current configuration; a reload sets a new one
        (L{Holder.set}) and every part reading it sees the change at once.
    @ivar activeProfile: the runtime profile whose pins apply (set with
        C{PUT /api/profiles/active}), L{None} for none; not persisted.
    @ivar supervisors: model ID to its L{Supervisor} (an L{Upstreams}
        registry that the router and observability read through).
    @ivar router: decides which upstreams run and grants requests.
    @ivar forwarder: relays requests to upstreams.
    @ivar peerRouter: resolves and relays to peer models.
    @ivar observability: events, metrics, activity and the request tracker.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any,
        configPaths: tuple[str | None, str | None] = (None, None),
        listen: ListenAddress | None = None,
        runtimeDir: str | None = None,
        environ: dict[str, str] | None = None,
        startOnlyFiles: Mapping[str, str | None] | None = None,
        modelsDir: str | None = None,
    ) -> None:
        """
        @param configPaths: C{--config} and C{--config-dir}, read again by
            L{reloader}.
        @param runtimeDir: where the leftover-upstreams file goes.
        @param environ: the base environment of upstreams (default ours).
        @param startOnlyFiles: files read only at start (TLS certificate
            and key, by option name) whose change a reload reports as
            "needs restart".
        @param modelsDir: C{--models-dir}, discovered again by L{reloader}.
        """
        super().__init__()
        self.configHolder: Holder[Config] = Holder(config)
        self.activeProfile: Holder[str | None] = Holder(None)
        self.reactor = reactor
        self.configPaths = configPaths
        self.listen = listen
        self.stateFile = stateFileFor(runtimeDir or defaultRuntimeDir(), listen)
        self.registry: LeftoverRegistry | None = None
        #: Carried by every upstream and its descendants (leftover reaping).
        self.marker = newMarker()
        upstreamEnviron = MarkedEnviron(environ, self.marker)
        self.logs = LogMonitors.fromConfig(config, clock=reactor)
        self.upstreamAgent = UpstreamAgent(reactor)
        self.upstreamAgent.pool.maxPersistentPerHost = idleConnectionLimit(
            model.effectiveConcurrencyLimit for model in config.models.values()
        )
        #: Bookkeeping of finished requests (access lines, activity rows)
        #: waits here for a quiet moment, off the next request's path.
        self.backlog = Backlog(reactor, ioWaiting=ioWaiting(reactor))
        self.forwarder = Forwarder(self.upstreamAgent, reactor, self.backlog.runWhileIdle)
        self.peerRouter = PeerRouter(config, self.upstreamAgent, reactor)
        # Readiness probes need only a status line; the prompt cache's slot
        # requests are whole HTTP exchanges.
        self._probeAgent = StatusAgent(UpstreamEndpoints(reactor, 5.0).endpointForURI)
        # Prompt-cache slot requests are rare: no connection is kept.
        self._controlPool = ConnectionPool(reactor)
        self._controlPool.maxPersistentPerHost = 0
        self._controlAgent = UpstreamAgent(reactor, self._controlPool, connectTimeout=5.0)
        self._environ = upstreamEnviron
        self.launchers = StandbyLaunchers(reactor, reactor)
        self.launchers.setServiceParent(self)
        self.supervisors: Upstreams[Supervisor] = Upstreams()
        for model in config.models.values():
            self.supervisors.add(model.id, self.supervisorFor(model, config))
        self.router = Router(config, self.supervisors, reactor)
        self.observability = ObservabilityService(
            self.configHolder,
            self.supervisors,
            reactor,
            activeProfile=self.activeProfile,
            logs=self.logs,
            later=self.backlog.later,
        )
        self.observability.setServiceParent(self)
        self.promptCacheStats = PromptCacheStats(
            self.observability.metrics.registry, self.observability.events.publish
        )
        self.observability.tracker.grantNotes.append(self.promptCacheStats.grantNote)
        runner = runnerFor(reactor, reactor)
        self.performance = PerformanceMonitor(reactor, runner, config.performance)
        self.performance.setServiceParent(self)
        registerHostMetrics(self.observability.metrics.registry, self.performance.latest)
        self.hardware = HardwareDetector(reactor, runner)
        self.hardware.setServiceParent(self)
        #: Removed models still draining: their C{${PORT}}s stay reserved.
        self._drainingPorts: dict[str, int] = {}
        self.reloader = Reloader(
            fileLoader(*configPaths, modelsDir),
            lambda: self.configHolder.value,
            self.applyConfig,
            onReloaded=self._reloaded,
            onReloadFailed=self._reloadFailed,
            startOnlyFiles=startOnlyFiles,
            reservedPorts=lambda c: {**self._drainingPorts, **pinnedPorts(c)},
        )

    @property
    def config(self) -> Config:
        """
        The current configuration.
        """
        return self.configHolder.value

    @property
    def tracker(self) -> Tracker:
        """
        The request tracker.
        """
        return self.observability.tracker

    def supervisorFor(self, model: ModelConfig, config: Config) -> Supervisor:
        """
        A new supervisor running C{model}, its output and state observed
        (a reload adds those of new models to L{supervisors}).
        """
        specs, promptCaches = preparePromptCaches(
            config,
            {model.id: specFor(model, config)},
            clock=self.reactor,
            agent=self._controlAgent,
            observe=lambda report: self.promptCacheStats.report(report),
        )
        warmer = StartWarmer(self.upstreamAgent.warm, self.upstreamAgent.closeCachedConnectionsTo)
        supervisor = Supervisor(
            specs[model.id],
            processReactor=self.reactor,
            clock=self.reactor,
            agent=self._probeAgent,
            recorder=self,
            environ=self._environ,
            hooks=promptCaches.get(model.id),
            spawner=self.launchers.spawn,
            dropIdleConnections=warmer.drop,
        )
        supervisor.addOutputObserver(self.logs.upstreamLine)
        supervisor.addStateObserver(self._upstreamStateChanged)
        warmer.watch(supervisor)
        return supervisor

    def applyConfig(self, new: Config, diff: ConfigDiff) -> None:
        """
        Make C{new} current, in this reactor turn (the L{Reloader}'s
        C{apply}): added models are served at once; restarted and removed
        ones drain their requests in flight and then stop (the router
        retires them; requests for a restarted model queue meanwhile);
        kept ones keep their process and take their live settings; every
        part reading the configuration holder sees C{new} from now on.
        """
        old = self.configHolder.value
        changes: dict[str, Supervisor | None] = {
            m: self.supervisorFor(new.models[m], new) for m in (*diff.added, *diff.restarted)
        }
        changes.update({m: None for m in diff.removed})
        for modelID in diff.removed:
            port = old.models[modelID].port
            if port is not None:
                self._drainingPorts[modelID] = port
        for modelID in diff.kept:
            if modelID in diff.updated:
                supervisor = self.router.upcoming(modelID)
                if supervisor is not None:
                    supervisor.updateSpec(specFor(new.models[modelID], new))
        self.router.reconfigure(new, changes, self._install)
        self.peerRouter.reconfigure(new)
        self.logs.reconfigure(new)
        self.upstreamAgent.pool.maxPersistentPerHost = idleConnectionLimit(
            model.effectiveConcurrencyLimit for model in new.models.values()
        )
        self.performance.configure(new.performance)
        self.configHolder.set(new)
        if new.hooks.profile and new.hooks.profile in new.profiles:
            if new.hooks.profile != old.hooks.profile:
                self._activateProfile(new.hooks.profile)
        elif self.activeProfile.value is not None and self.activeProfile.value not in new.profiles:
            self.log.info(
                'active profile "{profile}" no longer exists, cleared',
                profile=self.activeProfile.value,
            )
            self.activeProfile.set(None)

    def _install(self, modelID: str, supervisor: Any) -> None:
        """
        The router's C{install}: the registry's change.
        """
        if supervisor is None:
            self._drainingPorts.pop(modelID, None)
            self.supervisors.remove(modelID)
        else:
            self.supervisors.add(modelID, supervisor)

    def _activateProfile(self, name: str) -> None:
        if self.activeProfile.value != name:
            self.log.info('active profile changed to "{profile}"', profile=name)
            self.activeProfile.set(name)

    def _reloaded(self, result: ReloadResult) -> None:
        self.observability.events.publish("configReloaded", result.summary())

    def _reloadFailed(self, result: ReloadResult) -> None:
        self.observability.events.publish("configReloadFailed", result.summary())

    def webParts(self) -> WebParts:
        """
        The collaborators of the HTTP handlers.
        """
        return WebParts(
            config=self.configHolder,
            activeProfile=self.activeProfile,
            router=self.router,
            forwarder=self.forwarder,
            peers=self.peerRouter,
            tunneler=Tunneler(self.reactor),
            tracker=self.observability.tracker,
            observability=self.observability,
            logs=self.logs,
            clock=self.reactor,
            performance=self.performance,
            hardware=self.hardware,
            loopbackOnly=self.listen is not None and self.listen.isLoopbackOnly,
            reloader=self.reloader,
            configPaths=self.configPaths,
            backlog=self.backlog,
        )

    def site(self) -> Site:
        """
        The HTTP site serving this llamaswap.
        """
        return buildSite(self.webParts())

    def _upstreamStateChanged(self, modelID: str, old: State, new: State) -> None:
        """
        A model is ready: replace the standby launcher its start used.  A
        model's process is being stopped or is gone: close the idle
        connections to it, so that no request picks one that leads to a
        dead (or a new) process, and so that the server does not wait for
        them before it exits (llama-server does, which made each stop ~8 ms
        longer).
        """
        if new is State.READY:
            # The start is over: replace the standby launcher it used.
            self.launchers.refill()
        if new not in (State.STOPPING, State.STOPPED, State.SHUTDOWN):
            return
        supervisor = self.supervisors.get(modelID)
        proxy = supervisor.spec.proxy if supervisor is not None else ""
        if not proxy:
            return
        try:
            d = self.upstreamAgent.closeCachedConnectionsTo(proxy)
        except ValueError:  # not a URL the pool could have used
            return
        d.addErrback(
            lambda f: self.log.failure("closing idle connections to {model}", f, model=modelID)
        )

    # UpstreamRecorder, forwarding to the registry once it exists.
    def add(self, modelID: str, pid: int, argv0: str, started: float) -> None:
        if self.registry is not None:
            self.registry.add(modelID, pid, argv0, started)

    def remove(self, pid: int) -> None:
        if self.registry is not None:
            self.registry.remove(pid)

    def startService(self) -> None:
        self.logs.start()
        super().startService()
        self.log.info(
            "llamaswap {version} starting with {count} models",
            version=__version__,
            count=len(self.config.models),
        )
        if self.listen is not None and not self.listen.isLoopbackOnly:
            self.log.info(
                "listening on {endpoint}, reachable from other machines; use "
                "--listen 127.0.0.1:{port} to keep it local",
                endpoint=self.listen.endpoint,
                port=self.listen.port,
            )
        self._claimStateFile()
        if self.config.hooks.profile:
            if self.config.hooks.profile in self.config.profiles:
                self._activateProfile(self.config.hooks.profile)
            else:
                self.log.warn(
                    'hooks.on_startup.profile "{profile}" is not a profile',
                    profile=self.config.hooks.profile,
                )
        if self.config.hooks.preload:
            self.reactor.callWhenRunning(self._preload)

    def _claimStateFile(self) -> None:
        """
        Stop upstreams a previous llamaswap left running, then record ours.
        """
        try:
            os.makedirs(os.path.dirname(self.stateFile), mode=0o700, exist_ok=True)
            for reaped in reapLeftovers(self.stateFile):
                self.log.warn(
                    "stopped leftover upstream of model {model} (pid {pid}) from a "
                    "previous llamaswap",
                    model=reaped.leftover.model,
                    pid=reaped.leftover.pid,
                )
            self.registry = LeftoverRegistry(
                self.stateFile, clock=self.reactor, marker=self.marker
            )
        except LeftoversInUse as e:
            self.log.error("not recording upstreams: {error}", error=str(e))
        except OSError as e:
            self.log.error(
                "cannot use state file {path}: {error}", path=self.stateFile, error=str(e)
            )

    def _preload(self) -> None:
        d = self.router.preload()

        def report(results: dict[str, bool]) -> None:
            for model, ok in results.items():
                if ok:
                    self.log.info("preloaded {model}", model=model)
                else:
                    self.log.error("preloading {model} failed", model=model)

        d.addCallback(report)
        d.addErrback(lambda f: self.log.failure("preload failed", f))

    def stopService(self) -> Deferred[None]:
        """
        Stop every upstream (each gets its C{unloadTimeout}), then close
        connections and the state file.
        """
        # What waits is recorded before the activity store closes.
        self.backlog.close()
        children = super().stopService()
        peers = self.peerRouter.shutdown(0)
        peers.addErrback(lambda f: self.log.failure("peer shutdown failed", f))
        d = self.router.shutdown()

        def cleanup(_: object) -> Deferred[Any]:
            if self.registry is not None:
                self.registry.close()
            return DeferredList(
                [
                    self.upstreamAgent.closeCachedConnections(),
                    self._controlPool.closeCachedConnections(),
                    children,
                ],
                consumeErrors=True,
            )

        d.addCallback(cleanup)
        d.addErrback(lambda f: self.log.failure("shutdown failed", f))
        d.addCallback(lambda _: self.logs.stop())
        return d.addCallback(lambda _: None)
