# -*- test-case-name: test.web.test_limits -*-
"""
What one client connection may cost: body size, header and body time,
and the number of connections (C{limits} in the configuration).

twisted.web buffers every request body before a resource sees it and only
has an idle timeout, reset by every byte.  So, on the connection:

 - a declared C{Content-Length} over C{maxRequestBodyBytes} is refused with
   413 as soon as the headers are in, before a byte of body is stored; a
   chunked body is refused when it reaches the limit;
 - the request head must be complete within C{headerTimeout} of connecting
   (or of the previous response's end): a client trickling a byte at a
   time cannot keep its socket, and neither can an idle keep-alive one;
 - a body that stops arriving for C{bodyTimeout} is refused with 408;
 - over C{maxConnections} open connections, a new one is answered 503.

A refusal is a complete response (the JSON error envelope, C{Connection:
close}) written straight to the socket; the connection is then closed, and
aborted if the client does not read it within L{ABORT_AFTER} seconds.
Every status llamaswap sends carries its reason phrase
(L{LimitedRequest.setResponseCode}; Twisted has none for 429, 422, ...).
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web.http import RESPONSES, datetimeToString
from twisted.web.server import Request, Site

from ..compat import processRequest
from ..config.limits import LimitsConfig
from ..delayed import Deadline, cancelCall
from ..httperrors import envelopeBytes
from .output import HeldOutputChannel

#: Seconds a refused client has to read the refusal before it is aborted.
ABORT_AFTER = 5.0

log = Logger()


def reasonPhrase(status: int) -> bytes:
    """
    The standard reason phrase of C{status} (C{b"Unknown Status"} for codes
    nobody defines).
    """
    known = RESPONSES.get(status)
    if known is not None:
        return known
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Client Closed Request" if status == 499 else b"Unknown Status"


def refusal(status: int, message: str) -> bytes:
    """
    A complete HTTP/1.1 response refusing a request: the JSON envelope, then
    the connection closes.
    """
    body = envelopeBytes(status, message)
    head = (
        b"HTTP/1.1 %d %s\r\n" % (status, reasonPhrase(status))
        + b"Content-Type: application/json\r\n"
        + b"Content-Length: %d\r\n" % (len(body),)
        + b"Connection: close\r\n\r\n"
    )
    return head + body


class _DateHeader:
    """
    The C{Date} header's value, formatted once a second rather than once
    a request.
    """

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        second = int(self._now())
        if second != self._second:
            self._value = datetimeToString(second)
            self._second = second
        return self._value


class LimitedRequest(Request):
    """
    A request that counts its body against the limit as it arrives and
    always sends a reason phrase.
    """

    _bodyBytes = 0
    _date = _DateHeader()

    def process(self) -> None:
        processRequest(self, self._date())

    def handleContentChunk(self, data: bytes) -> None:
        self._bodyBytes += len(data)
        channel = self.channel
        if isinstance(channel, GuardedChannel) and self._bodyBytes > channel.maxBodyBytes:
            channel.refuse(
                413,
                f"request body exceeds the limit of {channel.maxBodyBytes} bytes",
            )
            return
        super().handleContentChunk(data)

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            # Hooks that adjust the head (the CORS policy) run once, just
            # before it is written.
            hooks = getattr(self, "responseStartHooks", None)
            if hooks:
                self.responseStartHooks = []
                for hook in hooks:
                    hook(self)
        super().write(data)

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        if not message:
            message = reasonPhrase(code)
        super().setResponseCode(code, message)


class ConnectionGuard:
    """
    Counts a site's open connections and tells each its limits.

    @ivar open: connections admitted and not yet closed.
    """

    def __init__(self, limits: Callable[[], LimitsConfig]) -> None:
        self.limits = limits
        self.open = 0
        self.refused = 0

    def admit(self) -> bool:
        """
        Count a new connection, or refuse it when C{maxConnections} are open.
        """
        if self.open >= self.limits().maxConnections:
            self.refused += 1
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


class GuardedChannel(HeldOutputChannel):
    """
    An L{HTTPChannel} enforcing its site's L{ConnectionGuard} limits.

    The header and body timeouts are phases of one L{Deadline} per
    connection: moving it per request or per body chunk only records a
    time, so a keep-alive connection costs no timer work per request.
    """

    guard: ConnectionGuard | None = None
    maxBodyBytes = LimitsConfig().maxRequestBodyBytes
    refused = False
    _admitted = False
    #: The head or body timeout, L{None} before the connection is made.
    _deadline: Deadline | None = None
    #: What the deadline waits for: C{"headers"} or C{"body"}.
    _awaiting = "headers"
    #: The current request's body is still arriving.
    _bodyPending = False
    _abortTimer: IDelayedCall | None = None

    #: The connection's addresses, asked of the socket once: twisted.web
    #: asks for both on every request (a C{getsockname} call each time).
    _hostAddress: Any = None
    _peerAddress: Any = None

    def getHost(self) -> Any:
        if self._hostAddress is None:
            self._hostAddress = super().getHost()
        return self._hostAddress

    def getPeer(self) -> Any:
        if self._peerAddress is None:
            self._peerAddress = super().getPeer()
        return self._peerAddress

    def _limits(self) -> LimitsConfig:
        return self.guard.limits() if self.guard is not None else LimitsConfig()

    def connectionMade(self) -> None:
        site = getattr(self, "site", None)
        self.guard = getattr(site, "guard", None)
        self.maxBodyBytes = self._limits().maxRequestBodyBytes
        clock = getattr(site, "reactor", None)
        if clock is None:
            from twisted.internet import reactor as clock
        self._deadline = Deadline(clock, self._timedOut)
        super().connectionMade()
        if self.guard is not None:
            if not self.guard.admit():
                self.refuse(503, "too many connections, try again later")
                return
            self._admitted = True
        self._startHeaderTimer()

    def connectionLost(self, reason: Any) -> None:
        if self._admitted and self.guard is not None:
            self._admitted = False
            self.guard.release()
        self.stopTimers()
        super().connectionLost(reason)

    def stopTimers(self) -> None:
        """
        Cancel every timer of this connection (it is closed, or handed
        over to another protocol).
        """
        if self._deadline is not None:
            self._deadline.close()
        self._abortTimer = cancelCall(self._abortTimer)

    # -- the head -----------------------------------------------------------

    def _startHeaderTimer(self) -> None:
        deadline = self._deadline
        if deadline is None or self.refused:
            return
        if self._awaiting == "headers" and deadline.due is not None:
            return
        self._awaiting = "headers"
        deadline.start(self._limits().headerTimeout)

    def _stopHeaderTimer(self) -> None:
        if self._awaiting == "headers" and self._deadline is not None:
            self._deadline.stop()

    def _timedOut(self) -> None:
        """
        The deadline passed before the request's head or body arrived:
        refuse it with 408.
        """
        self.refuse(408, f"request {self._awaiting} not received in time")

    def lineReceived(self, line: bytes) -> None:
        if self.refused:
            return
        super().lineReceived(line)

    def allHeadersReceived(self) -> None:
        self._stopHeaderTimer()
        self.maxBodyBytes = self._limits().maxRequestBodyBytes
        length = self.length
        if length is not None and length > self.maxBodyBytes:
            self.refuse(
                413,
                f"request body of {length} bytes exceeds the limit of"
                f" {self.maxBodyBytes} bytes",
            )
            return
        # Cleared by allContentReceived, maybe inside the call below; the
        # body timeout starts only if the body is still incomplete when
        # this read is processed (see dataReceived).
        self._bodyPending = True
        super().allHeadersReceived()
        if self.length == 0 or self.refused:
            self._bodyPending = False

    # -- the body -----------------------------------------------------------

    def rawDataReceived(self, data: bytes) -> None:
        if self.refused:
            return
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        if self._bodyPending:
            self._bodyPending = False
            if self._awaiting == "body" and self._deadline is not None:
                self._deadline.stop()
        if self.refused:
            return
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        # The next request's head is due within headerTimeout; buffered
        # pipelined data is parsed inside requestDone and may stop the timer
        # at once.
        if self.persistent and not self.refused:
            self._startHeaderTimer()
        super().requestDone(request)

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            return
        super().dataReceived(data)
        if self._bodyPending and not self.refused and self._deadline is not None:
            # The body keeps arriving (or has yet to): due within
            # bodyTimeout of this read.
            self._awaiting = "body"
            self._deadline.start(self._limits().bodyTimeout)

    # -- refusing -------------------------------------------------------------

    def refuse(self, status: int, message: str) -> None:
        """
        Answer C{status} with C{message} in the error envelope and close
        the connection, reading nothing more from it.
        """
        if self.refused:
            return
        self.refused = True
        self.persistent = False
        self._bodyPending = False
        if self._deadline is not None:
            self._deadline.close()
        transport = self.transport
        peer = transport.getPeer() if transport is not None else None
        log.info(
            "refused client {peer}: {status} {message}",
            peer=str(peer),
            status=status,
            message=message,
        )
        if transport is None:
            return
        self._release()
        if not self.requests or not self.requests[-1].startedWriting:
            transport.write(refusal(status, message))
        self._abortTimer = self.callLater(ABORT_AFTER, self._abort)
        transport.loseConnection()

    def _abort(self) -> None:
        self._abortTimer = None
        if self.transport is not None:
            self.transport.abortConnection()


def applyLimits(site: Site, limits: Callable[[], LimitsConfig]) -> Site:
    """
    Make C{site} enforce C{limits()} (read at each connection and request,
    so that a reloaded configuration applies to new ones).

    @return: C{site}.
    """
    site.guard = ConnectionGuard(limits)  # type: ignore[attr-defined]
    site.protocol = GuardedChannel
    site.requestFactory = LimitedRequest
    return site


__all__ = [
    "ABORT_AFTER",
    "ConnectionGuard",
    "GuardedChannel",
    "LimitedRequest",
    "applyLimits",
    "reasonPhrase",
    "refusal",
]
