# -*- test-case-name: test.observe.test_access -*-
"""
The access log: one proxy-log line per request, when its response ends
(a stream is logged when the client disconnects), in llama-swap's format::

    Request <client> "<METHOD> <path> <proto>" <status> <bytes> "<User-Agent>" <duration>

The path has no query string; C{<bytes>} counts response body bytes;
C{<duration>} is in Go's notation (C{1.52ms}); the client is the first
C{X-Forwarded-For} entry, else C{X-Real-IP}, else the peer's address.
Paths under C{/wol-health}, C{/api/performance} and C{/metrics} are not
logged (monitoring polls them).

The line is an ordinary L{twisted.logger} event at info level in the
C{llamaswap.access} namespace, so it lands in the proxy log (and in
twistd's log when the proxy log goes to stdout).  Its fields are those of
L{ACCESS_FORMAT}; its C{log_format} is C{{line}}, an L{AccessLine} that
renders them once, when the first observer writes the event (Twisted's
own rendering of an eight-field format is done again by every observer
and costs more than the rest of the line's work).
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.web.server import Request

from ..backlog import Later, runNow
from ..compat import isDisconnected
from ..finish import whenFinished
from .logformat import LINE_FORMAT, goDuration

#: The status of a request whose client left before it was answered
#: (nginx's convention, as llama-swap and the activity log use).
CLIENT_CLOSED = 499

#: Paths (prefixes) left out of the access log.
SKIPPED_PREFIXES = (b"/wol-health", b"/api/performance", b"/metrics")

#: The access log's logger (module level: as a class attribute a Logger
#: takes its class's name as namespace).
accessLogger = Logger(namespace="llamaswap.access")

ACCESS_FORMAT = (
    'Request {client} "{method} {path} {proto}" {status} {bytes} "{userAgent}" {duration}'
)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return value.decode("utf-8", "replace")


#: The request attribute remembering its L{clientAddress} (the access log
#: and the request tracker both ask).
_CLIENT = "_llamaswapClient"


def clientAddress(request: Any) -> str:
    """
    Who made C{request}: the first C{X-Forwarded-For} entry, else
    C{X-Real-IP}, else the peer's host.
    """
    attributes = getattr(request, "__dict__", None)
    if attributes is None:
        return _clientAddress(request)
    known = attributes.get(_CLIENT)
    if known is None:
        known = attributes[_CLIENT] = _clientAddress(request)
    return known


def _clientAddress(request: Any) -> str:
    forwarded = request.getHeader(b"x-forwarded-for")
    if forwarded:
        first = _text(forwarded).split(",")[0].strip()
        if first:
            return first
    real = request.getHeader(b"x-real-ip")
    if real:
        return _text(real).strip()
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    if host is None:
        return "-"
    return _text(host)


def isLogged(path: bytes) -> bool:
    """
    Whether a request for C{path} gets an access-log line.
    """
    return not path.startswith(SKIPPED_PREFIXES)


def accessFields(request: Any, duration: float) -> dict[str, Any]:
    """
    The fields of C{request}'s access-log event.  A client that left before
    its response started (while its model loaded, or cancelled through
    C{/api/inflight/<id>/cancel}) is logged as 499, as in the activity
    log, not as the 200 twisted.web assumes.
    """
    status = request.code
    if not request.startedWriting and isDisconnected(request):
        status = CLIENT_CLOSED
    return {
        "client": clientAddress(request),
        "method": _text(request.method),
        "path": _text(request.path),
        "proto": _text(request.clientproto),
        "status": status,
        "bytes": request.sentLength,
        "userAgent": _text(request.getHeader(b"user-agent")),
        "duration": goDuration(duration),
        "elapsed": duration,
    }


class AccessLine:
    """
    An access-log line, rendered from its fields (L{ACCESS_FORMAT}) the
    first time it is formatted and then reused.
    """

    __slots__ = ("_fields", "_text")

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            self._text = ACCESS_FORMAT.format_map(self._fields)
        return self._text

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return repr(str(self))


def logAccess(fields: dict[str, Any]) -> None:
    """
    Log an access line with C{fields}: the event C{accessLogger.info}
    would emit, built directly (L{Logger.emit} first checks the level by
    sorting every L{LogLevel}, once per request here).
    """
    event = dict(fields)
    event["line"] = AccessLine(fields)
    event["log_logger"] = accessLogger
    event["log_level"] = LogLevel.info
    event["log_namespace"] = accessLogger.namespace
    event["log_source"] = None
    event["log_format"] = LINE_FORMAT
    event["log_time"] = time.time()
    accessLogger.observer(event)


def _logLine(request: Any, duration: float) -> Iterator[None]:
    fields = accessFields(request, duration)
    yield
    logAccess(fields)


class AccessLog:
    """
    Logs each request once, when its response ends or its client goes.
    """

    def __init__(self, clock: IReactorTime, later: Later = runNow) -> None:
        """
        @param later: writes a line when the proxy is quiet
            (L{llamaswap.backlog.Backlog.later}); its duration is taken
            when the request ends.
        """
        self._clock = clock
        self._later = later

    def begin(self, request: Request) -> None:
        """
        Start timing C{request}; its line is logged when it finishes.
        """
        if not isLogged(request.path):
            return
        started = self._clock.seconds()

        def finished(_: object) -> None:
            self._later(_logLine, request, self._clock.seconds() - started)

        whenFinished(request, finished)


__all__ = [
    "ACCESS_FORMAT",
    "CLIENT_CLOSED",
    "LINE_FORMAT",
    "SKIPPED_PREFIXES",
    "AccessLine",
    "AccessLog",
    "accessFields",
    "clientAddress",
    "isLogged",
    "logAccess",
]
