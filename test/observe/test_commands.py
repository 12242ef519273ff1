"""
Tests for L{llamaswap.observe.commands}, with real child processes.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from llamaswap.observe.commands import (
    CommandFailed,
    CommandTimeout,
    locate,
    runCommand,
    runnerFor,
)

SH = locate("sh") or "/bin/sh"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


class RunCommandTests(TestCase):
    def run_(self, script: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        return runCommand(reactor, reactor, [SH, "-c", script], timeout)

    async def test_output(self) -> None:
        """
        The standard output of a successful command; stderr is not mixed
        in.
        """
        output = await self.run_("echo 0, GPU; echo noise >&2")
        self.assertEqual(output, b"0, GPU\n")

    async def test_failure(self) -> None:
        """
        A non-zero exit fails with the status and the end of stderr.
        """
        with self.assertRaises(CommandFailed) as caught:
            await self.run_("echo partial; echo 'no devices were found' >&2; exit 6")
        self.assertEqual((caught.exception.status, caught.exception.stderr),
                         (6, "no devices were found"))
        self.assertIn("sh ended with exit status 6: no devices were found",
                      str(caught.exception))

    async def test_timeout(self) -> None:
        """
        A command running past its timeout is killed; the result fails
        only once it is gone.
        """
        pidFile = self.mktemp()
        with self.assertRaises(CommandTimeout):
            await self.run_(f"echo $$ > {pidFile}; exec sleep 30", timeout=0.5)
        with open(pidFile) as f:
            pid = int(f.read())
        self.assertFalse(alive(pid))

    async def test_cancel(self) -> None:
        """
        Cancelling the result kills the command.
        """
        pidFile = self.mktemp()
        d = self.run_(f"echo $$ > {pidFile}; exec sleep 30")
        for _ in range(100):
            if os.path.exists(pidFile) and os.path.getsize(pidFile):
                break
            await deferLater(reactor, 0.05)
        with open(pidFile) as f:
            pid = int(f.read())
        d.cancel()
        with self.assertRaises(CancelledError):
            await d
        for _ in range(100):
            if not alive(pid):
                break
            await deferLater(reactor, 0.05)
        self.assertFalse(alive(pid))

    async def test_environment(self) -> None:
        """
        The command gets our environment (never the empty one
        C{spawnProcess} defaults to).
        """
        runner = runnerFor(reactor, reactor)
        output = await runner([SH, "-c", "echo $PATH"], 10.0)
        self.assertEqual(output.decode().strip(), os.environ["PATH"])

    def test_locate(self) -> None:
        self.assertTrue(os.path.isabs(SH))
        self.assertIsNone(locate("no-such-tool-llamaswap"))
