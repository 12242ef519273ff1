"""
Real-process tests for L{llamaswap.upstream}: the demo upstream
(C{python -m llamaswap.demo}) on 127.0.0.1, spawned through the launcher by a
L{Supervisor} on the real reactor.  Every test cleans up by shutting the
supervisor down and waiting until every process it saw is gone (or a zombie,
which is dead: PID 1 in a container may never reap it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from llamaswap.upstream import PrematureExit, State, Supervisor, UpstreamSpec
from llamaswap.upstream.process import CHILD_FDS, LAUNCHER, LAUNCHER_KILL_ALL, launcherArgv
from llamaswap.upstream.leftovers import (
    LeftoverRegistry,
    groupMembers,
    processGone,
    readCmdline,
    readStat,
    reapLeftovers,
    waitGone,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHONPATH = os.pathsep.join(p for p in [REPO, os.environ.get("PYTHONPATH", "")] if p)
log = Logger()
HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "orphanhelper.py")


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demoArgv(port: int, *extra: str) -> list[str]:
    """
    The demo upstream's command line.
    """
    return [sys.executable, "-m", "llamaswap.demo", "--port", str(port), *extra]


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """
    Poll C{check} every 10 ms until true; fail after C{timeout} seconds.
    """
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await deferLater(reactor, 0.01, lambda: None)


def killQuietly(pids: list[int]) -> None:
    """
    SIGKILL each PID that is still alive.
    """
    for pid in pids:
        if not processGone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Recorder:
    """
    Records a supervisor's output lines and state changes with their times.
    """

    def __init__(self, supervisor: Supervisor) -> None:
        self.lines: list[tuple[float, str, str]] = []
        self.states: list[tuple[float, State]] = []
        supervisor.addOutputObserver(
            lambda m, stream, line: self.lines.append((reactor.seconds(), stream, line))
        )
        supervisor.addStateObserver(lambda m, old, new: self.states.append((reactor.seconds(), new)))

    def lineTime(self, fragment: str) -> float | None:
        """
        When the first line containing C{fragment} arrived.
        """
        for when, _, line in self.lines:
            if fragment in line:
                return when
        return None

    def stateTime(self, state: State) -> float | None:
        """
        When C{state} was last entered.
        """
        times = [when for when, new in self.states if new is state]
        return times[-1] if times else None

    def text(self) -> str:
        """
        All output, one line each.
        """
        return "\n".join(line for _, _, line in self.lines)


class SupervisedDemoTests(TestCase):
    """
    A supervisor running the demo upstream for real.
    """

    timeout = 60

    def makeSupervisor(
        self, port: int, argv: list[str], recorder: Any = None, **kwargs: Any
    ) -> tuple[Supervisor, Recorder]:
        """
        A supervisor for C{argv} serving on C{port}, shut down and waited
        for after the test.
        """
        options: dict[str, Any] = dict(
            modelID="real",
            argv=argv,
            proxy=f"http://127.0.0.1:{port}",
            env=[f"PYTHONPATH={PYTHONPATH}"],
            healthCheckTimeout=30.0,
            unloadTimeout=5.0,
        )
        options.update(kwargs)
        pool = HTTPConnectionPool(reactor, persistent=False)
        supervisor = Supervisor(
            UpstreamSpec(**options),
            processReactor=reactor,
            clock=reactor,
            agent=Agent(reactor, pool=pool),
            recorder=recorder,
        )
        self.seen: set[int] = set()
        supervisor.addStateObserver(lambda *a: self._remember(supervisor))
        self.addCleanup(lambda: Deferred.fromCoroutine(self._tearDownSupervisor(supervisor)))
        return supervisor, Recorder(supervisor)

    def _remember(self, supervisor: Supervisor) -> None:
        if supervisor.pid is not None:
            self.seen.add(supervisor.pid)
            self.seen.update(pid for pid, _ in groupMembers(supervisor.pid))

    def rememberGroup(self, supervisor: Supervisor) -> list[int]:
        """
        The live members of the supervised child's process group (also
        remembered for the final clean-up check).
        """
        assert supervisor.pid is not None
        members = [pid for pid, _ in groupMembers(supervisor.pid)]
        self.seen.update(members)
        return members

    async def _tearDownSupervisor(self, supervisor: Supervisor) -> None:
        await supervisor.shutdown(1.0)
        child = supervisor._child
        if child is not None:
            await child.ended
        left = await waitGone(self.seen, reactor, 5.0)
        killQuietly(left)
        self.assertEqual(left, [], "processes outlived the supervisor")

    async def test_readyThenStop(self) -> None:
        """
        The demo becomes ready shortly after it has loaded (the probe is
        nudged by its "loaded" line), runs in its own session and process
        group, and a stop takes the whole group down promptly.
        """
        port = freePort()
        registry = LeftoverRegistry(self.mktemp())
        supervisor, record = self.makeSupervisor(
            port, demoArgv(port, "--startup-delay", "0.5"), recorder=registry
        )
        started = reactor.seconds()
        await supervisor.ensureReady()
        pid = supervisor.pid
        assert pid is not None
        [entry] = registry.entries
        self.assertEqual((entry.pid, entry.pgid, entry.model), (pid, pid, "real"))
        self.assertEqual(entry.procStart, readStat(pid).startTime)  # type: ignore[union-attr]
        stat = readStat(pid)
        assert stat is not None
        self.assertEqual((stat.pgrp, stat.session), (pid, pid))
        self.assertEqual(readCmdline(pid), demoArgv(port, "--startup-delay", "0.5"))
        # The launcher stays its parent, and is ours.
        launcher = supervisor._child.launcherPid  # type: ignore[union-attr]
        self.assertEqual(readStat(pid).ppid, launcher)  # type: ignore[union-attr]
        self.assertEqual(readStat(launcher).ppid, os.getpid())  # type: ignore[union-attr, arg-type]
        self.seen.add(launcher)  # type: ignore[arg-type]
        # The "loaded" line may even arrive after a probe found it ready.
        await until(lambda: record.lineTime("loaded") is not None, 10, "the loaded line")
        loaded = record.lineTime("loaded")
        ready = record.stateTime(State.READY)
        assert loaded is not None and ready is not None
        self.assertLess(ready - loaded, 1.0, record.text())
        self.measured = {"start": ready - started, "readyAfterLoaded": ready - loaded}
        members = self.rememberGroup(supervisor)
        before = reactor.seconds()
        await supervisor.stop()
        self.measured["stop"] = reactor.seconds() - before
        self.assertIs(supervisor.state, State.STOPPED)
        self.assertEqual(registry.entries, ())
        self.assertEqual(await waitGone(members, reactor, 2.0), [])
        self.assertLess(self.measured["stop"], 3.0)
        log.info("measured: {measured}", measured=json.dumps(self.measured))

    async def test_exitDuringStart(self) -> None:
        """
        A demo that fails while loading fails the start at once with its
        exit status and its stderr, long before the health-check timeout.
        """
        port = freePort()
        supervisor, record = self.makeSupervisor(port, demoArgv(port, "--exit-during-start", "3"))
        started = reactor.seconds()
        try:
            await supervisor.ensureReady()
        except PrematureExit as e:
            error = e
        else:
            self.fail("the start did not fail")
        self.assertLess(reactor.seconds() - started, 10.0)
        self.assertEqual(error.exitCode, 3)
        self.assertIn("failed to load model 'demo'", str(error))
        self.assertIs(supervisor.state, State.STOPPED)

    async def test_commandNotFound(self) -> None:
        """
        A command that does not exist fails the start with the OS error in
        the output (the launcher reports it and exits 127).
        """
        supervisor, record = self.makeSupervisor(1, ["/nonexistent/llama-server", "-m", "x"])
        try:
            await supervisor.ensureReady()
        except PrematureExit as e:
            error = e
        else:
            self.fail("the start did not fail")
        self.assertEqual(error.exitCode, 127)
        self.assertIn("failed to start command '/nonexistent/llama-server -m x'", str(error))
        self.assertIn("No such file or directory", str(error))

    async def test_sigtermIgnored(self) -> None:
        """
        A child that ignores SIGTERM is killed after the stop timeout.
        """
        port = freePort()
        supervisor, record = self.makeSupervisor(port, demoArgv(port, "--ignore-sigterm"))
        await supervisor.ensureReady()
        members = self.rememberGroup(supervisor)
        before = reactor.seconds()
        await supervisor.stop(1.0)
        elapsed = reactor.seconds() - before
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertLess(elapsed, 3.0)
        self.assertIn("ignoring SIGTERM", record.text())
        self.assertEqual(await waitGone(members, reactor, 2.0), [])
        log.info("measured: stop of a SIGTERM-ignoring child, 1 s grace: {elapsed:.3f}s", elapsed=elapsed)

    async def test_ensureReadyDuringStop(self) -> None:
        """
        llama-swap #946 for real: with a child ignoring SIGTERM, an
        ensureReady issued during the stop waits for the SIGKILL, then gets
        a fresh, ready child; the stop completes too.
        """
        port = freePort()
        supervisor, record = self.makeSupervisor(port, demoArgv(port, "--ignore-sigterm"))
        await supervisor.ensureReady()
        first = supervisor.pid
        assert first is not None
        members = self.rememberGroup(supervisor)
        stopping = supervisor.stop(1.0)
        self.assertIs(supervisor.state, State.STOPPING)
        ready = supervisor.ensureReady()
        await stopping
        self.assertEqual(await waitGone(members, reactor, 2.0), [])
        await ready
        self.assertIs(supervisor.state, State.READY)
        self.assertNotIn(supervisor.pid, (None, first))
        self.rememberGroup(supervisor)

    async def test_grandchildDiesWithGroup(self) -> None:
        """
        A forked grandchild sharing the pipes does not hang the stop and
        dies with the group.
        """
        port = freePort()
        supervisor, record = self.makeSupervisor(port, demoArgv(port, "--fork-grandchild"))
        await supervisor.ensureReady()
        await until(lambda: record.lineTime("demo grandchild") is not None, 10, "the grandchild")
        grandchild = int(next(l for _, _, l in record.lines if "demo grandchild" in l).split()[2])
        members = self.rememberGroup(supervisor)
        self.assertIn(grandchild, members)
        before = reactor.seconds()
        await supervisor.stop()
        elapsed = reactor.seconds() - before
        self.assertLess(elapsed, 3.0)
        self.assertEqual(await waitGone(members, reactor, 2.0), [])
        log.info("measured: stop with a grandchild: {elapsed:.3f}s", elapsed=elapsed)

    async def test_escapedGrandchildStopped(self) -> None:
        """
        A grandchild that left the process group (its own session) and
        holds the output pipes is still ours: the launcher passes SIGTERM
        on to it, so the stop is prompt, nothing survives and the pipes
        close.
        """
        port = freePort()
        script = (
            "setsid sleep 30 & echo escaped $!; "
            f"exec {sys.executable} -m llamaswap.demo --port {port}"
        )
        supervisor, record = self.makeSupervisor(port, ["sh", "-c", script])
        await supervisor.ensureReady()
        await until(lambda: record.lineTime("escaped") is not None, 10, "the escaped grandchild")
        escaped = int(next(l for _, _, l in record.lines if l.startswith("escaped")).split()[1])
        self.seen.add(escaped)
        self.addCleanup(killQuietly, [escaped])
        stat = readStat(escaped)
        assert stat is not None and supervisor.pid is not None
        self.assertNotEqual(stat.pgrp, supervisor.pid)
        before = reactor.seconds()
        await supervisor.stop()
        elapsed = reactor.seconds() - before
        self.assertLess(elapsed, 2.0)
        self.assertTrue(processGone(escaped))
        child = supervisor._child
        assert child is not None
        await child.ended
        log.info("measured: stop with an escaped grandchild: {elapsed:.3f}s", elapsed=elapsed)

    async def test_orphanedDaemonKilledOnExit(self) -> None:
        """
        A wrapper that double-forks a daemon into its own session and
        exits: the start fails with the wrapper's status and the launcher
        (a child subreaper, so the daemon was re-parented to it) kills the
        daemon, saying so in the output.
        """
        script = "(setsid sh -c 'echo daemon $$; exec sleep 30' &) ; sleep 0.3; exit 4"
        supervisor, record = self.makeSupervisor(1, ["sh", "-c", script])
        try:
            await supervisor.ensureReady()
        except PrematureExit as e:
            error = e
        else:
            self.fail("the start did not fail")
        self.assertEqual(error.exitCode, 4)
        daemon = int(next(l for _, _, l in record.lines if l.startswith("daemon")).split()[1])
        self.seen.add(daemon)
        self.addCleanup(killQuietly, [daemon])
        self.assertEqual(await waitGone([daemon], reactor, 2.0), [])
        self.assertIn(f"left behind: {daemon}", record.text())


class _HelperProtocol(ProcessProtocol):
    """
    Collects a helper's stdout lines; C{ended} fires when it is gone.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        self.lines += [line.decode("utf-8", "replace") for line in lines]

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class ParentDeathTests(TestCase):
    """
    Upstreams die with llamaswap, even when it is killed with SIGKILL.
    """

    timeout = 60

    async def test_sigkilledParentLeavesNothing(self) -> None:
        """
        A helper standing in for llamaswap runs the demo (with a grandchild)
        through the process shell and is then SIGKILLed: the upstream, its
        grandchild and the sweeper all die.
        """
        port = freePort()
        argv = demoArgv(port, "--fork-grandchild")
        env = dict(os.environ, PYTHONPATH=PYTHONPATH)
        protocol = _HelperProtocol()
        transport = reactor.spawnProcess(
            protocol,
            sys.executable,
            [sys.executable, HELPER, json.dumps(argv), f"http://127.0.0.1:{port}"],
            env=env,
        )
        members: list[int] = []

        async def cleanUp() -> None:
            killQuietly(members)
            if not protocol.ended.called:
                transport.signalProcess("KILL")
            await protocol.ended

        self.addCleanup(lambda: Deferred.fromCoroutine(cleanUp()))

        def started() -> bool:
            return any(l.startswith("PID ") for l in protocol.lines) and any(
                "demo grandchild" in l for l in protocol.lines
            )

        await until(started, 20, "the helper's upstream and its grandchild")
        upstream = int(next(l for l in protocol.lines if l.startswith("PID ")).split()[1])
        grandchild = int(next(l for l in protocol.lines if "demo grandchild" in l).split()[3])
        members += [pid for pid, _ in groupMembers(upstream)]
        self.assertIn(upstream, members)
        self.assertIn(grandchild, members)
        self.assertEqual(len(members), 2, "leader and grandchild")
        launcher = readStat(upstream).ppid  # type: ignore[union-attr]
        self.assertEqual(readStat(launcher).ppid, transport.pid)  # type: ignore[union-attr]
        members.append(launcher)
        before = reactor.seconds()
        os.kill(transport.pid, signal.SIGKILL)
        await protocol.ended
        left = await waitGone(members, reactor, 5.0)
        self.assertEqual(left, [])
        log.info(
            "measured: group gone {elapsed:.3f}s after SIGKILL of the parent",
            elapsed=reactor.seconds() - before,
        )


