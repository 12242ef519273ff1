# -*- test-case-name: test.upstream.test_standby -*-
"""
A launcher started ahead of need, so that starting a model does not wait
for a Python interpreter to start (the launcher's start-up was most of
what a swap cost llamaswap itself).

L{StandbyLaunchers} keeps an idle launcher (or a few) in I{standby} mode (see
L{llamaswap.upstream._launcher}): spawned with C{reactor.spawnProcess}
like any upstream (so llamaswap is still its parent and gets its output
and exit status through a C{ProcessProtocol}), already in its own session,
a child subreaper, and armed to die with llamaswap, waiting on its stdin
for a command.  L{StandbyLaunchers.spawn} hands an idle one the command
and the model's C{UpstreamProtocol}; the used one is replaced once the
model is ready (not while it boots) or a little later.  With no idle one
ready it spawns a launcher the ordinary way.  Nothing is started until the
first upstream is: a llamaswap that never starts one never runs a standby.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

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

from ._launcher import encodeCommand
from .process import CHILD_FDS, LAUNCHER, REPORT_FD, spawnUpstream

#: Seconds after a standby is used before it is replaced, unless
#: L{StandbyLaunchers.refill} is called sooner.
REFILL_DELAY = 0.5
#: Seconds after L{StandbyLaunchers.refill} before the used standbys are
#: replaced.
READY_REFILL_DELAY = 0.02
#: How many standbys are kept.
STANDBYS = 1


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


class _StandbyProtocol(ProcessProtocol):
    """
    The protocol of a standby launcher: idle until L{attach}ed to the
    protocol of the upstream it starts, then passes everything on to it.

    @ivar exited: whether the launcher has exited (an idle one only does
        when told to, or when it failed).
    @ivar ended: fires when its pipes are closed and it has exited.
    """

    log = Logger()

    def __init__(self) -> None:
        self.target: ProcessProtocol | None = None
        self.exited = False
        self.ended: Deferred[None] = Deferred()

    def attach(self, target: ProcessProtocol, command: bytes) -> IProcessTransport:
        """
        Send C{command} and pass this launcher to C{target} (whose
        C{connectionMade} runs now and closes stdin, which is the
        launcher's go).
        """
        assert self.transport is not None
        self.target = target
        self.transport.write(command)
        target.makeConnection(self.transport)
        return self.transport

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if self.target is not None:
            self.target.childDataReceived(childFD, data)
        elif childFD != REPORT_FD:
            self.log.warn("standby launcher: {data!r}", data=data[:500])

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
    Spawns upstreams through a launcher started in advance when one is
    idle, else as L{spawnUpstream} does.  A service: stopping it ends the
    idle launchers and starts no more.

    Up to C{size} standbys are kept.  They are replaced soon after
    L{refill} (the application calls it when an upstream becomes ready, so
    a replacement does not compete for the CPU with a booting server nor
    delay the request that waited for it) or, failing that, C{refillDelay}
    seconds after one was used.
    """

    log = Logger()

    _processReactor: IReactorProcess
    _clock: IReactorTime
    _refillDelay: float = REFILL_DELAY
    _size: int = STANDBYS
    _idle: list[_StandbyProtocol] = field(factory=list, init=False)
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
        Replace used standbys soon (L{READY_REFILL_DELAY}: after the request
        that waited for the start has gone out, as spawning holds the
        reactor for a millisecond or two), if any upstream was ever started.
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
        oldest idle standby if there is one and it suits (same reactor, we
        are its parent), else through a new launcher; either way schedule
        the standbys' refill.
        """
        self._started = True
        standby = self._takeIdle()
        self._scheduleRefill()
        suits = parentPid in (None, os.getpid()) and processReactor is self._processReactor
        if standby is not None and suits:
            self.used += 1
            return standby.attach(protocol, encodeCommand(list(argv), dict(env), cwd))
        if standby is not None:
            # Armed against us on our reactor: of no use here; keep it.
            self._idle.insert(0, standby)
        return spawnUpstream(processReactor, protocol, argv, env, cwd, parentPid)

    def _takeIdle(self) -> _StandbyProtocol | None:
        while self._idle:
            standby = self._idle.pop(0)
            if not standby.exited:
                return standby
        return None

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
        while self.running and len(self._idle) < self._size:
            protocol = _StandbyProtocol()
            try:
                argv = standbyArgv()
                self._processReactor.spawnProcess(
                    protocol, argv[0], argv, env=dict(os.environ), path=None, usePTY=False,
                    childFDs=dict(CHILD_FDS),
                )
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
        closes).
        """
        super().stopService()
        self._cancelRefill()
        idle, self._idle = self._idle, []
        return DeferredList([self._end(p) for p in idle], consumeErrors=True).addCallback(
            lambda _: None
        )
