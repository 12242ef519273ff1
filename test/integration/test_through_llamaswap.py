"""
Real llama.cpp C{llama-server} upstreams and the official C{openai} and
C{anthropic} SDK clients, through a whole llamaswap on 127.0.0.1.

Four tiny generated models (L{test.integration.realconfig}), each a real
llama-server named by C{--alias}; the answers are gibberish but every shape
is the real one: chat completions streamed and not, completions, the
Responses API, embeddings, Anthropic messages, streamed messages and
C{count_tokens}, C{/upstream/<model>/} passthrough, swaps under concurrent
clients, a request arriving while llama-server answers 503 "Loading
model", and the token counts llamaswap records from C{usage}/C{timings}.

The SDKs are synchronous, so they run in the reactor's thread pool
(L{SDKThreads}) while the reactor serves llamaswap.  These tests fail, not
skip, when llama-server is missing: build it with
C{bash .ci/build-llama-server}.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from ..harness import Running, startLlamaSwap
from ..util import poll
from .realconfig import STANDARD_MODELS, RealModel, llamaServerEnviron, realConfig
from .sdkthreads import SDKThreads

MAX_TOKENS = 8
#: Greedy decoding: the same model and prompt give the same tokens, so the
#: first streamed token is a whole character (see L{AnthropicTests}).
GREEDY: dict[str, Any] = {"temperature": 0}
#: The same for the Anthropic SDK, whose methods no longer take
#: C{temperature}; llama-server still reads it from the body.
GREEDY_ANTHROPIC: dict[str, Any] = {"extra_body": {"temperature": 0}}
MESSAGES = [{"role": "user", "content": "hello world"}]

#: A fifth model whose load is slow enough to be caught answering 503:
#: a 262144-token context makes llama-server allocate and clear a ~64 MB
#: KV cache while loading (about 150 ms here, instead of a few ms), and
#: L{LoadingTests} freezes it there.
SLOW = RealModel("slow", 15, ctx=262144)


@implementer(IAgentEndpointFactory)
class _PlainTCP:
    """
    Plain TCP endpoints for an L{Agent}: the default L{HostnameEndpoint}
    reports a refused connection only after its 0.3 s attempt delay, far
    longer than the loading window the test must catch.
    """

    def endpointForURI(self, uri: Any) -> TCP4ClientEndpoint:
        return TCP4ClientEndpoint(reactor, uri.host.decode("ascii"), uri.port, timeout=5)


def _directAgent(test: TestCase) -> Agent:
    """
    An agent straight to an upstream's port, its pool closed in cleanup.
    """
    pool = HTTPConnectionPool(reactor, persistent=False)
    test.addCleanup(pool.closeCachedConnections)
    return Agent.usingEndpointFactory(reactor, _PlainTCP(), pool=pool)


class _Base(TestCase):
    """
    Start llamaswap with real llama-server models and SDK clients for it.
    """

    timeout = 60
    models: tuple[RealModel, ...] = STANDARD_MODELS

    def setUp(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        directory = Path(self.mktemp())
        config = realConfig(directory, self.models)
        self.running: Running = await startLlamaSwap(
            self, config, environ=llamaServerEnviron()
        )
        # After startLlamaSwap: cleanups run in reverse, so the SDK threads
        # end before llamaswap stops.
        self.sdk = SDKThreads(self, self.running.url, poolSize=12)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    def assertChatUsage(self, usage: Any, timings: dict[str, Any]) -> None:
        """
        OpenAI C{usage} from llama-server, consistent with its C{timings}.
        """
        self.assertGreater(usage.prompt_tokens, 0)
        self.assertGreater(usage.completion_tokens, 0)
        self.assertLessEqual(usage.completion_tokens, MAX_TOKENS)
        self.assertEqual(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)
        self.assertEqual(timings["predicted_n"], usage.completion_tokens)
        # prompt_n counts only the tokens not taken from the prompt cache.
        self.assertEqual(
            timings["prompt_n"] + timings.get("cache_n", 0), usage.prompt_tokens
        )

    async def getJSON(self, path: str) -> tuple[int, Any]:
        response = await treq.get(self.running.url + path, pool=self.pool, timeout=30)
        body = await response.content()
        try:
            return response.code, json.loads(body)
        except ValueError:
            return response.code, body.decode("utf-8", "replace")

    def runningModels(self) -> list[str]:
        return [model for model, _ in self.running.app.router.running()]

    async def metricSamples(self, name: str) -> dict[str, float]:
        """
        C{{model: value}} of metric sample C{name} in C{/metrics}.
        """
        response = await treq.get(self.running.url + "/metrics", pool=self.pool, timeout=10)
        self.assertEqual(response.code, 200)
        text = (await response.content()).decode("utf-8")
        return {
            sample.labels["model"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        }


class OpenAITests(_Base):
    """
    The C{openai} SDK against llamaswap.
    """

    async def test_chatCompletion(self) -> None:
        """
        A non-streamed chat completion comes from the named model's server
        (its alias in C{model}) with C{usage} and llama.cpp's C{timings}.
        """
        client = self.sdk.openai()
        answer = await self.sdk.call(
            client.chat.completions.create,
            model="alpha", messages=MESSAGES, max_tokens=MAX_TOKENS, **GREEDY,
        )
        self.assertEqual(answer.object, "chat.completion")
        self.assertEqual(answer.model, "alpha")
        choice = answer.choices[0]
        self.assertEqual(choice.message.role, "assistant")
        self.assertIsInstance(choice.message.content, str)
        self.assertIn(choice.finish_reason, ("stop", "length"))
        self.assertChatUsage(answer.usage, answer.model_extra["timings"])
        self.assertEqual(self.runningModels(), ["alpha"])

    async def test_chatCompletionStreamed(self) -> None:
        """
        A streamed chat completion arrives as chunks from the right model,
        one finish reason, and C{usage} and C{timings} on the last chunk.
        """
        client = self.sdk.openai()

        def stream() -> list[Any]:
            chunks = client.chat.completions.create(
                model="beta", messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True,
                stream_options={"include_usage": True}, **GREEDY,
            )
            return list(chunks)

        chunks = await self.sdk.call(stream)
        self.assertGreater(len(chunks), 2)
        self.assertEqual({c.model for c in chunks}, {"beta"})
        self.assertEqual({c.object for c in chunks}, {"chat.completion.chunk"})
        finishes = [c.choices[0].finish_reason for c in chunks
                    if c.choices and c.choices[0].finish_reason]
        self.assertEqual(len(finishes), 1, finishes)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertTrue(text)
        last = chunks[-1]
        self.assertIsNotNone(last.usage)
        self.assertChatUsage(last.usage, last.model_extra["timings"])

    async def test_completions(self) -> None:
        """
        The legacy completions endpoint.
        """
        client = self.sdk.openai()
        answer = await self.sdk.call(
            client.completions.create,
            model="gamma", prompt="hello world", max_tokens=MAX_TOKENS, **GREEDY,
        )
        self.assertEqual(answer.model, "gamma")
        self.assertIsInstance(answer.choices[0].text, str)
        self.assertIn(answer.choices[0].finish_reason, ("stop", "length"))
        self.assertChatUsage(answer.usage, answer.model_extra["timings"])

    async def test_responses(self) -> None:
        """
        The Responses API, whole and streamed: a completed response with
        output text and C{usage}; the stream starts with
        C{response.created} and ends with C{response.completed}.
        """
        client = self.sdk.openai()
        answer = await self.sdk.call(
            client.responses.create,
            model="alpha", input="hello world", max_output_tokens=MAX_TOKENS, **GREEDY,
        )
        self.assertEqual(answer.model, "alpha")
        self.assertEqual(answer.status, "completed")
        self.assertIsInstance(answer.output_text, str)
        self.assertGreater(answer.usage.input_tokens, 0)
        self.assertGreater(answer.usage.output_tokens, 0)
        self.assertLessEqual(answer.usage.output_tokens, MAX_TOKENS)

        def stream() -> list[Any]:
            return list(client.responses.create(
                model="beta", input="hello world", max_output_tokens=MAX_TOKENS,
                stream=True, **GREEDY,
            ))

        events = await self.sdk.call(stream)
        types = [e.type for e in events]
        self.assertEqual(types[0], "response.created")
        self.assertEqual(types[-1], "response.completed")
        self.assertIn("response.output_text.delta", types)
        final = events[-1].response
        self.assertEqual(final.model, "beta")
        self.assertLessEqual(final.usage.output_tokens, MAX_TOKENS)
        self.assertGreater(final.usage.output_tokens, 0)

    async def test_embeddings(self) -> None:
        """
        Embeddings from the C{--embeddings} model: the SDK's default base64
        encoding and C{float} give the same 64-wide vectors, one per input.
        """
        client = self.sdk.openai()
        inputs = ["hello world", "swap"]
        encoded = await self.sdk.call(client.embeddings.create, model="embed", input=inputs)
        floats = await self.sdk.call(
            client.embeddings.create, model="embed", input=inputs, encoding_format="float"
        )
        for answer in (encoded, floats):
            self.assertEqual(answer.model, "embed")
            self.assertEqual([d.index for d in answer.data], [0, 1])
            self.assertEqual([len(d.embedding) for d in answer.data], [64, 64])
            self.assertGreater(answer.usage.prompt_tokens, 0)
        self.assertNotEqual(floats.data[0].embedding, floats.data[1].embedding)
        for a, b in zip(encoded.data[0].embedding, floats.data[0].embedding):
            self.assertAlmostEqual(a, b, places=5)


class AnthropicTests(_Base):
    """
    The C{anthropic} SDK against llamaswap (llama-server's own Messages
    API).  Greedy decoding matters for the streamed test: this llama-server
    leaves out C{message_start} when the first generated token is an
    incomplete UTF-8 sequence (random models emit byte tokens), which the
    SDK's stream helper cannot parse.  With C{temperature: 0} the prompt
    below gives a whole first character on model C{beta}.
    """

    async def test_message(self) -> None:
        """
        A message from the named model with text content and C{usage}.
        """
        client = self.sdk.anthropic()
        answer = await self.sdk.call(
            client.messages.create,
            model="alpha", max_tokens=MAX_TOKENS, messages=MESSAGES, **GREEDY_ANTHROPIC,
        )
        self.assertEqual(answer.model, "alpha")
        self.assertEqual(answer.role, "assistant")
        self.assertEqual(answer.content[0].type, "text")
        self.assertIsInstance(answer.content[0].text, str)
        self.assertIn(answer.stop_reason, ("end_turn", "max_tokens"))
        self.assertGreater(answer.usage.output_tokens, 0)
        self.assertLessEqual(answer.usage.output_tokens, MAX_TOKENS)
        self.assertGreater(
            answer.usage.input_tokens + (answer.usage.cache_read_input_tokens or 0), 0
        )

    async def test_messageStreamed(self) -> None:
        """
        The SDK's stream helper assembles the streamed events into a final
        message equal to the text of its deltas.
        """
        client = self.sdk.anthropic()

        def stream() -> tuple[list[str], str, Any]:
            with client.messages.stream(
                model="beta", max_tokens=MAX_TOKENS, messages=MESSAGES, **GREEDY_ANTHROPIC
            ) as events:
                types = []
                text = []
                for event in events:
                    types.append(event.type)
                    if event.type == "text":
                        text.append(event.text)
                return types, "".join(text), events.get_final_message()

        types, text, final = await self.sdk.call(stream)
        self.assertEqual(types[0], "message_start")
        self.assertEqual(types[-1], "message_stop")
        self.assertIn("content_block_delta", types)
        self.assertEqual(final.model, "beta")
        self.assertEqual(final.content[0].text, text)
        self.assertIn(final.stop_reason, ("end_turn", "max_tokens"))
        self.assertGreater(final.usage.output_tokens, 0)
        self.assertLessEqual(final.usage.output_tokens, MAX_TOKENS)

    async def test_countTokens(self) -> None:
        """
        C{count_tokens} counts the prompt that a message then reports as
        its input (uncached plus cache-read tokens).
        """
        client = self.sdk.anthropic()
        counted = await self.sdk.call(
            client.messages.count_tokens, model="gamma", messages=MESSAGES
        )
        self.assertGreater(counted.input_tokens, 0)
        answer = await self.sdk.call(
            client.messages.create,
            model="gamma", max_tokens=MAX_TOKENS, messages=MESSAGES, **GREEDY_ANTHROPIC,
        )
        self.assertEqual(
            answer.usage.input_tokens + (answer.usage.cache_read_input_tokens or 0),
            counted.input_tokens,
        )


class SwapTests(_Base):
    """
    Swapping real servers.
    """

    async def test_swapUnderConcurrency(self) -> None:
        """
        Eight threads, each with its own OpenAI and Anthropic clients,
        each asking four models in a different rotation (chat, messages,
        embeddings) at once: every request succeeds and is answered by the
        server of the model it named, every model was loaded, and one
        model is left running.
        """
        chat = ["alpha", "beta", "gamma"]
        rotation = chat + ["embed"]
        rounds = 3
        clients = [(self.sdk.openai(), self.sdk.anthropic()) for _ in range(8)]

        def worker(i: int) -> list[tuple[str, str]]:
            oa, an = clients[i]
            seen = []
            for j in range(rounds):
                model = rotation[(i + j) % len(rotation)]
                if model == "embed":
                    answer = oa.embeddings.create(model=model, input="hello")
                    seen.append((model, answer.model))
                elif (i + j) % 2:
                    answer = an.messages.create(
                        model=model, max_tokens=4, messages=MESSAGES, **GREEDY_ANTHROPIC
                    )
                    seen.append((model, answer.model))
                else:
                    answer = oa.chat.completions.create(
                        model=model, max_tokens=4, messages=MESSAGES, **GREEDY
                    )
                    seen.append((model, answer.model))
            return seen

        results = await DeferredList(
            [self.sdk.call(worker, i) for i in range(len(clients))], consumeErrors=True
        )
        errors = [f"worker {i}: {r.getTraceback()}" for i, (ok, r) in enumerate(results) if not ok]
        self.assertEqual(errors, [])
        answered = [pair for _, seen in results for pair in seen]
        self.assertEqual(len(answered), len(clients) * rounds)
        self.assertEqual([asked for asked, by in answered if asked != by], [])
        self.assertEqual(len(self.runningModels()), 1)
        loads = await self.metricSamples("llamaswap_model_loads_total")
        self.assertEqual(sorted(loads), sorted(rotation))
        self.assertTrue(all(n >= 1 for n in loads.values()), loads)

    async def test_readyAtTheLine(self) -> None:
        """
        llama-server's "model loaded" line, once the probe it sent found
        the server ready, makes that model's next starts ready at the line
        (see L{llamaswap.upstream.health}).
        """
        watches: dict[str, list[Any]] = {"alpha": [], "beta": []}
        for model, seen in watches.items():
            prober = self.running.app.supervisors[model]._prober

            def recording(url: str, prober: Any = prober, seen: list[Any] = seen) -> Any:
                watch = type(prober).watch(prober, url)
                seen.append(watch)
                return watch

            prober.watch = recording
        for model in ("alpha", "beta") * 6:
            status, props = await self.getJSON(f"/upstream/{model}/props")
            self.assertEqual(status, 200, props)
            self.assertEqual(props["model_alias"], model)
        for model, seen in watches.items():
            how = [watch.readyBy for watch in seen]
            # The line made it ready (a safety-net probe may have gone out
            # before it on a slow start; the unit tests count probes).
            self.assertIn("line", how, f"{model}: {[(w.readyBy, w.probes) for w in seen]}")

    async def test_upstreamProps(self) -> None:
        """
        C{/upstream/<model>/props} starts the model, swapping the other out,
        and relays llama-server's own C{/props}, which names it.
        """
        for model in ("alpha", "beta", "alpha"):
            status, props = await self.getJSON(f"/upstream/{model}/props")
            self.assertEqual(status, 200, props)
            self.assertEqual(props["model_alias"], model)
            self.assertEqual(self.runningModels(), [model])



class UsageTests(_Base):
    """
    llamaswap records the token counts llama-server reports.
    """

    async def test_tokensRecorded(self) -> None:
        """
        The activity rows and the Prometheus token counters hold the counts
        of llama.cpp's C{timings} (C{prompt_n} excludes cached prompt
        tokens, which are C{cache_n}), for non-streamed and streamed chats;
        an Anthropic message is counted from its C{usage}.
        """
        client = self.sdk.openai()
        plain = await self.sdk.call(
            client.chat.completions.create,
            model="alpha", messages=MESSAGES, max_tokens=MAX_TOKENS, **GREEDY,
        )

        def stream() -> Any:
            chunks = list(client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "swap"}],
                max_tokens=MAX_TOKENS, stream=True,
                stream_options={"include_usage": True}, **GREEDY,
            ))
            return chunks[-1]

        streamed = await self.sdk.call(stream)
        message = await self.sdk.call(
            self.sdk.anthropic().messages.create,
            model="alpha", max_tokens=MAX_TOKENS, messages=MESSAGES, **GREEDY_ANTHROPIC,
        )
        expected = [
            ("/v1/chat/completions", plain.model_extra["timings"]["prompt_n"],
             plain.model_extra["timings"]["predicted_n"]),
            ("/v1/chat/completions", streamed.model_extra["timings"]["prompt_n"],
             streamed.model_extra["timings"]["predicted_n"]),
            ("/v1/messages", message.usage.input_tokens, message.usage.output_tokens),
        ]
        rows: list[dict[str, Any]] = []

        async def recorded() -> bool:
            status, body = await self.getJSON(
                "/api/metrics/activity?model=alpha&sort=id&order=asc&limit=10"
            )
            self.assertEqual(status, 200, body)
            rows[:] = body["data"]
            return len(rows) >= len(expected)

        await poll(recorded, 10, "three activity rows")
        self.assertEqual(
            [(r["req_path"], r["tokens"]["input_tokens"], r["tokens"]["output_tokens"])
             for r in rows],
            expected,
        )
        self.assertEqual(rows[0]["tokens"]["cache_tokens"],
                         plain.model_extra["timings"].get("cache_n", 0))
        inputs = await self.metricSamples("llamaswap_input_tokens_total")
        outputs = await self.metricSamples("llamaswap_output_tokens_total")
        self.assertEqual(inputs, {"alpha": float(sum(e[1] for e in expected))})
        self.assertEqual(outputs, {"alpha": float(sum(e[2] for e in expected))})


class LoadingTests(_Base):
    """
    llama-server listens before its model is loaded and answers 503
    "Loading model" meanwhile; llamaswap holds requests until it is ready.
    """

    models = (STANDARD_MODELS[0], SLOW)

    async def test_requestDuringLoad(self) -> None:
        """
        A request starts the slow model; once llama-server is seen answering
        503 on its own port, it is frozen (SIGSTOP) in that state and a
        second request arrives.  Both wait ("loading"), and after SIGCONT
        both get the model's answer, not a 503.
        """
        app = self.running.app
        supervisor = app.supervisors["slow"]
        port = app.config.models["slow"].proxyURL.port
        upstream = f"http://127.0.0.1:{port}"
        first = self.sdk.call(
            self.sdk.openai().chat.completions.create,
            model="slow", messages=MESSAGES, max_tokens=MAX_TOKENS, **GREEDY,
        )
        statuses: list[int] = []
        direct = _directAgent(self)
        deadline = reactor.seconds() + 30
        while not statuses or statuses[-1] != 503:
            self.assertLess(reactor.seconds(), deadline, "llama-server never answered")
            self.assertNotIn(200, statuses, "llama-server was ready before a 503 was seen")
            try:
                response = await treq.get(upstream + "/props", agent=direct, timeout=5)
                await response.content()
                statuses.append(response.code)
            except ConnectError:  # not listening yet
                await deferLater(reactor, 0.002, lambda: None)
        pid = supervisor.pid
        self.assertIsNotNone(pid)
        os.kill(pid, signal.SIGSTOP)
        self.addCleanup(self._resume, pid)
        self.assertEqual(supervisor.state.value, "starting")

        second = self.sdk.call(
            self.sdk.anthropic().messages.create,
            model="slow", max_tokens=MAX_TOKENS, messages=MESSAGES, **GREEDY_ANTHROPIC,
        )

        def loading() -> bool:
            phases = [t.phase for t in app.tracker.inflight.values() if t.model == "slow"]
            return phases == ["loading", "loading"]

        await poll(loading, 10, "two requests waiting for the slow model", interval=0.01)
        self.assertFalse(first.called)
        self._resume(pid)

        chat, message = await first, await second
        self.assertEqual(chat.model, "slow")
        self.assertIsInstance(chat.choices[0].message.content, str)
        self.assertGreater(chat.usage.completion_tokens, 0)
        self.assertEqual(message.model, "slow")
        self.assertGreater(message.usage.output_tokens, 0)
        self.assertEqual(supervisor.state.value, "ready")

    @staticmethod
    def _resume(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
