# -*- test-case-name: test.web.test_selectors -*-
"""
Selectors: virtual model names that pick one of their targets per request
(C{selectors.<id>}, HTTP behaviour §4.2).

 - C{pin}: always the first target.
 - C{warm}: the first target whose model is ready, else the first that is
   starting, else the first target.
 - C{spillover}: spread requests over running targets, starting the next
   cold one only when every running target holds C{settings.spillover}
   requests.  Each choice reserves its target until the request ends
   (L{Choice.release}); a local target is "active" when its model is ready
   or starting or holds reservations, "cold" when stopped, and skipped while
   stopping or shut down; a peer target is active while it holds
   reservations.  With no active target the first cold one is chosen; when
   the least loaded active target holds fewer than C{spillover}
   reservations it is chosen (ties in turn); otherwise the first cold
   target, else the least loaded active one.

Pure: the states of local models come from a callable, so the choices are
tested without processes.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

from attrs import define, frozen

from ..config.model import Config, SelectorConfig
from ..httperrors import UpstreamUnavailable
from ..upstream.lifecycle import State

#: A local model ID to its current state (L{None} for an unknown model).
StateOf = Callable[[str], "State | None"]


class NoSelectorTarget(UpstreamUnavailable):
    """
    503: a selector cannot choose any target.
    """


@define
class Choice:
    """
    A selector's pick for one request.

    @ivar selector: the selector ID.
    @ivar target: the chosen target as configured (a model ID, alias or
        peer name); the request is rewritten to it.
    """

    selector: str
    target: str
    _release: Callable[[], None] | None = None

    def release(self) -> None:
        """
        The request has ended: give back its reservation (once).
        """
        release, self._release = self._release, None
        if release is not None:
            release()


@frozen
class _Candidate:
    target: str
    key: str
    active: bool
    load: int


class Selectors:
    """
    The selectors of one configuration and their reservations.

    @param config: the configuration (selectors, models, aliases, peers).
    @param stateOf: the current state of a local model ID.
    """

    def __init__(self, config: Config, stateOf: StateOf) -> None:
        self._config = config
        self._stateOf = stateOf
        self._reservations: dict[str, Counter[str]] = {}
        self._turns: Counter[str] = Counter()

    def __contains__(self, name: str) -> bool:
        return name in self._config.selectors

    def reservations(self, selectorID: str) -> dict[str, int]:
        """
        The spillover reservations of a selector: resolved target (model
        ID or peer FQN) to count.
        """
        return {k: v for k, v in self._reservations.get(selectorID, {}).items() if v}

    def choose(self, selectorID: str) -> Choice:
        """
        Pick a target of selector C{selectorID}.

        @raise NoSelectorTarget: no target is available.
        @raise KeyError: there is no such selector.
        """
        selector = self._config.selectors[selectorID]
        if selector.strategy == "pin":
            return Choice(selectorID, selector.targets[0])
        if selector.strategy == "warm":
            return Choice(selectorID, self._warm(selector))
        if selector.strategy == "spillover":
            return self._spillover(selector)
        raise NoSelectorTarget(
            f'selector "{selectorID}" has an unknown strategy "{selector.strategy}"'
        )

    def _local(self, target: str) -> str | None:
        return self._config.realModelName(target)

    def _warm(self, selector: SelectorConfig) -> str:
        for wanted in (State.READY, State.STARTING):
            for target in selector.targets:
                model = self._local(target)
                if model is not None and self._stateOf(model) is wanted:
                    return target
        return selector.targets[0]

    def _resolve(self, target: str) -> tuple[str, str | None]:
        """
        The reservation key of a target and its local model ID, if local.
        """
        model = self._local(target)
        if model is not None:
            return model, model
        peer = self._config.resolvePeerModel(target)
        if peer is not None:
            return self._config.peers[peer[0]].fqn(peer[1]), None
        return target, None

    def _candidates(self, selector: SelectorConfig) -> list[_Candidate]:
        loads = self._reservations.get(selector.id, Counter())
        found = []
        for target in selector.targets:
            key, model = self._resolve(target)
            load = loads[key]
            if model is not None:
                state = self._stateOf(model)
                if state in (State.STOPPING, State.SHUTDOWN):
                    continue
                active = state in (State.READY, State.STARTING) or load > 0
            else:
                active = load > 0
            found.append(_Candidate(target, key, active, load))
        return found

    def _spillover(self, selector: SelectorConfig) -> Choice:
        candidates = self._candidates(selector)
        if not candidates:
            raise NoSelectorTarget(
                f'selector "{selector.id}" has no available spillover targets'
            )
        active = [c for c in candidates if c.active]
        cold = [c for c in candidates if not c.active]
        chosen: _Candidate
        if not active:
            chosen = cold[0]
        else:
            least = min(c.load for c in active)
            if least >= selector.spillover and cold:
                chosen = cold[0]
            else:
                ties = [c for c in active if c.load == least]
                turn = self._turns[selector.id]
                self._turns[selector.id] = turn + 1
                chosen = ties[turn % len(ties)]
        return self._reserve(selector.id, chosen)

    def _reserve(self, selectorID: str, chosen: _Candidate) -> Choice:
        loads = self._reservations.setdefault(selectorID, Counter())
        loads[chosen.key] += 1

        def release() -> None:
            loads[chosen.key] -= 1
            if loads[chosen.key] <= 0:
                del loads[chosen.key]

        return Choice(selectorID, chosen.target, release)


__all__ = ["Choice", "NoSelectorTarget", "Selectors", "StateOf"]
