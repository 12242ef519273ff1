"""
Tests for L{llamaswap.safejson} and for every JSON-parsing place that uses
it: a body that cannot be parsed (nested 100k deep, not UTF-8, not JSON)
is "not JSON", never a traceback.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.test.requesthelper import DummyChannel

from llamaswap import safejson
from llamaswap.observe.activity import errorMessage
from llamaswap.observe.captures import redactBody
from llamaswap.web.inference import ModelRoute
from llamaswap.web.mux import Mux

from .web.helpers import Client
from .web.test_inference import APP, Parts
from .web.test_management import PROFILES, Served, load

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"model": "a", "x": ' + DEEP + b"}"


def deepList(depth: int) -> list[Any]:
    top: list[Any] = []
    inner = top
    for _ in range(depth):
        nested: list[Any] = []
        inner.append(nested)
        inner = nested
    return top


class SafeJSONTests(SynchronousTestCase):
    """
    L{safejson.loads}, L{safejson.firstValue} and L{safejson.dumps} raise
    only L{safejson.JSONError}.
    """

    def test_loads(self) -> None:
        self.assertEqual(safejson.loads(b'{"a": [1]}'), {"a": [1]})
        for bad in (DEEP, b"\xff", b"{nope", b""):
            self.assertRaises(safejson.JSONError, safejson.loads, bad)
        with self.assertRaises(safejson.JSONError) as caught:
            safejson.loads(DEEP)
        self.assertEqual(str(caught.exception), "JSON nested too deeply")

    def test_firstValue(self) -> None:
        self.assertEqual(safejson.firstValue(b' {"a": 1} tail'), {"a": 1})
        for bad in (DEEP, b"\xff", b"{nope", b""):
            self.assertRaises(safejson.JSONError, safejson.firstValue, bad)

    def test_dumps(self) -> None:
        self.assertEqual(safejson.dumps([1]), "[1]")
        self.assertRaises(safejson.JSONError, safejson.dumps, deepList(100_000))


def post(handler: ModelRoute, body: bytes) -> tuple[Request, Any]:
    """
    POST C{body} as JSON to C{handler}: the request and its transport.
    """
    request = Request(DummyChannel())
    transport = request.channel.transport
    request.method = b"POST"
    request.uri = request.path = b"/v1/chat/completions"
    request.content = io.BytesIO(body)
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
    assert handler(request, b"") == NOT_DONE_YET
    return request, transport


class RoutesTests(SynchronousTestCase):
    """
    Every route that parses JSON answers a body it cannot parse with the
    4xx envelope.
    """

    def test_inferenceDeep(self) -> None:
        """
        A chat completion nested 100k deep names no model: 404, as for any
        invalid JSON (llama-swap's answer), and nothing is logged as a
        failure.
        """
        app = Parts(APP)
        request, transport = post(app.handler(), DEEP_OBJECT)
        written = transport.written.getvalue()
        self.assertEqual(request.code, 404)
        self.assertIn(b"no model id could be identified", written)
        self.assertEqual(app.forwarder.calls, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_profileDeep(self) -> None:
        """
        C{PUT /api/profiles/active} with a body nested 100k deep is a 400.
        """
        served = Served(load(PROFILES))
        for body in (DEEP, b'{"name": ' + DEEP + b"}"):
            status, document = served.json(b"PUT", b"/api/profiles/active", body)
            self.assertEqual((status, document["error"]["message"]),
                             (400, "invalid profile request"))
        self.assertIsNone(served.app.activeProfile.value)

    def test_handlerBug(self) -> None:
        """
        A handler that raises is answered with the 500 JSON envelope (not
        twisted.web's HTML page) and logged once.
        """
        mux = Mux()

        def broken(request: Request, rest: bytes) -> bytes:
            raise RecursionError("boom")

        mux.route("GET", "/broken", broken)
        client = Client(Site(mux, reactor=Clock()))
        client.send(b"GET", b"/broken")
        response = client.response()
        self.assertEqual(response.status, 500)
        self.assertEqual(response.header(b"content-type"), b"application/json")
        self.assertEqual(json.loads(response.body)["error"]["message"], "internal error")
        self.assertEqual(len(self.flushLoggedErrors(RecursionError)), 1)


class ObserversTests(SynchronousTestCase):
    """
    What observes bodies (activity, captures) survives deep documents.
    """

    def test_errorMessage(self) -> None:
        self.assertEqual(errorMessage(DEEP), "")

    def test_redactDeep(self) -> None:
        """
        A document the parser accepts but that is too deep to walk is
        replaced by the redaction marker rather than kept with its secret.
        """
        body = b'{"api_key": "sk-1", "x": ' + b"[" * 990 + b"]" * 990 + b"}"
        self.assertNotIn(b"sk-1", redactBody(body, "application/json"))
        self.assertEqual(redactBody(b'{"api_key": "sk-1"', "application/json"),
                         b'{"api_key": "sk-1"')
