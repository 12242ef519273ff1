# -*- test-case-name: test.config.test_decode_selectors -*-
"""
The C{selectors} section: names that pick one of several models; their
targets are checked by L{llamaswap.config.crosscheck}.
"""

from __future__ import annotations

from .errors import Problems
from .keys import SELECTOR_KEYS, SELECTOR_SETTINGS_KEYS
from .model import SelectorConfig
from .sections import Section


def decodeSelectors(selectors: Section, problems: Problems) -> dict[str, SelectorConfig]:
    """
    Decode every selector, in file order.
    """
    out = {}
    for key, value in selectors.data.items():
        selectorID = str(key)
        s = Section.of(problems, value, ("selectors", selectorID), SELECTOR_KEYS)
        settings = s.section("settings", SELECTOR_SETTINGS_KEYS)
        out[selectorID] = SelectorConfig(
            id=selectorID,
            strategy=s.string("strategy", ""),
            targets=s.strings("targets"),
            spillover=settings.integer("spillover", 1),
            name=s.string("name", ""),
            description=s.string("description", ""),
            unlisted=s.boolean("unlisted", False),
            metadata=s.mapping("metadata"),
        )
    return out
