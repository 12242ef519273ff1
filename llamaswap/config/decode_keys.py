# -*- test-case-name: test.config.test_decode_settings -*-
"""
C{apiKeys} and C{auth}: who may use llamaswap, and for what.

An C{apiKeys} entry is a string (a full-access key, as in llama-swap) or a
mapping C{{key, name, scopes, models, concurrencyLimit}} (L{APIKey}).
Every problem is reported with its key path; a key's value never appears
in a message.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from .errors import Problems
from .keys import API_KEY_KEYS
from .model import ALL_SCOPES, SCOPES, APIKey, AuthConfig
from .sections import Section, describeValue

#: Key names label metrics and activity rows: keep them plain.
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def decodeAPIKeys(top: Section, problems: Problems) -> tuple[APIKey, ...]:
    """
    The C{apiKeys} list, validated: keys non-empty, without spaces and
    distinct; names plain and distinct; scopes known and not empty.
    """
    raw = top.raw("apiKeys")
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        problems.error(
            f"must be a list of keys, got {describeValue(raw)}", ("apiKeys",)
        )
        return ()
    keys: list[APIKey] = []
    for i, item in enumerate(raw):
        if isinstance(item, Mapping):
            entry = _decodeEntry(Section.of(problems, item, ("apiKeys", i), API_KEY_KEYS), i)
        else:
            entry = _decodeString(top, item, i, problems)
        if entry is not None:
            keys.append(entry)
    _checkDistinct(keys, problems)
    return tuple(keys)


def _decodeString(top: Section, item: Any, i: int, problems: Problems) -> APIKey | None:
    if item is None:
        item = ""
    elif not isinstance(item, (str, int, float)) or isinstance(item, bool):
        problems.error(
            f"must be a key string or a mapping, got {describeValue(item)}", ("apiKeys", i)
        )
        return None
    key = str(item)
    if not _validKey(key, ("apiKeys", i), i, problems):
        return None
    return APIKey(key=key, name=f"key-{i + 1}")


def _validKey(key: str, path: tuple[Any, ...], i: int, problems: Problems) -> bool:
    if key == "":
        problems.error("empty api key found in apiKeys", path)
        return False
    if " " in key:
        prefix = f"apiKeys[{i}]: " if len(path) == 2 else ""
        problems.error(f"{prefix}api key cannot contain spaces", path)
        return False
    return True


def _decodeEntry(entry: Section, i: int) -> APIKey | None:
    problems = entry.problems
    if not entry.has("key"):
        problems.error("key is required", entry.at("key"))
        return None
    key = entry.string("key", "")
    valid = _validKey(key, entry.at("key"), i, problems)
    name = entry.string("name", f"key-{i + 1}")
    if not _NAME.match(name):
        problems.error(
            "name must be 1-64 letters, digits or _ . @ -", entry.at("name")
        )
        valid = False
    scopes = ALL_SCOPES
    if "scopes" in entry.data:
        listed = entry.strings("scopes")
        for j, scope in enumerate(listed):
            if scope not in ALL_SCOPES:
                problems.error(
                    f"unknown scope {scope!r}; scopes are: {', '.join(SCOPES)}",
                    entry.at("scopes") + (j,),
                )
                valid = False
        if not listed:
            problems.error(
                f"scopes must not be empty; scopes are: {', '.join(SCOPES)}",
                entry.at("scopes"),
            )
            valid = False
        scopes = frozenset(listed)
    models: tuple[str, ...] | None = None
    if entry.has("models"):
        models = entry.strings("models")
        for j, pattern in enumerate(models):
            if not pattern:
                problems.error("model name must not be empty", entry.at("models") + (j,))
                valid = False
    limit = entry.integer("concurrencyLimit", 0)
    if limit < 0:
        problems.error("concurrencyLimit must be >= 0", entry.at("concurrencyLimit"))
        valid = False
    if not valid:
        return None
    return APIKey(key=key, name=name, scopes=scopes, models=models, concurrencyLimit=limit)


def _checkDistinct(keys: list[APIKey], problems: Problems) -> None:
    seenNames: dict[str, int] = {}
    seenKeys: dict[str, int] = {}
    for i, entry in enumerate(keys):
        if entry.name in seenNames:
            problems.error(
                f"duplicate key name {entry.name!r} (also apiKeys[{seenNames[entry.name]}])",
                ("apiKeys", i),
            )
        seenNames.setdefault(entry.name, i)
        if entry.key in seenKeys:
            problems.error(
                f"the same key is listed twice (also apiKeys[{seenKeys[entry.key]}])",
                ("apiKeys", i),
            )
        seenKeys.setdefault(entry.key, i)


def decodeAuth(section: Section) -> AuthConfig:
    """
    The C{auth} section: C{sessionSecret} (C{${env.X}} welcome) and
    C{sessionTTL} (a Go duration or seconds; default 12 h).
    """
    problems = section.problems
    secret = section.string("sessionSecret", "")
    ttl = AuthConfig().sessionTTL
    if "sessionTTL" in section.data:
        value = section.raw("sessionTTL")
        if isinstance(value, int) and not isinstance(value, bool):
            ttl = value
        else:
            ttl = section.duration("sessionTTL", ttl * 10**9) // 10**9
        if ttl <= 0:
            problems.error("sessionTTL must be positive", section.at("sessionTTL"))
            ttl = AuthConfig().sessionTTL
    return AuthConfig(sessionSecret=secret, sessionTTL=ttl)


__all__ = ["decodeAPIKeys", "decodeAuth"]
