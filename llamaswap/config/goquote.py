# -*- test-case-name: test.config.test_goquote -*-
"""
Go's C{%q} quoting, so configuration messages and log lines read exactly
like llama-swap's (C{"a\\"b"}, C{"tab\\t"}, C{'@'}).
"""

from __future__ import annotations

_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
}


def _escape(char: str, quote: str) -> str:
    """
    One character of a Go-quoted literal delimited by C{quote}.
    """
    if char == quote:
        return "\\" + char
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def goQuote(text: str) -> str:
    """
    C{text} quoted like Go's C{%q} for a string.
    """
    return '"' + "".join(_escape(c, '"') for c in text) + '"'


def goQuoteRune(char: str) -> str:
    """
    One character quoted like Go's C{%q} for a rune (C{'@'}).
    """
    return "'" + _escape(char, "'") + "'"
