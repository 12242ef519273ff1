# -*- test-case-name: test.observe.test_hostmetrics -*-
"""
llama-swap's system gauges on C{/metrics} (HTTP behaviour section 11),
next to llamaswap's own request metrics: the newest system sample and the
newest GPU snapshot of the performance monitor, read at scrape time.
Nothing is exported while the monitor has no sample (or is disabled).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

_MIB = 1048576

#: (metric suffix, GpuStat key, help, scale)
GPU_GAUGES = (
    ("temperature_celsius", "temp_c", "GPU temperature in degrees Celsius.", 1),
    ("vram_temperature_celsius", "vram_temp_c", "GPU memory temperature in degrees Celsius.", 1),
    ("util_percent", "gpu_util_pct", "GPU utilisation in percent.", 1),
    ("memory_util_percent", "mem_util_pct", "GPU memory controller utilisation in percent.", 1),
    ("memory_used_bytes", "mem_used_mb", "GPU memory used in bytes.", _MIB),
    ("memory_total_bytes", "mem_total_mb", "GPU memory in bytes.", _MIB),
    ("fan_speed_percent", "fan_speed_pct", "GPU fan speed in percent.", 1),
    ("power_draw_watts", "power_draw_w", "GPU power draw in watts.", 1),
)

#: Gives the newest system sample (or None) and the newest GPU snapshot.
Latest = Callable[[], "tuple[dict[str, Any] | None, list[dict[str, Any]]]"]


class HostCollector(Collector):
    """
    Collects the host gauges from C{latest} (the monitor's C{latest}).
    """

    def __init__(self, latest: Latest) -> None:
        self.latest = latest

    def describe(self) -> list[Metric]:
        return []  # families vary with the host; never checked at registration

    def collect(self) -> Iterator[Metric]:
        system, gpus = self.latest()
        if system is not None:
            yield from systemFamilies(system)
        if gpus:
            yield from gpuFamilies(gpus)


def systemFamilies(sample: dict[str, Any]) -> Iterator[Metric]:
    """
    The system families of one SysStat.
    """
    cpu = GaugeMetricFamily("llamaswap_cpu_util_percent", "CPU utilisation per core in percent.",
                            labels=["core"])
    for core, value in enumerate(sample["cpu_util_per_core"]):
        cpu.add_metric([str(core)], value)
    yield cpu
    for name, key, text in (
        ("memory_total_bytes", "mem_total_mb", "Memory in bytes."),
        ("memory_used_bytes", "mem_used_mb", "Memory used in bytes."),
        ("memory_free_bytes", "mem_free_mb", "Memory free in bytes."),
        ("swap_total_bytes", "swap_total_mb", "Swap in bytes."),
        ("swap_used_bytes", "swap_used_mb", "Swap used in bytes."),
    ):
        yield GaugeMetricFamily("llamaswap_" + name, text, value=sample[key] * _MIB)
    load = GaugeMetricFamily("llamaswap_load_average", "System load average.",
                             labels=["interval"])
    for interval in ("1", "5", "15"):
        load.add_metric([interval + "m"], sample["load_avg_" + interval])
    yield load
    if sample["net_io"]:
        net = CounterMetricFamily("llamaswap_network_bytes", "Network bytes since boot.",
                                  labels=["interface", "direction"])
        for interface in sample["net_io"]:
            net.add_metric([interface["name"], "recv"], interface["bytes_recv"])
            net.add_metric([interface["name"], "sent"], interface["bytes_sent"])
        yield net


def gpuFamilies(gpus: list[dict[str, Any]]) -> Iterator[Metric]:
    """
    The GPU families of one snapshot, GPUs sorted by ID; the C{uuid}
    label is left out when the tool gave none.
    """
    ordered = sorted(gpus, key=lambda g: g["id"])
    for suffix, key, text, scale in GPU_GAUGES:
        family = GaugeMetricFamily("llamaswap_gpu_" + suffix, text,
                                   labels=["id", "name", "uuid"])
        for gpu in ordered:
            family.add_metric([str(gpu["id"]), gpu["name"], gpu["uuid"]], gpu[key] * scale)
        for sample in family.samples:
            if not sample.labels["uuid"]:
                del sample.labels["uuid"]
        yield family


def registerHostMetrics(registry: CollectorRegistry, latest: Latest) -> HostCollector:
    """
    Add the host gauges to C{registry}.
    """
    collector = HostCollector(latest)
    registry.register(collector)
    return collector


__all__ = ["GPU_GAUGES", "HostCollector", "gpuFamilies", "registerHostMetrics", "systemFamilies"]
