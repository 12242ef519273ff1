"""
Tests for L{llamaswap.routing.overlap}: when a swap's target may start while
the evicted models exit, as the pure policy and as the scheduler's
decisions.
"""

from __future__ import annotations

from typing import Any, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.model import (
    Config,
    FrozenDict,
    GroupConfig,
    MemoryConfig,
    ModelConfig,
    RoutingConfig,
)
from llamaswap.routing.memory import POOL, MemoryPolicy
from llamaswap.routing.overlap import OverlapPolicy, overlapPolicyFor, proxyPort
from llamaswap.routing.scheduler import Grant, Scheduler, StartSwap
from llamaswap.upstream.lifecycle import State

GiB = 1024**3


def policy(
    sizes: Mapping[str, int | None] | None = None,
    budget: int = 10 * GiB,
    ports: Mapping[str, int | None] | None = None,
    **kw: Any,
) -> OverlapPolicy:
    """
    An L{OverlapPolicy}: models a, b, c of 4 GiB on ports 1, 2, 3 unless
    told otherwise, in a budget of C{budget}.
    """
    sizes = dict({"a": 4 * GiB, "b": 4 * GiB, "c": 4 * GiB}, **(sizes or {}))
    ports = dict({m: i for i, m in enumerate(sorted(sizes), 1)}, **(ports or {}))
    memory = MemoryPolicy(
        budget={POOL: budget}, sizes=sizes, devices={}, covered=frozenset()
    )
    return OverlapPolicy(memory=memory, ports=ports, **kw)


class RefusalTests(SynchronousTestCase):
    """
    L{OverlapPolicy.refusal}: safe only when memory, ports, stop commands
    and the prompt cache all allow it.
    """

    def test_fits(self) -> None:
        """
        A target that fits beside the exiting model may start at once.
        """
        self.assertIsNone(policy().refusal("b", {"a"}, {"a"}))

    def test_exitingModelsCountUntilGone(self) -> None:
        """
        Every model holding memory counts: the exiting ones, others still
        stopping and those that stay.
        """
        self.assertIsNone(policy(budget=12 * GiB).refusal("c", {"a"}, {"a", "b"}))
        self.assertEqual(
            policy(budget=11 * GiB).refusal("c", {"a"}, {"a", "b"}),
            "c does not fit in the memory budget beside a b",
        )
        self.assertEqual(
            policy(budget=7 * GiB).refusal("b", {"a"}, {"a"}),
            "b does not fit in the memory budget beside a",
        )

    def test_unknownSize(self) -> None:
        """
        A target or another model of unknown size never overlaps.
        """
        self.assertEqual(
            policy({"u": None}).refusal("u", {"a"}, {"a"}), "the memory of u is unknown"
        )
        self.assertEqual(
            policy({"u": None}).refusal("a", {"u"}, {"u"}), "the memory of u is unknown"
        )

    def test_samePort(self) -> None:
        """
        A target whose port an exiting (or any running) model holds, or
        whose port is unknown, waits.
        """
        self.assertEqual(
            policy(ports={"b": 1}).refusal("b", {"a"}, {"a"}),
            "a may hold the port of b (1)",
        )
        self.assertEqual(
            policy(budget=12 * GiB, ports={"c": 1}).refusal("c", {"b"}, {"a", "b"}),
            "a may hold the port of c (1)",
        )
        self.assertEqual(
            policy(ports={"b": None}).refusal("b", {"a"}, {"a"}),
            "the proxy port of b is unknown",
        )

    def test_cmdStop(self) -> None:
        """
        An exiting model with a C{cmdStop} makes the target wait; one that
        stays running does not.
        """
        p = policy(budget=12 * GiB, stopCommands=frozenset({"a"}))
        self.assertEqual(p.refusal("b", {"a"}, {"a"}), "a has a cmdStop")
        self.assertIsNone(p.refusal("c", {"b"}, {"a", "b"}))

    def test_promptCache(self) -> None:
        """
        Target and exiting model both using the prompt cache: wait (the
        exiting one saves where the target restores from); one of them
        alone: no conflict.
        """
        p = policy(promptCache=frozenset({"a", "b"}))
        self.assertEqual(
            p.refusal("b", {"a"}, {"a"}), "a saves its prompt cache where b restores from"
        )
        self.assertIsNone(p.refusal("c", {"a"}, {"a"}))

    def test_proxyPort(self) -> None:
        """
        The port of a proxy URL, the scheme's default, or L{None}.
        """
        self.assertEqual(proxyPort("http://127.0.0.1:5800"), 5800)
        self.assertEqual(proxyPort("http://localhost"), 80)
        self.assertEqual(proxyPort("https://h/v1"), 443)
        self.assertIsNone(proxyPort("http://h:99999"))
        self.assertIsNone(proxyPort("unix:/tmp/s"))


