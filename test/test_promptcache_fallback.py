"""
The prompt cache never makes things worse: a "llama-server" without the
slot API (here a wrapper named C{llama-server} that runs the demo upstream)
starts cold with a warning, and every request is served.
"""

from __future__ import annotations

import json
import os
import stat
import sys

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from .harness import startLlamaSwap


class NoSlotAPITests(TestCase):
    timeout = 60

    def test_servedCold(self) -> Deferred[None]:
        async def run() -> None:
            root = os.path.abspath(self.mktemp())
            os.makedirs(root)
            wrapper = os.path.join(root, "llama-server")
            with open(wrapper, "w") as f:
                # Keeps only --port: the demo rejects llama-server's flags.
                f.write(
                    "#!/bin/sh\n"
                    f'exec {sys.executable} -m llamaswap.demo --port "$2" --silent\n'
                )
            os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR)
            cacheDir = os.path.join(root, "kv")
            config = (
                "promptCache: true\n"
                f"promptCacheDir: {json.dumps(cacheDir)}\n"
                "models:\n"
                f"  a:\n    cmd: {wrapper} --port ${{PORT}}\n"
                f"  b:\n    cmd: {wrapper} --port ${{PORT}}\n"
            )
            running = await startLlamaSwap(self, config)
            self.assertIn("--slot-save-path", running.app.supervisors["a"].spec.argv)
            for model in ("a", "b", "a"):
                status, body = await running.chat(model)
                self.assertEqual(status, 200, body)
            response = await running.get("/metrics", timeout=10)
            text = (await response.content()).decode("utf-8")
            outcomes = {
                (sample.name, sample.labels["model"], sample.labels["outcome"]): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name.startswith("llamaswap_promptcache_")
                and "outcome" in sample.labels
            }
            self.assertEqual(
                outcomes.get(("llamaswap_promptcache_restores_total", "a", "unsupported")), 2.0
            )
            self.assertEqual(
                outcomes.get(("llamaswap_promptcache_saves_total", "a", "unsupported")), 1.0
            )
            self.assertEqual(os.listdir(cacheDir), [])

        return Deferred.fromCoroutine(run())
