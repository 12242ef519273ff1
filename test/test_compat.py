"""
Tests for L{llamaswap.compat}: each fails loudly if Twisted changes the
private behaviour a helper relies on.  They use Twisted's real classes
(channels, client protocols, pools, decoders, publishers) on in-memory
transports.
"""

from __future__ import annotations

import io
import os
import select
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactor, MemoryReactorClock, StringTransport
from twisted.logger import (
    FileLogObserver,
    LogPublisher,
    textFileLogObserver,
    timeFormatRFC3339,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web._newclient import HTTP11ClientProtocol
from twisted.web._newclient import Request as ClientRequest
from twisted.web.client import URI, HTTPConnectionPool, ResponseNeverReceived
from twisted.web.error import SchemeNotSupported
from twisted.web.http import HTTPChannel
from twisted.web.http import Request as HTTPRequest
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel
from zope.interface import implementer

from llamaswap.compat import (
    ParsedOnceAgent,
    chunkedDecoder,
    classicTextFile,
    connectionHeaders,
    identityDecoder,
    isClientBufferFull,
    isDisconnected,
    logObservers,
    newPoolConnection,
    popIdleConnection,
    rawHeaderDict,
    readPendingOutput,
    retryingConnection,
    sendNow,
    takeReadBuffer,
)

OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class IsDisconnectedTests(SynchronousTestCase):
    def test_connectionLost(self) -> None:
        """
        A request whose connection was lost is disconnected; Twisted sets
        the private flag L{isDisconnected} reads in C{connectionLost}.
        """
        request = Request(DummyChannel())
        self.assertFalse(isDisconnected(request))
        request.connectionLost(Exception("gone"))
        self.assertTrue(isDisconnected(request))
        self.assertIn("_disconnected", vars(request))


class _Held(HTTPRequest):
    """
    A request that is never answered: its channel keeps handling it.
    """

    def process(self) -> None:
        pass


def heldChannel() -> HTTPChannel:
    channel = HTTPChannel()
    channel.requestFactory = _Held  # type: ignore[assignment]
    channel.makeConnection(StringTransport())
    return channel


class ChannelTests(SynchronousTestCase):
    """
    L{isClientBufferFull} and L{takeReadBuffer} on a real C{HTTPChannel}.
    """

    def test_clientBufferFull(self) -> None:
        """
        The channel is waiting for its transport between the transport's
        C{pauseProducing} and C{resumeProducing}.
        """
        channel = heldChannel()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        request = channel.requests[0]
        self.assertFalse(isClientBufferFull(request))
        channel.pauseProducing()
        self.assertTrue(isClientBufferFull(request))
        channel.resumeProducing()
        self.assertFalse(isClientBufferFull(request))

    def test_takeReadBuffer(self) -> None:
        """
        The bytes a client sent after the request being handled are taken
        once; a channel without the buffer gives L{None}.
        """
        channel = heldChannel()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nnext")
        channel.dataReceived(b" bytes")
        self.assertEqual(takeReadBuffer(channel), b"next bytes")
        self.assertEqual(takeReadBuffer(channel), b"")
        self.assertIsNone(takeReadBuffer(object()))


class DecoderTests(SynchronousTestCase):
    """
    twisted.web's body decoders, as L{chunkedDecoder} and
    L{identityDecoder} build them.
    """

    def test_chunked(self) -> None:
        data: list[bytes] = []
        rest: list[bytes] = []
        decoder = chunkedDecoder(data.append, rest.append)
        decoder.dataReceived(b"3\r\nabc\r\n2\r")
        decoder.dataReceived(b"\nde\r\n0\r\n\r\nafter")
        self.assertEqual(b"".join(data), b"abcde")
        self.assertEqual(rest, [b"after"])

    def test_identity(self) -> None:
        data: list[bytes] = []
        rest: list[bytes] = []
        decoder = identityDecoder(5, data.append, rest.append)
        decoder.dataReceived(b"ab")
        decoder.dataReceived(b"cdefg")
        self.assertEqual(b"".join(data), b"abcde")
        self.assertEqual(rest, [b"fg"])


class ConnectionHeadersTests(SynchronousTestCase):
    def test_throughEndpoint(self) -> None:
        """
        The response's connection headers are found on the client protocol
        behind the endpoint's wrapping protocol, as on a real connection.
        """
        reactor = MemoryReactorClock()
        connected = TCP4ClientEndpoint(reactor, "127.0.0.1", 5800).connect(
            Factory.forProtocol(HTTP11ClientProtocol)
        )
        wrapping = reactor.tcpClients[0][2].buildProtocol(None)
        transport = StringTransport()
        transport.protocol = wrapping  # as a TCP connection has it
        wrapping.makeConnection(transport)
        protocol = self.successResultOf(connected)
        self.assertIsInstance(protocol, HTTP11ClientProtocol)
        d = protocol.request(ClientRequest(b"GET", b"/", Headers({b"host": [b"h"]}), None))
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\n"
            b"X-Hop: 1\r\nContent-Length: 2\r\n\r\n"
        )
        response = self.successResultOf(d)
        headers = connectionHeaders(response)
        self.assertIsInstance(headers, Headers)
        assert headers is not None
        self.assertEqual(headers.getRawHeaders(b"connection"), [b"keep-alive, X-Hop"])
        self.assertFalse(response.headers.hasHeader(b"connection"))
        self.assertIsNone(connectionHeaders(object()))


