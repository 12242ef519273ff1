"""
Tests for L{llamaswap.modelswatch}: polling, settle delay and debounce on a
fake clock, inotify on the real file system with the real reactor.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llamaswap.config.model import Config, ModelsDirConfig
from llamaswap.modelswatch import (
    DEFAULT_SETTLE,
    ModelsWatcher,
    modelDirectories,
    modelSignatures,
    relevantName,
    watchedModelsFolder,
)
from llamaswap.watch import DEFAULT_DEBOUNCE, POLL_INTERVAL


def write(path: str, data: bytes = b"GGUF") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def append(path: str, data: bytes = b"more") -> None:
    with open(path, "ab") as f:
        f.write(data)


class HelperTests(SynchronousTestCase):
    """
    The pure-ish parts: signatures, directories, event names, the folder
    of a configuration.
    """

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)

    def test_signatures(self) -> None:
        """
        Every C{*.gguf} under the folder, recursively, with its size and
        mtime; hidden files and directories and other suffixes are not.
        """
        write(os.path.join(self.root, "a.gguf"), b"12345")
        write(os.path.join(self.root, "sub", "B.GGUF"))
        write(os.path.join(self.root, "sub", "mmproj-b.gguf"))
        write(os.path.join(self.root, ".cache", "c.gguf"))
        write(os.path.join(self.root, ".d.gguf.tmp1"))
        write(os.path.join(self.root, "e.gguf.part"))
        os.utime(os.path.join(self.root, "a.gguf"), ns=(7, 1_000_000_007))
        signatures = modelSignatures(self.root)
        self.assertEqual(sorted(signatures), ["a.gguf", "sub/B.GGUF", "sub/mmproj-b.gguf"])
        self.assertEqual(signatures["a.gguf"], ("5", "1000000007"))

    def test_signaturesMissingFolder(self) -> None:
        """
        A folder that is not there has no files (the reload reports it).
        """
        self.assertEqual(modelSignatures(os.path.join(self.root, "gone")), {})

    def test_directories(self) -> None:
        """
        The folder and its non-hidden subdirectories, at any depth.
        """
        os.makedirs(os.path.join(self.root, "a", "b"))
        os.makedirs(os.path.join(self.root, ".hidden", "c"))
        self.assertEqual(
            modelDirectories(self.root),
            {self.root, os.path.join(self.root, "a"), os.path.join(self.root, "a", "b")},
        )
        self.assertEqual(modelDirectories(os.path.join(self.root, "gone")), set())

    def test_relevantName(self) -> None:
        """
        The directory itself, C{.gguf} files and suffix-less names
        (directories) matter; partial downloads and hidden names do not.
        """
        for name in (None, "m.gguf", "M.GGUF", "subdir"):
            self.assertTrue(relevantName(name), name)
        for name in ("m.gguf.part", ".m.gguf.XYZ", "notes.txt", ".hidden"):
            self.assertFalse(relevantName(name), name)

    def test_watchedModelsFolder(self) -> None:
        """
        The folder of C{modelsDir}, unless there is none or its C{watch}
        is false.
        """
        self.assertIsNone(watchedModelsFolder(Config()))
        folder = ModelsDirConfig(path="/models")
        self.assertEqual(watchedModelsFolder(Config(modelsDir=folder)), "/models")
        off = ModelsDirConfig(path="/models", watch=False)
        self.assertIsNone(watchedModelsFolder(Config(modelsDir=off)))


class PollingTests(SynchronousTestCase):
    """
    L{ModelsWatcher} without inotify, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        write(os.path.join(self.root, "old.gguf"))
        self.folder: str | None = self.root
        self.clock = Clock()
        self.calls: list[tuple[str, ...]] = []
        self.watcher = ModelsWatcher(lambda: self.folder, self.calls.append, self.clock)
        self.watcher.startService()
        self.addCleanup(self.stop)

    def stop(self) -> None:
        if self.watcher.running:
            self.watcher.stopService()

    def advance(self, seconds: float) -> None:
        """
        Advance the clock by about C{seconds} (a little more, never less)
        in small exact steps, so that the calls scheduled on the way run.
        """
        step = 1 / 32
        for _ in range(int(seconds / step) + 2):
            self.clock.advance(step)

    def test_newFileWaitsToSettle(self) -> None:
        """
        A new file is reported once its size and mtime stayed unchanged
        for the settle delay after it was first seen, once.
        """
        self.assertFalse(self.watcher.usingInotify)
        write(os.path.join(self.root, "new.gguf"))
        # Seen at the first poll plus the debounce.
        self.advance(POLL_INTERVAL + DEFAULT_DEBOUNCE)
        self.advance(DEFAULT_SETTLE - 0.1)
        self.assertEqual(self.calls, [])
        self.advance(0.1 + DEFAULT_DEBOUNCE)
        self.assertEqual(self.calls, [("new.gguf",)])
        self.advance(10 * POLL_INTERVAL)
        self.assertEqual(len(self.calls), 1)

    def test_growingFileIsNotReported(self) -> None:
        """
        A file still being written (its size changes every second) is not
        reported; it is once it stops changing.
        """
        path = os.path.join(self.root, "big.gguf")
        write(path)
        for _ in range(8):
            self.advance(1.0)
            append(path)
        self.assertEqual(self.calls, [])
        self.advance(POLL_INTERVAL + DEFAULT_SETTLE + 2 * DEFAULT_DEBOUNCE)
        self.assertEqual(self.calls, [("big.gguf",)])

    def test_deletionIsPrompt(self) -> None:
        """
        A deleted file is reported after the poll and debounce, with no
        settle delay.
        """
        os.remove(os.path.join(self.root, "old.gguf"))
        self.advance(POLL_INTERVAL + DEFAULT_DEBOUNCE)
        self.assertEqual(self.calls, [("old.gguf",)])

    def test_deletionWhileCopying(self) -> None:
        """
        A deletion is not held back by another file still being written;
        that file is reported on its own once stable.
        """
        path = os.path.join(self.root, "big.gguf")
        write(path)
        os.remove(os.path.join(self.root, "old.gguf"))
        self.advance(POLL_INTERVAL + DEFAULT_DEBOUNCE)
        self.assertEqual(self.calls, [("old.gguf",)])
        for _ in range(4):
            append(path)
            self.advance(1.0)
        self.assertEqual(self.calls, [("old.gguf",)])
        self.advance(DEFAULT_SETTLE + POLL_INTERVAL + DEFAULT_DEBOUNCE)
        self.assertEqual(self.calls, [("old.gguf",), ("big.gguf",)])

    def test_renameIsOneChange(self) -> None:
        """
        A rename (same size and mtime under a new name) is reported as
        one change, without the settle delay.
        """
        os.rename(os.path.join(self.root, "old.gguf"), os.path.join(self.root, "new.gguf"))
        self.advance(POLL_INTERVAL + DEFAULT_DEBOUNCE)
        self.assertEqual(self.calls, [("new.gguf", "old.gguf")])

    def test_recursive(self) -> None:
        """
        Files in new subdirectories count, under their relative path;
        hidden directories do not.
        """
        write(os.path.join(self.root, ".trash", "x.gguf"))
        write(os.path.join(self.root, "family", "q4", "mmproj-x.gguf"))
        self.advance(POLL_INTERVAL + DEFAULT_SETTLE + 2 * DEFAULT_DEBOUNCE)
        self.assertEqual(self.calls, [("family/q4/mmproj-x.gguf",)])

    def test_otherFilesIgnored(self) -> None:
        """
        Files that are not C{*.gguf} (a partial download) change nothing.
        """
        write(os.path.join(self.root, "x.gguf.part"))
        self.advance(5 * POLL_INTERVAL)
        self.assertEqual(self.calls, [])

    def test_debounce(self) -> None:
        """
        Pokes closer together than the debounce delay make one scan.
        """
        os.remove(os.path.join(self.root, "old.gguf"))
        for _ in range(3):
            self.watcher.poke()
            self.clock.advance(DEFAULT_DEBOUNCE - 0.1)
        self.assertEqual(self.calls, [])
        self.clock.advance(0.1)
        self.assertEqual(self.calls, [("old.gguf",)])

    def test_folderChanges(self) -> None:
        """
        When the configuration names another folder, the watch moves: the
        new folder's files are the baseline (not reported), its changes
        are, the old folder's are not.
        """
        other = os.path.abspath(self.mktemp())
        write(os.path.join(other, "there.gguf"))
        self.folder = other
        self.advance(3 * POLL_INTERVAL)
        self.assertEqual(self.calls, [])
        os.remove(os.path.join(self.root, "old.gguf"))
        self.advance(3 * POLL_INTERVAL)
        self.assertEqual(self.calls, [])
        os.remove(os.path.join(other, "there.gguf"))
        self.advance(POLL_INTERVAL + DEFAULT_DEBOUNCE)
        self.assertEqual(self.calls, [("there.gguf",)])

    def test_watchTurnedOff(self) -> None:
        """
        No folder (none configured, or C{modelsDir.watch: false}): nothing
        is reported.
        """
        self.folder = None
        self.advance(POLL_INTERVAL)
        write(os.path.join(self.root, "new.gguf"))
        os.remove(os.path.join(self.root, "old.gguf"))
        self.advance(10 * POLL_INTERVAL)
        self.assertEqual(self.calls, [])

    def test_stopCancelsEverything(self) -> None:
        """
        Stopping while a file settles leaves no delayed call behind.
        """
        write(os.path.join(self.root, "new.gguf"))
        self.advance(POLL_INTERVAL + DEFAULT_DEBOUNCE)
        self.assertTrue(self.clock.getDelayedCalls())
        self.watcher.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.advance(10)
        self.assertEqual(self.calls, [])


