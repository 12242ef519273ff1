"""
Tests for L{llamaswap.observe.lateservice}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.observe.lateservice import LateStartService


class Counting(LateStartService):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.started = 0

    def startLate(self) -> None:
        self.started += 1


class LateStartServiceTests(SynchronousTestCase):
    """
    L{LateStartService.startLate} runs on the clock's next turn, not
    during C{startService}, and not at all when stopped first.
    """

    def test_nextTurn(self) -> None:
        clock = Clock()
        service = Counting(clock)
        service.startService()
        self.assertEqual(service.started, 0)
        clock.advance(0)
        self.assertEqual(service.started, 1)
        service.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stoppedFirst(self) -> None:
        clock = Clock()
        service = Counting(clock)
        service.startService()
        service.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(1)
        self.assertEqual(service.started, 0)
