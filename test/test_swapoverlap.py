"""
Swap overlap end to end, with real processes on 127.0.0.1 (the demo
upstream): with a memory budget both models fit in, the next model starts
and serves while the previous one is still exiting; with overlap off it
waits for the previous one to be gone.

The previous model ignores SIGTERM, so its stop lasts its C{unloadTimeout}
(then it is killed): a window wide enough to tell the two apart by the
order of events, not by timing.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from llamaswap.upstream import State
from llamaswap.upstream.leftovers import waitGone

from .harness import Running, demoMacros, startLlamaSwap
from .twistdproc import startPort
from .util import poll

CONFIG = """
memoryBudget: 1GiB
groups:
  pair:
    swap: true
    members: [a, b]
models:
  a:
    cmd: ${demo} --model a --ignore-sigterm
    memory: 100MiB
    unloadTimeout: 3
  b:
    cmd: ${demo} --model b
    memory: 100MiB
"""


class SwapOverlapTests(TestCase):
    """
    A swap in one group whose models fit in the memory budget together.
    """

    timeout = 60

    async def swapWhileAExits(self, extra: str = "") -> tuple[Running, int, State]:
        """
        Serve a request from a, then one from b; return the app, a's pid
        and a's state when b's reply arrived.
        """
        running = await startLlamaSwap(self, demoMacros() + startPort() + CONFIG + extra)
        status, body = await running.chat("a")
        self.assertEqual(status, 200, body)
        pidA = body["demo"]["pid"]
        status, body = await running.chat("b")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["demo"]["served_model"], "b")
        return running, pidA, running.app.supervisors["a"].state

    async def test_nextServesWhilePreviousExits(self) -> None:
        """
        b is started at once and serves while a (ignoring SIGTERM) is still
        exiting; a is then killed and gone.
        """
        running, pidA, stateA = await self.swapWhileAExits()
        self.assertIs(stateA, State.STOPPING)
        self.assertEqual(await waitGone([pidA], reactor, 10.0), [])
        # Its keeper reports the exit a moment after the pid is gone.
        await poll(
            lambda: running.app.router.running() == [("b", State.READY)],
            5.0,
            "a to be reported stopped",
        )

    async def test_offWaits(self) -> None:
        """
        With C{routing.swapOverlap: off}, b starts only once a is gone.
        """
        running, pidA, stateA = await self.swapWhileAExits("routing: {swapOverlap: off}\n")
        self.assertIs(stateA, State.STOPPED)
        self.assertEqual(await waitGone([pidA], reactor, 1.0), [])
