"""
Tests for L{llamaswap.upstream.lifecycle}: the pure state machine, driven
with plain events and times.
"""

from __future__ import annotations

import signal
from typing import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.upstream.lifecycle import (
    ArmTimer,
    CancelProbe,
    CancelTimer,
    ChildExited,
    Effect,
    Event,
    ExitedDuringStart,
    Fail,
    HealthCheckTimeout,
    Hook,
    HookDone,
    IdleTimeoutChanged,
    Lifecycle,
    Note,
    ProbeSucceeded,
    RequestFinished,
    RequestStarted,
    RunHook,
    RunStopCommand,
    SettingsChanged,
    ShutDown,
    ShutdownRequested,
    SignalGroup,
    Spawn,
    Spawned,
    SpawnFailed,
    SpawnFailure,
    StartAborted,
    StartProbe,
    StartRequested,
    State,
    StateChanged,
    StopCommandFailed,
    StopRequested,
    Succeed,
    Timer,
    TimerFired,
    WaiterCancelled,
)

TERM = signal.SIGTERM
KILL = signal.SIGKILL


def makeMachine(**kwargs: object) -> Lifecycle:
    """
    A machine with small, distinct timeouts.
    """
    options: dict = dict(healthCheckTimeout=10.0, unloadTimeout=3.0, ttl=0.0, probe=True)
    options.update(kwargs)
    return Lifecycle(**options)


def toReady(m: Lifecycle, waiter: str = "w0") -> None:
    """
    Drive C{m} from stopped to ready.
    """
    m.handle(StartRequested(waiter), 0)
    m.handle(Spawned(m.attempt, 100 + m.attempt), 0)
    m.handle(ProbeSucceeded(m.attempt), 0.1)


def toStopping(m: Lifecycle) -> None:
    """
    Drive C{m} from stopped to stopping (after a ready).
    """
    toReady(m)
    m.handle(StopRequested("s0", 3.0), 1.0)


def stateChanges(effects: list[Effect]) -> list[tuple[State, State]]:
    """
    The state changes among C{effects}.
    """
    return [(e.old, e.new) for e in effects if isinstance(e, StateChanged)]


