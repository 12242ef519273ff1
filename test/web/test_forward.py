"""
Tests for L{llamaswap.web.forward}: the relay, driven through a real
twisted.web L{Site}/C{Request} on the client side and real
L{HTTP11ClientProtocol} connections on the upstream side (see
L{test.web.helpers}).
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from llamaswap.web.output import HeldOutputChannel
from llamaswap.web.forward import (
    CLIENT_GONE,
    COMPLETE,
    FAILED,
    TRUNCATED,
    Forwarder,
    isRefused,
    joinURL,
)

from .helpers import (
    Client,
    ForwardingResource,
    ProtocolAgent,
    RecordingTap,
    sseEvent,
)

UPSTREAM = b"http://127.0.0.1:5800"

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class RelayCase(SynchronousTestCase):
    """
    A proxy site on a fake clock forwarding to L{ProtocolAgent}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.agent = ProtocolAgent(self.clock)
        self.forwarder = Forwarder(self.agent, self.clock)
        self.setUpResource()

    def setUpResource(self, url: bytes = UPSTREAM, **kw: object) -> None:
        self.resource = ForwardingResource(self.forwarder, url, **kw)
        self.site = Site(self.resource, reactor=self.clock)
        # The channel llamaswap serves with (its relays hold the output).
        self.site.protocol = HeldOutputChannel
        self.client = Client(self.site)

    def result(self, index: int = 0):  # type: ignore[no-untyped-def]
        return self.successResultOf(self.resource.results[index])

    def exchange(self, index: int = 0):  # type: ignore[no-untyped-def]
        return self.agent.exchanges[index]


