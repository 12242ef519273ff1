"""
Benchmark of the prompt cache: what a swap back costs a long conversation
with and without C{promptCache}.  Not a test.

llamaswap runs in this process on 127.0.0.1 with two tiny generated models
(C{test/integration/gguf.py}) in one swap group, served by the cached
C{llama-server} (C{bash .ci/build-llama-server}).  Each of C{--rounds}
rounds sends a conversation of a few thousand tokens to alpha, one short
request to beta (the swap), then the same conversation continued by one
user turn to alpha again (the swap back), all non-streamed with
C{max_tokens} 1, so the swap back's response time is its time to first
token.  It runs once with C{promptCache: true} and once with C{false} and
prints, as p50/p90/max:

 - prefill: C{timings.prompt_n} of the swap back (tokens llama-server had
   to process; C{cache_n} is the rest);
 - prompt ms: C{timings.prompt_ms} of the swap back;
 - TTFT: the swap back's response time (start of alpha, restore, prefill
   and one token);
 - save / restore: what the prompt cache added to alpha's stop (the swap
   to beta) and to its start (the swap back), from its C{promptCache}
   events.

Run: python bench/promptcache.py [--rounds 5] [--repeat 70]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from common import percentiles, startRealApp  # noqa: E402

PHRASE = "hello world the model swap llama proxy"


def _count(values: list[float]) -> str:
    ordered = sorted(values)
    return f"p50 {ordered[len(ordered) // 2]:7.0f}   min {ordered[0]:7.0f}   max {ordered[-1]:7.0f}"


async def measure(reactor: Any, promptCache: bool, rounds: int, repeat: int) -> dict:
    import treq
    from twisted.web.client import HTTPConnectionPool

    from test.integration.realconfig import RealModel

    # The tiny models declare a 2048-token training context, which caps -c.
    longer = ("--override-kv", "llama.context_length=int:8192")
    models = (
        RealModel("alpha", 11, ctx=8192, args=longer),
        RealModel("beta", 12, ctx=8192, args=longer),
    )
    kv = tempfile.mkdtemp(prefix="llamaswap-bench-promptcache-kv-")
    extra = f"promptCache: {'true' if promptCache else 'false'}\npromptCacheDir: {kv}\n"
    app, port, url = startRealApp(reactor, "llamaswap-bench-promptcache-", models, extra=extra)
    pool = HTTPConnectionPool(reactor, persistent=False)
    cacheEvents: list[dict] = []
    app.observability.events.subscribe(
        lambda event: cacheEvents.append(event.data) if event.kind == "promptCache" else None
    )

    async def ask(model: str, messages: list) -> tuple[dict, float]:
        body = {"model": model, "messages": messages, "max_tokens": 1, "temperature": 0}
        sent = reactor.seconds()
        response = await treq.post(url, json=body, pool=pool, timeout=300)
        answer = await response.json()
        if response.code != 200:
            raise RuntimeError(f"{model}: {response.code} {answer}")
        return answer, reactor.seconds() - sent

    rows: dict[str, list[float]] = {
        k: [] for k in ("first prefill", "prefill", "prompt ms", "ttft", "save", "restore")
    }
    try:
        for i in range(rounds):
            # A different conversation each round, so nothing is reused
            # from the previous round's cache.
            user = f"round {i} " + " ".join([PHRASE] * repeat)
            first, _ = await ask("alpha", [{"role": "user", "content": user}])
            rows["first prefill"].append(first["timings"]["prompt_n"])
            cacheEvents.clear()
            await ask("beta", [{"role": "user", "content": "hello"}])
            messages = [
                {"role": "user", "content": user},
                {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
                {"role": "user", "content": "yes no"},
            ]
            back, elapsed = await ask("alpha", messages)
            rows["prefill"].append(back["timings"]["prompt_n"])
            rows["prompt ms"].append(back["timings"]["prompt_ms"] / 1000)
            rows["ttft"].append(elapsed)
            for data in cacheEvents:
                if data["model"] == "alpha":
                    rows[data["action"]].append(data["ms"] / 1000)
    finally:
        await port.stopListening()
        await app.stopService()
        await pool.closeCachedConnections()
    return rows


async def run(reactor: Any, rounds: int, repeat: int) -> int:
    results = {}
    for promptCache in (True, False):
        results[promptCache] = await measure(reactor, promptCache, rounds, repeat)
    print(
        f"{rounds} swap-backs of a conversation on tiny llama-server models "
        f"({os.cpu_count()} CPUs)"
    )
    first = results[True]["first prefill"]
    print(f"  prompt tokens of the conversation: {_count(first)}")
    for promptCache in (True, False):
        rows = results[promptCache]
        print(f"  promptCache: {'true' if promptCache else 'false'}")
        print(f"    prefill tokens  {_count(rows['prefill'])}")
        print(f"    prompt time     {percentiles(rows['prompt ms'])}")
        print(f"    TTFT            {percentiles(rows['ttft'])}")
        if rows["save"]:
            print(f"    save (alpha)    {percentiles(rows['save'])}")
        if rows["restore"]:
            print(f"    restore (alpha) {percentiles(rows['restore'])}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--repeat", type=int, default=70,
        help="repetitions of an 8-word phrase in the prompt (70: about 3000 tokens)",
    )
    args = parser.parse_args()
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    react(lambda reactor: Deferred.fromCoroutine(run(reactor, args.rounds, args.repeat)))


if __name__ == "__main__":
    main()
