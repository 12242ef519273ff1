"""
Tests for L{llamaswap.web.warm}: one warm connection per start, tried on
the starting model's output lines.
"""

from __future__ import annotations

from typing import Callable

from attrs import define
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.upstream.lifecycle import State
from llamaswap.web.warm import ATTEMPTS, StartWarmer

from ..observe.test_events import FakeSupervisor as WatchedSupervisor


@define
class FakeSpec:
    proxy: str = "http://127.0.0.1:5800"


class FakeSupervisor(WatchedSupervisor):
    def __init__(self) -> None:
        super().__init__("m")
        self.spec = FakeSpec()
        self.readinessVouched = True

    def say(self, line: str, stream: str = "stderr") -> None:
        for observer in list(self.outputObservers):
            observer(self.model, stream, line)


class StartWarmerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.supervisor = FakeSupervisor()
        self.calls: list[Deferred[bool]] = []
        self.urls: list[str] = []
        self.wanted: list[Callable[[], bool]] = []
        self.dropped: list[str] = []
        self.warmer = StartWarmer(self.warm, self.dropped.append)
        self.warmer.watch(self.supervisor)

    def warm(self, url: str, wanted: Callable[[], bool]) -> Deferred[bool]:
        self.urls.append(url)
        self.wanted.append(wanted)
        d: Deferred[bool] = Deferred()
        self.calls.append(d)
        return d

    def test_triesOnLinesWhileStarting(self) -> None:
        """
        Output lines of a starting model try, one attempt at a time, until
        one connection is warm; not before the start, not after.
        """
        self.supervisor.say("before the start")
        self.assertEqual(self.urls, [])
        self.supervisor.move(State.STARTING)
        self.supervisor.say("llama_server: initializing")
        self.supervisor.say("common_params: ...")
        self.assertEqual(self.urls, ["http://127.0.0.1:5800"])
        self.calls[0].callback(False)  # refused: not listening yet
        self.supervisor.say("load_model: loading model")
        self.assertEqual(len(self.urls), 2)
        self.calls[1].callback(True)
        self.supervisor.say("load_tensors: ...")
        self.supervisor.move(State.READY)
        self.supervisor.say("srv update_slots: all slots are idle")
        self.assertEqual(len(self.urls), 2)

    def test_unusedDroppedOnceReady(self) -> None:
        """
        Once the start is over (the request that waited has gone out), the
        idle connections to the server are dropped, and one still being
        made is not wanted: a server that serves one connection at a time
        must not sit on a connection nobody uses.
        """
        self.supervisor.move(State.STARTING)
        self.supervisor.say("loading")
        [wanted] = self.wanted
        self.assertTrue(wanted())
        self.assertEqual(self.dropped, [])
        self.supervisor.move(State.READY)
        self.assertEqual(self.dropped, ["http://127.0.0.1:5800"])
        self.assertFalse(wanted())
        self.supervisor.move(State.STOPPING)
        self.assertEqual(len(self.dropped), 1)

    def test_dropEndsTheStartsWarming(self) -> None:
        """
        L{StartWarmer.drop} (the prober's, before a probe it did not expect
        to need) closes the idle connections and ends this start's warming;
        the next start warms again.
        """
        self.supervisor.move(State.STARTING)
        self.supervisor.say("loading")
        self.calls[0].callback(False)
        self.warmer.drop("http://127.0.0.1:5800/health")
        self.assertEqual(self.dropped, ["http://127.0.0.1:5800/health"])
        self.assertFalse(self.wanted[0]())
        self.supervisor.say("still loading")
        self.assertEqual(len(self.urls), 1)
        self.supervisor.move(State.READY)
        self.assertEqual(len(self.dropped), 1)
        self.supervisor.move(State.STOPPING)
        self.supervisor.move(State.STOPPED)
        self.supervisor.move(State.STARTING)
        self.supervisor.say("loading")
        self.assertEqual(len(self.urls), 2)

    def test_eachStartWarmsAgain(self) -> None:
        """
        Every start gets its warm connection (the previous one went with
        the previous process).
        """
        for _ in range(2):
            self.supervisor.move(State.STARTING)
            self.supervisor.say("loading")
            self.calls[-1].callback(True)
            self.supervisor.move(State.READY)
            self.supervisor.move(State.STOPPING)
            self.supervisor.move(State.STOPPED)
        self.assertEqual(len(self.urls), 2)

    def test_attemptsBounded(self) -> None:
        """
        A server that never accepts costs at most L{ATTEMPTS} attempts per
        start.
        """
        self.supervisor.move(State.STARTING)
        for i in range(ATTEMPTS + 5):
            self.supervisor.say(f"line {i}")
            if self.calls and not self.calls[-1].called:
                self.calls[-1].callback(False)
        self.assertEqual(len(self.urls), ATTEMPTS)
        self.assertEqual(self.warmer.attempts, ATTEMPTS)

    def test_onlyVouchedStarts(self) -> None:
        """
        A start that needs a probe gets no warm connection: a server that
        serves one connection at a time would sit on it and never answer
        the probe.
        """
        self.supervisor.readinessVouched = False
        self.supervisor.move(State.STARTING)
        self.supervisor.say("listening")
        self.assertEqual(self.urls, [])
        self.supervisor.readinessVouched = True
        self.supervisor.say("loading")
        self.assertEqual(len(self.urls), 1)

    def test_noProxyNoCommandStopOutput(self) -> None:
        """
        Nothing to warm without a proxy URL; C{cmdStop}'s output is not the
        server's.
        """
        self.supervisor.move(State.STARTING)
        self.supervisor.say("stopping", stream="cmdStop")
        self.assertEqual(self.urls, [])
        self.supervisor.spec = FakeSpec(proxy="")
        self.supervisor.say("loading")
        self.assertEqual(self.urls, [])

    def test_stop(self) -> None:
        """
        A stopped warmer no longer watches the supervisor.
        """
        self.warmer.stop()
        self.assertEqual(
            (self.supervisor.stateObservers, self.supervisor.outputObservers), ([], [])
        )
