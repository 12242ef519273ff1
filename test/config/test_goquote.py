"""
Tests for L{llamaswap.config.goquote}.
"""

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.goquote import goQuote, goQuoteRune


class GoQuoteTests(SynchronousTestCase):
    """
    L{goQuote} and L{goQuoteRune} quote like Go's C{%q}.
    """

    def test_strings(self) -> None:
        """
        Quotes and backslashes are escaped, control characters use C
        escapes or C{\\x}, other non-printables C{\\u}, printable Unicode
        stays.
        """
        cases = [
            ("abc", '"abc"'),
            ('a"b\\c', '"a\\"b\\\\c"'),
            ("tab\there\n", '"tab\\there\\n"'),
            ("\x01", '"\\x01"'),
            ("\u0085", '"\\u0085"'),
            ("héllo ✓", '"héllo ✓"'),
            ("'", '"\'"'),
        ]
        for text, expected in cases:
            self.assertEqual(goQuote(text), expected)

    def test_rune(self) -> None:
        """
        A rune is single-quoted; a single quote inside is escaped.
        """
        self.assertEqual(goQuoteRune("@"), "'@'")
        self.assertEqual(goQuoteRune("'"), "'\\''")
        self.assertEqual(goQuoteRune('"'), "'\"'")
