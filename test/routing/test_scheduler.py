"""
Tests for L{llamaswap.routing.scheduler}: the FIFO scheduler, as tables of
events and the exact decisions each one returns.
"""

from __future__ import annotations

from typing import Any, Collection, Hashable, Mapping, Sequence

from attrs import evolve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.errors import Problems
from llamaswap.config.matrixdsl import compileMatrix
from llamaswap.config.model import (
    Config,
    FrozenDict,
    GroupConfig,
    ModelConfig,
    RoutingConfig,
)
from llamaswap.routing.groups import Evictor, GroupEvictor, MatrixEvictor
from llamaswap.routing.scheduler import (
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
from llamaswap.upstream.lifecycle import State

READY = State.READY


class StubEvictor:
    """
    An L{Evictor} from a table: target to the models it cannot run beside;
    without a table, one model at a time.
    """

    def __init__(self, table: Mapping[str, Collection[str]] | None = None) -> None:
        self.table = table

    def evictionFor(self, target: str, running: Collection[str]) -> frozenset[str]:
        """
        The running models the table says C{target} cannot run beside.
        """
        if self.table is None:
            return frozenset(running) - {target}
        return frozenset(m for m in running if m in self.table.get(target, ()))

    def explain(self, target: str, running: Collection[str]) -> str:
        """
        C{stub <target>}.
        """
        return f"stub {target}"


ALONE = StubEvictor()
NEVER = StubEvictor({})


def conflicts(*pairs: tuple[str, str]) -> StubEvictor:
    """
    A L{StubEvictor} where each pair cannot run together (both ways).
    """
    table: dict[str, set[str]] = {}
    for x, y in pairs:
        table.setdefault(x, set()).add(y)
        table.setdefault(y, set()).add(x)
    return StubEvictor(table)


def swap(swapID: int, target: str, *evict: str) -> StartSwap:
    """
    A L{StartSwap} as the tables spell it (reason ignored).
    """
    return StartSwap(swapID, target, tuple(evict), "")


def G(requestID: Hashable, model: str, priority: int = 0) -> Grant:
    """
    A L{Grant}.
    """
    return Grant(requestID, model, priority)


def Q(requestID: Hashable, position: int) -> QueuePosition:
    """
    A L{QueuePosition}.
    """
    return QueuePosition(requestID, position)


def tooMany(requestID: Hashable) -> Reject:
    """
    The 429 of the concurrency limit.
    """
    return Reject(requestID, 429, "Too many requests", 1)


Event = tuple[Any, ...]
Table = Sequence[tuple[Event, Sequence[Decision]]]


def apply(scheduler: Scheduler, event: Event) -> list[Decision]:
    """
    Feed one table event to C{scheduler}:

      - C{("req", id, model[, now[, profile]])}
      - C{("done", swapID[, error])}
      - C{("serve", id)}, C{("cancel", id)}
      - C{("unload", models[, timeout])}, C{("shutdown",)}
      - C{("state", model, state)}, C{("tick", now)}
      - C{("reconfigure", models, restarted[, evictor])}: limits 0
      - C{("retired", model[, state])}
    """
    kind, *args = event
    if kind == "req":
        requestID, model, *rest = args
        now = rest[0] if rest else 0.0
        profile = rest[1] if len(rest) > 1 else None
        return scheduler.onRequest(requestID, model, now, profile)
    handlers = {
        "done": scheduler.onSwapDone,
        "serve": scheduler.onServeDone,
        "cancel": scheduler.onCancel,
        "unload": scheduler.onUnload,
        "shutdown": scheduler.onShutdown,
        "state": scheduler.onModelState,
        "tick": scheduler.onTick,
        "retired": scheduler.onRetired,
    }
    if kind == "reconfigure":
        models, restarted, *rest = args
        evictor = rest[0] if rest else ALONE
        return scheduler.onReconfigure(
            {m: 0 for m in models}, evictor, restarted=restarted
        )
    return handlers[kind](*args)


def make(
    evictor: Evictor = ALONE,
    models: Sequence[str] = ("a", "b", "c"),
    limits: Mapping[str, int] | None = None,
    states: Mapping[str, State] | None = None,
    **kwargs: Any,
) -> Scheduler:
    """
    A scheduler for C{models} (limits default to 0, meaning 10).
    """
    allLimits = {m: 0 for m in models}
    allLimits.update(limits or {})
    return Scheduler(allLimits, evictor, states=states, **kwargs)


class TableTestCase(SynchronousTestCase):
    """
    Plays event tables against a scheduler.
    """

    def play(self, scheduler: Scheduler, table: Table) -> None:
        """
        Feed each event in turn; each must return exactly the decisions
        listed (C{StartSwap} reasons ignored).
        """
        for step, (event, expected) in enumerate(table):
            got = [
                evolve(d, reason="") if isinstance(d, StartSwap) else d
                for d in apply(scheduler, event)
            ]
            self.assertEqual(got, list(expected), f"step {step}: {event!r}")

    def assertIdle(self, scheduler: Scheduler) -> None:
        """
        Nothing is reserved, served, queued or swapping.
        """
        for model in scheduler.models:
            self.assertEqual((model, scheduler.reserved(model)), (model, 0))
            self.assertEqual((model, scheduler.inFlight(model)), (model, 0))
        self.assertEqual(scheduler.queued(), [])
        self.assertEqual(scheduler.activeSwaps(), {})


class BasicTests(TableTestCase):
    """
    Unknown models, the fast path, on-demand starts and joining.
    """

    def test_fastPath(self) -> None:
        """
        A ready model is served at once, without a swap.
        """
        s = make(states={"a": READY})
        self.play(s, [(("req", 1, "a"), [G(1, "a")]), (("serve", 1), [])])
        self.assertIdle(s)

    def test_grantCarriesPriority(self) -> None:
        """
        A grant carries the model's FIFO priority (activity metadata).
        """
        s = make(states={"a": READY}, priorities={"a": 7})
        self.play(s, [(("req", 1, "a"), [G(1, "a", 7)])])

    def test_modelNotFound(self) -> None:
        """
        An unknown model is rejected with 404 and reserves nothing.
        """
        s = make()
        self.play(
            s,
            [(("req", 1, "zzz"), [Reject(1, 404, "no local server found for requested model")])],
        )
        self.assertIdle(s)

    def test_onDemandStart(self) -> None:
        """
        A stopped model is started by one swap; the request is served only
        once the swap is done.
        """
        s = make()
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("done", 1), [G(1, "a")]),
                (("serve", 1), []),
            ],
        )
        self.assertIdle(s)

    def test_join(self) -> None:
        """
        Requests for a model being loaded join its swap: one swap, every
        waiter served when it is done.
        """
        s = make()
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "a"), []),
                (("req", 3, "a"), []),
                (("done", 1), [G(1, "a"), G(2, "a"), G(3, "a")]),
            ],
        )

    def test_swapErrorFailsAllWaiters(self) -> None:
        """
        A failed swap fails every waiter and frees their reservations; the
        next request tries again.
        """
        s = make()
        error = RuntimeError("exit status 1")
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "a"), []),
                (("done", 1, error), [Fail(1, error), Fail(2, error)]),
            ],
        )
        self.assertIdle(s)
        self.play(s, [(("req", 3, "a"), [swap(2, "a")])])

    def test_duplicateRequestID(self) -> None:
        """
        Scheduling a request ID twice is a bug.
        """
        s = make()
        s.onRequest(1, "a", 0)
        self.assertRaises(ValueError, s.onRequest, 1, "a", 0)

    def test_serveDoneUnknown(self) -> None:
        """
        Ending a request that is not being served is a bug (a lease
        released twice).
        """
        s = make(states={"a": READY})
        s.onRequest(1, "a", 0)
        s.onServeDone(1)
        self.assertRaises(KeyError, s.onServeDone, 1)
        self.assertRaises(KeyError, s.onServeDone, 99)

    def test_reasonFromEvictor(self) -> None:
        """
        A swap carries the eviction policy's explanation, for the log.
        """
        s = make()
        self.assertEqual(s.onRequest(1, "a", 0), [StartSwap(1, "a", (), "stub a")])


