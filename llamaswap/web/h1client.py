# -*- test-case-name: test.web.test_h1client -*-
"""
llamaswap's own HTTP/1.1 client for upstream servers: the relay's hot path.

Twisted's C{Agent} is general and pays for it on every request: a request
object, a parser built of line receivers, a state machine per connection,
several Deferreds and a timer per pooled connection.  Upstream exchanges
are always the same shape (one request at a time on a keep-alive
connection to a server on this machine), and that work was about a fifth
of the relay's CPU per request.  This client does only what they need:

 - L{UpstreamConnection}: one exchange at a time.  The request head (and a
   small body) goes out in one write, sent at once rather than when the
   reactor next polls; a large body streams from its producer with
   back-pressure (C{Content-Length}, or C{chunked} when its length is
   unknown).  The response is parsed by L{llamaswap.web.h1parse} and its
   body handed to the protocol given to C{deliverBody} as it arrives,
   paused and resumed through the transport that protocol gets.
 - L{ConnectionPool}: idle connections per server (the most recently used
   first), each closed after L{ConnectionPool.cachedConnectionTimeout}
   seconds unused by one sweep timer, not a timer per connection.
 - L{UpstreamClient}: an C{IAgent}.  A request that fails on a pooled
   connection before any byte of an answer (the server had closed it) is
   sent once more on a fresh one when its body can be sent again
   (L{replayable}).

Errors keep Twisted's types (C{ResponseNeverReceived}, C{ResponseFailed},
C{RequestTransmissionFailed}, C{ResponseDone}, C{PotentialDataLoss}), so
callers of either client read them alike.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Hashable

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    PotentialDataLoss,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from ..compat import headersFromPairs, writeNow
from .bodies import BodyProducer
from .h1parse import ResponseError, ResponseHead, ResponseParser

_log = Logger()

#: Bodies up to this size go out in the same write as the request head.
SMALL_BODY = 64 * 1024

_IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"DELETE", b"TRACE"))
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")

Key = Hashable


def replayable(method: bytes, exception: Exception, body: object) -> bool:
    """
    Whether a request that failed with C{exception} on a pooled connection
    (before any byte of an answer) may be sent again on a fresh one: it was
    not cancelled, and its body is a L{BodyProducer} (which can start over)
    or it has none and its method is idempotent.  This is the race every
    keep-alive client has with servers that close idle connections
    (llama-server does after a few seconds); Go's C{http.Transport}
    retries in the same situation.
    """
    if not isinstance(
        exception, (RequestNotSent, RequestTransmissionFailed, ResponseNeverReceived)
    ):
        return False
    if any(
        reason.check(CancelledError) for reason in getattr(exception, "reasons", ())
    ):
        return False
    if isinstance(body, BodyProducer):
        return True
    return body is None and method in _IDEMPOTENT


# ---------------------------------------------------------------------------
# Requests


class Target:
    """
    Where requests to one URL go, worked out once per URL.

    @ivar key: the pool key, C{(scheme, host, port)}.
    @ivar path: the request target (path and query).
    @ivar host: the C{Host} header value, for requests that bring none.
    """

    __slots__ = ("key", "endpoint", "path", "host", "url")

    def __init__(
        self, key: Key, endpoint: Any, path: bytes, host: bytes, url: bytes
    ) -> None:
        self.key = key
        self.endpoint = endpoint
        self.path = path
        self.host = host
        self.url = url


def _hostValue(uri: URI) -> bytes:
    host = uri.host
    if b":" in host:
        host = b"[" + host + b"]"
    if (uri.scheme, uri.port) in ((b"http", 80), (b"https", 443)):
        return host
    return b"%b:%d" % (host, uri.port)


class ClientRequest:
    """
    The request a response answers (C{IResponse.request}).
    """

    __slots__ = ("method", "absoluteURI", "headers")

    def __init__(self, method: bytes, absoluteURI: bytes, headers: Headers) -> None:
        self.method = method
        self.absoluteURI = absoluteURI
        self.headers = headers


def requestHead(
    method: bytes, target: Target, headers: Headers | None, framing: bytes
) -> bytes:
    """
    The request line and headers, ending with the blank line.  C{framing}
    is the body's C{Content-Length} or C{Transfer-Encoding} line, or
    nothing.
    """
    lines = [method, b" ", target.path, b" HTTP/1.1\r\n"]
    if headers is None or not headers.hasHeader(b"host"):
        lines += [b"Host: ", target.host, b"\r\n"]
    if headers is not None:
        for name, values in headers.getAllRawHeaders():
            for value in values:
                lines += [name, b": ", value, b"\r\n"]
    lines += [framing, b"\r\n"]
    return b"".join(lines)


class Exchange:
    """
    One request and its answer, possibly over two connections (a replay).
    """

    def __init__(
        self,
        client: UpstreamClient,
        target: Target,
        method: bytes,
        headers: Headers | None,
        body: IBodyProducer | None,
    ) -> None:
        self.client = client
        self.target = target
        self.method = method
        self.headers = headers
        self.body = body
        self.small: bytes | None = None
        length = None if body is None else body.length
        if body is None:
            framing = b"Content-Length: 0\r\n" if method in (b"POST", b"PUT") else b""
        elif length is UNKNOWN_LENGTH:
            framing = b"Transfer-Encoding: chunked\r\n"
        else:
            framing = b"Content-Length: %d\r\n" % (length,)
            if isinstance(body, BodyProducer):
                self.small = body.whole(SMALL_BODY)
        self.head = requestHead(method, target, headers, framing)
        self.result: Deferred[IResponse] = Deferred(self._cancel)
        self.connection: UpstreamConnection | None = None
        self.connecting: Deferred[UpstreamConnection] | None = None
        self.over = False
        self.replayed = False

    def start(self) -> None:
        pool = self.client.pool
        connection = pool.take(self.target.key)
        if connection is not None:
            connection.issue(self)
            return
        spare = pool.adopt(self.target.key)
        if spare is None:
            self._connect()
            return
        self.connecting = spare
        spare.addCallbacks(self._adopted, self._notConnected)

    def _adopted(self, connection: UpstreamConnection | None) -> None:
        """
        The spare connection this exchange waited for is made (or not:
        L{None}, then it connects as usual).
        """
        self.connecting = None
        if connection is not None:
            self._connected(connection)
        elif not self.over:
            self._connect()

    def _connect(self) -> None:
        connecting = self.connecting = self.client.pool.connect(
            self.target.key, self.target.endpoint
        )
        connecting.addCallbacks(self._connected, self._notConnected)

    def _connected(self, connection: UpstreamConnection) -> None:
        self.connecting = None
        if self.over:
            self.client.pool.put(self.target.key, connection)
            return
        connection.issue(self)

    def _notConnected(self, failure: Failure) -> None:
        self.connecting = None
        self.fail(failure)

    def lost(self, connection: UpstreamConnection, failure: Failure) -> None:
        """
        C{connection} failed this exchange before its answer began: send it
        again on a fresh connection if that is safe, else fail.
        """
        self.connection = None
        if (
            connection.reused
            and not self.replayed
            and not self.over
            and replayable(self.method, failure.value, self.body)  # type: ignore[arg-type]
        ):
            self.replayed = True
            self._connect()
            return
        self.fail(failure)

    def answered(self, response: IResponse) -> None:
        if not self.over:
            self.over = True
            self.result.callback(response)

    def fail(self, failure: Failure) -> None:
        if not self.over:
            self.over = True
            self.result.errback(failure)

    def _cancel(self, result: Deferred[IResponse]) -> None:
        if self.over:
            return
        self.over = True
        if self.connecting is not None:
            self.connecting.cancel()
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abandon()
        result.errback(Failure(ResponseNeverReceived([Failure(CancelledError())])))


# ---------------------------------------------------------------------------
# Responses


@implementer(IPushProducer)
class BodyTransport:
    """
    What the protocol given to C{deliverBody} sees as its transport: pause,
    resume and stop reach the connection until the body ends, nothing
    afterwards (the connection may then carry another exchange).
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: UpstreamConnection) -> None:
        self._connection: UpstreamConnection | None = connection

    def detach(self) -> None:
        self._connection = None

    def pauseProducing(self) -> None:
        if self._connection is not None:
            self._connection.pauseBody()

    def resumeProducing(self) -> None:
        if self._connection is not None:
            self._connection.resumeBody()

    def stopProducing(self) -> None:
        if self._connection is not None:
            self._connection.abandon()

    loseConnection = stopProducing


