"""
Tests for L{llamaswap.config.yaml12}.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.errors import Location, Problems, SourceMap
from llamaswap.config.yaml12 import loadYAML, resolveScalar


def load(text: str) -> tuple[Any, SourceMap, Problems]:
    """
    Load C{text} as C{c.yaml}, returning the data, its source map and the
    problems found.
    """
    problems = Problems()
    data, sourceMap = loadYAML(text, "c.yaml", problems)
    return data, sourceMap, problems


def value(text: str) -> Any:
    """
    The value of C{v} in the one-line document C{v: text}.
    """
    data, _, problems = load(f"v: {text}\n")
    assert not problems.hasErrors(), [str(p) for p in problems]
    return data["v"]


class ScalarTests(SynchronousTestCase):
    """
    Plain scalars mean what they mean to yaml.v3, not to YAML 1.1.
    """

    def assertTyped(self, text: str, expected: Any) -> None:
        """
        Assert C{v: text} loads as C{expected}, type included.
        """
        got = value(text)
        self.assertEqual((type(got), got), (type(expected), expected), text)

    def test_yesNoOnOffAreStrings(self) -> None:
        """
        YAML 1.1's extra booleans stay strings.
        """
        for text in ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF"]:
            self.assertTyped(text, text)

    def test_booleans(self) -> None:
        """
        Only the three spellings of C{true} and C{false} are booleans.
        """
        for text in ["true", "True", "TRUE"]:
            self.assertTyped(text, True)
        for text in ["false", "False", "FALSE"]:
            self.assertTyped(text, False)
        self.assertTyped("tRUE", "tRUE")

    def test_nulls(self) -> None:
        """
        C{~}, C{null} in three spellings and an empty value are null.
        """
        for text in ["~", "null", "Null", "NULL", ""]:
            self.assertIs(value(text), None, text)
        self.assertTyped("nULL", "nULL")

    def test_integers(self) -> None:
        """
        Integers follow Go's C{ParseInt(s, 0, 64)} after dropping
        underscores, including the legacy leading-zero octal.
        """
        table = {
            "0777": 511,
            "0o17": 15,
            "0O17": 15,
            "0x1F": 31,
            "0X1f": 31,
            "0b101": 5,
            "-0x10": -16,
            "+42": 42,
            "1_000": 1000,
            "0_7": 7,
            "0": 0,
            "-0": 0,
            "9223372036854775807": 2**63 - 1,
            "18446744073709551615": 2**64 - 1,
        }
        for text, expected in table.items():
            self.assertTyped(text, expected)

    def test_floats(self) -> None:
        """
        C{1e3} is a float, as are decimals, C{08} (not valid octal) and the
        special values; a float too large for Go stays a string.
        """
        table = {
            "1e3": 1000.0,
            "1.5": 1.5,
            ".5": 0.5,
            "-.5": -0.5,
            "1.": 1.0,
            "1_000.5": 1000.5,
            "08": 8.0,
            ".inf": math.inf,
            "-.Inf": -math.inf,
            "+.INF": math.inf,
            "-9223372036854775809": -9223372036854775809.0,
        }
        for text, expected in table.items():
            self.assertTyped(text, expected)
        self.assertTrue(math.isnan(value(".nan")))
        self.assertTyped("1e400", "1e400")

    def test_otherStrings(self) -> None:
        """
        Sexagesimal numbers, dates, C{=}, bare prefixes and other lookalikes
        are strings.
        """
        for text in [
            "1:30",
            "2024-01-01",
            "2024-01-01T10:00:00Z",
            "=",
            "0x",
            "0o",
            "1e",
            "_1",
            "0x1p3",
            ".",
            "+",
            "+.nan",
            "1.2.3",
            "<<",
        ]:
            self.assertTyped(text, text)

    def test_quotedAreStrings(self) -> None:
        """
        Quoted and block scalars are strings whatever they look like.
        """
        for text in ['"123"', "'0x1F'", '"true"', "'~'", '""', "'1e3'", '"yes"']:
            self.assertTyped(text, text[1:-1])
        data, _, _ = load("v: |\n  123\n")
        self.assertEqual(data["v"], "123\n")

    def test_explicitTags(self) -> None:
        """
        C{!!str} forces a string, C{!!float} accepts an integer, and a value
        that does not fit its tag is reported.
        """
        self.assertTyped("!!str 12", "12")
        self.assertTyped("!!float 1", 1.0)
        self.assertTyped("!!int 0x10", 16)
        self.assertTyped("!custom abc", "abc")
        data, _, problems = load("v: !!int abc\n")
        self.assertEqual(
            [str(p) for p in problems.errors],
            ["c.yaml:1: v: cannot decode !!str `abc` as a !!int"],
        )

    @given(st.integers(min_value=-(2**63), max_value=2**64 - 1))
    def test_decimalIntegersRoundTrip(self, number: int) -> None:
        """
        Every decimal integer Go can parse resolves to itself.
        """
        self.assertEqual(resolveScalar(str(number)), ("!!int", number))

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_floatReprRoundTrips(self, number: float) -> None:
        """
        Python's shortest float representation resolves to the same float.
        """
        tag, got = resolveScalar(repr(number))
        self.assertEqual(tag, "!!float")
        self.assertEqual(got, number)


class KeyTests(SynchronousTestCase):
    """
    Mapping keys, duplicates and order.
    """

    def test_nonStringKeys(self) -> None:
        """
        Keys that would resolve to other types are used as written, as
        yaml.v3 does when decoding into C{map[string]any}.
        """
        data, _, problems = load("1: a\ntrue: b\n0x10: c\n1.5: d\nyes: e\n")
        self.assertFalse(problems.hasErrors())
        self.assertEqual(data, {"1": "a", "true": "b", "0x10": "c", "1.5": "d", "yes": "e"})

    def test_sourceOrder(self) -> None:
        """
        Mappings keep the order keys are written in.
        """
        data, _, _ = load("zeta: 1\nalpha: 2\nmid: {b: 1, a: 2}\n")
        self.assertEqual(list(data), ["zeta", "alpha", "mid"])
        self.assertEqual(list(data["mid"]), ["b", "a"])

    def test_duplicateKey(self) -> None:
        """
        A key given twice is an error naming the key and both lines; the
        first value is kept.
        """
        data, _, problems = load("models:\n  m:\n    ttl: 1\n    cmd: x\n    ttl: 2\n")
        self.assertEqual(
            [str(p) for p in problems.errors],
            ['c.yaml:5: models.m.ttl: mapping key "ttl" already defined at line 3'],
        )
        self.assertEqual(data["models"]["m"]["ttl"], 1)

    def test_duplicateKeyDifferentSpelling(self) -> None:
        """
        Keys compare by their text, so C{1} and C{"1"} are the same key.
        """
        _, _, problems = load('1: a\n"1": b\n')
        self.assertEqual(len(problems.errors), 1)
        self.assertIn("already defined at line 1", problems.errors[0].message)

    def test_collectionKey(self) -> None:
        """
        A sequence used as a key is reported, not raised.
        """
        data, _, problems = load("? [a]\n: 1\nb: 2\n")
        self.assertEqual(data, {"b": 2})
        self.assertEqual(problems.errors[0].location, Location("c.yaml", 1))

    def test_locations(self) -> None:
        """
        Every mapping key and sequence item is located at its 1-based line.
        """
        _, sourceMap, _ = load("a: 1\nlist:\n  - x\n  - y: 2\n    z: 3\n")
        self.assertEqual(
            dict(sourceMap.locations),
            {
                ("a",): Location("c.yaml", 1),
                ("list",): Location("c.yaml", 2),
                ("list", 0): Location("c.yaml", 3),
                ("list", 1): Location("c.yaml", 4),
                ("list", 1, "y"): Location("c.yaml", 4),
                ("list", 1, "z"): Location("c.yaml", 5),
            },
        )
        self.assertEqual(sourceMap.locate(("list", 1, "z", "deeper")), Location("c.yaml", 5))


class AnchorTests(SynchronousTestCase):
    """
    Anchors, aliases and merge keys are materialised.
    """

    DOC = (
        "defs:\n"
        "  base: &base\n"
        "    cmd: run\n"
        "    env: [A=1]\n"
        "    metadata: {n: 1}\n"
        "models:\n"
        "  one:\n"
        "    <<: *base\n"
        "    cmd: one\n"
        "  two:\n"
        "    <<: *base\n"
    )

    def test_mergeKeys(self) -> None:
        """
        C{<<} brings the anchored keys in; explicit keys win wherever they
        are written.
        """
        data, _, problems = load(self.DOC)
        self.assertFalse(problems.hasErrors())
        self.assertEqual(
            data["models"],
            {
                "one": {"env": ["A=1"], "metadata": {"n": 1}, "cmd": "one"},
                "two": {"cmd": "run", "env": ["A=1"], "metadata": {"n": 1}},
            },
        )

    def test_independentCopies(self) -> None:
        """
        Each use of an anchor is a separate copy.
        """
        data, _, _ = load(self.DOC)
        data["models"]["one"]["env"].append("B=2")
        data["models"]["one"]["metadata"]["n"] = 5
        self.assertEqual(data["models"]["two"]["env"], ["A=1"])
        self.assertEqual(data["models"]["two"]["metadata"], {"n": 1})
        self.assertEqual(data["defs"]["base"]["env"], ["A=1"])

    def test_mergedKeysLocatedAtAnchor(self) -> None:
        """
        A merged key is located where it is written, in the anchor.
        """
        _, sourceMap, _ = load(self.DOC)
        self.assertEqual(sourceMap.locate(("models", "two", "cmd")), Location("c.yaml", 3))
        self.assertEqual(sourceMap.locate(("models", "one", "cmd")), Location("c.yaml", 9))

    def test_sequenceOfMerges(self) -> None:
        """
        With C{<<: [*a, *b]} the earlier mapping wins.
        """
        data, _, _ = load("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n")
        self.assertEqual(data["c"], {"x": 1, "y": 1, "z": 3})

    def test_plainAlias(self) -> None:
        """
        A plain alias is a copy of the anchored value.
        """
        data, _, _ = load("a: &x [1, 2]\nb: *x\n")
        self.assertEqual(data, {"a": [1, 2], "b": [1, 2]})
        self.assertIsNot(data["a"], data["b"])

    def test_redefinedAnchor(self) -> None:
        """
        An anchor may be redefined; later aliases use the latest definition.
        """
        data, _, problems = load("a: &x 1\nb: *x\nc: &x 2\nd: *x\n")
        self.assertFalse(problems.hasErrors())
        self.assertEqual(data, {"a": 1, "b": 1, "c": 2, "d": 2})

    def test_badMerge(self) -> None:
        """
        Merging a scalar is reported.
        """
        _, _, problems = load("a: &x 1\nb:\n  <<: *x\n")
        self.assertEqual(
            problems.errors[0].message,
            "map merge requires map or sequence of maps as the value",
        )

    def test_unknownAlias(self) -> None:
        """
        An alias to no anchor is reported with its line.
        """
        data, _, problems = load("a: 1\nb: *nope\n")
        self.assertIsNone(data)
        self.assertEqual(problems.errors[0].location, Location("c.yaml", 2))
        self.assertIn("nope", problems.errors[0].message)

    def test_recursiveAnchor(self) -> None:
        """
        An anchor containing itself is reported instead of looping.
        """
        _, _, problems = load("a: &x [*x]\n")
        self.assertEqual(problems.errors[0].message, "anchor value contains itself")

    def test_aliasBomb(self) -> None:
        """
        Exponential alias expansion is refused before it is attempted.
        """
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        for i in range(1, 10):
            lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
        data, _, problems = load("\n".join(lines))
        self.assertIsNone(data)
        self.assertEqual(problems.errors[0].message, "document contains excessive aliasing")


class DocumentTests(SynchronousTestCase):
    """
    Whole documents: empty ones, syntax errors, several documents.
    """

    def test_empty(self) -> None:
        """
        Empty and comments-only documents load as L{None}, without problems.
        """
        for text in ["", "\n\n", "# just a comment\n  # another\n", "---\n"]:
            data, _, problems = load(text)
            self.assertIsNone(data)
            self.assertEqual(len(problems), 0)

    def test_syntaxErrorLine(self) -> None:
        """
        A syntax error is a problem with its line, never an exception.
        """
        data, _, problems = load("a: 1\nb: [1, 2\nc: 3\n")
        self.assertIsNone(data)
        [error] = problems.errors
        self.assertEqual(error.location, Location("c.yaml", 3))
        self.assertTrue(error.message.startswith("YAML syntax error: "))

    def test_syntaxErrors(self) -> None:
        """
        Tabs, nested plain mappings and control characters are reported
        with their line.
        """
        for text, line in [
            ("a: 1\nb:\n\tc: 1\n", 3),
            ("a: b: c\n", 1),
            ("a: 1\nb: '\x01'\n", 2),
        ]:
            data, _, problems = load(text)
            self.assertIsNone(data)
            self.assertEqual(problems.errors[0].location, Location("c.yaml", line), text)

    def test_firstDocumentOnly(self) -> None:
        """
        Like yaml.v3's C{Unmarshal}, only the first document is read.
        """
        data, _, problems = load("a: 1\n---\nb: 2\n")
        self.assertEqual(data, {"a": 1})
        self.assertFalse(problems.hasErrors())
