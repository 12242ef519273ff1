"""
Tests for L{llamaswap.observe.monitors}: the proxy log fed from
C{twisted.logger}, upstream lines, levels and the stdout gate.
"""

from __future__ import annotations

import io

from twisted.logger import (
    Logger,
    LogLevel,
    LogPublisher,
    textFileLogObserver,
    timeFormatRFC3339,
)
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.load import loadConfigText
from llamaswap.observe.access import AccessLine
from llamaswap.observe.logformat import LINE_FORMAT
from llamaswap.observe.monitors import (
    LINES_DELAY,
    UPSTREAM_OUTPUT_NAMESPACE,
    ClassicLineWriter,
    LogMonitors,
    StdoutGate,
    isProxyEvent,
)


def started(
    test: SynchronousTestCase, **kw: object
) -> tuple[LogMonitors, LogPublisher, list[dict]]:
    """
    L{LogMonitors} for models C{a} and C{b} on a private publisher whose
    one observer (standing in for twistd's stdout) records what it sees.
    """
    stdout: list[dict] = []
    publisher = LogPublisher(stdout.append)
    monitors = LogMonitors(["a", "b"], publisher=publisher, **kw)  # type: ignore[arg-type]
    monitors.start()
    test.addCleanup(monitors.stop)
    return monitors, publisher, stdout


def proxyLogger(publisher: LogPublisher) -> Logger:
    """
    A logger in llamaswap's namespace on C{publisher}.
    """
    return Logger(namespace="llamaswap.test", observer=publisher)


def texts(events: list[dict]) -> list[str]:
    """
    The formatted messages of C{events}.
    """
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in events]


class ProxyLogTests(SynchronousTestCase):
    """
    llamaswap's log events become proxy-log lines.
    """

    def test_lines(self) -> None:
        """
        An info event from a llamaswap logger is a C{[INFO]} line in the
        proxy monitor and (mode C{proxy}) in the combined one.
        """
        monitors, publisher, _ = started(self)
        proxyLogger(publisher).info("model {model} ready", model="a")
        self.assertEqual(monitors.proxy.history(), b"[INFO] model a ready\n")
        self.assertEqual(monitors.combined.history(), b"[INFO] model a ready\n")
        self.assertEqual(monitors.upstream.history(), b"")

    def test_levelFilter(self) -> None:
        """
        Events below C{logLevel} are left out; at or above it they are kept.
        """
        monitors, publisher, _ = started(self, level="warn")
        log = proxyLogger(publisher)
        log.debug("d")
        log.info("i")
        log.warn("w")
        log.error("e")
        self.assertEqual(monitors.proxy.history(), b"[WARN] w\n[ERROR] e\n")

    def test_debug(self) -> None:
        """
        C{logLevel: debug} keeps debug events.
        """
        monitors, publisher, _ = started(self, level="debug")
        proxyLogger(publisher).debug("probe failed")
        self.assertEqual(monitors.proxy.history(), b"[DEBUG] probe failed\n")

    def test_timeFormat(self) -> None:
        """
        C{logTimeFormat} stamps each line.
        """
        monitors, publisher, _ = started(self, timeFormat="rfc3339")
        proxyLogger(publisher).info("hello")
        self.assertRegex(
            monitors.proxy.history().decode(),
            r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* \[INFO\] hello\n$",
        )

    def test_foreignEvents(self) -> None:
        """
        Other code's (Twisted's) events join the proxy log only at warn and
        above or with a failure; "Starting factory" chatter does not.
        """
        monitors, publisher, _ = started(self)
        other = Logger(namespace="twisted.internet.protocol", observer=publisher)
        other.info("Starting factory {f}", f="x")
        other.warn("something odd")
        try:
            1 / 0
        except ZeroDivisionError:
            other.failure("Unhandled error")
        history = monitors.proxy.history()
        self.assertNotIn(b"Starting factory", history)
        self.assertIn(b"[WARN] something odd\n", history)
        self.assertIn(b"[ERROR] Unhandled error\n", history)
        self.assertIn(b"ZeroDivisionError", history)

    def test_stopped(self) -> None:
        """
        After L{LogMonitors.stop} events are no longer recorded.
        """
        monitors, publisher, _ = started(self)
        monitors.stop()
        proxyLogger(publisher).info("late")
        self.assertEqual(monitors.proxy.history(), b"")

    def test_logDuringDelivery(self) -> None:
        """
        A line logged while a line is being delivered (a subscriber
        failing) is written after it, not lost and not nested.
        """
        monitors, publisher, _ = started(self)
        log = proxyLogger(publisher)
        seen: list[bytes] = []

        def deliver(data: bytes) -> None:
            seen.append(data)
            if len(seen) == 1:
                log.info("second")

        monitors.proxy.subscribe(deliver)
        log.info("first")
        self.assertEqual(seen, [b"[INFO] first\n", b"[INFO] second\n"])