_PENDING = object()


@implementer(IResponse)
class Response:
    """
    An upstream's answer: status, end-to-end headers, and a body that
    flows to the protocol given to L{deliverBody} (kept until then).

    @ivar connectionHeaders: the connection-control headers, which
        C{headers} leaves out (C{Connection}, C{Content-Length},
        C{Transfer-Encoding}...).
    """

    previousResponse = None

    def __init__(
        self, head: ResponseHead, request: ClientRequest, transport: BodyTransport
    ) -> None:
        self.version = head.version
        self.code = head.code
        self.phrase = head.phrase
        headers = self.headers = headersFromPairs(head.headers)
        self.connectionHeaders = headersFromPairs(head.control)
        if request.method == b"HEAD":
            for name, value in head.control:
                if name == b"content-length":
                    headers.addRawHeader(name, value)
        self.length = UNKNOWN_LENGTH if head.length is None else head.length
        self.request = request
        self._transport = transport
        self._protocol: Protocol | None = None
        self._kept: list[bytes] = []
        self._ended: object = _PENDING

    @property
    def delivered(self) -> bool:
        return self._protocol is not None

    def deliverBody(self, protocol: Any) -> None:
        if self._protocol is not None:
            raise RuntimeError("the body of a response can be delivered only once")
        self._protocol = protocol
        protocol.makeConnection(self._transport)
        kept, self._kept = self._kept, []
        for data in kept:
            protocol.dataReceived(data)
        if self._ended is not _PENDING:
            protocol.connectionLost(self._ended)
        else:
            self._transport.resumeProducing()

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response

    def bodyReceived(self, data: bytes) -> None:
        if self._protocol is not None:
            self._protocol.dataReceived(data)
        else:
            self._kept.append(data)

    def bodyEnded(self, reason: Failure) -> None:
        self._transport.detach()
        self._ended = reason
        if self._protocol is not None:
            self._protocol.connectionLost(reason)

    def readEnded(self) -> None:
        """
        One read from the server was handed on and the body goes on: a
        protocol with a C{readEnded} method hears of it (a relay sends
        what the read brought once, whatever it held).
        """
        readEnded = getattr(self._protocol, "readEnded", None)
        if readEnded is not None:
            readEnded()


