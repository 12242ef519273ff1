"""
Tests for L{llamaswap.idlespin}: the adaptive window, the spinning
iteration and the service that installs it on an epoll reactor.
"""

from __future__ import annotations

import socket

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.idlespin import IdleSpin, SpinningIteration, SpinWindow

#: A tick of the fake clock: a power of two, so that sums are exact.
STEP = 2.0**-16
LIMIT = 16 * STEP
START = 4 * STEP


class SpinWindowTests(SynchronousTestCase):
    """
    L{SpinWindow} follows halt polling's rule: grow on waits just missed,
    shrink on long ones, leave the window alone otherwise.
    """

    def setUp(self) -> None:
        self.window = SpinWindow(LIMIT, start=START)

    def test_startsClosed(self) -> None:
        """
        Nothing is spun for until a short wait was seen.
        """
        self.assertEqual(self.window.spinFor(None), 0.0)
        self.assertEqual(self.window.spinFor(1.0), 0.0)

    def test_growsOnShortWaits(self) -> None:
        """
        An I/O wait within the limit opens the window at C{start}, then
        doubles it, up to the limit.
        """
        sizes = []
        for _ in range(4):
            self.window.waited(12 * STEP, ready=True)
            sizes.append(self.window.current)
        self.assertEqual(sizes, [START, 8 * STEP, LIMIT, LIMIT])

    def test_shrinksOnLongWaits(self) -> None:
        """
        A wait longer than the limit (I/O or timer) halves the window; below
        C{start}, it closes.
        """
        self.window.current = LIMIT
        sizes = []
        for ready in (True, False, True):
            self.window.waited(0.003, ready=ready)
            sizes.append(self.window.current)
        self.assertEqual(sizes, [8 * STEP, START, 0.0])

    def test_shortTimerWait(self) -> None:
        """
        A timer due within the limit says nothing about the next I/O: the
        window stays as it is.
        """
        self.window.current = 8 * STEP
        self.window.waited(12 * STEP, ready=False)
        self.assertEqual(self.window.current, 8 * STEP)

    def test_boundedByTimeout(self) -> None:
        """
        No spinning past the reactor's next timer.
        """
        self.window.current = LIMIT
        self.assertEqual(self.window.spinFor(2 * STEP), 2 * STEP)
        self.assertEqual(self.window.spinFor(None), LIMIT)

    def test_defaultStart(self) -> None:
        """
        Without a C{start}, a quarter of the limit; never more than it.
        """
        self.assertEqual(SpinWindow(LIMIT).start, START)
        self.assertEqual(SpinWindow(8 * STEP, start=1.0).start, 8 * STEP)


class _Poller:
    """
    A fake reactor poll: ready after a number of looks, each look taking
    C{step} seconds of the fake clock; a blocking wait ends after
    C{blocksFor} seconds (or at its timeout), ready unless it timed out.
    """

    def __init__(self, readyAfter: int | None, blocksFor: float = 0.0) -> None:
        self.time = 100.0
        self.step = STEP
        self.readyAfter = readyAfter
        self.blocksFor = blocksFor
        self.looks = 0
        self.waits: list[float] = []
        self.iterations: list[float | None] = []
        self.yields = 0

    def now(self) -> float:
        return self.time

    def ready(self, timeout: float) -> bool:
        if timeout == 0:
            self.looks += 1
            self.time += self.step
            return self.readyAfter is not None and self.looks >= self.readyAfter
        self.waits.append(timeout)
        if 0 <= timeout < self.blocksFor:
            self.time += timeout
            return False
        self.time += self.blocksFor
        return True

    def yieldCPU(self) -> None:
        self.yields += 1

    def iteration(self, window: SpinWindow) -> SpinningIteration:
        return SpinningIteration(
            self.iterations.append, self.ready, window, self.now, self.yieldCPU
        )


