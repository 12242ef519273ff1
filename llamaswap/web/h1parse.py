# -*- test-case-name: test.web.test_h1parse -*-
"""
An incremental HTTP/1.1 response parser, for the upstream client
(L{llamaswap.web.h1client}): bytes in, calls on a L{ResponseSink} out, no
I/O.

It reads one response at a time: the status line and headers (interim
C{1xx} answers skipped), then the body as its framing says (RFC 9112 §6):
none (C{HEAD}, C{204}, C{304}), C{Content-Length} bytes, C{chunked}
(trailers read and dropped), or everything until the server closes.  Body
bytes are handed on as they arrive; all the chunks that one read holds
are handed on as one piece, so a relay writes them to its client at once.

Anything malformed raises L{ResponseError}: the connection cannot be
trusted any further and is closed.
"""

from __future__ import annotations

import re
from typing import Protocol

#: The most bytes a status line plus headers may take.
MAX_HEAD = 64 * 1024
#: The longest chunk-size or trailer line.
MAX_LINE = 4 * 1024

#: Connection-control headers: about this hop only, kept apart from the
#: response's end-to-end headers (Twisted's client does the same).
CONNECTION_CONTROL = frozenset(
    (
        b"content-length",
        b"connection",
        b"keep-alive",
        b"te",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
    )
)

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(rb"[0-9]{1,18}")


class ResponseError(ValueError):
    """
    The upstream's bytes are not a valid HTTP/1.1 response.
    """


class ResponseHead:
    """
    A response's status line and headers.

    @ivar headers: end-to-end headers as C{(name, value)} pairs, names in
        lower case, in the order received.
    @ivar control: the connection-control headers (L{CONNECTION_CONTROL}),
        the same way.
    @ivar length: the body's length, L{None} if unknown until it ends
        (chunked or close-delimited), 0 for a response without a body.
    @ivar persistent: whether the connection may carry another exchange
        after this one (HTTP/1.1 without C{Connection: close}, a framed
        body).
    @ivar chunked: whether the body comes in chunks.
    """

    __slots__ = (
        "version",
        "code",
        "phrase",
        "headers",
        "control",
        "length",
        "persistent",
        "chunked",
    )

    def __init__(
        self,
        version: tuple[bytes, int, int],
        code: int,
        phrase: bytes,
        headers: list[tuple[bytes, bytes]],
        control: list[tuple[bytes, bytes]],
    ) -> None:
        self.version = version
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self.control = control
        self.length: int | None = None
        self.persistent = False
        self.chunked = False

    def controlValues(self, name: bytes) -> list[bytes]:
        """
        The values of the connection-control header C{name} (lower case).
        """
        return [value for key, value in self.control if key == name]


class ResponseSink(Protocol):
    """
    What a L{ResponseParser} reports to.
    """

    def headReceived(self, head: ResponseHead) -> None:
        """
        The final (non-interim) status line and headers arrived.
        """

    def bodyReceived(self, data: bytes) -> None:
        """
        Body bytes, decoded from any chunked framing.
        """

    def bodyEnded(self) -> None:
        """
        The body is complete (its framing says so); nothing else follows
        for this response.
        """


# Parser states.
_HEAD, _LENGTH, _SIZE, _DATA, _DATA_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


