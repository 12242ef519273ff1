# -*- test-case-name: test.upstream.test_promptcachehooks -*-
"""
L{PromptCacheHooks}: save a llama-server's slots before it stops and
restore them once it is healthy again, so a swap back does not pay the
prefill again.

They are the supervisor's L{LifecycleHooks}: the lifecycle bounds them by
their timeouts, and they never fail the start or block the stop; whatever
goes wrong (no slot API, a corrupt file, a full disk) is a warning and a
cold start.
"""

from __future__ import annotations

import itertools
import os
from typing import Callable

from attrs import define, field, frozen, setters
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .cachedir import CacheDirectory
from .promptcache import (
    cacheKey,
    finalName,
    modelFileIdentity,
    modelTag,
    restorable,
    staleFiles,
    tempName,
)
from .slots import SlotsClient, SlotsError, SlotsUnsupported

#: The status llama-server answers a restore of a file it cannot use.
REJECTED = 400

#: Default bound on a save or a restore (all slots together).
DEFAULT_TIMEOUT = 60.0

_serials = itertools.count(1)


@frozen
class CacheReport:
    """
    What one save or restore did.

    @ivar action: C{"save"} or C{"restore"}.
    @ivar outcome: C{"saved"}, C{"empty"} (nothing to save), C{"hit"},
        C{"miss"} (nothing to restore), C{"unsupported"} or C{"error"}.
    @ivar slots: slots saved or restored.
    @ivar tokens: tokens they hold.
    @ivar bytes: bytes written or read.
    @ivar seconds: wall time of the whole action.
    @ivar message: the warning, if any.
    """

    model: str
    action: str
    outcome: str
    slots: int = 0
    tokens: int = 0
    bytes: int = 0
    seconds: float = 0.0
    message: str = ""

    def asDict(self) -> dict[str, object]:
        """
        The report as JSON-ready data (events, activity rows).
        """
        return {
            "model": self.model,
            "action": self.action,
            "outcome": self.outcome,
            "slots": self.slots,
            "tokens": self.tokens,
            "bytes": self.bytes,
            "ms": int(round(self.seconds * 1000)),
            "message": self.message,
        }


ReportObserver = Callable[[CacheReport], None]


