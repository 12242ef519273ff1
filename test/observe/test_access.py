"""
Tests for L{llamaswap.observe.access}: a client that leaves before its
answer is 499 in the access log, as in the activity log (llama-swap #1040).
"""

from __future__ import annotations

import time

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET, Request

from llamaswap.backlog import Backlog
from llamaswap.observe.access import accessLogger, logAccess
from llamaswap.web.logs import AccessLogSite
from llamaswap.web.mux import Mux

from ..web.helpers import Client


class ClientClosedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pending: list[Request] = []
        mux = Mux()

        def waits(request: Request, rest: bytes) -> int:
            self.pending.append(request)
            return NOT_DONE_YET

        mux.route("POST", "/v1/chat/completions", waits)
        self.site = AccessLogSite(mux, Clock(), reactor=Clock())
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def statuses(self) -> list[int]:
        return [e["status"] for e in self.events if e.get("log_namespace") == "llamaswap.access"]

    def test_leftBeforeAnswer(self) -> None:
        """
        A client gone while its request waits (a cold load, a queue, a
        cancel through C{/api/inflight}) is logged 499.
        """
        client = Client(self.site)
        client.send(b"POST", b"/v1/chat/completions", b"{}")
        client.disconnect()
        self.assertEqual(self.statuses(), [499])

    def test_leftDuringResponse(self) -> None:
        """
        A client gone once its response started keeps that status.
        """
        client = Client(self.site)
        client.send(b"POST", b"/v1/chat/completions", b"{}")
        self.pending[0].write(b"data: 1\n\n")
        client.disconnect()
        self.assertEqual(self.statuses(), [200])


class LaterTests(SynchronousTestCase):
    """
    With a backlog, the line is written when it settles, timed as of when
    the request ended.
    """

    def test_writtenWhenQuiet(self) -> None:
        clock = Clock()
        backlog = Backlog(clock, delay=10)
        pending: list[Request] = []

        def waits(request: Request, rest: bytes) -> int:
            pending.append(request)
            return NOT_DONE_YET

        mux = Mux()
        mux.route("POST", "/v1/chat/completions", waits)
        site = AccessLogSite(mux, clock, backlog.later, reactor=clock)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        client = Client(site)
        client.send(b"POST", b"/v1/chat/completions", b"{}")
        clock.advance(0.25)
        pending[0].write(b"{}")
        pending[0].finish()
        clock.advance(5)
        lines = [e for e in events if e.get("log_namespace") == "llamaswap.access"]
        self.assertEqual(lines, [])
        backlog.settle()
        [line] = [e for e in events if e.get("log_namespace") == "llamaswap.access"]
        self.assertEqual((line["status"], line["bytes"], line["elapsed"]), (200, 2, 0.25))


class LogAccessTests(SynchronousTestCase):
    def test_event(self) -> None:
        """
        L{logAccess} emits what C{accessLogger.info} would: an info event in
        the C{llamaswap.access} namespace, stamped now, with the fields and
        the line rendered from them.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        fields = {
            "client": "127.0.0.1", "method": "GET", "path": "/v1/models", "proto": "HTTP/1.1",
            "status": 200, "bytes": 12, "userAgent": "ua", "duration": "1.5ms",
            "elapsed": 0.0015,
        }
        before = time.time()
        logAccess(fields)
        [event] = [e for e in events if e.get("log_namespace") == "llamaswap.access"]
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertIs(event["log_logger"], accessLogger)
        self.assertGreaterEqual(event["log_time"], before)
        self.assertEqual({k: event[k] for k in fields}, fields)
        self.assertEqual(
            formatEvent(event),
            'Request 127.0.0.1 "GET /v1/models HTTP/1.1" 200 12 "ua" 1.5ms',
        )


class ClientAddressTests(SynchronousTestCase):
    def test_workedOutOnce(self) -> None:
        """
        A request's client is worked out once, however many ask (the access
        log and the request tracker).
        """
        from twisted.web.test.requesthelper import DummyRequest

        from llamaswap.observe import access

        calls: list[object] = []
        original = access._clientAddress

        def counting(request: object) -> str:
            calls.append(request)
            return original(request)

        self.patch(access, "_clientAddress", counting)
        request = DummyRequest([b""])
        request.requestHeaders.setRawHeaders(b"x-forwarded-for", [b"10.0.0.7, 10.0.0.1"])
        self.assertEqual(access.clientAddress(request), "10.0.0.7")
        self.assertEqual(access.clientAddress(request), "10.0.0.7")
        self.assertEqual(len(calls), 1)