def config(swapOverlap: str = "auto", budget: int | None = 10 * GiB, **models: Any) -> Config:
    """
    A L{Config}: models a and b of 4 GiB in one swap group, ports 5801 and
    5802, with C{budget} and C{swapOverlap}.
    """
    defaults: dict[str, dict[str, Any]] = {
        "a": {"proxy": "http://127.0.0.1:5801", "memory": 4 * GiB},
        "b": {"proxy": "http://127.0.0.1:5802", "memory": 4 * GiB},
    }
    for m, kw in models.items():
        defaults.setdefault(m, {}).update(kw)
    return Config(
        models=FrozenDict({m: ModelConfig(id=m, **kw) for m, kw in defaults.items()}),
        routing=RoutingConfig(
            groups=FrozenDict(
                {"pair": GroupConfig(id="pair", swap=True, members=tuple(sorted(defaults)))}
            ),
            swapOverlap=swapOverlap,
        ),
        memory=MemoryConfig(budget={POOL: budget} if budget else {}),
    )


class PolicyForTests(SynchronousTestCase):
    """
    L{overlapPolicyFor} reads the configuration.
    """

    def test_fromConfig(self) -> None:
        """
        Ports from the proxies, stop commands and prompt cache users.
        """
        p = overlapPolicyFor(config(b={"cmdStop": "docker stop b", "promptCache": True}))
        assert p is not None
        self.assertEqual(p.ports, {"a": 5801, "b": 5802})
        self.assertEqual(p.stopCommands, frozenset({"b"}))
        self.assertEqual(p.promptCache, frozenset({"b"}))

    def test_offOrNoBudget(self) -> None:
        """
        C{swapOverlap: off}, or no memory budget: no policy (never overlap).
        """
        self.assertIsNone(overlapPolicyFor(config("off")))
        self.assertIsNone(overlapPolicyFor(config(budget=None)))


class SchedulerOverlapTests(SynchronousTestCase):
    """
    The scheduler decides C{overlap} on its swaps.
    """

    def swapTo(self, cfg: Config, target: str, states: Mapping[str, State]) -> StartSwap:
        """
        The swap a request for C{target} starts.
        """
        scheduler = Scheduler.fromConfig(cfg, states=states)
        decisions = scheduler.onRequest(1, target, 0.0)
        [swap] = [d for d in decisions if isinstance(d, StartSwap)]
        return swap

    def test_groupSwapThatFits(self) -> None:
        """
        A group swap whose target fits beside the model it evicts starts
        it at once.
        """
        swap = self.swapTo(config(), "b", {"a": State.READY})
        self.assertEqual((swap.evict, swap.overlap, swap.overlapRefusal), (("a",), True, ""))

    def test_off(self) -> None:
        """
        C{swapOverlap: off} and no budget: the target waits, and no reason
        is given (nothing to log).
        """
        for cfg in [config("off"), config(budget=None)]:
            swap = self.swapTo(cfg, "b", {"a": State.READY})
            self.assertEqual((swap.overlap, swap.overlapRefusal), (False, ""))

    def test_doesNotFit(self) -> None:
        """
        A target that does not fit beside the evicted model waits, with
        the reason.
        """
        swap = self.swapTo(config(budget=7 * GiB), "b", {"a": State.READY})
        self.assertFalse(swap.overlap)
        self.assertEqual(swap.overlapRefusal, "b does not fit in the memory budget beside a")

    def test_otherStoppingModelCounts(self) -> None:
        """
        A model stopping outside this swap (an unload, a TTL) still holds
        its memory and port: it counts.
        """
        cfg = config(budget=10 * GiB, c={"proxy": "http://127.0.0.1:5803", "memory": 4 * GiB})
        swap = self.swapTo(cfg, "b", {"a": State.READY, "c": State.STOPPING})
        self.assertEqual(swap.evict, ("a", "c"))
        self.assertFalse(swap.overlap)
        cfg = config(
            budget=12 * GiB,
            c={"proxy": "http://127.0.0.1:5802", "memory": 4 * GiB},
        )
        swap = self.swapTo(cfg, "b", {"a": State.READY, "c": State.STOPPING})
        self.assertEqual(swap.overlapRefusal, "c may hold the port of b (5802)")

    def test_memoryEvictionNeverOverlaps(self) -> None:
        """
        Models scheduled by memory (no explicit group) are evicted only
        when the target does not fit beside them, so their swaps never
        overlap.
        """
        cfg = config(budget=7 * GiB)
        cfg = Config(
            models=cfg.models,
            routing=RoutingConfig(swapOverlap="auto"),
            memory=cfg.memory,
        )
        swap = self.swapTo(cfg, "b", {"a": State.READY})
        self.assertEqual(swap.evict, ("a",))
        self.assertFalse(swap.overlap)

    def test_nothingEvicted(self) -> None:
        """
        A start that evicts nothing is not an overlap.
        """
        scheduler = Scheduler.fromConfig(config())
        [swap] = [d for d in scheduler.onRequest(1, "b", 0.0) if isinstance(d, StartSwap)]
        self.assertEqual((swap.evict, swap.overlap, swap.overlapRefusal), ((), False, ""))

    def test_retiringCountsAsExiting(self) -> None:
        """
        A model retiring for a reload counts as exiting: its C{cmdStop}
        makes a swap that evicts another model wait.
        """
        cfg = config(
            budget=12 * GiB,
            c={"proxy": "http://127.0.0.1:5803", "memory": 4 * GiB, "cmdStop": "kill c"},
        )
        cfg = Config(
            models=cfg.models,
            routing=RoutingConfig(
                groups=FrozenDict(
                    {
                        "pair": GroupConfig(
                            id="pair", swap=True, exclusive=False, members=("a", "b")
                        ),
                        "solo": GroupConfig(id="solo", exclusive=False, members=("c",)),
                    }
                ),
            ),
            memory=cfg.memory,
        )
        scheduler = Scheduler.fromConfig(cfg, states={"a": State.READY, "c": State.READY})
        [grant] = scheduler.onRequest(1, "c", 0.0)
        self.assertIsInstance(grant, Grant)
        settings = Scheduler.settingsFrom(cfg)
        scheduler.onReconfigure(restarted=["c"], **settings)  # type: ignore[arg-type]
        decisions = scheduler.onRequest(2, "b", 0.0)
        [swap] = [d for d in decisions if isinstance(d, StartSwap)]
        self.assertEqual(swap.evict, ("a",))
        self.assertEqual(swap.overlapRefusal, "c has a cmdStop")

    def test_reconfigureTurnsItOff(self) -> None:
        """
        A reload to C{swapOverlap: off} applies to the next swap.
        """
        scheduler = Scheduler.fromConfig(config(), states={"a": State.READY})
        scheduler.onReconfigure(**Scheduler.settingsFrom(config("off")))  # type: ignore[arg-type]
        [swap] = [d for d in scheduler.onRequest(1, "b", 0.0) if isinstance(d, StartSwap)]
        self.assertFalse(swap.overlap)


