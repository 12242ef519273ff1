"""
Benchmark of the streaming relay (L{llamaswap.web.forward}).  Not a test.

Three processes on 127.0.0.1: a Twisted upstream, the llamaswap relay in
front of it, and this script as a blocking-socket client.  Every figure is
measured against the upstream directly and through the relay, so the
relay's own cost is the difference.

 - throughput: a large body in 64 KiB writes (with Content-Length) and as
   small 200-byte chunks (chunked, like a fast token stream): MB/s and
   chunks/s;
 - per-chunk latency: SSE events every 2 ms stamped with the upstream's
   monotonic clock (system-wide on Linux), received as they arrive:
   p50/p99/max of arrival minus stamp;
 - per-request latency: small JSON POSTs over one keep-alive connection.

For the relayed runs it also prints the relay process's own CPU time per
unit, which does not depend on how fast the machine wakes the three
processes (on a small VM that wake-up latency dominates the wall-clock
latency figures).

Run: python bench/forward_bench.py [--mb 512] [--events 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


# ---------------------------------------------------------------------------
# Server roles (run in child processes)


def serveUpstream() -> None:
    from twisted.internet import reactor
    from twisted.internet.interfaces import IPushProducer
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site
    from zope.interface import implementer

    @implementer(IPushProducer)
    class Flood:
        def __init__(self, request, total: int, size: int) -> None:  # type: ignore[no-untyped-def]
            self.request, self.total, self.size = request, total, size
            self.block = (b"x" * 199 + b"\n") * (size // 200 + 1)
            self.block = self.block[:size]
            self.sent = 0
            self.paused = self.stopped = self.running = False
            request.registerProducer(self, True)
            reactor.callLater(0, self.resumeProducing)

        def pauseProducing(self) -> None:
            self.paused = True

        def stopProducing(self) -> None:
            self.stopped = True

        def resumeProducing(self) -> None:
            self.paused = False
            if self.running:
                return
            self.running = True
            try:
                while not (self.paused or self.stopped) and self.sent < self.total:
                    n = min(self.size, self.total - self.sent)
                    self.sent += n
                    self.request.write(self.block if n == self.size else self.block[:n])
                if self.sent >= self.total and not self.stopped:
                    self.stopped = True
                    self.request.unregisterProducer()
                    self.request.finish()
            finally:
                self.running = False

    class FloodResource(Resource):
        isLeaf = True

        def render_POST(self, request):  # type: ignore[no-untyped-def]
            total = int(request.args[b"bytes"][0])
            size = int(request.args[b"chunk"][0])
            request.setHeader(b"content-type", b"application/octet-stream")
            if request.args.get(b"length") == [b"1"]:
                request.setHeader(b"content-length", b"%d" % total)
            flood = Flood(request, total, size)
            request.notifyFinish().addErrback(lambda f: flood.stopProducing())
            return NOT_DONE_YET

    class SSE(Resource):
        isLeaf = True

        def render_POST(self, request):  # type: ignore[no-untyped-def]
            n = int(request.args[b"n"][0])
            interval = float(request.args[b"interval"][0])
            request.setHeader(b"content-type", b"text/event-stream")
            state = {"i": 0}

            def tick() -> None:
                if request._disconnected:
                    return
                request.write(
                    b'data: {"t":%d,"choices":[{"delta":{"content":"tok"}}]}\n\n'
                    % time.monotonic_ns()
                )
                state["i"] += 1
                if state["i"] < n:
                    reactor.callLater(interval, tick)
                else:
                    request.write(b"data: [DONE]\n\n")
                    request.finish()

            request.write(b"")
            reactor.callLater(interval, tick)
            return NOT_DONE_YET

    class Small(Resource):
        isLeaf = True

        def render_POST(self, request):  # type: ignore[no-untyped-def]
            request.content.read()
            request.setHeader(b"content-type", b"application/json")
            return b'{"object":"chat.completion","choices":[{"message":{"content":"ok"}}]}'

    root = Resource()
    root.putChild(b"flood", FloodResource())
    root.putChild(b"sse", SSE())
    root.putChild(b"small", Small())
    site = Site(root)
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print("listening", port.getHost().port, flush=True)
    reactor.run()


def serveProxy(upstreamURL: str) -> None:
    sys.path.insert(0, REPO)
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site

    from llamaswap.web.client import UpstreamAgent
    from llamaswap.web.forward import Forwarder

    forwarder = Forwarder(UpstreamAgent(reactor), reactor)

    class Proxy(Resource):
        isLeaf = True

        def render(self, request):  # type: ignore[no-untyped-def]
            forwarder.forward(request, upstreamURL, request.uri)
            return NOT_DONE_YET

    # The relay forwards bodies untouched: twisted.web must not parse forms
    # (multipart parsing reads the whole body into memory again).
    site = Site(Proxy(), parsePOSTFormSubmission=False)
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print("listening", port.getHost().port, flush=True)
    reactor.run()


# ---------------------------------------------------------------------------
# Client (this process)


def start(args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    assert line and line[0] == b"listening", line
    return process, int(line[1])


def post(sock: socket.socket, path: str, body: bytes = b"{}") -> None:
    sock.sendall(
        b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
    )


def readHead(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed before headers")
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def throughput(port: int, total: int, chunk: int, length: bool) -> tuple[float, float]:
    """
    Seconds to receive C{total} body bytes; returns (MB/s, chunks/s).
    """
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.perf_counter()
    post(sock, f"/flood?bytes={total}&chunk={chunk}&length={int(length)}")
    head, rest = readHead(sock)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    received = len(rest)
    tail = rest[-7:]
    if length:
        while received < total:
            n = sock.recv_into(view)
            if not n:
                raise ConnectionError("short body")
            received += n
    else:
        while not tail.endswith(b"\r\n0\r\n\r\n") and not tail.endswith(b"0\r\n\r\n"):
            n = sock.recv_into(view)
            if not n:
                raise ConnectionError("short body")
            received += n
            tail = (tail + bytes(view[max(0, n - 7) : n]))[-7:]
    elapsed = time.perf_counter() - started
    sock.close()
    return total / elapsed / 1e6, total / chunk / elapsed


def latency(port: int, events: int, interval: float) -> list[float]:
    """
    Milliseconds between each event's stamp and its arrival.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    post(sock, f"/sse?n={events}&interval={interval}")
    head, rest = readHead(sock)
    delays: list[float] = []
    pending = rest
    done = False
    while not done:
        now = time.monotonic_ns()
        for part in pending.split(b"\n\n")[:-1]:
            i = part.find(b'{"t":')
            if i >= 0:
                stamp = int(part[i + 5 : part.index(b",", i)])
                delays.append((now - stamp) / 1e6)
            if b"[DONE]" in part:
                done = True
        pending = pending.split(b"\n\n")[-1]
        if done:
            break
        more = sock.recv(65536)
        if not more:
            break
        pending += more
    sock.close()
    return delays