class QueueTests(TableTestCase):
    """
    Collisions, draining busy models, parallel swaps, collation.
    """

    def test_queueOnEvictionCollision(self) -> None:
        """
        A request that would evict the target of an active swap waits; it
        still waits while that model serves, and starts its swap (evicting
        it) once it is idle.
        """
        s = make()
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "b"), [Q(2, 1)]),
                (("done", 1), [G(1, "a")]),
                (("serve", 1), [swap(2, "b", "a")]),
                (("done", 2), [G(2, "b")]),
            ],
        )

    def test_noSwapWhileServing(self) -> None:
        """
        A busy model is never evicted: the swap waits until every request
        on it is done.
        """
        s = make(states={"a": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [G(1, "a")]),
                (("req", 2, "a"), [G(2, "a")]),
                (("req", 3, "b"), [Q(3, 1)]),
                (("serve", 1), []),
                (("serve", 2), [swap(1, "b", "a")]),
            ],
        )

    def test_disjointSwapsInParallel(self) -> None:
        """
        Swaps that evict nothing in common run in parallel.
        """
        s = make(NEVER)
        self.play(s, [(("req", 1, "a"), [swap(1, "a")]), (("req", 2, "b"), [swap(2, "b")])])

    def test_overlappingEvictionsSerialise(self) -> None:
        """
        Two swaps that would both stop C{x} do not run together: the second
        waits for the first.
        """
        s = make(conflicts(("a", "x"), ("b", "x")), models="abx", states={"x": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a", "x")]),
                (("req", 2, "b"), [Q(2, 1)]),
                (("state", "x", State.STOPPING), []),
                (("done", 1), [G(1, "a"), swap(2, "b", "x")]),
            ],
        )

    def test_stateChangeDrains(self) -> None:
        """
        A model reported stopped no longer needs evicting: a request that
        waited only for that proceeds at once.
        """
        s = make(conflicts(("a", "x"), ("b", "x")), models="abx", states={"x": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a", "x")]),
                (("req", 2, "b"), [Q(2, 1)]),
                (("state", "x", State.STOPPED), [swap(2, "b")]),
            ],
        )

    def test_drainPromotesMultiple(self) -> None:
        """
        One drain can start several swaps: C{b} and C{c} waited for the
        swap to C{a} (which stops them) and both start when it is done.
        """
        evictor = StubEvictor({"a": {"b", "c"}})
        s = make(evictor, states={"b": READY, "c": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a", "b", "c")]),
                (("req", 2, "b"), [Q(2, 1)]),
                (("req", 3, "c"), [Q(3, 2)]),
                (("state", "b", State.STOPPED), []),
                (("state", "c", State.STOPPED), []),
                (("done", 1), [G(1, "a"), swap(2, "b"), swap(3, "c")]),
            ],
        )

    def test_collation(self) -> None:
        """
        C{A B C A B C} with mutual eviction: one swap per model and both
        requests of each model served together (C{A A B B C C}); queue
        positions follow as the queue shrinks.
        """
        s = make()
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "b"), [Q(2, 1)]),
                (("req", 3, "c"), [Q(3, 2)]),
                (("req", 4, "a"), []),
                (("req", 5, "b"), [Q(5, 3)]),
                (("req", 6, "c"), [Q(6, 4)]),
                (("done", 1), [G(1, "a"), G(4, "a")]),
                (("serve", 1), []),
                (("serve", 4), [swap(2, "b", "a"), Q(3, 1), Q(6, 2)]),
                (("done", 2), [G(2, "b"), G(5, "b")]),
                (("serve", 2), []),
                (("serve", 5), [swap(3, "c", "a", "b")]),
                (("done", 3), [G(3, "c"), G(6, "c")]),
            ],
        )