class LeftoverTests(TestCase):
    """
    Reaping real leftovers from the state file.
    """

    timeout = 60

    async def spawnOrphan(self, argv: list[str]) -> int:
        """
        Start C{argv} in its own session, orphaned (its parent shell exits
        at once), as a llamaswap killed before it could stop it would leave
        it; return its PID.
        """
        protocol = _HelperProtocol()
        command = " ".join(argv) + " >/dev/null 2>&1 & echo $!"
        env = dict(os.environ, PYTHONPATH=PYTHONPATH)
        reactor.spawnProcess(protocol, "/bin/sh", ["sh", "-c", f"setsid {command}"], env=env)
        await protocol.ended
        return int(protocol.lines[0])

    async def test_reapStaleUpstream(self) -> None:
        """
        An upstream recorded by a dead llamaswap, still running with its
        grandchild, is found and its whole group killed; the file is
        rewritten without it.
        """
        path = self.mktemp()
        port = freePort()
        pid = await self.spawnOrphan(demoArgv(port, "--fork-grandchild"))
        members: list[int] = []
        self.addCleanup(lambda: killQuietly(members))
        await until(lambda: len(groupMembers(pid)) >= 2, 20, "the orphan's grandchild")
        members += [p for p, _ in groupMembers(pid)]
        # The previous llamaswap: a PID that no longer exists.
        registry = LeftoverRegistry(path, ownPid=2**22 + 1)
        registry.add("stale", pid, sys.executable, 0.0)
        reaped = reapLeftovers(path)
        self.assertEqual([r.leftover.pid for r in reaped], [pid])
        self.assertEqual(sorted(reaped[0].pids), sorted(members))
        self.assertEqual(await waitGone(members, reactor, 5.0), [])
        with open(path) as f:
            self.assertEqual(json.load(f)["upstreams"], [])

    async def test_reusedPidSpared(self) -> None:
        """
        A live process whose start time differs from the recorded one (a
        reused PID) is not killed.
        """
        path = self.mktemp()
        pid = await self.spawnOrphan(["sleep", "30"])
        self.addCleanup(lambda: killQuietly([pid]))
        await until(lambda: readCmdline(pid) == ["sleep", "30"], 10, "the sleeper")
        registry = LeftoverRegistry(path, ownPid=2**22 + 1)
        registry.add("stale", pid, "sleep", 0.0)
        with open(path) as f:
            data = json.load(f)
        data["upstreams"][0]["procStart"] -= 1
        with open(path, "w") as f:
            json.dump(data, f)
        self.assertEqual(reapLeftovers(path), [])
        self.assertFalse(processGone(pid))


