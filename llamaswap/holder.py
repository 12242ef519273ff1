# -*- test-case-name: test.test_holder -*-
"""
A value that can change while llamaswap runs, with observers: the seam
between what is current (the configuration, the active profile) and the
parts that read it.

Collaborators keep a L{Holder} and read C{holder.value} when they need it,
rather than keeping a copy; a reload or a profile switch calls
L{Holder.set} once, so every reader sees either the old value or the new
one, never half of each.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from twisted.logger import Logger

T = TypeVar("T")

Observer = Callable[[T, T], None]


class Holder(Generic[T]):
    """
    One current value of type C{T}, replaced atomically.
    """

    log = Logger()

    def __init__(self, value: T) -> None:
        self._value = value
        self._observers: list[Observer[T]] = []

    @property
    def value(self) -> T:
        """
        The current value.
        """
        return self._value

    def set(self, value: T) -> None:
        """
        Make C{value} current, then tell every observer C{(old, new)}.  An
        observer that raises is logged; the others are still told.
        """
        old, self._value = self._value, value
        for observer in list(self._observers):
            try:
                observer(old, value)
            except Exception:
                self.log.failure("observer {observer!r} failed", observer=observer)

    def addObserver(self, observer: Observer[T]) -> Callable[[], None]:
        """
        Call C{observer(old, new)} after every L{set}.

        @return: a function that removes the observer again.
        """
        self._observers.append(observer)

        def remove() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return remove