class PriorityTests(TableTestCase):
    """
    Priority orders the queue without blocking.
    """

    def test_order(self) -> None:
        """
        Arrivals B, D, C, A with priorities A10 B5 C5 D1 queue as A, B, C,
        D: inserted before the first strictly lower priority, ties in
        arrival order.
        """
        s = make(
            models="abcdx",
            states={"x": READY},
            priorities={"a": 10, "b": 5, "c": 5, "d": 1},
        )
        self.play(
            s,
            [
                (("req", 1, "x"), [G(1, "x")]),
                (("req", "B", "b"), [Q("B", 1)]),
                (("req", "D", "d"), [Q("D", 2)]),
                (("req", "C", "c"), [Q("C", 2), Q("D", 3)]),
                (("req", "A", "a"), [Q("A", 1), Q("B", 2), Q("C", 3), Q("D", 4)]),
            ],
        )
        self.assertEqual(s.queued(), ["A", "B", "C", "D"])

    def test_blockedHighDoesNotBlockLow(self) -> None:
        """
        A blocked high-priority request does not hold up a lower-priority
        one that can proceed.
        """
        s = make(
            conflicts(("h", "x"), ("l", "y")),
            models="hlxy",
            states={"x": READY, "y": READY},
            priorities={"h": 10},
        )
        self.play(
            s,
            [
                (("req", 1, "x"), [G(1, "x")]),
                (("req", 2, "y"), [G(2, "y")]),
                (("req", 3, "l"), [Q(3, 1)]),
                (("req", 4, "h"), [Q(4, 1), Q(3, 2)]),
                (("serve", 2), [swap(1, "l", "y")]),
            ],
        )
        self.assertEqual(s.queued(), [4])


class CancelTests(TableTestCase):
    """
    Clients that leave.
    """

    def test_queued(self) -> None:
        """
        A cancelled queued request leaves at once; its model is never
        started.
        """
        s = make(states={"a": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [G(1, "a")]),
                (("req", 2, "b"), [Q(2, 1)]),
                (("cancel", 2), []),
                (("serve", 1), []),
            ],
        )
        self.assertIdle(s)

    def test_swapWaiter(self) -> None:
        """
        A cancelled swap waiter leaves; the swap goes on and only the live
        waiter is served.
        """
        s = make()
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "a"), []),
                (("cancel", 1), []),
                (("done", 1), [G(2, "a")]),
            ],
        )

    def test_notPresent(self) -> None:
        """
        Cancelling a finished or unknown request does nothing.
        """
        s = make(states={"a": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [G(1, "a")]),
                (("serve", 1), []),
                (("cancel", 1), []),
                (("cancel", 99), []),
            ],
        )

    def test_grantToDepartedClient(self) -> None:
        """
        A cancellation that raced its grant counts as served: the in-flight
        count does not leak, so an evicting request starts at once.
        """
        s = make(states={"a": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [G(1, "a")]),
                (("cancel", 1), []),
                (("req", 2, "b"), [swap(1, "b", "a")]),
            ],
        )
        self.assertEqual(s.inFlight("a"), 0)


