"""
Tests for L{llamaswap.delayed}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.delayed import Deadline, cancelCall


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


class DeadlineTests(SynchronousTestCase):
    """
    L{Deadline}: exact expiry, one pending call however often it moves.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.expired: list[float] = []
        self.deadline = Deadline(self.clock, lambda: self.expired.append(self.clock.seconds()))

    def test_expires(self) -> None:
        """
        Started, it runs its callback once, exactly at the due time.
        """
        self.deadline.start(5)
        self.assertEqual(self.deadline.due, 5)
        self.clock.advance(4.5)
        self.assertEqual(self.expired, [])
        self.clock.advance(0.5)
        self.assertEqual(self.expired, [5])
        self.assertIsNone(self.deadline.due)
        self.clock.advance(100)
        self.assertEqual(self.expired, [5])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_movedLater(self) -> None:
        """
        Restarting moves the due time without adding calls: it runs once,
        at the last start plus the timeout.
        """
        for _ in range(10):
            self.clock.advance(1)
            self.deadline.start(5)
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(4.9)
        self.assertEqual(self.expired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.expired, [15])

    def test_movedSooner(self) -> None:
        """
        A shorter timeout than the pending call's brings the call forward.
        """
        self.deadline.start(30)
        self.clock.advance(1)
        self.deadline.start(2)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(2)
        self.assertEqual(self.expired, [3])

    def test_stopped(self) -> None:
        """
        Stopped, it never runs; its pending call lapses by itself; started
        again, it runs at the new due time.
        """
        self.deadline.start(5)
        self.clock.advance(1)
        self.deadline.stop()
        self.assertIsNone(self.deadline.due)
        self.clock.advance(10)
        self.assertEqual(self.expired, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.deadline.start(5)
        self.clock.advance(5)
        self.assertEqual(self.expired, [16])

    def test_stoppedAndRestartedBeforeTheCall(self) -> None:
        """
        A stop followed by a start before the pending call runs reuses
        that call.
        """
        self.deadline.start(5)
        self.clock.advance(1)
        self.deadline.stop()
        self.deadline.start(7)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(6.9)
        self.assertEqual(self.expired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.expired, [8])

    def test_closed(self) -> None:
        """
        Closed, its pending call is cancelled at once.
        """
        self.deadline.start(5)
        self.deadline.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.expired, [])

    def test_restartedByItsCallback(self) -> None:
        """
        The callback may start the deadline again.
        """
        deadline = Deadline(self.clock, lambda: (self.expired.append(self.clock.seconds()),
                                                 deadline.start(5)))
        deadline.start(5)
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual(self.expired, [5, 10])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
