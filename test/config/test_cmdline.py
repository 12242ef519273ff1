"""
Tests for L{llamaswap.config.cmdline}.
"""

import shlex

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.cmdline import (
    EmptyCommand,
    splitCommand,
    splitWords,
    stripComments,
)

LLAMA_SWAP_EXAMPLE = """python model1.py \\
    -a "double quotes" \\
    --arg2 'single quotes'
    -s
    # comment 1
    --arg3 123 \\

\t# comment 2
    --arg4 '"string in string"'



    # this will get stripped out as well as the white space above
    -c "'single quoted'"
    """


class SplitCommandTests(SynchronousTestCase):
    """
    L{splitCommand} reproduces llama-swap's command lexer.
    """

    def test_llamaSwapExample(self) -> None:
        """
        The multi-line example from llama-swap's own test suite, with
        continuations, comments, blank lines and nested quotes, yields
        exactly its argument list (inner quotes kept).
        """
        self.assertEqual(
            splitCommand(LLAMA_SWAP_EXAMPLE),
            [
                "python", "model1.py",
                "-a", "double quotes",
                "--arg2", "single quotes",
                "-s",
                "--arg3", "123",
                "--arg4", '"string in string"',
                "-c", "'single quoted'",
            ],
        )

    def test_continuations(self) -> None:
        """
        Backslash-continued lines join with a single space.
        """
        self.assertEqual(
            splitCommand("python model1.py \\\n  --arg1 value1 \\\n  --arg2 value2"),
            ["python", "model1.py", "--arg1", "value1", "--arg2", "value2"],
        )

    def test_empty(self) -> None:
        """
        An empty, blank or comment-only command is an error.
        """
        for cmd in ["", "   \n\t", "# only\n  # comments"]:
            with self.assertRaises(EmptyCommand) as ctx:
                splitCommand(cmd)
            self.assertEqual(str(ctx.exception), "empty command")

    def test_inlineHashIsLiteral(self) -> None:
        """
        Only whole-line comments are removed; a C{#} after arguments is an
        argument.
        """
        self.assertEqual(splitCommand("srv --x 1 # not a comment"),
                         ["srv", "--x", "1", "#", "not", "a", "comment"])

    def test_carriageReturnIsPartOfWord(self) -> None:
        """
        C{\\r} is not a separator (unlike L{shlex.split}).
        """
        self.assertEqual(splitWords("a\r b"), ["a\r", "b"])
        self.assertNotEqual(shlex.split("a\r b"), ["a\r", "b"])

    def test_unterminatedQuotesRunToEnd(self) -> None:
        """
        An unterminated quote takes the rest of the input, silently.
        """
        self.assertEqual(splitWords("a 'b c"), ["a", "b c"])
        self.assertEqual(splitWords('a "b c'), ["a", "b c"])

    def test_doubleQuoteEscapes(self) -> None:
        """
        Inside double quotes a backslash escapes only C{$ ` " \\} and
        newline; before anything else it is kept.
        """
        self.assertEqual(splitWords(r'"\$x \` \" \\ \n \a"'), ['$x ` " \\ \\n \\a'])
        self.assertEqual(splitWords('"a\\\nb"'), ["ab"])

    def test_unquotedBackslash(self) -> None:
        """
        Outside quotes a backslash escapes the next character and a
        backslash-newline disappears.
        """
        self.assertEqual(splitWords(r"a\ b c\'d"), ["a b", "c'd"])
        self.assertEqual(splitWords("ab\\\ncd"), ["abcd"])

    def test_emptyQuotedArgument(self) -> None:
        """
        C{""} and C{''} are empty arguments, not nothing.
        """
        self.assertEqual(splitWords("a \"\" '' b"), ["a", "", "", "b"])

    def test_adjacentPiecesJoin(self) -> None:
        """
        Quoted and unquoted pieces with no separator form one word.
        """
        self.assertEqual(splitWords("--x='a b'\"c\"d"), ["--x=a bcd"])

    def test_separators(self) -> None:
        """
        Spaces, tabs and newlines separate; runs of them make no empty words.
        """
        self.assertEqual(splitWords(" \ta \n\n b\t"), ["a", "b"])

    @given(st.lists(st.text(alphabet="abc-=./_0123456789", min_size=1), min_size=1))
    def test_plainWordsRoundTrip(self, words: list[str]) -> None:
        """
        Words without special characters survive joining with any
        separators.
        """
        self.assertEqual(splitCommand(" \n\t ".join(words)), words)

    @given(st.text())
    def test_neverRaisesButEmpty(self, text: str) -> None:
        """
        The lexer accepts any text; the only error is an empty command.
        """
        try:
            words = splitCommand(text)
        except EmptyCommand:
            return
        self.assertTrue(words)


class StripCommentsTests(SynchronousTestCase):
    """
    L{stripComments} removes whole-line comments only.
    """

    def test_table(self) -> None:
        """
        The cases of llama-swap's StripComments test.
        """
        cases = [
            ("", ""),
            ("a b\nc", "a b\nc"),
            ("a\n# c\n  # indented\nb", "a\nb"),
            ("a\n\n# c\nb", "a\n\nb"),
            ("# only\n# comments", ""),
            ("a # inline", "a # inline"),
        ]
        for text, expected in cases:
            self.assertEqual(stripComments(text), expected, text)
