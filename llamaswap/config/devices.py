# -*- test-case-name: test.config.test_devices -*-
"""
The memory of this machine's accelerators, for C{memoryBudget: auto}.

NVIDIA GPUs come from C{nvidia-smi}, AMD ones from C{rocm-smi}; each GPU
is a device C{gpu0}, C{gpu1}, ...  A machine with neither is budgeted by
its RAM (C{MemTotal} of C{/proc/meminfo}) as the single pool
L{POOL}.  Parsing is pure; L{detectDeviceMemory} takes the command
runner and the meminfo reader so tests give it canned output.
"""

from __future__ import annotations

import subprocess
from typing import Callable, Sequence

__all__ = [
    "POOL",
    "detectDeviceMemory",
    "parseMeminfo",
    "parseNvidiaSMI",
    "parseRocmSMI",
]

#: The device name of a budget that is one pool (a size, or RAM).
POOL = "memory"

Runner = Callable[[Sequence[str]], str | None]

NVIDIA_SMI = ("nvidia-smi", "--query-gpu=index,memory.total", "--format=csv,noheader,nounits")
ROCM_SMI = ("rocm-smi", "--showmeminfo", "vram", "--csv")


def parseNvidiaSMI(text: str) -> dict[str, int]:
    """
    C{index, MiB} lines to C{{"gpu<index>": bytes}}.
    """
    found = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            found[f"gpu{parts[0]}"] = int(parts[1]) * 1024**2
    return found


def parseRocmSMI(text: str) -> dict[str, int]:
    """
    rocm-smi's CSV (C{device,VRAM Total Memory (B),...}) to
    C{{"gpu<n>": bytes}}.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return {}
    header = [h.strip().lower() for h in lines[0].split(",")]
    column = next((i for i, h in enumerate(header) if h.startswith("vram total memory")), None)
    if column is None:
        return {}
    found = {}
    for line in lines[1:]:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) <= column or not parts[column].isdigit():
            continue
        card = parts[0].removeprefix("card")
        if card.isdigit():
            found[f"gpu{card}"] = int(parts[column])
    return found


def parseMeminfo(text: str) -> int | None:
    """
    C{MemTotal} of C{/proc/meminfo}, in bytes.
    """
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) * 1024
    return None


def runCommand(argv: Sequence[str]) -> str | None:
    """
    C{argv}'s standard output, or L{None} if it is missing or fails.
    """
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def readMeminfo() -> str | None:
    """
    C{/proc/meminfo}, or L{None}.
    """
    try:
        with open("/proc/meminfo") as f:
            return f.read()
    except OSError:
        return None


def detectDeviceMemory(
    run: Runner = runCommand, meminfo: Callable[[], str | None] = readMeminfo
) -> tuple[dict[str, int], str]:
    """
    The total memory of each device, and where it came from
    (C{nvidia-smi}, C{rocm-smi}, C{RAM}, or C{""} when nothing was found).
    """
    output = run(NVIDIA_SMI)
    if output:
        found = parseNvidiaSMI(output)
        if found:
            return found, "nvidia-smi"
    output = run(ROCM_SMI)
    if output:
        found = parseRocmSMI(output)
        if found:
            return found, "rocm-smi"
    text = meminfo()
    total = parseMeminfo(text) if text else None
    if total:
        return {POOL: total}, "RAM"
    return {}, ""
