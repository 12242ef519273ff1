"""
Tests for L{llamaswap.watch}: polling and debounce on a fake clock, inotify
on the real file system with the real reactor.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llamaswap.watch import (
    POLL_INTERVAL,
    ConfigWatcher,
    changedPaths,
    configDirFiles,
    scan,
    watchedDirectories,
)


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def replace(path: str, text: str) -> None:
    """
    Write C{path} the way editors do: a new file renamed over the old.
    """
    write(path + ".tmp", text)
    os.rename(path + ".tmp", path)


class ScanTests(SynchronousTestCase):
    """
    The pure parts: scans and their differences.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.base, "conf.d"))
        self.config = os.path.join(self.base, "config.yaml")
        self.confd = os.path.join(self.base, "conf.d")
        write(self.config, "models: {}\n")

    def test_contentNotTimestamps(self) -> None:
        """
        Rewriting the same bytes is no change; different bytes are.
        """
        before = scan([self.config], [])
        write(self.config, "models: {}\n")
        os.utime(self.config, (1, 1))
        self.assertEqual(changedPaths(before, scan([self.config], [])), ())
        write(self.config, "models: {}\n# more\n")
        self.assertEqual(changedPaths(before, scan([self.config], [])), (self.config,))

    def test_missingFile(self) -> None:
        """
        A missing file is an entry of its own: its removal and return are
        changes.
        """
        before = scan([self.config], [])
        os.remove(self.config)
        gone = scan([self.config], [])
        self.assertEqual(gone, {self.config: None})
        self.assertEqual(changedPaths(before, gone), (self.config,))

    def test_configDir(self) -> None:
        """
        Only C{*.yml}/C{*.yaml} regular files directly in a config dir
        count.
        """
        write(os.path.join(self.confd, "a.yaml"), "x: 1\n")
        write(os.path.join(self.confd, "b.yml"), "y: 1\n")
        write(os.path.join(self.confd, "notes.txt"), "no\n")
        os.makedirs(os.path.join(self.confd, "sub.yaml"))
        self.assertEqual(
            configDirFiles(self.confd),
            [os.path.join(self.confd, "a.yaml"), os.path.join(self.confd, "b.yml")],
        )
        before = scan([], [self.confd])
        write(os.path.join(self.confd, "notes.txt"), "still no\n")
        self.assertEqual(changedPaths(before, scan([], [self.confd])), ())
        write(os.path.join(self.confd, "c.yaml"), "z: 1\n")
        os.remove(os.path.join(self.confd, "a.yaml"))
        self.assertEqual(
            changedPaths(before, scan([], [self.confd])),
            (os.path.join(self.confd, "a.yaml"), os.path.join(self.confd, "c.yaml")),
        )

    def test_symlinkTargetMoves(self) -> None:
        """
        A link that points somewhere else with the same content is a
        change (its resolved path differs).
        """
        write(os.path.join(self.base, "one.yaml"), "same\n")
        write(os.path.join(self.base, "two.yaml"), "same\n")
        link = os.path.join(self.base, "link.yaml")
        os.symlink("one.yaml", link)
        before = scan([link], [])
        os.remove(link)
        os.symlink("two.yaml", link)
        self.assertEqual(changedPaths(before, scan([link], [])), (link,))

    def test_watchedDirectories(self) -> None:
        """
        The file's directory, the config dir and a link target's directory
        are watched; Kubernetes' timestamped directories are not.
        """
        other = os.path.join(self.base, "elsewhere")
        os.makedirs(other)
        write(os.path.join(other, "real.yaml"), "x: 1\n")
        os.symlink(os.path.join(other, "real.yaml"), os.path.join(self.confd, "l.yaml"))
        stamped = os.path.join(self.base, "..2026_01")
        os.makedirs(stamped)
        write(os.path.join(stamped, "k.yaml"), "k: 1\n")
        os.symlink(os.path.join(stamped, "k.yaml"), os.path.join(self.base, "k.yaml"))
        dirs = watchedDirectories(
            [self.config, os.path.join(self.base, "k.yaml")], [self.confd]
        )
        self.assertEqual(dirs, {self.base, self.confd, other})


