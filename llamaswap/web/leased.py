# -*- test-case-name: test.web.test_leased -*-
"""
The one path a request for a local model takes: acquire a lease (withdrawn
if the client leaves while waiting) → record it on the request's track →
relay to the URL the lease carries → release the lease, whatever happens.

Model-routed requests (L{llamaswap.web.inference}) and passthrough
requests (L{llamaswap.web.passthrough}) both go through L{serveLeased};
they differ only in how they acquire (a loading-state stream, or none) and
how they relay (forward, or tunnel a websocket).  With C{retryRefused}, a
refused connection to the granted model restarts it and relays once more
(L{llamaswap.web.recovery}).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web.server import Request

from ..finish import whenLost
from ..httperrors import HTTPError
from .errors import writeHTTPError
from .recovery import refusedUnanswered, restartAfterRefusal


class Track(Protocol):
    """
    What L{serveLeased} tells a request's track (a
    L{llamaswap.observe.tracking.RequestTrack}).
    """

    def queued(self) -> None: ...

    def granted(self, lease: Any = None) -> None: ...

    def finished(self, result: Any = None, error: Any = None) -> None: ...


class LeaseLike(Protocol):
    """
    What L{serveLeased} uses of a L{llamaswap.routing.router.Lease}.
    """

    @property
    def url(self) -> str: ...

    def release(self) -> bool: ...


def withdrawOnDisconnect(request: Request, acquiring: Deferred[Any]) -> Deferred[Any]:
    """
    Cancel C{acquiring} if the client of C{request} leaves before it fires.
    """

    def gone(failure: Failure) -> None:
        if not acquiring.called:
            acquiring.cancel()

    whenLost(request, gone)
    return acquiring


async def serveLeased(
    request: Request,
    track: Track | None,
    acquire: Callable[[], Deferred[Any]],
    relay: Callable[..., Awaitable[object]],
    retryRefused: bool = False,
) -> None:
    """
    Acquire, track, relay, release.

    A refusal (an L{HTTPError} from C{acquire}) is answered and recorded; a
    client that left while waiting is recorded.  Errors of C{relay} are
    the caller's (it knows how to answer them); the lease is released in
    every case.

    @param track: the request's track; L{None} for an untracked request
        (a websocket).
    @param acquire: starts waiting for the lease (a L{Deferred} firing
        with it).
    @param relay: given the lease, relays the request to C{lease.url}.
    @param retryRefused: call C{relay(lease, deferRefused)}: first with
        C{True} (a refused connection is left unanswered, the relay's
        L{llamaswap.web.forward.ForwardResult} says so), then, if it was
        refused, once more with C{False} on a new lease after the model
        was restarted.  A refusal of the new lease is answered but not
        recorded on C{track} (the first attempt's taps record the end).
    """
    try:
        if track is not None:
            track.queued()
        lease = await withdrawOnDisconnect(request, acquire())
        if track is not None:
            track.granted(lease)
    except HTTPError as e:
        writeHTTPError(request, e)
        if track is not None:
            track.finished(None, e)
        return
    except CancelledError as e:
        if track is not None:
            track.finished(None, e)
        return
    if not retryRefused:
        try:
            await relay(lease)
        finally:
            lease.release()
        return
    try:
        result = await relay(lease, True)
        if refusedUnanswered(result):  # type: ignore[arg-type]
            old, lease = lease, None
            try:
                lease = await restartAfterRefusal(
                    old, lambda: withdrawOnDisconnect(request, acquire())
                )
            except HTTPError as e:
                writeHTTPError(request, e)
                return
            except CancelledError:
                return
            if track is not None:
                track.granted(lease)
            await relay(lease, False)
    finally:
        if lease is not None:
            lease.release()


__all__ = ["serveLeased", "withdrawOnDisconnect"]
