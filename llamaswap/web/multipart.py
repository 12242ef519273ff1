# -*- test-case-name: test.web.test_multipart -*-
"""
C{multipart/form-data} bodies located, not loaded: where each part is.

twisted.web has already buffered a request body (a C{BytesIO}, or a
temporary file past 100 kB) before a resource sees it.  To route an audio
transcription or an image edit llamaswap needs one form field, C{model},
and to honour C{useModelName} it needs to change that one field.  Neither
needs the uploaded files in memory:

 - L{parseForm} scans the body in pieces and records the byte offsets of
   every part (headers, content) without copying any content;
 - L{MultipartForm.value} reads one small field;
 - L{MultipartForm.withValue} describes the body with a field's content
   replaced as a L{SplicedBody}: ranges of the original file with new
   bytes in between, read lazily as the upstream connection takes them.

Unlike llama-swap, which re-serialises the whole form (new boundary, fields
before files, part content types dropped), a rewritten body keeps every
byte outside the replaced content: boundary, field order, part headers.
"""

from __future__ import annotations

import os
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import IO, Iterator, Sequence, Union

from attrs import frozen

#: Size of the pieces a body is scanned in.
SCAN_CHUNK = 64 * 1024
#: Longest header block of one part.
MAX_PART_HEADER = 16 * 1024
#: Longest form field read with L{MultipartForm.value}.
MAX_FIELD_VALUE = 1024 * 1024
#: Most parts a form may have (Go's C{mime/multipart} default, which
#: llama-swap inherits): a body of 100k tiny parts would otherwise hold the
#: reactor for seconds while it is located.
MAX_PARTS = 1000
#: Bytes of the body kept in memory while scanning it, so that the many
#: small reads of a form with small parts cost one read each window.
SCAN_WINDOW = 256 * 1024


class MultipartError(ValueError):
    """
    The body is not a well-formed C{multipart/form-data} body.
    """


def boundaryOf(contentType: bytes | str | None) -> bytes | None:
    """
    The C{boundary} parameter of a C{multipart/form-data} content type, or
    L{None} when the type is not multipart form data or has no boundary.
    """
    if contentType is None:
        return None
    if isinstance(contentType, bytes):
        contentType = contentType.decode("latin-1")
    message = Message()
    message["content-type"] = contentType
    if message.get_content_type() != "multipart/form-data":
        return None
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 70:
        return None
    return boundary.encode("latin-1")


@frozen
class Part:
    """
    One part of a form, as offsets into the body.

    @ivar name: the C{name} of its C{Content-Disposition}, C{""} if none.
    @ivar filename: its C{filename}, or L{None} for a plain field.
    @ivar start: offset of its first header byte.
    @ivar bodyStart: offset of its first content byte.
    @ivar bodyEnd: offset just after its last content byte.
    """

    name: str
    filename: str | None
    start: int
    bodyStart: int
    bodyEnd: int

    @property
    def isFile(self) -> bool:
        """
        Whether the part is an uploaded file (it has a file name), not a
        form value.
        """
        return bool(self.filename)


def _readAt(source: IO[bytes], offset: int, size: int) -> bytes:
    """
    Read C{size} bytes at C{offset} without relying on the file position.
    """
    try:
        fd = source.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is not None:
        try:
            source.flush()
        except (AttributeError, OSError, ValueError):
            pass
        return os.pread(fd, size, offset)
    source.seek(offset)
    return source.read(size)


