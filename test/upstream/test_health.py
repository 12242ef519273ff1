"""
Tests for L{llamaswap.upstream.health}: the probe schedule under a clock,
per-probe timeouts, nudges, and the HTTP prober against an in-memory site.
"""

from __future__ import annotations

from itertools import islice

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from llamaswap.upstream.health import (
    NUDGE_GAP,
    VOUCHED_STARTS,
    HTTPHealthProber,
    ProbeLoop,
    announcesReadiness,
    backoffDelays,
    denseWindow,
    healthURL,
    vouchedFirstProbe,
)


class ScheduleTests(SynchronousTestCase):
    """
    The back-off and the URL.
    """

    def test_backoff(self) -> None:
        """
        Delays start at 10 ms, grow by half each time and stop at 40 ms.
        """
        delays = list(islice(backoffDelays(), 10))
        self.assertEqual(delays[0], 0.01)
        self.assertAlmostEqual(delays[1], 0.015)
        self.assertAlmostEqual(delays[2], 0.0225)
        self.assertEqual(delays[-1], 0.04)
        self.assertEqual(delays, sorted(delays))

    def test_denseWindow(self) -> None:
        """
        The dense window runs from 80 % of the expected time (less 20 ms,
        not before the start) to 120 % of it plus 50 ms.
        """
        low, high = denseWindow(1.0)
        self.assertAlmostEqual(low, 0.78)
        self.assertAlmostEqual(high, 1.25)
        self.assertEqual(denseWindow(0.01)[0], 0.0)

    def test_healthURL(self) -> None:
        """
        The endpoint's path is appended to the proxy URL's path; a full URL
        contributes only its path and query.
        """
        self.assertEqual(healthURL("http://h:1", "/health"), "http://h:1/health")
        self.assertEqual(healthURL("http://h:1/", "health"), "http://h:1/health")
        self.assertEqual(healthURL("http://h:1/base", "/v1/models"), "http://h:1/base/v1/models")
        self.assertEqual(
            healthURL("http://h:1", "http://elsewhere:9/ping?x=1"), "http://h:1/ping?x=1"
        )


class Probes:
    """
    A scripted C{probeOnce}: records start times, answers from a list
    (C{True}, C{False}, C{None} = hang, or an exception).
    """

    def __init__(self, clock: Clock, answers: list) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.starts: list[float] = []
        self.pending: list[Deferred[bool]] = []

    def __call__(self) -> Deferred[bool]:
        self.starts.append(self.clock.seconds())
        answer = self.answers.pop(0) if self.answers else False
        if answer is None:
            d: Deferred[bool] = Deferred()
            self.pending.append(d)
            return d
        if isinstance(answer, Exception):
            d = Deferred()
            d.errback(answer)
            return d
        return succeed(answer)


