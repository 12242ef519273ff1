"""
Tests for the lifecycle's bounded hooks (L{Hook.AFTER_READY} between a
healthy probe and granting the start, L{Hook.BEFORE_STOP} between a stop
request and the stop signal).
"""

from __future__ import annotations

import signal

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.upstream.lifecycle import (
    ArmTimer,
    CancelProbe,
    CancelTimer,
    ChildExited,
    Fail,
    Hook,
    HookDone,
    Note,
    ProbeSucceeded,
    RunHook,
    ShutdownRequested,
    SignalGroup,
    Spawned,
    StartAborted,
    StartRequested,
    State,
    StateChanged,
    StopCommandFailed,
    StopRequested,
    Succeed,
    Timer,
    TimerFired,
)

from .test_lifecycle import makeMachine

TERM = signal.SIGTERM
KILL = signal.SIGKILL


def hooked(**kwargs: object):
    options: dict = dict(afterReadyTimeout=4.0, beforeStopTimeout=6.0)
    options.update(kwargs)
    return makeMachine(**options)


def toHealthy(m) -> None:
    m.handle(StartRequested("w0"), 0)
    m.handle(Spawned(m.attempt, 100), 0)
    m.handle(ProbeSucceeded(m.attempt), 0.1)


def toReady(m) -> None:
    toHealthy(m)
    m.handle(HookDone(Hook.AFTER_READY, m.attempt), 0.2)


class AfterReadyTests(SynchronousTestCase):
    """
    A healthy child stays C{starting} until the after-ready hook is done.
    """

    def test_probeRunsHook(self) -> None:
        """
        The healthy probe cancels the start deadline and runs the hook,
        bounded by the hook timer; nobody is granted yet.
        """
        m = hooked()
        m.handle(StartRequested("a"), 0)
        m.handle(Spawned(1, 100), 0)
        self.assertEqual(
            m.handle(ProbeSucceeded(1), 0.1),
            [
                CancelTimer(Timer.START_DEADLINE),
                ArmTimer(Timer.HOOK, 4.0),
                RunHook(Hook.AFTER_READY, 1),
            ],
        )
        self.assertIs(m.state, State.STARTING)
        self.assertEqual(m.handle(StartRequested("b"), 0.2), [])

    def test_hookDoneGrants(self) -> None:
        """
        When the hook is done, the machine becomes ready and grants every
        waiter, including those that joined during the hook.
        """
        m = hooked()
        toHealthy(m)
        m.handle(StartRequested("b"), 0.2)
        self.assertEqual(
            m.handle(HookDone(Hook.AFTER_READY, 1), 0.3),
            [
                CancelTimer(Timer.HOOK),
                CancelTimer(Timer.START_DEADLINE),
                StateChanged(State.STARTING, State.READY),
                Succeed(("w0", "b")),
            ],
        )

    def test_hookTimeoutGrants(self) -> None:
        """
        A hook that never answers holds nobody longer than its timeout.
        """
        m = hooked()
        toHealthy(m)
        effects = m.handle(TimerFired(Timer.HOOK), 4.1)
        self.assertIn(Note("hook-timeout", (("hook", "after-ready"),)), effects)
        self.assertIn(Succeed(("w0",)), effects)
        self.assertIs(m.state, State.READY)
        # The late answer changes nothing.
        self.assertEqual(m.handle(HookDone(Hook.AFTER_READY, 1), 5), [])

    def test_noProbeRunsHookAtSpawn(self) -> None:
        """
        Without a health check the hook runs as soon as the child is
        spawned.
        """
        m = hooked(probe=False)
        m.handle(StartRequested("a"), 0)
        self.assertIn(RunHook(Hook.AFTER_READY, 1), m.handle(Spawned(1, 100), 0))
        self.assertIs(m.state, State.STARTING)

    def test_stopDuringHook(self) -> None:
        """
        A stop during the after-ready hook aborts the start like any stop
        while starting: waiters fail, the hook timer is cancelled, the
        child is signalled at once (no before-stop hook: it never was
        ready).
        """
        m = hooked()
        toHealthy(m)
        effects = m.handle(StopRequested("s", 3.0), 0.5)
        self.assertIn(Fail(("w0",), StartAborted()), effects)
        self.assertIn(CancelTimer(Timer.HOOK), effects)
        self.assertIn(SignalGroup(TERM), effects)
        self.assertNotIn(RunHook(Hook.BEFORE_STOP, 1), effects)
        self.assertEqual(m.handle(HookDone(Hook.AFTER_READY, 1), 0.6), [])

    def test_exitDuringHook(self) -> None:
        """
        The child dying during the hook fails the start.
        """
        m = hooked()
        toHealthy(m)
        effects = m.handle(ChildExited(1, 1), 0.5)
        self.assertIn(CancelTimer(Timer.HOOK), effects)
        self.assertIs(m.state, State.STOPPED)
        self.assertTrue(any(isinstance(e, Fail) for e in effects))

    def test_staleAttemptIgnored(self) -> None:
        """
        A hook answer for an earlier attempt is ignored.
        """
        m = hooked()
        toHealthy(m)
        self.assertEqual(m.handle(HookDone(Hook.AFTER_READY, 0), 0.5), [])
        self.assertIs(m.state, State.STARTING)

    def test_duplicateProbeDoesNotRerun(self) -> None:
        """
        A second healthy probe during the hook does not run it again.
        """
        m = hooked()
        toHealthy(m)
        self.assertEqual(m.handle(ProbeSucceeded(1), 0.2), [])