class AdmissionTests(TableTestCase):
    """
    The concurrency limit counts queued, waiting and served requests.
    """

    def test_limitOne(self) -> None:
        """
        With a limit of 1 the second request gets 429 (Retry-After 1);
        after the first ends a new one is admitted.
        """
        s = make(limits={"a": 1}, states={"a": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [G(1, "a")]),
                (("req", 2, "a"), [tooMany(2)]),
                (("serve", 1), []),
                (("req", 3, "a"), [G(3, "a")]),
            ],
        )

    def test_defaultIsTen(self) -> None:
        """
        A limit of 0 means 10: ten admitted, the eleventh rejected.
        """
        s = make(states={"a": READY})
        self.play(
            s,
            [(("req", i, "a"), [G(i, "a")]) for i in range(10)]
            + [(("req", 10, "a"), [tooMany(10)])],
        )

    def test_negativeIsTen(self) -> None:
        """
        A negative limit also means 10.
        """
        s = make(limits={"a": -3}, states={"a": READY})
        for i in range(10):
            s.onRequest(i, "a", 0)
        self.assertEqual(s.onRequest(10, "a", 0), [tooMany(10)])

    def test_customLimit(self) -> None:
        """
        A limit of 2 rejects the third.
        """
        s = make(limits={"a": 2}, states={"a": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [G(1, "a")]),
                (("req", 2, "a"), [G(2, "a")]),
                (("req", 3, "a"), [tooMany(3)]),
            ],
        )

    def test_swapWaitersCount(self) -> None:
        """
        Requests waiting on a load count toward the limit.
        """
        s = make(limits={"a": 2})
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "a"), []),
                (("req", 3, "a"), [tooMany(3)]),
                (("done", 1), [G(1, "a"), G(2, "a")]),
            ],
        )

    def test_queuedCount(self) -> None:
        """
        Queued requests count toward the limit; once the blocker drains,
        one swap serves both.
        """
        s = make(limits={"a": 2}, states={"b": READY})
        self.play(
            s,
            [
                (("req", 1, "b"), [G(1, "b")]),
                (("req", 2, "a"), [Q(2, 1)]),
                (("req", 3, "a"), [Q(3, 2)]),
                (("req", 4, "a"), [tooMany(4)]),
                (("serve", 1), [swap(1, "a", "b")]),
                (("done", 1), [G(2, "a"), G(3, "a")]),
            ],
        )

    def test_cancelReleasesReservation(self) -> None:
        """
        A cancelled queued request frees its slot for a retry.
        """
        s = make(limits={"a": 1}, states={"b": READY})
        self.play(
            s,
            [
                (("req", 1, "b"), [G(1, "b")]),
                (("req", 2, "a"), [Q(2, 1)]),
                (("req", 3, "a"), [tooMany(3)]),
                (("cancel", 2), []),
                (("req", 4, "a"), [Q(4, 1)]),
            ],
        )


class UnloadShutdownTests(TableTestCase):
    """
    Unload and shutdown fail the requests waiting for the models.
    """

    def test_unloadFailsSwapWaiters(self) -> None:
        """
        Unloading a model being loaded fails its waiters, abandons the
        swap (its outcome is ignored) and stops the model with the given
        timeout.
        """
        s = make()
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "a"), []),
                (
                    ("unload", ["a"], 1.0),
                    [
                        AbandonSwap(1, "a"),
                        Fail(1, Unloaded("a")),
                        Fail(2, Unloaded("a")),
                        Stop(("a",), 1.0, "unload"),
                    ],
                ),
                (("done", 1), []),
            ],
        )
        self.assertIdle(s)

    def test_unloadDropsQueued(self) -> None:
        """
        Queued requests for an unloaded model fail and it is never started;
        other swaps go on; unknown names are ignored.
        """
        s = make()
        self.play(
            s,
            [
                (("req", 1, "b"), [swap(1, "b")]),
                (("req", 2, "a"), [Q(2, 1)]),
                (("unload", ["a", "zzz"]), [Fail(2, Unloaded("a")), Stop(("a",), None, "unload")]),
                (("done", 1), [G(1, "b")]),
            ],
        )
        self.assertEqual(s.activeSwaps(), {})

    def test_unloadUnblocksQueue(self) -> None:
        """
        A request queued behind an abandoned swap proceeds.
        """
        s = make()
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "b"), [Q(2, 1)]),
                (
                    ("unload", ["a"]),
                    [
                        AbandonSwap(1, "a"),
                        Fail(1, Unloaded("a")),
                        Stop(("a",), None, "unload"),
                        swap(2, "b"),
                    ],
                ),
            ],
        )

    def test_shutdown(self) -> None:
        """
        Shutdown fails every waiting request (two joined C{a}, two joined
        C{b}, one queued for C{c}), abandons the swaps, stops every model,
        and rejects later requests with 503.
        """
        s = make(StubEvictor({"c": {"a", "b"}}))
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "a"), []),
                (("req", 3, "b"), [swap(2, "b")]),
                (("req", 4, "b"), []),
                (("req", 5, "c"), [Q(5, 1)]),
                (
                    ("shutdown",),
                    [
                        AbandonSwap(1, "a"),
                        Fail(1, ShuttingDown()),
                        Fail(2, ShuttingDown()),
                        AbandonSwap(2, "b"),
                        Fail(3, ShuttingDown()),
                        Fail(4, ShuttingDown()),
                        Fail(5, ShuttingDown()),
                        Stop(("a", "b", "c"), None, "shutdown"),
                    ],
                ),
                (("req", 6, "a"), [Reject(6, 503, "llamaswap is shutting down")]),
                (("done", 1), []),
                (("shutdown",), []),
            ],
        )
        self.assertIdle(s)
        self.assertTrue(s.shuttingDown)


