"""
Tests for L{llamaswap.web.system} and L{llamaswap.web.favicon}: the
C{/api/performance}, C{/api/hardware} and C{/favicon.ico} routes over a
real L{Site} in memory, fed by the real sampler and detector on a
L{Clock} with fake C{/proc} files and GPU tools.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request, Site

from llamaswap.config.model import PerformanceConfig
from llamaswap.observe.hardware import HardwareDetector, Uname
from llamaswap.observe.performance import PerformanceMonitor
from llamaswap.observe.sysstats import parseStamp
from llamaswap.web import favicon, system
from llamaswap.web.mux import Mux

from ..observe.sysfixtures import (
    CPUINFO_X86,
    MEMINFO,
    NVIDIA_HARDWARE,
    NVIDIA_STATS,
    PROC,
)
from ..observe.test_performance import FakeRunner
from .helpers import Client, ParsedResponse

START = 1796363400.0
SYS_KEYS = {"timestamp", "cpu_util_per_core", "mem_total_mb", "mem_used_mb", "mem_free_mb",
            "swap_total_mb", "swap_used_mb", "load_avg_1", "load_avg_5", "load_avg_15", "net_io"}
GPU_KEYS = {"timestamp", "id", "name", "uuid", "temp_c", "vram_temp_c", "gpu_util_pct",
            "mem_util_pct", "mem_used_mb", "mem_total_mb", "fan_speed_pct", "power_draw_w"}
HARDWARE_KEYS = {"schema_version", "captured_at", "capture", "architecture", "operating_system",
                 "environment", "cpu", "memory", "accelerators"}


def refuseWithoutKey(request: Request, scope: str) -> bytes | None:
    if request.getHeader(b"authorization") == b"Bearer k":
        return None
    request.setResponseCode(401)
    return b"unauthorized"


class SystemRouteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.runner = FakeRunner()
        self.files = {"/proc/cpuinfo": CPUINFO_X86, "/proc/meminfo": MEMINFO}
        self.binaries = {"nvidia-smi": "/usr/bin/nvidia-smi"}

    def build(self, config: PerformanceConfig = PerformanceConfig()) -> None:
        def readFile(path: str) -> str:
            if path not in self.files:
                raise OSError(2, "No such file", path)
            return self.files[path]

        self.monitor = PerformanceMonitor(self.clock, self.runner, config,
                                          reader=PROC.__getitem__, locator=self.binaries.get)
        self.hardware = HardwareDetector(self.clock, self.runner, reader=readFile,
                                         locator=self.binaries.get,
                                         uname=lambda: Uname("Linux", "6.1", "#1", "x86_64"))
        mux = Mux(authenticator=refuseWithoutKey)
        system.install(mux, self.monitor, self.hardware)
        favicon.install(mux)
        self.site = Site(mux, reactor=self.clock)
        for service in (self.monitor, self.hardware):
            service.startService()
            self.addCleanup(service.stopService)
        self.clock.advance(0)

    def get(self, path: bytes, key: bool = True) -> ParsedResponse:
        client = Client(self.site)
        headers = [(b"Authorization", b"Bearer k")] if key else []
        client.send(b"GET", path, headers=headers)
        return client.response()

    def json(self, response: ParsedResponse) -> Any:
        self.assertEqual(response.header(b"content-type"), b"application/json")
        return json.loads(response.body)

    def answerGPUQueries(self) -> None:
        for argv, _, d in self.runner.calls:
            if not d.called:
                stats = "--query-gpu=index,name,uuid,temperature.gpu" in argv[1]
                d.callback((NVIDIA_STATS if stats else NVIDIA_HARDWARE).encode())

    def test_performanceEmpty(self) -> None:
        """
        Before any sample both lists are null.
        """
        self.build()
        response = self.get(b"/api/performance")
        self.assertEqual(response.status, 200)
        self.assertEqual(self.json(response),
                         {"enabled": True, "sys_stats": None, "gpu_stats": None})

    def test_performanceShape(self) -> None:
        """
        Samples have section 7.10's keys, exactly.
        """
        self.build()
        self.answerGPUQueries()
        self.clock.advance(5)
        document = self.json(self.get(b"/api/performance"))
        self.assertEqual(document["enabled"], True)
        [sample] = document["sys_stats"]
        self.assertEqual(set(sample), SYS_KEYS)
        self.assertEqual([set(g) for g in document["gpu_stats"]], [GPU_KEYS, GPU_KEYS])

    def test_after(self) -> None:
        """
        C{?after=} gives only newer samples: polling with the last
        timestamp seen never repeats one.
        """
        self.build()
        self.clock.pump([5.0, 5.0])
        [first, second] = self.json(self.get(b"/api/performance"))["sys_stats"]
        newer = self.json(self.get(b"/api/performance?after=" + first["timestamp"].encode()))
        self.assertEqual(newer["sys_stats"], [second])
        self.assertEqual(newer["gpu_stats"], [])
        latest = self.json(self.get(b"/api/performance?after=" + second["timestamp"].encode()))
        self.assertEqual(latest["sys_stats"], [])
        self.assertEqual(parseStamp(second["timestamp"]) - parseStamp(first["timestamp"]),
                         5_000_000)

    def test_badAfter(self) -> None:
        """
        An unparsable C{after} is llama-swap's 400.
        """
        self.build()
        response = self.get(b"/api/performance?after=yesterday")
        self.assertEqual(response.status, 400)
        self.assertEqual(self.json(response)["error"]["message"],
                         "invalid 'after' timestamp, use RFC3339 format")

    def test_disabled(self) -> None:
        """
        With C{performance.disabled}: 503 C{{"enabled":false}}, not the
        error envelope.
        """
        self.build(PerformanceConfig(disabled=True))
        response = self.get(b"/api/performance")
        self.assertEqual((response.status, self.json(response)), (503, {"enabled": False}))

    def test_hardware(self) -> None:
        """
        C{/api/hardware} waits for the first detection, then answers from
        the cache.
        """
        self.build()
        client = Client(self.site)
        client.send(b"GET", b"/api/hardware", headers=[(b"Authorization", b"Bearer k")])
        self.assertEqual(client.transport.value(), b"")
        self.answerGPUQueries()
        document = self.json(client.response())
        self.assertEqual(set(document), HARDWARE_KEYS)
        self.assertEqual(document["accelerators"][0]["name"], "NVIDIA GeForce RTX 4090")
        self.assertEqual(document["memory"], {"capacity_bytes": 16303428 * 1024})
        calls = len(self.runner.calls)
        self.assertEqual(self.json(self.get(b"/api/hardware")), document)
        self.assertEqual(len(self.runner.calls), calls)

    def test_hardwareUnavailable(self) -> None:
        """
        When detection found nothing: 503 C{hardware detection
        unavailable} in the error envelope.
        """
        self.files.clear()
        self.binaries.clear()
        self.build()
        self.flushLoggedErrors(ValueError)
        response = self.get(b"/api/hardware")
        self.flushLoggedErrors(ValueError)
        self.assertEqual(response.status, 503)
        self.assertEqual(self.json(response)["error"]["message"],
                         "hardware detection unavailable")

    def test_hardwareClientGone(self) -> None:
        """
        A client that left before detection finished is not written to.
        """
        self.build()
        client = Client(self.site)
        client.send(b"GET", b"/api/hardware", headers=[(b"Authorization", b"Bearer k")])
        client.disconnect()
        self.answerGPUQueries()
        self.assertEqual(client.transport.value(), b"")

    def test_auth(self) -> None:
        """
        Both API routes need the key; C{/favicon.ico} does not.
        """
        self.build()
        self.assertEqual(self.get(b"/api/performance", key=False).status, 401)
        self.assertEqual(self.get(b"/api/hardware", key=False).status, 401)
        response = self.get(b"/favicon.ico", key=False)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header(b"content-type"), b"image/svg+xml")
        self.assertTrue(response.body.startswith(b"<svg"))

    def test_faviconFromUI(self) -> None:
        """
        The UI's icon file is served when present; the built-in one
        otherwise.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"<svg id='ui'/>")
        self.assertEqual(favicon.loadIcon(path), b"<svg id='ui'/>")
        self.assertEqual(favicon.loadIcon(path + ".missing"), favicon.BUILTIN_ICON)
