"""
Tests for L{llamaswap.upstream.slots.SlotsClient} over an in-memory HTTP
connection (the answers are the shapes a real llama-server gives; see the
module docstring).
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.upstream.slots import (
    SlotRestored,
    SlotSaved,
    SlotsClient,
    SlotsError,
    SlotsUnsupported,
)

from ..web.helpers import ProtocolAgent


def answer(status: int, body: object) -> bytes:
    data = json.dumps(body).encode("utf-8")
    reason = {200: b"OK", 400: b"Bad Request", 501: b"Not Implemented"}.get(status, b"X")
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        % (status, reason, len(data))
        + data
    )


class SlotsClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.agent = ProtocolAgent(self.clock)
        self.client = SlotsClient(self.agent, self.clock, "http://127.0.0.1:5800/", timeout=3)

    def call(self, coroutine) -> Deferred:
        return Deferred.fromCoroutine(coroutine)

    def test_totalSlots(self) -> None:
        d = self.call(self.client.totalSlots())
        exchange = self.agent.exchanges[0]
        self.assertEqual((exchange.method, exchange.uri), (b"GET", b"http://127.0.0.1:5800/props"))
        exchange.respond(answer(200, {"total_slots": 4, "model_path": "a.gguf"}))
        self.assertEqual(self.successResultOf(d), 4)

    def test_totalSlotsMissing(self) -> None:
        d = self.call(self.client.totalSlots())
        self.agent.exchanges[0].respond(answer(200, {"model_path": "a.gguf"}))
        self.failureResultOf(d, SlotsUnsupported)

    def test_save(self) -> None:
        d = self.call(self.client.save(3, "x.ab.slot3.kv.tmp-1"))
        exchange = self.agent.exchanges[0]
        self.assertEqual(exchange.method, b"POST")
        self.assertEqual(exchange.uri, b"http://127.0.0.1:5800/slots/3?action=save")
        self.assertEqual(json.loads(exchange.sentBody()), {"filename": "x.ab.slot3.kv.tmp-1"})
        self.assertEqual(
            exchange.sentHeaders().getRawHeaders(b"content-type"), [b"application/json"]
        )
        exchange.respond(
            answer(
                200,
                {
                    "id_slot": 3,
                    "filename": "x",
                    "n_saved": 639,
                    "n_written": 337492,
                    "timings": {"save_ms": 0.885},
                },
            )
        )
        self.assertEqual(self.successResultOf(d), SlotSaved(3, 639, 337492, 0.885))

    def test_restore(self) -> None:
        d = self.call(self.client.restore(0, "x"))
        exchange = self.agent.exchanges[0]
        self.assertEqual(exchange.uri, b"http://127.0.0.1:5800/slots/0?action=restore")
        exchange.respond(
            answer(200, {"id_slot": 0, "n_restored": 639, "n_read": 337492, "timings": {}})
        )
        self.assertEqual(self.successResultOf(d), SlotRestored(0, 639, 337492, 0.0))

    def test_invalidFile(self) -> None:
        """
        llama-server's 400 for a corrupt file is a L{SlotsError} with its
        message.
        """
        d = self.call(self.client.restore(0, "x"))
        self.agent.exchanges[0].respond(
            answer(
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "Unable to restore slot: invalid slot save file",
                        "type": "invalid_request_error",
                    }
                },
            )
        )
        failure = self.failureResultOf(d, SlotsError)
        self.assertNotIsInstance(failure.value, SlotsUnsupported)
        self.assertEqual(failure.value.status, 400)
        self.assertIn("invalid slot save file", failure.value.message)

    def test_unsupported(self) -> None:
        """
        A 501 (no C{--slot-save-path}) or a 404 (not llama-server) is
        L{SlotsUnsupported}.
        """
        for status in (501, 404):
            d = self.call(self.client.save(0, "x"))
            self.agent.exchanges[-1].respond(
                answer(status, {"error": {"message": "not supported"}})
            )
            failure = self.failureResultOf(d, SlotsUnsupported)
            self.assertEqual(failure.value.message, "not supported")

    def test_garbage(self) -> None:
        d = self.call(self.client.save(0, "x"))
        self.agent.exchanges[0].respond(answer(200, ["not", "an", "object"]))
        self.failureResultOf(d, SlotsError)
        d = self.call(self.client.save(0, "x"))
        self.agent.exchanges[1].respond(answer(200, {"n_saved": "lots"}))
        self.failureResultOf(d, SlotsError)

    def test_connectionFailure(self) -> None:
        d = self.call(self.client.save(0, "x"))
        self.agent.exchanges[0].drop()
        failure = self.failureResultOf(d, SlotsError)
        self.assertIsNone(failure.value.status)
        self.assertIn("upstream died", failure.value.message)

    def test_timeout(self) -> None:
        """
        An upstream that never answers fails the call after the timeout.
        """
        d = self.call(self.client.save(0, "x"))
        self.clock.advance(2.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        failure = self.failureResultOf(d, SlotsError)
        self.assertEqual(failure.value.message, "no answer within 3 s")
