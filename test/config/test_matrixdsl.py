"""
Tests for L{llamaswap.config.matrixdsl}: tokenizer, parser, compiler.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.errors import Problems
from llamaswap.config.matrixdsl import (
    And,
    DSLSyntaxError,
    Identifier,
    Included,
    MatrixProgram,
    Model,
    Or,
    Reference,
    Token,
    TokenKind,
    compileMatrix,
    goQuote,
    parse,
    tokenize,
)

IDENT = TokenKind.IDENT


def compileOK(
    section: Mapping[str, Any], models: Collection[str], case: SynchronousTestCase
) -> MatrixProgram:
    """
    Compile C{section}, failing C{case} if any problem is reported.
    """
    problems = Problems()
    program = compileMatrix(section, models, problems, ("matrix",))
    case.assertEqual([str(p) for p in problems], [])
    assert program is not None
    return program


def compileErrors(
    section: Mapping[str, Any],
    models: Collection[str],
    case: SynchronousTestCase,
    path: tuple[str, ...] = ("matrix",),
) -> list[tuple[tuple[Any, ...], str]]:
    """
    Compile C{section}, expecting failure; return (path, message) pairs.
    """
    problems = Problems()
    program = compileMatrix(section, models, problems, path)
    case.assertIsNone(program)
    case.assertTrue(problems.hasErrors())
    return [(p.path, p.message) for p in problems]


def messages(errors: list[tuple[tuple[Any, ...], str]]) -> list[str]:
    return [message for _, message in errors]


class TokenizeTests(SynchronousTestCase):
    """
    Tests for L{tokenize}.
    """

    def test_identifier(self) -> None:
        """
        A plain word is one identifier, followed by the end token.
        """
        self.assertEqual(tokenize("abc"), [Token(IDENT, "abc", 0), Token(TokenKind.EOF, "", 3)])

    def test_identifierCharacters(self) -> None:
        """
        Identifiers may hold C{-}, C{.}, C{_}, digits and non-ASCII letters.
        """
        self.assertEqual(
            [t.value for t in tokenize("model-name.v2 q_4 modèle")],
            ["model-name.v2", "q_4", "modèle", ""],
        )

    def test_operatorsAndReference(self) -> None:
        """
        Operators, parentheses and C{+name} references are tokens of their
        own; whitespace only separates.
        """
        self.assertEqual(
            tokenize("(a | +base) & b"),
            [
                Token(TokenKind.LPAREN, "(", 0),
                Token(IDENT, "a", 1),
                Token(TokenKind.OR, "|", 3),
                Token(TokenKind.REF, "base", 5),
                Token(TokenKind.RPAREN, ")", 10),
                Token(TokenKind.AND, "&", 12),
                Token(IDENT, "b", 14),
                Token(TokenKind.EOF, "", 15),
            ],
        )

    def test_noWhitespaceNeeded(self) -> None:
        """
        Tokens need no whitespace between them.
        """
        self.assertEqual(
            [t.kind for t in tokenize("a&b|+c")],
            [IDENT, TokenKind.AND, IDENT, TokenKind.OR, TokenKind.REF, TokenKind.EOF],
        )

    def test_emptyReference(self) -> None:
        """
        A C{+} not followed by a set name is an error.
        """
        for text, position in [("+", 1), ("a & + b", 5), ("+(a)", 1)]:
            with self.assertRaises(DSLSyntaxError) as e:
                tokenize(text)
            self.assertEqual(
                str(e.exception), f"expected set name after '+' at position {position}"
            )

    def test_unexpectedCharacter(self) -> None:
        """
        A character that starts no token is reported with its position.
        """
        with self.assertRaises(DSLSyntaxError) as e:
            tokenize("a @ b")
        self.assertEqual(str(e.exception), "unexpected character '@' at position 2")

    def test_slashAndColonRejected(self) -> None:
        """
        Model IDs holding C{/} or C{:} cannot be written directly.
        """
        for text, char, position in [("org/model", "/", 3), ("m:q4", ":", 1)]:
            with self.assertRaises(DSLSyntaxError) as e:
                tokenize(text)
            self.assertEqual(
                str(e.exception),
                f"unexpected character '{char}' at position {position}",
            )


class ParseTests(SynchronousTestCase):
    """
    Tests for L{parse}.
    """

    def test_single(self) -> None:
        """
        A lone identifier or reference is not wrapped.
        """
        self.assertEqual(parse("  a "), Identifier("a"))
        self.assertEqual(parse("+s"), Reference("s"))

    def test_precedence(self) -> None:
        """
        C{&} binds tighter than C{|}, and chains are flat.
        """
        self.assertEqual(
            parse("a | b & c | d"),
            Or(
                (
                    Identifier("a"),
                    And((Identifier("b"), Identifier("c"))),
                    Identifier("d"),
                )
            ),
        )
        self.assertEqual(
            parse("a & b & +c"),
            And((Identifier("a"), Identifier("b"), Reference("c"))),
        )

    def test_parentheses(self) -> None:
        """
        Parentheses group.
        """
        self.assertEqual(
            parse("(a | b) & ((c))"),
            And((Or((Identifier("a"), Identifier("b"))), Identifier("c"))),
        )

    def test_errors(self) -> None:
        """
        Each malformed expression gives llama-swap's message.
        """
        table = [
            ("", "empty DSL expression"),
            (" \t\n", "empty DSL expression"),
            ("(a", "parse: missing closing parenthesis"),
            ("(a b", "parse: missing closing parenthesis"),
            ("a)", 'parse: unexpected token ")" after expression'),
            ("a b", 'parse: unexpected token "b" after expression'),
            ("()", 'parse: unexpected token ")"'),
            ("a &", 'parse: unexpected token ""'),
            ("| a", 'parse: unexpected token "|"'),
            (" a @ b", "tokenize: unexpected character '@' at position 2"),
            ("+", "tokenize: expected set name after '+' at position 1"),
        ]
        for text, expected in table:
            with self.assertRaises(DSLSyntaxError, msg=text) as e:
                parse(text)
            self.assertEqual(str(e.exception), expected, text)


class GoQuoteTests(SynchronousTestCase):
    """
    Tests for L{goQuote}.
    """

    def test_quoting(self) -> None:
        """
        Quotes, backslashes and control characters are escaped as Go's
        C{%q} does; printable text, including non-ASCII, is kept.
        """
        self.assertEqual(goQuote('a"b\\c'), '"a\\"b\\\\c"')
        self.assertEqual(goQuote("t\tn\n\x01"), '"t\\tn\\n\\x01"')
        self.assertEqual(goQuote("modèle"), '"modèle"')
        self.assertEqual(goQuote(""), '""')


BASIC = {
    "vars": {
        "g": "gemma",
        "q": "qwen",
        "m": "mistral",
        "v": "voxtral",
        "L": "llama70B",
    },
    "evict_costs": {"L": 30, "v": 50},
    "sets": {"standard": "(g | q | m) & v", "full": "L"},
}
BASIC_MODELS = ["gemma", "qwen", "mistral", "voxtral", "llama70B"]


class CompileMatrixTests(SynchronousTestCase):
    """
    Tests for L{compileMatrix}: what a valid section compiles to.
    """

    def test_basic(self) -> None:
        """
        Sets keep their names and text; identifiers resolve through vars.
        """
        program = compileOK(BASIC, BASIC_MODELS, self)
        self.assertEqual([s.name for s in program.sets], ["standard", "full"])
        self.assertEqual(program.sets[0].dsl, "(g | q | m) & v")
        self.assertEqual(
            program.sets[0].expression,
            And((Or((Model("gemma"), Model("qwen"), Model("mistral"))), Model("voxtral"))),
        )
        self.assertEqual(program.sets[1].models, frozenset(["llama70B"]))
        self.assertEqual(program.vars, BASIC["vars"])

    def test_resolvedEvictCosts(self) -> None:
        """
        Var keys of C{evict_costs} become model IDs; model-ID keys stay;
        unlisted models cost 1.
        """
        program = compileOK(
            {
                "vars": {"g": "gemma", "L": "llama70B"},
                "evict_costs": {"L": 30, "g": 5, "mistral": 10},
                "sets": {"s": "g | L | mistral"},
            },
            ["gemma", "llama70B", "mistral", "other"],
            self,
        )
        self.assertEqual(
            dict(program.resolvedEvictCosts), {"llama70B": 30, "gemma": 5, "mistral": 10}
        )
        self.assertEqual(program.evictCost("other"), 1)
        self.assertEqual(program.evictCost("gemma"), 5)

    def test_references(self) -> None:
        """
        C{+name} links to the named set's compiled expression.
        """
        program = compileOK(
            {
                "vars": {
                    "g": "gemma",
                    "q": "qwen",
                    "m": "mistral",
                    "v": "voxtral",
                    "e": "reranker",
                },
                "sets": {
                    "llms": "g | q | m",
                    "with_tts": "+llms & v",
                    "mega": "+with_tts & e",
                },
            },
            ["gemma", "qwen", "mistral", "voxtral", "reranker"],
            self,
        )
        mega = program.getSet("mega").expression
        assert isinstance(mega, And)
        self.assertEqual(
            mega.children[0], Included("with_tts", program.getSet("with_tts").expression)
        )
        self.assertEqual(
            program.expand("mega"),
            [
                ("gemma", "reranker", "voxtral"),
                ("qwen", "reranker", "voxtral"),
                ("mistral", "reranker", "voxtral"),
            ],
        )

    def test_directModelNames(self) -> None:
        """
        Model IDs may be used directly, with no vars at all.
        """
        program = compileOK({"sets": {"combo": "gemma & voxtral"}}, ["gemma", "voxtral"], self)
        self.assertEqual(program.expand("combo"), [("gemma", "voxtral")])

    def test_mixedNamesVarsAndReferences(self) -> None:
        """
        Vars, model IDs and references mix freely.
        """
        program = compileOK(
            {"vars": {"g": "gemma"}, "sets": {"base": "g | qwen", "combo": "+base & voxtral"}},
            ["gemma", "qwen", "voxtral"],
            self,
        )
        self.assertEqual(program.expand("combo"), [("gemma", "voxtral"), ("qwen", "voxtral")])

    def test_deduplicatesAfterResolution(self) -> None:
        """
        A var and its model ID in one combination are one model.
        """
        program = compileOK(
            {"vars": {"g": "gemma"}, "sets": {"combo": "g & gemma"}}, ["gemma"], self
        )
        self.assertEqual(program.expand("combo"), [("gemma",)])

    def test_varTakesPrecedence(self) -> None:
        """
        An identifier that is both a var and a model ID means the var.
        """
        program = compileOK(
            {"vars": {"qwen": "gemma"}, "sets": {"combo": "qwen"}}, ["gemma", "qwen"], self
        )
        self.assertEqual(program.sets[0].expression, Model("gemma"))
        self.assertEqual(program.expand("combo"), [("gemma",)])

    def test_validVarKeys(self) -> None:
        """
        Var keys of 32 characters, or holding C{-} or C{.}, are accepted.
        """
        for key in ["abcdefghijklmnopqrstuvwxyzABCDEF", "model-var", "model.var", "7"]:
            program = compileOK({"vars": {key: "gemma"}, "sets": {"s": key}}, ["gemma"], self)
            self.assertEqual(program.expand("s"), [("gemma",)])

    def test_setOrderIsTopological(self) -> None:
        """
        A referenced set is ordered before the first set referencing it;
        otherwise definition order is kept.
        """
        program = compileOK(
            {
                "sets": {
                    "first": "a",
                    "top": "+mid & a",
                    "other": "b",
                    "mid": "+leaf | b",
                    "leaf": "c",
                }
            },
            ["a", "b", "c"],
            self,
        )
        self.assertEqual([s.name for s in program.sets], ["first", "leaf", "mid", "top", "other"])

    def test_scalarDSL(self) -> None:
        """
        A DSL or var value YAML read as a number is used as its text.
        """
        program = compileOK({"vars": {"x": 70}, "sets": {"s": 123, "t": "x"}}, ["123", "70"], self)
        self.assertEqual(program.expand("s"), [("123",)])
        self.assertEqual(program.expand("t"), [("70",)])

    def test_routingPath(self) -> None:
        """
        Problems are located under the path given for the section.
        """
        errors = compileErrors(
            {"sets": {"s": "nope"}},
            ["gemma"],
            self,
            path=("routing", "router", "settings", "matrix"),
        )
        self.assertEqual(
            errors,
            [
                (
                    ("routing", "router", "settings", "matrix", "sets", "s"),
                    'matrix: set "s": unknown var or model "nope"',
                )
            ],
        )


class CompileMatrixErrorTests(SynchronousTestCase):
    """
    Tests for the problems L{compileMatrix} reports.
    """

    def test_invalidVarKeys(self) -> None:
        """
        Var keys longer than 32 characters, empty, or holding anything but
        letters, digits, C{-} and C{.} are rejected.
        """
        table = [
            ("abcdefghijklmnopqrstuvwxyzABCDEFG", "1-32 characters"),
            ("a_b", "only alphanumeric, '-' or '.'"),
            ("", "1-32 characters"),
            ("a/b", "only alphanumeric, '-' or '.'"),
            ("a\n", "1-32 characters"),
        ]
        for key, fragment in table:
            errors = compileErrors(
                {"vars": {key: "gemma"}, "sets": {"s": "gemma"}}, ["gemma"], self
            )
            self.assertEqual(
                errors,
                [
                    (
                        ("matrix", "vars", key),
                        f"matrix: var key {goQuote(key)} must contain only alphanumeric, "
                        "'-' or '.' characters and be 1-32 characters long",
                    )
                ],
            )
            self.assertIn(fragment, errors[0][1])

    def test_varUnknownModel(self) -> None:
        """
        A var must name a real model ID.
        """
        self.assertEqual(
            compileErrors({"vars": {"x": "nonexistent"}, "sets": {"s": "x"}}, ["gemma"], self),
            [
                (
                    ("matrix", "vars", "x"),
                    'matrix: var key "x" references unknown model "nonexistent"',
                )
            ],
        )

    def test_evictCostNotPositive(self) -> None:
        """
        Eviction costs must be positive integers.
        """
        for cost in [0, -1]:
            self.assertEqual(
                compileErrors(
                    {"vars": {"g": "gemma"}, "evict_costs": {"g": cost}, "sets": {"s": "g"}},
                    ["gemma"],
                    self,
                ),
                [
                    (
                        ("matrix", "evict_costs", "g"),
                        f'matrix: evict_cost for "g" must be a positive integer, got {cost}',
                    )
                ],
            )

    def test_evictCostNotANumber(self) -> None:
        """
        An eviction cost that is not a number is rejected too.
        """
        self.assertEqual(
            messages(
                compileErrors(
                    {"evict_costs": {"gemma": "lots"}, "sets": {"s": "gemma"}}, ["gemma"], self
                )
            ),
            ['matrix: evict_cost for "gemma" must be a positive integer, got lots'],
        )

    def test_evictCostUnknownKey(self) -> None:
        """
        C{evict_costs} keys must be vars or model IDs.
        """
        self.assertEqual(
            compileErrors(
                {"vars": {"g": "gemma"}, "evict_costs": {"unknown": 5}, "sets": {"s": "g"}},
                ["gemma"],
                self,
            ),
            [
                (
                    ("matrix", "evict_costs", "unknown"),
                    'matrix: evict_costs: unknown var or model "unknown"',
                )
            ],
        )

    def test_evictCostModelKey(self) -> None:
        """
        A model ID is a valid C{evict_costs} key.
        """
        program = compileOK({"evict_costs": {"gemma": 5}, "sets": {"s": "gemma"}}, ["gemma"], self)
        self.assertEqual(dict(program.resolvedEvictCosts), {"gemma": 5})

    def test_cycle(self) -> None:
        """
        Sets referencing each other are reported.
        """
        self.assertEqual(
            compileErrors(
                {"vars": {"g": "gemma"}, "sets": {"a": "+b", "b": "+a"}}, ["gemma"], self
            ),
            [(("matrix", "sets", "a"), 'matrix: circular reference detected involving set "a"')],
        )

    def test_selfReference(self) -> None:
        """
        A set referencing itself is a cycle.
        """
        self.assertEqual(
            messages(compileErrors({"sets": {"s": "g | +s"}}, ["g"], self)),
            ['matrix: circular reference detected involving set "s"'],
        )

    def test_undefinedReference(self) -> None:
        """
        References must name a defined set.
        """
        self.assertEqual(
            compileErrors({"vars": {"g": "gemma"}, "sets": {"a": "+nonexistent"}}, ["gemma"], self),
            [(("matrix", "sets", "a"), 'matrix: set "a" references undefined set "nonexistent"')],
        )

    def test_noSets(self) -> None:
        """
        At least one set is required.
        """
        expected = [(("matrix", "sets"), "matrix: matrix must define at least one set")]
        self.assertEqual(compileErrors({}, ["gemma"], self), expected)
        self.assertEqual(compileErrors({"sets": {}}, ["gemma"], self), expected)
        self.assertEqual(compileErrors({"sets": None, "vars": None}, ["gemma"], self), expected)

    def test_unknownIdentifier(self) -> None:
        """
        Identifiers must be vars or model IDs; aliases do not count.
        """
        self.assertEqual(
            compileErrors(
                {"vars": {"g": "gemma"}, "sets": {"s": "g & nonexistent"}}, ["gemma"], self
            ),
            [(("matrix", "sets", "s"), 'matrix: set "s": unknown var or model "nonexistent"')],
        )

    def test_syntaxErrors(self) -> None:
        """
        Parse errors are prefixed with the set name.
        """
        table = [
            ("", 'matrix: set "s": empty DSL expression'),
            (None, 'matrix: set "s": empty DSL expression'),
            ("(a", 'matrix: set "s": parse: missing closing parenthesis'),
            ("a)", 'matrix: set "s": parse: unexpected token ")" after expression'),
            ("()", 'matrix: set "s": parse: unexpected token ")"'),
            ("a @ b", "matrix: set \"s\": tokenize: unexpected character '@' at position 2"),
            ("a & +", "matrix: set \"s\": tokenize: expected set name after '+' at position 5"),
        ]
        for dsl, expected in table:
            self.assertEqual(
                compileErrors({"sets": {"s": dsl}}, ["a"], self),
                [(("matrix", "sets", "s"), expected)],
            )

    def test_wrongTypes(self) -> None:
        """
        Sections of the wrong YAML type are reported, not raised.
        """
        self.assertEqual(
            compileErrors({"sets": ["a"]}, ["a"], self),
            [(("matrix", "sets"), "matrix: sets must be a mapping")],
        )
        self.assertEqual(
            compileErrors({"vars": ["a"], "evict_costs": 3, "sets": {"s": "a"}}, ["a"], self),
            [
                (("matrix", "vars"), "matrix: vars must be a mapping"),
                (("matrix", "evict_costs"), "matrix: evict_costs must be a mapping"),
            ],
        )
        self.assertEqual(
            compileErrors({"sets": {"s": ["a"], "t": "+s & a"}}, ["a"], self),
            [(("matrix", "sets", "s"), 'matrix: set "s": DSL must be a string')],
        )
        self.assertEqual(
            compileErrors(["sets"], ["a"], self),  # type: ignore[arg-type]
            [(("matrix",), "matrix: matrix must be a mapping")],
        )

    def test_collectsEverything(self) -> None:
        """
        Every bad var, cost and set is reported, not only the first.
        """
        errors = compileErrors(
            {
                "vars": {"a_b": "x", "ok": "gemma"},
                "evict_costs": {"zz": 0, "ok": 2},
                "sets": {
                    "c": "(ok",
                    "d": "ok & nope & +zz & nope",
                    "e": "a @",
                    "x": "+y",
                    "y": "+x",
                    "fine": "ok",
                },
            },
            ["gemma"],
            self,
        )
        self.assertEqual(
            errors,
            [
                (
                    ("matrix", "vars", "a_b"),
                    "matrix: var key \"a_b\" must contain only alphanumeric, '-' or '.' "
                    "characters and be 1-32 characters long",
                ),
                (("matrix", "vars", "a_b"), 'matrix: var key "a_b" references unknown model "x"'),
                (
                    ("matrix", "evict_costs", "zz"),
                    'matrix: evict_cost for "zz" must be a positive integer, got 0',
                ),
                (("matrix", "evict_costs", "zz"), 'matrix: evict_costs: unknown var or model "zz"'),
                (("matrix", "sets", "c"), 'matrix: set "c": parse: missing closing parenthesis'),
                (("matrix", "sets", "d"), 'matrix: set "d": unknown var or model "nope"'),
                (("matrix", "sets", "d"), 'matrix: set "d" references undefined set "zz"'),
                (
                    ("matrix", "sets", "e"),
                    "matrix: set \"e\": tokenize: unexpected character '@' at position 2",
                ),
                (("matrix", "sets", "x"), 'matrix: circular reference detected involving set "x"'),
            ],
        )

    def test_badVarNotReportedAgain(self) -> None:
        """
        A set using a var that is itself bad gets no second error.
        """
        self.assertEqual(
            messages(
                compileErrors({"vars": {"a_b": "gemma"}, "sets": {"s": "a_b"}}, ["gemma"], self)
            ),
            [
                "matrix: var key \"a_b\" must contain only alphanumeric, '-' or '.' "
                "characters and be 1-32 characters long"
            ],
        )


class ExpandTests(SynchronousTestCase):
    """
    Tests for L{MatrixProgram.expand}.
    """

    def test_expansions(self) -> None:
        """
        C{|} lists its choices in order, C{&} is a product with the left
        side varying slowest, and repeats are dropped.
        """
        table = [
            ("a", [("a",)]),
            ("a & b", [("a", "b")]),
            ("a | b | c", [("a",), ("b",), ("c",)]),
            ("(a | b) & (c | d)", [("a", "c"), ("a", "d"), ("b", "c"), ("b", "d")]),
            ("a | b & c", [("a",), ("b", "c")]),
            ("a & a", [("a",)]),
            ("a | a", [("a",)]),
            ("(a | b) & (a | b)", [("a",), ("a", "b"), ("b",)]),
            ("d & (c | b) & a", [("a", "c", "d"), ("a", "b", "d")]),
        ]
        for dsl, expected in table:
            program = compileOK({"sets": {"test": dsl}}, "abcd", self)
            self.assertEqual(program.expand("test"), expected, dsl)

    def test_unknownSet(self) -> None:
        """
        Expanding a set that does not exist raises L{KeyError}.
        """
        program = compileOK({"sets": {"s": "a"}}, "a", self)
        self.assertRaises(KeyError, program.expand, "t")


class CanContainAllTests(SynchronousTestCase):
    """
    Tests for L{MatrixProgram.canContainAll}.
    """

    def setUp(self) -> None:
        self.program = compileOK(
            {"sets": {"one": "(a | b) & c", "two": "d & (a | e)"}}, "abcde", self
        )

    def test_contained(self) -> None:
        """
        Models of one combination can all be contained.
        """
        for models in [["a", "c"], ["b", "c"], ["d", "e"], ["a"], [], ["a", "a", "c"]]:
            self.assertTrue(self.program.canContainAll(models), models)

    def test_notContained(self) -> None:
        """
        Models never in one combination, or in no set, cannot.
        """
        for models in [["a", "b"], ["c", "d"], ["a", "c", "d"], ["z"], ["a", "z"]]:
            self.assertFalse(self.program.canContainAll(models), models)

    def test_firstSetContaining(self) -> None:
        """
        L{MatrixProgram.firstSetContaining} gives the earliest set holding
        every model, or L{None}.
        """
        found = self.program.firstSetContaining(["a"])
        assert found is not None
        self.assertEqual(found.name, "one")
        found = self.program.firstSetContaining(iter(["a", "d"]))
        assert found is not None
        self.assertEqual(found.name, "two")
        self.assertIsNone(self.program.firstSetContaining(["b", "d"]))
        self.assertIsNone(self.program.firstSetContaining([]))
