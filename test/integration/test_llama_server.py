"""
Smoke tests against a real llama.cpp C{llama-server} running a tiny generated
model: they check the fixture itself (binary lookup, model writer, spawn,
health wait, cleanup) and the upstream response shapes llamaswap relies on.

These fail, not skip, when llama-server is missing: build it with
C{bash .ci/build-llama-server}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from .gguf import writeTinyModel
from .llamaserver import (
    BUILD_COMMAND,
    ENV_BINARY,
    ENV_CACHE,
    LlamaServer,
    LlamaServerNotFound,
    findLlamaServer,
    startLlamaServer,
)

CHAT = {
    "messages": [{"role": "user", "content": "hello world"}],
    "max_tokens": 8,
    "temperature": 0,
}


class FindLlamaServerTests(TestCase):
    """
    L{findLlamaServer} explains how to build llama-server when it has none.
    """

    def setUp(self) -> None:
        saved = {k: os.environ.get(k) for k in (ENV_BINARY, ENV_CACHE, "PATH")}

        def restore() -> None:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

        self.addCleanup(restore)

    def test_missingEverywhere(self) -> None:
        empty = Path(self.mktemp())
        empty.mkdir()
        os.environ.pop(ENV_BINARY, None)
        os.environ[ENV_CACHE] = str(empty)
        os.environ["PATH"] = str(empty)
        with self.assertRaises(LlamaServerNotFound) as caught:
            findLlamaServer()
        self.assertIn(BUILD_COMMAND, str(caught.exception))

    def test_badExplicitPath(self) -> None:
        os.environ[ENV_BINARY] = os.path.join(self.mktemp(), "llama-server")
        with self.assertRaises(LlamaServerNotFound) as caught:
            findLlamaServer()
        self.assertIn(BUILD_COMMAND, str(caught.exception))
        self.assertIn(ENV_BINARY, str(caught.exception))


class LlamaServerTests(TestCase):
    """
    A real llama-server serving L{writeTinyModel} models.
    """

    timeout = 60

    def setUp(self) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        self.dir = Path(self.mktemp())
        self.dir.mkdir()

    async def start(self, name: str, seed: int, *args: str,
                    embeddings: bool = False) -> LlamaServer:
        model = writeTinyModel(self.dir / f"{name}.gguf", seed, name=name,
                               embeddings=embeddings)
        return await startLlamaServer(
            reactor, model, ["--threads", "1", "--parallel", "1", *args],
            timeout=30, cleanup=self.addCleanup,
        )

    async def getJSON(self, server: LlamaServer, path: str) -> dict:
        response = await treq.get(server.url(path), pool=self.pool, timeout=10)
        self.assertEqual(response.code, 200, path)
        return await response.json()

    async def postJSON(self, server: LlamaServer, path: str, body: dict) -> dict:
        response = await treq.post(server.url(path), json=body, pool=self.pool,
                                   timeout=20)
        content = await response.content()
        self.assertEqual(response.code, 200, content[:500])
        return json.loads(content)

    def assertUsageAndTimings(self, body: dict) -> None:
        usage = body["usage"]
        self.assertGreater(usage["prompt_tokens"], 0)
        self.assertGreater(usage["completion_tokens"], 0)
        self.assertLessEqual(usage["completion_tokens"], CHAT["max_tokens"])
        self.assertEqual(usage["total_tokens"],
                         usage["prompt_tokens"] + usage["completion_tokens"])
        timings = body["timings"]
        for key in ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms"):
            self.assertIn(key, timings)
        self.assertEqual(timings["predicted_n"], usage["completion_tokens"])

    async def test_modelIdentity(self) -> None:
        """
        llama-server names a model by its path (or C{--alias}) in
        C{/v1/models} and C{/props}, so two models written to files named
        after them are told apart, which is what a swap test observes.
        """
        first = await self.start("tiny-alpha", 1)
        second = await self.start("tiny-beta", 2, "--alias", "beta")
        ids = []
        for server in (first, second):
            models = await self.getJSON(server, "/v1/models")
            ids.append(models["data"][0]["id"])
            self.assertEqual(models["data"][0]["meta"]["n_embd"], 64)
            props = await self.getJSON(server, "/props")
            self.assertEqual(props["model_alias"], ids[-1])
        self.assertTrue(ids[0].endswith("tiny-alpha.gguf"), ids[0])
        self.assertEqual(ids[1], "beta")

    async def test_chatCompletion(self) -> None:
        """
        A non-streamed chat completion has choices, usage and timings.
        """
        server = await self.start("tiny-chat", 3)
        body = await self.postJSON(server, "/v1/chat/completions", CHAT)
        self.assertEqual(body["object"], "chat.completion")
        choice = body["choices"][0]
        self.assertEqual(choice["message"]["role"], "assistant")
        self.assertIsInstance(choice["message"]["content"], str)
        self.assertIn(choice["finish_reason"], ("stop", "length"))
        self.assertUsageAndTimings(body)

    async def test_chatCompletionStreamed(self) -> None:
        """
        A streamed chat completion is SSE ending in C{[DONE]}, with usage and
        timings on the final chunk.
        """
        server = await self.start("tiny-stream", 4)
        response = await treq.post(
            server.url("/v1/chat/completions"),
            json=dict(CHAT, stream=True, stream_options={"include_usage": True}),
            pool=self.pool, timeout=20,
        )
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders(b"content-type")[0]
                        .startswith(b"text/event-stream"))
        text = (await response.content()).decode("utf-8")
        payloads: List[str] = [
            line[len("data: "):] for line in text.splitlines()
            if line.startswith("data: ")
        ]
        self.assertEqual(payloads[-1], "[DONE]")
        chunks = [json.loads(p) for p in payloads[:-1]]
        self.assertGreater(len(chunks), 1)
        for chunk in chunks:
            self.assertEqual(chunk["object"], "chat.completion.chunk")
        finish = [c["choices"][0]["finish_reason"] for c in chunks
                  if c["choices"] and c["choices"][0].get("finish_reason")]
        self.assertEqual(len(finish), 1)
        final = [c for c in chunks if c.get("usage")]
        self.assertTrue(final, "no chunk carried usage")
        self.assertUsageAndTimings(final[-1])

    async def test_embeddings(self) -> None:
        """
        An C{--embeddings} instance serves C{/v1/embeddings}.
        """
        server = await self.start("tiny-embed", 5, "--embeddings",
                                  embeddings=True)
        body = await self.postJSON(server, "/v1/embeddings",
                                   {"input": ["hello world", "swap"]})
        self.assertEqual([d["index"] for d in body["data"]], [0, 1])
        for item in body["data"]:
            self.assertEqual(len(item["embedding"]), 64)
            self.assertTrue(all(isinstance(x, float) for x in item["embedding"]))
        self.assertNotEqual(body["data"][0]["embedding"],
                            body["data"][1]["embedding"])
        self.assertGreater(body["usage"]["prompt_tokens"], 0)

    async def test_stopReaps(self) -> None:
        """
        L{LlamaServer.stop} terminates the process and waits until it has
        been reaped, after which the pid no longer exists.
        """
        server = await self.start("tiny-stop", 6)
        pid = server.pid
        self.assertIsNotNone(pid)
        await server.stop()
        self.assertTrue(server.exited)
        self.assertIsNone(server.pid)
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)