class ProbeLoopTests(SynchronousTestCase):
    """
    L{ProbeLoop} under a L{Clock}.
    """

    def test_firstProbeImmediately(self) -> None:
        """
        The first probe is sent at once; a 200 makes it ready.
        """
        clock = Clock()
        probes = Probes(clock, [True])
        loop = ProbeLoop(clock, probes)
        self.successResultOf(loop.ready)
        self.assertEqual(probes.starts, [0.0])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_schedule(self) -> None:
        """
        Failed probes are retried after 10, 15, 22.5 ... ms, capped at 40 ms;
        a success ends the loop.
        """
        clock = Clock()
        probes = Probes(clock, [False, ConnectionRefusedError(), False, False, False, False, False, False, False, True])
        loop = ProbeLoop(clock, probes)
        while clock.getDelayedCalls():
            clock.advance(clock.getDelayedCalls()[0].getTime() - clock.seconds())
        self.successResultOf(loop.ready)
        gaps = [round(b - a, 4) for a, b in zip(probes.starts, probes.starts[1:])]
        self.assertEqual(gaps[:3], [0.01, 0.015, 0.0225])
        self.assertEqual(gaps[-1], 0.04)
        self.assertTrue(all(g <= 0.04 for g in gaps))
        self.assertEqual(len(probes.starts), 10)
        self.assertEqual(clock.getDelayedCalls(), [])

    def readyAfter(self, readyAt: float, expected: float | None = None) -> tuple[float, int]:
        """
        Run a loop against a server healthy from C{readyAt} on, without
        nudges; return how late it noticed and how many probes it sent.
        """
        clock = Clock()
        starts: list[float] = []

        def probe() -> Deferred[bool]:
            starts.append(clock.seconds())
            return succeed(clock.seconds() >= readyAt)

        loop = ProbeLoop(clock, probe, expected=expected)
        while not loop.ready.called:
            clock.advance(0.0005)
        return clock.seconds() - readyAt, len(starts)

    def test_readinessNoticedQuickly(self) -> None:
        """
        A server that becomes healthy at any time is noticed within 40 ms
        (plus the probe's own time) without nudges, within 15 ms in the
        first 25 ms.
        """
        for readyAt in [0.001 * i for i in range(0, 3000, 7)]:
            late, _ = self.readyAfter(readyAt)
            bound = 0.0155 if readyAt < 0.025 else 0.0405
            self.assertLessEqual(late, bound, readyAt)

    def test_expectedReadiness(self) -> None:
        """
        Told when the server became ready last time, the loop probes every
        5 ms around that time: one that takes as long (or up to a fifth
        longer or shorter) is noticed within 5 ms, for few more probes;
        outside the window the back-off still bounds the delay.
        """
        for readyAt in [0.8, 1.0, 1.2]:
            late, probes = self.readyAfter(readyAt, expected=1.0)
            self.assertLessEqual(late, 0.0055, readyAt)
            _, plain = self.readyAfter(readyAt)
            self.assertLessEqual(probes, plain + 100)
        for readyAt in [0.1, 3.0]:
            late, _ = self.readyAfter(readyAt, expected=1.0)
            self.assertLessEqual(late, 0.0405, readyAt)

    def test_probeTimeout(self) -> None:
        """
        A probe that hangs is cancelled after the probe timeout and the loop
        goes on.
        """
        clock = Clock()
        probes = Probes(clock, [None, True])
        loop = ProbeLoop(clock, probes, probeTimeout=2.0)
        clock.advance(1.9)
        self.assertNoResult(loop.ready)
        clock.advance(0.1)
        self.assertTrue(probes.pending[0].called)
        clock.advance(0.01)
        self.successResultOf(loop.ready)
        self.assertEqual(probes.starts, [0.0, 2.01])

    def test_cancel(self) -> None:
        """
        Cancelling stops the loop: the probe in flight is cancelled and no
        timer is left.
        """
        clock = Clock()
        probes = Probes(clock, [None])
        loop = ProbeLoop(clock, probes)
        loop.cancel()
        self.assertTrue(probes.pending[0].called)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.failureResultOf(loop.ready)

    def test_cancelBetweenProbes(self) -> None:
        """
        Cancelling while waiting for the next probe cancels the timer.
        """
        clock = Clock()
        loop = ProbeLoop(clock, Probes(clock, [False]))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        loop.cancel()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.failureResultOf(loop.ready)

    def test_nudge(self) -> None:
        """
        A nudge probes at once and restarts the back-off.
        """
        clock = Clock()
        probes = Probes(clock, [False] * 20)
        loop = ProbeLoop(clock, probes)
        clock.pump([0.25] * 8)
        count = len(probes.starts)
        clock.advance(0.03)
        loop.nudge()
        self.assertEqual(len(probes.starts), count + 1)
        clock.advance(0.01)
        self.assertEqual(len(probes.starts), count + 2)

    def test_nudgeSoonAfterRecentProbe(self) -> None:
        """
        A nudge within L{NUDGE_GAP} of the last probe's start probes
        L{NUDGE_GAP} after it, not at once (chatty output probes at most
        1/L{NUDGE_GAP} times a second).
        """
        clock = Clock()
        probes = Probes(clock, [False] * 20)
        loop = ProbeLoop(clock, probes)
        clock.pump([0.25] * 8)
        last = probes.starts[-1]
        clock.advance(NUDGE_GAP / 4)
        loop.nudge()
        loop.nudge()
        self.assertEqual(probes.starts[-1], last)
        clock.advance(NUDGE_GAP * 3 / 4)
        self.assertAlmostEqual(probes.starts[-1], last + NUDGE_GAP)
        self.assertEqual(len(clock.getDelayedCalls()), 1)

    def test_nudgeDuringProbe(self) -> None:
        """
        A nudge while a probe is in flight is acted on when it fails: the
        next probe follows at once (L{NUDGE_GAP} has passed).
        """
        clock = Clock()
        probes = Probes(clock, [False] * 8 + [None, False])
        loop = ProbeLoop(clock, probes)
        clock.pump([0.25] * 8)
        self.assertEqual(len(probes.pending), 1)
        hung = probes.starts[-1]
        clock.advance(0.01)
        loop.nudge()
        clock.advance(0.1)
        probes.pending[0].callback(False)
        self.assertEqual(probes.starts[-1], clock.seconds())
        self.assertGreater(clock.seconds(), hung)

    def test_nudgeLostNeither(self) -> None:
        """
        A nudge inside the gap schedules a probe for the end of the gap
        even when the back-off's own timer was further away; a nudge while
        a probe is in flight, then inside the gap after it failed, is acted
        on at the gap's end: no nudge is lost.
        """
        clock = Clock()
        probes = Probes(clock, [False] * 8 + [None] + [False] * 5)
        loop = ProbeLoop(clock, probes)
        clock.pump([0.25] * 8)
        start = probes.starts[-1]
        clock.advance(NUDGE_GAP / 2)
        loop.nudge("print_info: loading")
        clock.advance(NUDGE_GAP / 4)
        probes.pending[0].callback(False)
        self.assertEqual(probes.starts[-1], start)
        clock.advance(NUDGE_GAP / 4)
        self.assertAlmostEqual(probes.starts[-1], start + NUDGE_GAP)

    def test_announcedReadinessProbesAtOnce(self) -> None:
        """
        A line announcing readiness probes at once, inside the gap after
        the previous probe.
        """
        clock = Clock()
        probes = Probes(clock, [False] * 9 + [True])
        loop = ProbeLoop(clock, probes)
        clock.pump([0.25] * 8)
        clock.advance(NUDGE_GAP / 4)
        loop.nudge("0.00.009.665 I srv  llama_server: model loaded")
        self.assertEqual(probes.starts[-1], clock.seconds())
        self.successResultOf(loop.ready)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_announcedReadinessBesideProbeInFlight(self) -> None:
        """
        A readiness line while a probe is in flight (sent before the line,
        so it may answer 503) sends a second probe beside it; the first
        healthy answer wins and the other probe is cancelled.
        """
        clock = Clock()
        probes = Probes(clock, [False] * 8 + [None, None])
        loop = ProbeLoop(clock, probes)
        clock.pump([0.25] * 8)
        clock.advance(0.0005)
        loop.nudge("main: server is listening on http://127.0.0.1:8080 - starting the main loop")
        self.assertEqual(len(probes.pending), 2)
        self.assertEqual(probes.starts[-1], clock.seconds())
        probes.pending[1].callback(True)
        self.successResultOf(loop.ready)
        self.assertTrue(probes.pending[0].called)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_announcedReadinessTwoAtMost(self) -> None:
        """
        Never more than two probes at a time: a readiness line while the
        probe of an earlier one is in flight makes the next probe follow
        at once when both in flight fail (the server printed it after our
        probe was answered).
        """
        clock = Clock()
        probes = Probes(clock, [False] * 8 + [None, None, True])
        loop = ProbeLoop(clock, probes)
        clock.pump([0.25] * 8)
        loop.nudge("llama_server: model loaded")
        loop.nudge("llama_server: listening on http://127.0.0.1:8080")
        self.assertEqual(len(probes.pending), 2)
        probes.pending[1].callback(False)
        self.assertEqual(len(probes.starts), 10)
        clock.advance(0.0003)
        probes.pending[0].callback(False)
        self.assertEqual(probes.starts[-1], clock.seconds())
        self.successResultOf(loop.ready)

    def test_failedProbeBesideAnother(self) -> None:
        """
        When one of two probes fails, the other decides what comes next:
        no probe is scheduled until both are done.
        """
        clock = Clock()
        probes = Probes(clock, [None, None, False])
        loop = ProbeLoop(clock, probes)
        loop.nudge("Application startup complete.")
        probes.pending[0].callback(False)
        clock.advance(0.05)
        self.assertEqual(len(probes.starts), 2)
        probes.pending[1].callback(False)
        clock.advance(0.01)
        self.assertAlmostEqual(probes.starts[-1], 0.06)
        self.assertNoResult(loop.ready)
        loop.cancel()
        self.failureResultOf(loop.ready)

    def test_announcesReadiness(self) -> None:
        """
        llama-server's and vLLM's readiness lines announce readiness; the
        loading lines and the early "HTTP server is listening" do not.
        """
        for line in [
            "0.00.009.665 I srv  llama_server: model loaded",
            "0.00.009.697 I srv  llama_server: listening on http://127.0.0.1:23456",
            "main: server is listening on http://127.0.0.1:8080 - starting the main loop",
            "INFO:     Application startup complete.",
        ]:
            self.assertTrue(announcesReadiness(line), line)
        for line in [
            "0.00.004.244 I srv    load_model: loading model '/m.gguf'",
            "main: HTTP server is listening, hostname: 127.0.0.1, port: 8080",
            "",
        ]:
            self.assertFalse(announcesReadiness(line), line)

    def test_probeOnceRaises(self) -> None:
        """
        A probe function that raises counts as a failed probe.
        """
        clock = Clock()
        calls: list[int] = []

        def probe() -> Deferred[bool]:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("bug")
            return succeed(True)

        loop = ProbeLoop(clock, probe)
        clock.advance(0.02)
        self.successResultOf(loop.ready)


