"""
Benchmark of what llamaswap adds on top of calling the upstream directly
(issue 5).  Not a test.

Processes, all on 127.0.0.1:

 - a demo upstream (C{python -m llamaswap.demo --port 0 --silent}) called
   directly;
 - C{twistd -n llamaswap} with a generated configuration whose single model
   is the same demo command (its own instance, preloaded and warmed by one
   request before anything is measured);
 - the load generator, which is never the llamaswap process: Debian's
   C{wrk} when installed (for the request/response figures), else this
   script's own asyncio HTTP/1.1 keep-alive client (always used for the SSE
   stream figures).

Measured both ways (direct and through llamaswap):

 1. latency p50/p99 of a small non-streamed C{POST /v1/chat/completions}
    (demo C{--tokens 1}) at concurrency 1 and 32 (closed loop: every
    connection sends its next request when the previous answer ends), and
    the difference, which is what llamaswap adds;
 2. requests/s at concurrency 1 and 32;
 3. events/s of one SSE stream (demo C{--tokens 20000 --token-delay 0})
    and the stream's time to first byte.

It also prints the llamaswap process's own CPU time per request (per event
for the stream), which does not depend on how busy the machine is, and
C{os.getloadavg()} before and after, because on a small shared machine the
wall-clock figures move with everything else running.

Everything is bounded (fixed request counts, or fixed durations for wrk)
and every process it starts is stopped and waited for at the end, also on
Ctrl-C or an error; the children also get SIGTERM if this script dies
(C{PR_SET_PDEATHSIG}).

Run: python bench/proxy.py [--client auto|wrk|python] [--requests 2000]
     [--duration 5] [--streams 3] [--profile FILE]

Two ways to see where llamaswap spends its time (only the llamaswap
process this script generates is affected, never the package):

 - C{--profile FILE} (or C{LLAMASWAP_BENCH_PROFILE=FILE}): the llamaswap
   process is started as this script in its profiling role, which runs
   twistd under cProfile timed by the reactor thread's CPU clock and
   writes C{FILE} (small requests) and C{FILE.stream}; the top functions
   are printed at the end.  Deterministic profiling slows Python code
   several times, so the figures of such a run are not comparable.
 - C{--py-spy PREFIX}: py-spy (C{pip install py-spy}; C{--py-spy-bin}
   if not on C{PATH}) samples the llamaswap process, without pausing it,
   during each measured llamaswap run into C{PREFIX-c1.txt},
   C{PREFIX-c32.txt} and C{PREFIX-stream.txt} (collapsed stacks, only
   samples holding the GIL), summarised at the end.  Its overhead is small.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

MODEL = "demo"
CHAT_PATH = "/v1/chat/completions"
SMALL_BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
STREAM_BODY = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
).encode()
SHORT_STREAM_BODY = STREAM_BODY[:-1] + b', "max_tokens": 20}'
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# Processes


def _dieWithParent() -> None:
    """
    C{preexec_fn}: get SIGTERM when this script dies, and leave its process
    group so a Ctrl-C reaches only this script (which then stops the
    children in order).
    """
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def freePort() -> int:
    """
    A currently free TCP port on 127.0.0.1.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendantsOf(pid: int) -> list[int]:
    """
    The children of C{pid}, theirs, and so on (Linux C{/proc}).
    """
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return children + [d for child in children for d in descendantsOf(child)]


def _statCPU(path: str) -> float:
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpuSeconds(pid: int) -> tuple[float, float]:
    """
    User plus system CPU seconds used so far by process C{pid}: all its
    threads, and its main (reactor) thread alone.
    """
    return _statCPU(f"/proc/{pid}/stat"), _statCPU(f"/proc/{pid}/task/{pid}/stat")


