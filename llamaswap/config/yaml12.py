# -*- test-case-name: test.config.test_yaml12 -*-
"""
YAML read the way llama-swap's Go C{gopkg.in/yaml.v3} reads it.

PyYAML implements YAML 1.1, where C{yes}, C{on} and C{0777} mean
something else than they do to yaml.v3.  A configuration file has to mean
the same thing to llamaswap as to llama-swap, so PyYAML is only used to
scan, parse and compose; every scalar is then resolved here with yaml.v3's
rules, anchors and C{<<} merge keys are materialised into independent
copies, duplicate keys are reported, and every key path gets a line number.

The result is first a small node tree (L{YMapping}, L{YSequence},
L{YScalar}), which L{llamaswap.config.sources} merges across files, then
plain data (L{toPlain}).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import math
import re
from typing import Any, Union

import yaml
from attrs import define
from yaml.composer import ComposerError
from yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import KeyPath, Location, PathPart, Problems, SourceMap
from .goquote import goQuote

__all__ = [
    "YScalar",
    "YEntry",
    "YMapping",
    "YSequence",
    "YNode",
    "composeYAML",
    "goQuote",
    "kindNumber",
    "loadYAML",
    "resolveScalar",
    "toPlain",
]

# Go's yaml.Kind numbers, which appear in llama-swap's merge messages.
KIND_SEQUENCE = 2
KIND_MAPPING = 4
KIND_SCALAR = 8

_MAX_NODES = 250_000
_INT64 = 2**63
_UINT64 = 2**64

_CORE = "tag:yaml.org,2002:"
_PLAIN = "tag:llamaswap,2024:plain"

_NULLS = frozenset(["", "~", "null", "Null", "NULL"])
_TRUES = frozenset(["true", "True", "TRUE"])
_FALSES = frozenset(["false", "False", "FALSE"])
_SPECIAL_FLOATS = {
    **{s: math.nan for s in (".nan", ".NaN", ".NAN")},
    **{s: math.inf for s in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{s: -math.inf for s in ("-.inf", "-.Inf", "-.INF")},
}
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_DIGITS = {
    16: re.compile(r"[0-9a-fA-F]+"),
    10: re.compile(r"[0-9]+"),
    8: re.compile(r"[0-7]+"),
    2: re.compile(r"[01]+"),
}
_DATE = r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})"
_CLOCK = r"([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(\.[0-9]+)?"
_TIMESTAMPS = [
    re.compile(_DATE),
    re.compile(_DATE + "[Tt]" + _CLOCK + r"(Z|[-+][0-9]{2}:[0-9]{2})"),
    re.compile(_DATE + " " + _CLOCK),
]


@define
class YScalar:
    """
    A scalar, resolved as yaml.v3 resolves it.

    @ivar value: the Python value (C{None}, C{bool}, C{int}, C{float} or
        C{str}; timestamps stay strings, as yaml.v3 leaves them when
        decoding into C{any}).
    @ivar text: the scalar's text after unquoting, which is what llama-swap
        compares when merging sources.
    @ivar tag: the short resolved tag (C{!!str}, C{!!int}, ...).
    @ivar location: where the scalar starts.
    @ivar start: offset of the scalar in the source text.
    @ivar end: offset just past the scalar in the source text.
    """

    value: Any
    text: str
    tag: str
    location: Location
    start: int = 0
    end: int = 0


@define
class YEntry:
    """
    One key of a mapping: where the key is written, and its value.
    """

    location: Location
    value: "YNode"


@define
class YMapping:
    """
    A mapping with string keys in source order.
    """

    entries: dict[str, YEntry]
    location: Location


@define
class YSequence:
    """
    A sequence; each item carries its own location.
    """

    items: list["YNode"]
    location: Location


YNode = Union[YScalar, YMapping, YSequence]


def kindNumber(node: YNode) -> int:
    """
    The yaml.v3 C{Kind} number of C{node}, used in merge conflict messages.
    """
    if isinstance(node, YMapping):
        return KIND_MAPPING
    if isinstance(node, YSequence):
        return KIND_SEQUENCE
    return KIND_SCALAR


def resolveScalar(text: str) -> tuple[str, Any]:
    """
    Resolve an untagged plain scalar exactly as yaml.v3's C{resolve} does.

    Booleans are only C{true}/C{false} in three spellings, null is C{~},
    C{null} or empty, integers follow Go's C{strconv.ParseInt(s, 0, 64)}
    after removing underscores (so C{0x1F}, C{0o17}, C{0b11} and the legacy
    C{0777} are integers), then unsigned 64-bit integers, then YAML-style
    floats; anything else, C{1:30} and C{2024-01-01} included, is a string.

    @return: the short tag and the Python value.
    """
    if text in _NULLS:
        return "!!null", None
    if text in _TRUES:
        return "!!bool", True
    if text in _FALSES:
        return "!!bool", False
    if text in _SPECIAL_FLOATS:
        return "!!float", _SPECIAL_FLOATS[text]
    if text == "<<":
        return "!!merge", text
    first = text[0]
    if first == ".":
        if _DOT_FLOAT.fullmatch(text):
            value = float(text)
            if not math.isinf(value):
                return "!!float", value
        return "!!str", text
    if not (first.isascii() and (first.isdigit() or first in "+-")):
        return "!!str", text
    if _isTimestamp(text):
        return "!!timestamp", text
    plain = text.replace("_", "")
    number = _parseGoInt(plain)
    if number is not None:
        return "!!int", number
    if _YAML_FLOAT.fullmatch(plain):
        value = float(plain)
        if not math.isinf(value):
            return "!!float", value
    return "!!str", text


def _parseGoInt(text: str) -> int | None:
    """
    C{strconv.ParseInt(text, 0, 64)}, falling back to
    C{strconv.ParseUint(text, 0, 64)}; L{None} when neither accepts it.
    """
    signed = text[:1] in ("+", "-")
    body = text[1:] if signed else text
    if body[:1] == "0" and len(body) > 1:
        prefix = body[1].lower()
        base, digits = {"x": (16, body[2:]), "o": (8, body[2:]), "b": (2, body[2:])}.get(
            prefix, (8, body[1:])
        )
    else:
        base, digits = 10, body
    if not _DIGITS[base].fullmatch(digits):
        return None
    value = int(digits, base)
    if text.startswith("-"):
        value = -value
    if -_INT64 <= value < _INT64:
        return value
    if not signed and value < _UINT64:
        return value
    return None


def _isTimestamp(text: str) -> bool:
    """
    Whether yaml.v3 would tag C{text} C{!!timestamp}; such scalars still
    decode to strings, the tag only matters when merging sources.
    """
    for pattern in _TIMESTAMPS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        year, month, day = (int(g) for g in match.groups()[:3])
        if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
            return False
        if len(match.groups()) > 3:
            hour, minute, second = (int(g) for g in match.groups()[3:6])
            if hour > 23 or minute > 59 or second > 59:
                return False
        return True
    return False


class _Loader(yaml.SafeLoader):
    """
    PyYAML's safe scanner and parser, composing nodes with yaml.v3's rules:
    plain scalars are left for L{resolveScalar}, and an anchor may be
    redefined (a later alias refers to the latest definition).
    """

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        """
        Mark untagged plain scalars for L{resolveScalar}; quoted ones are
        strings.
        """
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _CORE + "str"
        result: str = super().resolve(kind, value, implicit)
        return result

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        """
        Compose one node, letting an anchor be redefined (as yaml.v3 does).
        """
        if self.check_event(AliasEvent):
            event = self.get_event()
            if event.anchor not in self.anchors:
                raise ComposerError(
                    None, None, f"unknown anchor '{event.anchor}' referenced", event.start_mark
                )
            found: Node = self.anchors[event.anchor]
            return found
        anchor = self.peek_event().anchor
        if anchor is not None:
            self.anchors.pop(anchor, None)
        self.descend_resolver(parent, index)
        if self.check_event(ScalarEvent):
            node = self.compose_scalar_node(anchor)
        elif self.check_event(SequenceStartEvent):
            node = self.compose_sequence_node(anchor)
        else:
            assert self.check_event(MappingStartEvent)
            node = self.compose_mapping_node(anchor)
        self.ascend_resolver()
        return node


class _TooManyNodes(Exception):
    """
    Alias expansion exceeded L{_MAX_NODES}.
    """


class _Builder:
    """
    Turns PyYAML's composed node graph into an independent L{YNode} tree.
    """

    def __init__(self, filename: str, problems: Problems) -> None:
        self.filename = filename
        self.problems = problems
        self.budget = _MAX_NODES
        self.active: set[int] = set()
        self.checked: set[int] = set()

    def location(self, node: Node) -> Location:
        """
        Where C{node} starts in this source.
        """
        return Location(self.filename, node.start_mark.line + 1)

    def error(self, message: str, path: KeyPath, node: Node) -> None:
        """
        Report C{message} about C{path}, at C{node}'s line.
        """
        self.problems.error(message, path, self.location(node))

    def build(self, node: Node, path: KeyPath) -> YNode:
        """
        Materialise C{node} (found at C{path}) as an independent L{YNode}.
        """
        self.budget -= 1
        if self.budget < 0:
            raise _TooManyNodes()
        if id(node) in self.active:
            self.error("anchor value contains itself", path, node)
            return YScalar(None, "", "!!null", self.location(node))
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                items = [self.build(child, path + (i,)) for i, child in enumerate(node.value)]
                return YSequence(items, self.location(node))
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode, path: KeyPath) -> YScalar:
        """
        Build a scalar, resolved as yaml.v3 resolves it.
        """
        text: str = node.value
        tag, value = self.resolve(node, path)
        return YScalar(
            value,
            text,
            tag,
            self.location(node),
            node.start_mark.index,
            node.end_mark.index,
        )

    def resolve(self, node: ScalarNode, path: KeyPath) -> tuple[str, Any]:
        """
        The short tag and value of a scalar, honouring explicit tags as
        yaml.v3 does (C{!!str 12} is a string, C{!!float 1} a float).
        """
        text: str = node.value
        if node.tag == _PLAIN:
            if node.style:
                return "!!str", text
            tag, value = resolveScalar(text)
            return ("!!str", text) if tag == "!!merge" else (tag, value)
        tag = _shortTag(node.tag)
        if tag in ("!!int", "!!float", "!!bool"):
            found, value = resolveScalar(text)
            if found == tag:
                return tag, value
            if tag == "!!float" and found == "!!int":
                return tag, float(value)
            self.error(f"cannot decode {found} `{text}` as a {tag}", path, node)
            return "!!str", text
        if tag == "!!null":
            return tag, None
        if tag == "!!binary":
            try:
                raw = base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                self.error("!!binary value contains invalid base64 data", path, node)
                return "!!str", text
            return "!!str", raw.decode("utf-8", "replace")
        return tag, text

    def keyOf(self, node: Node, path: KeyPath) -> str | None:
        """
        The string a mapping key becomes when yaml.v3 decodes into
        C{map[string]any}: the scalar's text.  Null and collection keys are
        reported and dropped.
        """
        if not isinstance(node, ScalarNode):
            self.error("invalid map key: keys must be scalars", path, node)
            return None
        if node.tag == _PLAIN and not node.style and node.value in _NULLS:
            self.problems.warn(
                "mapping key is null; the entry is ignored", path, self.location(node)
            )
            return None
        text: str = node.value
        return text

    def checkDuplicates(self, node: MappingNode, path: KeyPath) -> None:
        """
        Report each key written twice in C{node}, as yaml.v3 does.
        """
        if id(node) in self.checked:
            return
        self.checked.add(id(node))
        seen: dict[tuple[type, str], int] = {}
        for keyNode, _ in node.value:
            identity = (type(keyNode), keyNode.value if isinstance(keyNode, ScalarNode) else "")
            line = keyNode.start_mark.line + 1
            if identity in seen:
                name = identity[1]
                self.error(
                    f"mapping key {goQuote(name)} already defined at line {seen[identity]}",
                    path + (name,),
                    keyNode,
                )
            else:
                seen[identity] = line

    def mapping(self, node: MappingNode, path: KeyPath) -> YMapping:
        """
        Build a mapping: explicit keys in order, C{<<} merges where written.
        """
        self.checkDuplicates(node, path)
        explicit = {
            keyNode.value
            for keyNode, _ in node.value
            if isinstance(keyNode, ScalarNode) and not _isMerge(keyNode)
        }
        entries: dict[str, YEntry] = {}
        for keyNode, valueNode in node.value:
            if _isMerge(keyNode):
                for key, entry in self.merged(valueNode, path).items():
                    if key not in explicit and key not in entries:
                        entries[key] = entry
                continue
            key = self.keyOf(keyNode, path)
            if key is None or key in entries:
                continue
            entries[key] = YEntry(self.location(keyNode), self.build(valueNode, path + (key,)))
        return YMapping(entries, self.location(node))

    def merged(self, node: Node, path: KeyPath) -> dict[str, YEntry]:
        """
        The entries a C{<<} merge key brings in; with a sequence of
        mappings the earlier mapping wins, as in yaml.v3.
        """
        sources = node.value if isinstance(node, SequenceNode) else [node]
        result: dict[str, YEntry] = {}
        for source in sources:
            if not isinstance(source, MappingNode):
                self.error(
                    "map merge requires map or sequence of maps as the value", path, source
                )
                continue
            built = self.build(source, path)
            assert isinstance(built, YMapping)
            for key, entry in built.entries.items():
                result.setdefault(key, entry)
        return result


def _expandedSize(node: Node, sizes: dict[int, int]) -> int:
    """
    How many nodes materialising every alias under C{node} would create,
    computed without materialising them (a guard against alias bombs).
    """
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = 1  # a cycle counts once; the builder reports it
    total = 1
    if isinstance(node, SequenceNode):
        total += sum(_expandedSize(child, sizes) for child in node.value)
    elif isinstance(node, MappingNode):
        total += sum(
            _expandedSize(key, sizes) + _expandedSize(value, sizes) for key, value in node.value
        )
    sizes[id(node)] = total
    return total


def _isMerge(node: Node) -> bool:
    """
    Whether C{node} is a C{<<} merge key (plain, or tagged C{!!merge}).
    """
    return (
        isinstance(node, ScalarNode)
        and node.value == "<<"
        and (
            (node.tag == _PLAIN and not node.style)
            or node.tag == _CORE + "merge"
        )
    )


def _shortTag(tag: str) -> str:
    """
    C{tag:yaml.org,2002:int} as C{!!int}; other tags unchanged.
    """
    if tag.startswith(_CORE):
        return "!!" + tag[len(_CORE):]
    return tag


def composeYAML(text: str, filename: str, problems: Problems) -> YNode | None:
    """
    Parse the first document of C{text} into a L{YNode} tree.

    Problems (syntax errors, duplicate keys, bad merges) are reported with
    their line; nothing is raised.

    @return: the root node, or L{None} for an empty document or one that
        could not be parsed at all.
    """
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1
        problems.error(f"YAML syntax error: {e.reason}", (), Location(filename, line))
        return None
    try:
        try:
            if not loader.check_node():
                return None
            root = loader.get_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark is not None else None
            what = e.problem or e.context or "invalid YAML"
            if e.context and e.problem:
                what = f"{e.problem} ({e.context})"
            problems.error(f"YAML syntax error: {what}", (), Location(filename, line))
            return None
        except yaml.reader.ReaderError as e:
            line = text[: e.position].count("\n") + 1
            problems.error(f"YAML syntax error: {e.reason}", (), Location(filename, line))
            return None
        except yaml.YAMLError as e:
            problems.error(f"YAML syntax error: {e}", (), Location(filename))
            return None
        except RecursionError:
            problems.error("YAML document is nested too deeply", (), Location(filename))
            return None
    finally:
        loader.dispose()
    if _expandedSize(root, {}) > _MAX_NODES:
        problems.error("document contains excessive aliasing", (), Location(filename))
        return None
    builder = _Builder(filename, problems)
    try:
        return builder.build(root, ())
    except _TooManyNodes:
        problems.error("document contains excessive aliasing", (), Location(filename))
    except RecursionError:
        problems.error("YAML document is nested too deeply", (), Location(filename))
    return None


def toPlain(node: YNode | None, default: Location | None = None) -> tuple[Any, SourceMap]:
    """
    Convert a node tree to plain data (dicts in source order, lists,
    scalars) and a L{SourceMap} giving the location of every mapping key
    and sequence item.
    """
    locations: dict[KeyPath, Location] = {}

    def convert(current: YNode, path: tuple[PathPart, ...]) -> Any:
        """
        Convert C{current}, recording locations under C{path}.
        """
        if isinstance(current, YMapping):
            result = {}
            for key, entry in current.entries.items():
                locations[path + (key,)] = entry.location
                result[key] = convert(entry.value, path + (key,))
            return result
        if isinstance(current, YSequence):
            items = []
            for i, item in enumerate(current.items):
                locations[path + (i,)] = item.location
                items.append(convert(item, path + (i,)))
            return items
        return current.value

    data = None if node is None else convert(node, ())
    return data, SourceMap(locations, default)


def loadYAML(text: str, filename: str, problems: Problems) -> tuple[Any, SourceMap]:
    """
    Load one YAML document as llama-swap would: yaml.v3 scalar meanings,
    materialised anchors and merge keys, duplicate keys reported.

    @param filename: the name used in locations.
    @return: the data (L{None} for an empty document or unparsable text)
        and where each key path is.
    """
    return toPlain(composeYAML(text, filename, problems), Location(filename))
