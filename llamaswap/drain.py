# -*- test-case-name: test.test_drain -*-
"""
Draining the HTTP server on shutdown: track the requests a L{Site} is
serving, and once it stops listening, let them finish within a bound before
the upstreams are stopped, so running completions are not cut off.

L{RequestTracker.watch} wraps a site's C{requestFactory}, so every request
is counted from its first line until it is finished or its connection is
lost.  L{RequestTracker.drain}:

 - closes idle keep-alive connections at once and makes busy ones close
   after their current response (C{Connection: close} where headers are
   still unsent), so clients stop sending requests on them;
 - closes the connections of requests marked with L{markLongLived} (event
   and log streams that never end by themselves);
 - fires when no request is in flight, or when the timeout is over, after
   aborting the connections of the requests still running.
"""

from __future__ import annotations

import weakref
from functools import partial
from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Site

from .finish import whenFinished

_LONG_LIVED = "_llamaswapLongLived"


def markLongLived(request: Any) -> None:
    """
    Mark C{request} as a stream that only ends when its client leaves (an
    SSE event or log stream): draining closes it at once instead of
    waiting for it.
    """
    setattr(request, _LONG_LIVED, True)


def isLongLived(request: Any) -> bool:
    """
    Whether C{request} was marked with L{markLongLived}.
    """
    return bool(getattr(request, _LONG_LIVED, False))


class RequestTracker:
    """
    Counts the requests of the sites it watches and drains them.

    @ivar draining: whether L{drain} was called.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        # request -> its channel (a finished request forgets its channel)
        self._requests: dict[Any, Any] = {}
        self._channels: weakref.WeakSet[Any] = weakref.WeakSet()
        self._idle: list[Deferred[None]] = []
        self.draining = False

    @property
    def inFlight(self) -> int:
        """
        Requests received and not yet finished.
        """
        return len(self._requests)

    def watch(self, site: Site) -> Site:
        """
        Count every request C{site} creates from now on (call it before the
        site listens).

        @return: C{site}.
        """
        site.requestFactory = self.wrapRequestFactory(site.requestFactory)
        return site

    def wrapRequestFactory(self, factory: Callable[..., Any]) -> Callable[..., Any]:
        """
        A request factory that builds requests with C{factory} and tracks
        them.
        """

        def tracked(*args: Any, **kwargs: Any) -> Any:
            request = factory(*args, **kwargs)
            self.track(request)
            return request

        return tracked

    def track(self, request: Any) -> None:
        """
        Count C{request} until it is finished or its connection is lost.
        """
        channel = getattr(request, "channel", None)
        self._requests[request] = channel
        if channel is not None:
            # A keep-alive channel brings many requests; adding it again
            # would make a new weak reference each time.
            if channel not in self._channels:
                self._channels.add(channel)
            if self.draining:
                self._closeAfterResponse(channel, request)
        whenFinished(request, partial(self._finished, request=request))

    def _finished(self, result: object, request: Any) -> None:
        channel = self._requests.pop(request, None)
        if self.draining:
            if channel is not None and not self._busy(channel):
                self._close(channel)
            if not self._requests:
                idle, self._idle = self._idle, []
                for d in idle:
                    d.callback(None)
        return None

    def _busy(self, channel: Any) -> bool:
        return any(c is channel for c in self._requests.values())

    @staticmethod
    def _close(channel: Any) -> None:
        transport = getattr(channel, "transport", None)
        if transport is None or getattr(transport, "disconnecting", False):
            return
        if getattr(transport, "disconnected", False):
            return
        channel.loseConnection()

    @staticmethod
    def _closeAfterResponse(channel: Any, request: Any) -> None:
        channel.persistent = False
        if not getattr(request, "startedWriting", True):
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])

    def drain(self, timeout: float) -> Deferred[int]:
        """
        Stop keep-alive, close idle and long-lived connections, and wait
        up to C{timeout} seconds for the requests in flight to finish.

        @return: fires with the number of requests that had to be cut off
            (their connections aborted) when the timeout ran out.
        """
        self.draining = True
        for request, channel in list(self._requests.items()):
            if channel is None:
                continue
            if isLongLived(request):
                self._close(channel)
            else:
                self._closeAfterResponse(channel, request)
        for channel in list(self._channels):
            if not self._busy(channel):
                self._close(channel)
        return Deferred.fromCoroutine(self._wait(timeout))

    async def _wait(self, timeout: float) -> int:
        if not self._requests:
            return 0
        count = len(self._requests)
        self.log.info(
            "waiting up to {timeout}s for {count} request(s) in flight",
            timeout=timeout,
            count=count,
        )
        idle: Deferred[None] = Deferred()
        self._idle.append(idle)
        timer: IDelayedCall = self._clock.callLater(max(timeout, 0.0), idle.cancel)
        try:
            await idle
        except CancelledError:
            pass
        finally:
            if timer.active():
                timer.cancel()
            if idle in self._idle:
                self._idle.remove(idle)
        left = list(self._requests.items())
        if left:
            self.log.warn(
                "{count} request(s) still in flight after {timeout}s; closing them",
                count=len(left),
                timeout=timeout,
            )
            for _, channel in left:
                transport = getattr(channel, "transport", None)
                if transport is not None:
                    abort = getattr(transport, "abortConnection", transport.loseConnection)
                    abort()
        return len(left)


__all__ = ["RequestTracker", "isLongLived", "markLongLived"]
