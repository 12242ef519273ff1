# -*- test-case-name: test.routing.test_matrix -*-
"""
The matrix solver: which running models must stop so a model can start.

Given a compiled L{MatrixProgram}, the requested model and the running
models, L{solve} picks the cheapest combination (of any set) that holds the
requested model, where a combination costs the summed eviction cost of the
running models it leaves out.  Ties go to the earlier set, then to the
combination that comes first in enumeration order.

The Cartesian products behind the sets are never enumerated: expressions
are projected onto the bits of the requested and running models only (see
L{Projection}), which gives the same answer as full enumeration.
"""

from __future__ import annotations

from typing import Collection

from attrs import frozen

from ..config.goquote import goQuote
from ..config.matrixdsl import Covering, MatrixProgram, Projection

__all__ = ["MatrixSolution", "solve", "describe"]


@frozen
class MatrixSolution:
    """
    What the matrix router should do to serve one model.

    @ivar setName: the chosen set, or L{None} when no set holds the model
        (it then runs alone) or, on the already-running path, when no set
        holds everything running.
    @ivar evict: running models to stop, sorted.
    @ivar targetSet: the chosen combination, sorted: every model it allows,
        running or not.  When the model is already running, the running
        models; when no set holds it, just the model.
    @ivar cost: the summed eviction cost of C{evict} (0 when no set holds
        the model, as llama-swap reports it).
    @ivar model: the requested model.
    @ivar dsl: the chosen set's expression as written, or L{None}.
    @ivar running: the running models the decision was made against,
        sorted.
    """

    setName: str | None
    evict: tuple[str, ...]
    targetSet: tuple[str, ...]
    cost: int
    model: str = ""
    dsl: str | None = None
    running: tuple[str, ...] = ()


def solve(program: MatrixProgram, target: str, running: Collection[str]) -> MatrixSolution:
    """
    Decide what to evict so that C{target} can run.

      1. C{target} already running: evict nothing, whether or not the
         running models form a valid combination.
      2. Otherwise every combination holding C{target}, of every set that
         can hold it, costs the eviction costs of the running models it
         lacks; the cheapest wins, ties going to the earlier set and then
         to the earlier combination in enumeration order.
      3. No set holds C{target}: evict everything running.

    @param running: the models currently running (or committed to start).
    """
    current = tuple(sorted(set(running)))
    if target in current:
        holder = program.firstSetContaining(current)
        return MatrixSolution(
            setName=holder.name if holder is not None else None,
            evict=(),
            targetSet=current,
            cost=0,
            model=target,
            dsl=holder.dsl if holder is not None else None,
            running=current,
        )

    projection = Projection((target,) + current)
    targetBit = projection.bits[target]
    costs = [(projection.bits[m], program.evictCost(m)) for m in current]

    def costOf(mask: int) -> int:
        return sum(cost for bit, cost in costs if not mask & bit)

    # The cheapest cost of each set is decided by its maximal masks alone: a
    # combination holding more running models never costs more.
    bestCost: int | None = None
    bestSet = None
    for compiled in program.sets:
        if target not in compiled.models:
            continue
        for mask in projection.maxima(compiled.expression):
            if mask & targetBit:
                cost = costOf(mask)
                if bestCost is None or cost < bestCost:
                    bestCost, bestSet = cost, compiled

    if bestSet is None or bestCost is None:
        return MatrixSolution(
            setName=None,
            evict=current,
            targetSet=(target,),
            cost=0,
            model=target,
            dsl=None,
            running=current,
        )

    # Within the chosen set, the optimal masks are maximal; the first
    # combination reaching any of them is the one enumeration would pick.
    chosen: Covering | None = None
    for mask in projection.maxima(bestSet.expression):
        if mask & targetBit and costOf(mask) == bestCost:
            found = projection.firstCovering(bestSet.expression, mask)
            if found is not None and (chosen is None or found.rank < chosen.rank):
                chosen = found
    assert chosen is not None
    return MatrixSolution(
        setName=bestSet.name,
        evict=tuple(m for m in current if not chosen.mask & projection.bits[m]),
        targetSet=chosen.models(),
        cost=bestCost,
        model=target,
        dsl=bestSet.dsl,
        running=current,
    )


def describe(solution: MatrixSolution) -> str:
    """
    The log line llama-swap writes when a swap starts::

        matrix: model=M set=S dsl="..." evict=[a b] target=[M b] cost=N
        matrix: model=M starting (no models running)
        matrix: model=M already running in set=S dsl="..."

    llama-swap logs the last form (nothing to evict, other models running)
    at debug level and the others at info level.
    """
    setName = solution.setName or ""
    dsl = goQuote(solution.dsl or "")
    if solution.evict:
        return (
            f"matrix: model={solution.model} set={setName} dsl={dsl} "
            f"evict=[{' '.join(solution.evict)}] "
            f"target=[{' '.join(solution.targetSet)}] cost={solution.cost}"
        )
    if not solution.running:
        return f"matrix: model={solution.model} starting (no models running)"
    return f"matrix: model={solution.model} already running in set={setName} dsl={dsl}"
