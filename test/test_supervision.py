"""
Upstream supervision end to end, with real processes on 127.0.0.1 (the demo
upstream, shell wrappers, C{twistd} itself): swaps, concurrent requests in
one swap group, a request at the TTL expiry, failures while starting,
SIGTERM-ignoring children, wrappers whose children escape the process group,
and llamaswap itself being killed.

Processes are checked by PID through C{/proc} (a zombie counts as dead);
every wait has a finite timeout.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock, LoopingCall, deferLater
from twisted.trial.unittest import TestCase

from llamaswap.app import specFor
from llamaswap.config.load import loadConfigText
from llamaswap.routing.router import Lease, Router
from llamaswap.upstream import State, Supervisor
from llamaswap.upstream.leftovers import readCmdline, readStat, waitGone
from llamaswap.upstream.process import LAUNCHER

from .harness import DEMO, Running, demoMacros, startLlamaSwap
from .twistdproc import demoConfig, descendants, startPort, startTwistd
from .util import childEnv, poll

LIVE = (State.STARTING, State.READY, State.STOPPING)


def demoModels(pids: list[int]) -> set[str]:
    """
    The C{--model} names of the demo upstreams among C{pids}.
    """
    models = set()
    for pid in pids:
        argv = readCmdline(pid) or []
        if "llamaswap.demo" in argv and "--model" in argv:
            models.add(argv[argv.index("--model") + 1])
    return models


def launcherOf(pid: int) -> int:
    """
    The parent of upstream C{pid}: its launcher.
    """
    stat = readStat(pid)
    assert stat is not None, f"pid {pid} is gone"
    return stat.ppid


def assertRecycledOrGone(test: TestCase, running: Running, launcher: int) -> None:
    """
    The launcher of an upstream that ended is gone, or back in the
    standby pool with nothing left under it.
    """
    if readStat(launcher) is None:
        return
    test.assertIn(launcher, running.app.launchers.idlePids)
    # At most the next server's process, forked ahead: a launcher too.
    left = descendants(launcher)
    test.assertLessEqual(len(left), 1)
    test.assertEqual([p for p in left if LAUNCHER not in (readCmdline(p) or [])], [])


class Tree:
    """
    Remembers every process under this test process that it was shown,
    and checks after the test that they are all gone.
    """

    def __init__(self, test: TestCase) -> None:
        self.seen: set[int] = set()
        test.addCleanup(lambda: Deferred.fromCoroutine(self._check(test)))

    def remember(self) -> list[int]:
        """
        Note our live descendants now; return them.
        """
        now = descendants(os.getpid())
        self.seen.update(now)
        return now

    async def _check(self, test: TestCase) -> None:
        left = await waitGone(self.seen, reactor, 10.0)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        test.assertEqual(left, [], "processes outlived the test")


async def chat(running: Running, model: str) -> tuple[int, Any]:
    """
    A non-streamed chat completion, with a finite timeout.
    """
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    response = await running.post("/v1/chat/completions", json=body, timeout=60)
    return response.code, await response.json()


class SwapTests(TestCase):
    """
    Swapping between two models of the default (swap) group.
    """

    timeout = 120

    async def test_swapAToB(self) -> None:
        """
        After a request for A, a request for B stops A (its upstream is
        gone, its launcher back in the standby pool) and B serves.
        """
        tree = Tree(self)
        running = await startLlamaSwap(self, demoMacros() + startPort() + """
models:
  a:
    cmd: ${demo} --model a
  b:
    cmd: ${demo} --model b
""")
        status, body = await chat(running, "a")
        self.assertEqual(status, 200, body)
        pidA = body["demo"]["pid"]
        launcherA = launcherOf(pidA)
        tree.remember()
        status, body = await chat(running, "b")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["demo"]["served_model"], "b")
        self.assertEqual(await waitGone([pidA], reactor, 5.0), [])
        assertRecycledOrGone(self, running, launcherA)
        self.assertEqual(running.app.supervisors["a"].state, State.STOPPED)
        self.assertEqual(demoModels(tree.remember()), {"b"})

    async def test_concurrentRequestsInOneSwapGroup(self) -> None:
        """
        50 concurrent requests alternating between two models of one swap
        group: the two never run at once (checked on every state change
        and by sampling C{/proc}), and every response is valid and from
        the model asked for.
        """
        tree = Tree(self)
        running = await startLlamaSwap(self, demoMacros() + startPort() + """
