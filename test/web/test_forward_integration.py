"""
Integration tests for L{llamaswap.web.forward} on the real reactor: a
twisted.web upstream and the relaying proxy both listen on 127.0.0.1 port 0,
and raw TCP clients talk to the proxy, so timing, kernel buffers and
disconnects are real.  Every wait is a bounded poll; nothing sleeps for a
fixed time.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import sys
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from llamaswap.web.client import UpstreamAgent
from llamaswap.web.forward import CLIENT_GONE, COMPLETE, TRUNCATED, Forwarder

from .helpers import ForwardingResource, ParsedResponse, sseEvent

MB = 2**20


async def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    """
    Wait until C{check()} is true, polling every 5 ms; fail after
    C{timeout} seconds.
    """
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await deferLater(reactor, 0.005, lambda: None)


class TrackingSite(Site):
    """
    A site that knows its open connections and when each closed.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.open: set[Any] = set()
        self.closedAt: list[float] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        original = protocol.connectionLost
        site = self

        def connectionLost(reason: Failure) -> None:
            site.open.discard(protocol)
            site.closedAt.append(reactor.seconds())
            original(reason)

        protocol.connectionLost = connectionLost
        self.open.add(protocol)
        return protocol


class SSE(Resource):
    """
    C{POST /sse?n=N&interval=S}: N chat-completion events S seconds apart
    (the first after S), then C{[DONE]}.  Records when each event was
    written and when clients went away.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.produced: list[list[float]] = []
        self.disconnects: list[float] = []

    def render_POST(self, request: Request) -> object:
        n = int(request.args[b"n"][0])
        interval = float(request.args[b"interval"][0])
        produced: list[float] = []
        self.produced.append(produced)
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        state: dict[str, Any] = {"i": 0, "call": None}

        def tick() -> None:
            i = state["i"]
            request.write(sseEvent(i))
            produced.append(reactor.seconds())
            state["i"] = i + 1
            if i + 1 < n:
                state["call"] = reactor.callLater(interval, tick)
            else:
                state["call"] = None
                request.write(b"data: [DONE]\n\n")
                request.finish()

        def gone(failure: Failure) -> None:
            self.disconnects.append(reactor.seconds())
            if state["call"] is not None and state["call"].active():
                state["call"].cancel()

        request.notifyFinish().addErrback(gone)
        request.write(b"")
        state["call"] = reactor.callLater(interval, tick)
        return NOT_DONE_YET


@implementer(IPushProducer)
class Flood:
    """
    Writes C{total} bytes to a request as fast as its connection accepts
    them, as a push producer; counts how often it was paused.
    """

    def __init__(self, request: Request, total: int) -> None:
        self.request = request
        self.total = total
        self.sent = 0
        self.pauses = 0
        self.paused = False
        self.stopped = False
        self._running = False
        self.block = bytes(range(256)) * 256  # 64 KiB
        request.registerProducer(self, True)
        reactor.callLater(0, self.resumeProducing)

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        if self._running:
            return
        self._running = True
        try:
            while not (self.paused or self.stopped) and self.sent < self.total:
                n = min(len(self.block), self.total - self.sent)
                self.sent += n
                self.request.write(self.block[:n])
            if self.sent >= self.total and not self.stopped:
                self.stopped = True
                self.request.unregisterProducer()
                self.request.finish()
        finally:
            self._running = False

    def stopProducing(self) -> None:
        self.stopped = True


class FloodResource(Resource):
    """
    C{POST /flood?bytes=N}: N bytes with a C{Content-Length}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.floods: list[Flood] = []

    def render_POST(self, request: Request) -> object:
        total = int(request.args[b"bytes"][0])
        # A fixed, small send buffer keeps the kernel's share of the
        # pipeline small and predictable.
        request.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % (total,))
        flood = Flood(request, total)
        self.floods.append(flood)
        request.notifyFinish().addErrback(lambda f: flood.stopProducing())
        return NOT_DONE_YET


