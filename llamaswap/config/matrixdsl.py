# -*- test-case-name: test.config.test_matrixdsl -*-
"""
The matrix router's set language: tokenizer, parser and compiler.

A matrix section names sets of models that may run together::

    matrix:
      vars: {g: gemma, v: voxtral}
      evict_costs: {v: 50}
      sets:
        standard: "(g | q) & v"
        big: "+standard & L"

Each set is an expression over model identifiers: C{|} (either side, lowest
precedence), C{&} (both sides), C{+name} (another set's expression) and
parentheses.  L{compileMatrix} validates a raw C{matrix} mapping the way
llama-swap does and turns it into an immutable L{MatrixProgram}; the solver
in L{llamaswap.routing.matrix} answers "what must stop so this model can
start" against it.

Expansions are never materialised by the program itself: the
L{Projection} helper evaluates an expression against only the handful of
models that matter to one question (the requested model and the running
ones), so a set describing billions of combinations costs no more than a
small one.
"""

from __future__ import annotations

import enum
import itertools
import re
from typing import (
    Any,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Union,
)

from attrs import field, frozen

from .errors import KeyPath, Problems
from .goquote import goQuote, goQuoteRune

__all__ = [
    "TokenKind",
    "Token",
    "DSLSyntaxError",
    "Identifier",
    "Reference",
    "And",
    "Or",
    "Syntax",
    "Expression",
    "Model",
    "Included",
    "CompiledSet",
    "MatrixProgram",
    "Projection",
    "Covering",
    "tokenize",
    "parse",
    "compileMatrix",
    "goQuote",
]


# ---------------------------------------------------------------------------
# Tokens


class TokenKind(enum.Enum):
    """
    The kinds of lexical token in a set expression.
    """

    IDENT = "identifier"
    AND = "&"
    OR = "|"
    LPAREN = "("
    RPAREN = ")"
    REF = "+"
    EOF = "end of input"


@frozen
class Token:
    """
    One lexical token.

    @ivar kind: what sort of token this is.
    @ivar value: the text: the identifier, the set name of a reference
        (without its C{+}), the operator character, or C{""} at the end.
    @ivar position: the 0-based character index where it starts.
    """

    kind: TokenKind
    value: str
    position: int = 0


class DSLSyntaxError(ValueError):
    """
    A set expression could not be tokenized or parsed.

    The message is llama-swap's own wording, without the set name;
    L{compileMatrix} adds the C{matrix: set "name": } prefix.
    """


def _isIdentChar(char: str) -> bool:
    """
    Whether C{char} may appear in an identifier or set name: a letter, a
    decimal digit, C{_}, C{-} or C{.} (so no C{/} or C{:}; model IDs with
    those need a var).
    """
    return char.isalpha() or char.isdecimal() or char in "_-."


_OPERATORS = {
    "&": TokenKind.AND,
    "|": TokenKind.OR,
    "(": TokenKind.LPAREN,
    ")": TokenKind.RPAREN,
}


def tokenize(text: str) -> list[Token]:
    """
    Split a set expression into tokens, ending with an L{TokenKind.EOF}.

    @raise DSLSyntaxError: on a character that cannot start a token, or a
        C{+} not followed by a set name.
    """
    tokens: list[Token] = []
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char.isspace():
            index += 1
            continue
        kind = _OPERATORS.get(char)
        if kind is not None:
            tokens.append(Token(kind, char, index))
            index += 1
            continue
        if char == "+":
            start = index + 1
            index = start
            while index < length and _isIdentChar(text[index]):
                index += 1
            if index == start:
                raise DSLSyntaxError(f"expected set name after '+' at position {start}")
            tokens.append(Token(TokenKind.REF, text[start:index], start - 1))
            continue
        if not _isIdentChar(char):
            raise DSLSyntaxError(f"unexpected character {goQuoteRune(char)} at position {index}")
        start = index
        while index < length and _isIdentChar(text[index]):
            index += 1
        tokens.append(Token(TokenKind.IDENT, text[start:index], start))
    tokens.append(Token(TokenKind.EOF, "", length))
    return tokens


# ---------------------------------------------------------------------------
# Syntax trees


@frozen
class Identifier:
    """
    A var or model ID as written, before resolution.
    """

    name: str


@frozen
class Reference:
    """
    A C{+name} reference to another set, before linking.
    """

    name: str


