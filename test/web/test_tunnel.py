"""
Tests for L{llamaswap.web.tunnel}: upgrade requests relayed with the
client's connection taken over from twisted.web.

The synchronous tests drive a real L{Site}/C{HTTPChannel} over string
transports, with an in-memory upstream endpoint and a L{Clock}.  The
loopback tests run a real websocket echo server (the RFC 6455 handshake
and framing written out below; no websocket library is needed) and a real
client on 127.0.0.1; L{test.web.test_passthrough} reuses them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from llamaswap.web.forward import CLIENT_GONE, COMPLETE, FAILED, TRUNCATED
from llamaswap.web.tunnel import (
    CLOSE_GRACE,
    UPGRADED,
    HeadError,
    Tunneler,
    TunnelResult,
    isWebsocketUpgrade,
    parseResponseHead,
    requestHead,
)

# ---------------------------------------------------------------------------
# RFC 6455 in a few lines

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def acceptFor(key: bytes) -> bytes:
    """
    The C{Sec-WebSocket-Accept} answering C{Sec-WebSocket-Key: key}.
    """
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def encodeFrame(opcode: int, payload: bytes, masked: bool) -> bytes:
    """
    One final frame; clients mask, servers do not.
    """
    head = bytes([0x80 | opcode])
    maskBit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([maskBit | n])
    elif n < 1 << 16:
        head += bytes([maskBit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([maskBit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + applyMask(payload, mask)


def applyMask(data: bytes, mask: bytes) -> bytes:
    """
    C{data} XORed with the repeated 4-byte C{mask}.
    """
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class FrameParser:
    """
    Splits a byte stream into C{(opcode, payload)} frames.
    """

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        frames = []
        while True:
            buf = self.buffer
            if len(buf) < 2:
                return frames
            opcode = buf[0] & 0x0F
            masked = buf[1] & 0x80
            n = buf[1] & 0x7F
            at = 2
            if n == 126:
                if len(buf) < 4:
                    return frames
                (n,) = struct.unpack("!H", buf[2:4])
                at = 4
            elif n == 127:
                if len(buf) < 10:
                    return frames
                (n,) = struct.unpack("!Q", buf[2:10])
                at = 10
            mask = b""
            if masked:
                mask, at = buf[at : at + 4], at + 4
            if len(buf) < at + n:
                return frames
            payload = buf[at : at + n]
            if masked:
                payload = applyMask(payload, mask)
            self.buffer = buf[at + n :]
            frames.append((opcode, payload))


class EchoServer(Protocol):
    """
    A tiny upstream: C{/health} answers 200; a websocket upgrade is
    accepted (on C{/reject...} refused with a 403) and then every data frame
    is echoed, C{close-please} makes the server close, a close frame is
    answered and the connection closed; any other request is answered with
    a JSON echo of its method, target and headers.
    """

    def __init__(self, factory: EchoFactory) -> None:
        self.factory = factory
        self.buffer = b""
        self.websocket = False
        self.parser = FrameParser()
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        if self.websocket:
            for opcode, payload in self.parser.feed(data):
                self.frameReceived(opcode, payload)
            return
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        self.buffer = b""
        lines = head.split(b"\r\n")
        method, target, _ = lines[0].split(b" ", 2)
        headers = Headers()
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.addRawHeader(name.strip(), value.strip())
        self.factory.requests.append((method, target, headers))
        if target == b"/health":
            self.respond(b"200 OK", b"OK")
        elif isWebsocketUpgrade(headers):
            if target.startswith(b"/reject"):
                self.respond(b"403 Forbidden", b"no websockets here")
                return
            key = headers.getRawHeaders(b"sec-websocket-key", [b""])[0]
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + acceptFor(key) + b"\r\n\r\n"
            )
            self.websocket = True
            if rest:
                self.dataReceived(rest)
        else:
            body = json.dumps(
                {
                    "method": method.decode(),
                    "target": target.decode(),
                    "headers": [
                        [n.decode(), v.decode()]
                        for n, vs in headers.getAllRawHeaders()
                        for v in vs
                    ],
                }
            ).encode()
            self.respond(b"200 OK", body, b"application/json")

    def respond(self, status: bytes, body: bytes, contentType: bytes = b"text/plain") -> None:
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: " + contentType
            + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (len(body),)
            + body
        )
        self.transport.loseConnection()

    def frameReceived(self, opcode: int, payload: bytes) -> None:
        if opcode == CLOSE:
            self.transport.write(encodeFrame(CLOSE, payload, masked=False))
            self.transport.loseConnection()
        elif payload == b"close-please":
            self.transport.write(encodeFrame(CLOSE, b"\x03\xe8", masked=False))
            self.transport.loseConnection()
        elif opcode == PING:
            self.transport.write(encodeFrame(PONG, payload, masked=False))
        else:
            self.transport.write(encodeFrame(opcode, payload, masked=False))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed.callback(None)


class EchoFactory(Factory):
    """
    Builds L{EchoServer}s and keeps what they saw.

    @ivar requests: C{(method, target, headers)} of every request head.
    @ivar connections: every connection, in order.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes, Headers]] = []
        self.connections: list[EchoServer] = []

    def buildProtocol(self, addr: Any) -> EchoServer:
        return EchoServer(self)


