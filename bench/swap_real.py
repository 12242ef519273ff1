"""
Benchmark of a swap between two real llama.cpp C{llama-server} models: the
time from sending a request for the model that is not running to the
response's first byte.  Not a test.

llamaswap runs in this process on 127.0.0.1 with two tiny generated models
(C{test/integration/gguf.py}) in one swap group, each served by the cached
C{llama-server} (C{bash .ci/build-llama-server}).  Each of C{--swaps}
streamed chat completions (C{max_tokens} 1) names the other model, so each
one stops a server and starts the other.  Printed, as p50/p90/max:

 - whole: request sent until the end of the (streamed) reply;
 - first byte: until the response's first byte (its headers; a streamed
   llama-server answer sends them at once);
 - route: until the previous server is told to stop;
 - stop: until it is gone;
 - to spawn: until the next one's start begins;
 - spawn: until the launcher reports llama-server C{exec}'d;
 - boot: llama-server's own start, from C{exec} to its "listening" line
   (printed once the model is loaded; not llamaswap's);
 - detect: from that line to llamaswap marking the model ready (the
   readiness probes);
 - relay: from ready to the first byte.

With C{--memory-budget auto} (or a size) the two models are in an explicit
swap group under that budget, in which they fit together: swaps overlap
(the next server starts while the previous one exits), so "to spawn" is
negative and "stop" no longer adds to the swap.

Run: python bench/swap_real.py [--swaps 20] [--proxy-host 127.0.0.1]
     [--memory-budget auto]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from common import percentiles, startRealApp  # noqa: E402


async def run(reactor: Any, swaps: int, proxyHost: str | None, memoryBudget: str = "") -> int:
    import treq
    from twisted.web.client import HTTPConnectionPool

    from llamaswap.upstream import State
    from test.integration.llamaserver import findLlamaServer
    from test.integration.realconfig import RealModel

    models = (RealModel("alpha", 11), RealModel("beta", 12))
    extra = ""
    if memoryBudget:
        names = ", ".join(m.id for m in models)
        extra = f"memoryBudget: {memoryBudget}\ngroups: {{pair: {{swap: true, members: [{names}]}}}}\n"
    app, port, url = startRealApp(
        reactor, "llamaswap-bench-real-", models, proxyHost=proxyHost, extra=extra
    )
    pool = HTTPConnectionPool(reactor, persistent=False)

    events: dict[str, dict[str, float]] = {m.id: {} for m in models}

    def stateChanged(model: str, old: State, new: State) -> None:
        events[model][new.value] = reactor.seconds()
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

    ends: list[float] = []

    async def ask(model: str) -> float:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 1,
            "stream": True,
        }
        response = await treq.post(url, json=body, pool=pool, timeout=60)
        first = reactor.seconds()
        if response.code != 200:
            raise RuntimeError(f"{model}: {response.code} {await response.text()}")
        await response.content()
        ends.append(reactor.seconds())
        return first

    rows: dict[str, list[float]] = {
        k: [] for k in ("whole", "first byte", "route", "stop", "to spawn", "spawn", "boot", "detect", "relay")
    }
    try:
        await ask("alpha")  # warm-up: the first start has nothing to stop
        for i in range(swaps):
            model, previous = ("beta", "alpha") if i % 2 == 0 else ("alpha", "beta")
            events[model].clear()
            events[previous].clear()
            sent = reactor.seconds()
            first = await ask(model)
            e, p = events[model], events[previous]
            rows["first byte"].append(first - sent)
            rows["whole"].append(ends[-1] - sent)
            rows["route"].append(p["stopping"] - sent)
            rows["stop"].append(p["stopped"] - p["stopping"])
            rows["to spawn"].append(e["starting"] - p["stopped"])
            rows["spawn"].append(e["exec"] - e["starting"])
            rows["boot"].append(e["listening"] - e["exec"])
            rows["detect"].append(e["ready"] - e["listening"])
            rows["relay"].append(first - e["ready"])
    finally:
        await port.stopListening()
        await app.stopService()
        await pool.closeCachedConnections()

    proxy = f"http://{proxyHost}:${{PORT}}" if proxyHost else "default (http://localhost:${PORT})"
    print(f"{swaps} swaps between two real llama-server models "
          f"({os.cpu_count()} CPUs, proxy {proxy})")
    print(f"  llama-server: {findLlamaServer()}")
    print(f"  starts through a standby launcher: {app.launchers.used} of {swaps}")
    overlapped = sum(1 for v in rows["to spawn"] if v < 0)
    print(f"  memoryBudget: {memoryBudget or 'none'}; swaps that overlapped: {overlapped} of {swaps}")
    for name, values in rows.items():
        note = "  (llama-server's own; not ours)" if name == "boot" else ""
        print(f"  {name:<11} {percentiles(values)}{note}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument(
        "--proxy-host", default=None,
        help="give each model proxy: http://HOST:${PORT} (default: llamaswap's localhost)",
    )
    parser.add_argument(
        "--memory-budget", default="",
        help="a memoryBudget (auto or a size) and an explicit swap group: swaps overlap",
    )
    args = parser.parse_args()
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    react(lambda reactor: Deferred.fromCoroutine(run(reactor, args.swaps, args.proxy_host, args.memory_budget)))


if __name__ == "__main__":
    main()
