# -*- test-case-name: test.config.test_cmdline -*-
"""
Turn a model's C{cmd} string into an argv list, the way llama-swap does.

This is deliberately not L{shlex.split}: a carriage return is part of a
word, an unterminated quote runs to the end of the input instead of raising,
and inside double quotes a backslash escapes only C{$ ` " \\} and newline.
Multi-line commands may use whole-line C{#} comments and trailing
backslashes.
"""

from __future__ import annotations

_SEPARATORS = frozenset(" \t\n")
_DOUBLE_QUOTE_ESCAPABLE = frozenset('$`"\\\n')


class EmptyCommand(ValueError):
    """
    The command had no words once comments and whitespace were removed.
    """

    def __init__(self) -> None:
        super().__init__("empty command")


def stripComments(text: str) -> str:
    """
    Drop every line whose first non-blank character is C{#}; keep blank
    lines and everything else verbatim.
    """
    return "\n".join(
        line for line in text.split("\n") if not line.strip().startswith("#")
    )


def _joinContinuations(text: str) -> str:
    """
    Replace each line ending in a backslash by its trimmed text plus a
    space, so continuation lines read as one.
    """
    lines = []
    for line in text.split("\n"):
        trimmed = line.strip()
        if trimmed.endswith("\\"):
            lines.append(trimmed[:-1] + " ")
        else:
            lines.append(line)
    return "\n".join(lines)


def splitWords(text: str) -> list[str]:
    """
    Split C{text} into words with POSIX-shell quoting rules and nothing
    else: no globbing, no variables, no comments.
    """
    words: list[str] = []
    current: list[str] = []
    inWord = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _SEPARATORS:
            if inWord:
                words.append("".join(current))
                current, inWord = [], False
            i += 1
        elif c == "'":
            inWord = True
            end = text.find("'", i + 1)
            if end < 0:
                end = n
            current.append(text[i + 1 : end])
            i = end + 1
        elif c == '"':
            inWord = True
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in _DOUBLE_QUOTE_ESCAPABLE:
                    if text[i + 1] != "\n":
                        current.append(text[i + 1])
                    i += 2
                else:
                    current.append(text[i])
                    i += 1
            i += 1
        elif c == "\\":
            if i + 1 < n:
                if text[i + 1] != "\n":
                    current.append(text[i + 1])
                    inWord = True
                i += 2
            else:
                i += 1
        else:
            inWord = True
            current.append(c)
            i += 1
    if inWord:
        words.append("".join(current))
    return words


def splitCommand(cmd: str) -> list[str]:
    """
    The argv for a C{cmd} or C{cmdStop} string.

    @raise EmptyCommand: when nothing but comments and whitespace remain.
    """
    words = splitWords(_joinContinuations(stripComments(cmd)))
    if not words:
        raise EmptyCommand()
    return words