def listenEcho(test: TestCase) -> tuple[EchoFactory, int]:
    """
    Start an L{EchoFactory} server on a free loopback port, stopped (with
    its open connections) in cleanup.
    """
    factory = EchoFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")

    async def stop() -> None:
        await port.stopListening()
        for connection in factory.connections:
            if connection.transport is not None and connection.transport.connected:
                connection.transport.abortConnection()
                await connection.closed

    test.addCleanup(lambda: Deferred.fromCoroutine(stop()))
    return factory, port.getHost().port


class WebsocketClient(Protocol):
    """
    A websocket client: sends the handshake for C{target} on connect.

    @ivar head: fires with the raw response head (up to the blank line).
    @ivar closed: fires when the connection is gone.
    """

    def __init__(self, target: bytes, extra: bytes = b"", key: bytes = b"dGhlIHNhbXBsZSBub25jZQ==") -> None:
        self.target = target
        self.extra = extra
        self.key = key
        self.head: Deferred[bytes] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self.buffer = b""
        self.gotHead = False
        self.upgraded = False
        self.parser = FrameParser()
        self.frames: list[tuple[int, bytes]] = []
        self.waiting: list[Deferred[tuple[int, bytes]]] = []
        self.body = b""

    def connectionMade(self) -> None:
        self.transport.write(
            b"GET " + self.target + b" HTTP/1.1\r\nHost: llamaswap.localhost\r\n"
            b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + self.key
            + b"\r\n" + self.extra + b"\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        if not self.gotHead:
            self.buffer += data
            if b"\r\n\r\n" not in self.buffer:
                return
            head, _, data = self.buffer.partition(b"\r\n\r\n")
            self.gotHead = True
            self.upgraded = head.startswith(b"HTTP/1.1 101")
            self.head.callback(head)
        if not self.upgraded:
            self.body += data
            return
        for frame in self.parser.feed(data):
            if self.waiting:
                self.waiting.pop(0).callback(frame)
            else:
                self.frames.append(frame)

    def send(self, opcode: int, payload: bytes) -> None:
        self.transport.write(encodeFrame(opcode, payload, masked=True))

    def nextFrame(self) -> Deferred[tuple[int, bytes]]:
        if self.frames:
            return succeed(self.frames.pop(0))
        d: Deferred[tuple[int, bytes]] = Deferred()
        self.waiting.append(d)
        return d

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed.callback(None)


async def connectWebsocket(
    test: TestCase, port: int, target: bytes, extra: bytes = b""
) -> tuple[WebsocketClient, bytes]:
    """
    Connect a L{WebsocketClient} to 127.0.0.1:C{port} and wait for the
    response head; the connection is closed in cleanup.
    """
    client = WebsocketClient(target, extra)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)

    async def close() -> None:
        if client.transport.connected:
            client.transport.abortConnection()
        await client.closed

    test.addCleanup(lambda: Deferred.fromCoroutine(close()))
    head = await client.head
    return client, head


