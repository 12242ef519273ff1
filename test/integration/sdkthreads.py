# -*- test-case-name: test.integration.test_through_llamaswap -*-
"""
Run the official, synchronous C{openai} and C{anthropic} SDK clients from a
trial test without blocking the reactor that serves llamaswap.

The SDKs block on httpx, so every call goes to the reactor's thread pool
with L{deferToThread}; the reactor keeps serving llamaswap meanwhile.
L{SDKThreads} sizes that pool for the test, makes clients that never retry
and always time out, and in cleanup waits until every call it started has
ended (success or not) before llamaswap is stopped, then closes the
clients and restores the pool size.  Create it I{after}
L{test.harness.startLlamaSwap}: cleanups run last-in first-out, so the
threads finish against a live llamaswap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anthropic
import openai
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

T = TypeVar("T")

#: Seconds an SDK call may take before it fails (finite, below trial's
#: per-test timeout, so a hung call fails the test instead of the run).
SDK_TIMEOUT = 30.0


class SDKThreads:
    """
    SDK clients for one llamaswap and the threads their calls run in.

    @ivar pending: calls started and not yet ended.
    """

    def __init__(self, test: TestCase, baseURL: str, poolSize: int = 8) -> None:
        """
        @param baseURL: llamaswap's C{http://127.0.0.1:PORT}.
        @param poolSize: the reactor thread pool's maximum for this test
            (at least the number of calls the test runs at once).
        """
        self.baseURL = baseURL
        self.pending: list[Deferred[Any]] = []
        self._clients: list[Any] = []
        pool = reactor.getThreadPool()  # type: ignore[attr-defined]
        previous = pool.max
        reactor.suggestThreadPoolSize(max(poolSize, previous))  # type: ignore[attr-defined]
        test.addCleanup(reactor.suggestThreadPoolSize, previous)  # type: ignore[attr-defined]
        test.addCleanup(self._closeClients)
        test.addCleanup(self.drain)

    def openai(self) -> openai.OpenAI:
        """
        An OpenAI client for llamaswap's C{/v1}: no retries, finite timeout.
        """
        client = openai.OpenAI(
            base_url=self.baseURL + "/v1",
            api_key="sk-llamaswap-test",
            max_retries=0,
            timeout=SDK_TIMEOUT,
        )
        self._clients.append(client)
        return client

    def anthropic(self) -> anthropic.Anthropic:
        """
        An Anthropic client for llamaswap (the SDK adds C{/v1/messages}).
        """
        client = anthropic.Anthropic(
            base_url=self.baseURL,
            api_key="sk-ant-llamaswap-test",
            max_retries=0,
            timeout=SDK_TIMEOUT,
        )
        self._clients.append(client)
        return client

    def call(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """
        Run C{f(*args, **kwargs)} in the reactor's thread pool.
        """
        d = deferToThread(f, *args, **kwargs)
        self.pending.append(d)

        def ended(result: Any) -> Any:
            self.pending.remove(d)
            return result

        d.addBoth(ended)
        return d

    def drain(self) -> Deferred[Any]:
        """
        Fire once every started call has ended; their failures stay with
        their own Deferreds (a test that awaited them saw them already).
        """
        waiting = [self._quiet(d) for d in list(self.pending)]
        return DeferredList(waiting)

    @staticmethod
    def _quiet(d: Deferred[Any]) -> Deferred[None]:
        done: Deferred[None] = Deferred()

        def relay(result: Any) -> Any:
            done.callback(None)
            return result

        d.addBoth(relay)
        return done

    def _closeClients(self) -> None:
        for client in self._clients:
            client.close()
        del self._clients[:]


__all__ = ["SDK_TIMEOUT", "SDKThreads"]
