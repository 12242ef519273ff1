"""
Tests for L{Supervisor}'s lifecycle hooks, over the same fakes as
L{test.upstream.test_supervisor}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from llamaswap.upstream import State, Supervisor

from .test_supervisor import KILL, TERM, SupervisorTestCase, makeSpec


class FakeHooks:
    """
    Hooks whose Deferreds the test fires by hand.
    """

    def __init__(self, afterReadyTimeout: float = 5.0, beforeStopTimeout: float = 7.0) -> None:
        self.afterReadyTimeout = afterReadyTimeout
        self.beforeStopTimeout = beforeStopTimeout
        self.calls: list[tuple[str, Deferred[None]]] = []
        self.raiseIn: str | None = None
        self.cancelled: list[str] = []

    def _call(self, name: str) -> Deferred[None]:
        if self.raiseIn == name:
            raise RuntimeError(f"{name} broke")
        d: Deferred[None] = Deferred(lambda _: self.cancelled.append(name))
        self.calls.append((name, d))
        return d

    def afterReady(self) -> Deferred[None]:
        return self._call("afterReady")

    def beforeStop(self) -> Deferred[None]:
        return self._call("beforeStop")


class HookTests(SupervisorTestCase):
    """
    The supervisor runs the hooks and feeds their outcome to the machine.
    """

    def makeHooked(self, hooks: FakeHooks) -> Supervisor:
        supervisor = Supervisor(
            makeSpec(),
            processReactor=self.reactor,
            clock=self.reactor,
            prober=self.prober,
            recorder=self.recorder,
            signaller=self.signaller,
            launcherSignaller=self.launcherSignaller,
            environ={"PATH": "/usr/bin"},
            parentPid=4242,
            hooks=hooks,
        )
        supervisor.addStateObserver(lambda m, old, new: self.states.append((old, new)))
        return supervisor

    def test_afterReadyHoldsTheStart(self) -> None:
        """
        C{ensureReady} fires only after the after-ready hook's Deferred.
        """
        hooks = FakeHooks()
        supervisor = self.makeHooked(hooks)
        d = supervisor.ensureReady()
        self.prober.watches[-1].healthy()
        self.assertEqual([name for name, _ in hooks.calls], ["afterReady"])
        self.assertNoResult(d)
        self.assertIs(supervisor.state, State.STARTING)
        hooks.calls[0][1].callback(None)
        self.successResultOf(d)
        self.assertIs(supervisor.state, State.READY)

    def test_failedHookStillGrants(self) -> None:
        """
        A failing hook is logged and the start goes on.
        """
        hooks = FakeHooks()
        supervisor = self.makeHooked(hooks)
        d = supervisor.ensureReady()
        self.prober.watches[-1].healthy()
        hooks.calls[0][1].errback(RuntimeError("restore broke"))
        self.successResultOf(d)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_raisingHookStillGrants(self) -> None:
        """
        A hook that raises instead of returning a Deferred does not block.
        """
        hooks = FakeHooks()
        hooks.raiseIn = "afterReady"
        supervisor = self.makeHooked(hooks)
        d = supervisor.ensureReady()
        self.prober.watches[-1].healthy()
        self.successResultOf(d)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_hangingHookTimesOut(self) -> None:
        """
        A hook that never fires holds the start for its timeout only.
        """
        hooks = FakeHooks(afterReadyTimeout=5.0)
        supervisor = self.makeHooked(hooks)
        d = supervisor.ensureReady()
        self.prober.watches[-1].healthy()
        self.reactor.advance(4.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        self.successResultOf(d)
        # The abandoned hook is cancelled, quietly.
        self.assertEqual(hooks.cancelled, ["afterReady"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_beforeStopDelaysTheSignal(self) -> None:
        """
        A stop runs the before-stop hook; SIGTERM goes out when it fires,
        and the grace counts from then.
        """
        hooks = FakeHooks()
        supervisor = self.makeHooked(hooks)
        d = supervisor.ensureReady()
        self.prober.watches[-1].healthy()
        hooks.calls[0][1].callback(None)
        self.successResultOf(d)
        pid = self.reactor.spawned[0].originalPid
        stopped = supervisor.stop(2.0)
        self.assertEqual([name for name, _ in hooks.calls], ["afterReady", "beforeStop"])
        self.assertEqual(self.signaller.signalsTo(pid), [])
        self.reactor.advance(3)
        self.assertEqual(self.signaller.signalsTo(pid), [])
        hooks.calls[1][1].callback(None)
        self.assertEqual(self.signaller.signalsTo(pid), [TERM])
        self.reactor.advance(2)
        self.assertEqual(self.signaller.signalsTo(pid), [TERM, KILL])
        self.reactor.spawned[0].exit(None, KILL)
        self.successResultOf(stopped)

    def test_hangingBeforeStopBounded(self) -> None:
        """
        A before-stop hook that never fires delays SIGTERM by its timeout.
        """
        hooks = FakeHooks(beforeStopTimeout=7.0)
        supervisor = self.makeHooked(hooks)
        d = supervisor.ensureReady()
        self.prober.watches[-1].healthy()
        hooks.calls[0][1].callback(None)
        self.successResultOf(d)
        pid = self.reactor.spawned[0].originalPid
        supervisor.stop(2.0)
        self.reactor.advance(6.9)
        self.assertEqual(self.signaller.signalsTo(pid), [])
        self.reactor.advance(0.1)
        self.assertEqual(self.signaller.signalsTo(pid), [TERM])
