"""
Tests for L{llamaswap.web.output}: a channel whose output a relay holds
and sends in one write.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llamaswap.web.output import HeldOutputChannel, flushOutput, holdOutput


class CountingTransport(StringTransport):
    """
    A string transport that keeps each write as it came.
    """

    def __init__(self) -> None:
        super().__init__(
            peerAddress=IPv4Address("TCP", "192.0.2.7", 51000),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        )
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def writeSequence(self, seq: Any) -> None:
        self.write(b"".join(seq))


class Held(Resource):
    """
    Holds the output of each request and leaves the rest to the test.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render(self, request: Request) -> Any:
        self.requests.append(request)
        holdOutput(request)
        return NOT_DONE_YET


class HeldOutputTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.resource = Held()
        site = Site(self.resource, reactor=Clock())
        site.protocol = HeldOutputChannel
        self.transport = CountingTransport()
        self.channel = site.buildProtocol(self.transport.getPeer())
        self.channel.makeConnection(self.transport)

    def send(self) -> Request:
        self.channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        return self.resource.requests[-1]

    def test_heldUntilFlushed(self) -> None:
        """
        The head and body written while held reach the transport together,
        in one write, when flushed.
        """
        request = self.send()
        request.setHeader(b"content-length", b"5")
        request.write(b"")
        request.write(b"hello")
        self.assertEqual(self.transport.writes, [])
        flushOutput(request)
        self.assertEqual(len(self.transport.writes), 1)
        self.assertTrue(self.transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(self.transport.writes[0].endswith(b"\r\n\r\nhello"))

    def test_holdLastsUntilDone(self) -> None:
        """
        After a flush the channel goes on holding; the request's end sends
        what is left (a chunked body's last chunk) and ends the hold, so the
        next request's writes are not held.
        """
        request = self.send()
        request.write(b"one")
        flushOutput(request)
        request.write(b"two")
        self.assertEqual(len(self.transport.writes), 1)
        request.finish()
        self.assertEqual(self.transport.writes[1:], [b"3\r\ntwo\r\n0\r\n\r\n"])
        self.assertIsNone(self.channel._held)
        self.channel.write(b"direct")
        self.assertEqual(self.transport.writes[-1], b"direct")

    def test_flushWithNothingHeld(self) -> None:
        """
        Flushing with nothing held writes nothing.
        """
        request = self.send()
        flushOutput(request)
        self.assertEqual(self.transport.writes, [])

    def test_loseConnectionSendsHeld(self) -> None:
        """
        Closing the connection sends what is held first.
        """
        request = self.send()
        request.write(b"partial")
        request.loseConnection()
        self.assertIn(b"partial", self.transport.value())
        self.assertTrue(self.transport.disconnecting)

    def test_connectionLostDropsHeld(self) -> None:
        """
        When the connection is gone, what is held is dropped.
        """
        request = self.send()
        request.write(b"lost")
        self.channel.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(self.channel._held)
        self.assertEqual(self.transport.writes, [])

    def test_notHeldWritesThrough(self) -> None:
        """
        Without a hold, writes reach the transport at once.
        """
        self.channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        request = self.resource.requests[-1]
        self.channel._held = None
        request.write(b"now")
        self.assertIn(b"now", self.transport.value())


class HeadBytesTests(SynchronousTestCase):
    """
    The head is the same bytes as twisted.web's, built as one string.
    """

    def connected(self, channelClass: Callable[[], HTTPChannel]) -> tuple[HTTPChannel, StringTransport]:
        channel = channelClass()
        channel.callLater = Clock().callLater  # type: ignore[method-assign]
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def headOf(self, channelClass: Callable[[], HTTPChannel]) -> bytes:
        channel, transport = self.connected(channelClass)
        headers = Headers()
        headers.addRawHeader(b"Content-Type", b"application/json")
        headers.addRawHeader(b"Set-Cookie", b"a=1")
        headers.addRawHeader(b"Set-Cookie", b"b=2")
        channel.writeHeaders(b"HTTP/1.1", b"404", b"Not Found", headers)
        return transport.value()

    def test_sameAsTwisted(self) -> None:
        self.assertEqual(self.headOf(HeldOutputChannel), self.headOf(HTTPChannel))

    def test_pairsAsTwisted(self) -> None:
        """
        Name and value pairs (the backwards-compatible form) are written as
        Twisted writes them.
        """
        channel, transport = self.connected(HeldOutputChannel)
        channel.writeHeaders(b"HTTP/1.1", b"200", b"OK", [(b"X-A", b"1")])
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n")


class PlainChannelTests(SynchronousTestCase):
    """
    The helpers leave channels that cannot hold alone.
    """

    def test_plainChannel(self) -> None:
        transport = StringTransport()
        channel = HTTPChannel()
        channel.callLater = Clock().callLater  # type: ignore[method-assign]
        channel.makeConnection(transport)

        class FakeRequest:
            pass

        request = FakeRequest()
        request.channel = channel  # type: ignore[attr-defined]
        holdOutput(request)
        flushOutput(request)
        channel.write(b"through")
        self.assertEqual(transport.value(), b"through")

    def test_noChannel(self) -> None:
        holdOutput(object())
        flushOutput(object())
