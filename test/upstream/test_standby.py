"""
Tests for L{llamaswap.upstream.standby}: launchers started ahead of need.

The unit tests drive L{StandbyLaunchers} with a fake process reactor; the
real-process tests run every keeper test of L{test_realprocess} again with
the command handed to a standby launcher, and check the standby's own
guarantees (it ends when its stdin closes or llamaswap dies).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llamaswap.upstream._launcher import decodeCommand, encodeCommand
from llamaswap.upstream.process import CHILD_FDS, LAUNCHER, UpstreamProtocol
from llamaswap.upstream.standby import READY_REFILL_DELAY, StandbyLaunchers, standbyArgv

from . import test_realprocess as realprocess
from .fakes import FakeProcessReactor
from .test_realprocess import _LauncherProtocol, killQuietly, until

_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=20
)


class CommandEncodingTests(SynchronousTestCase):
    """
    The command a standby reads on stdin.
    """

    @given(
        st.lists(_text, min_size=1, max_size=5),
        st.dictionaries(_text.filter(lambda n: n and "=" not in n), _text, max_size=5),
        st.one_of(st.none(), _text.filter(bool)),
    )
    def test_roundTrip(self, argv: list[str], env: dict[str, str], cwd: str | None) -> None:
        """
        What is encoded decodes to the same argv, environment and directory.
        """
        self.assertEqual(decodeCommand(encodeCommand(argv, env, cwd)), (argv, env, cwd))

    def test_malformed(self) -> None:
        """
        Nothing, an empty argv, a bad count or trailing fields decode to
        C{None}.
        """
        good = encodeCommand(["a"], {"X": "1"}, None)
        self.assertIsNotNone(decodeCommand(good))
        for data in (b"", b"0\x000\x00\x00", b"x\x00", b"5\x00a\x00", good + b"more\x00"):
            self.assertIsNone(decodeCommand(data), data)


class StandbyLaunchersTests(SynchronousTestCase):
    """
    L{StandbyLaunchers} with a fake process reactor.
    """

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.reactor.autoReport = False
        self.launchers = StandbyLaunchers(self.reactor, self.reactor, refillDelay=0.5)
        self.launchers.startService()

    def spawn(self, argv: list[str] | None = None, **kwargs: Any) -> UpstreamProtocol:
        protocol = UpstreamProtocol("m", self.reactor)
        self.launchers.spawn(
            kwargs.pop("processReactor", self.reactor), protocol, argv or ["server", "-x"],
            {"A": "1"}, **kwargs,
        )
        return protocol

    def test_nothingBeforeFirstSpawn(self) -> None:
        """
        No standby is started before the first upstream, not even by
        L{StandbyLaunchers.refill}.
        """
        self.launchers.refill()
        self.reactor.advance(10)
        self.assertEqual(self.reactor.spawned, [])

    def test_firstSpawnDirect(self) -> None:
        """
        With no standby yet, the upstream is spawned through a new launcher;
        a standby is started C{refillDelay} later, with its stdin open.
        """
        protocol = self.spawn()
        [direct] = self.reactor.spawned
        self.assertEqual(direct.args[3], LAUNCHER)
        self.assertEqual(direct.args[-3:], ["--", "server", "-x"])
        self.assertEqual(direct.env, {"A": "1"})
        self.assertIs(direct.protocol, protocol)
        self.reactor.advance(0.4)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.advance(0.1)
        standby = self.reactor.spawned[1]
        self.assertEqual(standby.args, standbyArgv())
        self.assertEqual(standby.childFDs, CHILD_FDS)
        self.assertFalse(standby.stdinClosed)
        self.assertEqual(self.launchers.idlePids, [standby.pid])

    def test_standbyUsed(self) -> None:
        """
        A spawn hands the idle standby the command (argv, environment,
        directory) and gives the upstream's protocol its transport: stdin is
        closed, the report and output reach that protocol.
        """
        self.launchers.warm()
        [standby] = self.reactor.spawned
        protocol = self.spawn(["srv", "--port", "1"], cwd="/tmp")
        self.assertEqual(self.launchers.used, 1)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(decodeCommand(standby.written), (["srv", "--port", "1"], {"A": "1"}, "/tmp"))
        self.assertTrue(standby.stdinClosed)
        self.assertEqual(protocol.launcherPid, standby.pid)
        self.assertEqual(self.launchers.idlePids, [])
        standby.output(b"4321\n", fd=3)
        self.assertEqual(self.successResultOf(protocol.serverStarted), 4321)
        standby.output(b"hello\n")
        self.assertEqual(protocol.lastLines, ("hello",))
        standby.exit(3)
        self.assertEqual(self.successResultOf(protocol.exited).exitCode, 3)

    def test_refillAfterUse(self) -> None:
        """
        A used standby is replaced C{refillDelay} later, or
        L{READY_REFILL_DELAY} after L{StandbyLaunchers.refill}, whichever
        comes first.
        """
        self.launchers.warm()
        self.spawn()
        self.reactor.advance(0.5)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(self.launchers.idlePids, [self.reactor.spawned[1].pid])
        self.spawn()
        self.reactor.advance(0.1)
        self.launchers.refill()
        self.reactor.advance(READY_REFILL_DELAY - 0.001)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.advance(0.001)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        # A refill does not postpone one already due sooner.
        self.spawn()
        self.reactor.advance(0.49)
        self.launchers.refill()
        self.reactor.advance(0.011)
        self.assertEqual(len(self.reactor.spawned), 4)

    def test_size(self) -> None:
        """
        C{size} standbys are kept; the oldest is used first.
        """
        launchers = StandbyLaunchers(self.reactor, self.reactor, size=2)
        launchers.startService()
        launchers.warm()
        first, second = self.reactor.spawned
        self.assertEqual(launchers.idlePids, [first.pid, second.pid])
        launchers.spawn(self.reactor, UpstreamProtocol("m", self.reactor), ["a"], {})
        self.assertTrue(first.stdinClosed)
        self.assertFalse(second.stdinClosed)
        launchers.refill()
        self.reactor.advance(READY_REFILL_DELAY)
        self.assertEqual(launchers.idlePids, [second.pid, self.reactor.spawned[2].pid])

    def test_deadStandbyNotUsed(self) -> None:
        """
        A standby that died while idle is not used: a new launcher is.
        """
        self.launchers.warm()
        [standby] = self.reactor.spawned
        standby.exit(1)
        self.assertEqual(self.launchers.idlePids, [])
        protocol = self.spawn()
        self.assertEqual(self.launchers.used, 0)
        self.assertIs(self.reactor.spawned[1].protocol, protocol)

    def test_otherParentOrReactor(self) -> None:
        """
        A spawn for another parent PID or another reactor does not use the
        standby (it was armed against us, on our reactor), which stays
        idle.
        """
        self.launchers.warm()
        [standby] = self.reactor.spawned
        self.spawn(parentPid=os.getpid() + 1)
        self.assertEqual(self.launchers.used, 0)
        self.assertEqual(self.reactor.spawned[1].args[4], str(os.getpid() + 1))
        other = FakeProcessReactor()
        self.spawn(processReactor=other)
        self.assertEqual(self.launchers.used, 0)
        self.assertEqual(len(other.spawned), 1)
        self.assertEqual(self.launchers.idlePids, [standby.pid])
        self.assertFalse(standby.stdinClosed)

    def test_stopEndsIdle(self) -> None:
        """
        Stopping closes the idle standbys' stdin and waits for them to end;
        no standby is started afterwards.
        """
        self.launchers.warm()
        [standby] = self.reactor.spawned
        d = self.launchers.stopService()
        self.assertTrue(standby.stdinClosed)
        self.assertNoResult(d)
        standby.exit(0)
        self.successResultOf(d)
        self.spawn()
        self.reactor.advance(5)
        self.launchers.warm()
        self.launchers.refill()
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_stopCancelsRefill(self) -> None:
        """
        A refill pending when the service stops never happens.
        """
        self.spawn()
        self.successResultOf(self.launchers.stopService())
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class StandbyKeeperTests(realprocess.KeeperTests):
    """
    Every keeper test again, with the command handed to a standby launcher
    that was started (and armed) before the command was known.
    """

    def spawnStandby(self) -> tuple[_LauncherProtocol, Any]:
        """
        Start an idle standby launcher (with an environment of its own).
        """
        protocol = _LauncherProtocol()
        argv = standbyArgv()
        transport = reactor.spawnProcess(
            protocol, argv[0], argv, env={"PATH": "/nonexistent"}, childFDs=dict(CHILD_FDS)
        )
        return protocol, transport

    def runStandby(
        self, argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None
    ) -> tuple[_LauncherProtocol, Any]:
        """
        Hand a new standby C{argv} (with C{env}, default ours, and C{cwd}).
        """
        protocol, transport = self.spawnStandby()
        transport.write(encodeCommand(argv, dict(os.environ) if env is None else env, cwd))
        transport.closeStdin()
        return protocol, transport

    def spawnCommand(self, argv: list[str]) -> tuple[_LauncherProtocol, Any]:
        """
        The keeper tests' launcher, as a standby given the command.
        """
        return self.runStandby(argv)

    async def test_environmentAndDirectory(self) -> None:
        """
        The server gets the environment and working directory sent with the
        command (not the standby's own), and the command is found on that
        environment's C{PATH}.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        env = {"PATH": os.environ["PATH"], "ONLY": "this"}
        protocol, _ = self.runStandby(["sh", "-c", "pwd; env"], env, directory)
        reason = await protocol.ended
        self.assertIsInstance(reason, ProcessDone)
        out = protocol.lines()
        self.assertEqual(os.path.realpath(out[0]), os.path.realpath(directory))
        self.assertIn("ONLY=this", out)
        self.assertEqual(
            {line.split("=")[0] for line in out[1:]} - {"PWD", "SHLVL", "_"}, {"PATH", "ONLY"}
        )

    async def test_badDirectory(self) -> None:
        """
        A working directory that does not exist: status 127 and the error.
        """
        protocol, _ = self.runStandby(["true"], None, "/nonexistent/dir")
        reason = await protocol.ended
        self.assertEqual(reason.exitCode, 127)
        self.assertIn("No such file or directory", protocol.data[2].decode())

    async def test_endOfFileEnds(self) -> None:
        """
        An idle standby whose stdin is closed exits 0 without a word.
        """
        protocol, transport = self.spawnStandby()
        transport.closeStdin()
        reason = await protocol.ended
        self.assertIsInstance(reason, ProcessDone)
        self.assertEqual(protocol.data, {1: b"", 2: b"", 3: b""})

    async def test_malformedCommand(self) -> None:
        """
        A command that does not decode: exit status 2 and a word on stderr,
        nothing started.
        """
        protocol, transport = self.spawnStandby()
        transport.write(b"3\0only-one\0")
        transport.closeStdin()
        reason = await protocol.ended
        self.assertEqual(reason.exitCode, 2)
        self.assertIn("malformed command", protocol.data[2].decode())
        self.assertEqual(protocol.data[3], b"")

    async def test_ownSessionWhileIdle(self) -> None:
        """
        An idle standby already leads its own session (a Ctrl-C on
        llamaswap's terminal does not reach it).
        """
        protocol, transport = self.spawnStandby()
        self.addCleanup(lambda: (transport.closeStdin(), protocol.ended)[1])

        def session() -> int | None:
            try:
                with open(f"/proc/{transport.pid}/stat") as f:
                    return int(f.read().rsplit(")", 1)[1].split()[3])
            except (OSError, ValueError, IndexError):
                return None

        await until(lambda: session() == transport.pid, 10, "the standby's setsid")


class StandbyParentDeathTests(TestCase):
    """
    Standby launchers die with llamaswap, idle or in use.
    """

    timeout = 60

    async def test_sigkilledParent(self) -> None:
        """
        A helper standing in for llamaswap starts its upstream through a
        standby (and has the next standby idle) and is SIGKILLed: the
        upstream, its launcher and the idle standby all die.
        """
        from llamaswap.upstream.leftovers import processGone, readStat, waitGone

        script = (
            "import os, sys\n"
            "from twisted.internet import reactor, task\n"
            "from llamaswap.upstream.process import UpstreamProtocol\n"
            "from llamaswap.upstream.standby import StandbyLaunchers\n"
            "s = StandbyLaunchers(reactor, reactor, refillDelay=0)\n"
            "s.startService(); s.warm()\n"
            "p = UpstreamProtocol('m', reactor)\n"
            "s.spawn(reactor, p, ['sleep', '30'], dict(os.environ))\n"
            "def idle():\n"
            "    if not s.idlePids: return reactor.callLater(0.01, idle)\n"
            "    print('PIDS', p.pid, s.used, s.idlePids[0], flush=True)\n"
            "p.serverStarted.addCallback(lambda _: idle())\n"
            "reactor.run()\n"
        )
        protocol = realprocess._HelperProtocol()
        lines, ended = protocol.lines, protocol.ended
        env = dict(os.environ, PYTHONPATH=realprocess.PYTHONPATH)
        helper = reactor.spawnProcess(
            protocol, sys.executable, [sys.executable, "-c", script], env=env
        )
        members: list[int] = []

        async def cleanUp() -> None:
            killQuietly(members)
            if not ended.called:
                helper.signalProcess("KILL")
            await ended

        self.addCleanup(lambda: Deferred.fromCoroutine(cleanUp()))
        await until(lambda: any(l.startswith("PIDS") for l in lines), 20, "the helper")
        _, server, used, idle = next(l for l in lines if l.startswith("PIDS")).split()
        self.assertEqual(used, "1")
        launcher = readStat(int(server)).ppid  # type: ignore[union-attr]
        members += [int(server), launcher, int(idle)]
        self.assertEqual(readStat(launcher).ppid, helper.pid)  # type: ignore[union-attr]
        self.assertEqual(readStat(int(idle)).ppid, helper.pid)  # type: ignore[union-attr]
        os.kill(helper.pid, signal.SIGKILL)
        await ended
        self.assertEqual(await waitGone(members, reactor, 5.0), [])
        self.assertTrue(all(processGone(pid) for pid in members))
