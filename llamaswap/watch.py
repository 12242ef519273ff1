# -*- test-case-name: test.test_watch -*-
"""
C{--watch-config}: notice when the configuration files change.

What counts is the I{content} a path leads to, and where it resolves: each
scan records, for the C{--config} file and every C{*.yml}/C{*.yaml} file in
each C{--config-dir}, its resolved path and the SHA-256 of its bytes.  So:

 - editors that write a new file and rename it over the old one, or
   truncate and rewrite in place, are noticed (the directory is watched,
   not the inode);
 - Kubernetes ConfigMap and Docker mounts, which swap a symlinked
   directory (C{..data}) atomically, are noticed: the resolved path and
   the content change;
 - files added to or removed from a config dir are noticed;
 - touching a file (same content, same place) is not a change.

On Linux, inotify (L{twisted.internet.inotify}) on the directories makes a
change noticed at once; a slow stat-and-read poll on an injected clock
backs it up (inotify does not see NFS changes, and Twisted drops its whole
notifier when a watched directory is deleted -- it is rebuilt at the next
scan).  Without inotify, the poll is the watcher.  Bursts of events (an
editor's temporary files, a ConfigMap swap) are debounced: the callback
runs C{debounce} seconds after the last event, at most C{maxDelay} after
the first, and only if a scan finds a difference.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Iterable, Mapping

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .delayed import cancelCall

CONFIG_SUFFIXES = (".yml", ".yaml")
DEFAULT_DEBOUNCE = 0.3
DEFAULT_MAX_DELAY = 2.0
#: Poll period when inotify tells us about changes (a safety net) and when
#: it does not (the only way to notice).
SAFETY_POLL_INTERVAL = 5.0
POLL_INTERVAL = 1.0

#: Resolved path and content digest of one file, or L{None} when missing.
Entry = tuple[str, str] | None
Snapshot = Mapping[str, Entry]


def _entry(path: str) -> Entry:
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None
    return os.path.realpath(path), digest


def configDirFiles(configDir: str) -> list[str]:
    """
    The files of a config dir that are loaded: regular files (or links to
    them) directly inside it whose names end in C{.yml} or C{.yaml}.
    """
    try:
        names = os.listdir(configDir)
    except OSError:
        return []
    paths = (os.path.join(configDir, name) for name in names if name.endswith(CONFIG_SUFFIXES))
    return sorted(p for p in paths if os.path.isfile(p))


def scan(files: Iterable[str], configDirs: Iterable[str]) -> dict[str, Entry]:
    """
    What the configuration paths lead to now: each file's resolved path
    and content digest (L{None} for a missing C{--config} file), and each
    config dir's resolved path under the dir's own name plus C{/} (L{None}
    when it is missing).
    """
    snapshot: dict[str, Entry] = {path: _entry(path) for path in files}
    for configDir in configDirs:
        present = os.path.isdir(configDir)
        snapshot[configDir + os.sep] = (os.path.realpath(configDir), "") if present else None
        for path in configDirFiles(configDir):
            snapshot[path] = _entry(path)
    return snapshot


def changedPaths(old: Snapshot, new: Snapshot) -> tuple[str, ...]:
    """
    The paths whose entry differs between two scans (added, removed or
    changed), sorted.
    """
    return tuple(sorted(p for p in set(old) | set(new) if old.get(p, 0) != new.get(p, 0)))


def watchedDirectories(files: Iterable[str], configDirs: Iterable[str]) -> set[str]:
    """
    The directories inotify watches: each file's directory and each config
    dir, and, for a file that is a symbolic link, its target's directory
    (except Kubernetes' C{..<timestamp>} directories, which never change
    in place: their C{..data} link is swapped in the watched directory).
    """
    dirs: set[str] = set()
    paths = list(files)
    for configDir in configDirs:
        dirs.add(configDir)
        dirs.add(os.path.realpath(configDir))
        paths.extend(configDirFiles(configDir))
    for path in paths:
        dirs.add(os.path.dirname(path))
        target = os.path.dirname(os.path.realpath(path))
        if not os.path.basename(target).startswith(".."):
            dirs.add(target)
    return {d for d in dirs if os.path.isdir(d)}


def _relevant(name: str | None) -> bool:
    """
    Whether an inotify event about C{name} (in a watched directory) may
    change the configuration: the directory itself, a YAML file, or a
    Kubernetes C{..data} swap.  Other names (editor swap files, an activity
    store next to the config) only trigger a scan if they match a
    configured file's name, see L{ConfigWatcher._names}.
    """
    return name is None or name.startswith("..") or name.endswith(CONFIG_SUFFIXES)


class _Notifier:
    """
    An inotify notifier over a set of directories, rebuilt when Twisted
    drops it.
    """

    log = Logger()

    def __init__(self, reactor: Any, onEvent: Callable[[str | None], None]) -> None:
        from twisted.internet import inotify

        self._inotify = inotify
        self._onEvent = onEvent
        self._reactor = reactor
        self._notifier: Any = None
        self._watched: set[str] = set()
        self._closing = False

    def _make(self) -> Any:
        inotify = self._inotify
        owner = self

        class Lost(inotify.INotify):
            def connectionLost(self, reason: Failure) -> None:
                super().connectionLost(reason)
                owner._lost(self)

        notifier = Lost(self._reactor)
        notifier.startReading()
        return notifier

    def _lost(self, notifier: Any) -> None:
        if notifier is not self._notifier:
            return
        self._notifier = None
        self._watched = set()
        if not self._closing:
            # A watched directory went away; the scan this triggers will
            # rebuild the notifier on what exists now.
            self._onEvent(None)

    def _event(self, ignored: object, path: Any, mask: int) -> None:
        name = None
        if path is not None:
            name = os.fsdecode(path.basename())
            if path.path in {os.fsencode(d) for d in self._watched}:
                name = None
        self._onEvent(name)

    def sync(self, directories: set[str]) -> None:
        """
        Watch exactly C{directories} (those that exist).
        """
        from twisted.python.filepath import FilePath

        if self._notifier is None:
            self._notifier = self._make()
        for directory in sorted(self._watched - directories):
            try:
                self._notifier.ignore(FilePath(directory))
            except (KeyError, OSError, self._inotify.INotifyError):
                pass
            self._watched.discard(directory)
        for directory in sorted(directories - self._watched):
            try:
                self._notifier.watch(
                    FilePath(directory),
                    mask=self._inotify.IN_WATCH_MASK | self._inotify.IN_CLOSE_WRITE,
                    callbacks=[self._event],
                )
            except (OSError, self._inotify.INotifyError) as e:
                self.log.debug("cannot watch {dir}: {error}", dir=directory, error=e)
                continue
            self._watched.add(directory)

    def close(self) -> None:
        """
        Stop watching and release the inotify descriptor.
        """
        self._closing = True
        if self._notifier is not None:
            notifier, self._notifier = self._notifier, None
            notifier.loseConnection()
        self._watched = set()


class ConfigWatcher(Service):
    """
    Calls C{callback(changedPaths)} when the configuration files change.

    @ivar usingInotify: whether inotify is in use (else polling only).
    """

    log = Logger()
    #: What is watched, for the log.
    what = "configuration"

    def __init__(
        self,
        paths: Iterable[str],
        callback: Callable[[tuple[str, ...]], Any],
        clock: IReactorTime,
        configDirs: Iterable[str] = (),
        debounce: float = DEFAULT_DEBOUNCE,
        maxDelay: float = DEFAULT_MAX_DELAY,
        pollInterval: float | None = None,
        inotifyReactor: Any = None,
    ) -> None:
        """
        @param paths: configuration files (C{--config}).
        @param configDirs: directories whose C{*.yml}/C{*.yaml} files count
            (C{--config-dir}).
        @param clock: for the poll and the debounce.
        @param pollInterval: seconds between polls; default
            L{SAFETY_POLL_INTERVAL} with inotify, L{POLL_INTERVAL} without.
        @param inotifyReactor: the reactor to read inotify events with, or
            L{None} to poll only.
        """
        self.paths = tuple(os.path.abspath(p) for p in paths)
        self.configDirs = tuple(os.path.abspath(d) for d in configDirs)
        self.callback = callback
        self.clock = clock
        self.debounce = debounce
        self.maxDelay = maxDelay
        self.usingInotify = inotifyReactor is not None
        self._inotifyReactor = inotifyReactor
        self.pollInterval = pollInterval or (
            SAFETY_POLL_INTERVAL if self.usingInotify else POLL_INTERVAL
        )
        self._names = {os.path.basename(p) for p in self.paths}
        self._reported: Snapshot = {}
        self._polled: Snapshot = {}
        self._pending: IDelayedCall | None = None
        self._burstStart: float | None = None
        self._loop: LoopingCall | None = None
        self._notifier: _Notifier | None = None

    def startService(self) -> None:
        """
        Take the current state as the baseline and start watching.
        """
        super().startService()
        self._reported = self._polled = self._scan()
        if self.usingInotify:
            try:
                self._notifier = _Notifier(self._inotifyReactor, self._onEvent)
                self._syncWatches()
            except Exception as e:
                self.log.warn(
                    "inotify unavailable ({error}); polling the configuration every "
                    "{interval}s",
                    error=e,
                    interval=POLL_INTERVAL,
                )
                self._notifier = None
                self.usingInotify = False
                self.pollInterval = POLL_INTERVAL
        self._loop = LoopingCall(self._poll)
        self._loop.clock = self.clock
        self._loop.start(self.pollInterval, now=False).addErrback(
            lambda f: self.log.failure("configuration poll stopped", f)
        )

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._pending = cancelCall(self._pending)
        if self._notifier is not None:
            self._notifier.close()
            self._notifier = None

    def _scan(self) -> dict[str, Entry]:
        return scan(self.paths, self.configDirs)

    def _syncWatches(self) -> None:
        if self._notifier is not None:
            self._names = {os.path.basename(p) for p in self.paths}
            self._names |= {os.path.basename(os.path.realpath(p)) for p in self.paths}
            self._notifier.sync(watchedDirectories(self.paths, self.configDirs))

    def _onEvent(self, name: str | None) -> None:
        if name is None or _relevant(name) or name in self._names:
            self.poke()

    def _poll(self) -> None:
        snapshot = self._scan()
        if snapshot != self._reported and snapshot != self._polled:
            self.poke()
        self._polled = snapshot

    def poke(self) -> None:
        """
        Something may have changed: scan after the debounce delay
        (restarted by every poke, but at most C{maxDelay} after the
        first).
        """
        if not self.running:
            return
        now = self.clock.seconds()
        if self._burstStart is None:
            self._burstStart = now
        delay = max(0.0, min(now + self.debounce, self._burstStart + self.maxDelay) - now)
        if self._pending is not None and self._pending.active():
            self._pending.reset(delay)
        else:
            self._pending = self.clock.callLater(delay, self._settle)

    def _settle(self) -> None:
        self._pending = None
        self._burstStart = None
        try:
            self._syncWatches()
        except Exception:
            self.log.failure("updating the inotify watches failed")
        snapshot = self._scan()
        self._polled = snapshot
        self._report(snapshot)

    def _report(self, snapshot: Snapshot) -> None:
        """
        Report what differs between the last reported scan and
        C{snapshot}, if anything, and make C{snapshot} the reported one.
        """
        changed = changedPaths(self._reported, snapshot)
        if not changed:
            return
        self._reported = snapshot
        self.log.info("{what} changed: {paths}", what=self.what, paths=", ".join(changed))
        maybeDeferred(self.callback, changed).addErrback(
            lambda f: self.log.failure("reacting to a change failed", f)
        )
