"""
Tests for L{llamaswap.upstream.supervisor.Supervisor} with a fake process
reactor, a fake signaller, a fake health prober and a L{Clock}.
"""

from __future__ import annotations

import os
import signal

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from llamaswap.upstream import (
    HealthCheckTimedOut,
    PrematureExit,
    SpawnError,
    StartAbortedError,
    State,
    Supervisor,
    UpstreamShutdown,
    UpstreamSpec,
)
from llamaswap.upstream.process import DRAIN_GRACE, LAUNCHER, PIPE_CLOSE_GRACE

from .fakes import (
    FakeLauncherSignaller,
    FakeProber,
    FakeProcessReactor,
    FakeRecorder,
    FakeSignaller,
)

TERM = signal.SIGTERM
KILL = signal.SIGKILL


def makeSpec(**kwargs: object) -> UpstreamSpec:
    """
    A spec for model C{m1} with distinct, small timeouts.
    """
    options: dict = dict(
        modelID="m1",
        argv=["llama-server", "--port", "5800"],
        proxy="http://127.0.0.1:5800",
        env=["CUDA_VISIBLE_DEVICES=1"],
        healthCheckTimeout=30.0,
        unloadTimeout=4.0,
    )
    options.update(kwargs)
    return UpstreamSpec(**options)


class SupervisorTestCase(SynchronousTestCase):
    """
    Builds a supervisor over fakes.
    """

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.signaller = FakeSignaller(self.reactor, exitOn=(TERM,))
        self.launcherSignaller = FakeLauncherSignaller()
        self.prober = FakeProber()
        self.recorder = FakeRecorder()
        self.states: list[tuple[State, State]] = []
        self.lines: list[tuple[str, str, str]] = []

    def makeSupervisor(self, **kwargs: object) -> Supervisor:
        """
        A supervisor for L{makeSpec}C{(**kwargs)}.
        """
        supervisor = Supervisor(
            makeSpec(**kwargs),
            processReactor=self.reactor,
            clock=self.reactor,
            prober=self.prober,
            recorder=self.recorder,
            signaller=self.signaller,
            launcherSignaller=self.launcherSignaller,
            environ={"PATH": "/usr/bin", "HOME": "/root"},
            parentPid=4242,
        )
        supervisor.addStateObserver(lambda m, old, new: self.states.append((old, new)))
        supervisor.addOutputObserver(lambda m, stream, line: self.lines.append((m, stream, line)))
        return supervisor

    def startReady(self, supervisor: Supervisor) -> None:
        """
        Start C{supervisor} and make it ready.
        """
        d = supervisor.ensureReady()
        self.prober.watches[-1].healthy()
        self.successResultOf(d)