class _MemoryEndpoint:
    """
    Connects each factory to a new L{StringTransport} at once.
    """

    def __init__(self) -> None:
        self.protocols: list[Any] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        self.protocols.append(protocol)
        return succeed(protocol)


@implementer(IBodyProducer)
class _Body:
    """
    A three-byte body that can be sent any number of times.
    """

    length = 3

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(b"abc")
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def get() -> ClientRequest:
    return ClientRequest(b"GET", b"/", Headers({b"host": [b"h"]}), None, persistent=True)


class PoolTests(SynchronousTestCase):
    """
    L{newPoolConnection} and L{popIdleConnection} on a real
    L{HTTPConnectionPool}.
    """

    def test_newAndIdle(self) -> None:
        """
        A new connection returns to the pool when its request is done and
        is idle under its key, with an idle timeout; popping it cancels the
        timeout and leaves nothing idle.
        """
        clock = Clock()
        pool = HTTPConnectionPool(clock)
        endpoint = _MemoryEndpoint()
        key = (b"http", b"127.0.0.1", 5800)
        protocol = self.successResultOf(newPoolConnection(pool, key, endpoint))
        self.assertIsNone(popIdleConnection(pool, key))
        d = protocol.request(get())
        protocol.dataReceived(OK_EMPTY)
        self.successResultOf(d)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertIs(popIdleConnection(pool, key), protocol)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertIsNone(popIdleConnection(pool, key))
        self.assertIsNone(popIdleConnection(pool, (b"http", b"10.0.0.1", 1)))


@implementer(IAgentEndpointFactory)
class _CountingEndpoints:
    """
    One L{_MemoryEndpoint}, counting how often an endpoint is asked for.
    """

    def __init__(self) -> None:
        self.endpoint = _MemoryEndpoint()
        self.asked: list[bytes] = []

    def endpointForURI(self, uri: URI) -> _MemoryEndpoint:
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(uri.scheme)
        self.asked.append(uri.toBytes())
        return self.endpoint


