"""
Tests for L{llamaswap.backlog}: bookkeeping waits for a quiet moment, but
never long, never out of order, and none is lost.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.backlog import DELAY, Backlog, runNow


class BacklogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.backlog = Backlog(self.clock, delay=1.0)
        self.ran: list[object] = []

    def test_waitsForSettle(self) -> None:
        """
        A queued job runs at the next L{Backlog.settle}, in the order jobs
        were queued, with their arguments; a second settle runs nothing.
        """
        self.backlog.later(self.ran.append, 1)
        self.backlog.later(self.ran.extend, (2, 3))
        self.assertEqual(self.ran, [])
        self.assertEqual(len(self.backlog), 2)
        self.backlog.settle()
        self.assertEqual(self.ran, [1, 2, 3])
        self.assertEqual(len(self.backlog), 0)
        self.backlog.settle()
        self.assertEqual(self.ran, [1, 2, 3])

    def test_runsAfterDelay(self) -> None:
        """
        Without a settle, jobs run C{delay} seconds after the first of them
        was queued: a later one does not push that back.
        """
        self.backlog.later(self.ran.append, "first")
        self.clock.advance(0.5)
        self.backlog.later(self.ran.append, "second")
        self.clock.advance(0.25)
        self.assertEqual(self.ran, [])
        self.clock.advance(0.25)
        self.assertEqual(self.ran, ["first", "second"])

    def test_defaultDelay(self) -> None:
        """
        By default a job waits at most L{DELAY} seconds, a millisecond.
        """
        backlog = Backlog(self.clock)
        backlog.later(self.ran.append, 1)
        self.clock.advance(DELAY / 2)
        self.assertEqual(self.ran, [])
        self.clock.advance(DELAY)
        self.assertEqual(self.ran, [1])
        self.assertEqual(DELAY, 0.001)

    def test_delayCountsFromQueueing(self) -> None:
        """
        After a settle, the next job gets its own full delay even though
        the timer of the settled ones is still pending.
        """
        self.backlog.later(self.ran.append, 1)
        self.clock.advance(0.5)
        self.backlog.settle()
        self.backlog.later(self.ran.append, 2)
        self.clock.advance(0.5)
        self.assertEqual(self.ran, [1])
        self.clock.advance(0.5)
        self.assertEqual(self.ran, [1, 2])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_jobsQueuedWhileSettling(self) -> None:
        """
        A job queued by a running job runs in the same settle, after it.
        """

        def first() -> None:
            self.ran.append("first")
            self.backlog.later(self.ran.append, "queued by first")

        self.backlog.later(first)
        self.backlog.later(self.ran.append, "second")
        self.backlog.settle()
        self.assertEqual(self.ran, ["first", "second", "queued by first"])

    def test_failingJob(self) -> None:
        """
        A job that raises is logged; the jobs after it still run.
        """
        self.backlog.later(lambda: 1 / 0)
        self.backlog.later(self.ran.append, "after")
        self.backlog.settle()
        self.assertEqual(self.ran, ["after"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_close(self) -> None:
        """
        Closing runs what is queued, leaves no timer, and every job queued
        afterwards runs at once.
        """
        self.backlog.later(self.ran.append, 1)
        self.backlog.close()
        self.assertEqual(self.ran, [1])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.backlog.later(self.ran.append, 2)
        self.assertEqual(self.ran, [1, 2])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_runNow(self) -> None:
        """
        L{runNow}, what a part given no backlog uses, runs the job at once.
        """
        runNow(self.ran.append, 1)
        self.assertEqual(self.ran, [1])