class SpinningIterationTests(SynchronousTestCase):
    """
    L{SpinningIteration} polls for the window, then blocks, and always
    leaves the events to the reactor's own iteration.
    """

    def test_nothingToWaitFor(self) -> None:
        """
        A zero timeout (timers due, calls queued) goes straight to the
        reactor, without a look.
        """
        poller = _Poller(readyAfter=1)
        poller.iteration(_open())(0)
        self.assertEqual((poller.iterations, poller.looks), ([0], 0))

    def test_caughtWhileSpinning(self) -> None:
        """
        I/O ready during the window is handled at once: no blocking wait,
        the CPU offered to others between looks, the window unchanged.
        """
        poller = _Poller(readyAfter=3)
        window = _open()
        poller.iteration(window)(5.0)
        self.assertEqual(poller.iterations, [0])
        self.assertEqual((poller.looks, poller.yields, poller.waits), (3, 2, []))
        self.assertEqual(window.current, LIMIT)

    def test_missedThenReady(self) -> None:
        """
        I/O arriving after a closed window, within the limit, is waited for
        by blocking (the timeout left), and opens the window.
        """
        poller = _Poller(readyAfter=None, blocksFor=6 * STEP)
        window = SpinWindow(LIMIT, start=START)
        poller.iteration(window)(5.0)
        self.assertEqual(poller.looks, 0)
        self.assertEqual(poller.waits, [5.0])
        self.assertEqual(poller.iterations, [0])
        self.assertEqual(window.current, START)

    def test_spunThenSlept(self) -> None:
        """
        After the whole window the rest of the timeout is slept; a long
        idle wait shrinks the window.
        """
        poller = _Poller(readyAfter=None, blocksFor=1.0)
        window = _open()
        poller.iteration(window)(5.0)
        self.assertEqual(poller.looks, 16)
        [left] = poller.waits
        self.assertEqual(left, 5.0 - LIMIT)
        self.assertEqual(poller.iterations, [0])
        self.assertEqual(window.current, 8 * STEP)

    def test_noTimer(self) -> None:
        """
        With no timer due the blocking wait has no limit.
        """
        poller = _Poller(readyAfter=None, blocksFor=1.0)
        poller.iteration(SpinWindow(LIMIT))(None)
        self.assertEqual(poller.waits, [-1.0])

    def test_timerDue(self) -> None:
        """
        A timer due within the window ends the spinning at its time (one
        last look, no blocking); the reactor's iteration then runs it.
        """
        poller = _Poller(readyAfter=None, blocksFor=1.0)
        window = _open()
        poller.iteration(window)(8 * STEP)
        self.assertEqual((poller.looks, poller.waits), (9, []))
        self.assertEqual(poller.iterations, [0])
        self.assertEqual(window.current, LIMIT)


def _open() -> SpinWindow:
    window = SpinWindow(LIMIT, start=START)
    window.current = LIMIT
    return window


class IdleSpinTests(SynchronousTestCase):
    """
    L{IdleSpin} replaces an epoll reactor's iteration while it runs.
    """

    def _epollReactor(self):  # type: ignore[no-untyped-def]
        from twisted.internet.epollreactor import EPollReactor

        reactor = EPollReactor()
        self.addCleanup(reactor._poller.close)
        return reactor

    def test_installedWhileRunning(self) -> None:
        """
        Started, the reactor iterates through L{SpinningIteration}; stopped,
        through its own method again.
        """
        reactor = self._epollReactor()
        original = reactor.doIteration
        service = IdleSpin(reactor, LIMIT)
        service.startService()
        self.assertIsInstance(reactor.doIteration, SpinningIteration)
        self.assertEqual(reactor.doIteration.original, original)
        service.stopService()
        self.assertEqual(reactor.doIteration, original)

    def test_handlesReadyIO(self) -> None:
        """
        An iteration with bytes waiting reads them, through the reactor's
        own dispatch.
        """
        reactor = self._epollReactor()
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        reader = _Reader(ours)
        reactor.addReader(reader)
        self.addCleanup(reactor.removeReader, reader)
        service = IdleSpin(reactor, LIMIT)
        service.startService()
        self.addCleanup(service.stopService)
        theirs.send(b"hello")
        reactor.doIteration(5.0)
        self.assertEqual(reader.received, [b"hello"])

    def test_otherReactors(self) -> None:
        """
        A reactor whose poll is unknown, or a zero limit, is left alone.
        """
        memory = MemoryReactor()
        IdleSpin(memory, LIMIT).startService()
        self.assertNotIn("doIteration", vars(memory))
        reactor = self._epollReactor()
        original = reactor.doIteration
        service = IdleSpin(reactor, 0)
        service.startService()
        self.assertEqual(reactor.doIteration, original)
        service.stopService()
        self.assertEqual(reactor.doIteration, original)


class _Reader:
    """
    The least a reactor reader needs: a descriptor and C{doRead}.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received: list[bytes] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.received.append(self.sock.recv(100))

    def logPrefix(self) -> str:
        return "reader"

    def connectionLost(self, reason: object) -> None:
        pass
