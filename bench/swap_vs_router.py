"""
Side by side: llama.cpp's own router mode against llamaswap, on the same two
tiny generated models and the same C{llama-server} binary.  Not a test.

Both sides run at once, each a separate process on 127.0.0.1 driven by
this script's plain blocking HTTP/1.1 keep-alive client (C{http.client},
the same for both), and are measured in alternating rounds so that both
see the same machine load:

 - router: C{llama-server --models-dir DIR --models-max 1} (it loads a model
   on demand in a child process and unloads the other);
 - llamaswap: C{twistd -n llamaswap} with both models in one swap group
   (C{test/integration/realconfig.py}), each run by the same llama-server
   with the same flags the router gives its children (C{-c 256 --threads 1
   --parallel 1}), and C{memoryBudget: auto} (C{--memory-budget}): the
   group still runs one model at a time, but the budget shows the two tiny
   models fit together, so llamaswap starts the next while the previous
   exits (swap overlap, C{llamaswap/routing/overlap.py});
   C{--memory-budget ""} leaves the budget out (no overlap).

Measured, as p50/p90/max:

 - swap: C{--swaps} non-streamed chat completions (C{max_tokens} 1)
   alternating between the models, so each one stops a server and starts
   the other: request sent until the whole reply is read;
 - no-swap: C{--requests} requests for the loaded model (a whole
   non-streamed reply, and a stream's first C{data:} event);
 - direct: the same no-swap requests sent straight to the llama-server
   llamaswap started (interleaved with the ones through llamaswap), so
   "added" is what llamaswap adds to a warm server;
 - llamaswap's idle RSS, the keeper's (the launcher each running upstream
   has), the idle standby launcher's and the starters' (each idle launcher's
   child forked ahead for its next server; mostly pages shared with it).

Run: python bench/swap_vs_router.py [--swaps 30] [--rounds 3] [--requests 200]
     [--baseline DIR]  (also an older checkout, e.g. from git archive)
     [--memory-budget auto|SIZE|""]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from common import percentiles  # noqa: E402
from proxy import (  # noqa: E402
    Processes,
    cmdlineOf,
    cpuSeconds,
    descendantsOf,
    freePort,
    sampling,
    summariseSamples,
    twistdCommand,
    waitFor,
)  # noqa: E402

MODELS = (("alpha", 11), ("beta", 12))
#: What the router passes its children, and what llamaswap's cmd says.
SERVER_ARGS = ["-c", "256", "--threads", "1", "--parallel", "1"]


def body(model: str, stream: bool = False) -> bytes:
    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 1,
            "stream": stream,
        }
    ).encode()


class Client:
    """
    One keep-alive connection; times whole replies and first stream events.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def _send(self, payload: bytes) -> http.client.HTTPResponse:
        self.conn.request(
            "POST", "/v1/chat/completions", payload, {"Content-Type": "application/json"}
        )
        return self.conn.getresponse()

    def _again(self, measure: Callable[[str], float], model: str) -> float:
        # llama-server (cpp-httplib) closes a connection after 100 requests
        # without saying so: measure again on a new one.
        try:
            return measure(model)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.conn.close()
            return measure(model)

    def whole(self, model: str) -> float:
        """
        Seconds from sending a non-streamed request to the end of its reply.
        """
        return self._again(self._whole, model)

    def firstEvent(self, model: str) -> float:
        """
        Seconds from sending a streamed request to its first C{data:} line
        (the rest is read, untimed).
        """
        return self._again(self._firstEvent, model)

    def _whole(self, model: str) -> float:
        start = time.perf_counter()
        response = self._send(body(model))
        data = response.read()
        took = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{model}: {response.status} {data[:300]!r}")
        return took

    def _firstEvent(self, model: str) -> float:
        start = time.perf_counter()
        response = self._send(body(model, stream=True))
        if response.status != 200:
            raise RuntimeError(f"{model}: {response.status} {response.read()[:300]!r}")
        while True:
            line = response.readline()
            if not line or line.startswith(b"data:"):
                break
        took = time.perf_counter() - start
        response.read()
        return took

    def close(self) -> None:
        self.conn.close()


