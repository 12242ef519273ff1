"""
Tests for L{llamaswap.web.h1client}, llamaswap's upstream HTTP/1.1 client,
on in-memory connections (L{UpstreamTransport}: a close reaches the
protocol on the next clock tick, as with a reactor).
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import (
    FileBodyProducer,
    PotentialDataLoss,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer, IResponse
from zope.interface import implementer
from zope.interface.verify import verifyObject

from llamaswap.web.bodies import BodyProducer
from llamaswap.web.h1client import (
    SMALL_BODY,
    ConnectionPool,
    UpstreamClient,
    UpstreamConnection,
    replayable,
)
from llamaswap.web.h1parse import ResponseError

from .helpers import BodyCollector, UpstreamTransport, connectInMemory

URL = b"http://127.0.0.1:5800/v1/chat?x=1"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class MemoryEndpoint:
    """
    Connects at once over an L{UpstreamTransport}, or fails with
    C{refuse}, or waits when C{hold} (fired by the test).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.connections: list[tuple[UpstreamConnection, UpstreamTransport]] = []
        self.refuse = False
        self.hold: list[Deferred[Any]] | None = None
        self.heldFactories: list[Any] = []
        self.cancelled = 0

    def connect(self, factory: Any) -> Deferred[Any]:
        if self.refuse:
            return fail(ConnectionRefusedError())
        if self.hold is not None:
            waiting: Deferred[Any] = Deferred(lambda d: setattr(self, "cancelled", 1))
            self.hold.append(waiting)
            self.heldFactories.append(factory)
            return waiting
        protocol, transport = connectInMemory(self.clock, factory)
        self.connections.append((protocol, transport))
        return succeed(protocol)


@implementer(IBodyProducer)
class Unknown:
    """
    A body of unknown length, written as asked, that cannot be replayed.
    """

    length = UNKNOWN_LENGTH

    def __init__(self, pieces: list[bytes], error: Exception | None = None) -> None:
        self.pieces = pieces
        self.error = error
        self.stopped = False

    def startProducing(self, consumer: Any) -> Deferred[None]:
        for piece in self.pieces:
            consumer.write(piece)
        return fail(self.error) if self.error else succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.stopped = True


class ClientCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = ConnectionPool(self.clock)
        self.endpoint = MemoryEndpoint(self.clock)
        self.client = UpstreamClient(self.pool, lambda uri: self.endpoint)

    def connection(
        self, index: int = -1
    ) -> tuple[UpstreamConnection, UpstreamTransport]:
        return self.endpoint.connections[index]

    def sent(self, index: int = -1) -> bytes:
        return self.connection(index)[1].value()

    def answer(self, data: bytes, index: int = -1) -> None:
        self.connection(index)[0].dataReceived(data)

    def twoAtOnce(self, first: int = 0) -> None:
        """
        Two requests at once, each on a new connection (the C{first}-th
        and the next), answered in turn.
        """
        requests = [self.client.request(b"GET", URL) for _ in range(2)]
        for index, request in enumerate(requests):
            self.answer(OK, first + index)
            self.successResultOf(request)

    def roundTrip(self, method: bytes = b"GET", body: bytes = b"") -> IResponse:
        d = self.client.request(
            method, URL, Headers(), BodyProducer(body) if body else None
        )
        self.answer(OK)
        response = self.successResultOf(d)
        collected = BodyCollector()
        response.deliverBody(collected)
        assert collected.reason is not None
        self.assertTrue(collected.reason.check(ResponseDone))
        return response


