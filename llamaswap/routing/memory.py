# -*- test-case-name: test.routing.test_memory -*-
"""
Memory budget scheduling: which running models must stop so that another
fits in the memory budget.

L{planMemory} is the pure decision; L{MemoryEvictor} plugs it into the
scheduler as an L{Evictor} for the models it covers (those in no explicit
group or matrix set), leaving the others to the configured policy.

Rules:

 - A model that fits next to the running ones starts without stopping
   anything.
 - Otherwise running models stop, idle ones first, least recently used
   first, until it fits; a model serving requests is only chosen when the
   idle ones are not enough, and then the scheduler waits for it to drain
   (it never stops a busy model; C{maxWaitForSwap} holds its new requests
   back so that it does drain).
 - Of the models chosen, any whose stop turns out not to be needed is
   kept (the most recently used first).
 - A model needing more than the whole budget (on any device) is refused
   at once (L{ModelTooLarge}); nothing is stopped for it.

A budget is per device (C{{"gpu0": ..., "gpu1": ...}}, or one pool named
L{POOL}); a model's memory is split evenly over its devices (all of the
budget's devices unless it names some).  A model of unknown size needs
the whole budget of each of its devices: it runs alone (the behaviour
without a budget).
"""

from __future__ import annotations

from typing import Collection, Mapping, Protocol, Sequence, Union

from attrs import frozen

from ..config.devices import POOL
from ..config.memory import splitNeed
from ..config.model import DEFAULT_GROUP_ID, Config
from ..config.sizes import formatSize
from ..httperrors import HTTPError
from .groups import Evictor

__all__ = [
    "POOL",
    "EvictThenStart",
    "MemoryEvictor",
    "MemoryPlan",
    "MemoryPolicy",
    "ModelTooLarge",
    "Occupant",
    "Refuse",
    "Start",
    "UsageView",
    "Wait",
    "memoryPolicyFor",
    "planMemory",
    "splitNeed",
]



class ModelTooLarge(HTTPError):
    """
    507: the model needs more memory than the whole budget; nothing is
    stopped for it and retrying will not help.
    """

    status = 507
    code = "model_exceeds_memory_budget"


# ------------------------------------------------------------------ plan


@frozen
class Occupant:
    """
    A running model: what it holds per device, how many requests it
    serves and when it was last used (a larger number is more recent).
    """

    model: str
    need: Mapping[str, int]
    inFlight: int = 0
    lastUsed: float = 0


@frozen
class Start:
    """
    The model fits: start it, stop nothing.
    """

    evict: tuple[str, ...] = ()


@frozen
class EvictThenStart:
    """
    Stop the idle C{evict}, then start the model.
    """

    evict: tuple[str, ...]


@frozen
class Wait:
    """
    The model fits only once C{evict} stop, and C{busy} of them are
    serving requests: wait for those to drain.
    """

    evict: tuple[str, ...]
    busy: tuple[str, ...]


@frozen
class Refuse:
    """
    The model can never fit.
    """

    reason: str
    evict: tuple[str, ...] = ()


MemoryPlan = Union[Start, EvictThenStart, Wait, Refuse]


def _label(device: str) -> str:
    return "" if device == POOL else f" on {device}"


def tooLarge(target: str, need: Mapping[str, int], budget: Mapping[str, int]) -> str | None:
    """
    Why C{target} can never fit, or L{None}.
    """
    for device in sorted(need):
        size = budget.get(device, 0)
        if need[device] > size:
            return (
                f"model {target} needs {formatSize(need[device])}{_label(device)}"
                f" but the memory budget{_label(device)} is {formatSize(size)}"
            )
    return None


def _overflow(
    need: Mapping[str, int], used: Mapping[str, int], budget: Mapping[str, int]
) -> set[str]:
    return {d for d, n in need.items() if used.get(d, 0) + n > budget.get(d, 0)}


def planMemory(
    target: str,
    need: Mapping[str, int],
    running: Sequence[Occupant],
    budget: Mapping[str, int],
) -> MemoryPlan:
    """
    What must stop so that C{target}, needing C{need} bytes per device,
    fits in C{budget} next to C{running} (which must not include it).
    """
    reason = tooLarge(target, need, budget)
    if reason is not None:
        return Refuse(reason)
    used: dict[str, int] = {}
    for occupant in running:
        for device, n in occupant.need.items():
            used[device] = used.get(device, 0) + n
    if not _overflow(need, used, budget):
        return Start()
    order = sorted(running, key=lambda o: (o.inFlight > 0, o.lastUsed, o.model))
    chosen: list[Occupant] = []
    for occupant in order:
        over = _overflow(need, used, budget)
        if not over:
            break
        if not any(occupant.need.get(d, 0) for d in over):
            continue
        chosen.append(occupant)
        for device, n in occupant.need.items():
            used[device] -= n
    for occupant in reversed(list(chosen)):
        for device, n in occupant.need.items():
            used[device] += n
        if _overflow(need, used, budget):
            for device, n in occupant.need.items():
                used[device] -= n
        else:
            chosen.remove(occupant)
    evict = tuple(sorted(o.model for o in chosen))
    busy = tuple(sorted(o.model for o in chosen if o.inFlight > 0))
    if busy:
        return Wait(evict, busy)
    return EvictThenStart(evict)


