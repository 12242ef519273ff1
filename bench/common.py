"""
Helpers shared by the benchmark scripts.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from typing import Any, Sequence


def percentiles(values: list[float]) -> str:
    """
    C{p50 / p90 / max} of C{values} (seconds), in milliseconds.
    """
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    p50 = statistics.median(ordered)
    return f"p50 {p50 * 1000:7.1f}   p90 {p90 * 1000:7.1f}   max {ordered[-1] * 1000:7.1f} ms"


def startRealApp(
    reactor: Any, prefix: str, models: Sequence[Any], *, extra: str = "", proxyHost: str | None = None
) -> tuple[Any, Any, str]:
    """
    Start an in-process llamaswap serving C{models} (L{RealModel}s, real
    llama-servers on generated GGUFs) in a temporary directory.

    @return: the started app, its listening port and its chat-completions
        URL.
    """
    from llamaswap.app import LlamaSwap
    from llamaswap.config.load import loadConfigText
    from llamaswap.listen import parseListen
    from test.integration.llamaserver import findLlamaServer
    from test.integration.realconfig import llamaServerEnviron, realConfig

    work = tempfile.mkdtemp(prefix=prefix)
    config = realConfig(
        os.path.join(work, "models"), models, binary=findLlamaServer(), proxyHost=proxyHost,
        extra=extra,
    )
    env = llamaServerEnviron()
    loaded = loadConfigText(config, "bench.yaml", environ=env)
    runtime = os.path.join(work, "run")
    os.makedirs(runtime)
    app = LlamaSwap(
        loaded.config, reactor, listen=parseListen("127.0.0.1:0"), runtimeDir=runtime, environ=env
    )
    app.startService()
    port = reactor.listenTCP(0, app.site(), interface="127.0.0.1")
    return app, port, f"http://127.0.0.1:{port.getHost().port}/v1/chat/completions"
