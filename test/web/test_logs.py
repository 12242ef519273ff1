"""
Tests for L{llamaswap.web.logs}: the log endpoints over a real twisted.web
L{Site} (in memory), and over real HTTP with demo upstreams.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogPublisher, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llamaswap.observe.logs import SUBSCRIBER_BYTES, Subscription
from llamaswap.observe.monitors import LogMonitors
from llamaswap.web.logs import HEARTBEAT, AccessLogSite, LogStream, install, sseFrame
from llamaswap.web.mux import Mux

from ..harness import Running, startLlamaSwap
from ..util import freePort, poll
from .helpers import Client

HERE = os.path.dirname(os.path.abspath(__file__))
CHATTY = os.path.join(os.path.dirname(HERE), "observe", "chatty.py")
#: The demo upstream, logging a line per request (the harness's is silent).
LOUD_DEMO = f"{sys.executable} -m llamaswap.demo --port ${{PORT}}"


class FakeRouter:
    """
    Resolves model IDs and aliases like the real router.
    """

    def __init__(self, models: list[str], aliases: dict[str, str]) -> None:
        self.models = models
        self.aliases = aliases

    def resolve(self, name: str) -> tuple[str, None] | None:
        if name in self.models:
            return name, None
        if name in self.aliases:
            return self.aliases[name], None
        return None


class FakeApp:
    """
    What the log endpoints use of L{llamaswap.app.LlamaSwap}.
    """

    def __init__(self) -> None:
        self.reactor = Clock()
        models = ["a", "org/model"]
        self.logs = LogMonitors(models, publisher=LogPublisher())
        self.router = FakeRouter(models, {"alias-a": "a"})


def makeSite(app: FakeApp) -> AccessLogSite:
    mux = Mux()
    install(mux, app.logs, app.router, app.reactor)  # type: ignore[arg-type]
    return AccessLogSite(mux, app.reactor, reactor=app.reactor)


class EndpointTests(SynchronousTestCase):
    """
    The log endpoints over an in-memory connection to a real L{Site}.
    """

    def setUp(self) -> None:
        self.app = FakeApp()
        self.site = makeSite(self.app)

    def get(self, path: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Client:
        client = Client(self.site)
        client.send(b"GET", path, headers=headers)
        self.addCleanup(lambda: client.transport.disconnecting or client.disconnect())
        return client

    def test_history(self) -> None:
        """
        C{GET /logs} (and v1's C{/log}) answers the combined history as
        plain text.
        """
        self.app.logs.combined.write(b"[INFO] one\n")
        for path in (b"/logs", b"/log"):
            response = self.get(path).response()
            self.assertEqual(response.status, 200)
            self.assertEqual(response.body, b"[INFO] one\n")
            self.assertTrue(response.header(b"content-type").startswith(b"text/plain"))

    def test_emptyHistory(self) -> None:
        """
        Nothing logged yet: an empty body.
        """
        response = self.get(b"/logs").response()
        self.assertEqual((response.status, response.body), (200, b""))

    def test_browserRedirected(self) -> None:
        """
        A browser asking for C{/logs} is sent to the UI.
        """
        response = self.get(b"/logs", [(b"Accept", b"text/html,application/xhtml+xml")]).response()
        self.assertEqual(response.status, 302)
        self.assertEqual(response.header(b"location"), b"/ui/#/logs")

    def test_stream(self) -> None:
        """
        C{/logs/stream} sends the combined history at once, then each new
        line as it is written, chunked, with headers that stop buffering.
        """
        self.app.logs.combined.write(b"old\n")
        client = self.get(b"/logs/stream")
        response = client.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"old\n")
        self.assertFalse(response.complete)
        self.assertEqual(response.header(b"x-content-type-options"), b"nosniff")
        self.assertEqual(response.header(b"x-accel-buffering"), b"no")
        self.assertTrue(response.header(b"content-type").startswith(b"text/plain"))
        self.app.logs.combined.write(b"new\n")
        self.assertEqual(client.response().body, b"old\nnew\n")

    def test_noHistory(self) -> None:
        """
        C{?no-history} (any value, or none) skips the history.
        """
        self.app.logs.combined.write(b"old\n")
        for query in (b"?no-history", b"?no-history=0", b"?x=1&no-history"):
            client = self.get(b"/logs/stream" + query)
            self.app.logs.combined.write(b"new\n")
            response = client.response()
            self.assertEqual((response.status, response.body), (200, b"new\n"), query)
            client.disconnect()

    def test_sources(self) -> None:
        """
        C{proxy}, C{upstream}, an empty id, a model ID with a slash (raw or
        C{%2F}-encoded), an alias and a path below a model name their
        monitors.
        """
        logs = self.app.logs
        logs.proxy.write(b"P\n")
        logs.upstreamLine("a", "stdout", "A")
        logs.upstreamLine("org/model", "stdout", "O")
        logs.combined.write(b"C\n")
        for path, body in [
            (b"/logs/stream/proxy", b"P\n"),
            (b"/logs/stream/upstream", b"[a] A\n[org/model] O\n"),
            (b"/logs/stream/", b"P\nC\n"),
            (b"/logs/stream/a", b"A\n"),
            (b"/logs/stream/alias-a", b"A\n"),
            (b"/logs/stream/org/model", b"O\n"),
            (b"/logs/stream/org%2Fmodel", b"O\n"),
            (b"/logs/stream/org/model/extra", b"O\n"),
        ]:
            client = self.get(path)
            response = client.response()
            self.assertEqual((response.status, response.body), (200, body), path)
            client.disconnect()

    def test_unknownSource(self) -> None:
        """
        Anything else is a 400 envelope naming the valid choices.
        """
        response = self.get(b"/logs/stream/nope").response()
        self.assertEqual(response.status, 400)
        self.assertEqual(
            json.loads(response.body)["error"]["message"],
            "invalid logger. Use 'proxy', 'upstream' or a model's ID",
        )

    def test_onlyItsModel(self) -> None:
        """
        A model's stream gets its own lines, not another model's.
        """
        client = self.get(b"/logs/stream/a?no-history")
        self.app.logs.upstreamLine("org/model", "stdout", "not mine")
        self.app.logs.upstreamLine("a", "stdout", "mine")
        self.assertEqual(client.response().body, b"mine\n")

    def test_disconnectUnsubscribes(self) -> None:
        """
        When the client goes, its subscription is cancelled.
        """
        client = self.get(b"/logs/stream/a")
        monitor = self.app.logs.models["a"]
        self.assertEqual(len(monitor.subscriptions), 1)
        client.disconnect()
        self.assertEqual(monitor.subscriptions, ())
        monitor.write(b"after\n")

    def test_shutdownEndsStreams(self) -> None:
        """
        Stopping the monitors finishes every stream cleanly.
        """
        client = self.get(b"/logs/stream")
        self.app.logs.stop()
        response = client.response()
        self.assertTrue(response.complete)
        self.assertEqual(self.app.logs.combined.subscriptions, ())

    def test_drainClosesStreams(self) -> None:
        """
        A graceful shutdown's drain does not wait for log streams: it
        closes them at once.
        """
        from llamaswap.drain import RequestTracker

        tracker = RequestTracker(self.app.reactor)
        tracker.watch(self.site)
        client = self.get(b"/logs/stream")
        drained = tracker.drain(30)
        self.assertTrue(client.transport.disconnecting)
        client.disconnect()
        self.assertEqual(self.successResultOf(drained), 0)

    def test_head(self) -> None:
        """
        HEAD answers the stream's headers and ends.
        """
        client = Client(self.site)
        client.send(b"HEAD", b"/logs/stream")
        raw = client.transport.value()
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw)
        self.assertEqual(self.app.logs.combined.subscriptions, ())

    def test_slowClient(self) -> None:
        """
        A client whose socket is full pauses its subscription: lines queue
        up to the budget, then are dropped; the writer never waits.  When
        the client reads again it gets the queued lines and how many were
        lost, then live lines.
        """
        client = self.get(b"/logs/stream/a?no-history")
        monitor = self.app.logs.models["a"]
        (subscription,) = monitor.subscriptions
        client.pause()
        self.assertTrue(subscription.paused)
        before = len(client.transport.value())
        line = "x" * 1023
        count = 2 * SUBSCRIBER_BYTES // 1024
        for _ in range(count):
            self.app.logs.upstreamLine("a", "stdout", line)
        self.assertEqual(len(client.transport.value()), before)
        self.assertLessEqual(subscription.queuedBytes, SUBSCRIBER_BYTES)
        self.assertEqual(subscription.droppedLines, count - SUBSCRIBER_BYTES // 1024)
        client.resume()
        self.app.logs.upstreamLine("a", "stdout", "live")
        body = client.response().body
        lines = body.split(b"\n")
        self.assertEqual(lines.count(line.encode()), SUBSCRIBER_BYTES // 1024)
        self.assertIn(b"[llamaswap: %d lines dropped]" % (count - 256,), lines)
        self.assertTrue(body.endswith(b"lines dropped]\nlive\n"))

    def test_sse(self) -> None:
        """
        C{/logs/streamSSE} frames the history as one event and each line as
        one event, and sends a comment every L{HEARTBEAT} seconds; plain
        streams get no heartbeat.
        """
        self.app.logs.proxy.write(b"h1\nh2\n")
        sse = self.get(b"/logs/streamSSE/proxy")
        plain = self.get(b"/logs/stream/proxy")
        self.app.logs.proxy.write(b"live\n")
        response = sse.response()
        self.assertTrue(response.header(b"content-type").startswith(b"text/event-stream"))
        self.assertEqual(response.body, b"data: h1\ndata: h2\n\ndata: live\n\n")
        self.app.reactor.advance(HEARTBEAT)
        self.assertEqual(sse.response().body, b"data: h1\ndata: h2\n\ndata: live\n\n:\n\n")
        self.assertEqual(plain.response().body, b"h1\nh2\nlive\n")
        sse.disconnect()
        self.assertEqual(self.app.reactor.getDelayedCalls(), [])

    def test_sseFrame(self) -> None:
        """
        Every line of a chunk is a C{data:} field of one event.
        """
        self.assertEqual(sseFrame(b"a\n"), b"data: a\n\n")
        self.assertEqual(sseFrame(b"a\nb"), b"data: a\ndata: b\n\n")


class AccessLogTests(SynchronousTestCase):
    """
    L{AccessLogSite} logs one line per request in llama-swap's format.
    """

    def setUp(self) -> None:
        self.app = FakeApp()
        self.site = makeSite(self.app)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        # Started as when listening: twisted.web opens its own access log.
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)

    def accessLines(self) -> list[dict]:
        return [e for e in self.events if e.get("log_namespace") == "llamaswap.access"]

    def test_line(self) -> None:
        """
        Client address, request line, status, body bytes, user agent and
        duration; twisted.web's own access line is gone.
        """
        from twisted.logger import formatEvent

        self.app.logs.combined.write(b"12345")
        client = Client(self.site)
        client.send(b"GET", b"/logs?x=1", headers=[(b"User-Agent", b"curl/8")])
        (event,) = self.accessLines()
        self.assertEqual(
            formatEvent(event), 'Request 192.0.2.7 "GET /logs HTTP/1.1" 200 5 "curl/8" 0s'
        )
        others = [e for e in self.events if e is not event and '"GET /logs' in formatEvent(e)]
        self.assertEqual(others, [])

    def test_lineRenderedOnce(self) -> None:
        """
        The event's C{line} is rendered from its fields once, by whichever
        observer formats it first, and reused.
        """
        from twisted.logger import formatEvent

        from llamaswap.observe.access import LINE_FORMAT, AccessLine

        Client(self.site).send(b"GET", b"/logs")
        (event,) = self.accessLines()
        self.assertEqual(event["log_format"], LINE_FORMAT)
        self.assertIsInstance(event["line"], AccessLine)
        first = formatEvent(event)
        event["status"] = 599
        event["line"]._fields["status"] = 599
        self.assertEqual(formatEvent(event), first)
        self.assertIn('"GET /logs HTTP/1.1" 200 ', first)

    def test_forwardedFor(self) -> None:
        """
        The first C{X-Forwarded-For} entry wins, then C{X-Real-IP}.
        """
        Client(self.site).send(
            b"GET", b"/logs", headers=[(b"X-Forwarded-For", b"203.0.113.9, 10.0.0.1"),
                                       (b"X-Real-IP", b"10.9.9.9")]
        )
        Client(self.site).send(b"GET", b"/logs", headers=[(b"X-Real-IP", b"10.9.9.9")])
        self.assertEqual([e["client"] for e in self.accessLines()], ["203.0.113.9", "10.9.9.9"])

    def test_streamLoggedAtDisconnect(self) -> None:
        """
        A stream is logged when its client goes, with its duration.
        """
        client = Client(self.site)
        client.send(b"GET", b"/logs/stream/a")
        self.assertEqual(self.accessLines(), [])
        self.app.reactor.advance(2.5)
        self.app.logs.upstreamLine("a", "stdout", "abc")
        client.disconnect()
        (event,) = self.accessLines()
        self.assertEqual((event["status"], event["bytes"], event["duration"]), (200, 4, "2.5s"))

    def test_skipped(self) -> None:
        """
        Monitoring paths are not logged.
        """
        for path in (b"/wol-health", b"/api/performance?after=x", b"/metrics"):
            Client(self.site).send(b"GET", path)
        self.assertEqual(self.accessLines(), [])

    def test_proxyLog(self) -> None:
        """
        The line reaches the proxy log (at info) through twisted.logger.
        """
        logs = LogMonitors([])
        logs.start()
        self.addCleanup(logs.stop)
        Client(self.site).send(b"GET", b"/nowhere")
        self.assertIn(
            b'[INFO] Request 192.0.2.7 "GET /nowhere HTTP/1.1" 404 ', logs.proxy.history()
        )


class StreamClient(Protocol):
    """
    Reads a streamed response over a real socket, keeping every byte.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.data = b""
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(  # type: ignore[union-attr]
            b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % (self.path.encode(),)
        )

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object = None) -> None:
        if not self.closed.called:
            self.closed.callback(None)


