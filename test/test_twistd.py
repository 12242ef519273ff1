"""
C{twistd llamaswap} as a daemon: pidfile, /health, clean SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from .util import TWISTD, childEnv, freePort, poll


def alive(pid: int) -> bool:
    """
    Whether C{pid} names a live process (a zombie counts as dead).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class DaemonTests(TestCase):
    """
    Plain C{twistd llamaswap} daemonizes with twistd's pidfile and logfile.
    """

    timeout = 60

    def setUp(self) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    def startDaemon(self, config: str) -> tuple[str, str, int]:
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        configPath = os.path.join(base, "config.yaml")
        with open(configPath, "w") as f:
            f.write(config)
        pidfile = os.path.join(base, "twistd.pid")
        logfile = os.path.join(base, "twistd.log")
        port = freePort()
        # Daemonizing forks, so the first process returns at once.
        result = subprocess.run(
            TWISTD + [f"--pidfile={pidfile}", f"--logfile={logfile}", "llamaswap",
                      "--config", configPath, "--listen", f"127.0.0.1:{port}"],
            env=childEnv(), cwd=base, capture_output=True, text=True, timeout=30,
        )
        self.assertEqual(result.returncode, 0, result.stderr)

        def kill() -> None:
            try:
                with open(pidfile) as f:
                    os.kill(int(f.read()), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass

        self.addCleanup(kill)
        return pidfile, logfile, port

    async def test_daemonLifecycle(self) -> None:
        """
        The daemon writes its pidfile, answers C{GET /health} with 200 C{OK},
        and on SIGTERM exits and removes the pidfile.
        """
        pidfile, logfile, port = self.startDaemon("models: {}\n")
        await poll(lambda: os.path.exists(pidfile), 20, "the pidfile")
        with open(pidfile) as f:
            pid = int(f.read())
        self.assertTrue(alive(pid))

        async def healthy() -> bool:
            try:
                response = await treq.get(
                    f"http://127.0.0.1:{port}/health", pool=self.pool, timeout=2
                )
            except Exception:
                return False
            self.body = await response.text()
            self.status = response.code
            return True

        await poll(healthy, 20, "GET /health")
        self.assertEqual((self.status, self.body), (200, "OK"))

        os.kill(pid, signal.SIGTERM)
        await poll(lambda: not alive(pid), 20, "the daemon to exit")
        await poll(lambda: not os.path.exists(pidfile), 5, "the pidfile removal")
        with open(logfile) as f:
            self.assertIn("llamaswap", f.read())

    def test_configErrorExitsWithoutTraceback(self) -> None:
        """
        A broken config makes twistd exit 1 with the key path, no traceback.
        """
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        configPath = os.path.join(base, "bad.yaml")
        with open(configPath, "w") as f:
            f.write("models:\n  m1:\n    cmd: srv --port ${PORT}\n    ttl: -5\n")
        result = subprocess.run(
            TWISTD + ["--nodaemon", "--pidfile=", "llamaswap", "--config", configPath],
            env=childEnv(), cwd=base, capture_output=True, text=True, timeout=30,
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn("models.m1.ttl", result.stderr)
        self.assertIn("bad.yaml:4", result.stderr)
        self.assertNotIn("Traceback", result.stderr + result.stdout)

    def test_modelsDirWithoutServer(self) -> None:
        """
        C{--models-dir} with no llama-server on C{PATH} exits 1 saying so,
        no traceback.
        """
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        with open(os.path.join(base, "m.gguf"), "wb") as f:
            f.write(b"GGUF")
        result = subprocess.run(
            TWISTD + ["--nodaemon", "--pidfile=", "llamaswap", "--models-dir", base],
            env=childEnv(PATH=os.path.dirname(sys.executable)),
            cwd=base,
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn("modelsDir: llama-server was not found on PATH", result.stderr)
        self.assertNotIn("Traceback", result.stderr + result.stdout)
