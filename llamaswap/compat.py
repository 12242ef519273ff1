# -*- test-case-name: test.test_compat -*-
"""
The one place llamaswap touches Twisted's private internals.

Each helper says why the public API does not suffice; L{test.test_compat}
fails loudly when a Twisted release changes what a helper relies on.
Nothing else in the package names a private Twisted module, class or
attribute.
"""

from __future__ import annotations

import os
import select
from functools import partial
from typing import Any, Callable
from urllib.parse import unquote_to_bytes

from twisted.internet.abstract import FileDescriptor
from twisted.logger import FileLogObserver, LogPublisher
from twisted.python.failure import Failure
from twisted.web.http import _ChunkedTransferDecoder, _IdentityTransferDecoder
from twisted.web.http_headers import Headers, _nameEncoder
from twisted.web.resource import _IEncodingResource
from twisted.web.server import Request
from twisted.web.server import version as _serverVersion

# -- the client side of a twisted.web request -------------------------------


def isDisconnected(request: Request) -> bool:
    """
    Whether the client of C{request} has gone.  C{notifyFinish} tells when
    it happens; a synchronous check (before writing, or for a request whose
    Deferred was already consumed) needs the flag behind it.
    """
    return bool(getattr(request, "_disconnected", False))


def isClientBufferFull(request: Request) -> bool:
    """
    Whether C{request}'s channel is waiting for its client's socket buffer
    to drain.  C{HTTPChannel.registerProducer} does not pause a producer
    registered while it waits, so a streaming producer has to know and
    start paused itself.
    """
    return bool(getattr(request.channel, "_waitingForTransport", False))


def takeReadBuffer(channel: object) -> bytes | None:
    """
    Take the bytes C{channel} (an C{HTTPChannel}) has read past the current
    request, leaving it none; L{None} for a channel without that buffer
    (HTTP/2).  Taking a connection over (a websocket) must carry on with
    what the client already sent; twisted.web has no public hand-over.
    """
    buffered = getattr(channel, "_dataBuffer", None)
    if buffered is None:
        return None
    channel._dataBuffer = []  # type: ignore[attr-defined]
    return b"".join(buffered)


def chunkedDecoder(
    dataCallback: Callable[[bytes], None], finishCallback: Callable[[bytes], None]
) -> Any:
    """
    twisted.web's decoder of a C{Transfer-Encoding: chunked} body: feed it
    with C{dataReceived(bytes)}; it calls C{dataCallback(chunk)} with the
    payload and C{finishCallback(rest)} after the last chunk (C{rest}: the
    bytes after the body).  Twisted has no public one.
    """
    return _ChunkedTransferDecoder(dataCallback, finishCallback)


def identityDecoder(
    length: int,
    dataCallback: Callable[[bytes], None],
    finishCallback: Callable[[bytes], None],
) -> Any:
    """
    twisted.web's decoder of a body of C{length} bytes, with the interface
    of L{chunkedDecoder}.
    """
    return _IdentityTransferDecoder(length, dataCallback, finishCallback)


# -- logging -------------------------------------------------------------------


def logObservers(publisher: LogPublisher) -> list[Any] | None:
    """
    C{publisher}'s observer list itself (changes to it take effect), or
    L{None} if it has none.  C{LogPublisher} can add and remove observers
    but not list or wrap them in place, which putting a filter in front of
    every observer someone else registered needs.
    """
    observers = getattr(publisher, "_observers", None)
    return observers if isinstance(observers, list) else None


def rawHeaderDict(headers: Headers) -> dict[bytes, list[bytes]] | None:
    """
    C{headers}' own name-to-values dict (names in canonical case, values
    checked), or L{None} if it has none.  Copying a header from another
    L{Headers} into it needs neither C{setRawHeaders}' name canonicalising
    nor its per-value check: both were done when the source got them.
    """
    raw = getattr(headers, "_rawHeaders", None)
    return raw if isinstance(raw, dict) else None


def headersFromPairs(pairs: list[tuple[bytes, bytes]]) -> Headers:
    """
    L{Headers} holding C{pairs} (names already checked as tokens, values
    split off their lines), in order: what C{addRawHeader} per pair
    stores, without its per-value type dispatch and line joining, which a
    value without a line break does not need.
    """
    headers = Headers()
    raw = rawHeaderDict(headers)
    if raw is None:
        for name, value in pairs:
            headers.addRawHeader(name, value)
        return headers
    encode = _nameEncoder.encode
    for name, value in pairs:
        if b"\r" in value or b"\n" in value:
            value = b" ".join(value.splitlines())
        raw.setdefault(encode(name), []).append(value)
    return headers


def processRequest(request: Request, date: bytes) -> None:
    """
    What C{Request.process} does, with the C{Date} value given (formatted
    once a second by the caller rather than per request), both default
    headers stored without C{setHeader}'s checks (they are constants) and
    the path split without unquoting when it has nothing quoted.  The
    short-circuit for C{*} and the encoder hook are private to
    twisted.web.server.
    """
    request.site = request.channel.site
    raw = rawHeaderDict(request.responseHeaders)
    if raw is not None:
        raw[b"Server"] = [_serverVersion]
        raw[b"Date"] = [date]
    else:
        request.setHeader(b"Server", _serverVersion)
        request.setHeader(b"Date", date)
    request.prepath = []
    path = request.path
    segments = path[1:].split(b"/")
    request.postpath = list(map(unquote_to_bytes, segments)) if b"%" in path else segments
    if path == b"*":
        request._handleStar()
        return
    try:
        resource = request.site.getResourceFor(request)
        if _IEncodingResource.providedBy(resource):
            encoder = resource.getEncoder(request)
            if encoder is not None:
                request._encoder = encoder
        request.render(resource)
    except BaseException:
        request.processingFailed(Failure())