async def openStream(test: TestCase, running: Running, path: str) -> StreamClient:
    """
    A L{StreamClient} on C{path}, closed in cleanup.
    """
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    port = int(running.url.rsplit(":", 1)[1])
    client = StreamClient(path)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)

    async def close() -> None:
        if not client.closed.called:
            client.transport.loseConnection()  # type: ignore[union-attr]
            await client.closed

    test.addCleanup(lambda: Deferred.fromCoroutine(close()))
    await poll(lambda: b"\r\n\r\n" in client.data, 10, f"the headers of {path}")
    return client


def stalledStream(test: TestCase, running: Running, path: str) -> socket.socket:
    """
    A client that asks for C{path} and never reads (with a small receive
    buffer, so the server's socket fills quickly).
    """
    port = int(running.url.rsplit(":", 1)[1])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % (path.encode(),))
    test.addCleanup(s.close)
    return s


def streamSubscriptions(monitors: LogMonitors) -> list[Subscription]:
    """
    The subscriptions of log streams (not of other observers, like the UI
    events' feed) on the C{m}, combined and upstream monitors.
    """
    return [
        s
        for monitor in (monitors.models["m"], monitors.combined, monitors.upstream)
        for s in monitor.subscriptions
        if isinstance(getattr(s.deliver, "__self__", None), LogStream)
    ]


