"""
Tests for L{llamaswap.observe.hostmetrics}: llama-swap's system gauges
in Prometheus text.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.observe.hostmetrics import registerHostMetrics
from llamaswap.observe.sysstats import (
    parseLoadavg,
    parseMeminfo,
    parseNetDev,
    parseNvidiaStats,
    systemSample,
)

from .sysfixtures import LOADAVG, MEMINFO, NET_DEV, NVIDIA_STATS

SAMPLE = systemSample(0, [25.0, 75.5], parseMeminfo(MEMINFO), parseLoadavg(LOADAVG),
                      parseNetDev(NET_DEV))


class HostMetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.system: dict[str, Any] | None = None
        self.gpus: list[dict[str, Any]] = []
        self.registry = CollectorRegistry(auto_describe=True)
        registerHostMetrics(self.registry, lambda: (self.system, self.gpus))

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = generate_latest(self.registry).decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def test_empty(self) -> None:
        """
        No sample yet: nothing exported.
        """
        self.assertEqual(generate_latest(self.registry), b"")

    def test_system(self) -> None:
        """
        Section 11's system families: per-core CPU, memory in bytes (MB x
        1048576), load by interval, network counters by direction.
        """
        self.system = SAMPLE
        samples = self.samples()
        self.assertEqual(samples[("llamaswap_cpu_util_percent", (("core", "1"),))], 75.5)
        self.assertEqual(samples[("llamaswap_memory_total_bytes", ())],
                         SAMPLE["mem_total_mb"] * 1048576)
        self.assertEqual(samples[("llamaswap_swap_used_bytes", ())], 1024 * 1048576)
        self.assertEqual(samples[("llamaswap_load_average", (("interval", "15m"),))], 0.59)
        self.assertEqual(
            samples[("llamaswap_network_bytes_total", (("direction", "sent"),
                                                       ("interface", "eth0")))],
            1782404,
        )

    def test_gpus(self) -> None:
        """
        GPU gauges labelled id, name and uuid; a missing uuid drops the
        label.
        """
        self.gpus = parseNvidiaStats(NVIDIA_STATS, 0)
        self.gpus[1]["uuid"] = ""
        samples = self.samples()
        self.assertEqual(
            samples[("llamaswap_gpu_memory_used_bytes",
                     (("id", "0"), ("name", "NVIDIA GeForce RTX 4090"),
                      ("uuid", "GPU-5a4a3c1e-0d6c-4d4c-9b1e-8c5f3e2a1b0c")))],
            20480 * 1048576,
        )
        self.assertEqual(
            samples[("llamaswap_gpu_power_draw_watts",
                     (("id", "1"), ("name", "NVIDIA A100-SXM4-80GB")))],
            61.02,
        )
        self.assertNotIn("llamaswap_cpu_util_percent", {name for name, _ in samples})
