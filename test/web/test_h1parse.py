"""
Tests for L{llamaswap.web.h1parse}: heads, body framings, interim answers
and malformed responses, fed whole and a byte at a time.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.web.h1parse import (
    MAX_HEAD,
    ResponseError,
    ResponseHead,
    ResponseParser,
    parseHead,
)


class Sink:
    """
    Records what a parser reports.
    """

    def __init__(self) -> None:
        self.head: ResponseHead | None = None
        self.body: list[bytes] = []
        self.ended = 0

    def headReceived(self, head: ResponseHead) -> None:
        assert self.head is None, "two heads"
        self.head = head

    def bodyReceived(self, data: bytes) -> None:
        assert self.head is not None and not self.ended
        self.body.append(data)

    def bodyEnded(self) -> None:
        self.ended += 1


def parse(
    data: bytes, bodiless: bool = False, pieces: int | None = None
) -> tuple[Sink, ResponseParser, bytes]:
    """
    Feed C{data} whole, or in pieces of C{pieces} bytes.
    """
    sink = Sink()
    parser = ResponseParser(sink, bodiless)
    step = pieces or len(data) or 1
    extra = b""
    for start in range(0, len(data), step):
        extra += parser.feed(data[start : start + step])
    return sink, parser, extra


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    b"6\r\ndata: \r\n"
    b"3;ext=1\r\nabc\r\n"
    b"A\r\n0123456789\r\n"
    b"0\r\nX-Trailer: 1\r\n\r\n"
)


class HeadTests(SynchronousTestCase):
    """
    Status lines and headers.
    """

    def test_statusAndHeaders(self) -> None:
        """
        Code, phrase, version and headers (names in lower case, values
        trimmed, order kept); connection-control headers apart.
        """
        head = parseHead(
            b"HTTP/1.1 404 Not Found\r\nContent-Type:  application/json \r\n"
            b"X-A: 1\r\nx-a: 2\r\nConnection: keep-alive\r\nContent-Length: 5",
            False,
        )
        assert head is not None
        self.assertEqual(
            (head.version, head.code, head.phrase), ((b"HTTP", 1, 1), 404, b"Not Found")
        )
        self.assertEqual(
            head.headers,
            [(b"content-type", b"application/json"), (b"x-a", b"1"), (b"x-a", b"2")],
        )
        self.assertEqual(
            head.control, [(b"connection", b"keep-alive"), (b"content-length", b"5")]
        )
        self.assertEqual((head.length, head.persistent), (5, True))

    def test_noPhraseAndFolding(self) -> None:
        """
        A status line without a phrase, bare LF line ends and an obsolete
        folded header are accepted.
        """
        sink, parser, extra = parse(b"HTTP/1.1 204\nX-Long: a\n  b\n\n")
        assert sink.head is not None
        self.assertEqual(sink.head.phrase, b"")
        self.assertEqual(sink.head.headers, [(b"x-long", b"a b")])
        self.assertEqual(sink.ended, 1)
        self.assertTrue(parser.done)

    def test_interimSkipped(self) -> None:
        """
        C{100 Continue} and C{103 Early Hints} come before the answer and
        are skipped.
        """
        sink, parser, extra = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
        assert sink.head is not None
        self.assertEqual(sink.head.code, 200)
        self.assertEqual(b"".join(sink.body), b"ok")

    def test_malformed(self) -> None:
        """
        Anything that is not a response head is refused.
        """
        for head in (
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 OK",
            b"HTTP/11 200 OK",
            b"SSH-2.0-OpenSSH",
            b"HTTP/1.1 099 Low",
            b"HTTP/1.1 101 Switching Protocols",
            b"HTTP/1.1 200 OK\r\nBad Header: 1",
            b"HTTP/1.1 200 OK\r\nNoColon",
            b"HTTP/1.1 200 OK\r\n folded-first",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1e3",
        ):
            with self.subTest(head=head):
                self.assertRaises(ResponseError, parseHead, head, False)

    def test_headTooLong(self) -> None:
        """
        A head that never ends within L{MAX_HEAD} bytes is refused.
        """
        sink = Sink()
        parser = ResponseParser(sink)
        parser.feed(b"HTTP/1.1 200 OK\r\n")
        with self.assertRaises(ResponseError):
            for _ in range(MAX_HEAD // 1000 + 2):
                parser.feed(b"X-Pad: " + b"a" * 1000 + b"\r\n")


class FramingTests(SynchronousTestCase):
    """
    How the body's end is found, and whether the connection can be reused.
    """

    def test_contentLength(self) -> None:
        """
        A C{Content-Length} body ends after that many bytes; what follows
        is returned (a server out of step).
        """
        sink, parser, extra = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"
        )
        self.assertEqual(
            (b"".join(sink.body), sink.ended, extra), (b"hello", 1, b"EXTRA")
        )
        assert sink.head is not None
        self.assertTrue(sink.head.persistent)

    def test_repeatedEqualLengths(self) -> None:
        """
        The same length given twice is one length.
        """
        sink, parser, extra = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok"
        )
        self.assertEqual(b"".join(sink.body), b"ok")

    def test_chunked(self) -> None:
        """
        Chunks are decoded (extensions ignored, trailers dropped); the
        chunks of one read are handed on as one piece.
        """
        sink, parser, extra = parse(CHUNKED)
        self.assertEqual(sink.body, [b"data: abc0123456789"])
        self.assertEqual((sink.ended, extra), (1, b""))
        assert sink.head is not None
        self.assertIsNone(sink.head.length)
        self.assertTrue(sink.head.persistent)

    def test_chunkedOverContentLength(self) -> None:
        """
        C{Transfer-Encoding} wins over C{Content-Length}, and such a
        connection is not reused.
        """
        sink, parser, extra = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n"
        )
        self.assertEqual((b"".join(sink.body), sink.ended), (b"ok", 1))
        assert sink.head is not None
        self.assertFalse(sink.head.persistent)

    def test_untilClose(self) -> None:
        """
        Without a length, or with a coding other than chunked last, the body
        runs until the server closes, which then completes it.
        """
        for head in (
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\n",
        ):
            with self.subTest(head=head):
                sink, parser, extra = parse(head + b"all of it")
                self.assertEqual((b"".join(sink.body), sink.ended), (b"all of it", 0))
                assert sink.head is not None
                self.assertFalse(sink.head.persistent)
                self.assertTrue(parser.untilClose)
                self.assertTrue(parser.closed())
                self.assertTrue(parser.done)

    def test_noBody(self) -> None:
        """
        C{HEAD} answers, C{204} and C{304} have no body whatever their
        headers say.
        """
        for data, bodiless in (
            (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", True),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 50\r\n\r\n", False),
            (b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", False),
        ):
            with self.subTest(data=data):
                sink, parser, extra = parse(data + b"NEXT", bodiless)
                self.assertEqual((sink.body, sink.ended, extra), ([], 1, b"NEXT"))
                assert sink.head is not None
                self.assertEqual(sink.head.length, 0)

    def test_persistence(self) -> None:
        """
        HTTP/1.1 keeps the connection unless C{Connection: close}; HTTP/1.0
        only with C{keep-alive}.
        """
        for head, persistent in (
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0", False),
            (
                b"HTTP/1.1 200 OK\r\nConnection: X-Hop, Close\r\nContent-Length: 0",
                False,
            ),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 0", False),
            (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0", True),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0", True),
        ):
            with self.subTest(head=head):
                parsed = parseHead(head, False)
                assert parsed is not None
                self.assertEqual(parsed.persistent, persistent)

    def test_truncated(self) -> None:
        """
        A close before a framed body's end does not complete it.
        """
        for data in (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
            b"HTTP/1.1 200 OK\r\nContent-",
        ):
            with self.subTest(data=data):
                sink, parser, extra = parse(data)
                self.assertFalse(parser.closed())
                self.assertEqual(sink.ended, 0)

    def test_badChunks(self) -> None:
        """
        A chunk size that is not hex, or chunk data longer than its size,
        is refused.
        """
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        for body in (
            b"zz\r\n",
            b"-1\r\n",
            b"0x5\r\n",
            b"2\r\nabc\r\n",
            b"5" * 20 + b"\r\n",
        ):
            with self.subTest(body=body):
                self.assertRaises(ResponseError, parse, head + body)

    def test_receivedFlag(self) -> None:
        """
        C{received} tells whether any byte arrived (a server that closed a
        reused connection sent none).
        """
        parser = ResponseParser(Sink())
        self.assertFalse(parser.received)
        parser.feed(b"")
        self.assertFalse(parser.received)
        parser.feed(b"H")
        self.assertTrue(parser.received)


class SplitTests(SynchronousTestCase):
    """
    The same responses fed in every way they can be split.
    """

    RESPONSES = [
        CHUNKED,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
        b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
    ]

    @given(st.data())
    def test_anySplit(self, data: st.DataObject) -> None:
        """
        However the bytes are split between reads, the body and its end
        come out the same.
        """
        response = data.draw(st.sampled_from(self.RESPONSES))
        cuts = sorted(data.draw(st.sets(st.integers(1, len(response) - 1), max_size=8)))
        sink = Sink()
        parser = ResponseParser(sink)
        extra = b""
        for start, end in zip([0, *cuts], [*cuts, len(response)]):
            extra += parser.feed(response[start:end])
        whole, _, _ = parse(response)
        self.assertEqual(b"".join(sink.body), b"".join(whole.body))
        self.assertEqual((sink.ended, extra), (1, b""))

    def test_byteAtATime(self) -> None:
        """
        One byte per read.
        """
        for response in self.RESPONSES:
            sink, parser, extra = parse(response, pieces=1)
            whole, _, _ = parse(response)
            self.assertEqual(b"".join(sink.body), b"".join(whole.body))
            self.assertEqual(sink.ended, 1)