def macros() -> str:
    """
    C{${loud}} and C{${chatty}} upstream commands, and a start port that
    was free (so runs in parallel do not meet each other's upstreams).
    """
    return (
        f"startPort: {freePort()}\n"
        "macros:\n"
        f'  loud: "{LOUD_DEMO}"\n'
        f'  chatty: "{sys.executable} {CHATTY}"\n'
    )


class LogsOverHTTPTests(TestCase):
    """
    The log endpoints of a whole llamaswap with demo upstreams.
    """

    timeout = 120

    async def test_upstreamOutput(self) -> None:
        """
        An upstream's output reaches C{/logs} (mode C{both}) and, live, its
        own model's stream but not another model's; C{?no-history} skips
        what came before.
        """
        running = await startLlamaSwap(self, macros() + """
logToStdout: both
models:
  a:
    cmd: ${loud} --model a
  org/b:
    cmd: ${loud} --model b
""")
        streamA = await openStream(self, running, "/logs/stream/a")
        streamB = await openStream(self, running, "/logs/stream/org/b")
        status, body = await running.chat("a")
        self.assertEqual(status, 200, body)
        await poll(lambda: b"POST /v1/chat/completions" in streamA.data, 10, "a's line")
        self.assertNotIn(b"/v1/chat/completions", streamB.data)

        response = await running.get("/logs")
        history = await response.text()
        self.assertIn("[a] ", history)
        self.assertIn("POST /v1/chat/completions", history)
        self.assertIn('Request 127.0.0.1 "POST /v1/chat/completions HTTP/1.1" 200', history)

        fresh = await openStream(self, running, "/logs/stream/a?no-history")
        withHistory = await openStream(self, running, "/logs/stream/a")
        await poll(lambda: b"POST /v1/chat/completions" in withHistory.data, 10, "history")
        self.assertNotIn(b"POST /v1/chat/completions", fresh.data)

    async def test_defaultModeKeepsUpstreamOutOfLogs(self) -> None:
        """
        In the default mode C{/logs} has the proxy log only; the upstream
        stream still has the output.  Neither llamaswap's site nor its
        upstream and health-probe connections log "Starting factory".
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        running = await startLlamaSwap(self, macros() + "models:\n  a:\n    cmd: ${loud}\n")
        status, body = await running.chat("a")
        self.assertEqual(status, 200, body)
        await poll(lambda: b"POST /v1/chat" in running.app.logs.upstream.history(), 10, "output")
        history = await (await running.get("/logs")).text()
        self.assertIn('"POST /v1/chat/completions HTTP/1.1" 200', history)
        self.assertNotIn("POST /v1/chat/completions -> 200", history)
        self.assertIn(b"[a] ", running.app.logs.upstream.history())
        port = running.url.rsplit(":", 1)[1]
        factories = [repr(e.get("factory")) for e in events
                     if "Starting factory" in str(e.get("log_format"))]
        self.assertEqual([f for f in factories if port not in f], [])

    async def test_logLevel(self) -> None:
        """
        C{logLevel: error} leaves info lines (the access log) out.
        """
        running = await startLlamaSwap(
            self, macros() + "logLevel: error\nmodels:\n  a:\n    cmd: ${loud}\n"
        )
        response = await running.get("/health")
        self.assertEqual(response.code, 200)
        await response.text()
        response = await running.get("/logs")
        self.assertNotIn("Request ", await response.text())

    async def test_stalledClient(self) -> None:
        """
        Clients that never read their log streams neither block the
        upstream's output pipe (a 5 MB burst drains and the model starts)
        nor grow memory (their queues stay within budget, lines are
        dropped), nor slow a flood of requests.  The histories keep 100 KiB
        of the burst.
        """
        running = await startLlamaSwap(self, macros() + """
