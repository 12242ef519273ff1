"""
How long a configuration reload takes, before anything is applied.

 - load + diff: re-reading a configuration of N models from disk with the
   running ports pinned (L{llamaswap.config.load.loadConfig}) and comparing
   it with the running one (L{llamaswap.config.diff.diffConfigs}); median
   and max of --rounds runs, for each N in --models;
 - reload + apply: the same through the app's L{Reloader} and
   L{LlamaSwap.applyConfig} (one model restarted, the others kept; nothing
   running, on a fake reactor), end to end, median and max;
 - notice: from the rename of a new file over the watched one to the
   L{llamaswap.watch.ConfigWatcher} callback, with inotify and with the
   default debounce (0.3 s) subtracted out, median of --rounds.

Run: /work/venv/bin/python bench/reload.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llamaswap.config.diff import diffConfigs, pinnedPorts  # noqa: E402
from llamaswap.config.load import loadConfig  # noqa: E402


def configText(count: int, changed: int = -1) -> str:
    lines = ["startPort: 20000", "models:"]
    for i in range(count):
        extra = " --changed" if i == changed else ""
        lines.append(f"  model{i:04d}:")
        lines.append(f"    cmd: llama-server --port ${{PORT}} -m /m/{i}.gguf{extra}")
        lines.append("    ttl: 300")
        lines.append(f"    aliases: [alias{i}]")
    return "\n".join(lines) + "\n"


def loadAndDiff(count: int, rounds: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as base:
        path = os.path.join(base, "config.yaml")
        with open(path, "w") as f:
            f.write(configText(count))
        running = loadConfig(path).config
        with open(path, "w") as f:
            f.write(configText(count, changed=count // 2))
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            new = loadConfig(path, reservedPorts=pinnedPorts(running)).config
            diff = diffConfigs(running, new)
            times.append(time.perf_counter() - start)
        assert len(diff.restarted) == 1 and len(diff.kept) == count - 1, diff.describe()
    return statistics.median(times), max(times)


def reloadApply(count: int, rounds: int) -> tuple[float, float]:
    import tempfile as _tempfile

    from twisted.internet.testing import MemoryReactorClock

    from llamaswap.app import LlamaSwap

    with tempfile.TemporaryDirectory() as base:
        path = os.path.join(base, "config.yaml")
        with open(path, "w") as f:
            f.write(configText(count))
        app = LlamaSwap(
            loadConfig(path).config,
            MemoryReactorClock(),
            configPaths=(path, None),
            runtimeDir=_tempfile.mkdtemp(dir=base),
        )
        times = []
        for i in range(rounds):
            with open(path, "w") as f:
                f.write(configText(count, changed=count // 2 if i % 2 == 0 else -1))
            start = time.perf_counter()
            d = app.reloader.reload("bench")
            times.append(time.perf_counter() - start)
            result = d.result  # the fake reactor never waits: fired already
            assert result.ok and list(result.diff.restarted) == [f"model{count // 2:04d}"], result
    return statistics.median(times), max(times)


def notice(rounds: int) -> float:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, ensureDeferred

    from llamaswap.watch import ConfigWatcher

    delays: list[float] = []

    async def run(base: str) -> None:
        path = os.path.join(base, "config.yaml")
        with open(path, "w") as f:
            f.write("models: {}\n")
        waiting: list[Deferred[None]] = []

        def changed(paths: tuple[str, ...]) -> None:
            waiting.pop().callback(None)

        watcher = ConfigWatcher([path], changed, reactor, debounce=0.3, inotifyReactor=reactor)
        watcher.startService()
        try:
            for i in range(rounds):
                d: Deferred[None] = Deferred()
                waiting.append(d)
                start = time.perf_counter()
                with open(path + ".tmp", "w") as f:
                    f.write(f"version: {i}\n")
                os.rename(path + ".tmp", path)
                await d
                delays.append(time.perf_counter() - start - watcher.debounce)
        finally:
            watcher.stopService()

    with tempfile.TemporaryDirectory() as base:
        d = ensureDeferred(run(base))
        d.addBoth(lambda _: reactor.stop())
        reactor.run()
    return statistics.median(delays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'models':>8}  {'load+diff p50':>14}  {'max':>10}")
    for count in args.models:
        median, worst = loadAndDiff(count, args.rounds)
        print(f"{count:>8}  {median * 1000:>11.1f} ms  {worst * 1000:>7.1f} ms")
    print(f"{'models':>8}  {'reload+apply p50':>17}  {'max':>10}")
    for count in args.models:
        median, worst = reloadApply(count, args.rounds)
        print(f"{count:>8}  {median * 1000:>14.1f} ms  {worst * 1000:>7.1f} ms")
    delay = notice(args.rounds)
    print(f"inotify notice after the debounce, p50: {delay * 1000:.1f} ms")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
