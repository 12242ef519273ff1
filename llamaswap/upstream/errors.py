# -*- test-case-name: test.upstream.test_supervisor -*-
"""
Errors a L{llamaswap.upstream.supervisor.Supervisor} hands its callers.

Start failures carry the child's last output lines, so the HTTP error a
client sees can say why the upstream would not start.
"""

from __future__ import annotations

import signal as _signal
from typing import Sequence


class UpstreamError(Exception):
    """
    Something went wrong with upstream C{modelID}.

    @ivar modelID: the model.
    @ivar message: what went wrong, without the model prefix.
    """

    def __init__(self, modelID: str, message: str) -> None:
        super().__init__(modelID, message)
        self.modelID = modelID
        self.message = message

    def __str__(self) -> str:
        return f"[{self.modelID}] {self.message}"


class UpstreamShutdown(UpstreamError):
    """
    The upstream was shut down; nothing can start it again.
    """

    def __init__(self, modelID: str) -> None:
        super().__init__(modelID, "shutdown")


class StartFailed(UpstreamError):
    """
    A start did not end with a ready upstream.

    @ivar lastLines: the child's last output lines, oldest first (empty if
        it never ran).
    """

    def __init__(self, modelID: str, message: str, lastLines: Sequence[str] = ()) -> None:
        super().__init__(modelID, message)
        self.lastLines = tuple(lastLines)

    def __str__(self) -> str:
        text = super().__str__()
        if self.lastLines:
            text += "\nlast output of the upstream:\n" + "\n".join(self.lastLines)
        return text


class SpawnError(StartFailed):
    """
    The command could not be spawned.
    """


class PrematureExit(StartFailed):
    """
    The child exited before it became ready.

    @ivar exitCode: its exit status, or C{None} if killed by a signal.
    @ivar signal: the signal that killed it, or C{None}.
    """

    def __init__(
        self,
        modelID: str,
        exitCode: int | None,
        signal: int | None,
        lastLines: Sequence[str] = (),
    ) -> None:
        self.exitCode = exitCode
        self.signal = signal
        if signal is not None:
            try:
                how = f"killed by signal {_signal.Signals(signal).name}"
            except ValueError:
                how = f"killed by signal {signal}"
        elif exitCode == 0:
            how = "exit status 0: it must stay in the foreground"
        else:
            how = f"exit status {exitCode}"
        super().__init__(modelID, f"upstream command exited prematurely ({how})", lastLines)


class HealthCheckTimedOut(StartFailed):
    """
    The health endpoint did not answer 200 in time.
    """

    def __init__(self, modelID: str, timeout: float, lastLines: Sequence[str] = ()) -> None:
        self.timeout = timeout
        super().__init__(modelID, f"health check timed out after {timeout:g}s", lastLines)


class StartAbortedError(StartFailed):
    """
    A stop (unload, eviction) was requested before the start completed.
    """

    def __init__(self, modelID: str, lastLines: Sequence[str] = ()) -> None:
        super().__init__(modelID, "start aborted: the upstream was stopped", lastLines)
