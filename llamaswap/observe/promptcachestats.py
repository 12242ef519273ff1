# -*- test-case-name: test.observe.test_promptcachestats -*-
"""
The prompt cache seen from outside: metrics, C{/api/events} frames and
the activity note of the first request after a restore.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram

from ..upstream.promptcachehooks import CacheReport
from .metrics import metricFamily

_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class PromptCacheStats:
    """
    Counts saves and restores, publishes them as C{promptCache} events, and
    remembers each model's last successful restore until its next request
    is granted.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        publish: Callable[[str, Any], None] = lambda kind, data: None,
    ) -> None:
        self._publish = publish
        family = partial(metricFamily, registry)
        self.savedBytes = family(
            Counter,
            "llamaswap_promptcache_saved_bytes",
            "Bytes of KV cache saved to disk before models stopped.",
        )
        self.restoredBytes = family(
            Counter,
            "llamaswap_promptcache_restored_bytes",
            "Bytes of KV cache restored from disk after models started.",
        )
        self.restoredTokens = family(
            Counter,
            "llamaswap_promptcache_restored_tokens",
            "Tokens of KV cache restored (prefill the next requests skip).",
        )
        self.saves = family(
            Counter,
            "llamaswap_promptcache_saves",
            "Prompt-cache saves by outcome (saved, empty, unsupported, error).",
            ("model", "outcome"),
        )
        self.restores = family(
            Counter,
            "llamaswap_promptcache_restores",
            "Prompt-cache restores by outcome (hit, miss, unsupported, error).",
            ("model", "outcome"),
        )
        self.seconds = family(
            Histogram,
            "llamaswap_promptcache_seconds",
            "Time spent saving or restoring a model's slots.",
            ("model", "action"),
            buckets=_SECONDS_BUCKETS,
        )
        self._pending: dict[str, CacheReport] = {}

    def report(self, report: CacheReport) -> None:
        """
        Account for one save or restore.
        """
        model = report.model
        if report.action == "save":
            self.saves.labels(model=model, outcome=report.outcome).inc()
            if report.bytes:
                self.savedBytes.labels(model=model).inc(report.bytes)
        else:
            self.restores.labels(model=model, outcome=report.outcome).inc()
            if report.bytes:
                self.restoredBytes.labels(model=model).inc(report.bytes)
            if report.tokens:
                self.restoredTokens.labels(model=model).inc(report.tokens)
            if report.outcome == "hit":
                self._pending[model] = report
            else:
                self._pending.pop(model, None)
        self.seconds.labels(model=model, action=report.action).observe(report.seconds)
        self._publish("promptCache", report.asDict())

    def grantNote(self, model: str) -> Mapping[str, str]:
        """
        For the first request granted C{model} after a restore: what the
        restore gave it, as activity metadata.
        """
        report = self._pending.pop(model, None)
        if report is None:
            return {}
        return {
            "promptCacheRestoredTokens": str(report.tokens),
            "promptCacheRestoredBytes": str(report.bytes),
            "promptCacheRestoreMs": str(int(round(report.seconds * 1000))),
        }
