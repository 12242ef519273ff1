"""
Tests for L{llamaswap.web.errors}.
"""

from __future__ import annotations

import json

from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llamaswap import httperrors
from llamaswap.httperrors import (
    BadGateway,
    BadRequest,
    HTTPError,
    InternalError,
    ModelNotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    UpstreamTimeout,
    UpstreamUnavailable,
    envelope,
    errorFromFailure,
    errorKind,
)
from llamaswap.web.errors import negotiate, renderHTTPError, writeError, writeHTTPError

from .helpers import Client


class EnvelopeTests(SynchronousTestCase):
    """
    The envelope and its status table.
    """

    def test_shape(self) -> None:
        """
        C{src}, an C{error} object with message, type, C{param: null} and
        code.
        """
        self.assertEqual(
            envelope(404, "no router for requested model"),
            {
                "src": "llamaswap",
                "error": {
                    "message": "no router for requested model",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "not_found",
                },
            },
        )

    def test_table(self) -> None:
        expected = {
            400: ("invalid_request_error", "bad_request"),
            401: ("authentication_error", "unauthorized"),
            403: ("authentication_error", "forbidden"),
            404: ("invalid_request_error", "not_found"),
            409: ("invalid_request_error", "conflict"),
            429: ("rate_limit_error", "rate_limit_exceeded"),
            502: ("server_error", "bad_gateway"),
            503: ("server_error", "service_unavailable"),
            504: ("server_error", "gateway_timeout"),
            413: ("invalid_request_error", "invalid_request"),
            418: ("invalid_request_error", "invalid_request"),
            500: ("server_error", "internal_error"),
            501: ("server_error", "internal_error"),
        }
        for status, kind in expected.items():
            self.assertEqual(errorKind(status), kind, status)

    def test_codeOverride(self) -> None:
        self.assertEqual(
            envelope(429, "Too many requests", "concurrency_limit")["error"]["code"],  # type: ignore[index]
            "concurrency_limit",
        )

    def test_unicodeMessage(self) -> None:
        """
        Messages are UTF-8 JSON, not ASCII escapes.
        """
        body = httperrors.envelopeBytes(400, "modèle “x” inconnu")
        self.assertIn("modèle".encode("utf-8"), body)
        self.assertEqual(json.loads(body)["error"]["message"], "modèle “x” inconnu")


class NegotiationTests(SynchronousTestCase):
    """
    text/plain first, then text/html, else JSON.
    """

    def test_json(self) -> None:
        for accept in (None, b"", b"*/*", b"application/json"):
            contentType, body = negotiate(accept, 502, "boom")
            self.assertEqual(contentType, b"application/json")
            self.assertEqual(json.loads(body)["error"]["message"], "boom")

    def test_plain(self) -> None:
        contentType, body = negotiate(b"text/html, text/plain;q=0.1", 503, "not ready")
        self.assertEqual(contentType, b"text/plain; charset=utf-8")
        self.assertEqual(body, b"llamaswap: not ready")

    def test_html(self) -> None:
        contentType, body = negotiate(
            "text/html,application/xhtml+xml,*/*;q=0.8", 404, "<model> & co"
        )
        self.assertEqual(contentType, b"text/html; charset=utf-8")
        self.assertIn(b"&lt;model&gt; &amp; co", body)
        self.assertIn(b"<h1>llamaswap</h1>", body)


class Failing(Resource):
    """
    Writes C{error} asynchronously (or renders it synchronously).
    """

    isLeaf = True

    def __init__(self, error: HTTPError, sync: bool = False) -> None:
        super().__init__()
        self.error = error
        self.sync = sync

    def render(self, request: Request) -> object:
        if self.sync:
            return renderHTTPError(request, self.error)
        writeHTTPError(request, self.error)
        return NOT_DONE_YET


