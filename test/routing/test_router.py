"""
Tests for L{llamaswap.routing.router}: the shell carrying out scheduling
decisions on (fake) supervisors, with a L{Clock}.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.model import (
    Config,
    FrozenDict,
    GroupConfig,
    HooksConfig,
    MemoryConfig,
    ModelConfig,
    RoutingConfig,
)
from llamaswap.routing.memory import POOL
from llamaswap.routing.router import (
    ConcurrencyLimitReached,
    Lease,
    ModelStartFailed,
    ModelUnloaded,
    NoLocalServer,
    Router,
    RouterShuttingDown,
)
from llamaswap.upstream.errors import HealthCheckTimedOut, PrematureExit
from llamaswap.upstream.lifecycle import State


class FakeSupervisor:
    """
    A supervisor whose starts and stops complete when the test says so.

    @ivar starts: Deferreds returned by L{ensureReady} not yet fired.
    @ivar ensureCalls: how many times L{ensureReady} was called.
    @ivar stopCalls: the timeouts L{stop} was called with.
    @ivar stops: Deferreds returned by L{stop} not yet fired.
    @ivar shutdowns: how many times L{shutdown} was called.
    """

    def __init__(self, modelID: str, state: State = State.STOPPED) -> None:
        self.modelID = modelID
        self._state = state
        self.observers: list[Callable[[str, State, State], None]] = []
        self.reporters: list[Callable[[str, State, State], None]] = []
        self.starts: list[Deferred[None]] = []
        self.ensureCalls = 0
        self.stopCalls: list[float | None] = []
        self.stops: list[Deferred[None]] = []
        self.shutdowns = 0
        self.started = 0
        self.finished = 0

    @property
    def state(self) -> State:
        """
        The current state.
        """
        return self._state

    def setState(self, new: State) -> None:
        """
        Change state and tell the observers, like the real one.
        """
        old, self._state = self._state, new
        if old is not new:
            for observer in list(self.observers) + list(self.reporters):
                observer(self.modelID, old, new)

    def addStateObserver(self, observer: Callable[[str, State, State], None]) -> Callable[[], None]:
        """
        Register C{observer}; return its remover.
        """
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)

    def addStateReporter(self, reporter: Callable[[str, State, State], None]) -> Callable[[], None]:
        """
        Register C{reporter} (told after the observers); return its remover.
        """
        self.reporters.append(reporter)
        return lambda: self.reporters.remove(reporter)

    def ensureReady(self) -> Deferred[None]:
        """
        Ready: at once; otherwise start and wait for L{becomeReady}.
        """
        self.ensureCalls += 1
        if self._state is State.READY:
            return succeed(None)
        self.setState(State.STARTING)
        d: Deferred[None] = Deferred()
        self.starts.append(d)
        return d

    def becomeReady(self) -> None:
        """
        The start in progress succeeds.
        """
        self.setState(State.READY)
        starts, self.starts = self.starts, []
        for d in starts:
            if not d.called:
                d.callback(None)

    def failStart(self, error: Exception) -> None:
        """
        The start in progress fails with C{error}.
        """
        self.setState(State.STOPPED)
        starts, self.starts = self.starts, []
        for d in starts:
            if not d.called:
                d.errback(error)

    def stop(self, timeout: float | None = None) -> Deferred[None]:
        """
        Stopped: at once; otherwise stop and wait for L{becomeStopped}.
        """
        self.stopCalls.append(timeout)
        if self._state is State.STOPPED:
            return succeed(None)
        self.setState(State.STOPPING)
        d: Deferred[None] = Deferred()
        self.stops.append(d)
        return d

    def becomeStopped(self) -> None:
        """
        The stop in progress completes.
        """
        self.setState(State.STOPPED)
        stops, self.stops = self.stops, []
        for d in stops:
            d.callback(None)

    def shutdown(self) -> Deferred[None]:
        """
        Become C{shutdown} at once.
        """
        self.shutdowns += 1
        self.setState(State.SHUTDOWN)
        return succeed(None)

    def requestStarted(self) -> None:
        """
        Count a started request.
        """
        self.started += 1

    def requestFinished(self) -> None:
        """
        Count a finished request.
        """
        self.finished += 1


def makeConfig(
    models: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Mapping[str, Any]] | None = None,
    **routing: Any,
) -> Config:
    """
    A L{Config} with C{models} (ID to L{ModelConfig} keywords) and
    C{groups} (ID to L{GroupConfig} keywords).
    """
    extra = {}
    for key in ("aliases", "legacyProfiles", "hooks", "memory"):
        if key in routing:
            extra[key] = routing.pop(key)
    return Config(
        models=FrozenDict({m: ModelConfig(id=m, **kw) for m, kw in models.items()}),
        routing=RoutingConfig(
            groups=FrozenDict(
                {
                    g: GroupConfig(id=g, **{k: tuple(v) if k == "members" else v for k, v in kw.items()})
                    for g, kw in (groups or {}).items()
                }
            ),
            **routing,
        ),
        **extra,
    )


class RouterTestCase(SynchronousTestCase):
    """
    Builds a router over fake supervisors.
    """

    def build(
        self,
        models: Mapping[str, Mapping[str, Any]],
        groups: Mapping[str, Mapping[str, Any]] | None = None,
        states: Mapping[str, State] | None = None,
        **routing: Any,
    ) -> Router:
        """
        A router with a L{FakeSupervisor} per model in C{self.sups} and a
        L{Clock} in C{self.clock}.
        """
        self.clock = Clock()
        self.sups = {m: FakeSupervisor(m, (states or {}).get(m, State.STOPPED)) for m in models}
        return Router(makeConfig(models, groups, **routing), self.sups, self.clock)

    def lease(self, d: Deferred[Lease]) -> Lease:
        """
        The lease C{d} fired with.
        """
        lease = self.successResultOf(d)
        self.assertIsInstance(lease, Lease)
        return lease


class AcquireTests(RouterTestCase):
    """
    L{Router.acquire}: starts, joins, errors.
    """

    def test_oneStartForConcurrentRequests(self) -> None:
        """
        Concurrent requests for a stopped model start it once and are all
        granted when it is ready.
        """
        router = self.build({"a": {}})
        ds = [router.acquire("a") for _ in range(3)]
        self.assertEqual(self.sups["a"].ensureCalls, 1)
        for d in ds:
            self.assertNoResult(d)
        self.sups["a"].becomeReady()
        leases = [self.lease(d) for d in ds]
        self.assertEqual([lease.model for lease in leases], ["a"] * 3)
        self.assertEqual(self.sups["a"].started, 3)
        self.assertEqual(router.scheduler.inFlight("a"), 3)

    def test_readyFastPath(self) -> None:
        """
        A ready model is granted at once, without another start.
        """
        router = self.build({"a": {}}, states={"a": State.READY})
        lease = self.lease(router.acquire("a"))
        self.assertEqual(self.sups["a"].ensureCalls, 0)
        self.assertIs(lease.supervisor, self.sups["a"])

    def test_unknown(self) -> None:
        """
        An unknown name fails with 404 "no local server found for requested
        model".
        """
        router = self.build({"a": {}})
        error = self.failureResultOf(router.acquire("zzz"), NoLocalServer).value
        self.assertEqual((error.status, error.message), (404, "no local server found for requested model"))

    def test_alias(self) -> None:
        """
        An alias acquires its model.
        """
        router = self.build({"a": {}}, states={"a": State.READY}, aliases=FrozenDict({"alpha": "a"}))
        self.assertEqual(self.lease(router.acquire("alpha")).model, "a")

    def test_concurrencyLimit(self) -> None:
        """
        Over the concurrency limit the request fails with 429 and
        C{Retry-After: 1}.
        """
        router = self.build({"a": {"concurrencyLimit": 1}}, states={"a": State.READY})
        self.lease(router.acquire("a"))
        error = self.failureResultOf(router.acquire("a"), ConcurrencyLimitReached).value
        self.assertEqual(error.status, 429)
        self.assertEqual(error.headers, {"Retry-After": "1"})

    def test_startFailureToAllWaiters(self) -> None:
        """
        A start failure fails every waiter with a 500 whose message has the
        upstream's exit status and last output lines; nothing is left
        reserved.
        """
        router = self.build({"a": {}})
        d1, d2 = router.acquire("a"), router.acquire("a")
        self.sups["a"].failStart(PrematureExit("a", 1, None, ["bad flag --foo"]))
        for d in (d1, d2):
            error = self.failureResultOf(d, ModelStartFailed).value
            self.assertEqual(error.status, 500)
            self.assertIn("exit status 1", error.message)
            self.assertIn("bad flag --foo", error.message)
        self.assertEqual(router.scheduler.reserved("a"), 0)

    def test_healthTimeoutIs500(self) -> None:
        """
        A health-check timeout fails with 500, as in llama-swap.
        """
        router = self.build({"a": {}})
        d = router.acquire("a")
        self.sups["a"].failStart(HealthCheckTimedOut("a", 120))
        error = self.failureResultOf(d, ModelStartFailed).value
        self.assertEqual(error.status, 500)
        self.assertIn("health check timed out after 120s", error.message)

    def test_legacyProfile(self) -> None:
        """
        C{profile/model} runs the profile's members together and stops
        everything else.
        """
        router = self.build(
            {"a": {}, "b": {}, "c": {}},
            states={"a": State.READY, "c": State.READY},
            legacyProfiles=FrozenDict({"p": ("a", "b")}),
        )
        d = router.acquire("p/b")
        self.assertEqual(self.sups["a"].stopCalls, [])
        self.assertEqual(self.sups["c"].stopCalls, [10])
        self.sups["c"].becomeStopped()
        self.sups["b"].becomeReady()
        self.assertEqual(self.lease(d).model, "b")

    def test_queuePosition(self) -> None:
        """
        A queued request is told its position.
        """
        router = self.build({"a": {}, "b": {}}, states={"a": State.READY})
        self.lease(router.acquire("a"))
        positions: list[int] = []
        router.acquire("b", onQueuePosition=positions.append)
        self.assertEqual(positions, [1])


class SwapTests(RouterTestCase):
    """
    Swaps: drain, stop, start.
    """

    def test_swapWaitsForDrain(self) -> None:
        """
        A swap waits until the evicted model has no request in flight, then
        stops it with its own C{unloadTimeout}, and starts the new model
        only once it is stopped.
        """
        router = self.build({"a": {"unloadTimeout": 7}, "b": {}}, states={"a": State.READY})
        lease = self.lease(router.acquire("a"))
        d = router.acquire("b")
        self.assertEqual(self.sups["a"].stopCalls, [])
        lease.release()
        self.assertEqual(self.sups["a"].stopCalls, [7])
        self.assertEqual(self.sups["b"].ensureCalls, 0)
        self.sups["a"].becomeStopped()
        self.assertEqual(self.sups["b"].ensureCalls, 1)
        self.assertNoResult(d)
        self.sups["b"].becomeReady()
        self.assertEqual(self.lease(d).model, "b")

    def test_evictionsInParallel(self) -> None:
        """
        Evicted models are stopped in parallel, each with its own
        C{unloadTimeout}; the target starts when all are stopped.
        """
        router = self.build(
            {"a1": {"unloadTimeout": 5}, "a2": {"unloadTimeout": 9}, "c": {}},
            groups={"pair": {"swap": False, "members": ["a1", "a2"]}, "solo": {"members": ["c"]}},
            states={"a1": State.READY, "a2": State.READY},
        )
        router.acquire("c")
        self.assertEqual((self.sups["a1"].stopCalls, self.sups["a2"].stopCalls), ([5], [9]))
        self.sups["a1"].becomeStopped()
        self.assertEqual(self.sups["c"].ensureCalls, 0)
        self.sups["a2"].becomeStopped()
        self.assertEqual(self.sups["c"].ensureCalls, 1)

    def test_swapOutlivesClients(self) -> None:
        """
        A load goes on when every waiting client has left (it belongs to the
        router), and the model is then ready.
        """
        router = self.build({"a": {}})
        d = router.acquire("a")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(self.sups["a"].starts), 1)
        self.assertFalse(self.sups["a"].starts[0].called)
        self.sups["a"].becomeReady()
        self.assertEqual(router.scheduler.inFlight("a"), 0)
        self.assertEqual(router.running(), [("a", State.READY)])

    def test_stopOutsideRouter(self) -> None:
        """
        A request arriving while the model is stopped outside the router
        (TTL) asks it to start again (llama-swap #946).
        """
        router = self.build({"a": {}}, states={"a": State.READY})
        self.sups["a"].stop(10)
        d = router.acquire("a")
        self.assertEqual(self.sups["a"].ensureCalls, 1)
        self.sups["a"].becomeStopped()
        self.sups["a"].becomeReady()
        self.lease(d)

    def test_starvationBound(self) -> None:
        """
        Once a queued swap has waited C{maxWaitForSwap}, new requests for
        the running model queue behind it; the swap proceeds when the
        in-flight requests drain, and the held-back request is served
        after it, by a swap back.
        """
        router = self.build({"a": {}, "b": {}}, states={"a": State.READY}, maxWaitForSwap=30)
        first = self.lease(router.acquire("a"))
        db = router.acquire("b")
        self.clock.advance(10)
        second = self.lease(router.acquire("a"))
        self.clock.advance(21)
        dHeld = router.acquire("a")
        self.assertNoResult(dHeld)
        first.release()
        second.release()
        self.assertEqual(self.sups["a"].stopCalls, [10])
        self.sups["a"].becomeStopped()
        self.sups["b"].becomeReady()
        self.lease(db).release()
        self.assertEqual(self.sups["b"].stopCalls, [10])
        self.sups["b"].becomeStopped()
        self.sups["a"].becomeReady()
        self.lease(dHeld)

    def test_tickArmedWhileQueued(self) -> None:
        """
        The tick timer is only armed while something is queued.
        """
        router = self.build({"a": {}, "b": {}}, states={"a": State.READY}, maxWaitForSwap=30)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        lease = self.lease(router.acquire("a"))
        router.acquire("b")
        self.assertEqual([c.getTime() for c in self.clock.getDelayedCalls()], [30])
        lease.release()
        self.assertEqual(self.clock.getDelayedCalls(), [])


GiB = 1024**3


class OverlapTests(RouterTestCase):
    """
    Swap overlap: the target starts while the evicted model exits, when
    the scheduler found it safe.
    """

    def buildPair(self, budget: int = 10 * GiB, **routing: Any) -> Router:
        """
        Models a (ready) and b in one swap group, 4 GiB each on their own
        ports, within C{budget}.
        """
        return self.build(
            {
                "a": {"proxy": "http://127.0.0.1:5801", "memory": 4 * GiB, "unloadTimeout": 7},
                "b": {"proxy": "http://127.0.0.1:5802", "memory": 4 * GiB},
            },
            groups={"pair": {"swap": True, "members": ["a", "b"]}},
            states={"a": State.READY},
            memory=MemoryConfig(budget={POOL: budget}),
            **routing,
        )

    def test_startsWhileEvictedExits(self) -> None:
        """
        The target is started in the same turn as the evicted model's stop,
        just before it, is granted as soon as it is ready (the old one
        still exiting), and the overlap is logged.
        """
        router = self.buildPair()
        changes: list[tuple[str, State]] = []
        for sup in self.sups.values():
            sup.addStateObserver(lambda model, old, new: changes.append((model, new)))
        with capturedLogs() as events:
            d = router.acquire("b")
        # The target first (its start is on the request's path).
        self.assertEqual(changes, [("b", State.STARTING), ("a", State.STOPPING)])
        self.assertEqual(self.sups["a"].stopCalls, [7])
        self.assertEqual(self.sups["b"].ensureCalls, 1)
        self.sups["b"].becomeReady()
        self.assertIs(self.sups["a"].state, State.STOPPING)
        lease = self.lease(d)
        self.assertEqual(lease.model, "b")
        self.assertIn(
            "[b] starting while a exits (swap overlap)", [formatEvent(e) for e in events]
        )
        self.sups["a"].becomeStopped()
        self.assertEqual(router.running(), [("b", State.READY)])
        lease.release()

    def test_notWhenItDoesNotFit(self) -> None:
        """
        A target that does not fit beside the evicted model waits for it
        to exit (the reason is logged at debug level).
        """
        router = self.buildPair(budget=7 * GiB)
        with capturedLogs() as events:
            d = router.acquire("b")
        self.assertEqual(self.sups["b"].ensureCalls, 0)
        self.assertIn(
            "[b] waits for a to exit: b does not fit in the memory budget beside a",
            [formatEvent(e) for e in events],
        )
        self.sups["a"].becomeStopped()
        self.assertEqual(self.sups["b"].ensureCalls, 1)
        self.sups["b"].becomeReady()
        self.lease(d)

    def test_off(self) -> None:
        """
        C{routing.swapOverlap: off}: the target waits.
        """
        self.buildPair(swapOverlap="off").acquire("b")
        self.assertEqual(self.sups["b"].ensureCalls, 0)
        self.sups["a"].becomeStopped()
        self.assertEqual(self.sups["b"].ensureCalls, 1)

    def test_failedStop(self) -> None:
        """
        A stop that fails during an overlap is logged; the target is still
        served.
        """
        router = self.buildPair()
        d = router.acquire("b")
        self.sups["a"].stops[0].errback(RuntimeError("kill failed"))
        self.sups["b"].becomeReady()
        self.lease(d)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_unloadDuringOverlap(self) -> None:
        """
        Unloading the target while it starts beside the exiting model
        cancels its start and fails the waiting request.
        """
        router = self.buildPair()
        d = router.acquire("b")
        starting = self.sups["b"].starts[0]
        router.unload(["b"])
        self.failureResultOf(d, ModelUnloaded)
        self.assertTrue(starting.called)
        self.assertEqual(self.sups["b"].stopCalls, [10])


class LeaseTests(RouterTestCase):
    """
    Leases are released exactly once; cancellation before the grant
    withdraws the request.
    """

    def test_releaseOnce(self) -> None:
        """
        The first release ends the request (supervisor told once, in-flight
        back to 0); later ones do nothing.
        """
        router = self.build({"a": {}}, states={"a": State.READY})
        lease = self.lease(router.acquire("a"))
        self.assertFalse(lease.released)
        self.assertTrue(lease.release())
        self.assertFalse(lease.release())
        self.assertTrue(lease.released)
        self.assertEqual((self.sups["a"].started, self.sups["a"].finished), (1, 1))
        self.assertEqual(router.scheduler.inFlight("a"), 0)
        self.assertEqual(router.scheduler.reserved("a"), 0)

    def test_cancelQueued(self) -> None:
        """
        Cancelling a queued request removes it: it fails with
        L{CancelledError} and its model is never loaded.
        """
        router = self.build({"a": {}, "b": {}}, states={"a": State.READY})
        lease = self.lease(router.acquire("a"))
        d = router.acquire("b")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(router.scheduler.queued(), [])
        lease.release()
        self.assertEqual(self.sups["a"].stopCalls, [])
        self.assertEqual(self.sups["b"].ensureCalls, 0)

    def test_cancelJoiner(self) -> None:
        """
        Cancelling one of two waiters of a load leaves the other to be
        served; no in-flight count leaks.
        """
        router = self.build({"a": {}})
        d1, d2 = router.acquire("a"), router.acquire("a")
        d1.cancel()
        self.failureResultOf(d1, CancelledError)
        self.sups["a"].becomeReady()
        self.lease(d2).release()
        self.assertEqual(router.scheduler.inFlight("a"), 0)
        self.assertEqual((self.sups["a"].started, self.sups["a"].finished), (1, 1))

    def test_cancelRacingGrant(self) -> None:
        """
        A request cancelled by another grant's callback while its own grant
        is being decided is not counted as in flight.
        """
        router = self.build({"a": {}})
        d1, d2 = router.acquire("a"), router.acquire("a")
        d1.addCallback(lambda lease: (d2.cancel(), lease)[1])
        self.sups["a"].becomeReady()
        self.lease(d1).release()
        self.failureResultOf(d2, CancelledError)
        self.assertEqual(router.scheduler.inFlight("a"), 0)
        self.assertEqual(router.scheduler.reserved("a"), 0)
        self.assertEqual((self.sups["a"].started, self.sups["a"].finished), (1, 1))


class UnloadTests(RouterTestCase):
    """
    L{Router.unload}.
    """

    def test_allByTimeoutBuckets(self) -> None:
        """
        Unloading everything stops by C{unloadTimeout}, smallest first,
        equal timeouts in parallel, and fires when all are stopped.
        """
        router = self.build(
            {"a": {"unloadTimeout": 45}, "c": {"unloadTimeout": 10}, "d": {"unloadTimeout": 10}},
            groups={"all": {"swap": False, "members": ["a", "c", "d"]}},
            states={m: State.READY for m in "acd"},
        )
        done = router.unload()
        self.assertEqual(
            [self.sups[m].stopCalls for m in "acd"], [[], [10], [10]]
        )
        self.sups["c"].becomeStopped()
        self.assertEqual(self.sups["a"].stopCalls, [])
        self.sups["d"].becomeStopped()
        self.assertEqual(self.sups["a"].stopCalls, [45])
        self.assertNoResult(done)
        self.sups["a"].becomeStopped()
        self.successResultOf(done)

    def test_explicitTimeout(self) -> None:
        """
        A positive timeout stops the named models in parallel with it; other
        models are left alone, unknown names skipped.
        """
        router = self.build(
            {"a": {"unloadTimeout": 45}, "b": {}, "c": {}},
            groups={"all": {"swap": False, "members": ["a", "b", "c"]}},
            states={m: State.READY for m in "abc"},
        )
        done = router.unload(["a", "b", "zzz"], timeout=1)
        self.assertEqual([self.sups[m].stopCalls for m in "abc"], [[1], [1], []])
        self.sups["a"].becomeStopped()
        self.sups["b"].becomeStopped()
        self.successResultOf(done)

    def test_failsWaiters(self) -> None:
        """
        Requests waiting for an unloaded model fail with 503, and its start
        is not resumed.
        """
        router = self.build({"a": {}, "b": {}}, states={"b": State.READY})
        d = router.acquire("a")
        self.assertEqual(self.sups["b"].stopCalls, [10])
        done = router.unload(["a"])
        self.assertEqual(self.failureResultOf(d, ModelUnloaded).value.status, 503)
        self.sups["b"].becomeStopped()
        self.assertEqual(self.sups["a"].ensureCalls, 0)
        self.successResultOf(done)


class ShutdownTests(RouterTestCase):
    """
    L{Router.shutdown}.
    """

    def test_shutdown(self) -> None:
        """
        Shutdown fails waiting requests with 503, stops every model in
        parallel, then shuts the supervisors down; later requests get 503;
        a second call fires too.
        """
        router = self.build(
            {"a": {"unloadTimeout": 3}, "b": {"unloadTimeout": 4}},
            groups={"all": {"swap": False, "members": ["a", "b"]}},
            states={"a": State.READY},
        )
        lease = self.lease(router.acquire("a"))
        waiting = router.acquire("b")
        done = router.shutdown()
        self.failureResultOf(waiting, RouterShuttingDown)
        self.assertEqual((self.sups["a"].stopCalls, self.sups["b"].stopCalls), ([3], [4]))
        self.assertEqual(self.sups["a"].shutdowns, 0)
        self.assertNoResult(done)
        self.sups["b"].failStart(RuntimeError("aborted"))
        self.sups["a"].becomeStopped()
        self.sups["b"].becomeStopped()
        self.successResultOf(done)
        self.assertEqual((self.sups["a"].shutdowns, self.sups["b"].shutdowns), (1, 1))
        self.assertEqual(
            self.failureResultOf(router.acquire("a"), RouterShuttingDown).value.status, 503
        )
        self.successResultOf(router.shutdown())
        lease.release()
        self.assertEqual(self.sups["a"].observers, [])


class RunningAndPreloadTests(RouterTestCase):
    """
    L{Router.running} and L{Router.preload}.
    """

    def test_running(self) -> None:
        """
        Models not stopped, sorted, with their state.
        """
        router = self.build(
            {"b": {}, "a": {}, "c": {}}, states={"b": State.READY, "a": State.STARTING}
        )
        self.assertEqual(router.running(), [("a", State.STARTING), ("b", State.READY)])

    def test_sequential(self) -> None:
        """
        Preload loads one model after the other, releasing each lease, and
        reports which became ready; unknown names and duplicates are
        skipped.
        """
        router = self.build(
            {"a": {}, "b": {}, "c": {}},
            groups={"g": {"swap": False, "members": ["a", "b", "c"]}},
            hooks=HooksConfig(preload=("a", "b", "c")),
        )
        d = router.preload(["a", "zzz", "b", "a", "c"])
        self.assertEqual([self.sups[m].ensureCalls for m in "abc"], [1, 0, 0])
        self.sups["a"].becomeReady()
        self.assertEqual([self.sups[m].ensureCalls for m in "abc"], [1, 1, 0])
        self.sups["b"].failStart(PrematureExit("b", 2, None))
        self.sups["c"].becomeReady()
        self.assertEqual(self.successResultOf(d), {"a": True, "b": False, "c": True})
        self.assertEqual([(s.started, s.finished) for s in self.sups.values()], [(1, 1), (0, 0), (1, 1)])
        self.flushLoggedErrors()

    def test_idempotent(self) -> None:
        """
        Preloading a ready model starts nothing; the default list is
        C{hooks.preload}.
        """
        router = self.build(
            {"a": {}}, states={"a": State.READY}, hooks=HooksConfig(preload=("a",))
        )
        self.assertEqual(self.successResultOf(router.preload()), {"a": True})
        self.assertEqual(self.sups["a"].ensureCalls, 0)

    def test_cancelledByShutdown(self) -> None:
        """
        Shutdown ends a preload in progress.
        """
        router = self.build({"a": {}})
        d = router.preload(["a"])
        router.shutdown()
        self.failureResultOf(d, CancelledError)


class ReconfigureTests(RouterTestCase):
    """
    L{Router.reconfigure}: a reload's model changes carried out on the
    supervisors.
    """

    def install(self, model: str, supervisor: Any) -> None:
        """
        The registry's install: C{self.sups} is what the router reads.
        """
        if supervisor is None:
            del self.sups[model]
        else:
            self.sups[model] = supervisor

    def test_restartedAfterInFlightRequest(self) -> None:
        """
        A restarted model keeps serving its in-flight request on the old
        supervisor; a request arriving meanwhile waits; when the old one is
        released the old supervisor is stopped and shut down, the new one
        installed and started for the waiting request.
        """
        router = self.build({"a": {}}, states={"a": State.READY})
        old = self.sups["a"]
        lease = self.lease(router.acquire("a"))
        new = FakeSupervisor("a")
        router.reconfigure(makeConfig({"a": {}}), {"a": new}, self.install)
        self.assertEqual(router.retiring(), frozenset({"a"}))
        self.assertIs(router.upcoming("a"), new)
        waiting = router.acquire("a")
        self.assertNoResult(waiting)
        self.assertEqual(old.stopCalls, [])
        lease.release()
        self.assertEqual(len(old.stopCalls), 1)
        self.assertIs(self.sups["a"], old)
        old.becomeStopped()
        self.assertEqual(old.shutdowns, 1)
        self.assertIs(self.sups["a"], new)
        self.assertEqual(new.ensureCalls, 1)
        new.becomeReady()
        self.assertIs(self.lease(waiting).supervisor, new)
        self.assertEqual(old.observers, [])
        self.assertEqual(router.retiring(), frozenset())

    def test_removedDrainsAndGoes(self) -> None:
        """
        A removed model serves its in-flight request, then is stopped, shut
        down and dropped from the registry; new requests get 404 at once.
        """
        router = self.build({"a": {}, "b": {}}, states={"a": State.READY})
        old = self.sups["a"]
        lease = self.lease(router.acquire("a"))
        router.reconfigure(makeConfig({"b": {}}), {"a": None}, self.install)
        self.failureResultOf(router.acquire("a"), NoLocalServer)
        lease.release()
        old.becomeStopped()
        self.assertNotIn("a", self.sups)
        self.assertEqual(old.shutdowns, 1)
        self.assertEqual(router.scheduler.models, frozenset({"b"}))
        self.failureResultOf(router.acquire("a"), NoLocalServer)

    def test_stillDrainingAcrossReloads(self) -> None:
        """
        A removed model still draining when the next reload comes stays
        removed: it goes once its request ends.
        """
        router = self.build({"a": {}, "b": {}}, states={"a": State.READY})
        old = self.sups["a"]
        lease = self.lease(router.acquire("a"))
        router.reconfigure(makeConfig({"b": {}}), {"a": None}, self.install)
        router.reconfigure(makeConfig({"b": {"ttl": 5}}), {}, self.install)
        lease.release()
        old.becomeStopped()
        self.assertNotIn("a", self.sups)
        self.assertEqual(router.scheduler.models, frozenset({"b"}))

    def test_addedServedAtOnce(self) -> None:
        """
        An added model is installed and can be acquired at once; the new
        configuration's aliases resolve.
        """
        router = self.build({"a": {}})
        new = FakeSupervisor("n")
        config = makeConfig({"a": {}, "n": {}}, aliases=FrozenDict({"nn": "n"}))
        router.reconfigure(config, {"n": new}, self.install)
        d = router.acquire("nn")
        new.becomeReady()
        self.assertIs(self.lease(d).supervisor, new)
        self.assertIs(router.config, config)

    def test_keptUntouched(self) -> None:
        """
        A reconfiguration without model changes neither stops nor starts
        anything; new limits apply.
        """
        router = self.build({"a": {}}, states={"a": State.READY})
        router.reconfigure(makeConfig({"a": {"concurrencyLimit": 1}}), {}, self.install)
        self.lease(router.acquire("a"))
        self.failureResultOf(router.acquire("a"), ConcurrencyLimitReached)
        self.assertEqual(self.sups["a"].stopCalls, [])

    def test_shutdownWhileRetiring(self) -> None:
        """
        Shutdown during a drain shuts the old supervisor down and never
        installs the successor.
        """
        router = self.build({"a": {}}, states={"a": State.READY})
        old = self.sups["a"]
        lease = self.lease(router.acquire("a"))
        router.reconfigure(makeConfig({"a": {}}), {"a": FakeSupervisor("a")}, self.install)
        done = router.shutdown()
        lease.release()
        old.becomeStopped()
        self.successResultOf(done)
        self.assertIs(self.sups["a"], old)
        self.assertEqual(old.shutdowns, 1)
