"""
C{logToStdout} under twistd: what reaches twistd's log (its stdout).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import treq
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from ..test_twistd import alive
from ..util import TWISTD, childEnv, freePort, poll
from ..web.test_logs import StreamClient

LOUD_DEMO = f"{sys.executable} -m llamaswap.demo --port ${{PORT}}"
#: What the demo upstream writes for a health probe (upstream output).
UPSTREAM_LINE = "GET /health -> 200"
#: The access-log line of a C{GET /health} (proxy log).
ACCESS_LINE = 'Request 127.0.0.1 "GET /health HTTP/1.1" 200'


class TwistdStdoutTests(TestCase):
    """
    twistd's log gets the proxy log, the upstream output, both or neither.
    """

    timeout = 90

    def setUp(self) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    async def logOf(self, mode: str) -> str:
        """
        Run C{twistd llamaswap} with C{logToStdout: mode} and a preloaded
        model, ask for C{/health} once the model is up, stop it; return its
        log.
        """
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        configPath = os.path.join(base, "config.yaml")
        with open(configPath, "w") as f:
            f.write(f"logToStdout: {mode}\nstartPort: {freePort()}\n"
                    f'models:\n  m:\n    cmd: "{LOUD_DEMO}"\n'
                    "hooks:\n  on_startup:\n    preload: [m]\n")
        pidfile = os.path.join(base, "twistd.pid")
        logfile = os.path.join(base, "twistd.log")
        port = freePort()
        result = subprocess.run(
            TWISTD + [f"--pidfile={pidfile}", f"--logfile={logfile}", "llamaswap",
                      "--config", configPath, "--listen", f"127.0.0.1:{port}"],
            env=childEnv(XDG_RUNTIME_DIR=base), cwd=base, capture_output=True, text=True,
            timeout=30,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        await poll(lambda: os.path.exists(pidfile), 20, "the pidfile")
        with open(pidfile) as f:
            pid = int(f.read())

        def kill() -> None:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

        self.addCleanup(kill)

        async def running() -> bool:
            try:
                response = await treq.get(
                    f"http://127.0.0.1:{port}/running", pool=self.pool, timeout=20
                )
            except Exception:
                return False
            return '"ready"' in await response.text()

        await poll(running, 30, "the preloaded model")
        response = await treq.get(f"http://127.0.0.1:{port}/health", pool=self.pool)
        self.assertEqual(await response.text(), "OK")

        def logText() -> str:
            with open(logfile) as f:
                return f.read()

        # The upstream's probe line has reached llamaswap (whatever the mode).
        stream = StreamClient("/logs/stream/m")
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), stream)
        try:
            await poll(lambda: UPSTREAM_LINE.encode() in stream.data, 10, "the probe line")
        finally:
            stream.transport.loseConnection()  # type: ignore[union-attr]
            await stream.closed
        await poll(lambda: ACCESS_LINE in logText() or mode in ("upstream", "none"), 10,
                   "the access line in the log")
        os.kill(pid, signal.SIGTERM)
        await poll(lambda: not alive(pid), 30, "twistd to exit")
        return logText()

    async def test_proxy(self) -> None:
        """
        The default: llamaswap's messages and the access log, no upstream
        output; no twisted.web access line nor connection-factory chatter.
        """
        text = await self.logOf("proxy")
        self.assertIn(ACCESS_LINE, text)
        self.assertIn("llamaswap.app", text)
        self.assertNotIn(UPSTREAM_LINE, text)
        self.assertNotIn('"GET /health HTTP/1.1" 200 2 "-"', text)
        self.assertNotIn("_HTTP11ClientFactory", text)
        self.assertIn("llamaswap starting on", text)

    async def test_upstream(self) -> None:
        """
        Upstream output only, each line marked with its model.
        """
        text = await self.logOf("upstream")
        self.assertIn("[m] ", text)
        self.assertIn(UPSTREAM_LINE, text)
        self.assertNotIn(ACCESS_LINE, text)
        self.assertNotIn("llamaswap.app", text)

    async def test_both(self) -> None:
        """
        Both logs.
        """
        text = await self.logOf("both")
        self.assertIn(UPSTREAM_LINE, text)
        self.assertIn(ACCESS_LINE, text)

    async def test_none(self) -> None:
        """
        Neither; Twisted's own messages remain.
        """
        text = await self.logOf("none")
        self.assertNotIn(UPSTREAM_LINE, text)
        self.assertNotIn(ACCESS_LINE, text)
        self.assertNotIn("llamaswap.app", text)
        self.assertIn("twistd", text)
