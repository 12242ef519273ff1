"""
Tests for L{llamaswap.drain}: a real L{Site} and its HTTP channels over
in-memory transports, a L{Clock} for the timeout.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llamaswap.drain import RequestTracker, isLongLived, markLongLived


class Held(Resource):
    """
    Keeps every request open until the test finishes it; C{/stream} ones
    are marked long-lived and start writing at once.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render(self, request: Request) -> Any:
        self.requests.append(request)
        if request.path == b"/stream":
            markLongLived(request)
            request.write(b"data: 1\n\n")
        return NOT_DONE_YET


class Connection:
    """
    One client connection to the site, in memory.
    """

    def __init__(self, site: Site) -> None:
        self.transport = StringTransport()
        self.protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        self.protocol.makeConnection(self.transport)

    def request(self, path: bytes = b"/", extra: bytes = b"") -> None:
        """
        Send a complete GET request.
        """
        self.protocol.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")

    @property
    def closing(self) -> bool:
        """
        Whether the server closed (or aborted) the connection.
        """
        return bool(self.transport.disconnecting or getattr(self.transport, "aborted", False))

    def output(self) -> bytes:
        """
        Everything written to the client so far.
        """
        return self.transport.value()


class TrackerTests(SynchronousTestCase):
    """
    L{RequestTracker} counts and drains a site's requests.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.tracker = RequestTracker(self.clock)
        self.resource = Held()
        self.site = self.tracker.watch(Site(self.resource, reactor=self.clock))

    def test_counts(self) -> None:
        """
        A request counts from its first line until it is finished or its
        connection is lost.
        """
        a, b = Connection(self.site), Connection(self.site)
        a.protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        self.assertEqual(self.tracker.inFlight, 1)
        a.protocol.dataReceived(b"Host: x\r\n\r\n")
        b.request()
        self.assertEqual(self.tracker.inFlight, 2)
        self.resource.requests[0].finish()
        self.assertEqual(self.tracker.inFlight, 1)
        b.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.tracker.inFlight, 0)

    def test_nothingInFlight(self) -> None:
        """
        With nothing in flight the drain is over at once and idle
        keep-alive connections are closed.
        """
        idle = Connection(self.site)
        idle.request()
        self.resource.requests[0].finish()
        self.assertFalse(idle.closing)
        self.assertEqual(self.successResultOf(self.tracker.drain(30)), 0)
        self.assertTrue(idle.closing)

    def test_waitsForRequest(self) -> None:
        """
        A request in flight is waited for; its response says
        C{Connection: close} and the connection is closed after it.
        """
        busy = Connection(self.site)
        busy.request()
        d = self.tracker.drain(30)
        self.assertNoResult(d)
        self.clock.advance(29)
        self.assertNoResult(d)
        request = self.resource.requests[0]
        request.write(b"done")
        request.finish()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertIn(b"connection: close", busy.output().lower())
        self.assertTrue(busy.closing)

    def test_startedResponseClosedAfter(self) -> None:
        """
        A response whose headers went out before the drain still ends its
        connection once it is finished.
        """
        busy = Connection(self.site)
        busy.request()
        request = self.resource.requests[0]
        request.write(b"partial")
        d = self.tracker.drain(30)
        self.assertFalse(busy.closing)
        request.finish()
        self.successResultOf(d)
        self.assertTrue(busy.closing)

    def test_timeout(self) -> None:
        """
        When the timeout runs out, the requests still in flight have their
        connections aborted and are counted.
        """
        slow = Connection(self.site)
        slow.request()
        d = self.tracker.drain(5)
        self.clock.advance(5)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertTrue(slow.closing)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_longLivedClosedAtOnce(self) -> None:
        """
        A stream marked long-lived is closed when the drain starts and does
        not hold it up.
        """
        stream = Connection(self.site)
        stream.request(b"/stream")
        self.assertTrue(isLongLived(self.resource.requests[0]))
        d = self.tracker.drain(30)
        self.assertTrue(stream.closing)
        stream.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.successResultOf(d), 0)

    def test_requestDuringDrain(self) -> None:
        """
        A request that arrives on an open connection during the drain is
        served, counted, and its connection closed after it.
        """
        busy, late = Connection(self.site), Connection(self.site)
        busy.request()
        d = self.tracker.drain(30)
        late.request()
        self.assertEqual(self.tracker.inFlight, 2)
        self.resource.requests[0].finish()
        self.assertNoResult(d)
        self.resource.requests[1].finish()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertIn(b"connection: close", late.output().lower())
        self.assertTrue(late.closing)

    def test_notLongLived(self) -> None:
        """
        Requests are not long-lived unless marked.
        """
        Connection(self.site).request()
        self.assertFalse(isLongLived(self.resource.requests[0]))
