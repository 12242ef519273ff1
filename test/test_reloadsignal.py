"""
Tests for L{llamaswap.reloadsignal}, and for SIGHUP and C{--watch-config}
in a real C{twistd -n llamaswap}.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

import treq
from twisted.internet.defer import Deferred, fail
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llamaswap.reloadsignal import ReloadSignalService, installReloadSignal

from .twistdproc import startTwistd
from .util import poll


class FakeSignals:
    """
    Records handlers like C{signal.signal} does.
    """

    def __init__(self) -> None:
        self.handlers: dict[int, Any] = {signal.SIGHUP: signal.SIG_DFL}

    def __call__(self, number: int, handler: Any) -> Any:
        previous = self.handlers.get(number)
        self.handlers[number] = handler
        return previous

    def send(self, number: int) -> None:
        self.handlers[number](number, None)


class ThreadCalls(MemoryReactorClock):
    """
    A memory reactor that queues C{callFromThread} calls until run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fromThread: list[Callable[[], Any]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.fromThread.append(lambda: f(*args, **kw))

    def runThreadCalls(self) -> None:
        calls, self.fromThread = self.fromThread, []
        for call in calls:
            call()


class InstallTests(SynchronousTestCase):
    """
    L{installReloadSignal}.
    """

    def test_callsInReactorThread(self) -> None:
        """
        The handler only schedules the callback with C{callFromThread}; it
        runs when the reactor does.
        """
        reactor, signals, calls = ThreadCalls(), FakeSignals(), []
        uninstall = installReloadSignal(reactor, lambda: calls.append(1), signals)
        signals.send(signal.SIGHUP)
        signals.send(signal.SIGHUP)
        self.assertEqual(calls, [])
        reactor.runThreadCalls()
        self.assertEqual(calls, [1, 1])
        uninstall()
        self.assertIs(signals.handlers[signal.SIGHUP], signal.SIG_DFL)

    def test_callbackFailureLogged(self) -> None:
        """
        A callback that raises or fails is logged; the next SIGHUP still
        works.
        """
        reactor, signals, calls = ThreadCalls(), FakeSignals(), []

        def callback() -> Deferred[None]:
            calls.append(1)
            if len(calls) == 1:
                raise ValueError("first")
            return fail(KeyError("second"))

        installReloadSignal(reactor, callback, signals)
        for _ in range(2):
            signals.send(signal.SIGHUP)
            reactor.runThreadCalls()
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(ValueError, KeyError)), 2)

    def test_service(self) -> None:
        """
        The service installs the handler once the reactor runs, and
        ignores SIGHUP once stopped (a shutdown is under way) instead of
        letting it end the process.
        """
        reactor, signals, calls = ThreadCalls(), FakeSignals(), []
        service = ReloadSignalService(reactor, lambda: calls.append(1), signals)
        service.startService()
        self.assertIs(signals.handlers[signal.SIGHUP], signal.SIG_DFL)
        reactor.running = True
        for event in reactor.whenRunningHooks:
            event[0](*event[1], **event[2])
        signals.send(signal.SIGHUP)
        reactor.runThreadCalls()
        self.assertEqual(calls, [1])
        service.stopService()
        signals.send(signal.SIGHUP)
        reactor.runThreadCalls()
        self.assertEqual(calls, [1])
        self.assertIsNot(signals.handlers[signal.SIGHUP], signal.SIG_DFL)


def write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


CONFIG = "models:\n  m1:\n    cmd: srv --port ${PORT}\n"


class TwistdTests(TestCase):
    """
    A real C{twistd -n llamaswap}: SIGHUP and file changes reload, never
    stop it.
    """

    timeout = 90

    async def healthy(self, running: Any) -> None:
        response = await running.get("/health")
        self.assertEqual(response.code, 200)
        await response.content()

    async def test_sighupKeepsServing(self) -> None:
        """
        C{kill -HUP} reloads (and logs the summary), twice; a broken file
        is reported and changes nothing; the process keeps serving.
        """
        running = await startTwistd(self, CONFIG)
        write(running.configPath, CONFIG + "  m2:\n    cmd: srv --port ${PORT}\n")
        running.signal(signal.SIGHUP)
        await poll(lambda: "configuration reloaded (sighup)" in running.output, 20, "reload")
        self.assertIn("added m2", running.output)
        listed = await (await treq.get(running.url + "/v1/models", pool=running.pool)).json()
        self.assertIn("m2", [m["id"] for m in listed["data"]])
        running.signal(signal.SIGHUP)
        await poll(
            lambda: running.output.count("configuration reloaded (sighup)") == 2, 20, "2nd reload"
        )
        await self.healthy(running)
        write(running.configPath, CONFIG + "    ttl: -5\n")
        running.signal(signal.SIGHUP)
        await poll(lambda: "failed, the running configuration" in running.output, 20, "failure")
        self.assertIn("models.m1.ttl: model m1: invalid TTL value -5", running.output)
        await self.healthy(running)
        self.assertFalse(running.ended.called)
        response = await treq.get(running.url + "/v1/models", pool=running.pool)
        self.assertEqual(response.code, 200)
        await response.content()

    async def test_watchConfig(self) -> None:
        """
        With C{--watch-config}, replacing the file triggers a reload.
        """
        running = await startTwistd(self, CONFIG, "--watch-config")
        write(running.configPath, CONFIG + "  m3:\n    cmd: srv --port ${PORT}\n")
        await poll(lambda: "configuration reloaded (watch)" in running.output, 20, "reload")
        self.assertIn("added m3", running.output)
        await self.healthy(running)
