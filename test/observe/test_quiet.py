"""
Tests for L{llamaswap.observe.quiet}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import HTTPConnectionPool

from llamaswap.observe.quiet import QuietHTTP11ClientFactory, quietPool


class QuietPoolTests(SynchronousTestCase):
    """
    L{quietPool} makes a pool's connection factories silent.
    """

    def test_quiet(self) -> None:
        """
        The pool builds L{QuietHTTP11ClientFactory}s, which do not log
        their start and stop.
        """
        pool = HTTPConnectionPool(Clock())
        self.assertIs(quietPool(pool), pool)
        self.assertIs(pool._factory, QuietHTTP11ClientFactory)
        self.assertFalse(QuietHTTP11ClientFactory.noisy)
        self.assertTrue(HTTPConnectionPool(Clock())._factory.noisy)
