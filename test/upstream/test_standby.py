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

from llamaswap.upstream._launcher import decodeCommand, encodeCommand, splitFrame
from llamaswap.upstream.leftovers import readStat
from llamaswap.upstream.process import CHILD_FDS, UpstreamProtocol
from llamaswap.upstream.standby import (
    READY_REFILL_DELAY,
    StandbyLaunchers,
    _StandbyProtocol,
    standbyArgv,
)

from ..twistdproc import descendants
from . import test_realprocess as realprocess
from .fakes import FakeLauncherSignaller, FakeProcessReactor
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
        What is encoded is one frame, whose payload decodes to the same
        argv, environment and directory.
        """
        payload, rest = splitFrame(encodeCommand(argv, env, cwd))
        self.assertEqual(rest, b"")
        self.assertEqual(decodeCommand(payload), (argv, env, cwd))

    def test_frames(self) -> None:
        """
        Frames are cut at their length; an incomplete one is L{None}; a bad
        header raises.
        """
        one, two = encodeCommand(["a"], {}, None), encodeCommand(["b"], {}, "/")
        payload, rest = splitFrame(one + two)
        self.assertEqual(rest, two)
        self.assertEqual(decodeCommand(payload), (["a"], {}, None))
        for partial in (b"", b"1", two[:3], two[:-1]):
            self.assertIsNone(splitFrame(partial), partial)
        for bad in (b"x\n", b"-1\n", b"\n", b"1" * 13, b"12a"):
            self.assertRaises(ValueError, splitFrame, bad)

    def test_malformed(self) -> None:
        """
        Nothing, an empty argv, a bad count or trailing fields decode to
        C{None}.
        """
        good, _ = splitFrame(encodeCommand(["a"], {"X": "1"}, None))
        self.assertIsNotNone(decodeCommand(good))
        for data in (b"", b"0\x000\x00\x00", b"x\x00", b"5\x00a\x00", good + b"more\x00"):
            self.assertIsNone(decodeCommand(data), data)


def commands(transport: Any) -> list[tuple[list[str], dict[str, str], str | None]]:
    """
    The commands written to a fake standby's stdin.
    """
    found, data = [], transport.written
    while data:
        payload, data = splitFrame(data)
        found.append(decodeCommand(payload))
    return found


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

    def test_firstSpawnNewStandby(self) -> None:
        """
        With no standby yet, a new one is spawned and handed the upstream's
        command at once; an idle standby is started C{refillDelay} later,
        with its stdin open.
        """
        protocol = self.spawn()
        [first] = self.reactor.spawned
        self.assertEqual(first.args, standbyArgv())
        self.assertEqual(commands(first), [(["server", "-x"], {"A": "1"}, None)])
        self.assertEqual(protocol.launcherPid, first.pid)
        self.assertEqual(self.launchers.used, 0)
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
        directory) and gives the upstream's protocol its transport, whose
        stdin stays open (it belongs to the pool): the report and output
        reach that protocol, and so does the launcher's own exit.
        """
        self.launchers.warm()
        [standby] = self.reactor.spawned
        protocol = self.spawn(["srv", "--port", "1"], cwd="/tmp")
        self.assertEqual(self.launchers.used, 1)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(commands(standby), [(["srv", "--port", "1"], {"A": "1"}, "/tmp")])
        self.assertFalse(standby.stdinClosed)
        self.assertEqual(protocol.launcherPid, standby.pid)
        self.assertEqual(self.launchers.idlePids, [])
        standby.output(b"4321\n", fd=3)
        self.assertEqual(self.successResultOf(protocol.serverStarted), 4321)
        standby.output(b"hello\n")
        self.assertEqual(protocol.lastLines, ("hello",))
        standby.exit(3)
        self.assertEqual(self.successResultOf(protocol.exited).exitCode, 3)

    def test_recycled(self) -> None:
        """
        A launcher that reports its server's end (C{exit STATUS}) ends that
        upstream with the status, goes back to the pool and runs the next
        start; the first upstream hears nothing of the second.
        """
        self.launchers.warm()
        [standby] = self.reactor.spawned
        first = self.spawn(["one"])
        standby.output(b"11\n", fd=3)
        standby.output(b"from one\npartial")
        standby.output(b"exit %d\n" % (7 << 8,), fd=3)
        status = self.successResultOf(first.exited)
        self.assertEqual((status.exitCode, status.signal), (7, None))
        self.assertTrue(first.ended.called)
        self.assertEqual(first.lastLines, ("from one", "partial"))
        self.assertEqual(self.launchers.idlePids, [standby.pid])
        second = self.spawn(["two"])
        self.assertEqual(self.launchers.used, 2)
        self.assertEqual([c[0] for c in commands(standby)], [["one"], ["two"]])
        self.assertEqual(second.launcherPid, standby.pid)
        standby.output(b"12\nexit 9\n", fd=3)
        self.assertEqual(self.successResultOf(second.serverStarted), 12)
        self.assertEqual(self.successResultOf(second.exited).signal, 9)
        self.assertEqual(first.pid, 11)
        self.assertEqual(first.lastLines, ("from one", "partial"))
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertFalse(standby.stdinClosed)

    def test_endedUpstreamCutOff(self) -> None:
        """
        Once its server has ended, an upstream's transport reaches the
        launcher no more: neither signals nor closing it.
        """
        self.launchers.warm()
        [standby] = self.reactor.spawned
        protocol = self.spawn()
        lent = protocol.transport
        lent.signalProcess("TERM")
        self.assertEqual(standby.signals, ["TERM"])
        standby.output(b"exit 0\n", fd=3)
        lent.signalProcess("KILL")
        lent.loseConnection()
        lent.closeStdin()
        self.assertEqual(standby.signals, ["TERM"])
        self.assertFalse(standby.lostConnection)
        self.assertFalse(standby.stdinClosed)
        self.assertFalse(protocol.signal(15))

    def test_signalsHeldUntilStarted(self) -> None:
        """
        A reused launcher may still hold signals meant for its previous
        server: signals for the next one wait until its PID is reported,
        then go out in order; a C{SIGKILL} before that ends the launcher
        itself.
        """
        self.launchers.warm()
        [standby] = self.reactor.spawned
        sent = FakeLauncherSignaller()
        protocol = UpstreamProtocol("m", self.reactor, launcherSignaller=sent)
        self.launchers.spawn(self.reactor, protocol, ["srv"], {})
        self.assertTrue(protocol.signal(signal.SIGTERM))
        self.assertTrue(protocol.signal(signal.SIGHUP))
        self.assertEqual(sent.sent, [])
        standby.output(b"77\n", fd=3)
        self.assertEqual(sent.sent, [(standby.pid, signal.SIGTERM), (standby.pid, signal.SIGHUP)])
        standby.output(b"exit 0\n", fd=3)
        again = UpstreamProtocol("m", self.reactor, launcherSignaller=sent)
        self.launchers.spawn(self.reactor, again, ["srv"], {})
        self.assertTrue(again.signal(signal.SIGKILL))
        self.assertEqual(sent.sent[-1], (standby.pid, signal.SIGKILL))
        standby.output(b"78\n", fd=3)
        self.assertEqual(len(sent.sent), 3)

    def test_idleOutputLogged(self) -> None:
        """
        Output from an idle launcher goes to the log; a stray report is
        dropped.
        """
        self.launchers.warm()
        [standby] = self.reactor.spawned
        standby.output(b"exit 0\n", fd=3)
        standby.output(b"noise\n", fd=2)
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.assertEqual(self.launchers.idlePids, [standby.pid])

    def test_trimmedToSize(self) -> None:
        """
        Launchers coming back make the pool bigger than its size for a
        while; the next top-up ends the oldest extra ones.
        """
        self.launchers.warm()
        [standby] = self.reactor.spawned
        a, b = self.spawn(["a"]), self.spawn(["b"])
        second = self.reactor.spawned[1]
        self.assertEqual(b.launcherPid, second.pid)
        standby.output(b"exit 0\n", fd=3)
        second.output(b"exit 0\n", fd=3)
        self.assertEqual(self.launchers.idlePids, [standby.pid, second.pid])
        self.launchers.refill()
        self.reactor.advance(READY_REFILL_DELAY)
        self.assertTrue(standby.stdinClosed)
        self.assertEqual(self.launchers.idlePids, [second.pid])
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertTrue(a.ended.called)

    def test_inUseEndsAfterStop(self) -> None:
        """
        A launcher whose upstream ends after the service stopped is ended,
        not kept.
        """
        self.launchers.warm()
        [standby] = self.reactor.spawned
        self.spawn()
        self.launchers.stopService()
        self.assertFalse(standby.stdinClosed)
        standby.output(b"exit 0\n", fd=3)
        self.assertTrue(standby.stdinClosed)
        self.assertEqual(self.launchers.idlePids, [])

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
        self.assertEqual([c[0] for c in commands(first)], [["a"]])
        self.assertEqual(second.written, b"")
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
        self.assertEqual(protocol.launcherPid, self.reactor.spawned[1].pid)

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
        d = self.launchers.stopService()
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        # It waits for the launcher in use, ended once its upstream is.
        [launcher] = self.reactor.spawned
        self.assertNoResult(d)
        launcher.output(b"exit 0\n", fd=3)
        self.assertTrue(launcher.stdinClosed)
        launcher.exit(0)
        self.successResultOf(d)


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

    #: Commands a standby runs (and is told to signal afterwards) before the
    #: test's own: 0 for a fresh standby, 1 for a recycled one.
    warmUps = 0

    def spawnCommand(self, argv: list[str]) -> tuple[_LauncherProtocol, Any]:
        """
        The keeper tests' launcher, as llamaswap uses a standby: through
        L{_StandbyProtocol}, the command's end reported by the launcher,
        which then goes back to the pool (here: is ended).  With
        C{warmUps}, the launcher first runs that many other commands, and
        gets signals meant for them after each has ended (they must not
        reach the next server).
        """
        target = _LauncherProtocol()
        queue = [_LauncherProtocol() for _ in range(self.warmUps)] + [target]
        command = encodeCommand(argv, dict(os.environ), None)
        warmUp = encodeCommand(["sh", "-c", "exit 3"], dict(os.environ), None)

        def freed(standby: _StandbyProtocol) -> None:
            assert standby.transport is not None
            if not queue:
                standby.transport.closeStdin()
                return
            for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
                os.kill(standby.transport.pid, sig)
            nextTarget = queue.pop(0)
            standby.attach(nextTarget, command if nextTarget is target else warmUp)

        standby = _StandbyProtocol(freed)
        args = standbyArgv()
        transport = reactor.spawnProcess(
            standby, args[0], args, env={"PATH": "/nonexistent"}, childFDs=dict(CHILD_FDS)
        )
        first = queue.pop(0)
        standby.attach(first, command if first is target else warmUp)
        self.addCleanup(lambda: standby.ended)
        return target, transport

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