class SafetyPropertyTests(SynchronousTestCase):
    """
    Whatever the sizes, ports, stop commands and states: a swap the
    scheduler overlaps has its target fit beside everything holding
    memory, on a port of its own, with no exiting model's C{cmdStop}.
    """

    @settings(max_examples=300, deadline=None)
    @given(
        sizes=st.lists(
            st.integers(0, 5).map(lambda n: n or None), min_size=3, max_size=3
        ),
        budget=st.integers(1, 16),
        ports=st.lists(st.integers(5801, 5806), min_size=3, max_size=3),
        stopCommands=st.lists(st.integers(0, 3).map(lambda n: n == 0), min_size=3, max_size=3),
        states=st.lists(
            st.sampled_from([State.STOPPED, State.READY, State.STOPPING]), min_size=3, max_size=3
        ),
        target=st.sampled_from("abc"),
    )
    def test_overlapIsSafe(
        self,
        sizes: list[int | None],
        budget: int,
        ports: list[int],
        stopCommands: list[bool],
        states: list[State],
        target: str,
    ) -> None:
        models = {
            m: {
                "proxy": f"http://127.0.0.1:{port}",
                "memory": None if size is None else size * GiB,
                "cmdStop": "stop it" if stop else "",
            }
            for m, size, port, stop in zip("abc", sizes, ports, stopCommands)
        }
        cfg = Config(
            models=FrozenDict({m: ModelConfig(id=m, **kw) for m, kw in models.items()}),
            routing=RoutingConfig(
                groups=FrozenDict({"g": GroupConfig(id="g", swap=True, members=("a", "b", "c"))})
            ),
            memory=MemoryConfig(budget={POOL: budget * GiB}),
        )
        stateOf = dict(zip("abc", states))
        stateOf[target] = State.STOPPED
        scheduler = Scheduler.fromConfig(cfg, states=stateOf)
        swaps = [d for d in scheduler.onRequest(1, target, 0.0) if isinstance(d, StartSwap)]
        for swap in swaps:
            if not swap.overlap:
                continue
            holding = {m for m, s in stateOf.items() if s is not State.STOPPED} | set(swap.evict)
            holding.discard(target)
            self.assertTrue(swap.evict)
            total = sum(models[m]["memory"] for m in holding | {target})
            self.assertLessEqual(total, budget * GiB)
            port = models[target]["proxy"]
            self.assertNotIn(port, {models[m]["proxy"] for m in holding})
            exiting = set(swap.evict) | {m for m, s in stateOf.items() if s is State.STOPPING}
            self.assertFalse(any(models[m]["cmdStop"] for m in exiting - {target}))
