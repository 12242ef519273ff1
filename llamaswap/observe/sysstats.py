# -*- test-case-name: test.observe.test_sysstats -*-
"""
Pure parsers for system statistics: Linux C{/proc} texts and the output
of C{nvidia-smi} and C{rocm-smi}, turned into the sample records of
C{GET /api/performance} (HTTP behaviour section 7.10).

Nothing here reads a file or runs a process; L{llamaswap.observe.performance}
does that and hands the texts over.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from attrs import frozen

#: The C{nvidia-smi --query-gpu} fields of one GPU statistics row, in order.
NVIDIA_STAT_FIELDS = (
    "index",
    "name",
    "uuid",
    "temperature.gpu",
    "temperature.memory",
    "utilization.gpu",
    "utilization.memory",
    "memory.used",
    "memory.total",
    "fan.speed",
    "power.draw",
)

#: The command asking C{nvidia-smi} for L{NVIDIA_STAT_FIELDS}.
NVIDIA_STATS_ARGS = (
    "--query-gpu=" + ",".join(NVIDIA_STAT_FIELDS),
    "--format=csv,noheader,nounits",
)

#: The command asking C{rocm-smi} for what L{parseRocmStats} reads.
ROCM_STATS_ARGS = (
    "--showuse",
    "--showmemuse",
    "--showmeminfo",
    "vram",
    "--showtemp",
    "--showpower",
    "--showfan",
    "--showproductname",
    "--showuniqueid",
    "--json",
)

_MIB = 1024 * 1024


class ParseError(ValueError):
    """
    A text is not what its parser reads.
    """


# -- time ------------------------------------------------------------------


def microseconds(seconds: float) -> int:
    """
    A clock reading as whole microseconds since the epoch (the resolution
    of sample timestamps, so that C{?after=} compares exactly).
    """
    return int(round(seconds * 1_000_000))


def formatStamp(micros: int) -> str:
    """
    An RFC 3339 UTC timestamp with microseconds, e.g.
    C{2026-12-04T05:50:00.250000Z}.
    """
    seconds, fraction = divmod(micros, 1_000_000)
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:06d}Z"


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)


def parseStamp(text: str) -> int | None:
    """
    An RFC 3339 date-time as microseconds since the epoch (finer
    fractions truncated), or L{None} when C{text} is not one.
    """
    match = _RFC3339.match(text.strip())
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        moment = datetime.fromisoformat(whole.replace("t", "T") + zone)
    except ValueError:
        return None
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    return int(moment.timestamp()) * 1_000_000 + micros


# -- CPU -------------------------------------------------------------------


@frozen
class CPUTimes:
    """
    One core's cumulative jiffies from C{/proc/stat}.

    @ivar busy: everything but idle and iowait.
    @ivar total: every column (guest time is already in user and nice).
    """

    busy: int
    total: int


def parseProcStat(text: str) -> dict[str, CPUTimes]:
    """
    The per-core lines (C{cpu0}, C{cpu1}, ...) of C{/proc/stat}; the
    all-cores C{cpu} line is left out.
    """
    cores: dict[str, CPUTimes] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or not fields[0].startswith("cpu") or fields[0] == "cpu":
            continue
        try:
            numbers = [int(f) for f in fields[1:9]]
        except ValueError:
            raise ParseError(f"bad /proc/stat line: {line!r}")
        numbers += [0] * (8 - len(numbers))
        idle = numbers[3] + numbers[4]
        total = sum(numbers)
        cores[fields[0]] = CPUTimes(busy=total - idle, total=total)
    if not cores:
        raise ParseError("no cpuN lines in /proc/stat")
    return cores


def _coreNumber(name: str) -> int:
    try:
        return int(name[3:])
    except ValueError:
        return -1


def cpuUtilisation(before: Mapping[str, CPUTimes], after: Mapping[str, CPUTimes]) -> list[float]:
    """
    Each core's busy percentage (0 to 100, two decimals) between two
    readings, in core order; a core without elapsed time reads 0.
    """
    result = []
    for name in sorted(after, key=_coreNumber):
        now = after[name]
        then = before.get(name, CPUTimes(0, 0))
        elapsed = now.total - then.total
        busy = now.busy - then.busy
        if elapsed <= 0:
            result.append(0.0)
        else:
            result.append(round(min(100.0, max(0.0, 100.0 * busy / elapsed)), 2))
    return result


# -- memory, load, network -----------------------------------------------------


def parseMeminfo(text: str) -> dict[str, int]:
    """
    C{/proc/meminfo} as field name to bytes (C{kB} values multiplied out).
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, colon, rest = line.partition(":")
        if not colon:
            continue
        parts = rest.split()
        if not parts:
            continue
        try:
            number = int(parts[0])
        except ValueError:
            continue
        if len(parts) > 1 and parts[1].lower() == "kb":
            number *= 1024
        values[name.strip()] = number
    if "MemTotal" not in values:
        raise ParseError("no MemTotal in /proc/meminfo")
    return values