def headStatus(head: bytes) -> int:
    """
    The status code of a raw response head.
    """
    return int(head.split(b" ", 2)[1])


def headHeaders(head: bytes) -> Headers:
    """
    The header fields of a raw response head.
    """
    headers = Headers()
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers.addRawHeader(name.strip(), value.strip())
    return headers


# ---------------------------------------------------------------------------
# Pure parts


class DetectionTests(SynchronousTestCase):
    """
    L{isWebsocketUpgrade} reads the tokens as llama-swap does.
    """

    def check(self, connection: list[bytes], upgrade: list[bytes]) -> bool:
        headers = Headers()
        if connection:
            headers.setRawHeaders(b"connection", connection)
        if upgrade:
            headers.setRawHeaders(b"upgrade", upgrade)
        return isWebsocketUpgrade(headers)

    def test_tokens(self) -> None:
        """
        Both headers are needed; tokens match case-insensitively within
        comma lists and across repeated headers.
        """
        self.assertTrue(self.check([b"Upgrade"], [b"websocket"]))
        self.assertTrue(self.check([b"keep-alive, UPGRADE"], [b"WebSocket"]))
        self.assertTrue(self.check([b"keep-alive", b"upgrade"], [b"h2c, websocket"]))
        self.assertFalse(self.check([b"keep-alive"], [b"websocket"]))
        self.assertFalse(self.check([b"upgrade"], [b"h2c"]))
        self.assertFalse(self.check([], [b"websocket"]))
        self.assertFalse(self.check([b"upgrade"], []))
        self.assertFalse(self.check([b"upgraded"], [b"websockets"]))


class HeadTests(SynchronousTestCase):
    """
    Response heads are parsed strictly, request heads written plainly.
    """

    def test_parse(self) -> None:
        """
        Status, phrase and repeated headers are kept.
        """
        head = parseResponseHead(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Set-Cookie: a=1\r\nSet-Cookie: b=2"
        )
        self.assertEqual(head.status, 101)
        self.assertEqual(head.phrase, b"Switching Protocols")
        self.assertEqual(head.headers.getRawHeaders(b"set-cookie"), [b"a=1", b"b=2"])
        self.assertEqual(parseResponseHead(b"HTTP/1.0 204").phrase, b"")

    def test_garbage(self) -> None:
        """
        Anything but an HTTP/1.x status line with a 3-digit code and
        C{name: value} lines is refused.
        """
        for bad in [
            b"SSH-2.0-OpenSSH",
            b"HTTP/1.1 abc OK",
            b"HTTP/1.1 1011 OK",
            b"HTTP/1.1 200 OK\r\nno colon",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded",
            b"HTTP/1.1 200 OK\r\nBad Name: 1",
        ]:
            self.assertRaises(HeadError, parseResponseHead, bad)

    def test_requestHead(self) -> None:
        """
        The request line, then every header value on its own line.
        """
        headers = Headers()
        headers.setRawHeaders(b"host", [b"h"])
        headers.setRawHeaders(b"x-a", [b"1", b"2"])
        self.assertEqual(
            requestHead(b"GET", b"/ws?a=%2F", headers),
            b"GET /ws?a=%2F HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
        )


# ---------------------------------------------------------------------------
# In memory


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """
    An endpoint whose connections are string transports.

    @ivar connections: C{(protocol, transport)} per connection.
    @ivar result: what C{connect} does instead, when set: a failure, or
        C{"pending"} for a connection attempt that never completes.
    """

    def __init__(self) -> None:
        self.connections: list[tuple[Protocol, StringTransport]] = []
        self.result: Failure | str | None = None
        self.cancelled = False

    def connect(self, factory: Factory) -> Deferred[Protocol]:
        if isinstance(self.result, Failure):
            return fail(self.result)
        if self.result == "pending":
            def cancel(d: Deferred[Protocol]) -> None:
                self.cancelled = True
            return Deferred(cancel)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5800))
        assert protocol is not None
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 40000),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 5800),
            lenient=True,
        )
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return succeed(protocol)


