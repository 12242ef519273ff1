"""
Tests for L{llamaswap.observe.sysstats}: the pure /proc and GPU tool
parsers.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.observe import sysstats
from llamaswap.observe.sysstats import (
    CPUTimes,
    ParseError,
    cpuUtilisation,
    formatStamp,
    parseLoadavg,
    parseMeminfo,
    parseNetDev,
    parseNvidiaStats,
    parseProcStat,
    parseRocmStats,
    parseStamp,
    smiNumber,
    systemSample,
)

from .sysfixtures import (
    LOADAVG,
    MEMINFO,
    NET_DEV,
    NVIDIA_STATS,
    PROC_STAT_1,
    PROC_STAT_2,
    ROCM_STATS,
)

STAMP = 1796363400250000  # 2026-12-04T05:50:00.25Z


class StampTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        """
        Timestamps are RFC 3339 UTC with microseconds and parse back
        exactly, so C{?after=<a sample's timestamp>} excludes that sample.
        """
        self.assertEqual(formatStamp(STAMP), "2026-12-04T05:50:00.250000Z")
        self.assertEqual(parseStamp(formatStamp(STAMP)), STAMP)

    def test_zonesAndFractions(self) -> None:
        """
        Offsets are applied, missing fractions are zero and digits beyond
        microseconds are dropped.
        """
        self.assertEqual(parseStamp("2026-12-04T06:50:00.25+01:00"), STAMP)
        self.assertEqual(parseStamp("2026-12-04t05:50:00z"), STAMP - 250000)
        self.assertEqual(parseStamp("2026-12-04T05:50:00.250000999Z"), STAMP)

    def test_invalid(self) -> None:
        for text in ("", "yesterday", "2026-12-04", "2026-12-04T05:50:00",
                     "2026-13-04T05:50:00Z", "1733291400"):
            self.assertIsNone(parseStamp(text), text)

    def test_microseconds(self) -> None:
        self.assertEqual(sysstats.microseconds(1796363400.25), STAMP)


class CPUTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """
        Each C{cpuN} line gives busy (all but idle and iowait) and total
        jiffies; the aggregate C{cpu} line and other lines are skipped.
        """
        cores = parseProcStat(PROC_STAT_1)
        self.assertEqual(list(cores), ["cpu0", "cpu1"])
        self.assertEqual(
            cores["cpu0"],
            CPUTimes(busy=1393280 + 32966 + 572056 + 2337, total=1393280 + 32966 + 572056
                     + 13366730 + 4524 + 2337),
        )

    def test_utilisation(self) -> None:
        """
        The busy share of the jiffies between two readings, per core in
        core order.
        """
        self.assertEqual(
            cpuUtilisation(parseProcStat(PROC_STAT_1), parseProcStat(PROC_STAT_2)), [25.0, 75.0]
        )

    def test_coreOrder(self) -> None:
        """
        Cores sort numerically (cpu10 after cpu9); a core without elapsed
        time reads 0.
        """
        after = {f"cpu{n}": CPUTimes(busy=n, total=10) for n in (10, 9, 0)}
        before = {"cpu9": CPUTimes(0, 10)}
        self.assertEqual(cpuUtilisation(before, after), [0.0, 0.0, 100.0])

    def test_garbage(self) -> None:
        self.assertRaises(ParseError, parseProcStat, "intr 1 2 3\n")
        self.assertRaises(ParseError, parseProcStat, "cpu0 a b c\n")


class MemoryLoadNetTests(SynchronousTestCase):
    def test_meminfo(self) -> None:
        """
        kB values become bytes; unit-less values stay as they are.
        """
        values = parseMeminfo(MEMINFO)
        self.assertEqual(values["MemTotal"], 16303428 * 1024)
        self.assertEqual(values["HugePages_Total"], 0)
        self.assertRaises(ParseError, parseMeminfo, "Foo: 1 kB\n")

    def test_memoryFields(self) -> None:
        """
        MiB: used = total - available, free = MemFree, swap used = total -
        free.
        """
        self.assertEqual(
            sysstats.memoryFields(parseMeminfo(MEMINFO)),
            {
                "mem_total_mb": 16303428 // 1024,
                "mem_used_mb": (16303428 - 8151712) // 1024,
                "mem_free_mb": 1016540 // 1024,
                "swap_total_mb": 2097148 // 1024,
                "swap_used_mb": (2097148 - 1048572) // 1024,
            },
        )

    def test_loadavg(self) -> None:
        self.assertEqual(parseLoadavg(LOADAVG), (0.52, 0.58, 0.59))
        self.assertRaises(ParseError, parseLoadavg, "")

    def test_netDev(self) -> None:
        """
        Each interface's cumulative received and sent bytes; the two
        header lines are skipped.
        """
        self.assertEqual(
            parseNetDev(NET_DEV),
            [
                {"name": "lo", "bytes_recv": 2776770, "bytes_sent": 2776770},
                {"name": "eth0", "bytes_recv": 1215645, "bytes_sent": 1782404},
            ],
        )

    def test_systemSample(self) -> None:
        """
        The SysStat shape of HTTP behaviour section 7.10, key for key.
        """
        sample = systemSample(STAMP, [25.0, 75.0], parseMeminfo(MEMINFO),
                              parseLoadavg(LOADAVG), parseNetDev(NET_DEV))
        self.assertEqual(
            sorted(sample),
            sorted(["timestamp", "cpu_util_per_core", "mem_total_mb", "mem_used_mb",
                    "mem_free_mb", "swap_total_mb", "swap_used_mb", "load_avg_1",
                    "load_avg_5", "load_avg_15", "net_io"]),
        )
        self.assertEqual(sample["timestamp"], "2026-12-04T05:50:00.250000Z")
        self.assertEqual(sample["load_avg_15"], 0.59)


GPU_KEYS = sorted(["timestamp", "id", "name", "uuid", "temp_c", "vram_temp_c", "gpu_util_pct",
                   "mem_util_pct", "mem_used_mb", "mem_total_mb", "fan_speed_pct",
                   "power_draw_w"])


class NvidiaTests(SynchronousTestCase):
    def test_stats(self) -> None:
        """
        One GpuStat per CSV row; C{[N/A]} reads as 0.
        """
        stats = parseNvidiaStats(NVIDIA_STATS, STAMP)
        self.assertEqual([sorted(s) for s in stats], [GPU_KEYS, GPU_KEYS])
        self.assertEqual(
            stats[0],
            {
                "timestamp": "2026-12-04T05:50:00.250000Z",
                "id": 0,
                "name": "NVIDIA GeForce RTX 4090",
                "uuid": "GPU-5a4a3c1e-0d6c-4d4c-9b1e-8c5f3e2a1b0c",
                "temp_c": 45,
                "vram_temp_c": 0,
                "gpu_util_pct": 37,
                "mem_util_pct": 12,
                "mem_used_mb": 20480,
                "mem_total_mb": 24564,
                "fan_speed_pct": 30,
                "power_draw_w": 125.37,
            },
        )
        self.assertEqual((stats[1]["id"], stats[1]["fan_speed_pct"], stats[1]["vram_temp_c"]),
                         (1, 0, 41))

    def test_empty(self) -> None:
        self.assertEqual(parseNvidiaStats("\n", STAMP), [])

    def test_wrongFieldCount(self) -> None:
        """
        A row that is not the queried fields (e.g. an error message) is an
        error, not a garbled sample.
        """
        self.assertRaises(ParseError, parseNvidiaStats,
                          "NVIDIA-SMI has failed because it couldn't communicate\n", STAMP)

    def test_smiNumber(self) -> None:
        for text, value in (("12", 12.0), (" 3.5 ", 3.5), ("[N/A]", 0.0),
                            ("[Not Supported]", 0.0), ("", 0.0), (None, 0.0), (7, 7.0),
                            ("250.00 W", 250.0)):
            self.assertEqual(smiNumber(text), value, text)


class RocmTests(SynchronousTestCase):
    def test_stats(self) -> None:
        """
        Each C{cardN} of C{rocm-smi --json} becomes a GpuStat; memory in
        bytes becomes MiB; the C{system} object is not a card.
        """
        stats = parseRocmStats(ROCM_STATS, STAMP)
        self.assertEqual(
            stats,
            [{
                "timestamp": "2026-12-04T05:50:00.250000Z",
                "id": 0,
                "name": "Radeon RX 7900 XTX",
                "uuid": "0x9e3d4c2b1a0f8e7d",
                "temp_c": 45,
                "vram_temp_c": 52,
                "gpu_util_pct": 7,
                "mem_util_pct": 31,
                "mem_used_mb": 8053063680 // 1048576,
                "mem_total_mb": 25753026560 // 1048576,
                "fan_speed_pct": 21,
                "power_draw_w": 35,
            }],
        )

    def test_newerKeyNames(self) -> None:
        """
        Key names of other rocm-smi versions are found too.
        """
        text = ('{"card1": {"Current Socket Graphics Package Power (W)": "80.5",'
                ' "Temperature (Sensor junction) (C)": "60.0", "Device Name": "MI300X"}}')
        [stat] = parseRocmStats(text, STAMP)
        self.assertEqual((stat["id"], stat["name"], stat["power_draw_w"], stat["temp_c"]),
                         (1, "MI300X", 80.5, 60))

    def test_notJSON(self) -> None:
        self.assertRaises(ParseError, parseRocmStats, "ERROR: no GPU", STAMP)
        self.assertRaises(ParseError, parseRocmStats, "[]", STAMP)
