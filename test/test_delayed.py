"""
Tests for L{llamaswap.delayed}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.delayed import cancelCall


class CancelCallTests(SynchronousTestCase):
    def test_pending(self) -> None:
        """
        A pending call is cancelled and never runs.
        """
        clock = Clock()
        ran: list[bool] = []
        call = clock.callLater(1, ran.append, True)
        self.assertIsNone(cancelCall(call))
        self.assertFalse(call.active())
        clock.advance(2)
        self.assertEqual(ran, [])

    def test_alreadyDone(self) -> None:
        """
        A call that ran, one already cancelled and L{None} are left alone
        (no L{AlreadyCalled} or L{AlreadyCancelled}).
        """
        clock = Clock()
        ran = clock.callLater(1, lambda: None)
        clock.advance(1)
        cancelled = clock.callLater(1, lambda: None)
        cancelled.cancel()
        for call in (ran, cancelled, None):
            self.assertIsNone(cancelCall(call))
