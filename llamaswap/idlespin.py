# -*- test-case-name: test.test_idlespin -*-
"""
Watch the sockets for a moment before the reactor sleeps.

A process that blocks in C{epoll_wait} with nothing else to run lets its
CPU idle; waking it when bytes arrive then costs tens of microseconds (a
halted virtual CPU, a deep C-state), measured 60-70 us per wake on the
development VM.  A request relayed at concurrency 1 pays that wake twice:
for the upstream's reply and for the client's next request, both usually
due a few dozen microseconds after the proxy ran out of work.

So before it sleeps the reactor polls without blocking for up to a short,
adaptive window (L{SpinWindow}: Linux's halt-polling rule), yielding the
CPU between polls to any other process that wants it.  Waits that end
within the limit grow the window; longer waits (an idle proxy, an upstream
still generating) shrink it to nothing, so an idle proxy does not spin.

Bottom level: the reactor's poll comes from L{llamaswap.compat}.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service

from .compat import reactorPoll

#: Wait until a descriptor is ready or C{timeout} seconds passed (zero:
#: just look, negative: no limit), leaving the events to the reactor:
#: whether one is ready.
Ready = Callable[[float], bool]


class SpinWindow:
    """
    How long to poll before sleeping, adapted after every wait as Linux's
    halt polling does: a wait the window caught changes nothing, a wait
    that ended within C{limit} after the window doubles it, a wait longer
    than C{limit} halves it (below C{start}: none at all).

    @ivar current: the window, in seconds.
    """

    def __init__(self, limit: float, start: float | None = None) -> None:
        self.limit = limit
        self.start = min(limit, start if start is not None else limit / 4)
        self.current = 0.0

    def spinFor(self, timeout: float | None) -> float:
        """
        Seconds to poll before blocking, given the reactor's C{timeout}
        (L{None}: no timer due).
        """
        if timeout is None:
            return self.current
        return min(self.current, timeout)

    def waited(self, seconds: float, ready: bool) -> None:
        """
        A wait not caught by the window ended after C{seconds} in all:
        with I/O ready, or (C{ready} false) for a timer, which says only
        that nothing arrived meanwhile.
        """
        if seconds > self.limit:
            self.current /= 2
            if self.current < self.start:
                self.current = 0.0
        elif ready:
            self.current = min(self.limit, max(self.current * 2, self.start))


class SpinningIteration:
    """
    A reactor's C{doIteration} that polls for L{SpinWindow.spinFor} before
    blocking.  Whatever ends the wait, the original iteration then runs
    with a zero timeout to handle it as usual.
    """

    def __init__(
        self,
        iterate: Callable[[float | None], None],
        ready: Ready,
        window: SpinWindow,
        now: Callable[[], float] = time.perf_counter,
        yieldCPU: Callable[[], None] = os.sched_yield,
    ) -> None:
        self.original = iterate
        self._ready = ready
        self._window = window
        self._now = now
        self._yield = yieldCPU

    def __call__(self, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            self.original(timeout)
            return
        now = self._now
        began = now()
        end = began + self._window.spinFor(timeout)
        ready = self._ready
        while now() < end:
            if ready(0):
                self.original(0)
                return
            self._yield()
        left = -1.0 if timeout is None else max(0.0, began + timeout - now())
        found = ready(left)
        self._window.waited(now() - began, found)
        self.original(0)


class IdleSpin(Service):
    """
    While running, the reactor spins for up to C{limit} seconds before it
    sleeps (see the module docstring); nothing for a reactor whose poll is
    unknown (not epoll) or a zero C{limit}.
    """

    def __init__(self, reactor: Any, limit: float) -> None:
        self._reactor = reactor
        self.limit = limit
        self.iteration: SpinningIteration | None = None

    def startService(self) -> None:
        super().startService()
        ready = reactorPoll(self._reactor)
        if ready is None or self.limit <= 0:
            return
        self.iteration = SpinningIteration(
            self._reactor.doIteration, ready, SpinWindow(self.limit)
        )
        self._reactor.doIteration = self.iteration

    def stopService(self) -> None:
        if self.iteration is not None:
            self._reactor.doIteration = self.iteration.original
            self.iteration = None
        super().stopService()
