# -*- test-case-name: test.web.test_recovery -*-
"""
A request sent just after its model's server crashed is served, not
answered 502.

The server's socket closes when it dies; the supervisor learns of the exit
a moment later.  A request granted in between is refused a connection.
A refused connection to a model that was ready means the server is gone
(crashed, or alive but no longer listening): the relay leaves it
unanswered (C{deferRefused}), L{restartAfterRefusal} stops the server
(marking it failed; a hung one is killed), and the request waits for the
router to start it again, then is relayed once more.  The client sees a
slower answer, not the crash.

The first attempt's taps see no end of exchange (L{HoldEnd}): the
request's activity row is the retry's.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from .forward import FAILED, ForwardResult, Tap, isRefused

log = Logger()


def refusedUnanswered(result: ForwardResult | None) -> bool:
    """
    Whether C{result} is a refused connection the client was not answered
    for (a relay started with C{deferRefused}).
    """
    return (
        result is not None
        and result.outcome == FAILED
        and result.status is None
        and result.reason is not None
        and isRefused(result.reason)
    )


class HoldEnd:
    """
    Passes a relay's events to C{taps}, except the end of an exchange whose
    connection was refused: that is held (L{release} delivers it) so that a
    retry can still report to the same taps.
    """

    def __init__(self, taps: Iterable[Tap]) -> None:
        self.taps = list(taps)
        self.held: Failure | None = None
        self._started = False

    def responseStarted(self, status: int, headers: Headers) -> None:
        self._started = True
        for tap in self.taps:
            tap.responseStarted(status, headers)

    def dataReceived(self, data: bytes) -> None:
        for tap in self.taps:
            tap.dataReceived(data)

    def responseEnded(self, reason: Failure | None) -> None:
        if not self._started and reason is not None and isRefused(reason):
            self.held = reason
            return
        for tap in self.taps:
            tap.responseEnded(reason)

    def release(self) -> None:
        """
        Deliver a held end (no retry is coming).
        """
        held, self.held = self.held, None
        if held is not None:
            for tap in self.taps:
                tap.responseEnded(held)


async def restartAfterRefusal(lease: Any, acquire: Callable[[], Awaitable[Any]]) -> Any:
    """
    The model of C{lease} refused a connection while ready: release the
    lease, stop the model's server (it is dead, or hung without a
    listener), and wait for a new lease with C{acquire} (the router starts
    the model again).

    @return: the new lease.
    """
    supervisor = lease.supervisor
    log.warn(
        "model {model} refused a connection while ready; restarting it",
        model=lease.model,
    )
    lease.release()
    await supervisor.stop()
    return await acquire()


__all__ = ["HoldEnd", "refusedUnanswered", "restartAfterRefusal"]