logToStdout: both
models:
  m:
    cmd: ${chatty} 50000 --port ${PORT} --model m
""")
        monitors = running.app.logs
        stalled = [
            stalledStream(self, running, path)
            for path in ("/logs/stream/m", "/logs/stream", "/logs/stream/upstream")
        ]
        await poll(lambda: len(streamSubscriptions(monitors)) == 3, 10,
                   "the stream subscriptions")
        status, body = await running.chat("m")
        self.assertEqual(status, 200, body)
        self.assertIn(b"chatty: done\n", monitors.models["m"].history())
        history = await (await running.get("/logs")).content()
        self.assertLessEqual(len(history), 100 * 1024)
        self.assertGreater(len(history), 90 * 1024)
        self.assertLessEqual(len(monitors.models["m"].history()), 100 * 1024)
        subscriptions = streamSubscriptions(monitors)
        for subscription in subscriptions:
            self.assertTrue(subscription.paused)
            self.assertGreater(subscription.totalDropped, 0)
            self.assertLessEqual(subscription.queuedBytes, SUBSCRIBER_BYTES)

        async def flood(n: int, concurrency: int = 8) -> float:
            start = reactor.seconds()

            async def worker(count: int) -> None:
                for _ in range(count):
                    status, body = await running.chat("m")
                    self.assertEqual(status, 200, body)

            await gatherResults([
                Deferred.fromCoroutine(worker(n // concurrency)) for _ in range(concurrency)
            ])
            return reactor.seconds() - start

        await flood(40)
        withStalled = await flood(400)
        await poll(lambda: monitors.models["m"].history().count(b"POST /v1/chat") >= 400, 10,
                   "the flood's upstream lines")
        for s in stalled:
            s.close()
        await poll(lambda: not streamSubscriptions(monitors), 10, "the stalled streams to end")
        without = await flood(400)
        # Writes to a paused stream cost microseconds; the margin is for a
        # busy machine, a blocked writer would take the full test timeout.
        self.assertLess(
            withStalled, 3 * without + 2.0,
            f"400 requests: {withStalled:.3f}s with 3 stalled log clients, "
            f"{without:.3f}s without",
        )
