"""
Benchmark of a model swap: how much time llamaswap adds to a request that
has to stop one upstream and start another.  Not a test.

llamaswap runs in this process on 127.0.0.1 with two demo upstreams of one
swap group, each started with a fixed C{--startup-delay} (it answers 503
"Loading model" that long after listening).  Each of C{--swaps} requests
asks for the model that is not running and is timed from sending it to the
response's first byte.  A swap cannot be faster than the previous
upstream's own shutdown (from its stop until its process exits), the new
one's own boot (the Python interpreter and Twisted importing, from C{exec}
to its "listening" line) and the delay, none of which llamaswap controls,
so

    overhead = first byte - request - shutdown - boot - delay

is what llamaswap adds: deciding the swap, reaping the previous upstream,
spawning through the launcher, noticing readiness, relaying the request.
Each is measured for every swap (the server's exit through a pidfd).  It
prints p50/p90/max of the overhead (target: 50 ms) and of its parts:

 - stop: request until the stop begins, plus the server's exit until the
   supervisor says stopped (the launcher's sweep, reaping);
 - spawn: until the launcher reports the server C{exec}'d;
 - detect: from the upstream being ready (listening + delay) until the
   supervisor says ready;
 - relay: from ready to the first byte.

Run: python bench/swap.py [--swaps 20] [--startup-delay 0.5]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from common import percentiles  # noqa: E402


class ExitWatch:
    """
    Notes when a process (not necessarily our child) exits, through a
    pidfd the reactor watches (Linux 5.3 and later).
    """

    def __init__(self, reactor: Any, pid: int, record: Callable[[float], None]) -> None:
        self._reactor = reactor
        self._record = record
        self._fd = os.pidfd_open(pid)
        reactor.addReader(self)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "ExitWatch"

    def doRead(self) -> None:
        self._record(self._reactor.seconds())
        self._reactor.removeReader(self)
        os.close(self._fd)

    def connectionLost(self, reason: object) -> None:
        pass


async def run(reactor: Any, swaps: int, delay: float) -> int:
    import tempfile

    import treq
    from twisted.web.client import HTTPConnectionPool

    from llamaswap.app import LlamaSwap
    from llamaswap.config.load import loadConfigText
    from llamaswap.listen import parseListen
    from llamaswap.upstream import State

    demo = f"{sys.executable} -m llamaswap.demo --port ${{PORT}} --silent --startup-delay {delay}"
    # Not the default 5800, which test runs on this machine share, and
    # below the ephemeral range.
    startPort = random.randrange(20000, 32000)
    config = f"""
macros:
  demo: "{demo}"
startPort: {startPort}
models:
  a:
    cmd: ${{demo}} --model a
  b:
    cmd: ${{demo}} --model b
"""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [REPO, env.get("PYTHONPATH", "")] if p)
    loaded = loadConfigText(config, "bench.yaml", environ=env)
    runtime = tempfile.mkdtemp(prefix="llamaswap-bench-")
    app = LlamaSwap(
        loaded.config, reactor, listen=parseListen("127.0.0.1:0"), runtimeDir=runtime, environ=env
    )
    app.startService()
    port = reactor.listenTCP(0, app.site(), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/v1/chat/completions"
    pool = HTTPConnectionPool(reactor, persistent=False)

    events: dict[str, dict[str, float]] = {"a": {}, "b": {}}

    def stateChanged(model: str, old: State, new: State) -> None:
        now = reactor.seconds()
        events[model][new.value] = now
        pid = app.supervisors[model].pid
        if new is State.STOPPING and pid is not None:
            ExitWatch(reactor, pid, lambda when: events[model].__setitem__("exit", when))
        if new is State.STARTING:
            # The child is spawned right after this change is announced.
            reactor.callLater(0, watchExec, model)

    def watchExec(model: str) -> None:
        child = app.supervisors[model]._child
        if child is not None:
            child.serverStarted.addCallback(
                lambda _: events[model].__setitem__("exec", reactor.seconds())
            )

    def line(model: str, stream: str, text: str) -> None:
        if "listening on" in text and "listening" not in events[model]:
            events[model]["listening"] = reactor.seconds()

    for supervisor in app.supervisors.values():
        supervisor.addStateObserver(stateChanged)
        supervisor.addOutputObserver(line)

    rows: dict[str, list[float]] = {
        k: [] for k in ("overhead", "stop", "spawn", "boot", "detect", "relay", "total")
    }
    rows["shutdown"] = []

    async def ask(model: str) -> float:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        response = await treq.post(url, json=body, pool=pool, timeout=120)
        first = reactor.seconds()
        if response.code != 200:
            raise RuntimeError(f"{model}: {response.code} {await response.text()}")
        await response.content()
        return first

    try:
        await ask("a")  # warm-up: the first start has nothing to stop
        for i in range(swaps):
            model, previous = ("b", "a") if i % 2 == 0 else ("a", "b")
            events[model].clear()
            events[previous].clear()
            sent = reactor.seconds()
            first = await ask(model)
            e, p = events[model], events[previous]
            boot = e["listening"] - e["exec"]
            rows["total"].append(first - sent)
            rows["boot"].append(boot)
            shutdown = p["exit"] - p["stopping"]
            rows["shutdown"].append(shutdown)
            rows["overhead"].append(first - sent - shutdown - boot - delay)
            rows["stop"].append(p["stopping"] - sent + p["stopped"] - p["exit"])
            rows["spawn"].append(e["exec"] - e["starting"])
            rows["detect"].append(e["ready"] - (e["listening"] + delay))
            rows["relay"].append(first - e["ready"])
    finally:
        await port.stopListening()
        await app.stopService()
        await pool.closeCachedConnections()

    print(f"{swaps} swaps, --startup-delay {delay}s (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs)")
    print(f"  first byte         {percentiles(rows['total'])}")
    print(f"  upstream shutdown  {percentiles(rows['shutdown'])}  (not ours)")
    print(f"  upstream boot      {percentiles(rows['boot'])}  (not ours)")
    print(f"  overhead           {percentiles(rows['overhead'])}  (target <= 50 ms)")
    for part in ("stop", "spawn", "detect", "relay"):
        print(f"    {part:<16} {percentiles(rows[part])}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--startup-delay", type=float, default=0.5)
    args = parser.parse_args()
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    react(lambda reactor: Deferred.fromCoroutine(run(reactor, args.swaps, args.startup_delay)))


if __name__ == "__main__":
    main()