@frozen
class Model:
    """
    A resolved leaf: one real model ID.
    """

    modelID: str


@frozen
class Included:
    """
    A linked C{+name} reference: the named set's compiled expression.
    """

    setName: str
    expression: Expression


@frozen
class And:
    """
    Every child at once: each combination unions one choice per child.
    """

    children: tuple[Any, ...]


@frozen
class Or:
    """
    Any one child: the union of the children's families.
    """

    children: tuple[Any, ...]


Syntax = Union[Identifier, Reference, And, Or]
Expression = Union[Model, Included, And, Or]


class _Parser:
    """
    Recursive descent over a token list::

        expr := and ('|' and)*
        and  := atom ('&' atom)*
        atom := IDENT | '+' NAME | '(' expr ')'
    """

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def peek(self) -> Token:
        """
        The next token, not consumed.
        """
        return self._tokens[self._index]

    def next(self) -> Token:
        """
        Consume and return the next token; the end token is never consumed.
        """
        token = self._tokens[self._index]
        if token.kind is not TokenKind.EOF:
            self._index += 1
        return token

    def _chain(
        self,
        operand: Callable[[], Syntax],
        operator: TokenKind,
        node: Callable[[tuple[Syntax, ...]], Syntax],
    ) -> Syntax:
        """
        C{operand (operator operand)*}: the operand alone, or a C{node} of
        two or more.
        """
        children = [operand()]
        while self.peek().kind is operator:
            self.next()
            children.append(operand())
        return children[0] if len(children) == 1 else node(tuple(children))

    def parseOr(self) -> Syntax:
        """
        C{expr := and ('|' and)*}
        """
        return self._chain(self.parseAnd, TokenKind.OR, Or)

    def parseAnd(self) -> Syntax:
        """
        C{and := atom ('&' atom)*}
        """
        return self._chain(self.parseAtom, TokenKind.AND, And)

    def parseAtom(self) -> Syntax:
        """
        C{atom := IDENT | '+' NAME | '(' expr ')'}
        """
        token = self.next()
        if token.kind is TokenKind.IDENT:
            return Identifier(token.value)
        if token.kind is TokenKind.REF:
            return Reference(token.value)
        if token.kind is TokenKind.LPAREN:
            inner = self.parseOr()
            if self.next().kind is not TokenKind.RPAREN:
                raise DSLSyntaxError("parse: missing closing parenthesis")
            return inner
        raise DSLSyntaxError(f"parse: unexpected token {goQuote(token.value)}")


def parse(text: str) -> Syntax:
    """
    Parse one set expression.

    C{&} binds tighter than C{|}; an operator with a single operand is not
    wrapped (C{parse("a") == Identifier("a")}).

    @raise DSLSyntaxError: with llama-swap's message (C{empty DSL
        expression}, C{tokenize: unexpected character '@' at position 2},
        C{parse: missing closing parenthesis}, C{parse: unexpected token
        ")"}, ...).
    """
    text = text.strip()
    if not text:
        raise DSLSyntaxError("empty DSL expression")
    try:
        tokens = tokenize(text)
    except DSLSyntaxError as e:
        raise DSLSyntaxError(f"tokenize: {e}") from None
    parser = _Parser(tokens)
    root = parser.parseOr()
    trailing = parser.peek()
    if trailing.kind is not TokenKind.EOF:
        raise DSLSyntaxError(f"parse: unexpected token {goQuote(trailing.value)} after expression")
    return root


def _walk(node: Syntax) -> Iterator[Syntax]:
    """
    Every node of a syntax tree, parents before children, left to right.
    """
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, (And, Or)):
            stack.extend(reversed(current.children))


# ---------------------------------------------------------------------------
# Compiled program


@frozen
class CompiledSet:
    """
    One named set, resolved and linked.

    @ivar name: the key under C{sets}.
    @ivar dsl: the expression as written.
    @ivar expression: the compiled tree (model IDs, linked references).
    @ivar models: every model ID the expression can mention, for skipping
        sets that cannot contain a model without evaluating them.
    """

    name: str
    dsl: str
    expression: Expression = field(repr=False)
    models: frozenset[str] = field(repr=False)


