# -*- test-case-name: test.observe.test_logs -*-
"""
Log monitors: a bounded history of recent log bytes plus live fan-out to
subscribers that may be slow.

A L{Monitor} keeps the last L{RING_BYTES} of what was written to it in a
L{Ring} and hands every write to its L{Subscription}s and to the monitors
it forwards to.  Writers never wait: a subscription that cannot deliver
(its consumer paused it, e.g. a log-stream client that stopped reading)
queues up to a byte budget and then drops whole chunks, counting the
lines, and tells its consumer how many were lost
(C{[llamaswap: N lines dropped]}) as soon as it can deliver again.  So an
upstream's output pipe keeps draining however stuck a reader is, and
memory per reader is bounded.

Pure: no reactor, no clock, no I/O; the HTTP side
(L{llamaswap.web.logs}) pauses and resumes subscriptions from a
request's producer state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from attrs import define, field
from twisted.logger import Logger

#: History kept per monitor (llama-swap's 100 KiB).
RING_BYTES = 100 * 1024
#: What a paused subscriber may have queued before lines are dropped.
SUBSCRIBER_BYTES = 256 * 1024

Deliver = Callable[[bytes], None]


def dropMarker(lines: int) -> bytes:
    """
    The line a subscriber gets in place of C{lines} lines it lost.
    """
    return b"[llamaswap: %d lines dropped]\n" % (lines,)


def countLines(data: bytes) -> int:
    """
    How many lines C{data} holds (a partial line counts as one).
    """
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


class Ring:
    """
    The last C{capacity} bytes written, kept as whole writes: the oldest
    writes are discarded first, and a single write larger than the whole
    ring keeps only its tail.  Nothing is allocated before the first write.
    """

    def __init__(self, capacity: int = RING_BYTES) -> None:
        self.capacity = capacity
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes) -> None:
        """
        Add C{data}, discarding the oldest writes to stay within capacity.
        """
        if not data:
            return
        if len(data) >= self.capacity:
            self._chunks.clear()
            data = data[-self.capacity :]
            self._size = 0
        self._chunks.append(data)
        self._size += len(data)
        while self._size > self.capacity:
            self._size -= len(self._chunks.popleft())

    def contents(self) -> bytes:
        """
        Everything kept, oldest first.
        """
        return b"".join(self._chunks)

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0


@define(eq=False, slots=False)
class Subscription:
    """
    One consumer of a L{Monitor}'s writes.

    While running, each write is passed to C{deliver} at once.  While
    paused, writes are queued up to C{maxQueued} bytes; beyond that whole
    writes are dropped and their lines counted.  On L{resume} the queue is
    delivered, then the drop marker if anything was lost.

    @ivar paused: whether delivery is held back.
    @ivar queuedBytes: bytes waiting for L{resume}.
    @ivar droppedLines: lines lost since the last marker was delivered.
    @ivar totalDropped: lines lost over the subscription's life.
    @ivar active: false once cancelled.
    @ivar deliver: where writes go.
    """

    log = Logger()

    monitor: Monitor
    deliver: Deliver
    maxQueued: int = SUBSCRIBER_BYTES
    _onClose: Callable[[], None] | None = None
    _queue: deque[bytes] = field(factory=deque, init=False)
    queuedBytes: int = field(default=0, init=False)
    paused: bool = field(default=False, init=False)
    droppedLines: int = field(default=0, init=False)
    totalDropped: int = field(default=0, init=False)
    active: bool = field(default=True, init=False)

    def offer(self, data: bytes) -> None:
        """
        A write of the monitor: deliver, queue or drop it.
        """
        if not self.active:
            return
        if not self.paused and not self._queue:
            if self.droppedLines:
                self._send(dropMarker(self.droppedLines))
                self.droppedLines = 0
                if self.paused or not self.active:
                    self._enqueue(data)
                    return
            self._send(data)
            return
        self._enqueue(data)

    def _enqueue(self, data: bytes) -> None:
        if self.queuedBytes + len(data) > self.maxQueued:
            lines = countLines(data)
            self.droppedLines += lines
            self.totalDropped += lines
            return
        self._queue.append(data)
        self.queuedBytes += len(data)

    def _send(self, data: bytes) -> None:
        try:
            self.deliver(data)
        except Exception:
            self.log.failure("log subscriber of {monitor} failed", monitor=self.monitor.name)
            self.cancel()

    def pause(self) -> None:
        """
        Hold writes back (the consumer cannot take more now).
        """
        self.paused = True

    def resume(self) -> None:
        """
        Deliver what was queued (until paused again), then the drop marker.
        """
        self.paused = False
        while self._queue and not self.paused and self.active:
            data = self._queue.popleft()
            self.queuedBytes -= len(data)
            self._send(data)
        if not self._queue and not self.paused and self.active and self.droppedLines:
            lines, self.droppedLines = self.droppedLines, 0
            self._send(dropMarker(lines))

    def cancel(self) -> None:
        """
        Stop receiving writes and forget anything queued.
        """
        if not self.active:
            return
        self.active = False
        self._queue.clear()
        self.queuedBytes = 0
        self.monitor._unsubscribe(self)

    def close(self) -> None:
        """
        End the subscription from the monitor's side (shutdown): cancel it
        and tell the consumer.
        """
        if not self.active:
            return
        self.cancel()
        if self._onClose is not None:
            onClose, self._onClose = self._onClose, None
            onClose()


class Monitor:
    """
    A named log: a L{Ring} of its history, live subscribers, and other
    monitors every write is forwarded to.

    @ivar name: what it is called (C{proxy}, C{upstream}, a model ID, ...).
    @ivar ring: its history.
    """

    def __init__(self, name: str, capacity: int = RING_BYTES) -> None:
        self.name = name
        self.ring = Ring(capacity)
        self._subscriptions: list[Subscription] = []
        self._sinks: list[Monitor] = []

    def __repr__(self) -> str:
        return f"<Monitor {self.name!r}>"

    def write(self, data: bytes) -> None:
        """
        Record C{data} and pass it on; never blocks, never raises for a
        failing subscriber.
        """
        if not data:
            return
        self.ring.append(data)
        for subscription in list(self._subscriptions):
            subscription.offer(data)
        for sink in self._sinks:
            sink.write(data)

    def history(self) -> bytes:
        """
        The kept history, oldest first.
        """
        return self.ring.contents()

    def forwardTo(self, sink: Monitor) -> None:
        """
        Also write everything written here to C{sink}.
        """
        self._sinks.append(sink)

    def subscribe(
        self,
        deliver: Deliver,
        *,
        maxQueued: int = SUBSCRIBER_BYTES,
        onClose: Callable[[], None] | None = None,
    ) -> Subscription:
        """
        Pass every later write to C{deliver} (see L{Subscription}).

        @param onClose: called if the monitor ends the subscription
            (L{closeSubscriptions}, at shutdown).
        """
        subscription = Subscription(self, deliver, maxQueued, onClose)
        self._subscriptions.append(subscription)
        return subscription

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def closeSubscriptions(self) -> None:
        """
        End every subscription (their consumers are told).
        """
        for subscription in list(self._subscriptions):
            subscription.close()


def closeAll(monitors: Iterable[Monitor]) -> None:
    """
    End the subscriptions of every monitor in C{monitors}.
    """
    for monitor in monitors:
        monitor.closeSubscriptions()


__all__ = [
    "RING_BYTES",
    "SUBSCRIBER_BYTES",
    "Monitor",
    "Ring",
    "Subscription",
    "closeAll",
    "countLines",
    "dropMarker",
]
