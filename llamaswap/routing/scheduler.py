# -*- test-case-name: test.routing.test_scheduler -*-
"""
The FIFO scheduler: a pure state machine deciding, for every request,
whether it is served now, joins a model load in progress, waits in the
queue, starts a swap, or is turned away.

It never touches a process, a Deferred or the clock: the shell
(L{llamaswap.routing.router.Router}) feeds it events (C{on*} methods, time
passed in) and carries out the decisions they return (L{Grant},
L{Reject}, L{StartSwap}, L{AbandonSwap}, L{Stop}, L{QueuePosition},
L{Fail}, L{HoldBack}).

Rules (llama-swap's FIFO scheduler, with one deliberate improvement):

 - Admission: a request for an unknown model is rejected (404); a model
   holding C{limit} reservations (queued + waiting on a swap + being
   served) rejects more with 429 and C{Retry-After: 1}.
 - A request for a model whose swap is in progress joins it: one load
   serves every waiter.
 - A ready model that needs nothing evicted, with no active swap about to
   stop it, serves at once (fast path).
 - A request whose eviction collides with an active swap (it would stop
   that swap's target, that swap would stop its model, or both would stop
   the same model) waits in the queue; so does one that would stop a model
   still serving requests: a busy model is never evicted, it drains
   first.  Swaps that do not collide run in parallel.
 - The queue is ordered by FIFO priority (ties keep arrival order); a
   blocked item never blocks a later one that can proceed.
 - Collation: a queued request joins a load of its model started by an
   earlier one as the queue drains, and a model is never evicted while it
   serves, so C{A B A B} is served as C{A A B B} with one load per model.
 - Starvation bound (improvement over llama-swap #612): once a queued
   request has waited C{maxWaitForSwap} seconds, the models its swap must
   stop are held back: new requests for them queue instead of taking the
   fast path, so their in-flight requests drain and the swap proceeds.
 - Memory budget (L{llamaswap.routing.memory}): with a C{memoryBudget},
   L{fromConfig} wraps the policy in a L{MemoryEvictor}, which reads the
   in-flight counts and the last use (a use count bumped at every grant
   and finish) from the scheduler; a model bigger than the whole budget is
   rejected at admission with 507.
 - Swap overlap (L{llamaswap.routing.overlap}): with an L{OverlapPolicy}
   (a C{memoryBudget} and C{routing.swapOverlap: auto}), a swap whose
   target provably fits beside the models it evicts, and any others still
   exiting, is decided with C{overlap=True}: the shell starts the target
   at once instead of after the evicted models are gone.

Reconfiguration (L{Scheduler.onReconfigure}, a configuration reload): the
settings (limits, policy, priorities, C{maxWaitForSwap}, v1 profiles) are
replaced at once; added models are served at once.  A model whose process
definition changed, or that was removed, I{retires}: it is granted nothing
more, requests for it queue (a removed model's are refused), requests that
would evict it wait, and once its last in-flight request ends the
scheduler decides L{Retire}; the shell stops the old process, installs the
new definition and reports L{Scheduler.onRetired}, after which queued
requests start the new definition.
"""

from __future__ import annotations

from enum import Enum
from typing import Collection, Hashable, Iterable, Mapping, Union

from attrs import define, field, frozen

from ..config.model import DEFAULT_CONCURRENCY_LIMIT, Config
from ..upstream.lifecycle import State
from .groups import Evictor, evictorFor, profileEviction
from .memory import MemoryEvictor, memoryPolicyFor
from .overlap import OverlapPolicy, overlapPolicyFor

__all__ = [
    "AbandonSwap",
    "Decision",
    "Fail",
    "Grant",
    "HoldBack",
    "NO_LOCAL_SERVER",
    "QueuePosition",
    "Reject",
    "Retire",
    "Scheduler",
    "ShuttingDown",
    "StartSwap",
    "Stop",
    "TOO_MANY_REQUESTS",
    "Unloaded",
]

#: The 404 message for a model this router does not serve.
NO_LOCAL_SERVER = "no local server found for requested model"
#: The 429 message of the concurrency limit.
TOO_MANY_REQUESTS = "Too many requests"
#: The 503 message once shutdown has begun.
SHUTTING_DOWN = "llamaswap is shutting down"

