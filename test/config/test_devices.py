"""
Tests for L{llamaswap.config.devices}: parsing the tools' output and the
order they are tried in.
"""

from __future__ import annotations

from typing import Sequence

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.devices import (
    NVIDIA_SMI,
    POOL,
    ROCM_SMI,
    detectDeviceMemory,
    parseMeminfo,
    parseNvidiaSMI,
    parseRocmSMI,
)

MiB = 1024**2

NVIDIA = "0, 24576\n1, 16384\n"
ROCM = "device,VRAM Total Memory (B),VRAM Total Used Memory (B)\ncard0,17163091968,10485760\n"
MEMINFO = "MemTotal:       16318148 kB\nMemFree:         1000 kB\n"


class ParseTests(SynchronousTestCase):
    def test_nvidia(self) -> None:
        self.assertEqual(parseNvidiaSMI(NVIDIA), {"gpu0": 24576 * MiB, "gpu1": 16384 * MiB})
        self.assertEqual(parseNvidiaSMI("No devices were found\n"), {})

    def test_rocm(self) -> None:
        self.assertEqual(parseRocmSMI(ROCM), {"gpu0": 17163091968})
        self.assertEqual(parseRocmSMI(""), {})
        self.assertEqual(parseRocmSMI("device,other\ncard0,1\n"), {})

    def test_meminfo(self) -> None:
        self.assertEqual(parseMeminfo(MEMINFO), 16318148 * 1024)
        self.assertIsNone(parseMeminfo("nothing"))


class DetectTests(SynchronousTestCase):
    def runner(self, outputs: dict[tuple[str, ...], str | None]):
        self.ran: list[tuple[str, ...]] = []

        def run(argv: Sequence[str]) -> str | None:
            self.ran.append(tuple(argv))
            return outputs.get(tuple(argv))

        return run

    def test_nvidiaFirst(self) -> None:
        run = self.runner({NVIDIA_SMI: NVIDIA, ROCM_SMI: ROCM})
        found, source = detectDeviceMemory(run, lambda: MEMINFO)
        self.assertEqual(source, "nvidia-smi")
        self.assertEqual(set(found), {"gpu0", "gpu1"})
        self.assertEqual(self.ran, [NVIDIA_SMI])

    def test_rocm(self) -> None:
        found, source = detectDeviceMemory(self.runner({ROCM_SMI: ROCM}), lambda: MEMINFO)
        self.assertEqual((found, source), ({"gpu0": 17163091968}, "rocm-smi"))

    def test_ram(self) -> None:
        found, source = detectDeviceMemory(self.runner({}), lambda: MEMINFO)
        self.assertEqual((found, source), ({POOL: 16318148 * 1024}, "RAM"))

    def test_nothing(self) -> None:
        self.assertEqual(detectDeviceMemory(self.runner({}), lambda: None), ({}, ""))
