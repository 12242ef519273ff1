"""
Test doubles for the upstream supervisor: a process reactor in the style
of Twisted's procmon tests, a process transport, a group signaller and a
health prober.
"""

from __future__ import annotations

import signal as _signal
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IProcessTransport)
class FakeProcessTransport:
    """
    A spawned fake process.  Tests make it write output and exit.

    @ivar args: the argv it was spawned with.
    @ivar env: its environment.
    """

    def __init__(
        self,
        reactor: FakeProcessReactor,
        protocol: ProcessProtocol,
        pid: int,
        executable: str,
        args: list[str],
        env: dict[str, str] | None,
        path: str | None,
        usePTY: bool,
        childFDs: Any,
    ) -> None:
        self.reactor = reactor
        self.protocol = protocol
        self.pid: int | None = pid
        self.originalPid = pid
        self.executable = executable
        self.args = args
        self.env = env
        self.path = path
        self.usePTY = usePTY
        self.childFDs = childFDs
        self.stdinClosed = False
        self.written = b""
        self.lostConnection = False
        self.signals: list[str] = []
        self.exited = False
        self.ended = False

    # IProcessTransport / ITransport

    def closeStdin(self) -> None:
        """
        Remember that stdin was closed.
        """
        self.stdinClosed = True

    def closeStdout(self) -> None:
        """
        Nothing to do.
        """

    def closeStderr(self) -> None:
        """
        Nothing to do.
        """

    def closeChildFD(self, descriptor: int) -> None:
        """
        Nothing to do.
        """

    def writeToChild(self, childFD: int, data: bytes) -> None:
        """
        Nothing to do.
        """

    def write(self, data: bytes) -> None:
        """
        Remember what was written to the child's stdin.
        """
        self.written += data

    def writeSequence(self, data: Any) -> None:
        """
        Nothing to do.
        """

    def getPeer(self) -> Any:
        """
        No peer.
        """
        return None

    def getHost(self) -> Any:
        """
        No host.
        """
        return None

    def loseConnection(self) -> None:
        """
        Close our pipe ends: once exited, the process has ended.
        """
        self.lostConnection = True
        if self.exited and not self.ended:
            self.endPipes()

    def signalProcess(self, signalID: Any) -> None:
        """
        Record the signal.
        """
        if self.pid is None:
            raise ProcessExitedAlready()
        self.signals.append(signalID)

    # test helpers

    def output(self, data: bytes, fd: int = 1) -> None:
        """
        The child writes C{data} on C{fd}.
        """
        self.protocol.childDataReceived(fd, data)

    def exit(self, code: int | None = 0, signal: int | None = None, endPipes: bool = True) -> None:
        """
        The child exits; unless C{endPipes} is false (a grandchild holds
        them), its pipes close too.
        """
        if code == 0 and signal is None:
            self._reason = Failure(ProcessDone(0))
        else:
            self._reason = Failure(ProcessTerminated(code, signal))
        self.exited = True
        self.pid = None
        self.protocol.processExited(self._reason)
        if endPipes:
            self.endPipes()

    def endPipes(self) -> None:
        """
        The last holder of the pipes closed them.
        """
        if not self.ended:
            self.ended = True
            self.protocol.processEnded(self._reason)


@implementer(IReactorProcess)
class FakeProcessReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} that can spawn L{FakeProcessTransport}s.

    @ivar spawned: every transport spawned, in order.
    @ivar spawnError: if set, C{spawnProcess} raises it.
    @ivar autoReport: whether a process spawned with a report descriptor
        reports its own PID at once, like the launcher in exec mode (else
        the test reports, e.g. another PID for keeper mode).
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[FakeProcessTransport] = []
        self.spawnError: Exception | None = None
        self.autoReport = True
        self._nextPid = 1000

    def spawnProcess(
        self,
        processProtocol: Any,
        executable: Any,
        args: Any = (),
        env: Any = None,
        path: Any = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Any = None,
    ) -> FakeProcessTransport:
        """
        Make a fake process and connect C{processProtocol} to it.
        """
        if self.spawnError is not None:
            raise self.spawnError
        self._nextPid += 1
        transport = FakeProcessTransport(
            self, processProtocol, self._nextPid, executable, list(args), env, path, usePTY, childFDs
        )
        self.spawned.append(transport)
        processProtocol.makeConnection(transport)
        if self.autoReport and childFDs and childFDs.get(3) == "r":
            # Like the launcher in exec mode: it reports its own PID.
            processProtocol.childDataReceived(3, b"%d\n" % (transport.pid,))
        return transport


class FakeLauncherSignaller:
    """
    Records signals sent to launchers, C{(pid, signal)}.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[int, int]] = []

    def __call__(self, pid: int, sig: int) -> bool:
        """
        Record it.
        """
        self.sent.append((pid, sig))
        return True


class FakeSignaller:
    """
    Records group signals, C{(pgid, signal)}; optionally makes the group
    leader exit on them.

    @ivar exitOn: signals on which the leader exits (killed by that
        signal); C{SIGKILL} is always one.
    """

    def __init__(self, reactor: FakeProcessReactor, exitOn: tuple[int, ...] = ()) -> None:
        self.reactor = reactor
        self.sent: list[tuple[int, int]] = []
        self.exitOn = set(exitOn)
        self.autoExit = False

    def __call__(self, pgid: int, sig: int, *, pid: int | None = None) -> bool:
        """
        Record it; let the leader die if configured.
        """
        self.sent.append((pgid, sig))
        leader = [t for t in self.reactor.spawned if t.pid == pgid]
        if leader and self.autoExit and (sig in self.exitOn or sig == _signal.SIGKILL):
            leader[0].exit(None, sig)
        return bool(leader)

    def signalsTo(self, pgid: int) -> list[int]:
        """
        The signals sent to group C{pgid}, in order.
        """
        return [sig for g, sig in self.sent if g == pgid]


class FakeWatch:
    """
    A health watch that tests make healthy by hand.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.nudges = 0
        self.lines: list[str] = []
        self.cancelled = False

        def cancel(d: Deferred[None]) -> None:
            self.cancelled = True

        self.ready: Deferred[None] = Deferred(cancel)

    def nudge(self, line: str = "") -> None:
        """
        Count it and keep the line.
        """
        self.nudges += 1
        self.lines.append(line)

    def cancel(self) -> None:
        """
        Stop watching.
        """
        if not self.ready.called:
            self.ready.cancel()

    def healthy(self) -> None:
        """
        The probe got a 200.
        """
        self.ready.callback(None)


class FakeProber:
    """
    Hands out L{FakeWatch}es.
    """

    def __init__(self) -> None:
        self.watches: list[FakeWatch] = []

    def watch(self, url: str) -> FakeWatch:
        """
        Start a new fake watch.
        """
        watch = FakeWatch(url)
        self.watches.append(watch)
        return watch


class FakeRecorder:
    """
    Records C{add}/C{remove} calls.
    """

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def add(self, modelID: str, pid: int, argv0: str, started: float) -> None:
        """
        Record it.
        """
        self.calls.append(("add", modelID, pid, argv0, started))

    def remove(self, pid: int) -> None:
        """
        Record it.
        """
        self.calls.append(("remove", pid))
