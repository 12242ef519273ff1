"""
C{twistd -n llamaswap --models-dir DIR} with no configuration file and a
real llama.cpp C{llama-server} found on C{PATH}: every generated GGUF in
the folder is listed and served, and the memory estimate llamaswap shows
for each is within 2x of the resident memory of its llama-server.

Fails (does not skip) when llama-server is missing: build it with
C{bash .ci/build-llama-server}.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import TestCase

from ..twistdproc import startPort, startTwistd
from .gguf import writeTinyModel
from .llamaserver import findLlamaServer


def residentBytes(pid: int) -> int:
    """
    C{VmRSS} of process C{pid}, in bytes.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def commandLine(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [w.decode() for w in f.read().split(b"\0") if w]
    except OSError:
        return []


class ModelsDirTests(TestCase):
    timeout = 120

    async def test_noConfig(self) -> None:
        binary = findLlamaServer()
        folder = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(folder, "more"))
        writeTinyModel(os.path.join(folder, "tiny-a.gguf"), 1, name="tiny-a")
        writeTinyModel(os.path.join(folder, "more", "tiny-b.gguf"), 2, name="tiny-b")
        path = os.path.dirname(binary) + os.pathsep + os.environ.get("PATH", "")
        running = await startTwistd(self, None, "--models-dir", folder, environ={"PATH": path})

        response = await running.get("/v1/models")
        listed = sorted(m["id"] for m in (await response.json())["data"])
        self.assertEqual(listed, ["tiny-a", "tiny-b"])

        measured: dict[str, tuple[int, int]] = {}
        for model in ("tiny-a", "tiny-b"):
            response = await running.post(
                "/v1/chat/completions",
                json={
                    "model": model,
                    "max_tokens": 4,
                    "messages": [{"role": "user", "content": "hello world"}],
                },
            )
            body: Any = await response.json()
            self.assertEqual(response.code, 200, body)
            self.assertEqual(body["object"], "chat.completion")
            document = await (await running.get("/running")).json()
            [entry] = [e for e in document["running"] if e["model"] == model]
            self.assertTrue(entry["memory_estimated"])
            servers = [
                pid
                for pid in running.remember()
                if (argv := commandLine(pid))
                and os.path.basename(argv[0]) == "llama-server"
                and any(a.endswith(f"{model}.gguf") for a in argv)
            ]
            self.assertEqual(len(servers), 1, running.output)
            measured[model] = (entry["memory"], residentBytes(servers[0]))
        for model, (estimate, rss) in measured.items():
            self.assertLessEqual(estimate, 2 * rss, (model, estimate, rss))
            self.assertLessEqual(rss, 2 * estimate, (model, estimate, rss))

    async def test_autoBudget(self) -> None:
        """
        C{memoryBudget: auto} next to C{--models-dir}: the folder's models,
        estimated from their files, run together while they fit (here:
        both, in this machine's RAM).
        """
        binary = findLlamaServer()
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        writeTinyModel(os.path.join(folder, "tiny-a.gguf"), 1, name="tiny-a")
        writeTinyModel(os.path.join(folder, "tiny-b.gguf"), 2, name="tiny-b")
        path = os.path.dirname(binary) + os.pathsep + os.environ.get("PATH", "")
        running = await startTwistd(
            self, startPort(2) + "memoryBudget: auto\n", "--models-dir", folder, environ={"PATH": path}
        )
        for model in ("tiny-a", "tiny-b"):
            response = await running.post(
                "/v1/chat/completions",
                json={
                    "model": model,
                    "max_tokens": 2,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
            self.assertEqual(response.code, 200, await response.text())
        document = await (await running.get("/running")).json()
        self.assertEqual(
            {e["model"]: e["state"] for e in document["running"]},
            {"tiny-a": "ready", "tiny-b": "ready"},
        )
        # One pool of RAM here; gpu0, gpu1, ... where nvidia-smi/rocm-smi answer.
        self.assertTrue(document["memory"]["budget"])
        inUse = sum(document["memory"]["in_use"].values())
        self.assertEqual(inUse, sum(e["memory"] for e in document["running"]))