class ParsedOnceAgentTests(SynchronousTestCase):
    """
    L{ParsedOnceAgent} sends what L{Agent} sends, through
    C{_AgentBase._requestWithEndpoint}, parsing each URL once.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoints = _CountingEndpoints()
        self.pool = HTTPConnectionPool(self.clock, persistent=True)
        self.agent = ParsedOnceAgent.usingEndpointFactory(
            self.clock, self.endpoints, pool=self.pool
        )

    def test_requestsReuseTheParsedURL(self) -> None:
        """
        Two requests for one URL go out with its path and query and the
        host as Host, on the pooled connection, and the endpoint is asked
        for once.
        """
        url = b"http://127.0.0.1:5800/api/v1/models?x=1"
        for _ in range(2):
            d = self.agent.request(b"GET", url, Headers({b"x-a": [b"1"]}))
            (protocol,) = self.endpoints.endpoint.protocols
            sent = protocol.transport.value()
            protocol.transport.clear()
            self.assertTrue(sent.startswith(b"GET /api/v1/models?x=1 HTTP/1.1\r\n"), sent)
            self.assertIn(b"Host: 127.0.0.1:5800\r\n", sent)
            self.assertIn(b"X-A: 1\r\n", sent)
            protocol.dataReceived(OK_EMPTY)
            self.assertEqual(self.successResultOf(d).code, 200)
        self.assertEqual(self.endpoints.asked, [b"http://127.0.0.1:5800/api/v1/models?x=1"])

    def test_invalid(self) -> None:
        """
        An unsupported scheme fails the request's Deferred and an invalid
        URL raises, as with L{Agent}; neither is remembered.
        """
        self.failureResultOf(self.agent.request(b"GET", b"ftp://h/x"), SchemeNotSupported)
        self.assertRaises(ValueError, self.agent.request, b"GET", b"http://h/\x00")
        self.failureResultOf(self.agent.request(b"GET", b"ftp://h/x"), SchemeNotSupported)

    def test_bounded(self) -> None:
        """
        The cache is dropped when it holds C{maxParsed} URLs.
        """
        self.agent.maxParsed = 2
        for port in (1, 2, 3):
            self.agent.request(b"GET", b"http://127.0.0.1:%d/" % (port,))
        self.agent.request(b"GET", b"http://127.0.0.1:1/")
        self.assertEqual(len(self.endpoints.asked), 4)


class RetryingConnectionTests(SynchronousTestCase):
    """
    L{retryingConnection}: Twisted's retrying wrapper with a policy.
    """

    def setUp(self) -> None:
        self.endpoint = _MemoryEndpoint()
        self.pool = HTTPConnectionPool(Clock())
        self.calls: list[tuple[bytes, type, object]] = []

    def stale(self, policy: Any) -> tuple[Any, Any]:
        first = self.successResultOf(newPoolConnection(self.pool, "k", self.endpoint))
        wrapped = retryingConnection(
            first, lambda: newPoolConnection(self.pool, "k", self.endpoint), policy
        )
        return first, wrapped

    def record(self, answer: bool | None) -> Any:
        def policy(method: bytes, exception: Exception, producer: object) -> bool | None:
            self.calls.append((method, type(exception), producer))
            return answer

        return policy

    def test_retriedWhenPolicySaysSo(self) -> None:
        """
        A POST with a body whose connection closes before the answer is
        sent again on a new connection when the policy says so.
        """
        first, wrapped = self.stale(self.record(True))
        producer = _Body()
        d = wrapped.request(ClientRequest(b"POST", b"/", Headers({b"host": [b"h"]}), producer))
        first.connectionLost(Failure(ConnectionDone("idle close")))
        self.assertEqual(self.calls, [(b"POST", ResponseNeverReceived, producer)])
        self.assertEqual(len(self.endpoint.protocols), 2)
        self.assertTrue(self.endpoint.protocols[1].transport.value().endswith(b"\r\n\r\nabc"))
        self.endpoint.protocols[1].dataReceived(OK_EMPTY)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_twistedRule(self) -> None:
        """
        L{None} from the policy leaves the decision to Twisted: a bodiless
        GET is retried.
        """
        first, wrapped = self.stale(self.record(None))
        d = wrapped.request(get())
        first.connectionLost(Failure(ConnectionDone("idle close")))
        self.assertEqual(len(self.calls), 1)
        self.assertEqual(len(self.endpoint.protocols), 2)
        self.endpoint.protocols[1].dataReceived(OK_EMPTY)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_notRetried(self) -> None:
        """
        C{False} from the policy fails the request, even a GET Twisted
        would retry.
        """
        first, wrapped = self.stale(self.record(False))
        d = wrapped.request(get())
        first.connectionLost(Failure(ConnectionDone("idle close")))
        self.failureResultOf(d, ResponseNeverReceived)
        self.assertEqual(len(self.endpoint.protocols), 1)


class LogObserversTests(SynchronousTestCase):
    def test_liveList(self) -> None:
        """
        The list is the publisher's own: replacing an entry changes who
        receives events.
        """
        publisher = LogPublisher()
        first: list[dict] = []
        second: list[dict] = []
        publisher.addObserver(first.append)
        observers = logObservers(publisher)
        self.assertEqual(observers, [first.append])
        assert observers is not None
        observers[0] = second.append
        publisher({"log_format": "x"})
        self.assertEqual((len(first), len(second)), (0, 1))
        self.assertIsNone(logObservers(object()))  # type: ignore[arg-type]


class _Output(ProcessProtocol):
    def __init__(self) -> None:
        self.received = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.received += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class ReadPendingOutputTests(TestCase):
    timeout = 20

    async def test_unreadOutput(self) -> None:
        """
        What a child wrote and the reactor has not read yet is read at
        once, without waiting; then nothing is left (no blocking); an
        unknown descriptor or a transport without pipes gives nothing.
        """
        from twisted.internet import reactor

        protocol = _Output()
        transport = reactor.spawnProcess(protocol, "cat", ["cat"], env={"PATH": os.environ["PATH"]})
        reader = transport.pipes[1]  # type: ignore[attr-defined]
        reader.stopReading()
        transport.write(b"abc\n")

        async def waiting() -> None:
            deadline = reactor.seconds() + 10
            while not select.select([reader.fileno()], [], [], 0)[0]:
                self.assertLess(reactor.seconds(), deadline, "cat never echoed")
                await deferLater(reactor, 0.01, lambda: None)

        await waiting()
        self.assertEqual(readPendingOutput(transport, 1), b"abc\n")
        self.assertEqual(readPendingOutput(transport, 1), b"")
        self.assertEqual(readPendingOutput(transport, 7), b"")
        self.assertEqual(readPendingOutput(object(), 1), b"")
        reader.startReading()
        transport.closeStdin()
        await protocol.ended
        self.assertEqual(protocol.received, b"")


class ClassicTextFileTests(SynchronousTestCase):
    def test_textFileLogObserver(self) -> None:
        """
        A L{textFileLogObserver} (what twistd logs to) gives its file and
        time format, read from its formatting closure.
        """
        out = io.StringIO()
        self.assertEqual(classicTextFile(textFileLogObserver(out)), (out, timeFormatRFC3339))
        self.assertEqual(classicTextFile(textFileLogObserver(out, "%H")), (out, "%H"))
        self.assertEqual(classicTextFile(textFileLogObserver(out, None)), (out, None))

    def test_others(self) -> None:
        """
        Any other observer, a file observer with another format or one
        writing bytes, gives L{None}.
        """
        self.assertIsNone(classicTextFile([].append))
        self.assertIsNone(classicTextFile(FileLogObserver(io.StringIO(), lambda e: "x")))
        self.assertIsNone(classicTextFile(textFileLogObserver(io.BytesIO())))


class RawHeaderDictTests(SynchronousTestCase):
    def test_liveDict(self) -> None:
        """
        The dict is the headers' own: keyed by canonical names, and a name
        and values copied from another L{Headers} read back as if set.
        """
        source = Headers({b"x-custom-thing": [b"a", b"b"], "content-type": ["text/plain"]})
        into = Headers({b"Content-Type": [b"application/json"]})
        raw = rawHeaderDict(into)
        assert raw is not None
        self.assertEqual(raw, {b"Content-Type": [b"application/json"]})
        for name, values in source.getAllRawHeaders():
            raw[name] = list(values)
        self.assertEqual(into.getRawHeaders(b"x-custom-thing"), [b"a", b"b"])
        self.assertEqual(into.getRawHeaders("Content-Type"), ["text/plain"])
        self.assertEqual(into, source)
        self.assertIsNone(rawHeaderDict(object()))  # type: ignore[arg-type]


class _Socket(FileDescriptor):
    """
    A descriptor whose sends succeed (or fail with C{error}) at once.
    """

    def __init__(self, reactor: MemoryReactor) -> None:
        super().__init__(reactor)
        self.connected = 1
        self.sent: list[bytes] = []
        self.error: Exception | None = None

    def writeSomeData(self, data: bytes) -> int | BaseException:
        if self.error is not None:
            return self.error
        self.sent.append(bytes(data))
        return len(data)


class SendNowTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.socket = _Socket(self.reactor)

    def test_sends(self) -> None:
        """
        Buffered writes are sent at once, and the reactor no longer waits
        to write them.
        """
        self.socket.write(b"head")
        self.socket.write(b"body")
        self.assertIn(self.socket, self.reactor.getWriters())
        sendNow(self.socket)
        self.assertEqual(self.socket.sent, [b"headbody"])
        self.assertNotIn(self.socket, self.reactor.getWriters())
        sendNow(self.socket)  # nothing buffered: nothing to do
        self.assertEqual(self.socket.sent, [b"headbody"])

    def test_closing(self) -> None:
        """
        A transport that is closing is left to the reactor, which closes it
        once its data is out.
        """
        self.socket.write(b"bye")
        self.socket.loseConnection()
        sendNow(self.socket)
        self.assertEqual(self.socket.sent, [])
        self.assertIn(self.socket, self.reactor.getWriters())

    def test_sendError(self) -> None:
        """
        A send error leaves the socket registered for writing: the reactor
        meets the error again and closes the connection as usual.
        """
        self.socket.error = ConnectionDone()
        self.socket.write(b"data")
        sendNow(self.socket)
        self.assertIn(self.socket, self.reactor.getWriters())

    def test_otherTransports(self) -> None:
        """
        Anything but a socket descriptor (TLS, a test transport) is left
        alone.
        """
        transport = StringTransport()
        transport.write(b"x")
        sendNow(transport)
        sendNow(None)
        self.assertEqual(transport.value(), b"x")
