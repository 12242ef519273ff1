# -*- test-case-name: test.upstream.test_registry -*-
"""
The supervisors of the models being served, keyed by model ID.

L{Upstreams} is the one mapping the router, the web handlers and the
observability parts read supervisors from (they keep the registry, never a
copy), so that a reload can add and remove models in one place and every
reader sees the change at once.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, Mapping, TypeVar

from twisted.logger import Logger

S = TypeVar("S")

#: C{observer(modelID, old, new)}: C{old} L{None} when added, C{new}
#: L{None} when removed.
Observer = Callable[[str, "S | None", "S | None"], None]


class Upstreams(Mapping[str, S], Generic[S]):
    """
    Model ID to its supervisor; a read-only mapping with L{add} and
    L{remove} for reconfiguration, which tell observers.
    """

    log = Logger()

    def __init__(self, supervisors: Mapping[str, S] | None = None) -> None:
        self._supervisors: dict[str, S] = dict(supervisors or {})
        self._observers: list[Callable[[str, S | None, S | None], None]] = []

    def __getitem__(self, modelID: str) -> S:
        return self._supervisors[modelID]

    def __iter__(self) -> Iterator[str]:
        return iter(self._supervisors)

    def __len__(self) -> int:
        return len(self._supervisors)

    def __repr__(self) -> str:
        return f"<Upstreams {sorted(self._supervisors)}>"

    def add(self, modelID: str, supervisor: S) -> None:
        """
        Serve C{modelID} with C{supervisor} (replacing any previous one).
        """
        old = self._supervisors.get(modelID)
        self._supervisors[modelID] = supervisor
        self._tell(modelID, old, supervisor)

    def remove(self, modelID: str) -> S | None:
        """
        Stop serving C{modelID}; its supervisor (not stopped here), or
        L{None} if it was not served.
        """
        old = self._supervisors.pop(modelID, None)
        if old is not None:
            self._tell(modelID, old, None)
        return old

    def addObserver(self, observer: Callable[[str, S | None, S | None], None]) -> Callable[[], None]:
        """
        Call C{observer(modelID, old, new)} after every L{add} and
        L{remove}.

        @return: a function removing the observer again.
        """
        self._observers.append(observer)

        def remove() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return remove

    def _tell(self, modelID: str, old: S | None, new: S | None) -> None:
        for observer in list(self._observers):
            try:
                observer(modelID, old, new)
            except Exception:
                self.log.failure("upstreams observer {observer!r} failed", observer=observer)


__all__ = ["Upstreams"]
