"""
llamaswap's upstream client over TLS (peers at C{https} URLs), against a
real twisted.web server on 127.0.0.1 with a self-signed certificate: the
connection's transport is then Twisted's TLS protocol rather than a socket.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from typing import Any

from OpenSSL import SSL
from twisted.internet import reactor, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseDone, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from zope.interface import implementer

from llamaswap.web.bodies import BodyProducer
from llamaswap.web.h1client import ConnectionPool, UpstreamClient

from .test_forward_integration import SSE, Echo, FloodResource, TrackingSite, poll

MB = 2**20


@implementer(IOpenSSLClientConnectionCreator)
class TrustAnything:
    """
    A TLS client that accepts any certificate (the test's own).
    """

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        connection = SSL.Connection(context, None)
        connection.set_connect_state()
        return connection


class Collect(Protocol):
    """
    Counts a body's bytes and keeps its end.
    """

    def __init__(self) -> None:
        self.size = 0
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason


class TLSTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        key = ssl.KeyPair.generate(size=2048)
        certificate = key.selfSignedCert(1, commonName="127.0.0.1")
        root = Resource()
        root.putChild(b"sse", SSE())
        root.putChild(b"echo", Echo())
        root.putChild(b"flood", FloodResource())
        self.site = TrackingSite(root)
        self.port = reactor.listenSSL(  # type: ignore[attr-defined]
            0, self.site, certificate.options(), interface="127.0.0.1"
        )
        self.addCleanup(self.port.stopListening)
        port = self.port.getHost().port
        self.base = b"https://127.0.0.1:%d" % (port,)
        endpoint = wrapClientTLS(
            TrustAnything(), TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        )
        self.pool = ConnectionPool(reactor)
        self.client = UpstreamClient(self.pool, lambda uri: endpoint)
        self.addCleanup(self.closeAll)

    async def _closeAll(self) -> None:
        await self.pool.closeCachedConnections()
        await poll(lambda: not self.site.open, 10, "the server's connections to close")

    def closeAll(self) -> Any:
        from twisted.internet.defer import ensureDeferred

        return ensureDeferred(self._closeAll())

    async def test_largeBodyBothWays(self) -> None:
        """
        A body of several megabytes goes up (streamed from a file by its
        producer through TLS) and one comes down, both whole.
        """
        data = bytes(range(256)) * (3 * MB // 256)
        with tempfile.TemporaryFile() as f:
            f.write(data)
            response = await self.client.request(
                b"POST", self.base + b"/echo", Headers(), BodyProducer(f)
            )
            answer = json.loads(await readBody(response))
        self.assertEqual(answer["length"], len(data))
        self.assertEqual(answer["sha256"], hashlib.sha256(data).hexdigest())

        response = await self.client.request(b"POST", self.base + b"/flood?bytes=%d" % (5 * MB,))
        body = Collect()
        response.deliverBody(body)
        await poll(lambda: body.reason is not None, 30, "the flood to end")
        assert body.reason is not None
        self.assertTrue(body.reason.check(ResponseDone))
        self.assertEqual(body.size, 5 * MB)

    async def test_streamsOnOneConnection(self) -> None:
        """
        Event streams (chunked) arrive whole, one after another on one
        pooled TLS connection.
        """
        for _ in range(3):
            response = await self.client.request(b"POST", self.base + b"/sse?n=5&interval=0.001")
            self.assertEqual(response.code, 200)
            text = await readBody(response)
            self.assertEqual(text.count(b"data: "), 6)
            self.assertTrue(text.endswith(b"data: [DONE]\n\n"))
        await poll(lambda: self.pool.idle() == 1, 5, "the connection back in the pool")
        self.assertEqual(len(self.site.open) + len(self.site.closedAt), 1)
