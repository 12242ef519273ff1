"""
Helpers shared by the benchmark scripts.
"""

from __future__ import annotations

import statistics


def percentiles(values: list[float]) -> str:
    """
    C{p50 / p90 / max} of C{values} (seconds), in milliseconds.
    """
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    p50 = statistics.median(ordered)
    return f"p50 {p50 * 1000:7.1f}   p90 {p90 * 1000:7.1f}   max {ordered[-1] * 1000:7.1f} ms"
