"""
Tests for L{llamaswap.observe.hardware}: the parsers, and the detector
with fake files, a fake command runner and a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap import __version__
from llamaswap.observe.commands import CommandFailed
from llamaswap.observe.hardware import (
    NVIDIA_HARDWARE_ARGS,
    ROCM_HARDWARE_ARGS,
    HardwareDetector,
    Uname,
    containerKind,
    parseCPUInfo,
    parseNvidiaHardware,
    parseOSRelease,
    parseRocmHardware,
)

from .sysfixtures import (
    CPUINFO_ARM,
    CPUINFO_X86,
    MEMINFO,
    NVIDIA_HARDWARE,
    OS_RELEASE,
    ROCM_HARDWARE,
)
from .test_performance import FakeRunner, Warnings

START = 1796363400.0
UNAME = Uname("Linux", "6.1.0-18-amd64", "#1 SMP Debian", "x86_64")
RTX = {
    "vendor": "nvidia",
    "api": "cuda",
    "index": 0,
    "name": "NVIDIA GeForce RTX 4090",
    "uuid": "GPU-5a4a3c1e-0d6c-4d4c-9b1e-8c5f3e2a1b0c",
    "memory_bytes": 24564 * 1024 * 1024,
    "driver_version": "550.54.14",
    "pci_bus_id": "00000000:01:00.0",
}


class ParserTests(SynchronousTestCase):
    def test_cpuX86(self) -> None:
        """
        Threads are processors, cores the distinct (package, core) pairs.
        """
        self.assertEqual(
            parseCPUInfo(CPUINFO_X86),
            {"model": "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", "vendor": "GenuineIntel",
             "sockets": 1, "cores": 2, "threads": 4},
        )

    def test_cpuARM(self) -> None:
        """
        ARM's cpuinfo has no model name or core IDs: the board's
        C{Hardware} line names it and every processor is a core.
        """
        self.assertEqual(
            parseCPUInfo(CPUINFO_ARM),
            {"model": "BCM2835", "vendor": "0x41", "sockets": 1, "cores": 2, "threads": 2},
        )

    def test_cpuEmpty(self) -> None:
        self.assertRaises(ValueError, parseCPUInfo, "")

    def test_osRelease(self) -> None:
        values = parseOSRelease(OS_RELEASE)
        self.assertEqual((values["ID"], values["VERSION_ID"], values["PRETTY_NAME"]),
                         ("debian", "12", "Debian GNU/Linux 12 (bookworm)"))
        self.assertNotIn("# a comment", values)

    def test_container(self) -> None:
        self.assertEqual(containerKind({"/.dockerenv": ""}), "docker")
        self.assertEqual(containerKind({"/run/.containerenv": ""}), "podman")
        self.assertEqual(containerKind({"/proc/1/cgroup": "0::/kubepods/besteffort/pod1"}),
                         "kubernetes")
        self.assertIsNone(containerKind({"/.dockerenv": None, "/proc/1/cgroup": "0::/init.scope"}))

    def test_nvidia(self) -> None:
        self.assertEqual(parseNvidiaHardware(NVIDIA_HARDWARE), [RTX])
        self.assertRaises(ValueError, parseNvidiaHardware, "Failed to initialize NVML\n")

    def test_rocm(self) -> None:
        """
        The driver version comes from the C{system} object.
        """
        self.assertEqual(
            parseRocmHardware(ROCM_HARDWARE),
            [{"vendor": "amd", "api": "rocm", "index": 0, "name": "Radeon RX 7900 XTX",
              "uuid": "0x9e3d4c2b1a0f8e7d", "memory_bytes": 25753026560,
              "driver_version": "6.7.0", "pci_bus_id": "0000:03:00.0"}],
        )


class DetectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.runner = FakeRunner()
        self.files: dict[str, str] = {
            "/proc/cpuinfo": CPUINFO_X86,
            "/proc/meminfo": MEMINFO,
            "/etc/os-release": OS_RELEASE,
            "/.dockerenv": "",
        }
        self.binaries = {"nvidia-smi": "/usr/bin/nvidia-smi"}
        self.warnings = Warnings(self)

    def detector(self) -> HardwareDetector:
        def read(path: str) -> str:
            if path not in self.files:
                raise OSError(2, "No such file", path)
            return self.files[path]

        detector = HardwareDetector(self.clock, self.runner, reader=read,
                                    locator=self.binaries.get, uname=lambda: UNAME)
        detector.startService()
        self.addCleanup(lambda: detector.running and detector.stopService())
        self.clock.advance(0)
        return detector

    def current(self, detector: HardwareDetector) -> Deferred[dict | None]:
        d = detector.current()
        results: list[object] = []
        d.addBoth(results.append)
        return results  # type: ignore[return-value]

    def test_snapshot(self) -> None:
        """
        The section 7.11 document: detected once at start; a request
        during detection waits for it.
        """
        detector = self.detector()
        [(argv, timeout, d)] = self.runner.calls
        self.assertEqual(argv, ["/usr/bin/nvidia-smi", *NVIDIA_HARDWARE_ARGS])
        self.assertEqual(timeout, 10.0)
        waiting = self.current(detector)
        self.assertEqual(waiting, [])
        self.clock.advance(1)
        d.callback(NVIDIA_HARDWARE.encode())
        [snapshot] = waiting
        self.assertEqual(
            snapshot,
            {
                "schema_version": 1,
                "captured_at": "2026-12-04T05:50:00.000000Z",
                "capture": {"scope": "host", "method": "procfs+nvidia-smi",
                            "detector": {"name": "llamaswap", "version": __version__}},
                "architecture": "x86_64",
                "operating_system": {
                    "name": "Linux",
                    "kernel": "6.1.0-18-amd64",
                    "distribution": {"id": "debian", "name": "Debian GNU/Linux",
                                     "version": "12",
                                     "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
                },
                "environment": {"container": "docker", "wsl": False},
                "cpu": {"model": "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz",
                        "vendor": "GenuineIntel", "sockets": 1, "cores": 2, "threads": 4},
                "memory": {"capacity_bytes": 16303428 * 1024},
                "accelerators": [RTX],
            },
        )
        self.assertEqual(len(self.runner.calls), 1)

    def test_cachedThenRefreshed(self) -> None:
        """
        Requests get the cached snapshot; one finding it a minute old gets
        it at once and starts one background refresh.
        """
        detector = self.detector()
        self.runner.calls[0][2].callback(NVIDIA_HARDWARE.encode())
        self.clock.advance(59)
        self.current(detector)
        self.assertEqual(len(self.runner.calls), 1)
        self.clock.advance(1)
        [old] = self.current(detector)
        self.current(detector)
        self.assertEqual(len(self.runner.calls), 2)
        self.runner.calls[1][2].callback(b"")
        [new] = self.current(detector)
        self.assertEqual(old["accelerators"], [RTX])  # type: ignore[index]
        self.assertEqual(new["accelerators"], [])  # type: ignore[index]
        self.assertEqual(new["captured_at"], "2026-12-04T05:51:00.000000Z")  # type: ignore[index]

    def test_noGPUTools(self) -> None:
        """
        Without nvidia-smi and rocm-smi: no accelerators, detection done
        at once.
        """
        self.binaries.clear()
        detector = self.detector()
        [snapshot] = self.current(detector)
        self.assertEqual(snapshot["accelerators"], [])  # type: ignore[index]
        self.assertEqual(snapshot["capture"]["method"], "procfs")  # type: ignore[index]
        self.assertEqual(self.runner.calls, [])

    def test_rocm(self) -> None:
        self.binaries = {"rocm-smi": "/opt/rocm/bin/rocm-smi"}
        detector = self.detector()
        [(argv, _, d)] = self.runner.calls
        self.assertEqual(argv, ["/opt/rocm/bin/rocm-smi", *ROCM_HARDWARE_ARGS])
        d.callback(ROCM_HARDWARE.encode())
        [snapshot] = self.current(detector)
        self.assertEqual([a["name"] for a in snapshot["accelerators"]],  # type: ignore[index]
                         ["Radeon RX 7900 XTX"])

    def test_toolFails(self) -> None:
        """
        A failing GPU tool is logged and leaves the accelerators empty;
        the rest of the snapshot stands.
        """
        detector = self.detector()
        self.runner.calls[0][2].errback(
            CommandFailed(["/usr/bin/nvidia-smi"], 9, "couldn't communicate with the driver")
        )
        [snapshot] = self.current(detector)
        self.assertEqual(snapshot["accelerators"], [])  # type: ignore[index]
        self.assertEqual(snapshot["cpu"]["threads"], 4)  # type: ignore[index]
        self.assertEqual(len(self.warnings.messages), 1)
        self.assertIn("couldn't communicate", self.warnings.messages[0])

    def test_unavailable(self) -> None:
        """
        Without /proc there is nothing to say: no snapshot (503 upstairs),
        and each request tries again.
        """
        self.binaries.clear()
        self.files.clear()
        detector = self.detector()
        self.flushLoggedErrors(ValueError)
        self.assertEqual(self.current(detector), [None])
        self.flushLoggedErrors(ValueError)
        self.assertIn("nor /proc/meminfo", detector.error or "")

    def test_partialFiles(self) -> None:
        """
        Missing os-release and cpuinfo leave those parts empty or guessed.
        """
        self.binaries.clear()
        del self.files["/proc/cpuinfo"], self.files["/etc/os-release"], self.files["/.dockerenv"]
        detector = self.detector()
        [snapshot] = self.current(detector)
        self.assertTrue(snapshot["cpu"]["model"])  # type: ignore[index]
        self.assertEqual(snapshot["operating_system"]["distribution"]["id"], "")  # type: ignore[index]
        self.assertIsNone(snapshot["environment"]["container"])  # type: ignore[index]

    def test_stop(self) -> None:
        """
        Stopping cancels a detection in progress; waiters get no snapshot.
        """
        detector = self.detector()
        waiting = self.current(detector)
        detector.stopService()
        self.assertEqual(self.runner.cancelled, 1)
        self.assertEqual(waiting, [None])
