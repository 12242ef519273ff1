"""
End to end: C{twistd -n llamaswap --models-dir DIR} over a folder of tiny
GGUF files (without C{--watch-config}) notices a model file copied in and
one deleted, without a restart.  The C{llama-server} on C{PATH} is a
script that runs the demo upstream, so no real inference server is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

from twisted.trial.unittest import TestCase

from .integration.gguf import writeTinyModel
from .twistdproc import Twistd, startPort, startTwistd
from .util import poll


def fakeLlamaServer(directory: str) -> str:
    """
    Write an executable C{llama-server} into C{directory} that runs the
    demo upstream with the same C{--port} and C{--model}.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "llama-server")
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\nexec {sys.executable} -m llamaswap.demo "$@" --silent\n')
    os.chmod(path, 0o755)
    return path


async def listed(running: Twistd) -> list[str]:
    response = await running.get("/v1/models")
    body: Any = await response.json()
    return sorted(m["id"] for m in body["data"])


class LiveModelsDirTests(TestCase):
    timeout = 120

    async def test_addAndDelete(self) -> None:
        base = os.path.abspath(self.mktemp())
        folder = os.path.join(base, "models")
        os.makedirs(folder)
        fakeLlamaServer(os.path.join(base, "bin"))
        writeTinyModel(os.path.join(folder, "tiny-a.gguf"), 1, name="tiny-a")
        staged = writeTinyModel(os.path.join(base, "tiny-b.gguf"), 2, name="tiny-b")
        path = os.path.join(base, "bin") + os.pathsep + os.environ.get("PATH", "")
        running = await startTwistd(
            self, startPort(2), "--models-dir", folder, environ={"PATH": path}
        )
        self.assertEqual(await listed(running), ["tiny-a"])

        # Copied into a subdirectory made after the start.
        os.makedirs(os.path.join(folder, "more"))
        added = os.path.join(folder, "more", "tiny-b.gguf")
        shutil.copyfile(staged, added)

        async def present() -> bool:
            return await listed(running) == ["tiny-a", "tiny-b"]

        await poll(present, 30, "tiny-b to be listed")
        self.assertIn("configuration reloaded (models-dir)", running.output)
        response = await running.post(
            "/v1/chat/completions",
            json={"model": "tiny-b", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]},
        )
        self.assertEqual(response.code, 200, await response.text())
        await response.content()

        os.remove(added)

        async def gone() -> bool:
            if await listed(running) != ["tiny-a"]:
                return False
            response = await running.get("/running")
            text = await response.text()
            self.assertEqual(response.code, 200, text + running.output)
            document: Any = json.loads(text)
            return [e["model"] for e in document["running"]] == []

        await poll(gone, 30, "tiny-b to be delisted and stopped")
