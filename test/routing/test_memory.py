"""
Tests for L{llamaswap.routing.memory}: the memory planner as a table and
as properties, and the evictor that plugs it into the scheduler.
"""

from __future__ import annotations

from typing import Collection, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.load import loadConfigText
from llamaswap.config.memory import splitNeed
from llamaswap.routing.memory import (
    POOL,
    EvictThenStart,
    MemoryEvictor,
    MemoryPolicy,
    Occupant,
    Refuse,
    Start,
    Wait,
    memoryPolicyFor,
    planMemory,
)
from llamaswap.routing.scheduler import Decision, Grant, Reject, Scheduler, StartSwap
from llamaswap.upstream.lifecycle import State

GiB = 1024**3


def pool(n: int) -> dict[str, int]:
    return {POOL: n}


def occ(model: str, size: int, inFlight: int = 0, lastUsed: float = 0) -> Occupant:
    return Occupant(model, pool(size), inFlight, lastUsed)


class PlanTableTests(SynchronousTestCase):
    """
    L{planMemory}, case by case.
    """

    def test_table(self) -> None:
        cases = [
            # (need, running, budget) -> plan
            (4, [], 10, Start()),
            (4, [occ("a", 3), occ("b", 3)], 10, Start()),
            (4, [occ("a", 3, lastUsed=2), occ("b", 4, lastUsed=1)], 10, EvictThenStart(("b",))),
            # LRU first, even when a later one alone would suffice
            (4, [occ("a", 3, lastUsed=1), occ("b", 5, lastUsed=2)], 10, EvictThenStart(("a",))),
            # LRU 'a' is not enough; 'b' is; 'a' is then kept (pruned)
            (
                5,
                [occ("a", 1, lastUsed=1), occ("b", 5, lastUsed=2), occ("c", 4, lastUsed=3)],
                10,
                EvictThenStart(("b",)),
            ),
            # idle before busy, whatever the recency
            (
                4,
                [occ("a", 4, inFlight=1, lastUsed=1), occ("b", 4, lastUsed=9)],
                10,
                EvictThenStart(("b",)),
            ),
            # only busy ones would do: wait for them
            (
                8,
                [occ("a", 4, inFlight=2, lastUsed=1), occ("b", 4, lastUsed=9)],
                10,
                Wait(("a", "b"), ("a",)),
            ),
            (10, [], 10, Start()),
        ]
        for need, running, budget, expected in cases:
            self.assertEqual(
                planMemory("t", pool(need), running, pool(budget)), expected, (need, running)
            )

    def test_tooLarge(self) -> None:
        """
        A model bigger than the whole budget is refused, naming the sizes,
        and nothing is stopped for it.
        """
        plan = planMemory("big", pool(30 * GiB), [occ("a", GiB)], pool(24 * GiB))
        self.assertIsInstance(plan, Refuse)
        assert isinstance(plan, Refuse)
        self.assertEqual(plan.evict, ())
        self.assertEqual(plan.reason, "model big needs 30.0 GiB but the memory budget is 24.0 GiB")

    def test_perDevice(self) -> None:
        """
        Only models holding memory on the device that is short are stopped.
        """
        budget = {"gpu0": 10, "gpu1": 10}
        running = [
            Occupant("on0", {"gpu0": 8}, lastUsed=1),
            Occupant("on1", {"gpu1": 8}, lastUsed=2),
        ]
        self.assertEqual(planMemory("t", {"gpu1": 4}, running, budget), EvictThenStart(("on1",)))
        self.assertEqual(planMemory("t", {"gpu1": 2}, running, budget), Start())
        refused = planMemory("t", {"gpu1": 11}, running, budget)
        assert isinstance(refused, Refuse)
        self.assertIn("on gpu1", refused.reason)

    def test_splitNeed(self) -> None:
        budget = {"gpu0": 10, "gpu1": 10}
        self.assertEqual(splitNeed(7, (), budget), {"gpu0": 4, "gpu1": 3})
        self.assertEqual(splitNeed(7, ("gpu1",), budget), {"gpu1": 7})
        self.assertEqual(splitNeed(None, ("gpu0",), budget), {"gpu0": 10})
        self.assertEqual(splitNeed(None, (), budget), budget)