class StarvationTests(TableTestCase):
    """
    The C{maxWaitForSwap} bound (llama-swap #612).
    """

    def test_bound(self) -> None:
        """
        Traffic to a running model takes the fast path until the queued
        swap has waited C{maxWaitForSwap}; then new requests for it queue
        behind the swap, which proceeds once in-flight requests drain.
        """
        s = make(states={"a": READY}, maxWaitForSwap=30)
        self.play(
            s,
            [
                (("req", 1, "a", 0), [G(1, "a")]),
                (("req", 2, "b", 1), [Q(2, 1)]),
                (("req", 3, "a", 10), [G(3, "a")]),
                (("serve", 1), []),
                (("tick", 31), [HoldBack(("a",))]),
                (("req", 4, "a", 32), [Q(4, 2)]),
                (("serve", 3), [swap(1, "b", "a"), HoldBack(()), Q(4, 1)]),
                (("done", 1), [G(2, "b")]),
                (("serve", 2), [swap(2, "a", "b")]),
                (("done", 2), [G(4, "a")]),
            ],
        )

    def test_boundWithoutTick(self) -> None:
        """
        A request's own arrival time is enough to apply the bound.
        """
        s = make(states={"a": READY}, maxWaitForSwap=30)
        self.play(
            s,
            [
                (("req", 1, "a", 0), [G(1, "a")]),
                (("req", 2, "b", 1), [Q(2, 1)]),
                (("req", 3, "a", 40), [HoldBack(("a",)), Q(3, 2)]),
            ],
        )

    def test_disabled(self) -> None:
        """
        Without a bound (llama-swap's behaviour) the running model's
        traffic keeps taking the fast path however long the swap waits.
        """
        s = make(states={"a": READY}, maxWaitForSwap=None)
        self.play(
            s,
            [
                (("req", 1, "a", 0), [G(1, "a")]),
                (("req", 2, "b", 1), [Q(2, 1)]),
                (("tick", 1000), []),
                (("req", 3, "a", 1000), [G(3, "a")]),
            ],
        )
        self.assertIsNone(s.nextDeadline())

    def test_zero(self) -> None:
        """
        C{maxWaitForSwap: 0} is strict FIFO: a queued swap holds back the
        model it must stop at once.
        """
        s = make(states={"a": READY}, maxWaitForSwap=0)
        self.play(
            s,
            [
                (("req", 1, "a", 0), [G(1, "a")]),
                (("req", 2, "b", 0), [HoldBack(("a",)), Q(2, 1)]),
                (("req", 3, "a", 0), [Q(3, 2)]),
            ],
        )

    def test_heldModelMayStillSwap(self) -> None:
        """
        The bound only takes away the fast path: two starved requests that
        must each stop the other's model (both running through a v1
        profile) do not deadlock; each swaps in turn.
        """
        s = make(models="ab", maxWaitForSwap=0, profiles={"p": ["a", "b"]})
        self.play(
            s,
            [
                (("req", 1, "a", 0, "p"), [swap(1, "a")]),
                (("done", 1), [G(1, "a")]),
                (("req", 2, "b", 0, "p"), [swap(2, "b")]),
                (("done", 2), [G(2, "b")]),
                (("req", 3, "a", 0), [HoldBack(("b",)), Q(3, 1)]),
                (("req", 4, "b", 0), [HoldBack(("a", "b")), Q(4, 2)]),
                (("serve", 1), [swap(3, "b", "a"), HoldBack(("b",))]),
                (("serve", 2), []),
                (("done", 3), [G(4, "b")]),
                (("serve", 4), [swap(4, "a", "b"), HoldBack(())]),
                (("done", 4), [G(3, "a")]),
            ],
        )

    def test_nextDeadline(self) -> None:
        """
        L{Scheduler.nextDeadline} is when the oldest queued request that
        has not yet reached the bound reaches it.
        """
        s = make(states={"a": READY}, maxWaitForSwap=30)
        self.assertIsNone(s.nextDeadline())
        s.onRequest(1, "a", 0)
        s.onRequest(2, "b", 5)
        s.onRequest(3, "c", 7)
        self.assertEqual(s.nextDeadline(), 35)
        s.onTick(35)
        self.assertEqual(s.nextDeadline(), 37)
        s.onTick(40)
        self.assertIsNone(s.nextDeadline())


class ModelStateTests(TableTestCase):
    """
    Model states come from the supervisors.
    """

    def test_stoppingOutsideRouter(self) -> None:
        """
        A ready model being stopped outside the router (TTL) is started
        again by a request rather than served (llama-swap #946).
        """
        s = make(states={"a": READY})
        self.play(
            s,
            [(("state", "a", State.STOPPING), []), (("req", 1, "a"), [swap(1, "a")])],
        )

    def test_unexpectedExit(self) -> None:
        """
        A model that exited on its own is started again.
        """
        s = make(states={"a": READY})
        self.play(
            s,
            [(("state", "a", State.STOPPED), []), (("req", 1, "a"), [swap(1, "a")])],
        )
        self.assertEqual(s.state("a"), State.STOPPED)

    def test_unknownModelIgnored(self) -> None:
        """
        States of models the scheduler does not serve are ignored.
        """
        s = make()
        self.assertEqual(s.onModelState("zzz", READY), [])