def reactorPoll(reactor: object) -> Callable[[float], bool] | None:
    """
    A wait for any descriptor of C{reactor} to be ready (bytes to read, a
    connection to accept, room for a writer that waits) for up to
    C{timeout} seconds (zero: just a look, negative: no limit), which
    leaves the events to the reactor: whether one is ready.  L{None} for
    a reactor that cannot tell.

    Only the epoll reactor can: its epoll object is private, and epoll's
    readiness is level-triggered, so asking consumes nothing the
    reactor's own wait would report.
    """
    poller = getattr(reactor, "_poller", None)
    if not isinstance(poller, select.epoll):
        return None
    poll = poller.poll

    def ready(timeout: float) -> bool:
        try:
            return bool(poll(timeout, 1))
        except (OSError, ValueError):
            # Closed with the reactor: nothing more will be handled.
            return False

    return ready


def ioWaiting(reactor: object) -> Callable[[], bool] | None:
    """
    A check whether any descriptor of C{reactor} is ready now (see
    L{reactorPoll}); L{None} for a reactor that cannot tell.
    """
    ready = reactorPoll(reactor)
    return None if ready is None else partial(ready, 0)


def sendNow(transport: object) -> None:
    """
    Send what C{transport} has buffered now rather than when the reactor
    next polls, so that the bytes of a response leave before the work that
    follows them in the same reactor turn (access log, activity row,
    metrics...).  Only for a plain socket transport that is open and not
    closing; anything else is left to the reactor.

    A transport buffers writes and sends them when the reactor finds its
    socket writable; C{doWrite} is that step.  With the closing states
    excluded it returns L{None} or a send error, and after an error the
    socket is still registered for writing, so the reactor meets the error
    again on its own and closes the connection as usual.
    """
    if _openSocket(transport) and (
        getattr(transport, "_tempDataLen", 0) or transport.dataBuffer
    ):
        transport.doWrite()


def _openSocket(transport: object) -> bool:
    """
    Whether C{transport} is a socket descriptor that is open and not
    closing, whose buffer can be written from here.
    """
    return (
        isinstance(transport, FileDescriptor)
        and bool(transport.connected)
        and not transport.disconnecting
        and not getattr(transport, "_writeDisconnecting", True)
    )


def writeNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} on C{transport} and send it now.  When nothing is
    buffered (a request on an idle connection) the bytes go to the socket
    straight away: the reactor is not asked to watch it for writability
    and then told to stop (two C{epoll_ctl} calls per write).  Otherwise,
    or for anything but an open socket descriptor, an ordinary write and
    L{sendNow}.  A send error buffers the bytes instead, so the reactor
    meets the error and closes the connection as usual.
    """
    if (
        _openSocket(transport)
        and not transport.dataBuffer
        and not getattr(transport, "_tempDataLen", 1)
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int):
            if sent < len(data):
                transport.write(data[sent:])
            return
    transport.write(data)
    sendNow(transport)


def classicTextFile(observer: object) -> tuple[Any, str | None] | None:
    """
    The file and time format of a L{textFileLogObserver} (what twistd logs
    to), or L{None} for any other observer.  Its lines are
    C{<time> [<system>] <text>}; a writer that knows this can write an
    already formatted line the same way without Twisted's per-event
    formatting (a format string, a time zone lookup and C{strftime}).
    The time format lives only in the formatting closure's cell.
    """
    if not isinstance(observer, FileLogObserver):
        return None
    formatEvent = observer.formatEvent
    if getattr(formatEvent, "__qualname__", "") != "textFileLogObserver.<locals>.formatEvent":
        return None
    code = getattr(formatEvent, "__code__", None)
    cells = getattr(formatEvent, "__closure__", None) or ()
    if code is None or code.co_freevars != ("timeFormat",) or len(cells) != 1:
        return None
    timeFormat = cells[0].cell_contents
    if timeFormat is not None and not isinstance(timeFormat, str):
        return None
    outFile = getattr(observer, "_outFile", None)
    if outFile is None or getattr(observer, "_encoding", "") is not None:
        # Only text files (twistd's stdout and log files are).
        return None
    return outFile, timeFormat


__all__ = [
    "chunkedDecoder",
    "classicTextFile",
    "headersFromPairs",
    "identityDecoder",
    "isClientBufferFull",
    "isDisconnected",
    "logObservers",
    "rawHeaderDict",
    "sendNow",
    "takeReadBuffer",
    "writeNow",
]


# -- a child process's pipes ------------------------------------------------


def readPendingOutput(transport: object, childFD: int) -> bytes:
    """
    Read what is waiting in the pipe of C{transport}'s (a
    C{twisted.internet.process.Process}) child descriptor C{childFD}
    without waiting for the reactor: a recycled keeper says its server has
    ended while the server's last output may still sit unread in the
    pipes, and that output must reach the model it belongs to before the
    keeper serves another.  Twisted has no public way to reach the pipe.
    """
    reader = getattr(transport, "pipes", {}).get(childFD)
    if reader is None:
        return b""
    chunks = []
    while True:
        try:
            data = os.read(reader.fileno(), 65536)
        except OSError:  # EAGAIN: drained; or already closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)