class RequestTests(ClientCase):
    """
    What goes over the wire.
    """

    def test_head(self) -> None:
        """
        The request line has the path and query; C{Host} is the URL's
        authority unless the caller gives one; headers follow as given.
        """
        self.client.request(b"GET", URL, Headers({b"x-a": [b"1", b"2"]}))
        self.assertEqual(
            self.sent(),
            b"GET /v1/chat?x=1 HTTP/1.1\r\nHost: 127.0.0.1:5800\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
        )
        self.client.request(
            b"GET", b"http://h/", Headers({b"host": [b"client.example"]})
        )
        self.assertEqual(self.sent(), b"GET / HTTP/1.1\r\nHost: client.example\r\n\r\n")
        self.client.request(b"GET", b"http://[::1]:80/")
        self.assertTrue(self.sent().startswith(b"GET / HTTP/1.1\r\nHost: [::1]\r\n"))

    def test_smallBodyInOneWrite(self) -> None:
        """
        A small body follows the head in the same write, with its length;
        a bodiless POST says C{Content-Length: 0}.
        """
        self.client.request(b"POST", URL, None, BodyProducer(b"{}"))
        protocol, transport = self.connection()
        self.assertEqual(
            transport.value(),
            b"POST /v1/chat?x=1 HTTP/1.1\r\nHost: 127.0.0.1:5800\r\n"
            b"Content-Length: 2\r\n\r\n{}",
        )
        self.assertIsNone(transport.producer)
        self.client.request(b"POST", URL)
        self.assertIn(b"\r\nContent-Length: 0\r\n\r\n", self.sent())

    def test_largeBodyStreamed(self) -> None:
        """
        A body larger than L{SMALL_BODY} (here from a file) is written by
        its producer, registered with the transport for back-pressure
        until it is done.
        """
        data = bytes(range(256)) * (SMALL_BODY // 128)
        d = self.client.request(b"POST", URL, None, BodyProducer(io.BytesIO(data)))
        protocol, transport = self.connection()
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: %d" % (len(data),), head)
        self.assertEqual(body, data)
        self.assertIsNone(transport.producer)
        self.answer(OK)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_unknownLengthChunked(self) -> None:
        """
        A body of unknown length goes out chunked.
        """
        self.client.request(b"PUT", URL, None, Unknown([b"abc", b"", b"0123456789"]))
        head, _, body = self.sent().partition(b"\r\n\r\n")
        self.assertIn(b"Transfer-Encoding: chunked", head)
        self.assertEqual(body, b"3\r\nabc\r\na\r\n0123456789\r\n0\r\n\r\n")

    def test_bodyFailure(self) -> None:
        """
        A producer that fails, or writes other than its length, fails the
        request (C{RequestTransmissionFailed}) and closes the connection.
        """
        d = self.client.request(b"PUT", URL, None, Unknown([b"ab"], ValueError("disk")))
        failure = self.failureResultOf(d, RequestTransmissionFailed)
        self.assertTrue(failure.value.reasons[0].check(ValueError))
        self.assertTrue(self.connection()[1].aborted)

        short = Unknown([b"ab"])
        short.length = 5  # type: ignore[assignment]
        self.failureResultOf(
            self.client.request(b"PUT", URL, None, short), RequestTransmissionFailed
        )

    def test_invalid(self) -> None:
        """
        An unsupported scheme, a method that is not a token and a target
        with spaces fail the request before anything is sent.
        """
        self.failureResultOf(
            self.client.request(b"GET", b"ftp://h/x"), SchemeNotSupported
        )
        self.failureResultOf(self.client.request(b"GE T", URL), ValueError)
        self.failureResultOf(self.client.request(b"GET", b"http://h/a b"), ValueError)
        self.assertEqual(self.endpoint.connections, [])

    def test_refused(self) -> None:
        """
        A refused connection fails the request with the connect error.
        """
        self.endpoint.refuse = True
        self.failureResultOf(self.client.request(b"GET", URL), ConnectionRefusedError)


class ResponseTests(ClientCase):
    """
    Responses and their bodies.
    """

    def test_response(self) -> None:
        """
        Status, phrase, end-to-end headers, connection-control headers
        apart, length, the request it answers.
        """
        d = self.client.request(b"GET", URL, Headers({b"x-a": [b"1"]}))
        self.answer(
            b"HTTP/1.1 201 Made\r\nX-B: 2\r\nConnection: keep-alive, X-Hop\r\n"
            b"Content-Length: 2\r\n\r\nok"
        )
        response = self.successResultOf(d)
        verifyObject(IResponse, response)
        self.assertEqual(
            (response.code, response.phrase, response.length), (201, b"Made", 2)
        )
        self.assertEqual(response.version, (b"HTTP", 1, 1))
        self.assertEqual(response.headers.getRawHeaders(b"x-b"), [b"2"])
        self.assertFalse(response.headers.hasHeader(b"content-length"))
        self.assertEqual(
            response.connectionHeaders.getRawHeaders(b"connection"),
            [b"keep-alive, X-Hop"],
        )
        self.assertEqual(
            (response.request.method, response.request.absoluteURI), (b"GET", URL)
        )

    def test_headKeepsContentLength(self) -> None:
        """
        The C{Content-Length} of a C{HEAD} answer is about the resource, so
        it stays among the headers; there is no body.
        """
        d = self.client.request(b"HEAD", URL)
        self.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
        response = self.successResultOf(d)
        self.assertEqual(response.headers.getRawHeaders(b"content-length"), [b"99"])
        self.assertEqual(response.length, 0)
        self.assertEqual(self.pool.idle(), 1)

    def test_bodyKeptUntilDelivered(self) -> None:
        """
        Body bytes that arrive before C{deliverBody} are kept, and the
        connection is paused meanwhile; delivering resumes it.
        """
        d = self.client.request(b"GET", URL)
        self.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
        response = self.successResultOf(d)
        protocol, transport = self.connection()
        self.assertEqual(transport.producerState, "paused")
        body = BodyCollector()
        response.deliverBody(body)
        self.assertEqual((body.data, transport.producerState), (b"abc", "producing"))
        self.answer(b"def")
        self.assertEqual(body.data, b"abcdef")
        assert body.reason is not None
        self.assertTrue(body.reason.check(ResponseDone))
        self.assertRaises(RuntimeError, response.deliverBody, BodyCollector())

    def test_completeBeforeDelivery(self) -> None:
        """
        A body complete before C{deliverBody} is handed over whole, and the
        connection is back in the pool already.
        """
        d = self.client.request(b"GET", URL)
        self.answer(OK)
        response = self.successResultOf(d)
        self.assertEqual(self.pool.idle(), 1)
        body = BodyCollector()
        response.deliverBody(body)
        self.assertEqual(body.data, b"ok")

    def test_flowControl(self) -> None:
        """
        The body's transport pauses and resumes the connection while the
        body streams, and does nothing once it has ended.
        """
        d = self.client.request(b"GET", URL)
        self.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        body = BodyCollector()
        self.successResultOf(d).deliverBody(body)
        protocol, transport = self.connection()
        body.transport.pauseProducing()  # type: ignore[union-attr]
        self.assertEqual(transport.producerState, "paused")
        body.transport.resumeProducing()  # type: ignore[union-attr]
        self.assertEqual(transport.producerState, "producing")
        body.transport.pauseProducing()  # type: ignore[union-attr]
        self.answer(b"2\r\nok\r\n0\r\n\r\n")
        # Ended while paused: resumed before it went back to the pool.
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual((body.data, self.pool.idle()), (b"ok", 1))
        body.transport.pauseProducing()  # type: ignore[union-attr]
        body.transport.stopProducing()  # type: ignore[union-attr]
        self.assertEqual(transport.producerState, "producing")
        self.assertFalse(transport.closed)

    def test_readEnded(self) -> None:
        """
        A body protocol with a C{readEnded} method hears of the end of each
        read that did not finish the body, in order after that read's
        bytes; the read that ends the body ends it instead.
        """
        events: list[object] = []

        class Reader(BodyCollector):
            def dataReceived(self, data: bytes) -> None:
                events.append(data)
                super().dataReceived(data)

            def readEnded(self) -> None:
                events.append("read")

        d = self.client.request(b"GET", URL)
        self.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.successResultOf(d).deliverBody(Reader())
        self.answer(b"2\r\nab\r\n")
        self.answer(b"2\r\ncd\r\n0\r\n\r\n")
        self.assertEqual(events, [b"ab", "read", b"cd"])

    def test_stopProducingCloses(self) -> None:
        """
        Stopping the body closes the connection at once; the body ends
        failed.
        """
        d = self.client.request(b"GET", URL)
        self.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        body = BodyCollector()
        self.successResultOf(d).deliverBody(body)
        body.transport.stopProducing()  # type: ignore[union-attr]
        self.assertTrue(self.connection()[1].aborted)
        self.clock.advance(0)
        assert body.reason is not None
        self.assertTrue(body.reason.check(ResponseFailed))
        self.assertEqual(self.pool.idle(), 0)

    def test_endings(self) -> None:
        """
        A close-delimited body ends with C{PotentialDataLoss} when the
        server closes; a framed body cut short with C{ResponseFailed}.
        """
        for answer, expected in (
            (b"HTTP/1.1 200 OK\r\n\r\npartial", PotentialDataLoss),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npartial", ResponseFailed),
        ):
            with self.subTest(answer=answer):
                d = self.client.request(b"GET", URL)
                self.answer(answer)
                body = BodyCollector()
                self.successResultOf(d).deliverBody(body)
                self.connection()[0].connectionLost(Failure(ConnectionDone()))
                self.assertEqual(body.data, b"partial")
                assert body.reason is not None
                self.assertTrue(body.reason.check(expected))

    def test_malformed(self) -> None:
        """
        A malformed answer fails the request, or the body if it began, and
        closes the connection.
        """
        d = self.client.request(b"GET", URL)
        self.answer(b"SSH-2.0-OpenSSH\r\n\r\n")
        failure = self.failureResultOf(d, ResponseFailed)
        self.assertTrue(failure.value.reasons[0].check(ResponseError))
        self.assertTrue(self.connection()[1].aborted)

        d = self.client.request(b"GET", URL)
        self.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")
        body = BodyCollector()
        self.successResultOf(d).deliverBody(body)
        self.answer(b"zz\r\n")
        assert body.reason is not None
        self.assertTrue(body.reason.check(ResponseFailed))
        self.assertEqual(body.data, b"ok")

    def test_unaskedBytes(self) -> None:
        """
        Bytes on an idle connection close it.
        """
        self.roundTrip()
        self.answer(b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(self.connection()[1].aborted)
        self.clock.advance(0)
        self.assertEqual(self.pool.idle(), 0)


class ReuseTests(ClientCase):
    """
    Which connections go back to the pool, and replays on stale ones.
    """

    def test_reused(self) -> None:
        """
        A complete exchange leaves the connection idle; the next request
        takes it.
        """
        self.roundTrip()
        self.roundTrip(b"POST", b"{}")
        self.assertEqual(len(self.endpoint.connections), 1)
        self.assertTrue(self.connection()[0].reused)

    def test_notReused(self) -> None:
        """
        C{Connection: close}, bytes past the response and a body still
        being sent when the answer came keep a connection out of the pool.
        """
        for answer in (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            OK + b"HTTP/1.1 200 OK\r\n",
        ):
            with self.subTest(answer=answer):
                self.client.request(b"GET", URL)
                self.answer(answer)
                self.assertEqual(self.pool.idle(), 0)
                self.assertTrue(self.connection()[1].closed)

        @implementer(IBodyProducer)
        class Slow(Unknown):
            def startProducing(self, consumer: Any) -> Deferred[None]:
                consumer.write(b"part")
                return Deferred()

        slow = Slow([])
        d = self.client.request(b"PUT", URL, None, slow)
        self.answer(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(self.successResultOf(d).code, 413)
        self.assertTrue(slow.stopped)
        self.assertTrue(self.connection()[1].aborted)
        self.assertEqual(self.pool.idle(), 0)

    def test_replayOnStaleConnection(self) -> None:
        """
        A pooled connection the server had closed (it ends before any byte
        of an answer) is replaced by a fresh one, with the whole body sent
        again; likewise a bodiless C{GET}.
        """
        self.roundTrip()
        body = b"x" * 200_000
        d = self.client.request(b"POST", URL, Headers(), BodyProducer(body))
        self.assertEqual(len(self.endpoint.connections), 1)
        self.connection()[0].connectionLost(Failure(ConnectionDone("idle close")))
        self.assertEqual(len(self.endpoint.connections), 2)
        self.assertEqual(self.sent().split(b"\r\n\r\n", 1)[1], body)
        self.answer(OK)
        self.assertEqual(self.successResultOf(d).code, 200)

        d = self.client.request(b"GET", URL)
        self.connection()[0].connectionLost(Failure(ConnectionDone("idle close")))
        self.assertEqual(len(self.endpoint.connections), 3)
        self.answer(OK)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_noReplay(self) -> None:
        """
        No replay for a body that cannot be sent again, for a connection
        that had started answering, for a fresh connection, or twice.
        """
        self.roundTrip()
        d = self.client.request(b"POST", URL, None, Unknown([b"abc"]))
        self.connection()[0].connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, ResponseNeverReceived)

        self.roundTrip()
        d = self.client.request(b"GET", URL)
        self.answer(b"HTTP/1.1 2")
        self.connection()[0].connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, ResponseFailed)

        count = len(self.endpoint.connections)
        d = self.client.request(b"GET", URL)
        self.assertEqual(len(self.endpoint.connections), count + 1)
        self.connection()[0].connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, ResponseNeverReceived)

        self.roundTrip()
        d = self.client.request(b"GET", URL)
        self.connection()[0].connectionLost(Failure(ConnectionDone()))
        self.connection()[0].connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, ResponseNeverReceived)

    def test_replayable(self) -> None:
        """
        L{replayable}: which failures on a pooled connection are sent again.
        """
        lost = ResponseNeverReceived([Failure(ConnectionDone())])
        cancelled = ResponseNeverReceived([Failure(CancelledError())])
        body = BodyProducer(b"{}")
        self.assertTrue(replayable(b"GET", lost, None))
        self.assertTrue(replayable(b"POST", lost, body))
        self.assertTrue(replayable(b"POST", RequestNotSent(), body))
        self.assertFalse(replayable(b"POST", lost, None))
        self.assertFalse(replayable(b"POST", lost, FileBodyProducer(io.BytesIO(b""))))
        self.assertFalse(replayable(b"POST", cancelled, body))
        self.assertFalse(replayable(b"POST", ValueError(), body))
        self.assertFalse(
            replayable(b"GET", ResponseFailed([Failure(ConnectionDone())]), None)
        )


