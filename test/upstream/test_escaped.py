"""
A descendant that escaped its upstream's process group and session
(C{setsid}) does not outlive llamaswap: a restart after llamaswap and the
launcher were SIGKILLed (the OOM killer) reaps it.
"""

from __future__ import annotations

import os
import signal

from twisted.trial.unittest import TestCase

from llamaswap.upstream.leftovers import (
    MARKER_VAR,
    processGone,
    readCmdline,
    readMarker,
)
from llamaswap.upstream.process import LAUNCHER

from ..harness import DEMO
from ..twistdproc import startPort, startTwistd
from ..util import freePort, poll

SLEEP = "317.5"
SCRIPT = f"""
setsid sleep {SLEEP} </dev/null >/dev/null 2>&1 &
exec "$@"
"""


def sleepers() -> list[int]:
    """
    Live C{sleep SLEEP} processes on this machine.
    """
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and readCmdline(int(name)) == ["sleep", SLEEP]:
            if not processGone(int(name)):
                found.append(int(name))
    return found


class EscapedGrandchildTests(TestCase):
    timeout = 120

    def tearDown(self) -> None:
        for pid in sleepers():
            os.kill(pid, signal.SIGKILL)

    async def test_reapedAfterCrash(self) -> None:
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        script = os.path.join(base, "escape.sh")
        with open(script, "w") as f:
            f.write(SCRIPT)
        config = startPort() + f"models:\n  m:\n    cmd: sh {script} {DEMO}\n"
        port = freePort()
        first = await startTwistd(self, config, base=base, port=port)
        response = await first.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
        self.assertEqual(response.code, 200, await response.text())
        await poll(lambda: bool(sleepers()), 10, "the escaped grandchild")
        (grandchild,) = sleepers()
        self.assertIsNotNone(readMarker(grandchild))
        self.assertNotEqual(readMarker(grandchild), os.environ.get(MARKER_VAR))
        # The OOM killer takes the launchers and llamaswap at once (the
        # launcher first: killed second, it would still kill the tree on
        # its parent-death signal).
        launchers = [p for p in first.tree() if LAUNCHER in (readCmdline(p) or [])]
        self.assertTrue(launchers)
        for pid in launchers:
            os.kill(pid, signal.SIGKILL)
        first.signal(signal.SIGKILL)
        await first.ended
        self.assertFalse(processGone(grandchild), "the grandchild should have survived")

        await startTwistd(self, config, base=base, port=port)
        await poll(lambda: processGone(grandchild), 20, "the grandchild to be reaped")
