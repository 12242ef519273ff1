"""
Tests for L{llamaswap.upstream.promptcache}: command rules, keys, names and
the deletion plans.
"""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.upstream.promptcache import (
    CacheFile,
    CacheName,
    FileIdentity,
    cacheKey,
    evictionPlan,
    finalName,
    isLlamaServer,
    modelFileIdentity,
    modelTag,
    optionValue,
    parseName,
    restorable,
    staleFiles,
    tempName,
    withSlotSavePath,
)

ARGV = ("/opt/bin/llama-server", "--port", "5801", "-m", "/m/a.gguf", "-c", "4096")
IDENT = FileIdentity("/m/a.gguf", 1000, 5)


class CommandTests(SynchronousTestCase):
    """
    Recognising llama-server and adding C{--slot-save-path}.
    """

    def test_isLlamaServer(self) -> None:
        self.assertTrue(isLlamaServer(ARGV))
        self.assertTrue(isLlamaServer(("nice", "-n", "5", "llama-server", "-m", "x")))
        self.assertTrue(isLlamaServer(("./llama-server.exe",)))
        self.assertFalse(isLlamaServer(("vllm", "serve", "llama-server-model")))
        self.assertFalse(isLlamaServer(("python", "-m", "vllm")))

    def test_optionValue(self) -> None:
        self.assertEqual(optionValue(ARGV, ("-m", "--model")), "/m/a.gguf")
        self.assertEqual(optionValue(("x", "--model=/b.gguf"), ("-m", "--model")), "/b.gguf")
        self.assertEqual(optionValue(("x", "-m", "a", "-m", "b"), ("-m",)), "b")
        self.assertIsNone(optionValue(("x", "-m"), ("-m",)))

    def test_withSlotSavePathAppends(self) -> None:
        argv, directory = withSlotSavePath(ARGV, "/var/kv")
        self.assertEqual(argv, ARGV + ("--slot-save-path", "/var/kv"))
        self.assertEqual(directory, "/var/kv")

    def test_withSlotSavePathKeepsTheUsers(self) -> None:
        for own in (("--slot-save-path", "/mine"), ("--slot-save-path=/mine",)):
            argv, directory = withSlotSavePath(ARGV + own, "/var/kv")
            self.assertEqual(argv, ARGV + own)
            self.assertEqual(directory, "/mine")


class KeyTests(SynchronousTestCase):
    """
    The cache key changes with what changes the KV cache, only.
    """

    def test_stable(self) -> None:
        self.assertEqual(cacheKey(ARGV, IDENT), cacheKey(list(ARGV), IDENT))
        self.assertRegex(cacheKey(ARGV, IDENT), "^[0-9a-f]{20}$")

    def test_contextSizeMatters(self) -> None:
        other = ARGV[:-1] + ("8192",)
        self.assertNotEqual(cacheKey(ARGV, IDENT), cacheKey(other, IDENT))

    def test_modelFileMatters(self) -> None:
        key = cacheKey(ARGV, IDENT)
        self.assertNotEqual(key, cacheKey(ARGV, FileIdentity("/m/a.gguf", 1000, 6)))
        self.assertNotEqual(key, cacheKey(ARGV, FileIdentity("/m/a.gguf", 1001, 5)))
        self.assertNotEqual(key, cacheKey(ARGV, FileIdentity("/m/b.gguf", 1000, 5)))
        self.assertNotEqual(key, cacheKey(ARGV, None))

    def test_addressAndSavePathDoNot(self) -> None:
        """
        The port, host and save path do not change the key (C{${PORT}}
        may be handed out differently after a reload).
        """
        moved = (
            "/opt/bin/llama-server", "--port", "6000", "--host=0.0.0.0", "-m", "/m/a.gguf",
            "-c", "4096", "--slot-save-path", "/elsewhere",
        )
        self.assertEqual(cacheKey(ARGV, IDENT), cacheKey(moved, IDENT))

    def test_modelFileIdentity(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "m.gguf")
        with open(path, "wb") as f:
            f.write(b"x" * 10)
        identity = modelFileIdentity(("llama-server", "-m", "m.gguf"), cwd=directory)
        assert identity is not None
        self.assertEqual(identity.path, os.path.realpath(path))
        self.assertEqual(identity.size, 10)
        self.assertEqual(identity.mtimeNs, os.stat(path).st_mtime_ns)
        self.assertIsNone(modelFileIdentity(("llama-server", "-hf", "org/repo")))
        self.assertIsNone(modelFileIdentity(("llama-server", "-m", "/no/such.gguf")))