devicesST = st.sampled_from([("a",), ("a", "b")])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, int], list[Occupant], dict[str, int]]:
    """
    A budget, running models that fit in it, and a target's need.
    """
    devices = draw(devicesST)
    budget = {d: draw(st.integers(1, 100)) for d in devices}
    free = dict(budget)
    running = []
    for i in range(draw(st.integers(0, 6))):
        need = {}
        for d in devices:
            if draw(st.booleans()) and free[d] > 0:
                n = draw(st.integers(1, free[d]))
                need[d] = n
                free[d] -= n
        running.append(Occupant(f"m{i}", need, draw(st.integers(0, 2)), draw(st.integers(0, 50))))
    target = {d: draw(st.integers(0, 120)) for d in devices if draw(st.booleans())}
    return budget, running, target


class PlanPropertyTests(SynchronousTestCase):
    """
    L{planMemory}'s invariants over random scenarios.
    """

    @settings(max_examples=400, deadline=None)
    @given(scenarios())
    def test_invariants(
        self, scenario: tuple[dict[str, int], list[Occupant], dict[str, int]]
    ) -> None:
        budget, running, need = scenario
        plan = planMemory("t", need, running, budget)
        byName = {o.model: o for o in running}
        if any(n > budget[d] for d, n in need.items()):
            self.assertIsInstance(plan, Refuse)
            self.assertEqual(plan.evict, ())
            return
        self.assertNotIsInstance(plan, Refuse)
        evicted = set(plan.evict)
        # never over budget once the evicted stop
        for d in budget:
            used = sum(o.need.get(d, 0) for o in running if o.model not in evicted)
            self.assertLessEqual(used + need.get(d, 0), budget[d])
        # minimal: keeping any one of the evicted would not fit
        for model in evicted:
            kept = evicted - {model}
            over = any(
                sum(o.need.get(d, 0) for o in running if o.model not in kept) + need.get(d, 0)
                > budget[d]
                for d in budget
            )
            self.assertTrue(over, (model, plan))
        # busy models are only chosen through Wait, never for a direct stop
        busy = {m for m in evicted if byName[m].inFlight}
        if isinstance(plan, Wait):
            self.assertEqual(set(plan.busy), busy)
            self.assertTrue(busy)
        else:
            self.assertEqual(busy, set())
        # a busy one is chosen only when the idle ones could not make room
        if busy:
            idle = {o.model for o in running if not o.inFlight}
            over = any(
                sum(o.need.get(d, 0) for o in running if o.model not in idle) + need.get(d, 0)
                > budget[d]
                for d in budget
            )
            self.assertTrue(over)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(st.integers(1, 10), min_size=1, max_size=6),
        st.permutations(range(6)),
        st.integers(1, 10),
    )
    def test_lruOrder(self, sizes: list[int], recency: list[int], need: int) -> None:
        """
        With one pool and only idle models of equal size, the least recently
        used ones stop.
        """
        size = sizes[0]
        running = [occ(f"m{i}", size, lastUsed=recency[i]) for i in range(len(sizes))]
        budget = size * len(sizes)
        plan = planMemory("t", pool(min(need, budget)), running, pool(budget))
        byRecency = sorted(running, key=lambda o: o.lastUsed)
        count = len(plan.evict)
        self.assertEqual(set(plan.evict), {o.model for o in byRecency[:count]})


class Usage:
    def __init__(self, inFlight: Mapping[str, int], lastUsed: Mapping[str, float]) -> None:
        self._inFlight = inFlight
        self._lastUsed = lastUsed

    def inFlight(self, model: str) -> int:
        return self._inFlight.get(model, 0)

    def lastUsed(self, model: str) -> float:
        return self._lastUsed.get(model, 0)


class Base:
    def evictionFor(self, target: str, running: Collection[str]) -> frozenset[str]:
        return frozenset(running) - {target}

    def explain(self, target: str, running: Collection[str]) -> str:
        return "base"


