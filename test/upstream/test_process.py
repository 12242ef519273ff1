"""
Tests for L{llamaswap.upstream.process}: line splitting, exit status, the
environment and the protocol's exit handling, without real processes.
"""

from __future__ import annotations

import signal
import sys

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.upstream.process import (
    CHILD_FDS,
    LAUNCHER,
    LAUNCHER_KILL_ALL,
    TRUNCATED,
    ExitStatus,
    LineBuffer,
    UpstreamProtocol,
    buildEnvironment,
    launcherArgv,
)

from .fakes import FakeProcessReactor


class LineBufferTests(SynchronousTestCase):
    """
    L{LineBuffer} splits output into bounded lines.
    """

    def test_splitsAcrossChunks(self) -> None:
        """
        Lines may arrive in pieces; CR before LF is dropped.
        """
        b = LineBuffer()
        self.assertEqual(b.feed(b"one\ntw"), ["one"])
        self.assertEqual(b.feed(b"o\r\nthree"), ["two"])
        self.assertEqual(b.flush(), ["three"])
        self.assertEqual(b.flush(), [])

    def test_emptyLines(self) -> None:
        """
        Empty lines are lines; an empty flush is nothing.
        """
        b = LineBuffer()
        self.assertEqual(b.feed(b"\n\nx\n"), ["", "", "x"])
        self.assertEqual(b.flush(), [])

    def test_invalidUTF8(self) -> None:
        """
        Undecodable bytes are replaced, never raised.
        """
        self.assertEqual(LineBuffer().feed(b"caf\xe9\n"), ["caf\ufffd"])

    def test_truncatesLongLines(self) -> None:
        """
        A line longer than the limit is cut and marked; the rest of it is
        dropped, and the following line is intact.  Memory stays bounded
        while the long line streams in.
        """
        b = LineBuffer(maxLength=10)
        self.assertEqual(b.feed(b"0123456789abc"), ["0123456789" + TRUNCATED])
        self.assertEqual(b.feed(b"x" * 100000), [])
        self.assertLessEqual(len(b._buffer), 10)
        self.assertEqual(b.feed(b"yyy\nnext\n"), ["next"])

    def test_truncatesLongLineInOneChunk(self) -> None:
        """
        A long line that arrives whole, newline included, is cut too.
        """
        b = LineBuffer(maxLength=4)
        self.assertEqual(b.feed(b"abcdefgh\nok\n"), ["abcd" + TRUNCATED, "ok"])

    def test_exactLimitKept(self) -> None:
        """
        A line of exactly the limit is kept whole.
        """
        self.assertEqual(LineBuffer(maxLength=4).feed(b"abcd\n"), ["abcd"])

    def test_hugeLineDoesNotBreakProtocol(self) -> None:
        """
        A line far over 16 KiB (procmon's bug) is truncated and later lines
        still arrive.
        """
        b = LineBuffer()
        lines = b.feed(b"x" * 20000 + b"\nafter\n")
        self.assertEqual(len(lines), 2)
        self.assertTrue(lines[0].endswith(TRUNCATED))
        self.assertEqual(lines[1], "after")

    @given(
        st.lists(st.text(alphabet="ab \t\u00e9", max_size=12), max_size=8),
        st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=20),
    )
    def test_chunkingDoesNotMatter(self, lines: list[str], cuts: list[int]) -> None:
        """
        However the bytes are cut into chunks, the same lines come out.
        """
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        b = LineBuffer(maxLength=1000)
        out: list[str] = []
        position = 0
        index = 0
        while position < len(data):
            size = cuts[index % len(cuts)]
            out += b.feed(data[position : position + size])
            position += size
            index += 1
        out += b.flush()
        self.assertEqual(out, lines)


class HelperTests(SynchronousTestCase):
    """
    Argv, environment and exit status helpers.
    """

    def test_launcherArgv(self) -> None:
        """
        The launcher runs isolated, with our PID, the report descriptor
        and the command after C{--}.
        """
        self.assertEqual(
            launcherArgv(["a", "-b"], 7),
            [sys.executable, "-I", "-S", LAUNCHER, "7", "--report-fd=3", "--", "a", "-b"],
        )

    def test_buildEnvironment(self) -> None:
        """
        Additions override the base; values may contain C{=}; the base is
        copied, not changed.
        """
        base = {"A": "1", "B": "2"}
        env = buildEnvironment(["B=3", "C=x=y", "D="], base)
        self.assertEqual(env, {"A": "1", "B": "3", "C": "x=y", "D": ""})
        self.assertEqual(base, {"A": "1", "B": "2"})
        self.assertRaises(ValueError, buildEnvironment, ["NOEQUALS"], base)
        self.assertRaises(ValueError, buildEnvironment, ["=v"], base)

    def test_exitStatus(self) -> None:
        """
        Exit statuses are read from the reason and described.
        """
        done = ExitStatus.fromFailure(Failure(ProcessDone(0)))
        self.assertEqual(done, ExitStatus(0, None))
        self.assertEqual(done.describe(), "exit status 0")
        killed = ExitStatus.fromFailure(Failure(ProcessTerminated(None, signal.SIGKILL)))
        self.assertEqual(killed.describe(), "killed by signal SIGKILL")
        failed = ExitStatus.fromFailure(Failure(ProcessTerminated(3, None)))
        self.assertEqual(failed.describe(), "exit status 3")


