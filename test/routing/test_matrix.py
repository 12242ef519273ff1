"""
Tests for L{llamaswap.routing.matrix}: the matrix solver.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Collection, Iterator, Mapping

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.errors import Problems
from llamaswap.config.matrixdsl import (
    Expression,
    Included,
    MatrixProgram,
    Model,
    Or,
    Projection,
    compileMatrix,
)
from llamaswap.routing.matrix import MatrixSolution, describe, solve


def compileProgram(section: Mapping[str, Any], models: Collection[str]) -> MatrixProgram:
    """
    Compile a matrix section that must be valid.
    """
    problems = Problems()
    program = compileMatrix(section, models, problems, ("matrix",))
    assert program is not None, [str(p) for p in problems]
    return program


def identity(sets: Mapping[str, str], models: Collection[str], **extra: Any) -> MatrixProgram:
    """
    Compile C{sets} over C{models} with no vars.
    """
    return compileProgram(dict(extra, sets=dict(sets)), models)


class ConfigScenarioTests(SynchronousTestCase):
    """
    The scenarios of llama-swap's matrix configuration tests, solved.
    """

    def test_basic(self) -> None:
        """
        A model fitting beside the running one evicts nothing; a model of
        another set evicts what is running.
        """
        program = compileProgram(
            {
                "vars": {
                    "g": "gemma",
                    "q": "qwen",
                    "m": "mistral",
                    "v": "voxtral",
                    "L": "llama70B",
                },
                "evict_costs": {"L": 30, "v": 50},
                "sets": {"standard": "(g | q | m) & v", "full": "L"},
            },
            ["gemma", "qwen", "mistral", "voxtral", "llama70B"],
        )
        result = solve(program, "gemma", ["voxtral"])
        self.assertEqual(result.setName, "standard")
        self.assertEqual(result.targetSet, ("gemma", "voxtral"))
        self.assertEqual(result.evict, ())
        self.assertEqual(result.cost, 0)

        result = solve(program, "llama70B", ["voxtral"])
        self.assertEqual(result.setName, "full")
        self.assertEqual(result.targetSet, ("llama70B",))
        self.assertEqual(result.evict, ("voxtral",))
        self.assertEqual(result.cost, 50)

    def test_references(self) -> None:
        """
        A set built from references keeps the referenced models running.
        """
        program = compileProgram(
            {
                "vars": {
                    "g": "gemma",
                    "q": "qwen",
                    "m": "mistral",
                    "v": "voxtral",
                    "e": "reranker",
                },
                "sets": {"llms": "g | q | m", "with_tts": "+llms & v", "mega": "+with_tts & e"},
            },
            ["gemma", "qwen", "mistral", "voxtral", "reranker"],
        )
        result = solve(program, "reranker", ["gemma", "voxtral"])
        self.assertEqual(result.setName, "mega")
        self.assertEqual(result.targetSet, ("gemma", "reranker", "voxtral"))
        self.assertEqual(result.evict, ())

    def test_directModelNames(self) -> None:
        """
        Sets written with model IDs only work like vars.
        """
        program = identity({"combo": "gemma & voxtral"}, ["gemma", "qwen", "voxtral"])
        self.assertEqual(solve(program, "gemma", ["voxtral"]).targetSet, ("gemma", "voxtral"))

    def test_mixedNames(self) -> None:
        """
        Vars, model IDs and references mix.
        """
        program = compileProgram(
            {"vars": {"g": "gemma"}, "sets": {"base": "g | qwen", "combo": "+base & voxtral"}},
            ["gemma", "qwen", "voxtral"],
        )
        result = solve(program, "qwen", ["voxtral"])
        self.assertEqual(result.setName, "combo")
        self.assertEqual(result.targetSet, ("qwen", "voxtral"))

    def test_deduplicates(self) -> None:
        """
        C{g & gemma} is one model once resolved.
        """
        program = compileProgram(
            {"vars": {"g": "gemma"}, "sets": {"combo": "g & gemma"}}, ["gemma", "qwen", "voxtral"]
        )
        self.assertEqual(solve(program, "gemma", []).targetSet, ("gemma",))

    def test_varPrecedence(self) -> None:
        """
        A var named like a model ID means the var's model.
        """
        program = compileProgram(
            {"vars": {"qwen": "gemma"}, "sets": {"combo": "qwen"}}, ["gemma", "qwen", "voxtral"]
        )
        self.assertEqual(solve(program, "gemma", []).targetSet, ("gemma",))
        result = solve(program, "qwen", [])
        self.assertIsNone(result.setName)
        self.assertEqual(result.targetSet, ("qwen",))


def productDefinition(dimensions: int, choices: int) -> tuple[str, list[str]]:
    """
    A C{target & (m-0-0 | ...) & ...} expression and its models.
    """
    groups = []
    models = ["target"]
    for dimension in range(dimensions):
        alternatives = [f"model-{dimension}-{choice}" for choice in range(choices)]
        models.extend(alternatives)
        groups.append("(" + " | ".join(alternatives) + ")")
    return "target & " + " & ".join(groups), models


class SolveTests(SynchronousTestCase):
    """
    Tests for L{solve}.
    """

    def test_overlappingReferences(self) -> None:
        """
        A model reached both directly and through a reference counts once.
        """
        program = identity(
            {"base": "a & b", "extended": "target & +base & b"}, ["target", "a", "b"]
        )
        result = solve(program, "target", ["a", "b"])
        self.assertEqual(result.evict, ())
        self.assertEqual(result.targetSet, ("a", "b", "target"))
        self.assertEqual(result.setName, "extended")

    def test_noExpansionLimit(self) -> None:
        """
        A 6-dimension product of 10 choices each (a million combinations)
        is solved without enumerating it.
        """
        dsl, models = productDefinition(6, 10)
        program = identity({"large": dsl}, models + ["outside"])
        running = [f"model-{d}-9" for d in range(6)] + ["outside"]
        result = solve(program, "target", running)
        self.assertEqual(result.evict, ("outside",))
        self.assertEqual(result.setName, "large")
        self.assertEqual(len(result.targetSet), 7)
        self.assertEqual(result.cost, 1)

    def test_hugeProduct(self) -> None:
        """
        Even 10**40 combinations, with a running model deep in every
        dimension, are solved quickly; the first combination wins among
        the equally cheap ones.
        """
        dsl, models = productDefinition(40, 10)
        program = identity({"huge": dsl}, models)
        running = [f"model-{d}-7" for d in range(0, 40, 2)]
        result = solve(program, "target", running)
        self.assertEqual(result.evict, ())
        expected = ["target"] + [f"model-{d}-{7 if d % 2 == 0 else 0}" for d in range(40)]
        self.assertEqual(result.targetSet, tuple(sorted(expected)))

    def test_moreThan64RelevantModels(self) -> None:
        """
        Any number of relevant models is supported.
        """
        models = ["target"] + [f"model-{i}" for i in range(70)]
        program = identity({"wide": " & ".join(models)}, models + ["outside"])
        result = solve(program, "target", models[1:] + ["outside"])
        self.assertEqual(result.evict, ("outside",))
        self.assertEqual(len(result.targetSet), 71)

    def test_dominatedProjection(self) -> None:
        """
        Of two choices, the one keeping more running models wins.
        """
        program = identity({"preferred": "target & (a | (a & b))"}, ["target", "a", "b"])
        result = solve(program, "target", ["a", "b"])
        self.assertEqual(result.evict, ())
        self.assertEqual(result.targetSet, ("a", "b", "target"))

    def test_targetInNoSet(self) -> None:
        """
        A model in no set runs alone: everything running is evicted.
        """
        program = identity({"known": "a & b"}, ["a", "b", "missing"])
        result = solve(program, "missing", ["b", "a"])
        self.assertEqual(result.evict, ("a", "b"))
        self.assertEqual(result.targetSet, ("missing",))
        self.assertIsNone(result.setName)
        self.assertIsNone(result.dsl)

    def test_equalCostTie(self) -> None:
        """
        Of two sets evicting at equal cost, the earlier-defined one wins.
        """
        program = identity({"first": "a & b", "second": "a & c"}, "abc")
        result = solve(program, "a", ["b", "c"])
        self.assertEqual(result.setName, "first")
        self.assertEqual(result.evict, ("c",))
        program = identity({"first": "a & c", "second": "a & b"}, "abc")
        self.assertEqual(solve(program, "a", ["b", "c"]).evict, ("b",))

    def test_tieFollowsTopologicalOrder(self) -> None:
        """
        A referenced set counts as defined before the set referencing it.
        """
        program = identity({"user": "+base | a & c", "base": "a & b"}, "abc")
        result = solve(program, "a", ["b", "c"])
        self.assertEqual(result.setName, "base")
        self.assertEqual(result.evict, ("c",))

    def test_evictCostsSteer(self) -> None:
        """
        Eviction costs decide between sets: the expensive model is kept.
        """
        program = identity(
            {"first": "a & c", "second": "a & b"}, "abc", evict_costs={"b": 10, "c": 1}
        )
        result = solve(program, "a", ["b", "c"])
        self.assertEqual(result.setName, "second")
        self.assertEqual(result.evict, ("c",))
        self.assertEqual(result.cost, 1)

    def test_tieWithinSetFollowsEnumeration(self) -> None:
        """
        Among equally cheap combinations of one set, the first in
        enumeration order wins, even when a later combination of the same
        sub-expression holds more running models.
        """
        program = identity({"s": "(r3 | r2 | r1 & r3) & r1 & t"}, ["r1", "r2", "r3", "t"])
        self.assertEqual(program.expand("s"), [("r1", "r3", "t"), ("r1", "r2", "t")])
        result = solve(program, "t", ["r1", "r2", "r3"])
        self.assertEqual(result.evict, ("r2",))
        self.assertEqual(result.targetSet, ("r1", "r3", "t"))

    def test_tieAcrossProductChildren(self) -> None:
        """
        In a product, the left child takes its earliest choice that the
        remaining children can complete, whichever of their choices that
        needs.
        """
        program = identity({"s": "(x & p | y & q) & (x | y) & t"}, "pqtxy")
        result = solve(program, "t", ["x", "y"])
        self.assertEqual(result.evict, ())
        self.assertEqual(result.targetSet, ("p", "t", "x", "y"))

    def test_firstCombinationForIdleModels(self) -> None:
        """
        With nothing running, the first combination holding the model is
        the target set.
        """
        program = identity({"s": "(a | b) & (c | t)"}, "abct")
        result = solve(program, "t", [])
        self.assertEqual(result.targetSet, ("a", "t"))
        self.assertEqual(result.evict, ())

    def test_alreadyRunning(self) -> None:
        """
        A running model evicts nothing, even if what runs fits no set; the
        set named is the first holding everything running.
        """
        program = identity({"x": "a | b", "y": "a & b", "z": "c"}, "abc")
        result = solve(program, "a", ["b", "a"])
        self.assertEqual(result, MatrixSolution("y", (), ("a", "b"), 0, "a", "a & b", ("a", "b")))
        result = solve(program, "a", ["a", "c"])
        self.assertEqual(result.evict, ())
        self.assertIsNone(result.setName)
        self.assertEqual(result.targetSet, ("a", "c"))

    def test_runningDuplicates(self) -> None:
        """
        A model listed twice as running is evicted once, and costs once.
        """
        program = identity({"s": "a", "t": "b"}, "ab")
        result = solve(program, "a", ["b", "b"])
        self.assertEqual(result.evict, ("b",))
        self.assertEqual(result.cost, 1)


class DescribeTests(SynchronousTestCase):
    """
    Tests for L{describe}.
    """

    def setUp(self) -> None:
        self.program = identity({"standard": "(g | q) & v", "full": "L"}, ["g", "q", "v", "L"])

    def test_evicting(self) -> None:
        """
        A swap with evictions names the set, its expression, what goes,
        the target combination and the cost.
        """
        self.assertEqual(
            describe(solve(self.program, "L", ["v", "g"])),
            'matrix: model=L set=full dsl="L" evict=[g v] target=[L] cost=2',
        )

    def test_noSet(self) -> None:
        """
        A model in no set is logged with an empty set and expression.
        """
        program = identity({"s": "a"}, "ab")
        self.assertEqual(
            describe(solve(program, "b", ["a"])),
            'matrix: model=b set= dsl="" evict=[a] target=[b] cost=0',
        )

    def test_nothingRunning(self) -> None:
        """
        A start with nothing running says so.
        """
        self.assertEqual(
            describe(solve(self.program, "g", [])),
            "matrix: model=g starting (no models running)",
        )

    def test_noEviction(self) -> None:
        """
        A start beside running models names the set.
        """
        self.assertEqual(
            describe(solve(self.program, "g", ["v"])),
            'matrix: model=g already running in set=standard dsl="(g | q) & v"',
        )


# Brute force, for the property test.

POOL = ["a", "b", "c", "d"]
MODELS = POOL + ["e"]


#: Property tests skip a drawn matrix with a set of more combinations than
#: this: enumerating them the slow way (and comparing them pairwise) would
#: run for hours on an unlucky draw.
ENUMERATION_LIMIT = 300


def combinationCount(expression: Expression) -> int:
    """
    How many combinations L{enumerateAll} yields for C{expression}, without
    enumerating them.
    """
    if isinstance(expression, Model):
        return 1
    if isinstance(expression, Included):
        return combinationCount(expression.expression)
    counts = [combinationCount(c) for c in expression.children]
    if isinstance(expression, Or):
        return sum(counts)
    return math.prod(counts)


def enumerable(program: MatrixProgram) -> bool:
    """
    Whether every set of C{program} is small enough to enumerate.
    """
    return all(combinationCount(s.expression) <= ENUMERATION_LIMIT for s in program.sets)


def enumerateAll(expression: Expression) -> Iterator[frozenset[str]]:
    """
    Every combination of C{expression}, in enumeration order, the slow way.
    """
    if isinstance(expression, Model):
        yield frozenset([expression.modelID])
    elif isinstance(expression, Included):
        yield from enumerateAll(expression.expression)
    elif isinstance(expression, Or):
        for child in expression.children:
            yield from enumerateAll(child)
    else:
        for parts in itertools.product(*[list(enumerateAll(c)) for c in expression.children]):
            yield frozenset().union(*parts)


def bruteSolve(program: MatrixProgram, target: str, running: Collection[str]) -> MatrixSolution:
    """
    The solver's specification, by full enumeration.
    """
    current = tuple(sorted(set(running)))
    if target in current:
        for compiled in program.sets:
            if any(c >= set(current) for c in enumerateAll(compiled.expression)):
                return MatrixSolution(compiled.name, (), current, 0, target, compiled.dsl, current)
        return MatrixSolution(None, (), current, 0, target, None, current)
    best: tuple[tuple[int, int, int], Any, frozenset[str]] | None = None
    for index, compiled in enumerate(program.sets):
        for position, combination in enumerate(enumerateAll(compiled.expression)):
            if target not in combination:
                continue
            cost = sum(program.evictCost(m) for m in current if m not in combination)
            key = (cost, index, position)
            if best is None or key < best[0]:
                best = (key, compiled, combination)
    if best is None:
        return MatrixSolution(None, current, (target,), 0, target, None, current)
    (cost, _, _), compiled, combination = best
    return MatrixSolution(
        compiled.name,
        tuple(m for m in current if m not in combination),
        tuple(sorted(combination)),
        cost,
        target,
        compiled.dsl,
        current,
    )


def expressions(setCount: int) -> st.SearchStrategy[str]:
    """
    DSL text over L{POOL}, possibly referencing the first C{setCount} sets.
    """
    leaves = [st.sampled_from(POOL)]
    if setCount:
        leaves.append(st.sampled_from([f"+s{i}" for i in range(setCount)]))
    leaf = st.one_of(*leaves)

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        group = st.lists(children, min_size=2, max_size=3)
        return st.one_of(
            group.map(lambda items: "(" + " | ".join(items) + ")"),
            group.map(lambda items: "&".join(items)),
            group.map(lambda items: " | ".join(items)),
        )

    return st.recursive(leaf, extend, max_leaves=8)


@st.composite
def matrices(draw: st.DrawFn) -> dict[str, Any]:
    """
    A valid matrix section: sets reference earlier ones only, but are
    written in a shuffled order.
    """
    count = draw(st.integers(1, 4))
    sets = {f"s{i}": draw(expressions(i)) for i in range(count)}
    names = draw(st.permutations(list(sets)))
    costs = draw(st.dictionaries(st.sampled_from(MODELS), st.integers(1, 3), max_size=2))
    return {"sets": {name: sets[name] for name in names}, "evict_costs": costs}


class SolvePropertyTests(SynchronousTestCase):
    """
    L{solve} agrees with full enumeration.
    """

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        section=matrices(),
        target=st.sampled_from(MODELS),
        running=st.lists(st.sampled_from(MODELS), max_size=6),
    )
    @example(
        section={"sets": {"s": "(c | b | a & c) & a & d"}},
        target="d",
        running=["a", "b", "c"],
    )
    def test_matchesBruteForce(
        self, section: dict[str, Any], target: str, running: list[str]
    ) -> None:
        """
        The projected solver picks the same set, evictions, combination
        and cost as enumerating every combination.
        """
        program = compileProgram(section, MODELS)
        assume(enumerable(program))
        self.assertEqual(solve(program, target, running), bruteSolve(program, target, running))

    @settings(max_examples=100, deadline=None)
    @given(section=matrices(), models=st.lists(st.sampled_from(MODELS), max_size=4))
    def test_canContainAllMatchesBruteForce(
        self, section: dict[str, Any], models: list[str]
    ) -> None:
        """
        L{MatrixProgram.canContainAll} agrees with enumeration, and sets
        come after the sets they reference.
        """
        program = compileProgram(section, MODELS)
        assume(enumerable(program))
        expected = not models or any(
            c >= set(models) for s in program.sets for c in enumerateAll(s.expression)
        )
        self.assertEqual(program.canContainAll(models), expected)
        seen: set[str] = set()
        for compiled in program.sets:
            for reference in _references(compiled.expression):
                self.assertIn(reference, seen)
            seen.add(compiled.name)


class ProjectionPropertyTests(SynchronousTestCase):
    """
    L{Projection} agrees with full enumeration.
    """

    @settings(max_examples=150, deadline=None)
    @given(
        section=matrices(),
        relevant=st.lists(st.sampled_from(MODELS), max_size=5, unique=True),
        data=st.data(),
    )
    def test_maximaAndFirstCovering(
        self, section: dict[str, Any], relevant: list[str], data: st.DataObject
    ) -> None:
        """
        L{Projection.maxima} gives exactly the maximal projected masks, and
        L{Projection.firstCovering} the first combination covering a mask.
        """
        program = compileProgram(section, MODELS)
        assume(enumerable(program))
        compiled = data.draw(st.sampled_from(program.sets))
        required = data.draw(st.lists(st.sampled_from(relevant), unique=True)) if relevant else []
        projection = Projection(relevant)
        masks = [projection.maskOf(c) for c in enumerateAll(compiled.expression)]
        maximal = {m for m in masks if not any(m != o and m & ~o == 0 for o in masks)}
        found = projection.maxima(compiled.expression)
        self.assertEqual(sorted(found), sorted(maximal))

        requiredMask = projection.maskOf(required)
        expected = next(
            (
                c
                for c in enumerateAll(compiled.expression)
                if requiredMask & ~projection.maskOf(c) == 0
            ),
            None,
        )
        covering = projection.firstCovering(compiled.expression, requiredMask)
        if expected is None:
            self.assertIsNone(covering)
        else:
            assert covering is not None
            self.assertEqual(covering.models(), tuple(sorted(expected)))
            self.assertEqual(covering.mask, projection.maskOf(expected))


def _references(expression: Expression) -> Iterator[str]:
    if isinstance(expression, Included):
        yield expression.setName
    elif not isinstance(expression, Model):
        for child in expression.children:
            yield from _references(child)
