"""
Tests for L{llamaswap.observe.performance}: the sampler on a L{Clock}
with a fake C{/proc} and a fake command runner.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.model import PerformanceConfig
from llamaswap.observe import sysstats
from llamaswap.observe.commands import CommandFailed, CommandTimeout
from llamaswap.observe.performance import PerformanceMonitor, capacityFor

from .sysfixtures import NVIDIA_STATS, PROC, PROC_STAT_2, ROCM_STATS

START = 1796363400.0


class FakeRunner:
    """
    Records each command; the test fires its Deferred.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], float, Deferred[bytes]]] = []
        self.cancelled = 0

    def __call__(self, argv: Sequence[str], timeout: float) -> Deferred[bytes]:
        def cancel(d: Deferred[bytes]) -> None:
            self.cancelled += 1

        d: Deferred[bytes] = Deferred(cancel)
        self.calls.append((list(argv), timeout, d))
        return d


class Warnings:
    def __init__(self, case: SynchronousTestCase) -> None:
        self.messages: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical):
                self.messages.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        case.addCleanup(globalLogPublisher.removeObserver, observe)


class MonitorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.proc = dict(PROC)
        self.runner = FakeRunner()
        self.binaries = {"nvidia-smi": "/usr/bin/nvidia-smi"}
        self.warnings = Warnings(self)

    def monitor(self, config: PerformanceConfig = PerformanceConfig()) -> PerformanceMonitor:
        def read(name: str) -> str:
            if name not in self.proc:
                raise OSError(2, "No such file", name)
            return self.proc[name]

        monitor = PerformanceMonitor(
            self.clock, self.runner, config, reader=read, locator=self.binaries.get
        )
        self.addCleanup(lambda: monitor.running and monitor.stopService())
        return monitor

    def start(self, config: PerformanceConfig = PerformanceConfig()) -> PerformanceMonitor:
        monitor = self.monitor(config)
        monitor.startService()
        self.clock.advance(0)
        return monitor

    def test_samples(self) -> None:
        """
        The first tick is the CPU baseline and starts a GPU query; from the
        next tick on each brings a system sample with per-core CPU use.
        """
        monitor = self.start()
        self.assertEqual(monitor.snapshot(), {"enabled": True, "sys_stats": None,
                                              "gpu_stats": None})
        [(argv, timeout, d)] = self.runner.calls
        self.assertEqual(argv, ["/usr/bin/nvidia-smi", *sysstats.NVIDIA_STATS_ARGS])
        self.assertEqual(timeout, 5.0)
        d.callback(NVIDIA_STATS.encode())
        self.proc["stat"] = PROC_STAT_2
        self.clock.advance(5)
        document = monitor.snapshot()
        [sample] = document["sys_stats"]
        self.assertEqual(sample["cpu_util_per_core"], [25.0, 75.0])
        self.assertEqual(sample["timestamp"], "2026-12-04T05:50:05.000000Z")
        self.assertEqual(sample["load_avg_1"], 0.52)
        self.assertEqual(
            [(g["id"], g["timestamp"]) for g in document["gpu_stats"]],
            [(0, "2026-12-04T05:50:00.000000Z"), (1, "2026-12-04T05:50:00.000000Z")],
        )

    def test_after(self) -> None:
        """
        C{after} keeps samples strictly later (GPU snapshots flattened),
        and gives lists even when nothing is newer.
        """
        monitor = self.start()
        for n in range(3):
            self.runner.calls[-1][2].callback(NVIDIA_STATS.encode())
            self.clock.advance(5)
        document = monitor.snapshot()
        self.assertEqual(len(document["sys_stats"]), 3)
        self.assertEqual(len(document["gpu_stats"]), 6)
        middle = sysstats.parseStamp(document["sys_stats"][1]["timestamp"])
        later = monitor.snapshot(middle)
        self.assertEqual([s["timestamp"] for s in later["sys_stats"]],
                         [document["sys_stats"][2]["timestamp"]])
        self.assertEqual(later["gpu_stats"], [])  # the 15 s query has not answered
        first = sysstats.parseStamp(document["sys_stats"][0]["timestamp"])
        self.assertEqual([g["timestamp"] for g in monitor.snapshot(first)["gpu_stats"]],
                         ["2026-12-04T05:50:10.000000Z"] * 2)
        self.assertEqual(monitor.snapshot(sysstats.microseconds(START + 3600)),
                         {"enabled": True, "sys_stats": [], "gpu_stats": []})

    def test_oneHour(self) -> None:
        """
        The buffers keep one hour: 720 samples at 5 s, the oldest dropped.
        """
        self.binaries.clear()
        monitor = self.start()
        self.clock.pump([5.0] * 800)
        samples = monitor.snapshot()["sys_stats"]
        self.assertEqual(len(samples), 720)
        self.assertEqual(samples[-1]["timestamp"], sysstats.formatStamp(
            sysstats.microseconds(START + 4000)))
        self.assertEqual(capacityFor(30), 120)
        self.assertEqual(capacityFor(7), 515)

    def test_noOverlap(self) -> None:
        """
        While a GPU query runs, ticks take system samples but start no
        second query.
        """
        monitor = self.start()
        self.clock.pump([5.0, 5.0, 5.0])
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.calls[0][2].callback(NVIDIA_STATS.encode())
        self.clock.advance(5)
        self.assertEqual(len(self.runner.calls), 2)
        self.assertEqual(len(monitor.snapshot()["sys_stats"]), 4)

    def test_missingBinary(self) -> None:
        """
        Without nvidia-smi or rocm-smi there are no GPU statistics, logged
        once.
        """
        self.binaries.clear()
        monitor = self.start()
        self.clock.pump([5.0] * 3)
        self.assertEqual(self.runner.calls, [])
        self.assertIsNone(monitor.snapshot()["gpu_stats"])
        self.assertEqual(len(monitor.snapshot()["sys_stats"]), 3)
        self.assertEqual(self.warnings.messages,
                         ["no nvidia-smi or rocm-smi on PATH: no GPU statistics"])

    def test_bothTools(self) -> None:
        """
        With both tools present both are asked; their GPUs make one
        snapshot once both answered.
        """
        self.binaries["rocm-smi"] = "/opt/rocm/bin/rocm-smi"
        monitor = self.start()
        [nvidia, rocm] = self.runner.calls
        self.assertEqual(rocm[0], ["/opt/rocm/bin/rocm-smi", *sysstats.ROCM_STATS_ARGS])
        nvidia[2].callback(NVIDIA_STATS.encode())
        self.assertIsNone(monitor.snapshot()["gpu_stats"])
        rocm[2].callback(ROCM_STATS.encode())
        self.assertEqual([g["name"] for g in monitor.snapshot()["gpu_stats"]],
                         ["NVIDIA GeForce RTX 4090", "NVIDIA A100-SXM4-80GB",
                          "Radeon RX 7900 XTX"])

    def test_failuresLoggedOnce(self) -> None:
        """
        A failing or hanging tool is logged once, not every 5 s; sampling
        goes on and a later good answer is recorded.
        """
        monitor = self.start()
        self.runner.calls[-1][2].errback(
            CommandFailed(["/usr/bin/nvidia-smi"], 9, "NVIDIA-SMI has failed")
        )
        self.clock.advance(5)
        self.runner.calls[-1][2].errback(CommandTimeout("nvidia-smi took longer than 5s"))
        self.clock.advance(5)
        self.runner.calls[-1][2].callback(b"garbage\n")
        self.clock.advance(5)
        self.assertEqual(len(self.warnings.messages), 1)
        self.assertIn("NVIDIA-SMI has failed", self.warnings.messages[0])
        self.runner.calls[-1][2].callback(NVIDIA_STATS.encode())
        self.assertEqual(len(monitor.snapshot()["gpu_stats"]), 2)
        self.assertEqual(len(monitor.snapshot()["sys_stats"]), 3)

    def test_noProc(self) -> None:
        """
        Without /proc (not Linux) there are no system samples, logged once;
        GPU samples still come.
        """
        self.proc.clear()
        monitor = self.start()
        self.runner.calls[-1][2].callback(NVIDIA_STATS.encode())
        self.clock.pump([5.0] * 2)
        self.assertIsNone(monitor.snapshot()["sys_stats"])
        self.assertEqual(len(monitor.snapshot()["gpu_stats"]), 2)
        self.assertEqual(len(self.warnings.messages), 1)
        self.assertIn("system statistics unavailable", self.warnings.messages[0])

    def test_noNetDev(self) -> None:
        """
        A missing /proc/net/dev only empties C{net_io}.
        """
        del self.proc["net/dev"]
        monitor = self.start()
        self.clock.advance(5)
        self.assertEqual(monitor.snapshot()["sys_stats"][0]["net_io"], [])

    def test_stop(self) -> None:
        """
        Stopping cancels the running query and the timer; its late answer
        is not recorded.
        """
        monitor = self.start()
        monitor.stopService()
        self.assertEqual(self.runner.cancelled, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertIsNone(monitor.snapshot()["gpu_stats"])

    def test_stopBeforeFirstTick(self) -> None:
        monitor = self.monitor()
        monitor.startService()
        monitor.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.runner.calls, [])

    def test_disabled(self) -> None:
        """
        C{performance: {disabled: true}}: nothing sampled, the document
        says so.
        """
        monitor = self.start(PerformanceConfig(disabled=True))
        self.clock.pump([5.0] * 3)
        self.assertEqual(self.runner.calls, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(monitor.snapshot(), {"enabled": False})

    def test_every(self) -> None:
        """
        C{performance.every} is the period; a GPU query gets at most that
        long (and at most 10 s).
        """
        monitor = self.start(PerformanceConfig(every=30.0))
        self.assertEqual(self.runner.calls[0][1], 10.0)
        self.runner.calls[0][2].callback(b"")
        self.clock.advance(29)
        self.assertIsNone(monitor.snapshot()["sys_stats"])
        self.clock.advance(1)
        self.assertEqual(len(monitor.snapshot()["sys_stats"]), 1)
        self.assertEqual(monitor.system.maxlen, 120)

    def test_configure(self) -> None:
        """
        A reload's new section applies in place: a new period restarts
        the loop and resizes the buffers (newest samples kept); disabling
        stops sampling.
        """
        self.binaries.clear()
        monitor = self.start()
        self.clock.pump([5.0] * 10)
        monitor.configure(PerformanceConfig(every=600.0))
        self.assertEqual(monitor.system.maxlen, 6)
        self.assertEqual(len(monitor.snapshot()["sys_stats"]), 6)
        self.clock.advance(600)
        self.assertEqual(len(monitor.snapshot()["sys_stats"]), 6)
        self.assertEqual(monitor.snapshot()["sys_stats"][-1]["timestamp"],
                         sysstats.formatStamp(sysstats.microseconds(START + 650)))
        monitor.configure(PerformanceConfig(disabled=True, every=600.0))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(monitor.snapshot(), {"enabled": False})
        monitor.configure(PerformanceConfig())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
