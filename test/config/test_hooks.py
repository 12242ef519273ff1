"""
Tests for C{hooks.on_startup.profile} (llama-swap #1053): the profile the
app activates at startup and after each reload.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.errors import ConfigError
from llamaswap.config.load import loadConfigText

BASE = """
models:
  m1:
    cmd: srv --port ${PORT}
profiles:
  fast:
    pins: {chat: m1}
"""


class StartupProfileTests(SynchronousTestCase):
    """
    C{hooks.on_startup.profile} must name a defined profile.
    """

    def test_default(self) -> None:
        """
        Without the key, no profile is activated.
        """
        self.assertEqual(loadConfigText(BASE).config.hooks.profile, "")

    def test_known(self) -> None:
        """
        A defined profile is kept (trimmed), next to the preload list.
        """
        text = BASE + "hooks:\n  on_startup:\n    profile: ' fast '\n    preload: [m1]\n"
        hooks = loadConfigText(text).config.hooks
        self.assertEqual(hooks.profile, "fast")
        self.assertEqual(hooks.preload, ("m1",))

    def test_blank(self) -> None:
        """
        A blank or null profile means none.
        """
        for value in ("''", "null", "'  '"):
            text = BASE + f"hooks:\n  on_startup:\n    profile: {value}\n"
            self.assertEqual(loadConfigText(text).config.hooks.profile, "")

    def test_unknown(self) -> None:
        """
        An unknown profile is an error at its line naming the known ones.
        """
        text = BASE + "hooks:\n  on_startup:\n    profile: slow\n"
        with self.assertRaises(ConfigError) as raised:
            loadConfigText(text, "c.yaml")
        self.assertEqual(
            [str(p) for p in raised.exception.errors],
            [
                'c.yaml:10: hooks.on_startup.profile references unknown profile "slow"'
                " (known: fast)"
            ],
        )

    def test_noProfiles(self) -> None:
        """
        With no profiles at all, the message says so.
        """
        text = "hooks:\n  on_startup:\n    profile: any\n"
        with self.assertRaises(ConfigError) as raised:
            loadConfigText(text)
        self.assertIn("(known: none defined)", str(raised.exception))

    def test_notAString(self) -> None:
        """
        A list where the name belongs is a type error.
        """
        text = BASE + "hooks:\n  on_startup:\n    profile: [fast]\n"
        with self.assertRaises(ConfigError) as raised:
            loadConfigText(text)
        self.assertIn("hooks.on_startup.profile", str(raised.exception))
