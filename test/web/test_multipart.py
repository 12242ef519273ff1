"""
Tests for L{llamaswap.web.multipart}.
"""

from __future__ import annotations

import io
import tempfile
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.web import multipart
from llamaswap.web.bodies import BodyProducer
from llamaswap.web.multipart import (
    MAX_PARTS,
    MultipartError,
    SplicedBody,
    boundaryOf,
    parseForm,
)

BOUNDARY = b"----llamaswapTestBoundary7MA4YWxk"


def encodeForm(
    fields: list[tuple[str, str | None, bytes]],
    boundary: bytes = BOUNDARY,
    newline: bytes = b"\r\n",
    preamble: bytes = b"",
    epilogue: bytes = b"",
) -> bytes:
    """
    A C{multipart/form-data} body: C{(name, filename or None, content)}
    parts in order, each file part with its own content type.
    """
    out = [preamble]
    for name, filename, content in fields:
        out.append(b"--" + boundary + newline)
        disposition = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.append(disposition.encode("utf-8") + newline)
        if filename is not None:
            out.append(b"Content-Type: application/octet-stream" + newline)
        out.append(newline + content + newline)
    out.append(b"--" + boundary + b"--" + newline + epilogue)
    return b"".join(out)


class BoundaryOfTests(SynchronousTestCase):
    """
    L{boundaryOf} reads the boundary of multipart form data only.
    """

    def test_boundary(self) -> None:
        """
        Plain and quoted boundaries are found, whatever the case of the
        media type.
        """
        self.assertEqual(boundaryOf(b"multipart/form-data; boundary=abc"), b"abc")
        self.assertEqual(boundaryOf('Multipart/Form-Data; boundary="a b:c"'), b"a b:c")

    def test_none(self) -> None:
        """
        Other media types, a missing or an empty boundary give L{None}.
        """
        self.assertIsNone(boundaryOf(b"application/json"))
        self.assertIsNone(boundaryOf(b"multipart/mixed; boundary=abc"))
        self.assertIsNone(boundaryOf(b"multipart/form-data"))
        self.assertIsNone(boundaryOf(b'multipart/form-data; boundary=""'))
        self.assertIsNone(boundaryOf(None))