def _compiledModels(expression: Expression) -> frozenset[str]:
    """
    Every model ID reachable from C{expression}.
    """
    if isinstance(expression, Model):
        return frozenset([expression.modelID])
    if isinstance(expression, Included):
        return _compiledModels(expression.expression)
    found: set[str] = set()
    for child in expression.children:
        found |= _compiledModels(child)
    return frozenset(found)


@frozen
class MatrixProgram:
    """
    A validated, compiled C{matrix} section.

    @ivar sets: the sets in tie-break order: definition order, except that
        a referenced set comes before the first set referencing it
        (depth-first topological order).
    @ivar vars: var name to model ID, as configured.
    @ivar resolvedEvictCosts: model ID to eviction cost, var keys replaced
        by their model IDs; unlisted models cost 1.
    """

    sets: tuple[CompiledSet, ...]
    vars: Mapping[str, str] = field(factory=dict)
    resolvedEvictCosts: Mapping[str, int] = field(factory=dict)

    def getSet(self, name: str) -> CompiledSet:
        """
        The set called C{name}.

        @raise KeyError: if there is none.
        """
        for compiled in self.sets:
            if compiled.name == name:
                return compiled
        raise KeyError(name)

    def evictCost(self, modelID: str) -> int:
        """
        What stopping C{modelID} costs the solver (default 1).
        """
        return self.resolvedEvictCosts.get(modelID, 1)

    def expand(self, setName: str) -> list[tuple[str, ...]]:
        """
        Every concrete combination of set C{setName}, in enumeration order.

        Each combination is sorted and free of repeats; a combination that
        repeats an earlier one is left out.  This materialises the whole
        Cartesian product: it is for tests and documentation, not routing.

        @raise KeyError: if there is no such set.
        """
        seen: set[tuple[str, ...]] = set()
        result = []
        for combination in _enumerate(self.getSet(setName).expression):
            key = tuple(sorted(set(combination)))
            if key not in seen:
                seen.add(key)
                result.append(key)
        return result

    def canContainAll(self, models: Iterable[str]) -> bool:
        """
        Whether some combination of some set holds every one of C{models}
        (true for none at all).
        """
        wanted = list(models)
        return not wanted or self.firstSetContaining(wanted) is not None

    def firstSetContaining(self, models: Iterable[str]) -> CompiledSet | None:
        """
        The earliest set (in L{sets} order) with a combination holding every
        one of C{models}, or L{None}.  An empty C{models} gives L{None}.
        """
        wanted = list(dict.fromkeys(models))
        if not wanted:
            return None
        projection = Projection(wanted)
        for compiled in self.sets:
            if not compiled.models.issuperset(wanted):
                continue
            if projection.feasible(compiled.expression, projection.fullMask):
                return compiled
        return None


def _enumerate(expression: Expression) -> Iterator[tuple[str, ...]]:
    """
    The full expansion of C{expression}, in enumeration order: C{|}
    children in order; C{&} as a product with the first child varying
    slowest.
    """
    if isinstance(expression, Model):
        yield (expression.modelID,)
    elif isinstance(expression, Included):
        yield from _enumerate(expression.expression)
    elif isinstance(expression, Or):
        for child in expression.children:
            yield from _enumerate(child)
    else:
        families = [list(_enumerate(child)) for child in expression.children]
        for parts in itertools.product(*families):
            yield tuple(itertools.chain.from_iterable(parts))


# ---------------------------------------------------------------------------
# Projection


Rank = tuple[Any, ...]
Witness = Union[str, tuple[Any, Any], None]


@frozen
class Covering:
    """
    One concrete combination found by L{Projection.firstCovering}.

    @ivar rank: its position in enumeration order, comparable with the rank
        of any other combination of the same expression.
    @ivar mask: its projection onto the relevant models.
    @ivar witness: the models it chooses, as a tree; see L{models}.
    """

    rank: Rank
    mask: int
    witness: Witness = field(repr=False)

    def models(self) -> tuple[str, ...]:
        """
        The combination's models, sorted, each once.
        """
        found: set[str] = set()
        stack = [self.witness]
        while stack:
            item = stack.pop()
            if item is None:
                continue
            if isinstance(item, str):
                found.add(item)
            else:
                stack.extend(item)
        return tuple(sorted(found))


def _addMaximal(masks: list[int], candidate: int) -> None:
    """
    Add C{candidate} to an antichain of masks unless one already holds it,
    dropping the masks it holds.
    """
    for mask in masks:
        if candidate & ~mask == 0:
            return
    masks[:] = [mask for mask in masks if mask & ~candidate]
    masks.append(candidate)


