# -*- test-case-name: test.upstream.test_process -*-
"""
The process shell: spawn one upstream child in its own session, tied to
llamaswap's life, read its output line by line, notice its exit, and signal
its whole process tree.

Spawning goes through L{LAUNCHER} (see its docstring): C{python -I -S
_launcher.py <our pid> --report-fd=3 -- argv...}.  On Linux the launcher is
a child subreaper that stays the server's parent (I{keeper} mode): the PID
Twisted sees is the launcher's, the server's PID (its process-group ID, and
what C{${PID}} means in C{cmdStop}) arrives as one line on descriptor 3 once
the server has C{exec}'d, signals go through the launcher to the whole
tree, and the launcher exits, with the server's status, only once every
descendant is gone.  Elsewhere it C{exec}s in place and reports its own PID
(I{exec} mode).  (An argv prefix is needed because Twisted's
C{posix_spawnp} path never calls a C{_setupChild} override.)
"""

from __future__ import annotations

import os
import signal
import sys
from collections import deque
from typing import Callable, Iterable, Mapping, Sequence

from attrs import define, field, frozen
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import (
    IDelayedCall,
    IProcessTransport,
    IReactorProcess,
    IReactorTime,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_launcher.py")
#: The child descriptor on which the launcher reports the server's PID.
REPORT_FD = 3
#: The child's descriptors: stdin, stdout, stderr and the report.
CHILD_FDS = {0: "w", 1: "r", 2: "r", REPORT_FD: "r"}
#: What the launcher takes as "SIGKILL the whole tree" (its own SIGKILL
#: would orphan the tree); see C{_launcher.KILL_ALL}.
LAUNCHER_KILL_ALL = signal.SIGUSR1

#: Longest line kept, in bytes; the rest of a longer line is dropped.
MAX_LINE_LENGTH = 16384
#: Lines of output remembered per child (for error messages and C{lastLines}).
KEEP_LINES = 50
#: After the child exits, how long to wait for its pipes to drain before
#: reporting the exit anyway (a grandchild outside the group may hold them).
DRAIN_GRACE = 0.25
#: After the exit is reported, how long before our pipe ends are closed.
PIPE_CLOSE_GRACE = 2.0

TRUNCATED = " [truncated]"

_STREAMS = {1: "stdout", 2: "stderr"}


def launcherArgv(argv: Sequence[str], parentPid: int | None = None) -> list[str]:
    """
    The argv that runs C{argv} through L{LAUNCHER}.

    @param parentPid: the PID the launcher must find as its parent (default:
        ours); if it does not, llamaswap already died and it gives up.
    """
    if parentPid is None:
        parentPid = os.getpid()
    return [
        sys.executable, "-I", "-S", LAUNCHER, str(parentPid), f"--report-fd={REPORT_FD}", "--", *argv
    ]


def buildEnvironment(
    additions: Iterable[str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """
    A copy of C{base} (default C{os.environ}) with C{NAME=value} additions
    applied in order.  Never the empty environment C{spawnProcess} defaults
    to.

    @raise ValueError: for an addition without C{=} or with an empty name.
    """
    env = dict(os.environ if base is None else base)
    for entry in additions:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise ValueError(f"environment entry {entry!r} is not NAME=value")
        env[name] = value
    return env


def signalProcess(pid: int, sig: int) -> bool:
    """
    Send C{sig} to process C{pid}.

    @return: whether it was signalled.
    """
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def signalGroup(pgid: int, sig: int, *, pid: int | None = None) -> bool:
    """
    Send C{sig} to process group C{pgid}; if there is no such group (the
    launcher has not reached C{setsid} yet) and C{pid} is given, signal
    that process alone.

    @return: whether anything was signalled.
    """
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        pass
    except PermissionError:
        return False
    if pid is not None:
        try:
            os.kill(pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            pass
    return False


class LineBuffer:
    """
    Split a byte stream into lines, bounding memory: a line longer than
    C{maxLength} bytes is cut there, marked with L{TRUNCATED}, and the rest
    of it is skipped.  Lines are decoded as UTF-8 with replacement and lose
    their C{\\n} and a trailing C{\\r}.
    """

    def __init__(self, maxLength: int = MAX_LINE_LENGTH) -> None:
        self._maxLength = maxLength
        self._buffer = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[str]:
        """
        Add C{data}; return the lines it completed.
        """
        lines: list[str] = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            if end == -1:
                if not self._skipping:
                    self._buffer += data[start:]
                    self._checkLength(lines)
                break
            if self._skipping:
                self._skipping = False
            else:
                self._buffer += data[start:end]
                if len(self._buffer) > self._maxLength:
                    self._checkLength(lines)
                    self._skipping = False
                else:
                    lines.append(self._decode(self._buffer))
                self._buffer.clear()
            start = end + 1
        return lines

    def _checkLength(self, lines: list[str]) -> None:
        if len(self._buffer) > self._maxLength:
            lines.append(self._decode(self._buffer[: self._maxLength]) + TRUNCATED)
            self._buffer.clear()
            self._skipping = True

    def flush(self) -> list[str]:
        """
        End of stream: return the unterminated last line, if any.
        """
        if self._skipping or not self._buffer:
            self._buffer.clear()
            self._skipping = False
            return []
        line = self._decode(self._buffer)
        self._buffer.clear()
        return [line]

    @staticmethod
    def _decode(raw: bytes | bytearray) -> str:
        text = bytes(raw).decode("utf-8", errors="replace")
        return text[:-1] if text.endswith("\r") else text


@frozen
class ExitStatus:
    """
    How a child ended: C{exitCode} for a normal exit, C{signal} if killed.
    """

    exitCode: int | None
    signal: int | None

    @staticmethod
    def reasonFor(status: int) -> Failure:
        """
        The C{processEnded} reason Twisted gives for wait status C{status}
        (for an end a recycled keeper reports instead of exiting).
        """
        if os.WIFSIGNALED(status):
            return Failure(ProcessTerminated(None, os.WTERMSIG(status), status))
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if code == 0:
            return Failure(ProcessDone(status))
        return Failure(ProcessTerminated(code, None, status))

    @classmethod
    def fromFailure(cls, reason: Failure) -> ExitStatus:
        """
        Read the status out of C{processExited}'s reason.
        """
        value = reason.value
        if isinstance(value, ProcessDone):
            return cls(0, None)
        if isinstance(value, ProcessTerminated):
            return cls(value.exitCode, value.signal)
        return cls(None, None)

    def describe(self) -> str:
        """
        C{"exit status N"} or C{"signal NAME"}.
        """
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = str(self.signal)
            return f"killed by signal {name}"
        if self.exitCode is not None:
            return f"exit status {self.exitCode}"
        return "unknown exit status"


OutputObserver = Callable[[str, str], None]


@define(eq=False, slots=False)
class UpstreamProtocol(ProcessProtocol):
    """
    The C{ProcessProtocol} for one upstream child (spawned through the
    launcher with L{CHILD_FDS}).

    Output is split into lines per stream, remembered (the last
    L{KEEP_LINES}) and passed to C{onLine(stream, line)}.  The server's PID
    is read from L{REPORT_FD}.  The exit is driven by C{processExited}: the
    server's process group is swept with C{SIGKILL} at once (grandchildren
    must not outlive the leader; in keeper mode the launcher already killed
    the whole tree), and L{exited} fires with an L{ExitStatus} as soon as
    the pipes have drained (C{processEnded}) or L{DRAIN_GRACE} seconds
    later, whichever comes first, so the last words of a crashing child are
    in L{lastLines}.  C{processEnded} is never required: a process outside
    the tree holding the pipes cannot hang us, and our pipe ends are closed
    L{PIPE_CLOSE_GRACE} seconds after the exit is reported.

    @ivar launcherPid: the PID Twisted spawned (the launcher in keeper
        mode, the server itself in exec mode).
    @ivar pid: the server's PID (also its process-group ID) once reported,
        kept after the transport forgets it; L{None} before.
    @ivar serverStarted: fires with the server's PID once it has
        C{exec}'d (never fires if it could not be started).
    @ivar exited: fires once with the L{ExitStatus}.
    @ivar ended: fires once when every pipe is closed.
    """

    log = Logger()

    modelID: str
    _clock: IReactorTime
    _onLine: OutputObserver | None = None
    _signaller: Callable[..., bool] = field(default=signalGroup, kw_only=True)
    _launcherSignaller: Callable[[int, int], bool] = field(default=signalProcess, kw_only=True)
    _maxLineLength: int = field(default=MAX_LINE_LENGTH, kw_only=True)
    _keepLines: int = field(default=KEEP_LINES, kw_only=True)
    _drainGrace: float = field(default=DRAIN_GRACE, kw_only=True)
    _pipeCloseGrace: float = field(default=PIPE_CLOSE_GRACE, kw_only=True)
    _buffers: dict[int, LineBuffer] = field(init=False)
    _reportBuffer: bytearray = field(factory=bytearray, init=False)
    _lines: deque[str] = field(init=False)
    launcherPid: int | None = field(default=None, init=False)
    pid: int | None = field(default=None, init=False)
    serverStarted: Deferred[int] = field(factory=Deferred, init=False)
    exitStatus: ExitStatus | None = field(default=None, init=False)
    exited: Deferred[ExitStatus] = field(factory=Deferred, init=False)
    ended: Deferred[None] = field(factory=Deferred, init=False)
    _reported: bool = field(default=False, init=False)
    _isEnded: bool = field(default=False, init=False)
    _holdSignals: bool = field(default=False, init=False)
    _held: list[int] = field(factory=list, init=False)
    _timers: list[IDelayedCall] = field(factory=list, init=False)

    @_buffers.default
    def _newBuffers(self) -> dict[int, LineBuffer]:
        return {fd: LineBuffer(self._maxLineLength) for fd in _STREAMS}

    @_lines.default
    def _newLines(self) -> deque[str]:
        return deque(maxlen=self._keepLines)

    @property
    def lastLines(self) -> tuple[str, ...]:
        """
        The last lines this child wrote, oldest first.
        """
        return tuple(self._lines)

    @property
    def running(self) -> bool:
        """
        Whether the child has been spawned and has not exited.
        """
        return self.launcherPid is not None and self.exitStatus is None

    @property
    def keeper(self) -> bool:
        """
        Whether the launcher stays the server's parent (keeper mode): the
        server's PID was reported and is not the launcher's.
        """
        return self.pid is not None and self.pid != self.launcherPid

    def connectionMade(self) -> None:
        """
        Remember the launcher's PID and close the child's stdin.
        """
        assert self.transport is not None
        self.launcherPid = self.transport.pid
        self._holdSignals = bool(getattr(self.transport, "holdsSignals", False))
        self.transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """
        Split output into lines and pass them on; read the server's PID
        from the report descriptor.
        """
        if childFD == REPORT_FD:
            self._reportReceived(data)
            return
        buffer = self._buffers.get(childFD)
        if buffer is not None:
            self._emit(_STREAMS[childFD], buffer.feed(data))

    def _reportReceived(self, data: bytes) -> None:
        if self.pid is not None:
            return
        self._reportBuffer += data[:64]
        line, newline, _ = bytes(self._reportBuffer).partition(b"\n")
        if not newline:
            return
        try:
            pid = int(line)
        except ValueError:
            self.log.warn("[{model}] bad launcher report {line!r}", model=self.modelID, line=line)
            return
        if pid <= 0:
            return
        self.pid = pid
        held, self._held = self._held, []
        for sig in held:
            self.signal(sig)
        self.serverStarted.callback(pid)

    def _flushLines(self) -> None:
        for fd, buffer in self._buffers.items():
            self._emit(_STREAMS[fd], buffer.flush())

    def _emit(self, stream: str, lines: list[str]) -> None:
        for line in lines:
            self._lines.append(line)
            if self._onLine is not None:
                try:
                    self._onLine(stream, line)
                except Exception:
                    self.log.failure("output observer failed for {model}", model=self.modelID)

    def signal(self, sig: int) -> bool:
        """
        Send C{sig} to the upstream's whole tree.  Does nothing once the
        child has exited.

        A reused launcher (its transport C{holdsSignals}) may still have
        signals meant for its previous server pending until it starts the
        next one, and drops those: so before the server's PID is known a
        signal is held and sent once it is, except C{SIGKILL}, which ends
        the launcher itself.  In keeper mode, and before the server's PID is
        known, the signal goes to the launcher, which passes it on to the server's group and
        every descendant outside it (C{SIGKILL} becomes
        L{LAUNCHER_KILL_ALL}).  In exec mode it goes to
        the server's process group (or to the server alone if its group
        does not exist yet).

        @return: whether anything was signalled.
        """
        if not self.running:
            return False
        assert self.launcherPid is not None
        if self.pid is None and self._holdSignals:
            if sig == signal.SIGKILL:
                # Nothing started yet, or not reported: end the launcher
                # itself (its children die with it).
                return self._launcherSignaller(self.launcherPid, signal.SIGKILL)
            self._held.append(sig)
            return True
        if self.pid is None or self.keeper:
            return self._launcherSignaller(
                self.launcherPid, LAUNCHER_KILL_ALL if sig == signal.SIGKILL else sig
            )
        return self._signaller(self.pid, sig, pid=self.pid)

    def processExited(self, reason: Failure) -> None:
        """
        The child is gone: sweep its group, then report once the output has
        drained.
        """
        self.exitStatus = ExitStatus.fromFailure(reason)
        if self.pid is not None and not self.keeper:
            # Exec mode: grandchildren die with the leader; a PGID cannot be
            # reused while any member is alive, and ESRCH is fine.  (In
            # keeper mode the launcher has killed the tree, and may have
            # reaped the server long ago.)
            self._signaller(self.pid, signal.SIGKILL)
        if self._isEnded:
            self._report()
        else:
            self._timers.append(self._clock.callLater(self._drainGrace, self._report))

    def processEnded(self, reason: Failure) -> None:
        """
        Every pipe is closed: flush partial lines; report the exit if it was
        waiting for this.
        """
        self._isEnded = True
        if self.exitStatus is None:
            self.exitStatus = ExitStatus.fromFailure(reason)
        self._flushLines()
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []
        self._report()
        if not self.ended.called:
            self.ended.callback(None)

    def _report(self) -> None:
        if self._reported:
            return
        self._reported = True
        if not self._isEnded:
            self._timers.append(self._clock.callLater(self._pipeCloseGrace, self._closePipes))
        assert self.exitStatus is not None
        self.exited.callback(self.exitStatus)

    def _closePipes(self) -> None:
        if not self._isEnded and self.transport is not None:
            self.log.info(
                "[{model}] closing output pipes still held after exit", model=self.modelID
            )
            self._flushLines()
            self.transport.loseConnection()


def spawnUpstream(
    processReactor: IReactorProcess,
    protocol: ProcessProtocol,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str | None = None,
    parentPid: int | None = None,
) -> IProcessTransport:
    """
    Spawn C{argv} through the launcher: own session and process group, a
    keeper that dies with llamaswap and kills the whole tree, explicit
    environment, no PTY, the PID report on L{REPORT_FD}.

    @raise OSError: if even the launcher cannot be spawned.
    """
    args = launcherArgv(argv, parentPid)
    return processReactor.spawnProcess(
        protocol, args[0], args, env=dict(env), path=cwd, usePTY=False, childFDs=dict(CHILD_FDS)
    )


class StopCommandProtocol(ProcessProtocol):
    """
    Runs C{cmdStop}: passes its output on and logs a failure.
    """

    log = Logger()

    def __init__(self, modelID: str, onLine: OutputObserver | None = None) -> None:
        self.modelID = modelID
        self._onLine = onLine
        self._buffers = {fd: LineBuffer() for fd in _STREAMS}
        self.done: Deferred[ExitStatus] = Deferred()

    def connectionMade(self) -> None:
        """
        Close its stdin.
        """
        assert self.transport is not None
        self.transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """
        Pass its lines on as stream C{cmdStop}.
        """
        buffer = self._buffers.get(childFD)
        if buffer is not None:
            self._emit(buffer.feed(data))

    def _emit(self, lines: list[str]) -> None:
        if self._onLine is None:
            return
        for line in lines:
            try:
                self._onLine("cmdStop", line)
            except Exception:
                self.log.failure("output observer failed for {model}", model=self.modelID)

    def processEnded(self, reason: Failure) -> None:
        """
        Log a non-zero exit.
        """
        for buffer in self._buffers.values():
            self._emit(buffer.flush())
        status = ExitStatus.fromFailure(reason)
        if status.exitCode != 0:
            self.log.warn(
                "[{model}] cmdStop failed: {status}", model=self.modelID, status=status.describe()
            )
        self.done.callback(status)
