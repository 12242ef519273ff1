# -*- test-case-name: test.routing.test_groups -*-
"""
Which running models must stop so that another can start.

Three pure policies share the L{Evictor} protocol:

 - L{GroupEvictor}: the group rules (L{evictionFor}).  Inside the target's
   group, C{swap} decides; across groups, the target group's C{exclusive}
   and the other group's C{persistent} decide.  Exclusivity is asymmetric
   on purpose (llama-swap's backward-compatible rule): loading from a
   non-exclusive group never evicts another group, even an exclusive one.
 - L{MatrixEvictor}: the matrix solver (L{llamaswap.routing.matrix.solve}).
 - L{profileEviction}: a llama-swap v1 C{profile/model} request; the
   profile's members may run together, everything else stops.

The scheduler asks for the eviction set of every placement; none of this
reads the clock or any process state (the running set is an argument).
"""

from __future__ import annotations

from typing import Collection, Mapping, Protocol

from ..config.matrixdsl import MatrixProgram
from ..config.model import Config, GroupConfig
from .matrix import describe, solve

__all__ = [
    "Evictor",
    "GroupEvictor",
    "MatrixEvictor",
    "evictionFor",
    "evictorFor",
    "profileEviction",
]


class Evictor(Protocol):
    """
    A policy deciding which running models must stop for a target to run.
    """

    def evictionFor(self, target: str, running: Collection[str]) -> frozenset[str]:
        """
        The models of C{running} to stop so that C{target} can run; never
        contains C{target}.
        """

    def explain(self, target: str, running: Collection[str]) -> str:
        """
        A one-line account of the decision, for the log of a swap.
        """


def _groupOf(model: str, groups: Mapping[str, GroupConfig]) -> GroupConfig | None:
    """
    The group holding C{model}, or L{None}.
    """
    for group in groups.values():
        if model in group.members:
            return group
    return None


#: How a model in no group behaves: alone in an exclusive, swapping,
#: non-persistent group of its own (as every model is when no groups are
#: configured: one model at a time).
_ALONE = GroupConfig(id="")


def evictionFor(
    target: str, running: Collection[str], groupsConfig: Mapping[str, GroupConfig]
) -> frozenset[str]:
    """
    The group rules: for the target in group G and each other running
    model in group H,

      - H is G: evicted iff G swaps (members of a C{swap: false} group run
        together);
      - H is not G: evicted iff G is exclusive and H is not persistent
        (a non-exclusive G never evicts other groups, exclusive or not;
        C{persistent} only shields H from other groups).

    A model in no group counts as alone in an exclusive, swapping,
    non-persistent group.

    @param groupsConfig: group ID to group.
    """
    mine = _groupOf(target, groupsConfig)
    mineRules = mine if mine is not None else _ALONE
    evict = set()
    for other in running:
        if other == target:
            continue
        theirs = _groupOf(other, groupsConfig)
        if mine is not None and theirs is mine:
            if mine.swap:
                evict.add(other)
        elif mineRules.exclusive and not (theirs is not None and theirs.persistent):
            evict.add(other)
    return frozenset(evict)


def profileEviction(
    target: str, running: Collection[str], members: Collection[str]
) -> frozenset[str]:
    """
    The eviction for a llama-swap v1 C{profile/model} request: the
    profile's members may run together; every other running model stops.
    """
    keep = set(members) | {target}
    return frozenset(m for m in running if m not in keep)


class GroupEvictor:
    """
    L{Evictor} applying the group rules of L{evictionFor}.
    """

    def __init__(self, groups: Mapping[str, GroupConfig]) -> None:
        """
        @param groups: group ID to group (C{(default)} included).
        """
        self.groups = groups

    def evictionFor(self, target: str, running: Collection[str]) -> frozenset[str]:
        """
        See L{evictionFor}.
        """
        return evictionFor(target, running, self.groups)

    def explain(self, target: str, running: Collection[str]) -> str:
        """
        C{group: model=M group=G evict=[...]}.
        """
        evict = " ".join(sorted(self.evictionFor(target, running)))
        group = _groupOf(target, self.groups)
        name = group.id if group is not None else "(none)"
        return f"group: model={target} group={name} evict=[{evict}]"


class MatrixEvictor:
    """
    L{Evictor} asking the matrix solver.
    """

    def __init__(self, program: MatrixProgram) -> None:
        """
        @param program: the compiled matrix.
        """
        self.program = program

    def evictionFor(self, target: str, running: Collection[str]) -> frozenset[str]:
        """
        The running models the cheapest combination holding C{target}
        leaves out (everything when no set holds it).
        """
        return frozenset(solve(self.program, target, running).evict) - {target}

    def explain(self, target: str, running: Collection[str]) -> str:
        """
        llama-swap's matrix log line (L{llamaswap.routing.matrix.describe}).
        """
        return describe(solve(self.program, target, running))


def evictorFor(config: Config) -> Evictor:
    """
    The policy C{config.routing} selects: the matrix when C{use} is
    C{matrix} and a program is compiled, the groups otherwise.
    """
    routing = config.routing
    if routing.use == "matrix" and routing.matrix is not None:
        return MatrixEvictor(routing.matrix)
    return GroupEvictor(routing.groups)