class Projection:
    """
    Expressions evaluated against only a few relevant models.

    Each relevant model gets a bit; a combination is seen only through its
    I{mask}, the relevant models it contains.  Per sub-expression only the
    maximal masks are kept (a combination holding more relevant models is
    never worse), which keeps even huge products small.  Finding I{which}
    combination comes first in enumeration order among those with a given
    mask is then a guided descent (L{firstCovering}), so ties are broken
    exactly as a full enumeration would break them.

    Results are memoised per node, so one instance serves one question.

    @ivar bits: relevant model ID to its bit.
    @ivar fullMask: every relevant bit.
    """

    def __init__(self, relevant: Iterable[str]) -> None:
        self.bits: dict[str, int] = {}
        for modelID in relevant:
            if modelID not in self.bits:
                self.bits[modelID] = 1 << len(self.bits)
        self.fullMask = (1 << len(self.bits)) - 1
        self._maxima: dict[int, list[int]] = {}
        self._suffixes: dict[int, list[list[int]]] = {}
        self._coverings: dict[tuple[int, int], Covering | None] = {}

    def maskOf(self, models: Iterable[str]) -> int:
        """
        The bits of those of C{models} that are relevant.
        """
        mask = 0
        for modelID in models:
            mask |= self.bits.get(modelID, 0)
        return mask

    def maxima(self, expression: Expression) -> list[int]:
        """
        The maximal masks of C{expression}'s combinations, in the order
        first reached.
        """
        key = id(expression)
        found = self._maxima.get(key)
        if found is not None:
            return found
        if isinstance(expression, Model):
            found = [self.bits.get(expression.modelID, 0)]
        elif isinstance(expression, Included):
            found = self.maxima(expression.expression)
        elif isinstance(expression, Or):
            found = []
            for child in expression.children:
                for mask in self.maxima(child):
                    _addMaximal(found, mask)
        else:
            found = self._suffixMaxima(expression)[0]
        self._maxima[key] = found
        return found

    def _suffixMaxima(self, expression: And) -> list[list[int]]:
        """
        For each C{k}, the maximal masks of the product of
        C{expression.children[k:]}.
        """
        key = id(expression)
        found = self._suffixes.get(key)
        if found is not None:
            return found
        children = expression.children
        found = [[] for _ in children]
        found[-1] = list(self.maxima(children[-1]))
        for k in range(len(children) - 2, -1, -1):
            combined: list[int] = []
            for left in self.maxima(children[k]):
                for right in found[k + 1]:
                    _addMaximal(combined, left | right)
            found[k] = combined
        self._suffixes[key] = found
        return found

    def feasible(self, expression: Expression, required: int) -> bool:
        """
        Whether some combination of C{expression} holds every bit of
        C{required}.
        """
        return any(required & ~mask == 0 for mask in self.maxima(expression))

    def firstCovering(self, expression: Expression, required: int) -> Covering | None:
        """
        The first combination of C{expression}, in enumeration order, whose
        mask holds every bit of C{required}; L{None} if there is none.
        """
        key = (id(expression), required)
        if key in self._coverings:
            return self._coverings[key]
        found: Covering | None = None
        if not self.feasible(expression, required):
            pass
        elif isinstance(expression, Model):
            found = Covering((), self.bits.get(expression.modelID, 0), expression.modelID)
        elif isinstance(expression, Included):
            found = self.firstCovering(expression.expression, required)
        elif isinstance(expression, Or):
            for index, child in enumerate(expression.children):
                if self.feasible(child, required):
                    inner = self.firstCovering(child, required)
                    assert inner is not None
                    found = Covering((index, inner.rank), inner.mask, inner.witness)
                    break
        else:
            found = self._firstCoveringAnd(expression, required)
        self._coverings[key] = found
        return found

    def _firstCoveringAnd(self, expression: And, required: int) -> Covering | None:
        """
        Choose the children's combinations left to right: each takes the
        earliest choice with which the remaining children can still cover
        what is left of C{required}.
        """
        children = expression.children
        suffixes = self._suffixMaxima(expression)
        ranks: list[Rank] = []
        mask = 0
        witness: Witness = None
        for k, child in enumerate(children):
            rest = suffixes[k + 1] if k + 1 < len(children) else [0]
            best: Covering | None = None
            for restMask in rest:
                candidate = self.firstCovering(child, required & ~restMask)
                if candidate is not None and (best is None or candidate.rank < best.rank):
                    best = candidate
            if best is None:
                return None
            ranks.append(best.rank)
            mask |= best.mask
            witness = (witness, best.witness)
            required &= ~best.mask
        return Covering(tuple(ranks), mask, witness)


