# -*- test-case-name: test.config.test_ggufsize -*-
"""
How much memory a llama.cpp model will take, estimated from its GGUF file
and its command line, without loading it.

Only the GGUF key/value header is read (tensor data is never touched, and
big arrays such as the tokenizer vocabulary are skipped, not decoded):

  estimate = weights (the file size, every part of a split model, plus an
             C{--mmproj} projector)
           + KV cache (2 bytes per f16 element by default:
             n_ctx x sum over layers of (K + V) width, where a layer's K
             width is C{head_count_kv x key_length})
           + a fixed overhead (L{OVERHEAD} plus L{OVERHEAD_FRACTION} of
             the weights, for the process and its compute buffers).

C{n_ctx} is the command's C{-c}/C{--ctx-size}; without one (or with 0)
llama-server uses the model's training context (C{<arch>.context_length}),
and so does the estimate.  C{-ctk}/C{-ctv} cache types are honoured.
"""

from __future__ import annotations

import os
import re
import struct
from typing import IO, Any, Mapping, Sequence

from attrs import frozen

__all__ = [
    "GGUFError",
    "ModelEstimate",
    "OVERHEAD",
    "estimateCommand",
    "estimateFile",
    "kvCacheBytes",
    "modelPathOf",
    "readHeader",
    "splitParts",
]

#: The fixed part of the overhead: the server process itself.
OVERHEAD = 16 * 1024**2
#: The proportional part of the overhead (compute buffers, scratch).
OVERHEAD_FRACTION = 0.05

#: The header keys the estimate needs (C{{arch}} is the architecture).
_WANTED = (
    "general.architecture",
    "{arch}.block_count",
    "{arch}.context_length",
    "{arch}.embedding_length",
    "{arch}.attention.head_count",
    "{arch}.attention.head_count_kv",
    "{arch}.attention.key_length",
    "{arch}.attention.value_length",
)

_WANTED_SUFFIXES = tuple(k.rpartition("}")[2] for k in _WANTED if k.startswith("{arch}"))

#: Bytes per element of each KV cache type (block formats: bytes/block size).
_CACHE_TYPE_BYTES = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q4_0": 18 / 32,
    "q4_1": 20 / 32,
    "iq4_nl": 18 / 32,
    "q5_0": 22 / 32,
    "q5_1": 24 / 32,
}

_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


class GGUFError(ValueError):
    """
    The file is not a GGUF file this reader understands.
    """


# ------------------------------------------------------------------ header

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING = 8
_ARRAY = 9
_U64 = struct.Struct("<Q")


class _Reader:
    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def take(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise GGUFError("truncated GGUF header")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.unpack("<Q")).decode("utf-8", "replace")

    def skipString(self) -> None:
        self.stream.seek(self.unpack("<Q"), os.SEEK_CUR)

    def value(self, kind: int, keep: bool) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            if keep:
                return self.string()
            self.skipString()
            return None
        if kind == _ARRAY:
            itemKind = self.unpack("<I")
            count = self.unpack("<Q")
            if not keep or itemKind == _STRING:
                self._skipArray(itemKind, count)
                return None
            return [self.value(itemKind, True) for _ in range(count)]
        raise GGUFError(f"unknown GGUF value type {kind}")

    def _skipArray(self, kind: int, count: int) -> None:
        if kind in _SCALARS:
            self.stream.seek(struct.calcsize(_SCALARS[kind]) * count, os.SEEK_CUR)
        elif kind == _STRING:
            # The vocabulary: often 100k+ strings, so the loop is kept tight.
            read, seek, unpack = self.stream.read, self.stream.seek, _U64.unpack
            for _ in range(count):
                length = read(8)
                if len(length) != 8:
                    raise GGUFError("truncated GGUF header")
                seek(unpack(length)[0], os.SEEK_CUR)
        else:
            for _ in range(count):
                self.value(kind, False)


def readHeader(stream: IO[bytes]) -> dict[str, Any]:
    """
    The header values the estimate needs, by key (C{{arch}} filled in);
    other keys are skipped without decoding.

    @raise GGUFError: not a GGUF file (or a truncated one).
    """
    reader = _Reader(stream)
    if reader.take(4) != b"GGUF":
        raise GGUFError("not a GGUF file (bad magic)")
    version = reader.unpack("<I")
    if version == 1:
        reader.unpack("<I")
        count = reader.unpack("<I")
    elif version in (2, 3):
        reader.unpack("<Q")
        count = reader.unpack("<Q")
    else:
        raise GGUFError(f"unsupported GGUF version {version}")
    # The architecture key comes first in practice, but the format does not
    # promise it: keep every key that may be wanted, pick them at the end.
    found: dict[str, Any] = {}
    for _ in range(count):
        key = reader.string()
        kind = reader.unpack("<I")
        keep = key == "general.architecture" or key.endswith(_WANTED_SUFFIXES)
        value = reader.value(kind, keep)
        if keep:
            found[key] = value
    arch = found.get("general.architecture")
    if not isinstance(arch, str):
        return {}
    header: dict[str, Any] = {"arch": arch}
    for template in _WANTED:
        key = template.format(arch=arch)
        if key in found:
            header[key] = found[key]
    return header