class NameTests(SynchronousTestCase):
    """
    File names round-trip and stay within what llama-server accepts.
    """

    def test_roundTrip(self) -> None:
        tag = modelTag("org/Model:Q4_K_M")
        self.assertNotIn("/", tag)
        self.assertEqual(
            parseName(finalName(tag, "abc123", 2)), CacheName(tag, "abc123", 2, False)
        )
        self.assertEqual(
            parseName(tempName(tag, "abc123", 2, 77)), CacheName(tag, "abc123", 2, True)
        )

    def test_tagsDistinct(self) -> None:
        self.assertNotEqual(modelTag("a/b"), modelTag("a:b"))
        self.assertEqual(modelTag("a/b"), modelTag("a/b"))
        self.assertTrue(modelTag("...").startswith("model-"))

    @given(st.text(min_size=1, max_size=80))
    def test_anyModelID(self, modelID: str) -> None:
        name = finalName(modelTag(modelID), "0123abcd", 0)
        self.assertNotIn("/", name)
        self.assertFalse(name.startswith("."))
        self.assertIsNotNone(parseName(name))

    def test_othersIgnored(self) -> None:
        for name in ("notes.txt", "a.kv", "x.abc.slot1.kv.tmp-", "../x.ab.slot1.kv", "x.AB.slot1.kv"):
            self.assertIsNone(parseName(name), name)


def f(name: str, size: int = 10, lastUsed: float = 0.0) -> CacheFile:
    return CacheFile(name, size, lastUsed)


class PlanTests(SynchronousTestCase):
    """
    Which files are stale, restorable, or evicted.
    """

    def test_stale(self) -> None:
        files = [
            f(finalName("a-1", "ab1", 0)),
            f(finalName("a-1", "ab2", 0)),
            f(tempName("a-1", "ab1", 1, 5)),
            f(finalName("b-2", "ab9", 0)),
            f("unrelated"),
        ]
        self.assertEqual(
            staleFiles(files, "a-1", "ab1"),
            [finalName("a-1", "ab2", 0), tempName("a-1", "ab1", 1, 5)],
        )

    def test_restorable(self) -> None:
        files = [
            f(finalName("a-1", "ab1", 1)),
            f(finalName("a-1", "ab1", 0)),
            f(finalName("a-1", "ab1", 4)),
            f(tempName("a-1", "ab1", 2, 5)),
            f(finalName("a-1", "ab2", 3)),
        ]
        self.assertEqual(
            restorable(files, "a-1", "ab1", slots=4),
            {0: finalName("a-1", "ab1", 0), 1: finalName("a-1", "ab1", 1)},
        )

    def test_underCapNothing(self) -> None:
        self.assertEqual(evictionPlan([f("a", 5), f("b", 5)], 10), [])

    def test_leastRecentlyUsedFirst(self) -> None:
        files = [f("new", 5, 30.0), f("old", 5, 10.0), f("mid", 5, 20.0)]
        self.assertEqual(evictionPlan(files, 10), ["old"])
        self.assertEqual(evictionPlan(files, 4), ["old", "mid", "new"])

    def test_keptLastAndTemporariesFirst(self) -> None:
        temp = tempName("a-1", "ab", 0, 1)
        files = [f("kept", 5, 1.0), f("other", 5, 20.0), f(temp, 5, 30.0)]
        self.assertEqual(evictionPlan(files, 10, keep=["kept"]), [temp])
        self.assertEqual(evictionPlan(files, 0, keep=["kept"]), [temp, "other", "kept"])

    @given(
        st.lists(st.tuples(st.integers(0, 100), st.floats(0, 100)), max_size=12),
        st.integers(0, 600),
    )
    def test_capHolds(self, specs: list[tuple[int, float]], cap: int) -> None:
        files = [f(f"n{i}", size, used) for i, (size, used) in enumerate(specs)]
        plan = evictionPlan(files, cap)
        left = [x for x in files if x.name not in plan]
        self.assertLessEqual(sum(x.size for x in left), cap)
        # Oldest first: the plan is a prefix of the files by last use.
        byAge = [x.name for x in sorted(files, key=lambda x: (x.lastUsed, x.name))]
        self.assertEqual(plan, byAge[: len(plan)])
