# -*- test-case-name: test.web.test_warm -*-
"""
A warm connection for each start: while a model starts, open one
connection to its server as soon as the server accepts one and leave it
idle in the upstream pool, so that the request that waited for the start
is written the moment the model is ready, instead of first connecting
(two reactor turns after the readiness, about 0.3 ms of every swap; the
server's accept is then off that path too).

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


class StartWarmer:
    """
    Warms one connection per start of one model (see the module
    docstring).

    @ivar attempts: connection attempts made in the current start.
    """

    def __init__(
        self,
        supervisor: Startable,
        warm: Callable[[str, Callable[[], bool]], Deferred[bool]],
        attempts: int = ATTEMPTS,
    ) -> None:
        """
        @param warm: C{warm(url, wanted)} opens a connection to a server
            URL and leaves it idle in the pool if C{wanted()} still says so
            once connected, firing with whether it did
            (L{llamaswap.web.client.UpstreamAgent.warm}).
        """
        self._supervisor = supervisor
        self._warm = warm
        self._limit = attempts
        self._starting = False
        #: Starting or ready: a connection that arrives late is still wanted.
        self._live = False
        self._trying = False
        self._warmed = False
        self.attempts = 0
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
        self._starting = self._live = False

    def _stateChanged(self, model: str, old: State, new: State) -> None:
        self._starting = new is State.STARTING
        self._live = new in (State.STARTING, State.READY)
        if self._starting:
            self._warmed = False
            self.attempts = 0

    def _line(self, model: str, stream: str, line: str) -> None:
        if (
            not self._starting
            or self._warmed
            or self._trying
            or self.attempts >= self._limit
            or stream not in ("stdout", "stderr")
        ):
            return
        proxy = self._supervisor.spec.proxy
        if not proxy:
            return
        self.attempts += 1
        self._trying = True
        self._warm(proxy, lambda: self._live).addCallback(self._tried)

    def _tried(self, warmed: bool) -> None:
        self._trying = False
        self._warmed = self._warmed or warmed


__all__ = ["ATTEMPTS", "StartWarmer"]
