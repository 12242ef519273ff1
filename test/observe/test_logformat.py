"""
Tests for L{llamaswap.observe.logformat}.
"""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.decode_settings import LOG_TIME_FORMATS
from llamaswap.observe.logformat import (
    TIME_FORMATS,
    formatEventLine,
    formatLine,
    formatTime,
    goDuration,
    parseLevel,
)

#: Go's reference time, Mon Jan 2 15:04:05 2006, at UTC-7 (MST).
REFERENCE = 1136239445.0
MST = timezone(timedelta(hours=-7), "MST")
#: 2006-01-02T15:04:05.120000 in UTC.
FRACTIONAL_UTC = 1136214245.12


class TimeFormatTests(SynchronousTestCase):
    """
    L{formatTime} renders Go's named layouts.
    """

    def test_referenceLayouts(self) -> None:
        """
        Go's reference time in each layout reads exactly like the layout.
        """
        expected = {
            "ansic": "Mon Jan  2 15:04:05 2006",
            "unixdate": "Mon Jan  2 15:04:05 MST 2006",
            "rubydate": "Mon Jan 02 15:04:05 -0700 2006",
            "rfc822": "02 Jan 06 15:04 MST",
            "rfc822z": "02 Jan 06 15:04 -0700",
            "rfc850": "Monday, 02-Jan-06 15:04:05 MST",
            "rfc1123": "Mon, 02 Jan 2006 15:04:05 MST",
            "rfc1123z": "Mon, 02 Jan 2006 15:04:05 -0700",
            "rfc3339": "2006-01-02T15:04:05-07:00",
            "rfc3339nano": "2006-01-02T15:04:05-07:00",
            "kitchen": "3:04PM",
            "stamp": "Jan  2 15:04:05",
            "stampmilli": "Jan  2 15:04:05.000",
            "stampmicro": "Jan  2 15:04:05.000000",
            "stampnano": "Jan  2 15:04:05.000000000",
        }
        self.assertEqual(sorted(expected), sorted(TIME_FORMATS))
        for layout, text in expected.items():
            self.assertEqual(formatTime(REFERENCE, layout, MST), text, layout)

    def test_configAgrees(self) -> None:
        """
        Every name the config accepts is a layout here.
        """
        self.assertEqual(sorted(LOG_TIME_FORMATS), sorted(TIME_FORMATS))

    def test_fractionsAndUTC(self) -> None:
        """
        UTC is C{Z} in RFC 3339; nano layouts trim trailing zeros, stamps
        keep fixed digits; a two-digit day is not padded.
        """
        self.assertEqual(
            formatTime(FRACTIONAL_UTC, "rfc3339nano", UTC),
            "2006-01-02T15:04:05.12Z",
        )
        self.assertEqual(formatTime(FRACTIONAL_UTC, "rfc3339", UTC),
                         "2006-01-02T15:04:05Z")
        self.assertEqual(formatTime(FRACTIONAL_UTC, "stampmilli", UTC),
                         "Jan  2 15:04:05.120")
        self.assertEqual(formatTime(FRACTIONAL_UTC + 86400 * 10, "stamp", UTC),
                         "Jan 12 15:04:05")
        self.assertEqual(formatTime(FRACTIONAL_UTC - 15 * 3600, "kitchen", UTC),
                         "12:04AM")

    def test_fixedOffsetZoneName(self) -> None:
        """
        A zone without an abbreviation is written as its offset, as Go does.
        """
        plus = timezone(timedelta(hours=5, minutes=30))
        self.assertEqual(formatTime(REFERENCE, "rfc822", plus), "03 Jan 06 03:34 +0530")

    def test_unknownOrEmpty(self) -> None:
        """
        No layout or an unknown one gives no timestamp; names ignore case.
        """
        self.assertEqual(formatTime(REFERENCE, "", MST), "")
        self.assertEqual(formatTime(REFERENCE, "iso", MST), "")
        self.assertEqual(formatTime(REFERENCE, "Kitchen", MST), "3:04PM")

    def test_localTime(self) -> None:
        """
        Without a zone, local time is used.
        """
        self.assertRegex(formatTime(REFERENCE, "rfc3339"), r"^2006-01-0[23]T\d\d:\d\d:05")


