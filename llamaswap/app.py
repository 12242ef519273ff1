# -*- test-case-name: test.test_app -*-
"""
The running llamaswap: one configuration, its upstreams and its router.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool

from . import __version__
from .config.cmdline import splitCommand
from .config.model import Config, ModelConfig
from .listen import ListenAddress
from .observe.monitors import LogMonitors
from .observe.quiet import quietPool
from .observe.service import ObservabilityService
from .routing.peers import PeerRouter
from .routing.router import Router
from .upstream.leftovers import (
    LeftoverRegistry,
    LeftoversInUse,
    MarkedEnviron,
    newMarker,
    reapLeftovers,
)
from .upstream.lifecycle import State
from .upstream.spec import UpstreamSpec
from .upstream.supervisor import Supervisor
from .web.forward import Forwarder, UpstreamAgent, idleConnectionLimit


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
    The service owning everything one configuration runs.

    @ivar config: the loaded configuration.
    @ivar supervisors: model ID to its L{Supervisor}.
    @ivar router: decides which upstreams run and grants requests.
    @ivar forwarder: relays requests to upstreams.
    @ivar maxBodyBytes: the largest body read to find a request's model.
    @ivar activeProfile: the runtime profile whose pins apply (set with
        C{PUT /api/profiles/active}), L{None} for none; not persisted.
    @ivar profileObservers: called with the new active profile whenever it
        changes.
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
    ) -> None:
        """
        @param runtimeDir: where the leftover-upstreams file goes.
        @param environ: the base environment of upstreams (default ours).
        """
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.configPaths = configPaths
        self.listen = listen
        self.maxBodyBytes = config.limits.maxRequestBodyBytes
        self.activeProfile: str | None = None
        self.profileObservers: list[Callable[[str | None], None]] = []
        self.stateFile = stateFileFor(runtimeDir or defaultRuntimeDir(), listen)
        self.registry: LeftoverRegistry | None = None
        #: Carried by every upstream and its descendants (leftover reaping).
        self.marker = newMarker()
        upstreamEnviron = MarkedEnviron(environ, self.marker)
        self.logs = LogMonitors.fromConfig(config)
        self.upstreamAgent = UpstreamAgent(reactor)
        quietPool(self.upstreamAgent.pool)
        self.upstreamAgent.pool.maxPersistentPerHost = idleConnectionLimit(
            model.effectiveConcurrencyLimit for model in config.models.values()
        )
        self.forwarder = Forwarder(self.upstreamAgent, reactor)
        self.peerRouter = PeerRouter(config, self.upstreamAgent, reactor)
        self._probePool = quietPool(HTTPConnectionPool(reactor, persistent=False))
        probeAgent = UpstreamAgent(reactor, self._probePool, connectTimeout=5.0)
        self.supervisors: dict[str, Supervisor] = {
            modelID: Supervisor(
                specFor(model, config),
                processReactor=reactor,
                clock=reactor,
                agent=probeAgent,
                recorder=self,
                environ=upstreamEnviron,
            )
            for modelID, model in config.models.items()
        }
        for supervisor in self.supervisors.values():
            supervisor.addOutputObserver(self.logs.upstreamLine)
            supervisor.addStateObserver(self._upstreamStateChanged)
        self.router = Router(config, self.supervisors, reactor)
        # Sets app.events, .metrics, .activity, .tracker and .observability.
        ObservabilityService(self).setServiceParent(self)

    def _upstreamStateChanged(self, modelID: str, old: State, new: State) -> None:
        """
        A model's process is gone: close the idle connections to it, so
        that no request picks one that leads to a dead (or a new) process.
        """
        if new not in (State.STOPPED, State.SHUTDOWN):
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
            self.registry = LeftoverRegistry(self.stateFile, marker=self.marker)
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
        super().stopService()
        peers = self.peerRouter.shutdown(0)
        peers.addErrback(lambda f: self.log.failure("peer shutdown failed", f))
        d = self.router.shutdown()

        def cleanup(_: object) -> Deferred[Any]:
            if self.registry is not None:
                self.registry.close()
            return DeferredList(
                [
                    self.upstreamAgent.closeCachedConnections(),
                    self._probePool.closeCachedConnections(),
                ],
                consumeErrors=True,
            )

        d.addCallback(cleanup)
        d.addErrback(lambda f: self.log.failure("shutdown failed", f))
        d.addCallback(lambda _: self.logs.stop())
        return d.addCallback(lambda _: None)
