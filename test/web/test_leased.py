"""
Tests for L{llamaswap.web.leased}: acquire → track → relay → release.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from llamaswap.httperrors import TooManyRequests
from llamaswap.web.leased import serveLeased


class Lease:
    url = "http://127.0.0.1:9"

    def __init__(self) -> None:
        self.released = 0

    def release(self) -> bool:
        self.released += 1
        return self.released == 1


class Track:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def queued(self) -> None:
        self.calls.append(("queued", None))

    def granted(self, lease: Any = None) -> None:
        self.calls.append(("granted", lease))

    def finished(self, result: Any = None, error: Any = None) -> None:
        self.calls.append(("finished", type(error)))


def request() -> Request:
    return Request(DummyChannel())


class ServeLeasedTests(SynchronousTestCase):
    def test_relayToLeaseThenRelease(self) -> None:
        """
        The relay gets the lease (and its URL); the lease is released once
        the relay is over.
        """
        lease, track = Lease(), Track()
        relays: list[Deferred[None]] = []

        def relay(given: Any) -> Deferred[None]:
            self.assertIs(given, lease)
            relays.append(Deferred())
            return relays[-1]

        d = Deferred.fromCoroutine(serveLeased(request(), track, lambda: succeed(lease), relay))
        self.assertEqual(track.calls, [("queued", None), ("granted", lease)])
        self.assertEqual(lease.released, 0)
        relays[0].callback(None)
        self.successResultOf(d)
        self.assertEqual(lease.released, 1)

    def test_relayFailureStillReleases(self) -> None:
        """
        A relay that fails releases the lease and the failure is the
        caller's.
        """
        lease = Lease()
        d = Deferred.fromCoroutine(
            serveLeased(request(), None, lambda: succeed(lease), lambda _: fail(ValueError()))
        )
        self.failureResultOf(d, ValueError)
        self.assertEqual(lease.released, 1)

    def test_refusalAnswered(self) -> None:
        """
        A refused acquire is answered with its error and recorded; nothing
        is relayed.
        """
        track, r = Track(), request()
        d = Deferred.fromCoroutine(
            serveLeased(
                r,
                track,
                lambda: fail(TooManyRequests("busy")),
                lambda _: self.fail("relayed"),
            )
        )
        self.successResultOf(d)
        self.assertEqual(r.code, 429)
        self.assertEqual(track.calls, [("queued", None), ("finished", TooManyRequests)])

    def test_clientLeavesWhileWaiting(self) -> None:
        """
        A client that leaves while the request waits withdraws it (the
        acquire is cancelled) and the track records why.
        """
        track, r = Track(), request()
        cancelled: list[object] = []
        acquiring: Deferred[Any] = Deferred(cancelled.append)
        d = Deferred.fromCoroutine(
            serveLeased(r, track, lambda: acquiring, lambda _: self.fail("relayed"))
        )
        r.connectionLost(Exception("gone"))
        self.successResultOf(d)
        self.assertEqual(cancelled, [acquiring])
        self.assertEqual(track.calls, [("queued", None), ("finished", CancelledError)])
