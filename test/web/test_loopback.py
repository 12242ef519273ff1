"""
Tests for L{llamaswap.web.client.LoopbackEndpoint}.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from llamaswap.web.client import LoopbackEndpoint

from ..util import freePort


class Accepting(Protocol):
    def connectionMade(self) -> None:
        self.factory.accepted.append(self.transport.getHost().host)  # type: ignore[attr-defined]
        self.transport.loseConnection()


class LoopbackEndpointTests(TestCase):
    """
    C{localhost} upstreams are reached on 127.0.0.1, or on ::1 when only
    that listens.
    """

    timeout = 20

    def listen(self, interface: str) -> tuple[int, list[str]]:
        factory = Factory.forProtocol(Accepting)
        factory.accepted = []  # type: ignore[attr-defined]
        port = reactor.listenTCP(0, factory, interface=interface)
        self.addCleanup(port.stopListening)
        return port.getHost().port, factory.accepted  # type: ignore[attr-defined]

    async def connectTo(self, port: int) -> None:
        protocol = await LoopbackEndpoint(reactor, port, 5).connect(
            Factory.forProtocol(Protocol)
        )
        protocol.transport.loseConnection()

    async def test_ipv4(self) -> None:
        """
        A server on 127.0.0.1 is reached there.
        """
        port, accepted = self.listen("127.0.0.1")
        await self.connectTo(port)
        self.assertEqual(accepted, ["127.0.0.1"])

    async def test_ipv6Fallback(self) -> None:
        """
        A server only on ::1 is reached after 127.0.0.1 refuses.
        """
        port, accepted = self.listen("::1")
        await self.connectTo(port)
        self.assertEqual(accepted, ["::1"])

    async def test_refused(self) -> None:
        """
        When neither listens the connection is refused.
        """
        with self.assertRaises(ConnectionRefusedError):
            await self.connectTo(freePort())