class ProfileTests(TableTestCase):
    """
    llama-swap v1 C{profile/model} requests.
    """

    def test_membersRunTogether(self) -> None:
        """
        Members of a profile requested through it run together; a plain
        request for another model evicts them (after they drain).
        """
        s = make(models="abc", states={"a": READY}, profiles={"p": ["a", "b"]})
        self.play(
            s,
            [
                (("req", 1, "a", 0, "p"), [G(1, "a")]),
                (("req", 2, "b", 0, "p"), [swap(1, "b")]),
                (("done", 1), [G(2, "b")]),
                (("req", 3, "c"), [Q(3, 1)]),
                (("serve", 1), []),
                (("serve", 2), [swap(2, "c", "a", "b")]),
            ],
        )

    def test_profileEvictsNonMembers(self) -> None:
        """
        A profile request stops everything outside the profile.
        """
        s = make(NEVER, models="abc", states={"c": READY}, profiles={"p": ["a", "b"]})
        self.play(s, [(("req", 1, "a", 0, "p"), [swap(1, "a", "c")])])

    def test_unknownProfileOrMember(self) -> None:
        """
        An unknown profile, or a model outside it, is a 404.
        """
        s = make(profiles={"p": ["a"]})
        notFound = "no local server found for requested model"
        self.play(
            s,
            [
                (("req", 1, "a", 0, "q"), [Reject(1, 404, notFound)]),
                (("req", 2, "b", 0, "p"), [Reject(2, 404, notFound)]),
            ],
        )


def groupsConfig(**definitions: dict[str, Any]) -> dict[str, GroupConfig]:
    """
    Group ID to L{GroupConfig}.
    """
    return {
        name: GroupConfig(id=name, **{k: tuple(v) if k == "members" else v for k, v in d.items()})
        for name, d in definitions.items()
    }


class PolicyTests(TableTestCase):
    """
    The real eviction policies plugged into the scheduler (llama-swap's
    group and matrix router scenarios).
    """

    def test_sameGroupSerialises(self) -> None:
        """
        Back-to-back requests in one swapping group: the second waits until
        the first is ready and idle, then evicts it.
        """
        s = make(GroupEvictor(groupsConfig(g={"members": ["a", "b"]})))
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "b"), [Q(2, 1)]),
                (("done", 1), [G(1, "a")]),
                (("serve", 1), [swap(2, "b", "a")]),
            ],
        )

    def test_nonExclusiveGroupsParallel(self) -> None:
        """
        Two non-exclusive groups load in parallel.
        """
        s = make(
            GroupEvictor(
                groupsConfig(
                    g1={"exclusive": False, "members": ["a"]},
                    g2={"exclusive": False, "members": ["b"]},
                )
            )
        )
        self.play(s, [(("req", 1, "a"), [swap(1, "a")]), (("req", 2, "b"), [swap(2, "b")])])

    def test_persistentKept(self) -> None:
        """
        Loading an exclusive group's model leaves a persistent group's
        model running.
        """
        s = make(
            GroupEvictor(
                groupsConfig(p={"persistent": True, "members": ["a"]}, x={"members": ["b"]})
            ),
            states={"a": READY},
        )
        self.play(s, [(("req", 1, "b"), [swap(1, "b")])])

    def matrix(self, sets: Mapping[str, str]) -> MatrixEvictor:
        """
        A L{MatrixEvictor} over models a, b, c.
        """
        problems = Problems()
        program = compileMatrix({"sets": dict(sets)}, ["a", "b", "c"], problems, ("matrix",))
        assert program is not None
        return MatrixEvictor(program)

    def test_matrixIncompatibleQueues(self) -> None:
        """
        Matrix: a model of another set waits for the first swap, then
        evicts it.
        """
        s = make(self.matrix({"s1": "a", "s2": "b"}))
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "b"), [Q(2, 1)]),
                (("done", 1), [G(1, "a")]),
                (("serve", 1), [swap(2, "b", "a")]),
            ],
        )

    def test_matrixCoexistingParallel(self) -> None:
        """
        Matrix: models of one set load in parallel and are both kept.
        """
        s = make(self.matrix({"pair": "a & b"}))
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (("req", 2, "b"), [swap(2, "b")]),
                (("done", 1), [G(1, "a")]),
                (("done", 2), [G(2, "b")]),
            ],
        )

    def test_fromConfig(self) -> None:
        """
        L{Scheduler.fromConfig} takes limits, priorities, the bound, the v1
        profiles and the group policy from the configuration.
        """
        config = Config(
            models=FrozenDict(
                {
                    "a": ModelConfig(id="a", concurrencyLimit=1),
                    "b": ModelConfig(id="b"),
                }
            ),
            routing=RoutingConfig(
                groups=FrozenDict(groupsConfig(g={"swap": False, "members": ["a", "b"]})),
                priority=FrozenDict({"b": 3}),
                maxWaitForSwap=5,
            ),
            legacyProfiles=FrozenDict({"p": ("a",)}),
        )
        s = Scheduler.fromConfig(config, states={"a": READY})
        self.play(
            s,
            [
                (("req", 1, "a", 0, "p"), [G(1, "a")]),
                (("req", 2, "a"), [tooMany(2)]),
                (("req", 3, "b"), [swap(1, "b")]),
                (("done", 1), [G(3, "b", 3)]),
            ],
        )
        self.assertEqual(s.models, frozenset({"a", "b"}))


