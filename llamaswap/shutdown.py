# -*- test-case-name: test.test_shutdown -*-
"""
The order of a graceful shutdown (SIGTERM or SIGINT), as llama-swap does it:

 1. stop listening (no new connections);
 2. drain: let the requests in flight finish, up to C{--shutdown-timeout}
    seconds (L{DrainService} over a L{llamaswap.drain.RequestTracker});
 3. stop every upstream (L{llamaswap.app.LlamaSwap.stopService});
 4. exit with status 0.

L{OrderedShutdown} stops its children one after another, last added first
(twisted's C{MultiService} stops them all at once).  L{GracefulExit} takes
SIGTERM and SIGINT over from twistd once the reactor runs: twistd would
re-raise the signal on itself after the shutdown, so the process would end
"killed by SIGTERM" instead of exiting 0; and a second signal during the
shutdown is ignored (logged) instead of raising C{ReactorNotRunning}.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any, Callable, Iterable

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python.failure import Failure

from .drain import RequestTracker

#: The default of C{--shutdown-timeout}: llama-swap's 30 s budget.
DEFAULT_SHUTDOWN_TIMEOUT = 30.0


class OrderedShutdown(MultiService):
    """
    A C{MultiService} whose children start in the order they were added
    and stop one after another in the reverse order, each once the one
    before has finished stopping.
    """

    log = Logger()

    def stopService(self) -> Deferred[None]:
        """
        Stop the children in reverse order, sequentially; a failure is
        logged and does not keep the next from stopping.
        """
        Service.stopService(self)
        d: Deferred[Any] = succeed(None)
        for child in reversed(list(self)):
            d.addCallback(lambda _, child=child: maybeDeferred(child.stopService))
            d.addErrback(self._failed, child)
        return d.addCallback(lambda _: None)

    def _failed(self, failure: Failure, child: Any) -> None:
        self.log.failure("stopping {service} failed", failure, service=child)


class DrainService(Service):
    """
    On stop, drains the tracker's requests (see
    L{RequestTracker.drain}).
    """

    log = Logger()

    def __init__(self, tracker: RequestTracker, timeout: float) -> None:
        self.tracker = tracker
        self.timeout = timeout

    def stopService(self) -> Deferred[None]:
        """
        Wait for the requests in flight, at most C{timeout} seconds.
        """
        super().stopService()
        d = self.tracker.drain(self.timeout)

        def done(cut: int) -> None:
            self.log.info("HTTP requests drained ({cut} cut off)", cut=cut)

        return d.addCallback(done)


SignalInstaller = Callable[[int, Any], Any]


class GracefulExit(Service):
    """
    Once the reactor runs, handle C{signals} by stopping the reactor once
    (a graceful shutdown that exits 0); later ones are ignored.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT),
        installer: SignalInstaller = signal.signal,
    ) -> None:
        self._reactor = reactor
        self._signals = tuple(signals)
        self._installer = installer
        self.stopping = False

    def startService(self) -> None:
        """
        Install the handlers once the reactor runs (after twistd's own).
        """
        super().startService()
        self._reactor.callWhenRunning(self._install)

    def _install(self) -> None:
        for sig in self._signals:
            self._installer(sig, self._received)

    def stopService(self) -> None:
        """
        A shutdown is under way (whatever started it): ignore signals.
        """
        super().stopService()
        self.stopping = True

    def _received(self, number: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self.requestShutdown, number)

    def requestShutdown(self, number: int) -> None:
        """
        Signal C{number} arrived: start the shutdown, or ignore it if one
        is under way.
        """
        name = signal.Signals(number).name
        if self.stopping:
            self.log.info("received {signal} again; already shutting down", signal=name)
            return
        self.stopping = True
        self.log.info("received {signal}, shutting down", signal=name)
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            pass


__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DrainService",
    "GracefulExit",
    "OrderedShutdown",
]