@frozen
class MultipartForm:
    """
    Where the parts of a C{multipart/form-data} body are.

    @ivar boundary: the boundary (without the leading dashes).
    @ivar newline: the line ending the body uses, C{\\r\\n} or (tolerated,
        like Go's reader) C{\\n}.
    @ivar parts: the parts, in body order.
    @ivar end: offset of the closing delimiter (its leading newline), where
        new parts would go.
    @ivar length: the length of the whole body.
    """

    boundary: bytes
    newline: bytes
    parts: tuple[Part, ...]
    end: int
    length: int

    def fields(self, name: str) -> list[Part]:
        """
        The plain (non-file) parts called C{name}, in order.
        """
        return [p for p in self.parts if p.name == name and not p.isFile]

    def value(self, source: IO[bytes], name: str) -> str | None:
        """
        The first value of the plain field C{name}, or L{None}.

        @raise MultipartError: the value is longer than L{MAX_FIELD_VALUE}.
        """
        for part in self.fields(name):
            size = part.bodyEnd - part.bodyStart
            if size > MAX_FIELD_VALUE:
                raise MultipartError(f"form field {name!r} is too large")
            return _readAt(source, part.bodyStart, size).decode("utf-8", "replace")
        return None

    def withValue(self, source: IO[bytes], name: str, value: str) -> SplicedBody:
        """
        The body with the content of every plain field C{name} replaced by
        C{value}, or with such a field added at the end when it has none.

        @raise MultipartError: C{value} contains a line break (it could
            then end the part early).
        """
        encoded = value.encode("utf-8")
        if b"\r" in encoded or b"\n" in encoded:
            raise MultipartError("a form value cannot contain line breaks")
        segments: list[Segment] = []
        position = 0
        fields = self.fields(name)
        for part in fields:
            segments.append((position, part.bodyStart - position))
            segments.append(encoded)
            position = part.bodyEnd
        if not fields:
            segments.append((0, self.end))
            nl, dash = self.newline, b"--" + self.boundary
            quoted = name.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8")
            part = (
                dash + nl + b'Content-Disposition: form-data; name="' + quoted + b'"'
                + nl + nl + encoded
            )
            # After the last part the closing delimiter starts with its
            # newline; in an empty form it is the first line.
            segments.append(nl + part if self.parts else part + nl)
            position = self.end
        segments.append((position, self.length - position))
        return SplicedBody(source, segments)


#: A piece of a spliced body: C{(offset, size)} in the source, or bytes.
Segment = Union[tuple[int, int], bytes]


class SplicedBody:
    """
    A read-only, seekable file made of ranges of another file and bytes in
    between, for L{llamaswap.web.bodies.BodyProducer}: nothing is copied
    until a piece is read.

    @ivar length: the total length.
    """

    def __init__(self, source: IO[bytes], segments: Sequence[Segment]) -> None:
        self._source = source
        self._segments = [s for s in segments if (len(s) if isinstance(s, bytes) else s[1])]
        self.length = sum(len(s) if isinstance(s, bytes) else s[1] for s in self._segments)
        self._position = 0

    @property
    def closed(self) -> bool:
        """
        Whether the underlying file is closed.
        """
        return bool(getattr(self._source, "closed", False))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """
        Move the read position.
        """
        if whence == os.SEEK_SET:
            self._position = offset
        elif whence == os.SEEK_CUR:
            self._position += offset
        else:
            self._position = self.length + offset
        return self._position

    def tell(self) -> int:
        """
        The read position.
        """
        return self._position

    def read(self, size: int = -1) -> bytes:
        """
        Up to C{size} bytes (all remaining when negative) from the position.
        """
        if size < 0:
            size = self.length - self._position
        pieces = list(self._pieces(self._position, size))
        data = b"".join(pieces)
        self._position += len(data)
        return data

    def _pieces(self, offset: int, size: int) -> Iterator[bytes]:
        start = 0
        for segment in self._segments:
            if size <= 0:
                return
            segmentLength = len(segment) if isinstance(segment, bytes) else segment[1]
            if offset < start + segmentLength:
                inner = offset - start
                take = min(size, segmentLength - inner)
                if isinstance(segment, bytes):
                    yield segment[inner : inner + take]
                else:
                    yield _readAt(self._source, segment[0] + inner, take)
                offset += take
                size -= take
            start += segmentLength


class _Scanner:
    """
    Searches a file for byte strings, holding one chunk at a time.
    """

    def __init__(self, source: IO[bytes], length: int) -> None:
        self.source = source
        self.length = length
        self._windowStart = 0
        self._window = b""
        #: Bytes read from the source (tests check the scan is bounded).
        self.bytesRead = 0

    def _get(self, offset: int, size: int) -> bytes:
        """
        C{size} bytes at C{offset} (fewer at the end), through the window.
        """
        start = self._windowStart
        if start <= offset and offset + size <= start + len(self._window):
            return self._window[offset - start : offset - start + size]
        self._window = _readAt(self.source, offset, max(size, SCAN_WINDOW))
        self._windowStart = offset
        self.bytesRead += len(self._window)
        return self._window[:size]

    def find(self, needle: bytes, start: int, limit: int | None = None) -> int:
        """
        The offset of the first C{needle} at or after C{start} (and ending
        before C{limit}), or -1.
        """
        end = self.length if limit is None else min(self.length, limit)
        overlap = len(needle) - 1
        position = start
        while position < end:
            size = min(SCAN_CHUNK + overlap, end - position)
            chunk = self._get(position, size)
            if not chunk:
                return -1
            found = chunk.find(needle)
            if found >= 0:
                return position + found
            if position + len(chunk) >= end:
                return -1
            position += max(1, len(chunk) - overlap)
        return -1

    def read(self, offset: int, size: int) -> bytes:
        return self._get(offset, max(0, min(size, self.length - offset)))


