"""
Tests for L{llamaswap.upstream.promptcachehooks.PromptCacheHooks} and
L{llamaswap.upstream.cachedir.CacheDirectory}, with a fake slot API that
writes and reads real files in a temporary directory the way llama-server
does.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.upstream.cachedir import CacheDirectory
from llamaswap.upstream.promptcache import (
    cacheKey,
    finalName,
    modelFileIdentity,
    modelTag,
    parseName,
    tempName,
)
from llamaswap.upstream.promptcachehooks import CacheReport, PromptCacheHooks
from llamaswap.upstream.slots import (
    SlotRestored,
    SlotSaved,
    SlotsError,
    SlotsUnsupported,
)

MAGIC = b"KV:"


class FakeSlotServer:
    """
    llama-server's slot API over a directory: C{tokens[slot]} tokens per
    slot; a save writes C{MAGIC + tokens}; a restore reads it back and
    rejects anything else with a 400.
    """

    def __init__(self, directory: str, clock: Clock, slots: int = 2) -> None:
        self.directory = directory
        self.clock = clock
        self.tokens = [0] * slots
        self.calls: list[tuple[str, int, str]] = []
        self.unsupported = False
        self.failSave: set[int] = set()
        self.transportFailure = False
        self.slotCountUnanswered = False
        self.delay = 0.0

    async def _pause(self) -> None:
        if self.delay:
            d: Deferred[None] = Deferred()
            self.clock.callLater(self.delay, d.callback, None)
            await d

    async def totalSlots(self) -> int:
        if self.slotCountUnanswered:
            raise SlotsError(None, "no answer within 30 s")
        if self.unsupported:
            raise SlotsUnsupported(404, "Not Found")
        return len(self.tokens)

    async def save(self, slot: int, filename: str) -> SlotSaved:
        self.calls.append(("save", slot, filename))
        await self._pause()
        if self.unsupported:
            raise SlotsUnsupported(501, "This server does not support slots action")
        if slot in self.failSave:
            with open(os.path.join(self.directory, filename), "wb") as f:
                f.write(b"half")
            raise SlotsError(500, "No space left on device")
        data = MAGIC + str(self.tokens[slot]).encode() + b" " * 100 * self.tokens[slot]
        with open(os.path.join(self.directory, filename), "wb") as f:
            f.write(data)
        return SlotSaved(slot, self.tokens[slot], len(data), 1.0)

    async def restore(self, slot: int, filename: str) -> SlotRestored:
        self.calls.append(("restore", slot, filename))
        await self._pause()
        if self.transportFailure:
            raise SlotsError(None, "Connection lost.")
        try:
            with open(os.path.join(self.directory, filename), "rb") as f:
                data = f.read()
        except OSError:
            raise SlotsError(400, "Unable to restore slot: invalid slot save file")
        if not data.startswith(MAGIC):
            raise SlotsError(400, "Unable to restore slot: invalid slot save file")
        self.tokens[slot] = int(data[len(MAGIC) :].split(b" ", 1)[0])
        return SlotRestored(slot, self.tokens[slot], len(data), 1.0)


class HooksTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.root = os.path.abspath(self.mktemp())
        self.cacheDir = os.path.join(self.root, "cache")
        os.makedirs(self.cacheDir)
        self.modelFile = os.path.join(self.root, "a.gguf")
        with open(self.modelFile, "wb") as f:
            f.write(b"GGUF" * 10)
        self.argv = ("llama-server", "-m", self.modelFile, "-c", "4096")
        self.server = FakeSlotServer(self.cacheDir, self.clock)
        self.reports: list[CacheReport] = []
        self.directory = CacheDirectory(self.cacheDir, maxBytes=10_000)

    def makeHooks(self, argv: tuple[str, ...] | None = None, modelID: str = "a") -> PromptCacheHooks:
        return PromptCacheHooks(
            modelID,
            argv or self.argv,
            directory=self.directory,
            client=self.server,  # type: ignore[arg-type]
            clock=self.clock,
            observe=self.reports.append,
            timeout=30.0,
        )

    def files(self) -> list[str]:
        return sorted(os.listdir(self.cacheDir))

    def key(self, argv: tuple[str, ...] | None = None) -> str:
        argv = argv or self.argv
        return cacheKey(argv, modelFileIdentity(argv))


class SaveTests(HooksTestCase):
    """
    C{beforeStop} saves the slots that hold tokens, atomically.
    """

    def test_savesNonEmptySlots(self) -> None:
        """
        Only slots with tokens are kept, under their final names; empty
        saves and temporary names are gone.
        """
        hooks = self.makeHooks()
        self.successResultOf(hooks.afterReady())
        self.server.tokens = [0, 7]
        self.successResultOf(hooks.beforeStop())
        tag, key = modelTag("a"), self.key()
        self.assertEqual(self.files(), [finalName(tag, key, 1)])
        # llama-server was told to write temporary names.
        saved = [name for kind, _, name in self.server.calls if kind == "save"]
        self.assertTrue(all(parseName(n).temporary for n in saved))
        report = self.reports[-1]
        self.assertEqual(
            (report.action, report.outcome, report.slots, report.tokens),
            ("save", "saved", 1, 7),
        )
        self.assertEqual(report.bytes, os.path.getsize(os.path.join(self.cacheDir, self.files()[0])))

    def test_nothingToSave(self) -> None:
        hooks = self.makeHooks()
        self.successResultOf(hooks.beforeStop())
        self.assertEqual(self.files(), [])
        self.assertEqual(self.reports[-1].outcome, "empty")

    def test_failedSaveLeavesNoFile(self) -> None:
        """
        A save the server fails (full disk) leaves no file, not even its
        partial temporary one, and the other slots are still saved.
        """
        hooks = self.makeHooks()
        self.server.tokens = [3, 4]
        self.server.failSave = {0}
        self.successResultOf(hooks.beforeStop())
        self.assertEqual(self.files(), [finalName(modelTag("a"), self.key(), 1)])
        self.assertEqual(self.reports[-1].outcome, "saved")
        self.assertIn("No space left", self.reports[-1].message)

    def test_unsupported(self) -> None:
        """
        A server without the slot API: a warning, nothing written, and the
        hook still completes.
        """
        hooks = self.makeHooks()
        self.server.unsupported = True
        self.successResultOf(hooks.beforeStop())
        self.assertEqual(self.reports[-1].outcome, "unsupported")
        self.assertEqual(self.files(), [])

    def test_capEvictsLeastRecentlyUsed(self) -> None:
        """
        After a save, the least recently used files go until the rest fit
        the cap; the files just written go last.
        """
        other = self.makeHooks(modelID="b")
        self.server.tokens = [30, 0]  # ~3 kB
        self.successResultOf(other.beforeStop())
        old = self.files()
        os.utime(os.path.join(self.cacheDir, old[0]), (1, 1))
        self.directory.maxBytes = 8_000
        hooks = self.makeHooks()
        self.server.tokens = [30, 30]
        self.successResultOf(hooks.beforeStop())
        files = self.files()
        self.assertNotIn(old[0], files)
        self.assertEqual(len(files), 2)
        self.assertLessEqual(sum(os.path.getsize(os.path.join(self.cacheDir, f)) for f in files), 8_000)

    def test_tooBigForTheCap(self) -> None:
        """
        A save that alone exceeds the cap is dropped and says so.
        """
        self.directory.maxBytes = 1_000
        hooks = self.makeHooks()
        self.server.tokens = [30, 0]
        self.successResultOf(hooks.beforeStop())
        self.assertEqual(self.files(), [])
        self.assertIn("promptCacheMaxBytes", self.reports[-1].message)


class RestoreTests(HooksTestCase):
    """
    C{afterReady} restores what the same definition saved.
    """

    def saveSome(self, tokens: list[int]) -> None:
        hooks = self.makeHooks()
        self.server.tokens = list(tokens)
        self.successResultOf(hooks.beforeStop())
        self.server.tokens = [0] * len(tokens)
        self.server.calls.clear()

    def test_restoresIntoTheSameSlots(self) -> None:
        self.saveSome([5, 9])
        hooks = self.makeHooks()
        self.successResultOf(hooks.afterReady())
        self.assertEqual(self.server.tokens, [5, 9])
        report = self.reports[-1]
        self.assertEqual(
            (report.action, report.outcome, report.slots, report.tokens), ("restore", "hit", 2, 14)
        )

    def test_miss(self) -> None:
        hooks = self.makeHooks()
        self.successResultOf(hooks.afterReady())
        self.assertEqual(self.reports[-1].outcome, "miss")
        self.assertEqual([c for c in self.server.calls if c[0] == "restore"], [])

    def test_otherDefinitionIsStale(self) -> None:
        """
        Another C{-c} means another key: nothing is restored and the old
        files are deleted.
        """
        self.saveSome([5, 0])
        other = self.argv[:-1] + ("8192",)
        hooks = self.makeHooks(other)
        self.successResultOf(hooks.afterReady())
        self.assertEqual(self.server.tokens, [0, 0])
        self.assertEqual(self.files(), [])
        self.assertEqual(self.reports[-1].outcome, "miss")

    def test_changedModelFileIsStale(self) -> None:
        self.saveSome([5, 0])
        with open(self.modelFile, "ab") as f:
            f.write(b"more")
        self.successResultOf(self.makeHooks().afterReady())
        self.assertEqual(self.server.tokens, [0, 0])
        self.assertEqual(self.files(), [])

    def test_otherModelsUntouched(self) -> None:
        """
        Stale-file cleaning only looks at this model's files (and never at
        files that are not the prompt cache's).
        """
        self.saveSome([5, 0])
        with open(os.path.join(self.cacheDir, "mine.bin"), "wb") as f:
            f.write(b"user file")
        before = self.files()
        self.successResultOf(self.makeHooks(modelID="b").afterReady())
        self.assertEqual(self.files(), before)

    def test_leftoverTemporaryDeleted(self) -> None:
        """
        A temporary file from a save that crashed is never restored, and is
        deleted.
        """
        temp = tempName(modelTag("a"), self.key(), 0, 123)
        with open(os.path.join(self.cacheDir, temp), "wb") as f:
            f.write(MAGIC + b"5")
        self.successResultOf(self.makeHooks().afterReady())
        self.assertEqual(self.files(), [])
        self.assertEqual(self.server.tokens, [0, 0])

    def test_corruptFileIgnored(self) -> None:
        """
        A file the server rejects is deleted with a warning; the other slots
        are still restored.
        """
        self.saveSome([5, 9])
        corrupt = finalName(modelTag("a"), self.key(), 0)
        with open(os.path.join(self.cacheDir, corrupt), "wb") as f:
            f.write(b"garbage")
        self.successResultOf(self.makeHooks().afterReady())
        self.assertEqual(self.server.tokens, [0, 9])
        self.assertNotIn(corrupt, self.files())
        report = self.reports[-1]
        self.assertEqual((report.outcome, report.tokens), ("hit", 9))
        self.assertIn("invalid slot save file", report.message)

    def test_allCorrupt(self) -> None:
        self.saveSome([5, 0])
        name = finalName(modelTag("a"), self.key(), 0)
        with open(os.path.join(self.cacheDir, name), "wb") as f:
            f.write(b"garbage")
        self.successResultOf(self.makeHooks().afterReady())
        self.assertEqual(self.reports[-1].outcome, "error")

    def test_noAnswerKeepsTheFile(self) -> None:
        """
        A restore that gets no answer (connection lost, timeout, the hook
        cancelled) is an error, and the file, which nobody found bad, is
        kept for next time.
        """
        self.saveSome([5, 9])
        before = self.files()
        self.server.transportFailure = True
        self.successResultOf(self.makeHooks().afterReady())
        self.assertEqual(self.files(), before)
        self.assertEqual(self.reports[-1].outcome, "error")
        self.assertEqual(len([c for c in self.server.calls if c[0] == "restore"]), 1)

    def test_slotCountUnanswered(self) -> None:
        """
        No answer to the slot count is an error, not "unsupported".
        """
        self.server.slotCountUnanswered = True
        self.successResultOf(self.makeHooks().afterReady())
        self.assertEqual(self.reports[-1].outcome, "error")

    def test_unsupported(self) -> None:
        self.saveSome([5, 0])
        self.server.unsupported = True
        self.successResultOf(self.makeHooks().afterReady())
        self.assertEqual(self.reports[-1].outcome, "unsupported")

    def test_slotCountFromRestoreUsedBySave(self) -> None:
        """
        The save after a restore does not ask for the slot count again, and
        uses the key computed when the server became ready (a model file
        replaced while it runs does not relabel the running model's cache).
        """
        hooks = self.makeHooks()
        self.successResultOf(hooks.afterReady())
        key = self.key()
        with open(self.modelFile, "ab") as f:
            f.write(b"replaced while running")
        self.server.tokens = [4, 0]
        self.successResultOf(hooks.beforeStop())
        self.assertEqual(self.files(), [finalName(modelTag("a"), key, 0)])

    def test_timedFromTheClock(self) -> None:
        """
        The report's time is the whole action's, on the injected clock.
        """
        self.server.delay = 0.25
        self.server.tokens = [5, 0]
        d = self.makeHooks().beforeStop()
        self.clock.advance(0.25)
        self.assertNoResult(d)
        self.clock.advance(0.25)
        self.successResultOf(d)
        self.assertEqual(self.reports[-1].seconds, 0.5)


class CacheDirectoryTests(SynchronousTestCase):
    def test_onlyCacheFilesTouched(self) -> None:
        path = os.path.abspath(self.mktemp())
        directory = CacheDirectory(path, 10)
        directory.ensure()
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o700)
        for name in ("user.bin", "a-1.ab.slot0.kv"):
            with open(os.path.join(path, name), "wb") as f:
                f.write(b"x" * 20)
        self.assertEqual([f.name for f in directory.files()], ["a-1.ab.slot0.kv"])
        self.assertEqual(directory.enforceCap(), ["a-1.ab.slot0.kv"])
        self.assertEqual(os.listdir(path), ["user.bin"])
        self.assertEqual(directory.delete(["user.bin"]), 0)
        self.assertRaises(ValueError, directory.rename, "../x", "y")
