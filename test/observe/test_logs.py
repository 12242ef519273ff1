"""
Tests for L{llamaswap.observe.logs}: rings, monitors and slow subscribers.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.observe.logs import (
    RING_BYTES,
    Monitor,
    Ring,
    countLines,
    dropMarker,
)


class RingTests(SynchronousTestCase):
    """
    L{Ring} keeps the last bytes written, whole writes where possible.
    """

    def test_default(self) -> None:
        """
        The default capacity is llama-swap's 100 KiB, and nothing is kept
        before the first write.
        """
        ring = Ring()
        self.assertEqual(ring.capacity, 102400)
        self.assertEqual(RING_BYTES, 102400)
        self.assertEqual((len(ring), ring.contents()), (0, b""))

    def test_bounded(self) -> None:
        """
        Writing far more than the capacity keeps at most the capacity: the
        newest lines, oldest ones dropped whole.
        """
        ring = Ring()
        for i in range(20000):
            ring.append(b"line %06d\n" % (i,))
        contents = ring.contents()
        self.assertLessEqual(len(contents), 102400)
        self.assertGreater(len(contents), 102400 - 12)
        self.assertTrue(contents.endswith(b"line 019999\n"))
        self.assertTrue(contents.startswith(b"line "))

    def test_hugeWrite(self) -> None:
        """
        A single write larger than the ring keeps only its tail.
        """
        ring = Ring(10)
        ring.append(b"abc")
        ring.append(b"0123456789ABCDEF")
        self.assertEqual(ring.contents(), b"6789ABCDEF")
        ring.append(b"x")
        self.assertEqual(ring.contents(), b"x")

    @given(st.lists(st.binary(max_size=40), max_size=60), st.integers(1, 100))
    def test_suffix(self, writes: list[bytes], capacity: int) -> None:
        """
        The contents are always a suffix of everything written, at most the
        capacity, and include the whole last write when it fits.
        """
        ring = Ring(capacity)
        for w in writes:
            ring.append(w)
        everything = b"".join(writes)
        contents = ring.contents()
        self.assertTrue(everything.endswith(contents))
        self.assertLessEqual(len(contents), capacity)
        self.assertEqual(len(ring), len(contents))
        nonEmpty = [w for w in writes if w]
        if nonEmpty:
            self.assertTrue(contents.endswith(nonEmpty[-1][-capacity:]))


class MonitorTests(SynchronousTestCase):
    """
    L{Monitor} records, forwards and fans out writes.
    """

    def test_historyAndForward(self) -> None:
        """
        A write lands in the monitor's history and in every sink's.
        """
        model, upstream = Monitor("m"), Monitor("upstream")
        model.forwardTo(upstream)
        model.write(b"a\n")
        upstream.write(b"b\n")
        self.assertEqual(model.history(), b"a\n")
        self.assertEqual(upstream.history(), b"a\nb\n")

    def test_subscribers(self) -> None:
        """
        Every subscriber gets each later write; a cancelled one no more.
        """
        monitor = Monitor("m")
        monitor.write(b"before\n")
        one: list[bytes] = []
        two: list[bytes] = []
        s1 = monitor.subscribe(one.append)
        monitor.subscribe(two.append)
        monitor.write(b"x\n")
        s1.cancel()
        monitor.write(b"y\n")
        self.assertEqual(one, [b"x\n"])
        self.assertEqual(two, [b"x\n", b"y\n"])
        self.assertEqual(len(monitor.subscriptions), 1)

    def test_failingSubscriber(self) -> None:
        """
        A subscriber that raises is logged and dropped; the writer and the
        other subscribers carry on.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        monitor = Monitor("m")

        def broken(data: bytes) -> None:
            raise ValueError("nope")

        good: list[bytes] = []
        monitor.subscribe(broken)
        monitor.subscribe(good.append)
        monitor.write(b"x\n")
        monitor.write(b"y\n")
        self.assertEqual(good, [b"x\n", b"y\n"])
        self.assertEqual(len(monitor.subscriptions), 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(events[0]["log_level"], LogLevel.critical)

    def test_closeSubscriptions(self) -> None:
        """
        Closing tells each subscriber (once) and stops delivery.
        """
        monitor = Monitor("m")
        got: list[bytes] = []
        closed: list[bool] = []
        subscription = monitor.subscribe(got.append, onClose=lambda: closed.append(True))
        monitor.closeSubscriptions()
        subscription.close()
        monitor.write(b"x\n")
        self.assertEqual((got, closed, subscription.active), ([], [True], False))


class SlowSubscriberTests(SynchronousTestCase):
    """
    A paused subscription queues a bounded amount, then drops and says so.
    """

    def test_pauseQueuesThenResumeDelivers(self) -> None:
        """
        Writes made while paused arrive in order on resume.
        """
        monitor = Monitor("m")
        got: list[bytes] = []
        subscription = monitor.subscribe(got.append)
        subscription.pause()
        monitor.write(b"a\n")
        monitor.write(b"b\n")
        self.assertEqual((got, subscription.queuedBytes), ([], 4))
        subscription.resume()
        monitor.write(b"c\n")
        self.assertEqual(got, [b"a\n", b"b\n", b"c\n"])
        self.assertEqual(subscription.queuedBytes, 0)

    def test_overflowDropsAndCounts(self) -> None:
        """
        Past the budget whole writes are dropped; on resume the queued ones
        come first, then the marker with the number of lines lost; the
        writer's history is complete regardless.
        """
        monitor = Monitor("m")
        got: list[bytes] = []
        subscription = monitor.subscribe(got.append, maxQueued=10)
        subscription.pause()
        for i in range(5):
            monitor.write(b"%d---\n" % (i,))
        monitor.write(b"two\nlines\n")
        self.assertLessEqual(subscription.queuedBytes, 10)
        self.assertEqual(subscription.droppedLines, 5)
        subscription.resume()
        self.assertEqual(got, [b"0---\n", b"1---\n", b"[llamaswap: 5 lines dropped]\n"])
        monitor.write(b"next\n")
        self.assertEqual(got[-1], b"next\n")
        self.assertEqual(subscription.totalDropped, 5)
        self.assertEqual(subscription.droppedLines, 0)
        self.assertIn(b"two\nlines\n", monitor.history())

    def test_pausedAgainDuringResume(self) -> None:
        """
        A consumer that pauses while the queue is being delivered keeps the
        rest queued until the next resume.
        """
        monitor = Monitor("m")
        got: list[bytes] = []

        def deliver(data: bytes) -> None:
            got.append(data)
            subscription.pause()

        subscription = monitor.subscribe(deliver)
        subscription.pause()
        monitor.write(b"a\n")
        monitor.write(b"b\n")
        subscription.resume()
        self.assertEqual(got, [b"a\n"])
        subscription.resume()
        self.assertEqual(got, [b"a\n", b"b\n"])

    def test_neverBlocksWriter(self) -> None:
        """
        A subscriber that never resumes costs the writer nothing beyond its
        budget: a million lines later its queue is still bounded.
        """
        monitor = Monitor("m")
        subscription = monitor.subscribe(lambda data: None, maxQueued=4096)
        subscription.pause()
        line = b"x" * 99 + b"\n"
        for _ in range(100000):
            monitor.write(line)
        self.assertLessEqual(subscription.queuedBytes, 4096)
        self.assertEqual(subscription.droppedLines, 100000 - 40)

    def test_helpers(self) -> None:
        """
        Lines are counted by newline, a partial line counts as one.
        """
        self.assertEqual(countLines(b"a\nb\n"), 2)
        self.assertEqual(countLines(b"a\nb"), 2)
        self.assertEqual(countLines(b"a"), 1)
        self.assertEqual(dropMarker(3), b"[llamaswap: 3 lines dropped]\n")