class MemoryEvictorTests(SynchronousTestCase):
    """
    L{MemoryEvictor} plans for covered models and defers the others.
    """

    def setUp(self) -> None:
        policy = MemoryPolicy(
            budget=pool(10 * GiB),
            sizes={
                "a": 4 * GiB,
                "b": 4 * GiB,
                "c": 4 * GiB,
                "huge": 11 * GiB,
                "g": 2 * GiB,
                "u": None,
            },
            devices={},
            covered=frozenset({"a", "b", "c", "huge", "u"}),
        )
        self.evictor = MemoryEvictor(Base(), policy)
        self.evictor.bindUsage(Usage({"b": 1}, {"a": 1, "b": 2}))

    def test_fits(self) -> None:
        self.assertEqual(self.evictor.evictionFor("b", ["a"]), frozenset())

    def test_lru(self) -> None:
        self.assertEqual(self.evictor.evictionFor("c", ["a", "b"]), frozenset({"a"}))
        self.assertEqual(
            self.evictor.explain("c", ["a", "b"]),
            "memory: model=c need=4.0 GiB in use=8.0 GiB budget=10.0 GiB evict=[a]",
        )

    def test_uncoveredGoesToBase(self) -> None:
        self.assertEqual(self.evictor.evictionFor("g", ["a", "b"]), frozenset({"a", "b"}))
        self.assertEqual(self.evictor.explain("g", ["a"]), "base")
        self.assertIsNone(self.evictor.refusal("g"))

    def test_unknownSizeRunsAlone(self) -> None:
        self.assertEqual(self.evictor.evictionFor("u", ["a", "b"]), frozenset({"a", "b"}))
        self.assertEqual(self.evictor.evictionFor("a", ["u"]), frozenset({"u"}))

    def test_refusal(self) -> None:
        self.assertEqual(
            self.evictor.refusal("huge"),
            "model huge needs 11.0 GiB but the memory budget is 10.0 GiB",
        )
        self.assertIsNone(self.evictor.refusal("a"))


class SchedulerTests(SynchronousTestCase):
    """
    The scheduler with a L{MemoryEvictor}: models that fit run together,
    the least recently used idle one makes room, a busy one is waited
    for, an oversized one is refused and nothing stops.
    """

    def setUp(self) -> None:
        policy = MemoryPolicy(
            budget=pool(10 * GiB),
            sizes={"a": 4 * GiB, "b": 4 * GiB, "c": 4 * GiB, "huge": 11 * GiB},
            devices={},
            covered=frozenset({"a", "b", "c", "huge"}),
        )
        self.scheduler = Scheduler(
            {"a": 4, "b": 4, "c": 4, "huge": 4}, MemoryEvictor(Base(), policy)
        )
        self.ids = iter(range(1, 1000))

    def request(self, model: str) -> tuple[int, list[Decision]]:
        requestID = next(self.ids)
        return requestID, self.scheduler.onRequest(requestID, model, 0.0)

    def load(self, model: str) -> int:
        """
        Request C{model}, which must start without evicting; finish the
        load; return the request being served.
        """
        requestID, out = self.request(model)
        [swap] = [d for d in out if isinstance(d, StartSwap)]
        self.assertEqual((swap.target, swap.evict), (model, ()))
        self.scheduler.onModelState(model, State.STARTING)
        self.assertIn(Grant(requestID, model, 0), self.scheduler.onSwapDone(swap.swapID))
        self.scheduler.onModelState(model, State.READY)
        return requestID

    def test_twoRunTogether(self) -> None:
        first = self.load("a")
        second = self.load("b")
        self.scheduler.onServeDone(first)
        self.scheduler.onServeDone(second)
        self.assertEqual(self.scheduler.state("a"), State.READY)

    def test_lruIdleEvicted(self) -> None:
        a = self.load("a")
        b = self.load("b")
        self.scheduler.onServeDone(b)
        self.scheduler.onServeDone(a)  # a is now the most recently used
        _, out = self.request("c")
        [swap] = [d for d in out if isinstance(d, StartSwap)]
        self.assertEqual((swap.target, swap.evict), ("c", ("b",)))
        self.assertIn("memory: model=c", swap.reason)

    def test_busyNeverEvicted(self) -> None:
        a = self.load("a")
        b = self.load("b")
        self.scheduler.onServeDone(a)  # a idle and least recent; b busy
        _, out = self.request("c")
        [swap] = [d for d in out if isinstance(d, StartSwap)]
        self.assertEqual(swap.evict, ("a",))
        # both busy: the request waits until one drains
        self.scheduler.onSwapDone(swap.swapID)
        self.scheduler.onModelState("a", State.STOPPED)
        self.scheduler.onModelState("c", State.READY)
        requestID, out = self.request("a")
        self.assertEqual([d for d in out if isinstance(d, StartSwap)], [])
        self.assertEqual(self.scheduler.queued(), [requestID])
        out = self.scheduler.onServeDone(b)
        [swap] = [d for d in out if isinstance(d, StartSwap)]
        self.assertEqual((swap.target, swap.evict), ("a", ("b",)))

    def test_oversizedRefused(self) -> None:
        self.load("a")
        requestID, out = self.request("huge")
        self.assertEqual(
            out,
            [Reject(requestID, 507, "model huge needs 11.0 GiB but the memory budget is 10.0 GiB")],
        )
        self.assertEqual(self.scheduler.reserved("huge"), 0)
        self.assertEqual(self.scheduler.activeSwaps(), {})


