"""
Tests for L{llamaswap.finish}: many watchers, one C{notifyFinish}.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from llamaswap.finish import whenFinished, whenLost


class WatchersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.request = Request(DummyChannel())
        self.told: list[tuple[str, object]] = []

    def watcher(self, name: str):  # type: ignore[no-untyped-def]
        return lambda result: self.told.append((name, result))

    def test_oneDeferred(self) -> None:
        """
        However many watchers a request has, it hands out one
        C{notifyFinish} Deferred.
        """
        for n in range(5):
            whenFinished(self.request, self.watcher(f"f{n}"))
            whenLost(self.request, self.watcher(f"l{n}"))
        self.assertEqual(len(self.request.notifications), 1)

    def test_finished(self) -> None:
        """
        A response sent: finish watchers get L{None}, in order; lost-only
        watchers are not called.
        """
        whenFinished(self.request, self.watcher("a"))
        whenLost(self.request, self.watcher("lost"))
        whenFinished(self.request, self.watcher("b"))
        self.request.finish()
        self.assertEqual(self.told, [("a", None), ("b", None)])

    def test_lost(self) -> None:
        """
        A connection lost first: every watcher gets the same failure, in the
        order they registered.
        """
        whenLost(self.request, self.watcher("a"))
        whenFinished(self.request, self.watcher("b"))
        self.request.connectionLost(Failure(ConnectionLost("gone")))
        self.assertEqual([name for name, _ in self.told], ["a", "b"])
        failures = [result for _, result in self.told]
        self.assertIsInstance(failures[0], Failure)
        self.assertIs(failures[0], failures[1])
        self.assertTrue(failures[0].check(ConnectionLost))  # type: ignore[union-attr]

    def test_failingWatcher(self) -> None:
        """
        A watcher that raises is logged; the next ones are still told, and
        the shared Deferred ends without an unhandled failure.
        """

        def boom(result: object) -> None:
            raise ValueError("boom")

        whenFinished(self.request, boom)
        whenFinished(self.request, self.watcher("after"))
        [shared] = self.request.notifications
        self.request.finish()
        self.assertEqual(self.told, [("after", None)])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertIsNone(self.successResultOf(shared))

    def test_registeredWhileTelling(self) -> None:
        """
        A watcher registered by another while they are told is told too.
        """
        whenFinished(
            self.request, lambda r: whenFinished(self.request, self.watcher("late"))
        )
        self.request.finish()
        self.assertEqual(self.told, [("late", None)])

    def test_noAttributes(self) -> None:
        """
        A request object without instance attributes gets a Deferred per
        watcher, with the same results.
        """

        class Slotted:
            __slots__ = ("notifications",)

            def __init__(self) -> None:
                self.notifications: list = []

            def notifyFinish(self):  # type: ignore[no-untyped-def]
                from twisted.internet.defer import Deferred

                d: Deferred = Deferred()
                self.notifications.append(d)
                return d

        request = Slotted()
        whenFinished(request, self.watcher("a"))
        whenLost(request, self.watcher("b"))
        self.assertEqual(len(request.notifications), 2)
        for d in request.notifications:
            d.callback(None)
        self.assertEqual(self.told, [("a", None)])
