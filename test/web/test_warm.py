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

    def say(self, line: str, stream: str = "stderr") -> None:
        for observer in list(self.outputObservers):
            observer(self.model, stream, line)


class StartWarmerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.supervisor = FakeSupervisor()
        self.calls: list[Deferred[bool]] = []
        self.urls: list[str] = []
        self.wanted: list[Callable[[], bool]] = []
        self.warmer = StartWarmer(self.supervisor, self.warm)

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

    def test_wantedWhileStartingOrReady(self) -> None:
        """
        A connection that arrives once the model is ready is still wanted;
        one that arrives once it is being stopped is not.
        """
        self.supervisor.move(State.STARTING)
        self.supervisor.say("loading")
        [wanted] = self.wanted
        self.assertTrue(wanted())
        self.supervisor.move(State.READY)
        self.assertTrue(wanted())
        self.supervisor.move(State.STOPPING)
        self.assertFalse(wanted())

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