# ---------------------------------------------------------------------------
# Connections


class _BodyWriter:
    """
    The consumer a request body producer writes to: the connection's
    transport, framed in chunks when the length is unknown, and checked
    against the announced length otherwise.
    """

    def __init__(self, transport: Any, length: object) -> None:
        self._transport = transport
        self._left = None if length is UNKNOWN_LENGTH else int(length)  # type: ignore[call-overload]

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._left is None:
            self._transport.writeSequence([b"%x\r\n" % (len(data),), data, b"\r\n"])
            return
        self._left -= len(data)
        if self._left < 0:
            raise ValueError("request body longer than its announced length")
        self._transport.write(data)

    def finish(self) -> None:
        if self._left is None:
            self._transport.write(b"0\r\n\r\n")
        elif self._left:
            raise ValueError(f"request body {self._left} bytes short of its length")


class UpstreamConnection(Protocol):
    """
    One keep-alive connection to an upstream server, carrying one
    L{Exchange} at a time; the L{ResponseParser}'s sink.

    @ivar open: whether it can still be used (connected, and not being
        closed by this side).
    @ivar reused: taken from the pool (it may have been closed by the
        server meanwhile).
    @ivar idleSince: clock time it was last put in the pool.
    @ivar answeredAt: clock time its last response ended; L{None} before.
    """

    def __init__(self, pool: ConnectionPool, key: Key, endpoint: Any = None) -> None:
        self._pool = pool
        self._key = key
        self._endpoint = endpoint
        self.open = False
        self.reused = False
        self.idleSince = 0.0
        self.answeredAt: float | None = None
        #: This side closes it because its last response said so.
        self._closedAsAsked = False
        self._lost = False
        self._exchange: Exchange | None = None
        self._parser: ResponseParser | None = None
        self._response: Response | None = None
        self._producer: IBodyProducer | None = None
        self._writer: _BodyWriter | None = None
        self._paused = False
        self._whenClosed: list[Deferred[None]] = []

    # -- the request --------------------------------------------------------

    def issue(self, exchange: Exchange) -> None:
        """
        Send C{exchange}'s request on this (idle, open) connection.
        """
        self._exchange = exchange
        exchange.connection = self
        self._parser = ResponseParser(self, exchange.method == b"HEAD")
        self._response = None
        body, small = exchange.body, exchange.small
        if body is None:
            writeNow(self.transport, exchange.head)
        elif small is not None:
            writeNow(self.transport, exchange.head + small)
        else:
            writeNow(self.transport, exchange.head)
            self._produce(body)

    def _produce(self, body: IBodyProducer) -> None:
        self._producer = body
        writer = self._writer = _BodyWriter(self.transport, body.length)
        self.transport.registerProducer(body, True)  # type: ignore[union-attr]
        try:
            producing = body.startProducing(writer)
        except Exception:
            producing = fail()
        producing.addCallbacks(
            self._bodySent, self._bodyFailed, (writer,), None, (writer,)
        )

    def _bodySent(self, ignored: object, writer: _BodyWriter) -> None:
        if writer is not self._writer:
            return
        try:
            writer.finish()
        except ValueError:
            self._bodyFailed(Failure(), writer)
            return
        self._stopSending(stopProducer=False)

    def _bodyFailed(self, failure: Failure, writer: _BodyWriter) -> None:
        if writer is not self._writer:
            return
        self._stopSending(stopProducer=False)
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.connection = None
            exchange.fail(Failure(RequestTransmissionFailed([failure])))
        self.abandon()

    def _stopSending(self, stopProducer: bool) -> None:
        producer, self._producer, self._writer = self._producer, None, None
        if producer is None:
            return
        if stopProducer:
            producer.stopProducing()
        if not self._lost:
            self.transport.unregisterProducer()  # type: ignore[union-attr]

    def abandon(self) -> None:
        """
        Close the connection at once (a cancelled exchange, a body nobody
        wants): the upstream sees the client go.
        """
        self._exchange = None
        self._close(abort=True)

    def _close(self, abort: bool) -> None:
        if self.open:
            self.open = False
            if abort:
                self.transport.abortConnection()  # type: ignore[union-attr]
            else:
                self.transport.loseConnection()  # type: ignore[union-attr]

    # -- the response (ResponseSink) ------------------------------------------

    def headReceived(self, head: ResponseHead) -> None:
        exchange = self._exchange
        assert exchange is not None
        self._exchange = None
        exchange.connection = None
        headers = exchange.headers if exchange.headers is not None else Headers()
        response = self._response = Response(
            head,
            ClientRequest(exchange.method, exchange.target.url, headers),
            BodyTransport(self),
        )
        exchange.answered(response)
        parser = self._parser
        if (
            not response.delivered
            and self._response is response
            and parser
            and not parser.done
        ):
            # Hold the body until someone asks for it.
            self.pauseBody()

    def bodyReceived(self, data: bytes) -> None:
        if self._response is not None:
            self._response.bodyReceived(data)

    def bodyEnded(self) -> None:
        """
        Nothing yet: L{dataReceived} finishes once the parser has returned.
        """

    def dataReceived(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            # Bytes nobody asked for: the connection is out of step.
            self.abandon()
            return
        try:
            extra = parser.feed(data)
        except ResponseError:
            self._broken(Failure())
            return
        if parser.done and parser is self._parser:
            self._complete(parser, reusable=not extra)
        elif self._response is not None:
            self._response.readEnded()

    def _complete(self, parser: ResponseParser, reusable: bool) -> None:
        """
        The response ended: the connection goes back to the pool, or is
        closed, before the body's protocol hears of it.
        """
        response, self._response, self._parser = self._response, None, None
        if self._paused:
            self.resumeBody()
        head = parser.head
        self.answeredAt = self._pool.clock.seconds()
        if reusable and head is not None and head.persistent and self._producer is None:
            self._pool.put(self._key, self)
        else:
            sending = self._producer is not None
            self._closedAsAsked = reusable and not sending
            self._stopSending(stopProducer=True)
            self._close(abort=sending)
        if response is not None:
            response.bodyEnded(Failure(ResponseDone()))

    def _broken(self, failure: Failure) -> None:
        _log.info(
            "upstream {key} sent a malformed response: {error}",
            key=self._key,
            error=failure.getErrorMessage(),
        )
        response, exchange = self._response, self._exchange
        self._response = self._parser = None
        self._stopSending(stopProducer=True)
        self.abandon()
        error = Failure(ResponseFailed([failure]))
        if response is not None:
            response.bodyEnded(error)
        elif exchange is not None:
            exchange.connection = None
            exchange.fail(error)

    # -- flow control -----------------------------------------------------------

    def pauseBody(self) -> None:
        if not self._paused and self.open:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeBody(self) -> None:
        if self._paused and self.open:
            self._paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]

    # -- the connection ---------------------------------------------------------

    def connectionMade(self) -> None:
        self.open = True

    def close(self) -> None:
        """
        Close the connection once what was written has been sent.
        """
        self._close(abort=False)

    def whenClosed(self) -> Deferred[None]:
        """
        Close the connection now; fires once it is closed.
        """
        if self._lost:
            return succeed(None)
        closed: Deferred[None] = Deferred()
        self._whenClosed.append(closed)
        self._close(abort=True)
        return closed

    def connectionLost(self, reason: Failure | None = None) -> None:
        if reason is None:
            reason = Failure(ConnectionDone())
        endedByServer = self.open
        self.open = False
        self._lost = True
        self._pool.forget(self._key, self)
        self._stopSending(stopProducer=True)
        parser, response, exchange = self._parser, self._response, self._exchange
        self._parser = self._response = self._exchange = None
        if response is not None:
            if parser is not None and parser.closed():
                response.bodyEnded(Failure(PotentialDataLoss()))
            else:
                response.bodyEnded(Failure(ResponseFailed([reason])))
        elif exchange is not None:
            received = parser is not None and parser.received
            failure = Failure(
                (ResponseFailed if received else ResponseNeverReceived)([reason])
            )
            exchange.lost(self, failure)
        waiters, self._whenClosed = self._whenClosed, []
        for closed in waiters:
            closed.callback(None)
        if (
            (endedByServer or self._closedAsAsked)
            and response is None
            and exchange is None
            and self.answeredAt is not None
        ):
            self._pool.ended(self._key, self._endpoint, self.answeredAt)


