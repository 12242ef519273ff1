# -*- test-case-name: test.routing.test_router -*-
"""
The router: the shell that carries out the L{Scheduler}'s decisions on the
models' L{Supervisor}s and hands each served request a L{Lease}.

Everything the scheduler is told goes through one queue and is handled one
event at a time (a supervisor or a client callback that calls back into the
router only queues another event), so decisions are never interleaved.

 - A swap stops the models it evicts in parallel, each with its own
   C{unloadTimeout} (llama-swap uses the long C{healthCheckTimeout} here;
   we do not), then calls C{ensureReady} on its target; when the scheduler
   found it safe (C{StartSwap.overlap}, see L{llamaswap.routing.overlap})
   it calls C{ensureReady} first and stops the evicted models after it, so
   the target starts while they exit.  The
   swap belongs to the router, not to a client: it goes on when every
   waiting client has left.
 - L{Router.acquire} returns a cancellable Deferred: cancelling it before
   the grant takes the request out of the queue (or off the swap it
   joined); afterwards the L{Lease} must be released, once, however the
   request ends.
 - Errors are L{llamaswap.web.errors.HTTPError}s, so the HTTP layer answers
   them as they are: 404 L{NoLocalServer}, 429 L{ConcurrencyLimitReached},
   500/503 L{ModelStartFailed} (with the upstream's exit status and last
   output lines), 503 L{ModelUnloaded} and L{RouterShuttingDown}.
 - L{Router.reconfigure} (a configuration reload) gives the scheduler the
   new settings; a model whose supervisor is replaced (restarted) or
   dropped (removed) drains: on the scheduler's L{Retire} its old
   supervisor is stopped and shut down, the new one installed.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Callable, Hashable, Iterable, Mapping, Protocol, Sequence

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    fail,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..config.model import Config
from ..httperrors import HTTPError, ModelNotFound, TooManyRequests, UpstreamUnavailable
from ..upstream.errors import (
    StartAbortedError,
    UpstreamError,
    UpstreamShutdown,
)
from ..upstream.lifecycle import State
from .groups import Evictor
from .memory import ModelTooLarge
from .scheduler import (
    NO_LOCAL_SERVER,
    SHUTTING_DOWN,
    AbandonSwap,
    Decision,
    Fail,
    Grant,
    HoldBack,
    QueuePosition,
    Reject,
    Retire,
    Scheduler,
    ShuttingDown,
    StartSwap,
    Stop,
    Unloaded,
)

__all__ = [
    "ConcurrencyLimitReached",
    "Lease",
    "ModelStartFailed",
    "ModelUnloaded",
    "NoLocalServer",
    "Router",
    "RouterShuttingDown",
    "SupervisorLike",
]

StateObserver = Callable[[str, State, State], None]

#: C{install(model, supervisor)}: put C{supervisor} in place for C{model}
#: in the supervisor registry (L{None}: remove the model).
Install = Callable[[str, "SupervisorLike | None"], None]


class SupervisorLike(Protocol):
    """
    What the router uses of a L{llamaswap.upstream.supervisor.Supervisor}.
    """

    @property
    def state(self) -> State:
        """
        The current state (a snapshot).
        """

    def ensureReady(self) -> Deferred[None]:
        """
        Make the upstream ready (join a start in progress).
        """

    def stop(self, timeout: float | None = None) -> Deferred[None]:
        """
        Take the upstream down (idempotent).
        """

    def shutdown(self) -> Deferred[None]:
        """
        Take the upstream down for good.
        """

    def requestStarted(self) -> None:
        """
        A request is being served.
        """

    def requestFinished(self) -> None:
        """
        A request was served.
        """

    def setIdleTimeout(self, seconds: float | None) -> None:
        """
        Unload after C{seconds} idle from now on (L{None}: never).
        """

    def addStateObserver(self, observer: StateObserver) -> Callable[[], None]:
        """
        Call C{observer(modelID, old, new)} on every state change.
        """


# ------------------------------------------------------------------ errors


class NoLocalServer(ModelNotFound):
    """
    404: no local model answers to the requested name.
    """

    defaultMessage = NO_LOCAL_SERVER


class ConcurrencyLimitReached(TooManyRequests):
    """
    429: the model's concurrency limit is reached (C{Retry-After}).
    """


class RouterShuttingDown(UpstreamUnavailable):
    """
    503: the router is shutting down.
    """

    defaultMessage = SHUTTING_DOWN


class ModelUnloaded(UpstreamUnavailable):
    """
    503: the model was unloaded while the request waited for it.

    @ivar model: the model.
    """

    def __init__(self, model: str) -> None:
        super().__init__(str(Unloaded(model)))
        self.model = model


class ModelStartFailed(HTTPError):
    """
    The model could not be made ready.  The message is the supervisor's
    error: the model, what happened (exit status, signal, health timeout)
    and the upstream's last output lines.

    500 when the upstream failed (spawn error, premature exit, health check
    timed out: llama-swap's status for all three), 503 when it may work on
    a retry (start aborted by a stop, supervisor shut down).

    @ivar model: the model.
    @ivar cause: the supervisor's exception.
    """

    def __init__(self, model: str, cause: BaseException) -> None:
        transient = (StartAbortedError, UpstreamShutdown)
        self.status = 503 if isinstance(cause, transient) else 500
        message = str(cause)
        if not isinstance(cause, UpstreamError):
            message = f"unspecific error: {message}"
        super().__init__(message)
        self.model = model
        self.cause = cause


# ------------------------------------------------------------------ lease


class Lease:
    """
    A granted request's hold on its model: the model serves it, counts it
    as in flight and is not evicted until L{release} is called, exactly
    once, whether the request finished, failed or its client went away.

    @ivar model: the model ID.
    @ivar supervisor: the model's supervisor (for its proxy URL).
    @ivar priority: the request's FIFO priority (activity metadata).
    """

    def __init__(
        self,
        model: str,
        supervisor: SupervisorLike,
        priority: int,
        onRelease: Callable[[], None],
    ) -> None:
        self.model = model
        self.supervisor = supervisor
        self.priority = priority
        self._onRelease: Callable[[], None] | None = onRelease

    @property
    def url(self) -> str:
        """
        The base URL of the model's server, where the request is relayed.
        """
        return self.supervisor.spec.proxy  # type: ignore[attr-defined, no-any-return]

    @property
    def released(self) -> bool:
        """
        Whether L{release} was called.
        """
        return self._onRelease is None

    def release(self) -> bool:
        """
        Give the model back; later calls do nothing.

        @return: whether this call released it.
        """
        onRelease, self._onRelease = self._onRelease, None
        if onRelease is None:
            return False
        onRelease()
        return True

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Lease {self.model} {state}>"


class _Pending:
    """
    A request waiting for its grant.
    """

    __slots__ = ("deferred", "model", "onQueuePosition")

    def __init__(
        self,
        deferred: Deferred[Lease],
        model: str,
        onQueuePosition: Callable[[int], None] | None,
    ) -> None:
        self.deferred = deferred
        self.model = model
        self.onQueuePosition = onQueuePosition


class _SwapRun:
    """
    A swap being carried out.
    """

    __slots__ = ("decision", "abandoned", "ready")

    def __init__(self, decision: StartSwap) -> None:
        self.decision = decision
        self.abandoned = False
        self.ready: Deferred[None] | None = None


Event = Callable[[], Sequence[Decision]]


# ------------------------------------------------------------------ router


class Router:
    """
    Routes requests for local models to their supervisors.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        supervisors: Mapping[str, SupervisorLike],
        clock: IReactorTime,
        *,
        evictor: Evictor | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        """
        @param config: limits, priorities, routing policy, unload timeouts,
            aliases and v1 profiles.
        @param supervisors: model ID to its supervisor; these are the
            models served.  The mapping is kept, not copied (the app passes
            its L{llamaswap.upstream.registry.Upstreams}).
        @param clock: the time source for the scheduler and its timer.
        @param evictor: overrides the policy C{config.routing} selects.
        @param scheduler: overrides the scheduler built from C{config}.
        """
        self.config = config
        self._supervisors = supervisors
        self._clock = clock
        if scheduler is None:
            scheduler = Scheduler.fromConfig(
                config,
                evictor,
                states={m: s.state for m, s in self._supervisors.items()},
                models=self._supervisors,
            )
        self._scheduler = scheduler
        self._ids = itertools.count(1)
        self._pending: dict[Hashable, _Pending] = {}
        self._swapRuns: dict[int, _SwapRun] = {}
        self._events: deque[tuple[Event, Deferred[None] | None]] = deque()
        self._processing = False
        self._tick: IDelayedCall | None = None
        self._preloads: set[Deferred[dict[str, bool]]] = set()
        self._shutdown: Deferred[None] | None = None
        self._shutdownWaiters: list[Deferred[None]] | None = []
        self._removers = {
            m: s.addStateObserver(self._stateChanged) for m, s in self._supervisors.items()
        }
        #: Retiring model to its next supervisor (L{None}: removed).
        self._replacements: dict[str, SupervisorLike | None] = {}
        self._install: Install | None = None

    # ------------------------------------------------------------ public

    @property
    def scheduler(self) -> Scheduler:
        """
        The scheduler (for inspection).
        """
        return self._scheduler

    def resolve(self, name: str) -> tuple[str, str | None] | None:
        """
        The local model C{name} refers to (model ID, alias or v1
        C{profile/model}) and the v1 profile, if any.
        """
        if name in self._supervisors and name in self.config.models:
            return name, None
        real = self.config.aliases.get(name)
        if real is not None and real in self._supervisors:
            return real, None
        legacy = self.config.resolveLegacyProfile(name)
        if legacy is not None and legacy[1] in self._supervisors:
            return legacy[1], legacy[0]
        return None

    def stateOf(self, model: str) -> State | None:
        """
        The state of local model C{model} (by ID), L{None} if not served.
        """
        supervisor = self._supervisors.get(model)
        return supervisor.state if supervisor is not None else None

    def acquire(
        self, name: str, onQueuePosition: Callable[[int], None] | None = None
    ) -> Deferred[Lease]:
        """
        Wait until model C{name} can serve a request.

        @param name: a model ID, an alias or a v1 C{profile/model}.
        @param onQueuePosition: called with the 1-based position whenever
            the request's place in the queue changes.
        @return: fires with a L{Lease} to release when the request ends;
            fails with an L{HTTPError}.  Cancelling it before the grant
            withdraws the request.
        """
        resolved = self.resolve(name)
        if resolved is None:
            return fail(NoLocalServer())
        model, profile = resolved
        requestID = next(self._ids)

        def cancel(d: Deferred[Lease]) -> None:
            if self._pending.pop(requestID, None) is not None:
                self._feed(lambda: self._scheduler.onCancel(requestID))

        d: Deferred[Lease] = Deferred(cancel)
        self._pending[requestID] = _Pending(d, model, onQueuePosition)
        self._feed(
            lambda: self._scheduler.onRequest(
                requestID, model, self._clock.seconds(), profile
            )
        )
        return d

    def unload(
        self, models: Iterable[str] | None = None, timeout: float | None = None
    ) -> Deferred[None]:
        """
        Stop C{models} (names resolved; unknown ones skipped), or every
        model when L{None}.  Requests waiting for them fail with
        L{ModelUnloaded}; requests being served are not waited for.

        @param timeout: a graceful timeout for all of them (one parallel
            stop); L{None} or C{<= 0}: each model's C{unloadTimeout},
            grouped by timeout, smallest group first, each group stopped in
            parallel.
        @return: fires when they are all stopped.
        """
        if models is None:
            targets = sorted(self._supervisors)
        else:
            found = (self.resolve(name) for name in models)
            targets = sorted({r[0] for r in found if r is not None})
        if timeout is not None and timeout <= 0:
            timeout = None
        if self._shutdown is not None:
            return succeed(None)
        result: Deferred[None] = Deferred()
        self._feed(lambda: self._scheduler.onUnload(targets, timeout), result)
        return result

    def shutdown(self) -> Deferred[None]:
        """
        Fail every waiting request, stop every model (in parallel, each
        with its C{unloadTimeout}), then shut the supervisors down.  Later
        requests get 503.  Idempotent.

        @return: fires when every supervisor is shut down.
        """
        if self._shutdownWaiters is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._shutdownWaiters.append(done)
        if self._shutdown is None:
            for preload in list(self._preloads):
                preload.cancel()
            self._shutdown = Deferred()
            self._shutdown.addCallback(lambda _: self._shutdownSupervisors())
            self._shutdown.addBoth(self._shutdownFinished)
            self._feed(self._scheduler.onShutdown, self._shutdown)
        return done

    def reconfigure(
        self,
        config: Config,
        changes: Mapping[str, SupervisorLike | None],
        install: Install,
        *,
        evictor: Evictor | None = None,
    ) -> None:
        """
        Serve C{config} from now on: its routing policy, limits,
        priorities, aliases and v1 profiles apply to new requests at once.

        @param changes: model to its new supervisor (added or restarted
            models) or L{None} (removed models).  A new model's supervisor
            is installed at once; a served model's old supervisor first
            drains its in-flight requests (requests arriving meanwhile
            queue), is stopped and shut down, then its successor is
            installed.
        @param install: puts a supervisor in place in the registry this
            router reads (C{None}: removes the model).
        @param evictor: overrides the policy C{config.routing} selects.
        """
        if self._shutdown is not None:
            return
        self.config = config
        self._install = install
        restarted = []
        for model, supervisor in sorted(changes.items()):
            if model in self._supervisors:
                self._replacements[model] = supervisor
                restarted.append(model)
            elif supervisor is not None:
                install(model, supervisor)
                self._removers[model] = supervisor.addStateObserver(self._stateChanged)
        served = sorted(m for m in self._supervisors if m in config.models)
        settings = Scheduler.settingsFrom(config, evictor, served)
        self._feed(
            lambda: self._scheduler.onReconfigure(
                restarted=restarted, **settings  # type: ignore[arg-type]
            )
        )

    def upcoming(self, model: str) -> SupervisorLike | None:
        """
        The supervisor that serves C{model}'s next start: a retiring
        model's successor, else its current one (L{None} if not served).
        """
        if model in self._replacements:
            return self._replacements[model]
        return self._supervisors.get(model)

    def retiring(self) -> frozenset[str]:
        """
        The models draining for a reload.
        """
        return frozenset(self._replacements)

    def running(self) -> list[tuple[str, State]]:
        """
        The models not stopped, with their state, sorted by model.
        """
        return [
            (m, s.state)
            for m, s in sorted(self._supervisors.items())
            if s.state not in (State.STOPPED, State.SHUTDOWN)
        ]

    def preload(self, models: Iterable[str] | None = None) -> Deferred[dict[str, bool]]:
        """
        Load C{models} (default: C{hooks.preload}) one after another, as
        requests would: full scheduling, so a later one may evict an
        earlier one that cannot run beside it.  Names that are not local
        models are skipped; duplicates are loaded once; a model already
        ready is left as it is.

        @return: fires with model ID to whether it became ready.
        """
        names = list(self.config.hooks.preload if models is None else models)
        d = Deferred.fromCoroutine(self._preload(names))
        self._preloads.add(d)

        def forget(result: object) -> object:
            self._preloads.discard(d)
            return result

        d.addBoth(forget)
        return d

    # ------------------------------------------------------------ events

    def _feed(self, event: Event, result: Deferred[None] | None = None) -> None:
        """
        Queue C{event}; handle queued events unless already doing so.

        @param result: fired once the L{Stop}s the event decided are done.
        """
        self._events.append((event, result))
        if self._processing:
            return
        self._processing = True
        try:
            while self._events:
                current, currentResult = self._events.popleft()
                self._handle(current, currentResult)
        finally:
            self._processing = False
        self._armTick()

    def _handle(self, event: Event, result: Deferred[None] | None) -> None:
        try:
            decisions = event()
        except Exception:
            self.log.failure("the scheduler failed")
            if result is not None:
                result.errback()
            return
        waits: list[Deferred[object]] = []
        for decision in decisions:
            try:
                wait = self._execute(decision)
            except Exception:
                self.log.failure("failed to carry out {decision!r}", decision=decision)
                continue
            if wait is not None:
                waits.append(wait)
        if result is not None:
            DeferredList(waits).addCallback(lambda _: None).chainDeferred(result)

    def _stateChanged(self, model: str, old: State, new: State) -> None:
        self._feed(lambda: self._scheduler.onModelState(model, new))

    def _armTick(self) -> None:
        deadline = None if self._shutdown is not None else self._scheduler.nextDeadline()
        if self._tick is not None and self._tick.active():
            if deadline is not None and self._tick.getTime() == deadline:
                return
            self._tick.cancel()
        self._tick = None
        if deadline is not None:
            delay = max(0.0, deadline - self._clock.seconds())
            self._tick = self._clock.callLater(delay, self._ticked)

    def _ticked(self) -> None:
        self._tick = None
        self._feed(lambda: self._scheduler.onTick(self._clock.seconds()))

    # ------------------------------------------------------------ decisions

    def _execute(self, decision: Decision) -> Deferred[object] | None:
        if isinstance(decision, Grant):
            self._grant(decision)
        elif isinstance(decision, (Reject, Fail)):
            pending = self._pending.pop(decision.requestID, None)
            if pending is not None:
                pending.deferred.errback(Failure(self._error(pending.model, decision)))
        elif isinstance(decision, QueuePosition):
            pending = self._pending.get(decision.requestID)
            if pending is not None and pending.onQueuePosition is not None:
                pending.onQueuePosition(decision.position)
        elif isinstance(decision, StartSwap):
            self._startSwap(decision)
        elif isinstance(decision, AbandonSwap):
            self._abandonSwap(decision)
        elif isinstance(decision, Stop):
            return self._stop(decision)
        elif isinstance(decision, Retire):
            self._retire(decision.model)
        elif isinstance(decision, HoldBack):
            if decision.models:
                self.log.info(
                    "holding back new requests for {models} so that queued swaps can proceed",
                    models=", ".join(decision.models),
                )
        return None

    def _grant(self, decision: Grant) -> None:
        pending = self._pending.pop(decision.requestID, None)
        if pending is None:
            # The client left while the grant was being decided; its
            # cancellation, queued behind, will count it as served.
            return
        supervisor = self._supervisors[decision.model]
        requestID = decision.requestID

        def release() -> None:
            supervisor.requestFinished()
            self._feed(lambda: self._scheduler.onServeDone(requestID))

        supervisor.requestStarted()
        pending.deferred.callback(
            Lease(decision.model, supervisor, decision.priority, release)
        )

    def _error(self, model: str, decision: Reject | Fail) -> HTTPError:
        if isinstance(decision, Reject):
            if decision.status == 429:
                return ConcurrencyLimitReached(
                    decision.message, retryAfter=decision.retryAfter or 1
                )
            if decision.status == 404:
                return NoLocalServer(decision.message)
            if decision.status == 507:
                return ModelTooLarge(decision.message)
            return RouterShuttingDown(decision.message)
        error = decision.error
        if isinstance(error, Unloaded):
            return ModelUnloaded(error.model)
        if isinstance(error, ShuttingDown):
            return RouterShuttingDown()
        if isinstance(error, HTTPError):
            return error
        if isinstance(error, BaseException):
            return ModelStartFailed(model, error)
        return ModelStartFailed(model, RuntimeError(str(error)))

    def _unloadTimeout(self, model: str) -> float:
        config = self.config.models.get(model)
        return config.unloadTimeout if config is not None else self.config.unloadTimeout

    def _stopOne(self, model: str, timeout: float) -> Deferred[None]:
        d = self._supervisors[model].stop(timeout)

        def failed(failure: Failure) -> None:
            self.log.failure("[{model}] stop failed", failure, model=model)

        return d.addErrback(failed)

    def _startSwap(self, decision: StartSwap) -> None:
        run = _SwapRun(decision)
        swapID = decision.swapID
        self._swapRuns[swapID] = run
        if decision.reason:
            self.log.info("{reason}", reason=decision.reason)

        def start(_: object) -> Deferred[None] | None:
            if run.abandoned:
                return None
            run.ready = self._supervisors[decision.target].ensureReady()
            return run.ready

        d: Deferred[object]
        if decision.overlap:
            self.log.info(
                "[{model}] starting while {evicted} exit{s} (swap overlap)",
                model=decision.target,
                evicted=", ".join(decision.evict),
                s="s" if len(decision.evict) == 1 else "",
            )
            # The target first: its start is on the request's path, the
            # evicted models' exit is not.
            d = succeed(None)
            d.addCallback(start)
            for m in decision.evict:
                self._stopOne(m, self._unloadTimeout(m))
        else:
            if decision.overlapRefusal:
                self.log.debug(
                    "[{model}] waits for {evicted} to exit: {why}",
                    model=decision.target,
                    evicted=", ".join(decision.evict),
                    why=decision.overlapRefusal,
                )
            stops = [self._stopOne(m, self._unloadTimeout(m)) for m in decision.evict]
            d = DeferredList(stops)
            d.addCallback(start)

        def ready(_: object) -> None:
            self._swapRuns.pop(swapID, None)
            self._feed(lambda: self._scheduler.onSwapDone(swapID, None))

        def failed(failure: Failure) -> None:
            self._swapRuns.pop(swapID, None)
            if not run.abandoned:
                self.log.warn(
                    "[{model}] could not be made ready: {error}",
                    model=decision.target,
                    error=failure.value,
                )
            self._feed(lambda: self._scheduler.onSwapDone(swapID, failure.value))

        d.addCallbacks(ready, failed)
        d.addErrback(lambda f: self.log.failure("swap {swap} failed", f, swap=swapID))

    def _abandonSwap(self, decision: AbandonSwap) -> None:
        run = self._swapRuns.get(decision.swapID)
        if run is None:
            return
        run.abandoned = True
        if run.ready is not None:
            run.ready.cancel()

    def _stop(self, decision: Stop) -> Deferred[object]:
        models = [m for m in decision.models if m in self._supervisors]
        if decision.timeout is not None or decision.reason == "shutdown":
            return DeferredList(
                [
                    self._stopOne(
                        m,
                        decision.timeout
                        if decision.timeout is not None
                        else self._unloadTimeout(m),
                    )
                    for m in models
                ]
            )
        buckets: dict[float, list[str]] = {}
        for m in models:
            buckets.setdefault(self._unloadTimeout(m), []).append(m)
        d: Deferred[object] = succeed(None)
        for timeout in sorted(buckets):
            d.addCallback(self._stopBucket, buckets[timeout], timeout)
        return d

    def _retire(self, model: str) -> None:
        """
        Stop and shut down C{model}'s drained old supervisor, install its
        successor, tell the scheduler.
        """
        old = self._supervisors[model]
        d: Deferred[object] = self._stopOne(model, self._unloadTimeout(model))

        def stopped(_: object) -> Deferred[object] | None:
            if self._shutdown is not None:
                return None
            remover = self._removers.pop(model, None)
            if remover is not None:
                remover()
            successor = self._replacements.pop(model, None)
            assert self._install is not None
            self._install(model, successor)
            if successor is not None:
                self._removers[model] = successor.addStateObserver(self._stateChanged)
            state = successor.state if successor is not None else State.STOPPED
            self._feed(lambda: self._scheduler.onRetired(model, state))
            return old.shutdown()

        d.addCallback(stopped)
        d.addErrback(lambda f: self.log.failure("[{model}] retiring failed", f, model=model))

    def _stopBucket(self, _: object, models: list[str], timeout: float) -> Deferred[object]:
        return DeferredList([self._stopOne(m, timeout) for m in models])

    # ------------------------------------------------------------ lifetime

    def _shutdownSupervisors(self) -> Deferred[object]:
        def failed(failure: Failure, model: str) -> None:
            self.log.failure("[{model}] shutdown failed", failure, model=model)

        return DeferredList(
            [
                s.shutdown().addErrback(failed, m)
                for m, s in sorted(self._supervisors.items())
            ]
        )

    def _shutdownFinished(self, result: object) -> None:
        if isinstance(result, Failure):
            self.log.failure("router shutdown failed", result)
        for remove in self._removers.values():
            remove()
        self._removers = {}
        if self._tick is not None and self._tick.active():
            self._tick.cancel()
        self._tick = None
        waiters, self._shutdownWaiters = self._shutdownWaiters or [], None
        for waiter in waiters:
            waiter.callback(None)

    async def _preload(self, names: list[str]) -> dict[str, bool]:
        results: dict[str, bool] = {}
        for name in names:
            resolved = self.resolve(name.strip())
            if resolved is None:
                self.log.warn("preload: {name} is not a local model, skipped", name=name)
                continue
            model = resolved[0]
            if model in results:
                continue
            try:
                lease = await self.acquire(model)
            except CancelledError:
                raise
            except Exception as e:
                self.log.error("preload: {model} failed: {error}", model=model, error=e)
                results[model] = False
                continue
            lease.release()
            self.log.info("preload: {model} is ready", model=model)
            results[model] = True
        return results
