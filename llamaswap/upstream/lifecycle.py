# -*- test-case-name: test.upstream.test_lifecycle -*-
"""
The lifecycle of one supervised upstream, as a pure state machine.

L{Lifecycle.handle} takes an event and the current time and returns a list
of effects for the shell (L{llamaswap.upstream.supervisor}) to carry out.
Nothing here touches the reactor, a clock, a process or a socket, so every
transition can be tested with plain objects.

States: C{stopped -> starting -> ready -> stopping -> stopped}, and
C{shutdown} (terminal).  Requests are queued, never decided from a
snapshot: a start requested while C{stopping} waits for the stop and then
starts (llama-swap #946); a stop requested while C{starting} aborts the start
and kills the child; concurrent stops share one stop; a stop supersedes
starts that were queued behind an earlier stop (operations take effect in
the order they were requested).

Two optional, bounded hooks let the shell do work at fixed points
(L{Hook}): after the health probe, before start waiters are granted (the
state stays C{starting}), and before a ready child is signalled to stop
(the state is already C{stopping}; the stop's grace counts from the hook's
end).  The machine arms L{Timer.HOOK} for each and goes on when it fires,
so a hook can delay but never block a start or a stop.

Waiters are opaque hashable tokens chosen by the shell; the machine only
says which tokens succeed or fail, and with what L{Reason}.
"""

from __future__ import annotations

import signal
from enum import Enum
from typing import Hashable, Union

from attrs import define, field, frozen, setters


class State(Enum):
    """
    Where an upstream is in its lifecycle.
    """

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    SHUTDOWN = "shutdown"


class Timer(Enum):
    """
    The timers the machine arms; at most one of each kind is pending.
    """

    START_DEADLINE = "start-deadline"
    STOP_ESCALATION = "stop-escalation"
    TTL = "ttl"
    HOOK = "hook"


class Hook(Enum):
    """
    Bounded work the shell may do at two points of the lifecycle (e.g.
    saving and restoring llama-server's prompt cache).
    """

    #: After the health probe succeeded, before start waiters are granted.
    AFTER_READY = "after-ready"
    #: Before a ready child is signalled to stop.
    BEFORE_STOP = "before-stop"


class _Child(Enum):
    NONE = "none"
    SPAWNING = "spawning"
    RUNNING = "running"


# ---------------------------------------------------------------- events


@frozen
class StartRequested:
    """
    A caller wants the upstream ready (C{ensureReady}).
    """

    waiter: Hashable


@frozen
class StopRequested:
    """
    A caller wants the upstream stopped, with C{timeout} seconds of grace
    before C{SIGKILL}.
    """

    waiter: Hashable
    timeout: float


@frozen
class ShutdownRequested:
    """
    The owner is going away: fail everything, kill the child with C{grace}
    seconds of grace, refuse everything afterwards.
    """

    waiter: Hashable
    grace: float


@frozen
class WaiterCancelled:
    """
    A caller gave up; forget its token (the operation itself goes on).
    """

    waiter: Hashable


@frozen
class Spawned:
    """
    The child of start C{attempt} is running as C{pid}.
    """

    attempt: int
    pid: int


@frozen
class SpawnFailed:
    """
    The child of start C{attempt} could not be spawned at all.
    """

    attempt: int
    message: str


@frozen
class ProbeSucceeded:
    """
    The health endpoint of start C{attempt} answered 200.
    """

    attempt: int


@frozen
class ChildExited:
    """
    The child of start C{attempt} is gone.  C{exitCode} is set for a normal
    exit, C{signal} when it was killed by a signal.
    """

    attempt: int
    exitCode: int | None = None
    signal: int | None = None


@frozen
class StopCommandFailed:
    """
    C{cmdStop} could not be run (unparseable or not spawnable).
    """

    attempt: int
    message: str


@frozen
class TimerFired:
    """
    A timer armed by L{ArmTimer} went off.
    """

    timer: Timer


@frozen
class HookDone:
    """
    The L{RunHook} C{hook} for start C{attempt} finished, however it ended.
    """

    hook: Hook
    attempt: int


@frozen
class RequestStarted:
    """
    A proxied request for this upstream began (the in-flight count rises).
    """


@frozen
class RequestFinished:
    """
    A proxied request for this upstream ended, however it ended.
    """


