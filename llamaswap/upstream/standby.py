# -*- test-case-name: test.upstream.test_standby -*-
"""
Launchers started ahead of need and reused, so that starting a model does
not wait for a Python interpreter to start (the launcher's start-up was
most of what a swap cost llamaswap itself) and a swap starts no new one.

L{StandbyLaunchers} keeps an idle launcher (or a few) in I{standby} mode (see
L{llamaswap.upstream._launcher}): spawned with C{reactor.spawnProcess}
like any upstream (so llamaswap is still its parent and gets its output
and exit status through a C{ProcessProtocol}), already in its own session,
a child subreaper, and armed to die with llamaswap, waiting on its stdin
for a command.  L{StandbyLaunchers.spawn} hands an idle one the command
and the model's C{UpstreamProtocol}.  When that model's server and its
tree are gone the launcher reports the end instead of exiting: the model
sees its exit as from any child, and the launcher goes back to the idle
pool for the next start (I{recycling}).  With none idle a new one is
spawned and handed the command at once; the pool is topped up (or trimmed
back to its size) once a model is ready, not while it boots.  Nothing is
started until the first upstream is: a llamaswap that never starts one
never runs a standby.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Mapping, Sequence

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import (
    IDelayedCall,
    IProcessTransport,
    IReactorProcess,
    IReactorTime,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..compat import readPendingOutput, sendNow
from ._launcher import encodeCommand
from .process import CHILD_FDS, LAUNCHER, REPORT_FD, ExitStatus, spawnUpstream

#: Seconds after a standby is used before the pool is topped up, unless
#: L{StandbyLaunchers.refill} is called sooner.
REFILL_DELAY = 0.5
#: Seconds after L{StandbyLaunchers.refill} before the pool is topped up.
READY_REFILL_DELAY = 0.02
#: How many idle standbys are kept.
STANDBYS = 1
#: The launcher's report of its server's end (followed by the wait status).
_EXIT = b"exit "


def standbyArgv(parentPid: int | None = None) -> list[str]:
    """
    The argv of a standby launcher whose parent must be C{parentPid}
    (default: us).
    """
    if parentPid is None:
        parentPid = os.getpid()
    return [
        sys.executable, "-I", "-S", LAUNCHER, str(parentPid),
        f"--report-fd={REPORT_FD}", "--standby",
    ]


@implementer(IProcessTransport)
class _LentTransport:
    """
    A standby's transport as the one upstream it runs sees it: the stdin
    belongs to the pool (closing it would end the launcher), and once that
    upstream has ended nothing it does reaches the launcher any more.
    Signals to a reused launcher must wait for the server's PID (see
    L{UpstreamProtocol.signal}): C{holdsSignals}.
    """

    holdsSignals = True

    def __init__(self, transport: IProcessTransport) -> None:
        self._transport: IProcessTransport | None = transport
        self.pid = transport.pid

    def revoke(self) -> None:
        """
        The upstream has ended: cut it off.
        """
        self._transport = None

    def closeStdin(self) -> None:
        pass

    def closeStdout(self) -> None:
        pass

    def closeStderr(self) -> None:
        pass

    def closeChildFD(self, descriptor: int) -> None:
        pass

    def writeToChild(self, childFD: int, data: bytes) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Sequence[bytes]) -> None:
        pass

    def loseConnection(self) -> None:
        if self._transport is not None:
            self._transport.loseConnection()

    def signalProcess(self, signalID: str | int) -> None:
        if self._transport is not None:
            self._transport.signalProcess(signalID)

    def getPeer(self) -> object:
        return self._transport.getPeer() if self._transport is not None else None

    def getHost(self) -> object:
        return self._transport.getHost() if self._transport is not None else None


class _StandbyProtocol(ProcessProtocol):
    """
    The protocol of a standby launcher: idle until L{attach}ed to the
    protocol of the upstream it starts, then passes everything on to it,
    until the launcher reports that upstream's end and is C{free}d.

    @ivar exited: whether the launcher has exited (an idle one only does
        when told to, or when it failed).
    @ivar ended: fires when its pipes are closed and it has exited.
    """

    log = Logger()

    def __init__(self, free: Callable[[_StandbyProtocol], object] | None = None) -> None:
        self.target: ProcessProtocol | None = None
        self._lent: _LentTransport | None = None
        self._free = free
        self._report = b""
        self.exited = False
        self.ended: Deferred[None] = Deferred()

    def attach(self, target: ProcessProtocol, command: bytes) -> IProcessTransport:
        """
        Send C{command} and pass this launcher to C{target} (whose
        C{connectionMade} runs now).
        """
        assert self.transport is not None
        self.target = target
        self._lent = _LentTransport(self.transport)
        self.transport.write(command)
        # The command leaves now, not once the rest of this reactor turn
        # (the evicted model's stop, the request's bookkeeping) is done:
        # the new server's start is on the waiting request's path.
        sendNow(getattr(self.transport, "pipes", {}).get(0))
        target.makeConnection(self._lent)
        return self._lent

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == REPORT_FD:
            self._reportReceived(data)
        elif self.target is not None:
            self.target.childDataReceived(childFD, data)
        else:
            self.log.warn("standby launcher: {data!r}", data=data[:500])

    def _reportReceived(self, data: bytes) -> None:
        self._report += data
        while b"\n" in self._report:
            line, _, self._report = self._report.partition(b"\n")
            if line.startswith(_EXIT):
                try:
                    status = int(line[len(_EXIT) :])
                except ValueError:
                    self.log.warn("standby launcher: bad report {line!r}", line=line)
                    continue
                self._serverEnded(status)
            elif self.target is not None:
                self.target.childDataReceived(REPORT_FD, line + b"\n")

    def _serverEnded(self, status: int) -> None:
        """
        The launcher's server and its tree are gone: hand the upstream its
        last output and its end, and go back to the pool.
        """
        target, lent = self.target, self._lent
        if target is None:
            self.log.warn("standby launcher: end reported while idle")
            return
        self.target = self._lent = None
        if lent is not None:
            lent.revoke()
        for fd in (1, 2):
            data = readPendingOutput(self.transport, fd)
            if data:
                target.childDataReceived(fd, data)
        if self._free is not None:
            self._free(self)
        reason = ExitStatus.reasonFor(status)
        target.processExited(reason)
        target.processEnded(reason)

    def childConnectionLost(self, childFD: int) -> None:
        if self.target is not None:
            self.target.childConnectionLost(childFD)

    def processExited(self, reason: Failure) -> None:
        self.exited = True
        if self.target is not None:
            self.target.processExited(reason)

    def processEnded(self, reason: Failure) -> None:
        self.exited = True
        if self.target is not None:
            self.target.processEnded(reason)
        self.ended.callback(None)


@define(eq=False, slots=False)
class StandbyLaunchers(Service):
    """
    Spawns upstreams through an idle standby launcher, or through a new one
    when none is idle; launchers come back to the pool when their upstream
    ends.  A service: stopping it ends the idle launchers (and those in use
    once their upstream ends) and starts no more.

    Up to C{size} idle standbys are kept.  The pool is topped up or trimmed
    soon after L{refill} (the application calls it when an upstream becomes
    ready, so a new standby does not compete for the CPU with a booting
    server nor delay the request that waited for it) or, failing that,
    C{refillDelay} seconds after one was used or came back.
    """

    log = Logger()

    _processReactor: IReactorProcess
    _clock: IReactorTime
    _refillDelay: float = REFILL_DELAY
    _size: int = STANDBYS
    _idle: list[_StandbyProtocol] = field(factory=list, init=False)
    _launchers: set[_StandbyProtocol] = field(factory=set, init=False)
    _refill: IDelayedCall | None = field(default=None, init=False)
    _started: bool = field(default=False, init=False)
    used: int = field(default=0, init=False)

    @property
    def idlePids(self) -> list[int]:
        """
        The PIDs of the idle standby launchers, oldest first.
        """
        return [
            p.transport.pid
            for p in self._idle
            if not p.exited and p.transport is not None and p.transport.pid is not None
        ]

    def warm(self) -> None:
        """
        Start the standbys now (else they are started only after the first
        upstream).
        """
        self._started = True
        self._topUp()

    def refill(self) -> None:
        """
        Top the pool up (or trim it) soon: L{READY_REFILL_DELAY}, after the
        request that waited for the start has gone out, as spawning holds
        the reactor for a millisecond or two.  Nothing before the first
        upstream.
        """
        if self._started:
            self._scheduleRefill(READY_REFILL_DELAY)

    def spawn(
        self,
        processReactor: IReactorProcess,
        protocol: ProcessProtocol,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None = None,
        parentPid: int | None = None,
    ) -> IProcessTransport:
        """
        Start C{argv} (as L{spawnUpstream}, same arguments) through the
        oldest idle standby, or a new one if none is idle (or through a
        one-off launcher for another parent or reactor); schedule the
        pool's refill.
        """
        self._started = True
        if parentPid not in (None, os.getpid()) or processReactor is not self._processReactor:
            return spawnUpstream(processReactor, protocol, argv, env, cwd, parentPid)
        standby = self._takeIdle()
        self._scheduleRefill()
        if standby is None:
            standby = self._spawnStandby()
        else:
            self.used += 1
        return standby.attach(protocol, encodeCommand(list(argv), dict(env), cwd))

    def _takeIdle(self) -> _StandbyProtocol | None:
        while self._idle:
            standby = self._idle.pop(0)
            if not standby.exited:
                return standby
        return None

    def _spawnStandby(self) -> _StandbyProtocol:
        """
        Start a launcher in standby mode.

        @raise OSError: if it cannot be spawned.
        """
        protocol = _StandbyProtocol(self._freed)
        argv = standbyArgv()
        self._processReactor.spawnProcess(
            protocol, argv[0], argv, env=dict(os.environ), path=None, usePTY=False,
            childFDs=dict(CHILD_FDS),
        )
        self._launchers.add(protocol)
        protocol.ended.addCallback(lambda _: self._launchers.discard(protocol))
        return protocol

    def _freed(self, standby: _StandbyProtocol) -> None:
        """
        C{standby}'s upstream has ended: keep it for the next start, or end
        it once the service is stopping.
        """
        if not self.running:
            self._end(standby)
            return
        self._idle.append(standby)
        self._scheduleRefill()

    def _scheduleRefill(self, delay: float | None = None) -> None:
        """
        Top up in C{delay} seconds (default C{refillDelay}), or sooner if
        already scheduled sooner.
        """
        if not self.running:
            return
        if delay is None:
            delay = self._refillDelay
        when = self._clock.seconds() + delay
        if self._refill is not None and self._refill.active():
            if self._refill.getTime() <= when:
                return
            self._refill.cancel()
        self._refill = self._clock.callLater(delay, self._topUp)

    def _cancelRefill(self) -> None:
        if self._refill is not None and self._refill.active():
            self._refill.cancel()
        self._refill = None

    def _topUp(self) -> None:
        self._cancelRefill()
        self._idle = [p for p in self._idle if not p.exited]
        while len(self._idle) > self._size:
            self._end(self._idle.pop(0))
        while self.running and len(self._idle) < self._size:
            try:
                protocol = self._spawnStandby()
            except Exception:
                self.log.failure("could not start a standby launcher")
                return
            self._idle.append(protocol)

    @staticmethod
    def _end(standby: _StandbyProtocol) -> Deferred[None]:
        if not standby.exited and standby.transport is not None:
            standby.transport.closeStdin()
        return standby.ended

    def stopService(self) -> Deferred[None]:
        """
        Start no more standbys; end the idle ones (each exits when its stdin
        closes) and those in use once their upstream ends (the application
        stops every upstream); fires when all have exited.
        """
        super().stopService()
        self._cancelRefill()
        idle, self._idle = self._idle, []
        for standby in idle:
            self._end(standby)
        return DeferredList(
            [p.ended for p in self._launchers], consumeErrors=True
        ).addCallback(lambda _: None)