class TunnelResource(Resource):
    """
    Tunnels every request to C{http://127.0.0.1:5800} (or C{url}).
    """

    isLeaf = True

    def __init__(self, tunneler: Tunneler, url: bytes = b"http://127.0.0.1:5800", **kw: Any) -> None:
        super().__init__()
        self.tunneler = tunneler
        self.url = url
        self.kw = kw
        self.results: list[Deferred[TunnelResult]] = []
        self.requests: list[Request] = []

    def render(self, request: Request) -> Any:
        self.requests.append(request)
        self.results.append(self.tunneler.tunnel(request, self.url, request.uri, **self.kw))
        return NOT_DONE_YET


UPGRADE = (
    b"GET /ws?x=%2F HTTP/1.1\r\nHost: proxy.example\r\nConnection: Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n"
    b"Authorization: Bearer k\r\n\r\n"
)
SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Accept: xyz\r\n\r\n"
)


class MemoryTests(SynchronousTestCase):
    """
    The exchange over in-memory transports.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoint = MemoryEndpoint()
        self.tunneler = Tunneler(
            object(), self.clock, endpointFor=lambda url, timeout: self.endpoint
        )
        self.resource = TunnelResource(self.tunneler, responseHeaderTimeout=5)
        # The channels' idle timeouts go on the fake clock too.
        self.site = Site(self.resource, reactor=self.clock)
        self.client = StringTransport(
            peerAddress=IPv4Address("TCP", "192.0.2.7", 51000),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            lenient=True,
        )
        self.protocol = self.site.buildProtocol(self.client.getPeer())
        self.protocol.makeConnection(self.client)
        self.client.protocol = self.protocol  # type: ignore[attr-defined]

    def send(self, data: bytes = UPGRADE) -> tuple[Protocol, StringTransport]:
        self.protocol.dataReceived(data)
        if not self.endpoint.connections:
            return None, None  # type: ignore[return-value]
        return self.endpoint.connections[-1]

    def result(self) -> TunnelResult:
        if not hasattr(self, "_result"):
            self._result = self.successResultOf(self.resource.results[-1])
        return self._result

    def test_requestHead(self) -> None:
        """
        The upstream gets the request line with the client's escaping, the
        client's Host first, its end-to-end headers, C{Connection: Upgrade},
        its C{Upgrade} and C{X-Forwarded-For}.
        """
        _, upstream = self.send()
        head = upstream.value()
        self.assertTrue(head.startswith(b"GET /ws?x=%2F HTTP/1.1\r\nHost: proxy.example\r\n"), head)
        self.assertTrue(head.endswith(b"\r\n\r\n"))
        headers = headHeaders(head[:-4])
        self.assertEqual(headers.getRawHeaders(b"connection"), [b"Upgrade"])
        self.assertEqual(headers.getRawHeaders(b"upgrade"), [b"websocket"])
        self.assertEqual(headers.getRawHeaders(b"sec-websocket-key"), [b"abc"])
        self.assertEqual(headers.getRawHeaders(b"authorization"), [b"Bearer k"])
        self.assertEqual(headers.getRawHeaders(b"x-forwarded-for"), [b"192.0.2.7"])

    def test_splice(self) -> None:
        """
        On 101 the upstream's head and early bytes reach the client
        verbatim, bytes then pass both ways, each transport is the other's
        streaming producer, and twisted.web no longer reads the connection.
        """
        upstreamProtocol, upstream = self.send()
        upstream.clear()
        upstreamProtocol.dataReceived(SWITCH + b"early")
        self.assertEqual(self.client.value(), SWITCH + b"early")
        self.assertIs(self.client.producer, upstream)
        self.assertTrue(self.client.streaming)
        self.assertIs(upstream.producer, self.client)
        self.assertTrue(upstream.streaming)
        clientSide = self.client.protocol  # type: ignore[attr-defined]
        self.assertIsNot(clientSide, self.protocol)
        clientSide.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(upstream.value(), b"GET / HTTP/1.1\r\n\r\n")
        upstreamProtocol.dataReceived(b"\x81\x02hi")
        self.assertEqual(self.client.value(), SWITCH + b"early\x81\x02hi")
        self.assertNoResult(self.resource.results[0])
        self.assertEqual(self.resource.requests[0].code, 101)

    def test_clientClosesFirst(self) -> None:
        """
        The client closing closes the upstream; the tunnel ends (and the
        request finishes, for the access log) once both are gone.
        """
        upstreamProtocol, upstream = self.send()
        upstreamProtocol.dataReceived(SWITCH)
        finished = self.resource.requests[0].notifyFinish()
        self.client.protocol.dataReceived(b"12345")  # type: ignore[attr-defined]
        self.client.protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
        self.assertTrue(upstream.disconnecting)
        self.assertFalse(upstream.disconnected)
        self.assertNoResult(self.resource.results[0])
        upstreamProtocol.connectionLost(Failure(ConnectionDone()))
        result = self.result()
        self.assertEqual((result.outcome, result.status), (UPGRADED, 101))
        self.assertEqual((result.bytesToUpstream, result.bytesToClient), (5, 0))
        self.assertIsNone(self.successResultOf(finished))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_upstreamClosesFirst(self) -> None:
        """
        The upstream closing closes the client connection.
        """
        upstreamProtocol, upstream = self.send()
        upstreamProtocol.dataReceived(SWITCH + b"bye")
        upstreamProtocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(self.client.disconnecting)
        self.assertNoResult(self.resource.results[0])
        self.client.protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
        self.assertEqual(self.result().outcome, UPGRADED)
        self.assertEqual(self.result().bytesToClient, 3)

    def test_closeGrace(self) -> None:
        """
        A side that does not close within L{CLOSE_GRACE} seconds after the
        other is aborted.
        """
        upstreamProtocol, upstream = self.send()
        upstreamProtocol.dataReceived(SWITCH)
        self.client.protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
        self.clock.advance(CLOSE_GRACE - 0.1)
        self.assertFalse(upstream.disconnected)
        self.clock.advance(0.1)
        self.assertTrue(upstream.disconnected)

    def test_bufferedClientBytes(self) -> None:
        """
        Bytes the client sent right behind its request (read by
        twisted.web before the upgrade) are passed on after the 101.
        """
        upstreamProtocol, upstream = self.send(UPGRADE + b"\x81\x85early")
        upstream.clear()
        upstreamProtocol.dataReceived(SWITCH)
        self.assertEqual(upstream.value(), b"\x81\x85early")

    def test_interimSkipped(self) -> None:
        """
        A C{100 Continue} before the 101 is not passed on.
        """
        upstreamProtocol, upstream = self.send()
        upstreamProtocol.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n" + SWITCH[:20])
        self.assertEqual(self.client.value(), b"")
        upstreamProtocol.dataReceived(SWITCH[20:])
        self.assertEqual(self.client.value(), SWITCH)

    def test_requestLoseConnection(self) -> None:
        """
        C{loseConnection} on the upgraded request aborts both sides.
        """
        upstreamProtocol, upstream = self.send()
        upstreamProtocol.dataReceived(SWITCH)
        self.resource.requests[0].loseConnection()
        self.assertTrue(upstream.disconnected)
        self.assertTrue(self.client.disconnected)

    def test_cancel(self) -> None:
        """
        Cancelling a spliced tunnel aborts both sides.
        """
        upstreamProtocol, upstream = self.send()
        upstreamProtocol.dataReceived(SWITCH)
        self.resource.results[0].cancel()
        self.failureResultOf(self.resource.results[0], CancelledError)
        self.assertTrue(upstream.disconnected)
        self.assertTrue(self.client.disconnected)
        # Their connectionLost arrives later and changes nothing.
        self.client.protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
        upstreamProtocol.connectionLost(Failure(ConnectionDone()))

    def response(self) -> tuple[int, Headers, bytes]:
        raw = self.client.value()
        head, _, body = raw.partition(b"\r\n\r\n")
        return headStatus(head), headHeaders(head), body

    def test_refusalWithLength(self) -> None:
        """
        A non-101 answer is relayed as a response; the tunnel is over
        when its body is complete.
        """
        upstreamProtocol, upstream = self.send()
        upstreamProtocol.dataReceived(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\nConnection: close\r\n"
            b"Content-Type: text/plain\r\n\r\nno"
        )
        self.assertNoResult(self.resource.results[0])
        upstreamProtocol.dataReceived(b"pe!")
        status, headers, body = self.response()
        self.assertEqual((status, body), (403, b"nope!"))
        self.assertEqual(headers.getRawHeaders(b"content-length"), [b"5"])
        self.assertEqual(self.result().outcome, COMPLETE)
        self.assertEqual(self.result().status, 403)
        self.assertTrue(upstream.disconnecting)

    def test_refusalChunked(self) -> None:
        """
        A chunked refusal is decoded and re-framed for the client.
        """
        upstreamProtocol, _ = self.send()
        upstreamProtocol.dataReceived(
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        status, _, body = self.response()
        self.assertEqual(status, 400)
        self.assertEqual(body, b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        self.assertEqual(self.result().outcome, COMPLETE)

    def test_refusalUntilClose(self) -> None:
        """
        A refusal without length ends when the upstream closes.
        """
        upstreamProtocol, _ = self.send()
        upstreamProtocol.dataReceived(b"HTTP/1.1 404 Not Found\r\n\r\nmissing")
        self.assertNoResult(self.resource.results[0])
        upstreamProtocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.response()[0], 404)
        self.assertIn(b"missing", self.response()[2])
        self.assertEqual(self.result().outcome, COMPLETE)

    def test_refusalTruncated(self) -> None:
        """
        A refusal cut off before its length closes the client connection.
        """
        upstreamProtocol, _ = self.send()
        upstreamProtocol.dataReceived(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nabc")
        upstreamProtocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.result().outcome, TRUNCATED)
        self.assertTrue(self.client.disconnecting)

    def test_refusalBackpressure(self) -> None:
        """
        While a refusal is relayed, a full client socket pauses the
        upstream connection.
        """
        upstreamProtocol, upstream = self.send()
        upstreamProtocol.dataReceived(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nabc")
        self.client.producer.pauseProducing()
        self.assertEqual(upstream.producerState, "paused")
        self.client.producer.resumeProducing()
        self.assertEqual(upstream.producerState, "producing")

    def test_connectFails(self) -> None:
        """
        An upstream that cannot be reached is a 502 envelope.
        """
        self.endpoint.result = Failure(ConnectionRefusedError("nobody home"))
        self.send()
        status, _, body = self.response()
        self.assertEqual(status, 502)
        self.assertIn(b"upstream connection error", body)
        self.assertEqual(self.result().outcome, FAILED)

    def test_headerTimeout(self) -> None:
        """
        No response head within C{responseHeaderTimeout}: 504 and the
        upstream connection is dropped.
        """
        _, upstream = self.send()
        self.clock.advance(5)
        status, _, body = self.response()
        self.assertEqual(status, 504)
        self.assertIn(b"within 5s", body)
        self.assertTrue(upstream.disconnected)
        self.assertEqual(self.result().outcome, FAILED)

    def test_connectTimeout(self) -> None:
        """
        The header timeout also covers a connection attempt that hangs.
        """
        self.endpoint.result = "pending"
        self.send()
        self.clock.advance(5)
        self.assertTrue(self.endpoint.cancelled)
        self.assertEqual(self.response()[0], 504)

    def test_garbage(self) -> None:
        """
        An answer that is not HTTP is a 502.
        """
        upstreamProtocol, upstream = self.send()
        upstreamProtocol.dataReceived(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        self.assertEqual(self.response()[0], 502)
        self.assertTrue(upstream.disconnected)

    def test_upstreamClosesEarly(self) -> None:
        """
        An upstream that closes without answering is a 502.
        """
        upstreamProtocol, _ = self.send()
        upstreamProtocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.response()[0], 502)
        self.assertEqual(self.result().outcome, FAILED)

    def test_clientLeavesWhileWaiting(self) -> None:
        """
        A client that leaves before the answer drops the upstream
        connection.
        """
        upstreamProtocol, upstream = self.send()
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(upstream.disconnected)
        upstreamProtocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.result().outcome, CLIENT_GONE)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_clientLeavesWhileConnecting(self) -> None:
        """
        A client that leaves while connecting cancels the attempt.
        """
        self.endpoint.result = "pending"
        self.send()
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(self.endpoint.cancelled)
        self.assertEqual(self.result().outcome, CLIENT_GONE)


# ---------------------------------------------------------------------------
# Over loopback


class LoopbackTests(TestCase):
    """
    A real client, a real Site and a real websocket server on 127.0.0.1.
    """

    timeout = 20

    async def start(self) -> tuple[EchoFactory, int]:
        echo, echoPort = listenEcho(self)
        resource = TunnelResource(
            Tunneler(reactor), b"http://127.0.0.1:%d" % (echoPort,)
        )
        self.resource = resource
        port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return echo, port.getHost().port

    async def test_echo(self) -> None:
        """
        The handshake passes, frames echo both ways (large ones too) and
        the client closing ends both connections and the tunnel.
        """
        echo, port = await self.start()
        client, head = await connectWebsocket(self, port, b"/ws?x=%2F")
        self.assertEqual(headStatus(head), 101, head)
        self.assertEqual(
            headHeaders(head).getRawHeaders(b"sec-websocket-accept"),
            [acceptFor(client.key)],
        )
        self.assertEqual(echo.requests[0][1], b"/ws?x=%2F")
        client.send(TEXT, b"hello")
        self.assertEqual(await client.nextFrame(), (TEXT, b"hello"))
        big = os.urandom(3 * 1024 * 1024)
        client.send(BINARY, big)
        self.assertEqual(await client.nextFrame(), (BINARY, big))
        client.send(CLOSE, b"\x03\xe8")
        self.assertEqual((await client.nextFrame())[0], CLOSE)
        await echo.connections[0].closed
        await client.closed
        result = await self.resource.results[0]
        self.assertEqual(result.outcome, UPGRADED)
        self.assertGreater(result.bytesToClient, len(big))

    async def test_clientDrops(self) -> None:
        """
        A client that drops the connection without a close frame closes
        the upstream connection.
        """
        echo, port = await self.start()
        client, head = await connectWebsocket(self, port, b"/ws")
        self.assertEqual(headStatus(head), 101)
        client.transport.loseConnection()
        await echo.connections[0].closed
        self.assertEqual((await self.resource.results[0]).outcome, UPGRADED)

    async def test_serverCloses(self) -> None:
        """
        The upstream closing closes the client.
        """
        echo, port = await self.start()
        client, head = await connectWebsocket(self, port, b"/ws")
        client.send(TEXT, b"close-please")
        self.assertEqual(await client.nextFrame(), (CLOSE, b"\x03\xe8"))
        await client.closed
        self.assertEqual((await self.resource.results[0]).outcome, UPGRADED)

    async def test_refused(self) -> None:
        """
        An upgrade the upstream refuses is relayed as its response.
        """
        echo, port = await self.start()
        client, head = await connectWebsocket(self, port, b"/reject")
        self.assertEqual(headStatus(head), 403)
        self.assertEqual((await self.resource.results[0]).outcome, COMPLETE)