def parseHead(block: bytes, bodiless: bool) -> ResponseHead | None:
    """
    The L{ResponseHead} of C{block}, a status line and header lines without
    the blank line that ends them; L{None} for an interim (C{1xx}) answer,
    which is skipped.  C{bodiless}: the request was C{HEAD}.
    """
    lines = block.split(b"\n")
    status = lines[0].rstrip(b"\r")
    parts = status.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ResponseError(f"bad status line {status[:80]!r}")
    major, dot, minor = parts[0][5:].partition(b".")
    if not (
        dot and major.isdigit() and minor.isdigit() and len(major) == len(minor) == 1
    ):
        raise ResponseError(f"bad HTTP version {parts[0][:20]!r}")
    version = (b"HTTP", int(major), int(minor))
    codeText = parts[1]
    if len(codeText) != 3 or not codeText.isdigit():
        raise ResponseError(f"bad status code {codeText[:20]!r}")
    code = int(codeText)
    if code < 100:
        raise ResponseError(f"bad status code {code}")
    if 100 <= code < 200 and code != 101:
        return None
    if code == 101:
        raise ResponseError("unexpected 101 Switching Protocols")
    phrase = parts[2] if len(parts) == 3 else b""

    headers: list[tuple[bytes, bytes]] = []
    control: list[tuple[bytes, bytes]] = []
    last: list[tuple[bytes, bytes]] | None = None
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            # Obsolete line folding: the value goes on.
            if last is None:
                raise ResponseError("header continuation before any header")
            name, value = last[-1]
            last[-1] = (name, value + b" " + line.strip(b" \t"))
            continue
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise ResponseError(f"bad header line {line[:80]!r}")
        name = name.lower()
        last = control if name in CONNECTION_CONTROL else headers
        last.append((name, value.strip(b" \t")))
    head = ResponseHead(version, code, phrase, headers, control)
    _frame(head, bodiless)
    return head


def _tokens(values: list[bytes]) -> list[bytes]:
    return [
        token.strip(b" \t").lower()
        for value in values
        for token in value.split(b",")
        if token.strip(b" \t")
    ]


def _frame(head: ResponseHead, bodiless: bool) -> None:
    """
    Set C{head}'s body length and persistence from its headers.
    """
    connection = _tokens(head.controlValues(b"connection"))
    if head.version[1:] >= (1, 1):
        persistent = b"close" not in connection
    else:
        persistent = b"keep-alive" in connection
    codings = _tokens(head.controlValues(b"transfer-encoding"))
    lengths = head.controlValues(b"content-length")
    if bodiless or head.code in (204, 304):
        head.length = 0
    elif codings:
        # Transfer-Encoding wins over Content-Length; anything but chunked
        # last is read until the server closes.
        if codings[-1] == b"chunked":
            head.length, head.chunked = None, True
        else:
            head.length, persistent = None, False
        if lengths:
            persistent = False
    elif lengths:
        values = {v.strip(b" \t") for value in lengths for v in value.split(b",")}
        if len(values) != 1:
            raise ResponseError(f"conflicting Content-Length values {sorted(values)!r}")
        (text,) = values
        if _DIGITS.fullmatch(text) is None:
            raise ResponseError(f"bad Content-Length {text[:20]!r}")
        head.length = int(text)
    else:
        head.length, persistent = None, False
    head.persistent = persistent


