"""
Tests for L{llamaswap.web.api}: parameter checking on its own; the
observability routes in memory (C{/api/events} during a load, activity
rows in a real SQLite store run on the test's thread, cancelling in-flight
requests, C{/metrics}); and two end-to-end tests over real HTTP with demo
upstreams: activity rows, captures and stats of real streams, and the
store file surviving a restart.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool, ResponseFailed

from llamaswap.app import LlamaSwap
from llamaswap.config.load import loadConfigText
from llamaswap.httperrors import BadRequest
from llamaswap.listen import parseListen
from llamaswap.web.api import activityQuery, parseRFC3339

from ..harness import Running, demoMacros, startLlamaSwap
from ..util import childEnv, poll
from .inmemory import InMemoryLlamaSwap

CHAT = "/v1/chat/completions"


def args(**values: Any) -> dict[bytes, list[bytes]]:
    result: dict[bytes, list[bytes]] = {}
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        result[name.encode()] = [str(v).encode() for v in items]
    return result


class ActivityQueryTests(SynchronousTestCase):
    """
    L{activityQuery} checks C{/api/metrics/activity}'s parameters.
    """

    def test_defaults(self) -> None:
        query = activityQuery({})
        self.assertEqual(
            (query.limit, query.page, query.sort, query.descending), (25, 1, "id", True)
        )

    def test_values(self) -> None:
        """
        Repeated models (blanks dropped), ids, times, paging and order.
        """
        query = activityQuery(args(
            model=["m1", " ", "m3"], min_id=2, max_id=9, limit=10, page=3, sort="generated",
            order="ASC", start="1970-01-01T00:16:40Z", end="1970-01-01T01:16:41+01:00",
        ))
        self.assertEqual(query.models, ("m1", "m3"))
        self.assertEqual((query.minID, query.maxID, query.limit, query.page), (2, 9, 10, 3))
        self.assertEqual((query.sort, query.descending), ("generated", False))
        self.assertEqual((query.start, query.end), (1000, 1001))

    def test_errors(self) -> None:
        """
        llama-swap's 400 messages.
        """
        cases = [
            (args(limit="x"), "invalid limit"),
            (args(limit=0), "limit must be between 1 and 999"),
            (args(limit=1000), "limit must be between 1 and 999"),
            (args(page=0), "page must be >= 1"),
            (args(sort="nope"), "invalid sort column"),
            (args(order="up"), "order must be asc or desc"),
            (args(min_id="abc"), "invalid min_id"),
            (args(max_id=0), "max_id must be >= 1"),
            (args(min_id=-1), "min_id must be >= 1"),
            (args(min_id=9, max_id=2), "min_id must be <= max_id"),
            (args(start="nonsense"), "invalid 'start' timestamp, use RFC3339 format"),
            (args(end="2026-01-01"), "invalid 'end' timestamp, use RFC3339 format"),
            (args(start="2026-01-02T00:00:00Z", end="2026-01-01T00:00:00Z"),
             "start must be before end"),
        ]
        for query, message in cases:
            with self.assertRaises(BadRequest) as caught:
                activityQuery(query)
            self.assertEqual(caught.exception.message, message)

    def test_rfc3339(self) -> None:
        self.assertEqual(parseRFC3339("1970-01-01T00:00:01.9Z"), 1)
        self.assertEqual(parseRFC3339("1970-01-01t00:00:01z"), 1)
        self.assertIsNone(parseRFC3339("1970-01-01 00:00:01Z"))
        self.assertIsNone(parseRFC3339("1970-01-01T00:00:01"))


# ---------------------------------------------------------------- over HTTP


class EventReader(Protocol):
    """
    Reads an C{/api/events} stream into decoded events.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.events: list[tuple[str, Any]] = []
        self.comments = 0
        self._waiters: list[tuple[Callable[[list[tuple[str, Any]]], bool], Deferred[None]]] = []
        self.ended: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            if block.startswith(b":"):
                self.comments += 1
                continue
            event, payload = block.split(b"\n")
            assert event == b"event:message"
            outer = json.loads(payload[len(b"data:"):])
            self.events.append((outer["type"], json.loads(outer["data"])))
        for waiter in list(self._waiters):
            if waiter[0](self.events):
                self._waiters.remove(waiter)
                waiter[1].callback(None)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.ended.called:
            self.ended.callback(None)

    def waitFor(
        self, predicate: Callable[[list[tuple[str, Any]]], bool], timeout: float = 30
    ) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if predicate(self.events):
            d.callback(None)
            return d
        self._waiters.append((predicate, d))
        return d.addTimeout(timeout, reactor)

    def of(self, kind: str) -> list[Any]:
        return [data for k, data in self.events if k == kind]

    def close(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]


