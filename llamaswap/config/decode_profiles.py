# -*- test-case-name: test.config.test_decode_profiles -*-
"""
The C{profiles} section, in both forms: pins (a mapping with description
and pins) and llama-swap v1's legacy list of models that run together.
"""

from __future__ import annotations

from typing import Mapping

from .errors import Problems
from .goquote import goQuote
from .keys import PROFILE_KEYS
from .model import Config, FrozenDict, ProfileConfig
from .sections import Section, describeValue, toStr, toStrList


def decodeLegacyProfiles(
    profiles: Section, names: Config, problems: Problems
) -> dict[str, tuple[str, ...]]:
    """
    The list-form profiles (deprecated, with a warning each); C{names}
    resolves member models by ID or alias.
    """
    out = {}
    for key, value in profiles.data.items():
        name = str(key)
        if not isinstance(value, (list, tuple)):
            continue
        path = ("profiles", name)
        if not name.strip():
            problems.error("profiles: profile names cannot be empty", path)
        members: list[str] = []
        for i, member in enumerate(toStrList(value, path, problems)):
            real = names.realModelName(member)
            if real is None:
                problems.error(
                    f"profiles.{name}[{i}] references unknown model {goQuote(member)}",
                    path + (i,),
                )
            elif real not in members:
                members.append(real)
        problems.warn(
            f"profiles.{name}: the legacy list form of profiles is deprecated"
            " (llama-swap no longer accepts it); to run models together use a"
            " group with swap: false",
            path,
        )
        out[name] = tuple(members)
    return out


def decodeProfiles(profiles: Section, problems: Problems) -> dict[str, ProfileConfig]:
    """
    The mapping-form profiles; their pins are checked by
    L{llamaswap.config.crosscheck}.
    """
    out = {}
    for key, value in profiles.data.items():
        name = str(key)
        path = ("profiles", name)
        if isinstance(value, (list, tuple)):
            continue
        if value is not None and not isinstance(value, Mapping):
            problems.error(
                "profile must be a mapping with description and pins (or, in the"
                " legacy form, a list of model IDs), got " + describeValue(value),
                path,
            )
            continue
        p = Section.of(problems, value, path, PROFILE_KEYS)
        pins = {}
        for pin, target in p.mapping("pins").items():
            if target is None:
                pins[pin] = ""
                continue
            text = toStr(target, path + ("pins", pin), problems)
            if text is not None:
                pins[pin] = text
        out[name] = ProfileConfig(
            name=name, description=p.string("description", ""), pins=FrozenDict(pins)
        )
    return out
