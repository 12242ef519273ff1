# -*- test-case-name: test.config.test_decode_routing -*-
"""
Routing: the router (groups or the matrix, under C{routing.router} or the
legacy top-level C{groups}/C{matrix} keys) and the FIFO scheduler.
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import KeyPath, Problems
from .goquote import goQuote
from .keys import (
    FIFO_KEYS,
    GROUP_KEYS,
    MATRIX_KEYS,
    ROUTER_KEYS,
    ROUTER_SETTINGS_KEYS,
    ROUTING_KEYS,
    SCHEDULER_KEYS,
    SCHEDULER_SETTINGS_KEYS,
)
from .matrixdsl import compileMatrix
from .model import (
    DEFAULT_GROUP_ID,
    DEFAULT_MAX_WAIT_FOR_SWAP,
    Config,
    FrozenDict,
    GroupConfig,
    RoutingConfig,
)
from .sections import Section, describeValue, toInt


def decodeRouting(top: Section, names: Config, problems: Problems) -> tuple[RoutingConfig, bool]:
    """
    Decode routing against the models and aliases in C{names}.

    @return: the routing and whether it is valid (selectors check their
        spillover targets against it only if so).
    """
    decoder = _RoutingDecoder(names, problems)
    return decoder.routing(top), decoder.valid


class _RoutingDecoder:
    """
    One routing decode; C{valid} turns false at the first routing error.
    """

    def __init__(self, names: Config, problems: Problems) -> None:
        self.names = names
        self.problems = problems
        self.valid = True

    def error(self, message: str, path: KeyPath) -> None:
        self.problems.error(message, path)

    def invalid(self, message: str, path: KeyPath) -> None:
        self.valid = False
        self.problems.error(message, path)

    def routing(self, top: Section) -> RoutingConfig:
        routingSection = top.section("routing", ROUTING_KEYS)
        router = routingSection.section("router", ROUTER_KEYS)
        use = router.string("use", "")
        settings = router.section("settings", ROUTER_SETTINGS_KEYS)

        legacyGroups = top.raw("groups")
        legacyMatrix = top.raw("matrix")
        hasTopLevel = legacyMatrix is not None or _nonEmpty(legacyGroups)
        hasRouting = (
            use != "" or settings.raw("matrix") is not None or _nonEmpty(settings.raw("groups"))
        )

        groupsValue: Any = None
        groupsPath: KeyPath = ("groups",)
        matrixValue: Any = None
        matrixPath: KeyPath = ("matrix",)
        if hasTopLevel and hasRouting:
            self.invalid(
                "config uses both the legacy top-level 'matrix'/'groups' keys and the"
                " new 'routing.router' block; please migrate the top-level keys into"
                " 'routing.router' and remove them",
                ("routing", "router"),
            )
        if hasTopLevel:
            groupsValue, matrixValue = legacyGroups, legacyMatrix
            if matrixValue is not None and _nonEmpty(groupsValue):
                self.invalid("config cannot use both 'groups' and 'matrix'", ("matrix",))
                matrixValue = None
        else:
            if use == "matrix":
                matrixValue = settings.raw("matrix")
                matrixPath = ("routing", "router", "settings", "matrix")
                if matrixValue is None:
                    self.invalid(
                        "routing.router.use is 'matrix' but routing.router.settings.matrix"
                        " is not set",
                        ("routing", "router", "use"),
                    )
            elif use in ("group", ""):
                groupsValue = settings.raw("groups")
                groupsPath = ("routing", "router", "settings", "groups")
            else:
                self.invalid(
                    f"routing.router.use: unknown router {goQuote(use)} (valid: group, matrix)",
                    ("routing", "router", "use"),
                )
            if use != "matrix" and settings.raw("matrix") is not None:
                self.problems.warn(
                    "ignored: routing.router.use is not 'matrix'",
                    ("routing", "router", "settings", "matrix"),
                )
        # Type-check whichever spellings were given, even if inactive.
        for value, path in (
            (legacyGroups, ("groups",)),
            (settings.raw("groups"), ("routing", "router", "settings", "groups")),
        ):
            if value is not None and not isinstance(value, Mapping):
                self.error(f"must be a mapping, got {describeValue(value)}", path)

        matrix = None
        groups: dict[str, GroupConfig] = {}
        if matrixValue is not None:
            matrix = self.matrix(matrixValue, matrixPath)
        else:
            groups = self.groups(groupsValue, groupsPath)

        scheduler = routingSection.section("scheduler", SCHEDULER_KEYS)
        schedulerUse = scheduler.string("use", "") or "fifo"
        if schedulerUse != "fifo":
            self.error(
                f"routing.scheduler.use: unknown scheduler {goQuote(schedulerUse)} (valid: fifo)",
                ("routing", "scheduler", "use"),
            )
        fifo = scheduler.section("settings", SCHEDULER_SETTINGS_KEYS).section("fifo", FIFO_KEYS)
        priority = self.priority(fifo)
        maxWaitForSwap = fifo.integer("maxWaitForSwap", DEFAULT_MAX_WAIT_FOR_SWAP)
        if maxWaitForSwap < 0:
            self.error(
                "routing.scheduler.settings.fifo.maxWaitForSwap must be >= 0",
                fifo.at("maxWaitForSwap"),
            )
        return RoutingConfig(
            swapOverlap=self.swapOverlap(routingSection),
            use="matrix" if matrixValue is not None else "group",
            groups=FrozenDict(groups),
            matrix=matrix,
            scheduler="fifo",
            priority=FrozenDict(priority),
            maxWaitForSwap=maxWaitForSwap,
        )

    def swapOverlap(self, routing: Section) -> str:
        """
        C{routing.swapOverlap}: C{auto} (the default) or C{off}; YAML
        booleans are taken as C{auto} and C{off}.
        """
        value = routing.raw("swapOverlap")
        if value is None:
            return "auto"
        if isinstance(value, bool):
            return "auto" if value else "off"
        if isinstance(value, str) and value.strip().lower() in ("auto", "off"):
            return value.strip().lower()
        self.error(
            f"routing.swapOverlap must be auto or off, got {describeValue(value)}",
            routing.at("swapOverlap"),
        )
        return "auto"

    def matrix(self, value: Any, path: KeyPath) -> Any:
        if not isinstance(value, Mapping):
            self.invalid(f"must be a mapping, got {describeValue(value)}", path)
            return None
        Section(self.problems, value, path).checkKeys(MATRIX_KEYS)
        program = compileMatrix(value, tuple(self.names.models), self.problems, path)
        if program is None:
            self.valid = False
        return program

    def groups(self, value: Any, path: KeyPath) -> dict[str, GroupConfig]:
        groups: dict[str, GroupConfig] = {}
        if isinstance(value, Mapping):
            for key, body in value.items():
                groupID = str(key)
                groupPath = path + (groupID,)
                g = Section.of(self.problems, body, groupPath, GROUP_KEYS)
                if groupID == DEFAULT_GROUP_ID:
                    self.problems.warn(
                        f"the group name {DEFAULT_GROUP_ID} is reserved; this definition"
                        " is replaced by the automatic group of ungrouped models",
                        groupPath,
                    )
                    continue
                members = self.groupMembers(g)
                groups[groupID] = GroupConfig(
                    id=groupID,
                    swap=g.boolean("swap", True),
                    exclusive=g.boolean("exclusive", True),
                    persistent=g.boolean("persistent", False),
                    members=members,
                )

        memberOf: dict[str, str] = {}
        for groupID, group in groups.items():
            seen: set[str] = set()
            for i, member in enumerate(group.members):
                memberPath = path + (groupID, "members", i)
                if member in seen:
                    self.invalid(
                        f"duplicate model member {member} found in group: {groupID}",
                        memberPath,
                    )
                    continue
                seen.add(member)
                if member in memberOf:
                    self.invalid(
                        f"model member {member} is used in multiple groups:"
                        f" {memberOf[member]} and {groupID}",
                        memberPath,
                    )
                    continue
                memberOf[member] = groupID

        orphans = tuple(sorted(m for m in self.names.models if m not in memberOf))
        groups[DEFAULT_GROUP_ID] = GroupConfig(id=DEFAULT_GROUP_ID, members=orphans)
        return groups

    def groupMembers(self, g: Section) -> tuple[str, ...]:
        members = []
        for i, member in enumerate(g.strings("members")):
            memberPath = g.at("members") + (i,)
            if member in self.names.models:
                members.append(member)
                continue
            real = self.names.aliases.get(member)
            if real is None:
                self.invalid(f"no model config for {goQuote(member)}", memberPath)
                continue
            self.problems.warn(
                f"group member {goQuote(member)} is an alias of model {goQuote(real)};"
                " the model ID is used",
                memberPath,
            )
            members.append(real)
        return tuple(members)

    def priority(self, fifo: Section) -> dict[str, int]:
        explicit: dict[str, int] = {}
        viaAlias: dict[str, int] = {}
        for name, value in fifo.mapping("priority").items():
            keyPath = fifo.at("priority") + (name,)
            level = toInt(value, keyPath, self.problems) if value is not None else 0
            real = self.names.realModelName(name)
            if real is None:
                self.error(
                    "routing.scheduler.settings.fifo.priority references unknown model "
                    + goQuote(name),
                    keyPath,
                )
                continue
            if level is None:
                continue
            if real == name:
                explicit[real] = level
            else:
                viaAlias.setdefault(real, level)
        return {**viaAlias, **explicit}


def _nonEmpty(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) > 0