async def openEvents(test: TestCase, running: Running) -> EventReader:
    response = await running.get("/api/events", unbuffered=True)
    test.assertEqual(response.code, 200)
    test.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/event-stream"])
    reader = EventReader()
    response.deliverBody(reader)

    def close() -> Deferred[None]:
        if not reader.ended.called:
            reader.close()
        return reader.ended

    test.addCleanup(close)
    return reader


async def activity(running: Running, query: str = "") -> dict[str, Any]:
    response = await running.get("/api/metrics/activity" + query)
    assert response.code == 200, await response.text()
    return await response.json()  # type: ignore[no-any-return]


async def waitForRows(running: Running, count: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal rows
        rows = (await activity(running))["data"]
        return len(rows) >= count

    await poll(enough, 20, f"{count} activity rows")
    return rows


async def startStoppable(test: TestCase, configText: str) -> Running:
    """
    Like L{startLlamaSwap}, for a llamaswap the test stops itself (its
    cleanup only makes sure it is stopped).
    """
    env = childEnv()
    loaded = loadConfigText(configText, "test.yaml", environ=env)
    runtime = os.path.abspath(test.mktemp())
    os.makedirs(runtime)
    app = LlamaSwap(loaded.config, reactor, listen=parseListen("127.0.0.1:0"),
                    runtimeDir=runtime, environ=env)
    app.startService()
    port = reactor.listenTCP(0, app.site(), interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)

    async def stop() -> None:
        if port.connected:
            await port.stopListening()
        if app.running:
            await app.stopService()

    test.addCleanup(lambda: Deferred.fromCoroutine(stop()))
    return Running(app, f"http://127.0.0.1:{port.getHost().port}", pool, port)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def sseUsage(body: bytes) -> dict[str, Any]:
    """
    The last usage and timings objects of an OpenAI stream.
    """
    found: dict[str, Any] = {}
    for line in body.split(b"\n"):
        if line.startswith(b"data: {"):
            event = json.loads(line[6:])
            for key in ("usage", "timings"):
                if event.get(key):
                    found[key] = event[key]
    return found


class InMemoryAPITests(SynchronousTestCase):
    """
    The observability routes over the app's site in memory.
    """

    def events(self, app: InMemoryLlamaSwap) -> EventReader:
        pending = app.request("GET", "/api/events", unbuffered=True)
        app.flush()
        response = self.successResultOf(pending)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/event-stream"])
        reader = EventReader()
        response.deliverBody(reader)
        app.flush()
        self.addCleanup(lambda: None if reader.ended.called else reader.close())
        return reader

    def rows(self, app: InMemoryLlamaSwap) -> list[dict[str, Any]]:
        answer = app.send("GET", "/api/metrics/activity")
        self.assertEqual(answer.code, 200, answer.body)
        return answer.json()["data"]  # type: ignore[no-any-return]

    def test_initialBurst(self) -> None:
        """
        A client of C{/api/events} first gets the model status, the UI
        configuration, the active profile and the in-flight snapshot.
        """
        app = InMemoryLlamaSwap(self, """
models:
  a:
    cmd: x
    proxy: http://127.0.0.1:9001
ui:
  activity:
    session_id: [X-Session-ID]
""")
        app.logs.proxy.write(b"llamaswap listening\n")
        reader = self.events(app)
        kinds = [kind for kind, _ in reader.events]
        self.assertEqual(kinds[0], "logData")  # the proxy log's history
        self.assertEqual(reader.of("logData")[0]["source"], "proxy")
        self.assertIn("llamaswap", reader.of("logData")[0]["data"])
        kinds = [kind for kind, _ in reader.events if kind != "logData"]
        self.assertEqual(kinds, ["modelStatus", "uiConfig", "profileChanged", "inflight"])
        self.assertEqual(reader.of("modelStatus")[0][0]["state"], "stopped")
        self.assertEqual(reader.of("uiConfig")[0], {"activity": {"session_id": ["X-Session-ID"]}})
        self.assertEqual(reader.of("profileChanged"), [{"active": None}])
        self.assertEqual(reader.of("inflight")[0], {"operation": "snapshot"})

    def test_profileChanged(self) -> None:
        """
        Switching the runtime profile sends C{profileChanged}, then a fresh
        C{modelStatus}.
        """
        app = InMemoryLlamaSwap(self, """
models:
  a:
    cmd: x
    proxy: http://127.0.0.1:9001
profiles:
  coding:
    pins:
      public: a
""")
        reader = self.events(app)
        self.assertEqual(reader.of("profileChanged"), [{"active": None}])
        answer = app.send("PUT", "/api/profiles/active", json={"name": "coding"})
        self.assertEqual(answer.code, 200)
        self.assertEqual(reader.of("profileChanged"), [{"active": None}, {"active": "coding"}])
        self.assertEqual(reader.events[-1][0], "modelStatus")

    def test_reloadAnnouncesModels(self) -> None:
        """
        A new configuration (a reload) sends a fresh C{modelStatus} with
        the models added and without the ones removed.
        """
        app = InMemoryLlamaSwap(self, """
models:
  a:
    cmd: x
    proxy: http://127.0.0.1:9001
""")
        reader = self.events(app)
        self.assertEqual([m["id"] for m in reader.of("modelStatus")[-1]], ["a"])
        app.config.set(loadConfigText("""
models:
  b:
    cmd: x
    proxy: http://127.0.0.1:9002
""", "test.yaml", environ={}).config)
        app.flush()
        self.assertEqual(reader.events[-1][0], "modelStatus")
        self.assertEqual([(m["id"], m["state"]) for m in reader.of("modelStatus")[-1]], [("b", "stopped")])

    def test_cancelInflight(self) -> None:
        """
        C{POST /api/inflight/<id>/cancel} stops a streaming request: the
        client's stream breaks, the upstream connection is closed and the
        request leaves the in-flight list; unknown IDs are 404.
        """
        app = InMemoryLlamaSwap(self, ONE_MODEL)
        pending = app.chat("a", stream=True, unbuffered=True)
        app.flush()
        app.ready("a")
        exchange = app.exchange()
        exchange.respond(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n"
        )
        app.flush()
        response = self.successResultOf(pending)
        self.assertEqual(response.code, 200)
        body = app.client.collect(response, lambda data: None)
        [id] = list(app.tracker.inflight)
        missing = app.send("POST", "/api/inflight/999/cancel")
        self.assertEqual(missing.code, 404)
        self.assertEqual(missing.json()["error"]["message"], "inflight request not found")
        cancelled = app.send("POST", f"/api/inflight/{id}/cancel")
        self.assertEqual(cancelled.json(), {"msg": "ok"})
        app.clock.advance(1)
        app.flush()
        self.failureResultOf(body, ResponseFailed)
        self.assertTrue(exchange.transport.closed)
        self.assertEqual(app.tracker.inflight, {})
        [row] = self.rows(app)
        self.assertEqual(row["error_msg"], "client disconnected during the response")


    def test_eventsDuringLoad(self) -> None:
        """
        A client of C{/api/events} sees the model go starting -> ready with
        load progress in between and the request in flight; a second
        client learns how long a load of the model takes.
        """
        app = InMemoryLlamaSwap(self, ONE_MODEL)
        reader = self.events(app)
        pending = app.chat("a")
        app.advance(2.5)
        app.ready("a")
        app.respond(CHAT_REPLY)
        self.assertEqual(app.answer(pending).code, 200)

        states = [s[0]["state"] for s in reader.of("modelStatus")]
        self.assertEqual(states[:3], ["stopped", "starting", "ready"])
        progress = reader.of("loadProgress")
        self.assertEqual(progress[0]["phase"], "starting")
        self.assertEqual(progress[-1]["phase"], "ready")
        self.assertGreaterEqual(len(progress), 3, progress)
        self.assertLessEqual(abs(progress[-1]["elapsed_ms"] - 2500), 1)
        self.assertEqual(progress[-1]["progress"], 1.0)
        operations = [e["operation"] for e in reader.of("inflight")[1:]]
        self.assertEqual(operations[-1], "remove")
        self.assertIn("upsert", operations)
        phases = [e["request"]["phase"] for e in reader.of("inflight") if "request" in e]
        self.assertIn("loading", phases)
        [row] = self.rows(app)
        self.assertEqual(reader.of("activity"), [{"id": row["id"]}])
        self.assertGreaterEqual(row["queue_ms"], 2000)
        self.assertGreaterEqual(row["ttfb_ms"], row["queue_ms"])

        unloading = app.request("POST", "/api/models/unload")
        app.settle()
        self.assertEqual(app.answer(unloading).code, 200)
        second = self.events(app)
        pending = app.chat("a")
        app.advance(0.5)
        expected = second.of("loadProgress")[0]["expected_ms"]
        self.assertEqual(expected, progress[-1]["elapsed_ms"])
        app.ready("a")
        app.respond(CHAT_REPLY)
        self.assertEqual(app.answer(pending).code, 200)

    def test_metrics(self) -> None:
        """
        C{/metrics} parses as Prometheus text and its counters move with
        requests; the load and the model state are there.
        """
        app = InMemoryLlamaSwap(self, ONE_MODEL)

        def scrape() -> dict[Any, float]:
            answer = app.send("GET", "/metrics")
            self.assertEqual(answer.code, 200)
            self.assertTrue(answer.header("content-type").startswith("text/plain"))
            return samples(answer.body.decode())

        labels = (("model", "a"), ("path", CHAT), ("status", "200"))
        before = scrape()
        self.assertIsNone(before.get(("llamaswap_requests_total", labels)))
        state = ("llamaswap_model_state", "stopped"), ("model", "a")
        self.assertEqual(before[("llamaswap_model_state", state)], 1.0)
        for count in (1, 2):
            answer, _ = app.roundTrip(
                "POST", CHAT, json={"model": "a", "messages": []}, reply=CHAT_REPLY
            )
            self.assertEqual(answer.code, 200)
            after = scrape()
            self.assertEqual(after[("llamaswap_requests_total", labels)], float(count))
        self.assertEqual(after[("llamaswap_output_tokens_total", (("model", "a"),))], 10.0)
        self.assertEqual(
            after[("llamaswap_time_to_first_byte_seconds_count", (("model", "a"),))], 2.0)
        self.assertEqual(after[("llamaswap_model_loads_total", (("model", "a"),))], 1.0)
        self.assertEqual(
            after[("llamaswap_model_load_duration_seconds_count", (("model", "a"),))], 1.0)
        state = ("llamaswap_model_state", "ready"), ("model", "a")
        self.assertEqual(after[("llamaswap_model_state", state)], 1.0)

    def test_unknownModelRow(self) -> None:
        """
        A request for an unknown model gets a 404 row with the message.
        """
        app = InMemoryLlamaSwap(self, ONE_MODEL)
        answer = app.answer(app.chat("nope"))
        self.assertEqual(answer.code, 404)
        [row] = self.rows(app)
        self.assertEqual((row["model"], row["resp_status_code"]), ("nope", 404))
        self.assertEqual(row["error_msg"], answer.json()["error"]["message"])

    def test_upstreamPassthroughRow(self) -> None:
        """
        A request through C{/upstream/<model>/...} is recorded too, with its
        model and the path the upstream saw, and its tokens.
        """
        app = InMemoryLlamaSwap(self, ONE_MODEL)
        answer, _ = app.roundTrip(
            "POST", "/upstream/a/v1/chat/completions",
            json={"model": "a", "messages": [{"role": "user", "content": "hi"}]},
            reply=CHAT_REPLY,
        )
        self.assertEqual(answer.code, 200, answer.body)
        [row] = self.rows(app)
        self.assertEqual((row["model"], row["resp_status_code"]), ("a", 200))
        self.assertEqual(row["req_path"], "/v1/chat/completions")
        self.assertEqual(row["tokens"]["output_tokens"], answer.json()["usage"]["completion_tokens"])


ONE_MODEL = """
models:
  a:
    cmd: x
    proxy: http://127.0.0.1:9001
"""

#: A chat completion as an upstream answers it, with usage.
CHAT_REPLY = json.dumps({
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
}).encode()


class APITests(TestCase):
    """
    The observability routes of a whole llamaswap, end to end (the rest
    is in L{InMemoryAPITests}).
    """

    timeout = 90

    async def test_activityCapturesStats(self) -> None:
        """
        Streamed and plain chats and an Anthropic stream get rows with the
        upstream's counts; captures hold the (redacted) request and the
        response; stats add up; GETs get no row.
        """
        running = await startLlamaSwap(self, demoMacros() + """
models:
  a:
    cmd: ${demo} --tokens 12
""")
        status, plain = await running.chat("a", api_key="sk-secret")
        self.assertEqual(status, 200, plain)
        response = await running.post(
            CHAT,
            json={"model": "a", "stream": True,
                  "messages": [{"role": "user", "content": "hello there"}]},
        )
        streamed = sseUsage(await response.content())
        response = await running.post(
            "/v1/messages",
            json={"model": "a", "stream": True, "max_tokens": 50,
                  "messages": [{"role": "user", "content": "hi"}]},
        )
        self.assertEqual(response.code, 200)
        await response.content()
        response = await running.get("/props?model=a")
        await response.content()

        rows = await waitForRows(running, 3)
        messages, stream, chat = rows
        self.assertEqual([r["req_path"] for r in rows], ["/v1/messages", CHAT, CHAT])
        self.assertEqual(chat["model"], "a")
        self.assertEqual(chat["resp_status_code"], 200)
        self.assertEqual(chat["tokens"]["input_tokens"], plain["timings"]["prompt_n"])
        self.assertEqual(chat["tokens"]["output_tokens"], 12)
        self.assertEqual(chat["tokens"]["tokens_per_second"],
                         plain["timings"]["predicted_per_second"])
        self.assertEqual(chat["metadata"], {"fifo_priority": "0"})
        self.assertEqual(stream["tokens"]["input_tokens"], streamed["timings"]["prompt_n"])
        self.assertEqual(stream["tokens"]["output_tokens"], 12)
        self.assertEqual(stream["resp_content_type"].split(";")[0], "text/event-stream")
        self.assertEqual(messages["tokens"]["output_tokens"], 12)
        self.assertGreater(messages["tokens"]["input_tokens"], 0)
        for row in rows:
            self.assertTrue(row["has_capture"])
            self.assertGreaterEqual(row["ttfb_ms"], 0)
            self.assertNotIn("error_msg", row)

        response = await running.get(f"/api/captures/{chat['id']}")
        capture = await response.json()
        request = json.loads(base64.b64decode(capture["req_body"]))
        self.assertEqual(request["api_key"], "[REDACTED]")
        self.assertEqual(json.loads(base64.b64decode(capture["resp_body"]))["id"], plain["id"])
        self.assertEqual(capture["req_path"], CHAT)
        self.assertEqual((await running.get("/api/captures/999")).code, 404)
        self.assertEqual((await running.get("/api/captures/abc")).code, 400)

        page = await activity(running, "?model=a&limit=2&page=2&sort=id&order=asc")
        self.assertEqual([r["id"] for r in page["data"]], [messages["id"]])
        self.assertEqual((page["total"], page["total_pages"]), (3, 2))
        self.assertEqual((await running.get("/api/metrics/activity?limit=0")).code, 400)

        response = await running.get("/api/metrics/stats?model=a")
        stats = await response.json()
        self.assertEqual(stats["total_requests"], 3)
        self.assertEqual(stats["total_output_tokens"], 36)
        # The Anthropic stream reported no speed: estimated from the stream.
        self.assertEqual(sum(stats["gen_histogram"]["bins"]), 3)
        self.assertGreater(messages["tokens"]["tokens_per_second"], 0)
        self.assertEqual(messages["tokens"]["prompt_per_second"], -1)

    async def test_storeSurvivesRestart(self) -> None:
        """
        With C{store.path}, rows and load times are still there after
        llamaswap is stopped and a new one started on the same file.
        """
        path = self.mktemp()
        config = demoMacros() + f"""
store:
  path: {path}
models:
  a:
    cmd: ${{demo}}
"""
        first = await startStoppable(self, config)
        await first.chat("a")
        await first.chat("a")
        before = await waitForRows(first, 2)
        await first.port.stopListening()
        await first.app.stopService()

        second = await startLlamaSwap(self, config)
        after = (await activity(second))["data"]
        self.assertEqual([r["id"] for r in after], [r["id"] for r in before])
        self.assertEqual(after[0]["tokens"], before[0]["tokens"])
        self.assertFalse(after[0]["has_capture"])  # captures live in memory only
        history = second.app.observability.loads.history  # type: ignore[attr-defined]
        await poll(lambda: history.expected("a") is not None, 10, "load history")
        await second.chat("a")
        rows = await waitForRows(second, 3)
        self.assertEqual(rows[0]["id"], before[0]["id"] + 1)
