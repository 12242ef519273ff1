# -*- test-case-name: test.upstream.test_health -*-
"""
Readiness probing: C{GET <proxy><checkEndpoint>} until it answers 200.

The first probe goes out at once, then the delay between probes backs off
from 10 ms to at most 40 ms (L{backoffDelays}), so an upstream that prints
nothing when it becomes ready is still noticed within about 40 ms.  Each
probe has its own timeout, so a hanging health endpoint cannot stall the
loop.  Only status 200 counts.  The overall deadline
(C{healthCheckTimeout}) belongs to the lifecycle, which cancels the watch.

The prober I{learns} how long each URL took to become ready the last time
and probes every L{DENSE_DELAY} around that moment (L{denseWindow}), so a
model that loads in the same time as before is noticed within a few
milliseconds even when it is silent; the rest of the wait keeps the
back-off.

The shell also I{nudges} a watch whenever the child prints a line (except
lines naming the health path: those are the server logging our own probes):
servers log when they finish loading, so a nudge probes soon and restarts
the back-off.  "Soon" is at once, but never sooner than L{NUDGE_GAP} after
the previous probe started, and never two probes at a time (a nudge during
a probe is remembered and acted on when it fails); so chatty output raises
the probe rate to at most one per L{NUDGE_GAP}.

A line that I{announces} readiness (L{announcesReadiness}: llama-server's
"model loaded" and "listening on", vLLM's "Application startup complete")
probes at once instead, past the gap; if a probe is in flight it was sent
before the line and may answer for the old state, so one more probe goes
out beside it (at most two at a time: a further announcing line during
that probe makes the next one follow it at once).  llama-server's
"listening" line reaches llamaswap about 2 ms after its previous probe, so
the gap alone cost up to 2 ms of every start.

An upstream that announced its readiness last time (an announcing line
came before it was found ready, and no probe sent for such a line found it
not ready: a server that prints one early does not earn this) is trusted
to do so again: its watch (C{announces}) skips the dense window and the immediate
first probe, is nudged only by announcing lines, and keeps the back-off as
a safety net (a server that stays silent this time is still noticed
within about 40 ms, and loses the trust), so a swap to llama-server sends
one or two probes instead of five or six, all of them while the machine
is busiest (the new server loading, the old one exiting).

An upstream found ready by the very probe its announcing line sent (the
first such probe, answered 200) has shown that the line means "ready"; it
is I{vouched} for its next L{VOUCHED_STARTS} starts: on those, the
announcing line itself is the readiness, with no probe at all.  This is
what llama.cpp's own router does with its children (they tell it they are
ready; it does not poll them), and it is exact for llama-server, which
marks itself ready before it prints "model loaded".  The back-off stays
the safety net while the line has not come (from a little after the time
the line came last time, L{vouchedFirstProbe}, so that no probe lands in
the middle of the load it used to end); after L{VOUCHED_STARTS} starts
on its word, the next start probes on the line again and so renews (or
loses) the vouching; a line whose probe answered anything but 200 loses it
at once.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol
from urllib.parse import urlsplit

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from ..httperrors import describeFailure

FIRST_DELAY = 0.01
FACTOR = 1.5
MAX_DELAY = 0.04
NUDGE_GAP = 0.002
PROBE_TIMEOUT = 5.0
#: The delay between probes around the learned time to readiness.
DENSE_DELAY = 0.005
#: Starts on which a vouched upstream's announcing line is taken as its
#: readiness before its probe is asked again (see the module docstring).
VOUCHED_STARTS = 20

#: Substrings of the output lines with which servers announce that they are
#: ready (llama-server: "main: model loaded", "... listening on http://...",
#: older builds "server is listening on ... - starting the main loop"; vLLM
#: and other uvicorn servers: "Application startup complete.").
READY_MARKERS: tuple[str, ...] = (
    "model loaded",
    "listening on",
    "starting the main loop",
    "Application startup complete",
)


def announcesReadiness(line: str) -> bool:
    """
    Whether output C{line} is one with which a server says it is ready.
    """
    return any(marker in line for marker in READY_MARKERS)


def backoffDelays(
    first: float = FIRST_DELAY, factor: float = FACTOR, cap: float = MAX_DELAY
) -> Iterator[float]:
    """
    Delays between probes: C{first}, then times C{factor}, capped at
    C{cap}, forever.
    """
    delay = first
    while True:
        yield min(delay, cap)
        delay = min(delay * factor, cap)


def denseWindow(expected: float) -> tuple[float, float]:
    """
    When, counted from the watch's start, to probe every L{DENSE_DELAY}
    for an upstream that took C{expected} seconds to become ready last
    time: from 80 % of it (less 20 ms) to 120 % (plus 50 ms).
    """
    return max(0.0, 0.8 * expected - 0.02), 1.2 * expected + 0.05


def vouchedFirstProbe(expected: float) -> float:
    """
    When the first probe of a vouched upstream's watch goes out, for one
    that took C{expected} seconds to become ready last time: 20 % after
    that (at most 50 ms after), when its line has normally come; the
    back-off continues from there.
    """
    return min(1.2 * expected, expected + 0.05)


def healthURL(proxy: str, checkEndpoint: str) -> str:
    """
    The URL probed for C{checkEndpoint} on upstream C{proxy}: the endpoint's
    path (and query) appended to the proxy URL's path.  A full URL as
    C{checkEndpoint} contributes only its path and query, like llama-swap.
    """
    parts = urlsplit(checkEndpoint)
    if parts.scheme and parts.netloc:
        endpoint = parts.path + (f"?{parts.query}" if parts.query else "")
    else:
        endpoint = checkEndpoint
    return proxy.rstrip("/") + "/" + endpoint.lstrip("/")


class HealthWatch(Protocol):
    """
    One running readiness watch.

    @ivar ready: fires with C{None} on the first healthy probe; cancelling
        it stops the watch.
    """

    ready: Deferred[None]
    #: Whether the upstream's announcing line is its readiness this time
    #: (see the module docstring); such a start needs no probe.
    vouched: bool

    def nudge(self, line: str = "") -> None:
        """
        The child showed a sign of life (printed C{line}): probe soon, at
        once if the line announces readiness.
        """

    def cancel(self) -> None:
        """
        Stop probing (the C{ready} Deferred fails with C{CancelledError}).
        """


class HealthProber(Protocol):
    """
    Something that can watch an upstream's health endpoint.
    """

    def watch(self, url: str) -> HealthWatch:
        """
        Start probing C{url}.
        """


ProbeOnce = Callable[[], "Deferred[bool]"]


class ProbeLoop:
    """
    Probe with L{backoffDelays} between probes until one says healthy.

    @ivar probes: how many probes were started.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        probeOnce: ProbeOnce,
        *,
        probeTimeout: float = PROBE_TIMEOUT,
        delays: Callable[[], Iterator[float]] = backoffDelays,
        nudgeGap: float = NUDGE_GAP,
        expected: float | None = None,
        announces: bool = False,
        vouched: bool = False,
        beforeSafetyProbe: Callable[[], object] | None = None,
    ) -> None:
        """
        @param expected: how long the upstream took to become ready last
            time, if known: probes are dense in its L{denseWindow}.
        @param announces: the upstream announced its readiness with a line
            last time: no dense window, and the first probe waits for the
            back-off's first delay (the line probes at once).
        @param vouched: an announcing line is the readiness itself (no
            probe); implies C{announces}; with C{expected}, the first
            probe waits for L{vouchedFirstProbe}.
        @param beforeSafetyProbe: called before each probe of a vouched
            watch (its line has not come): a connection opened ahead for
            the request (L{llamaswap.web.warm}) is dropped, so that a
            server that serves one connection at a time is free to answer.
        """
        announces = announces or vouched
        self._clock = clock
        self.started = clock.seconds()
        self._window = (
            denseWindow(expected) if expected is not None and not announces else None
        )
        self._announces = announces
        #: Whether the upstream announced its readiness (see the module
        #: docstring); final once C{ready} fired.
        self.announced = False
        self._announcementFailed = False
        self.vouched = vouched
        self._beforeSafetyProbe = beforeSafetyProbe
        #: How C{ready} came (final once it fired): C{"line"}, an announcing
        #: line of a vouched upstream; C{"line probe"}, the first probe sent
        #: for an announcing line; C{"probe"}, any other probe.
        self.readyBy: str | None = None
        #: A probe was sent for an announcing line.
        self._lineProbed = False
        self._probeOnce = probeOnce
        self._probeTimeout = probeTimeout
        self._makeDelays = delays
        self._delays = delays()
        self._nudgeGap = nudgeGap
        self._timer: IDelayedCall | None = None
        #: Probes in flight, oldest first (two at most: see L{nudge}).
        self._inFlight: list[Deferred[bool]] = []
        #: The in-flight probe sent for a readiness line, if any.
        self._announced: Deferred[bool] | None = None
        self._lastStart: float | None = None
        self._nudged = False
        #: A readiness line came while its probe was in flight: probe at
        #: once when the probes in flight fail.
        self._announcedAgain = False
        self._done = False
        self.probes = 0
        self.ready: Deferred[None] = Deferred(lambda d: self._stop())
        if vouched and expected is not None:
            # Its line is expected at about C{expected}: the safety net
            # starts just after, not in the middle of the server's load.
            first = max(next(self._delays), vouchedFirstProbe(expected))
            self._timer = clock.callLater(first, self._probe)
        elif announces:
            self._timer = clock.callLater(next(self._delays), self._probe)
        else:
            self._probe()

    def cancel(self) -> None:
        """
        Stop probing.
        """
        if not self.ready.called:
            self.ready.cancel()

    def nudge(self, line: str = "") -> None:
        """
        The child showed a sign of life (printed C{line}): restart the
        back-off and probe as soon as allowed (at least C{nudgeGap} after
        the last probe started; after the probe in flight, if any).  A
        line that L{announcesReadiness} probes at once; a watch of an
        upstream trusted to announce ignores the other lines (see the
        module docstring).
        """
        announcing = announcesReadiness(line)
        if self._done or (self._announces and not announcing):
            # Trusted to announce: other lines are no reason to probe.
            return
        self._delays = self._makeDelays()
        if announcing and self.vouched:
            self.announced = True
            self._readyBy("line")
        elif announcing:
            self.announced = not self._announcementFailed
            self._probeAnnounced()
        elif self._inFlight:
            self._nudged = True
        else:
            self._probeSoon()

    def _probeAnnounced(self) -> None:
        if self._announced is not None:
            self._announcedAgain = True
            return
        self._cancelTimer()
        self._probe(announced=True)

    def _probeSoon(self) -> None:
        now = self._clock.seconds()
        earliest = now if self._lastStart is None else self._lastStart + self._nudgeGap
        delay = max(0.0, earliest - now)
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= now + delay:
                return
            self._timer.cancel()
        self._timer = None
        if delay == 0.0:
            self._probe()
        else:
            self._timer = self._clock.callLater(delay, self._probe)

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _stop(self, cancel: bool = True) -> None:
        self._done = True
        self._cancelTimer()
        inFlight, self._inFlight = self._inFlight, []
        self._announced = None
        if cancel:
            for d in inFlight:
                d.cancel()

    def _probe(self, announced: bool = False) -> None:
        """
        Send a probe (C{announced}: for a readiness line).
        """
        self._timer = None
        if self.vouched and self._beforeSafetyProbe is not None:
            try:
                self._beforeSafetyProbe()
            except Exception:
                self.log.failure("before the safety-net probe")
        self.probes += 1
        self._lastStart = self._clock.seconds()
        try:
            d = self._probeOnce()
        except Exception:
            d = Deferred()
            d.errback()
        d.addTimeout(self._probeTimeout, self._clock)
        self._inFlight.append(d)
        firstLineProbe = announced and not self._lineProbed
        if announced:
            self._announced = d
            self._lineProbed = True
        d.addBoth(self._probeDone, d, firstLineProbe)

    def _probeDone(
        self, result: bool | Failure, d: Deferred[bool], firstLineProbe: bool = False
    ) -> None:
        if d not in self._inFlight or self._done:
            return None
        self._inFlight.remove(d)
        announced = self._announced
        if d is announced:
            self._announced = None
        if d is announced and result is not True:
            self._announcementFailed = True
            self.announced = False
        if result is True:
            self._readyBy("line probe" if firstLineProbe else "probe")
            return None
        if isinstance(result, Failure) and not result.check(CancelledError):
            self.log.debug("health probe failed: {error}", error=describeFailure(result))
        if self._inFlight:
            # The other probe decides what comes next.
            return None
        if self._announcedAgain:
            self._announcedAgain = False
            self._nudged = False
            self._probeAnnounced()
        elif self._nudged:
            self._nudged = False
            self._probeSoon()
        else:
            self._timer = self._clock.callLater(self._nextDelay(), self._probe)
        return None

    def _readyBy(self, how: str) -> None:
        """
        Ready (C{how}: see L{readyBy}): fire C{ready} first, then cancel
        the probes in flight (off the critical path: aborting a connection
        takes a while).
        """
        self.readyBy = how
        others = list(self._inFlight)
        self._stop(cancel=False)
        self.ready.callback(None)
        for other in others:
            other.cancel()

    def _nextDelay(self) -> float:
        """
        The back-off's next delay, shortened to reach or stay in the dense
        window around the expected time to readiness.
        """
        delay = next(self._delays)
        if self._window is None:
            return delay
        elapsed = self._clock.seconds() - self.started
        low, high = self._window
        if elapsed < low:
            return min(delay, low - elapsed)
        if elapsed < high:
            return min(delay, DENSE_DELAY)
        return delay