def cmdlineOf(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


class Child:
    """
    A process this script started, with its output in a log file.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logPath: str) -> None:
        self.name = name
        self.logPath = logPath
        self._log = open(logPath, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            preexec_fn=_dieWithParent,  # noqa: PLW1509 (no threads here)
        )
        self.pid = self.proc.pid

    def output(self) -> str:
        with open(self.logPath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def check(self) -> None:
        """
        Raise if the process has exited.
        """
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
            )

    def stop(self, grace: float) -> None:
        """
        SIGTERM, wait up to C{grace} seconds, then SIGKILL and wait.  Any
        demo upstream it had started and left behind is killed too.
        """
        kids = [k for k in descendantsOf(self.pid) if "llamaswap.demo" in cmdlineOf(k)]
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} ignored SIGTERM for {grace}s; killing it", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        deadline = time.monotonic() + grace
        for kid in kids:
            # An orphaned upstream is reparented away from us; it cannot be
            # waited for, only watched until it is gone.
            while os.path.exists(f"/proc/{kid}") and "llamaswap.demo" in cmdlineOf(kid):
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(kid, signal.SIGKILL)
                time.sleep(0.02)
        self._log.close()


class Processes:
    """
    Every process started, stopped in reverse order on exit.
    """

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], logPath: str) -> Child:
        child = Child(name, argv, env, logPath)
        self.children.append(child)
        return child

    def stopAll(self) -> None:
        while self.children:
            child = self.children.pop()
            try:
                child.stop(grace=20.0)
            except BaseException as e:  # noqa: BLE001 (keep stopping the others)
                print(f"  stopping {child.name} failed: {e!r}", file=sys.stderr)


def waitFor(predicate: Callable[[], Any], timeout: float, what: str, *alive: Child) -> Any:
    """
    Poll C{predicate} until it returns something true.
    """
    deadline = time.monotonic() + timeout
    while True:
        for child in alive:
            child.check()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def blockingRequest(
    port: int, method: str, path: str, body: bytes = b"", timeout: float = 60.0
) -> tuple[int, bytes]:
    """
    One HTTP/1.1 request on a fresh connection (setup only, not measured).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        s.sendall(head.encode() + body)
        data = bytearray()
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, bytes(data.split(b"\r\n\r\n", 1)[1])


def demoArgs(tokens: int) -> list[str]:
    return ["--silent", "--model", MODEL, "--tokens", str(tokens), "--token-delay", "0"]


def startDirect(procs: Processes, env: dict[str, str], tmp: str, tokens: int) -> tuple[Child, int]:
    """
    Start a demo upstream on a free port and wait until it answers.
    """
    argv = [sys.executable, "-m", "llamaswap.demo", "--port", "0", *demoArgs(tokens)]
    child = procs.start("direct demo", argv, env, os.path.join(tmp, f"direct-{tokens}.log"))
    pattern = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")

    def port() -> int | None:
        match = pattern.search(child.output())
        return int(match.group(1)) if match else None

    listening = waitFor(port, 30, "the demo upstream to listen", child)
    waitFor(
        lambda: blockingRequest(listening, "GET", "/health")[0] == 200, 30, "demo health", child
    )
    return child, listening


RELAYS = {"minimal": "minimal_relay.py", "lean": "lean_relay.py"}


def startRelay(
    procs: Processes, env: dict[str, str], tmp: str, upstream: int, kind: str = "minimal"
) -> tuple[Child, int]:
    """
    Start C{minimal_relay.py} (the framework's limit; C{kind} C{"lean"}:
    C{lean_relay.py}, the same without Twisted's HTTP client) in front of
    the demo on port C{upstream} and warm it with one request.
    """
    port = freePort()
    argv = [sys.executable, os.path.join(HERE, RELAYS[kind]), str(port), str(upstream)]
    child = procs.start("minimal relay", argv, env, os.path.join(tmp, "relay.log"))
    waitFor(lambda: "listening on" in child.output(), 30, "the minimal relay", child)
    status, answer = blockingRequest(port, "POST", CHAT_PATH, SMALL_BODY)
    if status != 200:
        raise RuntimeError(f"warm-up request through the minimal relay: {status} {answer[:500]!r}")
    return child, port


def llamaswapConfig(tokens: int, startPort: int) -> str:
    demo = " ".join(
        [sys.executable, "-m", "llamaswap.demo", "--port", "${PORT}", *demoArgs(tokens)]
    )
    return (
        f"startPort: {startPort}\n"
        "healthCheckTimeout: 60\n"
        "models:\n"
        f"  {MODEL}:\n"
        f"    cmd: {json.dumps(demo)}\n"
        # Above the default of 10, which would answer 429 at concurrency 32.
        "    concurrencyLimit: 64\n"
        "hooks:\n"
        "  on_startup:\n"
        f"    preload: [{MODEL}]\n"
    )


def twistdCommand() -> list[str]:
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    if not os.path.exists(twistd):
        twistd = shutil.which("twistd") or "twistd"
    return [sys.executable, twistd]


def startLlamaSwap(
    procs: Processes, env: dict[str, str], tmp: str, tokens: int, profile: str | None
) -> tuple[Child, int]:
    """
    Start C{twistd -n llamaswap} in front of a demo with C{--tokens tokens},
    wait until it listens and warm it with one request (which also waits
    for the preloaded model).
    """
    configPath = os.path.join(tmp, f"llamaswap-{tokens}.yaml")
    with open(configPath, "w") as f:
        # LLAMASWAP_BENCH_CONFIG_EXTRA: YAML appended to the configuration
        # (e.g. "logToStdout: none" to measure the stdout access log).
        f.write(llamaswapConfig(tokens, freePort()))
        f.write("\n" + os.environ.get("LLAMASWAP_BENCH_CONFIG_EXTRA", "") + "\n")
    port = freePort()
    argv = [*twistdCommand(), "-n", "--pidfile="]
    if profile:
        # This script runs twistd under cProfile (see profiledTwistd).
        argv = [sys.executable, os.path.abspath(__file__), PROFILED, profile, *argv[1:]]
    argv += ["llamaswap", "--config", configPath, "--listen", f"127.0.0.1:{port}"]
    runtime = os.path.join(tmp, f"runtime-{tokens}")
    os.makedirs(runtime, exist_ok=True)
    child = procs.start(
        "llamaswap",
        argv,
        dict(env, RUNTIME_DIRECTORY=runtime),
        os.path.join(tmp, f"llamaswap-{tokens}.log"),
    )

    def health() -> bool:
        try:
            return blockingRequest(port, "GET", "/health", timeout=5)[0] == 200
        except OSError:
            return False

    waitFor(health, 60, "llamaswap to listen", child)
    body = (
        STREAM_BODY.replace(b', "stream": true', b', "max_tokens": 1') if tokens > 1 else SMALL_BODY
    )
    status, answer = blockingRequest(port, "POST", CHAT_PATH, body, timeout=90)
    if status != 200:
        raise RuntimeError(f"warm-up request through llamaswap: {status} {answer[:500]!r}")
    return child, port


PROFILED = "--run-profiled-twistd"


def profiledTwistd(output: str, argv: list[str]) -> int:
    """
    The profiling hook of the generated llamaswap process only: run twistd
    (C{argv} is its command line) under cProfile timed by the main thread's
    own CPU clock, so that neither waiting in C{epoll} nor the machine's
    other load nor llamaswap's worker threads (database, resolver) count,
    and write the stats to C{output} when twistd returns (it does on
    SIGTERM).
    """
    import cProfile

    from twisted.scripts.twistd import run

    sys.argv = argv
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    try:
        run()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    finally:
        profiler.disable()
        profiler.dump_stats(output)
    return 0


# ---------------------------------------------------------------------------
# The asyncio HTTP/1.1 client


class ResponseParser:
    """
    Incremental HTTP/1.1 response parser: Content-Length, chunked, or to
    the end of the connection.
    """

    def __init__(self, onBody: Callable[[bytes], None] | None = None) -> None:
        self.buf = bytearray()
        self.state = "head"
        self.status = 0
        self.remaining = 0
        self.done = False
        self.onBody = onBody

    def _body(self, data: bytes) -> None:
        if self.onBody is not None:
            self.onBody(data)

    def feed(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while not self.done:
            state = self.state
            if state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(buf[:end]).split(b"\r\n")
                del buf[: end + 4]
                self.status = int(lines[0].split(b" ", 2)[1])
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
                    self.state = "size"
                elif b"content-length" in headers:
                    self.remaining = int(headers[b"content-length"])
                    self.state = "body"
                    if not self.remaining:
                        self.done = True
                else:
                    self.state = "close"
            elif state in ("body", "data"):
                if not buf:
                    return
                n = min(len(buf), self.remaining)
                self._body(bytes(buf[:n]))
                del buf[:n]
                self.remaining -= n
                if not self.remaining:
                    if state == "body":
                        self.done = True
                    else:
                        self.state = "crlf"
            elif state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";")[0], 16)
                del buf[: end + 2]
                self.remaining = size
                self.state = "data" if size else "trailer"
            elif state == "crlf":
                if len(buf) < 2:
                    return
                del buf[:2]
                self.state = "size"
            elif state == "trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    self.done = True
            else:  # "close": everything until EOF
                self._body(bytes(buf))
                buf.clear()
                return

    def eof(self) -> None:
        if self.state == "close":
            self.done = True