class ParseFormTests(SynchronousTestCase):
    """
    L{parseForm} locates parts without loading them.
    """

    def test_parts(self) -> None:
        """
        Each part's name, file name and content offsets are recorded, in
        body order; field order does not matter for L{value}.
        """
        body = encodeForm(
            [("file", "a.wav", b"RIFF\x00\x01"), ("model", None, b"whisper"),
             ("stream", None, b"true")]
        )
        source = io.BytesIO(body)
        form = parseForm(source, BOUNDARY)
        self.assertEqual([(p.name, p.filename) for p in form.parts],
                         [("file", "a.wav"), ("model", None), ("stream", None)])
        first = form.parts[0]
        self.assertEqual(body[first.bodyStart : first.bodyEnd], b"RIFF\x00\x01")
        self.assertEqual(form.value(source, "model"), "whisper")
        self.assertEqual(form.value(source, "stream"), "true")
        self.assertIsNone(form.value(source, "file"))
        self.assertEqual(form.length, len(body))

    def test_firstValue(self) -> None:
        """
        With two fields of one name, the first value counts; a file part of
        that name is not a value.
        """
        body = encodeForm(
            [("model", "m.bin", b"file"), ("model", None, b"one"), ("model", None, b"two")]
        )
        source = io.BytesIO(body)
        self.assertEqual(parseForm(source, BOUNDARY).value(source, "model"), "one")

    def test_preambleEpilogueAndLF(self) -> None:
        """
        A preamble and an epilogue are ignored, and bare-LF line endings are
        tolerated like Go's reader does.
        """
        body = encodeForm(
            [("model", None, b"m")], newline=b"\n", preamble=b"ignored\n", epilogue=b"junk"
        )
        source = io.BytesIO(body)
        form = parseForm(source, BOUNDARY)
        self.assertEqual(form.newline, b"\n")
        self.assertEqual(form.value(source, "model"), "m")

    def test_quotedNames(self) -> None:
        """
        Quoted names with escapes and RFC 2231 file names are decoded.
        """
        body = (
            b"--" + BOUNDARY + b"\r\n"
            b'Content-Disposition: form-data; name="mo\\"del"; filename*=UTF-8\'\'%C3%A9.wav\r\n'
            b"\r\nx\r\n--" + BOUNDARY + b"--\r\n"
        )
        form = parseForm(io.BytesIO(body), BOUNDARY)
        self.assertEqual(form.parts[0].name, 'mo"del')
        self.assertEqual(form.parts[0].filename, "\xe9.wav")

    def test_malformed(self) -> None:
        """
        No boundary, an unterminated body, a part whose headers never end
        and a header line without a colon are errors.
        """
        cases = [
            b"no boundary at all",
            b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm",
            b"--" + BOUNDARY + b"\r\n" + b"X" * (multipart.MAX_PART_HEADER + 10),
            b"--" + BOUNDARY + b"\r\nnot a header\r\n\r\nm\r\n--" + BOUNDARY + b"--",
            b"--" + BOUNDARY + b"garbage\r\n\r\nm\r\n--" + BOUNDARY + b"--",
        ]
        for body in cases:
            self.assertRaises(MultipartError, parseForm, io.BytesIO(body), BOUNDARY)

    def test_fieldTooLarge(self) -> None:
        """
        A field value longer than L{multipart.MAX_FIELD_VALUE} is refused.
        """
        body = encodeForm([("model", None, b"m" * (multipart.MAX_FIELD_VALUE + 1))])
        source = io.BytesIO(body)
        form = parseForm(source, BOUNDARY)
        self.assertRaises(MultipartError, form.value, source, "model")

    def test_largeFileOnDisk(self) -> None:
        """
        A body in a temporary file, larger than several scan chunks and full
        of near-boundaries straddling chunk edges, is located correctly.
        """
        upload = (b"\r\n--" + BOUNDARY[:-1] + b"Q" * 97) * 3000
        body = encodeForm([("file", "big.bin", upload), ("model", None, b"m")])
        self.assertGreater(len(body), 4 * multipart.SCAN_CHUNK)
        with tempfile.TemporaryFile() as source:
            source.write(body)
            form = parseForm(source, BOUNDARY)
            self.assertEqual(form.parts[0].bodyEnd - form.parts[0].bodyStart, len(upload))
            self.assertEqual(form.value(source, "model"), "m")

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["model", "file", "prompt", "stream"]),
                st.booleans(),
                st.binary(max_size=300),
            ),
            max_size=5,
        ),
        st.sampled_from([b"\r\n", b"\n"]),
    )
    def test_roundTrip(
        self, fields: list[tuple[str, bool, bytes]], newline: bytes
    ) -> None:
        """
        For any form, every part's recorded content is exactly what was
        encoded.
        """
        encoded = [(n, "f.bin" if isFile else None, c) for n, isFile, c in fields]
        body = encodeForm(encoded, newline=newline)
        form = parseForm(io.BytesIO(body), BOUNDARY)
        self.assertEqual(
            [(p.name, p.filename, body[p.bodyStart : p.bodyEnd]) for p in form.parts],
            encoded,
        )