class InotifyTests(TestCase):
    """
    L{ModelsWatcher} with inotify on the real file system.  The poll is set
    to an hour so that only inotify can notice in time.
    """

    timeout = 30

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.reports: DeferredQueue[tuple[str, ...]] = DeferredQueue()
        watcher = ModelsWatcher(
            lambda: self.root,
            self.reports.put,
            reactor,
            settle=0.2,
            debounce=0.05,
            pollInterval=3600,
            inotifyReactor=reactor,
        )
        watcher.startService()
        self.addCleanup(watcher.stopService)
        self.assertTrue(watcher.usingInotify)

    def next(self) -> Deferred[Any]:
        """
        Fires with the next report, or fails after 10 seconds.
        """
        return self.reports.get().addTimeout(10, reactor)

    async def test_addRenameDelete(self) -> None:
        """
        A file copied into a new subdirectory, renamed, then the
        subdirectory deleted: each is reported.
        """
        waiting = self.next()
        write(os.path.join(self.root, "sub", "deep", "a.gguf"))
        self.assertEqual(await waiting, ("sub/deep/a.gguf",))
        waiting = self.next()
        os.rename(
            os.path.join(self.root, "sub", "deep", "a.gguf"),
            os.path.join(self.root, "sub", "deep", "b.gguf"),
        )
        self.assertEqual(await waiting, ("sub/deep/a.gguf", "sub/deep/b.gguf"))
        waiting = self.next()
        shutil.rmtree(os.path.join(self.root, "sub"))
        self.assertEqual(await waiting, ("sub/deep/b.gguf",))
        self.assertEqual(self.reports.pending, [])

    async def test_partialDownloadRenamed(self) -> None:
        """
        A download written to C{*.part} is not a model until it is renamed
        to C{*.gguf}.
        """
        waiting = self.next()
        part = os.path.join(self.root, "m.gguf.part")
        write(part)
        append(part)
        os.rename(part, os.path.join(self.root, "m.gguf"))
        self.assertEqual(await waiting, ("m.gguf",))