class StartTests(SynchronousTestCase):
    """
    Starting: stopped -> starting -> ready, joins and failures.
    """

    def test_startFromStopped(self) -> None:
        """
        A start request moves to C{starting}, arms the start deadline and
        spawns attempt 1.
        """
        m = makeMachine()
        effects = m.handle(StartRequested("a"), 0)
        self.assertEqual(
            effects,
            [
                StateChanged(State.STOPPED, State.STARTING),
                ArmTimer(Timer.START_DEADLINE, 10.0),
                Spawn(1),
            ],
        )
        self.assertIs(m.state, State.STARTING)

    def test_spawnedStartsProbe(self) -> None:
        """
        Once spawned, the health probe starts.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        self.assertEqual(m.handle(Spawned(1, 42), 0), [StartProbe(1)])

    def test_probeSucceededMakesReady(self) -> None:
        """
        A healthy probe makes it ready and releases every joined waiter.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        self.assertEqual(m.handle(StartRequested("b"), 0), [])
        m.handle(Spawned(1, 42), 0)
        self.assertEqual(m.handle(StartRequested("c"), 0.05), [])
        self.assertEqual(
            m.handle(ProbeSucceeded(1), 0.1),
            [
                CancelTimer(Timer.START_DEADLINE),
                StateChanged(State.STARTING, State.READY),
                Succeed(("a", "b", "c")),
            ],
        )

    def test_noProbeReadyAtSpawn(self) -> None:
        """
        With C{checkEndpoint: none} the upstream is ready when spawned.
        """
        m = makeMachine(probe=False)
        m.handle(StartRequested("a"), 0)
        self.assertEqual(
            m.handle(Spawned(1, 42), 0),
            [
                CancelTimer(Timer.START_DEADLINE),
                StateChanged(State.STARTING, State.READY),
                Succeed(("a",)),
            ],
        )

    def test_startWhenReady(self) -> None:
        """
        A start request while ready succeeds at once, without any spawn.
        """
        m = makeMachine()
        toReady(m)
        self.assertEqual(m.handle(StartRequested("b"), 1), [Succeed(("b",))])

    def test_spawnFailed(self) -> None:
        """
        A spawn failure goes back to stopped and fails every waiter with
        the message.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(StartRequested("b"), 0)
        self.assertEqual(
            m.handle(SpawnFailed(1, "no such file"), 0),
            [
                CancelTimer(Timer.START_DEADLINE),
                StateChanged(State.STARTING, State.STOPPED),
                Fail(("a", "b"), SpawnFailure("no such file")),
            ],
        )

    def test_exitDuringStartFailsAtOnce(self) -> None:
        """
        A child exiting while starting fails the start immediately, with its
        exit status, not at the deadline.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(Spawned(1, 42), 0)
        self.assertEqual(
            m.handle(ChildExited(1, 3, None), 0.2),
            [
                CancelProbe(),
                CancelTimer(Timer.START_DEADLINE),
                StateChanged(State.STARTING, State.STOPPED),
                Fail(("a",), ExitedDuringStart(3, None)),
            ],
        )

    def test_exitBySignalDuringStart(self) -> None:
        """
        A child killed by a signal while starting reports the signal.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(Spawned(1, 42), 0)
        effects = m.handle(ChildExited(1, None, 9), 0.2)
        self.assertIn(Fail(("a",), ExitedDuringStart(None, 9)), effects)

    def test_startDeadline(self) -> None:
        """
        At the deadline the waiters fail with a health-check timeout and the
        child is stopped with the abort grace; then it is stopped.
        """
        m = makeMachine(abortGrace=5.0)
        m.handle(StartRequested("a"), 0)
        m.handle(Spawned(1, 42), 0)
        self.assertEqual(
            m.handle(TimerFired(Timer.START_DEADLINE), 10),
            [
                Fail(("a",), HealthCheckTimeout(10.0)),
                CancelProbe(),
                CancelTimer(Timer.START_DEADLINE),
                CancelTimer(Timer.TTL),
                StateChanged(State.STARTING, State.STOPPING),
                SignalGroup(TERM),
                ArmTimer(Timer.STOP_ESCALATION, 5.0),
            ],
        )
        self.assertEqual(
            m.handle(ChildExited(1, None, TERM), 10.5),
            [
                CancelTimer(Timer.STOP_ESCALATION),
                StateChanged(State.STOPPING, State.STOPPED),
            ],
        )

    def test_restartAfterFailure(self) -> None:
        """
        After a failed start a new request starts a new attempt.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(Spawned(1, 42), 0)
        m.handle(ChildExited(1, 1, None), 0.1)
        effects = m.handle(StartRequested("b"), 0.2)
        self.assertIn(Spawn(2), effects)
        self.assertEqual(m.attempt, 2)