class UpstreamLineTests(SynchronousTestCase):
    """
    Upstream output goes to its model, the upstream log and maybe stdout.
    """

    def test_routing(self) -> None:
        """
        A line lands raw in its own model's monitor only, and prefixed with
        the model in the upstream log; mode C{proxy} keeps it out of the
        combined log and stdout.
        """
        monitors, publisher, stdout = started(self)
        monitors.upstreamLine("a", "stdout", "loading model")
        monitors.upstreamLine("b", "stderr", "other")
        self.assertEqual(monitors.models["a"].history(), b"loading model\n")
        self.assertEqual(monitors.models["b"].history(), b"other\n")
        self.assertEqual(monitors.upstream.history(), b"[a] loading model\n[b] other\n")
        self.assertEqual(monitors.combined.history(), b"")
        self.assertEqual(monitors.proxy.history(), b"")
        self.assertEqual(stdout, [])

    def test_neverFiltered(self) -> None:
        """
        Output is not subject to C{logLevel}.
        """
        monitors, _, _ = started(self, level="error")
        monitors.upstreamLine("a", "stdout", "chatter")
        self.assertEqual(monitors.models["a"].history(), b"chatter\n")

    def test_unknownModel(self) -> None:
        """
        A model without a monitor (added later) gets one.
        """
        monitors, _, _ = started(self)
        monitors.upstreamLine("c", "stdout", "hi")
        self.assertEqual(monitors.monitorFor("c").history(), b"hi\n")  # type: ignore[union-attr]

    def test_monitorFor(self) -> None:
        """
        C{""}, C{proxy}, C{upstream} and model IDs name monitors.
        """
        monitors = LogMonitors(["a"], publisher=LogPublisher())
        self.assertIs(monitors.monitorFor(""), monitors.combined)
        self.assertIs(monitors.monitorFor("proxy"), monitors.proxy)
        self.assertIs(monitors.monitorFor("upstream"), monitors.upstream)
        self.assertIs(monitors.monitorFor("a"), monitors.models["a"])
        self.assertIsNone(monitors.monitorFor("zzz"))

    def test_badMode(self) -> None:
        """
        An unknown C{logToStdout} is refused (the config rejects it first).
        """
        self.assertRaises(ValueError, LogMonitors, [], toStdout="stderr")

    def test_fromConfig(self) -> None:
        """
        The config's models, level, time format and mode are used.
        """
        config = loadConfigText(
            "logLevel: debug\nlogTimeFormat: kitchen\nlogToStdout: both\n"
            "models:\n  m1:\n    cmd: srv --port ${PORT}\n",
            "t.yaml",
            environ={},
        ).config
        monitors = LogMonitors.fromConfig(config, publisher=LogPublisher())
        self.assertEqual(list(monitors.models), ["m1"])
        self.assertEqual(monitors.level, LogLevel.debug)
        self.assertEqual(monitors.timeFormat, "kitchen")
        self.assertEqual(monitors.mode, "both")


