# -*- test-case-name: test.upstream.test_promptcachehooks -*-
"""
L{CacheDirectory}: the prompt cache's files on disk (listing, renaming,
deleting, the size cap).  Only names that L{promptcache.parseName} accepts
are ever touched: the directory may be shared with the user's own
C{--slot-save-path} files.
"""

from __future__ import annotations

import os
from typing import Iterable

from twisted.logger import Logger

from .promptcache import CacheFile, evictionPlan, parseName


class CacheDirectory:
    """
    The directory llama-server saves slots into.

    @ivar path: the directory.
    @ivar maxBytes: the cap on the total size of the cache files.
    """

    log = Logger()

    def __init__(self, path: str, maxBytes: int) -> None:
        self.path = path
        self.maxBytes = maxBytes

    def ensure(self) -> None:
        """
        Create the directory (private to this user) if it is missing.
        """
        os.makedirs(self.path, mode=0o700, exist_ok=True)

    def files(self) -> list[CacheFile]:
        """
        The cache files in the directory (others are ignored).
        """
        found = []
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return []
        for entry in entries:
            if parseName(entry.name) is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found.append(CacheFile(entry.name, st.st_size, st.st_mtime))
        return found

    def size(self, name: str) -> int:
        """
        The size of C{name}, or C{0} when it is gone.
        """
        try:
            return os.stat(self._full(name)).st_size
        except OSError:
            return 0

    def rename(self, source: str, target: str) -> None:
        """
        Atomically replace C{target} with C{source}.
        """
        os.replace(self._full(source), self._full(target))

    def touch(self, name: str) -> None:
        """
        Mark C{name} as used now (the LRU order is by mtime).
        """
        try:
            os.utime(self._full(name))
        except OSError:
            pass

    def delete(self, names: Iterable[str]) -> int:
        """
        Delete C{names}; return the bytes freed.
        """
        freed = 0
        for name in names:
            if parseName(name) is None:
                continue
            path = self._full(name)
            try:
                size = os.stat(path).st_size
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as e:
                self.log.warn("prompt cache: cannot delete {path}: {error}", path=path, error=e)
                continue
            freed += size
        return freed

    def enforceCap(self, keep: Iterable[str] = ()) -> list[str]:
        """
        Delete least recently used files until the rest fit in
        L{maxBytes}; return what was deleted.
        """
        plan = evictionPlan(self.files(), self.maxBytes, keep)
        self.delete(plan)
        return plan

    def _full(self, name: str) -> str:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a cache file name: {name!r}")
        return os.path.join(self.path, name)