class Status(Resource):
    """
    Answers every request with a settable status.
    """

    isLeaf = True

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code
        self.paths: list[bytes] = []

    def render_GET(self, request: Request) -> bytes:
        self.paths.append(request.path)
        request.setResponseCode(self.code)
        return b"{}"


class HTTPProberTests(SynchronousTestCase):
    """
    L{HTTPHealthProber} against an in-memory site: only 200 is healthy.
    """

    def probe(self, code: int) -> bool:
        resource = Status(code)
        prober = HTTPHealthProber(RequestTraversalAgent(resource), Clock())
        result = self.successResultOf(prober.probeOnce("http://127.0.0.1:1/health"))
        self.assertEqual(resource.paths, [b"/health"])
        return result

    def test_statuses(self) -> None:
        """
        200 is healthy; 204, 503 and 404 are not.
        """
        self.assertTrue(self.probe(200))
        self.assertFalse(self.probe(204))
        self.assertFalse(self.probe(503))
        self.assertFalse(self.probe(404))

    def test_watch(self) -> None:
        """
        A watch becomes ready once the endpoint says 200.
        """
        resource = Status(503)
        clock = Clock()
        prober = HTTPHealthProber(RequestTraversalAgent(resource), clock)
        watch = prober.watch("http://127.0.0.1:1/health")
        clock.advance(0.02)
        self.assertNoResult(watch.ready)
        resource.code = 200
        clock.pump([0.05] * 4)
        self.successResultOf(watch.ready)

    def test_learnsTimeToReady(self) -> None:
        """
        The prober remembers how long each URL took to become ready and
        gives the next watch of it that expectation.
        """
        resource = Status(503)
        clock = Clock()
        prober = HTTPHealthProber(RequestTraversalAgent(resource), clock)
        watch = prober.watch("http://127.0.0.1:1/health")
        clock.advance(1.0)
        resource.code = 200
        while not watch.ready.called:
            clock.advance(0.001)
        self.assertAlmostEqual(prober.learned["http://127.0.0.1:1/health"], clock.seconds(), 3)
        self.assertGreaterEqual(prober.learned["http://127.0.0.1:1/health"], 1.0)
        # Next time: dense probing from 0.78 s on finds 200 within 5 ms.
        resource.code = 503
        start = clock.seconds()
        again = prober.watch("http://127.0.0.1:1/health")
        clock.advance(0.95)
        resource.code = 200
        while not again.ready.called:
            clock.advance(0.0005)
        self.assertLessEqual(clock.seconds() - start - 0.95, 0.0055)

    def test_learnsAnnouncing(self) -> None:
        """
        An upstream whose readiness came with an announcing line is
        trusted to print it again: its next watch sends no immediate first
        probe and no dense probes (its line probes at once); one that
        stays silent next time is still found by the back-off, and loses
        the trust.
        """
        url = "http://127.0.0.1:1/health"
        resource = Status(503)
        clock = Clock()
        prober = HTTPHealthProber(RequestTraversalAgent(resource), clock)
        watch = prober.watch(url)
        self.assertEqual(len(resource.paths), 1)
        clock.advance(0.3)
        resource.code = 200
        watch.nudge("llama_server: model loaded")
        self.successResultOf(watch.ready)
        self.assertEqual(prober.announcing, {url})

        # Trusted to announce, not vouched for (see VouchingTests).
        prober.vouched.clear()
        resource.code = 503
        resource.paths.clear()
        again = prober.watch(url)
        self.assertEqual(resource.paths, [])
        clock.pump([0.001] * 300)
        # The back-off only, from 10 ms on: 10, 25, 47.5, 81.25, 121.25 ...
        # 281.25 ms (dense probing every 5 ms from 220 ms would add 16).
        self.assertEqual(len(resource.paths), 9)
        resource.code = 200
        again.nudge("llama_server: listening on http://127.0.0.1:1")
        self.successResultOf(again.ready)

        prober.vouched.clear()
        resource.code = 503
        silent = prober.watch(url)
        clock.advance(0.1)
        resource.code = 200
        clock.pump([0.01] * 5)
        self.successResultOf(silent.ready)
        self.assertEqual(prober.announcing, set())

    def test_announcingIgnoresOtherLines(self) -> None:
        """
        A watch of an upstream trusted to announce its readiness is not
        nudged by other lines (loading chatter); an announcing line still
        probes at once.
        """
        clock = Clock()
        probes = Probes(clock, [False, True])
        loop = ProbeLoop(clock, probes, announces=True)
        self.assertEqual(probes.starts, [])
        clock.advance(0.001)
        loop.nudge("load_tensors: loading model tensors")
        self.assertEqual(probes.starts, [])
        clock.advance(0.0095)
        self.assertEqual(len(probes.starts), 1)
        loop.nudge("print_info: file type = F32")
        self.assertEqual(len(probes.starts), 1)
        loop.nudge("llama_server: model loaded")
        self.assertEqual(len(probes.starts), 2)
        self.successResultOf(loop.ready)

    def test_readyBeforeCancellingOther(self) -> None:
        """
        When one of two probes succeeds, C{ready} fires before the other
        probe is cancelled (aborting its connection is off the critical
        path).
        """
        clock = Clock()
        probes = Probes(clock, [None, None])
        loop = ProbeLoop(clock, probes)
        loop.nudge("model loaded")
        otherCalledAtReady: list[bool] = []
        loop.ready.addCallback(lambda _: otherCalledAtReady.append(probes.pending[0].called))
        probes.pending[1].callback(True)
        self.assertEqual(otherCalledAtReady, [False])
        self.assertTrue(probes.pending[0].called)

    def test_earlyAnnouncementEarnsNoTrust(self) -> None:
        """
        A server that prints an announcing line before it is ready (its
        probe answers 503) and becomes ready silently is not trusted to
        announce: its next watch keeps the immediate first probe.
        """
        url = "http://127.0.0.1:1/health"
        resource = Status(503)
        clock = Clock()
        prober = HTTPHealthProber(RequestTraversalAgent(resource), clock)
        watch = prober.watch(url)
        clock.advance(0.05)
        watch.nudge("HTTP server listening on port 1")
        clock.advance(0.05)
        resource.code = 200
        clock.pump([0.01] * 5)
        self.successResultOf(watch.ready)
        self.assertEqual(prober.announcing, set())
        resource.paths.clear()
        again = prober.watch(url)
        self.assertEqual(len(resource.paths), 1)
        self.successResultOf(again.ready)

    def test_announcedWhicheverProbeAnswers(self) -> None:
        """
        An announcing line counts even when the probe in flight before it
        is the one that finds the server ready; not when the line's own
        probe found it not ready.
        """
        clock = Clock()
        probes = Probes(clock, [None, None])
        loop = ProbeLoop(clock, probes)
        loop.nudge("llama_server: model loaded")
        probes.pending[0].callback(True)
        self.successResultOf(loop.ready)
        self.assertTrue(loop.announced)

        probes = Probes(clock, [None, False, True])
        loop = ProbeLoop(clock, probes)
        loop.nudge("Uvicorn: Application startup complete.")
        probes.pending[0].callback(False)
        clock.advance(0.05)
        self.successResultOf(loop.ready)
        self.assertFalse(loop.announced)


