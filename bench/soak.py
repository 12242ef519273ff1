"""
Soak benchmark: many swaps under concurrent load, checking that nothing
breaks.  Not a test.

C{twistd -n llamaswap} runs as a separate process with three demo models
in one exclusive swap group, so serving a model stops the others.  C{--clients}
concurrent clients each send chat completions (half of them streamed) for a
random model until llamaswap has started upstreams C{--swaps} times
(counted from its "started ... as pid" log lines).  It reports:

 - invalid responses: not 200, not a chat completion, a stream without its
   C{[DONE]};
 - hangs: requests without an answer within C{--request-timeout} s;
 - leftover processes: descendants of llamaswap alive after its SIGTERM exit;
 - llamaswap's RSS after the first answer and at the end.

Run: python bench/soak.py [--swaps 10000] [--clients 8] [--quick]
[--llama-server PATH] (C{--quick}: 200 swaps; C{--llama-server}: the three
models are real llama-servers on tiny generated GGUFs instead of the demo,
whose swaps take tens of milliseconds instead of a Python start, so 10,000
swaps fit in minutes).  Exits 1 if anything above is not zero.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

MODELS = ("a", "b", "c")


def commands(base: str, llamaServer: str | None) -> dict[str, str]:
    """
    Each model's C{cmd}: the demo upstream, or C{llamaServer} on a tiny
    generated model of its own.
    """
    if llamaServer is None:
        demo = f"{sys.executable} -m llamaswap.demo --port ${{PORT}} --silent --tokens 4"
        return {m: demo for m in MODELS}
    from test.integration.gguf import writeTinyModel

    out = {}
    for seed, m in enumerate(MODELS, 1):
        path = writeTinyModel(os.path.join(base, f"{m}.gguf"), seed, name=m)
        out[m] = (
            f"{llamaServer} --port ${{PORT}} --host 127.0.0.1 -m {path} --alias {m}"
            " -c 256 --threads 1 --parallel 1 -n 4"
        )
    return out


def config(startPort: int, cmds: dict[str, str]) -> str:
    members = "\n".join(f"  {m}:\n    cmd: {cmds[m]}\n    unloadTimeout: 5" for m in MODELS)
    return (
        f"startPort: {startPort}\nlogToStdout: proxy\nmodels:\n{members}\n"
        "groups:\n  g:\n    swap: true\n    exclusive: true\n"
        f"    members: [{', '.join(MODELS)}]\n"
    )


def rssKiB(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def run(reactor: Any, options: argparse.Namespace) -> int:
    import treq
    from twisted.internet.defer import Deferred, DeferredList
    from twisted.internet.protocol import ProcessProtocol
    from twisted.web.client import HTTPConnectionPool

    from llamaswap.upstream.leftovers import waitGone
    from test.twistdproc import descendants, startPort
    from test.util import TWISTD, childEnv, freePort

    class Twistd(ProcessProtocol):
        def __init__(self) -> None:
            self.output = b""
            self.started = 0
            self.ended: Deferred[Any] = Deferred()

        def childDataReceived(self, fd: int, data: bytes) -> None:
            self.output = (self.output + data)[-200_000:]
            self.started += data.count(b" as pid ")

        def processEnded(self, reason: Any) -> None:
            self.ended.callback(None)

    base = tempfile.mkdtemp(prefix="llamaswap-soak-")
    path = os.path.join(base, "config.yaml")
    with open(path, "w") as f:
        f.write(config(int(startPort(8).split()[1]), commands(base, options.llama_server)))
    port = freePort()
    proto = Twistd()
    args = TWISTD + ["-n", "--pidfile=", "llamaswap", "--config", path,
                     "--listen", f"127.0.0.1:{port}"]
    env = childEnv(XDG_RUNTIME_DIR=base)
    transport = reactor.spawnProcess(proto, args[0], args, env=env, path=base)
    pid = transport.pid
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    pool = HTTPConnectionPool(reactor)
    pool.maxPersistentPerHost = options.clients
    counts = {"ok": 0, "invalid": 0, "hang": 0}
    examples: list[str] = []
    seen: set[int] = set()
    rss: dict[str, int] = {}
    started = time.monotonic()

    async def one(model: str, stream: bool) -> None:
        body = {"model": model, "stream": stream, "max_tokens": 4,
                "messages": [{"role": "user", "content": "hello"}]}
        try:
            response = await treq.post(url, json=body, pool=pool,
                                       timeout=options.request_timeout)
            text = (await response.content()).decode("utf-8", "replace")
        except Exception as e:
            kind = "hang" if "Timeout" in type(e).__name__ or "Cancel" in type(e).__name__ else "invalid"
            counts[kind] += 1
            examples.append(f"{model}: {type(e).__name__}: {e}")
            return
        valid = response.code == 200 and (
            text.rstrip().endswith("data: [DONE]") if stream else "choices" in json.loads(text)
        )
        if valid:
            counts["ok"] += 1
            if "first" not in rss:
                rss["first"] = rssKiB(pid)
        else:
            counts["invalid"] += 1
            examples.append(f"{model}: {response.code} {text[:200]}")

    async def client(n: int) -> None:
        rng = random.Random(n)
        while proto.started < options.swaps and not proto.ended.called:
            await one(rng.choice(MODELS), rng.random() < 0.5)
            if len(seen) < 1000:
                seen.update(descendants(pid))

    try:
        for _ in range(300):
            try:
                r = await treq.get(f"http://127.0.0.1:{port}/health", pool=pool, timeout=2)
                await r.content()
                break
            except Exception:
                from twisted.internet.task import deferLater
                await deferLater(reactor, 0.1, lambda: None)
        await DeferredList([Deferred.fromCoroutine(client(n)) for n in range(options.clients)])
        rss["end"] = rssKiB(pid)
    finally:
        seen.update(descendants(pid))
        await pool.closeCachedConnections()
        if not proto.ended.called:
            os.kill(pid, signal.SIGTERM)
        await proto.ended
    left = await waitGone(seen, reactor, 10.0)
    for p in left:
        os.kill(p, signal.SIGKILL)
    elapsed = time.monotonic() - started
    requests = sum(counts.values())
    print(f"swaps (upstream starts): {proto.started} in {elapsed:.0f} s "
          f"with {options.clients} clients, {requests} requests")
    print(f"valid responses:        {counts['ok']}")
    print(f"invalid responses:      {counts['invalid']}")
    print(f"hangs (> {options.request_timeout:g} s):      {counts['hang']}")
    print(f"leftover processes:     {len(left)}")
    print(f"llamaswap RSS:          {rss.get('first', 0) / 1024:.1f} MiB after the first "
          f"answer, {rss.get('end', 0) / 1024:.1f} MiB at the end")
    for example in examples[:5]:
        print("  e.g.", example)
    return 0 if not (counts["invalid"] or counts["hang"] or left) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swaps", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="200 swaps")
    parser.add_argument("--llama-server", help="real llama-server binary for the models")
    options = parser.parse_args()
    if options.quick:
        options.swaps = 200
    from twisted.internet import task

    def go(r: Any) -> Any:
        from twisted.internet.defer import Deferred
        return Deferred.fromCoroutine(run(r, options))

    result: list[int] = []

    def done(code: int) -> int:
        result.append(code)
        return code

    task.react(lambda r: go(r).addCallback(done))


if __name__ == "__main__":
    main()