class Dying(Resource):
    """
    C{POST /die}: two events, then the connection is cut (a crashed
    upstream).
    """

    isLeaf = True

    def render_POST(self, request: Request) -> object:
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(sseEvent(0) + sseEvent(1))
        reactor.callLater(0.05, request.channel.transport.abortConnection)
        return NOT_DONE_YET


class HopHeaders(Resource):
    """
    C{POST /hop}: a response naming a private header in C{Connection}.
    """

    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        request.setHeader(b"connection", b"X-Hop")
        request.setHeader(b"x-hop", b"private")
        request.setHeader(b"x-kept", b"public")
        request.setHeader(b"content-type", b"application/json")
        return b"{}"


class Echo(Resource):
    """
    C{POST /echo}: the length and SHA-256 of the body received.
    """

    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        digest = hashlib.sha256()
        length = 0
        request.content.seek(0)
        while True:
            block = request.content.read(MB)
            if not block:
                break
            length += len(block)
            digest.update(block)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(
            {
                "length": length,
                "sha256": digest.hexdigest(),
                "contentLength": request.getHeader(b"content-length").decode(),
            }
        ).encode()


class RawClient(Protocol):
    """
    A client that writes raw HTTP and records what arrives and when.
    """

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.data = bytearray()
        self.received = 0
        self.arrivals: list[tuple[float, int]] = []
        self.lost: Deferred[None] = Deferred()
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.arrivals.append((reactor.seconds(), self.received))
        if self.keep:
            self.data += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed = True
        self.lost.callback(None)

    def arrivalOf(self, marker: bytes) -> float:
        """
        When the byte range containing C{marker} had fully arrived.
        """
        end = self.data.index(marker) + len(marker)
        for at, total in self.arrivals:
            if total >= end:
                return at
        raise AssertionError(marker)