#: States in which a model occupies resources (counts as running).
_RUNNING = frozenset({State.STARTING, State.READY, State.STOPPING})


# ------------------------------------------------------------------ errors


@frozen
class Unloaded:
    """
    Why a waiting request failed: its model was unloaded meanwhile.
    """

    model: str

    def __str__(self) -> str:
        return f"model {self.model} was unloaded while the request waited"


@frozen
class ShuttingDown:
    """
    Why a waiting request failed: the router is shutting down.
    """

    def __str__(self) -> str:
        return SHUTTING_DOWN


# ------------------------------------------------------------------ decisions


@frozen
class Grant:
    """
    Serve request C{requestID} on C{model} now.

    @ivar priority: the FIFO priority the request had (activity metadata).
    """

    requestID: Hashable
    model: str
    priority: int = 0


@frozen
class Reject:
    """
    Turn request C{requestID} away at admission.

    @ivar status: 404 (unknown model), 429 (concurrency limit), 503
        (shutting down) or 507 (bigger than the whole memory budget).
    @ivar retryAfter: seconds for C{Retry-After} (429 only).
    """

    requestID: Hashable
    status: int
    message: str
    retryAfter: int | None = None


@frozen
class StartSwap:
    """
    Stop C{evict} (in parallel), then make C{target} ready; report the
    outcome with L{Scheduler.onSwapDone}C{(swapID, error)}.

    @ivar reason: the eviction policy's account, for the log.
    @ivar overlap: start C{target} at once, while C{evict} exit (it was
        found safe: see L{llamaswap.routing.overlap}).
    @ivar overlapRefusal: why C{target} waits for C{evict} to exit when
        overlapping is enabled but not safe (for the log), else C{""}.
    """

    swapID: int
    target: str
    evict: tuple[str, ...]
    reason: str = ""
    overlap: bool = False
    overlapRefusal: str = ""


@frozen
class AbandonSwap:
    """
    Swap C{swapID} no longer matters (unload, shutdown): do not start its
    target if it has not been started yet; its outcome will be ignored.
    """

    swapID: int
    target: str


@frozen
class Stop:
    """
    Stop C{models}.

    @ivar timeout: the graceful timeout for all of them, or L{None} for
        each model's C{unloadTimeout}.
    @ivar reason: C{"unload"} or C{"shutdown"}.
    """

    models: tuple[str, ...]
    timeout: float | None = None
    reason: str = "unload"


@frozen
class Retire:
    """
    C{model} retired and has nothing in flight: stop its old process and
    put its new definition in place (or drop it, if it was removed), then
    report L{Scheduler.onRetired}.
    """

    model: str


@frozen
class QueuePosition:
    """
    Queued request C{requestID} is now C{position} (1-based) in the queue.
    """

    requestID: Hashable
    position: int


@frozen
class Fail:
    """
    Admitted request C{requestID} will not be served.

    @ivar error: the swap's exception, an L{Unloaded} or a L{ShuttingDown}.
    """

    requestID: Hashable
    error: object


@frozen
class HoldBack:
    """
    The starvation bound changed: new requests for C{models} now queue
    behind the swaps waiting for them (empty: nothing held back).
    """

    models: tuple[str, ...]


Decision = Union[
    Grant, Reject, StartSwap, AbandonSwap, Stop, QueuePosition, Fail, HoldBack, Retire
]


# ------------------------------------------------------------------ state


class Phase(Enum):
    """
    Where an admitted request is.
    """

    QUEUED = "queued"
    WAITING = "waiting"
    SERVING = "serving"


@define
class _Request:
    requestID: Hashable
    model: str
    profile: str | None
    priority: int
    phase: Phase = Phase.QUEUED
    enqueuedAt: float | None = None
    swapID: int | None = None
    position: int | None = None


@define
class _Swap:
    swapID: int
    target: str
    evict: frozenset[str]
    waiters: list[Hashable] = field(factory=list)