@define(eq=False, slots=False)
class HTTPHealthProber:
    """
    A L{HealthProber} that C{GET}s the URL with an L{IAgent}; only status
    200 is healthy.  Each probe reads (and discards) the body so a pooled
    connection can be reused, within C{probeTimeout} seconds.  It remembers
    how long each URL took to become ready, and whether its server
    announced it with a line, for the next watch of it.
    """

    _agent: IAgent
    _clock: IReactorTime
    _probeTimeout: float = PROBE_TIMEOUT
    #: C{beforeSafetyProbe(url)}: see L{ProbeLoop}.
    beforeSafetyProbe: Callable[[str], object] | None = None
    learned: dict[str, float] = field(factory=dict, init=False)
    announcing: set[str] = field(factory=set, init=False)
    #: URLs whose announcing line is their readiness, with the starts left
    #: on that word (see the module docstring).
    vouched: dict[str, int] = field(factory=dict, init=False)

    def probeOnce(self, url: str) -> Deferred[bool]:
        """
        One probe of C{url}: C{True} for status 200, C{False} for any other
        status; fails if the connection fails.  Cancelling it aborts the
        connection.
        """
        return Deferred.fromCoroutine(self._probe(url))

    async def _probe(self, url: str) -> bool:
        response: IResponse = await self._agent.request(
            b"GET",
            url.encode("ascii"),
            Headers({b"user-agent": [b"llamaswap-health"]}),
            None,
        )
        healthy = bool(response.code == 200)
        try:
            await readBody(response)
        except CancelledError:
            raise
        except Exception:
            # The status decides; a body cut short (an HTTP/1.0 server
            # without Content-Length) does not.
            pass
        return healthy

    def watch(self, url: str) -> ProbeLoop:
        """
        Probe C{url} until healthy.
        """
        loop = ProbeLoop(
            self._clock,
            lambda: self.probeOnce(url),
            probeTimeout=self._probeTimeout,
            expected=self.learned.get(url),
            announces=url in self.announcing,
            vouched=url in self.vouched,
            beforeSafetyProbe=(
                None
                if self.beforeSafetyProbe is None
                else lambda: self.beforeSafetyProbe(url)  # type: ignore[misc]
            ),
        )

        def learn(result: None) -> None:
            self.learned[url] = self._clock.seconds() - loop.started
            if loop.announced:
                self.announcing.add(url)
            else:
                self.announcing.discard(url)
            left = self.vouched.pop(url, 0)
            if loop.readyBy == "line" and left > 1:
                self.vouched[url] = left - 1
            elif loop.readyBy == "line probe":
                self.vouched[url] = VOUCHED_STARTS
            return result

        loop.ready.addCallback(learn)
        return loop
