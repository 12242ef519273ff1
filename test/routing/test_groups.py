"""
Tests for L{llamaswap.routing.groups}: which running models a load evicts.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.errors import Problems
from llamaswap.config.matrixdsl import MatrixProgram, compileMatrix
from llamaswap.config.model import Config, FrozenDict, GroupConfig, ModelConfig, RoutingConfig
from llamaswap.routing.groups import (
    GroupEvictor,
    MatrixEvictor,
    evictionFor,
    evictorFor,
    profileEviction,
)


def groups(**definitions: Mapping[str, Any]) -> dict[str, GroupConfig]:
    """
    Group ID to L{GroupConfig} from keyword definitions.
    """
    return {
        name: GroupConfig(id=name, **{k: tuple(v) if k == "members" else v for k, v in d.items()})
        for name, d in definitions.items()
    }


def compileProgram(section: Mapping[str, Any], models: Collection[str]) -> MatrixProgram:
    """
    Compile a matrix section that must be valid.
    """
    problems = Problems()
    program = compileMatrix(section, models, problems, ("matrix",))
    assert program is not None, [str(p) for p in problems]
    return program


class GroupRuleTests(SynchronousTestCase):
    """
    L{evictionFor} applies the group rules of llama-swap, example by
    example.
    """

    def assertEvicts(
        self,
        config: Mapping[str, GroupConfig],
        target: str,
        running: Collection[str],
        expected: Collection[str],
    ) -> None:
        """
        Loading C{target} beside C{running} evicts exactly C{expected}.
        """
        self.assertEqual(evictionFor(target, running, config), frozenset(expected))

    def test_sameGroupSwap(self) -> None:
        """
        In a C{swap: true} group, loading a member evicts the running
        member.
        """
        config = groups(g={"members": ["a", "b"]})
        self.assertEvicts(config, "b", ["a"], ["a"])

    def test_sameGroupNoSwap(self) -> None:
        """
        Members of a C{swap: false} group run together, exclusive or not.
        """
        for exclusive in (True, False):
            config = groups(g={"swap": False, "exclusive": exclusive, "members": ["a", "b"]})
            self.assertEvicts(config, "b", ["a"], [])

    def test_crossGroupExclusive(self) -> None:
        """
        Loading from an exclusive group evicts another group's members.
        """
        config = groups(g1={"members": ["a"]}, g2={"members": ["b"]})
        self.assertEvicts(config, "b", ["a"], ["a"])

    def test_crossGroupNonExclusive(self) -> None:
        """
        Two non-exclusive groups load side by side.
        """
        config = groups(
            g1={"exclusive": False, "members": ["a"]},
            g2={"exclusive": False, "members": ["b"]},
        )
        self.assertEvicts(config, "b", ["a"], [])
        self.assertEvicts(config, "a", ["b"], [])

    def test_persistentSurvivesExclusive(self) -> None:
        """
        A persistent group's member survives an exclusive group's load.
        """
        config = groups(
            p={"persistent": True, "members": ["a"]},
            x={"members": ["b"]},
        )
        self.assertEvicts(config, "b", ["a"], [])

    def test_persistentDoesNotProtectInsideGroup(self) -> None:
        """
        C{persistent} only shields from other groups: a swapping
        persistent group still swaps its own members.
        """
        config = groups(p={"persistent": True, "members": ["a", "b"]})
        self.assertEvicts(config, "b", ["a"], ["a"])

    def test_exclusiveSurvivesNonExclusive(self) -> None:
        """
        Exclusivity is asymmetric: loading from a non-exclusive group
        keeps an exclusive group's member, while loading the exclusive one
        evicts the non-exclusive one.
        """
        config = groups(
            x={"members": ["a"]},
            n={"exclusive": False, "members": ["b"]},
        )
        self.assertEvicts(config, "b", ["a"], [])
        self.assertEvicts(config, "a", ["b"], ["b"])

    def test_mixed(self) -> None:
        """
        All rules at once: a load from an exclusive swapping group evicts
        its sibling and other non-persistent groups, keeping the
        persistent group and never listing itself.
        """
        config = groups(
            g={"members": ["t", "s"]},
            p={"persistent": True, "members": ["p1"]},
            n={"exclusive": False, "swap": False, "members": ["n1", "n2"]},
        )
        self.assertEvicts(config, "t", ["t", "s", "p1", "n1", "n2"], ["s", "n1", "n2"])

    def test_noGroups(self) -> None:
        """
        Without groups (or for models in none), one model runs at a time.
        """
        self.assertEvicts({}, "b", ["a", "c"], ["a", "c"])
        config = groups(p={"persistent": True, "members": ["a"]})
        self.assertEvicts(config, "b", ["a", "c"], ["c"])

    def test_groupEvictor(self) -> None:
        """
        L{GroupEvictor} applies the same rules and explains its decision.
        """
        evictor = GroupEvictor(groups(g={"members": ["a", "b"]}))
        self.assertEqual(evictor.evictionFor("b", ["a"]), frozenset({"a"}))
        self.assertEqual(evictor.explain("b", ["a"]), "group: model=b group=g evict=[a]")


class ProfileTests(SynchronousTestCase):
    """
    L{profileEviction}: llama-swap v1 C{profile/model} requests.
    """

    def test_membersKept(self) -> None:
        """
        The profile's members may run together; everything else stops.
        """
        self.assertEqual(
            profileEviction("a", ["b", "c", "d"], ["a", "b"]), frozenset({"c", "d"})
        )

    def test_targetNeverEvicted(self) -> None:
        """
        The target is never in its own eviction set.
        """
        self.assertEqual(profileEviction("a", ["a", "x"], ["b"]), frozenset({"x"}))


class MatrixEvictorTests(SynchronousTestCase):
    """
    L{MatrixEvictor} wraps the matrix solver.
    """

    def setUp(self) -> None:
        self.program = compileProgram(
            {"sets": {"pair": "a & b", "alone": "c"}}, ["a", "b", "c", "d"]
        )
        self.evictor = MatrixEvictor(self.program)

    def test_coexist(self) -> None:
        """
        A model sharing a set with the running one evicts nothing.
        """
        self.assertEqual(self.evictor.evictionFor("b", ["a"]), frozenset())

    def test_conflict(self) -> None:
        """
        A model of another set evicts the running ones.
        """
        self.assertEqual(self.evictor.evictionFor("c", ["a", "b"]), frozenset({"a", "b"}))

    def test_inNoSet(self) -> None:
        """
        A model in no set runs alone.
        """
        self.assertEqual(self.evictor.evictionFor("d", ["a"]), frozenset({"a"}))

    def test_explain(self) -> None:
        """
        The explanation is the matrix log line.
        """
        self.assertEqual(
            self.evictor.explain("c", ["a"]),
            'matrix: model=c set=alone dsl="c" evict=[a] target=[c] cost=1',
        )


class EvictorForTests(SynchronousTestCase):
    """
    L{evictorFor} picks the policy the configuration selects.
    """

    def test_groups(self) -> None:
        """
        C{use: group} gives a L{GroupEvictor} on the configured groups.
        """
        config = Config(routing=RoutingConfig(groups=FrozenDict(groups(g={"members": ["a"]}))))
        evictor = evictorFor(config)
        assert isinstance(evictor, GroupEvictor)
        self.assertEqual(list(evictor.groups), ["g"])

    def test_matrix(self) -> None:
        """
        C{use: matrix} gives a L{MatrixEvictor} on the compiled program.
        """
        program = compileProgram({"sets": {"s": "a"}}, ["a"])
        config = Config(
            models=FrozenDict({"a": ModelConfig(id="a")}),
            routing=RoutingConfig(use="matrix", matrix=program),
        )
        evictor = evictorFor(config)
        assert isinstance(evictor, MatrixEvictor)
        self.assertIs(evictor.program, program)
