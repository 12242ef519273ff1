# -*- test-case-name: test.web.test_statusagent -*-
"""
The readiness probes' HTTP client: a C{GET} whose answer is its status
line and nothing more.

A probe only needs the status (200 or not).  Twisted's C{Agent} builds a
full client request and response, parses every header and reads the body
before the probe can end, about a third of a millisecond of Python per
probe, and a start's last probe is on the waiting request's path.
L{StatusAgent} writes one fixed request per URL (built once), reads up to
the end of the status line, answers, and closes the connection.  It is an
C{IAgent} for the prober's sake (L{llamaswap.upstream.health}); its
responses have a status and an empty body.
"""

from __future__ import annotations

from typing import Any, Callable

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web.client import URI, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IResponse
from zope.interface import implementer

#: The longest status line read before the answer counts as broken.
MAX_STATUS_LINE = 1024


class BadStatusLine(Exception):
    """
    The server's answer does not start with an HTTP status line.
    """


@implementer(IResponse)
@define(eq=False)
class StatusResponse:
    """
    A response known by its status line alone; its body is empty.
    """

    version: tuple[bytes, int, int]
    code: int
    phrase: bytes
    headers: Headers = field(factory=Headers)
    length: int = UNKNOWN_LENGTH
    request: Any = None
    previousResponse: Any = None

    def deliverBody(self, protocol: Any) -> None:
        protocol.connectionLost(Failure(ResponseDone()))

    def setPreviousResponse(self, response: Any) -> None:
        self.previousResponse = response


def parseStatusLine(line: bytes) -> StatusResponse:
    """
    C{HTTP/1.1 200 OK} as a L{StatusResponse}.

    @raise BadStatusLine: if it is not one.
    """
    parts = line.rstrip(b"\r").split(b" ", 2)
    try:
        name, _, numbers = parts[0].partition(b"/")
        major, minor = (int(n) for n in numbers.split(b"."))
        code = int(parts[1])
    except (ValueError, IndexError):
        raise BadStatusLine(line[:100]) from None
    if name != b"HTTP" or not 100 <= code <= 999:
        raise BadStatusLine(line[:100])
    return StatusResponse((name, major, minor), code, parts[2] if len(parts) > 2 else b"")


class _StatusLineProtocol(Protocol):
    """
    Sends C{request}, fires C{answered} with the status line's response and
    closes the connection.
    """

    def __init__(self, request: bytes, answered: Deferred[IResponse]) -> None:
        self._request = request
        self._answered = answered
        self._buffer = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        if self._answered.called:
            return
        self._buffer += data
        line, newline, _ = self._buffer.partition(b"\n")
        if not newline:
            if len(self._buffer) > MAX_STATUS_LINE:
                self._fail(Failure(BadStatusLine(self._buffer[:100])))
            return
        try:
            response = parseStatusLine(line)
        except BadStatusLine:
            self._fail(Failure())
            return
        self._answered.callback(response)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _fail(self, failure: Failure) -> None:
        self._answered.errback(failure)
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if not self._answered.called:
            self._answered.errback(reason)

    def abort(self) -> None:
        """
        Give up (the probe was cancelled).
        """
        if self.transport is not None:
            self.transport.abortConnection()


@implementer(IAgent)
@define(eq=False)
class StatusAgent:
    """
    An C{IAgent} for readiness probes: C{GET} only, no body, answers with
    the status line (see the module docstring).  Cancelling a request
    aborts its connection.

    @ivar endpointFor: the endpoint of a parsed URL (an
        C{IAgentEndpointFactory.endpointForURI}).
    """

    endpointFor: Callable[[URI], IStreamClientEndpoint]
    userAgent: bytes = b"llamaswap-health"
    _requests: dict[bytes, tuple[URI, bytes]] = field(factory=dict, init=False)

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: Any = None,
    ) -> Deferred[IResponse]:
        if method != b"GET" or bodyProducer is not None:
            raise ValueError("StatusAgent only sends GET requests without a body")
        parsed, request = self._requests.get(uri) or self._prepare(uri)
        protocol: _StatusLineProtocol | None = None

        def cancel(_: Deferred[IResponse]) -> None:
            connecting.cancel()
            if protocol is not None:
                protocol.abort()

        answered: Deferred[IResponse] = Deferred(cancel)

        def connected(p: _StatusLineProtocol) -> None:
            nonlocal protocol
            protocol = p

        factory = Factory.forProtocol(lambda: _StatusLineProtocol(request, answered))
        factory.noisy = False
        connecting = self.endpointFor(parsed).connect(factory)
        connecting.addCallbacks(connected, lambda f: answered.called or answered.errback(f))
        return answered

    def _prepare(self, uri: bytes) -> tuple[URI, bytes]:
        parsed = URI.fromBytes(uri)
        host = b"[%s]" % (parsed.host,) if b":" in parsed.host else parsed.host
        if parsed.port != {b"http": 80, b"https": 443}.get(parsed.scheme):
            host += b":%d" % (parsed.port,)
        request = (
            b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nConnection: close\r\n\r\n"
            % (parsed.originForm, host, self.userAgent)
        )
        if len(self._requests) >= 256:
            self._requests.clear()
        self._requests[uri] = (parsed, request)
        return parsed, request