@frozen
class IdleTimeoutChanged:
    """
    A request set the idle timeout from now on (C{ttl}/C{keep_alive}):
    seconds, C{0} to unload as soon as it is idle, L{None} never.
    """

    seconds: float | None


@frozen
class SettingsChanged:
    """
    A reload changed the timeouts of the running model (the process is
    kept): the next start, stop and idle period use the new values.
    """

    healthCheckTimeout: float
    unloadTimeout: float
    ttl: float


Event = Union[
    StartRequested,
    StopRequested,
    ShutdownRequested,
    WaiterCancelled,
    Spawned,
    SpawnFailed,
    ProbeSucceeded,
    ChildExited,
    StopCommandFailed,
    TimerFired,
    HookDone,
    RequestStarted,
    RequestFinished,
    IdleTimeoutChanged,
    SettingsChanged,
]


# ---------------------------------------------------------------- reasons


@frozen
class SpawnFailure:
    """
    The command could not be spawned; C{message} says why.
    """

    message: str


@frozen
class ExitedDuringStart:
    """
    The child exited before it became ready.
    """

    exitCode: int | None
    signal: int | None


@frozen
class HealthCheckTimeout:
    """
    The child did not become healthy within C{timeout} seconds.
    """

    timeout: float


@frozen
class StartAborted:
    """
    A stop was requested before the start completed.
    """


@frozen
class ShutDown:
    """
    The upstream was shut down.
    """


Reason = Union[SpawnFailure, ExitedDuringStart, HealthCheckTimeout, StartAborted, ShutDown]


# ---------------------------------------------------------------- effects


@frozen
class Spawn:
    """
    Spawn the child for start C{attempt}; answer with L{Spawned} or
    L{SpawnFailed}, and later L{ChildExited}.
    """

    attempt: int


@frozen
class StartProbe:
    """
    Start probing the health endpoint; answer with L{ProbeSucceeded}.
    """

    attempt: int


@frozen
class CancelProbe:
    """
    Stop probing.
    """


@frozen
class ArmTimer:
    """
    (Re)arm C{timer} to fire L{TimerFired} after C{delay} seconds,
    replacing a pending one of the same kind.
    """

    timer: Timer
    delay: float


@frozen
class CancelTimer:
    """
    Cancel C{timer} if it is pending.
    """

    timer: Timer


@frozen
class SignalGroup:
    """
    Send C{signal} to the child's process group.
    """

    signal: int


@frozen
class RunStopCommand:
    """
    Run the configured C{cmdStop} for the child of C{attempt}, detached;
    answer L{StopCommandFailed} only if it cannot be run at all.
    """

    attempt: int


@frozen
class RunHook:
    """
    Run C{hook} for the child of C{attempt}; answer L{HookDone} (the
    machine goes on without it when its L{Timer.HOOK} fires first).
    """

    hook: Hook
    attempt: int


@frozen
class StateChanged:
    """
    The state changed (never C{old == new}).
    """

    old: State
    new: State


@frozen
class Succeed:
    """
    These waiters' operations succeeded.
    """

    waiters: tuple[Hashable, ...]


@frozen
class Fail:
    """
    These waiters' operations failed for C{reason}.
    """

    waiters: tuple[Hashable, ...]
    reason: Reason


@frozen
class Note:
    """
    Something worth logging happened: C{what} is one of C{"unexpected-exit"},
    C{"ttl-unload"}, C{"escalate"}, C{"unbalanced-finish"}, C{"hook-timeout"}.
    """

    what: str
    details: tuple[tuple[str, object], ...] = field(default=())


Effect = Union[
    Spawn,
    StartProbe,
    CancelProbe,
    ArmTimer,
    CancelTimer,
    SignalGroup,
    RunStopCommand,
    RunHook,
    StateChanged,
    Succeed,
    Fail,
    Note,
]


# ---------------------------------------------------------------- machine


def _positiveOrNone(seconds: float) -> float | None:
    return seconds if seconds > 0 else None