class PollingTests(SynchronousTestCase):
    """
    L{ConfigWatcher} without inotify, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        self.confd = os.path.join(self.base, "conf.d")
        os.makedirs(self.confd)
        self.config = os.path.join(self.base, "config.yaml")
        write(self.config, "models: {}\n")
        self.clock = Clock()
        self.calls: list[tuple[str, ...]] = []
        self.watcher = ConfigWatcher(
            [self.config], self.calls.append, self.clock, configDirs=[self.confd]
        )
        self.watcher.startService()
        self.addCleanup(self.stop)

    def stop(self) -> None:
        if self.watcher.running:
            self.watcher.stopService()

    def test_pollNoticesChange(self) -> None:
        """
        A change is reported after the next poll plus the debounce delay,
        once.
        """
        self.assertFalse(self.watcher.usingInotify)
        replace(self.config, "models: {a: {cmd: x}}\n")
        self.clock.advance(POLL_INTERVAL)
        self.assertEqual(self.calls, [])
        self.clock.advance(self.watcher.debounce)
        self.assertEqual(self.calls, [(self.config,)])
        self.clock.pump([POLL_INTERVAL] * 5)
        self.assertEqual(len(self.calls), 1)

    def test_nothingChanged(self) -> None:
        """
        Polling an unchanged (even touched) configuration reports nothing.
        """
        os.utime(self.config, (5, 5))
        self.clock.pump([POLL_INTERVAL] * 10)
        self.assertEqual(self.calls, [])

    def test_configDirAdd(self) -> None:
        """
        A new YAML file in the config dir is reported; a text file is not.
        """
        write(os.path.join(self.confd, "README.txt"), "x")
        self.clock.pump([POLL_INTERVAL] * 3)
        self.assertEqual(self.calls, [])
        added = os.path.join(self.confd, "more.yaml")
        write(added, "models: {}\n")
        self.clock.pump([POLL_INTERVAL, 1])
        self.assertEqual(self.calls, [(added,)])

    def test_debounce(self) -> None:
        """
        Pokes closer together than the debounce delay make one scan, after
        the last one.
        """
        write(self.config, "one\n")
        for _ in range(3):
            self.watcher.poke()
            self.clock.advance(0.2)
        self.assertEqual(self.calls, [])
        self.clock.advance(0.1)
        self.assertEqual(self.calls, [(self.config,)])

    def test_maxDelay(self) -> None:
        """
        An endless burst is scanned at most C{maxDelay} after its start.
        """
        write(self.config, "one\n")
        for _ in range(int(self.watcher.maxDelay / 0.1) + 1):
            self.watcher.poke()
            self.clock.advance(0.1)
        self.assertEqual(self.calls, [(self.config,)])

    def test_halfWrittenThenDone(self) -> None:
        """
        A scan that caught a file mid-write is followed by another report
        when the write completes.
        """
        write(self.config, "models: {a:")
        self.watcher.poke()
        self.clock.advance(1)
        write(self.config, "models: {a: {cmd: x}}\n")
        self.clock.pump([POLL_INTERVAL, 1])
        self.assertEqual(self.calls, [(self.config,), (self.config,)])

    def test_irrelevantEvent(self) -> None:
        """
        Inotify events about unrelated names (an editor's swap file, a
        database next to the config) do not even schedule a scan.
        """
        for name in (".config.yaml.swp", "activity.db", "4913"):
            self.watcher._onEvent(name)
        self.assertEqual(self.clock.getDelayedCalls()[1:], [])
        for name in ("config.yaml", "..data", None, "x.yml"):
            self.watcher._onEvent(name)
            self.assertEqual(len(self.clock.getDelayedCalls()), 2, name)

    def test_callbackFailure(self) -> None:
        """
        A callback that raises is logged; watching goes on.
        """

        def broken(paths: tuple[str, ...]) -> None:
            self.calls.append(paths)
            raise RuntimeError("oops")

        self.watcher.callback = broken
        write(self.config, "one\n")
        self.clock.pump([POLL_INTERVAL, 1])
        write(self.config, "two\n")
        self.clock.pump([POLL_INTERVAL, 1])
        self.assertEqual(len(self.calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_stop(self) -> None:
        """
        Stopping cancels the poll and a pending scan.
        """
        self.watcher.poke()
        self.watcher.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.watcher.poke()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class InotifyTests(TestCase):
    """
    L{ConfigWatcher} with inotify on the real file system.  The poll is
    set to an hour so that only inotify can notice in time.
    """

    timeout = 30

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.reports: list[tuple[str, ...]] = []
        self.waiting: Deferred[tuple[str, ...]] | None = None

    def watch(self, paths: list[str], configDirs: list[str] = ()) -> ConfigWatcher:
        watcher = ConfigWatcher(
            paths,
            self.changed,
            reactor,
            configDirs=configDirs,
            debounce=0.05,
            pollInterval=3600,
            inotifyReactor=reactor,
        )
        watcher.startService()
        self.addCleanup(watcher.stopService)
        self.assertTrue(watcher.usingInotify)
        return watcher

    def changed(self, paths: tuple[str, ...]) -> None:
        self.reports.append(paths)
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            waiting.callback(paths)

    def next(self) -> Deferred[Any]:
        """
        Fires with the next report, or fails after 10 seconds.
        """
        self.waiting = Deferred()
        return self.waiting.addTimeout(10, reactor)

    async def test_atomicRename(self) -> None:
        """
        A new file renamed over the config file is noticed, again and
        again (the directory is watched, not the replaced inode).
        """
        config = os.path.join(self.base, "config.yaml")
        write(config, "models: {}\n")
        self.watch([config])
        for i in range(3):
            d = self.next()
            replace(config, f"version: {i}\n")
            self.assertEqual(await d, (config,))

    async def test_inPlaceWrite(self) -> None:
        """
        Truncating and rewriting the file is noticed.
        """
        config = os.path.join(self.base, "config.yaml")
        write(config, "models: {}\n")
        self.watch([config])
        d = self.next()
        write(config, "models: {a: {}}\n")
        self.assertEqual(await d, (config,))

    async def test_symlinkedDirectorySwap(self) -> None:
        """
        A Kubernetes ConfigMap update -- a new timestamped directory, the
        C{..data} link swapped by rename, the old directory deleted -- is
        noticed, and so is the next one.
        """
        mount = self.base

        def publish(stamp: str, text: str) -> None:
            directory = os.path.join(mount, stamp)
            os.makedirs(directory)
            write(os.path.join(directory, "config.yaml"), text)
            tmp = os.path.join(mount, "..data_tmp")
            os.symlink(stamp, tmp)
            old = os.path.realpath(os.path.join(mount, "..data"))
            os.rename(tmp, os.path.join(mount, "..data"))
            if os.path.basename(old).startswith("..20"):
                shutil.rmtree(old)

        publish("..2026_01", "models: {}\n")
        config = os.path.join(mount, "config.yaml")
        os.symlink("..data/config.yaml", config)
        self.watch([config])
        for i, stamp in enumerate(["..2026_02", "..2026_03"]):
            d = self.next()
            publish(stamp, f"version: {i}\n")
            self.assertEqual(await d, (config,))
            with open(config) as f:
                self.assertEqual(f.read(), f"version: {i}\n")

    async def test_configDirFileAdded(self) -> None:
        """
        A file added to the config dir is noticed; so is its removal.
        """
        confd = os.path.join(self.base, "conf.d")
        os.makedirs(confd)
        self.watch([], [confd])
        added = os.path.join(confd, "extra.yaml")
        d = self.next()
        write(added, "models: {}\n")
        self.assertEqual(await d, (added,))
        d = self.next()
        os.remove(added)
        self.assertEqual(await d, (added,))

    async def test_watchedDirectoryDeleted(self) -> None:
        """
        Deleting a watched directory (which makes Twisted drop the whole
        notifier) is reported, and the notifier is rebuilt for the
        directories that remain.
        """
        config = os.path.join(self.base, "config.yaml")
        write(config, "models: {}\n")
        confd = os.path.join(self.base, "conf.d")
        os.makedirs(confd)
        write(os.path.join(confd, "a.yaml"), "a: 1\n")
        self.watch([config], [confd])
        d = self.next()
        shutil.rmtree(confd)
        self.assertEqual(await d, (confd + os.sep, os.path.join(confd, "a.yaml")))
        d = self.next()
        replace(config, "models: {b: {}}\n")
        self.assertEqual(await d, (config,))
