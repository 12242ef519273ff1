"""
The prompt cache with real llama-server upstreams: a conversation continued
after a swap back is not prefilled again (llama-server's C{timings}), the
cache files are keyed by the model definition, the disk cap holds, and a
corrupt file means a cold start with a warning, never a failed request.

These tests fail, not skip, when llama-server is missing: build it with
C{bash .ci/build-llama-server}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from llamaswap.upstream import State
from llamaswap.upstream.promptcache import parseName

from ..harness import Running, startLlamaSwap
from ..util import poll
from .gguf import writeTinyModel
from .realconfig import RealModel, llamaServerEnviron, realConfig

#: Contexts large enough for the long prompt.
ALPHA = RealModel("alpha", 21, ctx=2048)
BETA = RealModel("beta", 22, ctx=2048)

#: About 640 tokens with the tiny models' vocabulary.
LONG = " ".join(["hello world the model swap llama proxy"] * 15)
FIRST = [{"role": "user", "content": LONG}]
GREEDY = {"temperature": 0, "max_tokens": 4}


def continued(answer: str) -> list[dict[str, str]]:
    """
    The conversation of L{FIRST} continued by one more user turn.
    """
    return FIRST + [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "yes no"},
    ]


class PromptCacheTests(TestCase):
    """
    Two real models in one swap group, with the prompt cache on or off.
    """

    timeout = 120

    async def start(
        self, *, promptCache: bool = True, extra: str = "", models=(ALPHA, BETA), directory=None
    ) -> Running:
        self.cacheDir = directory or os.path.abspath(self.mktemp())
        config = realConfig(
            Path(self.mktemp()),
            models,
            extra=(
                f"promptCache: {'true' if promptCache else 'false'}\n"
                f"promptCacheDir: {json.dumps(self.cacheDir)}\n" + extra
            ),
        )
        return await startLlamaSwap(self, config, environ=llamaServerEnviron())

    async def chat(self, running: Running, model: str, messages: list) -> dict[str, Any]:
        response = await running.post(
            "/v1/chat/completions",
            json={"model": model, "messages": messages, **GREEDY},
            timeout=60,
        )
        body = await response.json()
        self.assertEqual(response.code, 200, body)
        return body

    def cacheFiles(self) -> dict[str, int]:
        """
        The prompt cache's files: name to size.
        """
        if not os.path.isdir(self.cacheDir):
            return {}
        return {
            name: os.path.getsize(os.path.join(self.cacheDir, name))
            for name in os.listdir(self.cacheDir)
            if parseName(name) is not None
        }

    async def metric(self, running: Running, name: str) -> dict[tuple, float]:
        response = await running.get("/metrics", timeout=10)
        text = (await response.content()).decode("utf-8")
        return {
            tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        }

    async def swapBack(self, running: Running) -> tuple[dict, dict]:
        """
        Long prompt on alpha, a swap to beta, the conversation continued on
        alpha: the first and the last answers.
        """
        first = await self.chat(running, "alpha", FIRST)
        await self.chat(running, "beta", [{"role": "user", "content": "hello"}])
        answer = first["choices"][0]["message"]["content"]
        last = await self.chat(running, "alpha", continued(answer))
        return first, last

    def test_swapBackSkipsPrefill(self) -> Deferred[None]:
        """
        With C{promptCache: true}, the request after the swap back prefills
        only the new tokens; the restore is counted and noted in that
        request's activity row.
        """

        async def run() -> None:
            running = await self.start()
            first, last = await self.swapBack(running)
            full = first["timings"]["prompt_n"]
            self.assertGreater(full, 500)
            # Only the tokens the conversation added since the first request
            # are processed; the rest come from the restored slot.
            new = last["usage"]["prompt_tokens"] - first["usage"]["prompt_tokens"]
            self.assertGreater(new, 0)
            self.assertLessEqual(last["timings"]["prompt_n"], new)
            self.assertGreaterEqual(last["timings"]["cache_n"], full)
            names = [parseName(name) for name in self.cacheFiles()]
            self.assertTrue(names)
            self.assertFalse(any(n.temporary for n in names if n is not None))
            restores = await self.metric(running, "llamaswap_promptcache_restores_total")
            self.assertEqual(restores.get((("model", "alpha"), ("outcome", "hit"))), 1.0)
            saved = await self.metric(running, "llamaswap_promptcache_saved_bytes_total")
            self.assertGreater(saved.get((("model", "alpha"),), 0), 100_000)
            response = await running.get("/api/metrics/activity", timeout=10)
            activity = (await response.json())["data"]
            marked = [
                row for row in activity
                if row.get("metadata", {}).get("promptCacheRestoredTokens")
            ]
            self.assertEqual(len(marked), 1, activity)
            self.assertEqual(marked[0]["model"], "alpha")
            self.assertGreater(int(marked[0]["metadata"]["promptCacheRestoredTokens"]), 500)

        return Deferred.fromCoroutine(run())

    def test_offPrefillsAgain(self) -> Deferred[None]:
        """
        With C{promptCache: false} the whole conversation is prefilled again
        after the swap back, and no file is written.
        """

        async def run() -> None:
            running = await self.start(promptCache=False)
            first, last = await self.swapBack(running)
            self.assertEqual(last["timings"].get("cache_n", 0), 0)
            self.assertEqual(last["timings"]["prompt_n"], last["usage"]["prompt_tokens"])
            self.assertGreater(last["timings"]["prompt_n"], first["timings"]["prompt_n"])
            self.assertEqual(self.cacheFiles(), {})
            argv = running.app.supervisors["alpha"].spec.argv
            self.assertNotIn("--slot-save-path", argv)

        return Deferred.fromCoroutine(run())

    def test_changedDefinitionInvalidates(self) -> Deferred[None]:
        """
        A cache saved by one definition of alpha is not restored into
        another (a different C{-c}, then a different model file): the
        request prefills in full and the stale files are deleted.
        """

        async def run() -> None:
            running = await self.start()
            await self.chat(running, "alpha", FIRST)
            response = await running.post("/api/models/unload/alpha", timeout=60)
            self.assertEqual(response.code, 200)
            before = set(self.cacheFiles())
            self.assertEqual(len(before), 1)

            # Same directory, alpha with another context size.
            second = await self.start(
                models=(RealModel("alpha", 21, ctx=1024), BETA), directory=self.cacheDir
            )
            answer = await self.chat(second, "alpha", FIRST)
            self.assertGreater(answer["timings"]["prompt_n"], 500)
            self.assertEqual(before & set(self.cacheFiles()), set())
            restores = await self.metric(second, "llamaswap_promptcache_restores_total")
            self.assertEqual(restores.get((("model", "alpha"), ("outcome", "miss"))), 1.0)

        return Deferred.fromCoroutine(run())

    def test_changedModelFileInvalidates(self) -> Deferred[None]:
        """
        Rewriting the model file (another seed, same path) makes the old
        cache stale.
        """

        async def run() -> None:
            running = await self.start()
            await self.chat(running, "alpha", FIRST)
            await self.chat(running, "beta", [{"role": "user", "content": "hello"}])
            before = {n for n in self.cacheFiles() if n.startswith("alpha")}
            self.assertEqual(len(before), 1)
            path = running.app.supervisors["alpha"].spec.argv
            modelFile = path[path.index("-m") + 1]
            writeTinyModel(modelFile, 99, name="alpha")
            answer = await self.chat(running, "alpha", FIRST)
            self.assertGreater(answer["timings"]["prompt_n"], 500)
            self.assertEqual(before & set(self.cacheFiles()), set())

        return Deferred.fromCoroutine(run())

    def test_ttlUnloadSaves(self) -> Deferred[None]:
        """
        A model unloaded by its TTL is saved too, and restored at its next
        start.
        """

        async def run() -> None:
            running = await self.start(extra="globalTTL: 1\n")
            first = await self.chat(running, "alpha", FIRST)
            supervisor = running.app.supervisors["alpha"]
            await poll(lambda: supervisor.state is State.STOPPED, 20, "alpha's TTL unload")
            self.assertEqual(len([n for n in self.cacheFiles() if n.startswith("alpha")]), 1)
            answer = first["choices"][0]["message"]["content"]
            last = await self.chat(running, "alpha", continued(answer))
            self.assertGreaterEqual(last["timings"]["cache_n"], first["timings"]["prompt_n"])

        return Deferred.fromCoroutine(run())

    def test_diskCap(self) -> Deferred[None]:
        """
        With room for about one saved slot, older files are deleted as new
        ones are saved; the directory never exceeds the cap.
        """

        async def run() -> None:
            cap = 500_000  # one ~640-token slot of these models is ~340 kB
            running = await self.start(extra=f"promptCacheMaxBytes: {cap}\n")
            for model in ("alpha", "beta", "alpha", "beta"):
                await self.chat(running, model, FIRST)
                self.assertLessEqual(sum(self.cacheFiles().values()), cap)
            files = self.cacheFiles()
            self.assertEqual(len(files), 1, files)
            self.assertTrue(next(iter(files)).startswith("alpha"))

        return Deferred.fromCoroutine(run())

    def test_corruptFileIgnored(self) -> Deferred[None]:
        """
        A corrupt cache file is ignored with a warning and deleted; the
        request is served from a cold start.
        """

        async def run() -> None:
            running = await self.start()
            await self.chat(running, "alpha", FIRST)
            await self.chat(running, "beta", [{"role": "user", "content": "hello"}])
            (name,) = [n for n in self.cacheFiles() if n.startswith("alpha")]
            path = os.path.join(self.cacheDir, name)
            with open(path, "r+b") as f:
                f.truncate(1000)
            answer = await self.chat(running, "alpha", FIRST)
            self.assertGreater(answer["timings"]["prompt_n"], 500)
            self.assertFalse(os.path.exists(path) and os.path.getsize(path) == 1000)
            restores = await self.metric(running, "llamaswap_promptcache_restores_total")
            self.assertEqual(restores.get((("model", "alpha"), ("outcome", "error"))), 1.0)

        return Deferred.fromCoroutine(run())