class BeforeStopTests(SynchronousTestCase):
    """
    Stopping a ready child runs the before-stop hook first.
    """

    def test_stopRunsHookFirst(self) -> None:
        """
        The stop moves to C{stopping} and runs the hook; no signal and no
        escalation timer yet.
        """
        m = hooked()
        toReady(m)
        effects = m.handle(StopRequested("s", 3.0), 1)
        self.assertEqual(
            effects,
            [
                CancelTimer(Timer.TTL),
                StateChanged(State.READY, State.STOPPING),
                ArmTimer(Timer.HOOK, 6.0),
                RunHook(Hook.BEFORE_STOP, 1),
            ],
        )

    def test_hookDoneSignals(self) -> None:
        """
        Once the hook is done the graceful signal goes out and the grace
        counts from then.
        """
        m = hooked()
        toReady(m)
        m.handle(StopRequested("s", 3.0), 1)
        self.assertEqual(
            m.handle(HookDone(Hook.BEFORE_STOP, 1), 2),
            [
                CancelTimer(Timer.HOOK),
                SignalGroup(TERM),
                ArmTimer(Timer.STOP_ESCALATION, 3.0),
            ],
        )
        effects = m.handle(ChildExited(1, 0), 2.5)
        self.assertIn(Succeed(("s",)), effects)
        self.assertIs(m.state, State.STOPPED)

    def test_hookTimeoutSignals(self) -> None:
        """
        A hook that does not answer delays the stop by at most its timeout.
        """
        m = hooked()
        toReady(m)
        m.handle(StopRequested("s", 3.0), 1)
        effects = m.handle(TimerFired(Timer.HOOK), 7)
        self.assertIn(SignalGroup(TERM), effects)
        self.assertIn(ArmTimer(Timer.STOP_ESCALATION, 3.0), effects)

    def test_lateStopCommandFailureDuringHook(self) -> None:
        """
        A stop command's failure reported while the before-stop hook runs
        (one of an earlier stop, late) signals nothing; the stop goes on
        once the hook is over.
        """
        m = hooked(stopCommand=True)
        toReady(m)
        m.handle(StopRequested("s", 3.0), 1)
        self.assertEqual(m.handle(StopCommandFailed(1, "exit status 1"), 1.5), [])
        effects = m.handle(HookDone(Hook.BEFORE_STOP, 1), 2)
        self.assertNotIn(SignalGroup(TERM), effects)
        self.assertIs(m.state, State.STOPPING)

    def test_secondStopShortensGrace(self) -> None:
        """
        Another stop during the hook joins it; a shorter grace applies once
        the hook is over (no kill during the hook).
        """
        m = hooked()
        toReady(m)
        m.handle(StopRequested("s", 3.0), 1)
        self.assertEqual(m.handle(StopRequested("t", 0.5), 1.5), [])
        effects = m.handle(HookDone(Hook.BEFORE_STOP, 1), 2)
        self.assertIn(ArmTimer(Timer.STOP_ESCALATION, 0.5), effects)
        self.assertIn(Succeed(("s", "t")), m.handle(ChildExited(1, 0), 2.1))

    def test_ttlRunsHook(self) -> None:
        """
        A TTL unload saves too.
        """
        m = hooked(ttl=5.0)
        toReady(m)
        effects = m.handle(TimerFired(Timer.TTL), 6)
        self.assertIn(RunHook(Hook.BEFORE_STOP, 1), effects)
        self.assertNotIn(SignalGroup(TERM), effects)

    def test_shutdownRunsHook(self) -> None:
        """
        Shutting down a ready child runs the hook too (the cache survives a
        restart of llamaswap), then signals with the shutdown grace.
        """
        m = hooked()
        toReady(m)
        effects = m.handle(ShutdownRequested("x", 1.0), 1)
        self.assertIn(RunHook(Hook.BEFORE_STOP, 1), effects)
        self.assertIs(m.state, State.SHUTDOWN)
        effects = m.handle(HookDone(Hook.BEFORE_STOP, 1), 2)
        self.assertIn(SignalGroup(TERM), effects)
        self.assertIn(ArmTimer(Timer.STOP_ESCALATION, 1.0), effects)

    def test_exitDuringHook(self) -> None:
        """
        The child exiting during the hook finishes the stop; the late
        answer is ignored.
        """
        m = hooked()
        toReady(m)
        m.handle(StopRequested("s", 3.0), 1)
        effects = m.handle(ChildExited(1, 0), 1.5)
        self.assertIn(CancelTimer(Timer.HOOK), effects)
        self.assertIn(Succeed(("s",)), effects)
        self.assertEqual(m.handle(HookDone(Hook.BEFORE_STOP, 1), 2), [])

    def test_startDuringHookQueues(self) -> None:
        """
        A start requested during the hook waits for the stop, then starts.
        """
        m = hooked()
        toReady(m)
        m.handle(StopRequested("s", 3.0), 1)
        self.assertEqual(m.handle(StartRequested("again"), 1.2), [])
        m.handle(HookDone(Hook.BEFORE_STOP, 1), 2)
        effects = m.handle(ChildExited(1, 0), 2.5)
        self.assertIn(StateChanged(State.STOPPED, State.STARTING), effects)

    def test_withoutHooksUnchanged(self) -> None:
        """
        With no hook timeouts, stopping signals at once as before.
        """
        m = makeMachine()
        toHealthy(m)
        self.assertIs(m.state, State.READY)
        effects = m.handle(StopRequested("s", 3.0), 1)
        self.assertIn(SignalGroup(TERM), effects)
        self.assertNotIn(CancelProbe(), effects)
