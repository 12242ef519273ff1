# -*- test-case-name: test.observe.test_tracking -*-
"""
Request tracking: the one object a model-routed handler talks to.

The handler brackets each request::

    track = tracker.begin(request, modelName, path)
    track.queued()                 # before waiting for the router
    track.granted(lease)           # the lease came
    await forwarder.forward(..., taps=track.forwarding(body))
    # (the track is passed along the request path, never looked up)
    # or, when it fails before being forwarded:
    track.finished(None, error)

and the tracker does the rest: the in-flight list (C{inflight} events,
C{POST /api/inflight/<id>/cancel}), the activity row with tokens, speeds,
time to first byte and queue time (stored, announced as an C{activity}
event), the capture, and the Prometheus request metrics.

The track is itself the forwarder tap: it reads the response as it passes,
keeping nothing but counters, parser state and (within the capture budget)
the capture body, and records the exchange when the forwarder reports its
end (C{responseEnded}), so a relayed request needs no C{finished} call
(a later one does nothing).  A track whose request ends without either is
closed after L{ABANDON_AFTER} seconds.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from functools import cached_property
from typing import Any, Callable, Iterator, Mapping

from attrs import evolve, frozen
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from ..backlog import Later, runNow
from ..compat import isDisconnected
from ..delayed import cancelCall
from ..finish import whenFinished
from ..httperrors import HTTPError, connectionError
from .access import CLIENT_CLOSED, clientAddress
from .activity import (
    METERED_PATHS,
    ActivityLog,
    ActivityRecord,
    ResponseReader,
    isMetered,
    statusText,
)
from .activity import rfc3339 as _rfc3339
from .captures import Capture, CaptureCache, maskFor, mayHoldSecrets, redactBody, redactHeaders
from .metrics import Metrics
from .usage import TokenMetrics

log = Logger()

#: In-flight byte-count updates are sent at most this often per request.
THROTTLE = 0.25
#: A track whose HTTP request ended is closed after this many seconds if
#: the handler never called L{RequestTrack.finished} (a safety net).
ABANDON_AFTER = 30.0
#: Metrics labels for names and paths outside the configuration and the
#: route table.
UNKNOWN_LABEL = "(unknown)"
OTHER_LABEL = "(other)"
LABELLED_PATHS = METERED_PATHS | {"/props", "/v1/audio/voices", "/sdapi/v1/loras"}

# Forwarder outcomes (see llamaswap.web.forward).
_COMPLETE = "complete"
_TRUNCATED = "truncated"
_CLIENT_GONE = "client-gone"
_FAILED = "failed"


@frozen
class Exchange:
    """
    How a relayed exchange ended, as its tap saw it (the fields of
    L{llamaswap.web.forward.ForwardResult} a row needs).
    """

    outcome: str
    status: int | None
    reason: Failure | None
    firstByteAt: float | None
    endedAt: float


def requestPath(request: Request) -> str:
    """
    The path an activity row records for a model route: no query, and the
    C{/v} and C{/audioapi} prefixes removed as they are upstream.
    """
    path = (request.path or b"/").decode("utf-8", "replace")
    if path.startswith("/v/"):
        return path[2:]
    if path.startswith("/audioapi/"):
        return path[len("/audioapi") :]
    return path


#: The metadata entry naming the API key a request used.
KEY_NAME = "key_name"


class RequestTrack:
    """
    One model request being handled; also the forwarder tap that watches
    its response.

    @ivar id: the in-flight ID (a decimal string).
    @ivar model: the model name, replaced by the model ID once granted.
    @ivar path: the path recorded (prefixes removed, no query).
    @ivar metadata: string metadata stored with the activity row
        (C{fifo_priority}, C{selector}); handlers may add to it.
    @ivar onCancel: called by L{cancel} instead of closing the client's
        connection, when a handler has a better way to stop.
    """

    def __init__(self, tracker: Tracker, id: str, request: Request, model: str, path: str) -> None:
        self._tracker = tracker
        self._clock = tracker.clock
        self.id = id
        self.request = request
        self.model = model
        self.path = path
        self.method = (request.method or b"GET").decode("ascii", "replace")
        self.metered = isMetered(self.method, path)
        self.startedAt = self._clock.seconds()
        self.queuedAt: float | None = None
        self.grantedAt: float | None = None
        self.metadata: dict[str, str] = {}
        self._respRaw: list[tuple[bytes, list[bytes]]] | None = None
        self._respHeaders: dict[str, str] | None = None
        self.respBytes = 0
        self.onCancel: Callable[[], None] | None = None
        self.reader: ResponseReader | None = None
        self.record: ActivityRecord | None = None
        self._counted: str | None = None
        self._firstByteAt: float | None = None
        self._reqBody: bytes | None = None
        captures = tracker.captures
        self._captureLimit = captures.budget if captures is not None and self.metered else 0
        self._mask = maskFor(path)
        if self._captureLimit and self._mask.reqBody:
            self._reqBody = self._requestBody(None, self._captureLimit)
        self._lastEmit: float | None = None
        self._timer: IDelayedCall | None = None
        self._abandon: IDelayedCall | None = None
        #: The forwarder reported the end; recording it waits (later).
        self._ending = False
        self._done = False

    # Read when shown or recorded, off the request's way upstream (the
    # request's headers do not change meanwhile).

    @cached_property
    def clientIP(self) -> str:
        return clientAddress(self.request)

    @cached_property
    def reqHeaders(self) -> dict[str, str]:
        return redactHeaders(self.request.requestHeaders.getAllRawHeaders())

    # -- the handler's calls --------------------------------------------------

    def queued(self) -> None:
        """
        The request now waits for its model.
        """
        self.queuedAt = self._clock.seconds()
        self._tracker._upsert(self)

    def granted(self, lease: Any = None) -> None:
        """
        The model is ready for it; C{lease} (a router lease) names the
        model ID and the FIFO priority.
        """
        self.grantedAt = self._clock.seconds()
        if lease is not None:
            self.model = getattr(lease, "model", self.model)
            priority = getattr(lease, "priority", None)
            if priority is not None:
                self.metadata["fifo_priority"] = str(priority)
        self._tracker._granted(self)
        self._tracker._upsert(self)

    def forwarding(self, body: bytes | None = None) -> list[Any]:
        """
        The request goes upstream now.

        @param body: the rewritten body being sent, or L{None} for the
            client's own (read from C{request.content} for the capture).
        @return: the taps to pass to L{Forwarder.forward}.
        """
        limit = self._captureLimit
        mask = self._mask
        if limit and mask.reqBody and body is not None:
            self._reqBody = self._requestBody(body, limit)
        self.reader = ResponseReader(self.path, limit if mask.respBody else 0)
        return [self]

    def relaying(
        self, requested: str, selector: str | None = None, body: object = None
    ) -> list[Any]:
        """
        A model request goes upstream now, as decided: recorded under the
        C{requested} name until a lease names the model, with the
        C{selector} that chose it; C{body} is the rewritten body, if
        bytes.

        @return: the taps to pass to L{Forwarder.forward}.
        """
        if requested and self.grantedAt is None:
            self.model = requested
        if selector:
            self.metadata["selector"] = selector
        return self.forwarding(body if isinstance(body, bytes) else None)

    def finished(self, result: Any = None, error: BaseException | Failure | None = None) -> None:
        """
        The request is over: C{result} is the forwarder's L{ForwardResult}
        (L{None} if it never got that far), C{error} why not.  Later calls
        do nothing.
        """
        for _ in self._finishing(result, error):
            pass

    def _finishing(self, result: Any, error: BaseException | Failure | None) -> Iterator[None]:
        """
        L{finished} in steps (bookkeeping run by the tracker's C{later}
        yields between them).
        """
        if self._done:
            return
        self._done = True
        self._cancelTimers()
        tracker = self._tracker
        tracker._remove(self)
        if isinstance(error, Failure):
            error = error.value
        try:
            record = self._build(result, error)
        except Exception:
            log.failure("building the activity row of {path} failed", path=self.path)
            return
        self.record = record
        yield
        try:
            capture = self._capture(record.status)
        except Exception:
            log.failure("capturing {path} failed", path=self.path)
            capture = None
        yield
        yield from tracker._finished(self, record, capture)

    def cancel(self) -> None:
        """
        Stop the request (C{POST /api/inflight/<id>/cancel}): its
        C{onCancel}, else close the client's connection, which withdraws a
        waiting request and aborts a relay.
        """
        if self.onCancel is not None:
            self.onCancel()
            return
        channel = getattr(self.request, "channel", None)
        transport = getattr(channel, "transport", None)
        if transport is not None and hasattr(transport, "abortConnection"):
            transport.abortConnection()
        else:
            self.request.loseConnection()

    # -- the tap -----------------------------------------------------------

    def responseStarted(self, status: int, headers: Any) -> None:
        if self.reader is not None:
            self.reader.responseStarted(status, headers)
        # Redacted only if shown (an in-flight event or snapshot).
        self._respRaw = list(headers.getAllRawHeaders())
        self._respHeaders = None
        self._tracker._upsert(self)
        self._lastEmit = self._clock.seconds()

    def dataReceived(self, data: bytes) -> None:
        if self._firstByteAt is None:
            self._firstByteAt = self._clock.seconds()
        self.respBytes += len(data)
        if self.reader is not None:
            self.reader.dataReceived(data)
        if self._timer is not None or self._done:
            return
        if not self._tracker._listening():
            # Nothing would be published; whoever subscribes gets the
            # current count in the snapshot.
            return
        now = self._clock.seconds()
        if self._lastEmit is None or now - self._lastEmit >= THROTTLE:
            self._emitBytes()
        else:
            self._timer = self._clock.callLater(
                THROTTLE - (now - self._lastEmit), self._emitBytes
            )

    def responseEnded(self, reason: Failure | None) -> None:
        """
        The exchange is over (the forwarder says so before its Deferred
        fires): record it from what the tap saw, as bookkeeping that can
        wait (the tracker's C{later}); how and when it ended is taken now.
        """
        self._ending = True
        self._tracker.later(self._ended, reason, self._exchangeResult(reason))

    def _ended(self, reason: Failure | None, exchange: Exchange) -> Iterator[None]:
        if self.reader is not None:
            self.reader.responseEnded(reason)
            yield
        yield from self._finishing(exchange, None)

    def _exchangeResult(self, reason: Failure | None) -> Exchange:
        request = self.request
        reader = self.reader
        answered = reader is not None and reader.status is not None
        if reason is None:
            outcome = _COMPLETE
        elif isDisconnected(request):
            outcome = _CLIENT_GONE
        elif answered:
            outcome = _TRUNCATED
        else:
            outcome = _FAILED
        status: int | None
        if answered:
            status = reader.status  # type: ignore[union-attr]
        elif request.startedWriting:
            status = int(request.code)
        else:
            status = None
        return Exchange(
            outcome=outcome,
            status=status,
            reason=reason,
            firstByteAt=self._firstByteAt,
            endedAt=self._clock.seconds(),
        )

    # -- in-flight ----------------------------------------------------------

    def _emitBytes(self) -> None:
        self._timer = None
        if self._done:
            return
        self._lastEmit = self._clock.seconds()
        self._tracker._upsert(self)

    def requestEnded(self, _: object) -> None:
        """
        The HTTP request finished or its client left; if the handler does
        not report the end, close the track after L{ABANDON_AFTER}.
        """
        if not self._done and not self._ending:
            self._abandon = self._clock.callLater(ABANDON_AFTER, self._abandoned)

    def _abandoned(self) -> None:
        self._abandon = None
        if not self._done:
            log.warn("request {id} for {path} was never reported finished", id=self.id,
                     path=self.path)
            self.finished(None, None)

    def _cancelTimers(self) -> None:
        self._timer = cancelCall(self._timer)
        self._abandon = cancelCall(self._abandon)

    @property
    def respHeaders(self) -> dict[str, str] | None:
        """
        The upstream's response headers, redacted; L{None} before them.
        """
        if self._respHeaders is None and self._respRaw is not None:
            self._respHeaders = redactHeaders(self._respRaw)
        return self._respHeaders

    @property
    def phase(self) -> str:
        """
        C{loading} (waiting for a model that is not ready), C{queued}
        (waiting for a ready model's turn), or C{running}.
        """
        if self.queuedAt is not None and self.grantedAt is None:
            state = self._tracker.modelState(self.model)
            return "queued" if state == "ready" else "loading"
        return "running"

    def toJSON(self) -> dict[str, Any]:
        """
        The in-flight entry.
        """
        now = self._clock.seconds()
        return {
            "id": self.id,
            "model": self.model,
            "method": self.method,
            "path": self.path,
            "req_path": self.path,
            "timestamp": _rfc3339(self.startedAt),
            "remote_ip": self.clientIP,
            "req_headers": self.reqHeaders,
            "resp_headers": self.respHeaders,
            "resp_bytes": self.respBytes,
            "elapsed_ms": int((now - self.startedAt) * 1000),
            "metadata": dict(self.metadata),
            "phase": self.phase,
        }

    # -- the row ------------------------------------------------------------

    def _requestBody(self, body: bytes | None, limit: int) -> bytes | None:
        if body is None:
            content = getattr(self.request, "content", None)
            if content is None or getattr(content, "closed", False):
                return b""
            position = content.tell()
            size = content.seek(0, 2)
            if size > limit:
                content.seek(position)
                return None
            content.seek(0)
            body = content.read()
            content.seek(position)
        elif len(body) > limit:
            return None
        body = bytes(body)
        if not mayHoldSecrets(body):
            return body
        contentType = (self.request.getHeader(b"content-type") or b"").decode("latin-1")
        return redactBody(body, contentType)

    def _status(self, result: Any, error: BaseException | None) -> int:
        if result is not None and result.status is not None:
            return int(result.status)
        if isinstance(error, HTTPError):
            return error.status
        request = self.request
        if request.startedWriting:
            return int(request.code)
        return CLIENT_CLOSED

    def _build(self, result: Any, error: BaseException | None) -> ActivityRecord:
        # When it ended, not when its recording ran (the tracker's later).
        ended = getattr(result, "endedAt", None)
        now = self._clock.seconds() if ended is None else ended
        wallMs = int((now - self.startedAt) * 1000)
        reader = self.reader
        status = self._status(result, error)
        tokens: TokenMetrics | None = None
        message = ""
        upstreamAnswered = reader is not None and reader.status is not None
        if upstreamAnswered:
            assert reader is not None
            message = reader.errorMessage()
            if status == 200:
                tokens = reader.metrics(wallMs)
        elif isinstance(error, HTTPError):
            message = error.message
        elif result is not None and result.reason is not None and status != 200:
            reason = result.reason.value
            if isinstance(reason, HTTPError):
                message = reason.message
            elif status in (502, 504):
                message = connectionError(result.reason).message
            else:
                message = statusText(status)
        elif status == CLIENT_CLOSED:
            message = "client disconnected before a response"
        elif status != 200:
            message = statusText(status)
        outcome = getattr(result, "outcome", None)
        if not message and status == 200:
            if outcome == _TRUNCATED:
                message = "upstream broke off the response"
            elif outcome == _CLIENT_GONE:
                message = "client disconnected during the response"
        if tokens is not None and reader is not None and reader.streamed:
            tokens = _estimateSpeed(tokens, result)
        ttfb = -1
        if result is not None and getattr(result, "firstByteAt", None) is not None:
            ttfb = int((result.firstByteAt - self.startedAt) * 1000)
        queue = 0
        if self.queuedAt is not None:
            queue = int(((self.grantedAt or now) - self.queuedAt) * 1000)
        contentType = reader.contentType if upstreamAnswered and reader else ""
        if not contentType:
            contentType = (self.request.responseHeaders.getRawHeaders(b"content-type") or [b""])[
                0
            ].decode("latin-1")
        record = ActivityRecord(
            timestamp=now,
            model=self.model,
            reqPath=self.path,
            respContentType=contentType,
            status=status,
            tokens=tokens or TokenMetrics(),
            durationMs=tokens.durationMs if tokens is not None else wallMs,
            errorMsg=message,
            metadata=dict(self.metadata),
            ttfbMs=ttfb,
            queueMs=queue,
        )
        return record

    def _capture(self, status: int) -> Capture | None:
        captures = self._tracker.captures
        if captures is None or not captures.enabled or not self.metered:
            return None
        reader = self.reader
        if reader is not None and not reader.capturable:
            return None
        mask = self._mask
        if mask.reqBody and self._reqBody is None:
            return None  # the request body did not fit the budget
        if reader is not None and reader.status is not None:
            # The upstream answered: its headers, as the tap saw them.
            headers = reader.respHeaders
        else:
            headers = list(self.request.responseHeaders.getAllRawHeaders())
        body = reader.body() if (reader is not None and status == 200) else None
        return Capture(
            id=0,
            reqPath=self.path,
            reqHeaders=self.reqHeaders if mask.reqHeaders else None,
            reqBody=self._reqBody if mask.reqBody else None,
            respHeaders=redactHeaders(headers, drop=("content-encoding",))
            if mask.respHeaders
            else None,
            respBody=body if mask.respBody else None,
        )


def _estimateSpeed(tokens: TokenMetrics, result: Any) -> TokenMetrics:
    """
    For a stream whose upstream reported no generation speed, estimate it
    from the time between the first and the last body byte.
    """
    if tokens.tokensPerSecond > 0 or tokens.outputTokens < 2 or result is None:
        return tokens
    first = getattr(result, "firstByteAt", None)
    last = getattr(result, "endedAt", None)
    if first is None or last is None or last - first <= 0:
        return tokens
    return evolve(tokens, tokensPerSecond=(tokens.outputTokens - 1) / (last - first))


class Tracker:
    """
    Tracks every model request: the in-flight list and what happens when
    one finishes.

    @ivar inflight: in-flight ID to its track, oldest first.
    @ivar captures: the capture cache (L{None}: no captures).
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        publish: Callable[[str, Any], None] = lambda kind, data: None,
        activity: ActivityLog | None = None,
        metrics: Metrics | None = None,
        captures: CaptureCache | None = None,
        modelState: Callable[[str], str | None] = lambda model: None,
        knownModel: Callable[[str], bool] = lambda model: True,
        listening: Callable[[], object] = lambda: True,
        later: Later = runNow,
    ) -> None:
        """
        @param publish: C{publish(kind, data)} for C{inflight} events.
        @param later: runs the recording of a relayed exchange's end when
            the proxy is quiet (a L{llamaswap.backlog.Backlog}'s C{later});
            by default at once.
        @param listening: whether anyone receives what C{publish} sends
            (in-flight events are not built for nobody).
        @param modelState: a model's lifecycle state name, L{None} if not a
            local model.
        @param knownModel: whether a name is a configured model (others
            share one metrics label, so clients cannot make up series).
        """
        self.knownModel = knownModel
        self.clock = clock
        self._publish = publish
        self.activity = activity
        self.metrics = metrics
        self.captures = captures if captures is not None else (
            activity.captures if activity is not None else None
        )
        self.modelState = modelState
        self._listening = listening
        self.later = later
        self.inflight: OrderedDict[str, RequestTrack] = OrderedDict()
        self._ids = itertools.count(1)
        #: Called with the model ID when a metered request is granted its
        #: model; what they return is added to the row's metadata (the
        #: prompt cache marks the first request after a restore).
        self.grantNotes: list[Callable[[str], Mapping[str, str]]] = []

    def begin(
        self,
        request: Request,
        model: str = "",
        path: str | bytes | None = None,
        keyName: str | None = None,
    ) -> RequestTrack:
        """
        Start tracking C{request} for C{model} (the name as asked; may be
        C{""} until known: set C{track.model}).

        @param path: the path to record (without query; for C{/upstream},
            the part after the model); by default L{requestPath}.
        @param keyName: the name (never the value) of the API key the
            request used: stored as C{key_name} metadata (activity rows,
            in-flight events) and counted in C{llamaswap_key_requests}.
        """
        if path is None:
            path = requestPath(request)
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        path = path.split("?", 1)[0]
        track = RequestTrack(self, str(next(self._ids)), request, model, path)
        if keyName:
            track.metadata[KEY_NAME] = keyName
        self.inflight[track.id] = track
        self._upsert(track)
        whenFinished(request, track.requestEnded)
        return track

    def snapshot(self) -> dict[str, Any]:
        """
        The C{inflight} snapshot event's payload.
        """
        payload: dict[str, Any] = {"operation": "snapshot"}
        if self.inflight:
            payload["requests"] = [t.toJSON() for t in self.inflight.values()]
        return payload

    def cancel(self, id: str) -> bool:
        """
        Cancel in-flight request C{id}; L{False} if there is none.
        """
        track = self.inflight.get(id)
        if track is None:
            return False
        track.cancel()
        return True

    # -- from tracks ----------------------------------------------------------

    def _upsert(self, track: RequestTrack) -> None:
        if track.id in self.inflight and self._listening():
            self._publish("inflight", {"operation": "upsert", "request": track.toJSON()})

    def _granted(self, track: RequestTrack) -> None:
        if track.metered:
            for note in self.grantNotes:
                try:
                    track.metadata.update(note(track.model))
                except Exception:
                    log.failure("grant note for {model} failed", model=track.model)
        if self.metrics is not None and track._counted is None:
            track._counted = track.model
            self.metrics.requestStarted(track.model)

    def _remove(self, track: RequestTrack) -> None:
        if track._counted is not None and self.metrics is not None:
            self.metrics.requestEnded(track._counted)
            track._counted = None
        if self.inflight.pop(track.id, None) is not None and self._listening():
            self._publish("inflight", {"operation": "remove", "id": track.id})

    def _finished(
        self, track: RequestTrack, record: ActivityRecord, capture: Capture | None
    ) -> Iterator[None]:
        """
        Count finished C{track} in the metrics, then store its C{record}:
        two steps.
        """
        if self.metrics is not None:
            result = None
            if record.ttfbMs >= 0:
                result = record.ttfbMs / 1000.0
            known = track.grantedAt is not None or self.knownModel(record.model)
            self.metrics.requestFinished(
                record.model if known else UNKNOWN_LABEL,
                record.reqPath if record.reqPath in LABELLED_PATHS else OTHER_LABEL,
                record.status,
                (record.timestamp - track.startedAt),
                ttfb=result,
                queueWait=(record.queueMs / 1000.0) if track.queuedAt is not None else None,
                tokens=record.tokens if record.status == 200 else None,
            )
            keyName = track.metadata.get(KEY_NAME)
            if keyName:
                self.metrics.keyRequestFinished(
                    keyName, record.model if known else UNKNOWN_LABEL, record.status
                )
        if self.activity is not None and track.metered:
            yield
            self.activity.record(record, capture)


__all__ = [
    "ABANDON_AFTER",
    "KEY_NAME",
    "CLIENT_CLOSED",
    "Exchange",
    "RequestTrack",
    "THROTTLE",
    "Tracker",
    "requestPath",
]