class SpawnTests(SupervisorTestCase):
    """
    How the child is spawned.
    """

    def test_fakesAreHonest(self) -> None:
        """
        The fake reactor and transport provide the interfaces they fake.
        """
        verifyObject(IReactorProcess, self.reactor)
        supervisor = self.makeSupervisor()
        supervisor.ensureReady()
        verifyObject(IProcessTransport, self.reactor.spawned[0])

    def test_spawnThroughLauncher(self) -> None:
        """
        The child is spawned through the launcher with our PID, without a
        PTY, with an explicit environment (ours plus the additions) and with
        stdin closed.
        """
        supervisor = self.makeSupervisor(cwd="/tmp")
        d = supervisor.ensureReady()
        self.assertNoResult(d)
        [child] = self.reactor.spawned
        self.assertEqual(
            child.args[3:],
            [LAUNCHER, "4242", "--report-fd=3", "--", "llama-server", "--port", "5800"],
        )
        self.assertEqual(child.args[1:3], ["-I", "-S"])
        self.assertEqual(
            child.env, {"PATH": "/usr/bin", "HOME": "/root", "CUDA_VISIBLE_DEVICES": "1"}
        )
        self.assertEqual(child.path, "/tmp")
        self.assertFalse(child.usePTY)
        self.assertTrue(child.stdinClosed)
        self.assertEqual(supervisor.pid, child.pid)
        self.assertEqual(self.prober.watches[0].url, "http://127.0.0.1:5800/health")
        self.assertEqual(self.recorder.calls, [("add", "m1", child.pid, "llama-server", 0.0)])

    def test_defaultEnvironmentIsOurs(self) -> None:
        """
        Without an injected base, the environment is a copy of
        C{os.environ} plus the additions, never empty.
        """
        supervisor = Supervisor(
            makeSpec(),
            processReactor=self.reactor,
            clock=self.reactor,
            prober=self.prober,
            signaller=self.signaller,
        )
        supervisor.ensureReady()
        env = self.reactor.spawned[0].env
        assert env is not None
        self.assertEqual(env["CUDA_VISIBLE_DEVICES"], "1")
        for name, value in os.environ.items():
            if name != "CUDA_VISIBLE_DEVICES":
                self.assertEqual(env[name], value)
        self.assertEqual(self.reactor.spawned[0].args[4], str(os.getpid()))

    def test_spawnFailure(self) -> None:
        """
        A spawn error fails the start with the command and the OS error and
        leaves it stopped.
        """
        self.reactor.spawnError = OSError(2, "No such file or directory")
        supervisor = self.makeSupervisor()
        failure = self.failureResultOf(supervisor.ensureReady(), SpawnError)
        self.assertIn("failed to start command 'llama-server --port 5800'", str(failure.value))
        self.assertIn("No such file or directory", str(failure.value))
        self.assertIs(supervisor.state, State.STOPPED)
        self.assertEqual(
            self.states, [(State.STOPPED, State.STARTING), (State.STARTING, State.STOPPED)]
        )

    def test_noHealthCheck(self) -> None:
        """
        With C{checkEndpoint: none} it is ready as soon as it is spawned.
        """
        supervisor = self.makeSupervisor(checkEndpoint="none")
        self.successResultOf(supervisor.ensureReady())
        self.assertIs(supervisor.state, State.READY)
        self.assertEqual(self.prober.watches, [])

    def test_agentOrProberRequired(self) -> None:
        """
        A health check needs a prober or an agent.
        """
        self.assertRaises(
            TypeError, Supervisor, makeSpec(), processReactor=self.reactor, clock=self.reactor
        )


