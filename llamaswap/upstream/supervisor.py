# -*- test-case-name: test.upstream.test_supervisor -*-
"""
L{Supervisor}: one supervised upstream process per model.

It binds the pure L{Lifecycle} to the world: it spawns children through
L{llamaswap.upstream.process}, probes readiness through a
L{llamaswap.upstream.health.HealthProber}, runs the machine's timers on an
injected clock, fires callers' Deferreds and tells observers about state
changes and output lines.  Every decision is the machine's; events are
queued and handled one at a time, so a callback that calls back into the
supervisor never sees a half-applied transition.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Protocol
from urllib.parse import urlsplit

from attrs import evolve
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import (
    IDelayedCall,
    IProcessTransport,
    IReactorProcess,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IAgent

from llamaswap.config.cmdline import splitCommand

from .errors import (
    HealthCheckTimedOut,
    PrematureExit,
    SpawnError,
    StartAbortedError,
    UpstreamError,
    UpstreamShutdown,
)
from .health import HealthProber, HealthWatch, HTTPHealthProber, healthURL
from .lifecycle import (
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
    Reason,
    RequestFinished,
    RequestStarted,
    RunHook,
    RunStopCommand,
    SettingsChanged,
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
from .process import (
    KEEP_LINES,
    ExitStatus,
    StopCommandProtocol,
    UpstreamProtocol,
    buildEnvironment,
    signalGroup,
    signalProcess,
    spawnUpstream,
)
from .spec import UpstreamSpec

StateObserver = Callable[[str, State, State], None]
Spawner = Callable[..., IProcessTransport]
OutputObserver = Callable[[str, str, str], None]


class Watchable(Protocol):
    """
    What the parts that only watch a supervisor (events, load history, warm
    connections) use of it; a L{Supervisor} is one.
    """

    @property
    def state(self) -> State: ...

    def addStateReporter(self, reporter: StateObserver) -> Callable[[], None]: ...

    def addOutputObserver(self, observer: OutputObserver) -> Callable[[], None]: ...


#: Grace before SIGKILL when a start fails (health-check timeout).
ABORT_GRACE = 5.0
#: Grace before SIGKILL on shutdown.
SHUTDOWN_GRACE = 1.0


class UpstreamRecorder(Protocol):
    """
    Where running upstreams are recorded so a later llamaswap can reap
    them (see L{llamaswap.upstream.leftovers.LeftoverRegistry}).
    """

    def add(self, modelID: str, pid: int, argv0: str, started: float) -> None:
        """
        Upstream C{pid} of C{modelID} was spawned.
        """

    def remove(self, pid: int) -> None:
        """
        Upstream C{pid} is gone.
        """


class LifecycleHooks(Protocol):
    """
    Bounded work around a model's readiness and stop (the prompt cache's
    restore and save, L{llamaswap.upstream.promptcache}).

    @ivar afterReadyTimeout: the longest L{afterReady} may hold the start
        (C{0}: no hook).
    @ivar beforeStopTimeout: the longest L{beforeStop} may delay the stop
        signal (C{0}: no hook).
    """

    afterReadyTimeout: float
    beforeStopTimeout: float

    def afterReady(self) -> Deferred[None]:
        """
        The server is healthy and nobody has been granted it yet.
        """

    def beforeStop(self) -> Deferred[None]:
        """
        The ready server is about to be signalled to stop.
        """


class _Waiter:
    """
    A caller's token in the machine's waiting lists.
    """

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<waiter {self.kind} {id(self):#x}>"


class Supervisor:
    """
    Supervises the upstream described by an L{UpstreamSpec}.

    Callers use L{ensureReady} before proxying, bracket each proxied
    request with L{requestStarted}/L{requestFinished} (the in-flight count
    blocks the TTL and tells eviction what is busy), and L{stop} or
    L{shutdown} to take it down.  L{state} is a snapshot for display and
    decisions elsewhere; never gate a start on it: call L{ensureReady}.
    """

    log = Logger()

    def __init__(
        self,
        spec: UpstreamSpec,
        *,
        processReactor: IReactorProcess,
        clock: IReactorTime,
        prober: HealthProber | None = None,
        agent: IAgent | None = None,
        recorder: UpstreamRecorder | None = None,
        signaller: Callable[..., bool] = signalGroup,
        launcherSignaller: Callable[[int, int], bool] = signalProcess,
        environ: dict[str, str] | None = None,
        parentPid: int | None = None,
        abortGrace: float = ABORT_GRACE,
        hooks: LifecycleHooks | None = None,
        spawner: Spawner = spawnUpstream,
        dropIdleConnections: Callable[[str], object] | None = None,
    ) -> None:
        """
        @param spec: what to run.
        @param processReactor: spawns the children.
        @param clock: runs every timer (health, TTL, stop escalation).
        @param prober: watches the health endpoint; by default an
            L{HTTPHealthProber} on C{agent}.
        @param agent: the HTTP agent for the default prober (required when
            C{spec.checkEndpoint} is set and no C{prober} is given).
        @param recorder: told about spawned and exited children (leftover
            reaping); optional.
        @param signaller: C{signaller(pgid, sig, pid=None)} signals a
            process group (tests replace it).
        @param launcherSignaller: C{launcherSignaller(pid, sig)} signals
            the launcher that keeps the server (tests replace it).
        @param environ: the base environment (default C{os.environ}).
        @param parentPid: the PID children must find as their parent
            (default ours).
        @param abortGrace: grace before C{SIGKILL} after a failed start.
        @param hooks: work run after readiness and before a stop; its
            failures are logged and never block the lifecycle.
        @param spawner: starts the child, with L{spawnUpstream}'s arguments
            (L{llamaswap.upstream.standby.StandbyLaunchers.spawn} starts it
            through a launcher started in advance).
        @param dropIdleConnections: C{dropIdleConnections(url)} closes the
            idle pooled connections to that server; the default prober
            calls it before a probe that was not expected to be needed (see
            L{readinessVouched}).
        """
        self.spec = spec
        self.modelID = spec.modelID
        self._processReactor = processReactor
        self._clock = clock
        if prober is None and spec.checkEndpoint is not None:
            if agent is None:
                raise TypeError("a prober or an agent is needed for a health check")
            prober = HTTPHealthProber(
                agent, clock, spec.probeTimeout, beforeSafetyProbe=dropIdleConnections
            )
        self._prober = prober
        self._recorder = recorder
        self._signaller = signaller
        self._launcherSignaller = launcherSignaller
        self._environ = environ
        self._parentPid = parentPid
        self._spawner = spawner
        self._machine = Lifecycle(
            healthCheckTimeout=spec.healthCheckTimeout,
            unloadTimeout=spec.unloadTimeout,
            ttl=spec.ttl,
            probe=spec.checkEndpoint is not None,
            stopCommand=spec.cmdStop is not None,
            abortGrace=abortGrace,
            afterReadyTimeout=hooks.afterReadyTimeout if hooks is not None else 0.0,
            beforeStopTimeout=hooks.beforeStopTimeout if hooks is not None else 0.0,
        )
        self._hooks = hooks
        self._hookCall: Deferred[None] | None = None
        self._waiters: dict[_Waiter, Deferred[None]] = {}
        self._queue: deque[Event] = deque()
        self._draining = False
        #: How many calls of L{_feed} are handling events (callers'
        #: callbacks may feed in again).
        self._feeding = 0
        self._timers: dict[Timer, IDelayedCall] = {}
        self._child: UpstreamProtocol | None = None
        self._watch: HealthWatch | None = None
        self._stateObservers: list[StateObserver] = []
        self._stateReporters: list[StateObserver] = []
        #: State changes the reporters have yet to hear of, oldest first.
        self._unreported: deque[tuple[State, State]] = deque()
        self._outputObservers: list[OutputObserver] = []
        self._probePath = ""
        self._ownLines: deque[str] = deque(maxlen=KEEP_LINES)
        if spec.checkEndpoint is not None:
            path = urlsplit(healthURL("http://x", spec.checkEndpoint)).path
            self._probePath = path if len(path) > 1 else ""

    # ------------------------------------------------------------ public

    @property
    def state(self) -> State:
        """
        The current lifecycle state (a snapshot).
        """
        return self._machine.state

    @property
    def inFlight(self) -> int:
        """
        Requests currently being served.
        """
        return self._machine.inFlight

    @property
    def pid(self) -> int | None:
        """
        The running server's PID (also its process-group ID, and C{${PID}}
        in C{cmdStop}), once the launcher has reported it.
        """
        if self._child is not None and self._child.running:
            return self._child.pid
        return None

    @property
    def lastLines(self) -> tuple[str, ...]:
        """
        The latest child's last output lines, oldest first, without the
        server's log lines of our own health probes (a server that logs
        every request would otherwise fill them with C{GET /health 503}).
        """
        return tuple(self._ownLines)

    def ensureReady(self) -> Deferred[None]:
        """
        Make the upstream ready: at once if it is; join a start in
        progress; after a stop in progress, start it again.

        Each caller gets its own Deferred: cancelling it forgets only that
        caller (the start goes on for the others).

        @return: fires with C{None} when ready; fails with a
            L{StartFailed} subclass (carrying the last output lines) or
            L{UpstreamShutdown}.
        """
        return self._request("start", StartRequested)

    def stop(self, timeout: float | None = None) -> Deferred[None]:
        """
        Take the upstream down: C{cmdStop} or C{SIGTERM} to its group, then
        C{SIGKILL} to the group after C{timeout} seconds (C{None} or C{<= 0}:
        the spec's C{unloadTimeout}).  Aborts a start in progress; cancels
        starts queued behind an earlier stop; idempotent.

        @return: fires with C{None} once the child is gone.
        """
        if timeout is None or timeout <= 0:
            timeout = self.spec.unloadTimeout
        return self._request("stop", lambda w: StopRequested(w, timeout))

    def shutdown(self, grace: float = SHUTDOWN_GRACE) -> Deferred[None]:
        """
        Become C{shutdown} at once: fail every waiting start, kill a running
        child with C{grace} seconds of grace; every later L{ensureReady}
        fails with L{UpstreamShutdown}.

        @return: fires with C{None} once the child is gone.
        """
        return self._request("shutdown", lambda w: ShutdownRequested(w, grace))

    def requestStarted(self) -> None:
        """
        A proxied request for this model began (blocks the TTL).
        """
        self._feed(RequestStarted())

    def setIdleTimeout(self, seconds: float | None) -> None:
        """
        Unload after C{seconds} idle from now on (C{0}: as soon as it is
        idle; L{None}: never), as a request's C{ttl}/C{keep_alive} asks.
        """
        self._feed(IdleTimeoutChanged(seconds))

    def requestFinished(self) -> None:
        """
        A proxied request for this model ended; when none is left the TTL
        idle clock starts.
        """
        self._feed(RequestFinished())

    def updateSpec(self, spec: UpstreamSpec) -> None:
        """
        A reload changed the live settings of this model but not its
        process: take C{spec}'s C{ttl}, C{unloadTimeout} and
        C{healthCheckTimeout} (the process fields stay those of the running
        child).  The next start and stop use the new timeouts; an idle
        model's TTL timer restarts with the new TTL.
        """
        self.spec = evolve(
            self.spec,
            healthCheckTimeout=spec.healthCheckTimeout,
            unloadTimeout=spec.unloadTimeout,
            ttl=spec.ttl,
        )
        self._feed(SettingsChanged(spec.healthCheckTimeout, spec.unloadTimeout, spec.ttl))

    def addStateObserver(self, observer: StateObserver) -> Callable[[], None]:
        """
        Call C{observer(modelID, old, new)} on every state change.

        @return: a callable that removes the observer.
        """
        self._stateObservers.append(observer)
        return lambda: self._remove(self._stateObservers, observer)

    @property
    def readinessVouched(self) -> bool:
        """
        Whether the start in progress will be ready at the server's
        announcing line, without a probe (L{llamaswap.upstream.health}).
        """
        return bool(self._watch is not None and getattr(self._watch, "vouched", False))

    def addStateReporter(self, reporter: StateObserver) -> Callable[[], None]:
        """
        Call C{reporter(modelID, old, new)} on every state change, in order,
        but only once the callers waiting on that change have been answered:
        for observers that only report (events, metrics, load history), so
        that reporting a start does not delay the requests that waited for
        it.

        @return: a callable that removes the reporter.
        """
        self._stateReporters.append(reporter)
        return lambda: self._remove(self._stateReporters, reporter)

    def addOutputObserver(self, observer: OutputObserver) -> Callable[[], None]:
        """
        Call C{observer(modelID, stream, line)} for every output line;
        C{stream} is C{"stdout"}, C{"stderr"} or C{"cmdStop"}.

        @return: a callable that removes the observer.
        """
        self._outputObservers.append(observer)
        return lambda: self._remove(self._outputObservers, observer)

    # ------------------------------------------------------------ plumbing

    @staticmethod
    def _remove(observers: list, observer: object) -> None:
        if observer in observers:
            observers.remove(observer)

    def _request(self, kind: str, makeEvent: Callable[[_Waiter], Event]) -> Deferred[None]:
        waiter = _Waiter(kind)

        def cancel(d: Deferred[None]) -> None:
            if self._waiters.pop(waiter, None) is not None:
                self._feed(WaiterCancelled(waiter))

        d: Deferred[None] = Deferred(cancel)
        self._waiters[waiter] = d
        self._feed(makeEvent(waiter))
        return d

    def _feed(self, event: Event) -> None:
        """
        Queue C{event}; handle queued events in order unless already doing
        so.

        Callers' Deferreds are fired last, once the event's other effects
        are done, and with the queue open: a callback that calls back in
        (C{await ensureReady()} then C{stop()}) is handled at once, after
        anything already queued, so it sees its own call take effect.
        """
        self._queue.append(event)
        if self._draining:
            return
        self._draining = True
        self._feeding += 1
        try:
            while self._queue:
                current = self._queue.popleft()
                answers: list[Effect] = []
                for effect in self._machine.handle(current, self._clock.seconds()):
                    if isinstance(effect, (Succeed, Fail)):
                        answers.append(effect)
                    else:
                        self._safely(effect)
                if answers:
                    self._draining = False
                    try:
                        for effect in answers:
                            self._safely(effect)
                    finally:
                        self._draining = True
        finally:
            self._draining = False
            self._feeding -= 1
        if not self._feeding:
            # Outermost: the callers' callbacks (and what they started,
            # such as a request going upstream) are done.
            self._report()

    def _report(self) -> None:
        """
        Tell the reporters of the state changes made so far.
        """
        while self._unreported:
            old, new = self._unreported.popleft()
            for reporter in list(self._stateReporters):
                try:
                    reporter(self.modelID, old, new)
                except Exception:
                    self.log.failure("[{model}] state reporter failed", model=self.modelID)

    def _safely(self, effect: Effect) -> None:
        try:
            self._execute(effect)
        except Exception:
            self.log.failure(
                "[{model}] failed to carry out {effect!r}", model=self.modelID, effect=effect
            )

    def _execute(self, effect: Effect) -> None:
        getattr(self, "_do" + type(effect).__name__)(effect)

    # ------------------------------------------------------------ effects

    def _doSpawn(self, effect: Spawn) -> None:
        attempt = effect.attempt
        argv = self.spec.argv
        self._child = None
        protocol = UpstreamProtocol(
            self.modelID,
            self._clock,
            self._onLine,
            signaller=self._signaller,
            launcherSignaller=self._launcherSignaller,
        )
        try:
            env = buildEnvironment(self.spec.env, self._environ)
            transport = self._spawner(
                self._processReactor, protocol, argv, env, self.spec.cwd, self._parentPid
            )
        except Exception as e:
            self._feed(
                SpawnFailed(
                    attempt, f"failed to start command '{self.spec.shownArgv()}': {e}"
                )
            )
            return
        if protocol.launcherPid is None:
            protocol.launcherPid = transport.pid
        launcherPid = protocol.launcherPid
        assert launcherPid is not None
        self._child = protocol
        self._ownLines.clear()
        protocol.serverStarted.addCallback(self._serverStarted, argv[0])
        protocol.exited.addCallback(self._childExited, attempt, protocol)
        self._feed(Spawned(attempt, launcherPid))

    def _serverStarted(self, pid: int, argv0: str) -> None:
        """
        The launcher reports that the server C{exec}'d as C{pid}: record it.
        """
        self.log.info(
            "[{model}] started {argv0} as pid {pid}", model=self.modelID, argv0=argv0, pid=pid
        )
        if self._recorder is not None:
            try:
                self._recorder.add(self.modelID, pid, argv0, self._clock.seconds())
            except Exception:
                self.log.failure("[{model}] could not record pid {pid}", model=self.modelID, pid=pid)

    def _childExited(self, status: ExitStatus, attempt: int, protocol: UpstreamProtocol) -> None:
        self.log.info(
            "[{model}] pid {pid} ended: {status}",
            model=self.modelID,
            pid=protocol.pid if protocol.pid is not None else protocol.launcherPid,
            status=status.describe(),
        )
        if self._recorder is not None and protocol.pid is not None:
            try:
                self._recorder.remove(protocol.pid)
            except Exception:
                self.log.failure("[{model}] could not unrecord pid", model=self.modelID)
        self._feed(ChildExited(attempt, status.exitCode, status.signal))

    def _onLine(self, stream: str, line: str) -> None:
        # A line is a sign of life (servers log when loading is done), so
        # it nudges the health watch; but not the server's log of our own
        # probe, or probes would drive themselves.
        isProbe = bool(self._probePath) and self._probePath in line
        if not isProbe:
            self._ownLines.append(line)
        if self._watch is not None and not isProbe:
            self._watch.nudge(line)
        self._notifyOutput(stream, line)

    def _notifyOutput(self, stream: str, line: str) -> None:
        for observer in list(self._outputObservers):
            try:
                observer(self.modelID, stream, line)
            except Exception:
                self.log.failure("[{model}] output observer failed", model=self.modelID)

    def _doStartProbe(self, effect: StartProbe) -> None:
        assert self._prober is not None and self.spec.checkEndpoint is not None
        attempt = effect.attempt
        watch = self._prober.watch(healthURL(self.spec.proxy, self.spec.checkEndpoint))
        self._watch = watch

        def healthy(_: None) -> None:
            if self._watch is watch:
                self._watch = None
            self._feed(ProbeSucceeded(attempt))

        def failed(failure: Failure) -> None:
            if self._watch is watch:
                self._watch = None
            if not failure.check(CancelledError):
                self.log.failure("[{model}] health watch failed", failure, model=self.modelID)

        watch.ready.addCallbacks(healthy, failed)

    def _doCancelProbe(self, effect: CancelProbe) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()

    def _doArmTimer(self, effect: ArmTimer) -> None:
        self._cancelTimer(effect.timer)
        self._timers[effect.timer] = self._clock.callLater(
            max(effect.delay, 0.0), self._timerFired, effect.timer
        )

    def _timerFired(self, timer: Timer) -> None:
        self._timers.pop(timer, None)
        self._feed(TimerFired(timer))

    def _doCancelTimer(self, effect: CancelTimer) -> None:
        self._cancelTimer(effect.timer)

    def _cancelTimer(self, timer: Timer) -> None:
        call = self._timers.pop(timer, None)
        if call is not None and call.active():
            call.cancel()

    def _doSignalGroup(self, effect: SignalGroup) -> None:
        child = self._child
        if child is None:
            return
        sent = child.signal(effect.signal)
        self.log.info(
            "[{model}] signal {sig} to the tree of pid {pgid}: {outcome}",
            model=self.modelID,
            sig=effect.signal,
            pgid=child.pid if child.pid is not None else child.launcherPid,
            outcome="sent" if sent else "nobody left",
        )

    def _doRunStopCommand(self, effect: RunStopCommand) -> None:
        child = self._child
        if child is None or self.spec.cmdStop is None:
            return
        attempt = effect.attempt
        if child.pid is None:
            # Not exec'd yet: there is no ${PID} to give cmdStop.
            self._feed(StopCommandFailed(attempt, "the server has not started yet"))
            return
        try:
            argv = splitCommand(self.spec.cmdStop.replace("${PID}", str(child.pid)))
            env = buildEnvironment(self.spec.env, self._environ)
            protocol = StopCommandProtocol(self.modelID, self._notifyOutput)
            spawnUpstream(self._processReactor, protocol, argv, env, self.spec.cwd, self._parentPid)
        except Exception as e:
            self.log.warn(
                "[{model}] cmdStop could not be run ({error}); sending SIGTERM",
                model=self.modelID,
                error=e,
            )
            self._feed(StopCommandFailed(attempt, str(e)))
            return
        self.log.info(
            "[{model}] running cmdStop: {argv}",
            model=self.modelID,
            argv=self.spec.shownArgv(argv),
        )

    def _doRunHook(self, effect: RunHook) -> None:
        hooks = self._hooks
        hook, attempt = effect.hook, effect.attempt
        if hooks is None:
            self._feed(HookDone(hook, attempt))
            return

        def done(result: object) -> None:
            if self._hookCall is d:
                self._hookCall = None
            if isinstance(result, Failure) and not result.check(CancelledError):
                self.log.failure(
                    "[{model}] {hook} hook failed", result, model=self.modelID, hook=hook.value
                )
            self._feed(HookDone(hook, attempt))

        try:
            d = hooks.afterReady() if hook is Hook.AFTER_READY else hooks.beforeStop()
        except Exception:
            d = fail()
        self._hookCall = d
        d.addBoth(done)

    def _doStateChanged(self, effect: StateChanged) -> None:
        self.log.info(
            "[{model}] {old} -> {new}",
            model=self.modelID,
            old=effect.old.value,
            new=effect.new.value,
        )
        for observer in list(self._stateObservers):
            try:
                observer(self.modelID, effect.old, effect.new)
            except Exception:
                self.log.failure("[{model}] state observer failed", model=self.modelID)
        if self._stateReporters:
            self._unreported.append((effect.old, effect.new))

    def _doSucceed(self, effect: Succeed) -> None:
        for waiter in effect.waiters:
            d = self._waiters.pop(waiter, None)  # type: ignore[call-overload]
            if d is not None:
                d.callback(None)

    def _doFail(self, effect: Fail) -> None:
        for waiter in effect.waiters:
            d = self._waiters.pop(waiter, None)  # type: ignore[call-overload]
            if d is not None:
                d.errback(Failure(self._error(effect.reason)))

    def _error(self, reason: Reason) -> UpstreamError:
        lines = self.lastLines
        if isinstance(reason, SpawnFailure):
            return SpawnError(self.modelID, reason.message)
        if isinstance(reason, ExitedDuringStart):
            return PrematureExit(self.modelID, reason.exitCode, reason.signal, lines)
        if isinstance(reason, HealthCheckTimeout):
            return HealthCheckTimedOut(self.modelID, reason.timeout, lines)
        if isinstance(reason, StartAborted):
            return StartAbortedError(self.modelID, lines)
        return UpstreamShutdown(self.modelID)

    def _doNote(self, effect: Note) -> None:
        details = dict(effect.details)
        if effect.what == "unexpected-exit":
            status = ExitStatus(details.get("exitCode"), details.get("signal"))  # type: ignore[arg-type]
            self.log.warn(
                "[{model}] upstream process exited unexpectedly ({status})",
                model=self.modelID,
                status=status.describe(),
            )
        elif effect.what == "ttl-unload":
            self.log.info(
                "[{model}] unloading model, TTL of {ttl}s reached",
                model=self.modelID,
                ttl=details.get("ttl"),
            )
        elif effect.what == "escalate":
            self.log.warn(
                "[{model}] still running after the stop grace; sending SIGKILL to its group",
                model=self.modelID,
            )
        elif effect.what == "hook-timeout":
            self.log.warn(
                "[{model}] the {hook} hook did not finish in time; going on without it",
                model=self.modelID,
                hook=details.get("hook"),
            )
            call, self._hookCall = self._hookCall, None
            if call is not None:
                call.cancel()
        elif effect.what == "unbalanced-finish":
            self.log.warn(
                "[{model}] requestFinished() without a matching requestStarted()",
                model=self.modelID,
            )


__all__ = ["LifecycleHooks", "Supervisor", "UpstreamRecorder", "UpstreamSpec"]
