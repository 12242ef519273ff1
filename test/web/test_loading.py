"""
Tests for L{llamaswap.web.loading}: the narration on its own, the stream
written through a real twisted.web L{Site} over an in-memory transport on a
L{Clock}, and (L{IntegrationTests}) a whole llamaswap with demo upstreams.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, Callable

import treq
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llamaswap.upstream.lifecycle import State
from llamaswap.web.loading import (
    CHARS_PER_SECOND,
    CHUNK_CHARS,
    REMARKS,
    SEPARATOR,
    TICK,
    LoadingStream,
    Narration,
    acquireWithLoadingState,
    loadingEvent,
    wantsLoadingState,
)

from ..harness import Running, demoMacros, startLlamaSwap
from ..util import poll
from .helpers import Client

STAMP = r"\[\d+\.\ds\]"


def events(body: bytes) -> list[dict[str, Any]]:
    """
    The SSE events of C{body}, each C{data:} payload parsed as JSON.
    """
    parsed = []
    for block in body.split(b"\n\n"):
        if not block:
            continue
        assert block.startswith(b"data: "), block
        parsed.append(json.loads(block[len(b"data: ") :]))
    return parsed


def loadingCalls(clock: Clock) -> list[Any]:
    """
    The timers of loading streams pending on C{clock}.
    """
    return [
        call
        for call in clock.getDelayedCalls()
        if isinstance(getattr(call.func, "__self__", None), LoadingStream)
    ]


def texts(body: bytes) -> list[str]:
    """
    The reasoning text of each event of C{body}.
    """
    return [e["choices"][0]["delta"]["reasoning_content"] for e in events(body)]


class NarrationTests(SynchronousTestCase):
    """
    L{Narration} decides the text from the elapsed time alone.
    """

    def test_header(self) -> None:
        """
        The header is the separator and a line naming the model.
        """
        narration = Narration(random.Random(1))
        self.assertEqual(
            narration.header("qwen"), "\u2501\u2501\u2501\u2501\u2501\nllamaswap loading model: qwen"
        )

    def test_dotsThenRemark(self) -> None:
        """
        Ticks are dots until the first remark is due (2-5 s), then a remark
        line stamped with the elapsed time, then dots again for 5-9 s.
        """
        narration = Narration(random.Random(7))
        said = [(round(n * TICK, 2), narration.tick(n * TICK)) for n in range(1, 40)]
        remarks = [(t, s) for t, s in said if s != "."]
        self.assertGreater(len(remarks), 2)
        first = remarks[0][0]
        self.assertTrue(2.0 <= first <= 5.0 + TICK, remarks)
        for (t1, _), (t2, _) in zip(remarks, remarks[1:]):
            self.assertTrue(5.0 <= t2 - t1 <= 9.0 + TICK, remarks)
        for t, s in remarks:
            match = re.fullmatch(r"\n\[(\d+\.\d)s\] (.+) ", s)
            assert match is not None, s
            self.assertEqual(match.group(1), f"{t:.1f}")
            self.assertIn(match.group(2), REMARKS)

    def test_allRemarksBeforeRepeat(self) -> None:
        """
        Every remark is used once before any is repeated.
        """
        narration = Narration(random.Random(3), ["a", "b", "c"])
        seen = [
            s.split("] ")[1].strip()
            for s in (narration.tick(t * 10.0) for t in range(1, 7))
        ]
        self.assertEqual(sorted(seen[:3]), ["a", "b", "c"])
        self.assertEqual(sorted(seen[3:]), ["a", "b", "c"])

    def test_queuePosition(self) -> None:
        """
        A new queue position is shown on the next tick (latest wins) and
        not repeated while it is unchanged.
        """
        narration = Narration(random.Random(1))
        narration.queuePosition(3)
        narration.queuePosition(2)
        self.assertEqual(narration.tick(0.75), "\n[0.8s] Queue position: #2 ")
        narration.queuePosition(2)
        self.assertEqual(narration.tick(1.5), ".")
        narration.queuePosition(1)
        self.assertEqual(narration.tick(2.25), "\n[2.2s] Queue position: #1 ")

    def test_done(self) -> None:
        """
        The closing block: C{Done!} with two decimals, the separator and a
        line with one space; C{Failed!} for a start that failed.
        """
        narration = Narration(random.Random(1))
        self.assertEqual(narration.done(3.14159), f"\nDone! (3.14s)\n{SEPARATOR}\n \n")
        self.assertEqual(
            narration.done(2, failed=True), f"\nFailed! (2.00s)\n{SEPARATOR}\n \n"
        )

    def test_deterministic(self) -> None:
        """
        The same seed tells the same story.
        """
        one, two = Narration(random.Random(42)), Narration(random.Random(42))
        self.assertEqual(
            [one.tick(n * TICK) for n in range(60)], [two.tick(n * TICK) for n in range(60)]
        )


class EventTests(SynchronousTestCase):
    """
    L{loadingEvent} frames text as an OpenAI chat-completion chunk.
    """

    def test_shape(self) -> None:
        """
        One C{data:} line, the text as C{choices[0].delta.reasoning_content}
        and the standard chunk fields; non-ASCII text is UTF-8.
        """
        raw = loadingEvent("\u2501a\"b", "m", 1700000000)
        self.assertTrue(raw.startswith(b"data: {"))
        self.assertTrue(raw.endswith(b"}\n\n"))
        self.assertEqual(raw.count(b"\n"), 2)
        self.assertIn("\u2501".encode("utf-8"), raw)
        self.assertEqual(
            json.loads(raw[6:]),
            {
                "id": "chatcmpl-llamaswap-loading",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": "m",
                "choices": [
                    {"index": 0, "delta": {"reasoning_content": "\u2501a\"b"}, "finish_reason": None}
                ],
            },
        )


class LoadingResource(Resource):
    """
    A leaf that starts a L{LoadingStream} for every request.
    """

    isLeaf = True

    def __init__(self, clock: Clock, seed: int = 5) -> None:
        super().__init__()
        self.clock = clock
        self.seed = seed
        self.streams: list[LoadingStream] = []
        self.requests: list[Request] = []

    def render(self, request: Request) -> Any:
        self.requests.append(request)
        self.streams.append(
            LoadingStream(request, self.clock, "qwen", rng=random.Random(self.seed))
        )
        return NOT_DONE_YET


class StreamTests(SynchronousTestCase):
    """
    L{LoadingStream} over a real site.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.resource = LoadingResource(self.clock)
        self.client = Client(Site(self.resource, reactor=self.clock))
        self.client.send(body=b'{"model":"qwen","stream":true}')
        self.stream = self.resource.streams[0]

    def text(self) -> str:
        return "".join(texts(self.client.response().body))

    def test_headers(self) -> None:
        """
        The response starts at once: 200, event-stream, no caching, keep
        alive, chunked, and C{X-Accel-Buffering: no} for nginx.
        """
        response = self.client.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header(b"content-type"), b"text/event-stream")
        self.assertEqual(response.header(b"cache-control"), b"no-cache")
        self.assertEqual(response.header(b"connection"), b"keep-alive")
        self.assertEqual(response.header(b"transfer-encoding"), b"chunked")
        self.assertEqual(response.header(b"x-accel-buffering"), b"no")
        self.assertFalse(response.complete)

    def test_connectionCloseKept(self) -> None:
        """
        A client that asked for C{Connection: close} is not told
        C{keep-alive}.
        """
        client = Client(Site(self.resource, reactor=self.clock))
        client.send(body=b"{}", headers=[(b"Connection", b"close")])
        self.assertEqual(client.response().header(b"connection"), b"close")

    def test_typing(self) -> None:
        """
        The text goes out in pieces of five characters, one every 1/15 s
        (75 characters per second), the first at once.
        """
        header = f"{SEPARATOR}\nllamaswap loading model: qwen"
        self.assertEqual(texts(self.client.response().body), [SEPARATOR])
        period = CHUNK_CHARS / CHARS_PER_SECOND
        self.clock.advance(period * 0.9)
        self.assertEqual(len(texts(self.client.response().body)), 1)
        self.clock.advance(period * 0.1 + 1e-6)
        self.assertEqual(texts(self.client.response().body), [SEPARATOR, "\nllam"])
        for _ in range(10):
            self.clock.advance(period)
        pieces = texts(self.client.response().body)
        self.assertEqual("".join(pieces), header[: 12 * CHUNK_CHARS])
        self.assertTrue(all(len(p) == CHUNK_CHARS for p in pieces))
        # The whole header (36 characters) takes 8 pieces: about half a second.
        self.assertLess(len(header) / CHARS_PER_SECOND, TICK)

    def test_ticks(self) -> None:
        """
        After the header, every 0.75 s a dot, and a stamped remark once one
        is due.
        """
        self.clock.pump([0.05] * 100)  # 5 s
        text = self.text()
        header = f"{SEPARATOR}\nllamaswap loading model: qwen"
        self.assertTrue(text.startswith(header + "."), text)
        rest = text[len(header) :]
        self.assertRegex(rest, r"^\.+\n" + STAMP + " (.+) \\.*$")
        remark = re.search(STAMP + " (.+) ", rest)
        assert remark is not None
        self.assertIn(remark.group(1), REMARKS)

    def test_queuePosition(self) -> None:
        """
        A queue position given to the stream is shown on the next tick.
        """
        self.stream.queuePosition(4)
        self.clock.pump([0.05] * 30)  # 1.5 s
        self.assertIn("\n[0.8s] Queue position: #4 ", self.text())

    def test_finish(self) -> None:
        """
        L{LoadingStream.finish} writes the untyped rest and the C{Done!}
        block at once in one event, fires, and frees the request: no
        producer, no timers, no more loading bytes; the response stays open
        for the upstream's.
        """
        self.clock.advance(0.1)
        d = self.stream.finish(12.345)
        self.successResultOf(d)
        pieces = texts(self.client.response().body)
        self.assertEqual(
            "".join(pieces),
            f"{SEPARATOR}\nllamaswap loading model: qwen\nDone! (12.35s)\n{SEPARATOR}\n \n",
        )
        self.assertTrue(pieces[-1].endswith(f"\nDone! (12.35s)\n{SEPARATOR}\n \n"))
        request = self.resource.requests[0]
        self.assertIsNone(request.producer)
        self.assertEqual(loadingCalls(self.clock), [])
        before = self.client.transport.value()
        self.clock.advance(10)
        self.assertEqual(self.client.transport.value(), before)
        self.assertTrue(self.stream.done)
        request.write(b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n')
        request.finish()
        response = self.client.response()
        self.assertTrue(response.complete)
        self.assertEqual(events(response.body)[-1]["choices"][0]["delta"], {"content": "hi"})

    def test_finishElapsedDefault(self) -> None:
        """
        Without an elapsed time, C{Done!} shows the seconds since the stream
        started.
        """
        self.clock.advance(2.5)
        self.stream.finish()
        self.assertIn("\nDone! (2.50s)\n", self.text())

    def test_finishFailed(self) -> None:
        """
        A failed start ends with C{Failed!}.
        """
        self.stream.finish(1, failed=True)
        self.assertIn("\nFailed! (1.00s)\n", self.text())
        self.assertNotIn("Done!", self.text())

    def test_finishTwice(self) -> None:
        """
        Finishing again writes nothing more.
        """
        self.stream.finish(1)
        before = self.client.transport.value()
        self.successResultOf(self.stream.finish(2))
        self.assertEqual(self.client.transport.value(), before)

    def test_clientGone(self) -> None:
        """
        A client that disconnects stops the stream: no timers are left, and
        a later L{LoadingStream.finish} writes nothing and still fires.
        """
        self.clock.advance(1)
        self.assertNotEqual(loadingCalls(self.clock), [])
        self.client.disconnect()
        self.assertTrue(self.stream.done)
        self.assertEqual(loadingCalls(self.clock), [])
        before = self.client.transport.value()
        self.successResultOf(self.stream.finish())
        self.assertEqual(self.client.transport.value(), before)

    def test_stop(self) -> None:
        """
        L{LoadingStream.stop} ends the stream without another byte and
        frees the request.
        """
        self.clock.advance(0.2)
        before = self.client.transport.value()
        self.stream.stop()
        self.clock.advance(10)
        self.assertEqual(self.client.transport.value(), before)
        self.assertIsNone(self.resource.requests[0].producer)
        self.assertEqual(loadingCalls(self.clock), [])

    def test_pausedClient(self) -> None:
        """
        A client that does not read pauses the typing and the ticks; it
        goes on where it stopped when the client reads again.
        """
        self.clock.advance(0.2)
        self.client.pause()
        before = self.client.transport.value()
        self.clock.pump([0.05] * 200)
        self.assertEqual(self.client.transport.value(), before)
        self.client.resume()
        self.clock.pump([0.05] * 20)
        self.assertIn("llamaswap loading model: qwen\n[10.", self.text())

    def test_deterministic(self) -> None:
        """
        Two streams with the same seed on the same timeline write the same
        bytes.
        """
        client = Client(Site(self.resource, reactor=self.clock))
        client.send(body=b"{}")
        self.clock.pump([0.05] * 400)  # 20 s
        first = self.client.response().body
        second = client.response().body
        # The second started at the same clock time, so its stamps match.
        self.assertEqual(first, second)
        self.assertGreaterEqual(self.text().count("\n["), 2)

    def test_goneBeforeStart(self) -> None:
        """
        A request whose client has already gone gets no stream.
        """
        request = self.resource.requests[0]
        self.stream.stop()
        self.client.disconnect()
        stream = LoadingStream(request, self.clock, "qwen")
        self.assertTrue(stream.done)
        self.assertEqual(loadingCalls(self.clock), [])


class WantsTests(SynchronousTestCase):
    """
    L{wantsLoadingState} picks the requests that get a stream.
    """

    def test_conditions(self) -> None:
        """
        Only a streamed C{/v1/chat/completions} request for a model with
        C{sendLoadingState} that is not ready.
        """
        path = b"/v1/chat/completions"
        self.assertTrue(wantsLoadingState(path, True, True, False))
        self.assertTrue(wantsLoadingState(path + b"?x=1", True, True, False))
        self.assertFalse(wantsLoadingState(path, False, True, False))
        self.assertFalse(wantsLoadingState(path, True, False, False))
        self.assertFalse(wantsLoadingState(path, True, True, True))
        for other in (b"/v/chat/completions", b"/v1/completions", b"/upstream/m/v1/chat/completions"):
            self.assertFalse(wantsLoadingState(other, True, True, False), other)


class AcquiringResource(Resource):
    """
    A leaf that waits for C{self.answer} through
    L{acquireWithLoadingState}, then writes C{lease} or the error.
    """

    isLeaf = True

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.answer: Deferred[str] = Deferred(lambda d: None)
        self.positionsBefore: list[int] = []
        self.outcomes: list[Any] = []
        self.cancelled = 0

    def acquire(self, onQueuePosition: Callable[[int], None]) -> Deferred[str]:
        self.onQueuePosition = onQueuePosition
        for position in self.positionsBefore:
            onQueuePosition(position)
        return self.answer

    def render(self, request: Request) -> Any:
        self.acquiring = acquireWithLoadingState(
            request, self.clock, "qwen", self.acquire, rng=random.Random(1)
        )

        def granted(lease: str) -> None:
            self.outcomes.append(lease)
            request.write(b"data: " + lease.encode() + b"\n\n")
            request.finish()

        def failed(failure: Failure) -> None:
            self.outcomes.append(failure)
            if not failure.check(CancelledError):
                request.write(b'{"error":"x"}')
                request.finish()

        self.acquiring.addCallbacks(granted, failed)
        return NOT_DONE_YET


class AcquireTests(SynchronousTestCase):
    """
    L{acquireWithLoadingState} starts the stream only for a request that
    has to wait, and ends it before passing the answer on.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = AcquiringResource(self.clock)
        self.client = Client(Site(self.resource, reactor=self.clock))

    def send(self) -> None:
        self.client.send(body=b'{"stream":true}')

    def text(self) -> str:
        return "".join(texts(self.client.response().body.rsplit(b"data: lease", 1)[0]))

    def test_answeredAtOnce(self) -> None:
        """
        A grant or a refusal that comes at once is passed on without a
        stream.
        """
        self.resource.answer = succeed("lease")
        self.send()
        self.assertEqual(self.client.response().body, b"data: lease\n\n")
        client = Client(Site(self.resource, reactor=self.clock))
        self.resource.answer = fail(ValueError("429"))
        client.send(body=b"{}")
        self.assertEqual(client.response().body, b'{"error":"x"}')
        self.assertEqual(loadingCalls(self.clock), [])

    def test_grantedLater(self) -> None:
        """
        A request that waits gets the stream at once; the grant ends it with
        C{Done!} before the caller sees the lease.
        """
        self.send()
        self.assertEqual(texts(self.client.response().body), [SEPARATOR])
        self.clock.pump([0.05] * 30)
        self.assertEqual(self.resource.outcomes, [])
        self.resource.answer.callback("lease")
        self.assertEqual(self.resource.outcomes, ["lease"])
        response = self.client.response()
        self.assertTrue(response.complete)
        self.assertTrue(response.body.endswith(b"data: lease\n\n"))
        self.assertTrue(self.text().endswith(f"\nDone! (1.50s)\n{SEPARATOR}\n \n"), self.text())
        self.assertEqual(loadingCalls(self.clock), [])

    def test_failedLater(self) -> None:
        """
        An error after the stream started ends it with C{Failed!}; the
        caller's error follows in the same 200 response.
        """
        self.send()
        self.clock.advance(1)
        self.resource.answer.errback(ValueError("start failed"))
        self.assertTrue(self.resource.outcomes[0].check(ValueError))
        response = self.client.response()
        self.assertEqual(response.status, 200)
        self.assertTrue(response.body.endswith(b'{"error":"x"}'))
        self.assertIn("\nFailed! (1.00s)\n", "".join(texts(response.body[: -len(b'{"error":"x"}')])))

    def test_queuePositions(self) -> None:
        """
        Positions the router gives during C{acquire}, before the stream
        exists, and later ones are shown.
        """
        self.resource.positionsBefore = [2]
        self.send()
        self.clock.pump([0.05] * 30)
        self.assertIn("Queue position: #2 ", "".join(texts(self.client.response().body)))
        self.resource.onQueuePosition(1)
        self.clock.pump([0.05] * 30)
        self.assertIn("Queue position: #1 ", "".join(texts(self.client.response().body)))

    def test_cancelled(self) -> None:
        """
        Cancelling the wait (the client left) stops the stream without
        another byte and passes the cancellation on.
        """
        self.send()
        self.clock.advance(0.5)
        before = self.client.transport.value()
        self.resource.acquiring.cancel()
        self.assertTrue(self.resource.outcomes[0].check(CancelledError))
        self.clock.advance(5)
        self.assertEqual(self.client.transport.value(), before)
        self.assertEqual(loadingCalls(self.clock), [])


# Whole llamaswap with demo upstreams that take 1.5 s to become healthy.

SLOW = demoMacros() + """
sendLoadingState: true
models:
  slow:
    cmd: ${demo} --model slow --startup-delay 1.5 --tokens 4
  other:
    cmd: ${demo} --model other --startup-delay 1.5 --tokens 4
  quiet:
    cmd: ${demo} --model quiet --startup-delay 1.5 --tokens 4
    sendLoadingState: false
  broken:
    cmd: ${demo} --model broken --startup-delay 0.5 --exit-during-start 3
"""

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def sseData(body: bytes) -> list[bytes]:
    """
    The C{data:} payloads of an SSE body, parsed by hand as a client would:
    events separated by a blank line, C{data:} lines joined.
    """
    payloads = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
        if lines:
            payloads.append(b"\n".join(lines))
    return payloads


class StreamedChat:
    """
    A streamed chat completion read as it arrives.

    @ivar headersAt: seconds from sending to the response head.
    @ivar readyAtHead: whether the model was ready when the head arrived.
    """

    def __init__(self, running: Running, model: str) -> None:
        self.running = running
        self.model = model
        self.chunks: list[tuple[float, bytes]] = []

    async def run(self) -> StreamedChat:
        start = reactor.seconds()
        response = await self.running.post(
            "/v1/chat/completions",
            json={"model": self.model, "stream": True, **CHAT},
            unbuffered=True,
        )
        self.headersAt = reactor.seconds() - start
        self.readyAtHead = self.running.app.supervisors[self.model].state is State.READY
        self.status = response.code
        self.contentType = response.headers.getRawHeaders(b"content-type", [b""])[0]
        await treq.collect(
            response, lambda data: self.chunks.append((reactor.seconds() - start, data))
        )
        return self

    @property
    def payloads(self) -> list[bytes]:
        return sseData(b"".join(data for _, data in self.chunks))

    def split(self) -> tuple[str, list[dict[str, Any]], list[bytes]]:
        """
        The loading text (reasoning content of the leading loading
        events), the upstream's events, and whatever is not JSON
        (C{[DONE]}).
        """
        loading, real, other = [], [], []
        for payload in self.payloads:
            try:
                event = json.loads(payload)
            except ValueError:
                other.append(payload)
                continue
            if event.get("id") == "chatcmpl-llamaswap-loading":
                assert not real, "loading event after the upstream's"
                loading.append(event["choices"][0]["delta"]["reasoning_content"])
            else:
                real.append(event)
        return "".join(loading), real, other


class IntegrationTests(TestCase):
    """
    The loading-state stream through a whole llamaswap.
    """

    timeout = 60

    async def test_streamedChat(self) -> None:
        """
        A streamed chat completion for a model that is starting gets a 200
        event stream at once, the loading text while it starts, then the
        upstream's tokens and C{[DONE]} in the same response; the next one,
        the model being ready, gets no loading text.
        """
        running = await startLlamaSwap(self, SLOW)
        chat = await StreamedChat(running, "slow").run()
        self.assertEqual((chat.status, chat.contentType), (200, b"text/event-stream"))
        self.assertFalse(chat.readyAtHead)
        self.assertLess(chat.headersAt, 1.0)
        text, real, other = chat.split()
        self.assertTrue(text.startswith(f"{SEPARATOR}\nllamaswap loading model: slow"), text)
        self.assertIn(".", text)
        done = re.search(r"\nDone! \((\d+\.\d\d)s\)\n" + SEPARATOR + "\n \n$", text)
        assert done is not None, text
        self.assertGreaterEqual(float(done.group(1)), 1.0)
        content = "".join(e["choices"][0]["delta"].get("content") or "" for e in real)
        self.assertTrue(content, real)
        self.assertIsNotNone(real[-1]["choices"][0]["finish_reason"])
        self.assertEqual(other, [b"[DONE]"])
        # The loading text arrived while the model started, not at the end.
        self.assertLess(chat.chunks[0][0], 1.0)
        self.assertGreater(chat.chunks[-1][0] - chat.chunks[0][0], 1.0)

        again = await StreamedChat(running, "slow").run()
        self.assertTrue(again.readyAtHead)
        text, real, other = again.split()
        self.assertEqual(text, "")
        self.assertEqual(other, [b"[DONE]"])
        self.assertEqual(real[0]["choices"][0]["delta"]["role"], "assistant")

    async def test_notStreamed(self) -> None:
        """
        A chat completion that is not streamed waits for the model and gets
        the upstream's JSON as usual.
        """
        running = await startLlamaSwap(self, SLOW)
        response = await running.post("/v1/chat/completions", json={"model": "slow", **CHAT})
        self.assertEqual(response.code, 200)
        contentType = response.headers.getRawHeaders(b"content-type")[0]
        self.assertTrue(contentType.startswith(b"application/json"), contentType)
        body = await response.json()
        self.assertEqual(body["object"], "chat.completion")
        self.assertNotIn("llamaswap loading", json.dumps(body))

    async def test_modelOptsOut(self) -> None:
        """
        A model's own C{sendLoadingState: false} wins over the global
        C{true}.
        """
        running = await startLlamaSwap(self, SLOW)
        chat = await StreamedChat(running, "quiet").run()
        self.assertEqual(chat.status, 200)
        self.assertGreater(chat.headersAt, 1.0)
        text, _, other = chat.split()
        self.assertEqual(text, "")
        self.assertEqual(other, [b"[DONE]"])

    async def test_queuePosition(self) -> None:
        """
        A request queued behind another model's swap is told its place in
        the queue, then loads its own model.
        """
        running = await startLlamaSwap(self, SLOW)
        first = Deferred.fromCoroutine(StreamedChat(running, "slow").run())
        await poll(lambda: bool(running.app.router.scheduler.activeSwaps()), 10, "the swap")
        second = await StreamedChat(running, "other").run()
        await first
        text, _, other = second.split()
        self.assertIn("Queue position: #1 ", text)
        self.assertIn("\nDone! (", text)
        self.assertEqual(other, [b"[DONE]"])

    async def test_clientLeaves(self) -> None:
        """
        A client that disconnects during the loading stream withdraws its
        request: the swap it started has no waiter left (and goes on).
        """
        running = await startLlamaSwap(self, SLOW)
        received: Deferred[bytes] = Deferred()

        class Client(Protocol):
            def connectionMade(self) -> None:
                body = json.dumps({"model": "slow", "stream": True, **CHAT}).encode()
                self.transport.write(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                    b"Content-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )

            def dataReceived(self, data: bytes) -> None:
                if not received.called:
                    received.callback(data)

        port = int(running.url.rsplit(":", 1)[1])
        protocol = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port), Client()
        )
        head = await received
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        swaps = running.app.router.scheduler.activeSwaps().values()
        self.assertEqual([(model, len(waiters)) for model, waiters in swaps], [("slow", 1)])
        protocol.transport.abortConnection()

        def withdrawn() -> bool:
            swaps = running.app.router.scheduler.activeSwaps().values()
            return all(not waiters for _, waiters in swaps)

        await poll(withdrawn, 5, "the request to be withdrawn")
        self.assertIsNot(running.app.supervisors["slow"].state, State.READY)

    async def test_startFails(self) -> None:
        """
        A model that fails to start ends the loading text with C{Failed!};
        the error envelope follows as JSON inside the 200 stream.
        """
        running = await startLlamaSwap(self, SLOW)
        chat = await StreamedChat(running, "broken").run()
        self.assertEqual((chat.status, chat.contentType), (200, b"text/event-stream"))
        body = b"".join(data for _, data in chat.chunks)
        events, _, tail = body.rpartition(b"\n\n")
        text = "".join(texts(events + b"\n\n"))
        self.assertRegex(text, r"\nFailed! \(\d+\.\d\ds\)\n" + SEPARATOR + "\n \n$")
        self.assertIn("exit status 3", json.loads(tail)["error"]["message"])