models:
  a:
    cmd: ${demo} --model a
    concurrencyLimit: 60
  b:
    cmd: ${demo} --model b
    concurrencyLimit: 60
""")
        supervisors = running.app.supervisors
        overlaps: list[str] = []

        def checkStates(model: str, old: State, new: State) -> None:
            live = {m: s.state for m, s in supervisors.items() if s.state in LIVE}
            if len(live) > 1:
                overlaps.append(f"states {live}")

        for supervisor in supervisors.values():
            supervisor.addStateObserver(checkStates)
        samples = 0

        def sample() -> None:
            nonlocal samples
            samples += 1
            models = demoModels(tree.remember())
            if len(models) > 1:
                overlaps.append(f"processes of {sorted(models)}")

        sampler = LoopingCall(sample)
        sampler.clock = reactor
        sampler.start(0.01)
        self.addCleanup(lambda: sampler.running and sampler.stop())
        names = ["a" if i % 2 == 0 else "b" for i in range(50)]
        results = await DeferredList([Deferred.fromCoroutine(chat(running, n)) for n in names])
        sampler.stop()
        served: Counter[str] = Counter()
        for name, (ok, result) in zip(names, results, strict=True):
            self.assertTrue(ok, result)
            status, body = result
            self.assertEqual(status, 200, body)
            self.assertEqual(body["demo"]["served_model"], name)
            self.assertEqual(body["object"], "chat.completion")
            self.assertTrue(body["choices"][0]["message"]["content"])
            served[name] += 1
        self.assertEqual(served, {"a": 25, "b": 25})
        self.assertEqual(overlaps, [])
        self.assertGreater(samples, 10)


class TTLExpiryTests(TestCase):
    """
    llama-swap #946: a request arriving at the very moment the TTL unloads
    its model must never hang.  The real router and supervisors run real
    upstream processes, but their timers run on a L{Clock}, so the request
    lands exactly on the expiry instant: before the TTL timer in even
    iterations, after it in odd ones.
    """

    timeout = 600
    iterations = 500

    async def test_requestAtExpiry(self) -> None:
        """
        500 requests, each at the instant its model's TTL expires: each is
        granted (at once when it came first, after a restart when the TTL
        won), and every upstream stopped along the way is gone.
        """
        tree = Tree(self)
        env = childEnv()
        loaded = loadConfigText(
            startPort() + f'models:\n  m:\n    cmd: "{DEMO} --model m"\n    ttl: 5\n'
            "    checkEndpoint: none\n    unloadTimeout: 5\n",
            "ttl.yaml",
            environ=env,
        )
        config = loaded.config
        clock = Clock()
        supervisor = Supervisor(
            specFor(config.models["m"], config),
            processReactor=reactor,
            clock=clock,
            environ=env,
        )
        router = Router(config, {"m": supervisor}, clock)
        launchers: list[int] = []

        def spawned(model: str, old: State, new: State) -> None:
            child = supervisor._child
            if new is State.STARTING and child is not None and child.launcherPid:
                launchers.append(child.launcherPid)

        supervisor.addStateObserver(spawned)

        async def shutdown() -> None:
            tree.remember()
            d = router.shutdown()

            def done() -> bool:
                # Stop escalation timers run on the clock.
                clock.advance(0.5)
                return d.called

            await poll(done, 30, "the router's shutdown")

        self.addCleanup(lambda: Deferred.fromCoroutine(shutdown()))
        lease: Lease = await router.acquire("m").addTimeout(30, reactor)
        await deferLater(reactor, 0, lambda: None)
        restarts = 0
        for i in range(self.iterations):
            requests: list[Deferred[Lease]] = []
            def arrive(requests: list[Deferred[Lease]] = requests) -> None:
                requests.append(router.acquire("m"))

            if i % 2 == 0:
                clock.callLater(5, arrive)
                lease.release()
            else:
                lease.release()
                clock.callLater(5, arrive)
            before = len(launchers)
            clock.advance(5)
            [pending] = requests
            try:
                lease = await pending.addTimeout(30, reactor)
            except Exception as e:
                self.fail(
                    f"iteration {i}: request at TTL expiry hung or failed ({e!r}); "
                    f"state {supervisor.state}"
                )
            # Timers fire from the reactor, never from inside the router's
            # grant: let that call stack unwind before the next expiry.
            await deferLater(reactor, 0, lambda: None)
            self.assertIs(supervisor.state, State.READY, f"iteration {i}")
            if len(launchers) > before:
                restarts += 1
            if i % 50 == 0:
                tree.remember()
        lease.release()
        self.assertEqual(restarts, self.iterations // 2)
        self.assertEqual(await waitGone(launchers[:-1], reactor, 10.0), [])


class StartFailureTests(TestCase):
    """
    Upstreams that fail while starting, or will not stop.
    """

    timeout = 120

    async def test_exitDuringStartFailsFast(self) -> None:
        """
        A child exiting during its start fails the request less than a
        second after it exited, with its exit status and its output.
        """
        Tree(self).remember()
        running = await startLlamaSwap(self, demoMacros() + startPort() + """
