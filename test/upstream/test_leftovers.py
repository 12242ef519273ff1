"""
Tests for L{llamaswap.upstream.leftovers} against a fake C{/proc} tree.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.upstream.leftovers import (
    MARKER_VAR,
    Leftover,
    LeftoverRegistry,
    LeftoversInUse,
    MarkedEnviron,
    ProcStat,
    findLeftover,
    processGone,
    readCmdline,
    readMarker,
    readStat,
    reapLeftovers,
    waitGone,
)

BOOT = "boot-1"


class FakeProc:
    """
    A directory laid out like the parts of C{/proc} we read.
    """

    def __init__(self, root: str, boot: str = BOOT) -> None:
        self.root = root
        os.makedirs(os.path.join(root, "sys", "kernel", "random"))
        self.setBoot(boot)

    def setBoot(self, boot: str) -> None:
        """
        Set the boot ID.
        """
        with open(os.path.join(self.root, "sys", "kernel", "random", "boot_id"), "w") as f:
            f.write(boot + "\n")

    def add(
        self,
        pid: int,
        *,
        pgrp: int,
        start: int,
        state: str = "S",
        ppid: int = 1,
        session: int | None = None,
        cmdline: list[str] = ["llama-server", "-m", "x"],
        comm: str = "llama (server) x",
    ) -> None:
        """
        Add process C{pid}.
        """
        directory = os.path.join(self.root, str(pid))
        os.makedirs(directory, exist_ok=True)
        session = pgrp if session is None else session
        rest = ["0"] * 13 + [str(start)] + ["0"] * 30
        fields = [state, str(ppid), str(pgrp), str(session), "0", "-1"] + rest
        with open(os.path.join(directory, "stat"), "w") as f:
            f.write(f"{pid} ({comm}) " + " ".join(fields) + "\n")
        with open(os.path.join(directory, "cmdline"), "wb") as f:
            f.write(b"".join(part.encode() + b"\0" for part in cmdline))

    def remove(self, pid: int) -> None:
        """
        Process C{pid} is gone.
        """
        shutil.rmtree(os.path.join(self.root, str(pid)))


class ProcReadingTests(SynchronousTestCase):
    """
    Reading C{/proc}.
    """

    def setUp(self) -> None:
        self.proc = FakeProc(self.mktemp())

    def test_readStat(self) -> None:
        """
        The fields after the command name are read even if the name contains
        spaces and parentheses.
        """
        self.proc.add(10, pgrp=10, start=12345, ppid=3, comm="a) b (c")
        self.assertEqual(readStat(10, self.proc.root), ProcStat("S", 3, 10, 10, 12345))
        self.assertIsNone(readStat(11, self.proc.root))

    def test_readStatOfRealSelf(self) -> None:
        """
        Our own real C{/proc} entry parses, with our process group.
        """
        stat = readStat(os.getpid())
        assert stat is not None
        self.assertEqual(stat.pgrp, os.getpgrp())
        self.assertEqual(stat.ppid, os.getppid())

    def test_readCmdline(self) -> None:
        """
        The NUL-separated argv is split.
        """
        self.proc.add(10, pgrp=10, start=1, cmdline=["a b", "c"])
        self.assertEqual(readCmdline(10, self.proc.root), ["a b", "c"])
        self.assertIsNone(readCmdline(11, self.proc.root))

    def test_processGone(self) -> None:
        """
        Absent and zombie processes are gone.
        """
        self.proc.add(10, pgrp=10, start=1)
        self.proc.add(11, pgrp=10, start=1, state="Z")
        self.assertFalse(processGone(10, self.proc.root))
        self.assertTrue(processGone(11, self.proc.root))
        self.assertTrue(processGone(12, self.proc.root))


class FindLeftoverTests(SynchronousTestCase):
    """
    Only the group llamaswap created is found.
    """

    def setUp(self) -> None:
        self.proc = FakeProc(self.mktemp())

    def entry(self, **kwargs: object) -> Leftover:
        """
        A leftover for PID 100 started at tick 5000 on this boot.
        """
        options: dict = dict(
            model="m", pid=100, pgid=100, argv0="llama-server", started=0.0, procStart=5000, boot=BOOT
        )
        options.update(kwargs)
        return Leftover(**options)

    def test_leaderAlive(self) -> None:
        """
        A live leader with the recorded start time: every live member of its
        group is found (zombies are not).
        """
        self.proc.add(100, pgrp=100, start=5000, cmdline=["bash", "wrapper.sh"])
        self.proc.add(101, pgrp=100, start=5001, ppid=100)
        self.proc.add(102, pgrp=100, start=5002, ppid=100, state="Z")
        self.proc.add(103, pgrp=103, start=5003)
        self.assertEqual(findLeftover(self.entry(), self.proc.root), [100, 101])

    def test_reusedPid(self) -> None:
        """
        A live process with the PID but another start time is not ours.
        """
        self.proc.add(100, pgrp=100, start=9999)
        self.assertEqual(findLeftover(self.entry(), self.proc.root), [])

    def test_otherBoot(self) -> None:
        """
        After a reboot nothing recorded can be alive.
        """
        self.proc.add(100, pgrp=100, start=5000)
        self.proc.setBoot("boot-2")
        self.assertEqual(findLeftover(self.entry(), self.proc.root), [])

    def test_leaderGone(self) -> None:
        """
        With the leader gone, group members no older than it are found.
        """
        self.proc.add(101, pgrp=100, start=5001)
        self.proc.add(102, pgrp=100, start=4000)
        self.assertEqual(findLeftover(self.entry(), self.proc.root), [101])

    def test_cmdlineWhenStartUnknown(self) -> None:
        """
        Without a recorded start time the command line must match.
        """
        self.proc.add(100, pgrp=100, start=5000, cmdline=["/usr/bin/llama-server", "-m", "x"])
        self.assertEqual(findLeftover(self.entry(procStart=None), self.proc.root), [100])
        self.assertEqual(
            findLeftover(self.entry(procStart=None, argv0="vllm"), self.proc.root), []
        )


class ReapTests(SynchronousTestCase):
    """
    L{reapLeftovers} and L{LeftoverRegistry}.
    """

    def setUp(self) -> None:
        self.proc = FakeProc(self.mktemp())
        self.path = os.path.join(self.mktemp(), "upstreams.json")
        self.killed: list[tuple[int, int]] = []

    def killpg(self, pgid: int, sig: int) -> None:
        self.killed.append((pgid, sig))

    def reap(self, ownPid: int = 1) -> list:
        return reapLeftovers(self.path, procRoot=self.proc.root, killpg=self.killpg, ownPid=ownPid)

    def record(self, owner: int) -> LeftoverRegistry:
        """
        A registry owned by C{owner}, recording PID 100 (alive).
        """
        self.proc.add(100, pgrp=100, start=5000)
        self.proc.add(101, pgrp=100, start=5001)
        registry = LeftoverRegistry(self.path, procRoot=self.proc.root, ownPid=owner)
        registry.add("m", 100, "llama-server", 1700000000.0)
        return registry

    def test_registryFile(self) -> None:
        """
        The registry writes its owner and each upstream, with the start time
        read from C{/proc}, and rewrites the file on removal.
        """
        self.proc.add(7, pgrp=7, start=42)
        registry = self.record(owner=7)
        with open(self.path) as f:
            data = json.load(f)
        self.assertEqual(data["owner"], {"pid": 7, "procStart": 42, "boot": BOOT})
        self.assertEqual(
            data["upstreams"],
            [
                {
                    "model": "m",
                    "pid": 100,
                    "pgid": 100,
                    "argv0": "llama-server",
                    "started": 1700000000.0,
                    "procStart": 5000,
                    "boot": BOOT,
                }
            ],
        )
        registry.remove(100)
        registry.remove(100)
        with open(self.path) as f:
            self.assertEqual(json.load(f)["upstreams"], [])
        registry.close()
        with open(self.path) as f:
            self.assertIsNone(json.load(f)["owner"])

    def test_coalescedWrites(self) -> None:
        """
        With a clock, additions and removals are written together C{delay}
        seconds after the first; C{close} writes at once and cancels a
        pending write.
        """
        clock = Clock()
        self.proc.add(7, pgrp=7, start=42)
        self.proc.add(100, pgrp=100, start=5000)
        self.proc.add(200, pgrp=200, start=6000)
        registry = LeftoverRegistry(
            self.path, procRoot=self.proc.root, ownPid=7, clock=clock, delay=0.25
        )

        def recorded() -> list[int]:
            with open(self.path) as f:
                return [entry["pid"] for entry in json.load(f)["upstreams"]]

        self.assertEqual(recorded(), [])
        registry.add("a", 100, "llama-server", 1.0)
        clock.advance(0.1)
        registry.remove(100)
        registry.add("b", 200, "llama-server", 2.0)
        self.assertEqual(recorded(), [])
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0.15)
        self.assertEqual(recorded(), [200])
        self.assertEqual(clock.getDelayedCalls(), [])
        registry.remove(200)
        registry.close()
        self.assertEqual(clock.getDelayedCalls(), [])
        with open(self.path) as f:
            data = json.load(f)
        self.assertEqual((data["owner"], data["upstreams"]), (None, []))

    def test_reapAfterOwnerDied(self) -> None:
        """
        Upstreams of a dead owner are killed by group with SIGKILL and the
        file is emptied.
        """
        self.record(owner=7)  # PID 7 does not exist
        reaped = self.reap()
        self.assertEqual(self.killed, [(100, signal.SIGKILL)])
        self.assertEqual([(r.leftover.pid, r.pids) for r in reaped], [(100, (100, 101))])
        with open(self.path) as f:
            self.assertEqual(json.load(f)["upstreams"], [])
        self.assertEqual(self.reap(), [])

    def test_ownerStillRunning(self) -> None:
        """
        A file whose owner is another live process is left alone.
        """
        self.proc.add(7, pgrp=7, start=42)
        self.record(owner=7)
        self.assertRaises(LeftoversInUse, self.reap, 8)
        self.assertEqual(self.killed, [])

    def test_ownFile(self) -> None:
        """
        Our own file lists our own live upstreams: nothing to reap.
        """
        self.proc.add(7, pgrp=7, start=42)
        self.record(owner=7)
        self.assertEqual(self.reap(ownPid=7), [])
        self.assertEqual(self.killed, [])

    def test_ownerPidReused(self) -> None:
        """
        An owner PID that now belongs to another process (other start time)
        counts as dead.
        """
        self.record(owner=7)
        self.proc.add(7, pgrp=7, start=43)
        self.assertEqual(len(self.reap()), 1)

    def test_goneUpstreamsDropped(self) -> None:
        """
        Entries whose processes are gone are dropped without any kill.
        """
        self.record(owner=7)
        self.proc.remove(100)
        self.proc.remove(101)
        self.assertEqual(self.reap(), [])
        self.assertEqual(self.killed, [])

    def test_cannotKill(self) -> None:
        """
        An upstream we may not kill stays in the file.
        """
        self.record(owner=7)

        def refuse(pgid: int, sig: int) -> None:
            raise PermissionError(1, "Operation not permitted")

        self.assertEqual(
            reapLeftovers(self.path, procRoot=self.proc.root, killpg=refuse, ownPid=1), []
        )
        with open(self.path) as f:
            self.assertEqual([e["pid"] for e in json.load(f)["upstreams"]], [100])

    def test_missingOrCorruptFile(self) -> None:
        """
        No file, or garbage in it, means nothing to reap.
        """
        self.assertEqual(self.reap(), [])
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "w") as f:
            f.write("{not json")
        self.assertEqual(self.reap(), [])

    def test_waitGone(self) -> None:
        """
        L{waitGone} polls until the processes are gone or zombies, or the
        timeout passes, and returns what is left.
        """
        self.proc.add(100, pgrp=100, start=1)
        self.proc.add(101, pgrp=100, start=1)
        clock = Clock()
        d = waitGone([100, 101], clock, 1.0, procRoot=self.proc.root)
        clock.advance(0.1)
        self.proc.remove(100)
        self.proc.add(101, pgrp=100, start=1, state="Z")
        clock.advance(0.02)
        self.assertEqual(self.successResultOf(d), [])

        self.proc.add(102, pgrp=102, start=1)
        d = waitGone([102], clock, 1.0, procRoot=self.proc.root)
        clock.pump([0.05] * 60)
        self.assertEqual(self.successResultOf(d), [102])


class EscapedDescendantTests(SynchronousTestCase):
    """
    Descendants that left their upstream's group (C{setsid}) are found by
    the marker in their environment; members that left only the group are
    found by session.
    """

    def setUp(self) -> None:
        self.proc = FakeProc(self.mktemp())
        self.path = os.path.join(self.mktemp(), "upstreams.json")
        self.killed: list[tuple[str, int, int]] = []

    def addMarked(self, pid: int, marker: str, **kw: Any) -> None:
        self.proc.add(pid, **kw)
        with open(os.path.join(self.proc.root, str(pid), "environ"), "wb") as f:
            f.write(b"PATH=/bin\0" + MARKER_VAR.encode() + b"=" + marker.encode() + b"\0")

    def reap(self, ownPid: int = 1) -> list:
        return reapLeftovers(
            self.path,
            procRoot=self.proc.root,
            killpg=lambda pgid, sig: self.killed.append(("pg", pgid, sig)),
            kill=lambda pid, sig: self.killed.append(("pid", pid, sig)),
            ownPid=ownPid,
        )

    def test_reapBySessionAndMarker(self) -> None:
        """
        With the owner dead: the recorded group is killed, a session member
        in another group and a C{setsid} grandchild carrying the owner's
        marker are killed one by one; processes of other llamaswaps (other
        marker) and our own process are not.
        """
        self.addMarked(100, "m1", pgrp=100, start=5000)
        self.addMarked(102, "m1", pgrp=102, session=100, start=5002)
        self.addMarked(300, "m1", pgrp=300, start=5003)
        self.addMarked(400, "other", pgrp=400, start=5004)
        self.addMarked(1, "m1", pgrp=1, start=1)
        registry = LeftoverRegistry(self.path, procRoot=self.proc.root, ownPid=7, marker="m1")
        registry.add("m", 100, "llama-server", 0.0)
        with open(self.path) as f:
            self.assertEqual(json.load(f)["owner"]["marker"], "m1")
        reaped = self.reap(ownPid=1)
        self.assertEqual(
            self.killed,
            [("pg", 100, signal.SIGKILL), ("pid", 102, signal.SIGKILL),
             ("pid", 300, signal.SIGKILL)],
        )
        self.assertEqual([r.leftover.model for r in reaped], ["m", "(descendant)"])

    def test_cleanStop(self) -> None:
        """
        Closing the registry kills what still carries our marker.
        """
        self.addMarked(300, "m1", pgrp=300, start=5003)
        self.addMarked(400, "other", pgrp=400, start=5004)
        registry = LeftoverRegistry(
            self.path, procRoot=self.proc.root, ownPid=7, marker="m1",
            kill=lambda pid, sig: self.killed.append(("pid", pid, sig)),
        )
        registry.close()
        self.assertEqual(self.killed, [("pid", 300, signal.SIGKILL)])

    def test_markedEnviron(self) -> None:
        """
        The upstreams' base environment is ours (read when used) plus the
        marker.
        """
        environ = MarkedEnviron({"A": "1", MARKER_VAR: "parent"}, "m1")
        self.assertEqual(dict(environ), {"A": "1", MARKER_VAR: "m1"})
        self.assertEqual(len(environ), 2)
        self.assertEqual(MarkedEnviron(None, "m2")[MARKER_VAR], "m2")
        self.assertEqual(readMarker(os.getpid()), os.environ.get(MARKER_VAR))
