"""
Tests for L{llamaswap.web.forward} relaying into a response that was
already started (the loading-state stream): the upstream's body follows
what was written, the client keeps the status and headers it was sent.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llamaswap.web.forward import COMPLETE, FAILED, Forwarder

from .helpers import Client, ProtocolAgent, RecordingTap

UPSTREAM = b"http://127.0.0.1:5800"
PREFIX = b'data: {"choices":[{"delta":{"reasoning_content":"loading"}}]}\n\n'


class StartedResource(Resource):
    """
    A leaf that starts a 200 event stream, writes L{PREFIX}, then forwards.
    """

    isLeaf = True

    def __init__(self, forwarder: Forwarder, tap: RecordingTap) -> None:
        super().__init__()
        self.forwarder = forwarder
        self.tap = tap
        self.results: list[Any] = []
        self.requests: list[Request] = []

    def render(self, request: Request) -> Any:
        self.requests.append(request)
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(PREFIX)
        self.results.append(
            self.forwarder.forward(request, UPSTREAM, request.uri, taps=[self.tap])
        )
        return NOT_DONE_YET


class StartedResponseTests(SynchronousTestCase):
    """
    A relay into a request whose headers were already written.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.agent = ProtocolAgent(self.clock)
        self.tap = RecordingTap()
        self.resource = StartedResource(Forwarder(self.agent, self.clock), self.tap)
        self.client = Client(Site(self.resource, reactor=self.clock))
        self.client.send(body=b'{"stream":true}')

    def test_streamContinues(self) -> None:
        """
        The upstream's stream follows the bytes already written, in the same
        chunked response, which ends properly.
        """
        self.agent.exchanges[0].respond(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"b\r\ndata: tok\n\n\r\n0\r\n\r\n"
        )
        self.clock.advance(0)
        response = self.client.response()
        self.assertEqual(response.status, 200)
        self.assertTrue(response.complete)
        self.assertEqual(response.body, PREFIX + b"data: tok\n\n")
        result = self.successResultOf(self.resource.results[0])
        self.assertEqual((result.outcome, result.status), (COMPLETE, 200))

    def test_upstreamStatusAndHeadersLost(self) -> None:
        """
        An upstream error with its own status, type and length is appended
        to the 200 event stream as it is: the client's status, headers and
        chunked framing stay; the relay reports the status the client got,
        the taps the upstream's.
        """
        error = json.dumps({"error": {"message": "bad"}}).encode()
        self.agent.exchanges[0].respond(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b"X-Upstream: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(error), error)
        )
        self.clock.advance(0)
        response = self.client.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header(b"content-type"), b"text/event-stream")
        self.assertEqual(response.header(b"transfer-encoding"), b"chunked")
        self.assertIsNone(response.header(b"content-length"))
        self.assertIsNone(response.header(b"x-upstream"))
        self.assertTrue(response.complete)
        self.assertEqual(response.body, PREFIX + error)
        request = self.resource.requests[0]
        self.assertEqual(request.code, 200)
        self.assertFalse(request.responseHeaders.hasHeader(b"x-upstream"))
        result = self.successResultOf(self.resource.results[0])
        self.assertEqual((result.outcome, result.status), (COMPLETE, 200))
        self.assertEqual(self.tap.started[0][0], 400)

    def test_upstreamUnreachable(self) -> None:
        """
        An upstream that cannot be reached: the error envelope is appended
        as JSON inside the 200 stream.
        """
        self.agent.failWith = lambda: Failure(ConnectionRefusedError())
        client = Client(Site(self.resource, reactor=self.clock))
        client.send(body=b"{}")
        response = client.response()
        self.assertEqual(response.status, 200)
        self.assertTrue(response.complete)
        self.assertTrue(response.body.startswith(PREFIX))
        envelope = json.loads(response.body[len(PREFIX) :])
        self.assertIn("upstream connection error", envelope["error"]["message"])
        result = self.successResultOf(self.resource.results[1])
        self.assertEqual(result.outcome, FAILED)
