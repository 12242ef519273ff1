# -*- test-case-name: test.test_demo -*-
"""
Tests for L{llamaswap.demo}, the demo upstream.

Most tests drive the resource through a real L{twisted.web.server.Site} over a
L{StringTransport} with a L{Clock}; a few at the end run
C{python -m llamaswap.demo} as a real process.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import math
import os
import signal
import sys
from typing import Any, Callable

import llamaswap
from attrs import frozen
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost, ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http import HTTPChannel

from llamaswap.demo import text
from llamaswap.demo.cli import DemoProcess, optionsFromArguments, parseArguments
from llamaswap.demo.server import (
    REQUEST_LOG_SIZE,
    DemoOptions,
    DemoUpstream,
    makeSite,
)

PID = 4242
TIMING_FIELDS = {
    "prompt_n",
    "prompt_ms",
    "prompt_per_token_ms",
    "prompt_per_second",
    "predicted_n",
    "predicted_ms",
    "predicted_per_token_ms",
    "predicted_per_second",
    "cache_n",
}
CHAT = {"model": "asked", "messages": [{"role": "user", "content": "Hello, demo world"}]}


@frozen
class Response:
    """
    An HTTP response parsed from what a server wrote to a L{StringTransport}.

    @ivar status: The status code.
    @ivar headers: Header values by lower-case name.
    @ivar chunks: The body as written: one element per HTTP chunk, or the
        whole body when it had a C{Content-Length}.
    @ivar complete: Whether the whole body has arrived.
    """

    status: int
    headers: dict[str, list[str]]
    chunks: list[bytes]
    complete: bool

    @property
    def body(self) -> bytes:
        """
        The body received so far.
        """
        return b"".join(self.chunks)

    def json(self) -> Any:
        """
        The body parsed as JSON.
        """
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """
        The last value of header C{name}, if any.
        """
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    def events(self) -> list[tuple[str | None, Any]]:
        """
        The body as server-sent events: C{(event name, parsed data)} pairs;
        C{[DONE]} is kept as a string.
        """
        events = []
        for block in self.body.decode("utf-8").split("\n\n"):
            if not block:
                continue
            name, data = None, None
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    data = line[len("data: ") :]
            assert data is not None, block
            events.append((name, data if data == "[DONE]" else json.loads(data)))
        return events


def parseResponse(raw: bytes) -> Response:
    """
    Parse one HTTP/1.1 response, possibly still incomplete.

    @param raw: The bytes the server wrote.
    @return: The response so far.
    """
    head, separator, rest = raw.partition(b"\r\n\r\n")
    assert separator, "no complete response head in %r" % (raw,)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    if headers.get("transfer-encoding") == ["chunked"]:
        chunks, complete = [], False
        while rest:
            sizeLine, separator, after = rest.partition(b"\r\n")
            if not separator:
                break
            size = int(sizeLine, 16)
            if size == 0:
                complete = True
                break
            if len(after) < size + 2:
                break
            chunks.append(after[:size])
            rest = after[size + 2 :]
        return Response(status, headers, chunks, complete)
    length = int(headers["content-length"][0])
    return Response(status, headers, [rest[:length]], len(rest) >= length)


class Server:
    """
    A demo upstream behind a real L{Site}, on a L{Clock}.

    @ivar clock: The clock everything runs on.
    @ivar upstream: The state.
    """

    def __init__(self, **options: Any) -> None:
        self.clock = Clock()
        self.upstream = DemoUpstream(DemoOptions(**options), self.clock, PID)
        self.site = makeSite(self.upstream, self.clock, timeout=None)

    def send(
        self, method: bytes, path: bytes, body: bytes = b"", headers: list[bytes] | None = None
    ) -> tuple[HTTPChannel, StringTransport]:
        """
        Open a connection and send one request over it.

        @return: The server's channel and the transport it writes to.
        """
        channel = self.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        lines = [
            b"%s %s HTTP/1.1" % (method, path),
            b"Host: demo.test",
            b"Content-Length: %d" % (len(body),),
            *(headers or []),
        ]
        channel.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        return channel, transport

    def request(self, method: bytes, path: bytes, body: bytes = b"", **kw: Any) -> Response:
        """
        Send a request and parse what has been answered so far.
        """
        channel, transport = self.send(method, path, body, **kw)
        return parseResponse(transport.value())

    def post(self, path: bytes, obj: Any) -> tuple[HTTPChannel, StringTransport]:
        """
        Send a JSON POST.
        """
        return self.send(
            b"POST", path, json.dumps(obj).encode(), [b"Content-Type: application/json"]
        )

    def postDone(self, path: bytes, obj: Any) -> Response:
        """
        Send a JSON POST and run the clock until its response is complete.
        """
        channel, transport = self.post(path, obj)
        for _ in range(1000):
            if transport.value() and parseResponse(transport.value()).complete:
                break
            self.clock.advance(max(self.upstream.options.tokenDelay, 0.001))
        response = parseResponse(transport.value())
        assert response.complete
        return response


class TextTests(SynchronousTestCase):
    """
    Tests for the pure helpers in L{llamaswap.demo.text}.
    """

    @given(st.text())
    def test_splitTextRoundTrips(self, value: str) -> None:
        """
        Joining the pieces of L{text.splitText} gives back the text, and no
        piece is empty.
        """
        pieces = text.splitText(value)
        self.assertEqual("".join(pieces), value)
        self.assertNotIn("", pieces)

    def test_splitTextWords(self) -> None:
        """
        Each piece is one word with the whitespace before it.
        """
        self.assertEqual(text.splitText("Hi there,  you "), ["Hi", " there,", "  you", " "])

    def test_generateWordsDeterministic(self) -> None:
        """
        L{text.generateWords} gives C{count} pieces that depend only on the
        seed text, with a space before all but the first.
        """
        words = text.generateWords("a prompt", 5)
        self.assertEqual(words, text.generateWords("a prompt", 5))
        self.assertEqual(len(words), 5)
        self.assertFalse(words[0].startswith(" "))
        self.assertTrue(all(w.startswith(" ") for w in words[1:]))
        self.assertEqual(text.generateWords("x", 0), [])

    def test_countTokens(self) -> None:
        """
        Words and punctuation count one token each, with a minimum of one.
        """
        self.assertEqual(text.countTokens("Hello, demo world"), 4)
        self.assertEqual(text.countTokens(""), 1)

    def test_messagesText(self) -> None:
        """
        String and list-of-parts contents and an Anthropic system prompt are all
        flattened to text.
        """
        messages = [
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}, {"type": "image"}]},
        ]
        self.assertEqual(text.messagesText(messages, "sys"), "sys\none\ntwo")

    def test_promptText(self) -> None:
        """
        Token-id prompts count one token per id.
        """
        self.assertEqual(text.countTokens(text.promptText([1, 2, 3])), 3)
        self.assertEqual(text.promptText(["a", "b"]), "a\nb")

    @given(st.text(), st.integers(min_value=1, max_value=64))
    def test_embeddingVectorUnitLength(self, value: str, dimensions: int) -> None:
        """
        Embedding vectors have the requested length, unit norm, and are
        deterministic.
        """
        vector = text.embeddingVector(value, dimensions)
        self.assertEqual(len(vector), dimensions)
        self.assertAlmostEqual(math.sqrt(sum(v * v for v in vector)), 1.0, places=4)
        self.assertEqual(vector, text.embeddingVector(value, dimensions))

    def test_timings(self) -> None:
        """
        L{text.timings} has every llama.cpp field with consistent rates, and
        a lower bound on generation time so rates stay finite.
        """
        timings = text.timings(10, 4, 400.0)
        self.assertEqual(set(timings), TIMING_FIELDS)
        self.assertEqual(timings["predicted_per_token_ms"], 100.0)
        self.assertEqual(timings["predicted_per_second"], 10.0)
        self.assertEqual(timings["prompt_n"], 10)
        fast = text.timings(10, 4, 0.0)
        self.assertEqual(fast["predicted_ms"], 4 * text.NOMINAL_PREDICTED_MS_PER_TOKEN)
        empty = text.timings(1, 0, 0.0)
        self.assertEqual(empty["predicted_per_second"], 0.0)


class HealthTests(SynchronousTestCase):
    """
    C{/health}, readiness and the identity headers.
    """

    def test_loadingThenReady(self) -> None:
        """
        C{/health} answers llama-server's 503 "Loading model" until the startup
        delay has passed on the clock, then 200 C{{"status": "ok"}}.
        """
        server = Server(startupDelay=2.0)
        loading = server.request(b"GET", b"/health")
        self.assertEqual(loading.status, 503)
        self.assertEqual(
            loading.json(),
            {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}},
        )
        server.clock.advance(1.9)
        self.assertEqual(server.request(b"GET", b"/health").status, 503)
        server.clock.advance(0.1)
        ready = server.request(b"GET", b"/health")
        self.assertEqual(ready.status, 200)
        self.assertEqual(ready.json()["status"], "ok")
        self.assertEqual(ready.json()["demo"]["pid"], PID)

    def test_requestsWhileLoading(self) -> None:
        """
        API and echo requests get the same 503 while loading; the request log
        stays available.
        """
        server = Server(startupDelay=1.0)
        channel, transport = server.post(b"/v1/chat/completions", CHAT)
        self.assertEqual(parseResponse(transport.value()).status, 503)
        self.assertEqual(server.request(b"GET", b"/props").status, 503)
        log = server.request(b"GET", b"/_demo/requests")
        self.assertEqual(log.status, 200)
        self.assertEqual([e["path"] for e in log.json()], ["/v1/chat/completions", "/props"])

    def test_identityHeaders(self) -> None:
        """
        Every response names the model and pid in C{X-Demo-Model} and
        C{X-Demo-Pid}, plus the grandchild's pid when there is one.
        """
        server = Server(model="qwen")
        server.upstream.grandchildPid = 77
        for path in [b"/health", b"/v1/models", b"/anything"]:
            response = server.request(b"GET", path)
            self.assertEqual(response.header("X-Demo-Model"), "qwen")
            self.assertEqual(response.header("X-Demo-Pid"), str(PID))
            self.assertEqual(response.header("X-Demo-Grandchild-Pid"), "77")
        health = server.request(b"GET", b"/health").json()
        self.assertEqual(
            health["demo"],
            {"pid": PID, "served_model": "qwen", "requested_model": None, "grandchild_pid": 77},
        )

    def test_models(self) -> None:
        """
        C{/v1/models} lists the configured model.
        """
        body = Server(model="qwen").request(b"GET", b"/v1/models").json()
        self.assertEqual(body["object"], "list")
        self.assertEqual([m["id"] for m in body["data"]], ["qwen"])
        self.assertEqual(body["data"][0]["object"], "model")

    def test_wrongMethod(self) -> None:
        """
        A known path with the wrong method answers 405 in the error envelope.
        """
        response = Server().request(b"GET", b"/v1/chat/completions")
        self.assertEqual(response.status, 405)
        self.assertEqual(response.json()["error"]["code"], 405)


class ChatCompletionTests(SynchronousTestCase):
    """
    C{POST /v1/chat/completions}.
    """

    def test_nonStreamed(self) -> None:
        """
        A non-streamed completion is one C{chat.completion} object with the
        generated text, C{usage} and llama.cpp C{timings}.
        """
        server = Server(model="served", tokens=5)
        response = server.postDone(b"/v1/chat/completions", CHAT)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("Content-Type"), "application/json; charset=utf-8")
        body = response.json()
        self.assertEqual(body["object"], "chat.completion")
        self.assertEqual(body["model"], "served")
        self.assertEqual(body["demo"]["served_model"], "served")
        self.assertEqual(body["demo"]["requested_model"], "asked")
        choice = body["choices"][0]
        self.assertEqual(choice["finish_reason"], "stop")
        self.assertEqual(choice["message"]["role"], "assistant")
        self.assertEqual(
            choice["message"]["content"], "".join(text.generateWords("Hello, demo world", 5))
        )
        self.assertEqual(
            body["usage"], {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
        )
        self.assertEqual(set(body["timings"]), TIMING_FIELDS)
        self.assertEqual(body["timings"]["prompt_n"], 4)
        self.assertEqual(body["timings"]["predicted_n"], 5)

    def test_nonStreamedTakesGenerationTime(self) -> None:
        """
        A non-streamed response arrives only once every token's delay has
        passed, and its timings report that time.
        """
        server = Server(tokens=3, tokenDelay=0.5)
        channel, transport = server.post(b"/v1/chat/completions", CHAT)
        server.clock.pump([0.5, 0.5, 0.25])
        self.assertEqual(transport.value(), b"")
        server.clock.advance(0.25)
        body = parseResponse(transport.value()).json()
        self.assertEqual(body["timings"]["predicted_ms"], 1500.0)
        self.assertEqual(body["timings"]["predicted_per_second"], 2.0)

    def test_streamedOneChunkPerTick(self) -> None:
        """
        A streamed completion writes the role chunk at once, then exactly one
        token chunk per token delay, then a final chunk with C{finish_reason},
        C{usage} and C{timings}, then C{[DONE]}.
        """
        server = Server(tokens=3, tokenDelay=0.25)
        channel, transport = server.post(b"/v1/chat/completions", CHAT | {"stream": True})
        response = parseResponse(transport.value())
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("Content-Type"), "text/event-stream")
        self.assertEqual(len(response.chunks), 1)
        self.assertEqual(response.events()[0][1]["choices"][0]["delta"]["role"], "assistant")
        expected = text.generateWords("Hello, demo world", 3)
        for count, word in enumerate(expected[:-1], start=2):
            server.clock.advance(0.25)
            response = parseResponse(transport.value())
            self.assertEqual(len(response.chunks), count)
            self.assertFalse(response.complete)
            self.assertEqual(response.events()[-1][1]["choices"][0]["delta"], {"content": word})
        server.clock.advance(0.25)
        response = parseResponse(transport.value())
        self.assertTrue(response.complete)
        events = [data for name, data in response.events()]
        self.assertEqual(events[-1], "[DONE]")
        final = events[-2]
        self.assertEqual(final["choices"][0]["finish_reason"], "stop")
        self.assertEqual(final["usage"]["completion_tokens"], 3)
        self.assertEqual(final["timings"]["predicted_n"], 3)
        self.assertEqual(final["timings"]["predicted_ms"], 750.0)
        self.assertEqual(
            "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]),
            "".join(expected),
        )
        self.assertTrue(all(e["object"] == "chat.completion.chunk" for e in events[:-1]))
        self.assertEqual(server.clock.getDelayedCalls(), [])

    def test_disconnectStopsTimer(self) -> None:
        """
        When the client disconnects mid-stream, the pending token timer is
        cancelled and nothing more is written.
        """
        server = Server(tokens=10, tokenDelay=1.0)
        channel, transport = server.post(b"/v1/chat/completions", CHAT | {"stream": True})
        server.clock.advance(1.0)
        self.assertEqual(len(server.clock.getDelayedCalls()), 1)
        channel.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(server.clock.getDelayedCalls(), [])
        written = transport.value()
        server.clock.advance(20)
        self.assertEqual(transport.value(), written)

    def test_pausedClientPausesGeneration(self) -> None:
        """
        While the client's socket is full the stream generates nothing, and it
        resumes when the socket drains.
        """
        server = Server(tokens=3, tokenDelay=1.0)
        channel, transport = server.post(b"/v1/chat/completions", CHAT | {"stream": True})
        transport.producer.pauseProducing()
        self.assertEqual(server.clock.getDelayedCalls(), [])
        server.clock.advance(5)
        self.assertEqual(len(parseResponse(transport.value()).chunks), 1)
        transport.producer.resumeProducing()
        server.clock.advance(1.0)
        self.assertEqual(len(parseResponse(transport.value()).chunks), 2)

    def test_maxTokens(self) -> None:
        """
        C{max_tokens} below the configured count truncates with
        C{finish_reason} C{length}.
        """
        body = Server(tokens=8).postDone(b"/v1/chat/completions", CHAT | {"max_tokens": 2}).json()
        self.assertEqual(body["usage"]["completion_tokens"], 2)
        self.assertEqual(body["choices"][0]["finish_reason"], "length")

    def test_respond(self) -> None:
        """
        With C{respond} the content is that text, one word per token.
        """
        server = Server(respond="Fixed answer here.")
        body = server.postDone(b"/v1/chat/completions", CHAT).json()
        self.assertEqual(body["choices"][0]["message"]["content"], "Fixed answer here.")
        self.assertEqual(body["usage"]["completion_tokens"], 3)

    def test_badJSON(self) -> None:
        """
        A body that isn't JSON answers 400 in the OpenAI error envelope.
        """
        response = Server().request(b"POST", b"/v1/chat/completions", b"{nope")
        self.assertEqual(response.status, 400)
        error = response.json()["error"]
        self.assertEqual(error["type"], "invalid_request_error")
        self.assertEqual(error["code"], 400)
        self.assertIn("Invalid JSON", error["message"])

    def test_missingMessages(self) -> None:
        """
        A chat request without messages answers 400.
        """
        channel, transport = Server().post(b"/v1/chat/completions", {"model": "x"})
        self.assertEqual(parseResponse(transport.value()).status, 400)


class CompletionTests(SynchronousTestCase):
    """
    C{POST /v1/completions}.
    """

    def test_nonStreamed(self) -> None:
        """
        A text completion returns C{text_completion} with usage and timings.
        """
        body = Server(tokens=4).postDone(b"/v1/completions", {"prompt": "Once upon"}).json()
        self.assertEqual(body["object"], "text_completion")
        self.assertEqual(body["choices"][0]["text"], "".join(text.generateWords("Once upon", 4)))
        self.assertEqual(
            body["usage"], {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
        )
        self.assertEqual(set(body["timings"]), TIMING_FIELDS)

    def test_streamed(self) -> None:
        """
        A streamed text completion sends one chunk per token, a final chunk
        with usage and timings, then C{[DONE]}.
        """
        response = Server(tokens=2).postDone(
            b"/v1/completions", {"prompt": "Once upon", "stream": True}
        )
        events = [data for name, data in response.events()]
        self.assertEqual(len(events), 4)
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(events[-2]["choices"][0]["finish_reason"], "stop")
        self.assertEqual(events[-2]["usage"]["completion_tokens"], 2)
        self.assertIn("timings", events[-2])


class EmbeddingTests(SynchronousTestCase):
    """
    C{POST /v1/embeddings}.
    """

    def test_embeddings(self) -> None:
        """
        Each input gets a deterministic vector of the requested size, and
        usage counts the input tokens.
        """
        server = Server()
        channel, transport = server.post(
            b"/v1/embeddings", {"input": ["one two", "three"], "dimensions": 4}
        )
        body = parseResponse(transport.value()).json()
        self.assertEqual(body["object"], "list")
        self.assertEqual([d["index"] for d in body["data"]], [0, 1])
        self.assertEqual(body["data"][0]["embedding"], text.embeddingVector("one two", 4))
        self.assertEqual(body["usage"], {"prompt_tokens": 3, "total_tokens": 3})
        self.assertEqual(body["model"], "demo")

    def test_badInput(self) -> None:
        """
        Missing input answers 400.
        """
        channel, transport = Server().post(b"/v1/embeddings", {"model": "x"})
        self.assertEqual(parseResponse(transport.value()).status, 400)


class AnthropicTests(SynchronousTestCase):
    """
    C{POST /v1/messages} and C{/v1/messages/count_tokens}.
    """

    request = {
        "model": "claude",
        "max_tokens": 100,
        "system": "Be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}],
    }

    def test_nonStreamed(self) -> None:
        """
        A non-streamed message has text content, C{end_turn} and usage.
        """
        body = Server(tokens=3).postDone(b"/v1/messages", self.request).json()
        self.assertEqual(body["type"], "message")
        self.assertEqual(body["role"], "assistant")
        self.assertEqual(body["model"], "demo")
        self.assertEqual(body["stop_reason"], "end_turn")
        self.assertEqual(body["content"][0]["type"], "text")
        self.assertEqual(body["usage"], {"input_tokens": 4, "output_tokens": 3})
        self.assertEqual(body["demo"]["requested_model"], "claude")

    def test_streamedEventOrder(self) -> None:
        """
        A streamed message follows the Messages event sequence, with each
        C{event:} name matching its data's C{type}, one delta per token.
        """
        server = Server(tokens=3, tokenDelay=0.25)
        channel, transport = server.post(b"/v1/messages", self.request | {"stream": True})
        self.assertEqual(
            [n for n, d in parseResponse(transport.value()).events()],
            ["message_start", "content_block_start"],
        )
        server.clock.advance(0.25)
        self.assertEqual(len(parseResponse(transport.value()).events()), 3)
        server.clock.pump([0.25, 0.25])
        response = parseResponse(transport.value())
        self.assertTrue(response.complete)
        events = response.events()
        self.assertEqual(
            [name for name, data in events],
            ["message_start", "content_block_start"]
            + ["content_block_delta"] * 3
            + ["content_block_stop", "message_delta", "message_stop"],
        )
        self.assertTrue(all(name == data["type"] for name, data in events))
        self.assertEqual(events[0][1]["message"]["usage"]["input_tokens"], 4)
        delta = events[-2][1]
        self.assertEqual(delta["delta"]["stop_reason"], "end_turn")
        self.assertEqual(delta["usage"]["output_tokens"], 3)
        self.assertEqual(
            "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta"),
            "".join(text.generateWords("Be brief\nHi there", 3)),
        )

    def test_maxTokens(self) -> None:
        """
        A C{max_tokens} limit stops with C{max_tokens}.
        """
        body = Server(tokens=8).postDone(b"/v1/messages", self.request | {"max_tokens": 1}).json()
        self.assertEqual(body["stop_reason"], "max_tokens")

    def test_countTokens(self) -> None:
        """
        C{count_tokens} counts system and message text.
        """
        channel, transport = Server().post(b"/v1/messages/count_tokens", self.request)
        self.assertEqual(parseResponse(transport.value()).json()["input_tokens"], 4)


class EchoTests(SynchronousTestCase):
    """
    The echo of unknown paths and the C{/_demo/requests} log.
    """

    def test_echo(self) -> None:
        """
        Any other path and method answers 200 with what was received; a body
        that isn't UTF-8 is base64-encoded.
        """
        server = Server()
        body = b"--b\r\n\xff\xfe binary\r\n--b--\r\n"
        response = server.request(
            b"PUT",
            b"/v1/audio/transcriptions?lang=en&x=",
            body,
            headers=[b"Content-Type: multipart/form-data; boundary=b", b"X-Custom: 1"],
        )
        self.assertEqual(response.status, 200)
        echo = response.json()
        self.assertEqual(echo["method"], "PUT")
        self.assertEqual(echo["path"], "/v1/audio/transcriptions")
        self.assertEqual(echo["query"], "lang=en&x=")
        self.assertEqual(echo["args"], {"lang": ["en"], "x": [""]})
        self.assertIn(["X-Custom", "1"], echo["headers"])
        self.assertEqual(echo["body_encoding"], "base64")
        self.assertEqual(base64.b64decode(echo["body"]), body)
        self.assertEqual(echo["body_sha256"], hashlib.sha256(body).hexdigest())

    def test_echoText(self) -> None:
        """
        A UTF-8 body is echoed as text, and a JSON one also parsed.
        """
        echo = Server().request(b"POST", b"/sdapi/v1/txt2img", b'{"prompt": "cat"}').json()
        self.assertEqual(echo["body"], '{"prompt": "cat"}')
        self.assertEqual(echo["body_encoding"], "utf-8")
        self.assertEqual(echo["json"], {"prompt": "cat"})

    def test_requestLog(self) -> None:
        """
        C{/_demo/requests} lists received requests (not its own), with path
        and query, header pairs, body length and hash, and the parsed JSON.
        """
        server = Server()
        server.postDone(b"/v1/chat/completions?trace=1", CHAT)
        server.request(b"GET", b"/props")
        entries = server.request(b"GET", b"/_demo/requests").json()
        self.assertEqual(
            [(e["method"], e["path"]) for e in entries],
            [("POST", "/v1/chat/completions?trace=1"), ("GET", "/props")],
        )
        first = entries[0]
        raw = json.dumps(CHAT).encode()
        self.assertEqual(first["body_length"], len(raw))
        self.assertEqual(first["body_sha256"], hashlib.sha256(raw).hexdigest())
        self.assertEqual(first["json"], CHAT)
        self.assertIn(["Content-Type", "application/json"], first["headers"])
        self.assertNotIn("json", entries[1])

    def test_requestLogBounded(self) -> None:
        """
        Only the last L{REQUEST_LOG_SIZE} requests are kept; C{DELETE} clears
        them.
        """
        server = Server()
        for index in range(REQUEST_LOG_SIZE + 5):
            server.request(b"GET", b"/n/%d" % (index,))
        entries = server.request(b"GET", b"/_demo/requests").json()
        self.assertEqual(len(entries), REQUEST_LOG_SIZE)
        self.assertEqual(entries[0]["path"], "/n/5")
        self.assertEqual(server.request(b"DELETE", b"/_demo/requests").json(), {"cleared": 100})
        self.assertEqual(server.request(b"GET", b"/_demo/requests").json(), [])


class LoggingTests(SynchronousTestCase):
    """
    The per-request log line.
    """

    def test_logLine(self) -> None:
        """
        Each finished request logs its method, URI and status.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        Server().request(b"GET", b"/health?x=1")
        lines = [e for e in events if e.get("log_namespace", "").endswith("DemoResource")]
        self.assertEqual(len(lines), 1)
        self.assertEqual(
            (lines[0]["method"], lines[0]["uri"], lines[0]["status"]), ("GET", "/health?x=1", 200)
        )

    def test_silent(self) -> None:
        """
        With C{silent} nothing is logged per request.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        Server(silent=True).request(b"GET", b"/health")
        self.assertEqual(
            [e for e in events if e.get("log_namespace", "").endswith("DemoResource")], []
        )


class FakeReactor(Clock):
    """
    A clock that records C{stop}, runs C{callFromThread} at once and refuses
    to spawn processes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stopped = False

    def stop(self) -> None:
        """
        Record the stop.
        """
        self.stopped = True

    def callFromThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        """
        Call C{f} now.
        """
        f(*a, **kw)

    def spawnProcess(self, *a: Any, **kw: Any) -> IProcessTransport:
        """
        Not used by these tests.
        """
        raise NotImplementedError()


