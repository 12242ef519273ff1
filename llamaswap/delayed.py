# -*- test-case-name: test.test_delayed -*-
"""
Timers: L{cancelCall} stops a timer that may have fired or been cancelled
already; L{Deadline} is a timeout that is cheap to move.

Bottom level: every layer keeps optional L{IDelayedCall}s.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: How early (seconds) a re-checked deadline still counts as reached: the
#: rounding of C{due - now} added back to C{now}.
_SLACK = 1e-9


def cancelCall(call: IDelayedCall | None) -> None:
    """
    Cancel C{call} if it is still pending (a call that ran or was cancelled
    cannot be cancelled again).  Returns L{None}, for
    C{self._timer = cancelCall(self._timer)}.
    """
    if call is not None and call.active():
        call.cancel()
    return None


class Deadline:
    """
    A timeout that is restarted, stopped and started again far more often
    than it expires (a connection's header and body timeouts, a relay's
    idle timeout, moved by every request or chunk).

    Moving it only records the new due time: at most one L{IDelayedCall}
    is pending, and when it runs before the due time (the deadline moved
    later meanwhile) it re-arms itself for the rest.  So a busy keep-alive
    connection costs one C{callLater} per timeout period instead of a
    C{callLater}, C{reset} or C{cancel} per request, and the callback
    still runs exactly at the due time.

    @ivar due: when the callback runs (clock seconds), L{None} when stopped.
    """

    __slots__ = ("_clock", "_expired", "_call", "_callAt", "due")

    def __init__(self, clock: IReactorTime, expired: Callable[[], object]) -> None:
        self._clock = clock
        self._expired = expired
        self._call: IDelayedCall | None = None
        self._callAt = 0.0
        self.due: float | None = None

    def start(self, timeout: float) -> None:
        """
        Run the callback C{timeout} seconds from now unless moved again
        first (replaces any earlier due time).
        """
        due = self._clock.seconds() + timeout
        self.due = due
        if self._call is None:
            self._call = self._clock.callLater(timeout, self._check)
            self._callAt = due
        elif self._callAt > due:
            # Sooner than the pending call (a shorter timeout): bring it
            # forward; a later due time is handled when the call runs.
            self._call.reset(timeout)
            self._callAt = due

    def stop(self) -> None:
        """
        No due time until the next L{start}; a pending call is left to
        lapse (cheaper than cancelling it when a start follows soon).
        """
        self.due = None

    def close(self) -> None:
        """
        Stop for good: cancel the pending call too (its owner is going
        away, or will not start it again for a long time).
        """
        self.due = None
        self._call = cancelCall(self._call)

    def _check(self) -> None:
        self._call = None
        due = self.due
        if due is None:
            return
        now = self._clock.seconds()
        if due - now > _SLACK:
            self._call = self._clock.callLater(due - now, self._check)
            self._callAt = due
            return
        self.due = None
        self._expired()


__all__ = ["Deadline", "cancelCall"]
