"""
Test doubles for the relay: a real twisted.web L{Site} driven over a
L{StringTransport} on the client side, and on the upstream side an agent
whose connections are llamaswap's real L{UpstreamConnection}s over string
transports, so the relay meets the real client's responses, body
transports and framing.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from llamaswap.web.forward import Forwarder, ForwardResult
from llamaswap.web.h1client import ConnectionPool, UpstreamClient, UpstreamConnection


class UpstreamTransport(StringTransport):
    """
    The upstream side of one connection.  Closing it (as the relay does
    through C{stopProducing}, or Twisted through C{abortConnection}) delivers
    C{connectionLost} to the protocol on the next clock tick, as a reactor
    would.

    @ivar pauses: how many times it was paused.
    """

    def __init__(self, clock: Clock) -> None:
        super().__init__(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 40000),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 5800),
            lenient=True,
        )
        self.clock = clock
        self.protocol: UpstreamConnection | None = None
        self.pauses = 0
        self.closed = False
        self.closedAt: float | None = None

    def pauseProducing(self) -> None:
        self.pauses += 1
        super().pauseProducing()

    def _close(self, reason: Failure) -> None:
        if self.closed:
            return
        self.closed = True
        self.closedAt = self.clock.seconds()
        assert self.protocol is not None
        self.clock.callLater(0, self.protocol.connectionLost, reason)

    def stopProducing(self) -> None:
        super().stopProducing()
        self.loseConnection()

    def loseConnection(self) -> None:
        super().loseConnection()
        self._close(Failure(ConnectionDone()))

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()
        self._close(Failure(ConnectionLost("aborted")))


def connectInMemory(clock: Clock, factory: Any) -> tuple[Any, UpstreamTransport]:
    """
    A protocol from C{factory} connected over a new L{UpstreamTransport}
    (what a test endpoint's C{connect} does).
    """
    protocol = factory.buildProtocol(None)
    transport = UpstreamTransport(clock)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


class BodyCollector(Protocol):
    """
    Collects a response body and how it ended.
    """

    def __init__(self) -> None:
        self.data = b""
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason


class UpstreamExchange:
    """
    One request the relay sent upstream, and the means to answer it.
    """

    def __init__(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers,
        protocol: UpstreamConnection,
        transport: UpstreamTransport,
        deferred: Deferred[IResponse],
    ) -> None:
        self.method = method
        self.uri = uri
        self.headers = headers
        self.protocol = protocol
        self.transport = transport
        self.deferred = deferred

    def sent(self) -> bytes:
        """
        Everything the relay wrote on this connection.
        """
        return self.transport.value()

    def sentBody(self) -> bytes:
        """
        The request body the relay wrote (after the head).
        """
        return self.sent().split(b"\r\n\r\n", 1)[1]

    def sentHeaders(self) -> Headers:
        """
        The request headers as they went over the wire.
        """
        head = self.sent().split(b"\r\n\r\n", 1)[0]
        headers = Headers()
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers.addRawHeader(name.strip(), value.strip())
        return headers

    def respond(self, data: bytes) -> None:
        """
        Feed raw response bytes (status line, headers, body) to the relay.
        """
        self.protocol.dataReceived(data)

    def drop(self, reason: Failure | None = None) -> None:
        """
        The upstream's connection breaks.
        """
        self.transport.closed = True
        self.protocol.connectionLost(reason or Failure(ConnectionLost("upstream died")))


class _FreshConnections(ConnectionPool):
    """
    A pool that keeps nothing: every request gets a connection of its own.
    """

    def take(self, key: Any) -> None:
        return None

    def put(self, key: Any, connection: UpstreamConnection) -> None:
        pass


@implementer(IAgent)
class ProtocolAgent:
    """
    An L{IAgent} whose every request runs on a fresh L{UpstreamConnection}
    over an L{UpstreamTransport}; tests answer through L{exchanges}.
    Requests fail with C{failWith} instead, when set.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.exchanges: list[UpstreamExchange] = []
        self.failWith: Callable[[], Failure] | None = None
        self._connected: list[tuple[UpstreamConnection, UpstreamTransport]] = []
        self._client = UpstreamClient(_FreshConnections(clock), lambda uri: self)

    def connect(self, factory: Any) -> Deferred[UpstreamConnection]:
        """
        The endpoint of every URL: a connection over a string transport.
        """
        protocol, transport = connectInMemory(self.clock, factory)
        self._connected.append((protocol, transport))
        return succeed(protocol)

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        if self.failWith is not None:
            d: Deferred[IResponse] = Deferred()
            d.errback(self.failWith())
            return d
        d = self._client.request(method, uri, headers, bodyProducer)
        protocol, transport = self._connected.pop()
        self.exchanges.append(
            UpstreamExchange(method, uri, headers or Headers(), protocol, transport, d)
        )
        return d


class ForwardingResource(Resource):
    """
    A leaf that forwards every request to C{url} with C{forwarder}, keeping
    the results.
    """

    isLeaf = True

    def __init__(self, forwarder: Forwarder, url: bytes, **kw: Any) -> None:
        super().__init__()
        self.forwarder = forwarder
        self.url = url
        self.kw = kw
        self.results: list[Deferred[ForwardResult]] = []
        self.requests: list[Request] = []

    def render(self, request: Request) -> Any:
        self.requests.append(request)
        self.results.append(
            self.forwarder.forward(request, self.url, request.uri, **self.kw)
        )
        return NOT_DONE_YET


class Client:
    """
    A client connection to a real L{Site} over a L{StringTransport}.
    """

    def __init__(self, site: Site) -> None:
        self.transport = StringTransport(
            peerAddress=IPv4Address("TCP", "192.0.2.7", 51000),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        )
        self.channel: HTTPChannel = site.buildProtocol(self.transport.getPeer())
        self.channel.makeConnection(self.transport)

    def send(
        self,
        method: bytes = b"POST",
        path: bytes = b"/v1/chat/completions",
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        version: bytes = b"HTTP/1.1",
    ) -> None:
        lines = [b"%s %s %s" % (method, path, version), b"Host: proxy.example:8080"]
        for name, value in headers or []:
            lines.append(name + b": " + value)
        if body or method in (b"POST", b"PUT"):
            lines.append(b"Content-Length: %d" % (len(body),))
        self.channel.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + body)

    @property
    def http(self) -> HTTPChannel:
        """
        The L{HTTPChannel} (inside the site's protocol wrapper, if any).
        """
        return getattr(self.channel, "_channel", self.channel)  # type: ignore[no-any-return]

    def pause(self) -> None:
        """
        The client's socket buffer is full.
        """
        self.transport.producer.pauseProducing()

    def resume(self) -> None:
        self.transport.producer.resumeProducing()

    def disconnect(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone("client went away")))

    def response(self) -> ParsedResponse:
        return ParsedResponse.parse(self.transport.value())