def memoryAware(evictor: Evictor, config: Config) -> Evictor:
    """
    C{evictor}, deciding by memory for the models outside explicit groups
    and matrix sets when C{config} sets a C{memoryBudget}.
    """
    policy = memoryPolicyFor(config)
    return evictor if policy is None else MemoryEvictor(evictor, policy)


class Scheduler:
    """
    The FIFO scheduler of one router; see the module docstring for the
    rules.  Every C{on*} method returns the decisions to carry out, in
    order.
    """

    def __init__(
        self,
        limits: Mapping[str, int],
        evictor: Evictor,
        *,
        priorities: Mapping[str, int] | None = None,
        maxWaitForSwap: float | None = 30,
        profiles: Mapping[str, Collection[str]] | None = None,
        states: Mapping[str, State] | None = None,
        overlap: OverlapPolicy | None = None,
    ) -> None:
        """
        @param limits: every model served, with its concurrency limit
            (C{<= 0} means the default, 10).
        @param evictor: decides what a swap must stop.
        @param priorities: FIFO priority per model (default 0).
        @param maxWaitForSwap: seconds a queued request may wait before
            the models it must evict are held back; L{None} disables the
            bound (llama-swap's behaviour).
        @param profiles: llama-swap v1 profiles: name to the models that
            may run together.
        @param states: the models' states now (default: all stopped).
        @param overlap: when a swap may start its target while the evicted
            models exit (L{None}: never).
        """
        self._limits = {
            m: (n if n > 0 else DEFAULT_CONCURRENCY_LIMIT) for m, n in limits.items()
        }
        self._applySettings(evictor, priorities, maxWaitForSwap, profiles, overlap)
        self._states = {m: State.STOPPED for m in self._limits}
        for m, s in (states or {}).items():
            if m in self._states:
                self._states[m] = s
        self._requests: dict[Hashable, _Request] = {}
        self._queue: list[Hashable] = []
        self._swaps: dict[int, _Swap] = {}
        self._reserved = {m: 0 for m in self._limits}
        self._inFlight = {m: 0 for m in self._limits}
        self._held: frozenset[str] = frozenset()
        self._uses = 0
        self._lastUsed = {m: 0 for m in self._limits}
        self._nextSwapID = 1
        self._now = 0.0
        self._shuttingDown = False
        #: Models retiring (see L{onReconfigure}), and whether L{Retire} was
        #: decided for each.
        self._retiring: dict[str, bool] = {}
        #: Retiring models that were removed: gone once retired.
        self._leaving: set[str] = set()

    @staticmethod
    def settingsFrom(
        config: Config, evictor: Evictor | None = None, models: Iterable[str] | None = None
    ) -> dict[str, object]:
        """
        The keyword arguments of L{__init__} and L{onReconfigure} that
        C{config} (for C{models}, default all of its models) determines.
        """
        served = list(config.models if models is None else models)
        return dict(
            limits={
                m: config.models[m].effectiveConcurrencyLimit if m in config.models else 0
                for m in served
            },
            evictor=evictor if evictor is not None else memoryAware(evictorFor(config), config),
            priorities={m: config.routing.priorityOf(m) for m in served},
            maxWaitForSwap=config.routing.maxWaitForSwap,
            profiles=config.legacyProfiles,
            overlap=overlapPolicyFor(config),
        )

    @classmethod
    def fromConfig(
        cls,
        config: Config,
        evictor: Evictor | None = None,
        states: Mapping[str, State] | None = None,
        models: Iterable[str] | None = None,
    ) -> Scheduler:
        """
        A scheduler for C{config}'s models (or only C{models}), its routing
        policy, priorities, C{maxWaitForSwap} and v1 profiles.
        """
        return cls(**Scheduler.settingsFrom(config, evictor, models), states=states)  # type: ignore[arg-type]

    # ------------------------------------------------------------ views

    @property
    def models(self) -> frozenset[str]:
        """
        The models this scheduler serves.
        """
        return frozenset(self._limits)

    @property
    def shuttingDown(self) -> bool:
        """
        Whether L{onShutdown} happened.
        """
        return self._shuttingDown

    def queued(self) -> list[Hashable]:
        """
        The queued request IDs, in queue order.
        """
        return list(self._queue)

    def reserved(self, model: str) -> int:
        """
        Requests of C{model} queued, waiting on a swap or being served.
        """
        return self._reserved[model]

    def retiring(self) -> frozenset[str]:
        """
        The models retiring (see L{onReconfigure}).
        """
        return frozenset(self._retiring)

    def inFlight(self, model: str) -> int:
        """
        Requests of C{model} being served.
        """
        return self._inFlight[model]

    def lastUsed(self, model: str) -> int:
        """
        When C{model} last started or finished serving a request, as a use
        count (larger is more recent; 0: never).
        """
        return self._lastUsed.get(model, 0)

    def state(self, model: str) -> State:
        """
        The last state reported for C{model}.
        """
        return self._states[model]

    def activeSwaps(self) -> dict[int, tuple[str, tuple[Hashable, ...]]]:
        """
        Swap ID to (target, waiting request IDs).
        """
        return {i: (s.target, tuple(s.waiters)) for i, s in self._swaps.items()}

    def nextDeadline(self) -> float | None:
        """
        When the next queued request reaches C{maxWaitForSwap} (the shell
        calls L{onTick} then), or L{None}.
        """
        if self._maxWait is None or not self._queue:
            return None
        pending = [
            r.enqueuedAt + self._maxWait
            for r in self._queuedRequests()
            if r.enqueuedAt is not None and r.enqueuedAt + self._maxWait > self._now
        ]
        return min(pending, default=None)

    # ------------------------------------------------------------ events

    def onRequest(
        self, requestID: Hashable, model: str, now: float, profile: str | None = None
    ) -> list[Decision]:
        """
        Request C{requestID} for C{model} arrived at C{now}.

        @param profile: the v1 profile it was requested through
            (C{profile/model}), if any.
        @raise ValueError: C{requestID} is already known.
        """
        self._advance(now)
        if requestID in self._requests:
            raise ValueError(f"request {requestID!r} is already scheduled")
        if self._shuttingDown:
            return [Reject(requestID, 503, SHUTTING_DOWN)]
        if model not in self._limits or model in self._leaving:
            return [Reject(requestID, 404, NO_LOCAL_SERVER)]
        if profile is not None and model not in self._profiles.get(profile, ()):
            return [Reject(requestID, 404, NO_LOCAL_SERVER)]
        if self._reserved[model] >= self._limits[model]:
            return [Reject(requestID, 429, TOO_MANY_REQUESTS, retryAfter=1)]
        refusal = getattr(self._evictor, "refusal", None)
        reason = refusal(model) if refusal is not None else None
        if reason is not None:
            return [Reject(requestID, 507, reason)]
        self._reserved[model] += 1
        request = _Request(requestID, model, profile, self._priorities.get(model, 0))
        self._requests[requestID] = request
        out: list[Decision] = []
        self._updateHeld(out)
        if not self._place(request, out):
            self._enqueue(request)
        self._settle(out)
        return out

    def onSwapDone(self, swapID: int, error: object = None) -> list[Decision]:
        """
        Swap C{swapID} finished: its target is ready (C{error} L{None}) or
        could not be made ready.  Outcomes of abandoned swaps are ignored.
        """
        swap = self._swaps.pop(swapID, None)
        if swap is None:
            return []
        out: list[Decision] = []
        if error is None:
            self._states[swap.target] = State.READY
            for requestID in swap.waiters:
                self._grant(self._requests[requestID], out)
        else:
            for requestID in swap.waiters:
                self._release(self._requests[requestID])
                out.append(Fail(requestID, error))
        self._drain(out)
        self._settle(out)
        return out

    def onServeDone(self, requestID: Hashable) -> list[Decision]:
        """
        Granted request C{requestID} finished (its lease was released).

        @raise KeyError: C{requestID} is not being served (a lease released
            twice or never granted: a bug).
        """
        request = self._requests.get(requestID)
        if request is None or request.phase is not Phase.SERVING:
            raise KeyError(f"request {requestID!r} is not being served")
        return self._finishServing(request)

    def onCancel(self, requestID: Hashable) -> list[Decision]:
        """
        The client of C{requestID} went away.  A queued or waiting request
        leaves at once (no load is started for it); a granted one (the
        grant raced the departure) counts as served; an unknown one is
        ignored.
        """
        request = self._requests.get(requestID)
        if request is None:
            return []
        if request.phase is Phase.SERVING:
            return self._finishServing(request)
        out: list[Decision] = []
        if request.phase is Phase.QUEUED:
            self._queue.remove(requestID)
            self._release(request)
            self._drain(out)
        else:
            assert request.swapID is not None
            self._swaps[request.swapID].waiters.remove(requestID)
            self._release(request)
        self._settle(out)
        return out

    def onUnload(
        self, models: Iterable[str], timeout: float | None = None
    ) -> list[Decision]:
        """
        C{models} are being unloaded: requests waiting for them fail, their
        swaps are abandoned, they are stopped (C{timeout}: see L{Stop});
        requests being served are not waited for.
        """
        targets = sorted(set(models) & set(self._limits))
        out: list[Decision] = []
        for swap in list(self._swaps.values()):
            if swap.target in targets:
                del self._swaps[swap.swapID]
                out.append(AbandonSwap(swap.swapID, swap.target))
                for requestID in swap.waiters:
                    self._release(self._requests[requestID])
                    out.append(Fail(requestID, Unloaded(swap.target)))
        for requestID in list(self._queue):
            request = self._requests[requestID]
            if request.model in targets:
                self._queue.remove(requestID)
                self._release(request)
                out.append(Fail(requestID, Unloaded(request.model)))
        out.append(Stop(tuple(targets), timeout, "unload"))
        if not self._shuttingDown:
            self._drain(out)
        self._settle(out)
        return out

    def onShutdown(self) -> list[Decision]:
        """
        The router is shutting down: every waiting request fails, swaps
        are abandoned, every model is stopped, later requests get 503.
        """
        if self._shuttingDown:
            return []
        self._shuttingDown = True
        out: list[Decision] = []
        for swap in self._swaps.values():
            out.append(AbandonSwap(swap.swapID, swap.target))
            for requestID in swap.waiters:
                self._release(self._requests[requestID])
                out.append(Fail(requestID, ShuttingDown()))
        self._swaps.clear()
        for requestID in self._queue:
            self._release(self._requests[requestID])
            out.append(Fail(requestID, ShuttingDown()))
        self._queue.clear()
        out.append(Stop(tuple(sorted(self._limits)), None, "shutdown"))
        self._settle(out)
        return out

    def _applySettings(
        self,
        evictor: Evictor,
        priorities: Mapping[str, int] | None,
        maxWaitForSwap: float | None,
        profiles: Mapping[str, Collection[str]] | None,
        overlap: OverlapPolicy | None = None,
    ) -> None:
        """
        Take the settings L{__init__} and L{onReconfigure} share; an
        evictor that reads usage (L{MemoryEvictor}) is bound to this
        scheduler.
        """
        self._evictor = evictor
        bindUsage = getattr(evictor, "bindUsage", None)
        if bindUsage is not None:
            bindUsage(self)
        self._priorities = dict(priorities or {})
        self._maxWait = maxWaitForSwap
        self._profiles = {p: frozenset(ms) for p, ms in (profiles or {}).items()}
        self._overlap = overlap

    def onReconfigure(
        self,
        limits: Mapping[str, int],
        evictor: Evictor,
        *,
        priorities: Mapping[str, int] | None = None,
        maxWaitForSwap: float | None = 30,
        profiles: Mapping[str, Collection[str]] | None = None,
        restarted: Iterable[str] = (),
        overlap: OverlapPolicy | None = None,
    ) -> list[Decision]:
        """
        A new configuration is current: serve the models of C{limits} with
        these settings (as in L{__init__}).  Models no longer in C{limits}
        and the C{restarted} ones (their process definition changed)
        retire: see the module docstring.  Requests waiting on a swap of a
        retiring model go back to the queue (a removed model's fail with
        L{Unloaded}, like its queued ones).
        """
        out: list[Decision] = []
        if self._shuttingDown:
            return out
        removed = set(self._limits) - set(limits)
        self._leaving = (self._leaving | removed) - set(limits)
        for m in (set(restarted) & set(self._limits)) | removed:
            self._retiring.setdefault(m, False)
        for m, n in limits.items():
            if m not in self._limits:
                self._states[m] = State.STOPPED
                self._reserved[m] = 0
                self._inFlight[m] = 0
            self._limits[m] = n if n > 0 else DEFAULT_CONCURRENCY_LIMIT
        self._applySettings(evictor, priorities, maxWaitForSwap, profiles, overlap)
        for swap in list(self._swaps.values()):
            if swap.target in self._retiring:
                del self._swaps[swap.swapID]
                out.append(AbandonSwap(swap.swapID, swap.target))
                for requestID in swap.waiters:
                    request = self._requests[requestID]
                    if swap.target in self._leaving:
                        self._release(request)
                        out.append(Fail(requestID, Unloaded(swap.target)))
                    else:
                        request.swapID = None
                        request.position = None
                        self._enqueue(request)
        for requestID in list(self._queue):
            request = self._requests[requestID]
            if request.model in self._leaving:
                self._queue.remove(requestID)
                self._release(request)
                out.append(Fail(requestID, Unloaded(request.model)))
        self._retireIdle(out)
        self._drain(out)
        self._settle(out)
        return out

    def onRetired(self, model: str, state: State = State.STOPPED) -> list[Decision]:
        """
        Retiring C{model}'s old process is gone: a removed model is
        forgotten; a restarted one is now its new definition, in C{state}
        (queued requests for it start it).
        """
        if self._retiring.pop(model, None) is None:
            return []
        out: list[Decision] = []
        if model in self._leaving:
            self._leaving.discard(model)
            for table in (self._limits, self._states, self._reserved, self._inFlight):
                table.pop(model, None)
        else:
            self._states[model] = state
        if not self._shuttingDown:
            self._drain(out)
            self._settle(out)
        return out

    def _retireIdle(self, out: list[Decision]) -> None:
        """
        Decide L{Retire} for every retiring model with nothing in flight.
        """
        for model, decided in sorted(self._retiring.items()):
            if not decided and self._inFlight.get(model, 0) == 0:
                self._retiring[model] = True
                out.append(Retire(model))

    def onModelState(self, model: str, state: State) -> list[Decision]:
        """
        C{model}'s process is now in C{state} (the shell relays the
        supervisors' state changes).
        """
        if model not in self._states or self._states[model] is state:
            return []
        self._states[model] = state
        out: list[Decision] = []
        if not self._shuttingDown:
            self._drain(out)
            self._settle(out)
        return out

    def onTick(self, now: float) -> list[Decision]:
        """
        Time is now C{now}: queued requests may have reached
        C{maxWaitForSwap}.
        """
        self._advance(now)
        out: list[Decision] = []
        if not self._shuttingDown:
            self._drain(out)
            self._settle(out)
        return out

    # ------------------------------------------------------------ placement

    def _advance(self, now: float) -> None:
        self._now = max(self._now, now)

    def _running(self) -> set[str]:
        running = {m for m, s in self._states.items() if s in _RUNNING}
        running.update(s.target for s in self._swaps.values())
        return running

    def _evictionOf(self, request: _Request, running: Collection[str]) -> frozenset[str]:
        if request.profile is not None:
            members = self._profiles.get(request.profile, frozenset())
            return profileEviction(request.model, running, members)
        return self._evictor.evictionFor(request.model, sorted(running)) - {request.model}

    def _collides(self, model: str, evict: frozenset[str]) -> bool:
        if evict & self._retiring.keys():
            return True
        for swap in self._swaps.values():
            if swap.target in evict or model in swap.evict or evict & swap.evict:
                return True
        return False

    def _place(self, request: _Request, out: list[Decision]) -> bool:
        """
        Join, serve or start a swap for C{request} if its turn has come.

        @return: whether it was placed (otherwise it stays queued).
        """
        model = request.model
        if model in self._retiring:
            return False
        for swap in self._swaps.values():
            if swap.target == model:
                swap.waiters.append(request.requestID)
                request.phase = Phase.WAITING
                request.swapID = swap.swapID
                return True
        running = self._running()
        evict = self._evictionOf(request, running)
        collides = self._collides(model, evict)
        if self._states[model] is State.READY and not evict and not collides:
            if model in self._held:
                # Starvation bound: no fast path past a swap that waited
                # too long for this model to drain.
                return False
            self._grant(request, out)
            return True
        if collides:
            return False
        if any(self._inFlight[m] for m in evict):
            return False
        swap = _Swap(self._nextSwapID, model, evict, [request.requestID])
        self._nextSwapID += 1
        self._swaps[swap.swapID] = swap
        request.phase = Phase.WAITING
        request.swapID = swap.swapID
        if request.profile is not None:
            reason = f"profile: {request.profile}/{model} evict=[{' '.join(sorted(evict))}]"
        else:
            reason = self._evictor.explain(model, sorted(running))
        refusal = self._overlapRefusal(model, evict, running)
        out.append(
            StartSwap(
                swap.swapID,
                model,
                tuple(sorted(evict)),
                reason,
                overlap=refusal is None,
                overlapRefusal=refusal or "",
            )
        )
        return True

    def _overlapRefusal(
        self, model: str, evict: frozenset[str], running: Collection[str]
    ) -> str | None:
        """
        Why swapping to C{model} must wait for C{evict} to exit; L{None}:
        it may start at once; C{""}: no reason worth logging (nothing is
        evicted, or overlap is off or there is no memory budget).
        """
        if not evict:
            return ""
        if self._overlap is None:
            return ""
        exiting = set(evict) | set(self._retiring)
        exiting.update(m for m, s in self._states.items() if s is State.STOPPING)
        return self._overlap.refusal(model, exiting, running)

    def _touch(self, model: str) -> None:
        self._uses += 1
        self._lastUsed[model] = self._uses

    def _grant(self, request: _Request, out: list[Decision]) -> None:
        request.phase = Phase.SERVING
        request.swapID = None
        self._inFlight[request.model] += 1
        self._touch(request.model)
        out.append(Grant(request.requestID, request.model, request.priority))

    def _enqueue(self, request: _Request) -> None:
        request.phase = Phase.QUEUED
        request.enqueuedAt = self._now
        index = len(self._queue)
        for i, queuedID in enumerate(self._queue):
            if self._requests[queuedID].priority < request.priority:
                index = i
                break
        self._queue.insert(index, request.requestID)

    def _drain(self, out: list[Decision]) -> None:
        """
        Re-place queued requests in queue order; those still blocked keep
        their relative order.
        """
        self._updateHeld(out)
        for requestID in list(self._queue):
            if self._place(self._requests[requestID], out):
                self._queue.remove(requestID)

    def _queuedRequests(self) -> list[_Request]:
        return [self._requests[r] for r in self._queue]

    def _computeHeld(self) -> frozenset[str]:
        if self._maxWait is None or not self._queue:
            return frozenset()
        running = self._running()
        held: set[str] = set()
        for request in self._queuedRequests():
            assert request.enqueuedAt is not None
            if self._now - request.enqueuedAt >= self._maxWait:
                held.update(self._evictionOf(request, running))
        return frozenset(held)

    def _updateHeld(self, out: list[Decision]) -> None:
        held = self._computeHeld()
        if held != self._held:
            self._held = held
            out.append(HoldBack(tuple(sorted(held))))

    def _settle(self, out: list[Decision]) -> None:
        """
        Bring the hold-back set and the queue positions up to date.
        """
        self._updateHeld(out)
        for position, requestID in enumerate(self._queue, 1):
            request = self._requests[requestID]
            if request.position != position:
                request.position = position
                out.append(QueuePosition(requestID, position))

    # ------------------------------------------------------------ accounting

    def _release(self, request: _Request) -> None:
        del self._requests[request.requestID]
        self._reserved[request.model] -= 1

    def _finishServing(self, request: _Request) -> list[Decision]:
        self._release(request)
        self._inFlight[request.model] -= 1
        self._touch(request.model)
        out: list[Decision] = []
        if self._inFlight[request.model] == 0 and not self._shuttingDown:
            self._retireIdle(out)
            self._drain(out)
        self._settle(out)
        return out
