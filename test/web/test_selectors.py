"""
Tests for L{llamaswap.web.selectors}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.load import loadConfigText
from llamaswap.config.model import Config
from llamaswap.upstream.lifecycle import State
from llamaswap.web.selectors import NoSelectorTarget, Selectors

CONFIG = """
models:
  a: {cmd: x, proxy: "http://127.0.0.1:1", aliases: [alias-a]}
  b: {cmd: x, proxy: "http://127.0.0.1:2"}
  c: {cmd: x, proxy: "http://127.0.0.1:3"}
groups:
  pool: {swap: false, members: [a, b, c]}
peers:
  remote: {proxy: "http://127.0.0.1:4", models: [r1, r2]}
selectors:
  pinned: {strategy: pin, targets: [b, a]}
  warm: {strategy: warm, targets: [alias-a, b, c]}
  spill: {strategy: spillover, targets: [alias-a, b, c]}
  spill2: {strategy: spillover, targets: [a, b], settings: {spillover: 2}}
  mixed: {strategy: spillover, targets: [a, remote/r1, r2]}
"""


def loadConfig() -> Config:
    """
    The test configuration.
    """
    return loadConfigText(CONFIG, "test.yaml", environ={}).config


class SelectorsTests(SynchronousTestCase):
    """
    L{Selectors.choose} follows llama-swap's strategies.
    """

    def setUp(self) -> None:
        self.states: dict[str, State] = {}
        self.selectors = Selectors(
            loadConfig(), lambda model: self.states.get(model, State.STOPPED)
        )

    def choose(self, selector: str) -> str:
        """
        The target chosen (reservation kept).
        """
        return self.selectors.choose(selector).target

    def test_contains(self) -> None:
        """
        Selector IDs are recognised; model names are not selectors.
        """
        self.assertIn("warm", self.selectors)
        self.assertNotIn("a", self.selectors)

    def test_pin(self) -> None:
        """
        C{pin} always picks the first target, whatever runs.
        """
        self.states["a"] = State.READY
        self.assertEqual(self.choose("pinned"), "b")

    def test_warm(self) -> None:
        """
        C{warm}: the first ready target, else the first starting, else the
        first target, as configured (an alias stays an alias).
        """
        self.assertEqual(self.choose("warm"), "alias-a")
        self.states["c"] = State.STARTING
        self.assertEqual(self.choose("warm"), "c")
        self.states["b"] = State.READY
        self.assertEqual(self.choose("warm"), "b")

    def test_spilloverFillsThenSpills(self) -> None:
        """
        All cold: the first target; then each active target takes up to
        C{spillover} requests before the next cold one starts; when every
        target is full, the least loaded active one.
        """
        picks = [self.choose("spill") for _ in range(3)]
        self.assertEqual(picks, ["alias-a", "b", "c"])
        self.assertEqual(self.selectors.reservations("spill"), {"a": 1, "b": 1, "c": 1})
        self.assertEqual(
            sorted(self.choose("spill") for _ in range(3)), ["alias-a", "b", "c"]
        )

    def test_spilloverSetting(self) -> None:
        """
        With C{spillover: 2} a second target starts only at the third
        concurrent request.
        """
        picks = [self.choose("spill2") for _ in range(3)]
        self.assertEqual(picks, ["a", "a", "b"])

    def test_spilloverRunningTargets(self) -> None:
        """
        A ready or starting target is active without reservations, so it
        is preferred over a cold one; ties between active targets are
        taken in turn.
        """
        self.states["b"] = State.READY
        self.states["c"] = State.STARTING
        first, second = self.choose("spill"), self.choose("spill")
        self.assertEqual(sorted([first, second]), ["b", "c"])
        self.assertEqual(self.choose("spill"), "alias-a")

    def test_spilloverRelease(self) -> None:
        """
        A released choice frees its reservation, once.
        """
        choice = self.selectors.choose("spill")
        self.assertEqual(self.selectors.reservations("spill"), {"a": 1})
        choice.release()
        choice.release()
        self.assertEqual(self.selectors.reservations("spill"), {})
        self.assertEqual(self.choose("spill"), "alias-a")

    def test_spilloverSkipsStopping(self) -> None:
        """
        Targets that are stopping or shut down are skipped; with none left
        the selector answers 503.
        """
        self.states["a"] = State.STOPPING
        self.assertEqual(self.choose("spill"), "b")
        self.states.update(a=State.SHUTDOWN, b=State.STOPPING, c=State.SHUTDOWN)
        error = self.assertRaises(NoSelectorTarget, self.selectors.choose, "spill")
        self.assertEqual(error.status, 503)
        self.assertEqual(
            error.message, 'selector "spill" has no available spillover targets'
        )

    def test_spilloverPeers(self) -> None:
        """
        Peer targets (fully-qualified or bare) are active only while they
        hold reservations, and are reserved under their fully-qualified
        names.
        """
        self.states["a"] = State.READY
        self.assertEqual(self.choose("mixed"), "a")
        self.assertEqual(self.choose("mixed"), "remote/r1")
        self.assertEqual(self.choose("mixed"), "r2")
        self.assertEqual(
            self.selectors.reservations("mixed"),
            {"a": 1, "remote/r1": 1, "remote/r2": 1},
        )
