"""
Tests for L{llamaswap.backlog}: bookkeeping waits for a quiet moment, but
never long, never out of order, and none is lost.
"""

from __future__ import annotations

from collections.abc import Iterator

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


class WhileIdleTests(SynchronousTestCase):
    """
    With a way to tell whether the reactor has I/O to handle, queued jobs
    run one by one while it has none: once the I/O at hand is handled, and
    whenever L{Backlog.runWhileIdle} is called.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.busy = False
        self.backlog = Backlog(self.clock, delay=1.0, ioWaiting=lambda: self.busy)
        self.ran: list[object] = []

    def test_runsOnceTheTurnEnds(self) -> None:
        """
        Jobs queued while the reactor handles I/O run at its next turn
        (a zero-delay call), not while they are being queued.
        """
        self.backlog.later(self.ran.append, 1)
        self.backlog.later(self.ran.append, 2)
        self.assertEqual(self.ran, [])
        self.clock.advance(0)
        self.assertEqual(self.ran, [1, 2])
        self.assertEqual(len(self.backlog), 0)
        self.clock.advance(1.0)
        self.assertEqual(self.ran, [1, 2])

    def test_stopsWhenIOWaits(self) -> None:
        """
        Between two jobs the backlog checks for I/O: once some waits, the
        rest waits for the next idle moment, or the delay.
        """

        def first() -> None:
            self.ran.append("first")
            self.busy = True  # a request came in meanwhile

        self.backlog.later(first)
        self.backlog.later(self.ran.append, "second")
        self.backlog.later(self.ran.append, "third")
        self.clock.advance(0)
        self.assertEqual(self.ran, ["first"])
        self.backlog.runWhileIdle()
        self.assertEqual(self.ran, ["first"])
        self.busy = False
        self.backlog.runWhileIdle()
        self.assertEqual(self.ran, ["first", "second", "third"])

    def test_delayStillBounds(self) -> None:
        """
        A reactor that never idles does not keep jobs waiting longer than
        the delay.
        """
        self.busy = True
        self.backlog.later(self.ran.append, 1)
        self.clock.advance(0)
        self.assertEqual(self.ran, [])
        self.clock.advance(1.0)
        self.assertEqual(self.ran, [1])

    def test_oneCallPerBatch(self) -> None:
        """
        One zero-delay call serves every job queued before it runs; jobs
        queued after it get the next.
        """
        self.backlog.later(self.ran.append, 1)
        self.backlog.later(self.ran.append, 2)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)  # the turn, the delay
        self.clock.advance(0)
        self.backlog.later(self.ran.append, 3)
        self.clock.advance(0)
        self.assertEqual(self.ran, [1, 2, 3])

    def test_withoutAWayToTell(self) -> None:
        """
        Without an I/O check, L{Backlog.runWhileIdle} runs every job.
        """
        backlog = Backlog(self.clock, delay=1.0)
        backlog.later(self.ran.append, 1)
        backlog.later(self.ran.append, 2)
        backlog.runWhileIdle()
        self.assertEqual(self.ran, [1, 2])

    def test_closeCancelsTheTurn(self) -> None:
        """
        Closing runs the jobs and leaves no call behind.
        """
        self.backlog.later(self.ran.append, 1)
        self.backlog.close()
        self.assertEqual(self.ran, [1])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class StepsTests(SynchronousTestCase):
    """
    A job that is a generator runs in steps: each step is a job of its
    own, before anything queued after the job, and a reactor with I/O to
    handle waits for one step, not the whole job.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.busy = False
        self.backlog = Backlog(self.clock, delay=1.0, ioWaiting=lambda: self.busy)
        self.ran: list[object] = []

    def steps(self, name: str, count: int) -> Iterator[None]:
        for i in range(count):
            self.ran.append((name, i))
            if i == 0:
                # The first step's I/O check comes after it.
                self.busy = self.busyAfterFirst
            yield

    busyAfterFirst = False

    def test_settleRunsEveryStep(self) -> None:
        """
        L{Backlog.settle} runs all steps of a job before the next job.
        """
        self.backlog.later(self.steps, "a", 3)
        self.backlog.later(self.ran.append, "next")
        self.backlog.settle()
        self.assertEqual(self.ran, [("a", 0), ("a", 1), ("a", 2), "next"])
        self.assertEqual(len(self.backlog), 0)

    def test_whileIdleStopsBetweenSteps(self) -> None:
        """
        I/O that arrives during a step keeps the next step waiting; it
        still runs before the jobs queued after it.
        """
        self.busyAfterFirst = True
        self.backlog.later(self.steps, "a", 3)
        self.backlog.later(self.ran.append, "next")
        self.clock.advance(0)
        self.assertEqual(self.ran, [("a", 0)])
        self.busy = False
        self.backlog.runWhileIdle()
        self.assertEqual(self.ran, [("a", 0), ("a", 1), ("a", 2), "next"])

    def test_delayBoundsTheSteps(self) -> None:
        """
        A job left between steps is finished by the delay.
        """
        self.busyAfterFirst = True
        self.backlog.later(self.steps, "a", 2)
        self.clock.advance(0)
        self.assertEqual(self.ran, [("a", 0)])
        self.clock.advance(1.0)
        self.assertEqual(self.ran, [("a", 0), ("a", 1)])

    def test_failingStep(self) -> None:
        """
        A step that raises is logged and ends its job; the jobs after it
        still run.
        """

        def failing() -> Iterator[None]:
            self.ran.append("before")
            yield
            raise ValueError("step")

        self.backlog.later(failing)
        self.backlog.later(self.ran.append, "next")
        self.backlog.settle()
        self.assertEqual(self.ran, ["before", "next"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_runNowAndClosed(self) -> None:
        """
        L{runNow} and a closed backlog run every step at once.
        """
        runNow(self.steps, "now", 2)
        self.backlog.close()
        self.backlog.later(self.steps, "closed", 2)
        self.assertEqual(self.ran, [("now", 0), ("now", 1), ("closed", 0), ("closed", 1)])
