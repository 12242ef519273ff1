"""
Tests for L{llamaswap.web.headers}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from llamaswap.web.headers import (
    HOP_BY_HOP,
    appendForwardedFor,
    applyOverrides,
    connectionTokens,
    endToEnd,
    isEventStream,
    isHopByHop,
    singleContentLength,
)

headerNames = st.sampled_from(
    [
        b"Connection",
        b"Keep-Alive",
        b"TE",
        b"Trailer",
        b"Transfer-Encoding",
        b"Upgrade",
        b"Proxy-Authorization",
        b"Proxy-Connection",
        b"Content-Type",
        b"Authorization",
        b"X-Request-Id",
        b"X-Private",
        b"Accept",
        b"Set-Cookie",
    ]
)
headerValues = st.sampled_from(
    [b"close", b"keep-alive", b"x-private", b"X-Request-Id, keep-alive", b"1", b"a b"]
)


class EndToEndTests(SynchronousTestCase):
    """
    L{endToEnd} drops exactly the hop-by-hop headers.
    """

    def test_example(self) -> None:
        headers = Headers()
        headers.addRawHeader(b"Connection", b"keep-alive, X-Private")
        headers.addRawHeader(b"X-Private", b"secret")
        headers.addRawHeader(b"Keep-Alive", b"timeout=5")
        headers.addRawHeader(b"Proxy-Authenticate", b"Basic")
        headers.addRawHeader(b"Content-Type", b"text/event-stream")
        headers.addRawHeader(b"Set-Cookie", b"a=1")
        headers.addRawHeader(b"Set-Cookie", b"b=2")
        out = endToEnd(headers, drop=[b"Content-Type"])
        self.assertEqual(
            sorted((n.lower(), v) for n, vs in out.getAllRawHeaders() for v in vs),
            [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
        )
        # The input is not modified.
        self.assertTrue(headers.hasHeader(b"x-private"))

    def test_intoExisting(self) -> None:
        """
        Copied into existing headers, each copied name replaces its values
        there whatever its case, others stay, and the copy's value lists
        are its own.
        """
        source = Headers({b"x-a": [b"1", b"2"], b"Content-Type": [b"text/plain"]})
        into = Headers({b"X-A": [b"old"], b"Server": [b"s"]})
        endToEnd(source, into=into)
        self.assertEqual(into.getRawHeaders(b"x-a"), [b"1", b"2"])
        self.assertEqual(into.getRawHeaders(b"server"), [b"s"])
        self.assertEqual(into.getRawHeaders(b"content-type"), [b"text/plain"])
        into.addRawHeader(b"x-a", b"3")
        self.assertEqual(source.getRawHeaders(b"x-a"), [b"1", b"2"])

    @given(st.lists(st.tuples(headerNames, headerValues), max_size=12))
    def test_property(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """
        No header in the result is hop-by-hop or named by C{Connection};
        every other header keeps all its values in order.
        """
        headers = Headers()
        for name, value in pairs:
            headers.addRawHeader(name, value)
        named = connectionTokens(headers)
        out = endToEnd(headers)
        for name, values in out.getAllRawHeaders():
            lower = name.lower()
            self.assertNotIn(lower, HOP_BY_HOP)
            self.assertFalse(lower.startswith(b"proxy-"))
            self.assertNotIn(lower, named)
        for name, _ in pairs:
            if not isHopByHop(name, named):
                self.assertEqual(
                    out.getRawHeaders(name), headers.getRawHeaders(name), name
                )
            else:
                self.assertFalse(out.hasHeader(name), name)

    def test_connectionTokens(self) -> None:
        headers = Headers()
        headers.addRawHeader(b"Connection", b" Keep-Alive ,X-A,, ")
        headers.addRawHeader(b"Connection", b"x-b")
        self.assertEqual(connectionTokens(headers), {b"keep-alive", b"x-a", b"x-b"})


class HelperTests(SynchronousTestCase):
    """
    The small header helpers.
    """

    def test_overrides(self) -> None:
        headers = Headers({b"A": [b"1"], b"B": [b"2"]})
        applyOverrides(headers, {"A": "x", b"B": None, "C": [b"3", b"4"]})
        self.assertEqual(headers.getRawHeaders(b"a"), [b"x"])
        self.assertFalse(headers.hasHeader(b"b"))
        self.assertEqual(headers.getRawHeaders(b"c"), [b"3", b"4"])

    def test_forwardedFor(self) -> None:
        headers = Headers()
        appendForwardedFor(headers, "192.0.2.1")
        self.assertEqual(headers.getRawHeaders(b"x-forwarded-for"), [b"192.0.2.1"])
        headers.addRawHeader(b"X-Forwarded-For", b"10.0.0.2")
        appendForwardedFor(headers, "::1")
        self.assertEqual(
            headers.getRawHeaders(b"x-forwarded-for"), [b"192.0.2.1, 10.0.0.2, ::1"]
        )
        appendForwardedFor(headers, None)
        self.assertEqual(len(headers.getRawHeaders(b"x-forwarded-for")), 1)

    def test_singleContentLength(self) -> None:
        def cl(*values: bytes, te: bool = False) -> int | None:
            headers = Headers()
            for v in values:
                headers.addRawHeader(b"Content-Length", v)
            if te:
                headers.addRawHeader(b"Transfer-Encoding", b"chunked")
            return singleContentLength(headers)

        self.assertEqual(cl(b"12"), 12)
        self.assertEqual(cl(b"12", b"12"), 12)
        self.assertEqual(cl(b"12, 12"), 12)
        self.assertIsNone(cl(b"12", b"13"))
        self.assertIsNone(cl(b"-1"))
        self.assertIsNone(cl(b"12", te=True))
        self.assertIsNone(cl())

    def test_isEventStream(self) -> None:
        self.assertTrue(isEventStream(Headers({b"Content-Type": [b"text/event-stream"]})))
        self.assertTrue(
            isEventStream(Headers({b"Content-Type": [b"Text/Event-Stream; charset=utf-8"]}))
        )
        self.assertFalse(isEventStream(Headers({b"Content-Type": [b"application/json"]})))
        self.assertFalse(isEventStream(Headers()))
