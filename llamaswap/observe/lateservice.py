# -*- test-case-name: test.observe.test_lateservice -*-
"""
L{LateStartService}: a service whose start-up work waits for the reactor.

C{startService} runs before the reactor does (twistd starts services
first), so work that needs the reactor running (commands, timers that
should not fire during start-up) is scheduled for its first turn instead,
and cancelled if the service stops before then.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime


class LateStartService(Service):
    """
    Calls L{startLate} on the first turn of C{clock} after starting.

    @ivar clock: set by the subclass.
    """

    clock: IReactorTime
    _starting: IDelayedCall | None = None

    def startService(self) -> None:
        super().startService()
        self._starting = self.clock.callLater(0, self.startLate)

    def stopService(self) -> None:
        super().stopService()
        starting, self._starting = self._starting, None
        if starting is not None and starting.active():
            starting.cancel()

    def startLate(self) -> object:
        """
        The start-up work; subclasses override it.
        """
        raise NotImplementedError()


__all__ = ["LateStartService"]