class CancelTests(ClientCase):
    """
    Cancelling a request.
    """

    def test_beforeAnswer(self) -> None:
        """
        Cancelled before its answer, a request's connection is closed at
        once and the request fails with the cancellation inside.
        """
        d = self.client.request(b"GET", URL)
        d.cancel()
        failure = self.failureResultOf(d, ResponseNeverReceived)
        self.assertTrue(failure.value.reasons[0].check(CancelledError))
        self.assertTrue(self.connection()[1].aborted)
        self.clock.advance(0)
        self.assertEqual(self.pool.idle(), 0)

    def test_whileConnecting(self) -> None:
        """
        Cancelled while connecting, the connect attempt is cancelled.
        """
        self.endpoint.hold = []
        d = self.client.request(b"GET", URL)
        [connecting] = self.endpoint.hold
        d.cancel()
        self.failureResultOf(d, ResponseNeverReceived)
        self.assertEqual(self.endpoint.cancelled, 1)

    def test_afterAnswer(self) -> None:
        """
        Once answered, cancelling does nothing.
        """
        d = self.client.request(b"GET", URL)
        self.answer(OK)
        d.cancel()
        self.successResultOf(d)
        self.assertEqual(self.pool.idle(), 1)


class PoolTests(ClientCase):
    """
    L{ConnectionPool}: limits, expiry, closing.
    """

    def test_limit(self) -> None:
        """
        Beyond C{maxPersistentPerHost} idle connections, the surplus closes.
        """
        self.pool.maxPersistentPerHost = 1
        self.twoAtOnce()
        self.assertEqual(self.pool.idle(), 1)
        self.assertEqual(
            [t.closed for p, t in self.endpoint.connections], [False, True]
        )

    def test_expiry(self) -> None:
        """
        An idle connection closes after C{cachedConnectionTimeout} unused
        seconds, timed by one timer for the pool; a connection used
        meanwhile is kept its full time.
        """
        self.pool.cachedConnectionTimeout = 10
        first = self.client.request(b"GET", URL)
        second = self.client.request(b"GET", URL)
        self.answer(OK, 0)
        self.clock.advance(6)
        self.answer(OK, 1)
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(4)
        self.assertEqual(
            [t.closed for p, t in self.endpoint.connections], [True, False]
        )
        self.clock.advance(0)
        self.assertEqual(self.pool.idle(), 1)
        self.clock.advance(6)
        self.clock.advance(0)
        self.assertEqual(self.pool.idle(), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closeCached(self) -> None:
        """
        Closing a server's idle connections fires once they are closed and
        leaves the other servers'; closing all stops the timer.
        """
        self.roundTrip()
        d = self.client.request(b"GET", b"http://127.0.0.1:5801/")
        self.answer(OK)
        self.successResultOf(d)
        closing = self.pool.closeCachedConnectionsTo((b"http", b"127.0.0.1", 5800))
        self.assertNoResult(closing)
        self.clock.advance(0)
        self.successResultOf(closing)
        self.assertEqual(self.pool.idle(), 1)
        closing = self.pool.closeCachedConnections()
        self.clock.advance(0)
        self.successResultOf(closing)
        self.assertEqual((self.pool.idle(), self.clock.getDelayedCalls()), (0, []))

    def test_noneKept(self) -> None:
        """
        With C{maxPersistentPerHost} 0, every connection closes after its
        exchange (what the prompt cache's slot requests use).
        """
        self.pool.maxPersistentPerHost = 0
        self.roundTrip()
        self.assertTrue(self.connection()[1].closed)
        self.assertFalse(self.connection()[1].aborted)
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SpareTests(ClientCase):
    """
    A server that ends a connection with or right after a response gets
    the next one at once (llama-server ends one after each stream), and
    the next request takes it, made or not.
    """

    def serverEnds(self, index: int = -1) -> None:
        self.connection(index)[0].connectionLost(Failure(ConnectionDone()))

    def holdNextConnect(self) -> None:
        self.endpoint.hold = []

    def completeHeld(self) -> UpstreamConnection:
        """
        Make the held connection; later connects are made at once.
        """
        [waiting], [factory] = self.endpoint.hold or [], self.endpoint.heldFactories
        self.endpoint.hold = None
        protocol, transport = connectInMemory(self.clock, factory)
        self.endpoint.connections.append((protocol, transport))
        waiting.callback(protocol)
        return protocol

    def test_afterServerEnds(self) -> None:
        """
        The server ends an idle connection just after its response: a new
        one is opened and kept idle; the next request goes out on it.
        """
        self.roundTrip()
        self.serverEnds()
        self.assertEqual((len(self.endpoint.connections), self.pool.idle()), (2, 1))
        self.client.request(b"GET", URL)
        self.assertEqual(len(self.endpoint.connections), 2)
        self.assertTrue(self.sent(1).startswith(b"GET /v1/chat?x=1 HTTP/1.1\r\n"))

    def test_afterConnectionClose(self) -> None:
        """
        A response saying C{Connection: close} (an HTTP/1.0 server's way)
        gets a spare once its connection is closed.
        """
        self.client.request(b"GET", URL)
        self.answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(len(self.endpoint.connections), 1)
        self.clock.advance(0)
        self.assertEqual((len(self.endpoint.connections), self.pool.idle()), (2, 1))

    def test_notForOtherEnds(self) -> None:
        """
        No spare when the end says nothing about the next request: an idle
        timeout long after the response, this side closing (its pool, a
        cancelled exchange, C{maxPersistentPerHost} 0), a spare ending
        unused, or an idle connection to the same server still there.
        """
        self.roundTrip()
        self.clock.advance(self.pool.spareWindow + 1)
        self.serverEnds()
        self.roundTrip()
        self.pool.closeCachedConnections()
        self.clock.advance(0)
        d = self.client.request(b"GET", URL)
        d.cancel()
        self.failureResultOf(d, ResponseNeverReceived)
        self.clock.advance(0)
        self.assertEqual(len(self.endpoint.connections), 3)

        self.roundTrip()
        self.serverEnds()
        self.assertEqual(len(self.endpoint.connections), 5)
        self.serverEnds()  # the spare, unused
        self.assertEqual((len(self.endpoint.connections), self.pool.idle()), (5, 0))

        self.twoAtOnce(5)
        self.serverEnds(5)
        self.assertEqual((len(self.endpoint.connections), self.pool.idle()), (7, 1))

        self.pool.closeCachedConnections()
        self.clock.advance(0)
        self.pool.maxPersistentPerHost = 0
        self.roundTrip()
        self.clock.advance(0)
        self.assertEqual(len(self.endpoint.connections), 8)

    def test_requestWaitsForSpare(self) -> None:
        """
        A request that comes while the spare is being opened waits for it
        instead of opening another connection, and goes out on it.
        """
        self.roundTrip()
        self.holdNextConnect()
        self.serverEnds()
        d = self.client.request(b"GET", URL)
        self.assertEqual(len(self.endpoint.hold or []), 1)
        self.completeHeld()
        self.assertTrue(self.sent().startswith(b"GET /v1/chat?x=1 HTTP/1.1\r\n"))
        self.answer(OK)
        self.assertEqual(self.successResultOf(d).code, 200)
        self.assertEqual(len(self.endpoint.connections), 2)

    def test_spareFails(self) -> None:
        """
        A spare that cannot be made costs the request waiting for it only
        that wait: it connects as usual; nothing is logged.
        """
        self.roundTrip()
        self.holdNextConnect()
        self.serverEnds()
        d = self.client.request(b"GET", URL)
        [waiting] = self.endpoint.hold or []
        self.endpoint.hold = None
        waiting.errback(ConnectionRefusedError())
        self.assertEqual(len(self.endpoint.connections), 2)
        self.answer(OK)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_cancelledWhileWaiting(self) -> None:
        """
        A request cancelled while waiting for the spare fails as one
        cancelled while connecting, and the spare's connect is cancelled.
        """
        self.roundTrip()
        self.holdNextConnect()
        self.serverEnds()
        d = self.client.request(b"GET", URL)
        d.cancel()
        failure = self.failureResultOf(d, ResponseNeverReceived)
        self.assertTrue(failure.value.reasons[0].check(CancelledError))
        self.assertEqual(self.endpoint.cancelled, 1)

    def test_closingDropsSpare(self) -> None:
        """
        Closing a server's idle connections (its model stops) also stops
        the spare being opened to it.
        """
        for close in (
            lambda: self.pool.closeCachedConnectionsTo((b"http", b"127.0.0.1", 5800)),
            self.pool.closeCachedConnections,
        ):
            self.endpoint.cancelled = 0
            self.endpoint.hold = None
            self.roundTrip()
            self.holdNextConnect()
            self.serverEnds()
            close()
            self.assertEqual(self.endpoint.cancelled, 1)
            self.assertIsNone(self.pool.adopt((b"http", b"127.0.0.1", 5800)))