# ------------------------------------------------------------------ estimate


@frozen
class ModelEstimate:
    """
    A model's estimated memory, in bytes, with its parts.
    """

    weights: int
    kvCache: int
    overhead: int
    context: int

    @property
    def total(self) -> int:
        return self.weights + self.kvCache + self.overhead


def splitParts(path: str) -> list[str]:
    """
    Every part of the split model C{path} names (C{x-00001-of-00003.gguf}
    and its siblings that exist), or C{[path]}.
    """
    match = _SPLIT.match(os.path.basename(path))
    if match is None:
        return [path]
    directory = os.path.dirname(path)
    count = int(match["count"])
    parts = []
    for index in range(1, count + 1):
        name = f"{match['stem']}-{index:05d}-of-{match['count']}.gguf"
        candidate = os.path.join(directory, name)
        if os.path.exists(candidate):
            parts.append(candidate)
    return parts or [path]


def _perLayer(value: Any, layers: int) -> list[int]:
    if isinstance(value, list):
        return [int(v) for v in value[:layers]] + [0] * max(0, layers - len(value))
    return [int(value)] * layers


def kvCacheBytes(
    header: Mapping[str, Any], context: int, typeK: str = "f16", typeV: str = "f16"
) -> int:
    """
    The KV cache of C{context} tokens for the model C{header} describes.
    """
    arch = header.get("arch", "")
    layers = int(header.get(f"{arch}.block_count", 0))
    embedding = int(header.get(f"{arch}.embedding_length", 0))
    heads = header.get(f"{arch}.attention.head_count", 0)
    headsKV = header.get(f"{arch}.attention.head_count_kv", heads)
    headList = _perLayer(heads, layers)
    kvList = _perLayer(headsKV, layers)
    total = 0.0
    for h, hkv in zip(headList, kvList):
        if not h:
            continue
        keyLength = int(header.get(f"{arch}.attention.key_length", embedding // h))
        valueLength = int(header.get(f"{arch}.attention.value_length", embedding // h))
        total += hkv * keyLength * _CACHE_TYPE_BYTES.get(typeK, 2.0)
        total += hkv * valueLength * _CACHE_TYPE_BYTES.get(typeV, 2.0)
    return int(total * context)


def estimateFile(
    path: str,
    context: int = 0,
    *,
    typeK: str = "f16",
    typeV: str = "f16",
    extra: Sequence[str] = (),
) -> ModelEstimate:
    """
    The estimate for the GGUF model at C{path} (the first part of a split
    model) with a C{context}-token KV cache (0: the model's own).

    @param extra: other files the server loads (an C{--mmproj}).
    @raise OSError: a file cannot be read.
    @raise GGUFError: C{path} is not a GGUF file.
    """
    with open(path, "rb") as stream:
        header = readHeader(stream)
    weights = sum(os.path.getsize(p) for p in splitParts(path))
    weights += sum(os.path.getsize(p) for p in extra)
    arch = header.get("arch", "")
    if context <= 0:
        context = int(header.get(f"{arch}.context_length", 0) or 4096)
    kv = kvCacheBytes(header, context, typeK, typeV)
    overhead = OVERHEAD + int(weights * OVERHEAD_FRACTION)
    return ModelEstimate(weights=weights, kvCache=kv, overhead=overhead, context=context)


_OPTIONS = {
    "-m": "model",
    "--model": "model",
    "-c": "context",
    "--ctx-size": "context",
    "-ctk": "typeK",
    "--cache-type-k": "typeK",
    "-ctv": "typeV",
    "--cache-type-v": "typeV",
    "-mm": "mmproj",
    "--mmproj": "mmproj",
}


def _options(argv: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for i, word in enumerate(argv):
        name, equals, inline = word.partition("=")
        if name in _OPTIONS:
            if equals:
                found[_OPTIONS[name]] = inline
            elif i + 1 < len(argv):
                found[_OPTIONS[name]] = argv[i + 1]
    return found


def modelPathOf(argv: Sequence[str]) -> str | None:
    """
    The C{-m}/C{--model} path of a command line, if it names a C{.gguf}.
    """
    path = _options(argv).get("model")
    if path is None or not path.lower().endswith(".gguf"):
        return None
    return path


def estimateCommand(argv: Sequence[str]) -> ModelEstimate | None:
    """
    The estimate for the model a llama-server command line loads, or
    L{None} when it names no GGUF file or the file cannot be read.
    """
    path = modelPathOf(argv)
    if path is None:
        return None
    options = _options(argv)
    try:
        context = int(options.get("context", "0"))
    except ValueError:
        context = 0
    extra = [options["mmproj"]] if "mmproj" in options else []
    try:
        return estimateFile(
            path,
            context,
            typeK=options.get("typeK", "f16").lower(),
            typeV=options.get("typeV", "f16").lower(),
            extra=extra,
        )
    except (OSError, GGUFError):
        return None
