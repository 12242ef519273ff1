# -*- test-case-name: test.config.test_sections -*-
"""
Typed access to the expanded YAML tree: a L{Section} reads one mapping's
keys with their defaults and reports each wrong type, and each unknown key
(with a suggestion), at its key path.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from .errors import KeyPath, PathPart, Problems, formatPath
from .goformats import parseGoDuration
from .goquote import goQuote

T = TypeVar("T")

_TRUE_WORDS = frozenset({"y", "yes", "on", "true"})
_FALSE_WORDS = frozenset({"n", "no", "off", "false"})


def describeValue(value: Any) -> str:
    """
    A short description of a YAML value for type errors: C{string "abcd"},
    C{integer 5}, C{a list}.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean " + ("true" if value else "false")
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        return "string " + goQuote(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _scalarText(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def suggestKey(key: str, known: Iterable[str]) -> str | None:
    """
    The known key C{key} was probably meant to be, if one is close.
    """
    known = sorted(known)

    def squash(k: str) -> str:
        return k.lower().replace("_", "").replace("-", "")

    for candidate in known:
        if squash(candidate) == squash(key):
            return candidate
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if close:
        return close[0]
    # Short keys: one swapped, dropped, added or changed letter (tll, ttll).
    for candidate in known:
        if _editDistance(squash(key), squash(candidate)) <= 1 + (len(candidate) > 6):
            return candidate
    return None


def _editDistance(a: str, b: str) -> int:
    """
    Damerau-Levenshtein distance (with adjacent transpositions).
    """
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ca != cb),
            )
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


class Section:
    """
    One YAML mapping being decoded, with the key path it lives at.
    """

    def __init__(self, problems: Problems, data: Mapping[Any, Any], path: KeyPath) -> None:
        self.problems = problems
        self.data = data
        self.path = path

    @classmethod
    def of(
        cls,
        problems: Problems,
        value: Any,
        path: KeyPath,
        known: frozenset[str] | None,
    ) -> Section:
        """
        Wrap C{value}, which should be a mapping (null is an empty one),
        and warn about keys not in C{known}.
        """
        if value is None:
            value = {}
        elif not isinstance(value, Mapping):
            problems.error(f"must be a mapping, got {describeValue(value)}", path)
            value = {}
        section = cls(problems, value, path)
        if known is not None:
            section.checkKeys(known)
        return section

    def checkKeys(
        self, known: frozenset[str], exempt: Callable[[str], bool] = lambda key: False
    ) -> None:
        """
        Warn about every key not in C{known} (and not C{exempt}).
        """
        for key in self.data:
            name = str(key)
            if name in known or exempt(name):
                continue
            warnUnknownKey(self.problems, self.path + (name,), known)

    def at(self, key: PathPart) -> KeyPath:
        return self.path + (key,)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def section(self, key: str, known: frozenset[str] | None) -> Section:
        return Section.of(self.problems, self.data.get(key), self.at(key), known)

    def mapping(self, key: str) -> Mapping[str, Any]:
        """
        A free-form mapping (metadata, setParams); keys become strings.
        """
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.error(f"must be a mapping, got {describeValue(value)}", self.at(key))
            return {}
        return {str(k): v for k, v in value.items()}

    def _scalar(
        self, key: str, convert: Callable[[Any, KeyPath, Problems], T | None], default: T
    ) -> T:
        """
        C{key}'s value through C{convert}; C{default} when it is absent,
        null or (reported by C{convert}) of the wrong type.
        """
        value = self.data.get(key)
        if value is None:
            return default
        result = convert(value, self.at(key), self.problems)
        return default if result is None else result

    def integer(self, key: str, default: int) -> int:
        return self._scalar(key, toInt, default)

    def optionalBoolean(self, key: str) -> bool | None:
        return self._scalar(key, toBool, None)

    def boolean(self, key: str, default: bool) -> bool:
        return self._scalar(key, toBool, default)

    def string(self, key: str, default: str) -> str:
        return self._scalar(key, toStr, default)

    def strings(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        if key not in self.data:
            return tuple(default)
        return toStrList(self.data[key], self.at(key), self.problems)

    def duration(self, key: str, default: int) -> int:
        """
        A Go duration string, in nanoseconds.
        """
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, str):
            try:
                return parseGoDuration(value.strip())
            except ValueError:
                pass
        self.problems.error(
            'must be a duration such as "5s", "1m30s" or "500ms", got ' + describeValue(value),
            self.at(key),
        )
        return default


def toInt(value: Any, path: KeyPath, problems: Problems) -> int | None:
    """
    C{value} as an integer, or L{None} after reporting a type error.
    Booleans are not integers; integral floats are.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    problems.error(f"must be an integer, got {describeValue(value)}", path)
    return None


def toBool(value: Any, path: KeyPath, problems: Problems) -> bool | None:
    """
    C{value} as a boolean; like yaml.v3, C{yes/no/on/off/y/n} are accepted
    (in any case) for compatibility with YAML 1.1 files.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    problems.error(f"must be a boolean, got {describeValue(value)}", path)
    return None


def toStr(value: Any, path: KeyPath, problems: Problems) -> str | None:
    """
    C{value} as a string; other scalars are taken as their text, like
    yaml.v3 does.
    """
    text = _scalarText(value)
    if text is None:
        problems.error(f"must be a string, got {describeValue(value)}", path)
    return text


def toStrList(value: Any, path: KeyPath, problems: Problems) -> tuple[str, ...]:
    """
    C{value} as a list of strings (null is an empty list; a null item is
    C{""}).
    """
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        problems.error(f"must be a list of strings, got {describeValue(value)}", path)
        return ()
    out = []
    for i, item in enumerate(value):
        if item is None:
            out.append("")
            continue
        text = toStr(item, path + (i,), problems)
        if text is not None:
            out.append(text)
    return tuple(out)


def warnUnknownKey(problems: Problems, path: KeyPath, known: Iterable[str]) -> None:
    """
    Warn that the key at C{path} is not one llamaswap knows, suggesting
    the closest known key.
    """
    key = str(path[-1])
    message = f"{formatPath(path)}: unknown key (ignored)"
    suggestion = suggestKey(key, known)
    if suggestion is not None:
        message += f"; did you mean '{suggestion}'?"
    elif len(path) == 1:
        message += "; keys starting with 'x-' are left for your own use, such as YAML anchors"
    problems.warn(message, path)