class LauncherTests(SynchronousTestCase):
    """
    The launcher run directly (short-lived real processes).
    """

    def launch(self, *args: str) -> subprocess.CompletedProcess:
        """
        Run the launcher with C{args}; return its outcome.
        """
        return subprocess.run(
            [sys.executable, "-I", "-S", LAUNCHER, *args],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def test_usage(self) -> None:
        """
        Without C{PARENT -- COMMAND} it says how to use it and exits 2.
        """
        result = self.launch("123")
        self.assertEqual(result.returncode, 2)
        self.assertIn("usage", result.stderr)

    def test_parentGone(self) -> None:
        """
        If its parent is not the PID it was given (llamaswap died before
        the death signal was armed), it does not start the command.
        """
        result = self.launch("1", "--", "echo", "started")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "")
        self.assertIn("parent 1 is gone", result.stderr)


class _LauncherProtocol(ProcessProtocol):
    """
    Collects the launcher's stdout and stderr lines and its report; C{ended}
    fires with the exit reason's exception.
    """

    def __init__(self) -> None:
        self.data: dict[int, bytes] = {1: b"", 2: b"", 3: b""}
        self.ended: Deferred[Any] = Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.data[childFD] = self.data.get(childFD, b"") + data

    def lines(self, fd: int = 1) -> list[str]:
        """
        The complete lines received on C{fd}.
        """
        return self.data[fd].decode("utf-8", "replace").splitlines()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason.value)