@define(eq=False, slots=False, on_setattr=setters.NO_OP)
class PromptCacheHooks:
    """
    The prompt cache of one model.

    @ivar afterReadyTimeout: bound on the restore.
    @ivar beforeStopTimeout: bound on the save.
    """

    log = Logger()

    modelID: str
    #: The effective command (with C{--slot-save-path}).
    _argv: tuple[str, ...] = field(converter=tuple)
    #: Where the server saves (its C{--slot-save-path}).
    _directory: CacheDirectory = field(kw_only=True)
    #: The server's slot API.
    _client: SlotsClient = field(kw_only=True)
    _clock: IReactorTime = field(kw_only=True)
    _cwd: str | None = field(default=None, kw_only=True)
    #: Told about every save and restore.
    _observe: ReportObserver | None = field(default=None, kw_only=True)
    _timeout: float = field(default=DEFAULT_TIMEOUT, kw_only=True)
    _tag: str = field(init=False)
    _key: str | None = field(default=None, init=False)
    _slots: int | None = field(default=None, init=False)

    @_tag.default
    def _modelTag(self) -> str:
        return modelTag(self.modelID)

    @property
    def afterReadyTimeout(self) -> float:
        return self._timeout

    @property
    def beforeStopTimeout(self) -> float:
        return self._timeout

    # -- LifecycleHooks

    def afterReady(self) -> Deferred[None]:
        """
        Restore the saved slots of this exact model definition.
        """
        return Deferred.fromCoroutine(self._restore())

    def beforeStop(self) -> Deferred[None]:
        """
        Save every slot that holds tokens.
        """
        return Deferred.fromCoroutine(self._save())

    # -- the work

    def _currentKey(self) -> str:
        return cacheKey(self._argv, modelFileIdentity(self._argv, self._cwd))

    async def _restore(self) -> None:
        started = self._clock.seconds()
        self._slots = None
        key = self._key = self._currentKey()
        self._dropStale(key)
        try:
            total = self._slots = await self._client.totalSlots()
        except SlotsError as e:
            self._report("restore", _failure(e), started, message=str(e))
            return
        files = restorable(self._directory.files(), self._tag, key, total)
        if not files:
            self._report("restore", "miss", started)
            return
        slots = tokens = size = 0
        problems = []
        for slot, name in files.items():
            try:
                restored = await self._client.restore(slot, name)
            except SlotsUnsupported as e:
                self._report("restore", "unsupported", started, message=str(e))
                return
            except SlotsError as e:
                problems.append(f"{name}: {e.message}")
                if e.status != REJECTED:
                    # No verdict on the file (timeout, connection): keep it.
                    break
                self.log.warn(
                    "[{model}] prompt cache: ignoring {name}: {error}",
                    model=self.modelID,
                    name=name,
                    error=e.message,
                )
                self._directory.delete([name])
                continue
            self._directory.touch(name)
            slots += 1
            tokens += restored.tokens
            size += restored.bytes
        outcome = "hit" if tokens > 0 else ("error" if problems else "miss")
        self._report("restore", outcome, started, slots, tokens, size, message="; ".join(problems))

    async def _save(self) -> None:
        started = self._clock.seconds()
        key = self._key or self._currentKey()
        total = self._slots
        if total is None:
            try:
                total = await self._client.totalSlots()
            except SlotsError as e:
                self._report("save", _failure(e), started, message=str(e))
                return
        slots = tokens = size = 0
        problems = []
        written = []
        for slot in range(total):
            temp = tempName(self._tag, key, slot, _serial())
            try:
                saved = await self._client.save(slot, temp)
            except SlotsUnsupported as e:
                self._directory.delete([temp])
                self._report("save", "unsupported", started, message=str(e))
                return
            except SlotsError as e:
                self._directory.delete([temp])
                problems.append(f"slot {slot}: {e.message}")
                continue
            if saved.tokens == 0:
                self._directory.delete([temp])
                continue
            final = finalName(self._tag, key, slot)
            try:
                self._directory.rename(temp, final)
            except OSError as e:
                self._directory.delete([temp])
                problems.append(f"slot {slot}: {e}")
                continue
            written.append(final)
            slots += 1
            tokens += saved.tokens
            size += saved.bytes
        evicted = self._directory.enforceCap(keep=written)
        lost = [name for name in written if name in evicted]
        if lost:
            problems.append(f"{len(lost)} file(s) larger than promptCacheMaxBytes were dropped")
            slots -= len(lost)
        if problems:
            self.log.warn(
                "[{model}] prompt cache: save problems: {problems}",
                model=self.modelID,
                problems="; ".join(problems),
            )
        outcome = "saved" if slots else ("error" if problems else "empty")
        self._report("save", outcome, started, slots, tokens, size, message="; ".join(problems))

    def _dropStale(self, key: str) -> None:
        stale = staleFiles(self._directory.files(), self._tag, key)
        if stale:
            freed = self._directory.delete(stale)
            self.log.info(
                "[{model}] prompt cache: deleted {count} stale file(s), {bytes} bytes",
                model=self.modelID,
                count=len(stale),
                bytes=freed,
            )

    def _report(
        self,
        action: str,
        outcome: str,
        started: float,
        slots: int = 0,
        tokens: int = 0,
        size: int = 0,
        message: str = "",
    ) -> CacheReport:
        report = CacheReport(
            self.modelID,
            action,
            outcome,
            slots,
            tokens,
            size,
            max(self._clock.seconds() - started, 0.0),
            message,
        )
        if outcome == "unsupported":
            self.log.warn(
                "[{model}] prompt cache off for this run: the server has no slot "
                "save/restore API ({error}); starting cold",
                model=self.modelID,
                error=message,
            )
        else:
            log = self.log.warn if outcome == "error" else self.log.info
            log(
                "[{model}] prompt cache {action}: {outcome}, {slots} slot(s), {tokens} "
                "tokens, {bytes} bytes in {ms} ms" + (" ({message})" if message else ""),
                model=self.modelID,
                action=action,
                outcome=outcome,
                slots=slots,
                tokens=tokens,
                bytes=size,
                ms=int(report.seconds * 1000),
                message=message,
            )
        if self._observe is not None:
            try:
                self._observe(report)
            except Exception:
                self.log.failure("[{model}] prompt cache observer failed", model=self.modelID)
        return report


def _failure(error: SlotsError) -> str:
    return "unsupported" if isinstance(error, SlotsUnsupported) else "error"


def _serial() -> int:
    return os.getpid() * 100000 + next(_serials) % 100000
