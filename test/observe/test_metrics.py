"""
Tests for L{llamaswap.observe.metrics}: the Prometheus families.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.observe.metrics import Metrics, metricFamily
from llamaswap.observe.usage import TokenMetrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    Every sample of the exposition, parsed back with C{prometheus_client}.
    """
    body, contentType = metrics.render()
    found = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(metrics: Metrics, name: str, **labels: str) -> Any:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


class MetricsTests(SynchronousTestCase):
    """
    The calls move the families they should.
    """

    def test_familyLabels(self) -> None:
        """
        L{metricFamily} labels by model unless told otherwise, and
        registers the family.
        """
        registry = CollectorRegistry()
        byModel = metricFamily(registry, Gauge, "by_model", "By model.")
        byDevice = metricFamily(registry, Gauge, "by_device", "By device.", ("device",))
        byModel.labels(model="m").set(1)
        byDevice.labels(device="gpu0").set(2)
        self.assertEqual(registry.get_sample_value("by_model", {"model": "m"}), 1)
        self.assertEqual(registry.get_sample_value("by_device", {"device": "gpu0"}), 2)

    def test_memoryLabels(self) -> None:
        """
        The memory budget and use gauges are labelled by device.
        """
        metrics = Metrics(processMetrics=False)
        metrics.memoryBudget.labels(device="gpu0").set(8)
        metrics.memoryInUse.labels(device="gpu0").set(4)
        self.assertEqual(value(metrics, "llamaswap_memory_budget_bytes", device="gpu0"), 8)
        self.assertEqual(value(metrics, "llamaswap_memory_in_use_bytes", device="gpu0"), 4)

    def test_requests(self) -> None:
        """
        A finished request counts by model, path and status, adds its
        tokens and observes its times.
        """
        metrics = Metrics(["m1"], processMetrics=False)
        metrics.requestFinished(
            "m1", "/v1/chat/completions", 200, 1.5, ttfb=0.2, queueWait=0.1,
            tokens=TokenMetrics(inputTokens=10, outputTokens=20, cacheTokens=4,
                                promptPerSecond=100.0, tokensPerSecond=-1),
        )
        metrics.requestFinished("m1", "/v1/chat/completions", 502, 0.01)
        self.assertEqual(
            value(metrics, "llamaswap_requests_total", model="m1",
                  path="/v1/chat/completions", status="200"), 1.0)
        self.assertEqual(
            value(metrics, "llamaswap_requests_total", model="m1",
                  path="/v1/chat/completions", status="502"), 1.0)
        self.assertEqual(value(metrics, "llamaswap_input_tokens_total", model="m1"), 10.0)
        self.assertEqual(value(metrics, "llamaswap_output_tokens_total", model="m1"), 20.0)
        self.assertEqual(value(metrics, "llamaswap_cached_tokens_total", model="m1"), 4.0)
        self.assertEqual(
            value(metrics, "llamaswap_request_duration_seconds_count", model="m1"), 2.0)
        self.assertEqual(
            value(metrics, "llamaswap_time_to_first_byte_seconds_sum", model="m1"), 0.2)
        self.assertEqual(
            value(metrics, "llamaswap_queue_wait_seconds_count", model="m1"), 1.0)
        self.assertEqual(
            value(metrics, "llamaswap_prompt_tokens_per_second_count", model="m1"), 1.0)
        self.assertIsNone(
            value(metrics, "llamaswap_generation_tokens_per_second_count", model="m1"))

    def test_childrenLookedUpOnce(self) -> None:
        """
        Each label combination's child is looked up in its family once;
        later requests reuse it and still count.
        """
        metrics = Metrics(["m1"], processMetrics=False)
        looked: list[tuple[str, ...]] = []
        original = metrics.requests.labels

        def labels(*values: str) -> Any:
            looked.append(values)
            return original(*values)

        self.patch(metrics.requests, "labels", labels)
        for status in (200, 200, 404, 200):
            metrics.requestFinished("m1", "/v1/chat/completions", status, 0.1)
        self.assertEqual(looked, [("m1", "/v1/chat/completions", "200"),
                                  ("m1", "/v1/chat/completions", "404")])
        self.assertEqual(
            value(metrics, "llamaswap_requests_total", model="m1",
                  path="/v1/chat/completions", status="200"), 3.0)
        metrics.requestStarted("m1")
        metrics.requestStarted("m1")
        metrics.requestEnded("m1")
        self.assertEqual(value(metrics, "llamaswap_requests_in_flight", model="m1"), 1.0)

    def test_models(self) -> None:
        """
        State changes move the state enum; loads count, their durations
        are observed, failures counted; in-flight goes up and down.
        """
        metrics = Metrics(["a"], processMetrics=False)
        self.assertEqual(value(metrics, "llamaswap_model_state", model="a",
                               llamaswap_model_state="stopped"), 1.0)
        metrics.stateChanged("a", "starting")
        metrics.loadStarted("a")
        metrics.loadFinished("a", 3.0, True)
        metrics.stateChanged("a", "ready")
        metrics.loadStarted("a")
        metrics.loadFinished("a", 1.0, False)
        metrics.requestStarted("a")
        metrics.requestStarted("a")
        metrics.requestEnded("a")
        self.assertEqual(value(metrics, "llamaswap_model_state", model="a",
                               llamaswap_model_state="ready"), 1.0)
        self.assertEqual(value(metrics, "llamaswap_model_state", model="a",
                               llamaswap_model_state="stopped"), 0.0)
        self.assertEqual(value(metrics, "llamaswap_model_loads_total", model="a"), 2.0)
        self.assertEqual(
            value(metrics, "llamaswap_model_load_duration_seconds_sum", model="a"), 3.0)
        self.assertEqual(value(metrics, "llamaswap_model_start_failures_total", model="a"), 1.0)
        self.assertEqual(value(metrics, "llamaswap_requests_in_flight", model="a"), 1.0)

    def test_ownRegistry(self) -> None:
        """
        Two instances do not share families (nothing goes to the global
        registry), and process metrics are there when asked for.
        """
        one = Metrics(["a"])
        two = Metrics(["a"])
        one.requestFinished("a", "/v1/completions", 200, 1.0)
        self.assertIsNone(value(two, "llamaswap_requests_total", model="a",
                                path="/v1/completions", status="200"))
        self.assertIn("process_cpu_seconds_total", {name for name, _ in samples(one)})

    def test_contentTypes(self) -> None:
        """
        Prometheus text by default; OpenMetrics when the scraper asks.
        """
        metrics = Metrics(processMetrics=False)
        body, contentType = metrics.render()
        self.assertTrue(contentType.startswith("text/plain; version=0.0.4"))
        body, contentType = metrics.render("application/openmetrics-text; version=1.0.0")
        self.assertTrue(contentType.startswith("application/openmetrics-text"))
        self.assertTrue(body.endswith(b"# EOF\n"))
