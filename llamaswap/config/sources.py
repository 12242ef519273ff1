# -*- test-case-name: test.config.test_sources -*-
"""
Configuration sources: C{--config FILE} and C{--config-dir DIR}, read,
environment-substituted and merged into one tree the way llama-swap does.

Each file gets its C{${env.NAME}} macros substituted on the raw text before
YAML parsing (so C{[${env.KEY}]} parses as a list), then the files are
merged: identity maps (C{models}, C{groups}, ...) may not share a key,
other mappings merge recursively, lists concatenate, equal scalars agree,
null yields to a value, and anything else is a conflict.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

from .errors import KeyPath, Location, Problems, SourceMap
from .yaml12 import (
    YEntry,
    YMapping,
    YNode,
    YScalar,
    YSequence,
    composeYAML,
    goQuote,
    kindNumber,
    toPlain,
)

__all__ = ["readSources", "readText", "substituteEnv", "ENV_MACRO"]

ENV_MACRO = re.compile(r"\$\{env\.([a-zA-Z_][a-zA-Z0-9_]*)\}")

_IDENTITY_MAPS: frozenset[KeyPath] = frozenset(
    [
        ("models",),
        ("groups",),
        ("profiles",),
        ("selectors",),
        ("peers",),
        ("matrix",),
        ("routing", "router", "settings", "groups"),
        ("routing", "router", "settings", "matrix"),
    ]
)


def readSources(
    configPath: str | None,
    configDir: str | None,
    environ: Mapping[str, str],
    problems: Problems,
) -> tuple[dict, SourceMap]:
    """
    Read and merge the configuration sources: C{configPath} first, then the
    C{.yml}/C{.yaml} files directly inside C{configDir} in sorted order.

    Every problem is reported into C{problems}; nothing is raised.

    @return: the merged tree (C{{}} when there is nothing to load) and the
        location of each key, pointing at the file that defined it.
    """
    if not configPath and not configDir:
        problems.error("at least one of --config or --config-dir must be provided")
        return {}, SourceMap()
    paths: list[str] = []
    if configPath:
        paths.append(configPath)
    if configDir:
        try:
            dirFiles = _listYAMLFiles(configDir)
        except OSError as e:
            problems.error(
                f"--config-dir {configDir}: {e.strerror or e}", (), Location(configDir)
            )
            return {}, SourceMap()
        if configPath:
            absConfig = os.path.abspath(configPath)
            if any(os.path.abspath(f) == absConfig for f in dirFiles):
                problems.error(
                    f"--config path {configPath} is also present in --config-dir "
                    f"{configDir}; remove it from one",
                    (),
                    Location(configPath),
                )
                return {}, SourceMap()
        paths.extend(dirFiles)
    if not paths:
        problems.error("no configuration sources found", (), Location(configDir or ""))
        return {}, SourceMap()

    merged: YMapping | None = None
    for path in paths:
        text = _readFile(path, problems)
        if text is None:
            continue
        root = _readSource(text, path, environ, problems)
        if root is None:
            continue
        if merged is None:
            merged = root
        else:
            _mergeMappings(merged, root, (), path, problems)
    default = Location(paths[0]) if len(paths) == 1 else None
    if merged is None:
        return {}, SourceMap(default=default)
    data, sourceMap = toPlain(merged, default)
    return data, sourceMap


def readText(
    text: str, filename: str, environ: Mapping[str, str], problems: Problems
) -> tuple[dict, SourceMap]:
    """
    Read one in-memory configuration source, as L{readSources} reads each
    file.  An empty or comments-only text is the empty configuration.
    """
    root = _readSource(text, filename, environ, problems)
    data, sourceMap = toPlain(root, Location(filename))
    return (data if root is not None else {}), sourceMap


def _listYAMLFiles(directory: str) -> list[str]:
    """
    The non-directory C{*.yml}/C{*.yaml} entries directly inside
    C{directory}, sorted by path.

    @raise OSError: if the directory cannot be listed.
    """
    with os.scandir(directory) as entries:
        names = [
            os.path.join(directory, entry.name)
            for entry in entries
            if not entry.is_dir(follow_symlinks=False)
            and entry.name.endswith((".yml", ".yaml"))
        ]
    return sorted(names)


def _readFile(path: str, problems: Problems) -> str | None:
    """
    The UTF-8 text of C{path}, or L{None} (reported) if unreadable.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        problems.error(f"failed to read config {path}: {e.strerror or e}", (), Location(path))
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        problems.error(
            f"failed to parse config {path}: invalid UTF-8 at byte {e.start}",
            (),
            Location(path, line),
        )
        return None


def _readSource(
    text: str, filename: str, environ: Mapping[str, str], problems: Problems
) -> YMapping | None:
    """
    Substitute environment macros in one source and parse it.

    @return: its top-level mapping, or L{None} when it is empty, only
        comments, unparsable or not a mapping (the last two reported).
    """
    text = substituteEnv(text, filename, environ, problems)
    root = composeYAML(text, filename, problems)
    if root is None or isinstance(root, YScalar) and root.value is None:
        return None
    if not isinstance(root, YMapping):
        problems.error(
            f"config {filename}: top-level YAML must be a mapping", (), root.location
        )
        return None
    return root


