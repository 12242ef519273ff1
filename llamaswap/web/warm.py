# -*- test-case-name: test.web.test_warm -*-
"""
A warm connection for each start: while a model starts, open one
connection to its server as soon as the server accepts one and leave it
idle in the upstream pool, so that the request that waited for the start
is written the moment the model is ready, instead of first connecting
(two reactor turns after the readiness, about 0.3 ms of every swap; the
server's accept is then off that path too).

A server that serves one connection at a time (Python's C{http.server},
say) sits on the first connection it accepts, so the warm connection must
be the one that carries the next request, or be gone:

 - only a start that will be ready at the server's own line, with no
   probe (a I{vouched} one, L{llamaswap.upstream.health}), gets one;
 - should such a start need a probe after all (its line did not come),
   the prober drops it first (the supervisor's C{dropIdleConnections},
   L{StartWarmer.drop}), and one still being made is closed once made;
 - once the start is over and the request that waited for it has gone
   out, a warm connection that request did not take (it was still being
   made) is dropped the same way.

Servers bind their port early and load afterwards (llama-server does,
to answer health checks meanwhile), and print while they load; every
output line of a starting model is a chance to try, with one attempt at a
time and at most L{ATTEMPTS} per start, so a server that binds late
costs a few refused connects and nothing else.  A connection the server
closes while it loads (llama-server closes idle ones after 5 seconds) is
simply not there any more; the request then connects as before.
"""

from __future__ import annotations

from typing import Callable, Protocol

from twisted.internet.defer import Deferred

from ..upstream.lifecycle import State
from ..upstream.supervisor import Watchable

#: Connection attempts per start, at most.
ATTEMPTS = 8


class _Spec(Protocol):
    @property
    def proxy(self) -> str: ...


class Startable(Watchable, Protocol):
    """
    What L{StartWarmer} uses of a L{llamaswap.upstream.supervisor.Supervisor}.
    """

    @property
    def spec(self) -> _Spec: ...

    @property
    def readinessVouched(self) -> bool: ...


class StartWarmer:
    """
    Warms one connection per start of one model (see the module
    docstring); L{watch} the model's supervisor, and give it L{drop} as
    its C{dropIdleConnections}.

    @ivar attempts: connection attempts made in the current start.
    """

    def __init__(
        self,
        warm: Callable[[str, Callable[[], bool]], Deferred[bool]],
        dropIdle: Callable[[str], object],
        attempts: int = ATTEMPTS,
    ) -> None:
        """
        @param warm: C{warm(url, wanted)} opens a connection to a server
            URL and leaves it idle in the pool if C{wanted()} still says so
            once connected, firing with whether it did
            (L{llamaswap.web.client.UpstreamAgent.warm}).
        @param dropIdle: C{dropIdle(url)} closes the idle pooled
            connections to that server
            (L{llamaswap.web.client.UpstreamAgent.closeCachedConnectionsTo}).
        """
        self._warm = warm
        self._dropIdle = dropIdle
        self._limit = attempts
        self._supervisor: Startable | None = None
        self._removers: list[Callable[[], None]] = []
        #: A connection made now is still wanted: a vouched start is in
        #: progress and has not needed a probe.
        self._wanted = False
        self._trying = False
        self._warmed = False
        self.attempts = 0

    def watch(self, supervisor: Startable) -> None:
        """
        Warm a connection for each start of C{supervisor}'s model.
        """
        self._supervisor = supervisor
        self._removers = [
            supervisor.addStateReporter(self._stateChanged),
            supervisor.addOutputObserver(self._line),
        ]

    def stop(self) -> None:
        """
        Stop watching the supervisor.
        """
        for remove in self._removers:
            remove()
        self._removers = []
        self._wanted = False

    def drop(self, url: str) -> object:
        """
        No warm connection for this start any more (it needs a probe after
        all, or it is over): close the idle connections to C{url}'s server,
        and one still being made once it is made.
        """
        self._wanted = False
        return self._dropIdle(url)

    def _stateChanged(self, model: str, old: State, new: State) -> None:
        if new is State.STARTING:
            self._wanted = True
            self._warmed = False
            self.attempts = 0
        elif old is State.STARTING:
            if self._wanted and self.attempts:
                # The request that waited for the start has gone out
                # (reporters hear after the waiters): a warm connection it
                # did not take would keep a server that serves one
                # connection at a time from the next one.
                assert self._supervisor is not None
                self.drop(self._supervisor.spec.proxy)
            self._wanted = False

    def _line(self, model: str, stream: str, line: str) -> None:
        supervisor = self._supervisor
        if (
            supervisor is None
            or not self._wanted
            or self._warmed
            or self._trying
            or self.attempts >= self._limit
            or stream not in ("stdout", "stderr")
            or not supervisor.readinessVouched
        ):
            return
        proxy = supervisor.spec.proxy
        if not proxy:
            return
        self.attempts += 1
        self._trying = True
        self._warm(proxy, lambda: self._wanted).addCallback(self._tried)

    def _tried(self, warmed: bool) -> None:
        self._trying = False
        self._warmed = self._warmed or warmed


__all__ = ["ATTEMPTS", "StartWarmer"]