def rssKiB(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def privateKiB(pid: int) -> int:
    """
    The memory only C{pid} uses (C{Private_*} of C{smaps_rollup}): for a
    forked child, what it does not share with its parent.
    """
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    except OSError:
        pass
    return total


def health(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/health")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def swapRound(client: Client, count: int, loaded: str) -> tuple[list[float], str]:
    """
    C{count} swaps starting from model C{loaded}; return their times and
    the model loaded at the end.
    """
    names = [name for name, _ in MODELS]
    times = []
    for _ in range(count):
        loaded = names[1 - names.index(loaded)]
        times.append(client.whole(loaded))
    return times, loaded


def startRouter(procs: Processes, binary: str, models: str, work: str) -> tuple[Any, int]:
    port = freePort()
    argv = [binary, "--models-dir", models, "--models-max", "1",
            "--host", "127.0.0.1", "--port", str(port), *SERVER_ARGS]
    child = procs.start("router", argv, dict(os.environ), os.path.join(work, "router.log"))
    waitFor(lambda: health(port), 60, "the router to listen", child)
    return child, port


def startLlamaSwap(
    procs: Processes, binary: str, models: str, work: str, name: str, repo: str,
    memoryBudget: str = "",
) -> tuple[Any, int, int]:
    """
    Start llamaswap from checkout C{repo}; return its child, its port and
    its first model's port.

    @param memoryBudget: the C{memoryBudget} (C{""}: none); the models are
        in one swap group either way.
    """
    from test.integration.realconfig import RealModel, freePortRun, realConfig

    # Below the ephemeral range, where client connections take their ports.
    startPort = freePortRun(len(MODELS))
    config = realConfig(
        models, [RealModel(m, seed) for m, seed in MODELS], binary=binary,
        startPort=startPort, proxyHost="127.0.0.1",
    )
    configPath = os.path.join(work, f"{name}.yaml")
    names = ", ".join(m for m, _ in MODELS)
    config += f"logLevel: warn\ngroups:\n  pair:\n    swap: true\n    members: [{names}]\n"
    if memoryBudget:
        config += f"memoryBudget: {memoryBudget}\n"
    with open(configPath, "w") as f:
        f.write(config)
    port = freePort()
    runtime = os.path.join(work, f"runtime-{name}")
    os.makedirs(runtime, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    env["RUNTIME_DIRECTORY"] = runtime
    env["PYTHONPATH"] = repo
    argv = [*twistdCommand(), "-n", "--pidfile=", "llamaswap", "--config", configPath,
            "--listen", f"127.0.0.1:{port}"]
    child = procs.start(name, argv, env, os.path.join(work, f"{name}.log"))
    waitFor(lambda: health(port), 60, f"{name} to listen", child)
    return child, port, startPort


def run(procs: Processes, binary: str, models: str, work: str, args: Any) -> dict:
    """
    Start every side, then alternate between them: C{--rounds} rounds of
    swaps, then the no-swap requests, one of each kind in turn.
    """
    routerChild, routerPort = startRouter(procs, binary, models, work)
    child, port, startPort = startLlamaSwap(
        procs, binary, models, work, "llamaswap", REPO, args.memory_budget
    )
    clients = {"router": Client(routerPort), "llamaswap": Client(port)}
    pids = {"router": routerChild.pid, "llamaswap": child.pid}
    if args.baseline:
        other, otherPort, _ = startLlamaSwap(
            procs, binary, models, work, "baseline", os.path.abspath(args.baseline),
            args.memory_budget,
        )
        clients["baseline"] = Client(otherPort)
        pids["baseline"] = other.pid
    time.sleep(1.0)
    idle = rssKiB(child.pid)
    first = MODELS[0][0]
    for client in clients.values():
        client.whole(first)  # loads the first model: not a swap
        client.whole(first)
    result: dict[str, Any] = {name: {"swap": []} for name in clients}
    loaded = {name: first for name in clients}
    per = max(1, args.swaps // args.rounds)
    cpu = {name: 0.0 for name in clients}
    for _ in range(args.rounds):
        for name, client in clients.items():
            before = cpuSeconds(pids[name])[0]
            with sampling(args, pids[name] if name == "llamaswap" else None, "swap"):
                times, loaded[name] = swapRound(client, per, loaded[name])
            cpu[name] += cpuSeconds(pids[name])[0] - before
            result[name]["swap"] += times
    for name in cpu:
        result[name]["cpu per swap"] = cpu[name] / len(result[name]["swap"])
    # Every side has the same model loaded now; llamaswap's server is
    # also asked directly.
    model = loaded["llamaswap"]
    assert set(loaded.values()) == {model}
    sides = dict(clients, direct=Client(startPort + [n for n, _ in MODELS].index(model)))
    for kind in ("whole", "first event"):
        for side in sides:
            result.setdefault(side, {})[kind] = []
        with sampling(args, pids["llamaswap"], kind.replace(" ", "-")):
            for i in range(args.requests + 5):
                for side, client in sides.items():
                    took = client.whole(model) if kind == "whole" else client.firstEvent(model)
                    if i >= 5:
                        result[side][kind].append(took)
    for client in sides.values():
        client.close()
    launchers = [pid for pid in descendantsOf(child.pid) if "_launcher.py" in cmdlineOf(pid)]
    # A launcher's child forked ahead for its next server (a "starter") is
    # a launcher too until it execs: counted apart.
    starters = {c for pid in launchers for c in descendantsOf(pid)} & set(launchers)
    launchers = [pid for pid in launchers if pid not in starters]
    # A keeper has its server as a child; an idle standby only its starter.
    keepers = [
        pid for pid in launchers
        if any("_launcher.py" not in cmdlineOf(c) for c in descendantsOf(pid))
    ]
    result["rss"] = {
        "llamaswap idle": idle,
        "llamaswap now": rssKiB(child.pid),
        "keeper": [rssKiB(pid) for pid in keepers],
        "standby": [rssKiB(pid) for pid in launchers if pid not in keepers],
        "starter": [rssKiB(pid) for pid in starters],
        "starter private": [privateKiB(pid) for pid in starters],
    }
    if args.verbose:
        for name in clients:
            print(name, " ".join(f"{t * 1000:.1f}" for t in result[name]["swap"]))
    return result


def p(values: list[float], q: float) -> float:
    """
    The C{q} quantile as L{percentiles} prints it (the median for 0.5).
    """
    ordered = sorted(values)
    if q == 0.5:
        return statistics.median(ordered)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(result: dict, args: Any, binary: str) -> None:
    router, swap, direct = result["router"], result["llamaswap"], result["direct"]
    print(f"llama-server: {binary}")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{len(swap['swap'])} swaps each in {args.rounds} alternating rounds, "
          f"{args.requests} no-swap requests each, interleaved")
    budget = args.memory_budget or "none (swaps never overlap)"
    print(f"llamaswap config: both models in one swap group, memoryBudget: {budget}")
    labelled = [("router mode", router), ("llamaswap", swap)]
    if "baseline" in result:
        labelled.append((f"llamaswap baseline ({args.baseline})", result["baseline"]))
    labelled.append(("llamaswap's llama-server, directly", direct))
    for label, side in labelled:
        print(f"{label}:")
        for name in ("swap", "whole", "first event"):
            if name in side:
                print(f"  {name:<12} {percentiles(side[name])}")
        if "cpu per swap" in side:
            print(f"  CPU per swap (its own process, not the servers') "
                  f"{side['cpu per swap'] * 1000:.1f} ms")
    print("swap, llamaswap / router:")
    for q in (0.5, 0.9):
        print(f"  p{int(q * 100)}          {p(swap['swap'], q) / p(router['swap'], q):.2f}x")
    if "baseline" in result:
        print("swap, baseline / router:")
        for q in (0.5, 0.9):
            ratio = p(result["baseline"]["swap"], q) / p(router["swap"], q)
            print(f"  p{int(q * 100)}          {ratio:.2f}x")
    print("added to a warm server (p50 through - p50 direct):")
    for name in ("whole", "first event"):
        for label, side in [(n, result[n]) for n in ("llamaswap", "baseline", "router")
                            if n in result]:
            added = statistics.median(side[name]) - statistics.median(direct[name])
            print(f"  {name:<12} {label:<10} {added * 1000:+.2f} ms")
    rss = result["rss"]

    def mb(values: list[int]) -> str:
        return ", ".join(f"{v / 1024:.1f}" for v in values) or "none"

    print(f"RSS: llamaswap idle {rss['llamaswap idle'] / 1024:.1f} MB, after the run "
          f"{rss['llamaswap now'] / 1024:.1f} MB; keeper per running upstream "
          f"{mb(rss['keeper'])} MB; idle standby launcher {mb(rss['standby'])} MB; "
          f"starters (forked ahead) RSS {mb(rss['starter'])} MB, of it private "
          f"{mb(rss['starter private'])} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swaps", type=int, default=30)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--verbose", action="store_true", help="print every swap's time")
    parser.add_argument("--baseline", metavar="DIR", default=None,
                        help="also run the llamaswap checked out in DIR (e.g. an older commit)")
    parser.add_argument("--py-spy", metavar="PREFIX", default=None,
                        help="sample llamaswap with py-spy into PREFIX-swap.txt, PREFIX-whole.txt, "
                        "PREFIX-first-event.txt")
    parser.add_argument("--py-spy-bin", default="py-spy")
    parser.add_argument("--memory-budget", default="auto",
                        help="llamaswap's memoryBudget (auto, a size, or '' for none);"
                        " with one, swaps overlap the stop with the next start")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate between the two sides this many times")
    args = parser.parse_args()
    args.samples = []

    from test.integration.gguf import writeTinyModel
    from test.integration.llamaserver import findLlamaServer

    binary = findLlamaServer()
    work = tempfile.mkdtemp(prefix="llamaswap-bench-router-")
    models = os.path.join(work, "models")
    os.makedirs(models)
    for name, seed in MODELS:
        writeTinyModel(os.path.join(models, f"{name}.gguf"), seed, name=name)
    procs = Processes()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        result = run(procs, binary, models, work, args)
    finally:
        procs.stopAll()
    report(result, args, binary)
    for label, path in args.samples:
        summariseSamples(label, path, 25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