# ---------------------------------------------------------------------------
# Compiling a matrix section


_VAR_KEY = re.compile(r"[a-zA-Z0-9.-]{1,32}")


def _scalarText(value: Any) -> str | None:
    """
    A YAML scalar as the string Go's YAML decoder would give for a string
    field (C{None} for a mapping or list).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _costValue(value: Any) -> int | None:
    """
    An eviction cost as Go's YAML decoder reads an C{int}: integers as they
    are, floats truncated, anything else unreadable (L{None}).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return int(value)
    return None


def _asMapping(
    value: Any, what: str, problems: Problems, path: KeyPath
) -> Mapping[Any, Any] | None:
    """
    C{value} as a mapping (L{None} as an empty one), or L{None} after
    reporting that it is not one.
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return value
    problems.error(f"matrix: {what} must be a mapping", path)
    return None


def compileMatrix(
    section: Mapping[str, Any],
    modelIDs: Collection[str],
    problems: Problems,
    path: KeyPath,
) -> MatrixProgram | None:
    """
    Validate and compile a raw C{matrix} mapping.

    Every problem is reported into C{problems} (each bad var, cost and set,
    not just the first), with llama-swap's messages prefixed C{matrix: }.

    @param section: the mapping under C{matrix} (or
        C{routing.router.settings.matrix}): C{vars}, C{evict_costs},
        C{sets}.
    @param modelIDs: the real model IDs; aliases are not accepted.
    @param path: where C{section} sits, for locating problems.
    @return: the program, or L{None} if anything was wrong.
    """
    before = len(problems.errors)
    known = frozenset(modelIDs)
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        problems.error("matrix: matrix must be a mapping", path)
        return None

    variables = _compileVars(section.get("vars"), known, problems, path + ("vars",))
    costs = _compileCosts(
        section.get("evict_costs"), variables, known, problems, path + ("evict_costs",)
    )
    sets = _compileSets(section.get("sets"), variables, known, problems, path + ("sets",))

    if sets is None or len(problems.errors) > before:
        return None
    return MatrixProgram(sets, variables, costs)


def _compileVars(
    raw: Any, known: frozenset[str], problems: Problems, path: KeyPath
) -> dict[str, str]:
    """
    Check C{vars} and return every entry (bad ones too, so that their uses
    in sets are not reported a second time).
    """
    variables: dict[str, str] = {}
    entries = _asMapping(raw, "vars", problems, path)
    if entries is None:
        return variables
    for rawKey, rawValue in entries.items():
        key = _scalarText(rawKey) or ""
        where = path + (key,)
        if not _VAR_KEY.fullmatch(key):
            problems.error(
                f"matrix: var key {goQuote(key)} must contain only alphanumeric, "
                f"'-' or '.' characters and be 1-32 characters long",
                where,
            )
        value = _scalarText(rawValue)
        if value is None:
            problems.error(f"matrix: var key {goQuote(key)} must name a model", where)
            continue
        if value not in known:
            problems.error(
                f"matrix: var key {goQuote(key)} references unknown model {goQuote(value)}",
                where,
            )
        variables[key] = value
    return variables


def _compileCosts(
    raw: Any,
    variables: Mapping[str, str],
    known: frozenset[str],
    problems: Problems,
    path: KeyPath,
) -> dict[str, int]:
    """
    Check C{evict_costs} and return them keyed by model ID.
    """
    costs: dict[str, int] = {}
    entries = _asMapping(raw, "evict_costs", problems, path)
    if entries is None:
        return costs
    for rawKey, rawValue in entries.items():
        key = _scalarText(rawKey) or ""
        where = path + (key,)
        cost = _costValue(rawValue)
        if cost is None or cost <= 0:
            shown = cost if cost is not None else _scalarText(rawValue)
            problems.error(
                f"matrix: evict_cost for {goQuote(key)} must be a positive integer, got {shown}",
                where,
            )
        if key not in variables and key not in known:
            problems.error(f"matrix: evict_costs: unknown var or model {goQuote(key)}", where)
            continue
        if cost is not None and cost > 0:
            costs[variables.get(key, key)] = cost
    return costs


def _compileSets(
    raw: Any,
    variables: Mapping[str, str],
    known: frozenset[str],
    problems: Problems,
    path: KeyPath,
) -> tuple[CompiledSet, ...] | None:
    """
    Parse, resolve, order and link the sets.

    @return: the sets in tie-break order, or L{None} if none could be
        built (the problem is already reported).
    """
    entries = _asMapping(raw, "sets", problems, path)
    if entries is None:
        return None
    if not entries:
        problems.error("matrix: matrix must define at least one set", path)
        return None

    failed = False
    definitions: dict[str, str] = {}
    unreadable: set[str] = set()
    for rawName, rawDSL in entries.items():
        name = _scalarText(rawName) or ""
        dsl = _scalarText(rawDSL)
        if dsl is None:
            problems.error(f"matrix: set {goQuote(name)}: DSL must be a string", path + (name,))
            failed = True
            unreadable.add(name)
        # A bad set stays defined, so references to it are not reported.
        definitions[name] = dsl if dsl is not None else ""

    trees: dict[str, Syntax] = {}
    dependencies: dict[str, list[str]] = {name: [] for name in definitions}
    for name, dsl in definitions.items():
        where = path + (name,)
        if name in unreadable:
            continue
        try:
            tree = parse(dsl)
        except DSLSyntaxError as e:
            problems.error(f"matrix: set {goQuote(name)}: {e}", where)
            failed = True
            continue
        reported: set[str] = set()
        for node in _walk(tree):
            if isinstance(node, Identifier):
                if node.name in variables or node.name in known:
                    continue
                if node.name not in reported:
                    reported.add(node.name)
                    problems.error(
                        f"matrix: set {goQuote(name)}: unknown var or model {goQuote(node.name)}",
                        where,
                    )
                failed = True
            elif isinstance(node, Reference):
                if node.name not in definitions:
                    if "+" + node.name not in reported:
                        reported.add("+" + node.name)
                        problems.error(
                            f"matrix: set {goQuote(name)} references undefined set "
                            f"{goQuote(node.name)}",
                            where,
                        )
                    failed = True
                elif node.name not in dependencies[name]:
                    dependencies[name].append(node.name)
        trees[name] = tree

    order = _topologicalOrder(list(definitions), dependencies, problems, path)
    if order is None or failed:
        return None

    compiled: dict[str, CompiledSet] = {}
    for name in order:
        expression = _link(trees[name], variables, compiled)
        compiled[name] = CompiledSet(
            name, definitions[name], expression, _compiledModels(expression)
        )
    return tuple(compiled[name] for name in order)


def _topologicalOrder(
    names: Sequence[str],
    dependencies: Mapping[str, Sequence[str]],
    problems: Problems,
    path: KeyPath,
) -> list[str] | None:
    """
    Depth-first topological order over definition order: each set after
    the sets it references.  Every cycle found is reported.
    """
    state: dict[str, int] = {}
    order: list[str] = []
    cyclic = False

    def visit(name: str) -> None:
        nonlocal cyclic
        state[name] = 1
        for dependency in dependencies.get(name, ()):
            mark = state.get(dependency, 0)
            if mark == 1:
                cyclic = True
                problems.error(
                    f"matrix: circular reference detected involving set {goQuote(dependency)}",
                    path + (dependency,),
                )
            elif mark == 0:
                visit(dependency)
        state[name] = 2
        order.append(name)

    for name in names:
        if state.get(name, 0) == 0:
            visit(name)
    return None if cyclic else order


def _link(
    tree: Syntax, variables: Mapping[str, str], compiled: Mapping[str, CompiledSet]
) -> Expression:
    """
    Resolve identifiers (var first, then model ID) and link references to
    already compiled sets.
    """
    if isinstance(tree, Identifier):
        return Model(variables.get(tree.name, tree.name))
    if isinstance(tree, Reference):
        return Included(tree.name, compiled[tree.name].expression)
    children = tuple(_link(child, variables, compiled) for child in tree.children)
    return And(children) if isinstance(tree, And) else Or(children)
