# -*- test-case-name: test.web.test_site -*-
"""
The HTTP surface: every route family installed on one L{Mux}.

L{WebParts} is everything the handlers use; L{buildResource} hands each
route family the few parts it needs.  The app builds the parts (it is the
only place that knows all of them); tests build them from fakes.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request, Site

from ..backlog import Backlog, runNow
from ..config.model import Config
from ..holder import Holder
from ..observe.hardware import HardwareDetector
from ..observe.monitors import LogMonitors
from ..observe.performance import PerformanceMonitor
from ..observe.tracking import Tracker
from ..routing.router import Router
from . import (
    api,
    configapi,
    favicon,
    inference,
    login,
    logs,
    management,
    passthrough,
    system,
    ui,
)
from .auth import authenticatorFor
from .forward import Forwarder
from .guard import Guard
from .limits import applyLimits
from .mux import Mux
from .peers import PeerRouter
from .sessions import Sessions
from .tunnel import Tunneler


@frozen
class WebParts:
    """
    The collaborators of the HTTP handlers.

    @ivar config: the current configuration (read at request time).
    @ivar activeProfile: the runtime profile whose pins apply.
    @ivar router: grants leases on local models (a
        L{llamaswap.routing.router.Router}).
    @ivar forwarder: relays requests to local upstreams.
    @ivar peers: resolves and relays to peer models.
    @ivar tunneler: relays websocket upgrades.
    @ivar tracker: tracks model requests (in-flight list, activity).
    @ivar observability: the L{llamaswap.observe.service.ObservabilityService}
        (event streams, activity, metrics).
    @ivar logs: the log monitors.
    @ivar clock: the reactor's clock.
    @ivar performance: samples CPU, memory and GPUs for C{/api/performance}.
    @ivar hardware: describes the machine for C{/api/hardware}.
    @ivar loopbackOnly: llamaswap listens on loopback addresses only (the
        C{Host} check applies then, L{llamaswap.web.hostcheck}).
    @ivar reloader: reloads the configuration (C{/api/config} routes); L{None}
        leaves those routes out.
    @ivar configPaths: C{--config} and C{--config-dir}, shown by
        C{GET /api/config}.
    @ivar backlog: where access lines wait for a quiet moment, settled
        before the routes that read what it writes; L{None}: no waiting.
    """

    config: Holder[Config]
    activeProfile: Holder[str | None]
    router: Router
    forwarder: Forwarder
    peers: PeerRouter
    tunneler: Tunneler
    tracker: Tracker
    observability: Any
    logs: LogMonitors
    clock: IReactorTime
    performance: PerformanceMonitor
    hardware: HardwareDetector
    loopbackOnly: bool = False
    reloader: Any = None
    configPaths: tuple[str | None, str | None] = (None, None)
    backlog: Backlog | None = None


T = TypeVar("T")


def health(request: Request, rest: bytes) -> bytes:
    """
    C{/health}: C{OK} while the proxy runs (llama-swap's answer, which
    load balancers and systemd checks already expect).
    """
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return b"OK"


def fromParts(handlerType: Callable[..., T], parts: WebParts) -> T:
    """
    A C{handlerType} built from the L{WebParts} fields its keyword-only
    parameters name: each handler declares what it takes, once.
    """
    takes = inspect.signature(handlerType).parameters.values()
    return handlerType(
        **{p.name: getattr(parts, p.name) for p in takes if p.kind is p.KEYWORD_ONLY}
    )


def buildResource(parts: WebParts) -> Mux:
    """
    The root resource: every route family on one L{Mux}.
    """
    sessions = Sessions(parts.config, parts.clock)
    authenticator = authenticatorFor(parts.config, sessions)
    backlog = parts.backlog
    mux = Mux(authenticator=authenticator, settle=backlog.settle if backlog is not None else None)
    mux.route("GET", "/health", health, auth=False)
    mux.route("GET", "/wol-health", health, auth=False)
    login.install(mux, authenticator, sessions)
    inference.install(mux, fromParts(inference.ModelRoute, parts))
    management.install(mux, fromParts(management.ManagementRoutes, parts))
    logs.install(mux, parts.logs, parts.router, parts.clock)
    passthrough.install(mux, fromParts(passthrough.Passthrough, parts))
    observability = parts.observability
    api.install(
        mux,
        api.ObserveAPI(
            openStream=observability.openStream,
            activity=observability.activity,
            tracker=parts.tracker,
            metrics=observability.metrics,
        ),
    )
    system.install(mux, parts.performance, parts.hardware)
    if parts.reloader is not None:
        configapi.install(
            mux, configapi.ConfigRoutes(parts.config, parts.reloader, parts.configPaths)
        )
    favicon.install(mux)
    ui.install(mux)
    return mux


def buildSite(parts: WebParts, **siteArgs: Any) -> Site:
    """
    The site serving C{parts}.  Form bodies are not parsed by twisted.web:
    they are relayed untouched (and a multipart upload would otherwise be
    read into memory once more).  Every request passes the L{Guard} (C{Host}
    check, CORS) and the connection limits (L{applyLimits}), both read from
    the current configuration.

    @param siteArgs: more arguments for L{Site} (tests pass a C{reactor}).
    """
    config = parts.config
    root = Guard(buildResource(parts), lambda: config.value, parts.loopbackOnly)
    later = parts.backlog.later if parts.backlog is not None else runNow
    site = logs.AccessLogSite(
        root, parts.clock, later, parsePOSTFormSubmission=False, **siteArgs
    )
    return applyLimits(site, lambda: config.value.limits)
