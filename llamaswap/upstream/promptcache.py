# -*- test-case-name: test.upstream.test_promptcache -*-
"""
The prompt cache's pure rules: which commands it applies to, how saved
slot files are named and keyed, and which files to delete.

A saved KV cache is only valid for the exact model definition that wrote
it, so its files are keyed by a hash of the effective command (minus the
listening address and the save path, which do not change the cache) and
the identity of the model file (real path, size, mtime).  A different key
for the same model means the old files are stale.

File names (llama-server accepts no C{/} and no C{..}):
C{<tag>.<key>.slot<N>.kv}, written first as C{<...>.kv.tmp-<n>} and
renamed once the save succeeded, so a crash mid-save never leaves a final
name a restore would read.  C{<tag>} is the model ID made filename-safe
plus a short hash of it (two IDs never share a tag).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Iterable, Sequence

from attrs import frozen

SLOT_SAVE_PATH = "--slot-save-path"
#: Options whose value does not change what a KV cache holds.
_ADDRESS_OPTIONS = frozenset({"--port", "--host", SLOT_SAVE_PATH})
_MODEL_OPTIONS = ("-m", "--model")
_SUFFIX = ".kv"
_TEMP = ".tmp-"
_LLAMA_SERVER = re.compile(r"^llama-server(\.exe)?$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def isLlamaServer(argv: Sequence[str]) -> bool:
    """
    Whether the command runs llama.cpp's C{llama-server} (directly, or
    through a wrapper such as C{env} or C{nice} that names it).
    """
    return any(_LLAMA_SERVER.match(os.path.basename(word)) for word in argv)


def optionValue(argv: Sequence[str], names: Iterable[str]) -> str | None:
    """
    The value of the last C{NAME VALUE} or C{NAME=VALUE} in C{argv}.
    """
    names = tuple(names)
    found = None
    for i, word in enumerate(argv):
        for name in names:
            if word == name and i + 1 < len(argv):
                found = argv[i + 1]
            elif word.startswith(name + "="):
                found = word[len(name) + 1 :]
    return found


def withSlotSavePath(argv: Sequence[str], directory: str) -> tuple[tuple[str, ...], str]:
    """
    C{argv} with C{--slot-save-path directory} appended unless it already
    has one; and the directory the server will actually save into.
    """
    existing = optionValue(argv, (SLOT_SAVE_PATH,))
    if existing is not None:
        return tuple(argv), existing
    return (*argv, SLOT_SAVE_PATH, directory), directory


@frozen
class FileIdentity:
    """
    What identifies a model file's content cheaply.
    """

    path: str
    size: int
    mtimeNs: int


def modelFileIdentity(argv: Sequence[str], cwd: str | None = None) -> FileIdentity | None:
    """
    The identity of the C{-m}/C{--model} file, or C{None} when the command
    names none or it cannot be read.
    """
    path = optionValue(argv, _MODEL_OPTIONS)
    if not path:
        return None
    full = os.path.realpath(os.path.join(cwd or os.getcwd(), os.path.expanduser(path)))
    try:
        st = os.stat(full)
    except OSError:
        return None
    return FileIdentity(full, st.st_size, st.st_mtime_ns)


def cacheKey(argv: Sequence[str], identity: FileIdentity | None) -> str:
    """
    The key of the caches written by C{argv} loading the file C{identity}.
    """
    words: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in _ADDRESS_OPTIONS:
            skip = True
            continue
        if word.split("=", 1)[0] in _ADDRESS_OPTIONS:
            continue
        words.append(word)
    ident = None if identity is None else [identity.path, identity.size, identity.mtimeNs]
    data = json.dumps([words, ident], separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:20]


def modelTag(modelID: str) -> str:
    """
    A filename-safe tag unique to C{modelID}.
    """
    safe = _UNSAFE.sub("_", modelID).strip("_")[:40] or "model"
    digest = hashlib.sha256(modelID.encode("utf-8")).hexdigest()[:8]
    return f"{safe}-{digest}"


def finalName(tag: str, key: str, slot: int) -> str:
    """
    The name a finished save of C{slot} has.
    """
    return f"{tag}.{key}.slot{slot}{_SUFFIX}"


def tempName(tag: str, key: str, slot: int, serial: int) -> str:
    """
    The name a save of C{slot} is written under until it succeeded.
    """
    return f"{finalName(tag, key, slot)}{_TEMP}{serial}"


@frozen
class CacheName:
    """
    A parsed cache file name.
    """

    tag: str
    key: str
    slot: int
    temporary: bool


_NAME = re.compile(
    r"^(?P<tag>[A-Za-z0-9_-]+)\.(?P<key>[0-9a-f]+)\.slot(?P<slot>\d+)\.kv(?P<temp>\.tmp-\d+)?$"
)


def parseName(name: str) -> CacheName | None:
    """
    Parse a file name written by the prompt cache; C{None} for others.
    """
    match = _NAME.match(name)
    if match is None:
        return None
    return CacheName(
        match.group("tag"), match.group("key"), int(match.group("slot")), bool(match.group("temp"))
    )


@frozen
class CacheFile:
    """
    A file in the cache directory: its name, size and last use (mtime).
    """

    name: str
    size: int
    lastUsed: float


def staleFiles(files: Iterable[CacheFile], tag: str, key: str) -> list[str]:
    """
    The files of model C{tag} that must go: caches under another key, and
    leftover temporary files (a save that crashed or is abandoned).
    """
    stale = []
    for f in files:
        parsed = parseName(f.name)
        if parsed is None or parsed.tag != tag:
            continue
        if parsed.key != key or parsed.temporary:
            stale.append(f.name)
    return stale


def restorable(files: Iterable[CacheFile], tag: str, key: str, slots: int) -> dict[int, str]:
    """
    The finished cache file of each slot below C{slots} for C{tag}/C{key}.
    """
    found: dict[int, str] = {}
    for f in files:
        parsed = parseName(f.name)
        if (
            parsed is not None
            and not parsed.temporary
            and parsed.tag == tag
            and parsed.key == key
            and parsed.slot < slots
        ):
            found[parsed.slot] = f.name
    return dict(sorted(found.items()))


def evictionPlan(files: Iterable[CacheFile], maxBytes: int, keep: Iterable[str] = ()) -> list[str]:
    """
    The least recently used files to delete so that the rest fit in
    C{maxBytes}; files in C{keep} (a save in progress) go last, only when
    nothing else is left.  Temporary files not in C{keep} go first.
    """
    keepSet = set(keep)
    files = list(files)
    total = sum(f.size for f in files)
    if total <= maxBytes:
        return []

    def order(f: CacheFile) -> tuple[int, int, float, str]:
        parsed = parseName(f.name)
        temporary = parsed is not None and parsed.temporary
        return (f.name in keepSet, not temporary, f.lastUsed, f.name)

    plan = []
    for f in sorted(files, key=order):
        if total <= maxBytes:
            break
        plan.append(f.name)
        total -= f.size
    return plan