class ResponseParser:
    """
    Parses one response (see the module docstring); L{feed} it the bytes
    as they arrive and L{closed} when the connection ends.

    @ivar head: the response's head once received.
    @ivar done: whether the response has ended.
    @ivar received: whether any byte arrived.
    """

    def __init__(self, sink: ResponseSink, bodiless: bool = False) -> None:
        self._sink = sink
        self._bodiless = bodiless
        self._state = _HEAD
        self._buffer = b""
        self._remaining = 0
        self.head: ResponseHead | None = None
        self.received = False

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> bytes:
        """
        Parse C{data}; returns the bytes that came after the end of the
        response (a well-behaved server sends none).

        @raise ResponseError: the bytes are not a valid response.
        """
        if data:
            self.received = True
        if self._buffer:
            data, self._buffer = self._buffer + data, b""
        while True:
            state = self._state
            if state == _LENGTH:
                remaining = self._remaining
                if len(data) < remaining:
                    self._remaining = remaining - len(data)
                    if data:
                        self._sink.bodyReceived(data)
                    return b""
                self._remaining = 0
                self._state = _DONE
                self._sink.bodyReceived(
                    data[:remaining] if len(data) > remaining else data
                )
                self._sink.bodyEnded()
                return data[remaining:]
            if state == _HEAD:
                data = self._readHead(data)
                if self._state == _HEAD:
                    return b""
                continue
            if state == _UNTIL_CLOSE:
                if data:
                    self._sink.bodyReceived(data)
                return b""
            if state == _DONE:
                return data
            return self._readChunks(data)

    def _readHead(self, buffer: bytes) -> bytes:
        """
        Read heads from C{buffer} until a final one; returns what follows
        it (everything, while the head is incomplete, is kept).
        """
        while True:
            end, skip = _headEnd(buffer)
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise ResponseError(f"response head longer than {MAX_HEAD} bytes")
                self._buffer = buffer
                return b""
            if end > MAX_HEAD:
                raise ResponseError(f"response head longer than {MAX_HEAD} bytes")
            head = parseHead(buffer[:end], self._bodiless)
            buffer = buffer[end + skip :]
            if head is not None:
                break
        self.head = head
        if head.length == 0:
            self._state = _DONE
        elif head.length is not None:
            self._state, self._remaining = _LENGTH, head.length
        elif head.chunked:
            self._state = _SIZE
        else:
            self._state = _UNTIL_CLOSE
        self._sink.headReceived(head)
        if self._state == _DONE:
            self._sink.bodyEnded()
        return buffer

    def _readChunks(self, buffer: bytes) -> bytes:
        pieces: list[bytes] = []
        offset = 0
        size = len(buffer)
        state = self._state
        try:
            while offset < size:
                if state == _DATA:
                    take = min(self._remaining, size - offset)
                    pieces.append(buffer[offset : offset + take])
                    offset += take
                    self._remaining -= take
                    if self._remaining == 0:
                        state = _DATA_END
                    continue
                end = buffer.find(b"\n", offset)
                if end < 0:
                    if size - offset > MAX_LINE:
                        raise ResponseError("chunk framing line too long")
                    break
                line = buffer[offset:end]
                if line.endswith(b"\r"):
                    line = line[:-1]
                offset = end + 1
                if state == _SIZE:
                    sizeText = line.split(b";", 1)[0].strip(b" \t")
                    if _HEX.fullmatch(sizeText) is None:
                        raise ResponseError(f"bad chunk size {line[:40]!r}")
                    self._remaining = int(sizeText, 16)
                    state = _DATA if self._remaining else _TRAILER
                elif state == _DATA_END:
                    if line:
                        raise ResponseError("chunk data longer than its size")
                    state = _SIZE
                elif state == _TRAILER:
                    if not line:
                        state = _DONE
                        break
                else:  # pragma: no cover - states are exhaustive
                    raise AssertionError(state)
        finally:
            self._state = state
        if pieces:
            self._sink.bodyReceived(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        if state == _DONE:
            self._sink.bodyEnded()
            return buffer[offset:]
        self._buffer = buffer[offset:]
        return b""

    def closed(self) -> bool:
        """
        The connection ended: whether that ends the response as its framing
        allows (a body read until close).  Afterwards the parser is done.
        """
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            return True
        complete = self._state == _DONE
        self._state = _DONE
        return complete

    @property
    def untilClose(self) -> bool:
        """
        Whether the body is read until the connection closes.
        """
        return self._state == _UNTIL_CLOSE


def _headEnd(buffer: bytes) -> tuple[int, int]:
    """
    Where the blank line ending a head starts in C{buffer} (the index of
    the last header line's newline) and how long it is; C{(-1, 0)} if
    absent.  Bare C{LF} line ends are accepted.
    """
    crlf = buffer.find(b"\r\n\r\n")
    lf = buffer.find(b"\n\n", 0, crlf if crlf >= 0 else len(buffer))
    if lf >= 0:
        return lf, 2
    if crlf >= 0:
        return crlf, 4
    mixed = buffer.find(b"\n\r\n")
    if mixed >= 0:
        return mixed, 3
    return -1, 0


__all__ = [
    "CONNECTION_CONTROL",
    "MAX_HEAD",
    "MAX_LINE",
    "ResponseError",
    "ResponseHead",
    "ResponseParser",
    "ResponseSink",
    "parseHead",
]