class StdoutModeTests(SynchronousTestCase):
    """
    C{logToStdout} decides what the combined log and stdout get; each
    monitor keeps its own history in every mode.
    """

    def emit(self, mode: str, level: str = "info") -> tuple[LogMonitors, list[str]]:
        """
        Log a proxy info and debug line, a Twisted line and an upstream
        line in C{mode}; return the monitors and what stdout got.
        """
        monitors, publisher, stdout = started(self, toStdout=mode, level=level)
        proxyLogger(publisher).info("proxy says")
        proxyLogger(publisher).debug("proxy whispers")
        Logger(namespace="twisted.web", observer=publisher).info("twisted says")
        monitors.upstreamLine("a", "stdout", "upstream says")
        return monitors, texts(stdout)

    def test_proxy(self) -> None:
        """
        C{proxy}: the combined log and stdout get the proxy log only.
        """
        monitors, stdout = self.emit("proxy")
        self.assertEqual(monitors.combined.history(), b"[INFO] proxy says\n")
        self.assertEqual(stdout, ["proxy says", "twisted says"])

    def test_upstream(self) -> None:
        """
        C{upstream}: they get upstream output only; the proxy monitor
        still keeps its own history.
        """
        monitors, stdout = self.emit("upstream")
        self.assertEqual(monitors.combined.history(), b"[a] upstream says\n")
        self.assertEqual(stdout, ["twisted says", "[a] upstream says"])
        self.assertEqual(monitors.proxy.history(), b"[INFO] proxy says\n")

    def test_both(self) -> None:
        """
        C{both}: proxy and upstream lines, interleaved.
        """
        monitors, stdout = self.emit("both")
        self.assertEqual(
            monitors.combined.history(), b"[INFO] proxy says\n[a] upstream says\n"
        )
        self.assertEqual(stdout, ["proxy says", "twisted says", "[a] upstream says"])

    def test_none(self) -> None:
        """
        C{none}: the combined log is empty and stdout has only Twisted's
        own events; every other monitor keeps its history.
        """
        monitors, stdout = self.emit("none")
        self.assertEqual(monitors.combined.history(), b"")
        self.assertEqual(stdout, ["twisted says"])
        self.assertEqual(monitors.proxy.history(), b"[INFO] proxy says\n")
        self.assertEqual(monitors.upstream.history(), b"[a] upstream says\n")
        self.assertEqual(monitors.models["a"].history(), b"upstream says\n")

    def test_levelAppliesToStdout(self) -> None:
        """
        Debug events reach stdout only with C{logLevel: debug}.
        """
        _, stdout = self.emit("proxy", level="debug")
        self.assertIn("proxy whispers", stdout)

    def test_failuresAlwaysPass(self) -> None:
        """
        A failure logged by llamaswap reaches stdout even in mode C{none}.
        """
        _, publisher, stdout = started(self, toStdout="none")
        proxyLogger(publisher).failure("boom", Failure(ValueError("x")))
        self.assertEqual(texts(stdout), ["boom"])

    def test_restored(self) -> None:
        """
        After L{LogMonitors.stop} the original observers are back, and the
        owner of a gated observer can still remove it while gated.
        """
        stdout: list[dict] = []
        other: list[dict] = []
        publisher = LogPublisher(stdout.append, other.append)
        monitors = LogMonitors([], publisher=publisher, toStdout="none")
        monitors.start()
        publisher.removeObserver(other.append)
        proxyLogger(publisher).info("hidden")
        monitors.stop()
        proxyLogger(publisher).info("visible")
        self.assertEqual(texts(stdout), ["visible"])
        self.assertEqual(other, [])

    def test_gatePredicate(self) -> None:
        """
        The gate's verdicts by namespace.
        """
        from twisted.logger import PredicateResult

        gate = StdoutGate("upstream", LogLevel.info)
        upstream = {"log_namespace": UPSTREAM_OUTPUT_NAMESPACE, "log_level": LogLevel.info}
        proxy = {"log_namespace": "llamaswap.app", "log_level": LogLevel.error}
        other = {"log_namespace": "twisted", "log_level": LogLevel.info}
        self.assertEqual(gate(upstream), PredicateResult.yes)
        self.assertEqual(gate(proxy), PredicateResult.no)
        self.assertEqual(gate(other), PredicateResult.maybe)
        self.assertTrue(isProxyEvent({"log_namespace": "llamaswap"}))
        self.assertFalse(isProxyEvent({"log_namespace": "llamaswapper"}))
        self.assertFalse(isProxyEvent({}))


