"""
Tests for L{llamaswap.web.peers}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse
from zope.interface import implementer
from zope.interface.verify import verifyObject

from llamaswap.config.load import loadConfigText
from llamaswap.config.model import Config
from llamaswap.httperrors import describeFailure
from llamaswap.web.peers import (
    PeerErrorAgent,
    PeerRouter,
    PeerShutdownError,
    PeerShuttingDown,
    peerRoutes,
)

from .helpers import BodyCollector


def loadConfig(text: str) -> Config:
    """
    A configuration from YAML text.
    """
    return loadConfigText(text, "test.yaml", environ={}).config


@implementer(IAgent)
class RecordingAgent:
    """
    An agent whose requests wait for the test to answer them.

    @ivar requests: C{(method, uri, headers, deferred)} per request.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes, Headers | None, Deferred[Any]]] = []
        self.timeouts: list[float | None] = []

    def request(self, method: bytes, uri: bytes, headers: Any = None, bodyProducer: Any = None) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.requests.append((method, uri, headers, d))
        return d

    def withConnectTimeout(self, timeout: float | None) -> IAgent:
        self.timeouts.append(timeout)
        return self


class PeerRoutesTests(SynchronousTestCase):
    """
    L{peerRoutes} names every peer model like llama-swap's peer router.
    """

    def test_onePeer(self) -> None:
        """
        One peer with two models: four names, bare and fully-qualified.
        """
        routes = peerRoutes(
            loadConfig("peers: {p1: {proxy: 'http://h', models: [a, org/b]}}")
        )
        self.assertEqual(sorted(routes), ["a", "org/b", "p1/a", "p1/org/b"])
        self.assertEqual(routes["p1/org/b"].modelID, "org/b")
        self.assertEqual(routes["a"].peer.id, "p1")

    def test_shared(self) -> None:
        """
        A model two peers offer is reachable by its two fully-qualified
        names only.
        """
        routes = peerRoutes(loadConfig(
            "peers: {p1: {proxy: 'http://h', models: [m]}, p2: {proxy: 'http://i', models: [m, n]}}"
        ))
        self.assertEqual(sorted(routes), ["n", "p1/m", "p2/m", "p2/n"])

    def test_fqnWins(self) -> None:
        """
        A fully-qualified name beats a peer model literally named like it.
        """
        routes = peerRoutes(loadConfig(
            "peers: {p1: {proxy: 'http://h', models: [model]},"
            " p2: {proxy: 'http://i', models: [p1/model]}}"
        ))
        self.assertEqual(routes["p1/model"].peer.id, "p1")
        self.assertEqual(routes["p2/p1/model"].modelID, "p1/model")

    def test_router(self) -> None:
        """
        L{PeerRouter.resolve} looks names up in the table.
        """
        router = PeerRouter(
            loadConfig("peers: {p1: {proxy: 'http://h', models: [a]}}"), RecordingAgent(), Clock()
        )
        resolved = router.resolve("p1/a")
        assert resolved is not None
        self.assertEqual((resolved.peer.id, resolved.modelID, resolved.fqn), ("p1", "a", "p1/a"))
        self.assertIsNone(router.resolve("b"))


