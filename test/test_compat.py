"""
Tests for L{llamaswap.compat}: each fails loudly if Twisted changes the
private behaviour a helper relies on.
"""

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyChannel
from twisted.web.server import Request

from llamaswap.compat import isDisconnected


class IsDisconnectedTests(SynchronousTestCase):
    def test_connectionLost(self) -> None:
        """
        A request whose connection was lost is disconnected; Twisted sets
        the private flag L{isDisconnected} reads in C{connectionLost}.
        """
        request = Request(DummyChannel())
        self.assertFalse(isDisconnected(request))
        request.connectionLost(Exception("gone"))
        self.assertTrue(isDisconnected(request))
        self.assertIn("_disconnected", vars(request))
