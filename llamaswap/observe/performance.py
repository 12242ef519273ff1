# -*- test-case-name: test.observe.test_performance -*-
"""
The performance monitor behind C{GET /api/performance} (HTTP behaviour
section 7.10): every C{performance.every} seconds a system sample (per-core
CPU use, memory, swap, load average, network counters from C{/proc}) and a
GPU snapshot (C{nvidia-smi}, C{rocm-smi}), each kept in a ring buffer
holding one hour.

The C{/proc} texts come from an injected reader and GPU queries from an
injected command runner, both parsed by L{llamaswap.observe.sysstats}.  A
GPU query runs in a child process and never blocks the reactor; a tick
arriving while the previous query still runs skips its GPU query (the
queries never overlap).  A missing C{nvidia-smi}/C{rocm-smi} means no GPU
statistics and is logged once.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Callable, Sequence

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..config.model import PerformanceConfig
from . import sysstats
from .commands import CommandRunner, Locator, locate
from .lateservice import LateStartService

log = Logger()

#: How long the ring buffers reach back, in seconds.
RETENTION = 3600.0
#: The longest a GPU query may run, in seconds.
GPU_QUERY_TIMEOUT = 10.0

#: Reads a file under C{/proc} by relative name (C{"stat"}, C{"net/dev"}).
ProcReader = Callable[[str], str]


def readProc(name: str) -> str:
    """
    The text of C{/proc/<name>}.
    """
    with open("/proc/" + name, encoding="utf-8", errors="replace") as f:
        return f.read()


@frozen
class GPUSource:
    """
    A GPU statistics tool: its executable name, arguments and parser.
    """

    binary: str
    args: tuple[str, ...]
    parse: Callable[[str, int], list[dict[str, Any]]]


GPU_SOURCES = (
    GPUSource("nvidia-smi", sysstats.NVIDIA_STATS_ARGS, sysstats.parseNvidiaStats),
    GPUSource("rocm-smi", sysstats.ROCM_STATS_ARGS, sysstats.parseRocmStats),
)


def capacityFor(every: float) -> int:
    """
    How many samples one hour holds at one sample every C{every} seconds.
    """
    return max(1, math.ceil(RETENTION / every))


class PerformanceMonitor(LateStartService):
    """
    Samples on C{clock} while running and enabled; L{snapshot} is the
    C{/api/performance} document.

    @ivar enabled: whether sampling is configured on.
    @ivar every: the sampling period in seconds.
    """

    def __init__(
        self,
        clock: IReactorTime,
        runner: CommandRunner,
        config: PerformanceConfig = PerformanceConfig(),
        *,
        reader: ProcReader = readProc,
        locator: Locator = locate,
        sources: Sequence[GPUSource] = GPU_SOURCES,
    ) -> None:
        self.clock = clock
        self.runner = runner
        self.reader = reader
        self.locator = locator
        self.sources = tuple(sources)
        self.enabled = not config.disabled
        self.every = config.every
        self.system: deque[tuple[int, dict[str, Any]]] = deque(maxlen=capacityFor(self.every))
        self.gpus: deque[tuple[int, list[dict[str, Any]]]] = deque(
            maxlen=capacityFor(self.every)
        )
        self._loop: LoopingCall | None = None
        self._cpu: dict[str, sysstats.CPUTimes] | None = None
        self._query: Deferred[Any] | None = None
        self._reported: set[str] = set()

    # -- lifecycle -----------------------------------------------------------

    def startLate(self) -> object:
        return self._startLoop()

    def stopService(self) -> None:
        super().stopService()
        self._stopLoop()

    def configure(self, config: PerformanceConfig) -> None:
        """
        Apply a reloaded C{performance:} section in place (samples kept
        up to the new hour's capacity).
        """
        enabled, every = not config.disabled, config.every
        if (enabled, every) == (self.enabled, self.every):
            return
        self.enabled, self.every = enabled, every
        capacity = capacityFor(every)
        self.system = deque(self.system, maxlen=capacity)
        self.gpus = deque(self.gpus, maxlen=capacity)
        if self.running:
            self._stopLoop()
            self._startLoop()

    def _startLoop(self) -> None:
        if not self.enabled or self._loop is not None:
            return
        loop = LoopingCall(self.tick)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.every, now=True).addErrback(
            lambda f: log.failure("performance sampling stopped", f)
        )

    def _stopLoop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        query, self._query = self._query, None
        if query is not None:
            query.cancel()
        self._cpu = None

    # -- sampling ------------------------------------------------------------

    def tick(self) -> None:
        """
        Take one system sample and start one GPU query (unless the last
        one still runs).  Never raises: a L{LoopingCall} would stop.
        """
        stamp = sysstats.microseconds(self.clock.seconds())
        try:
            self._sampleSystem(stamp)
        except Exception as e:
            self._reportOnce("system", "system statistics unavailable: {error}", error=str(e))
        else:
            self._reported.discard("system")
        if self._query is None:
            self._queryGPUs(stamp)

    def _sampleSystem(self, stamp: int) -> None:
        cores = sysstats.parseProcStat(self.reader("stat"))
        previous, self._cpu = self._cpu, cores
        if previous is None:
            return  # CPU use needs two readings: this one is the baseline
        try:
            net = sysstats.parseNetDev(self.reader("net/dev"))
        except OSError:
            net = []
        sample = sysstats.systemSample(
            stamp,
            sysstats.cpuUtilisation(previous, cores),
            sysstats.parseMeminfo(self.reader("meminfo")),
            sysstats.parseLoadavg(self.reader("loadavg")),
            net,
        )
        self.system.append((stamp, sample))

    def _queryGPUs(self, stamp: int) -> None:
        queries = []
        for source in self.sources:
            path = self.locator(source.binary)
            if path is None:
                continue
            d = self.runner([path, *source.args], min(GPU_QUERY_TIMEOUT, self.every))
            d.addCallback(self._parsed, source, stamp)
            queries.append(d.addErrback(self._failed, source))
        if not queries:
            names = " or ".join(s.binary for s in self.sources)
            self._reportOnce("nogpu", "no {names} on PATH: no GPU statistics", names=names)
            return
        self._reported.discard("nogpu")
        query: Deferred[list[list[dict[str, Any]]]] = gatherResults(queries)
        self._query = query
        query.addCallback(self._collected, stamp, query)
        query.addErrback(lambda f: log.failure("GPU statistics failed", f))

    def _parsed(self, output: bytes, source: GPUSource, stamp: int) -> list[dict[str, Any]]:
        stats = source.parse(output.decode("utf-8", "replace"), stamp)
        if source.binary in self._reported:
            self._reported.discard(source.binary)
            log.info("{binary} answers again", binary=source.binary)
        return stats

    def _failed(self, reason: Failure, source: GPUSource) -> list[dict[str, Any]]:
        if reason.check(CancelledError):
            return []
        self._reportOnce(
            source.binary, "{binary} failed: {error}", binary=source.binary,
            error=reason.getErrorMessage(),
        )
        return []

    def _collected(
        self, results: list[list[dict[str, Any]]], stamp: int, query: Deferred[Any]
    ) -> None:
        if self._query is not query:
            return  # stopped meanwhile
        self._query = None
        snapshot = [stat for stats in results for stat in stats]
        if snapshot:
            self.gpus.append((stamp, snapshot))

    def _reportOnce(self, key: str, message: str, **fields: Any) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        log.warn(message, **fields)

    # -- reading -------------------------------------------------------------

    def snapshot(self, after: int | None = None) -> dict[str, Any]:
        """
        The C{/api/performance} document: C{sys_stats} and C{gpu_stats}
        oldest first, L{None} while empty; with C{after} (microseconds
        since the epoch) only samples strictly later, always as lists.
        """
        if not self.enabled:
            return {"enabled": False}
        if after is None:
            system = [s for _, s in self.system] or None
            gpus = sysstats.flatten(g for _, g in self.gpus) or None
        else:
            system = [s for stamp, s in self.system if stamp > after]
            gpus = sysstats.flatten(g for stamp, g in self.gpus if stamp > after)
        return {"enabled": True, "sys_stats": system, "gpu_stats": gpus}

    def latest(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """
        The newest system sample and the newest GPU snapshot (for gauges).
        """
        system = self.system[-1][1] if self.system else None
        gpus = self.gpus[-1][1] if self.gpus else []
        return system, gpus


__all__ = ["GPUSource", "GPU_SOURCES", "PerformanceMonitor", "capacityFor", "readProc"]
