# -*- test-case-name: test.observe.test_activity -*-
"""
Activity rows: one per metered model request, with what it cost.

L{ResponseReader} watches one upstream response as it streams past:
decompresses a gzip/deflate copy piece by piece, hands the pieces to the
incremental usage parsers of L{llamaswap.observe.usage}, keeps the head of
an error body (to quote its message) and, within the capture budget, the
body for the capture viewer.  Its memory is bounded whatever the response's
size.  L{ActivityRecord} is the row; L{ActivityLog} stores rows, keeps
captures and announces each new row.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Sequence

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .. import safejson
from ..routes import METERED_PATHS
from .captures import Capture, CaptureCache
from .usage import JSONUsage, SSEUsage, TokenMetrics, UsageTotals

if TYPE_CHECKING:
    from .store import ActivityQuery, ActivityStore

log = Logger()

#: How much of an error body is kept to find its message.
ERROR_BODY_LIMIT = 64 * 1024
#: Error messages are cut to this many characters (plus C{...}).
ERROR_MESSAGE_LIMIT = 500
#: Decompressed output is produced in pieces of at most this size.
INFLATE_PIECE = 256 * 1024

def isMetered(method: bytes | str, path: str) -> bool:
    """
    Whether a request gets an activity row: POSTs to model routes.
    """
    if isinstance(method, bytes):
        method = method.decode("ascii", "replace")
    return method.upper() == "POST" and path in METERED_PATHS


def statusText(code: int) -> str:
    """
    C{"502 Bad Gateway"}, or C{"HTTP 599"} for codes without a name.
    """
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def truncateMessage(message: str) -> str:
    if len(message) > ERROR_MESSAGE_LIMIT:
        return message[:ERROR_MESSAGE_LIMIT] + "..."
    return message


def errorMessage(body: bytes) -> str:
    """
    The message of a JSON error body: the first non-blank string among
    C{error.message}, C{error}, C{message} and C{detail}; C{""} if none.
    """
    try:
        parsed = safejson.loads(body)
    except safejson.JSONError:
        return ""
    if not isinstance(parsed, dict):
        return ""
    error = parsed.get("error")
    candidates = [
        error.get("message") if isinstance(error, dict) else None,
        error,
        parsed.get("message"),
        parsed.get("detail"),
    ]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return truncateMessage(candidate)
    return ""


def rfc3339(ts: float) -> str:
    """
    C{ts} as a local-time RFC 3339 string with second resolution
    (C{Z} when local time is UTC), as llama-swap returns timestamps.
    """
    moment = datetime.fromtimestamp(int(ts), timezone.utc).astimezone()
    text = moment.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class _Inflater:
    """
    Incremental gzip/deflate decoding with bounded output pieces.
    Deflate bodies may be zlib-wrapped (RFC 9110) or raw (some servers);
    the first bytes tell which.
    """

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._decoder: Any = None
        if encoding == "gzip":
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> list[bytes]:
        if self._decoder is None:
            wrapped = (
                len(data) >= 2
                and data[0] & 0x0F == 8
                and (data[0] * 256 + data[1]) % 31 == 0
            )
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        pieces = []
        decoder = self._decoder
        piece = decoder.decompress(data, INFLATE_PIECE)
        while True:
            if piece:
                pieces.append(piece)
            if not decoder.unconsumed_tail:
                break
            piece = decoder.decompress(decoder.unconsumed_tail, INFLATE_PIECE)
        return pieces

    def finish(self, sawData: bool) -> list[bytes]:
        if self._decoder is None:
            return []
        tail = self._decoder.flush()
        if sawData and not self._decoder.eof:
            raise zlib.error("unexpected EOF")
        return [tail] if tail else []


class ResponseReader:
    """
    Reads one relayed response for its activity row (a forwarder tap's
    work): usage and speeds for a 200, the error message otherwise, and
    the body for a capture.  Must be fed every body chunk, in order.

    @ivar status: the upstream's status, L{None} before it answered.
    @ivar contentType: the response's C{Content-Type}.
    @ivar respHeaders: the response headers as the upstream sent them.
    @ivar bodyBytes: body bytes seen (as sent, before decompression).
    @ivar decodeError: why the body could not be decompressed, if so.
    @ivar streamed: whether the response was an event stream.
    """

    def __init__(self, path: str, captureLimit: int = 0) -> None:
        """
        @param path: the request path (C{/infill} answers are arrays).
        @param captureLimit: keep up to this many decompressed body bytes
            for a capture (0: none).
        """
        self.path = path
        self.status: int | None = None
        self.contentType = ""
        self.respHeaders: list[tuple[bytes, list[bytes]]] = []
        self.bodyBytes = 0
        self.decodeError: str | None = None
        self.streamed = False
        self._captureLimit = captureLimit
        self._body: bytearray | None = None
        self._bodyOverflow = False
        self._errorHead: bytearray | None = None
        self._totals = UsageTotals()
        self._parser: SSEUsage | JSONUsage | None = None
        self._inflater: _Inflater | None = None
        self._ended = False

    # -- the tap ---------------------------------------------------------------

    def responseStarted(self, status: int, headers: Any) -> None:
        self.status = status
        self.respHeaders = [(k, list(v)) for k, v in headers.getAllRawHeaders()]
        self.contentType = (headers.getRawHeaders(b"content-type") or [b""])[0].decode(
            "latin-1"
        )
        encoding = (headers.getRawHeaders(b"content-encoding") or [b""])[0]
        encoding = encoding.decode("latin-1").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._inflater = _Inflater("gzip")
        elif encoding == "deflate":
            self._inflater = _Inflater("deflate")
        self.streamed = "text/event-stream" in self.contentType.lower()
        if status == 200:
            if self.streamed:
                self._parser = SSEUsage(self._totals)
            else:
                self._parser = JSONUsage(self._totals, self.path.startswith("/infill"))
            if self._captureLimit > 0:
                self._body = bytearray()
        else:
            self._errorHead = bytearray()

    def dataReceived(self, data: bytes) -> None:
        self.bodyBytes += len(data)
        if self.decodeError is not None or self.status is None:
            return
        if self._inflater is None:
            self._consume(data)
            return
        try:
            pieces = self._inflater.feed(data)
        except zlib.error as e:
            self._failDecoding(e)
            return
        for piece in pieces:
            self._consume(piece)

    def responseEnded(self, reason: object) -> None:
        if self._ended:
            return
        self._ended = True
        if self._inflater is not None and self.decodeError is None:
            try:
                pieces = self._inflater.finish(self.bodyBytes > 0 and reason is None)
            except zlib.error as e:
                self._failDecoding(e)
            else:
                for piece in pieces:
                    self._consume(piece)
        if self._parser is not None and self.decodeError is None:
            self._parser.close()

    # -- reading -------------------------------------------------------------

    def _failDecoding(self, error: Exception) -> None:
        self.decodeError = str(error) or type(error).__name__
        self._parser = None
        self._body = None
        self._errorHead = None

    def _consume(self, data: bytes) -> None:
        if self._parser is not None:
            self._parser.feed(data)
        body = self._body
        if body is not None:
            if len(body) + len(data) > self._captureLimit:
                self._body = None
                self._bodyOverflow = True
            else:
                body += data
        head = self._errorHead
        if head is not None and len(head) < ERROR_BODY_LIMIT:
            head += data[: ERROR_BODY_LIMIT - len(head)]

    # -- results -------------------------------------------------------------

    def metrics(self, wallMs: int) -> TokenMetrics | None:
        """
        The usage found in a 200 response, or L{None}.
        """
        if self.status != 200 or self.decodeError is not None:
            return None
        return self._totals.build(wallMs)

    def errorMessage(self) -> str:
        """
        The row's C{error_msg} for what the upstream answered.
        """
        if self.status is None:
            return ""
        if self.decodeError is not None:
            what = "decompression" if self.status == 200 else "decode"
            return f"response {what} failed: {self.decodeError}"
        if self.status == 200:
            return ""
        head = bytes(self._errorHead or b"")
        return errorMessage(head) or statusText(self.status)

    @property
    def capturable(self) -> bool:
        """
        Whether a capture may be kept (not when decompression failed or
        the body did not fit the budget).
        """
        return self.decodeError is None and not self._bodyOverflow

    def body(self) -> bytes | None:
        """
        The decompressed body kept for a capture (200 responses only).
        """
        return None if self._body is None else bytes(self._body)


@define
class ActivityRecord:
    """
    One activity row.

    @ivar id: assigned by the store.
    @ivar timestamp: Unix seconds at the end of the request.
    @ivar ttfbMs: milliseconds from the request's arrival to the first
        response body byte; -1 if none came.
    @ivar queueMs: milliseconds spent waiting for the model (queued or
        loading).
    """

    timestamp: float
    model: str
    reqPath: str
    respContentType: str = ""
    status: int = 0
    tokens: TokenMetrics = field(factory=TokenMetrics)
    durationMs: int = 0
    errorMsg: str = ""
    metadata: dict[str, str] = field(factory=dict)
    ttfbMs: int = -1
    queueMs: int = 0
    id: int | None = None

    def toJSON(self, hasCapture: bool = False) -> dict[str, Any]:
        """
        The C{/api/metrics/activity} entry.
        """
        tokens = self.tokens
        entry: dict[str, Any] = {
            "id": self.id,
            "timestamp": rfc3339(self.timestamp),
            "model": self.model,
            "req_path": self.reqPath,
            "resp_content_type": self.respContentType,
            "resp_status_code": self.status,
            "tokens": {
                "cache_tokens": tokens.cacheTokens,
                "draft_tokens": tokens.draftTokens,
                "draft_acc_tokens": tokens.draftAcceptedTokens,
                "input_tokens": tokens.inputTokens,
                "output_tokens": tokens.outputTokens,
                "prompt_per_second": tokens.promptPerSecond,
                "tokens_per_second": tokens.tokensPerSecond,
            },
            "duration_ms": self.durationMs,
            "ttfb_ms": self.ttfbMs,
            "queue_ms": self.queueMs,
            "has_capture": hasCapture,
        }
        if self.errorMsg:
            entry["error_msg"] = self.errorMsg
        if self.metadata:
            entry["metadata"] = dict(self.metadata)
        return entry


def histogram(values: Sequence[float]) -> dict[str, Any] | None:
    """
    The speed histogram of C{/api/metrics/stats} over the positive
    C{values}: C{clamp(ceil(log2 n) + 1, 5, 20)} equal bins between min
    and max, and the 50th/95th/99th percentiles (linear interpolation);
    L{None} without values.
    """
    data = sorted(v for v in values if v > 0)
    n = len(data)
    if not n:
        return None
    low, high = data[0], data[-1]

    def percentile(p: float) -> float:
        rank = p / 100.0 * (n - 1)
        below = int(rank)
        above = min(below + 1, n - 1)
        return data[below] + (data[above] - data[below]) * (rank - below)

    if high == low:
        bins, width = [n], 0.0
    else:
        count = max(5, min(20, (n - 1).bit_length() + 1))
        width = (high - low) / count
        bins = [0] * count
        for v in data:
            bins[min(int((v - low) / width), count - 1)] += 1
    return {
        "bins": bins,
        "min": low,
        "max": high,
        "binSize": width,
        "p50": percentile(50),
        "p95": percentile(95),
        "p99": percentile(99),
    }


class ActivityLog:
    """
    Where finished requests go: the store gives each row its ID, then the
    capture is kept and the row announced (C{activity} event).
    """

    def __init__(
        self,
        store: ActivityStore,
        captures: CaptureCache,
        announce: Callable[[ActivityRecord], None] = lambda record: None,
    ) -> None:
        self.store = store
        self.captures = captures
        self._announce = announce

    def record(
        self, record: ActivityRecord, capture: Capture | None = None
    ) -> Deferred[ActivityRecord]:
        """
        Store C{record} (and C{capture} under its ID).

        @return: fires with the record, its C{id} set; never fails (a
            store error is logged).
        """
        d = self.store.insert(record)

        def stored(id: int) -> ActivityRecord:
            record.id = id
            if capture is not None:
                self.captures.add(capture.withID(id))
            self._announce(record)
            return record

        def failed(failure: Any) -> ActivityRecord:
            from .store import StoreClosed  # (the store module imports this one)

            if failure.check(StoreClosed):
                log.info("activity row of {path} not stored: shutting down",
                         path=record.reqPath)
            else:
                log.failure("storing an activity row failed", failure)
            return record

        return d.addCallbacks(stored, failed)

    def query(self, query: ActivityQuery) -> Deferred[tuple[list[ActivityRecord], int]]:
        return self.store.query(query)

    def stats(self, model: str | None = None) -> Deferred[dict[str, Any]]:
        """
        The C{/api/metrics/stats} answer.
        """

        def build(raw: dict[str, Any]) -> dict[str, Any]:
            return {
                "total_requests": raw["total_requests"],
                "total_input_tokens": raw["total_input_tokens"],
                "total_output_tokens": raw["total_output_tokens"],
                "total_cache_tokens": raw["total_cache_tokens"],
                "prompt_histogram": histogram(raw["prompt_speeds"]),
                "gen_histogram": histogram(raw["gen_speeds"]),
            }

        return self.store.stats(model).addCallback(build)

    def hasCapture(self, id: int | None) -> bool:
        return id is not None and id in self.captures


__all__ = [
    "ActivityLog",
    "ActivityRecord",
    "METERED_PATHS",
    "ResponseReader",
    "errorMessage",
    "histogram",
    "isMetered",
    "rfc3339",
    "statusText",
]