class _ConnectionFactory(Factory):  # type: ignore[misc]
    noisy = False

    def __init__(self, pool: ConnectionPool, key: Key, endpoint: Any) -> None:
        self._pool = pool
        self._key = key
        self._endpoint = endpoint

    def buildProtocol(self, addr: object) -> UpstreamConnection:
        return UpstreamConnection(self._pool, self._key, self._endpoint)


# ---------------------------------------------------------------------------
# The pool


class _Spare:
    """
    A connection being opened ahead of the next request (L{ConnectionPool.ended}).

    @ivar waiter: fired with the connection (or L{None}) for the request
        that adopted it; L{None} while nobody has.
    """

    __slots__ = ("connecting", "waiter")

    def __init__(self) -> None:
        self.connecting: Deferred[UpstreamConnection] | None = None
        self.waiter: Deferred[UpstreamConnection | None] | None = None


class ConnectionPool:
    """
    Idle connections per server, the most recently used handed out first;
    at most L{maxPersistentPerHost} per server, each closed after
    L{cachedConnectionTimeout} seconds unused.

    A server that ends a connection with or right after a response
    (llama-server does after every streamed one, and HTTP/1.0 servers after
    each) gets its next connection at once, a I{spare}: the next request
    finds it made, or waits for it rather than opening another (a server
    that serves one connection at a time serves the spare first).
    """

    maxPersistentPerHost = 64
    cachedConnectionTimeout = 90.0
    #: Seconds after its last response within which a connection's end
    #: calls for a spare (later ends are idle timeouts: nothing is wanted).
    spareWindow = 1.0

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._idle: dict[Key, list[UpstreamConnection]] = {}
        self._spares: dict[Key, _Spare] = {}
        self._sweep: IDelayedCall | None = None

    def idle(self, key: Key | None = None) -> int:
        """
        How many idle connections there are (to C{key}'s server).
        """
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(connections) for connections in self._idle.values())

    def connect(self, key: Key, endpoint: Any) -> Deferred[UpstreamConnection]:
        """
        A new connection to C{key}'s server over C{endpoint}.
        """
        try:
            result: Deferred[UpstreamConnection] = endpoint.connect(
                _ConnectionFactory(self, key, endpoint)
            )
        except Exception:
            return fail()
        return result

    def take(self, key: Key) -> UpstreamConnection | None:
        """
        An idle connection to C{key}'s server, or L{None}.
        """
        connections = self._idle.get(key)
        while connections:
            connection = connections.pop()
            if connection.open:
                connection.reused = True
                return connection
        return None

    def put(self, key: Key, connection: UpstreamConnection) -> None:
        """
        Keep C{connection} idle for the next request to C{key}'s server (or
        close it, when enough are kept already).
        """
        if not connection.open:
            return
        connections = self._idle.setdefault(key, [])
        if len(connections) >= self.maxPersistentPerHost:
            connection.close()
            return
        connection.idleSince = self.clock.seconds()
        connections.append(connection)
        if self._sweep is None:
            self._sweep = self.clock.callLater(
                self.cachedConnectionTimeout, self._expire
            )

    def ended(self, key: Key, endpoint: Any, answeredAt: float) -> None:
        """
        The server ended a connection after its response that ended at
        C{answeredAt}: open a spare unless one is idle or being opened
        already, or the end came too late to say anything.
        """
        if (
            endpoint is None
            or self.maxPersistentPerHost <= 0
            or self._idle.get(key)
            or key in self._spares
            or self.clock.seconds() - answeredAt > self.spareWindow
        ):
            return
        spare = self._spares[key] = _Spare()
        connecting = spare.connecting = self.connect(key, endpoint)
        connecting.addCallbacks(
            self._spareMade, self._spareFailed, (key, spare), None, (key, spare)
        )

    def adopt(self, key: Key) -> Deferred[UpstreamConnection | None] | None:
        """
        The spare being opened to C{key}'s server, for a request that found
        no idle connection: a L{Deferred} firing with it, or with L{None}
        if it could not be made; L{None} when there is none.
        """
        spare = self._spares.pop(key, None)
        if spare is None:
            return None
        waiter = spare.waiter = Deferred(lambda d: self._dropSpare(spare))
        return waiter

    def _spareOpened(self, key: Key, spare: _Spare) -> Deferred[UpstreamConnection | None] | None:
        """
        C{spare} is made or failed: it is no longer being opened; its
        waiter, if a request adopted it.
        """
        if self._spares.get(key) is spare:
            del self._spares[key]
        spare.connecting = None
        return spare.waiter

    def _spareMade(self, connection: UpstreamConnection, key: Key, spare: _Spare) -> None:
        waiter = self._spareOpened(key, spare)
        if waiter is None:
            self.put(key, connection)
        elif not waiter.called:
            waiter.callback(connection)
        else:
            connection.close()

    def _spareFailed(self, failure: Failure, key: Key, spare: _Spare) -> None:
        waiter = self._spareOpened(key, spare)
        if waiter is not None and not waiter.called:
            waiter.callback(None)

    @staticmethod
    def _dropSpare(spare: _Spare) -> None:
        """
        Nobody wants C{spare} any more: stop opening it (a connection made
        meanwhile is closed).
        """
        if spare.connecting is not None:
            spare.connecting.cancel()

    def forget(self, key: Key, connection: UpstreamConnection) -> None:
        """
        C{connection} closed: not idle any more.
        """
        connections = self._idle.get(key)
        if connections and connection in connections:
            connections.remove(connection)
            if not connections:
                del self._idle[key]

    def _expire(self) -> None:
        self._sweep = None
        now = self.clock.seconds()
        limit = self.cachedConnectionTimeout
        oldest = None
        for connections in list(self._idle.values()):
            for connection in list(connections):
                if now - connection.idleSince >= limit:
                    connection.whenClosed()
                elif oldest is None or connection.idleSince < oldest:
                    oldest = connection.idleSince
        if oldest is not None:
            self._sweep = self.clock.callLater(oldest + limit - now, self._expire)

    def _stopSweep(self) -> None:
        if self._sweep is not None and not any(self._idle.values()):
            if self._sweep.active():
                self._sweep.cancel()
            self._sweep = None

    def closeCachedConnectionsTo(self, key: Key) -> Deferred[None]:
        """
        Close the idle connections to C{key}'s server; fires once closed.
        """
        connections = self._idle.pop(key, [])
        spare = self._spares.pop(key, None)
        if spare is not None:
            self._dropSpare(spare)
        self._stopSweep()
        return _allClosed(connections)

    def closeCachedConnections(self) -> Deferred[None]:
        """
        Close every idle connection; fires once they are closed.
        """
        connections = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        spares, self._spares = list(self._spares.values()), {}
        for spare in spares:
            self._dropSpare(spare)
        self._stopSweep()
        return _allClosed(connections)


