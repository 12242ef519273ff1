# -*- test-case-name: test.config.test_decode_promptcache -*-
"""
The prompt cache's global settings: C{promptCache} (the default of every
model's C{promptCache}), C{promptCacheDir}, C{promptCacheMaxBytes} and
C{promptCacheTimeout}.
"""

from __future__ import annotations

import re

from .errors import Problems
from .model import (
    DEFAULT_PROMPT_CACHE_MAX_BYTES,
    DEFAULT_PROMPT_CACHE_TIMEOUT,
    PromptCacheConfig,
)
from .sections import Section, describeValue

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*$", re.I)
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parseByteSize(value: object) -> int | None:
    """
    A byte count: an integer, or a string such as C{"8GB"} or C{"512 MiB"};
    C{None} if C{value} is neither.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        return None
    match = _SIZE.match(value)
    if match is None:
        return None
    unit = (match.group(2) or "").upper()
    return int(float(match.group(1)) * _UNITS[unit])


def decodePromptCache(top: Section, problems: Problems) -> PromptCacheConfig:
    """
    Decode the global prompt-cache keys of the top-level section C{top}.
    """
    enabled = top.boolean("promptCache", False)
    directory = top.string("promptCacheDir", "")
    maxBytes = DEFAULT_PROMPT_CACHE_MAX_BYTES
    if top.has("promptCacheMaxBytes"):
        raw = top.raw("promptCacheMaxBytes")
        parsed = parseByteSize(raw)
        if parsed is None or parsed < 0:
            problems.error(
                "promptCacheMaxBytes must be a byte count such as 4294967296 or 4GiB,"
                f" not {describeValue(raw)}",
                ("promptCacheMaxBytes",),
            )
        else:
            maxBytes = parsed
    timeout = top.integer("promptCacheTimeout", DEFAULT_PROMPT_CACHE_TIMEOUT)
    if timeout < 1:
        problems.error("promptCacheTimeout must be >= 1", ("promptCacheTimeout",))
        timeout = DEFAULT_PROMPT_CACHE_TIMEOUT
    return PromptCacheConfig(
        enabled=enabled, directory=directory, maxBytes=maxBytes, timeout=timeout
    )