healthCheckTimeout: 120
models:
  broken:
    cmd: ${demo} --exit-during-start 3 --startup-delay 0.4
""")
        lastLine: list[float] = []
        running.app.supervisors["broken"].addOutputObserver(
            lambda m, stream, line: lastLine.append(reactor.seconds())
            if "exiting with status" in line
            else None
        )
        started = reactor.seconds()
        status, body = await chat(running, "broken")
        answered = reactor.seconds()
        self.assertEqual(status, 500, body)
        message = body["error"]["message"]
        self.assertIn("exit status 3", message)
        self.assertIn("demo: error: failed to load model", message)
        self.assertIn("demo: exiting with status 3", message)
        [exited] = lastLine
        self.assertLess(answered - exited, 1.0)
        self.assertLess(answered - started, 30.0)

    async def test_sigtermIgnoredKilledAfterUnloadTimeout(self) -> None:
        """
        A child that ignores SIGTERM is killed once C{unloadTimeout} is
        over: the unload takes that long, and no more, and leaves nothing.
        """
        tree = Tree(self)
        running = await startLlamaSwap(self, demoMacros() + startPort() + """
models:
  stubborn:
    cmd: ${demo} --ignore-sigterm
    unloadTimeout: 2
""")
        status, body = await chat(running, "stubborn")
        self.assertEqual(status, 200, body)
        pid = body["demo"]["pid"]
        launcher = launcherOf(pid)
        tree.remember()
        before = reactor.seconds()
        await running.app.router.unload(["stubborn"])
        elapsed = reactor.seconds() - before
        self.assertGreaterEqual(elapsed, 2.0)
        self.assertLess(elapsed, 4.0)
        self.assertEqual(await waitGone([pid], reactor, 2.0), [])
        assertRecycledOrGone(self, running, launcher)
        self.assertIs(running.app.supervisors["stubborn"].state, State.STOPPED)


class WrapperTests(TestCase):
    """
    Wrapper commands whose children stay in, or escape, the process group
    (llama-swap #804): after an unload nothing is left.
    """

    timeout = 120

    async def unloadLeavesNothing(self, wrapper: str, sessions: int) -> None:
        """
        Serve a request through C{wrapper} (a YAML C{cmd} value running
        the demo), check the demo runs in C{sessions} session(s) with the
        wrapper's process group, then unload it: every process of the tree
        is gone (the launcher is back in the standby pool).
        """
        tree = Tree(self)
        running = await startLlamaSwap(
            self, demoMacros() + startPort() + f"models:\n  w:\n    cmd: {wrapper}\n    unloadTimeout: 5\n"
        )
        status, body = await chat(running, "w")
        self.assertEqual(status, 200, body)
        server = running.app.supervisors["w"].pid
        assert server is not None
        launcher = launcherOf(server)
        processes = [p for p in descendants(launcher)]
        tree.remember()
        demo = body["demo"]["pid"]
        self.assertIn(demo, processes)
        self.assertNotEqual(demo, server)
        # A wrapper's short-lived intermediate process may be gone already.
        stats = [stat for stat in map(readStat, processes) if stat is not None]
        self.assertEqual(len({stat.session for stat in stats}), sessions)
        before = reactor.seconds()
        await running.app.router.unload(["w"])
        elapsed = reactor.seconds() - before
        self.assertEqual(await waitGone(processes, reactor, 5.0), [])
        assertRecycledOrGone(self, running, launcher)
        self.assertLess(elapsed, 5.0, "the SIGTERM did not reach the demo")

    async def test_forkingWrapper(self) -> None:
        """
        A shell wrapper that runs the demo as its child, in its group.
        """
        await self.unloadLeavesNothing("\"sh -c '${demo} --fork-grandchild & wait'\"", 1)

    async def test_setsidWrapper(self) -> None:
        """
        A wrapper whose child calls setsid: the demo leaves the wrapper's
        session and process group, and is still stopped.
        """
        await self.unloadLeavesNothing("\"sh -c 'setsid ${demo} & wait'\"", 2)

    async def test_daemonizingWrapper(self) -> None:
        """
        A wrapper that double-forks the demo into its own session (it is
        orphaned, and re-parented to the launcher) and then waits.
        """
        await self.unloadLeavesNothing(
            "\"sh -c '(setsid ${demo} &); while :; do sleep 0.1; done'\"", 2
        )


def preloaded() -> str:
    """
    Two upstreams preloaded at start-up: one with a grandchild, one behind
    a wrapper whose child escaped with setsid (and writes nothing, so it
    cannot die of a closed pipe).
    """
    return demoConfig(
        "  m:\n"
        "    cmd: ${demo} --model m --fork-grandchild\n"
        "  escaper:\n"
        "    cmd: \"sh -c 'setsid ${demo} --model escaper >/dev/null 2>&1 & wait'\"\n"
        "groups:\n"
        "  both:\n"
        "    swap: false\n"
        "    members: [m, escaper]\n"
        "hooks:\n"
        "  on_startup:\n"
        "    preload: [m, escaper]\n"
    )


class KilledLlamaSwapTests(TestCase):
    """
    C{twistd -n llamaswap} killed by SIGTERM, SIGINT or SIGKILL leaves no
    upstream process, grandchildren and escaped descendants included.
    """

    timeout = 120

    async def killWith(self, sig: int) -> Any:
        """
        Start llamaswap with two preloaded upstreams (one with a
        grandchild, one behind a wrapper whose child escaped with setsid),
        send it C{sig}, and check every process it started is gone.

        @return: how it ended.
        """
        running = await startTwistd(self, preloaded())

        def loaded() -> bool:
            tree = running.tree()
            grandchild = any("demo grandchild" in " ".join(readCmdline(p) or []) for p in tree)
            return demoModels(tree) == {"m", "escaper"} and grandchild

        await poll(loaded, 60, "both upstreams and the grandchild")
        tree = running.remember()
        self.assertGreaterEqual(len(tree), 6, "2 launchers, wrapper, 2 demos, grandchild")
        running.signal(sig)
        reason = await running.ended
        self.assertEqual(await waitGone(tree, reactor, 10.0), [], running.output)
        return reason

    async def test_sigterm(self) -> None:
        """
        SIGTERM: a clean exit (status 0), nothing left.
        """
        reason = await self.killWith(signal.SIGTERM)
        self.assertIsInstance(reason, ProcessDone)

    async def test_sigint(self) -> None:
        """
        SIGINT: a clean exit (status 0), nothing left.
        """
        reason = await self.killWith(signal.SIGINT)
        self.assertIsInstance(reason, ProcessDone)

    async def test_sigkill(self) -> None:
        """
        SIGKILL: llamaswap cannot do anything, the launchers' parent-death
        signal kills every tree.
        """
        reason = await self.killWith(signal.SIGKILL)
        self.assertIsInstance(reason, ProcessTerminated)
        self.assertEqual(reason.signal, signal.SIGKILL)
