# -*- test-case-name: test.observe.test_monitors -*-
"""
The log monitors of one llamaswap, fed from C{twisted.logger}.

L{LogMonitors} holds llama-swap's monitors: C{proxy} (llamaswap's own
messages and the access log), C{upstream} (every upstream's output, each
line prefixed with C{[model] }), one per model (that model's raw output)
and C{combined} (what C{/logs} serves: proxy and/or upstream lines as
C{logToStdout} says).

There is no second logging system: llamaswap's code logs with
L{twisted.logger.Logger} as usual, and L{ProxyLogObserver}, an observer on
the global log publisher, turns llamaswap's events into proxy-log lines
(filtered by C{logLevel}, stamped per C{logTimeFormat}).  Upstream lines
come from the supervisors' output observers (L{LogMonitors.upstreamLine}).

What reaches stdout is C{logToStdout}'s choice.  Under twistd stdout I{is}
the global log, so nothing is printed: upstream lines are published as log
events (namespace L{UPSTREAM_OUTPUT_NAMESPACE}) when the mode includes
them, and the observers present when logging starts (twistd's file or
stdout observer) are put behind a L{StdoutGate} that drops llamaswap's own
events when the mode excludes the proxy log or their level is below
C{logLevel}.  Failures (tracebacks) always pass the gate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogPublisher,
    PredicateResult,
    formatTime,
    globalLogPublisher,
)
from zope.interface import implementer

from ..compat import classicTextFile, logObservers
from ..delayed import cancelCall
from .logformat import LINE_FORMAT, formatEventLine, parseLevel
from .logs import RING_BYTES, Monitor, closeAll

#: Pre-rendered lines (the access log) are written to twistd's log
#: together at the end of the reactor turn that logged them: under load a
#: turn ends many requests, and the lines still leave before the reactor
#: reads anything more.
LINES_DELAY = 0
#: Namespace of the log events that carry upstream output to stdout.
UPSTREAM_OUTPUT_NAMESPACE = "llamaswap.upstream.output"
#: The C{logToStdout} modes, and which logs each sends to stdout and C{/logs}.
STDOUT_MODES: dict[str, tuple[bool, bool]] = {
    "proxy": (True, False),
    "upstream": (False, True),
    "both": (True, True),
    "none": (False, False),
}

_PRIORITY = {
    LogLevel.debug: 0,
    LogLevel.info: 1,
    LogLevel.warn: 2,
    LogLevel.error: 3,
    LogLevel.critical: 4,
}


def priority(level: Any) -> int:
    """
    A level's rank, lowest for debug; unknown levels rank as info.
    """
    return _PRIORITY.get(level, 1)


def isProxyEvent(event: dict) -> bool:
    """
    Whether C{event} comes from llamaswap's own loggers (the proxy log), not
    an upstream's output nor Twisted.
    """
    namespace = event.get("log_namespace") or ""
    if namespace == UPSTREAM_OUTPUT_NAMESPACE:
        return False
    return namespace == "llamaswap" or namespace.startswith("llamaswap.")


@implementer(ILogObserver)
class ProxyLogObserver:
    """
    Writes log events into the proxy monitor as lines: llamaswap's events at
    or above C{level}, other code's (Twisted's) at warn or above, and every
    failure.
    """

    def __init__(self, monitor: Monitor, level: LogLevel, timeFormat: str = "") -> None:
        self.monitor = monitor
        self.level = level
        self.timeFormat = timeFormat
        self._busy = False
        self._pending: deque[bytes] = deque()

    def wants(self, event: dict) -> bool:
        """
        Whether C{event} belongs in the proxy log.
        """
        if event.get("log_namespace") == UPSTREAM_OUTPUT_NAMESPACE:
            return False
        rank = priority(event.get("log_level"))
        if isProxyEvent(event):
            return rank >= priority(self.level)
        return event.get("log_failure") is not None or rank >= max(
            priority(self.level), priority(LogLevel.warn)
        )

    def __call__(self, event: dict) -> None:
        if not self.wants(event):
            return
        self._pending.append(formatEventLine(event, self.timeFormat))
        if self._busy:
            # Logged while writing (a failing subscriber): written next.
            return
        self._busy = True
        try:
            while self._pending:
                self.monitor.write(self._pending.popleft())
        finally:
            self._busy = False


class StdoutGate:
    """
    An C{ILogFilterPredicate} deciding which events reach stdout (the
    observers present when logging began, e.g. twistd's) per
    C{logToStdout} and C{logLevel}: llamaswap's own events only when the
    proxy log goes to stdout and at or above the level, upstream output
    events only when upstream output goes to stdout, everything else
    untouched.  Events carrying a failure always pass.
    """

    def __init__(self, mode: str, level: LogLevel, clock: IReactorTime | None = None) -> None:
        """
        @param clock: times the gathered writes of pre-rendered lines
            (L{ClassicLineWriter}); without one they are written at once.
        """
        self.proxy, self.upstream = STDOUT_MODES[mode]
        self.level = level
        self._clock = clock
        self._gated: list[_Gated] = []

    def __call__(self, event: dict) -> PredicateResult:
        if event.get("log_failure") is not None:
            return PredicateResult.maybe
        if event.get("log_namespace") == UPSTREAM_OUTPUT_NAMESPACE:
            return PredicateResult.yes if self.upstream else PredicateResult.no
        if isProxyEvent(event):
            if self.proxy and priority(event.get("log_level")) >= priority(self.level):
                return PredicateResult.yes
            return PredicateResult.no
        return PredicateResult.maybe

    def install(self, publisher: LogPublisher, exclude: Iterable[object] = ()) -> None:
        """
        Put every observer of C{publisher} (except C{exclude}) behind this
        gate.  C{LogPublisher} has no public way to list its observers
        (L{logObservers}); if that ever disappears, nothing is gated.
        """
        observers = logObservers(publisher)
        if observers is None:
            return
        skip = list(exclude)
        for index, observer in enumerate(observers):
            if any(observer is s for s in skip) or isinstance(observer, _Gated):
                continue
            gated = _Gated(observer, self, self._clock)
            observers[index] = gated
            self._gated.append(gated)

    def uninstall(self, publisher: LogPublisher) -> None:
        """
        Put back the observers L{install} gated (those still registered).
        """
        observers = logObservers(publisher)
        for gated in self._gated:
            gated.flush()
            if observers is not None:
                for index, observer in enumerate(observers):
                    if observer is gated:
                        observers[index] = gated.original
                        break
        self._gated = []


class ClassicLineWriter:
    """
    Writes pre-rendered log lines (events whose C{log_format} is
    C{{line}}, like the access log's) to a twistd text log file exactly as
    its L{textFileLogObserver} would, C{<time> [<namespace>#<level>]
    <line>}, without Twisted's per-event formatting: the time stamp is
    formatted once per second, the line was rendered once by its sender.
    """

    def __init__(
        self, outFile: Any, timeFormat: str | None, clock: IReactorTime | None = None
    ) -> None:
        """
        @param clock: with a clock, the lines of one reactor turn are
            gathered and written together at its end (L{LINES_DELAY}: one
            C{write} system call for many requests); without one each is
            written at once.
        """
        self._outFile = outFile
        self._timeFormat = timeFormat
        # A stamp with sub-second fields cannot be reused.
        self._reuse = timeFormat is not None and "%f" not in timeFormat
        self._second: int | None = None
        self._stamp = "-"
        self._clock = clock
        self._pending: list[str] = []
        self._flushCall: IDelayedCall | None = None

    @staticmethod
    def handles(event: dict) -> bool:
        """
        Whether C{event} is a pre-rendered line this writer can write.
        """
        return (
            event.get("log_format") == LINE_FORMAT
            and "line" in event
            and "log_failure" not in event
            and event.get("log_system") is None
        )

    def _timeStamp(self, when: float | None) -> str:
        if when is None or self._timeFormat is None:
            return "-"
        if not self._reuse:
            return formatTime(when, self._timeFormat)
        second = int(when)
        if second != self._second:
            self._stamp = formatTime(second, self._timeFormat)
            self._second = second
        return self._stamp

    def __call__(self, event: dict) -> None:
        text = str(event["line"])
        if not text:
            return
        level = event.get("log_level")
        system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
        line = f"{self._timeStamp(event.get('log_time'))} [{system}] {text}"
        if "\n" in line:
            line = line.replace("\n", "\n\t")
        if self._clock is None:
            self._outFile.write(line + "\n")
            self._outFile.flush()
            return
        self._pending.append(line + "\n")
        if self._flushCall is None:
            self._flushCall = self._clock.callLater(LINES_DELAY, self.flush)

    def flush(self) -> None:
        """
        Write the gathered lines now.
        """
        self._flushCall = cancelCall(self._flushCall)
        pending, self._pending = self._pending, []
        if pending:
            self._outFile.write("".join(pending))
            self._outFile.flush()


class _Gated(FilteringLogObserver):
    """
    An observer behind a L{StdoutGate}.  It compares equal to the observer
    it wraps, so its owner's C{removeObserver} still removes it.  When it
    wraps twistd's text log observer, pre-rendered lines (the access log)
    are written by a L{ClassicLineWriter} instead, in the same format.
    """

    def __init__(
        self, original: ILogObserver, gate: StdoutGate, clock: IReactorTime | None = None
    ) -> None:
        super().__init__(original, [gate])
        self.original = original
        self._gate = gate
        textFile = classicTextFile(original)
        self._lines = ClassicLineWriter(*textFile, clock) if textFile is not None else None

    def __call__(self, event: dict) -> None:
        lines = self._lines
        if lines is not None:
            if lines.handles(event):
                if self._gate(event) is not PredicateResult.no:
                    lines(event)
                return
            # Lines gathered so far come first.
            lines.flush()
        super().__call__(event)

    def flush(self) -> None:
        if self._lines is not None:
            self._lines.flush()

    def __eq__(self, other: object) -> bool:
        return other is self or other is self.original or other == self.original

    def __hash__(self) -> int:
        return hash(self.original)


class LogMonitors:
    """
    Every log monitor of one llamaswap and their wiring.

    @ivar proxy: llamaswap's own messages and the access log.
    @ivar upstream: every upstream's output, lines prefixed C{[model] }.
    @ivar combined: what C{/logs} and C{/logs/stream} serve.
    @ivar models: model ID to the monitor of its raw output.
    @ivar level: the C{logLevel}.
    @ivar mode: the C{logToStdout} mode.
    """

    def __init__(
        self,
        modelIDs: Iterable[str] = (),
        *,
        level: str = "info",
        timeFormat: str = "",
        toStdout: str = "proxy",
        capacity: int = RING_BYTES,
        publisher: LogPublisher | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param clock: lets access lines bound for twistd's log be written
            in batches (L{ClassicLineWriter}).
        """
        if toStdout not in STDOUT_MODES:
            raise ValueError(f"logToStdout must be one of {', '.join(STDOUT_MODES)}")
        self.level = parseLevel(level)
        self.timeFormat = timeFormat
        self.mode = toStdout
        self._capacity = capacity
        self._publisher = publisher if publisher is not None else globalLogPublisher
        self.proxy = Monitor("proxy", capacity)
        self.upstream = Monitor("upstream", capacity)
        self.combined = Monitor("combined", capacity)
        proxyToStdout, upstreamToStdout = STDOUT_MODES[toStdout]
        if proxyToStdout:
            self.proxy.forwardTo(self.combined)
        if upstreamToStdout:
            self.upstream.forwardTo(self.combined)
        self.models: dict[str, Monitor] = {m: Monitor(m, capacity) for m in modelIDs}
        self.proxyObserver = ProxyLogObserver(self.proxy, self.level, timeFormat)
        self.gate = StdoutGate(toStdout, self.level, clock)
        self._stdoutLog = Logger(namespace=UPSTREAM_OUTPUT_NAMESPACE, observer=self._publisher)
        self._upstreamToStdout = upstreamToStdout
        self.started = False

    @classmethod
    def fromConfig(cls, config: Any, **kw: Any) -> LogMonitors:
        """
        The monitors for a L{llamaswap.config.model.Config}.
        """
        return cls(
            config.models,
            level=config.logLevel,
            timeFormat=config.logTimeFormat,
            toStdout=config.logToStdout,
            **kw,
        )

    def reconfigure(self, config: Any) -> None:
        """
        Apply a reloaded C{logLevel} and C{logTimeFormat} (C{logToStdout}
        is read only at start); models keep their history, new models get
        a monitor.
        """
        self.level = parseLevel(config.logLevel)
        self.timeFormat = config.logTimeFormat
        self.proxyObserver.level = self.level
        self.proxyObserver.timeFormat = self.timeFormat
        self.gate.level = self.level
        for modelID in config.models:
            self.modelMonitor(modelID)

    def monitorFor(self, name: str) -> Monitor | None:
        """
        The monitor C{/logs/stream/<name>} means: C{""} the combined log,
        C{proxy}, C{upstream}, or a model ID; L{None} if none.
        """
        if name == "":
            return self.combined
        if name == "proxy":
            return self.proxy
        if name == "upstream":
            return self.upstream
        return self.models.get(name)

    def modelMonitor(self, modelID: str) -> Monitor:
        """
        The monitor of C{modelID}'s output, created if needed.
        """
        monitor = self.models.get(modelID)
        if monitor is None:
            monitor = self.models[modelID] = Monitor(modelID, self._capacity)
        return monitor

    def upstreamLine(self, modelID: str, stream: str, line: str) -> None:
        """
        An output line of C{modelID}'s upstream (a supervisor output
        observer): into the model's monitor as is, into the upstream log
        prefixed with the model, and to stdout when the mode says so.
        Output is never filtered by level.
        """
        data = (line + "\n").encode("utf-8", "replace")
        self.modelMonitor(modelID).write(data)
        self.upstream.write(b"[" + modelID.encode("utf-8", "replace") + b"] " + data)
        if self._upstreamToStdout and self.started:
            self._stdoutLog.info("[{model}] {line}", model=modelID, line=line, stream=stream)

    def start(self) -> None:
        """
        Begin observing llamaswap's log events and gate stdout.
        """
        if self.started:
            return
        self.started = True
        self.gate.install(self._publisher)
        self._publisher.addObserver(self.proxyObserver)

    def stop(self) -> None:
        """
        Stop observing, restore stdout and end every live subscription.
        """
        if self.started:
            self.started = False
            self._publisher.removeObserver(self.proxyObserver)
            self.gate.uninstall(self._publisher)
        closeAll([self.proxy, self.upstream, self.combined, *self.models.values()])


__all__ = [
    "STDOUT_MODES",
    "ClassicLineWriter",
    "UPSTREAM_OUTPUT_NAMESPACE",
    "LogMonitors",
    "ProxyLogObserver",
    "StdoutGate",
    "isProxyEvent",
    "priority",
]
