# -*- test-case-name: test.config.test_build -*-
"""
Typed decoding and validation: an expanded YAML tree to a L{Config}.

This is steps 12 to 14 of llama-swap's loading pipeline: decode every key
with its default, re-attach the macro declarations, then normalise and
validate in llama-swap's order.  Unlike llama-swap, which stops at the first
error, every problem is reported into the shared L{Problems} collector with
its key path, so the user sees all of them (and their lines) at once.

Each section family has its decoder module (C{decode_*.py}), over the typed
reader in C{sections.py} and the keys in C{keys.py}; C{crosscheck.py}
validates across sections once all are decoded.
"""

from __future__ import annotations

import attrs

from .crosscheck import crossCheck
from .decode_models import decodeModels
from .decode_peers import decodePeers
from .decode_profiles import decodeLegacyProfiles, decodeProfiles
from .decode_promptcache import decodePromptCache
from .decode_routing import decodeRouting
from .decode_selectors import decodeSelectors
from .decode_settings import decodeHooks, decodeSettings
from .errors import Problem, Problems
from .expanded import ExpandedTree
from .keys import GLOBAL_KEYS, HOOKS_KEYS
from .memory import decodeBudget, decodeRequestTTL
from .model import Config, FrozenDict
from .sections import Section


def buildConfig(expanded: ExpandedTree, problems: Problems) -> Config | None:
    """
    Decode and validate an expanded tree.

    Every error and warning goes into C{problems}, each with its key path.

    @return: the configuration, or L{None} if any error was reported.
    """
    config = _build(expanded, _LaterStage(problems))
    if problems.hasErrors():
        return None
    return config


def _build(expanded: ExpandedTree, problems: Problems) -> Config:
    top = Section.of(problems, expanded.tree, (), None)
    top.checkKeys(GLOBAL_KEYS, _topLevelExempt)
    settings = decodeSettings(top, problems)
    promptCache = decodePromptCache(top, problems)
    models, aliases = decodeModels(
        top.section("models", None),
        expanded,
        problems,
        healthCheckTimeout=settings.healthCheckTimeout,
        globalTTL=settings.globalTTL,
        unloadTimeout=settings.unloadTimeout,
        sendLoadingState=settings.sendLoadingState,
        promptCache=promptCache.enabled,
    )
    # Later sections resolve model names against what is decoded so far:
    # IDs and aliases, then (from routing on) legacy profile names too.
    names = Config(models=FrozenDict(models), aliases=FrozenDict(aliases))
    profilesSection = top.section("profiles", None)
    legacyProfiles = decodeLegacyProfiles(profilesSection, names, problems)
    names = attrs.evolve(names, legacyProfiles=FrozenDict(legacyProfiles))

    routing, routingValid = decodeRouting(top, names, problems)
    hooks = decodeHooks(top.section("hooks", HOOKS_KEYS), names, problems)
    peers = decodePeers(top.section("peers", None), problems)
    selectors = decodeSelectors(top.section("selectors", None), problems)
    profiles = decodeProfiles(profilesSection, problems)

    config = Config(
        **attrs.asdict(settings, recurse=False),
        macros=tuple(expanded.globalMacros),
        models=FrozenDict(models),
        aliases=FrozenDict(aliases),
        hooks=hooks,
        peers=FrozenDict(peers),
        routing=routing,
        profiles=FrozenDict(profiles),
        legacyProfiles=FrozenDict(legacyProfiles),
        selectors=FrozenDict(selectors),
        promptCache=promptCache,
        memory=decodeBudget(top.raw("memoryBudget"), top.raw("memoryReserve"), problems),
        requestTTL=decodeRequestTTL(top.raw("requestTTL"), problems),
    )
    crossCheck(config, problems, routingValid)
    return config


def _topLevelExempt(key: str) -> bool:
    return key.startswith(("x-", "."))


class _LaterStage(Problems):
    """
    A view of the shared collector for a later loading stage: an error
    about a key an earlier stage already rejected (C{startPort: abcd} is
    reported by macro expansion too) is not reported a second time.
    Everything else (warnings, counting, iteration) is the shared
    collector's, whose list of problems this view records into.
    """

    def __init__(self, shared: Problems) -> None:
        super().__init__(shared.sourceMap)
        self._items = shared._items
        self.rejected = {p.path for p in shared.errors}

    def _accepts(self, problem: Problem) -> bool:
        if not problem.warning and problem.path in self.rejected:
            return False
        return super()._accepts(problem)


__all__ = ["buildConfig"]
