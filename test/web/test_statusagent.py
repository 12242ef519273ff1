"""
Tests for L{llamaswap.web.statusagent}: the readiness probes' client.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import URI, readBody
from twisted.web.resource import Resource
from twisted.web.server import Site

from llamaswap.upstream.health import HTTPHealthProber
from llamaswap.web.client import UpstreamEndpoints
from llamaswap.web.statusagent import BadStatusLine, StatusAgent, parseStatusLine


class StatusLineTests(SynchronousTestCase):
    def test_good(self) -> None:
        """
        Version, code and phrase (which may be missing or hold spaces).
        """
        for line, expected in (
            (b"HTTP/1.1 200 OK\r", ((b"HTTP", 1, 1), 200, b"OK")),
            (b"HTTP/1.0 503 Service Unavailable", ((b"HTTP", 1, 0), 503, b"Service Unavailable")),
            (b"HTTP/1.1 204", ((b"HTTP", 1, 1), 204, b"")),
        ):
            response = parseStatusLine(line)
            self.assertEqual((response.version, response.code, response.phrase), expected)

    def test_bad(self) -> None:
        """
        Anything else is a L{BadStatusLine}.
        """
        for line in (b"", b"garbage", b"HTTP/x 200 OK", b"ICY 200 OK", b"HTTP/1.1 20 OK",
                     b"HTTP/1.1 abc OK", b"HTTP/1.1"):
            self.assertRaises(BadStatusLine, parseStatusLine, line)


class _Endpoint:
    """
    Connects each factory to a new L{StringTransport} when told to.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Any, Deferred[Any]]] = []
        self.cancelled = 0

    def connect(self, factory: Any) -> Deferred[Any]:
        def cancel(d: Deferred[Any]) -> None:
            self.cancelled += 1
            self.pending.remove((factory, d))

        d: Deferred[Any] = Deferred(cancel)
        self.pending.append((factory, d))
        return d

    def complete(self) -> tuple[Any, StringTransport]:
        factory, d = self.pending.pop(0)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        d.callback(protocol)
        return protocol, transport


class StatusAgentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.endpoint = _Endpoint()
        self.uris: list[URI] = []

        def endpointFor(uri: URI) -> Any:
            self.uris.append(uri)
            return self.endpoint

        self.agent = StatusAgent(endpointFor)

    def test_requestAndAnswer(self) -> None:
        """
        One fixed request (origin form, host with a non-default port,
        closing the connection); the status line, however it is cut, is the
        answer; the connection is closed then; the body reads empty.
        """
        d = self.agent.request(b"GET", b"http://127.0.0.1:8080/health?x=1")
        protocol, transport = self.endpoint.complete()
        self.assertEqual(
            transport.value(),
            b"GET /health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
            b"User-Agent: llamaswap-health\r\nConnection: close\r\n\r\n",
        )
        protocol.dataReceived(b"HTTP/1.1 50")
        self.assertNoResult(d)
        protocol.dataReceived(b"3 Loading model\r\nContent-Length: 10\r\n")
        response = self.successResultOf(d)
        self.assertEqual((response.code, response.phrase), (503, b"Loading model"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.successResultOf(readBody(response)), b"")
        protocol.dataReceived(b"\r\n{}")
        protocol.connectionLost(Failure(ConnectionLost()))

    def test_hostHeader(self) -> None:
        """
        The default port is left out; an IPv6 literal is bracketed.
        """
        for url, host in (
            (b"http://localhost/h", b"localhost"),
            (b"https://example.com:443/h", b"example.com"),
            (b"http://[::1]:9000/h", b"[::1]:9000"),
            (b"http://[::1]/h", b"[::1]"),
        ):
            self.agent.request(b"GET", url)
            _, transport = self.endpoint.complete()
            self.assertIn(b"\r\nHost: %s\r\n" % (host,), transport.value(), url)

    def test_requestBuiltOnce(self) -> None:
        """
        The URL is parsed once; later probes reuse it.
        """
        for _ in range(3):
            self.agent.request(b"GET", b"http://127.0.0.1:1/h")
        self.assertEqual(len(self.uris), 3)
        self.assertIs(self.uris[0], self.uris[2])

    def test_badAnswer(self) -> None:
        """
        An answer without a status line fails the probe and aborts the
        connection, also when the line never ends.
        """
        for data in (b"SSH-2.0-OpenSSH\r\n", b"x" * 2000):
            d = self.agent.request(b"GET", b"http://127.0.0.1:1/h")
            protocol, transport = self.endpoint.complete()
            protocol.dataReceived(data)
            self.failureResultOf(d, BadStatusLine)
            self.assertTrue(transport.disconnected)

    def test_closedBeforeAnswer(self) -> None:
        """
        A connection closed before the status line fails the probe with
        its reason.
        """
        d = self.agent.request(b"GET", b"http://127.0.0.1:1/h")
        protocol, _ = self.endpoint.complete()
        protocol.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(d, ConnectionLost)

    def test_connectFails(self) -> None:
        """
        A failed connection fails the probe.
        """
        d = self.agent.request(b"GET", b"http://127.0.0.1:1/h")
        _, connecting = self.endpoint.pending.pop()
        connecting.errback(Failure(ConnectionLost()))
        self.failureResultOf(d, ConnectionLost)

    def test_cancel(self) -> None:
        """
        Cancelling a probe cancels its connection attempt, or aborts its
        connection.
        """
        d = self.agent.request(b"GET", b"http://127.0.0.1:1/h")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.endpoint.cancelled, 1)
        d = self.agent.request(b"GET", b"http://127.0.0.1:1/h")
        _, transport = self.endpoint.complete()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(transport.disconnected)

    def test_onlyGET(self) -> None:
        """
        Anything but a bodiless C{GET} is refused.
        """
        self.assertRaises(ValueError, self.agent.request, b"POST", b"http://127.0.0.1:1/")
        self.assertRaises(
            ValueError, self.agent.request, b"GET", b"http://127.0.0.1:1/", None, object()
        )


class _Health(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.code = 503

    def render_GET(self, request: Any) -> bytes:
        request.setResponseCode(self.code)
        return b'{"status": "loading"}' * 100


class RealServerTests(TestCase):
    """
    The prober with a L{StatusAgent} against a real server on 127.0.0.1.
    """

    async def test_probe(self) -> None:
        """
        503 is not ready, 200 is; nothing is left open.
        """
        health = _Health()
        port = reactor.listenTCP(0, Site(health), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        agent = StatusAgent(UpstreamEndpoints(reactor, 5.0).endpointForURI)
        prober = HTTPHealthProber(agent, reactor)
        url = f"http://127.0.0.1:{port.getHost().port}/health"
        self.assertFalse(await prober.probeOnce(url))
        health.code = 200
        self.assertTrue(await prober.probeOnce(url))
