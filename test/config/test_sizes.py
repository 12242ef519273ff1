"""
Tests for L{llamaswap.config.sizes}.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.sizes import formatSize, parseSeconds, parseSize


class ParseSizeTests(SynchronousTestCase):
    """
    L{parseSize} reads the units people write.
    """

    def test_table(self) -> None:
        cases = [
            (0, 0),
            (512, 512),
            ("512", 512),
            ("512B", 512),
            ("1KB", 1000),
            ("1kB", 1000),
            ("1KiB", 1024),
            ("8000MB", 8_000_000_000),
            ("24GiB", 24 * 1024**3),
            ("24 GiB", 24 * 1024**3),
            ("1.5GiB", 3 * 1024**3 // 2),
            ("2TB", 2 * 1000**4),
            ("1g", 1000**3),
            (3.0, 3),
        ]
        for text, expected in cases:
            self.assertEqual(parseSize(text), expected, text)

    def test_rejected(self) -> None:
        for bad in (
            "",
            "GiB",
            "12XB",
            "-1GiB",
            -1,
            True,
            None,
            [1],
            "1.5",
            "1..2GB",
            1.5,
        ):
            with self.assertRaises(ValueError, msg=repr(bad)) as caught:
                parseSize(bad)
            self.assertTrue(str(caught.exception), bad)

    def test_messageNamesUnits(self) -> None:
        with self.assertRaises(ValueError) as caught:
            parseSize("lots")
        self.assertIn("24GiB", str(caught.exception))
        self.assertIn("'lots'", str(caught.exception))

    @given(
        st.integers(min_value=0, max_value=2**50),
        st.sampled_from(["KiB", "MiB", "GiB"]),
    )
    def test_binaryUnits(self, n: int, unit: str) -> None:
        factor = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}[unit]
        self.assertEqual(parseSize(f"{n}{unit}"), n * factor)


class FormatSizeTests(SynchronousTestCase):
    """
    L{formatSize} writes binary units with one decimal.
    """

    def test_table(self) -> None:
        self.assertEqual(formatSize(512), "512 B")
        self.assertEqual(formatSize(1536), "1.5 KiB")
        self.assertEqual(formatSize(24 * 1024**3), "24.0 GiB")
        self.assertEqual(formatSize(3 * 1024**4), "3.0 TiB")


class ParseSecondsTests(SynchronousTestCase):
    """
    L{parseSeconds} reads numbers and Go/Ollama durations.
    """

    def test_table(self) -> None:
        cases = [
            (0, 0.0),
            (300, 300.0),
            (-1, -1.0),
            (2.5, 2.5),
            ("300", 300.0),
            ("-1", -1.0),
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("1.5s", 1.5),
            ("500ms", 0.5),
            ("-5m", -300.0),
            ("0s", 0.0),
        ]
        for value, expected in cases:
            self.assertEqual(parseSeconds(value), expected, value)

    def test_rejected(self) -> None:
        for bad in ("", "m", "5x", "5m3", "five", None, True, [1], "1h 30m"):
            with self.assertRaises(ValueError, msg=repr(bad)):
                parseSeconds(bad)
