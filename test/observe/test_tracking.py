"""
Tests for L{llamaswap.observe.tracking}: a request tracked through a real
twisted.web site and the real L{Forwarder} (upstreams over in-memory
connections, a fake clock): in-flight events, activity rows, captures and
metrics.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llamaswap.backlog import Backlog
from llamaswap.httperrors import ModelNotFound
from llamaswap.observe.activity import ActivityLog, ActivityRecord
from llamaswap.observe.captures import REDACTED, CaptureCache
from llamaswap.observe.metrics import Metrics
from llamaswap.observe.tracking import (
    ABANDON_AFTER,
    CLIENT_CLOSED,
    RequestTrack,
    Tracker,
)
from llamaswap.web.errors import writeHTTPError
from llamaswap.web.forward import Forwarder

from ..web.helpers import Client, ProtocolAgent

UPSTREAM = b"http://127.0.0.1:5800"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class FakeStore:
    """
    An activity store in a list, answering at once.
    """

    def __init__(self) -> None:
        self.rows: list[ActivityRecord] = []

    def insert(self, record: ActivityRecord) -> Deferred[int]:
        self.rows.append(record)
        return succeed(len(self.rows))


class Lease:
    def __init__(self, model: str, priority: int = 0) -> None:
        self.model = model
        self.priority = priority


class TrackedResource(Resource):
    """
    A handler shaped like the model route: begin, queue, wait for the
    test's grant, forward with the track's taps, finish.
    """

    isLeaf = True

    def __init__(self, tracker: Tracker, forwarder: Forwarder) -> None:
        super().__init__()
        self.tracker = tracker
        self.forwarder = forwarder
        self.grants: list[Deferred[Any]] = []
        self.tracks: list[Any] = []
        self.body: bytes | None = None
        self.skipFinish = False

    def render(self, request: Request) -> Any:
        track = self.tracker.begin(request, "alias", request.path)
        self.tracks.append(track)
        track.queued()
        grant: Deferred[Any] = Deferred()
        self.grants.append(grant)
        request.notifyFinish().addErrback(lambda f: grant.cancel() if not grant.called else None)

        def granted(lease: Any) -> Deferred[Any]:
            track.granted(lease)
            return self.forwarder.forward(
                request, UPSTREAM, request.uri, self.body, taps=track.forwarding(self.body)
            )

        def ended(result: Any) -> None:
            if self.skipFinish:
                return
            if isinstance(result, Exception):
                track.finished(None, result)
            elif hasattr(result, "value"):
                track.finished(None, result.value)
            else:
                track.finished(result)

        grant.addCallback(granted).addBoth(ended)
        return NOT_DONE_YET


class TrackerTests(SynchronousTestCase):
    """
    Tracking one request from arrival to its activity row.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.agent = ProtocolAgent(self.clock)
        self.forwarder = Forwarder(self.agent, self.clock)
        self.store = FakeStore()
        self.captures = CaptureCache(64 * 1024)
        self.announced: list[ActivityRecord] = []
        self.activity = ActivityLog(self.store, self.captures, self.announced.append)  # type: ignore[arg-type]
        self.metrics = Metrics(processMetrics=False)
        self.events: list[tuple[str, Any]] = []
        self.states = {"alias": "starting", "m1": "starting"}
        self.tracker = Tracker(
            self.clock,
            publish=lambda kind, data: self.events.append((kind, data)),
            activity=self.activity,
            metrics=self.metrics,
            captures=self.captures,
            modelState=self.states.get,
        )
        self.resource = TrackedResource(self.tracker, self.forwarder)
        self.client = Client(Site(self.resource, reactor=self.clock))

    def inflight(self) -> list[dict[str, Any]]:
        return [data for kind, data in self.events if kind == "inflight"]

    def send(self, body: bytes = b'{"model":"alias","api_key":"sk-secret"}', **kw: Any) -> None:
        kw.setdefault("headers", [(b"Authorization", b"Bearer sk-1"),
                                  (b"X-Forwarded-For", b"203.0.113.9, 10.0.0.1"),
                                  (b"Content-Type", b"application/json")])
        self.client.send(body=body, **kw)

    def respondJSON(self, body: bytes, status: bytes = b"200 OK") -> None:
        """
        Answer the first upstream exchange with the JSON C{body}.
        """
        self.agent.exchanges[0].respond(
            b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body)
        )

    def test_streamedChat(self) -> None:
        """
        A streamed chat: in-flight add, queued, granted, headers, bytes,
        remove; then a row with the model ID, tokens, speeds, time to first
        byte and queue time; a redacted capture; metrics.
        """
        self.send()
        self.clock.advance(2)  # the model loads
        self.states["m1"] = "ready"
        self.resource.grants[0].callback(Lease("m1", priority=3))
        self.clock.advance(0.5)  # prompt processing
        exchange = self.agent.exchanges[0]
        exchange.respond(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Set-Cookie: s=1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        exchange.respond(chunk(b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'))
        self.clock.advance(0.25)
        self.clock.advance(0.75)
        exchange.respond(
            chunk(
                b'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7},'
                b'"timings":{"prompt_n":12,"predicted_n":7,"prompt_per_second":80.5,'
                b'"predicted_per_second":21.0,"prompt_ms":149,"predicted_ms":333}}\n\n'
                b"data: [DONE]\n\n"
            )
            + b"0\r\n\r\n"
        )
        self.clock.advance(1)

        operations = [(e["operation"], e.get("request", {}).get("phase")) for e in self.inflight()]
        self.assertEqual(
            operations,
            [("upsert", "running"), ("upsert", "loading"), ("upsert", "running"),
             ("upsert", "running"), ("upsert", "running"), ("upsert", "running"),
             ("remove", None)],
        )
        first = self.inflight()[0]["request"]
        self.assertEqual(first["id"], "1")
        self.assertEqual(first["remote_ip"], "203.0.113.9")
        self.assertEqual(first["req_headers"]["Authorization"], REDACTED)
        self.assertEqual(first["method"], "POST")
        self.assertEqual(first["path"], "/v1/chat/completions")
        # llama-swap's UI shows the path from req_path
        self.assertEqual(first["req_path"], "/v1/chat/completions")
        headersEvent = self.inflight()[3]["request"]
        self.assertEqual(headersEvent["resp_headers"]["Content-Type"], "text/event-stream")
        self.assertEqual(headersEvent["resp_headers"]["Set-Cookie"], REDACTED)
        self.assertEqual(self.inflight()[3]["request"]["elapsed_ms"], 2500)
        self.assertGreater(self.inflight()[-2]["request"]["resp_bytes"], 0)
        self.assertEqual(self.tracker.inflight, {})

        [row] = self.store.rows
        self.assertEqual(row.id, 1)
        self.assertEqual(row.model, "m1")
        self.assertEqual(row.reqPath, "/v1/chat/completions")
        self.assertEqual(row.status, 200)
        self.assertEqual(row.respContentType, "text/event-stream")
        self.assertEqual((row.tokens.inputTokens, row.tokens.outputTokens), (12, 7))
        self.assertEqual((row.tokens.promptPerSecond, row.tokens.tokensPerSecond), (80.5, 21.0))
        self.assertEqual(row.queueMs, 2000)
        self.assertEqual(row.ttfbMs, 2500)
        self.assertEqual(row.durationMs, 3500)
        self.assertEqual(row.metadata, {"fifo_priority": "3"})
        self.assertEqual(row.errorMsg, "")
        self.assertEqual(self.announced, [row])

        capture = self.captures.get(1)
        assert capture is not None
        self.assertEqual(json.loads(capture.reqBody or b"")["api_key"], REDACTED)
        self.assertEqual(capture.reqHeaders["Authorization"], REDACTED)  # type: ignore[index]
        self.assertIn(b'"completion_tokens":7', capture.respBody or b"")
        self.assertEqual(self.activity.hasCapture(1), True)

        text = self.metrics.render()[0].decode()
        self.assertIn(
            'llamaswap_requests_total{model="m1",path="/v1/chat/completions",status="200"} 1.0',
            text,
        )
        self.assertIn('llamaswap_output_tokens_total{model="m1"} 7.0', text)
        self.assertIn('llamaswap_requests_in_flight{model="m1"} 0.0', text)
        self.assertIn('llamaswap_time_to_first_byte_seconds_sum{model="m1"} 2.5', text)

    def test_recordedWhenQuiet(self) -> None:
        """
        With a backlog, the end of a relayed exchange is recorded when the
        backlog settles (the row, the in-flight removal, the metrics), but
        as of when it ended: its duration and time stamp do not include
        the wait, and no abandon timer is started meanwhile.
        """
        backlog = Backlog(self.clock, delay=10)
        self.tracker.later = backlog.later
        # As in the model route, the track's tap reports the end.
        self.resource.skipFinish = True
        self.send()
        self.resource.grants[0].callback(Lease("m1"))
        self.clock.advance(0.5)
        endedAt = self.clock.seconds()
        body = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}'
        self.respondJSON(body)
        self.assertEqual(self.store.rows, [])
        self.assertEqual(list(self.tracker.inflight), ["1"])
        # Its end is known: no timer waits for it.
        self.assertIsNone(self.resource.tracks[0]._abandon)
        self.clock.advance(2)
        backlog.settle()
        [row] = self.store.rows
        self.assertEqual((row.status, row.durationMs, row.timestamp), (200, 500, endedAt))
        self.assertEqual((row.tokens.inputTokens, row.tokens.outputTokens), (3, 2))
        self.assertEqual(self.tracker.inflight, {})
        text = self.metrics.render()[0].decode()
        self.assertIn('llamaswap_request_duration_seconds_sum{model="m1"} 0.5', text)
        self.assertIn('llamaswap_requests_in_flight{model="m1"} 0.0', text)

    def test_recordedInSteps(self) -> None:
        """
        The recording is bookkeeping in steps: a reactor with I/O to handle
        waits for one step (the reply's usage read, the row built, its
        capture, the metrics, the row stored), not all of them.
        """
        checks: list[bool] = []
        backlog = Backlog(self.clock, delay=10, ioWaiting=lambda: bool(checks and checks.pop()))
        self.tracker.later = backlog.later
        self.resource.skipFinish = True
        self.send()
        self.resource.grants[0].callback(Lease("m1"))
        body = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}'
        self.respondJSON(body)
        steps = 0
        while len(backlog):
            checks[:] = [True, False]  # idle once, then I/O waits
            backlog.runWhileIdle()
            steps += 1
            if len(backlog):
                self.assertEqual(self.store.rows, [])
        self.assertEqual(steps, 5)
        [row] = self.store.rows
        self.assertEqual((row.tokens.inputTokens, row.tokens.outputTokens), (3, 2))
        self.assertIsNotNone(self.captures.get(row.id))

    def answeredUnwatched(self, headers: bytes) -> tuple[list[int], Any]:
        """
        With nobody listening to events (until C{listeners[0]} is raised),
        send a request and answer its head: 200 with C{headers}.
        """
        listeners = [0]
        self.tracker._listening = lambda: listeners[0]
        self.send()
        self.resource.grants[0].callback(Lease("m1"))
        exchange = self.agent.exchanges[0]
        exchange.respond(b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n")
        return listeners, exchange

    def test_nobodyListening(self) -> None:
        """
        With no one listening, no in-flight event is built or published;
        the row, the capture (with redacted headers) and the snapshot are
        unchanged.
        """
        self.patch(RequestTrack, "toJSON", lambda track: self.fail("built an event"))
        _, exchange = self.answeredUnwatched(
            b"Content-Type: application/json\r\nSet-Cookie: s=1\r\nContent-Length: 2\r\n"
        )
        [track] = self.tracker.inflight.values()
        self.assertEqual(track.respHeaders["Set-Cookie"], REDACTED)  # type: ignore[index]
        exchange.respond(b"{}")
        self.clock.advance(1)
        self.assertEqual(self.events, [])
        [row] = self.store.rows
        self.assertEqual(row.status, 200)
        capture = self.captures.get(row.id)  # type: ignore[arg-type]
        assert capture is not None
        self.assertEqual(capture.reqHeaders["Authorization"], REDACTED)  # type: ignore[index]

    def test_nobodyListeningNoByteTimer(self) -> None:
        """
        With no one listening, response bytes schedule no update; once
        someone listens, they do again.
        """
        listeners, exchange = self.answeredUnwatched(
            b"Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
        )
        [track] = self.tracker.inflight.values()
        exchange.respond(chunk(b"data: {}\n\n"))
        self.assertIsNone(track._timer)
        self.assertEqual(track.respBytes, 10)
        listeners[0] = 1
        exchange.respond(chunk(b"data: {}\n\n"))
        self.assertIsNotNone(track._timer)
        self.clock.advance(0.25)
        self.assertEqual(self.inflight()[-1]["request"]["resp_bytes"], 20)

    def test_byteUpdatesThrottled(self) -> None:
        """
        Byte-count updates go out at most every 250 ms per request, the
        latest total sent when the window ends.
        """
        self.send()
        self.resource.grants[0].callback(Lease("m1"))
        exchange = self.agent.exchanges[0]
        exchange.respond(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        before = len(self.inflight())
        for _ in range(5):
            exchange.respond(chunk(b"data: {}\n\n"))
            self.clock.advance(0.01)
        self.assertEqual(len(self.inflight()), before)
        self.clock.advance(0.25)
        updates = self.inflight()[before:]
        self.assertEqual([u["request"]["resp_bytes"] for u in updates], [50])

    def test_upstreamError(self) -> None:
        """
        A 502 from the upstream: its message, no tokens, a capture with
        the request and the response headers but no response body.
        """
        self.send()
        self.resource.grants[0].callback(Lease("m1"))
        body = b'{"error":{"message":"model unavailable"}}'
        self.respondJSON(body, b"502 Bad Gateway")
        [row] = self.store.rows
        self.assertEqual((row.status, row.errorMsg), (502, "model unavailable"))
        self.assertEqual(row.tokens.inputTokens, 0)
        capture = self.captures.get(1)
        assert capture is not None
        self.assertIsNone(capture.respBody)
        self.assertEqual(capture.respHeaders["Content-Type"], "application/json")  # type: ignore[index]
        self.assertIsNotNone(capture.reqBody)

    def test_failedBeforeForwarding(self) -> None:
        """
        A request that fails before it is forwarded (unknown model) gets a
        row with the error's status and message, and a capture.
        """
        self.send()
        track = self.resource.tracks[0]
        self.resource.skipFinish = True
        writeHTTPError(track.request, ModelNotFound("no router for requested model"))
        track.finished(None, ModelNotFound("no router for requested model"))
        [row] = self.store.rows
        self.assertEqual((row.model, row.status), ("alias", 404))
        self.assertEqual(row.errorMsg, "no router for requested model")
        self.assertEqual(row.queueMs, 0)
        self.assertIsNotNone(self.captures.get(1))

    def test_metricLabelsBounded(self) -> None:
        """
        Names that are not configured models, and paths outside the route
        table, share one metrics label each: clients cannot make up series.
        """
        self.tracker.knownModel = lambda name: name == "m1"
        self.client.send(body=b"{}", path=b"/made/up/path")
        track = self.resource.tracks[0]
        self.resource.skipFinish = True
        track.model = "random-name-123"
        writeHTTPError(track.request, ModelNotFound("no router for requested model"))
        track.finished(None, ModelNotFound("no router for requested model"))
        text = self.metrics.render()[0].decode()
        self.assertIn(
            'llamaswap_requests_total{model="(unknown)",path="(other)",status="404"} 1.0', text
        )
        self.assertNotIn("random-name-123", text)

    def test_clientLeftWhileQueued(self) -> None:
        """
        A client gone while waiting: status 499 and a message.
        """
        self.send()
        self.clock.advance(1)
        self.client.disconnect()
        [row] = self.store.rows
        self.assertEqual(row.status, CLIENT_CLOSED)
        self.assertEqual(row.errorMsg, "client disconnected before a response")
        self.assertEqual(row.queueMs, 1000)
        self.assertEqual(self.tracker.inflight, {})

    def test_cancel(self) -> None:
        """
        Cancelling by ID closes the client's connection (or calls the
        track's C{onCancel}); unknown IDs are refused.
        """
        self.send()
        self.assertFalse(self.tracker.cancel("42"))
        self.assertTrue(self.tracker.cancel("1"))
        self.assertTrue(self.client.transport.disconnecting)
        called: list[bool] = []
        self.resource.tracks[0].onCancel = lambda: called.append(True)
        self.assertTrue(self.tracker.cancel("1"))
        self.assertEqual(called, [True])

    def test_unmeteredRequest(self) -> None:
        """
        A GET is tracked in flight and counted, but gets no activity row.
        """
        self.client.send(b"GET", b"/props?model=m1")
        self.resource.grants[0].callback(Lease("m1"))
        self.agent.exchanges[0].respond(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        )
        self.assertEqual(self.store.rows, [])
        self.assertEqual(self.inflight()[0]["request"]["path"], "/props")
        self.assertEqual(self.inflight()[0]["request"]["req_path"], "/props")
        self.assertIn('path="/props",status="200"', self.metrics.render()[0].decode())

    def test_abandoned(self) -> None:
        """
        A handler that answers by itself and never reports the end still
        gets its track closed, L{ABANDON_AFTER} seconds after the HTTP
        request ended.
        """
        self.resource.skipFinish = True
        self.send()
        request = self.resource.tracks[0].request
        request.write(b"{}")
        request.finish()
        self.assertEqual(self.store.rows, [])
        self.clock.advance(ABANDON_AFTER)
        self.assertEqual([r.status for r in self.store.rows], [200])
        self.assertEqual(self.tracker.inflight, {})
        track = self.resource.tracks[0]
        self.assertEqual((track._abandon, track._timer), (None, None))

    def test_connectionFailed(self) -> None:
        """
        An upstream that cannot be reached: the forwarder's 502, described.
        """
        from twisted.internet.error import ConnectionRefusedError
        from twisted.python.failure import Failure

        self.agent.failWith = lambda: Failure(ConnectionRefusedError("nobody home"))
        self.send()
        self.resource.grants[0].callback(Lease("m1"))
        [row] = self.store.rows
        self.assertEqual(row.status, 502)
        self.assertTrue(row.errorMsg.startswith("upstream connection error: "), row.errorMsg)
        self.assertEqual(row.ttfbMs, -1)

    def test_estimatedSpeed(self) -> None:
        """
        A stream whose upstream reports tokens but no speed gets a
        generation speed from the time between its first and last bytes.
        """
        self.send()
        self.resource.grants[0].callback(Lease("m1"))
        exchange = self.agent.exchanges[0]
        exchange.respond(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        exchange.respond(chunk(b'data: {"choices":[]}\n\n'))
        self.clock.advance(2)
        exchange.respond(
            chunk(b'data: {"usage":{"prompt_tokens":3,"completion_tokens":21}}\n\n')
            + b"0\r\n\r\n"
        )
        [row] = self.store.rows
        self.assertEqual(row.tokens.tokensPerSecond, 10.0)
        self.assertEqual(row.tokens.promptPerSecond, -1)

    def test_truncated(self) -> None:
        """
        An upstream that breaks off: the tokens seen so far and a message.
        """
        self.send()
        self.resource.grants[0].callback(Lease("m1"))
        exchange = self.agent.exchanges[0]
        exchange.respond(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        exchange.respond(chunk(b'data: {"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'))
        exchange.drop()
        [row] = self.store.rows
        self.assertEqual(row.errorMsg, "upstream broke off the response")
        self.assertEqual(row.tokens.inputTokens, 3)

    def test_cancelledError(self) -> None:
        """
        C{finished(None, CancelledError())} (the handler's own withdrawal)
        records a client-closed row once; later calls do nothing.
        """
        self.send()
        track = self.resource.tracks[0]
        track.finished(None, CancelledError())
        track.finished(None, CancelledError())
        self.assertEqual([r.status for r in self.store.rows], [CLIENT_CLOSED])
