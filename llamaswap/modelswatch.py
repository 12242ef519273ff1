# -*- test-case-name: test.test_modelswatch -*-
"""
A live models folder: reload when C{*.gguf} files appear, disappear or
are renamed under C{modelsDir} / C{--models-dir}.

This is L{llamaswap.watch.ConfigWatcher}'s machinery (inotify on the
directories, a stat poll as safety net or fallback, debounce) pointed at a
different snapshot: every C{*.gguf} (models and C{mmproj} projectors)
under the folder, recursively, skipping hidden files and directories (as
discovery does), each with its size and modification time -- never its
content, model files are gigabytes.

Model files are written slowly (a copy, a download written in place), so
a file is only reported once it is I{stable}: its size and modification
time unchanged for L{DEFAULT_SETTLE} seconds.  A half-copied file never
triggers a reload; the reload comes once it is complete.  Deletions are
reported after the debounce alone, and so is a rename (a file appearing
with the size and mtime of one that disappeared).  Every reload discovers the whole
folder again, so a reload triggered by something else (SIGHUP, the
configuration) while a copy is running may list the partial file; the
next stable report corrects it.  Downloaders that write to a temporary
name (C{*.part}, C{*.incomplete}, hidden C{.name.gguf.XXXX}) and rename
at the end are never seen half-written.

The folder is read from the I{current} configuration on every scan: a
reload that changes C{modelsDir.path} moves the watch (the new folder is
the new baseline: that reload already discovered it), and
C{modelsDir.watch: false} turns watching off.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from .config.discover import listGGUF
from .config.model import Config
from .watch import (
    DEFAULT_DEBOUNCE,
    DEFAULT_MAX_DELAY,
    ConfigWatcher,
    Entry,
    Snapshot,
    changedPaths,
)

#: Seconds a new or changed file's size and mtime must stay unchanged
#: before it is reported.
DEFAULT_SETTLE = 2.0

#: Returns the folder to watch now, or L{None} for none.
FolderSource = Callable[[], "str | None"]


def watchedModelsFolder(config: Config) -> str | None:
    """
    The models folder of C{config} to watch: its C{modelsDir.path}, unless
    there is none or C{modelsDir.watch} is false.
    """
    folder = config.modelsDir
    if folder is None or not folder.watch:
        return None
    return folder.path


def modelSignatures(root: str) -> dict[str, Entry]:
    """
    The C{*.gguf} files under C{root} (relative, C{/} separated, as
    L{listGGUF} finds them) to their size and modification time (in
    nanoseconds, as strings); empty when C{root} cannot be read.
    """
    try:
        files = listGGUF(root)
    except OSError:
        return {}
    signatures: dict[str, Entry] = {}
    for relative in files:
        try:
            info = os.stat(os.path.join(root, relative))
        except OSError:
            continue  # deleted between the listing and now
        signatures[relative] = (str(info.st_size), str(info.st_mtime_ns))
    return signatures


def modelDirectories(root: str) -> set[str]:
    """
    The directories inotify watches: C{root} and every non-hidden
    directory under it (following links, as discovery does).
    """
    if not os.path.isdir(root):
        return set()
    found = set()
    for directory, subdirs, _ in os.walk(root, followlinks=True):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        found.add(directory)
    return found


def relevantName(name: str | None) -> bool:
    """
    Whether an inotify event about C{name} may change the models: the
    directory itself, a C{.gguf} file, or a name without a suffix (likely
    a new or removed directory).  Hidden names (rsync's temporary files)
    are not.
    """
    if name is None:
        return True
    if name.startswith("."):
        return False
    return name.lower().endswith(".gguf") or "." not in name


class ModelsWatcher(ConfigWatcher):
    """
    Calls C{callback(changedPaths)} once C{*.gguf} files under the models
    folder were added, removed, renamed or rewritten, and are stable.
    """

    what = "models folder"

    def __init__(
        self,
        folder: FolderSource,
        callback: Callable[[tuple[str, ...]], Any],
        clock: IReactorTime,
        settle: float = DEFAULT_SETTLE,
        debounce: float = DEFAULT_DEBOUNCE,
        maxDelay: float = DEFAULT_MAX_DELAY,
        pollInterval: float | None = None,
        inotifyReactor: Any = None,
    ) -> None:
        """
        @param folder: the folder to watch now (read at every scan).
        @param settle: seconds a changed file must stay unchanged.
        @param inotifyReactor: the reactor to read inotify events with, or
            L{None} to poll only.
        """
        super().__init__(
            paths=(),
            callback=callback,
            clock=clock,
            debounce=debounce,
            maxDelay=maxDelay,
            pollInterval=pollInterval,
            inotifyReactor=inotifyReactor,
        )
        self.folder = folder
        self.settle = settle
        self._root: str | None = None
        self._since: dict[str, tuple[Entry, float]] = {}
        self._recheck: IDelayedCall | None = None

    def stopService(self) -> None:
        super().stopService()
        if self._recheck is not None and self._recheck.active():
            self._recheck.cancel()
        self._recheck = None

    def _scan(self) -> dict[str, Entry]:
        root = self.folder()
        snapshot = modelSignatures(root) if root else {}
        if root != self._root:
            # A new folder (or none): whatever triggered the change
            # already discovered it, so it is the new baseline.
            if self._root is not None or root is not None:
                self.log.info("watching models folder {root}", root=root or "(none)")
            self._root = root
            self._reported = self._polled = snapshot
            self._since = {}
        return snapshot

    def _syncWatches(self) -> None:
        if self._notifier is not None:
            root = self.folder()
            self._notifier.sync(modelDirectories(root) if root else set())

    def _onEvent(self, name: str | None) -> None:
        if relevantName(name):
            self.poke()

    def _report(self, snapshot: Snapshot) -> None:
        """
        Report the changes of stable files only: a file seen changing less
        than C{settle} seconds ago keeps its last reported state until a
        recheck finds it unchanged.
        """
        now = self.clock.seconds()
        # A file that appears with the size and mtime of one that just
        # disappeared was renamed (renames keep the mtime): it is complete.
        moved = {e for p, e in self._reported.items() if p not in snapshot}
        since: dict[str, tuple[Entry, float]] = {}
        for path, entry in snapshot.items():
            seen = self._since.get(path)
            if seen is None or seen[0] != entry:
                seen = (entry, now - self.settle if entry in moved else now)
            since[path] = seen
        self._since = since
        stable = dict(snapshot)
        settling = []
        for path in changedPaths(self._reported, snapshot):
            if path in snapshot and now - since[path][1] < self.settle:
                settling.append(path)
                if path in self._reported:
                    stable[path] = self._reported[path]
                else:
                    del stable[path]
        if settling:
            self._scheduleRecheck(max(since[p][1] for p in settling) + self.settle - now)
        super()._report(stable)

    def _scheduleRecheck(self, delay: float) -> None:
        """
        Look again once the files being written may have settled (the poll
        alone would not: it only pokes when the snapshot moves).
        """
        if self._recheck is not None and self._recheck.active():
            self._recheck.reset(max(0.0, delay))
        else:
            self._recheck = self.clock.callLater(max(0.0, delay), self.poke)