class StopTests(SynchronousTestCase):
    """
    Stopping: graceful signal, escalation, idempotence, sharing.
    """

    def test_stopWhenStopped(self) -> None:
        """
        Stopping a stopped upstream succeeds at once and changes nothing.
        """
        m = makeMachine()
        self.assertEqual(m.handle(StopRequested("s", 3), 0), [Succeed(("s",))])
        self.assertIs(m.state, State.STOPPED)

    def test_stopReady(self) -> None:
        """
        Stopping a ready upstream sends SIGTERM to its group and arms the
        escalation timer with the given timeout.
        """
        m = makeMachine()
        toReady(m)
        self.assertEqual(
            m.handle(StopRequested("s", 7.0), 1),
            [
                CancelTimer(Timer.TTL),
                StateChanged(State.READY, State.STOPPING),
                SignalGroup(TERM),
                ArmTimer(Timer.STOP_ESCALATION, 7.0),
            ],
        )
        self.assertEqual(
            m.handle(ChildExited(1, 0, None), 2),
            [
                CancelTimer(Timer.STOP_ESCALATION),
                StateChanged(State.STOPPING, State.STOPPED),
                Succeed(("s",)),
            ],
        )

    def test_concurrentStopsShareOneStop(self) -> None:
        """
        A second stop while stopping sends nothing new; both succeed when
        the child is gone.
        """
        m = makeMachine()
        toStopping(m)
        self.assertEqual(m.handle(StopRequested("s1", 3.0), 1.5), [])
        effects = m.handle(ChildExited(1, 0, None), 2)
        self.assertIn(Succeed(("s0", "s1")), effects)

    def test_stopAgainAfterStopped(self) -> None:
        """
        Stop is idempotent: once stopped, another stop succeeds at once.
        """
        m = makeMachine()
        toStopping(m)
        m.handle(ChildExited(1, 0, None), 2)
        self.assertEqual(m.handle(StopRequested("s2", 3.0), 3), [Succeed(("s2",))])

    def test_escalation(self) -> None:
        """
        When the grace runs out, SIGKILL goes to the group, once.
        """
        m = makeMachine()
        toStopping(m)
        self.assertEqual(
            m.handle(TimerFired(Timer.STOP_ESCALATION), 4.0),
            [Note("escalate", ()), SignalGroup(KILL)],
        )
        self.assertEqual(m.handle(TimerFired(Timer.STOP_ESCALATION), 5.0), [])
        self.assertIs(m.state, State.STOPPING)

    def test_shorterTimeoutBringsKillForward(self) -> None:
        """
        A later stop with an earlier deadline re-arms the escalation; a
        later deadline does not.
        """
        m = makeMachine()
        toStopping(m)  # deadline 1.0 + 3.0 = 4.0
        self.assertEqual(m.handle(StopRequested("s1", 10.0), 2.0), [])
        self.assertEqual(
            m.handle(StopRequested("s2", 0.5), 2.0),
            [ArmTimer(Timer.STOP_ESCALATION, 0.5)],
        )

    def test_stopCommand(self) -> None:
        """
        With C{cmdStop} configured no SIGTERM is sent; if it cannot be run,
        SIGTERM is the fallback.
        """
        m = makeMachine(stopCommand=True)
        toReady(m)
        effects = m.handle(StopRequested("s", 3.0), 1)
        self.assertIn(RunStopCommand(1), effects)
        self.assertNotIn(SignalGroup(TERM), effects)
        self.assertEqual(m.handle(StopCommandFailed(1, "empty command"), 1.1), [SignalGroup(TERM)])

    def test_stopCommandFailedAfterKill(self) -> None:
        """
        A cmdStop failure reported after the SIGKILL sends nothing.
        """
        m = makeMachine(stopCommand=True)
        toReady(m)
        m.handle(StopRequested("s", 3.0), 1)
        m.handle(TimerFired(Timer.STOP_ESCALATION), 4)
        self.assertEqual(m.handle(StopCommandFailed(1, "x"), 4.1), [])

    def test_stopDuringStartAborts(self) -> None:
        """
        A stop during a start fails the start's waiters with "aborted",
        stops probing and takes the child down.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(Spawned(1, 42), 0)
        self.assertEqual(
            m.handle(StopRequested("s", 2.0), 0.5),
            [
                Fail(("a",), StartAborted()),
                CancelProbe(),
                CancelTimer(Timer.START_DEADLINE),
                CancelTimer(Timer.TTL),
                StateChanged(State.STARTING, State.STOPPING),
                SignalGroup(TERM),
                ArmTimer(Timer.STOP_ESCALATION, 2.0),
            ],
        )
        self.assertIn(Succeed(("s",)), m.handle(ChildExited(1, None, TERM), 0.6))
        self.assertIs(m.state, State.STOPPED)

    def test_stopBeforeSpawnedReported(self) -> None:
        """
        A stop that overtakes the spawn signals the child as soon as it is
        reported spawned; an escalation that came first makes that SIGKILL.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        effects = m.handle(StopRequested("s", 1.0), 0)
        self.assertNotIn(SignalGroup(TERM), effects)
        self.assertEqual(m.handle(Spawned(1, 42), 0.1), [SignalGroup(TERM)])

        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(StopRequested("s", 1.0), 0)
        self.assertEqual(m.handle(TimerFired(Timer.STOP_ESCALATION), 1), [Note("escalate", ())])
        self.assertEqual(m.handle(Spawned(1, 42), 1.1), [SignalGroup(KILL)])

    def test_spawnFailedWhileStopping(self) -> None:
        """
        A spawn that fails after a stop overtook it completes the stop.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(StopRequested("s", 1.0), 0)
        effects = m.handle(SpawnFailed(1, "nope"), 0)
        self.assertIn(Succeed(("s",)), effects)
        self.assertIs(m.state, State.STOPPED)


class StartDuringStopTests(SynchronousTestCase):
    """
    llama-swap #946: a start requested while stopping waits for the stop,
    then starts; it never hangs and is never answered from a stale state.
    """

    def test_ensureReadyDuringStop(self) -> None:
        """
        The start is queued; when the child is gone the stop succeeds and a
        new attempt is spawned for the queued waiter.
        """
        m = makeMachine()
        toStopping(m)
        self.assertEqual(m.handle(StartRequested("late"), 1.5), [])
        self.assertEqual(
            m.handle(TimerFired(Timer.STOP_ESCALATION), 4.0),
            [Note("escalate", ()), SignalGroup(KILL)],
        )
        effects = m.handle(ChildExited(1, None, KILL), 4.01)
        self.assertEqual(
            effects,
            [
                CancelTimer(Timer.STOP_ESCALATION),
                StateChanged(State.STOPPING, State.STOPPED),
                Succeed(("s0",)),
                StateChanged(State.STOPPED, State.STARTING),
                ArmTimer(Timer.START_DEADLINE, 10.0),
                Spawn(2),
            ],
        )
        m.handle(Spawned(2, 43), 4.02)
        self.assertIn(Succeed(("late",)), m.handle(ProbeSucceeded(2), 4.5))
        self.assertIs(m.state, State.READY)

    def test_laterStopSupersedesQueuedStart(self) -> None:
        """
        Operations take effect in order: stop, start, stop leaves it
        stopped, the queued start failing as aborted.
        """
        m = makeMachine()
        toStopping(m)
        m.handle(StartRequested("late"), 1.5)
        effects = m.handle(StopRequested("s1", 3.0), 1.6)
        self.assertEqual(effects, [Fail(("late",), StartAborted())])
        effects = m.handle(ChildExited(1, 0, None), 2)
        self.assertNotIn(Spawn(2), effects)
        self.assertIs(m.state, State.STOPPED)

    def test_cancelledQueuedStartDoesNotStart(self) -> None:
        """
        If the only queued starter gives up, nothing starts after the stop.
        """
        m = makeMachine()
        toStopping(m)
        m.handle(StartRequested("late"), 1.5)
        self.assertEqual(m.handle(WaiterCancelled("late"), 1.6), [])
        self.assertNotIn(Spawn(2), m.handle(ChildExited(1, 0, None), 2))

    def test_startAfterFailedStartTimeout(self) -> None:
        """
        A request arriving while a timed-out start is being killed starts a
        fresh attempt afterwards (recovery without a restart).
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(Spawned(1, 42), 0)
        m.handle(TimerFired(Timer.START_DEADLINE), 10)
        m.handle(StartRequested("b"), 10.1)
        self.assertIn(Spawn(2), m.handle(ChildExited(1, None, TERM), 10.2))