class CommandLineTests(SynchronousTestCase):
    """
    L{parseArguments}, L{optionsFromArguments} and L{DemoProcess} on a fake
    reactor.
    """

    def test_defaults(self) -> None:
        """
        The defaults match llama-server's usual local setup.
        """
        args = parseArguments([])
        self.assertEqual((args.host, args.port, args.model), ("127.0.0.1", 0, "demo"))
        self.assertEqual(optionsFromArguments(args), DemoOptions())

    def test_options(self) -> None:
        """
        Each HTTP-facing flag reaches L{DemoOptions}.
        """
        args = parseArguments(
            "--model m --startup-delay 2 --tokens 3 --token-delay 0.5 --respond hi --silent".split()
        )
        self.assertEqual(
            optionsFromArguments(args),
            DemoOptions(
                model="m", startupDelay=2.0, tokens=3, tokenDelay=0.5, respond="hi", silent=True
            ),
        )

    def test_exitDuringStartNeverReady(self) -> None:
        """
        With C{--exit-during-start} the model never becomes ready.
        """
        args = parseArguments(["--exit-during-start", "3"])
        self.assertEqual(optionsFromArguments(args).startupDelay, math.inf)

    def test_badArguments(self) -> None:
        """
        Negative delays and counts are rejected.
        """
        self.patch(sys, "stderr", io.StringIO())
        for argv in [["--tokens", "-1"], ["--token-delay", "-1"], ["--startup-delay", "nan"]]:
            self.assertRaises(SystemExit, parseArguments, argv)

    def makeProcess(self, argv: list[str]) -> tuple[DemoProcess, FakeReactor, io.StringIO]:
        """
        Build a L{DemoProcess} on a L{FakeReactor}.
        """
        args: argparse.Namespace = parseArguments(argv)
        reactor = FakeReactor()
        upstream = DemoUpstream(optionsFromArguments(args), reactor, PID)
        stderr = io.StringIO()
        return DemoProcess(reactor, upstream, args, stderr), reactor, stderr

    def test_failStart(self) -> None:
        """
        C{--exit-during-start} writes the failure to stderr halfway through
        the startup delay, then stops the reactor with that exit code.
        """
        process, reactor, stderr = self.makeProcess(
            ["--exit-during-start", "3", "--startup-delay", "2"]
        )
        process.start()
        reactor.advance(0.9)
        self.assertFalse(reactor.stopped)
        reactor.advance(0.1)
        self.assertTrue(reactor.stopped)
        self.assertEqual(process.exitCode, 3)
        self.assertIn("failed to load model 'demo'", stderr.getvalue())
        self.assertEqual(len(stderr.getvalue().splitlines()), 3)

    def test_stopWithoutGrandchild(self) -> None:
        """
        Without a grandchild, shutdown has nothing to wait for.
        """
        process, reactor, stderr = self.makeProcess([])
        process.start()
        self.assertIsNone(process.stop())


