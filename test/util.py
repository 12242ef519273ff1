"""
Helpers for tests that run real processes on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Awaitable, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def childEnv(**extra: str) -> dict[str, str]:
    """
    The environment for a child Python process that must import this
    checkout's C{llamaswap} and find its twistd plugin.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [REPO, env.get("PYTHONPATH", "")] if p
    )
    env.update(extra)
    return env


TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


async def poll(
    check: Callable[[], Awaitable[bool] | bool],
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> None:
    """
    Call C{check} every C{interval} seconds until it is true; fail after
    C{timeout} seconds, naming C{what} was awaited.
    """
    deadline = reactor.seconds() + timeout
    while True:
        result = check()
        if isinstance(result, Deferred) or hasattr(result, "__await__"):
            result = await result
        if result:
            return
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await deferLater(reactor, interval, lambda: None)