# A random operation: (kind, a number picking the subject, a time step).
operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["req", "req", "req", "preq", "done", "fail", "serve", "cancel", "tick", "unload"]
        ),
        st.integers(min_value=0, max_value=50),
        st.integers(min_value=0, max_value=20),
    ),
    max_size=60,
)


class InvariantTests(SynchronousTestCase):
    """
    Random event sequences never break the scheduler's promises.
    """

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        operations,
        st.sampled_from(["alone", "pairs", "never"]),
        st.sampled_from([None, 0, 15]),
    )
    def test_invariants(self, ops: list[tuple[str, int, int]], policy: str, maxWait: int | None) -> None:
        """
        Whatever happens: a busy model is never evicted, colliding swaps
        never run together, every admitted request ends exactly once, and
        once every load succeeds and every request is served, nothing is
        left queued (no request waits forever).
        """
        evictor = {
            "alone": ALONE,
            "pairs": conflicts(("a", "b"), ("b", "c")),
            "never": NEVER,
        }[policy]
        s = make(
            evictor,
            models="abc",
            limits={"a": 3, "b": 2},
            maxWaitForSwap=maxWait,
            profiles={"p": ["a", "b"]},
        )
        now = 0.0
        swaps: dict[int, tuple[str, frozenset[str]]] = {}
        granted: dict[int, str] = {}
        admitted: set[int] = set()
        ended: set[int] = set()
        nextID = 0
        stopped: list[str] = []

        def run(decisions: list[Decision]) -> None:
            for d in decisions:
                if isinstance(d, StartSwap):
                    evict = frozenset(d.evict)
                    self.assertNotIn(d.target, evict)
                    for m in evict:
                        self.assertNotIn(m, granted.values(), "busy model evicted")
                    for target, other in swaps.values():
                        self.assertNotIn(target, evict)
                        self.assertNotIn(d.target, other)
                        self.assertFalse(evict & other)
                    swaps[d.swapID] = (d.target, evict)
                elif isinstance(d, Grant):
                    self.assertIn(d.requestID, admitted)
                    self.assertNotIn(d.requestID, granted)
                    granted[d.requestID] = d.model
                elif isinstance(d, Fail):
                    self.assertIn(d.requestID, admitted)
                    self.assertNotIn(d.requestID, ended)
                    ended.add(d.requestID)
                elif isinstance(d, AbandonSwap):
                    del swaps[d.swapID]
                elif isinstance(d, Stop):
                    stopped.extend(d.models)

        def pick(pool: Collection[int], n: int) -> int | None:
            items = sorted(pool)
            return items[n % len(items)] if items else None

        for kind, n, step in ops:
            now += step
            if kind in ("req", "preq"):
                nextID += 1
                profile = "p" if kind == "preq" else None
                decisions = s.onRequest(nextID, "abc"[n % 3], now, profile)
                if not any(isinstance(d, Reject) for d in decisions):
                    admitted.add(nextID)
                run(decisions)
            elif kind in ("done", "fail"):
                swapID = pick(swaps, n)
                if swapID is not None:
                    target, evict = swaps.pop(swapID)
                    for m in evict:
                        run(s.onModelState(m, State.STOPPED))
                    run(s.onSwapDone(swapID, None if kind == "done" else RuntimeError("x")))
            elif kind == "serve":
                requestID = pick(granted, n)
                if requestID is not None:
                    del granted[requestID]
                    ended.add(requestID)
                    run(s.onServeDone(requestID))
            elif kind == "cancel":
                requestID = pick(admitted - ended, n)
                if requestID is not None:
                    granted.pop(requestID, None)
                    ended.add(requestID)
                    run(s.onCancel(requestID))
            elif kind == "tick":
                run(s.onTick(now))
            elif kind == "unload":
                run(s.onUnload(["abc"[n % 3]]))
                while stopped:
                    run(s.onModelState(stopped.pop(), State.STOPPED))

        # Let everything finish: loads succeed, requests are served.
        for _ in range(100):
            if not swaps and not granted:
                break
            for swapID in sorted(swaps):
                target, evict = swaps.pop(swapID)
                for m in evict:
                    run(s.onModelState(m, State.STOPPED))
                run(s.onSwapDone(swapID))
            for requestID in sorted(granted):
                del granted[requestID]
                ended.add(requestID)
                run(s.onServeDone(requestID))
        self.assertEqual(s.queued(), [])
        self.assertEqual(ended, admitted)
        for m in "abc":
            self.assertEqual((s.reserved(m), s.inFlight(m)), (0, 0))