class DemoProcessProtocol(ProcessProtocol):
    """
    Collects a real demo process's output and reports its listening URL and
    its end.

    @ivar lines: Stdout lines so far.
    @ivar reason: The C{processEnded} reason, once ended.
    @ivar ended: Fires with L{None} when the process has ended.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stderr = b""
        self._buffer = b""
        self._waiters: list[tuple[str, Deferred[str]]] = []
        self.reason: Failure | None = None
        self.ended: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        """
        The demo reads no input.
        """
        self.transport.closeStdin()  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        """
        Split stdout into lines and wake waiters.
        """
        self._buffer += data
        *complete, self._buffer = self._buffer.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            for waiter in self._waiters[:]:
                if waiter[0] in line:
                    self._waiters.remove(waiter)
                    waiter[1].callback(line)

    def errReceived(self, data: bytes) -> None:
        """
        Keep stderr.
        """
        self.stderr += data

    def waitForLine(self, fragment: str) -> Deferred[str]:
        """
        A Deferred for the first stdout line containing C{fragment}.
        """
        for line in self.lines:
            if fragment in line:
                return succeed(line)
        d: Deferred[str] = Deferred()
        self._waiters.append((fragment, d))
        return d

    def processEnded(self, reason: Failure) -> None:
        """
        Record the reason and fire L{ended}.
        """
        self.reason = reason
        self.ended.callback(None)


def _processState(pid: int) -> str | None:
    """
    The state letter of process C{pid} from C{/proc}, or L{None} if gone.
    """
    try:
        with open("/proc/%d/stat" % (pid,)) as f:
            return f.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


def _parentPid(pid: int) -> int:
    """
    The parent of process C{pid}, from C{/proc}.
    """
    with open("/proc/%d/stat" % (pid,)) as f:
        return int(f.read().rpartition(")")[2].split()[1])


class RealProcessTests(TestCase):
    """
    C{python -m llamaswap.demo} as a real process on the real reactor.
    """

    timeout = 30
    waitSeconds = 15.0

    def wait(self, d: Deferred[Any]) -> Deferred[Any]:
        """
        Bound a wait on the real reactor.
        """
        from twisted.internet import reactor

        return d.addTimeout(self.waitSeconds, reactor)

    async def spawnDemo(self, *args: str) -> tuple[DemoProcessProtocol, IProcessTransport, str]:
        """
        Start a demo process on a free port and wait for its listening line.

        @return: Its protocol, transport and base URL.
        """
        from twisted.internet import reactor

        root = os.path.dirname(os.path.dirname(os.path.abspath(llamaswap.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        protocol = DemoProcessProtocol()
        argv = [sys.executable, "-m", "llamaswap.demo", "--port", "0", *args]
        transport = reactor.spawnProcess(protocol, sys.executable, argv, env=env)
        self.addCleanup(self.reap, protocol, transport)
        line = await self.wait(protocol.waitForLine("demo upstream listening on "))
        return protocol, transport, line.rpartition(" ")[2]

    def reap(self, protocol: DemoProcessProtocol, transport: IProcessTransport) -> Deferred[Any]:
        """
        Kill the process (and any grandchild) and wait until it has ended.
        """
        for line in protocol.lines:
            if line.startswith("demo grandchild "):
                try:
                    os.kill(int(line.split()[2]), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not protocol.ended.called:
            try:
                transport.signalProcess("KILL")
            except ProcessExitedAlready:
                pass
        return self.wait(protocol.ended)

    def client(self) -> Any:
        """
        A treq client that keeps no connections open after the test.
        """
        import treq
        from twisted.internet import reactor
        from twisted.web.client import Agent, HTTPConnectionPool

        pool = HTTPConnectionPool(reactor, persistent=False)
        return treq.client.HTTPClient(Agent(reactor, pool=pool))

    async def test_chatThenSigterm(self) -> None:
        """
        The process serves a chat completion naming its pid, and exits 0 on
        SIGTERM.
        """
        protocol, transport, url = await self.spawnDemo("--model", "real", "--tokens", "3")
        http = self.client()
        response = await self.wait(
            http.post(url + "/v1/chat/completions", json=CHAT | {"stream": True})
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("X-Demo-Pid"), [str(transport.pid)])
        body = await self.wait(response.text())
        self.assertTrue(body.endswith("data: [DONE]\n\n"))
        self.assertEqual(body.count("data: "), 6)
        transport.signalProcess("TERM")
        await self.wait(protocol.ended)
        reason = protocol.reason
        assert reason is not None
        reason.trap(ProcessDone)

    async def test_exitDuringStart(self) -> None:
        """
        C{--exit-during-start 3} writes its failure to stderr and exits 3.
        """
        protocol, transport, url = await self.spawnDemo("--exit-during-start", "3")
        await self.wait(protocol.ended)
        reason = protocol.reason
        assert reason is not None
        self.assertEqual(reason.value.exitCode, 3)
        self.assertIn(b"failed to load model 'demo'", protocol.stderr)

    async def test_crashAfter(self) -> None:
        """
        C{--crash-after} exits 1 on its own.
        """
        protocol, transport, url = await self.spawnDemo("--crash-after", "0.2")
        await self.wait(protocol.ended)
        reason = protocol.reason
        assert reason is not None
        self.assertEqual(reason.value.exitCode, 1)

    async def test_ignoreSigterm(self) -> None:
        """
        With C{--ignore-sigterm} the process logs and survives SIGTERM.
        """
        protocol, transport, url = await self.spawnDemo("--ignore-sigterm")
        await self.wait(protocol.waitForLine("model demo loaded"))
        transport.signalProcess("TERM")
        await self.wait(protocol.waitForLine("ignoring SIGTERM"))
        response = await self.wait(self.client().get(url + "/health"))
        self.assertEqual(response.code, 200)
        await self.wait(response.content())
        self.assertFalse(protocol.ended.called)

    async def test_forkGrandchild(self) -> None:
        """
        With C{--fork-grandchild} a grandchild shares the output pipe and is
        reported by C{/health}; SIGTERM stops both.
        """
        protocol, transport, url = await self.spawnDemo("--fork-grandchild")
        await self.wait(protocol.waitForLine("demo grandchild "))
        response = await self.wait(self.client().get(url + "/health"))
        health = await self.wait(response.json())
        grandchild = health["demo"]["grandchild_pid"]
        self.assertEqual(_parentPid(grandchild), transport.pid)
        self.assertEqual(os.getpgid(grandchild), os.getpgid(transport.pid))
        transport.signalProcess("TERM")
        await self.wait(protocol.ended)
        reason = protocol.reason
        assert reason is not None
        reason.trap(ProcessDone)
        self.assertIn(_processState(grandchild), (None, "Z"))