# ------------------------------------------------------------------ policy


@frozen
class MemoryPolicy:
    """
    The memory budget and every model's need.

    @ivar budget: device to bytes.
    @ivar sizes: model ID to its memory in bytes (explicit or estimated),
        L{None} when unknown.
    @ivar devices: model ID to the devices it uses (empty: all).
    @ivar covered: the models scheduled by memory (the others follow the
        groups or the matrix).
    """

    budget: Mapping[str, int]
    sizes: Mapping[str, int | None]
    devices: Mapping[str, tuple[str, ...]]
    covered: frozenset[str]

    def need(self, model: str) -> dict[str, int]:
        """
        What C{model} needs per device.
        """
        return splitNeed(self.sizes.get(model), self.devices.get(model, ()), self.budget)


class UsageView(Protocol):
    """
    What the memory evictor reads of the scheduler.
    """

    def inFlight(self, model: str) -> int:
        """
        Requests of C{model} being served.
        """

    def lastUsed(self, model: str) -> float:
        """
        When C{model} last served (larger is more recent).
        """


class _NoUsage:
    def inFlight(self, model: str) -> int:
        return 0

    def lastUsed(self, model: str) -> float:
        return 0


class MemoryEvictor:
    """
    L{Evictor} fitting the models C{policy} covers into the memory budget
    (L{planMemory}); other targets go to C{base}.
    """

    def __init__(self, base: Evictor, policy: MemoryPolicy) -> None:
        self.base = base
        self.policy = policy
        self.usage: UsageView = _NoUsage()

    def bindUsage(self, usage: UsageView) -> None:
        """
        Read in-flight counts and last use from C{usage} (the scheduler).
        """
        self.usage = usage

    def plan(self, target: str, running: Collection[str]) -> MemoryPlan:
        """
        L{planMemory} for C{target} next to C{running}.
        """
        occupants = [
            Occupant(m, self.policy.need(m), self.usage.inFlight(m), self.usage.lastUsed(m))
            for m in sorted(running)
            if m != target
        ]
        return planMemory(target, self.policy.need(target), occupants, self.policy.budget)

    def refusal(self, target: str) -> str | None:
        """
        Why C{target} can never run, or L{None}.
        """
        if target not in self.policy.covered:
            return None
        return tooLarge(target, self.policy.need(target), self.policy.budget)

    def evictionFor(self, target: str, running: Collection[str]) -> frozenset[str]:
        """
        See L{Evictor.evictionFor}.
        """
        if target not in self.policy.covered:
            return self.base.evictionFor(target, running)
        plan = self.plan(target, running)
        if isinstance(plan, Refuse):
            return frozenset(m for m in running if m != target)
        return frozenset(plan.evict)

    def explain(self, target: str, running: Collection[str]) -> str:
        """
        C{memory: model=M need=N in use=U budget=B evict=[...]}.
        """
        if target not in self.policy.covered:
            return self.base.explain(target, running)
        need = sum(self.policy.need(target).values())
        inUse = sum(sum(self.policy.need(m).values()) for m in running if m != target)
        budget = sum(self.policy.budget.values())
        evict = " ".join(sorted(self.evictionFor(target, running)))
        return (
            f"memory: model={target} need={formatSize(need)} in use={formatSize(inUse)}"
            f" budget={formatSize(budget)} evict=[{evict}]"
        )


def memoryPolicyFor(config: Config) -> MemoryPolicy | None:
    """
    The memory policy of C{config}, or L{None} without a budget.  The
    models it covers are those in no explicit group (the automatic
    C{(default)} group) or, with the matrix router, in no matrix set.
    """
    if not config.memory.budget:
        return None
    routing = config.routing
    if routing.use == "matrix" and routing.matrix is not None:
        inSets = frozenset().union(*(s.models for s in routing.matrix.sets))
        covered = frozenset(m for m in config.models if m not in inSets)
    else:
        default = routing.groups.get(DEFAULT_GROUP_ID)
        explicit = {
            m for g in routing.groups.values() if g.id != DEFAULT_GROUP_ID for m in g.members
        }
        if default is not None:
            covered = frozenset(default.members)
        else:
            covered = frozenset(m for m in config.models if m not in explicit)
    return MemoryPolicy(
        budget=config.memory.budget,
        sizes={m: c.memoryNeed for m, c in config.models.items()},
        devices={m: c.devices for m, c in config.models.items()},
        covered=covered,
    )