class PolicyForTests(SynchronousTestCase):
    """
    L{memoryPolicyFor} covers the models in no explicit group.
    """

    def test_groups(self) -> None:
        config = loadConfigText(
            "memoryBudget: 10GiB\n"
            "groups:\n"
            "  pair: {swap: false, members: [g1, g2]}\n"
            "models:\n"
            "  a: {cmd: 'x --port ${PORT}', memory: 1GiB}\n"
            "  b: {cmd: 'x --port ${PORT}'}\n"
            "  g1: {cmd: 'x --port ${PORT}'}\n"
            "  g2: {cmd: 'x --port ${PORT}'}\n",
            "c.yaml",
            {},
        ).config
        policy = memoryPolicyFor(config)
        assert policy is not None
        self.assertEqual(policy.covered, frozenset({"a", "b"}))
        self.assertEqual(policy.need("a"), {POOL: GiB})
        self.assertEqual(policy.need("b"), {POOL: 10 * GiB})

    def test_noBudget(self) -> None:
        config = loadConfigText("models: {a: {cmd: 'x --port ${PORT}'}}", "c.yaml", {}).config
        self.assertIsNone(memoryPolicyFor(config))


class SchedulerPropertyTests(SynchronousTestCase):
    """
    The scheduler with a L{MemoryEvictor}, driven by random events with a
    shell that carries out every swap at once: the models running never
    exceed the budget, and a swap never stops a model serving requests.
    """

    @settings(max_examples=200, deadline=None)
    @given(
        st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(1, 12), min_size=2),
        st.lists(st.tuples(st.sampled_from(["request", "done"]), st.integers(0, 100)), max_size=60),
    )
    def test_neverOverBudget(self, sizes: dict[str, int], steps: list[tuple[str, int]]) -> None:
        budget = 10
        policy = MemoryPolicy(
            budget=pool(budget),
            sizes=sizes,
            devices={},
            covered=frozenset(sizes),
        )
        scheduler = Scheduler({m: 3 for m in sizes}, MemoryEvictor(Base(), policy))
        models = sorted(sizes)
        serving: list[int] = []
        state = {m: State.STOPPED for m in models}
        ids = iter(range(1, 10_000))

        def carryOut(decisions: list[Decision]) -> None:
            pending = list(decisions)
            while pending:
                decision = pending.pop(0)
                if isinstance(decision, Grant):
                    serving.append(decision.requestID)
                elif isinstance(decision, StartSwap):
                    for model in decision.evict:
                        self.assertEqual(scheduler.inFlight(model), 0, decision)
                        state[model] = State.STOPPED
                        pending += scheduler.onModelState(model, State.STOPPED)
                    state[decision.target] = State.READY
                    used = sum(sizes[m] for m, s in state.items() if s is State.READY)
                    self.assertLessEqual(used, budget, (decision, state))
                    pending += scheduler.onModelState(decision.target, State.READY)
                    pending += scheduler.onSwapDone(decision.swapID)

        for kind, n in steps:
            if kind == "request":
                carryOut(scheduler.onRequest(next(ids), models[n % len(models)], 0.0))
            elif serving:
                carryOut(scheduler.onServeDone(serving.pop(n % len(serving))))
        while serving:
            carryOut(scheduler.onServeDone(serving.pop(0)))
        self.assertEqual(scheduler.queued(), [])
