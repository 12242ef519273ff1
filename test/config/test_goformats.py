"""
Tests for L{llamaswap.config.goformats}: Go durations and URL errors.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.goformats import formatGoDuration, goURLError, parseGoDuration


class GoFormatTests(SynchronousTestCase):
    """
    Durations and URLs are parsed, rendered and rejected like Go does.
    """

    def test_parseDuration(self) -> None:
        """
        Go duration strings parse to nanoseconds.
        """
        cases = {
            "5s": 5_000_000_000,
            "1m30s": 90_000_000_000,
            "500ms": 500_000_000,
            "1.5h": 5_400_000_000_000,
            "0": 0,
            "-2s": -2_000_000_000,
            "1h2m3s4ms5us6ns": 3_723_004_005_006,
            ".5s": 500_000_000,
            "10\u00b5s": 10_000,
        }
        for text, expected in cases.items():
            self.assertEqual(parseGoDuration(text), expected, text)
        for text, message in (
            ("", 'time: invalid duration ""'),
            ("5", 'time: missing unit in duration "5"'),
            ("5x", 'time: unknown unit "x" in duration "5x"'),
            ("s", 'time: invalid duration "s"'),
            (".s", 'time: invalid duration ".s"'),
        ):
            with self.assertRaises(ValueError) as raised:
                parseGoDuration(text)
            self.assertEqual(str(raised.exception), message)

    def test_formatDuration(self) -> None:
        """
        Durations render like Go's Duration.String.
        """
        cases = {
            0: "0s",
            4_000_000_000: "4s",
            90_000_000_000: "1m30s",
            3_600_000_000_000: "1h0m0s",
            1_500_000_000: "1.5s",
            500_000_000: "500ms",
            1_500: "1.5\u00b5s",
            7: "7ns",
            -2_000_000_000: "-2s",
        }
        for value, expected in cases.items():
            self.assertEqual(formatGoDuration(value), expected)

    def test_urlErrors(self) -> None:
        """
        URLs are accepted or rejected like Go's url.Parse, with its
        messages.
        """
        for ok in (
            "http://localhost:8080",
            "",
            "localhost:8080",
            "/path",
            "http://[::1]:80/x",
            "http://u:p@h/x#frag",
        ):
            self.assertIsNone(goURLError(ok), ok)
        cases = {
            "://invalid": 'parse "://invalid": missing protocol scheme',
            "http://h:port": 'parse "http://h:port": invalid port ":port" after host',
            "http://h/%zz": 'parse "http://h/%zz": invalid URL escape "%zz"',
            "http://h\n": 'parse "http://h\\n": net/url: invalid control character in URL',
            "a b:c": 'parse "a b:c": first path segment in URL cannot contain colon',
            "http://a b/": 'parse "http://a b/": invalid character " " in host name',
            "http://[::1": "parse \"http://[::1\": missing ']' in host",
        }
        for raw, message in cases.items():
            self.assertEqual(goURLError(raw), message, raw)