def requests(port: int, count: int) -> float:
    """
    Mean milliseconds per small POST over one keep-alive connection.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    started = time.perf_counter()
    for _ in range(count):
        post(sock, "/small", body)
        head, rest = readHead(sock)
        lengthLine = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
        if lengthLine:
            want = int(lengthLine[0].split(b":")[1])
            while len(rest) < want:
                rest += sock.recv(65536)
        else:  # chunked
            while not rest.endswith(b"0\r\n\r\n"):
                rest += sock.recv(65536)
    elapsed = time.perf_counter() - started
    sock.close()
    return elapsed / count * 1000


def cpuSeconds(pid: int) -> float:
    """
    User plus system CPU seconds used so far by process C{pid} (Linux).
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--mb", type=int, default=512, help="MB per throughput run")
    parser.add_argument("--events", type=int, default=1000, help="SSE events for latency")
    parser.add_argument("--interval", type=float, default=0.002, help="seconds between events")
    parser.add_argument("--requests", type=int, default=2000, help="small requests")
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-proxy", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        return serveUpstream()
    if args.serve_proxy:
        return serveProxy(args.serve_proxy)

    upstream, upstreamPort = start(["--serve-upstream"])
    proxy, proxyPort = start(["--serve-proxy", f"http://127.0.0.1:{upstreamPort}"])
    try:
        targets = [("direct", upstreamPort), ("relayed", proxyPort)]
        print(f"llamaswap relay benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")

        def each(label: str, f: Callable[[int], str], unit: float = 0, per: str = "") -> None:
            for name, port in targets:
                f(port)  # warm-up
                before = cpuSeconds(proxy.pid)
                line = f"  {label:<34} {name:<8} {f(port)}"
                if name == "relayed" and unit:
                    used = cpuSeconds(proxy.pid) - before
                    line += f"   [relay CPU {used / unit * 1e6:.1f} us/{per}]"
                print(line)

        total = args.mb * 1_000_000
        print(f"throughput, {args.mb} MB:")
        each(
            "64 KiB writes, Content-Length",
            lambda p: "%8.0f MB/s" % throughput(p, total, 65536, True)[0],
            total / 1e6,
            "MB",
        )
        small = total // 8
        each(
            f"200 B chunks, chunked ({args.mb // 8} MB)",
            lambda p: "%8.1f MB/s  %9.0f chunks/s" % throughput(p, small, 200, False),
            small / 200,
            "chunk",
        )
        print(f"per-chunk latency, {args.events} SSE events {args.interval * 1000:g} ms apart:")

        def lat(p: int) -> str:
            d = latency(p, args.events, args.interval)
            return "p50 %6.3f ms  p99 %6.3f ms  max %6.3f ms  (n=%d)" % (
                statistics.median(d), percentile(d, 99), max(d), len(d))

        each("arrival minus upstream stamp", lat, args.events, "event")
        print(f"small requests, {args.requests} sequential on one connection:")
        each(
            "mean per request",
            lambda p: "%8.3f ms" % requests(p, args.requests),
            args.requests,
            "request",
        )
    finally:
        for process in (proxy, upstream):
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
