"""
Tests for L{llamaswap.web.client}: the agent over llamaswap's own client
(its pool, replays and per-server close), and its endpoints.
"""

from __future__ import annotations

import io
import socket

from twisted.internet.defer import succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import (
    URI,
    ResponseNeverReceived,
    readBody,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers

from llamaswap.web.bodies import BodyProducer
from llamaswap.web.client import (
    MAX_IDLE_PER_SERVER,
    MIN_IDLE_PER_SERVER,
    LoopbackEndpoint,
    QuietEndpoint,
    UpstreamAgent,
    UpstreamEndpoints,
    idleConnectionLimit,
    poolKey,
)
from llamaswap.web.h1client import ConnectionPool, UpstreamClient

from .helpers import connectInMemory


class FakeEndpoint:
    """
    An endpoint whose connections are L{UpstreamTransport}s.
    """

    def __init__(self, clock: Clock, connections: list) -> None:  # type: ignore[type-arg]
        self.clock = clock
        self.connections = connections

    def connect(self, factory):  # type: ignore[no-untyped-def]
        protocol, transport = connectInMemory(self.clock, factory)
        self.connections.append((protocol, transport))
        return succeed(protocol)


class FakeEndpointFactory:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.connections: list = []  # type: ignore[type-arg]

    def endpointForURI(self, uri):  # type: ignore[no-untyped-def]
        return FakeEndpoint(self.clock, self.connections)


class PoolTests(SynchronousTestCase):
    """
    The agent's pool: reuse, replay on stale connections, per-server close.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = ConnectionPool(self.clock)
        self.pool.maxPersistentPerHost = MIN_IDLE_PER_SERVER
        self.endpoints = FakeEndpointFactory(self.clock)
        self.agent = UpstreamClient(self.pool, self.endpoints.endpointForURI)

    def roundTrip(self, url: bytes, index: int, body: bytes = b"") -> None:
        d = self.agent.request(
            b"POST", url, Headers(), BodyProducer(body) if body else None
        )
        protocol, transport = self.endpoints.connections[index]
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)

    def test_replayOnStaleConnection(self) -> None:
        """
        When a reused connection turns out to have been closed by the
        server before it answered, a replayable POST is sent again, whole,
        on a fresh connection.
        """
        self.roundTrip(b"http://127.0.0.1:5800/a", 0, b"first")
        self.assertEqual(len(self.endpoints.connections), 1)
        body = b"x" * 200_000
        d = self.agent.request(
            b"POST", b"http://127.0.0.1:5800/b", Headers(), BodyProducer(body)
        )
        self.assertEqual(len(self.endpoints.connections), 1)  # reused
        protocol, transport = self.endpoints.connections[0]
        protocol.connectionLost(Failure(ConnectionDone("idle close")))
        self.assertEqual(len(self.endpoints.connections), 2)
        protocol2, transport2 = self.endpoints.connections[1]
        self.assertEqual(transport2.value().split(b"\r\n\r\n", 1)[1], body)
        protocol2.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_noReplayOfForeignProducers(self) -> None:
        """
        A body from any other producer (not replayable) is not retried.
        """
        from twisted.internet.task import Cooperator
        from twisted.web.client import FileBodyProducer

        self.roundTrip(b"http://127.0.0.1:5800/a", 0)
        coop = Cooperator(scheduler=lambda f: self.clock.callLater(0, f), started=True)
        producer = FileBodyProducer(io.BytesIO(b"abc"), cooperator=coop)
        d = self.agent.request(b"POST", b"http://127.0.0.1:5800/b", Headers(), producer)
        self.clock.advance(0)
        self.clock.advance(0)
        protocol, transport = self.endpoints.connections[0]
        protocol.connectionLost(Failure(ConnectionDone("idle close")))
        self.failureResultOf(d, ResponseNeverReceived)
        self.assertEqual(len(self.endpoints.connections), 1)

    def test_closeCachedConnectionsTo(self) -> None:
        """
        Closing the cached connections to one server leaves the others.
        """
        self.roundTrip(b"http://127.0.0.1:5800/a", 0)
        self.roundTrip(b"http://127.0.0.1:5801/a", 1)
        d = self.pool.closeCachedConnectionsTo(
            poolKey("http://127.0.0.1:5800/ignored/path")
        )
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertTrue(self.endpoints.connections[0][1].closed)
        self.assertFalse(self.endpoints.connections[1][1].closed)
        # The next request to 5800 opens a new connection; 5801 reuses.
        self.agent.request(b"GET", b"http://127.0.0.1:5800/a")
        self.assertEqual(len(self.endpoints.connections), 3)
        self.agent.request(b"GET", b"http://127.0.0.1:5801/a")
        self.assertEqual(len(self.endpoints.connections), 3)

    def test_idleConnectionsKeptAndExpire(self) -> None:
        """
        Up to L{MIN_IDLE_PER_SERVER} connections that served concurrent
        requests stay open for reuse; each closes after
        C{cachedConnectionTimeout} idle seconds.
        """
        count = MIN_IDLE_PER_SERVER
        pending = [
            self.agent.request(b"GET", b"http://127.0.0.1:5800/a") for _ in range(count)
        ]
        self.assertEqual(len(self.endpoints.connections), count)
        for (protocol, transport), d in zip(self.endpoints.connections, pending):
            protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            self.successResultOf(d)
        self.clock.advance(0)
        self.assertFalse(any(t.closed for p, t in self.endpoints.connections))
        # A second burst reuses them all.
        again = [
            self.agent.request(b"GET", b"http://127.0.0.1:5800/a") for _ in range(count)
        ]
        self.assertEqual(len(self.endpoints.connections), count)
        for protocol, transport in self.endpoints.connections:
            protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        for d in again:
            self.successResultOf(d)
        self.clock.advance(ConnectionPool.cachedConnectionTimeout - 1)
        self.assertFalse(any(t.closed for p, t in self.endpoints.connections))
        self.clock.advance(1)
        self.assertTrue(all(t.closed for p, t in self.endpoints.connections))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_idleConnectionLimit(self) -> None:
        """
        The idle limit follows the largest concurrency limit, within
        bounds.
        """
        self.assertEqual(idleConnectionLimit([]), MIN_IDLE_PER_SERVER)
        self.assertEqual(idleConnectionLimit([10, 4]), MIN_IDLE_PER_SERVER)
        self.assertEqual(idleConnectionLimit([10, 100]), 100)
        self.assertEqual(idleConnectionLimit([10_000]), MAX_IDLE_PER_SERVER)

    def test_closeUnknownServer(self) -> None:
        """
        Closing connections to a server the pool never saw is a no-op.
        """
        self.successResultOf(
            self.pool.closeCachedConnectionsTo(poolKey(b"http://10.0.0.1:1"))
        )

    def test_upstreamAgentTimeouts(self) -> None:
        """
        L{UpstreamAgent} hands out one agent per connect timeout, all on its
        pool.
        """
        agent = UpstreamAgent(self.clock, self.pool, connectTimeout=30)
        self.assertIs(agent.withConnectTimeout(5), agent.withConnectTimeout(5))
        self.assertIsNot(agent.withConnectTimeout(5), agent.withConnectTimeout(6))
        self.assertIs(agent.withConnectTimeout(0), agent.withConnectTimeout(None))
        self.assertIs(agent.withConnectTimeout(5).pool, self.pool)
        self.successResultOf(agent.closeCachedConnections())


class EndpointTests(SynchronousTestCase):
    """
    L{UpstreamAgent}'s endpoints: built once per server, without name
    resolution for IP literals.
    """

    def test_kinds(self) -> None:

        endpoints = UpstreamEndpoints(MemoryReactorClock(), 5)

        def kind(url: bytes) -> object:
            endpoint = endpoints.endpointForURI(URI.fromBytes(url))
            self.assertIsInstance(endpoint, QuietEndpoint)
            return endpoint.endpoint

        v4 = kind(b"http://127.0.0.1:5800/x")
        self.assertIsInstance(v4, TCP4ClientEndpoint)
        self.assertEqual(v4._timeout, 5)
        self.assertIs(v4, kind(b"http://127.0.0.1:5800/y"))
        self.assertIsInstance(kind(b"http://[::1]:5800/"), TCP6ClientEndpoint)
        self.assertIsInstance(kind(b"http://localhost:5800/"), LoopbackEndpoint)
        self.assertIsInstance(kind(b"http://gpu-box:5800/"), HostnameEndpoint)
        self.assertNotIsInstance(kind(b"https://peer.example/"), HostnameEndpoint)
        self.assertRaises(
            SchemeNotSupported, endpoints.endpointForURI, URI.fromBytes(b"ftp://h:1/")
        )

    def test_quiet(self) -> None:
        """
        Connection factories passed through a L{QuietEndpoint} do not log
        their start and stop ("Starting factory ...").
        """

        reactor = MemoryReactorClock()
        endpoint = UpstreamEndpoints(reactor, 5).endpointForURI(
            URI.fromBytes(b"http://127.0.0.1:5800/")
        )
        factory = Factory()
        self.assertTrue(factory.noisy)
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        endpoint.connect(factory)
        self.assertFalse(factory.noisy)
        wrapping = reactor.tcpClients[0][2]
        wrapping.doStart()
        wrapping.doStop()
        self.assertEqual(
            [e for e in events if "factory" in e.get("log_format", "")], []
        )

    def test_connectsThroughPool(self) -> None:
        """
        A request through L{UpstreamAgent} connects to the IP and port of
        the URL with the chosen timeout.
        """

        reactor = MemoryReactorClock()
        agent = UpstreamAgent(reactor, connectTimeout=7)
        agent.request(b"GET", b"http://127.0.0.1:5800/health")
        agent.withConnectTimeout(2).request(b"GET", b"http://127.0.0.1:5801/health")
        self.assertEqual(
            [(host, port, timeout) for host, port, _, timeout, _ in reactor.tcpClients],
            [("127.0.0.1", 5800, 7), ("127.0.0.1", 5801, 2)],
        )


class _Answering(Protocol):
    """
    A raw HTTP/1.1 server connection answering every request head with an
    empty 200 (requests here have no body).
    """

    def connectionMade(self) -> None:
        self.factory.connections.append(self)  # type: ignore[attr-defined]
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # type: ignore[union-attr]


class SendIssuedTests(TestCase):
    """
    A request on a reused connection leaves as soon as it is written, not
    when the reactor next polls (real sockets).
    """

    async def test_reusedConnection(self) -> None:
        from twisted.internet import reactor

        factory = Factory.forProtocol(_Answering)
        factory.connections = []  # type: ignore[attr-defined]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        agent = UpstreamAgent(reactor, connectTimeout=5)
        self.addCleanup(agent.closeCachedConnections)
        url = b"http://127.0.0.1:%d/x" % (port.getHost().port,)
        response = await agent.request(b"GET", url)
        await readBody(response)
        # Back in the pool once the reactor has had a turn.
        while not agent.pool.idle():
            await deferLater(reactor, 0.001, lambda: None)
        [server] = factory.connections  # type: ignore[attr-defined]
        d = agent.request(b"GET", url + b"?again")
        peeked = server.transport.socket.recv(
            65536, socket.MSG_PEEK | socket.MSG_DONTWAIT
        )
        self.assertTrue(peeked.startswith(b"GET /x?again HTTP/1.1\r\n"), peeked)
        await readBody(await d)
        self.assertEqual(len(factory.connections), 1)  # type: ignore[attr-defined]


class WarmTests(TestCase):
    """
    L{UpstreamAgent.warm}: a connection opened ahead of the first request
    and left idle in the pool (real sockets).
    """

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.agent = UpstreamAgent(reactor, connectTimeout=5)
        self.addCleanup(self.agent.closeCachedConnections)

    async def test_warmConnectionTakenByRequest(self) -> None:
        """
        The next request to that server goes out on the warm connection at
        once: it is in the server's socket before the reactor runs again,
        and the server sees one connection in all.
        """
        factory = Factory.forProtocol(_Answering)
        factory.connections = []  # type: ignore[attr-defined]
        port = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        base = "http://127.0.0.1:%d" % (port.getHost().port,)
        self.assertIs(await self.agent.warm(base), True)
        while not factory.connections:  # type: ignore[attr-defined]
            await deferLater(self.reactor, 0.001, lambda: None)
        [server] = factory.connections  # type: ignore[attr-defined]
        d = self.agent.request(
            b"POST", base.encode() + b"/v1/chat", None, BodyProducer(b"{}")
        )
        peeked = server.transport.socket.recv(
            65536, socket.MSG_PEEK | socket.MSG_DONTWAIT
        )
        self.assertTrue(peeked.startswith(b"POST /v1/chat HTTP/1.1\r\n"), peeked)
        response = await d
        self.assertEqual(response.code, 200)
        await readBody(response)
        self.assertEqual(len(factory.connections), 1)  # type: ignore[attr-defined]

    async def test_refusedOrUnsupported(self) -> None:
        """
        A server that is not listening yet, an C{https} server and a URL
        that is not one give C{False}, and nothing is left in the pool.
        """
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        self.assertIs(await self.agent.warm(f"http://127.0.0.1:{closed}"), False)
        self.assertIs(await self.agent.warm(f"https://127.0.0.1:{closed}"), False)
        self.assertIs(await self.agent.warm("not a url"), False)
        self.assertEqual(self.agent.pool.idle(), 0)

    async def test_notWantedAnyMore(self) -> None:
        """
        A connection made once it is no longer wanted (the server is being
        stopped) is closed, not pooled.
        """
        factory = Factory.forProtocol(_Answering)
        factory.connections = []  # type: ignore[attr-defined]
        port = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        base = "http://127.0.0.1:%d" % (port.getHost().port,)
        self.assertIs(await self.agent.warm(base, lambda: False), False)
        self.assertEqual(self.agent.pool.idle(), 0)
        while not factory.connections:  # type: ignore[attr-defined]
            await deferLater(self.reactor, 0.001, lambda: None)
        [server] = factory.connections  # type: ignore[attr-defined]
        while server.transport.connected:
            await deferLater(self.reactor, 0.001, lambda: None)
