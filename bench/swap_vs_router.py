"""
Side by side: llama.cpp's own router mode against llamaswap, on the same two
tiny generated models and the same C{llama-server} binary.  Not a test.

Each side is a separate process on 127.0.0.1 driven by this script's plain
blocking HTTP/1.1 keep-alive client (C{http.client}, the same for both):

 - router: C{llama-server --models-dir DIR --models-max 1} (it loads a model
   on demand in a child process and unloads the other);
 - llamaswap: C{twistd -n llamaswap} with both models in one swap group
   (C{test/integration/realconfig.py}), each run by the same llama-server
   with the same flags the router gives its children (C{-c 256 --threads 1
   --parallel 1}).

Measured, as p50/p90/max:

 - swap: C{--swaps} non-streamed chat completions (C{max_tokens} 1)
   alternating between the models, so each one stops a server and starts
   the other: request sent until the whole reply is read;
 - no-swap: C{--requests} requests for the loaded model (a whole
   non-streamed reply, and a stream's first C{data:} event);
 - direct: the same no-swap requests sent straight to the llama-server
   llamaswap started (interleaved with the ones through llamaswap), so
   "added" is what llamaswap adds to a warm server;
 - llamaswap's idle RSS and the keeper's (the per-upstream launcher).

Run: python bench/swap_vs_router.py [--swaps 30] [--requests 200]
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
from proxy import Processes, descendantsOf, freePort, twistdCommand, waitFor  # noqa: E402

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


def health(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/health")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def swaps(client: Client, count: int) -> list[float]:
    client.whole(MODELS[0][0])  # load the first model: not a swap
    client.whole(MODELS[0][0])
    times = []
    for i in range(count):
        times.append(client.whole(MODELS[(i + 1) % 2][0]))
    return times


def noSwap(measure: Callable[[str], float], count: int, model: str) -> list[float]:
    for _ in range(5):
        measure(model)
    return [measure(model) for _ in range(count)]


def runRouter(procs: Processes, binary: str, models: str, work: str, args: Any) -> dict:
    port = freePort()
    argv = [binary, "--models-dir", models, "--models-max", "1",
            "--host", "127.0.0.1", "--port", str(port), *SERVER_ARGS]
    child = procs.start("router", argv, dict(os.environ), os.path.join(work, "router.log"))
    waitFor(lambda: health(port), 60, "the router to listen", child)
    client = Client(port)
    try:
        result = {"swap": swaps(client, args.swaps)}
        model = MODELS[args.swaps % 2][0]
        result["whole"] = noSwap(client.whole, args.requests, model)
        result["first event"] = noSwap(client.firstEvent, args.requests, model)
    finally:
        client.close()
    return result


def runLlamaSwap(procs: Processes, binary: str, models: str, work: str, args: Any) -> dict:
    from test.integration.realconfig import RealModel, realConfig

    startPort = freePort()
    config = realConfig(
        models, [RealModel(name, seed) for name, seed in MODELS], binary=binary,
        startPort=startPort, proxyHost="127.0.0.1",
    )
    configPath = os.path.join(work, "llamaswap.yaml")
    with open(configPath, "w") as f:
        f.write(config + "logLevel: warn\n")
    port = freePort()
    runtime = os.path.join(work, "runtime")
    os.makedirs(runtime, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    env["RUNTIME_DIRECTORY"] = runtime
    env["PYTHONPATH"] = REPO
    argv = [*twistdCommand(), "-n", "--pidfile=", "llamaswap", "--config", configPath,
            "--listen", f"127.0.0.1:{port}"]
    child = procs.start("llamaswap", argv, env, os.path.join(work, "llamaswap.log"))
    waitFor(lambda: health(port), 60, "llamaswap to listen", child)
    time.sleep(1.0)
    idle = rssKiB(child.pid)
    client = Client(port)
    try:
        result: dict[str, Any] = {"swap": swaps(client, args.swaps)}
        index = args.swaps % 2
        model = MODELS[index][0]
        direct = Client(startPort + index)
        # Interleave: both see the same machine load.
        pairs = [(client.whole, direct.whole), (client.firstEvent, direct.firstEvent)]
        for name, (through, straight) in zip(("whole", "first event"), pairs):
            for _ in range(5):
                through(model)
                straight(model)
            a, b = [], []
            for _ in range(args.requests):
                a.append(through(model))
                b.append(straight(model))
            result[name] = a
            result[f"direct {name}"] = b
        direct.close()
        keepers = [p for p in descendantsOf(child.pid) if "_launcher.py" in _cmdline(p)]
        result["rss"] = {"llamaswap idle": idle, "llamaswap now": rssKiB(child.pid),
                         "keeper": [rssKiB(p) for p in keepers]}
    finally:
        client.close()
    return result


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(router: dict, swap: dict, args: Any, binary: str) -> None:
    print(f"llama-server: {binary}")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{args.swaps} swaps, {args.requests} no-swap requests each")
    for label, result in (("router mode", router), ("llamaswap", swap)):
        print(f"{label}:")
        for name in ("swap", "whole", "first event"):
            print(f"  {name:<12} {percentiles(result[name])}")
    print("llamaswap straight to its warm llama-server:")
    for name in ("whole", "first event"):
        print(f"  {name:<12} {percentiles(swap['direct ' + name])}")
    print("ratios (llamaswap / router):")
    for q in (0.5, 0.9):
        ratio = p(swap["swap"], q) / p(router["swap"], q)
        print(f"  swap p{int(q * 100)}     {ratio:.2f}x")
    print("added by llamaswap to a warm server (p50 through - p50 direct):")
    for name in ("whole", "first event"):
        added = statistics.median(swap[name]) - statistics.median(swap["direct " + name])
        print(f"  {name:<12} {added * 1000:+.2f} ms")
    rss = swap["rss"]
    print(f"RSS: llamaswap idle {rss['llamaswap idle'] / 1024:.1f} MB, after the run "
          f"{rss['llamaswap now'] / 1024:.1f} MB; keeper per upstream "
          f"{', '.join(f'{k / 1024:.1f}' for k in rss['keeper'])} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swaps", type=int, default=30)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--only", choices=("router", "llamaswap"), default=None)
    args = parser.parse_args()

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
    empty = {"swap": [0.0], "whole": [0.0], "first event": [0.0]}
    try:
        router = empty
        if args.only != "llamaswap":
            router = runRouter(procs, binary, models, work, args)
            procs.stopAll()
        swap = dict(empty, **{"direct whole": [1.0], "direct first event": [1.0],
                              "rss": {"llamaswap idle": 0, "llamaswap now": 0, "keeper": []}})
        if args.only != "router":
            swap = runLlamaSwap(procs, binary, models, work, args)
    finally:
        procs.stopAll()
    report(router, swap, args, binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