class ProtocolTests(SynchronousTestCase):
    """
    L{UpstreamProtocol} exit handling.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.reactor = FakeProcessReactor()
        self.signals: list[tuple[int, int]] = []
        self.launcherSignals: list[tuple[int, int]] = []

        def signaller(pgid: int, sig: int, *, pid: int | None = None) -> bool:
            self.signals.append((pgid, sig))
            return True

        def launcherSignaller(pid: int, sig: int) -> bool:
            self.launcherSignals.append((pid, sig))
            return True

        self.protocol = UpstreamProtocol(
            "m",
            self.clock,
            signaller=signaller,
            launcherSignaller=launcherSignaller,
            keepLines=3,
        )
        self.transport = self.reactor.spawnProcess(self.protocol, "x", ["x"], childFDs=CHILD_FDS)

    def test_keepsLastLines(self) -> None:
        """
        Only the last C{keepLines} lines are kept.
        """
        self.transport.output(b"1\n2\n3\n4\n")
        self.assertEqual(self.protocol.lastLines, ("2", "3", "4"))

    def test_signalOnlyWhileRunning(self) -> None:
        """
        In exec mode (the launcher reported its own PID) signals go to the
        group while the child runs, never after it was reaped (its PID may
        be reused); the group is swept when it exits.
        """
        pid = self.transport.pid
        self.assertEqual(self.protocol.pid, pid)
        self.assertFalse(self.protocol.keeper)
        self.assertTrue(self.protocol.signal(signal.SIGTERM))
        self.transport.exit(0)
        self.assertFalse(self.protocol.signal(signal.SIGTERM))
        self.assertEqual(self.signals, [(pid, signal.SIGTERM), (pid, signal.SIGKILL)])
        self.assertEqual(self.launcherSignals, [])

    def test_partialLineFlushedAtEnd(self) -> None:
        """
        An unterminated last line is emitted when the pipes close, before
        the exit is reported.
        """
        results: list = []
        self.protocol.exited.addCallback(lambda status: results.append(self.protocol.lastLines))
        self.transport.output(b"no newline", fd=2)
        self.transport.exit(1)
        self.assertEqual(results, [("no newline",)])

    def test_endedFires(self) -> None:
        """
        C{ended} fires once every pipe is closed.
        """
        self.transport.exit(0, endPipes=False)
        self.assertNoResult(self.protocol.ended)
        self.clock.pump([10, 10])
        self.assertTrue(self.transport.lostConnection)
        self.successResultOf(self.protocol.ended)


class KeeperProtocolTests(SynchronousTestCase):
    """
    L{UpstreamProtocol} with a launcher that stays the server's parent.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.reactor = FakeProcessReactor()
        self.reactor.autoReport = False
        self.signals: list[tuple[int, int]] = []
        self.launcherSignals: list[tuple[int, int]] = []

        def signaller(pgid: int, sig: int, *, pid: int | None = None) -> bool:
            self.signals.append((pgid, sig))
            return True

        def launcherSignaller(pid: int, sig: int) -> bool:
            self.launcherSignals.append((pid, sig))
            return True

        self.protocol = UpstreamProtocol(
            "m", self.clock, signaller=signaller, launcherSignaller=launcherSignaller
        )
        self.transport = self.reactor.spawnProcess(self.protocol, "x", ["x"], childFDs=CHILD_FDS)
        self.launcher = self.transport.pid

    def test_report(self) -> None:
        """
        The server's PID is read from descriptor 3, even in pieces; it is
        not output, and C{serverStarted} fires with it.
        """
        self.assertIsNone(self.protocol.pid)
        self.assertTrue(self.protocol.running)
        self.assertEqual(self.protocol.launcherPid, self.launcher)
        self.transport.output(b"12", fd=3)
        self.assertNoResult(self.protocol.serverStarted)
        self.transport.output(b"34\n", fd=3)
        self.assertEqual(self.successResultOf(self.protocol.serverStarted), 1234)
        self.assertEqual(self.protocol.pid, 1234)
        self.assertTrue(self.protocol.keeper)
        self.assertEqual(self.protocol.lastLines, ())

    def test_badReportIgnored(self) -> None:
        """
        A report that is not a PID is ignored (logged).
        """
        self.transport.output(b"nonsense\n", fd=3)
        self.assertIsNone(self.protocol.pid)
        self.assertNoResult(self.protocol.serverStarted)
        self.flushLoggedErrors()

    def test_signalsGoToLauncher(self) -> None:
        """
        Before and after the report, signals go to the launcher, SIGKILL
        as its kill-all signal; none go to a group, not even after the
        exit (the launcher swept the tree and may have reaped the server
        long before).
        """
        self.assertTrue(self.protocol.signal(signal.SIGTERM))
        self.transport.output(b"1234\n", fd=3)
        self.assertTrue(self.protocol.signal(signal.SIGTERM))
        self.assertTrue(self.protocol.signal(signal.SIGKILL))
        self.transport.exit(None, signal.SIGKILL)
        self.assertFalse(self.protocol.signal(signal.SIGKILL))
        self.assertEqual(
            self.launcherSignals,
            [
                (self.launcher, signal.SIGTERM),
                (self.launcher, signal.SIGTERM),
                (self.launcher, LAUNCHER_KILL_ALL),
            ],
        )
        self.assertEqual(self.signals, [])
        self.assertEqual(self.protocol.pid, 1234)
