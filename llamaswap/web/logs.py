# -*- test-case-name: test.web.test_logs -*-
"""
The log endpoints and the access-logging site.

- C{GET /logs} (and v1's C{/log}): the combined history as plain text;
  a browser (C{Accept} with C{text/html}) is sent to the UI instead.
- C{GET /logs/stream[/<id>]}: the history, then live lines, as chunked
  plain text.  C{<id>} is empty (combined), C{proxy}, C{upstream} or a
  model (ID, alias; it may contain C{/}, longest prefix wins).
  C{?no-history} skips the history.
- C{GET /logs/streamSSE[/<id>]} (llama-swap v1): the same as Server-Sent
  Events, one event per line (the history as one event), with a comment
  every L{HEARTBEAT} seconds so proxies keep an idle stream open.  Plain
  text streams get no heartbeat: any byte would become part of the log.

A stream is a push producer on its request: when the client stops reading
and the socket buffer fills, twisted.web pauses it, its subscription
queues a bounded amount and then drops lines (the client later reads
C{[llamaswap: N lines dropped]}); writers never wait and memory stays
bounded.  Streams end when the client goes or llamaswap stops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from attrs import define, field
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from ..backlog import Later, runNow
from ..compat import isDisconnected
from ..delayed import cancelCall
from ..drain import markLongLived
from ..finish import whenFinished
from ..httperrors import BadRequest
from ..observe.access import AccessLog
from ..observe.logs import Monitor, Subscription
from ..observe.monitors import LogMonitors
from ..routing.router import Router
from .errors import renderHTTPError
from .mux import MONITOR, Mux

#: Seconds between SSE heartbeat comments.
HEARTBEAT = 15.0
INVALID_LOGGER = "invalid logger. Use 'proxy', 'upstream' or a model's ID"

Frame = Callable[[bytes], bytes]


def plainFrame(data: bytes) -> bytes:
    """
    Plain-text streams send log bytes as they are.
    """
    return data


def sseFrame(data: bytes) -> bytes:
    """
    One Server-Sent Event carrying C{data}: a C{data:} field per line.
    """
    lines = data[:-1] if data.endswith(b"\n") else data
    return b"".join(b"data: " + line + b"\n" for line in lines.split(b"\n")) + b"\n"


def resolveMonitor(logs: LogMonitors, router: Router, name: str) -> Monitor | None:
    """
    The monitor C{/logs/stream/<name>} asks for: the combined log for
    C{""}, C{proxy}, C{upstream}, else the local model C{name} names,
    trying the longest prefix (split at C{/}) first, aliases accepted.

    @param router: resolves local model names (a
        L{llamaswap.routing.router.Router}).
    """
    name = name.split("?", 1)[0]
    monitor = logs.monitorFor(name) if name in ("", "proxy", "upstream") else None
    if monitor is not None:
        return monitor
    parts = name.split("/")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end])
        resolved = router.resolve(candidate)
        if resolved is not None:
            return logs.modelMonitor(resolved[0])
    return None


@implementer(IPushProducer)
@define(slots=False, eq=False)
class LogStream:
    """
    Streams a monitor to one request: history first (unless skipped), then
    live writes, pausing with the client and ending when it goes.
    """

    request: Request
    monitor: Monitor
    _frame: Frame = field(default=plainFrame, kw_only=True)
    _history: bool = field(default=True, kw_only=True)
    _clock: IReactorTime | None = field(default=None, kw_only=True)
    _heartbeat: float | None = field(default=None, kw_only=True)
    _heartbeatBytes: bytes = field(default=b":\n\n", kw_only=True)
    _beat: IDelayedCall | None = field(default=None, init=False)
    subscription: Subscription | None = field(default=None, init=False)
    done: bool = field(default=False, init=False)

    def start(self) -> None:
        """
        Register with the request, subscribe, write the history.
        """
        request = self.request
        # It never ends by itself: a graceful shutdown closes it at once.
        markLongLived(request)
        request.registerProducer(self, True)
        whenFinished(request, lambda _: self._stop())
        # Headers go out now, so the client knows the stream is open.
        request.write(b"")
        self.subscription = self.monitor.subscribe(self._deliver, onClose=self.finish)
        if self._history:
            history = self.monitor.history()
            if history:
                request.write(self._frame(history))
        self._armHeartbeat()

    def _deliver(self, data: bytes) -> None:
        self.request.write(self._frame(data))

    def _armHeartbeat(self) -> None:
        if self._heartbeat is not None and self._clock is not None and not self.done:
            self._beat = self._clock.callLater(self._heartbeat, self._sendHeartbeat)

    def _sendHeartbeat(self) -> None:
        self._beat = None
        if self.done:
            return
        if self.subscription is None or not self.subscription.paused:
            self.request.write(self._heartbeatBytes)
        self._armHeartbeat()

    def pauseProducing(self) -> None:
        if self.subscription is not None:
            self.subscription.pause()

    def resumeProducing(self) -> None:
        if self.subscription is not None:
            self.subscription.resume()

    def stopProducing(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.done:
            return
        self.done = True
        self._beat = cancelCall(self._beat)
        if self.subscription is not None:
            self.subscription.cancel()

    def finish(self) -> None:
        """
        End the stream from our side (llamaswap is stopping).
        """
        self._stop()
        request = self.request
        if request.finished or isDisconnected(request):
            return
        request.unregisterProducer()
        request.finish()


def _streamHeaders(request: Request, contentType: bytes) -> None:
    request.setHeader(b"content-type", contentType)
    request.setHeader(b"cache-control", b"no-cache")
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"x-accel-buffering", b"no")


def queryHas(request: Request, key: bytes) -> bool:
    """
    Whether the query string has C{key}, with or without a value (Go's
    C{Query().Has}; twisted.web's C{args} drops keys without C{=}).
    """
    query = request.uri.partition(b"?")[2]
    return any(
        unquote_to_bytes(item.partition(b"=")[0].replace(b"+", b" ")) == key
        for item in query.split(b"&")
    )


def _wantsHistory(request: Request) -> bool:
    return not queryHas(request, b"no-history")


def install(mux: Mux, logs: LogMonitors, router: Router, clock: IReactorTime) -> None:
    """
    Add the log routes to C{mux}: C{logs}' monitors, local model names
    resolved by C{router}, heartbeats on C{clock}.
    """

    def history(request: Request, rest: bytes) -> bytes:
        accept = request.getHeader(b"accept") or b""
        if b"text/html" in accept:
            request.redirect(b"/ui/#/logs")
            return b""
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return logs.combined.history()

    def stream(sse: bool) -> Callable[[Request, bytes], Any]:
        def render(request: Request, rest: bytes) -> bytes | int:
            name = unquote(rest.decode("utf-8", "replace"))
            monitor = resolveMonitor(logs, router, name)
            if monitor is None:
                return renderHTTPError(request, BadRequest(INVALID_LOGGER))
            if sse:
                _streamHeaders(request, b"text/event-stream; charset=utf-8")
            else:
                _streamHeaders(request, b"text/plain; charset=utf-8")
            if request.method == b"HEAD":
                return b""
            LogStream(
                request,
                monitor,
                frame=sseFrame if sse else plainFrame,
                history=_wantsHistory(request),
                clock=clock,
                heartbeat=HEARTBEAT if sse else None,
            ).start()
            return NOT_DONE_YET

        return render

    mux.route("GET", "/logs", history, scope=MONITOR)
    mux.route("GET", "/log", history, scope=MONITOR)
    mux.route("GET", "/logs/stream", stream(False), scope=MONITOR)
    mux.route("GET", "/logs/stream/", stream(False), scope=MONITOR)
    mux.route("GET", "/logs/streamSSE", stream(True), scope=MONITOR)
    mux.route("GET", "/logs/streamSSE/", stream(True), scope=MONITOR)


class AccessLogSite(Site):
    """
    A L{Site} whose access log is llamaswap's (L{AccessLog}: one proxy-log
    line per request, streams included) instead of twisted.web's
    combined-log-format lines.  It does not log its own start and stop
    ("Starting factory"); the listening port logs where it listens.
    """

    noisy = False

    def __init__(
        self, resource: Resource, clock: IReactorTime, later: Later = runNow, **kw: Any
    ) -> None:
        """
        @param later: writes access lines when the proxy is quiet
            (L{llamaswap.backlog.Backlog.later}).
        """
        super().__init__(resource, **kw)
        self.accessLog = AccessLog(clock, later)

    def getResourceFor(self, request: Request) -> Any:
        self.accessLog.begin(request)
        return super().getResourceFor(request)

    def log(self, request: Request) -> None:
        """
        twisted.web's own access log: replaced by L{AccessLog}.
        """

    def logPrefix(self) -> str:
        """
        How the listening port names us ("llamaswap starting on 8080").
        """
        return "llamaswap"


__all__ = [
    "HEARTBEAT",
    "INVALID_LOGGER",
    "AccessLogSite",
    "LogStream",
    "install",
    "plainFrame",
    "resolveMonitor",
    "sseFrame",
]
