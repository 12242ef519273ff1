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
import socket

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.logger import (
    FileLogObserver,
    LogPublisher,
    textFileLogObserver,
    timeFormatRFC3339,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http import HTTPChannel
from twisted.web.http import Request as HTTPRequest
from twisted.web.http_headers import Headers
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory, Request, Site
from twisted.web.static import Data
from twisted.web.test.requesthelper import DummyChannel

from llamaswap.compat import (
    chunkedDecoder,
    classicTextFile,
    headersFromPairs,
    identityDecoder,
    ioWaiting,
    reactorPoll,
    isClientBufferFull,
    isDisconnected,
    logObservers,
    processRequest,
    rawHeaderDict,
    readPendingOutput,
    sendNow,
    takeReadBuffer,
    writeNow,
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


class HeadersFromPairsTests(SynchronousTestCase):
    def test_sameAsAddRawHeader(self) -> None:
        """
        The headers hold what C{addRawHeader} per pair would store: names
        canonical, repeated values in order, line breaks in a value joined
        with a space.
        """
        pairs = [
            (b"content-type", b"application/json"),
            (b"set-cookie", b"a=1"),
            (b"x-odd", b"one\rtwo"),
            (b"set-cookie", b"b=2"),
            (b"etag", b'"v1"'),
        ]
        expected = Headers()
        for name, value in pairs:
            expected.addRawHeader(name, value)
        built = headersFromPairs(pairs)
        self.assertEqual(list(built.getAllRawHeaders()), list(expected.getAllRawHeaders()))
        self.assertEqual(built.getRawHeaders(b"x-odd"), [b"one two"])
        self.assertEqual(list(headersFromPairs([]).getAllRawHeaders()), [])


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


class WriteNowTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.socket = _Socket(self.reactor)

    def test_straightToTheSocket(self) -> None:
        """
        With nothing buffered, the bytes are sent at once and the reactor
        is never asked to watch for writability.
        """
        writeNow(self.socket, b"request")
        self.assertEqual(self.socket.sent, [b"request"])
        self.assertNotIn(self.socket, self.reactor.getWriters())
        self.assertEqual(self.socket.dataBuffer, b"")

    def test_partialSend(self) -> None:
        """
        What the socket did not take is buffered for the reactor.
        """
        self.socket.writeSomeData = lambda data: 3  # type: ignore[method-assign]
        writeNow(self.socket, b"request")
        self.assertIn(self.socket, self.reactor.getWriters())
        self.socket.writeSomeData = lambda data: len(data)  # type: ignore[method-assign]
        sendNow(self.socket)
        self.assertNotIn(self.socket, self.reactor.getWriters())

    def test_behindBufferedBytes(self) -> None:
        """
        Bytes already buffered go first: the new ones are buffered after
        them and everything is sent in order.
        """
        self.socket.write(b"first ")
        writeNow(self.socket, b"second")
        self.assertEqual(self.socket.sent, [b"first second"])

    def test_errorsAndOthers(self) -> None:
        """
        A send error leaves the bytes buffered and the socket watched (the
        reactor then closes it); other transports get a plain write.
        """
        self.socket.error = ConnectionDone()
        writeNow(self.socket, b"data")
        self.assertIn(self.socket, self.reactor.getWriters())
        transport = StringTransport()
        writeNow(transport, b"x")
        self.assertEqual(transport.value(), b"x")


class _Reading(FileDescriptor):
    """
    The reading end of a socket pair, watched by a reactor.
    """

    def __init__(self, reactor: object, sock: socket.socket) -> None:
        super().__init__(reactor)  # type: ignore[arg-type]
        self.socket = sock

    def fileno(self) -> int:
        return self.socket.fileno()


class IOWaitingTests(SynchronousTestCase):
    """
    L{ioWaiting} asks the epoll reactor whether I/O waits, without taking
    the events from it.
    """

    def test_epoll(self) -> None:
        """
        Nothing waits until a watched socket has bytes; asking again still
        says so (the reactor will see them); a closed reactor has nothing.
        """
        from twisted.internet.epollreactor import EPollReactor

        reactor = EPollReactor()
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        reading = _Reading(reactor, ours)
        reactor.addReader(reading)
        waiting = ioWaiting(reactor)
        assert waiting is not None
        self.assertFalse(waiting())
        theirs.send(b"x")
        self.assertTrue(waiting())
        self.assertTrue(waiting())
        reactor.removeReader(reading)
        self.assertFalse(waiting())
        reactor._poller.close()  # type: ignore[attr-defined]
        self.assertFalse(waiting())

    def test_waitEndsWhenReady(self) -> None:
        """
        L{reactorPoll}'s wait returns as soon as a descriptor is ready,
        whatever its timeout, and leaves the event to the reactor.
        """
        from twisted.internet.epollreactor import EPollReactor

        reactor = EPollReactor()
        self.addCleanup(reactor._poller.close)  # type: ignore[attr-defined]
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        reading = _Reading(reactor, ours)
        reactor.addReader(reading)
        self.addCleanup(reactor.removeReader, reading)
        ready = reactorPoll(reactor)
        assert ready is not None
        self.assertFalse(ready(0))
        theirs.send(b"x")
        self.assertTrue(ready(-1))
        self.assertTrue(ready(60))

    def test_otherReactors(self) -> None:
        """
        A reactor that cannot tell gets no check.
        """
        self.assertIsNone(ioWaiting(MemoryReactor()))
        self.assertIsNone(ioWaiting(object()))
        self.assertIsNone(reactorPoll(MemoryReactor()))


class _Raising(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        raise RuntimeError("render failed")


class _Processed(Request):
    def process(self) -> None:
        processRequest(self, b"Fri, 04 Dec 2026 20:00:00 GMT")


class ProcessRequestTests(SynchronousTestCase):
    """
    L{processRequest} answers as C{Request.process} does: the resource
    found for the (unquoted) path, C{OPTIONS *}, an encoding resource, a
    failing render; with the date it is given.
    """

    def setUp(self) -> None:
        self.root = Resource()
        self.root.putChild(b"a b", Data(b"spaced", "text/plain"))
        self.root.putChild(b"plain", Data(b"plain", "text/plain"))
        self.root.putChild(b"fails", _Raising())
        self.root.putChild(
            b"zipped",
            EncodingResourceWrapper(Data(b"z" * 100, "text/plain"), [GzipEncoderFactory()]),
        )

    def answer(self, factory: type[Request], method: bytes, uri: bytes) -> bytes:
        channel = DummyChannel()
        channel.site = Site(self.root)
        request = factory(channel)
        request.requestHeaders.setRawHeaders(b"accept-encoding", [b"gzip"])
        request.gotLength(0)
        request.requestReceived(method, uri, b"HTTP/1.1")
        self.flushLoggedErrors(RuntimeError)
        written: bytes = channel.transport.written.getvalue()
        return written

    def test_asTwistedDoes(self) -> None:
        """
        Byte for byte Twisted's answer, but for the C{Date} value.
        """
        for method, uri in [
            (b"GET", b"/plain"),
            (b"GET", b"/a%20b"),
            (b"GET", b"/missing/x"),
            (b"OPTIONS", b"*"),
            (b"GET", b"/zipped"),
            (b"GET", b"/fails"),
        ]:
            ours = self.answer(_Processed, method, uri)
            theirs = self.answer(Request, method, uri)
            head, _, body = theirs.partition(b"\r\n\r\n")
            date = [line for line in head.split(b"\r\n") if line.startswith(b"Date: ")]
            self.assertEqual(len(date), 1, uri)
            expected = theirs.replace(date[0], b"Date: Fri, 04 Dec 2026 20:00:00 GMT")
            self.assertEqual(ours, expected, uri)
            self.assertIn(b"Server: TwistedWeb/", ours)

    def test_statuses(self) -> None:
        """
        The cases above are those they say: found, unquoted, missing, the
        server's options, gzipped, failed.
        """
        statuses = [
            self.answer(_Processed, b"GET", uri).split(b" ", 2)[1]
            for uri in (b"/plain", b"/a%20b", b"/missing/x", b"/fails")
        ]
        self.assertEqual(statuses, [b"200", b"200", b"404", b"500"])
        self.assertIn(b"Content-Encoding: gzip", self.answer(_Processed, b"GET", b"/zipped"))