def _allClosed(connections: list[UpstreamConnection]) -> Deferred[None]:
    if not connections:
        return succeed(None)
    closing = [connection.whenClosed() for connection in connections]
    return gatherResults(closing).addCallback(lambda ignored: None)


# ---------------------------------------------------------------------------
# The agent


@implementer(IAgent)
class UpstreamClient:
    """
    An C{IAgent} over a L{ConnectionPool}; C{endpointFor(uri)} gives the
    endpoint of a parsed URL's server (an C{UpstreamEndpoints}'
    C{endpointForURI}).
    """

    def __init__(self, pool: ConnectionPool, endpointFor: Callable[[URI], Any]) -> None:
        self.pool = pool
        self._endpointFor = endpointFor
        self.target = functools.lru_cache(maxsize=256)(self._target)

    def _target(self, url: bytes) -> Target:
        uri = URI.fromBytes(url.strip())
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")
        path = uri.originForm
        if _BAD_TARGET.search(path) is not None:
            raise ValueError(f"invalid request target {path!r}")
        return Target(
            (uri.scheme, uri.host, uri.port),
            self._endpointFor(uri),
            path,
            _hostValue(uri),
            url,
        )

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        try:
            if _METHOD.fullmatch(method) is None:
                raise ValueError(f"invalid method {method!r}")
            exchange = Exchange(self, self.target(uri), method, headers, bodyProducer)
        except Exception:
            return fail()
        exchange.start()
        return exchange.result


__all__ = [
    "BodyTransport",
    "ClientRequest",
    "ConnectionPool",
    "Exchange",
    "Response",
    "SMALL_BODY",
    "Target",
    "UpstreamClient",
    "UpstreamConnection",
    "replayable",
    "requestHead",
]
