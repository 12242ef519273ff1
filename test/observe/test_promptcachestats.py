"""
Tests for L{llamaswap.observe.promptcachestats}: metrics, events and the
activity note of the first request after a restore (through the real
L{Tracker}).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from llamaswap.observe.activity import ActivityLog
from llamaswap.observe.captures import CaptureCache
from llamaswap.observe.promptcachestats import PromptCacheStats
from llamaswap.observe.tracking import Tracker
from llamaswap.upstream.promptcachehooks import CacheReport
from llamaswap.web.forward import Forwarder

from ..web.helpers import Client, ProtocolAgent
from .test_tracking import FakeStore, Lease, TrackedResource

HIT = CacheReport("m1", "restore", "hit", 1, 639, 337492, 0.012)
SAVED = CacheReport("m1", "save", "saved", 1, 639, 337492, 0.004)


class StatsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = CollectorRegistry()
        self.events: list[tuple[str, Any]] = []
        self.stats = PromptCacheStats(self.registry, lambda k, d: self.events.append((k, d)))

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def test_counts(self) -> None:
        self.stats.report(SAVED)
        self.stats.report(HIT)
        self.stats.report(CacheReport("m1", "restore", "miss"))
        self.assertEqual(self.value("llamaswap_promptcache_saved_bytes_total", model="m1"), 337492)
        self.assertEqual(
            self.value("llamaswap_promptcache_restored_bytes_total", model="m1"), 337492
        )
        self.assertEqual(self.value("llamaswap_promptcache_restored_tokens_total", model="m1"), 639)
        self.assertEqual(
            self.value("llamaswap_promptcache_saves_total", model="m1", outcome="saved"), 1
        )
        for outcome in ("hit", "miss"):
            self.assertEqual(
                self.value("llamaswap_promptcache_restores_total", model="m1", outcome=outcome), 1
            )
        self.assertEqual(
            self.value("llamaswap_promptcache_seconds_count", model="m1", action="restore"), 2
        )

    def test_events(self) -> None:
        self.stats.report(HIT)
        self.assertEqual(
            self.events,
            [
                (
                    "promptCache",
                    {
                        "model": "m1",
                        "action": "restore",
                        "outcome": "hit",
                        "slots": 1,
                        "tokens": 639,
                        "bytes": 337492,
                        "ms": 12,
                        "message": "",
                    },
                )
            ],
        )

    def test_grantNoteOnce(self) -> None:
        """
        Only the first request after a hit gets the note; a later miss
        clears a note nobody took.
        """
        self.assertEqual(self.stats.grantNote("m1"), {})
        self.stats.report(HIT)
        self.assertEqual(
            self.stats.grantNote("m1"),
            {
                "promptCacheRestoredTokens": "639",
                "promptCacheRestoredBytes": "337492",
                "promptCacheRestoreMs": "12",
            },
        )
        self.assertEqual(self.stats.grantNote("m1"), {})
        self.stats.report(HIT)
        self.stats.report(CacheReport("m1", "restore", "miss"))
        self.assertEqual(self.stats.grantNote("m1"), {})


class ActivityNoteTests(SynchronousTestCase):
    """
    C{Tracker.grantNotes} put the note in the granted request's row.
    """

    def test_firstRowNoted(self) -> None:
        clock = Clock()
        agent = ProtocolAgent(clock)
        store = FakeStore()
        tracker = Tracker(
            clock, activity=ActivityLog(store, CaptureCache(0), lambda r: None)  # type: ignore[arg-type]
        )
        stats = PromptCacheStats(CollectorRegistry())
        tracker.grantNotes.append(stats.grantNote)
        resource = TrackedResource(tracker, Forwarder(agent, clock))
        client = Client(Site(resource, reactor=clock))
        stats.report(HIT)
        for i in range(2):
            client.send(body=b'{"model":"alias"}', headers=[(b"Content-Type", b"application/json")])
            resource.grants[i].callback(Lease("m1"))
            agent.exchanges[i].respond(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 2\r\n\r\n{}"
            )
        first, second = store.rows
        self.assertEqual(first.metadata["promptCacheRestoredTokens"], "639")
        self.assertNotIn("promptCacheRestoredTokens", second.metadata)
