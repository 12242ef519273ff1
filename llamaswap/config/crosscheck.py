# -*- test-case-name: test.config.test_decode_peers,test.config.test_decode_selectors,test.config.test_decode_profiles -*-
"""
Validation across sections, once everything is decoded: peer model names
against local names, selector targets against models, peers and routing,
profile pins against models, peers and selectors.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from .errors import KeyPath, Problems
from .goquote import goQuote
from .model import Config

SELECTOR_STRATEGIES = ("warm", "pin", "spillover")


def crossCheck(config: Config, problems: Problems, routingValid: bool) -> None:
    """
    Report every cross-section error in C{config}; selector spillover
    targets are checked against routing only if C{routingValid}.
    """
    _peerNamespace(config, problems)
    _selectors(config, problems, routingValid)
    _profiles(config, problems)


def _peerNamespace(config: Config, problems: Problems) -> None:
    owners: dict[str, tuple[str, str]] = {}
    for peerID, peer in sorted(config.peers.items()):
        for modelID in peer.models:
            fqn = peer.fqn(modelID)
            if fqn in owners:
                otherPeer, otherModel = owners[fqn]
                problems.error(
                    f"peer model name {goQuote(fqn)} is ambiguous between"
                    f" peers.{otherPeer} model {goQuote(otherModel)} and"
                    f" peers.{peerID} model {goQuote(modelID)}",
                    ("peers", peerID, "models"),
                )
                continue
            owners[fqn] = (peerID, modelID)
    for fqn in sorted(owners):
        for what, path in _localClaims(config, fqn):
            problems.error(
                f"{what} {goQuote(fqn)} conflicts with fully qualified peer model name", path
            )


def _localClaims(config: Config, name: str) -> Iterator[tuple[str, KeyPath]]:
    """
    What local definition already uses C{name}, and where: model IDs and
    aliases, selector IDs, profile pins and legacy profile model names.
    """
    if name in config.models:
        yield "model ID", ("models", name)
    for modelID, model in config.models.items():
        if name in model.aliases:
            yield f"model {modelID} alias", ("models", modelID, "aliases")
    if name in config.selectors:
        yield "selector ID", ("selectors", name)
    for profileID, profile in config.profiles.items():
        if name in profile.pins:
            yield f"profile {profileID} pin", ("profiles", profileID, "pins", name)
    legacy = config.resolveLegacyProfile(name)
    if legacy is not None:
        yield f"profile {legacy[0]} model name", ("profiles", legacy[0])


def _selectors(config: Config, problems: Problems, routingValid: bool) -> None:
    for selectorID, selector in config.selectors.items():
        path = ("selectors", selectorID)
        if not selectorID.strip():
            problems.error("selectors: selector names cannot be empty", path)
            continue
        if selectorID in config.models:
            problems.error(
                f"selectors.{selectorID}: name conflicts with model ID {goQuote(selectorID)}",
                path,
            )
        elif selectorID in config.aliases:
            problems.error(
                f"selectors.{selectorID}: name conflicts with model alias {goQuote(selectorID)}",
                path,
            )
        strategy = selector.strategy
        if strategy == "":
            problems.error(f"selectors.{selectorID}.strategy is required", path)
            continue
        if strategy not in SELECTOR_STRATEGIES:
            problems.error(
                f"selectors.{selectorID}.strategy: unknown strategy {goQuote(strategy)}"
                " (valid: warm, pin, spillover)",
                path + ("strategy",),
            )
            continue
        if not selector.targets:
            problems.error(
                f"selectors.{selectorID}.targets must contain at least one entry",
                path + ("targets",),
            )
            continue
        resolved: list[tuple[str, bool]] = []
        targetsOK = True
        for i, target in enumerate(selector.targets):
            targetPath = path + ("targets", i)
            if target in config.selectors:
                targetsOK = False
                problems.error(
                    f"selectors.{selectorID}.targets[{i}] references selector"
                    f" {goQuote(target)}; selector chaining is not supported",
                    targetPath,
                )
                continue
            local = config.realModelName(target)
            peer = None if local is not None else config.resolvePeerModel(target)
            if local is None and peer is None:
                targetsOK = False
                problems.error(
                    f"selectors.{selectorID}.targets[{i}] references unknown model"
                    f" {goQuote(target)}",
                    targetPath,
                )
                continue
            if strategy == "warm" and local is None:
                targetsOK = False
                problems.error(
                    f"selectors.{selectorID}.targets[{i}] must resolve to a local"
                    f' model for strategy "warm"',
                    targetPath,
                )
                continue
            if local is not None:
                resolved.append((local, True))
            else:
                assert peer is not None
                resolved.append((config.peers[peer[0]].fqn(peer[1]), False))
        if strategy != "spillover":
            continue
        if selector.spillover < 1:
            problems.error(
                f"selectors.{selectorID}.settings.spillover must be >= 1",
                path + ("settings", "spillover"),
            )
        seen: set[str] = set()
        for name, _ in resolved:
            if name in seen:
                targetsOK = False
                problems.error(
                    f"selectors.{selectorID}.targets contains duplicate resolved model"
                    f" {goQuote(name)}",
                    path + ("targets",),
                )
            seen.add(name)
        if targetsOK and routingValid:
            _spilloverCoexistence(
                config, problems, selectorID, [name for name, local in resolved if local]
            )


def _spilloverCoexistence(
    config: Config, problems: Problems, selectorID: str, targets: Sequence[str]
) -> None:
    if len(targets) <= 1:
        return
    path = ("selectors", selectorID, "targets")
    routing = config.routing
    if routing.use == "matrix":
        if routing.matrix is None or not routing.matrix.canContainAll(targets):
            problems.error(
                f"selectors.{selectorID}.targets must all appear together in one"
                " expanded matrix set",
                path,
            )
        return
    first = config.groupOf(targets[0])
    if first is None:
        problems.error(
            f"selectors.{selectorID} target {goQuote(targets[0])} is not in a routing group",
            path,
        )
        return
    if first.swap:
        problems.error(
            f"selectors.{selectorID} spillover targets must share a group with swap: false",
            path,
        )
        return
    for target in targets[1:]:
        if target not in first.members:
            problems.error(
                f"selectors.{selectorID} spillover targets must share one routing group",
                path,
            )
            return


def _profiles(config: Config, problems: Problems) -> None:
    startup = config.hooks.profile
    if startup and startup not in config.profiles:
        known = ", ".join(sorted(config.profiles)) or "none defined"
        problems.error(
            f"hooks.on_startup.profile references unknown profile {goQuote(startup)}"
            f" (known: {known})",
            ("hooks", "on_startup", "profile"),
        )
    for name, profile in config.profiles.items():
        path = ("profiles", name)
        if not name.strip():
            problems.error("profiles: profile names cannot be empty", path)
            continue
        if not profile.pins:
            problems.error(f"profiles.{name}.pins must contain at least one entry", path)
            continue
        for pin, target in profile.pins.items():
            pinPath = path + ("pins", pin)
            if not pin.strip():
                problems.error(f"profiles.{name}.pins: pin names cannot be empty", pinPath)
                continue
            if target == "":
                continue
            if target in config.selectors:
                continue
            if config.resolveBaseModel(target) is None:
                problems.error(
                    f"profiles.{name}.pins.{pin} references unknown model {goQuote(target)}",
                    pinPath,
                )
