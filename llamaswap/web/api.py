# -*- test-case-name: test.web.test_api -*-
"""
Observability routes (HTTP behaviour sections 7.8, 10 and 11):

 - C{GET /api/events}: the UI's server-sent event stream.
 - C{GET /api/metrics/activity}: a filtered, sorted page of activity rows.
 - C{GET /api/metrics/stats[?model=]}: totals and speed histograms.
 - C{GET /api/captures/<id>}: a stored request/response capture.
 - C{POST /api/inflight/<id>/cancel}: stop an in-flight request.
 - C{GET /metrics}: Prometheus metrics (request and model metrics and
   process metrics; llama-swap's system gauges belong to the performance
   monitor).

Parameter checking is done by pure functions (L{activityQuery}); the
handlers read the observability objects they are given and write JSON.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from ..compat import isDisconnected
from ..drain import markLongLived
from ..httperrors import BadRequest, HTTPError, InternalError, NotFound
from ..observe.activity import ActivityLog
from ..observe.metrics import Metrics
from ..observe.store import SORT_COLUMNS, ActivityQuery
from ..observe.tracking import Tracker
from .errors import renderHTTPError, writeHTTPError
from .mux import ADMIN, MONITOR, Mux

log = Logger()

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
)


def jsonBody(request: Request, document: Any, status: int = 200) -> bytes:
    """
    Set C{status} and the JSON content type; the encoded C{document}.
    """
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _values(args: Mapping[bytes, Sequence[bytes]], name: str) -> list[str]:
    return [v.decode("utf-8", "replace") for v in args.get(name.encode("ascii"), [])]


def _last(args: Mapping[bytes, Sequence[bytes]], name: str) -> str | None:
    values = _values(args, name)
    return values[0] if values else None


def parseRFC3339(text: str) -> int | None:
    """
    An RFC 3339 date-time as Unix seconds (fractions dropped), or L{None}
    if C{text} is not one (a bare date is not).
    """
    if not _RFC3339.match(text):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return None
    return int(moment.timestamp() // 1)


def _positiveID(args: Mapping[bytes, Sequence[bytes]], name: str) -> int | None:
    text = _last(args, name)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"invalid {name}")
    if value < 1:
        raise BadRequest(f"{name} must be >= 1")
    return value


def _time(args: Mapping[bytes, Sequence[bytes]], name: str) -> int | None:
    text = _last(args, name)
    if text is None or text == "":
        return None
    value = parseRFC3339(text)
    if value is None:
        raise BadRequest(f"invalid '{name}' timestamp, use RFC3339 format")
    return value


def _count(
    args: Mapping[bytes, Sequence[bytes]],
    name: str,
    default: int,
    highest: int | None,
    outOfRange: str,
) -> int:
    """
    The whole number parameter C{name}, from 1 up to C{highest}.

    @raise BadRequest: C{invalid <name>} when it is not a number,
        C{outOfRange} when it is out of range.
    """
    text = _last(args, name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"invalid {name}")
    if value < 1 or (highest is not None and value > highest):
        raise BadRequest(outOfRange)
    return value


def activityQuery(args: Mapping[bytes, Sequence[bytes]]) -> ActivityQuery:
    """
    The query C{/api/metrics/activity}'s parameters ask for.

    @raise BadRequest: with llama-swap's message for a bad parameter.
    """
    limit = _count(args, "limit", 25, 999, "limit must be between 1 and 999")
    page = _count(args, "page", 1, None, "page must be >= 1")
    sort = _last(args, "sort") or "id"
    if sort not in SORT_COLUMNS:
        raise BadRequest("invalid sort column")
    order = (_last(args, "order") or "desc").lower()
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc")
    minID = _positiveID(args, "min_id")
    maxID = _positiveID(args, "max_id")
    if minID is not None and maxID is not None and minID > maxID:
        raise BadRequest("min_id must be <= max_id")
    start = _time(args, "start")
    end = _time(args, "end")
    if start is not None and end is not None and start > end:
        raise BadRequest("start must be before end")
    models = tuple(m for m in _values(args, "model") if m.strip())
    return ActivityQuery(
        models=models,
        start=start,
        end=end,
        minID=minID,
        maxID=maxID,
        limit=limit,
        page=page,
        sort=sort,
        descending=order == "desc",
    )


class ObserveAPI:
    """
    The observability handlers.
    """

    def __init__(
        self,
        *,
        openStream: Callable[[Request], object],
        activity: ActivityLog,
        tracker: Tracker,
        metrics: Metrics,
    ) -> None:
        """
        @param openStream: serves C{/api/events} on a request (the
            L{llamaswap.observe.service.ObservabilityService}'s).
        @param activity: the activity rows, stats and captures.
        @param tracker: the in-flight requests (to cancel one).
        @param metrics: the Prometheus metrics.
        """
        self.openStream = openStream
        self.activityLog = activity
        self.tracker = tracker
        self.metricsRegistry = metrics

    def _answer(
        self, request: Request, d: Deferred[Any], build: Any, failure: str
    ) -> int:
        def done(result: Any) -> None:
            if _gone(request):
                return
            request.write(jsonBody(request, build(result)))
            request.finish()

        def failed(reason: Failure) -> None:
            log.failure(failure, reason)
            if not _gone(request):
                writeHTTPError(request, InternalError(failure))

        d.addCallbacks(done, failed)
        return NOT_DONE_YET

    def events(self, request: Request, rest: bytes) -> int:
        markLongLived(request)
        self.openStream(request)
        return NOT_DONE_YET

    def activity(self, request: Request, rest: bytes) -> bytes | int:
        try:
            query = activityQuery(request.args or {})
        except HTTPError as e:
            return renderHTTPError(request, e)
        activity = self.activityLog

        def build(result: tuple[list[Any], int]) -> dict[str, Any]:
            rows, total = result
            return {
                "data": [r.toJSON(activity.hasCapture(r.id)) for r in rows],
                "page": query.page,
                "limit": query.limit,
                "total": total,
                "total_pages": -(-total // query.limit),
            }

        return self._answer(request, activity.query(query), build, "failed to get activity")

    def stats(self, request: Request, rest: bytes) -> int:
        model = _last(request.args or {}, "model") or None
        d = self.activityLog.stats(model)
        return self._answer(request, d, lambda stats: stats, "failed to get activity stats")

    def capture(self, request: Request, rest: bytes) -> bytes:
        try:
            id = int(rest.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return renderHTTPError(request, BadRequest("invalid capture ID"))
        capture = self.activityLog.captures.get(id)
        if capture is None:
            return renderHTTPError(request, NotFound("capture not found"))
        return jsonBody(request, capture.toJSON())

    def inflight(self, request: Request, rest: bytes) -> bytes:
        id, slash, action = rest.partition(b"/")
        if not id or slash != b"/" or action != b"cancel":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"404 page not found\n"
        if not self.tracker.cancel(id.decode("utf-8", "replace")):
            return renderHTTPError(request, NotFound("inflight request not found"))
        return jsonBody(request, {"msg": "ok"})

    def metrics(self, request: Request, rest: bytes) -> bytes:
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        body, contentType = self.metricsRegistry.render(accept)
        request.setHeader(b"content-type", contentType.encode("latin-1"))
        return body


def _gone(request: Request) -> bool:
    return bool(isDisconnected(request) or request.finished)


def install(mux: Mux, api: ObserveAPI) -> None:
    """
    Register the observability routes.
    """
    mux.route("GET", "/api/events", api.events, scope=MONITOR)
    mux.route("GET", "/api/metrics/activity", api.activity, scope=MONITOR)
    mux.route("GET", "/api/metrics/stats", api.stats, scope=MONITOR)
    mux.route("GET", "/api/captures/", api.capture, scope=MONITOR)
    mux.route("POST", "/api/inflight/", api.inflight, scope=ADMIN)
    mux.route("GET", "/metrics", api.metrics, scope=MONITOR)


__all__ = ["ObserveAPI", "activityQuery", "install", "jsonBody", "parseRFC3339"]