def memoryFields(meminfo: Mapping[str, int]) -> dict[str, int]:
    """
    The memory fields of a system sample, in MiB: used is total minus
    available (what C{free} calls used), free is C{MemFree}.
    """
    total = meminfo["MemTotal"]
    available = meminfo.get("MemAvailable", meminfo.get("MemFree", 0))
    swapTotal = meminfo.get("SwapTotal", 0)
    return {
        "mem_total_mb": total // _MIB,
        "mem_used_mb": max(0, total - available) // _MIB,
        "mem_free_mb": meminfo.get("MemFree", 0) // _MIB,
        "swap_total_mb": swapTotal // _MIB,
        "swap_used_mb": max(0, swapTotal - meminfo.get("SwapFree", 0)) // _MIB,
    }


def parseLoadavg(text: str) -> tuple[float, float, float]:
    """
    The 1, 5 and 15 minute load averages of C{/proc/loadavg}.
    """
    fields = text.split()
    try:
        return float(fields[0]), float(fields[1]), float(fields[2])
    except (IndexError, ValueError):
        raise ParseError(f"bad /proc/loadavg: {text!r}")


def parseNetDev(text: str) -> list[dict[str, Any]]:
    """
    C{/proc/net/dev}: each interface's cumulative received and sent
    bytes, in file order.
    """
    interfaces = []
    for line in text.splitlines():
        name, colon, rest = line.partition(":")
        if not colon or "|" in line:
            continue
        fields = rest.split()
        if len(fields) < 9:
            continue
        try:
            received, sent = int(fields[0]), int(fields[8])
        except ValueError:
            continue
        interfaces.append({"name": name.strip(), "bytes_recv": received, "bytes_sent": sent})
    return interfaces


def systemSample(
    stamp: int,
    cpu: list[float],
    meminfo: Mapping[str, int],
    load: tuple[float, float, float],
    net: list[dict[str, Any]],
) -> dict[str, Any]:
    """
    One C{sys_stats} entry (section 7.10's SysStat).

    @param stamp: microseconds since the epoch.
    """
    sample: dict[str, Any] = {"timestamp": formatStamp(stamp), "cpu_util_per_core": cpu}
    sample.update(memoryFields(meminfo))
    sample["load_avg_1"], sample["load_avg_5"], sample["load_avg_15"] = load
    sample["net_io"] = net
    return sample


# -- GPUs --------------------------------------------------------------------


def smiNumber(text: Any) -> float:
    """
    A number from C{nvidia-smi}/C{rocm-smi}; C{[N/A]}, C{[Not Supported]}
    and other non-numbers read as 0 (llama-swap's UI expects numbers).
    """
    if isinstance(text, (int, float)):
        return float(text)
    try:
        return float(str(text).strip().split()[0])
    except (ValueError, IndexError):
        return 0.0


def _whole(value: float) -> int | float:
    return int(value) if value == int(value) else value


def csvRows(text: str) -> list[list[str]]:
    """
    The rows of C{nvidia-smi}'s C{--format=csv,noheader} output, trimmed;
    blank lines skipped.
    """
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    return [[cell.strip() for cell in row] for row in reader if any(c.strip() for c in row)]