class Connection(asyncio.Protocol):
    """
    One keep-alive client connection with one request in flight at a time.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.firstByte: Callable[[], None] | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.firstByte is not None:
            self.firstByte()
            self.firstByte = None
        parser = self.parser
        if parser is None:
            return
        parser.feed(data)
        if parser.done:
            self._finish()

    def eof_received(self) -> bool | None:
        if self.parser is not None:
            self.parser.eof()
            if self.parser.done:
                self._finish()
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionError("connection closed")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def _finish(self) -> None:
        parser, waiter = self.parser, self.waiter
        self.parser = self.waiter = None
        if waiter is not None and not waiter.done() and parser is not None:
            waiter.set_result(parser.status)

    def send(
        self,
        data: bytes,
        onBody: Callable[[bytes], None] | None = None,
        firstByte: Callable[[], None] | None = None,
    ) -> asyncio.Future[int]:
        if self.lost is not None:
            raise ConnectionError(f"connection lost: {self.lost!r}")
        self.parser = ResponseParser(onBody)
        self.firstByte = firstByte
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(data)
        return self.waiter


def requestBytes(port: int, body: bytes) -> bytes:
    return (
        f"POST {CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def connect(port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(Connection, "127.0.0.1", port)
    return protocol


async def closedLoop(port: int, concurrency: int, total: int) -> tuple[list[float], float, int]:
    """
    C{total} small chat requests over C{concurrency} keep-alive connections,
    each sending its next request when the previous answer ends.

    @return: the latencies in seconds, the elapsed time and the number of
        non-200 answers.
    """
    data = requestBytes(port, SMALL_BODY)
    conns = [await connect(port) for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    left = total
    clock = time.perf_counter

    async def worker(conn: Connection) -> None:
        nonlocal left, errors
        while left > 0:
            left -= 1
            started = clock()
            status = await conn.send(data)
            latencies.append(clock() - started)
            if status != 200:
                errors += 1

    started = clock()
    try:
        await asyncio.wait_for(asyncio.gather(*(worker(c) for c in conns)), timeout=600)
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
    return latencies, clock() - started, errors


async def oneStream(port: int, body: bytes = STREAM_BODY) -> tuple[float, float, int, int, int]:
    """
    One SSE chat stream, read to its end.

    @return: time to the first response byte, seconds from the first to
        the last event, events, body bytes and the status.
    """
    conn = await connect(port)
    clock = time.perf_counter
    marks: dict[str, float] = {}
    events = 0
    size = 0
    tail = b""

    def onBody(data: bytes) -> None:
        nonlocal events, size, tail
        if "event" not in marks:
            marks["event"] = clock()
        size += len(data)
        joined = tail + data
        events += joined.count(b"\n\n")
        tail = joined[-1:]

    def firstByte() -> None:
        marks["byte"] = clock()

    try:
        started = clock()
        status = await asyncio.wait_for(conn.send(requestBytes(port, body), onBody, firstByte), 600)
        ended = clock()
    finally:
        if conn.transport is not None:
            conn.transport.close()
    return marks["byte"] - started, ended - marks.get("event", ended), events, size, status


# ---------------------------------------------------------------------------
# wrk


def wrkVersion() -> str:
    out = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True)
    match = re.search(r"wrk (\S+)", out.stdout + out.stderr)
    return match.group(1) if match else "?"


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unparsable wrk duration {text!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[match.group(2)]
    return float(match.group(1)) * scale


def runWrk(port: int, concurrency: int, duration: float, script: str) -> dict[str, float]:
    """
    Run wrk with one thread for C{duration} seconds.

    @return: C{p50}, C{p99} (seconds), C{rps}, C{requests} and C{errors}.
    """
    argv = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
        "--latency", "-s", script, f"http://127.0.0.1:{port}{CHAT_PATH}",
    ]  # fmt: skip
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=duration + 60)
    text = out.stdout
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}{text}")
    result: dict[str, float] = {}
    for pct, key in (("50", "p50"), ("99", "p99")):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no {pct}% latency in wrk output:\n{text}")
        result[key] = _seconds(match.group(1))
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    result["requests"] = float(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        errors += sum(int(g) for g in match.groups())
    result["errors"] = errors
    return result


# ---------------------------------------------------------------------------
# Measurements


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


@contextlib.contextmanager
def sampling(args: argparse.Namespace, pid: int | None, label: str) -> Iterator[None]:
    """
    While the block runs, sample process C{pid} with py-spy (C{--py-spy})
    into C{<prefix>-<label>.txt} (collapsed stacks), without pausing it.
    """
    if not (args.py_spy and pid):
        yield
        return
    output = f"{args.py_spy}-{label}.txt"
    spy = subprocess.Popen(
        [args.py_spy_bin, "record", "--pid", str(pid), "--rate", os.environ.get("LLAMASWAP_BENCH_SPY_RATE", "250"), "--nonblocking", "--gil",
         "--format", "raw", "--output", output],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        time.sleep(0.5)  # attached
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            _, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
            err = b""
        if spy.returncode not in (0, -signal.SIGINT) or not os.path.exists(output):
            print(
                f"py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-500:]}",
                file=sys.stderr,
            )
        else:
            args.samples.append((label, output))


def summariseSamples(label: str, path: str, top: int) -> None:
    """
    Print the functions with the most samples on top of the stack (self)
    and, for llamaswap's own code, anywhere on it (inclusive).
    """
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for frame in set(frames):
                if "llamaswap/" in frame:
                    inclusive[frame] = inclusive.get(frame, 0) + n

    def shorten(frame: str) -> str:
        return frame.replace(REPO + "/", "").replace(os.path.dirname(os.__file__) + "/", "")

    print(f"\npy-spy, llamaswap process, {label}: {total} samples (not idle)")
    print("  self:")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {n / total * 100:5.1f}%  {shorten(frame)}")
    print("  inclusive, llamaswap code:")
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {n / total * 100:5.1f}%  {shorten(frame)}")


def measureRequests(
    args: argparse.Namespace,
    port: int,
    concurrency: int,
    watch: int | None,
    script: str | None,
    sample: bool = True,
) -> dict[str, float]:
    """
    Latency and throughput of small chat requests at one concurrency; CPU
    seconds of process C{watch} (llamaswap or the relay) per request if
    given, sampled with py-spy if C{sample}.
    """
    if script is not None:
        runWrk(port, concurrency, max(1.0, args.duration / 5), script)  # warm-up
        cpu = cpuSeconds(watch) if watch else (0.0, 0.0)
        with sampling(args, watch if sample else None, f"c{concurrency}"):
            result = runWrk(port, concurrency, args.duration, script)
    else:
        asyncio.run(closedLoop(port, concurrency, max(concurrency * 4, args.requests // 10)))
        cpu = cpuSeconds(watch) if watch else (0.0, 0.0)
        with sampling(args, watch if sample else None, f"c{concurrency}"):
            latencies, elapsed, errors = asyncio.run(closedLoop(port, concurrency, args.requests))
        result = {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "rps": len(latencies) / elapsed,
            "requests": float(len(latencies)),
            "errors": float(errors),
        }
    if watch:
        total, main = cpuSeconds(watch)
        result["cpu"] = (total - cpu[0]) / result["requests"]
        result["cpuMain"] = (main - cpu[1]) / result["requests"]
    return result


def measureStreams(args: argparse.Namespace, port: int, watch: int | None) -> dict[str, float]:
    """
    C{args.streams} full SSE streams one after another (median events/s,
    CPU seconds of process C{watch} per event), then C{args.ttfb} short
    ones (C{max_tokens} 20, same upstream) for the time to first byte
    (p50, p90 over all of them).
    """
    asyncio.run(oneStream(port))  # warm-up
    ttfbs, rates = [], []
    cpu = cpuSeconds(watch) if watch else (0.0, 0.0)
    total = 0
    with sampling(args, watch, "stream"):
        for _ in range(args.streams):
            ttfb, elapsed, events, size, status = asyncio.run(oneStream(port))
            if status != 200 or events < args.stream_tokens:
                raise RuntimeError(f"bad stream: status {status}, {events} events, {size} bytes")
            ttfbs.append(ttfb)
            rates.append(events / elapsed)
            total += events
    result = {"eps": statistics.median(rates), "events": total}
    if watch:
        used, main = cpuSeconds(watch)
        result["cpu"] = (used - cpu[0]) / total
        result["cpuMain"] = (main - cpu[1]) / total
    for _ in range(args.ttfb):
        ttfb, _, events, _, status = asyncio.run(oneStream(port, SHORT_STREAM_BODY))
        if status != 200 or events < 20:
            raise RuntimeError(f"bad short stream: status {status}, {events} events")
        ttfbs.append(ttfb)
    result["ttfb"] = percentile(ttfbs, 50)
    result["ttfb90"] = percentile(ttfbs, 90)
    return result


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------
# Report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} us"


def cpuNote(result: dict[str, float]) -> str:
    return f"llamaswap process (reactor thread {result['cpuMain'] * 1e6:.1f} us)"


def report(
    results: dict[Any, Any], client: str, loads: list[str], relay: str = "minimal"
) -> None:
    """
    Print the table: one row per figure, direct, through llamaswap, and
    what llamaswap adds.
    """

    def latency(label: str, d: float, p: float) -> tuple[str, str, str, str]:
        return (label, ms(d), ms(p), f"{(p - d) * 1000:+.2f} ms")

    def rate(label: str, d: float, p: float) -> tuple[str, str, str, str]:
        return (label, f"{d:8.0f}   ", f"{p:8.0f}   ", f"{(p / d - 1) * 100:+.0f}%")

    rows: list[tuple[str, str, str, str]] = []
    relayRows: list[str] = []
    for c in (1, 32):
        d, p = results[("direct", c)], results[("llamaswap", c)]
        rows.append(latency(f"c={c:<2} latency p50", d["p50"], p["p50"]))
        rows.append(latency(f"c={c:<2} latency p99", d["p99"], p["p99"]))
        rows.append(rate(f"c={c:<2} requests/s", d["rps"], p["rps"]))
        rows.append((f"c={c:<2} CPU/request", "", us(p["cpu"]), cpuNote(p)))
        r = results.get(("relay", c))
        if r is not None:
            relayRows.append(
                f"c={c:<2} {relay} relay: p50 {ms(r['p50'])} (added {(r['p50'] - d['p50']) * 1000:+.2f}"
                f" ms), {r['rps']:.0f} requests/s, CPU/request {us(r['cpu'])}; llamaswap"
                f" throughput {p['rps'] / r['rps']:.2f}x the relay's, added p50"
                f" {(p['p50'] - d['p50']) * 1000:+.2f} ms"
            )
        if d["errors"] or p["errors"]:
            rows.append(
                (f"c={c:<2} errors", f"{d['errors']:8.0f}", f"{p['errors']:8.0f}", "NOT 200")
            )
    d, p = results[("direct", "stream")], results[("llamaswap", "stream")]
    rows.append(rate("stream events/s", d["eps"], p["eps"]))
    rows.append(("stream CPU/event", "", us(p["cpu"]), cpuNote(p)))
    rows.append(latency("stream 1st byte p50", d["ttfb"], p["ttfb"]))
    rows.append(latency("stream 1st byte p90", d["ttfb90"], p["ttfb90"]))
    print()
    print(f"client: {client}; loadavg (1/5/15 min) " + " | ".join(loads))
    print(f"{'':22} {'direct':>11}  {'llamaswap':>11}  added")
    for label, x, y, z in rows:
        print(f"{label:22} {x:>11}  {y:>11}  {z}")
    for line in relayRows:
        print(line)


def printProfile(path: str, top: int) -> None:
    import pstats

    if not os.path.exists(path):
        print(f"no profile written to {path}", file=sys.stderr)
        return
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


# ---------------------------------------------------------------------------
# Main


def parseArguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator for the request figures (default: wrk if installed)",
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per measurement with the python client"
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per measurement with wrk"
    )
    parser.add_argument("--streams", type=int, default=3, help="SSE streams each way")
    parser.add_argument(
        "--ttfb", type=int, default=20, help="extra short streams each way for the first byte"
    )
    parser.add_argument("--stream-tokens", type=int, default=20000, help="events per stream")
    parser.add_argument(
        "--profile",
        default=os.environ.get("LLAMASWAP_BENCH_PROFILE"),
        help="cProfile the llamaswap process into this file",
    )
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument(
        "--py-spy",
        metavar="PREFIX",
        help="sample llamaswap with py-spy during each measurement into PREFIX-*.txt",
    )
    parser.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument(
        "--relay",
        choices=sorted(RELAYS),
        default="minimal",
        help="the yardstick: Twisted's minimal relay, or the same with a hand-written client",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    return parser.parse_args(argv)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [PROFILED]:
        return profiledTwistd(argv[1], argv[2:])
    args = parseArguments(argv)
    args.samples = []
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "python"
    if args.client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk), use --client python")
    if args.profile:
        args.profile = os.path.abspath(args.profile)
    client = f"wrk {wrkVersion()} -t1" if args.client == "wrk" else "python asyncio"

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [REPO, env.get("PYTHONPATH", "")] if p)
    tmp = tempfile.mkdtemp(prefix="llamaswap-bench-proxy-")
    procs = Processes()
    results: dict[Any, Any] = {}
    loads = [loadavg()]
    try:
        script = None
        if args.client == "wrk":
            script = os.path.join(tmp, "post.lua")
            with open(script, "w") as f:
                f.write(
                    'wrk.method = "POST"\n'
                    'wrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = {json.dumps(SMALL_BODY.decode())}\n"
                )
        # Round 1: small requests (demo --tokens 1).
        _, direct = startDirect(procs, env, tmp, 1)
        swap, proxied = startLlamaSwap(procs, env, tmp, 1, args.profile)
        relay, relayed = startRelay(procs, env, tmp, direct, args.relay)
        sides = (("direct", direct, None), ("relay", relayed, relay.pid),
                 ("llamaswap", proxied, swap.pid))
        for c in (1, 32):
            for name, port, watch in sides:
                print(f"  {name} c={c} ...", file=sys.stderr)
                results[(name, c)] = measureRequests(
                    args, port, c, watch, script, sample=name == "llamaswap"
                )
                swap.check()
        loads.append(loadavg())
        procs.stopAll()
        # Round 2: one long SSE stream (demo --tokens N --token-delay 0).
        _, direct = startDirect(procs, env, tmp, args.stream_tokens)
        streamProfile = args.profile + ".stream" if args.profile else None
        swap, proxied = startLlamaSwap(procs, env, tmp, args.stream_tokens, streamProfile)
        for name, port, watch in (("direct", direct, None), ("llamaswap", proxied, swap.pid)):
            print(f"  {name} streams ...", file=sys.stderr)
            results[(name, "stream")] = measureStreams(args, port, watch)
        loads.append(loadavg())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stopAll()
        if args.keep:
            print(f"logs in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report(results, client, loads, args.relay)
    for label, path in args.samples:
        summariseSamples(label, path, args.profile_top)
    if args.profile:
        print(f"\nllamaswap profile, small requests ({args.profile}):")
        printProfile(args.profile, args.profile_top)
        print(f"\nllamaswap profile, stream ({args.profile}.stream):")
        printProfile(args.profile + ".stream", args.profile_top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