class ParsedResponse:
    """
    A response as the client received it, possibly incomplete.

    @ivar complete: whether the body's end was seen (the zero chunk, or the
        full Content-Length).
    """

    def __init__(
        self, status: int, headers: Headers, body: bytes, complete: bool, raw: bytes
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.complete = complete
        self.raw = raw

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.getRawHeaders(name)
        return values[-1] if values else None

    @classmethod
    def parse(cls, raw: bytes) -> ParsedResponse:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"no complete response head in {raw!r}")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = Headers()
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.addRawHeader(name.strip(), value.strip())
        te = headers.getRawHeaders(b"transfer-encoding") or []
        if b"chunked" in te:
            body, complete = _dechunk(rest)
        else:
            length = headers.getRawHeaders(b"content-length")
            if length:
                n = int(length[0])
                body, complete = rest[:n], len(rest) >= n
            else:
                body, complete = rest, False
        return cls(status, headers, body, complete, raw)


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    body = []
    while True:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return b"".join(body), False
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return b"".join(body), rest.startswith(b"\r\n")
        if len(rest) < size + 2:
            body.append(rest[:size])
            return b"".join(body), False
        body.append(rest[:size])
        data = rest[size + 2 :]


class RecordingTap:
    """
    A tap that records what it saw (sizes, not data, for big bodies).
    """

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.started: list[tuple[int, Headers]] = []
        self.chunks: list[bytes] = []
        self.bytes = 0
        self.ended: list[Failure | None] = []

    def responseStarted(self, status: int, headers: Headers) -> None:
        self.started.append((status, headers))

    def dataReceived(self, data: bytes) -> None:
        self.bytes += len(data)
        if self.keep:
            self.chunks.append(data)

    def responseEnded(self, reason: Failure | None) -> None:
        self.ended.append(reason)


def sseEvent(n: int) -> bytes:
    """
    An OpenAI-style streamed chat chunk as one SSE event.
    """
    return b'data: {"choices":[{"index":0,"delta":{"content":"tok%d"}}]}\n\n' % (n,)