class ClassicLinesTests(SynchronousTestCase):
    """
    Pre-rendered lines (the access log's) reach twistd's text log through
    L{ClassicLineWriter}, exactly as Twisted's observer would write them.
    """

    def accessEvent(self, when: float, text: str = 'Request 127.0.0.1 "GET /x HTTP/1.1"') -> dict:
        line = AccessLine({})
        line._text = text  # rendered already
        return {
            "line": line,
            "log_format": LINE_FORMAT,
            "log_level": LogLevel.info,
            "log_namespace": "llamaswap.access",
            "log_source": None,
            "log_logger": None,
            "log_time": when,
        }

    def test_sameAsTwisted(self) -> None:
        """
        Same text as L{textFileLogObserver} for every time format, across
        second boundaries, with a newline in the line, and without a time.
        """
        for timeFormat in (timeFormatRFC3339, "%H:%M:%S.%f", None):
            ours, theirs = io.StringIO(), io.StringIO()
            writer = ClassicLineWriter(ours, timeFormat)
            twisted = textFileLogObserver(theirs, timeFormat)
            events = [self.accessEvent(t) for t in (1.0, 1.2, 1.9, 2.0, 3600.5, 86400.25)]
            events.append(self.accessEvent(5.0, "two\nlines"))
            events.append({**self.accessEvent(5.0), "log_time": None})
            for event in events:
                self.assertTrue(writer.handles(event))
                writer(event)
                twisted(event)
            self.assertEqual(ours.getvalue(), theirs.getvalue())
            self.assertIn("[llamaswap.access#info] Request", ours.getvalue())

    def test_gathered(self) -> None:
        """
        With a clock, lines are written together, in order, with one write
        at the end of the reactor turn: the same text as Twisted's.
        """

        class Counting(io.StringIO):
            writes = 0

            def write(self, text: str) -> int:
                self.writes += 1
                return super().write(text)

        clock = Clock()
        ours, theirs = Counting(), io.StringIO()
        writer = ClassicLineWriter(ours, timeFormatRFC3339, clock)
        twisted = textFileLogObserver(theirs, timeFormatRFC3339)
        for when in (1.0, 1.5, 2.0):
            writer(self.accessEvent(when))
            twisted(self.accessEvent(when))
        self.assertEqual(ours.getvalue(), "")
        clock.advance(LINES_DELAY)
        self.assertEqual((ours.getvalue(), ours.writes), (theirs.getvalue(), 1))
        writer(self.accessEvent(3.0))
        writer.flush()
        self.assertEqual(ours.writes, 2)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_gatheredLinesComeFirst(self) -> None:
        """
        Behind the gate, an event Twisted formats itself writes the lines
        gathered before it first; stopping the monitors writes the rest.
        """
        clock = Clock()
        out = io.StringIO()
        publisher = LogPublisher(textFileLogObserver(out))
        monitors = LogMonitors([], publisher=publisher, clock=clock)
        monitors.start()
        publisher(self.accessEvent(7.0, "first"))
        Logger(namespace="twisted.web", observer=publisher).info("second")
        publisher(self.accessEvent(8.0, "third"))
        text = out.getvalue()
        self.assertLess(text.index("first"), text.index("second"))
        self.assertNotIn("third", text)
        monitors.stop()
        self.assertIn("third", out.getvalue())
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_otherEvents(self) -> None:
        """
        Events with a format, a failure or a system of their own are left to
        Twisted's formatting.
        """
        event = self.accessEvent(1.0)
        handles = ClassicLineWriter.handles
        self.assertFalse(handles({**event, "log_format": "{line} {x}"}))
        self.assertFalse(handles({**event, "log_system": "-"}))
        self.assertFalse(handles({**event, "log_failure": Failure(ValueError())}))
        del event["line"]
        self.assertFalse(handles(event))

    def test_gatedTwistdObserver(self) -> None:
        """
        Behind the stdout gate, twistd's text observer gets access lines
        through the writer (gated like any proxy event) and every other
        event as before.
        """
        for mode, expected in (("proxy", True), ("none", False)):
            out = io.StringIO()
            publisher = LogPublisher(textFileLogObserver(out))
            monitors = LogMonitors([], publisher=publisher, toStdout=mode)
            monitors.start()
            self.addCleanup(monitors.stop)
            publisher(self.accessEvent(7.0))
            Logger(namespace="twisted.web", observer=publisher).info("twisted says")
            text = out.getvalue()
            self.assertEqual('"GET /x HTTP/1.1"' in text, expected, text)
            self.assertIn("[twisted.web#info] twisted says\n", text)
            self.assertIn(b"Request 127.0.0.1", monitors.proxy.history())