class RecycledKeeperTests(StandbyKeeperTests):
    """
    Every keeper test again, on a standby launcher that already ran (and
    ended) another server, and was sent signals after its end.
    """

    warmUps = 1


class RecyclingTests(TestCase):
    """
    A standby launcher running servers one after the other.
    """

    timeout = 30

    def setUp(self) -> None:
        self.freed: list[Deferred[_StandbyProtocol]] = []
        self.standby = _StandbyProtocol(self._freed)
        args = standbyArgv()
        self.transport = reactor.spawnProcess(
            self.standby, args[0], args, env=dict(os.environ), childFDs=dict(CHILD_FDS)
        )
        self.addCleanup(self._end)

    def _freed(self, standby: _StandbyProtocol) -> None:
        self.freed.pop(0).callback(standby)

    async def _end(self) -> None:
        if not self.standby.exited:
            self.transport.closeStdin()
        await self.standby.ended

    async def runScript(self, script: str) -> _LauncherProtocol:
        """
        Run C{sh -c script} on the standby; wait until it has ended (the
        standby is free again by then).
        """
        target = _LauncherProtocol()
        free: Deferred[_StandbyProtocol] = Deferred()
        self.freed.append(free)
        self.standby.attach(target, encodeCommand(["sh", "-c", script], dict(os.environ), None))
        target.reason = await target.ended  # type: ignore[attr-defined]
        self.assertTrue(free.called)
        return target

    async def test_oneAfterAnother(self) -> None:
        """
        The same launcher runs each server in turn; each upstream gets its
        own output, PID and exit status, and the launcher stays.
        """
        one = await self.runScript("echo one $$; exit 4")
        two = await self.runScript("echo two $$; kill -TERM $$")
        self.assertEqual([l.split()[0] for l in one.lines()], ["one"])
        self.assertEqual([l.split()[0] for l in two.lines()], ["two"])
        self.assertEqual(one.data[3], b"%s\n" % one.lines()[0].split()[1].encode())
        self.assertEqual(two.data[3], b"%s\n" % two.lines()[0].split()[1].encode())
        self.assertEqual(one.reason.exitCode, 4)  # type: ignore[attr-defined]
        self.assertEqual(two.reason.signal, signal.SIGTERM)  # type: ignore[attr-defined]
        self.assertFalse(self.standby.exited)
        self.assertIsNotNone(self.transport.pid)

    async def test_lastOutputBeforeEnd(self) -> None:
        """
        Everything a server wrote before it ended reaches its upstream
        before the end does, however much (more than a pipe holds) and on
        both streams, and none of it reaches the next one.
        """
        one = await self.runScript(
            "head -c 300000 /dev/zero | tr '\\0' x; echo; echo err-last >&2; echo last"
        )
        self.assertEqual(one.lines()[-1], "last")
        self.assertEqual(len(one.lines()[0]), 300000)
        self.assertEqual(one.lines(2), ["err-last"])
        two = await self.runScript("echo next")
        self.assertEqual(two.lines(), ["next"])
        self.assertEqual(two.lines(2), [])

    async def test_earlySignalReachesNextServer(self) -> None:
        """
        A signal sent for the next server right after its command (before
        its PID is known) reaches it, although the launcher drops the
        signals meant for the previous one.
        """
        await self.runScript("exit 0")
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            os.kill(self.transport.pid, sig)
        target = UpstreamProtocol("m", reactor)
        self.freed.append(Deferred())
        script = "trap 'echo term; exit 5' TERM; while :; do sleep 0.05; done"
        self.standby.attach(target, encodeCommand(["sh", "-c", script], dict(os.environ), None))
        target.signal(signal.SIGTERM)
        status = await target.exited
        # The shell's trap may not be set yet when the signal comes.
        if status.signal is None:
            self.assertEqual(status.exitCode, 5)
            self.assertIn("term", target.lastLines)
        else:
            self.assertEqual(status.signal, signal.SIGTERM)

    async def test_serverStdinIsNull(self) -> None:
        """
        A server reads C{/dev/null}, not the launcher's stdin (which brings
        the next commands): one that reads its stdin ends at once and takes
        nothing meant for the launcher.
        """
        one = await self.runScript("readlink /proc/self/fd/0; cat; echo read-all")
        self.assertEqual(one.lines(), ["/dev/null", "read-all"])
        two = await self.runScript("echo next")
        self.assertEqual(two.lines(), ["next"])

    async def test_forkedAhead(self) -> None:
        """
        An idle launcher has its next server's process forked already: in
        its own session, waiting for the command.
        """
        await self.runScript("exit 0")

        def starter() -> list[int]:
            return descendants(self.transport.pid)

        def ready() -> bool:
            found = starter()
            stat = readStat(found[0]) if len(found) == 1 else None
            return stat is not None and stat.session == found[0]

        await until(ready, 10, "the starter in its own session")
        [pid] = starter()
        two = await self.runScript("echo $$")
        self.assertEqual(two.lines(), [str(pid)])

    async def test_leftoversKilledBeforeEnd(self) -> None:
        """
        A server's orphaned descendants are killed before its end is
        reported, so none survives into the next server's time.
        """
        one = await self.runScript("(setsid sleep 30 & echo orphan $!) ; exit 0")
        orphan = int(one.lines()[0].split()[1])
        from llamaswap.upstream.leftovers import processGone

        self.assertTrue(processGone(orphan))
        self.assertIn("killed 1 process", one.data[2].decode())


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
        # The idle one's starter (the next server's process, forked ahead).
        members += descendants(int(idle))
        self.assertEqual(readStat(launcher).ppid, helper.pid)  # type: ignore[union-attr]
        self.assertEqual(readStat(int(idle)).ppid, helper.pid)  # type: ignore[union-attr]
        os.kill(helper.pid, signal.SIGKILL)
        await ended
        self.assertEqual(await waitGone(members, reactor, 5.0), [])
        self.assertTrue(all(processGone(pid) for pid in members))