class VouchingTests(SynchronousTestCase):
    """
    An upstream whose announcing line was confirmed by that line's own
    probe is ready at its line on its next starts (no probe), for
    L{VOUCHED_STARTS} starts; then its line is probed again.
    """

    url = "http://127.0.0.1:1/health"

    def setUp(self) -> None:
        self.resource = Status(503)
        self.clock = Clock()
        self.prober = HTTPHealthProber(RequestTraversalAgent(self.resource), self.clock)

    def startWithLine(self, codeAtLine: int, line: str = "srv main: model loaded") -> ProbeLoop:
        """
        One watch: the server loads for 50 ms, then prints C{line} with its
        health at C{codeAtLine}, and is healthy 20 ms later.
        """
        self.resource.code = 503
        watch = self.prober.watch(self.url)
        self.clock.advance(0.05)
        self.resource.code = codeAtLine
        watch.nudge(line)
        self.resource.code = 200
        self.clock.pump([0.01] * 8)
        self.successResultOf(watch.ready)
        return watch

    def test_lineProbeVouches(self) -> None:
        """
        A line whose own probe finds the server ready vouches for it: on
        the next start the line is the readiness, even with no probe sent
        (here the health endpoint would still say 503).
        """
        first = self.startWithLine(200)
        self.assertEqual(first.readyBy, "line probe")
        self.assertEqual(self.prober.vouched, {self.url: VOUCHED_STARTS})

        self.resource.code = 503
        self.resource.paths.clear()
        watch = self.prober.watch(self.url)
        self.clock.advance(0.005)
        watch.nudge("load_tensors: loading model tensors")
        self.assertNoResult(watch.ready)
        watch.nudge("srv main: model loaded")
        self.successResultOf(watch.ready)
        self.assertEqual(watch.readyBy, "line")
        self.assertEqual(self.resource.paths, [])
        self.assertEqual(self.prober.vouched, {self.url: VOUCHED_STARTS - 1})

    def test_vouchingRenewed(self) -> None:
        """
        After L{VOUCHED_STARTS} starts on its word, the line is probed
        again: a 200 renews the vouching, a 503 ends it.
        """
        self.startWithLine(200)
        for _ in range(VOUCHED_STARTS):
            self.assertEqual(self.startWithLine(503).readyBy, "line")
        self.assertEqual(self.prober.vouched, {})
        self.resource.paths.clear()
        renewed = self.startWithLine(200)
        self.assertEqual(renewed.readyBy, "line probe")
        self.assertEqual(self.prober.vouched, {self.url: VOUCHED_STARTS})

        for _ in range(VOUCHED_STARTS):
            self.startWithLine(503)
        ended = self.startWithLine(503)
        self.assertEqual(ended.readyBy, "probe")
        self.assertEqual(self.prober.vouched, {})
        self.assertEqual(self.startWithLine(503).readyBy, "probe")

    def test_vouchedFirstProbe(self) -> None:
        """
        A vouched watch sends its first probe a little after the time its
        line came last time (L{vouchedFirstProbe}), not during the load; a
        server silent this time is found from then on by the back-off.
        """
        self.startWithLine(200)
        expected = self.prober.learned[self.url]
        self.assertAlmostEqual(expected, 0.05)
        self.assertAlmostEqual(vouchedFirstProbe(expected), 0.06)
        self.assertAlmostEqual(vouchedFirstProbe(10.0), 10.05)
        self.resource.code = 503
        self.resource.paths.clear()
        watch = self.prober.watch(self.url)
        self.clock.advance(0.059)
        self.assertEqual(self.resource.paths, [])
        self.clock.advance(0.001)
        self.assertEqual(len(self.resource.paths), 1)
        self.resource.code = 200
        self.clock.pump([0.01] * 2)
        self.successResultOf(watch.ready)
        self.assertEqual(watch.readyBy, "probe")

    def test_connectionsDroppedBeforeSafetyProbe(self) -> None:
        """
        Before a vouched watch probes (its line has not come), the idle
        connections to the server are dropped (C{beforeSafetyProbe} with the
        URL); a watch that is not vouched never calls it.
        """
        dropped: list[tuple[str, int]] = []
        self.prober.beforeSafetyProbe = lambda url: dropped.append(
            (url, len(self.resource.paths))
        )
        self.startWithLine(200)
        self.assertEqual(dropped, [])
        self.resource.code = 503
        self.resource.paths.clear()
        watch = self.prober.watch(self.url)
        self.assertTrue(watch.vouched)
        self.clock.advance(0.059)
        self.assertEqual(dropped, [])
        self.clock.advance(0.001)
        # Dropped before the probe went out.
        self.assertEqual(dropped, [(self.url, 0)])
        self.assertEqual(len(self.resource.paths), 1)
        self.resource.code = 200
        self.clock.pump([0.01] * 2)
        self.successResultOf(watch.ready)

    def test_silentStartEndsVouching(self) -> None:
        """
        A vouched upstream that becomes ready without its line is found by
        the back-off (within 40 ms) and is no longer vouched.
        """
        self.startWithLine(200)
        self.resource.code = 503
        watch = self.prober.watch(self.url)
        self.clock.advance(0.2)
        self.resource.code = 200
        self.clock.pump([0.01] * 4)
        self.successResultOf(watch.ready)
        self.assertEqual(watch.readyBy, "probe")
        self.assertEqual(self.prober.vouched, {})

    def test_onlyTheFirstLineProbeVouches(self) -> None:
        """
        A server whose first announcing line came early (its probe said
        503) earns no vouching when a later line's probe finds it ready.
        """
        self.resource.code = 503
        watch = self.prober.watch(self.url)
        self.clock.advance(0.05)
        watch.nudge("HTTP server listening on port 1")
        self.clock.advance(0.05)
        self.resource.code = 200
        watch.nudge("srv main: model loaded")
        self.successResultOf(watch.ready)
        self.assertEqual(watch.readyBy, "probe")
        self.assertEqual(self.prober.vouched, {})

    def test_vouchedLoopCancelsProbeInFlight(self) -> None:
        """
        A vouched watch probes only by the back-off until its line comes;
        the line makes it ready at once and then cancels the probe in
        flight.
        """
        probes = Probes(self.clock, [None])
        loop = ProbeLoop(self.clock, probes, vouched=True)
        self.assertEqual(probes.starts, [])
        self.clock.advance(0.01)
        self.assertEqual(len(probes.starts), 1)
        inFlightAtReady: list[bool] = []
        loop.ready.addCallback(lambda _: inFlightAtReady.append(probes.pending[0].called))
        loop.nudge("main: server is listening on http://127.0.0.1:1 - starting the main loop")
        self.assertEqual(inFlightAtReady, [False])
        self.assertTrue(probes.pending[0].called)
        self.assertEqual(loop.readyBy, "line")
        self.assertTrue(loop.announced)
