# -*- test-case-name: test.test_finish -*-
"""
When a request ends, for everything that watches it through one
C{notifyFinish} Deferred.

A model request has half a dozen watchers (the drain tracker, the access
log, the request tracker, key concurrency, the lease, the relay), and each
C{notifyFinish} costs a L{Deferred}, a callback registration and a
callback run.  L{whenFinished} and L{whenLost} register a watcher on the
request's one shared Deferred instead; watchers are told in the order they
registered, like separate Deferreds would be, and one that raises is
logged without keeping the others from being told.

Bottom level: used by the drain tracker, observe/ and web/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

#: The request attribute holding its watchers.
_WATCHERS = "_llamaswapFinishWatchers"

#: A watcher: the callable and whether it wants only a lost connection.
_Watcher = tuple[Callable[[Any], object], bool]


def _watch(request: Any, watcher: _Watcher) -> None:
    attributes = getattr(request, "__dict__", None)
    if attributes is None:
        # Nowhere to keep a list: a Deferred of its own.
        request.notifyFinish().addBoth(_tell, [watcher])
        return
    watchers: list[_Watcher] | None = attributes.get(_WATCHERS)
    if watchers is None:
        watchers = []
        setattr(request, _WATCHERS, watchers)
        request.notifyFinish().addBoth(_tell, watchers)
    watchers.append(watcher)


def whenFinished(request: Any, callback: Callable[[Failure | None], object]) -> None:
    """
    Call C{callback(None)} when C{request}'s response has been sent, or
    C{callback(failure)} when its connection is lost first (what
    C{request.notifyFinish().addBoth(callback)} does).
    """
    _watch(request, (callback, False))


def whenLost(request: Any, callback: Callable[[Failure], object]) -> None:
    """
    Call C{callback(failure)} if C{request}'s connection is lost before its
    response has been sent (C{request.notifyFinish().addErrback(callback)}).
    """
    _watch(request, (callback, True))


def _tell(result: object, watchers: list[_Watcher]) -> None:
    failure = result if isinstance(result, Failure) else None
    # By index: a watcher may register another while being told, which
    # is then told too (as a Deferred added to notifyFinish's list is).
    index = 0
    while index < len(watchers):
        callback, lostOnly = watchers[index]
        index += 1
        if lostOnly and failure is None:
            continue
        try:
            callback(failure)
        except Exception:
            log.failure("a request-end watcher ({watcher!r}) failed", watcher=callback)
    return None


__all__ = ["whenFinished", "whenLost"]