def parseNvidiaStats(text: str, stamp: int) -> list[dict[str, Any]]:
    """
    C{nvidia-smi} rows of L{NVIDIA_STAT_FIELDS} as C{gpu_stats} entries
    (section 7.10's GpuStat).
    """
    stamped = formatStamp(stamp)
    stats = []
    for row in csvRows(text):
        if len(row) != len(NVIDIA_STAT_FIELDS):
            raise ParseError(f"nvidia-smi row has {len(row)} fields, expected "
                             f"{len(NVIDIA_STAT_FIELDS)}: {row!r}")
        values = dict(zip(NVIDIA_STAT_FIELDS, row))
        stats.append(
            {
                "timestamp": stamped,
                "id": int(smiNumber(values["index"])),
                "name": values["name"],
                "uuid": values["uuid"],
                "temp_c": _whole(smiNumber(values["temperature.gpu"])),
                "vram_temp_c": _whole(smiNumber(values["temperature.memory"])),
                "gpu_util_pct": _whole(smiNumber(values["utilization.gpu"])),
                "mem_util_pct": _whole(smiNumber(values["utilization.memory"])),
                "mem_used_mb": _whole(smiNumber(values["memory.used"])),
                "mem_total_mb": _whole(smiNumber(values["memory.total"])),
                "fan_speed_pct": _whole(smiNumber(values["fan.speed"])),
                "power_draw_w": _whole(smiNumber(values["power.draw"])),
            }
        )
    return stats


def rocmCards(text: str) -> list[tuple[int, dict[str, Any]]]:
    """
    The C{cardN} objects of C{rocm-smi --json} output, by card number.
    """
    try:
        document = json.loads(text)
    except ValueError as e:
        raise ParseError(f"rocm-smi output is not JSON: {e}")
    if not isinstance(document, dict):
        raise ParseError("rocm-smi output is not a JSON object")
    cards = []
    for key, value in document.items():
        if key.lower().startswith("card") and isinstance(value, dict):
            try:
                cards.append((int(key[4:]), value))
            except ValueError:
                continue
    return sorted(cards, key=lambda c: c[0])


def rocmField(card: Mapping[str, Any], *prefixes: str) -> Any:
    """
    The value of the first key of C{card} starting with one of
    C{prefixes} (case-insensitive; rocm-smi's key names vary by version),
    or L{None}.
    """
    lowered = {k.lower(): v for k, v in card.items()}
    for prefix in prefixes:
        prefix = prefix.lower()
        for key, value in lowered.items():
            if key.startswith(prefix):
                return value
    return None


def rocmName(card: Mapping[str, Any]) -> str:
    """
    A card's product name.
    """
    name = rocmField(card, "Device Name", "Card Series", "Card series", "Card model")
    return str(name).strip() if name is not None else ""


def parseRocmStats(text: str, stamp: int) -> list[dict[str, Any]]:
    """
    C{rocm-smi} JSON (L{ROCM_STATS_ARGS}) as C{gpu_stats} entries.
    """
    stamped = formatStamp(stamp)
    stats = []
    for number, card in rocmCards(text):
        total = smiNumber(rocmField(card, "VRAM Total Memory"))
        used = smiNumber(rocmField(card, "VRAM Total Used Memory"))
        stats.append(
            {
                "timestamp": stamped,
                "id": number,
                "name": rocmName(card),
                "uuid": str(rocmField(card, "Unique ID") or ""),
                "temp_c": _whole(smiNumber(
                    rocmField(card, "Temperature (Sensor edge)", "Temperature (Sensor junction)")
                )),
                "vram_temp_c": _whole(smiNumber(rocmField(card, "Temperature (Sensor memory)"))),
                "gpu_util_pct": _whole(smiNumber(rocmField(card, "GPU use"))),
                "mem_util_pct": _whole(smiNumber(
                    rocmField(card, "GPU Memory Allocated", "GPU memory use", "GPU Memory Use")
                )),
                "mem_used_mb": int(used) // _MIB,
                "mem_total_mb": int(total) // _MIB,
                "fan_speed_pct": _whole(smiNumber(rocmField(card, "Fan speed (%)"))),
                "power_draw_w": _whole(smiNumber(
                    rocmField(card, "Average Graphics Package Power",
                              "Current Socket Graphics Package Power")
                )),
            }
        )
    return stats


def flatten(snapshots: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """
    GPU snapshots (one list per query) as one list, oldest first.
    """
    return [stat for snapshot in snapshots for stat in snapshot]


__all__ = [
    "CPUTimes",
    "NVIDIA_STATS_ARGS",
    "NVIDIA_STAT_FIELDS",
    "ParseError",
    "ROCM_STATS_ARGS",
    "cpuUtilisation",
    "csvRows",
    "flatten",
    "formatStamp",
    "memoryFields",
    "microseconds",
    "parseLoadavg",
    "parseMeminfo",
    "parseNetDev",
    "parseNvidiaStats",
    "parseProcStat",
    "parseRocmStats",
    "parseStamp",
    "rocmCards",
    "rocmField",
    "rocmName",
    "smiNumber",
    "systemSample",
]
