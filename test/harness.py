"""
Run a whole llamaswap in the test process, on the real reactor, listening on
127.0.0.1 with a free port; upstreams are real processes (usually the demo
upstream).  For integration tests: L{startLlamaSwap} in a
L{twisted.trial.unittest.TestCase}, which stops everything in cleanup.
"""

from __future__ import annotations

import os
import random
import re
import socket
import sys
from typing import Any

import treq
from attrs import define
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from llamaswap.app import LlamaSwap
from llamaswap.config.load import loadConfig, loadConfigText
from llamaswap.listen import parseListen

from .util import REPO

#: The demo upstream's command, for configs: C{${demo}} in a model's cmd.
DEMO = f"{sys.executable} -m llamaswap.demo --port ${{PORT}} --silent"


@define
class Running:
    """
    A llamaswap started by L{startLlamaSwap}.

    @ivar app: the service (its C{router}, C{supervisors}, C{config}).
    @ivar url: the base URL, C{http://127.0.0.1:PORT}.
    @ivar pool: a non-persistent pool for the test's own requests.
    """

    app: LlamaSwap
    url: str
    pool: HTTPConnectionPool
    port: Any

    def get(self, path: str, **kw: Any) -> Deferred:
        return treq.get(self.url + path, pool=self.pool, **kw)

    def post(self, path: str, **kw: Any) -> Deferred:
        return treq.post(self.url + path, pool=self.pool, **kw)

    def request(self, method: str, path: str, **kw: Any) -> Deferred:
        return treq.request(method, self.url + path, pool=self.pool, **kw)

    async def chat(self, model: str, **extra: Any) -> Any:
        """
        A non-streamed chat completion; returns C{(status, parsed JSON)}.
        """
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        response = await self.post("/v1/chat/completions", json=body)
        return response.code, await response.json()


def freePortRange(count: int) -> int:
    """
    The first of C{count} consecutive loopback ports that were all free a
    moment ago, so C{${PORT}} allocation from C{startPort} does not collide
    with other tests or services (llama-swap's default 5800 often would).
    """
    for _ in range(200):
        base = random.randrange(20000, 32000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port range found")


def demoMacros() -> str:
    """
    A YAML C{macros:} block defining C{demo} as the demo upstream command.
    """
    return f"macros:\n  demo: \"{DEMO}\"\n"


async def startLlamaSwap(
    test: TestCase,
    configText: str,
    *,
    environ: dict[str, str] | None = None,
    configFile: str | None = None,
) -> Running:
    """
    Load C{configText}, start llamaswap on a free loopback port and register
    its shutdown (every upstream stopped and waited for) as cleanup.

    @param configFile: write C{configText} there and load it from the file
        (so that the app's reloader reads it again).
    """
    env = dict(os.environ if environ is None else environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [REPO, env.get("PYTHONPATH", "")] if p)
    if not re.search(r"^startPort:", configText, re.M):
        configText = f"startPort: {freePortRange(16)}\n" + configText
    if configFile is not None:
        with open(configFile, "w") as f:
            f.write(configText)
        loaded = loadConfig(configFile, None)
    else:
        loaded = loadConfigText(configText, "test.yaml", environ=env)
    runtime = os.path.abspath(test.mktemp())
    os.makedirs(runtime)
    listen = parseListen("127.0.0.1:0")
    app = LlamaSwap(
        loaded.config,
        reactor,
        configPaths=(configFile, None),
        listen=listen,
        runtimeDir=runtime,
        environ=env,
    )
    app.startService()
    port = reactor.listenTCP(0, app.site(), interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)

    async def stop() -> None:
        await port.stopListening()
        await app.stopService()

    test.addCleanup(lambda: Deferred.fromCoroutine(stop()))
    return Running(app, f"http://127.0.0.1:{port.getHost().port}", pool, port)