class LineTests(SynchronousTestCase):
    """
    L{formatLine} and L{formatEventLine} build C{[<time> ][LEVEL] message}.
    """

    def test_levels(self) -> None:
        """
        Each level has llama-swap's upper-case name; critical reads ERROR.
        """
        for level, name in [
            (LogLevel.debug, b"DEBUG"),
            (LogLevel.info, b"INFO"),
            (LogLevel.warn, b"WARN"),
            (LogLevel.error, b"ERROR"),
            (LogLevel.critical, b"ERROR"),
        ]:
            self.assertEqual(formatLine(level, "hi", 0), b"[" + name + b"] hi\n")

    def test_timestamp(self) -> None:
        """
        A time format puts the timestamp and a space first.
        """
        self.assertEqual(
            formatLine(LogLevel.info, "hi", REFERENCE, "kitchen", MST), b"3:04PM [INFO] hi\n"
        )

    def test_event(self) -> None:
        """
        An event's message is formatted with its fields at its time and level.
        """
        event = {
            "log_format": "model {model} ready",
            "model": "m",
            "log_level": LogLevel.warn,
            "log_time": REFERENCE,
        }
        self.assertEqual(formatEventLine(event, "kitchen", MST), b"3:04PM [WARN] model m ready\n")

    def test_eventFailure(self) -> None:
        """
        A failure's traceback follows the message.
        """
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        event = {
            "log_format": "it broke",
            "log_level": LogLevel.critical,
            "log_time": REFERENCE,
            "log_failure": failure,
        }
        line = formatEventLine(event)
        self.assertTrue(line.startswith(b"[ERROR] it broke\n"), line)
        self.assertIn(b"ZeroDivisionError", line)
        self.assertTrue(line.endswith(b"\n"))

    def test_eventPreRenderedLine(self) -> None:
        """
        An event whose format is C{{line}} (the access log's) is written as
        its line's text, as Twisted's formatter would write it.
        """

        class Line:
            def __str__(self) -> str:
                return "Request 1.2.3.4 done"

        event = {
            "log_format": "{line}",
            "line": Line(),
            "log_level": LogLevel.info,
            "log_time": REFERENCE,
        }
        self.assertEqual(formatEventLine(event), b"[INFO] Request 1.2.3.4 done\n")
        self.assertEqual(formatEventLine({**event, "line": "plain"}), b"[INFO] plain\n")

    def test_parseLevel(self) -> None:
        """
        Level names ignore case and surrounding space; unknown is info.
        """
        self.assertEqual(parseLevel("DEBUG"), LogLevel.debug)
        self.assertEqual(parseLevel(" Warn "), LogLevel.warn)
        self.assertEqual(parseLevel("error"), LogLevel.error)
        self.assertEqual(parseLevel("verbose"), LogLevel.info)


class DurationTests(SynchronousTestCase):
    """
    L{goDuration} writes durations as Go's C{time.Duration.String} does.
    """

    def test_examples(self) -> None:
        """
        Each unit range, with trailing zeros trimmed.
        """
        for seconds, text in [
            (0, "0s"),
            (850e-9, "850ns"),
            (12.5e-6, "12.5µs"),
            (1.52e-3, "1.52ms"),
            (0.001, "1ms"),
            (2.3, "2.3s"),
            (1, "1s"),
            (62.5, "1m2.5s"),
            (3601, "1h0m1s"),
            (7200, "2h0m0s"),
            (-1.5, "-1.5s"),
        ]:
            self.assertEqual(goDuration(seconds), text, seconds)

    @given(st.integers(min_value=0, max_value=10**15))
    def test_roundTrip(self, nanos: int) -> None:
        """
        The text parses back to the same number of nanoseconds.
        """
        from llamaswap.config.goformats import parseGoDuration

        self.assertEqual(parseGoDuration(goDuration(nanos / 1e9)), round(nanos / 1e9 * 1e9))