class KeeperTests(TestCase):
    """
    The launcher in keeper mode, spawned as llamaswap spawns it, running
    small shell scripts.
    """

    timeout = 60

    def launch(self, script: str) -> tuple[_LauncherProtocol, int]:
        """
        Run C{sh -c script} through the launcher; return its protocol and
        PID.  Whatever is left is killed after the test.
        """
        protocol = _LauncherProtocol()
        transport = reactor.spawnProcess(
            protocol,
            sys.executable,
            launcherArgv(["sh", "-c", script]),
            env=dict(os.environ),
            childFDs=dict(CHILD_FDS),
        )
        transport.closeStdin()
        self.addCleanup(
            lambda: Deferred.fromCoroutine(self._killLeftovers(protocol, transport.pid))
        )
        return protocol, transport.pid

    async def _killLeftovers(self, protocol: _LauncherProtocol, launcher: int) -> None:
        pids = [int(p) for line in protocol.lines() for p in line.split()[1:2] if p.isdigit()]
        killQuietly(pids)
        if not protocol.ended.called:
            killQuietly([launcher])
        await protocol.ended

    async def lineStarting(self, protocol: _LauncherProtocol, prefix: str) -> list[str]:
        """
        Wait for the stdout line starting with C{prefix}; return its words.
        """
        await until(
            lambda: any(l.startswith(prefix) for l in protocol.lines()), 10, repr(prefix)
        )
        return next(l for l in protocol.lines() if l.startswith(prefix)).split()

    async def test_keeperMode(self) -> None:
        """
        The server is the launcher's child, leads its own session and
        group, starts with an empty signal mask and SIGPIPE at its
        default (as C{exec}d: the shell may block signals later); its PID is
        reported on descriptor 3.
        """
        protocol, launcher = self.launch(
            "echo pid $$; cat /proc/$$/stat; exec grep -E '^Sig(Ign|Blk)' /proc/self/status"
        )
        reason = await protocol.ended
        self.assertIsInstance(reason, ProcessDone)
        out = protocol.lines()
        pid = int(out[0].split()[1])
        self.assertEqual(protocol.data[3], b"%d\n" % (pid,))
        self.assertNotEqual(pid, launcher)
        fields = out[1].rsplit(")", 1)[1].split()
        self.assertEqual((int(fields[1]), int(fields[2]), int(fields[3])), (launcher, pid, pid))
        masks = dict(line.split(":") for line in out[2:])
        self.assertEqual(int(masks["SigBlk"], 16), 0)
        self.assertEqual(int(masks["SigIgn"], 16) & (1 << (signal.SIGPIPE - 1)), 0)
        self.assertEqual(protocol.data[2], b"")

    async def test_exitStatus(self) -> None:
        """
        The launcher ends with the server's exit status.
        """
        protocol, _ = self.launch("exit 5")
        reason = await protocol.ended
        self.assertIsInstance(reason, ProcessTerminated)
        self.assertEqual((reason.exitCode, reason.signal), (5, None))

    async def test_killedBySignal(self) -> None:
        """
        A server killed by a signal makes the launcher end by that signal.
        """
        protocol, _ = self.launch("kill -TERM $$")
        reason = await protocol.ended
        self.assertEqual(reason.signal, signal.SIGTERM)

    async def test_execFailure(self) -> None:
        """
        A command that cannot be run: status 127, the OS error on stderr,
        nothing reported.
        """
        protocol = _LauncherProtocol()
        reactor.spawnProcess(
            protocol,
            sys.executable,
            launcherArgv(["/nonexistent/server", "-x"]),
            env=dict(os.environ),
            childFDs=dict(CHILD_FDS),
        )
        reason = await protocol.ended
        self.assertEqual(reason.exitCode, 127)
        self.assertIn(
            "failed to start command '/nonexistent/server -x': [Errno 2]",
            protocol.data[2].decode(),
        )
        self.assertEqual(protocol.data[3], b"")

    async def test_gracefulSignalReachesEscaped(self) -> None:
        """
        SIGTERM to the launcher reaches the server's group and a descendant
        in its own session, which may finish its shutdown before the
        launcher exits.
        """
        protocol, launcher = self.launch(
            "setsid sh -c 'trap \"echo escaped-term; sleep 0.3; echo escaped-done; exit 0\" TERM;"
            " echo escaped $$; while :; do sleep 0.05; done' & sleep 30"
        )
        escaped = int((await self.lineStarting(protocol, "escaped "))[1])
        os.kill(launcher, signal.SIGTERM)
        reason = await protocol.ended
        self.assertEqual(reason.signal, signal.SIGTERM)
        self.assertIn("escaped-done", protocol.lines())
        self.assertTrue(processGone(escaped))
        self.assertNotIn(b"left behind", protocol.data[2])

    async def test_killAll(self) -> None:
        """
        After SIGTERM, a descendant that ignores it keeps the launcher
        waiting until the kill-all signal, which kills it.
        """
        protocol, launcher = self.launch(
            "setsid sh -c 'trap \"\" TERM; echo escaped $$; while :; do sleep 0.05; done' &"
            " sleep 30"
        )
        escaped = int((await self.lineStarting(protocol, "escaped "))[1])
        server = int(protocol.data[3])
        os.kill(launcher, signal.SIGTERM)
        # The server (sh) dies at once; the launcher waits for the rest.
        await until(lambda: processGone(server), 10, "the server's exit")
        self.assertIn(escaped, descendantsOf(launcher))
        self.assertFalse(protocol.ended.called)
        os.kill(launcher, LAUNCHER_KILL_ALL)
        reason = await protocol.ended
        self.assertEqual(reason.signal, signal.SIGTERM)
        self.assertTrue(processGone(escaped))
        self.assertIn(f"left behind: {escaped}", protocol.data[2].decode())


def descendantsOf(pid: int) -> list[int]:
    """
    The live descendants of C{pid}, through C{/proc} ppid links.
    """
    found: list[int] = []
    todo = [pid]
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = readStat(int(name))
            if stat is not None:
                table[int(name)] = stat
    while todo:
        parent = todo.pop()
        for child, stat in table.items():
            if stat.ppid == parent:
                todo.append(child)
                if stat.state not in ("Z", "X", "x"):
                    found.append(child)
    return sorted(found)
