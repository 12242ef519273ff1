"""
Key names (never keys) label what llamaswap records about a request:
activity rows, in-flight events, Prometheus series; and no key appears in
logs, captures, events or metrics.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from .inmemory import InMemoryLlamaSwap

SECRET = "sk-very-secret-value"
ADMIN_SECRET = "sk-admin-secret-value"

CONFIG = f"""
captureBuffer: 5
apiKeys:
  - {{key: {SECRET}, name: app-a, scopes: [inference]}}
  - {{key: {ADMIN_SECRET}, name: ops, scopes: [admin]}}
models:
  a:
    cmd: x
    proxy: http://127.0.0.1:9001
"""


class KeyLabelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)
        self.app = InMemoryLlamaSwap(self, CONFIG)

    def admin(self, path: str) -> Any:
        answer = self.app.send("GET", path, headers={"Authorization": f"Bearer {ADMIN_SECRET}"})
        self.assertEqual(answer.code, 200, path)
        return answer

    def test_labelledNeverLeaked(self) -> None:
        """
        A request with the key C{app-a}: the in-flight entry, the activity
        row and the C{llamaswap_key_requests} series carry the name; the
        key itself is in none of them, nor in a capture, nor in the log.
        """
        app = self.app
        recorded: list[tuple[Any, Any]] = []
        self.patch(
            app.observability.activity, "record", lambda r, c: recorded.append((r, c))
        )
        pending = app.request(
            "POST",
            "/v1/chat/completions",
            json={"model": "a", "messages": []},
            headers={"Authorization": f"Bearer {SECRET}"},
        )
        app.flush()
        app.settle()
        snapshot = json.dumps(app.tracker.snapshot())
        self.assertIn('"key_name": "app-a"', snapshot)
        app.respond(b'{"usage":{"prompt_tokens":3,"completion_tokens":2}}')
        self.assertEqual(app.answer(pending).code, 200)

        metrics = self.admin("/metrics").body.decode()
        self.assertIn('llamaswap_key_requests_total{key="app-a",model="a",status="200"} 1.0', metrics)
        # The store (a database thread) never runs here: read the row and
        # capture as they are handed to it.
        [(record, capture)] = recorded
        activity = record.toJSON(True)
        self.assertEqual(activity["metadata"].get("key_name"), "app-a")
        self.assertIsNotNone(capture)
        capture = json.dumps(capture.toJSON())
        self.assertIn("authorization", capture.lower())

        logText = "\n".join(formatEvent(e) or "" for e in self.logged)
        for where, text in [
            ("in-flight", snapshot),
            ("metrics", metrics),
            ("activity", json.dumps(activity)),
            ("capture", capture),
            ("log", logText),
        ]:
            self.assertNotIn(SECRET, text, where)
            self.assertNotIn(ADMIN_SECRET, text, where)