class ReconfigureTests(TableTestCase):
    """
    A reload: added models serve at once; restarted and removed ones drain
    their in-flight requests, then retire; requests meanwhile queue.
    """

    def test_restartedIdleRetiresAtOnce(self) -> None:
        """
        A restarted model with nothing in flight retires at once; a
        request arriving before it is retired queues and then starts the
        new definition.
        """
        s = make(states={"a": READY})
        self.play(
            s,
            [
                (("reconfigure", "abc", ["a"]), [Retire("a")]),
                (("req", 1, "a"), [Q(1, 1)]),
                (("state", "a", State.STOPPED), []),
                (("retired", "a"), [swap(1, "a")]),
                (("done", 1), [G(1, "a")]),
            ],
        )
        self.assertEqual(s.retiring(), frozenset())

    def test_restartedDrainsFirst(self) -> None:
        """
        A restarted model serving a request is not retired until that
        request ends; new requests for it queue, they are not granted on
        the old process nor refused.
        """
        s = make(states={"a": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [G(1, "a")]),
                (("reconfigure", "abc", ["a"]), []),
                (("req", 2, "a"), [Q(2, 1)]),
                (("serve", 1), [Retire("a")]),
                (("retired", "a"), [swap(1, "a")]),
                (("done", 1), [G(2, "a")]),
            ],
        )

    def test_evictingRetiringWaits(self) -> None:
        """
        A request that would evict a retiring model waits until it is
        retired (the old process is stopped by the retirement, not by a
        swap racing it).
        """
        s = make(states={"a": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [G(1, "a")]),
                (("reconfigure", "abc", ["a"]), []),
                (("req", 2, "b"), [Q(2, 1)]),
                (("serve", 1), [Retire("a")]),
                (("state", "a", State.STOPPING), []),
                (("state", "a", State.STOPPED), [swap(1, "b")]),
                (("retired", "a"), []),
            ],
        )

    def test_removedDrainsThenGoes(self) -> None:
        """
        A removed model finishes its request, retires and is forgotten;
        requests for it are refused from the reload on, queued ones fail.
        """
        s = make(states={"a": READY, "b": READY}, evictor=NEVER)
        notFound = Reject(3, 404, "no local server found for requested model")
        self.play(
            s,
            [
                (("req", 1, "a"), [G(1, "a")]),
                (("reconfigure", "bc", [], NEVER), []),
                (("req", 3, "a"), [notFound]),
                (("serve", 1), [Retire("a")]),
                (("retired", "a"), []),
            ],
        )
        self.assertEqual(s.models, frozenset("bc"))

    def test_removedQueuedFail(self) -> None:
        """
        Requests queued for a removed model fail with L{Unloaded}.
        """
        s = make(states={"b": READY})
        self.play(
            s,
            [
                (("req", 1, "b"), [G(1, "b")]),
                (("req", 2, "a"), [Q(2, 1)]),
                (("reconfigure", "bc", []), [Fail(2, Unloaded("a")), Retire("a")]),
            ],
        )
        self.assertEqual(s.queued(), [])
        self.assertEqual(s.reserved("a"), 0)

    def test_swapOfRestartedRequeues(self) -> None:
        """
        A load of the old definition in progress is abandoned; its waiters
        queue for the new definition.
        """
        s = make()
        self.play(
            s,
            [
                (("req", 1, "a"), [swap(1, "a")]),
                (
                    ("reconfigure", "abc", ["a"]),
                    [AbandonSwap(1, "a"), Retire("a"), Q(1, 1)],
                ),
                (("retired", "a"), [swap(2, "a")]),
                (("done", 1), []),
                (("done", 2), [G(1, "a")]),
            ],
        )

    def test_addedServedAtOnce(self) -> None:
        """
        An added model is served at once; kept models keep their state and
        in-flight requests.
        """
        s = make(states={"a": READY}, evictor=NEVER)
        self.play(
            s,
            [
                (("req", 1, "a"), [G(1, "a")]),
                (("reconfigure", "abcd", [], NEVER), []),
                (("req", 2, "d"), [swap(1, "d")]),
                (("req", 3, "a"), [G(3, "a")]),
            ],
        )
        self.assertEqual(s.inFlight("a"), 2)

    def test_settingsReplaced(self) -> None:
        """
        New limits apply to new requests.
        """
        s = make(states={"a": READY})
        s.onReconfigure({"a": 1, "b": 0, "c": 0}, ALONE)
        self.play(s, [(("req", 1, "a"), [G(1, "a")]), (("req", 2, "a"), [tooMany(2)])])

    def test_reAddedWhileLeaving(self) -> None:
        """
        A model removed and added back before it retired stays: it retires
        as a restart and then serves again.
        """
        s = make(states={"a": READY})
        self.play(
            s,
            [
                (("req", 1, "a"), [G(1, "a")]),
                (("reconfigure", "bc", []), []),
                (("reconfigure", "abc", []), []),
                (("req", 2, "a"), [Q(2, 1)]),
                (("serve", 1), [Retire("a")]),
                (("retired", "a"), [swap(1, "a")]),
            ],
        )

    def test_ignoredWhileShuttingDown(self) -> None:
        """
        After shutdown a reconfiguration decides nothing.
        """
        s = make()
        s.onShutdown()
        self.assertEqual(s.onReconfigure({"a": 0}, ALONE, restarted=["a"]), [])
