# -*- test-case-name: test.test_reloadsignal -*-
"""
SIGHUP reloads the configuration; it never ends the process.

twistd leaves SIGHUP at the operating system's default, which terminates
the process: C{kill -HUP} (what C{systemctl reload} and most process
managers send) would stop llamaswap and every upstream.
L{installReloadSignal} makes SIGHUP call a function in the reactor thread
instead, with or without C{--watch-config}.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from .shutdown import SignalInstaller

log = Logger()

#: SIGHUP where the platform has it (not on Windows).
SIGHUP: int | None = getattr(signal, "SIGHUP", None)


def installReloadSignal(
    reactor: Any,
    callback: Callable[[], Any],
    installer: SignalInstaller = signal.signal,
) -> Callable[[], None]:
    """
    Make SIGHUP call C{callback()} in the reactor thread (through
    C{reactor.callFromThread}, which is safe in a signal handler); its
    exceptions and failures are logged.

    @return: a function that puts the previous handler back.
    """
    if SIGHUP is None:
        return lambda: None

    def call() -> None:
        log.info("received SIGHUP, reloading the configuration")
        maybeDeferred(callback).addErrback(
            lambda f: log.failure("reloading on SIGHUP failed", f)
        )

    def handler(number: int, frame: FrameType | None) -> None:
        reactor.callFromThread(call)

    previous = installer(SIGHUP, handler)

    def uninstall() -> None:
        installer(SIGHUP, previous if previous is not None else signal.SIG_DFL)

    return uninstall


class ReloadSignalService(Service):
    """
    Handles SIGHUP with C{callback} once the reactor runs.  After the
    service stops (a shutdown is under way), SIGHUP is logged and ignored
    rather than ending the process mid-drain.
    """

    def __init__(
        self,
        reactor: Any,
        callback: Callable[[], Any],
        installer: SignalInstaller = signal.signal,
    ) -> None:
        self._reactor = reactor
        self._callback = callback
        self._installer = installer
        self.uninstall: Callable[[], None] | None = None

    def startService(self) -> None:
        super().startService()
        self._reactor.callWhenRunning(self._install)

    def _install(self) -> None:
        if self.uninstall is None:
            self.uninstall = installReloadSignal(self._reactor, self._call, self._installer)

    def _call(self) -> Any:
        if not self.running:
            log.info("received SIGHUP while shutting down; ignored")
            return None
        return self._callback()
