"""
Run C{twistd -n llamaswap} as a real child process for integration tests:
its output, its exit, its process tree (through C{/proc}), and HTTP requests
to it on 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import signal
import socket
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from llamaswap.upstream.leftovers import readStat, waitGone

from .harness import DEMO
from .util import TWISTD, childEnv, freePort, poll


def startPort(count: int = 4) -> str:
    """
    A C{startPort:} line for C{${PORT}}s that do not collide with other
    llamaswaps on this machine (the default 5800 is shared by every test
    run): C{count} consecutive ports that were free a moment ago, below
    the ephemeral range (where outgoing connections take theirs).
    """
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20000, 32000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return f"startPort: {base}\n"
    raise RuntimeError("no free ports for the upstreams")


def demoConfig(models: str) -> str:
    """
    A config with the demo upstream as C{${demo}}, its own C{startPort} and
    C{models} (YAML lines under C{models:}).
    """
    return f'macros:\n  demo: "{DEMO}"\n' + startPort() + f"models:\n{models}"


def descendants(root: int) -> list[int]:
    """
    The live (non-zombie) descendants of C{root}, through C{/proc} ppid
    links.
    """
    table: dict[int, Any] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = readStat(int(name))
            if stat is not None:
                table[int(name)] = stat
    children: dict[int, list[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.ppid, []).append(pid)
    found: list[int] = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if table[pid].state not in ("Z", "X", "x"):
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return sorted(found)


class _TwistdProtocol(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[Any] = Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason.value)


class Twistd:
    """
    A running C{twistd -n llamaswap}.

    @ivar pid: its PID.
    @ivar url: its base URL.
    @ivar ended: fires with the exit reason (C{ProcessDone} or
        C{ProcessTerminated}).
    @ivar seen: every descendant seen by L{remember} (checked after the
        test).
    """

    def __init__(self, protocol: _TwistdProtocol, pid: int, url: str, pool: HTTPConnectionPool) -> None:
        self._protocol = protocol
        self.pid = pid
        self.url = url
        self.pool = pool
        self.ended = protocol.ended
        self.seen: set[int] = set()
        #: The configuration file it was started with ("" without --config).
        self.configPath = ""

    @property
    def output(self) -> str:
        """
        Its stdout and stderr so far.
        """
        return self._protocol.output.decode("utf-8", "replace")

    def post(self, path: str, **kw: Any) -> Deferred:
        """
        C{POST} to it.
        """
        return treq.post(self.url + path, pool=self.pool, **kw)

    def get(self, path: str, **kw: Any) -> Deferred:
        """
        C{GET} from it.
        """
        return treq.get(self.url + path, pool=self.pool, **kw)

    def tree(self) -> list[int]:
        """
        Its live descendants (launchers, upstreams, their children).
        """
        return descendants(self.pid)

    def remember(self) -> list[int]:
        """
        Note its current descendants for the final check; return them.
        """
        tree = [] if self.ended.called else self.tree()
        self.seen.update(tree)
        return tree

    def signal(self, sig: int) -> None:
        """
        Send it C{sig}.
        """
        os.kill(self.pid, sig)


async def startTwistd(
    test: TestCase,
    configText: str | None,
    *extra: str,
    environ: dict[str, str] | None = None,
    base: str | None = None,
    port: int | None = None,
) -> Twistd:
    """
    Start C{twistd -n llamaswap} with C{configText} (L{None}: no
    C{--config}) on a free port, wait until it answers C{/health}, and
    register clean-up: it is killed if still running, and so is every
    process it left.

    @param environ: variables to set in its environment (e.g. C{PATH}).
    @param base: its working and runtime directory (default a new one);
        the same C{base} and C{port} make a restart of the same instance.
    """
    if base is None:
        base = os.path.abspath(test.mktemp())
    os.makedirs(base, exist_ok=True)
    config: list[str] = []
    configPath = ""
    if configText is not None:
        configPath = os.path.join(base, "config.yaml")
        with open(configPath, "w") as f:
            f.write(configText)
        config = ["--config", configPath]
    port = freePort() if port is None else port
    protocol = _TwistdProtocol()
    args = TWISTD + [
        "-n",
        "--pidfile=",
        "llamaswap",
        *config,
        "--listen",
        f"127.0.0.1:{port}",
        *extra,
    ]
    env = childEnv(XDG_RUNTIME_DIR=base, **(environ or {}))
    env.pop("RUNTIME_DIRECTORY", None)
    transport = reactor.spawnProcess(protocol, args[0], args, env=env, path=base)
    pool = HTTPConnectionPool(reactor, persistent=False)
    running = Twistd(protocol, transport.pid, f"http://127.0.0.1:{port}", pool)
    running.configPath = configPath

    async def cleanUp() -> None:
        running.remember()
        if not protocol.ended.called:
            os.kill(transport.pid, signal.SIGKILL)
        await protocol.ended
        left = await waitGone(running.seen, reactor, 10.0)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        test.assertEqual(left, [], "processes outlived twistd")

    test.addCleanup(lambda: Deferred.fromCoroutine(cleanUp()))

    async def healthy() -> bool:
        if protocol.ended.called:
            raise AssertionError(f"twistd exited early:\n{running.output}")
        try:
            response = await treq.get(running.url + "/health", pool=pool, timeout=2)
            await response.content()
        except Exception:
            return False
        return response.code == 200

    await poll(healthy, 30, f"twistd on port {port} to answer /health")
    return running