class ForwardIntegrationTests(TestCase):
    """
    The relay between real sockets.
    """

    timeout = 60

    def setUp(self) -> None:
        self.sse = SSE()
        self.flood = FloodResource()
        root = Resource()
        root.putChild(b"sse", self.sse)
        root.putChild(b"flood", self.flood)
        root.putChild(b"echo", Echo())
        root.putChild(b"die", Dying())
        root.putChild(b"hop", HopHeaders())
        self.upstreamSite = TrackingSite(root)
        self.upstreamPort = reactor.listenTCP(0, self.upstreamSite, interface="127.0.0.1")
        self.addCleanup(self.upstreamPort.stopListening)
        upstreamURL = b"http://127.0.0.1:%d" % (self.upstreamPort.getHost().port,)

        self.agent = UpstreamAgent(reactor, connectTimeout=5)
        self.forwarder = Forwarder(self.agent, reactor)
        self.proxy = ForwardingResource(self.forwarder, upstreamURL)
        self.proxySite = TrackingSite(self.proxy)
        self.proxyPort = reactor.listenTCP(0, self.proxySite, interface="127.0.0.1")
        self.addCleanup(self.proxyPort.stopListening)
        self.clients: list[RawClient] = []
        self.addCleanup(self.closeEverything)

    async def _closeEverything(self) -> None:
        for client in self.clients:
            if not client.closed:
                client.transport.abortConnection()
        await self.agent.closeCachedConnections()
        await poll(
            lambda: not self.proxySite.open and not self.upstreamSite.open
            and all(c.closed for c in self.clients),
            10,
            "all connections to close",
        )

    def closeEverything(self) -> Deferred[None]:
        return ensureDeferred(self._closeEverything())

    async def connect(self, keep: bool = True, rcvbuf: int | None = None) -> RawClient:
        client = RawClient(keep)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxyPort.getHost().port)
        await connectProtocol(endpoint, client)
        if rcvbuf is not None:
            client.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.clients.append(client)
        return client

    def send(self, client: RawClient, path: bytes, body: bytes = b"{}", chunked: bool = False) -> None:
        head = b"POST %s HTTP/1.1\r\nHost: llamaswap.test\r\n" % (path,)
        if chunked:
            head += b"Transfer-Encoding: chunked\r\n\r\n"
            parts = [b"%x\r\n%s\r\n" % (len(body[i : i + MB]), body[i : i + MB]) for i in range(0, len(body), MB)]
            client.transport.write(head + b"".join(parts) + b"0\r\n\r\n")
        else:
            client.transport.write(head + b"Content-Length: %d\r\n\r\n" % (len(body),) + body)

    async def test_sseEventsArriveAsProduced(self) -> None:
        """
        With the upstream sending one event every 100 ms, each event reaches
        the client before the upstream has produced the next: the first
        long before the last is produced.
        """
        start = reactor.seconds()
        client = await self.connect()
        self.send(client, b"/sse?n=8&interval=0.1")
        await poll(lambda: client.data.endswith(b"0\r\n\r\n"), 10, "the stream's end")
        produced = self.sse.produced[0]
        self.assertEqual(len(produced), 8)
        arrivals = [client.arrivalOf(b'"tok%d"' % i) for i in range(8)]
        for i in range(7):
            self.assertLess(arrivals[i], produced[i + 1], f"event {i} held back")
        self.assertLess(arrivals[0] - start, 0.5)
        self.assertGreater(produced[-1] - arrivals[0], 0.6)
        response = ParsedResponse.parse(bytes(client.data))
        self.assertEqual(response.header(b"x-accel-buffering"), b"no")
        self.assertTrue(response.complete)
        result = await self.proxy.results[0]
        self.assertEqual(result.outcome, COMPLETE)

    async def test_slowClientDoesNotFillMemory(self) -> None:
        """
        A client that stops reading while the upstream sends 100 MB stalls
        the upstream (its producer is paused, far less than 100 MB was
        produced) and the proxy holds under 1 MB in its client transport;
        once the client reads again all 100 MB arrive.
        """
        total = 100 * MB
        client = await self.connect(keep=False, rcvbuf=64 * 1024)
        self.send(client, b"/flood?bytes=%d" % (total,))
        client.transport.pauseProducing()  # stop reading the socket
        await poll(lambda: bool(self.flood.floods), 10, "the upstream to start")
        flood = self.flood.floods[0]
        last = [-1]

        def stalled() -> bool:
            stable = flood.paused and flood.sent == last[0]
            last[0] = flood.sent
            return stable

        await poll(stalled, 20, "the upstream to stall")
        request = self.proxy.requests[0]
        transport = request.transport
        buffered = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        self.assertLess(flood.sent, total // 4, "the proxy kept reading")
        self.assertLess(buffered, 512 * 1024, "the proxy buffered the response")
        self.assertGreaterEqual(flood.pauses, 1)

        client.transport.resumeProducing()
        await poll(lambda: flood.sent == total and client.received > total, 60, "all data")
        result = await self.proxy.results[0]
        self.assertEqual((result.outcome, result.bodyBytes), (COMPLETE, total))
        await poll(lambda: client.received >= total + 100, 10, "the last bytes")

    async def test_clientDisconnectClosesUpstream(self) -> None:
        """
        When the client goes away mid-stream, the upstream sees its request
        end within 100 ms; the next request through the proxy works.
        """
        client = await self.connect()
        self.send(client, b"/sse?n=1000&interval=0.02")
        await poll(lambda: b'"tok2"' in client.data, 5, "the first events")
        gone = reactor.seconds()
        client.transport.loseConnection()
        await poll(lambda: bool(self.sse.disconnects), 2, "the upstream to see the disconnect")
        self.assertLess(self.sse.disconnects[0] - gone, 0.1)
        self.assertLess(len(self.sse.produced[0]), 1000)
        result = await self.proxy.results[0]
        self.assertEqual(result.outcome, CLIENT_GONE)

        client2 = await self.connect()
        self.send(client2, b"/sse?n=3&interval=0.01")
        await poll(lambda: client2.data.endswith(b"0\r\n\r\n"), 5, "the second stream")
        self.assertIn(b"data: [DONE]", client2.data)
        self.assertEqual((await self.proxy.results[1]).outcome, COMPLETE)

    async def test_upstreamDiesMidStream(self) -> None:
        """
        When the upstream's connection breaks mid-stream, the client gets
        what was sent and then an error event; the proxy serves the next
        request.
        """
        client = await self.connect()
        self.send(client, b"/die")
        await poll(lambda: client.data.endswith(b"0\r\n\r\n"), 10, "the end of the stream")
        response = ParsedResponse.parse(bytes(client.data))
        self.assertEqual(response.status, 200)
        self.assertTrue(response.body.startswith(sseEvent(0) + sseEvent(1) + b"data: {"))
        self.assertIn(b'"error"', response.body)
        result = await self.proxy.results[0]
        self.assertEqual(result.outcome, TRUNCATED)

        client2 = await self.connect()
        self.send(client2, b"/sse?n=2&interval=0.001")
        await poll(lambda: client2.data.endswith(b"0\r\n\r\n"), 5, "the next stream")

    async def test_connectionNominatedHeadersDropped(self) -> None:
        """
        A response header the upstream names in its C{Connection} header is
        not relayed (over a real pooled connection, where Twisted hides
        C{Connection} from C{response.headers}).
        """
        for i in range(2):  # a fresh and a reused connection
            client = await self.connect()
            self.send(client, b"/hop")
            await poll(lambda: client.data.endswith(b"{}"), 5, "the answer")
            response = ParsedResponse.parse(bytes(client.data))
            self.assertEqual(response.header(b"x-kept"), b"public")
            self.assertIsNone(response.header(b"x-hop"))
            await self.proxy.results[i]

    async def _echo(self, body: bytes, chunked: bool) -> dict[str, Any]:
        client = await self.connect()
        self.send(client, b"/echo", body, chunked=chunked)
        await poll(
            lambda: ParsedResponse.parse(bytes(client.data)).complete
            if b"\r\n\r\n" in client.data
            else False,
            20,
            "the echo",
        )
        return json.loads(ParsedResponse.parse(bytes(client.data)).body)  # type: ignore[no-any-return]

    async def test_largeBodiesArriveIntact(self) -> None:
        """
        Request bodies of several MB, sent with a length or chunked, arrive
        upstream byte-identical, with a C{Content-Length}.
        """
        body = random.Random(1234).randbytes(6 * MB + 12345)
        expected = hashlib.sha256(body).hexdigest()
        for chunked in (False, True):
            echo = await self._echo(body, chunked)
            self.assertEqual(
                (echo["length"], echo["sha256"], echo["contentLength"]),
                (len(body), expected, str(len(body))),
                f"chunked={chunked}",
            )

    async def test_unreachableUpstream(self) -> None:
        """
        An upstream that refuses connections gives the client a 502
        envelope.
        """
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proxy.url = b"http://127.0.0.1:%d" % (port,)
        client = await self.connect()
        self.send(client, b"/v1/chat/completions")
        await poll(lambda: b"}" in client.data, 5, "the error")
        response = ParsedResponse.parse(bytes(client.data))
        self.assertEqual(response.status, 502)
        self.assertEqual(json.loads(response.body)["error"]["code"], "bad_gateway")

    async def test_bytesLeaveBeforeTheTapsRun(self) -> None:
        """
        A whole reply has been sent to the client when the taps hear it
        ended, and a stream's first event when they read it: the
        bookkeeping that follows (tracking, activity rows, the access log)
        does not delay them.  Seen by peeking at the client's socket.
        """
        client = await self.connect()
        seen: list[tuple[str, bytes]] = []

        def peek() -> bytes:
            try:
                return client.transport.socket.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return b""

        class Tap:
            def responseStarted(self, status: int, headers: Any) -> None:
                pass

            def dataReceived(self, data: bytes) -> None:
                seen.append(("data", peek()))

            def responseEnded(self, reason: Failure | None) -> None:
                seen.append(("end", peek()))

        self.proxy.kw = {"taps": [Tap()]}
        self.send(client, b"/echo", b'{"a": 1}')
        await poll(lambda: len(self.proxy.results) == 1, 5, "the request")
        await self.proxy.results[0]
        kind, peeked = seen[-1]
        self.assertEqual(kind, "end")
        reply = ParsedResponse.parse(peeked)
        self.assertTrue(reply.complete, peeked)
        self.assertEqual(json.loads(reply.body)["length"], 8)
        await poll(lambda: b"sha256" in client.data, 5, "the reply")

        seen.clear()
        self.send(client, b"/sse?n=2&interval=0.01")
        await poll(lambda: len(self.proxy.results) == 2, 5, "the request")
        await self.proxy.results[1]
        kind, peeked = seen[0]
        self.assertEqual(kind, "data")
        self.assertIn(sseEvent(0), peeked)

    async def test_connectionReused(self) -> None:
        """
        Sequential requests reuse one pooled upstream connection.
        """
        for i in range(3):
            client = await self.connect()
            self.send(client, b"/sse?n=2&interval=0.001")
            await poll(lambda: client.data.endswith(b"0\r\n\r\n"), 5, "a stream")
            await self.proxy.results[i]
        self.assertEqual(len(self.upstreamSite.open) + len(self.upstreamSite.closedAt), 1)



class DemoProcess(ProcessProtocol):
    """
    The demo upstream (C{python -m llamaswap.demo}) as a child process.
    """

    def __init__(self) -> None:
        self.output = b""
        self.url: Deferred[bytes] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        marker = b"demo upstream listening on "
        if not self.url.called and marker in self.output:
            line = self.output.split(marker, 1)[1]
            if b"\n" in line:
                self.url.callback(line.split(b"\n", 1)[0].strip())

    def processEnded(self, reason: Failure) -> None:
        if not self.url.called:
            self.url.errback(AssertionError(f"demo exited early: {self.output!r}"))
        self.ended.callback(None)


class DemoUpstreamTests(TestCase):
    """
    The relay in front of the demo upstream running as a real process.
    """

    timeout = 30

    async def test_streamedChatCompletion(self) -> None:
        """
        A streamed chat completion from the demo arrives through the proxy
        event by event, ending with C{[DONE]}.
        """
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=repo)
        demo = DemoProcess()
        process = reactor.spawnProcess(
            demo,
            sys.executable,
            [sys.executable, "-m", "llamaswap.demo", "--port", "0", "--tokens", "12",
             "--token-delay", "0.05", "--silent"],
            env=env,
        )

        async def stop() -> None:
            if not demo.ended.called:
                process.signalProcess("KILL")
            await demo.ended

        self.addCleanup(lambda: ensureDeferred(stop()))
        url = await demo.url

        agent = UpstreamAgent(reactor)
        self.addCleanup(agent.closeCachedConnections)
        proxy = ForwardingResource(Forwarder(agent, reactor), url)
        site = TrackingSite(proxy)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        client = RawClient()
        await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client
        )
        self.addCleanup(lambda: client.closed or client.transport.abortConnection())
        body = json.dumps(
            {"model": "demo", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        ).encode()
        client.transport.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await poll(lambda: client.data.endswith(b"0\r\n\r\n"), 20, "the stream")
        response = ParsedResponse.parse(bytes(client.data))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header(b"x-accel-buffering"), b"no")
        self.assertIn(b"data: [DONE]", response.body)
        events = [e for e in response.body.split(b"\n\n") if e.startswith(b"data: {")]
        self.assertGreaterEqual(len(events), 12)
        # 12 tokens 50 ms apart: they came over time, not in one burst.
        firstAt = client.arrivalOf(events[0])
        lastAt = client.arrivalOf(events[-1])
        self.assertGreater(lastAt - firstAt, 0.3)
        self.assertEqual((await proxy.results[0]).outcome, COMPLETE)
        client.transport.loseConnection()
        await client.lost
        await poll(lambda: not site.open, 5, "the proxy connection to close")