class WithValueTests(SynchronousTestCase):
    """
    L{multipart.MultipartForm.withValue} changes one field and nothing else.
    """

    def test_replace(self) -> None:
        """
        Only the content of the field changes: boundary, order, part headers
        and file bytes stay as they were.
        """
        before = encodeForm(
            [("file", "a.wav", b"\x00\x01audio"), ("model", None, b"public"),
             ("language", None, b"en")]
        )
        source = io.BytesIO(before)
        spliced = parseForm(source, BOUNDARY).withValue(source, "model", "served-name")
        after = spliced.read()
        self.assertEqual(after, before.replace(b"\r\n\r\npublic\r\n", b"\r\n\r\nserved-name\r\n"))
        self.assertEqual(spliced.length, len(after))

    def test_replaceEvery(self) -> None:
        """
        Every plain field of that name is replaced.
        """
        before = encodeForm([("model", None, b"a"), ("model", None, b"b")])
        source = io.BytesIO(before)
        after = parseForm(source, BOUNDARY).withValue(source, "model", "c").read()
        self.assertEqual(after, encodeForm([("model", None, b"c"), ("model", None, b"c")]))

    def test_add(self) -> None:
        """
        A form without the field gets it as a last part; so does an empty
        form.
        """
        before = encodeForm([("file", "a.wav", b"x")])
        source = io.BytesIO(before)
        after = parseForm(source, BOUNDARY).withValue(source, "model", "m").read()
        self.assertEqual(after, encodeForm([("file", "a.wav", b"x"), ("model", None, b"m")]))
        empty = io.BytesIO(encodeForm([]))
        after = parseForm(empty, BOUNDARY).withValue(empty, "model", "m").read()
        self.assertEqual(after, encodeForm([("model", None, b"m")]))

    def test_lineBreak(self) -> None:
        """
        A value with a line break could end the part early and is refused.
        """
        source = io.BytesIO(encodeForm([("model", None, b"a")]))
        form = parseForm(source, BOUNDARY)
        self.assertRaises(MultipartError, form.withValue, source, "model", "a\r\n--x")

    def test_producer(self) -> None:
        """
        A L{BodyProducer} over the spliced body writes it in chunks read
        lazily from the source file.
        """
        upload = bytes(range(256)) * 1000
        before = encodeForm([("file", "a.bin", upload), ("model", None, b"x")])
        with tempfile.TemporaryFile() as source:
            source.write(before)
            spliced = parseForm(source, BOUNDARY).withValue(source, "model", "yy")
            producer = BodyProducer(spliced, spliced.length, chunkSize=1000)
            chunks: list[bytes] = []

            class Consumer:
                def write(self, data: bytes) -> None:
                    chunks.append(data)

            self.successResultOf(producer.startProducing(Consumer()))
        self.assertEqual(b"".join(chunks), before.replace(b"\r\n\r\nx\r\n", b"\r\n\r\nyy\r\n"))
        self.assertEqual(max(len(c) for c in chunks), 1000)


class SplicedBodyTests(SynchronousTestCase):
    """
    L{SplicedBody} reads ranges and bytes as one file.
    """

    def test_read(self) -> None:
        """
        Reads at any position cross segment edges; empty segments vanish.
        """
        source = io.BytesIO(b"0123456789")
        body = SplicedBody(source, [(0, 3), b"abc", (3, 0), b"", (7, 3)])
        self.assertEqual(body.length, 9)
        self.assertEqual(body.read(), b"012abc789")
        body.seek(2)
        self.assertEqual(body.read(3), b"2ab")
        self.assertEqual(body.tell(), 5)
        self.assertEqual(body.read(100), b"c789")
        self.assertFalse(body.closed)
        source.close()
        self.assertTrue(body.closed)


class ManyPartsTests(SynchronousTestCase):
    """
    A form of 100k tiny parts (5.6 MB) is refused after L{MAX_PARTS}
    parts, reading only what those took (hardening #2: the reactor is not
    held for seconds).
    """

    def test_tooManyParts(self) -> None:
        body = encodeForm([(f"f{i}", None, b"x") for i in range(100_000)]
                          + [("model", None, b"m")])
        self.assertGreater(len(body), 5_000_000)
        reads: list[int] = []
        real = multipart._Scanner._get

        def counting(scanner: Any, offset: int, size: int) -> bytes:
            before = scanner.bytesRead
            data = real(scanner, offset, size)
            reads.append(scanner.bytesRead - before)
            return data

        self.patch(multipart._Scanner, "_get", counting)
        with self.assertRaises(MultipartError) as caught:
            parseForm(io.BytesIO(body), BOUNDARY)
        self.assertIn("more than 1000 parts", str(caught.exception))
        self.assertLess(sum(reads), 1_000_000)

    def test_atTheLimit(self) -> None:
        body = encodeForm([(f"f{i}", None, b"x") for i in range(MAX_PARTS - 1)]
                          + [("model", None, b"m")])
        form = parseForm(io.BytesIO(body), BOUNDARY)
        self.assertEqual(len(form.parts), MAX_PARTS)
        self.assertEqual(form.value(io.BytesIO(body), "model"), "m")
