"""
Tests for L{llamaswap.promptcachesetup}: which models get a prompt cache,
their commands, and the default directory.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.app import specFor
from llamaswap.config.load import loadConfigText
from llamaswap.promptcachesetup import defaultPromptCacheDir, preparePromptCaches
from llamaswap.upstream.promptcache import SLOT_SAVE_PATH

from .web.helpers import ProtocolAgent

CONFIG = """
startPort: 25000
promptCacheDir: {dir}
promptCacheMaxBytes: 1GiB
promptCacheTimeout: 9
models:
  on:
    cmd: llama-server --port ${{PORT}} -m a.gguf
    promptCache: true
  own:
    cmd: llama-server --port ${{PORT}} -m a.gguf --slot-save-path {own}
    promptCache: true
  off:
    cmd: llama-server --port ${{PORT}} -m a.gguf
  vllm:
    cmd: vllm serve x --port ${{PORT}}
    promptCache: true
"""


class PrepareTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        self.dir = os.path.join(self.root, "kv")
        self.own = os.path.join(self.root, "own")
        text = CONFIG.format(dir=self.dir, own=self.own)
        self.config = loadConfigText(text, "t.yaml", environ={}).config
        clock = Clock()
        self.specs, self.hooks = preparePromptCaches(
            self.config,
            {m.id: specFor(m, self.config) for m in self.config.models.values()},
            clock=clock,
            agent=ProtocolAgent(clock),
        )

    def test_whichModels(self) -> None:
        """
        Only llama-server models with C{promptCache} on get hooks.
        """
        self.assertEqual(sorted(self.hooks), ["on", "own"])
        self.assertEqual(self.hooks["on"].afterReadyTimeout, 9.0)
        self.assertEqual(self.hooks["on"].beforeStopTimeout, 9.0)

    def test_commands(self) -> None:
        """
        C{--slot-save-path} is added only where missing; the user's own
        path is kept; other models' commands are unchanged.
        """
        on = self.specs["on"].argv
        self.assertEqual(on[-2:], (SLOT_SAVE_PATH, self.dir))
        self.assertEqual(self.specs["own"].argv.count(SLOT_SAVE_PATH), 1)
        self.assertNotIn(SLOT_SAVE_PATH, self.specs["off"].argv)
        self.assertNotIn(SLOT_SAVE_PATH, self.specs["vllm"].argv)

    def test_directoriesCreated(self) -> None:
        self.assertTrue(os.path.isdir(self.dir))
        self.assertTrue(os.path.isdir(self.own))

    def test_defaultDirectory(self) -> None:
        self.assertEqual(
            defaultPromptCacheDir({"STATE_DIRECTORY": "/var/lib/llamaswap:/other"}),
            "/var/lib/llamaswap/promptcache",
        )
        self.assertEqual(
            defaultPromptCacheDir({"XDG_STATE_HOME": "/s"}), "/s/llamaswap/promptcache"
        )
        self.assertEqual(
            defaultPromptCacheDir({}),
            os.path.join(os.path.expanduser("~"), ".local/state/llamaswap/promptcache"),
        )
