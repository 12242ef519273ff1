# -*- test-case-name: test.config.test_goformats -*-
"""
Go syntax llama-swap's config relies on: C{time.ParseDuration} and
C{Duration.String}, and the errors of C{url.Parse}, so messages read like
llama-swap's and the same inputs are accepted or rejected.
"""

from __future__ import annotations

import re

from .goquote import goQuote

_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_DURATION_UNIT = re.compile(r"[^0-9.]*")


def parseGoDuration(text: str) -> int:
    """
    Parse a Go duration string (C{"5s"}, C{"1m30s"}, C{"500ms"}) into
    nanoseconds, with Go's C{time.ParseDuration} rules.

    @raise ValueError: with Go's message when C{text} is not a duration.
    """
    invalid = ValueError(f"time: invalid duration {goQuote(text)}")
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if rest == "":
        raise invalid
    total = 0
    while rest:
        if not (rest[0] == "." or "0" <= rest[0] <= "9"):
            raise invalid
        match = _DURATION_NUMBER.match(rest)
        assert match is not None
        whole, fraction = match.group(1), match.group(2) or ""
        if not whole and not fraction:
            raise invalid
        rest = rest[match.end() :]
        unitMatch = _DURATION_UNIT.match(rest)
        assert unitMatch is not None
        unitName = unitMatch.group(0)
        if not unitName:
            raise ValueError(f"time: missing unit in duration {goQuote(text)}")
        if unitName not in _DURATION_UNITS:
            raise ValueError(f"time: unknown unit {goQuote(unitName)} in duration {goQuote(text)}")
        rest = rest[len(unitName) :]
        unit = _DURATION_UNITS[unitName]
        total += int(whole or "0") * unit
        if fraction:
            total += int(fraction) * unit // 10 ** len(fraction)
        if total > 2**63 - 1:
            raise invalid
    return -total if negative else total


def _fixedPoint(value: int, digits: int) -> str:
    whole, fraction = divmod(value, 10**digits)
    if not fraction:
        return str(whole)
    return f"{whole}." + str(fraction).rjust(digits, "0").rstrip("0")


def formatGoDuration(nanoseconds: int) -> str:
    """
    Render a duration the way Go's C{Duration.String} does (C{"1m30s"},
    C{"500ms"}, C{"1h0m0s"}).
    """
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)
    if value < 1_000_000_000:
        if value < 1_000:
            return f"{sign}{value}ns"
        if value < 1_000_000:
            return sign + _fixedPoint(value, 3) + "\u00b5s"
        return sign + _fixedPoint(value, 6) + "ms"
    out = _fixedPoint(value % 60_000_000_000, 9) + "s"
    minutes = value // 60_000_000_000
    if minutes:
        out = f"{minutes % 60}m" + out
        if minutes // 60:
            out = f"{minutes // 60}h" + out
    return sign + out


_HEX = frozenset("0123456789abcdefABCDEF")
_HOST_SAFE = frozenset("-_.~!$&'()*+,;=:[]<>\"")
_USERINFO_SAFE = frozenset("-._:~!$&'()*+,;=%@")


def _unescapeError(text: str, host: bool = False) -> str | None:
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            if i + 2 >= len(text) or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
                return f"invalid URL escape {goQuote(text[i : i + 3])}"
            if host and int(text[i + 1], 16) < 8 and text[i : i + 3] != "%25":
                return f"invalid URL escape {goQuote(text[i : i + 3])}"
            i += 3
            continue
        if host and ord(char) < 0x80 and not (char.isalnum() or char in _HOST_SAFE):
            return f"invalid character {goQuote(char)} in host name"
        i += 1
    return None


def _validOptionalPort(port: str) -> bool:
    if port == "":
        return True
    return port[0] == ":" and all("0" <= c <= "9" for c in port[1:])


def _hostError(host: str) -> str | None:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            return "missing ']' in host"
        if not _validOptionalPort(host[end + 1 :]):
            return f"invalid port {goQuote(host[end + 1 :])} after host"
        return None
    colon = host.rfind(":")
    if colon != -1 and not _validOptionalPort(host[colon:]):
        return f"invalid port {goQuote(host[colon:])} after host"
    return _unescapeError(host, host=True)


def _goParse(raw: str) -> str | None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return "net/url: invalid control character in URL"
    if raw == "*":
        return None
    scheme, rest = "", raw
    for i, char in enumerate(raw):
        if char.isascii() and char.isalpha():
            continue
        if char.isascii() and (char.isdigit() or char in "+-."):
            if i == 0:
                break
            continue
        if char == ":":
            if i == 0:
                return "missing protocol scheme"
            scheme, rest = raw[:i], raw[i + 1 :]
        break
    if rest.endswith("?") and rest.count("?") == 1:
        rest = rest[:-1]
    else:
        rest = rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return None
        if ":" in rest.partition("/")[0]:
            return "first path segment in URL cannot contain colon"
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        at = authority.rfind("@")
        error = _hostError(authority[at + 1 :])
        if error:
            return error
        if at >= 0:
            userinfo = authority[:at]
            if not all(c.isalnum() or c in _USERINFO_SAFE for c in userinfo):
                return "net/url: invalid userinfo"
            error = _unescapeError(userinfo)
            if error:
                return error
    return _unescapeError(rest)


def goURLError(raw: str) -> str | None:
    """
    The error Go's C{url.Parse} reports for C{raw} (C{parse "...": ...}),
    or L{None} when Go accepts it.
    """
    base, hashSign, fragment = raw.partition("#")
    error = _goParse(base)
    if error:
        return f"parse {goQuote(base)}: {error}"
    if hashSign:
        error = _unescapeError(fragment)
        if error:
            return f"parse {goQuote(raw)}: {error}"
    return None
