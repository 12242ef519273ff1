"""
Tests for the files in C{contrib/}.
"""

from __future__ import annotations

import configparser
import os

from twisted.trial.unittest import SynchronousTestCase

from .util import REPO

UNIT = os.path.join(REPO, "contrib", "systemd", "llamaswap.service")


def readUnit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    with open(UNIT, encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    parser.read_string(text)
    return parser


class SystemdUnitTests(SynchronousTestCase):
    def test_killMode(self) -> None:
        """
        C{SIGTERM} goes to llamaswap alone (so it can drain and stop the
        upstreams gracefully) and whatever remains is killed: C{mixed},
        with the final C{SIGKILL} left on.
        """
        service = readUnit()["Service"]
        self.assertEqual(service["KillMode"], "mixed")
        self.assertEqual(service.get("SendSIGKILL", "yes"), "yes")
        self.assertEqual(service["KillSignal"], "SIGTERM")

    def test_stopTimeoutCoversDrain(self) -> None:
        """
        systemd waits longer than llamaswap's default drain (30 s).
        """
        self.assertGreater(int(readUnit()["Service"]["TimeoutStopSec"]), 30)
