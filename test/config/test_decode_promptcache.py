"""
Tests for L{llamaswap.config.decode_promptcache}: the prompt cache's global
keys and the per-model C{promptCache} switch.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.decode_promptcache import parseByteSize
from llamaswap.config.model import (
    DEFAULT_PROMPT_CACHE_MAX_BYTES,
    DEFAULT_PROMPT_CACHE_TIMEOUT,
    PromptCacheConfig,
)

from .helpers import BuildTestCase

TWO_MODELS = """
models:
  a:
    cmd: llama-server -m a.gguf
    proxy: http://h:1
  b:
    cmd: llama-server -m b.gguf
    proxy: http://h:2
    promptCache: {b}
"""


class PromptCacheKeyTests(BuildTestCase):
    """
    The global keys and their defaults.
    """

    def test_defaults(self) -> None:
        """
        Off by default, default directory, 4 GiB, 60 s.
        """
        config = self.loads(TWO_MODELS.format(b="null"))
        self.assertEqual(config.promptCache, PromptCacheConfig())
        self.assertEqual(config.promptCache.maxBytes, DEFAULT_PROMPT_CACHE_MAX_BYTES)
        self.assertEqual(config.promptCache.timeout, DEFAULT_PROMPT_CACHE_TIMEOUT)
        self.assertFalse(config.models["a"].promptCache)
        self.assertFalse(config.models["b"].promptCache)
        self.noWarnings()

    def test_globalDefaultAndOverride(self) -> None:
        """
        The global C{promptCache} is every model's default; a model's own
        value wins.
        """
        config = self.loads("promptCache: true\n" + TWO_MODELS.format(b="false"))
        self.assertTrue(config.models["a"].promptCache)
        self.assertFalse(config.models["b"].promptCache)
        config = self.loads(TWO_MODELS.format(b="true"))
        self.assertFalse(config.models["a"].promptCache)
        self.assertTrue(config.models["b"].promptCache)

    def test_settings(self) -> None:
        """
        Directory, size (with units) and timeout are read.
        """
        config = self.loads(
            "promptCacheDir: /var/cache/kv\npromptCacheMaxBytes: 512MiB\n"
            "promptCacheTimeout: 5\n" + TWO_MODELS.format(b="true")
        )
        self.assertEqual(
            config.promptCache,
            PromptCacheConfig(
                enabled=False, directory="/var/cache/kv", maxBytes=512 * 2**20, timeout=5
            ),
        )

    def test_badSize(self) -> None:
        """
        A size that is not a byte count is an error at its key.
        """
        problem = self.fails("promptCacheMaxBytes: lots\n", "promptCacheMaxBytes must be")
        self.assertEqual(problem.path, ("promptCacheMaxBytes",))

    def test_badTimeout(self) -> None:
        """
        A timeout below one second is an error.
        """
        problem = self.fails("promptCacheTimeout: 0\n", "promptCacheTimeout must be >= 1")
        self.assertEqual(problem.path, ("promptCacheTimeout",))

    def test_badModelSwitch(self) -> None:
        """
        A model's C{promptCache} must be a boolean.
        """
        problem = self.fails(TWO_MODELS.format(b="maybe"), "")
        self.assertEqual(problem.path, ("models", "b", "promptCache"))


class ByteSizeTests(SynchronousTestCase):
    """
    L{parseByteSize}.
    """

    def test_values(self) -> None:
        for value, expected in [
            (123, 123),
            (2.0, 2),
            ("10", 10),
            ("8GB", 8 * 10**9),
            ("512 MiB", 512 * 2**20),
            ("1.5gib", int(1.5 * 2**30)),
            ("4KB", 4000),
        ]:
            self.assertEqual(parseByteSize(value), expected, value)
        for value in (True, None, "x", "5 parsecs", [], 1.5):
            self.assertIsNone(parseByteSize(value), value)
