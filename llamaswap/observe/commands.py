# -*- test-case-name: test.observe.test_commands -*-
"""
Run a short command (C{nvidia-smi}, C{rocm-smi}) without blocking the
reactor: its standard output as a L{Deferred}, a timeout that kills it,
and cancellation that kills it too, so no query outlives its caller.
"""

from __future__ import annotations

import os
import signal
from typing import Callable, Mapping, Sequence

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.python.procutils import which

#: Runs an argv with a timeout in seconds, giving its standard output.
CommandRunner = Callable[[Sequence[str], float], "Deferred[bytes]"]
#: Finds an executable by name on C{PATH}, L{None} when there is none.
Locator = Callable[[str], "str | None"]

#: The most output kept from one command (its stdout and its stderr each).
OUTPUT_LIMIT = 4 * 1024 * 1024


class CommandFailed(Exception):
    """
    The command exited unsuccessfully.

    @ivar argv: what ran.
    @ivar status: the exit code, or L{None} when a signal ended it.
    @ivar stderr: its error output (trimmed).
    """

    def __init__(self, argv: Sequence[str], status: int | None, stderr: str) -> None:
        self.argv = tuple(argv)
        self.status = status
        self.stderr = stderr
        how = f"exit status {status}" if status is not None else "a signal"
        detail = f": {stderr}" if stderr else ""
        super().__init__(f"{os.path.basename(argv[0])} ended with {how}{detail}")


class CommandTimeout(Exception):
    """
    The command ran longer than its timeout and was killed.
    """


def locate(name: str) -> str | None:
    """
    The first executable called C{name} on the current C{PATH}.
    """
    found = which(name)
    return found[0] if found else None


class _Collector(ProcessProtocol):
    def __init__(self, argv: Sequence[str], done: Deferred[bytes]) -> None:
        self.argv = argv
        self.done = done
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.sizes = [0, 0]
        self.timer: IDelayedCall | None = None
        self.outcome: Failure | None = None

    def connectionMade(self) -> None:
        self.transport.closeStdin()  # type: ignore[union-attr]

    def childDataReceived(self, fd: int, data: bytes) -> None:
        index = 0 if fd == 1 else 1
        if self.sizes[index] >= OUTPUT_LIMIT:
            return
        self.sizes[index] += len(data)
        (self.out if index == 0 else self.err).append(data)

    def kill(self, outcome: Failure) -> None:
        if self.outcome is None:
            self.outcome = outcome
        try:
            self.transport.signalProcess(signal.SIGKILL)  # type: ignore[union-attr]
        except (ProcessExitedAlready, OSError):
            pass
        self.transport.loseConnection()  # type: ignore[union-attr]

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.done.called:
            return
        if self.outcome is not None:
            self.done.errback(self.outcome)
        elif reason.check(ProcessDone):
            self.done.callback(b"".join(self.out))
        else:
            stderr = b"".join(self.err).decode("utf-8", "replace").strip()
            status = getattr(reason.value, "exitCode", None)
            self.done.errback(CommandFailed(self.argv, status, stderr[-500:]))


def runCommand(
    processReactor: IReactorProcess,
    clock: IReactorTime,
    argv: Sequence[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> Deferred[bytes]:
    """
    Run C{argv} (its first element an absolute path) with our environment
    (or C{env}); fire with its standard output when it exits with status
    0, else fail with L{CommandFailed}.  After C{timeout} seconds it is
    killed and the result fails with L{CommandTimeout}; cancelling the
    result kills it as well.
    """
    collector: _Collector

    def cancel(d: Deferred[bytes]) -> None:
        collector.kill(Failure(CancelledError()))

    done: Deferred[bytes] = Deferred(cancel)
    collector = _Collector(argv, done)
    environment = dict(os.environ if env is None else env)
    processReactor.spawnProcess(
        collector, argv[0], list(argv), env=environment, childFDs={0: "w", 1: "r", 2: "r"}
    )
    collector.timer = clock.callLater(
        timeout,
        collector.kill,
        Failure(CommandTimeout(f"{os.path.basename(argv[0])} took longer than {timeout:g}s")),
    )
    return done


def runnerFor(processReactor: IReactorProcess, clock: IReactorTime) -> CommandRunner:
    """
    A L{CommandRunner} spawning with C{processReactor}, timing with C{clock}.
    """
    return lambda argv, timeout: runCommand(processReactor, clock, argv, timeout)


__all__ = [
    "CommandFailed",
    "CommandRunner",
    "CommandTimeout",
    "Locator",
    "locate",
    "runCommand",
    "runnerFor",
]
