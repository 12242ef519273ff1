# -*- test-case-name: test.routing.test_overlap -*-
"""
Swap overlap: whether a swap's target may start while the models it
evicts are still exiting, instead of after they are gone.

A swap normally stops the models it evicts and starts its target only once
they have exited.  Overlapping the two hides the stop (a few milliseconds
for llama-server, more for a server that saves state or is slow to exit)
but holds both at once, so it is only done when it is I{provably} safe
(L{OverlapPolicy.refusal} names the first reason it is not):

 - the configuration has a C{memoryBudget}, and the target fits in it
   beside every model that holds memory now, the exiting ones included
   (an exiting model's memory counts until its process is gone, however
   long its C{unloadTimeout} and a forced kill take); a model of unknown
   size never overlaps;
 - the target's proxy port is not the port of any model holding memory (a
   model reusing a fixed port could not bind while the old one holds it);
 - no exiting model has a C{cmdStop} (an outside command whose effects, a
   container removed or a lock released, the target may depend on);
 - the target and an exiting model do not both use the prompt cache (the
   exiting one saves its slots into the directory the target restores
   from, under one size cap).

Evictions by the memory budget itself never overlap (the target does not
fit beside what it evicts, by construction); evictions by a swap group or
the matrix do, when the budget shows the models fit together.  Models
retiring for a reload count as exiting.  C{routing.swapOverlap: off}
turns it off; without a budget it never happens (llama-swap's behaviour).
"""

from __future__ import annotations

from typing import Collection, Mapping
from urllib.parse import urlsplit

from attrs import frozen

from ..config.model import Config
from .memory import MemoryPolicy, Occupant, Start, memoryPolicyFor, planMemory

__all__ = ["OverlapPolicy", "overlapPolicyFor", "proxyPort"]

#: C{routing.swapOverlap} values.
SWAP_OVERLAP_MODES = ("auto", "off")


def proxyPort(proxy: str) -> int | None:
    """
    The TCP port of proxy URL C{proxy} (the scheme's default if none is
    given), or L{None} if it cannot be told.
    """
    try:
        parts = urlsplit(proxy)
        port = parts.port
    except ValueError:
        return None
    if port is not None:
        return port
    return {"http": 80, "https": 443}.get(parts.scheme)


@frozen
class OverlapPolicy:
    """
    What decides whether a swap may overlap.

    @ivar memory: the memory budget and every model's need.
    @ivar ports: model to its proxy port (L{None}: unknown).
    @ivar stopCommands: the models with a C{cmdStop}.
    @ivar promptCache: the models using the prompt cache.
    """

    memory: MemoryPolicy
    ports: Mapping[str, int | None]
    stopCommands: frozenset[str] = frozenset()
    promptCache: frozenset[str] = frozenset()

    def refusal(
        self, target: str, exiting: Collection[str], occupying: Collection[str]
    ) -> str | None:
        """
        Why C{target} may not start while C{exiting} exit, or L{None} if it
        may.

        @param exiting: the models being stopped (by this swap or
            otherwise) or retiring.
        @param occupying: every model holding memory now (running,
            starting or stopping), C{exiting} included.
        """
        others = sorted((set(occupying) | set(exiting)) - {target})
        for model in [target, *others]:
            if self.memory.sizes.get(model) is None:
                return f"the memory of {model} is unknown"
        occupants = [Occupant(m, self.memory.need(m)) for m in others]
        plan = planMemory(target, self.memory.need(target), occupants, self.memory.budget)
        if not isinstance(plan, Start):
            return f"{target} does not fit in the memory budget beside {' '.join(others)}"
        port = self.ports.get(target)
        if port is None:
            return f"the proxy port of {target} is unknown"
        for model in others:
            if self.ports.get(model) in (None, port):
                return f"{model} may hold the port of {target} ({port})"
        for model in sorted(set(exiting) - {target}):
            if model in self.stopCommands:
                return f"{model} has a cmdStop"
            if target in self.promptCache and model in self.promptCache:
                return f"{model} saves its prompt cache where {target} restores from"
        return None


def overlapPolicyFor(config: Config) -> OverlapPolicy | None:
    """
    The overlap policy of C{config}, or L{None} when swaps never overlap
    (C{routing.swapOverlap: off}, or no C{memoryBudget}).
    """
    if config.routing.swapOverlap == "off":
        return None
    memory = memoryPolicyFor(config)
    if memory is None:
        return None
    models = config.models
    return OverlapPolicy(
        memory=memory,
        ports={m: proxyPort(c.proxy) for m, c in models.items()},
        stopCommands=frozenset(m for m, c in models.items() if c.cmdStop.strip()),
        promptCache=frozenset(m for m, c in models.items() if c.promptCache),
    )
