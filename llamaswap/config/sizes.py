# -*- test-case-name: test.config.test_sizes -*-
"""
Byte sizes with units, as written in a configuration (C{24GiB},
C{8000MB}, C{512}) and as shown to people (L{formatSize}); durations in
seconds as written in a configuration or a request (L{parseSeconds}).

Decimal units are powers of 1000 (C{KB}, C{MB}, C{GB}, C{TB}), binary
ones powers of 1024 (C{KiB}, C{MiB}, C{GiB}, C{TiB}); a plain number is
bytes.  Units are case-insensitive (C{kB}, C{KB} and C{kb} are all 1000)
and may drop the C{B} (C{24G}); fractions need a unit (C{1.5GiB}).
"""

from __future__ import annotations

import re

__all__ = ["formatSize", "parseSeconds", "parseSize"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*")


def parseSize(value: object) -> int:
    """
    C{value} (a non-negative int, or a string such as C{"24GiB"}) in bytes.

    @raise ValueError: not a size; the message says what is accepted.
    """
    if isinstance(value, bool):
        raise ValueError(_expected(value))
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if not isinstance(value, str):
        raise ValueError(_expected(value))
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ValueError(_expected(value))
    number, unit = match.groups()
    multiplier = _UNITS.get(unit.lower())
    if multiplier is None:
        raise ValueError(_expected(value))
    if "." in number and multiplier == 1:
        raise ValueError(_expected(value))
    return int(float(number) * multiplier) if "." in number else int(number) * multiplier


def _expected(value: object) -> str:
    return (
        "must be a size such as 24GiB, 8000MB or a number of bytes"
        f" (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), got {value!r}"
    )


def formatSize(size: int) -> str:
    """
    C{size} bytes for people, in binary units with one decimal
    (C{"1.5 GiB"}, C{"512 B"}).
    """
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_DURATION_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parseSeconds(value: object) -> float:
    """
    C{value} in seconds: a number, a numeric string, or a Go/Ollama
    duration such as C{"5m"}, C{"1h30m"} or C{"-1s"} (a sign applies to the
    whole duration).

    @raise ValueError: not a number or duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be seconds or a duration such as 5m, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"must be seconds or a duration such as 5m, got {value!r}")
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            break
        total += float(match[1]) * _DURATION_SECONDS[match[2]]
        position = match.end()
    if not body or position != len(body):
        raise ValueError(f"must be seconds or a duration such as 5m, got {value!r}")
    return sign * total