def _disposition(headerBlock: bytes, newline: bytes) -> tuple[str, str | None]:
    """
    The form name and file name from a part's headers.
    """
    text = headerBlock.decode("utf-8", "surrogateescape")
    lines = text.split(newline.decode("ascii"))
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep:
            raise MultipartError("malformed part header")
        if key.strip().lower() != "content-disposition":
            continue
        message = Message()
        message["content-disposition"] = value.strip()
        if message.get_content_disposition() != "form-data":
            return "", None
        name = message.get_param("name", header="content-disposition")
        filename = message.get_param("filename", header="content-disposition")
        return (
            collapse_rfc2231_value(name) if name is not None else "",
            collapse_rfc2231_value(filename) if filename is not None else None,
        )
    return "", None


def parseForm(source: IO[bytes], boundary: bytes, length: int | None = None) -> MultipartForm:
    """
    Locate the parts of the C{multipart/form-data} body in C{source}.

    @param boundary: the C{boundary} of the request's content type.
    @param length: the body's length (default: the file's size).
    @raise MultipartError: the body is malformed (no first boundary, a part
        without its header end or closing delimiter, a bad header line) or
        has more than L{MAX_PARTS} parts (found without reading further).
    """
    if length is None:
        length = source.seek(0, os.SEEK_END)
    scan = _Scanner(source, length)
    dash = b"--" + boundary

    # The first boundary: at the very start or at the start of a line.
    position = 0
    while True:
        found = scan.find(dash, position)
        if found < 0:
            raise MultipartError("no multipart boundary found")
        if found == 0 or scan.read(found - 1, 1) == b"\n":
            break
        position = found + 1
    lineStart = found + len(dash)
    lineEnd = scan.find(b"\n", lineStart, lineStart + 1024)
    rest = scan.read(lineStart, 2)
    if rest == b"--":
        return MultipartForm(boundary, b"\r\n", (), found, length)
    if lineEnd < 0:
        raise MultipartError("malformed multipart boundary line")
    line = scan.read(lineStart, lineEnd - lineStart)
    newline = b"\r\n" if line.endswith(b"\r") else b"\n"
    if line.rstrip(b"\r").strip(b" \t"):
        raise MultipartError("malformed multipart boundary line")
    delimiter = newline + dash
    parts: list[Part] = []
    position = lineEnd + 1
    while True:
        if len(parts) >= MAX_PARTS:
            raise MultipartError(f"multipart form has more than {MAX_PARTS} parts")
        start = position
        if scan.read(start, len(newline)) == newline:
            headers, bodyStart = b"", start + len(newline)
        else:
            headerEnd = scan.find(newline + newline, start, start + MAX_PART_HEADER)
            if headerEnd < 0:
                raise MultipartError("multipart part headers do not end")
            headers = scan.read(start, headerEnd - start)
            bodyStart = headerEnd + 2 * len(newline)
        name, filename = _disposition(headers, newline)
        bodyEnd = scan.find(delimiter, bodyStart)
        if bodyEnd < 0:
            raise MultipartError("multipart body is not closed")
        parts.append(Part(name, filename, start, bodyStart, bodyEnd))
        after = bodyEnd + len(delimiter)
        if scan.read(after, 2) == b"--":
            return MultipartForm(boundary, newline, tuple(parts), bodyEnd, length)
        lineEnd = scan.find(b"\n", after, after + 1024)
        if lineEnd < 0 or scan.read(after, lineEnd - after).rstrip(b"\r").strip(b" \t"):
            raise MultipartError("malformed multipart boundary line")
        position = lineEnd + 1


__all__ = [
    "MAX_FIELD_VALUE",
    "MAX_PARTS",
    "MultipartError",
    "MultipartForm",
    "Part",
    "SplicedBody",
    "boundaryOf",
    "parseForm",
]