class RequestSideTests(RelayCase):
    """
    What the relay sends upstream.
    """

    def test_pathQueryAndBody(self) -> None:
        """
        The client's path and query are joined onto the upstream URL's path
        and query; method and body arrive unchanged with their length.
        """
        self.setUpResource(b"http://127.0.0.1:5800/prefix/?key=1")
        body = b'{"model":"m","messages":[]}'
        self.client.send(b"POST", b"/v1/chat/completions?stream=true", body)
        sent = self.exchange().sent()
        self.assertTrue(
            sent.startswith(b"POST /prefix/v1/chat/completions?key=1&stream=true HTTP/1.1\r\n"),
            sent,
        )
        self.assertEqual(self.exchange().sentBody(), body)
        self.assertEqual(
            self.exchange().sentHeaders().getRawHeaders(b"content-length"), [b"%d" % len(body)]
        )

    def test_whileAwaitingOnceSent(self) -> None:
        """
        A forwarder given C{whileAwaiting} calls it once per request, after the
        request went upstream: the backlog runs while the answer is
        awaited.
        """
        sentWhenSettled: list[bytes] = []
        self.forwarder = Forwarder(
            self.agent, self.clock, lambda: sentWhenSettled.append(self.exchange().sent())
        )
        self.setUpResource()
        self.client.send(b"POST", b"/v1/chat/completions", b"{}")
        [sent] = sentWhenSettled
        self.assertTrue(sent.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n"), sent)

    def test_hopByHopStripped(self) -> None:
        """
        C{Connection}, the headers it names, C{Keep-Alive}, C{TE},
        C{Trailer}, C{Upgrade}, C{Proxy-*} and C{Expect} are not forwarded;
        end-to-end headers (C{Authorization} included) are.
        """
        self.client.send(
            body=b"{}",
            headers=[
                (b"Connection", b"keep-alive, X-Private"),
                (b"X-Private", b"secret"),
                (b"Keep-Alive", b"timeout=5"),
                (b"TE", b"trailers"),
                (b"Trailer", b"X-Checksum"),
                (b"Upgrade", b"h2c"),
                (b"Proxy-Authorization", b"Basic abc"),
                (b"Proxy-Connection", b"keep-alive"),
                (b"Authorization", b"Bearer sk-1"),
                (b"Accept", b"text/event-stream"),
                (b"X-Custom", b"a"),
                (b"X-Custom", b"b"),
            ],
        )
        headers = self.exchange().sentHeaders()
        for name in (
            b"connection",
            b"x-private",
            b"keep-alive",
            b"te",
            b"trailer",
            b"upgrade",
            b"proxy-authorization",
            b"proxy-connection",
            b"transfer-encoding",
        ):
            self.assertFalse(headers.hasHeader(name), name)
        self.assertEqual(headers.getRawHeaders(b"authorization"), [b"Bearer sk-1"])
        self.assertEqual(headers.getRawHeaders(b"accept"), [b"text/event-stream"])
        self.assertEqual(headers.getRawHeaders(b"x-custom"), [b"a", b"b"])

    def test_hostAndForwardedFor(self) -> None:
        """
        By default the client's C{Host} is kept and the client's address is
        appended to C{X-Forwarded-For}.
        """
        self.client.send(body=b"{}", headers=[(b"X-Forwarded-For", b"10.1.1.1")])
        headers = self.exchange().sentHeaders()
        self.assertEqual(headers.getRawHeaders(b"host"), [b"proxy.example:8080"])
        self.assertEqual(
            headers.getRawHeaders(b"x-forwarded-for"), [b"10.1.1.1, 192.0.2.7"]
        )

    def test_upstreamHostAndOverrides(self) -> None:
        """
        With C{preserveHost=False} the upstream's host is sent;
        C{extraHeaders} replace (C{Authorization} for a peer) or remove
        (value L{None}) headers; C{forwardedFor=False} adds nothing.
        """
        self.setUpResource(
            b"http://peer.example:9000",
            preserveHost=False,
            forwardedFor=False,
            extraHeaders={"Authorization": "Bearer peer-key", b"X-Drop": None},
        )
        self.client.send(
            body=b"{}",
            headers=[(b"Authorization", b"Bearer client"), (b"X-Drop", b"1")],
        )
        headers = self.exchange().sentHeaders()
        self.assertEqual(headers.getRawHeaders(b"host"), [b"peer.example:9000"])
        self.assertEqual(headers.getRawHeaders(b"authorization"), [b"Bearer peer-key"])
        self.assertFalse(headers.hasHeader(b"x-drop"))
        self.assertFalse(headers.hasHeader(b"x-forwarded-for"))

    def test_rewrittenBody(self) -> None:
        """
        A C{bytes} body replaces the client's, with its own length.
        """
        self.setUpResource(body=b'{"model":"real-name"}')
        self.client.send(body=b'{"model":"alias"}')
        self.assertEqual(self.exchange().sentBody(), b'{"model":"real-name"}')
        self.assertEqual(
            self.exchange().sentHeaders().getRawHeaders(b"content-length"), [b"21"]
        )

    def test_largeBodyFromTemporaryFile(self) -> None:
        """
        A body big enough for twisted.web to keep in a temporary file
        (over 100,000 bytes) is streamed from that file, byte-identical.
        """
        body = bytes(range(256)) * 1500  # 384,000 bytes
        self.client.send(body=body)
        request = self.resource.requests[0]
        self.assertNotIsInstance(request.content, io.BytesIO)
        self.assertEqual(self.exchange().sentBody(), body)

    def test_getWithoutBody(self) -> None:
        """
        A bodiless GET goes upstream without a body or C{Content-Length}.
        """
        self.client.send(b"GET", b"/v1/models")
        sent = self.exchange().sent()
        self.assertTrue(sent.startswith(b"GET /v1/models HTTP/1.1\r\n"))
        self.assertTrue(sent.endswith(b"\r\n\r\n"))
        self.assertFalse(self.exchange().sentHeaders().hasHeader(b"content-length"))


class ResponseSideTests(RelayCase):
    """
    What the client receives.
    """

    def test_statusAndHeadersCopied(self) -> None:
        """
        The upstream's status, reason and end-to-end headers (repeated ones
        too) reach the client; hop-by-hop response headers do not, and the
        client gets twisted.web's own chunking.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(
            b"HTTP/1.1 201 Made It\r\n"
            b"Content-Type: application/json\r\n"
            b"Set-Cookie: a=1\r\n"
            b"Set-Cookie: b=2\r\n"
            b"Connection: keep-alive, X-Hop\r\n"
            b"X-Hop: no\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"Proxy-Authenticate: Basic\r\n"
            b"Trailer: X-Sum\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunk(b'{"ok":true}') + b"0\r\n\r\n"
        )
        response = self.client.response()
        self.assertEqual(response.status, 201)
        self.assertIn(b" 201 Made It\r\n", response.raw)
        self.assertEqual(response.headers.getRawHeaders(b"set-cookie"), [b"a=1", b"b=2"])
        self.assertEqual(response.header(b"content-type"), b"application/json")
        for name in (b"x-hop", b"keep-alive", b"proxy-authenticate", b"trailer", b"connection"):
            self.assertIsNone(response.header(name), name)
        self.assertEqual(response.header(b"transfer-encoding"), b"chunked")
        self.assertEqual(response.body, b'{"ok":true}')
        self.assertTrue(response.complete)
        result = self.result()
        self.assertEqual((result.outcome, result.status, result.bodyBytes), (COMPLETE, 201, 11))

    def test_contentLengthKept(self) -> None:
        """
        An upstream C{Content-Length} is passed on (no chunking).
        """
        self.client.send(body=b"{}")
        self.exchange().respond(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: 7\r\n\r\n{\"a\":1}"
        )
        response = self.client.response()
        self.assertEqual(response.header(b"content-length"), b"7")
        self.assertIsNone(response.header(b"transfer-encoding"))
        self.assertEqual(response.body, b'{"a":1}')
        self.assertTrue(response.complete)
        self.assertEqual(self.result().outcome, COMPLETE)

    def test_noDefaultContentType(self) -> None:
        """
        twisted.web's default C{text/html} is not added to an upstream
        response that has no C{Content-Type}.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        self.assertIsNone(self.client.response().header(b"content-type"))

    def test_closeDelimitedBodyIsComplete(self) -> None:
        """
        A response without length or chunking, delimited by the upstream
        closing the connection, is complete when it closes.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart1")
        self.exchange().respond(b"part2")
        self.exchange().drop(Failure(ConnectionDone()))
        response = self.client.response()
        self.assertEqual(response.body, b"part1part2")
        self.assertTrue(response.complete)
        self.assertEqual(self.result().outcome, COMPLETE)

    def test_headResponse(self) -> None:
        """
        A HEAD answer keeps its C{Content-Length} and has no body.
        """
        self.client.send(b"HEAD", b"/v1/models")
        self.exchange().respond(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 123\r\n\r\n"
        )
        response = self.client.transport.value()
        self.assertIn(b"Content-Length: 123\r\n", response)
        self.assertTrue(response.endswith(b"\r\n\r\n"))
        self.assertEqual(self.result().outcome, COMPLETE)

    def test_keepAliveClientConnection(self) -> None:
        """
        After a relayed response the client's connection serves the next
        request.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(self.result().outcome, COMPLETE)
        self.client.transport.clear()
        self.client.send(body=b"{}")
        self.exchange(1).respond(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes")
        self.assertEqual(self.client.response().body, b"yes")
        self.assertEqual(self.result(1).outcome, COMPLETE)
        self.assertFalse(self.client.transport.disconnecting)


class StreamingTests(RelayCase):
    """
    Server-sent events go through at once, one by one.
    """

    def test_headersFlushedBeforeFirstEvent(self) -> None:
        """
        The status line and headers, with C{X-Accel-Buffering: no}, reach
        the client as soon as the upstream sends them, before any event.
        """
        self.client.send(body=b'{"stream":true}')
        self.exchange().respond(SSE_HEAD)
        raw = self.client.transport.value()
        self.assertTrue(raw.endswith(b"\r\n\r\n"), raw)
        response = self.client.response()
        self.assertEqual(response.header(b"x-accel-buffering"), b"no")
        self.assertEqual(response.header(b"content-type"), b"text/event-stream")
        self.assertEqual(response.body, b"")

    def test_eachEventRelayedImmediately(self) -> None:
        """
        Every chunk the upstream sends is written to the client before the
        next one arrives; the stream ends with the terminating chunk.
        """
        self.client.send(body=b'{"stream":true}')
        self.exchange().respond(SSE_HEAD)
        expected = b""
        for n in range(5):
            self.exchange().respond(chunk(sseEvent(n)))
            expected += sseEvent(n)
            self.assertEqual(self.client.response().body, expected)
            self.assertFalse(self.client.response().complete)
        self.exchange().respond(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        response = self.client.response()
        self.assertTrue(response.complete)
        self.assertTrue(response.body.endswith(b"data: [DONE]\n\n"))
        self.assertEqual(self.result().outcome, COMPLETE)

    def test_taps(self) -> None:
        """
        Taps see the status and headers, every chunk in order and the end.
        """
        tap = RecordingTap()
        self.setUpResource(taps=[tap])
        self.client.send(body=b"{}")
        self.exchange().respond(SSE_HEAD + chunk(sseEvent(0)))
        self.exchange().respond(chunk(sseEvent(1)) + b"0\r\n\r\n")
        self.assertEqual([s for s, h in tap.started], [200])
        self.assertEqual(tap.chunks, [sseEvent(0), sseEvent(1)])
        self.assertEqual(tap.ended, [None])

    def test_tapsHearOfHeadOnceSent(self) -> None:
        """
        Taps hear of the status and headers after the head has left for
        the client, whether the upstream sent body bytes with it or not.
        """
        for first in [SSE_HEAD, SSE_HEAD + chunk(sseEvent(0))]:
            sentBefore: list[bytes] = []
            case = self

            class Looking(RecordingTap):
                def responseStarted(self, status: int, headers: Headers) -> None:
                    sentBefore.append(case.client.transport.value())
                    super().responseStarted(status, headers)

            tap = Looking()
            self.setUpResource(taps=[tap])
            self.client.send(body=b"{}")
            self.exchange(-1).respond(first)
            self.assertEqual([s for s, h in tap.started], [200])
            self.assertIn(b"\r\n\r\n", sentBefore[0])
            self.exchange(-1).respond(b"0\r\n\r\n")
            self.assertEqual(len(tap.started), 1)
            self.assertEqual(tap.ended, [None])

    def test_failingTapDropped(self) -> None:
        """
        A tap that raises is logged and dropped; the stream and the other
        taps carry on.
        """

        class Broken(RecordingTap):
            def dataReceived(self, data: bytes) -> None:
                raise ZeroDivisionError()

        broken, good = Broken(), RecordingTap()
        self.setUpResource(taps=[broken, good])
        self.client.send(body=b"{}")
        self.exchange().respond(SSE_HEAD + chunk(sseEvent(0)))
        self.exchange().respond(chunk(sseEvent(1)) + b"0\r\n\r\n")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(good.chunks, [sseEvent(0), sseEvent(1)])
        self.assertEqual(broken.ended, [])
        self.assertEqual(self.client.response().body, sseEvent(0) + sseEvent(1))
        self.assertEqual(self.result().outcome, COMPLETE)


class BackpressureTests(RelayCase):
    """
    A slow client slows the upstream down instead of filling memory.
    """

    def test_pauseAndResumeReachUpstream(self) -> None:
        """
        When the client's transport pauses its producer (its send buffer is
        full), the upstream connection is paused; resuming resumes it.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(SSE_HEAD + chunk(sseEvent(0)))
        upstream = self.exchange().transport
        self.assertEqual(upstream.producerState, "producing")
        self.client.pause()
        self.assertEqual(upstream.producerState, "paused")
        self.client.resume()
        self.assertEqual(upstream.producerState, "producing")
        self.client.pause()
        self.exchange().respond(chunk(sseEvent(1)) + b"0\r\n\r\n")
        self.assertEqual(self.result().outcome, COMPLETE)
        self.assertIsNone(self.resource.requests[0].producer)

    def test_clientAlreadyFull(self) -> None:
        """
        If the client's buffer is already full when the upstream answers,
        the upstream is paused as soon as its body is connected.
        """
        self.client.send(body=b"{}")
        self.client.pause()
        self.exchange().respond(SSE_HEAD)
        self.assertEqual(self.exchange().transport.producerState, "paused")
        self.client.resume()
        self.assertEqual(self.exchange().transport.producerState, "producing")

    def test_producerUnregisteredBeforeFinish(self) -> None:
        """
        The relay unregisters itself before finishing, so twisted.web logs
        no "Producer was not unregistered" error and the channel has no
        producer left.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(self.flushLoggedErrors(RuntimeError), [])
        self.assertIsNone(self.client.http._requestProducer)


class DisconnectTests(RelayCase):
    """
    Either side going away ends the other side properly.
    """

    def test_clientGoneMidStream(self) -> None:
        """
        A client that disconnects mid-stream makes the relay stop the
        upstream transport, closing the upstream connection; the exchange
        ends as L{CLIENT_GONE} once it has closed.
        """
        tap = RecordingTap()
        self.setUpResource(taps=[tap])
        self.client.send(body=b"{}")
        self.exchange().respond(SSE_HEAD + chunk(sseEvent(0)))
        self.client.disconnect()
        upstream = self.exchange().transport
        self.assertTrue(upstream.closed)
        self.assertNoResult(self.resource.results[0])
        self.clock.advance(0)
        result = self.result()
        self.assertEqual(result.outcome, CLIENT_GONE)
        self.assertEqual(result.status, 200)
        self.assertEqual(len(tap.ended), 1)
        self.assertIsNotNone(tap.ended[0])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_clientGoneWhilePaused(self) -> None:
        """
        A disconnect while the upstream is paused still closes it.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(SSE_HEAD + chunk(sseEvent(0)))
        self.client.pause()
        self.client.disconnect()
        self.assertTrue(self.exchange().transport.closed)
        self.clock.advance(0)
        self.assertEqual(self.result().outcome, CLIENT_GONE)

    def test_clientGoneBeforeHeaders(self) -> None:
        """
        A client that disconnects while the upstream is still thinking gets
        the upstream request cancelled (its connection aborted); nothing is
        written.
        """
        self.client.send(body=b"{}")
        self.client.transport.clear()
        self.client.disconnect()
        self.assertTrue(self.exchange().transport.aborted)
        result = self.result()
        self.assertEqual((result.outcome, result.status), (CLIENT_GONE, None))
        self.assertEqual(self.client.transport.value(), b"")
        self.clock.advance(0)

    def test_clientGoneBeforeForward(self) -> None:
        """
        Forwarding a request whose client is already gone does nothing.
        """
        self.client.send(body=b"{}")
        request = self.resource.requests[0]
        self.client.disconnect()
        self.clock.advance(0)
        d = self.forwarder.forward(request, UPSTREAM, b"/x")
        self.assertEqual(self.successResultOf(d).outcome, CLIENT_GONE)
        self.assertEqual(len(self.agent.exchanges), 1)

    def test_upstreamGoneMidStream(self) -> None:
        """
        An event stream the upstream breaks off (it crashed) ends with an
        error event the client can read, then ends cleanly; the result
        still says it was truncated.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(SSE_HEAD + chunk(sseEvent(0)))
        self.exchange().drop()
        response = self.client.response()
        self.assertTrue(response.body.startswith(sseEvent(0) + b"data: {"))
        last = response.body[len(sseEvent(0)) + len(b"data: "):]
        self.assertTrue(last.endswith(b"\n\n"))
        error = json.loads(last)["error"]
        self.assertEqual(error["type"], "server_error")
        self.assertIn("upstream broke off the response", error["message"])
        self.assertTrue(response.complete)
        result = self.result()
        self.assertEqual((result.outcome, result.status), (TRUNCATED, 200))
        self.assertIsNone(self.client.http._requestProducer)

    def test_upstreamGoneShortOfContentLength(self) -> None:
        """
        A body shorter than its C{Content-Length} is cut off the same way.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        self.exchange().drop()
        response = self.client.response()
        self.assertEqual(response.header(b"content-length"), b"100")
        self.assertFalse(response.complete)
        self.assertTrue(self.client.transport.disconnecting)
        self.assertEqual(self.result().outcome, TRUNCATED)

    def test_cancel(self) -> None:
        """
        Cancelling the forward's Deferred mid-stream stops the upstream and
        cuts the client's connection.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(SSE_HEAD + chunk(sseEvent(0)))
        self.resource.results[0].cancel()
        self.failureResultOf(self.resource.results[0], CancelledError)
        self.assertTrue(self.exchange().transport.closed)
        self.assertTrue(self.client.transport.disconnecting)
        self.clock.advance(0)

    def test_cancelBeforeHeaders(self) -> None:
        """
        Cancelling before the upstream answered aborts the upstream request
        and leaves the client's request for the caller to answer.
        """
        self.client.send(body=b"{}")
        self.client.transport.clear()
        self.resource.results[0].cancel()
        self.failureResultOf(self.resource.results[0], CancelledError)
        self.assertTrue(self.exchange().transport.aborted)
        self.assertEqual(self.client.transport.value(), b"")
        self.assertFalse(self.resource.requests[0].finished)
        self.clock.advance(0)


class ErrorTests(RelayCase):
    """
    Failures before the first byte answer with the error envelope.
    """

    def test_connectionRefused(self) -> None:
        """
        An unreachable upstream gives the client a 502 envelope.
        """
        self.agent.failWith = lambda: Failure(ConnectionRefusedError("nobody home"))
        self.client.send(body=b"{}")
        response = self.client.response()
        self.assertEqual(response.status, 502)
        self.assertEqual(response.header(b"content-type"), b"application/json")
        body = json.loads(response.body)
        self.assertEqual(body["error"]["type"], "server_error")
        self.assertEqual(body["error"]["code"], "bad_gateway")
        self.assertIn("Connection was refused", body["error"]["message"])
        result = self.result()
        self.assertEqual((result.outcome, result.status), (FAILED, 502))
        self.assertTrue(result.reason.check(ConnectionRefusedError))

    def test_plainTextError(self) -> None:
        """
        A client that asks for text/plain gets the error as text.
        """
        self.agent.failWith = lambda: Failure(ConnectionRefusedError())
        self.client.send(body=b"{}", headers=[(b"Accept", b"text/plain")])
        response = self.client.response()
        self.assertEqual(response.status, 502)
        self.assertTrue(response.body.startswith(b"llamaswap: upstream connection error"))

    def test_upstreamClosedWithoutAnswer(self) -> None:
        """
        An upstream that closes the connection without answering gives 502.
        """
        self.client.send(body=b"{}")
        self.exchange().drop()
        response = self.client.response()
        self.assertEqual(response.status, 502)
        self.assertIn(b"upstream connection error: ResponseNeverReceived", response.body)
        self.assertEqual(self.result().outcome, FAILED)

    def test_responseHeaderTimeout(self) -> None:
        """
        An upstream that sends no headers within C{responseHeaderTimeout}
        is abandoned (connection aborted) and the client gets a 504.
        """
        self.setUpResource(responseHeaderTimeout=30)
        self.client.send(body=b"{}")
        self.clock.advance(29.9)
        self.assertEqual(self.client.transport.value(), b"")
        self.clock.advance(0.1)
        self.assertTrue(self.exchange().transport.aborted)
        response = self.client.response()
        self.assertEqual(response.status, 504)
        body = json.loads(response.body)
        self.assertEqual(body["error"]["code"], "gateway_timeout")
        self.assertIn("30s", body["error"]["message"])
        self.assertEqual(self.result().status, 504)
        self.clock.advance(0)

    def test_timerCancelledOnResponse(self) -> None:
        """
        The response-header timer is cancelled once headers arrive: a long
        stream is never cut by it.
        """
        self.setUpResource(responseHeaderTimeout=30)
        self.client.send(body=b"{}")
        self.exchange().respond(SSE_HEAD)
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.getTime() == 30], [])
        self.clock.advance(3600)
        self.exchange().respond(chunk(sseEvent(0)) + b"0\r\n\r\n")
        self.assertEqual(self.result().outcome, COMPLETE)

    def test_upstreamErrorStatusRelayed(self) -> None:
        """
        An upstream error response is a response: relayed as is.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b"Content-Length: 17\r\n\r\n{\"error\":\"nope\"}\n"
        )
        response = self.client.response()
        self.assertEqual((response.status, response.body), (400, b'{"error":"nope"}\n'))
        self.assertEqual(self.result().outcome, COMPLETE)


class JoinURLTests(SynchronousTestCase):
    """
    L{joinURL} joins paths and merges queries.
    """

    def test_cases(self) -> None:
        cases = [
            ("http://h:1", b"/v1/models", b"http://h:1/v1/models"),
            ("http://h:1/", b"/v1/models", b"http://h:1/v1/models"),
            ("http://h:1/api", b"/v1?a=1", b"http://h:1/api/v1?a=1"),
            ("http://h:1/api?k=v", b"/v1?a=1", b"http://h:1/api/v1?k=v&a=1"),
            ("http://h:1", b"", b"http://h:1/"),
            ("http://h:1/api", b"", b"http://h:1/api"),
            ("http://h:1", b"rel", b"http://h:1/rel"),
            ("http://h:1", b"/a/%2Fb/", b"http://h:1/a/%2Fb/"),
        ]
        for base, path, expected in cases:
            self.assertEqual(joinURL(base, path), expected, (base, path))


class DeferredResultTests(RelayCase):
    """
    The forward Deferred fires exactly once, whatever happens.
    """

    def test_syncFailureFromAgent(self) -> None:
        """
        An agent that raises synchronously still yields a 502 and a result.
        """

        class Raising:
            def request(self, *a: object, **k: object) -> Deferred:  # type: ignore[type-arg]
                raise ValueError("bad uri")

        self.forwarder = Forwarder(Raising(), self.clock)  # type: ignore[arg-type]
        self.setUpResource()
        self.client.send(body=b"{}")
        self.assertEqual(self.client.response().status, 502)
        self.assertEqual(self.result().outcome, FAILED)

    def test_alreadyFiredResponse(self) -> None:
        """
        An agent answering synchronously (a cached response) works.
        """
        self.agent.failWith = None
        self.client.send(body=b"{}")
        self.exchange().respond(b"HTTP/1.1 204 No Content\r\n\r\n")
        response = self.client.response()
        self.assertEqual(response.status, 204)
        self.assertEqual(self.result().outcome, COMPLETE)

    def test_doneIsDoneOnce(self) -> None:
        """
        A late upstream close after the client left fires nothing twice.
        """
        self.client.send(body=b"{}")
        self.exchange().respond(SSE_HEAD)
        self.client.disconnect()
        self.clock.advance(0)
        self.assertEqual(self.result().outcome, CLIENT_GONE)
        # the upstream protocol already saw connectionLost; nothing left
        self.assertEqual(self.flushLoggedErrors(), [])



class HTTP10Tests(RelayCase):
    """
    An HTTP/1.0 client gets the body unchunked, ended by closing.
    """

    def test_http10(self) -> None:
        self.client.send(body=b"{}", version=b"HTTP/1.0")
        self.exchange().respond(SSE_HEAD + chunk(sseEvent(0)) + b"0\r\n\r\n")
        raw = self.client.transport.value()
        self.assertTrue(raw.startswith(b"HTTP/1.0 200 OK\r\n"), raw)
        self.assertNotIn(b"Transfer-Encoding", raw)
        self.assertTrue(raw.endswith(b"\r\n\r\n" + sseEvent(0)))
        self.assertTrue(self.client.transport.disconnecting)
        self.assertEqual(self.result().outcome, COMPLETE)


class IdleTimeoutTests(RelayCase):
    """
    C{idleTimeout}: an upstream that sends nothing for that long is cut off
    (hardening #7), whatever phase it is in.
    """

    def test_beforeHeaders(self) -> None:
        """
        An upstream that accepted the request and never answers: 504
        envelope at C{idleTimeout}, upstream connection closed.
        """
        self.setUpResource(idleTimeout=20)
        self.client.send(body=b"{}")
        self.clock.advance(19.9)
        self.assertEqual(self.client.transport.value(), b"")
        self.clock.advance(0.1)
        self.assertTrue(self.exchange().transport.aborted)
        response = self.client.response()
        self.assertEqual(response.status, 504)
        self.assertIn("sent nothing for 20s", json.loads(response.body)["error"]["message"])
        result = self.result()
        self.assertEqual((result.outcome, result.status), (FAILED, 504))
        self.clock.advance(0)

    def test_midStream(self) -> None:
        """
        A stream that stalls ends with an error event at C{idleTimeout}
        after its last byte; bytes arriving in time keep it alive.
        """
        self.setUpResource(idleTimeout=20)
        self.client.send(body=b"{}")
        self.clock.advance(15)
        self.exchange().respond(SSE_HEAD)
        self.clock.advance(15)
        self.exchange().respond(chunk(sseEvent(0)))
        self.clock.advance(19)
        self.assertFalse(self.exchange().transport.closed)
        self.clock.advance(1)
        self.assertTrue(self.exchange().transport.closed)
        self.clock.advance(0)
        response = self.client.response()
        self.assertTrue(response.complete)
        last = response.body[len(sseEvent(0)) + len(b"data: "):]
        error = json.loads(last)["error"]
        self.assertEqual(error["code"], "gateway_timeout")
        self.assertEqual(self.result().outcome, TRUNCATED)

    def test_pausedTimeDoesNotCount(self) -> None:
        """
        While the client is slow (the relay paused), the upstream cannot
        send, so the idle countdown stops.
        """
        self.setUpResource(idleTimeout=20)
        self.client.send(body=b"{}")
        self.exchange().respond(SSE_HEAD)
        self.client.pause()
        self.clock.advance(100)
        self.assertFalse(self.exchange().transport.closed)
        self.client.resume()
        self.clock.advance(19)
        self.exchange().respond(chunk(sseEvent(0)) + b"0\r\n\r\n")
        self.assertEqual(self.result().outcome, COMPLETE)

    def test_manyChunks(self) -> None:
        """
        Chunks arriving move the idle deadline without scheduling a timer
        each; the deadline still holds after the last one, and nothing of
        it is left pending when the exchange ends.
        """
        delays: list[float] = []
        callLater = self.clock.callLater

        def countingCallLater(delay: float, f: Any, *a: Any, **kw: Any) -> Any:
            delays.append(delay)
            return callLater(delay, f, *a, **kw)

        self.clock.callLater = countingCallLater  # type: ignore[method-assign]
        self.setUpResource(idleTimeout=20)
        self.client.send(body=b"{}")
        self.exchange().respond(SSE_HEAD)
        for n in range(50):
            self.clock.advance(1)
            self.exchange().respond(chunk(sseEvent(n)))
        self.assertEqual(delays.count(20), 1)
        self.clock.advance(19.9)
        self.assertFalse(self.exchange().transport.closed)
        self.exchange().respond(b"0\r\n\r\n")
        self.assertEqual(self.result().outcome, COMPLETE)
        pending = [getattr(c.func, "__qualname__", "") for c in self.clock.getDelayedCalls()]
        self.assertNotIn("Deadline._check", pending)

    def test_offByDefault(self) -> None:
        self.client.send(body=b"{}")
        self.clock.advance(86400)
        self.exchange().respond(SSE_HEAD + b"0\r\n\r\n")
        self.assertEqual(self.result().outcome, COMPLETE)


class DeferRefusedTests(RelayCase):
    """
    C{deferRefused}: a refused connection is left for the caller to retry.
    """

    def test_refusedNotAnswered(self) -> None:
        self.setUpResource(deferRefused=True)
        self.agent.failWith = lambda: Failure(ConnectionRefusedError("nobody home"))
        self.client.send(body=b"{}")
        self.assertEqual(self.client.transport.value(), b"")
        result = self.result()
        self.assertEqual((result.outcome, result.status), (FAILED, None))
        self.assertTrue(isRefused(result.reason))

    def test_otherFailuresAnswered(self) -> None:
        self.setUpResource(deferRefused=True)
        self.client.send(body=b"{}")
        self.exchange().drop()
        self.assertEqual(self.client.response().status, 502)
