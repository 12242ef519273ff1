# -*- test-case-name: test.upstream.test_leftovers -*-
"""
Leftover upstreams: record running upstreams in a small JSON state file, and
on start-up kill the process groups of upstreams a previous llamaswap left
behind (it was killed before it could stop them and the parent-death signal
did not get them, e.g. an upstream that changed its credentials).

The file (a path chosen by the caller, e.g. in the runtime directory next
to the pidfile) looks like::

    {"version": 1,
     "owner": {"pid": 4242, "procStart": 123456, "boot": "..."},
     "upstreams": [{"model": "m", "pid": 5000, "pgid": 5000,
                    "argv0": "llama-server", "started": 1700000000.0,
                    "procStart": 123789, "boot": "..."}]}

A PID is only trusted when the boot ID and the process start time (field 22
of C{/proc/PID/stat}, fixed at fork and unchanged by C{exec}) both match
what was recorded, so a reused PID is never killed.

A process group does not hold the whole tree: a grandchild that calls
C{setsid} (a daemonizing helper) leaves its group and session, and survives
when llamaswap and the launcher are killed together (the OOM killer).  So
every upstream also inherits C{LLAMASWAP_UPSTREAM_OF=<marker>} in its
environment (L{MarkedEnviron}), a random token of this llamaswap recorded as
the file's C{owner.marker}; descendants keep it whatever session they
move to.  Reaping kills the recorded groups, the members of the recorded
sessions, and every process carrying a dead owner's marker
(L{markedProcesses}); a clean stop kills whatever still carries our own
(L{LeftoverRegistry.close}).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from typing import Callable, Iterable, Iterator, Mapping

from attrs import asdict, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from .process import LAUNCHER

PROC = "/proc"
VERSION = 1
#: The environment variable naming the llamaswap an upstream belongs to.
MARKER_VAR = "LLAMASWAP_UPSTREAM_OF"

log = Logger()


@frozen
class ProcStat:
    """
    The fields of C{/proc/PID/stat} we use.
    """

    state: str
    ppid: int
    pgrp: int
    session: int
    startTime: int


def readStat(pid: int, procRoot: str = PROC) -> ProcStat | None:
    """
    Parse C{/proc/PID/stat}; C{None} if there is no such process.
    """
    try:
        with open(os.path.join(procRoot, str(pid), "stat"), "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError, PermissionError):
        return None
    try:
        fields = raw[raw.rindex(")") + 2 :].split()
        return ProcStat(fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))
    except (ValueError, IndexError):
        return None


def readCmdline(pid: int, procRoot: str = PROC) -> list[str] | None:
    """
    The argv of process C{pid} from C{/proc/PID/cmdline}; C{None} if gone.
    """
    try:
        with open(os.path.join(procRoot, str(pid), "cmdline"), "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError, PermissionError):
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0")[:-1]]


def bootID(procRoot: str = PROC) -> str | None:
    """
    This boot's ID (C{/proc/sys/kernel/random/boot_id}), if readable.
    """
    try:
        with open(os.path.join(procRoot, "sys", "kernel", "random", "boot_id")) as f:
            return f.read().strip() or None
    except OSError:
        return None


def processGone(pid: int, procRoot: str = PROC) -> bool:
    """
    Whether C{pid} has died: no such process, or a zombie (dead, waiting to
    be reaped by a parent that may never do it).
    """
    stat = readStat(pid, procRoot)
    return stat is None or stat.state in ("Z", "X", "x")


def newMarker() -> str:
    """
    A fresh marker for one llamaswap's upstreams.
    """
    return secrets.token_hex(12)


class MarkedEnviron(Mapping[str, str]):
    """
    C{base} (default: C{os.environ} as it is when read) with
    L{MARKER_VAR} set to C{marker}: the base environment of upstreams.
    """

    def __init__(self, base: Mapping[str, str] | None, marker: str) -> None:
        self._base = base
        self.marker = marker

    def _current(self) -> Mapping[str, str]:
        return os.environ if self._base is None else self._base

    def __getitem__(self, name: str) -> str:
        if name == MARKER_VAR:
            return self.marker
        return self._current()[name]

    def __iter__(self) -> Iterator[str]:
        yield MARKER_VAR
        for name in self._current():
            if name != MARKER_VAR:
                yield name

    def __len__(self) -> int:
        return len(self._current()) + (MARKER_VAR not in self._current())


def readMarker(pid: int, procRoot: str = PROC) -> str | None:
    """
    The L{MARKER_VAR} value in process C{pid}'s environment, if readable.
    """
    try:
        with open(os.path.join(procRoot, str(pid), "environ"), "rb") as f:
            raw = f.read()
    except OSError:
        return None
    prefix = MARKER_VAR.encode("ascii") + b"="
    for entry in raw.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode("ascii", "replace")
    return None


def markedProcesses(
    marker: str, procRoot: str = PROC, exclude: Iterable[int] = ()
) -> list[int]:
    """
    Live processes whose environment carries C{marker}: upstreams of one
    llamaswap and all their descendants, whatever session they are in.
    """
    excluded = set(exclude)
    found = []
    for pid in _processIDs(procRoot):
        if pid in excluded or readMarker(pid, procRoot) != marker:
            continue
        stat = readStat(pid, procRoot)
        if stat is not None and stat.state not in ("Z", "X", "x"):
            found.append(pid)
    return sorted(found)


def groupMembers(pgid: int, procRoot: str = PROC) -> list[tuple[int, ProcStat]]:
    """
    Live (non-zombie) processes whose process group, or session, is C{pgid}
    (an upstream leads both; a descendant may have moved to a group of its
    own inside the session).
    """
    members = []
    for pid in _processIDs(procRoot):
        stat = readStat(pid, procRoot)
        if (
            stat is not None
            and (stat.pgrp == pgid or stat.session == pgid)
            and stat.state not in ("Z", "X", "x")
        ):
            members.append((pid, stat))
    return members


def _processIDs(procRoot: str) -> list[int]:
    """
    The PIDs listed under C{procRoot} (none when it cannot be read).
    """
    try:
        names = os.listdir(procRoot)
    except OSError:
        return []
    return [int(name) for name in names if name.isdigit()]


@frozen
class Leftover:
    """
    One recorded upstream.
    """

    model: str
    pid: int
    pgid: int
    argv0: str
    started: float
    procStart: int | None = None
    boot: str | None = None


@frozen
class Reaped:
    """
    A leftover whose process group was sent C{SIGKILL}; C{pids} are the
    members found alive.
    """

    leftover: Leftover
    pids: tuple[int, ...]


class LeftoversInUse(Exception):
    """
    The state file belongs to another llamaswap that is still running.
    """


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warn("ignoring unreadable upstream state file {path}: {error}", path=path, error=e)
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: str, owner: dict | None, leftovers: Iterable[Leftover]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    data = {
        "version": VERSION,
        "owner": owner,
        "upstreams": [asdict(entry) for entry in leftovers],
    }
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(temporary, path)


def _parseLeftovers(data: dict) -> list[Leftover]:
    entries = []
    for raw in data.get("upstreams") or []:
        try:
            entries.append(
                Leftover(
                    model=str(raw["model"]),
                    pid=int(raw["pid"]),
                    pgid=int(raw["pgid"]),
                    argv0=str(raw["argv0"]),
                    started=float(raw.get("started", 0.0)),
                    procStart=None if raw.get("procStart") is None else int(raw["procStart"]),
                    boot=raw.get("boot"),
                )
            )
        except (KeyError, TypeError, ValueError):
            log.warn("ignoring malformed upstream state entry {entry!r}", entry=raw)
    return entries


def _ownerInfo(pid: int, procRoot: str, marker: str | None = None) -> dict:
    stat = readStat(pid, procRoot)
    info = {
        "pid": pid,
        "procStart": stat.startTime if stat is not None else None,
        "boot": bootID(procRoot),
    }
    if marker is not None:
        info["marker"] = marker
    return info


def _isOurs(entry: Leftover, pid: int, stat: ProcStat, procRoot: str) -> bool:
    """
    Whether live process C{pid} is the recorded upstream itself.
    """
    if entry.procStart is not None:
        # Same boot and same start time: the same process, whatever it
        # exec'd since (a wrapper may have exec'd the real server).
        return stat.startTime == entry.procStart
    cmdline = readCmdline(pid, procRoot) or []
    if not cmdline:
        return False
    first = cmdline[0]
    return (
        first == entry.argv0
        or os.path.basename(first) == os.path.basename(entry.argv0)
        or (LAUNCHER in cmdline and entry.argv0 in cmdline)
    )


def findLeftover(entry: Leftover, procRoot: str = PROC) -> list[int]:
    """
    The live members of C{entry}'s process group, if that group is still
    the one llamaswap created; else C{[]}.
    """
    currentBoot = bootID(procRoot)
    if entry.boot is not None and currentBoot is not None and entry.boot != currentBoot:
        return []
    leader = readStat(entry.pid, procRoot)
    if leader is not None:
        if leader.state in ("Z", "X", "x"):
            leader = None
        elif not _isOurs(entry, entry.pid, leader, procRoot):
            # The PID was reused: our group, which would have kept the PID
            # from being reused, must be empty.
            return []
    members = groupMembers(entry.pgid, procRoot)
    if leader is None and entry.procStart is not None:
        # The leader is gone; its group lives on only in processes that
        # cannot be older than it.
        members = [(pid, stat) for pid, stat in members if stat.startTime >= entry.procStart]
    return sorted(pid for pid, _ in members)


def reapLeftovers(
    path: str,
    *,
    procRoot: str = PROC,
    killpg: Callable[[int, int], None] = os.killpg,
    kill: Callable[[int, int], None] = os.kill,
    ownPid: int | None = None,
) -> list[Reaped]:
    """
    Kill (C{SIGKILL}) the process groups of upstreams recorded in C{path}
    that are still alive, the other members of their sessions, and every
    process carrying the dead owner's marker; rewrite C{path} without them.

    @raise LeftoversInUse: if the file's owner is another live process.
    @return: what was killed.  Use L{waitGone} to wait for them to die.
    """
    ownPid = os.getpid() if ownPid is None else ownPid
    data = _read(path)
    if not data:
        return []
    owner = data.get("owner") or {}
    ownerPid = owner.get("pid")
    if isinstance(ownerPid, int):
        ownerStat = readStat(ownerPid, procRoot)
        alive = (
            ownerStat is not None
            and ownerStat.state not in ("Z", "X", "x")
            and ownerStat.startTime == owner.get("procStart")
            and owner.get("boot") == bootID(procRoot)
        )
        if alive:
            if ownerPid == ownPid:
                # Our own, live upstreams: nothing is left over.
                return []
            raise LeftoversInUse(
                f"{path} belongs to llamaswap pid {ownerPid}, which is still running"
            )
    reaped = []
    kept = []
    killed: set[int] = {ownPid}
    for entry in _parseLeftovers(data):
        members = findLeftover(entry, procRoot)
        if not members:
            continue
        try:
            killpg(entry.pgid, signal.SIGKILL)
            for pid in members:
                stat = readStat(pid, procRoot)
                if stat is not None and stat.pgrp != entry.pgid:
                    _killQuietly(kill, pid)
        except ProcessLookupError:
            continue
        except PermissionError as e:
            log.warn(
                "cannot kill leftover upstream {model} (pgid {pgid}): {error}",
                model=entry.model,
                pgid=entry.pgid,
                error=e,
            )
            kept.append(entry)
            continue
        log.warn(
            "killed leftover upstream {model} (pgid {pgid}, pids {pids}) of an earlier llamaswap",
            model=entry.model,
            pgid=entry.pgid,
            pids=members,
        )
        reaped.append(Reaped(entry, tuple(members)))
        killed.update(members)
    marker = owner.get("marker")
    if isinstance(marker, str) and marker:
        for pid in markedProcesses(marker, procRoot, exclude=killed):
            if _killQuietly(kill, pid):
                stray = readCmdline(pid, procRoot) or ["?"]
                log.warn(
                    "killed process {pid} ({argv0}) left by an upstream of an earlier"
                    " llamaswap",
                    pid=pid,
                    argv0=stray[0],
                )
                reaped.append(
                    Reaped(Leftover("(descendant)", pid, pid, stray[0], 0.0), (pid,))
                )
    _write(path, None, kept)
    return reaped


def _killQuietly(kill: Callable[[int, int], None], pid: int) -> bool:
    try:
        kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def waitGone(
    pids: Iterable[int],
    clock: IReactorTime,
    timeout: float,
    interval: float = 0.02,
    procRoot: str = PROC,
) -> Deferred[list[int]]:
    """
    Poll until every PID in C{pids} is gone or a zombie, or C{timeout}
    seconds passed.

    @return: fires with the PIDs still alive (empty on success).
    """
    return Deferred.fromCoroutine(_waitGone(pids, clock, timeout, interval, procRoot))


async def _waitGone(
    pids: Iterable[int],
    clock: IReactorTime,
    timeout: float,
    interval: float,
    procRoot: str,
) -> list[int]:
    pending = sorted(set(pids))
    deadline = clock.seconds() + timeout
    while True:
        pending = [pid for pid in pending if not processGone(pid, procRoot)]
        if not pending or clock.seconds() >= deadline:
            return pending
        await deferLater(clock, interval, lambda: None)


class LeftoverRegistry:
    """
    Keeps the state file in step with the upstreams this llamaswap runs.
    Creating it claims the file (run L{reapLeftovers} first); each
    L{add}/L{remove} rewrites it atomically.  Write errors are logged, never
    raised: the file is a safety net.

    With a C{clock}, the rewrites of L{add}/L{remove} are coalesced and
    done C{delay} seconds later: a swap's stop and start then cost one
    write (a file write and rename take 0.1-2 ms of blocking I/O) after the
    swap instead of two inside it.  The file is a second line of defence
    behind the keeper's parent-death signal, so lagging by C{delay} is
    safe; an entry of an exited process is never acted on (its start time
    no longer matches).
    """

    def __init__(
        self,
        path: str,
        *,
        procRoot: str = PROC,
        ownPid: int | None = None,
        clock: IReactorTime | None = None,
        delay: float = 0.25,
        marker: str | None = None,
        kill: Callable[[int, int], None] = os.kill,
    ) -> None:
        """
        @param marker: the L{MARKER_VAR} value our upstreams carry.
        """
        self.path = path
        self._procRoot = procRoot
        self._ownPid = os.getpid() if ownPid is None else ownPid
        self._marker = marker
        self._kill = kill
        self._owner = _ownerInfo(self._ownPid, procRoot, marker)
        self._entries: dict[int, Leftover] = {}
        self._clock = clock
        self._delay = delay
        self._pending: IDelayedCall | None = None
        self.flush()

    @property
    def entries(self) -> tuple[Leftover, ...]:
        """
        The recorded upstreams, by PID.
        """
        return tuple(self._entries[pid] for pid in sorted(self._entries))

    def add(self, modelID: str, pid: int, argv0: str, started: float) -> None:
        """
        Record upstream C{pid} (its own process-group leader) of C{modelID}.
        """
        stat = readStat(pid, self._procRoot)
        self._entries[pid] = Leftover(
            model=modelID,
            pid=pid,
            pgid=pid,
            argv0=argv0,
            started=started,
            procStart=stat.startTime if stat is not None else None,
            boot=bootID(self._procRoot),
        )
        self._changed()

    def remove(self, pid: int) -> None:
        """
        Forget upstream C{pid}.
        """
        if self._entries.pop(pid, None) is not None:
            self._changed()

    def close(self) -> None:
        """
        Forget everything and release the file (after a clean shutdown,
        every upstream stopped): a descendant that escaped its upstream's
        group (C{setsid}) and still carries our marker is killed now.
        """
        self._cancelPending()
        self._entries.clear()
        if self._marker is not None:
            for pid in markedProcesses(self._marker, self._procRoot, exclude={self._ownPid}):
                if _killQuietly(self._kill, pid):
                    log.warn("killed process {pid} left behind by an upstream", pid=pid)
        try:
            _write(self.path, None, [])
        except OSError as e:
            log.warn("cannot write {path}: {error}", path=self.path, error=e)

    def flush(self) -> None:
        """
        Write the file now (a coalesced write still pending is done).
        """
        self._cancelPending()
        try:
            _write(self.path, self._owner, self.entries)
        except OSError as e:
            log.warn("cannot write {path}: {error}", path=self.path, error=e)

    def _changed(self) -> None:
        if self._clock is None:
            self.flush()
        elif self._pending is None:
            self._pending = self._clock.callLater(self._delay, self._written)

    def _written(self) -> None:
        self._pending = None
        self.flush()

    def _cancelPending(self) -> None:
        if self._pending is not None:
            if self._pending.active():
                self._pending.cancel()
            self._pending = None
