"""
C{/api/performance}, C{/api/hardware} and C{/favicon.ico} of a real
C{twistd llamaswap}, with a fake C{nvidia-smi} first on its C{PATH}.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from twisted.trial.unittest import TestCase

from .twistdproc import Twistd, startTwistd
from .util import poll

#: Answers the stats query and the hardware query the way nvidia-smi does.
FAKE_NVIDIA_SMI = """\
#!/bin/sh
case "$1" in
  --query-gpu=index,name,uuid,temperature.gpu*)
    echo "0, Fake GPU 9000, GPU-00000000-1111-2222-3333-444444444444, 51, [N/A], 63, 20, 1024, 8192, 40, 99.5"
    ;;
  --query-gpu=index,name,uuid,memory.total*)
    echo "0, Fake GPU 9000, GPU-00000000-1111-2222-3333-444444444444, 8192, 555.42, 00000000:01:00.0"
    ;;
  *)
    echo "unexpected arguments: $*" >&2
    exit 2
    ;;
esac
"""


class SystemEndpointTests(TestCase):
    timeout = 90

    async def start(self, config: str) -> Twistd:
        bin = os.path.abspath(self.mktemp())
        os.makedirs(bin)
        tool = os.path.join(bin, "nvidia-smi")
        with open(tool, "w") as f:
            f.write(FAKE_NVIDIA_SMI)
        os.chmod(tool, os.stat(tool).st_mode | stat.S_IXUSR)
        path = bin + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
        return await startTwistd(self, config, environ={"PATH": path})

    async def getJSON(self, running: Twistd, path: str) -> tuple[int, Any]:
        response = await running.get(path)
        body = await response.content()
        return response.code, json.loads(body)

    async def test_gpuRows(self) -> None:
        """
        The fake GPU shows in the hardware snapshot and, with system
        samples, in the performance data.
        """
        running = await self.start("performance:\n  every: 5s\nmodels: {}\n")
        code, hardware = await self.getJSON(running, "/api/hardware")
        self.assertEqual(code, 200)
        self.assertEqual(
            [(a["vendor"], a["name"], a["memory_bytes"], a["driver_version"])
             for a in hardware["accelerators"]],
            [("nvidia", "Fake GPU 9000", 8192 * 1024 * 1024, "555.42")],
        )
        self.assertEqual(hardware["capture"]["method"], "procfs+nvidia-smi")
        self.assertGreater(hardware["cpu"]["threads"], 0)
        self.assertGreater(hardware["memory"]["capacity_bytes"], 0)

        document: dict[str, Any] = {}

        async def sampled() -> bool:
            nonlocal document
            code, document = await self.getJSON(running, "/api/performance")
            self.assertEqual(code, 200)
            return bool(document["sys_stats"]) and bool(document["gpu_stats"])

        await poll(sampled, 30, "a system sample and a GPU sample")
        gpu = document["gpu_stats"][0]
        self.assertEqual((gpu["name"], gpu["temp_c"], gpu["vram_temp_c"], gpu["power_draw_w"]),
                         ("Fake GPU 9000", 51, 0, 99.5))
        sample = document["sys_stats"][0]
        self.assertEqual(len(sample["cpu_util_per_core"]), os.cpu_count())
        self.assertGreater(sample["mem_total_mb"], 0)

        response = await running.get("/metrics")
        metrics = (await response.content()).decode()
        self.assertIn('llamaswap_gpu_power_draw_watts{id="0",name="Fake GPU 9000",', metrics)
        self.assertIn('llamaswap_cpu_util_percent{core="0"}', metrics)

        response = await running.get("/favicon.ico")
        self.assertEqual(response.code, 200)
        self.assertIn(b"<svg", await response.content())

    async def test_disabled(self) -> None:
        """
        C{performance: {disabled: true}} answers 503 C{{"enabled":false}}.
        """
        running = await self.start("performance:\n  disabled: true\nmodels: {}\n")
        self.assertEqual(await self.getJSON(running, "/api/performance"),
                         (503, {"enabled": False}))