class ReadyTests(SupervisorTestCase):
    """
    ensureReady: joins, per-caller cancel, observers.
    """

    def test_readyAndEvents(self) -> None:
        """
        A clean start and stop emits exactly four state changes.
        """
        self.signaller.autoExit = True
        supervisor = self.makeSupervisor()
        self.startReady(supervisor)
        self.assertIs(supervisor.state, State.READY)
        self.successResultOf(supervisor.stop())
        self.assertEqual(
            self.states,
            [
                (State.STOPPED, State.STARTING),
                (State.STARTING, State.READY),
                (State.READY, State.STOPPING),
                (State.STOPPING, State.STOPPED),
            ],
        )

    def test_joinsStartInProgress(self) -> None:
        """
        Concurrent callers share one spawn and one watch; each gets its own
        Deferred.
        """
        supervisor = self.makeSupervisor()
        d1 = supervisor.ensureReady()
        d2 = supervisor.ensureReady()
        self.assertIsNot(d1, d2)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(len(self.prober.watches), 1)
        self.prober.watches[0].healthy()
        self.successResultOf(d1)
        self.successResultOf(d2)
        self.successResultOf(supervisor.ensureReady())
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_cancelOnlyThatCaller(self) -> None:
        """
        Cancelling one caller's Deferred fails only it; the shared start
        goes on and the other caller gets the ready upstream.
        """
        supervisor = self.makeSupervisor()
        d1 = supervisor.ensureReady()
        d2 = supervisor.ensureReady()
        d1.cancel()
        self.failureResultOf(d1, CancelledError)
        self.assertNoResult(d2)
        self.assertFalse(self.prober.watches[0].cancelled)
        self.assertEqual(self.signaller.sent, [])
        self.prober.watches[0].healthy()
        self.successResultOf(d2)

    def test_cancelEveryCaller(self) -> None:
        """
        Even with every caller gone, the start completes.
        """
        supervisor = self.makeSupervisor()
        d = supervisor.ensureReady()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.prober.watches[0].healthy()
        self.assertIs(supervisor.state, State.READY)

    def test_outputLines(self) -> None:
        """
        Output lines go to observers as (model, stream, line), nudge the
        health watch (which is given the line, to probe at once on a
        readiness line) and are kept in C{lastLines}.
        """
        supervisor = self.makeSupervisor()
        supervisor.ensureReady()
        child = self.reactor.spawned[0]
        child.output(b"loading model\r\nhalf a ", fd=1)
        child.output(b"line\n", fd=1)
        child.output(b"warning: x\n", fd=2)
        self.assertEqual(
            self.lines,
            [
                ("m1", "stdout", "loading model"),
                ("m1", "stdout", "half a line"),
                ("m1", "stderr", "warning: x"),
            ],
        )
        self.assertEqual(
            self.prober.watches[0].lines, ["loading model", "half a line", "warning: x"]
        )
        self.assertEqual(supervisor.lastLines, ("loading model", "half a line", "warning: x"))

    def test_probeEchoDoesNotNudge(self) -> None:
        """
        A line naming the health path (the server logging our probe) does
        not nudge the watch.
        """
        supervisor = self.makeSupervisor(checkEndpoint="/health?full=1")
        supervisor.ensureReady()
        self.reactor.spawned[0].output(b"request: GET /health 127.0.0.1 503\n")
        self.reactor.spawned[0].output(b"main: model loaded\n")
        self.assertEqual(self.prober.watches[0].nudges, 1)

    def test_observerRemoval(self) -> None:
        """
        The callable returned by C{addStateObserver} removes it; a failing
        observer is logged and does not break the supervisor.
        """
        supervisor = self.makeSupervisor()
        seen: list = []
        remove = supervisor.addStateObserver(lambda *a: seen.append(a))

        def broken(*a: object) -> None:
            raise RuntimeError("observer bug")

        supervisor.addStateObserver(broken)
        remove()
        self.startReady(supervisor)
        self.assertEqual(seen, [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_reportersAfterWaiters(self) -> None:
        """
        A state reporter hears of a change after the callers waiting on it
        were answered and their callbacks returned, also when those call
        back in (observers hear before), and of every change in order,
        also of those a caller's callback makes.
        """
        supervisor = self.makeSupervisor()
        order: list = []
        supervisor.addStateObserver(lambda m, old, new: order.append(("observer", new)))
        supervisor.addStateReporter(lambda m, old, new: order.append(("reporter", old, new)))
        d = supervisor.ensureReady()

        def ready(_: None) -> None:
            order.append(("waiter", supervisor.state))
            supervisor.requestStarted()
            supervisor.requestFinished()
            supervisor.stop()
            order.append("waiter done")

        d.addCallback(ready)
        self.prober.watches[0].healthy()
        self.assertEqual(
            order,
            [
                ("observer", State.STARTING),
                ("reporter", State.STOPPED, State.STARTING),
                ("observer", State.READY),
                ("waiter", State.READY),
                ("observer", State.STOPPING),
                "waiter done",
                ("reporter", State.STARTING, State.READY),
                ("reporter", State.READY, State.STOPPING),
            ],
        )

    def test_reporterRemoval(self) -> None:
        """
        The callable returned by C{addStateReporter} removes it; a failing
        reporter is logged and does not keep the others from hearing.
        """
        supervisor = self.makeSupervisor()
        seen: list = []
        remove = supervisor.addStateReporter(lambda *a: seen.append(("removed", a)))

        def broken(*a: object) -> None:
            raise RuntimeError("reporter bug")

        supervisor.addStateReporter(broken)
        supervisor.addStateReporter(lambda m, old, new: seen.append(new))
        remove()
        self.startReady(supervisor)
        self.assertEqual(seen, [State.STARTING, State.READY])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_callbackReentersSupervisor(self) -> None:
        """
        A caller's callback that calls back into the supervisor (here:
        stop) sees its call take effect at once.
        """
        supervisor = self.makeSupervisor()
        d = supervisor.ensureReady()
        seen: list = []

        def ready(_: None) -> None:
            seen.append(supervisor.stop())
            seen.append(supervisor.state)

        d.addCallback(ready)
        self.prober.watches[0].healthy()
        self.assertEqual(seen[1], State.STOPPING)
        self.reactor.spawned[0].exit(0)
        self.successResultOf(seen[0])
        self.assertIs(supervisor.state, State.STOPPED)


class StartFailureTests(SupervisorTestCase):
    """
    Starts that fail: premature exit, health timeout, abort.
    """

    def test_crashDuringStartReportedAtOnce(self) -> None:
        """
        A child that exits while starting fails the start at once (long
        before the health timeout) with its exit status and last lines.
        """
        supervisor = self.makeSupervisor()
        d = supervisor.ensureReady()
        child = self.reactor.spawned[0]
        child.output(b"llama-server starting\n")
        child.output(b"error: invalid argument: --bogus\n", fd=2)
        self.reactor.advance(0.3)
        child.exit(1)
        failure = self.failureResultOf(d, PrematureExit)
        self.assertEqual(failure.value.exitCode, 1)
        self.assertEqual(
            failure.value.lastLines,
            ("llama-server starting", "error: invalid argument: --bogus"),
        )
        self.assertIn("exited prematurely (exit status 1)", str(failure.value))
        self.assertIn("error: invalid argument: --bogus", str(failure.value))
        self.assertTrue(self.prober.watches[0].cancelled)
        self.assertIs(supervisor.state, State.STOPPED)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.recorder.calls[-1], ("remove", child.originalPid))

    def test_crashWaitsBrieflyForOutput(self) -> None:
        """
        If the pipes are still open at exit (output not yet drained), the
        exit is reported when they close, or after the drain grace at most;
        either way the group is swept with SIGKILL at once.
        """
        supervisor = self.makeSupervisor()
        d = supervisor.ensureReady()
        child = self.reactor.spawned[0]
        child.exit(2, endPipes=False)
        self.assertEqual(self.signaller.signalsTo(child.originalPid), [KILL])
        self.assertNoResult(d)
        child.output(b"last words\n", fd=2)
        self.reactor.advance(DRAIN_GRACE)
        failure = self.failureResultOf(d, PrematureExit)
        self.assertEqual(failure.value.lastLines, ("last words",))
        self.assertFalse(child.lostConnection)
        self.reactor.advance(PIPE_CLOSE_GRACE)
        self.assertTrue(child.lostConnection)

    def test_exitSuccessDuringStart(self) -> None:
        """
        A child that exits with status 0 while starting is a failure too,
        and says it must stay in the foreground.
        """
        supervisor = self.makeSupervisor()
        d = supervisor.ensureReady()
        self.reactor.spawned[0].exit(0)
        failure = self.failureResultOf(d, PrematureExit)
        self.assertIn("foreground", str(failure.value))

    def test_healthCheckTimeoutQuotesServerLines(self) -> None:
        """
        The error quotes the server's own last lines, not its log lines of
        our health probes, however many of those it wrote since.
        """
        self.signaller.exitOn = set()
        supervisor = self.makeSupervisor(healthCheckTimeout=30.0)
        d = supervisor.ensureReady()
        child = self.reactor.spawned[0]
        child.output(b"load_model: out of memory\n")
        child.output(b"srv log_server_r: request: GET /health 127.0.0.1 503\n" * 200)
        self.reactor.advance(30)
        failure = self.failureResultOf(d, HealthCheckTimedOut)
        self.assertEqual(failure.value.lastLines, ("load_model: out of memory",))
        self.assertNotIn("/health", str(failure.value))
        self.reactor.advance(5.0)
        child.exit(None, KILL)

    def test_healthCheckTimeout(self) -> None:
        """
        At the health-check deadline the start fails, the child is sent
        SIGTERM, then SIGKILL 5 s later.
        """
        self.signaller.exitOn = set()
        supervisor = self.makeSupervisor(healthCheckTimeout=30.0)
        d = supervisor.ensureReady()
        child = self.reactor.spawned[0]
        pid = child.originalPid
        child.output(b"still loading\n")
        self.reactor.advance(29.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        failure = self.failureResultOf(d, HealthCheckTimedOut)
        self.assertEqual(failure.value.lastLines, ("still loading",))
        self.assertIn("health check timed out after 30s", str(failure.value))
        self.assertTrue(self.prober.watches[0].cancelled)
        self.assertEqual(self.signaller.signalsTo(pid), [TERM])
        self.assertIs(supervisor.state, State.STOPPING)
        self.reactor.advance(5.0)
        self.assertEqual(self.signaller.signalsTo(pid), [TERM, KILL])
        child.exit(None, KILL)
        self.assertIs(supervisor.state, State.STOPPED)

    def test_recoverAfterFailedStart(self) -> None:
        """
        After a failed start the next ensureReady starts afresh.
        """
        supervisor = self.makeSupervisor()
        d = supervisor.ensureReady()
        self.reactor.spawned[0].exit(1)
        self.failureResultOf(d, PrematureExit)
        d = supervisor.ensureReady()
        self.assertEqual(len(self.reactor.spawned), 2)
        self.prober.watches[1].healthy()
        self.successResultOf(d)

    def test_stopAbortsStart(self) -> None:
        """
        A stop during a start fails the start's callers as aborted and
        stops the child.
        """
        supervisor = self.makeSupervisor()
        d = supervisor.ensureReady()
        self.signaller.autoExit = True
        stopped = supervisor.stop()
        self.failureResultOf(d, StartAbortedError)
        self.successResultOf(stopped)
        self.assertIs(supervisor.state, State.STOPPED)


class StopTests(SupervisorTestCase):
    """
    Stopping: TERM to the group, KILL after the grace, sharing, idempotence.
    """

    def test_stopBeforeStart(self) -> None:
        """
        Stopping a never-started upstream succeeds at once.
        """
        supervisor = self.makeSupervisor()
        self.successResultOf(supervisor.stop())
        self.assertEqual(self.states, [])

    def test_termThenKill(self) -> None:
        """
        A stop sends SIGTERM to the group; if the child is still there after
        the timeout, SIGKILL; the stop completes when it exits.
        """
        supervisor = self.makeSupervisor()
        self.startReady(supervisor)
        child = self.reactor.spawned[0]
        pid = child.originalPid
        d = supervisor.stop(2.0)
        self.assertEqual(self.signaller.signalsTo(pid), [TERM])
        self.reactor.advance(1.99)
        self.assertEqual(self.signaller.signalsTo(pid), [TERM])
        self.assertNoResult(d)
        self.reactor.advance(0.01)
        self.assertEqual(self.signaller.signalsTo(pid), [TERM, KILL])
        self.assertNoResult(d)
        child.exit(None, KILL)
        self.successResultOf(d)
        self.assertIs(supervisor.state, State.STOPPED)
        self.assertIsNone(supervisor.pid)
        # The sweep after the exit, for grandchildren.
        self.assertEqual(self.signaller.signalsTo(pid), [TERM, KILL, KILL])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_defaultTimeoutIsUnloadTimeout(self) -> None:
        """
        C{stop()} and C{stop(0)} use the spec's C{unloadTimeout}.
        """
        for timeout in (None, 0, -1):
            self.reactor = FakeProcessReactor()
            self.signaller = FakeSignaller(self.reactor)
            self.prober = FakeProber()
            supervisor = self.makeSupervisor(unloadTimeout=4.0)
            self.startReady(supervisor)
            pid = self.reactor.spawned[0].originalPid
            supervisor.stop(timeout)
            self.reactor.advance(3.9)
            self.assertEqual(self.signaller.signalsTo(pid), [TERM])
            self.reactor.advance(0.1)
            self.assertEqual(self.signaller.signalsTo(pid), [TERM, KILL])

    def test_exitCancelsKill(self) -> None:
        """
        A child that exits on SIGTERM is not sent the escalation SIGKILL,
        and no timer is left behind.
        """
        supervisor = self.makeSupervisor()
        self.startReady(supervisor)
        pid = self.reactor.spawned[0].originalPid
        d = supervisor.stop(2.0)
        self.reactor.spawned[0].exit(None, TERM)
        self.successResultOf(d)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.reactor.advance(10)
        self.assertEqual(self.signaller.signalsTo(pid), [TERM, KILL])  # TERM + the sweep

    def test_concurrentStopsShare(self) -> None:
        """
        Concurrent stops share one stop: one SIGTERM, both fire at the exit;
        a later stop succeeds at once.
        """
        supervisor = self.makeSupervisor()
        self.startReady(supervisor)
        pid = self.reactor.spawned[0].originalPid
        d1 = supervisor.stop()
        d2 = supervisor.stop()
        self.assertEqual(self.signaller.signalsTo(pid), [TERM])
        self.assertNoResult(d1)
        self.assertNoResult(d2)
        self.reactor.spawned[0].exit(0)
        self.successResultOf(d1)
        self.successResultOf(d2)
        self.successResultOf(supervisor.stop())

    def test_ensureReadyDuringStop(self) -> None:
        """
        llama-swap #946: with a child ignoring SIGTERM, ensureReady during
        the stop waits for the SIGKILL and the exit, then starts a fresh
        child and becomes ready; the stop also completes.
        """
        supervisor = self.makeSupervisor(unloadTimeout=2.0)
        self.startReady(supervisor)
        first = self.reactor.spawned[0]
        stopping = supervisor.stop()
        self.assertIs(supervisor.state, State.STOPPING)
        ready = supervisor.ensureReady()
        self.reactor.advance(2.0)
        self.assertEqual(self.signaller.signalsTo(first.originalPid), [TERM, KILL])
        self.assertNoResult(ready)
        self.assertEqual(len(self.reactor.spawned), 1)
        first.exit(None, KILL)
        self.successResultOf(stopping)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertIs(supervisor.state, State.STARTING)
        self.prober.watches[1].healthy()
        self.successResultOf(ready)
        self.assertIs(supervisor.state, State.READY)

    def test_grandchildHoldingPipes(self) -> None:
        """
        A stop completes shortly after the exit even if a grandchild keeps
        the pipes open; our ends are closed later.
        """
        supervisor = self.makeSupervisor()
        self.startReady(supervisor)
        child = self.reactor.spawned[0]
        d = supervisor.stop()
        child.exit(None, TERM, endPipes=False)
        self.assertNoResult(d)
        self.reactor.advance(DRAIN_GRACE)
        self.successResultOf(d)
        self.reactor.advance(PIPE_CLOSE_GRACE)
        self.assertTrue(child.lostConnection)
        self.assertTrue(child.ended)

    def test_cmdStop(self) -> None:
        """
        With C{cmdStop}, C{${PID}} is substituted and the command run
        through the launcher instead of sending SIGTERM; SIGKILL still
        follows after the grace.
        """
        supervisor = self.makeSupervisor(cmdStop="docker stop --pid ${PID} 'x y'")
        self.startReady(supervisor)
        child = self.reactor.spawned[0]
        pid = child.originalPid
        supervisor.stop(3.0)
        stopper = self.reactor.spawned[1]
        self.assertEqual(stopper.args[3:5], [LAUNCHER, "4242"])
        self.assertEqual(
            stopper.args[5:], ["--report-fd=3", "--", "docker", "stop", "--pid", str(pid), "x y"]
        )
        self.assertEqual(stopper.env, child.env)
        self.assertEqual(self.signaller.signalsTo(pid), [])
        stopper.output(b"stopping container\n")
        self.assertIn(("m1", "cmdStop", "stopping container"), self.lines)
        stopper.exit(0)
        self.reactor.advance(3.0)
        self.assertEqual(self.signaller.signalsTo(pid), [KILL])

    def test_unrunnableCmdStopFallsBackToTerm(self) -> None:
        """
        A C{cmdStop} that lexes to nothing falls back to SIGTERM.
        """
        supervisor = self.makeSupervisor(cmdStop="# nothing\n")
        self.startReady(supervisor)
        pid = self.reactor.spawned[0].originalPid
        supervisor.stop()
        self.assertEqual(self.signaller.signalsTo(pid), [TERM])

    def test_unexpectedExit(self) -> None:
        """
        A ready child dying on its own leaves it stopped; the next
        ensureReady starts it again.
        """
        supervisor = self.makeSupervisor()
        self.startReady(supervisor)
        self.reactor.spawned[0].exit(None, signal.SIGSEGV)
        self.assertIs(supervisor.state, State.STOPPED)
        d = supervisor.ensureReady()
        self.assertEqual(len(self.reactor.spawned), 2)
        self.prober.watches[1].healthy()
        self.successResultOf(d)


class ShutdownTests(SupervisorTestCase):
    """
    Shutdown: terminal; fails waiters; kills with a short grace.
    """

    def test_shutdownReady(self) -> None:
        """
        Shutdown becomes C{shutdown} at once, SIGTERMs, SIGKILLs after the
        grace, and fires when the child is gone; later starts fail.
        """
        supervisor = self.makeSupervisor()
        self.startReady(supervisor)
        pid = self.reactor.spawned[0].originalPid
        d = supervisor.shutdown(1.0)
        self.assertIs(supervisor.state, State.SHUTDOWN)
        self.assertEqual(self.signaller.signalsTo(pid), [TERM])
        self.reactor.advance(1.0)
        self.assertEqual(self.signaller.signalsTo(pid), [TERM, KILL])
        self.reactor.spawned[0].exit(None, KILL)
        self.successResultOf(d)
        failure = self.failureResultOf(supervisor.ensureReady(), UpstreamShutdown)
        self.assertEqual(str(failure.value), "[m1] shutdown")
        self.successResultOf(supervisor.stop())

    def test_shutdownDuringStart(self) -> None:
        """
        Shutdown during a start fails the waiting callers at once.
        """
        supervisor = self.makeSupervisor()
        d = supervisor.ensureReady()
        self.signaller.autoExit = True
        done = supervisor.shutdown()
        self.failureResultOf(d, UpstreamShutdown)
        self.successResultOf(done)


class TTLTests(SupervisorTestCase):
    """
    The TTL under a clock.
    """

    def test_idleUnload(self) -> None:
        """
        With nothing in flight the model is unloaded C{ttl} seconds after it
        became ready.
        """
        self.signaller.autoExit = True
        supervisor = self.makeSupervisor(ttl=5.0)
        self.startReady(supervisor)
        self.reactor.advance(4.99)
        self.assertIs(supervisor.state, State.READY)
        self.reactor.advance(0.01)
        self.assertIs(supervisor.state, State.STOPPED)

    def test_inFlightBlocksTTL(self) -> None:
        """
        In-flight requests block the TTL; the idle clock starts when the
        last one finishes (a generation longer than the TTL is safe).
        """
        self.signaller.autoExit = True
        supervisor = self.makeSupervisor(ttl=5.0)
        self.startReady(supervisor)
        supervisor.requestStarted()
        supervisor.requestStarted()
        self.reactor.advance(100)
        supervisor.requestFinished()
        self.reactor.advance(100)
        self.assertIs(supervisor.state, State.READY)
        supervisor.requestFinished()
        self.assertEqual(supervisor.inFlight, 0)
        self.reactor.advance(4.99)
        self.assertIs(supervisor.state, State.READY)
        self.reactor.advance(0.01)
        self.assertIs(supervisor.state, State.STOPPED)

    def test_requestAsTTLFires(self) -> None:
        """
        A request arriving as the TTL fires, in either order, gets the
        running model or a fresh start, never a hang.
        """
        supervisor = self.makeSupervisor(ttl=5.0)
        self.startReady(supervisor)
        # Just before: ensureReady resets the idle clock.
        self.reactor.advance(4.999)
        self.successResultOf(supervisor.ensureReady())
        self.reactor.advance(4.999)
        self.assertIs(supervisor.state, State.READY)
        # Just after: the stop is under way; the request waits, then starts.
        self.reactor.advance(0.001)
        self.assertIs(supervisor.state, State.STOPPING)
        supervisor.requestStarted()
        d = supervisor.ensureReady()
        self.assertNoResult(d)
        self.reactor.spawned[0].exit(None, TERM)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.prober.watches[1].healthy()
        self.successResultOf(d)
        self.reactor.advance(1000)
        self.assertIs(supervisor.state, State.READY)
        supervisor.requestFinished()
        self.reactor.advance(5.0)
        self.assertIs(supervisor.state, State.STOPPING)

    def test_zeroTTL(self) -> None:
        """
        C{ttl: 0} never unloads.
        """
        supervisor = self.makeSupervisor(ttl=0)
        self.startReady(supervisor)
        supervisor.requestStarted()
        supervisor.requestFinished()
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class UpdateSpecTests(SupervisorTestCase):
    """
    A reload's live changes reach the running supervisor without a restart.
    """

    def test_newTTLRestartsIdleTimer(self) -> None:
        """
        A new TTL on an idle ready model re-arms its idle timer with the
        new value; the child is kept.
        """
        self.signaller.autoExit = True
        supervisor = self.makeSupervisor(ttl=5.0)
        self.startReady(supervisor)
        pid = supervisor.pid
        self.reactor.advance(4)
        supervisor.updateSpec(makeSpec(ttl=10.0))
        self.reactor.advance(9.99)
        self.assertIs(supervisor.state, State.READY)
        self.assertEqual(supervisor.pid, pid)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.advance(0.01)
        self.assertIs(supervisor.state, State.STOPPED)

    def test_zeroTTLDisarms(self) -> None:
        """
        Setting the TTL to 0 keeps an idle model loaded.
        """
        supervisor = self.makeSupervisor(ttl=5.0)
        self.startReady(supervisor)
        supervisor.updateSpec(makeSpec(ttl=0.0))
        self.reactor.advance(100)
        self.assertIs(supervisor.state, State.READY)

    def test_busyModelUsesNewTTLWhenIdle(self) -> None:
        """
        With requests in flight nothing is armed; the new TTL applies once
        the last one ends.  The timeouts are taken, the process fields kept.
        """
        self.signaller.autoExit = True
        supervisor = self.makeSupervisor(ttl=5.0)
        self.startReady(supervisor)
        supervisor.requestStarted()
        supervisor.updateSpec(makeSpec(ttl=2.0, unloadTimeout=3.0, argv=["other"]))
        self.assertEqual(supervisor.spec.unloadTimeout, 3.0)
        self.assertEqual(supervisor.spec.argv, makeSpec().argv)
        self.reactor.advance(100)
        supervisor.requestFinished()
        self.reactor.advance(2.0)
        self.assertIs(supervisor.state, State.STOPPED)


class KeeperModeTests(SupervisorTestCase):
    """
    In keeper mode the launcher stays the server's parent: the server's PID
    arrives later on the report descriptor, and every signal goes through
    the launcher.
    """

    def setUp(self) -> None:
        super().setUp()
        self.reactor.autoReport = False

    def test_pidReportedLater(self) -> None:
        """
        Until the launcher reports, the server has no PID and nothing is
        recorded; the report sets C{pid} and records the server, and its
        exit unrecords it.
        """
        supervisor = self.makeSupervisor()
        d = supervisor.ensureReady()
        launcher = self.reactor.spawned[0]
        self.assertIsNone(supervisor.pid)
        self.assertEqual(self.recorder.calls, [])
        launcher.output(b"50", fd=3)
        launcher.output(b"00\n", fd=3)
        self.assertEqual(supervisor.pid, 5000)
        self.assertEqual(self.recorder.calls, [("add", "m1", 5000, "llama-server", 0.0)])
        launcher.exit(3)
        self.failureResultOf(d, PrematureExit)
        self.assertEqual(self.recorder.calls[-1], ("remove", 5000))

    def test_signalsGoThroughLauncher(self) -> None:
        """
        SIGTERM goes to the launcher, which passes it to the tree; the
        escalation is the launcher's kill-all signal, never a SIGKILL that
        would orphan the tree; the server's group is not swept after the
        launcher exits (the launcher did it).
        """
        supervisor = self.makeSupervisor()
        d = supervisor.ensureReady()
        launcher = self.reactor.spawned[0]
        launcher.output(b"5000\n", fd=3)
        self.prober.watches[-1].healthy()
        self.successResultOf(d)
        stopped = supervisor.stop(2.0)
        self.assertEqual(self.launcherSignaller.sent, [(launcher.originalPid, TERM)])
        self.reactor.advance(2.0)
        self.assertEqual(
            self.launcherSignaller.sent,
            [(launcher.originalPid, TERM), (launcher.originalPid, signal.SIGUSR1)],
        )
        launcher.exit(None, KILL)
        self.successResultOf(stopped)
        self.assertEqual(self.signaller.sent, [])

    def test_signalBeforeReport(self) -> None:
        """
        A stop before the server's PID is known signals the launcher,
        which holds the signal until the server runs.
        """
        supervisor = self.makeSupervisor()
        d = supervisor.ensureReady()
        launcher = self.reactor.spawned[0]
        supervisor.stop(1.0)
        self.failureResultOf(d, StartAbortedError)
        self.assertEqual(self.launcherSignaller.sent, [(launcher.originalPid, TERM)])
        self.assertEqual(self.signaller.sent, [])

    def test_cmdStopBeforeReportFallsBackToTerm(self) -> None:
        """
        C{cmdStop} needs C{${PID}}: before the server has started, SIGTERM
        is sent instead.
        """
        supervisor = self.makeSupervisor(cmdStop="kill ${PID}")
        d = supervisor.ensureReady()
        launcher = self.reactor.spawned[0]
        supervisor.stop(1.0)
        self.failureResultOf(d, StartAbortedError)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(self.launcherSignaller.sent, [(launcher.originalPid, TERM)])

    def test_cmdStopGetsServerPid(self) -> None:
        """
        C{${PID}} is the server's PID, not the launcher's.
        """
        supervisor = self.makeSupervisor(cmdStop="kill ${PID}")
        d = supervisor.ensureReady()
        launcher = self.reactor.spawned[0]
        launcher.output(b"5000\n", fd=3)
        self.prober.watches[-1].healthy()
        self.successResultOf(d)
        supervisor.stop(1.0)
        self.assertEqual(self.reactor.spawned[1].args[-3:], ["--", "kill", "5000"])
        self.assertEqual(self.launcherSignaller.sent, [])
