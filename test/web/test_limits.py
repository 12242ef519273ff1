"""
Tests for L{llamaswap.web.limits}: body size refused at the headers, header
and body timeouts, the connection cap, reason phrases.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llamaswap.config.limits import LimitsConfig
from llamaswap.httperrors import envelopeBytes
from llamaswap.web.limits import ABORT_AFTER, _DateHeader, applyLimits, reasonPhrase

from .helpers import ParsedResponse

LIMITS = LimitsConfig(
    maxRequestBodyBytes=100, maxConnections=2, headerTimeout=10, bodyTimeout=5
)


class Recorder(Resource):
    """
    Records the bodies it is given; C{/slow} never answers, C{/429} is a
    429.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []
        self.pending: list[Request] = []

    def render(self, request: Request) -> Any:
        self.bodies.append(request.content.read())
        if request.path == b"/slow":
            self.pending.append(request)
            return NOT_DONE_YET
        if request.path == b"/429":
            request.setResponseCode(429)
        return b"ok"


class Connection:
    """
    One client connection to the site over a string transport.
    """

    def __init__(self, site: Site) -> None:
        self.transport = StringTransport(
            peerAddress=IPv4Address("TCP", "127.0.0.1", 51000),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        )
        self.channel = site.buildProtocol(self.transport.getPeer())
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def response(self) -> ParsedResponse:
        return ParsedResponse.parse(self.transport.value())

    def error(self) -> tuple[int, str]:
        response = self.response()
        return response.status, json.loads(response.body)["error"]["message"]

    def close(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))


class LimitsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = Recorder()
        self.limits = LIMITS
        site = Site(self.resource, reactor=self.clock)
        self.site = applyLimits(site, lambda: self.limits)

    def connect(self) -> Connection:
        return Connection(self.site)

    def test_declaredLengthRefusedAtHeaders(self) -> None:
        """
        A C{Content-Length} over the limit is a 413 as soon as the headers
        are in: nothing of the body is read or stored, the resource never
        runs, and the connection closes.
        """
        c = self.connect()
        c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 671088640\r\n\r\n")
        self.assertEqual(c.error(), (413, "request body of 671088640 bytes exceeds"
                                          " the limit of 100 bytes"))
        self.assertEqual(c.response().header(b"connection"), b"close")
        self.assertTrue(c.transport.disconnecting)
        c.send(b"x" * 1000)
        self.assertEqual(self.resource.bodies, [])
        self.assertIsNone(c.channel.requests[-1].content)

    def test_chunkedStopsAtLimit(self) -> None:
        """
        A chunked body is refused when it passes the limit; what follows is
        not read.
        """
        c = self.connect()
        c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        c.send(b"40\r\n" + b"a" * 64 + b"\r\n")
        self.assertEqual(c.transport.value(), b"")
        c.send(b"40\r\n" + b"b" * 64 + b"\r\n0\r\n\r\n")
        self.assertEqual(c.error()[0], 413)
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(self.resource.bodies, [])

    def test_withinLimit(self) -> None:
        """
        A body at the limit is served, with or without chunking.
        """
        c = self.connect()
        c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + b"a" * 100)
        self.assertEqual(c.response().status, 200)
        c = self.connect()
        c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"64\r\n" + b"b" * 100 + b"\r\n0\r\n\r\n")
        self.assertEqual(c.response().status, 200)
        self.assertEqual(self.resource.bodies, [b"a" * 100, b"b" * 100])

    def test_headerTrickle(self) -> None:
        """
        A client sending its head one byte every 100 ms is answered 408 and
        closed at C{headerTimeout}, although it never stops sending.
        """
        c = self.connect()
        head = b"GET /x HTTP/1.1\r\nHost: a\r\n" + b"X-Pad: " + b"p" * 500
        for byte in head[:99]:
            c.send(bytes([byte]))
            self.clock.advance(0.1)
        self.assertFalse(c.transport.disconnecting)
        c.send(head[99:100])
        self.clock.advance(0.11)
        self.assertEqual(c.error(), (408, "request headers not received in time"))
        self.assertTrue(c.transport.disconnecting)

    def test_silentClient(self) -> None:
        """
        A client that connects and sends nothing is closed at
        C{headerTimeout}; one that does not read the refusal is aborted.
        """
        c = self.connect()
        self.clock.advance(10)
        self.assertEqual(c.error()[0], 408)
        self.assertFalse(c.transport.disconnected)
        self.clock.advance(ABORT_AFTER)
        self.assertTrue(c.transport.disconnected)

    def test_keepAliveIdle(self) -> None:
        """
        After a response, the next request's head is due within
        C{headerTimeout}; a long request in progress is never cut.
        """
        c = self.connect()
        c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        self.clock.advance(100)
        self.assertFalse(c.transport.disconnecting)
        request = self.resource.pending[0]
        request.write(b"done")
        request.finish()
        self.clock.advance(9)
        self.assertFalse(c.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(c.transport.disconnecting)

    def test_bodyStall(self) -> None:
        """
        A body that stops arriving for C{bodyTimeout} is a 408; one that
        keeps coming is served.
        """
        c = self.connect()
        c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        for byte in b"defghi":
            self.clock.advance(4)
            c.send(bytes([byte]))
        self.clock.advance(4.9)
        self.assertFalse(c.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertEqual(c.error(), (408, "request body not received in time"))
        self.assertEqual(self.resource.bodies, [])

    def test_keepAliveRequestsAddNoTimers(self) -> None:
        """
        Requests on a keep-alive connection, each head and body in one read,
        leave one timer pending however many there are: moving the head and
        body timeouts per request schedules nothing.
        """
        scheduled: list[float] = []
        callLater = self.clock.callLater

        def countingCallLater(delay: float, f: Any, *a: Any, **kw: Any) -> Any:
            scheduled.append(delay)
            return callLater(delay, f, *a, **kw)

        self.clock.callLater = countingCallLater  # type: ignore[method-assign]
        c = self.connect()
        first = list(scheduled)
        for n in range(1, 21):
            c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
            self.assertEqual(len(self.resource.bodies), n)
            self.clock.advance(1)
        # Besides twisted.web's own idle timeout (its timeOut, reset by
        # every read), only the pending call re-arming itself when it runs,
        # once per headerTimeout (10 s) whatever the number of requests.
        ours = [delay for delay in scheduled if delay != c.channel.timeOut]
        self.assertEqual(first, [c.channel.timeOut, 10])
        self.assertEqual(ours, [10, 9, 9])
        # The head of the next request is still due within headerTimeout
        # of the last response.
        self.clock.advance(8.9)
        self.assertFalse(c.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(c.transport.disconnecting)
        self.assertTrue(c.transport.value().endswith(
            envelopeBytes(408, "request headers not received in time")))

    def test_bodyTimeoutAfterHead(self) -> None:
        """
        A head whose body has yet to come is followed by the body timeout,
        not the (longer) header timeout.
        """
        c = self.connect()
        self.clock.advance(3)
        c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n")
        self.clock.advance(4.9)
        self.assertFalse(c.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertEqual(c.error(), (408, "request body not received in time"))

    def test_connectionCap(self) -> None:
        """
        Over C{maxConnections}, a new connection is answered 503 and
        closed; once one closes, another is admitted.
        """
        first, _ = self.connect(), self.connect()
        third = self.connect()
        self.assertEqual(third.error(), (503, "too many connections, try again later"))
        self.assertTrue(third.transport.disconnecting)
        third.close()
        first.close()
        fourth = self.connect()
        fourth.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(fourth.response().status, 200)
        self.assertEqual(self.site.guard.open, 2)

    def test_reasonPhrase(self) -> None:
        """
        Every status goes out with its reason phrase, 429 included.
        """
        c = self.connect()
        c.send(b"GET /429 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertTrue(c.transport.value().startswith(b"HTTP/1.1 429 Too Many Requests\r\n"))
        for status, phrase in [(413, b"Request Entity Too Large"), (422,
                               b"Unprocessable Entity"), (499, b"Client Closed Request"),
                               (431, b"Request Header Fields Too Large")]:
            self.assertEqual(reasonPhrase(status), phrase)


class DateHeaderTests(SynchronousTestCase):
    def test_formattedOnceASecond(self) -> None:
        """
        The C{Date} value follows the clock to the second and is the same
        object within one.
        """
        now = [1796414400.25]
        date = _DateHeader(lambda: now[0])
        first = date()
        self.assertEqual(first, b"Fri, 04 Dec 2026 20:00:00 GMT")
        now[0] = 1796414400.75
        self.assertIs(date(), first)
        now[0] = 1796414401.0
        self.assertEqual(date(), b"Fri, 04 Dec 2026 20:00:01 GMT")

    def test_sent(self) -> None:
        """
        The site's responses carry it, and C{Server}.
        """
        site = applyLimits(Site(Recorder(), reactor=Clock()), lambda: LIMITS)
        connection = Connection(site)
        connection.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = connection.response()
        connection.close()
        self.assertEqual(response.status, 200)
        [date] = response.headers.getRawHeaders(b"date")
        self.assertRegex(date, rb"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")
        self.assertTrue(response.headers.getRawHeaders(b"server")[0].startswith(b"TwistedWeb/"))