def substituteEnv(
    text: str, filename: str, environ: Mapping[str, str], problems: Problems
) -> str:
    """
    Replace every C{${env.NAME}} in C{text} by the variable's value, with
    C{\\} and C{"} escaped for double-quoted YAML.

    Which variables are needed is decided from the parsed document, so
    macros in YAML comments do not have to be set; when the text does not
    parse, the raw text is scanned instead (as llama-swap does, so an unset
    variable is reported before a YAML error it may cause).  Each unset
    variable, or one holding a newline, carriage return or NUL, is reported
    with its line and replaced by its bare name, so that the rest of the
    source still parses and can be checked.  Line numbers never change.
    """
    result = text
    for name, line in _envUses(text, filename).items():
        location = Location(filename, line)
        value = environ.get(name)
        if value is None:
            problems.error(f"environment variable '{name}' is not set", (), location)
            value = name
        elif any(c in value for c in "\n\r\x00"):
            problems.error(
                f"environment variable '{name}' contains newlines or null bytes "
                "which are not allowed in YAML substitution",
                (),
                location,
            )
            value = name
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        result = result.replace("${env." + name + "}", escaped)
    return result


def _envUses(text: str, filename: str) -> dict[str, int]:
    """
    The environment variables C{text} really uses, in order of first use,
    with the line of that use.
    """
    if "${env." not in text:
        return {}
    silent = Problems()
    root = composeYAML(text, filename, silent)
    uses: dict[str, int] = {}
    if root is None or silent.hasErrors():
        for match in ENV_MACRO.finditer(text):
            uses.setdefault(match.group(1), text.count("\n", 0, match.start()) + 1)
        return uses

    def note(value: str, line: int, raw: str) -> None:
        """
        Record each variable used in C{value}, which starts at C{line}.
        """
        for match in ENV_MACRO.finditer(value):
            offset = raw.find(match.group(0))
            found = line + (raw.count("\n", 0, offset) if offset >= 0 else 0)
            if found < uses.get(match.group(1), found + 1):
                uses[match.group(1)] = found

    def walk(node: YNode) -> None:
        """
        Note the variables used in every key and string under C{node}.
        """
        if isinstance(node, YMapping):
            for key, entry in node.entries.items():
                note(key, entry.location.line or 1, key)
                walk(entry.value)
        elif isinstance(node, YSequence):
            for item in node.items:
                walk(item)
        elif isinstance(node.value, str):
            note(node.value, node.location.line or 1, text[node.start : node.end])

    walk(root)
    return dict(sorted(uses.items(), key=lambda item: item[1]))


def _isNull(node: YNode) -> bool:
    """
    Whether C{node} is a YAML null (empty, C{~} or C{null}).
    """
    return isinstance(node, YScalar) and node.value is None and node.tag == "!!null"


def _mergeMappings(
    dst: YMapping, src: YMapping, path: KeyPath, srcFile: str, problems: Problems
) -> None:
    """
    Merge C{src} into C{dst} in place: shared keys merge where they are,
    keys only in C{src} are appended in its order.
    """
    for key, srcEntry in src.entries.items():
        childPath = path + (key,)
        dstEntry = dst.entries.get(key)
        if dstEntry is None:
            dst.entries[key] = srcEntry
        elif childPath in _IDENTITY_MAPS:
            _mergeIdentityMap(dstEntry, srcEntry, childPath, srcFile, problems)
        else:
            _mergeValue(dstEntry, srcEntry, childPath, srcFile, problems)


def _mergeIdentityMap(
    dst: YEntry, src: YEntry, path: KeyPath, srcFile: str, problems: Problems
) -> None:
    """
    Merge a map whose keys name entities (models, groups, peers...): a key
    in both is a duplicate entity split across files.
    """
    if _isNull(src.value):
        return
    if _isNull(dst.value):
        dst.value, dst.location = src.value, src.location
        return
    if not isinstance(dst.value, YMapping) or not isinstance(src.value, YMapping):
        problems.error(
            f"conflict at {goQuote(_dotted(path))}: expected a mapping, introduced by {srcFile}",
            path,
            src.location,
        )
        return
    for key, entry in src.value.entries.items():
        if key in dst.value.entries:
            problems.error(
                f"duplicate {path[-1]} {goQuote(key)} found in {srcFile} "
                "(already defined in another config source)",
                path + (key,),
                entry.location,
            )
        else:
            dst.value.entries[key] = entry


def _mergeValue(
    dst: YEntry, src: YEntry, path: KeyPath, srcFile: str, problems: Problems
) -> None:
    """
    Merge one shared, non-identity key of two sources.
    """
    left, right = dst.value, src.value
    if isinstance(left, YMapping) and isinstance(right, YMapping):
        _mergeMappings(left, right, path, srcFile, problems)
    elif isinstance(left, YSequence) and isinstance(right, YSequence):
        left.items.extend(right.items)
    elif _isNull(left):
        dst.value, dst.location = right, src.location
    elif _isNull(right):
        pass
    elif isinstance(left, YScalar) and isinstance(right, YScalar):
        if left.text != right.text or left.tag != right.tag:
            problems.error(
                f"conflict at {goQuote(_dotted(path))}: {srcFile} sets a different value "
                "than a previous source",
                path,
                src.location,
            )
    else:
        problems.error(
            f"conflict at {goQuote(_dotted(path))}: incompatible YAML node kinds "
            f"(kind {kindNumber(left)} vs {kindNumber(right)}) introduced by {srcFile}",
            path,
            src.location,
        )


def _dotted(path: KeyPath) -> str:
    """
    C{path} joined with dots, as llama-swap names merge paths.
    """
    return ".".join(str(part) for part in path)