class PeerErrorAgentTests(SynchronousTestCase):
    """
    L{PeerErrorAgent} answers connection failures as llama-swap's peer
    proxy does.
    """

    def test_interface(self) -> None:
        """
        It is an agent.
        """
        verifyObject(IAgent, PeerErrorAgent(RecordingAgent()))

    def test_success(self) -> None:
        """
        A response passes through.
        """
        inner = RecordingAgent()
        d = PeerErrorAgent(inner).request(b"GET", b"http://h/x")
        sentinel = object()
        inner.requests[0][3].callback(sentinel)
        self.assertIs(self.successResultOf(d), sentinel)

    def test_connectionError(self) -> None:
        """
        A failure before any response becomes a 502 C{peer proxy error}
        envelope, with the wrapped reason.
        """
        inner = RecordingAgent()
        d = PeerErrorAgent(inner).request(b"POST", b"http://h/x", Headers())
        inner.requests[0][3].errback(
            ResponseNeverReceived([Failure(ConnectionRefusedError("refused"))])
        )
        response = self.successResultOf(d)
        verifyObject(IResponse, response)
        self.assertEqual(response.code, 502)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/json"])
        body = BodyCollector()
        response.deliverBody(body)
        self.assertIn(b'"message":"peer proxy error: Connection was refused', body.data)
        self.assertIn(b'"code":"bad_gateway"', body.data)
        assert body.reason is not None
        self.assertTrue(body.reason.check(ResponseDone))
        self.assertEqual(response.length, len(body.data))

    def test_negotiated(self) -> None:
        """
        The error follows the request's C{Accept} like llamaswap's own.
        """
        agent = PeerErrorAgent(RecordingAgent())
        d = agent.request(b"GET", b"http://h/", Headers({b"accept": [b"text/plain"]}))
        agent._agent.requests[0][3].errback(ConnectionRefusedError())  # type: ignore[attr-defined]
        response = self.successResultOf(d)
        body = BodyCollector()
        response.deliverBody(body)
        self.assertTrue(body.data.startswith(b"llamaswap: peer proxy error: "))

    def test_cancel(self) -> None:
        """
        Cancelling (client gone, response-header timeout) cancels the
        request and fails with L{CancelledError}, not a 502.
        """
        inner = RecordingAgent()
        d = PeerErrorAgent(inner).request(b"GET", b"http://h/")
        self.assertFalse(inner.requests[0][3].called)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(inner.requests[0][3].called)

    def test_synchronousFailure(self) -> None:
        """
        An agent that raises is answered like one that fails.
        """

        @implementer(IAgent)
        class Raising:
            def request(self, *a: Any, **kw: Any) -> Deferred[Any]:
                raise ValueError("bad URL")

        response = self.successResultOf(PeerErrorAgent(Raising()).request(b"GET", b"x"))
        self.assertEqual(response.code, 502)

    def test_connectTimeout(self) -> None:
        """
        The per-request connect timeout reaches the wrapped agent.
        """
        inner = RecordingAgent()
        wrapped = PeerErrorAgent(inner).withConnectTimeout(7)
        self.assertIsInstance(wrapped, PeerErrorAgent)
        self.assertEqual(inner.timeouts, [7])

    def test_describe(self) -> None:
        """
        Peer errors list the wrapped reasons without type names (like
        llama-swap's Go errors); an empty message gives the class name.
        """
        failure = Failure(ResponseNeverReceived([Failure(ValueError("a")), Failure(KeyError())]))
        self.assertEqual(describeFailure(failure, typeNames=False), "a; KeyError")


class ShutdownTests(SynchronousTestCase):
    """
    L{PeerRouter.shutdown} refuses new requests and waits for, or cuts off,
    running ones.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.router = PeerRouter(
            loadConfig("peers: {p1: {proxy: 'http://h', models: [a]}}"), RecordingAgent(), self.clock
        )

    def relay(self) -> Deferred[Any]:
        """
        A tracked relay that fails with L{CancelledError} when cancelled,
        like L{Forwarder.forward}'s.
        """
        return self.router.track(Deferred())

    def test_idle(self) -> None:
        """
        Without relays the shutdown is immediate; later requests get a 500
        saying so.
        """
        self.successResultOf(self.router.shutdown(5))
        error = self.assertRaises(PeerShuttingDown, self.router.checkOpen)
        self.assertEqual(error.status, 500)
        self.assertEqual(error.message, "unspecific error: peer proxy is shutting down")
        d: Deferred[Any] = Deferred()
        self.assertRaises(PeerShuttingDown, self.router.track, d)
        self.failureResultOf(d, CancelledError)

    def test_waits(self) -> None:
        """
        A running relay is waited for, and its own result is untouched.
        """
        relay = self.relay()
        done = self.router.shutdown(10)
        self.clock.advance(5)
        self.assertNoResult(done)
        relay.callback("result")
        self.successResultOf(done)
        self.assertEqual(self.successResultOf(relay), "result")
        self.assertEqual(self.router.inFlight, 0)

    def test_timeout(self) -> None:
        """
        Relays still running after the timeout are cut off and the
        shutdown reports it.
        """
        relay = self.relay()
        done = self.router.shutdown(10)
        self.clock.advance(10)
        self.failureResultOf(relay, CancelledError)
        failure = self.failureResultOf(done, PeerShutdownError)
        self.assertEqual(str(failure.value), "peer shutdown timed out after 10s")

    def test_immediate(self) -> None:
        """
        A timeout of 0 cuts relays off at once and waits for them.
        """
        relay = self.relay()
        self.successResultOf(self.router.shutdown(0))
        self.failureResultOf(relay, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_twice(self) -> None:
        """
        A second shutdown is refused.
        """
        self.relay()
        self.router.shutdown(10)
        failure = self.failureResultOf(self.router.shutdown(10), PeerShutdownError)
        self.assertEqual(str(failure.value), "shutdown already in progress")

    def test_failedRelay(self) -> None:
        """
        A relay that fails is no longer in flight.
        """
        relay = self.relay()
        relay.errback(RuntimeError("x"))
        self.failureResultOf(relay, RuntimeError)
        self.assertEqual(self.router.inFlight, 0)


