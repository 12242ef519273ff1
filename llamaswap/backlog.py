# -*- test-case-name: test.test_backlog -*-
"""
Bookkeeping that waits for a quiet moment: the access-log line and the
activity row of a finished request.

A client that sends its next request as soon as a reply arrives would
otherwise wait for the previous request's bookkeeping, about a third of
the proxy's work per request.  Queued here, that work runs when the proxy
waits anyway: one job at a time while no socket has anything to handle
(L{Backlog.runWhileIdle}: once the reactor has handled the I/O that queued
it, and again after the next request was written to its upstream), before
a request that reads what it writes (the observability routes call
L{Backlog.settle} first), or L{DELAY} seconds after it was queued,
whichever comes first.

A long job can come in steps: a generator, which yields between them.
Each step is a job of its own, run before anything queued after the job,
so that a request arriving meanwhile waits for one step, not the whole.

Bottom level: used by observe/ and web/.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from types import GeneratorType
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .delayed import Deadline, cancelCall

log = Logger()

#: Seconds a queued job waits at most for a quiet moment.
DELAY = 0.001

#: How bookkeeping is handed over: C{later(job, *args)}.
Later = Callable[..., None]


def runNow(job: Callable[..., object], *args: Any) -> None:
    """
    Run C{job(*args)} at once, all its steps: the L{Later} of a part given
    no backlog.
    """
    steps = job(*args)
    if isinstance(steps, GeneratorType):
        for _ in steps:
            pass


class Backlog:
    """
    Jobs queued by L{later} and run, in order, by L{settle}; see the
    module docstring.
    """

    def __init__(
        self,
        clock: IReactorTime,
        delay: float = DELAY,
        ioWaiting: Callable[[], bool] | None = None,
    ) -> None:
        """
        @param ioWaiting: tells whether the reactor has I/O to handle
            (L{llamaswap.compat.ioWaiting}); without it, nothing is known
            to be idle and jobs wait for a settle or the delay.
        """
        self._clock = clock
        self._delay = delay
        self._ioWaiting = ioWaiting
        self._jobs: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._deadline = Deadline(clock, self.settle)
        self._soon: IDelayedCall | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._jobs)

    def later(self, job: Callable[..., object], *args: Any) -> None:
        """
        Run C{job(*args)} at the next L{settle}, at the latest C{delay}
        seconds from now (at once once L{close}d).
        """
        if self._closed:
            self._jobs.append((job, args))
            self.settle()
            return
        if not self._jobs:
            self._deadline.start(self._delay)
            if self._ioWaiting is not None and self._soon is None:
                # Once the reactor has handled the I/O at hand.
                self._soon = self._clock.callLater(0, self._idle)
        self._jobs.append((job, args))

    def _idle(self) -> None:
        self._soon = None
        self.runWhileIdle()

    def runWhileIdle(self) -> None:
        """
        Run queued jobs, one at a time, for as long as the reactor has no
        I/O to handle; without a way to tell, run them all.
        """
        waiting = self._ioWaiting
        if waiting is None:
            self.settle()
            return
        jobs = self._jobs
        while jobs and not waiting():
            job, args = jobs.popleft()
            self._run(job, args)
        if not jobs:
            self._deadline.stop()

    def settle(self) -> None:
        """
        Run every queued job now, those they queue included.
        """
        self._deadline.stop()
        jobs = self._jobs
        while jobs:
            job, args = jobs.popleft()
            self._run(job, args)

    def close(self) -> None:
        """
        Run what is queued and every later job at once (the service stops).
        """
        self._closed = True
        self.settle()
        self._deadline.close()
        self._soon = cancelCall(self._soon)

    def _run(self, job: Callable[..., object], args: tuple[Any, ...]) -> None:
        try:
            steps = job(*args)
        except Exception:
            log.failure("bookkeeping job {job!r} failed", job=job)
            return
        if isinstance(steps, GeneratorType):
            self._step(steps)

    def _step(self, steps: Iterator[object]) -> None:
        """
        Run the next step of a job in steps; the rest stays first in line.
        """
        try:
            next(steps)
        except StopIteration:
            return
        except Exception:
            log.failure("bookkeeping job {job!r} failed", job=steps)
            return
        self._jobs.appendleft((self._step, (steps,)))


__all__ = ["DELAY", "Backlog", "Later", "runNow"]