class WriteTests(SynchronousTestCase):
    """
    Errors written to real requests.
    """

    def respond(self, error: HTTPError, accept: bytes | None = None, sync: bool = False):  # type: ignore[no-untyped-def]
        client = Client(Site(Failing(error, sync), reactor=Clock()))
        client.send(
            b"POST", b"/v1/chat/completions", b"{}",
            headers=[(b"Accept", accept)] if accept else [],
        )
        return client.response()

    def test_statuses(self) -> None:
        """
        Each exception class answers with its status and the envelope.
        """
        cases = [
            (BadRequest("bad"), 400),
            (Unauthorized(), 401),
            (ModelNotFound(), 404),
            (PayloadTooLarge("too big"), 413),
            (InternalError("unspecific error: exited"), 500),
            (BadGateway("refused"), 502),
            (UpstreamUnavailable("[m] process is not ready"), 503),
            (UpstreamTimeout("slow"), 504),
        ]
        for error, status in cases:
            for sync in (False, True):
                response = self.respond(error, sync=sync)
                self.assertEqual(response.status, status)
                self.assertEqual(response.header(b"content-type"), b"application/json")
                body = json.loads(response.body)
                self.assertEqual(body["error"]["message"], error.message)
                self.assertEqual(
                    response.header(b"content-length"), b"%d" % len(response.body)
                )
                self.assertTrue(response.complete)

    def test_defaults(self) -> None:
        self.assertEqual(ModelNotFound().message, "no model id could be identified")
        self.assertEqual(
            Unauthorized().message, "unauthorized: invalid or missing API key"
        )

    def test_unauthorizedChallenge(self) -> None:
        response = self.respond(Unauthorized())
        self.assertEqual(response.header(b"www-authenticate"), b'Basic realm="llamaswap"')

    def test_tooManyRequestsVerbatim(self) -> None:
        """
        The 429 is JSON with C{Retry-After} and code C{concurrency_limit}
        even for a client asking for text.
        """
        response = self.respond(TooManyRequests(), accept=b"text/plain")
        self.assertEqual(response.status, 429)
        self.assertEqual(response.header(b"retry-after"), b"1")
        self.assertEqual(response.header(b"content-type"), b"application/json")
        error = json.loads(response.body)["error"]
        self.assertEqual(
            (error["message"], error["type"], error["code"]),
            ("Too many requests", "rate_limit_error", "concurrency_limit"),
        )
        custom = self.respond(TooManyRequests("slow down", retryAfter=30))
        self.assertEqual(custom.header(b"retry-after"), b"30")
        self.assertEqual(json.loads(custom.body)["error"]["message"], "slow down")

    def test_negotiatedPlain(self) -> None:
        response = self.respond(UpstreamUnavailable("[m] process is not ready"), b"text/plain")
        self.assertEqual(response.body, b"llamaswap: [m] process is not ready")

    def test_afterStart(self) -> None:
        """
        Once the response has started (a loading stream), the envelope is
        appended to the body and the status stays.
        """

        class Started(Resource):
            isLeaf = True

            def render(self, request: Request) -> object:
                request.setHeader(b"content-type", b"text/event-stream")
                request.write(b"data: loading\n\n")
                writeError(request, 500, "unspecific error: exited")
                return NOT_DONE_YET

        client = Client(Site(Started(), reactor=Clock()))
        client.send(body=b"{}")
        response = client.response()
        self.assertEqual(response.status, 200)
        self.assertTrue(response.complete)
        self.assertTrue(response.body.startswith(b"data: loading\n\n{"))

    def test_goneOrFinished(self) -> None:
        """
        Writing to a finished request or a gone client does nothing.
        """
        results = []

        class Later(Resource):
            isLeaf = True

            def render(self, request: Request) -> object:
                self.request = request
                return NOT_DONE_YET

        later = Later()
        client = Client(Site(later, reactor=Clock()))
        client.send(body=b"{}")
        results.append(writeError(later.request, 502, "x"))
        results.append(writeError(later.request, 502, "again"))
        client2 = Client(Site(later, reactor=Clock()))
        client2.send(body=b"{}")
        client2.disconnect()
        results.append(writeError(later.request, 502, "gone"))
        self.assertEqual(results, [True, False, False])

    def test_errorFromFailure(self) -> None:
        """
        HTTP errors map to themselves; anything else is a logged 500.
        """
        error = BadRequest("x")
        self.assertIs(errorFromFailure(Failure(error)), error)
        other = errorFromFailure(Failure(KeyError("k")))
        self.assertEqual(other.status, 500)
        self.assertIn("unspecific error", other.message)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)


class DescribeFailureTests(SynchronousTestCase):
    """
    L{httperrors.describeFailure} and L{httperrors.connectionError}: the
    one wording of upstream connection failures.
    """

    def test_plain(self) -> None:
        failure = Failure(ConnectionRefusedError("111: refused"))
        self.assertEqual(
            httperrors.describeFailure(failure),
            "ConnectionRefusedError: Connection was refused by other side: 111: refused.",
        )
        self.assertEqual(
            httperrors.describeFailure(failure, typeNames=False),
            "Connection was refused by other side: 111: refused.",
        )

    def test_wrapped(self) -> None:
        """
        Twisted's wrapper exceptions list their reasons; an exception
        without a message is named by its class.
        """
        failure = Failure(
            ResponseNeverReceived([Failure(ConnectionLost("gone")), Failure(KeyError())])
        )
        self.assertEqual(
            httperrors.describeFailure(failure),
            "ResponseNeverReceived: ConnectionLost: Connection to the other side was "
            "lost in a non-clean fashion: gone.; KeyError",
        )
        self.assertEqual(
            httperrors.describeFailure(failure, typeNames=False),
            "Connection to the other side was lost in a non-clean fashion: gone.; KeyError",
        )

    def test_connectionError(self) -> None:
        """
        A 502 with the prefix and the reason.
        """
        error = httperrors.connectionError(Failure(ValueError("bad")))
        self.assertIsInstance(error, BadGateway)
        self.assertEqual(error.message, "upstream connection error: ValueError: bad")
        peer = httperrors.connectionError(
            Failure(ValueError("bad")), "peer proxy error", typeNames=False
        )
        self.assertEqual(peer.message, "peer proxy error: bad")