# The TTL converter runs at construction only: handlers assign the
# already-normalised value, and the machine's hot path keeps plain
# attribute writes.
@define(eq=False, slots=False, on_setattr=setters.NO_OP)
class Lifecycle:
    """
    The state machine of one upstream.

    @ivar state: the current L{State} (advisory for callers: never decide
        to start from it, send L{StartRequested} instead).
    @ivar inFlight: requests currently being served.
    @ivar attempt: the number of the latest start attempt (0 before any).
    """

    #: Seconds from spawn to readiness.
    _healthCheckTimeout: float = field(kw_only=True)
    #: Grace before C{SIGKILL} on a TTL unload.
    _unloadTimeout: float = field(kw_only=True)
    #: Idle seconds before unloading; C{0} (stored as L{None}) disables.
    _ttl: float | None = field(default=0.0, kw_only=True, converter=_positiveOrNone)
    #: C{False} when C{checkEndpoint} is C{none}: ready at spawn.
    _probe: bool = field(default=True, kw_only=True)
    #: C{True} when C{cmdStop} replaces C{SIGTERM}.
    _stopCommand: bool = field(default=False, kw_only=True)
    #: Grace before C{SIGKILL} after a failed start.
    _abortGrace: float = field(default=5.0, kw_only=True)
    #: When positive, a healthy child stays C{starting} while
    #: L{Hook.AFTER_READY} runs, at most this long.
    _afterReadyTimeout: float = field(default=0.0, kw_only=True)
    #: When positive, stopping a ready child runs L{Hook.BEFORE_STOP}
    #: first, for at most this long, before the stop signal (the stop's
    #: grace starts after it).
    _beforeStopTimeout: float = field(default=0.0, kw_only=True)
    #: The hook running now, if any.
    _hook: Hook | None = field(default=None, init=False)
    #: The grace of a stop that waits for L{Hook.BEFORE_STOP}.
    _pendingGrace: float | None = field(default=None, init=False)
    state: State = field(default=State.STOPPED, init=False)
    inFlight: int = field(default=0, init=False)
    attempt: int = field(default=0, init=False)
    _child: _Child = field(default=_Child.NONE, init=False)
    _startWaiters: list[Hashable] = field(factory=list, init=False)
    _queuedStarts: list[Hashable] = field(factory=list, init=False)
    _stopWaiters: list[Hashable] = field(factory=list, init=False)
    _shutdownWaiters: list[Hashable] = field(factory=list, init=False)
    _escalateAt: float | None = field(default=None, init=False)
    _killed: bool = field(default=False, init=False)

    @property
    def childAlive(self) -> bool:
        """
        Whether a child is (or is being) spawned and has not exited.
        """
        return self._child is not _Child.NONE

    def handle(self, event: Event, now: float) -> list[Effect]:
        """
        Apply C{event}, which happened at C{now}, and say what to do.
        """
        effects: list[Effect] = []
        handler = getattr(self, "_on" + type(event).__name__)
        handler(event, now, effects)
        return effects

    # -- helpers

    def _setState(self, new: State, effects: list[Effect]) -> None:
        if new is not self.state:
            effects.append(StateChanged(self.state, new))
            self.state = new

    def _takeWaiters(self, waiters: list[Hashable]) -> tuple[Hashable, ...]:
        taken = tuple(waiters)
        waiters.clear()
        return taken

    def _succeed(self, waiters: list[Hashable], effects: list[Effect]) -> None:
        if waiters:
            effects.append(Succeed(self._takeWaiters(waiters)))

    def _fail(self, waiters: list[Hashable], reason: Reason, effects: list[Effect]) -> None:
        if waiters:
            effects.append(Fail(self._takeWaiters(waiters), reason))

    def _beginStart(self, waiters: list[Hashable], effects: list[Effect]) -> None:
        self.attempt += 1
        self._child = _Child.SPAWNING
        self._killed = False
        self._escalateAt = None
        self._startWaiters = list(waiters)
        self._setState(State.STARTING, effects)
        effects.append(ArmTimer(Timer.START_DEADLINE, self._healthCheckTimeout))
        effects.append(Spawn(self.attempt))

    def _becomeHealthy(self, effects: list[Effect]) -> None:
        """
        The child is healthy: run L{Hook.AFTER_READY} if configured, else
        become ready now.
        """
        if self._afterReadyTimeout > 0:
            effects.append(CancelTimer(Timer.START_DEADLINE))
            self._runHook(Hook.AFTER_READY, self._afterReadyTimeout, effects)
        else:
            self._becomeReady(effects)

    def _runHook(self, hook: Hook, timeout: float, effects: list[Effect]) -> None:
        self._hook = hook
        effects.append(ArmTimer(Timer.HOOK, timeout))
        effects.append(RunHook(hook, self.attempt))

    def _hookOver(self, hook: Hook, now: float, effects: list[Effect]) -> None:
        """
        C{hook} finished or timed out: carry on where it paused.
        """
        if self._hook is not hook:
            return
        self._hook = None
        effects.append(CancelTimer(Timer.HOOK))
        if hook is Hook.AFTER_READY:
            if self.state is State.STARTING and self._child is _Child.RUNNING:
                self._becomeReady(effects)
        elif self.state in (State.STOPPING, State.SHUTDOWN) and self._pendingGrace is not None:
            grace, self._pendingGrace = self._pendingGrace, None
            self._signalStop(grace, now, effects)

    def _becomeReady(self, effects: list[Effect]) -> None:
        effects.append(CancelTimer(Timer.START_DEADLINE))
        self._setState(State.READY, effects)
        self._armIdle(effects)
        self._succeed(self._startWaiters, effects)

    def _armIdle(self, effects: list[Effect]) -> None:
        if self._ttl is not None and self.inFlight == 0 and self.state is State.READY:
            effects.append(ArmTimer(Timer.TTL, self._ttl))

    def _gracefulSignal(self, effects: list[Effect]) -> None:
        if self._stopCommand:
            effects.append(RunStopCommand(self.attempt))
        else:
            effects.append(SignalGroup(signal.SIGTERM))

    def _beginStop(self, timeout: float, now: float, newState: State, effects: list[Effect]) -> None:
        """
        Leave C{starting}/C{ready} for C{newState} (C{stopping} or
        C{shutdown}) and start taking the child down.
        """
        wasReady = self.state is State.READY
        if self.state is State.STARTING:
            effects.append(CancelProbe())
            effects.append(CancelTimer(Timer.START_DEADLINE))
            self._clearHook(effects)
        effects.append(CancelTimer(Timer.TTL))
        self._setState(newState, effects)
        self._killed = False
        if wasReady and self._beforeStopTimeout > 0 and self._child is _Child.RUNNING:
            self._pendingGrace = timeout
            self._runHook(Hook.BEFORE_STOP, self._beforeStopTimeout, effects)
            return
        self._signalStop(timeout, now, effects)

    def _signalStop(self, timeout: float, now: float, effects: list[Effect]) -> None:
        """
        Send the graceful stop and arm the escalation to C{SIGKILL}.
        """
        if self._child is _Child.RUNNING:
            self._gracefulSignal(effects)
        self._escalateAt = now + timeout
        effects.append(ArmTimer(Timer.STOP_ESCALATION, timeout))

    def _shortenGrace(self, timeout: float, now: float, effects: list[Effect]) -> None:
        """
        Bring the C{SIGKILL} forward if C{now + timeout} is earlier than the
        pending escalation.
        """
        if self._killed or not self.childAlive:
            return
        if self._pendingGrace is not None:
            # Still in Hook.BEFORE_STOP: the grace counts from its end.
            self._pendingGrace = min(self._pendingGrace, timeout)
            return
        deadline = now + timeout
        if self._escalateAt is None or deadline < self._escalateAt:
            self._escalateAt = deadline
            effects.append(ArmTimer(Timer.STOP_ESCALATION, timeout))

    def _childGone(self, effects: list[Effect]) -> None:
        """
        The child is gone while stopping or shut down: finish the stop.
        """
        self._child = _Child.NONE
        self._escalateAt = None
        effects.append(CancelTimer(Timer.STOP_ESCALATION))
        self._clearHook(effects)
        if self.state is State.SHUTDOWN:
            self._succeed(self._stopWaiters, effects)
            self._succeed(self._shutdownWaiters, effects)
            return
        self._setState(State.STOPPED, effects)
        self._succeed(self._stopWaiters, effects)
        if self._queuedStarts:
            queued = self._takeWaiters(self._queuedStarts)
            self._beginStart(list(queued), effects)

    def _clearHook(self, effects: list[Effect]) -> None:
        if self._hook is not None:
            self._hook = None
            effects.append(CancelTimer(Timer.HOOK))
        self._pendingGrace = None

    # -- event handlers

    def _onStartRequested(self, event: StartRequested, now: float, effects: list[Effect]) -> None:
        if self.state is State.STOPPED:
            self._beginStart([event.waiter], effects)
        elif self.state is State.STARTING:
            self._startWaiters.append(event.waiter)
        elif self.state is State.READY:
            effects.append(Succeed((event.waiter,)))
            # Being asked for counts as use: restart the idle clock.
            self._armIdle(effects)
        elif self.state is State.STOPPING:
            self._queuedStarts.append(event.waiter)
        else:
            effects.append(Fail((event.waiter,), ShutDown()))

    def _onStopRequested(self, event: StopRequested, now: float, effects: list[Effect]) -> None:
        if self.state is State.STOPPED:
            effects.append(Succeed((event.waiter,)))
        elif self.state is State.STARTING:
            self._stopWaiters.append(event.waiter)
            self._fail(self._startWaiters, StartAborted(), effects)
            self._beginStop(event.timeout, now, State.STOPPING, effects)
        elif self.state is State.READY:
            self._stopWaiters.append(event.waiter)
            self._beginStop(event.timeout, now, State.STOPPING, effects)
        elif self.state is State.STOPPING:
            self._stopWaiters.append(event.waiter)
            self._fail(self._queuedStarts, StartAborted(), effects)
            self._shortenGrace(event.timeout, now, effects)
        else:
            self._awaitExit(self._stopWaiters, event.waiter, event.timeout, now, effects)

    def _onShutdownRequested(self, event: ShutdownRequested, now: float, effects: list[Effect]) -> None:
        self._fail(self._startWaiters, ShutDown(), effects)
        self._fail(self._queuedStarts, ShutDown(), effects)
        if self.state in (State.STARTING, State.READY):
            self._shutdownWaiters.append(event.waiter)
            self._beginStop(event.grace, now, State.SHUTDOWN, effects)
        elif self.state is State.STOPPING:
            self._setState(State.SHUTDOWN, effects)
            self._shutdownWaiters.append(event.waiter)
            self._shortenGrace(event.grace, now, effects)
        elif self.state is State.STOPPED:
            self._setState(State.SHUTDOWN, effects)
            effects.append(Succeed((event.waiter,)))
        else:
            self._awaitExit(self._shutdownWaiters, event.waiter, event.grace, now, effects)

    def _awaitExit(
        self,
        waiters: list[Hashable],
        waiter: Hashable,
        grace: float,
        now: float,
        effects: list[Effect],
    ) -> None:
        """
        Outside the stop states: C{waiter} waits among C{waiters} for a
        child still alive to exit (within C{grace}), else is told at once.
        """
        if self.childAlive:
            waiters.append(waiter)
            self._shortenGrace(grace, now, effects)
        else:
            effects.append(Succeed((waiter,)))

    def _onWaiterCancelled(self, event: WaiterCancelled, now: float, effects: list[Effect]) -> None:
        for waiters in (
            self._startWaiters,
            self._queuedStarts,
            self._stopWaiters,
            self._shutdownWaiters,
        ):
            if event.waiter in waiters:
                waiters.remove(event.waiter)

    def _onSpawned(self, event: Spawned, now: float, effects: list[Effect]) -> None:
        if event.attempt != self.attempt or self._child is not _Child.SPAWNING:
            return
        self._child = _Child.RUNNING
        if self.state is State.STARTING:
            if self._probe:
                effects.append(StartProbe(self.attempt))
            else:
                self._becomeHealthy(effects)
        elif self.state in (State.STOPPING, State.SHUTDOWN):
            # A stop overtook the spawn: take the new child down now.
            if self._killed:
                effects.append(SignalGroup(signal.SIGKILL))
            else:
                self._gracefulSignal(effects)

    def _onSpawnFailed(self, event: SpawnFailed, now: float, effects: list[Effect]) -> None:
        if event.attempt != self.attempt or self._child is not _Child.SPAWNING:
            return
        if self.state is State.STARTING:
            self._child = _Child.NONE
            effects.append(CancelTimer(Timer.START_DEADLINE))
            self._setState(State.STOPPED, effects)
            self._fail(self._startWaiters, SpawnFailure(event.message), effects)
        else:
            self._childGone(effects)

    def _onProbeSucceeded(self, event: ProbeSucceeded, now: float, effects: list[Effect]) -> None:
        if (
            event.attempt == self.attempt
            and self.state is State.STARTING
            and self._child is _Child.RUNNING
            and self._hook is None
        ):
            self._becomeHealthy(effects)

    def _onChildExited(self, event: ChildExited, now: float, effects: list[Effect]) -> None:
        if event.attempt != self.attempt or not self.childAlive:
            return
        if self.state is State.STARTING:
            self._child = _Child.NONE
            effects.append(CancelProbe())
            effects.append(CancelTimer(Timer.START_DEADLINE))
            self._clearHook(effects)
            self._setState(State.STOPPED, effects)
            self._fail(self._startWaiters, ExitedDuringStart(event.exitCode, event.signal), effects)
        elif self.state is State.READY:
            self._child = _Child.NONE
            effects.append(CancelTimer(Timer.TTL))
            effects.append(
                Note(
                    "unexpected-exit",
                    (("exitCode", event.exitCode), ("signal", event.signal)),
                )
            )
            self._setState(State.STOPPED, effects)
        else:
            self._childGone(effects)

    def _onStopCommandFailed(self, event: StopCommandFailed, now: float, effects: list[Effect]) -> None:
        if (
            event.attempt == self.attempt
            and self.state in (State.STOPPING, State.SHUTDOWN)
            and self._child is _Child.RUNNING
            and not self._killed
            # A stop command of an earlier stop failing late: nothing
            # signals the child while its before-stop hook runs.
            and self._hook is not Hook.BEFORE_STOP
        ):
            effects.append(SignalGroup(signal.SIGTERM))

    def _onTimerFired(self, event: TimerFired, now: float, effects: list[Effect]) -> None:
        if event.timer is Timer.START_DEADLINE:
            if self.state is State.STARTING:
                self._fail(self._startWaiters, HealthCheckTimeout(self._healthCheckTimeout), effects)
                self._beginStop(self._abortGrace, now, State.STOPPING, effects)
        elif event.timer is Timer.STOP_ESCALATION:
            if self.state in (State.STOPPING, State.SHUTDOWN) and self.childAlive and not self._killed:
                self._killed = True
                self._escalateAt = None
                effects.append(Note("escalate", ()))
                if self._child is _Child.RUNNING:
                    effects.append(SignalGroup(signal.SIGKILL))
        elif event.timer is Timer.HOOK:
            if self._hook is not None:
                effects.append(Note("hook-timeout", (("hook", self._hook.value),)))
                self._hookOver(self._hook, now, effects)
        elif event.timer is Timer.TTL:
            if self.state is State.READY and self.inFlight == 0:
                effects.append(Note("ttl-unload", (("ttl", self._ttl),)))
                self._beginStop(self._unloadTimeout, now, State.STOPPING, effects)

    def _onHookDone(self, event: HookDone, now: float, effects: list[Effect]) -> None:
        if event.attempt == self.attempt:
            self._hookOver(event.hook, now, effects)

    def _onRequestStarted(self, event: RequestStarted, now: float, effects: list[Effect]) -> None:
        self.inFlight += 1
        if self.state is State.READY:
            effects.append(CancelTimer(Timer.TTL))

    def _onIdleTimeoutChanged(
        self, event: IdleTimeoutChanged, now: float, effects: list[Effect]
    ) -> None:
        self._ttl = event.seconds
        if self.state is State.READY and self.inFlight == 0:
            effects.append(CancelTimer(Timer.TTL))
            self._armIdle(effects)

    def _onSettingsChanged(self, event: SettingsChanged, now: float, effects: list[Effect]) -> None:
        self._healthCheckTimeout = event.healthCheckTimeout
        self._unloadTimeout = event.unloadTimeout
        ttl = event.ttl if event.ttl > 0 else None
        if ttl == self._ttl:
            return
        self._ttl = ttl
        if self.state is State.READY and self.inFlight == 0:
            # An idle model's timer restarts with the new TTL (none: never).
            effects.append(CancelTimer(Timer.TTL))
            self._armIdle(effects)

    def _onRequestFinished(self, event: RequestFinished, now: float, effects: list[Effect]) -> None:
        if self.inFlight == 0:
            effects.append(Note("unbalanced-finish", ()))
            return
        self.inFlight -= 1
        self._armIdle(effects)