class CancelTests(SynchronousTestCase):
    """
    A cancelled waiter is forgotten; the shared operation goes on.
    """

    def test_cancelOneJoiner(self) -> None:
        """
        Cancelling one of two start waiters leaves the start running and
        only the other is told.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(StartRequested("b"), 0)
        self.assertEqual(m.handle(WaiterCancelled("a"), 0.01), [])
        m.handle(Spawned(1, 42), 0.02)
        self.assertIn(Succeed(("b",)), m.handle(ProbeSucceeded(1), 0.1))

    def test_cancelEveryJoinerKeepsStarting(self) -> None:
        """
        A start whose callers all gave up still completes (the model loads).
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(WaiterCancelled("a"), 0.01)
        m.handle(Spawned(1, 42), 0.02)
        effects = m.handle(ProbeSucceeded(1), 0.1)
        self.assertNotIn(Succeed(("a",)), effects)
        self.assertIs(m.state, State.READY)

    def test_cancelUnknownWaiter(self) -> None:
        """
        Cancelling an unknown or already-answered waiter does nothing.
        """
        m = makeMachine()
        self.assertEqual(m.handle(WaiterCancelled("nobody"), 0), [])


class ExitTests(SynchronousTestCase):
    """
    Unexpected exits and stale events.
    """

    def test_unexpectedExit(self) -> None:
        """
        A ready child exiting on its own goes to stopped with a note; the
        next start spawns a new attempt.
        """
        m = makeMachine(ttl=5.0)
        toReady(m)
        self.assertEqual(
            m.handle(ChildExited(1, None, 11), 3),
            [
                CancelTimer(Timer.TTL),
                Note("unexpected-exit", (("exitCode", None), ("signal", 11))),
                StateChanged(State.READY, State.STOPPED),
            ],
        )
        self.assertIn(Spawn(2), m.handle(StartRequested("b"), 4))

    def test_staleEventsIgnored(self) -> None:
        """
        Events for an earlier attempt, or timers that no longer apply, do
        nothing.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(Spawned(1, 42), 0)
        m.handle(ChildExited(1, 1, None), 0.1)
        m.handle(StartRequested("b"), 0.2)
        m.handle(Spawned(2, 43), 0.2)
        self.assertEqual(m.handle(ProbeSucceeded(1), 0.3), [])
        self.assertEqual(m.handle(ChildExited(1, 0, None), 0.3), [])
        self.assertEqual(m.handle(Spawned(1, 42), 0.3), [])
        self.assertEqual(m.handle(StopCommandFailed(1, "x"), 0.3), [])
        m.handle(ProbeSucceeded(2), 0.4)
        self.assertEqual(m.handle(TimerFired(Timer.START_DEADLINE), 10), [])
        self.assertEqual(m.handle(TimerFired(Timer.STOP_ESCALATION), 10), [])
        self.assertEqual(m.handle(ProbeSucceeded(2), 10), [])


class ShutdownTests(SynchronousTestCase):
    """
    Shutdown: terminal, fails waiters, kills with the shutdown grace.
    """

    def test_shutdownWhenStopped(self) -> None:
        """
        Shutting down a stopped upstream succeeds at once; afterwards starts
        fail and stops succeed.
        """
        m = makeMachine()
        self.assertEqual(
            m.handle(ShutdownRequested("x", 1.0), 0),
            [StateChanged(State.STOPPED, State.SHUTDOWN), Succeed(("x",))],
        )
        self.assertEqual(m.handle(StartRequested("a"), 1), [Fail(("a",), ShutDown())])
        self.assertEqual(m.handle(StopRequested("s", 1), 1), [Succeed(("s",))])
        self.assertEqual(m.handle(ShutdownRequested("y", 1.0), 1), [Succeed(("y",))])

    def test_shutdownDuringStart(self) -> None:
        """
        Shutting down during a start fails the start at once, becomes
        C{shutdown} before any kill, and completes when the child is gone.
        """
        m = makeMachine()
        m.handle(StartRequested("a"), 0)
        m.handle(Spawned(1, 42), 0)
        self.assertEqual(
            m.handle(ShutdownRequested("x", 1.0), 0.5),
            [
                Fail(("a",), ShutDown()),
                CancelProbe(),
                CancelTimer(Timer.START_DEADLINE),
                CancelTimer(Timer.TTL),
                StateChanged(State.STARTING, State.SHUTDOWN),
                SignalGroup(TERM),
                ArmTimer(Timer.STOP_ESCALATION, 1.0),
            ],
        )
        self.assertEqual(m.handle(TimerFired(Timer.STOP_ESCALATION), 1.5), [Note("escalate", ()), SignalGroup(KILL)])
        self.assertEqual(
            m.handle(ChildExited(1, None, KILL), 1.6),
            [CancelTimer(Timer.STOP_ESCALATION), Succeed(("x",))],
        )
        self.assertIs(m.state, State.SHUTDOWN)

    def test_shutdownDuringStop(self) -> None:
        """
        Shutting down while stopping fails queued starts, shortens the
        grace, and releases stop and shutdown waiters when the child dies.
        """
        m = makeMachine()
        toStopping(m)  # escalation at 4.0
        m.handle(StartRequested("late"), 1.5)
        effects = m.handle(ShutdownRequested("x", 1.0), 2.0)
        self.assertEqual(
            effects,
            [
                Fail(("late",), ShutDown()),
                StateChanged(State.STOPPING, State.SHUTDOWN),
                ArmTimer(Timer.STOP_ESCALATION, 1.0),
            ],
        )
        effects = m.handle(ChildExited(1, 0, None), 2.5)
        self.assertIn(Succeed(("s0",)), effects)
        self.assertIn(Succeed(("x",)), effects)

    def test_stopAfterShutdownWithChild(self) -> None:
        """
        A stop after shutdown, while the child is still dying, waits for it.
        """
        m = makeMachine()
        toReady(m)
        m.handle(ShutdownRequested("x", 1.0), 1)
        self.assertEqual(m.handle(StopRequested("s", 5.0), 1.1), [])
        self.assertIn(Succeed(("s",)), m.handle(ChildExited(1, 0, None), 1.2))


class TTLTests(SynchronousTestCase):
    """
    The idle TTL: the clock starts when the last request finishes;
    in-flight requests block it.
    """

    def test_armedWhenReady(self) -> None:
        """
        Becoming ready with nothing in flight arms the TTL.
        """
        m = makeMachine(ttl=5.0)
        m.handle(StartRequested("a"), 0)
        m.handle(Spawned(1, 42), 0)
        self.assertIn(ArmTimer(Timer.TTL, 5.0), m.handle(ProbeSucceeded(1), 0.1))

    def test_inFlightBlocksTTL(self) -> None:
        """
        A request in flight cancels the TTL; when the last one finishes it
        is re-armed for the full TTL.
        """
        m = makeMachine(ttl=5.0)
        toReady(m)
        self.assertEqual(m.handle(RequestStarted(), 1), [CancelTimer(Timer.TTL)])
        self.assertEqual(m.handle(RequestStarted(), 2), [CancelTimer(Timer.TTL)])
        self.assertEqual(m.handle(RequestFinished(), 3), [])
        self.assertEqual(m.handle(RequestFinished(), 4), [ArmTimer(Timer.TTL, 5.0)])
        self.assertEqual(m.inFlight, 0)

    def test_ttlFiresStop(self) -> None:
        """
        The TTL firing with nothing in flight stops with C{unloadTimeout}.
        """
        m = makeMachine(ttl=5.0, unloadTimeout=3.0)
        toReady(m)
        self.assertEqual(
            m.handle(TimerFired(Timer.TTL), 5.1),
            [
                Note("ttl-unload", (("ttl", 5.0),)),
                CancelTimer(Timer.TTL),
                StateChanged(State.READY, State.STOPPING),
                SignalGroup(TERM),
                ArmTimer(Timer.STOP_ESCALATION, 3.0),
            ],
        )

    def test_ttlWithRequestInFlight(self) -> None:
        """
        A TTL that fires while a request is in flight (a race with its
        start) does nothing.
        """
        m = makeMachine(ttl=5.0)
        toReady(m)
        m.handle(RequestStarted(), 5.0)
        self.assertEqual(m.handle(TimerFired(Timer.TTL), 5.0), [])
        self.assertIs(m.state, State.READY)

    def test_ensureReadyResetsIdleClock(self) -> None:
        """
        A start request while ready counts as use and re-arms the TTL.
        """
        m = makeMachine(ttl=5.0)
        toReady(m)
        self.assertEqual(
            m.handle(StartRequested("b"), 4.9), [Succeed(("b",)), ArmTimer(Timer.TTL, 5.0)]
        )

    def test_requestArrivingAsTTLStops(self) -> None:
        """
        A request arriving just after the TTL began the stop gets a fresh
        start, not a hang.
        """
        m = makeMachine(ttl=5.0)
        toReady(m)
        m.handle(TimerFired(Timer.TTL), 5.1)
        m.handle(RequestStarted(), 5.2)
        self.assertEqual(m.handle(StartRequested("r"), 5.2), [])
        effects = m.handle(ChildExited(1, 0, None), 5.3)
        self.assertIn(Spawn(2), effects)
        m.handle(Spawned(2, 43), 5.3)
        effects = m.handle(ProbeSucceeded(2), 5.5)
        self.assertIn(Succeed(("r",)), effects)
        # The request is in flight, so the TTL is not armed.
        self.assertNotIn(ArmTimer(Timer.TTL, 5.0), effects)

    def test_noTTL(self) -> None:
        """
        With C{ttl} 0 no TTL timer is ever armed.
        """
        m = makeMachine(ttl=0.0)
        effects = m.handle(StartRequested("a"), 0)
        effects += m.handle(Spawned(1, 42), 0)
        effects += m.handle(ProbeSucceeded(1), 0.1)
        effects += m.handle(RequestStarted(), 1)
        effects += m.handle(RequestFinished(), 2)
        effects += m.handle(StartRequested("b"), 3)
        self.assertFalse([e for e in effects if isinstance(e, ArmTimer) and e.timer is Timer.TTL])

    def test_requestSetsIdleTimeout(self) -> None:
        """
        A request's keep-alive replaces the TTL from then on: armed when
        the last request finishes; 0 unloads as soon as idle; L{None}
        never unloads.
        """
        m = makeMachine(ttl=0.0)
        toReady(m)
        m.handle(RequestStarted(), 1)
        self.assertEqual(m.handle(IdleTimeoutChanged(30.0), 1), [])
        self.assertEqual(m.handle(RequestFinished(), 2), [ArmTimer(Timer.TTL, 30.0)])
        m.handle(RequestStarted(), 3)
        m.handle(IdleTimeoutChanged(0.0), 3)
        self.assertEqual(m.handle(RequestFinished(), 4), [ArmTimer(Timer.TTL, 0.0)])
        self.assertIn(Note("ttl-unload", (("ttl", 0.0),)), m.handle(TimerFired(Timer.TTL), 4))

    def test_neverWhileIdle(self) -> None:
        """
        Changed while ready and idle, the timer is re-armed or cancelled.
        """
        m = makeMachine(ttl=5.0)
        toReady(m)
        self.assertEqual(m.handle(IdleTimeoutChanged(None), 1), [CancelTimer(Timer.TTL)])
        self.assertEqual(
            m.handle(IdleTimeoutChanged(7.0), 2),
            [CancelTimer(Timer.TTL), ArmTimer(Timer.TTL, 7.0)],
        )

    def test_unbalancedFinish(self) -> None:
        """
        A finish without a start is noted and the count stays at zero.
        """
        m = makeMachine(ttl=5.0)
        self.assertEqual(m.handle(RequestFinished(), 0), [Note("unbalanced-finish", ())])
        self.assertEqual(m.inFlight, 0)


# ---------------------------------------------------------------- exhaustive


def _stopped(m: Lifecycle) -> None:
    pass


def _spawning(m: Lifecycle) -> None:
    m.handle(StartRequested("a"), 0)


def _probing(m: Lifecycle) -> None:
    _spawning(m)
    m.handle(Spawned(1, 42), 0)


def _ready(m: Lifecycle) -> None:
    toReady(m)


def _stopping(m: Lifecycle) -> None:
    toStopping(m)


def _stoppingKilled(m: Lifecycle) -> None:
    toStopping(m)
    m.handle(TimerFired(Timer.STOP_ESCALATION), 5)


def _shutdownWithChild(m: Lifecycle) -> None:
    toReady(m)
    m.handle(ShutdownRequested("x", 1.0), 1)


def _shutdown(m: Lifecycle) -> None:
    m.handle(ShutdownRequested("x", 1.0), 1)


SETUPS: dict[str, Callable[[Lifecycle], None]] = {
    "stopped": _stopped,
    "starting/spawning": _spawning,
    "starting/probing": _probing,
    "ready": _ready,
    "stopping": _stopping,
    "stopping/killed": _stoppingKilled,
    "shutdown/child": _shutdownWithChild,
    "shutdown": _shutdown,
}


def allEvents(attempt: int) -> list[Event]:
    """
    One of each event kind, for the current attempt and a stale one.
    """
    return [
        StartRequested("n"),
        StopRequested("n", 2.0),
        ShutdownRequested("n", 1.0),
        WaiterCancelled("a"),
        WaiterCancelled("n"),
        Spawned(attempt, 77),
        Spawned(attempt + 1, 77),
        SpawnFailed(attempt, "x"),
        ProbeSucceeded(attempt),
        ProbeSucceeded(attempt - 1),
        ChildExited(attempt, 0, None),
        ChildExited(attempt, None, 9),
        ChildExited(attempt - 1, 0, None),
        StopCommandFailed(attempt, "x"),
        TimerFired(Timer.START_DEADLINE),
        TimerFired(Timer.STOP_ESCALATION),
        TimerFired(Timer.TTL),
        RequestStarted(),
        RequestFinished(),
        IdleTimeoutChanged(3.0),
        IdleTimeoutChanged(None),
        SettingsChanged(1.0, 1.0, 7.0),
        SettingsChanged(1.0, 1.0, 0.0),
    ]


class ExhaustiveTests(SynchronousTestCase):
    """
    Every event in every state: no crash, no change from a state to itself,
    and shutdown is terminal.
    """

    def test_everyEventInEveryState(self) -> None:
        """
        Every (state, event) pair is handled, and never reports a change to
        the same state.
        """
        for name, setup in SETUPS.items():
            for probe in (True, False):
                for index in range(len(allEvents(1))):
                    m = makeMachine(ttl=5.0, probe=probe, stopCommand=index % 2 == 0)
                    setup(m)
                    event = allEvents(m.attempt)[index]
                    before = m.state
                    effects = m.handle(event, 20.0)
                    changes = stateChanges(effects)
                    for old, new in changes:
                        self.assertNotEqual(old, new, (name, event))
                    if changes:
                        self.assertEqual(changes[0][0], before, (name, event))
                        self.assertEqual(changes[-1][1], m.state, (name, event))
                    if before is State.SHUTDOWN:
                        self.assertIs(m.state, State.SHUTDOWN, (name, event))


# ---------------------------------------------------------------- property


def _eventStrategy() -> st.SearchStrategy:
    waiters = st.sampled_from(["a", "b", "c", "d"])
    return st.one_of(
        st.builds(lambda w: ("start", w), waiters),
        st.builds(lambda w, t: ("stop", w, t), waiters, st.sampled_from([0.5, 3.0])),
        st.builds(lambda w: ("cancel", w), waiters),
        st.just(("spawned",)),
        st.just(("spawnFailed",)),
        st.just(("probe",)),
        st.builds(lambda c: ("exit", c), st.sampled_from([0, 1, None])),
        st.just(("cmdStopFailed",)),
        st.builds(lambda t: ("timer", t), st.sampled_from(list(Timer))),
        st.builds(lambda h: ("hookDone", h), st.sampled_from(list(Hook))),
        st.just(("reqStart",)),
        st.just(("reqEnd",)),
        st.just(("shutdown",)),
    )


class PropertyTests(SynchronousTestCase):
    """
    Random event sequences keep the machine's promises.
    """

    @settings(max_examples=400, deadline=None)
    @given(st.lists(_eventStrategy(), max_size=40), st.booleans(), st.booleans(), st.booleans())
    def test_invariants(
        self, script: list[tuple], probe: bool, stopCommand: bool, hooks: bool
    ) -> None:
        """
        State changes chain and never repeat a state; each waiter is answered
        at most once; a spawn only happens with no child alive; and after a
        shutdown and the child's exit, every waiter has been answered.
        """
        hookTimeout = 2.0 if hooks else 0.0
        m = makeMachine(
            ttl=5.0,
            probe=probe,
            stopCommand=stopCommand,
            afterReadyTimeout=hookTimeout,
            beforeStopTimeout=hookTimeout,
        )
        now = 0.0
        state = m.state
        pending: set[str] = set()
        tokens = 0
        answered: set[str] = set()

        saving = False

        def run(event: Event) -> None:
            nonlocal state, saving
            alive = m.childAlive
            effects = m.handle(event, now)
            ends = (
                isinstance(event, (ChildExited, SpawnFailed))
                or event == TimerFired(Timer.HOOK)
                or (isinstance(event, HookDone) and event.hook is Hook.BEFORE_STOP)
            )
            if saving and not ends:
                # Nothing signals the child while its before-stop hook runs.
                self.assertFalse(
                    [e for e in effects if isinstance(e, (SignalGroup, RunStopCommand))],
                    event,
                )
            if ends:
                saving = False
            if RunHook(Hook.BEFORE_STOP, m.attempt) in effects:
                saving = True
            for effect in effects:
                if isinstance(effect, StateChanged):
                    self.assertEqual(effect.old, state)
                    self.assertNotEqual(effect.old, effect.new)
                    state = effect.new
                elif isinstance(effect, (Succeed, Fail)):
                    for w in effect.waiters:
                        assert isinstance(w, str)
                        self.assertNotIn(w, answered)
                        answered.add(w)
                        pending.discard(w)
                elif isinstance(effect, Spawn):
                    self.assertFalse(alive and not isinstance(event, (ChildExited, SpawnFailed)))
            self.assertEqual(state, m.state)

        for step in script:
            now += 0.1
            kind = step[0]
            if kind in ("start", "stop", "cancel"):
                token = f"{step[1]}{tokens}"
                if kind == "cancel":
                    if pending:
                        victim = sorted(pending)[0]
                        pending.discard(victim)
                        answered.add(victim)
                        run(WaiterCancelled(victim))
                    continue
                tokens += 1
                pending.add(token)
                run(StartRequested(token) if kind == "start" else StopRequested(token, step[2]))
            elif kind == "spawned":
                run(Spawned(m.attempt, 42))
            elif kind == "spawnFailed":
                run(SpawnFailed(m.attempt, "x"))
            elif kind == "probe":
                run(ProbeSucceeded(m.attempt))
            elif kind == "exit":
                run(ChildExited(m.attempt, step[1], None if step[1] is not None else 9))
            elif kind == "cmdStopFailed":
                run(StopCommandFailed(m.attempt, "x"))
            elif kind == "timer":
                run(TimerFired(step[1]))
            elif kind == "hookDone":
                run(HookDone(step[1], m.attempt))
            elif kind == "reqStart":
                run(RequestStarted())
            elif kind == "reqEnd":
                run(RequestFinished())
            elif kind == "shutdown":
                token = f"x{tokens}"
                tokens += 1
                pending.add(token)
                run(ShutdownRequested(token, 1.0))
            self.assertGreaterEqual(m.inFlight, 0)

        token = f"x{tokens}"
        pending.add(token)
        run(ShutdownRequested(token, 1.0))
        if m.childAlive:
            run(Spawned(m.attempt, 42))
            run(ChildExited(m.attempt, None, 9))
        self.assertFalse(m.childAlive)
        self.assertIs(m.state, State.SHUTDOWN)
        self.assertEqual(pending, set())
