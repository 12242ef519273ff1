# -*- test-case-name: test.web.test_forward -*-
"""
The relay between a client's request and an upstream inference server.

L{Forwarder.forward} sends a C{twisted.web} request upstream with an
L{twisted.web.iweb.IAgent} and streams the answer back as it arrives:

 - The request body goes upstream through a L{BodyProducer}: chunks read
   from the body twisted.web already buffered (C{request.content}, a
   C{BytesIO} or a temporary file) or from rewritten bytes, written only
   while the upstream socket accepts them (pause/resume), never copied as a
   whole.
 - The response's status and end-to-end headers are copied (hop-by-hop
   headers are stripped both ways), the headers are flushed at once, and
   every body chunk is written to the client the moment it is read, so SSE
   events are never held back.  C{X-Accel-Buffering: no} is added to
   C{text/event-stream} responses.
 - Backpressure: the relay is registered as the request's streaming
   producer; when the client's socket buffer fills, C{HTTPChannel} pauses
   it, and it pauses the upstream transport, so the kernel buffers fill and
   the upstream is slowed down instead of llamaswap buffering the body.
 - A client that disconnects makes the relay close the upstream connection
   (before headers: cancel the request; afterwards: C{stopProducing} on the
   upstream transport), so llama-server stops generating.
 - An upstream that fails before answering gets an error envelope (502, or
   504 when C{responseHeaderTimeout} or C{idleTimeout} expires); one that
   breaks mid-body (it crashed, or sent nothing for C{idleTimeout}) ends an
   event stream with a final C{data: {"error": ...}} event the client can
   read, and any other body by closing the client's connection without the
   terminating chunk, so the client sees a truncated response rather than a
   falsely complete one.
 - C{idleTimeout}: seconds the upstream may go without sending a byte
   (headers included; paused time, when the client is slow, does not
   count); a hung server cannot hold its model, and the swap others wait
   for, for longer.
 - With C{deferRefused}, a refused connection is not answered: the result
   (L{FAILED}, no status) lets the caller restart the server and retry.

Every exchange ends with exactly one L{ForwardResult} (the Deferred never
fails except by cancellation), which is where a caller releases its lease.

The agent is usually an L{llamaswap.web.client.UpstreamAgent}; request
bodies are L{llamaswap.web.bodies.BodyProducer}s (L{BodyProducer} and
L{BodyArg} are also importable from here).
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable, Mapping, Sequence, cast
from typing import Protocol as TypingProtocol
from urllib.parse import urlsplit

from attrs import frozen
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.server import Request
from zope.interface import implementer

from ..compat import isClientBufferFull, isDisconnected
from ..delayed import Deadline, cancelCall
from ..finish import whenLost
from ..httperrors import (
    HTTPError,
    UpstreamTimeout,
    connectionError,
    describeFailure,
    envelopeBytes,
)
from .bodies import CHUNK_SIZE, BodyArg, BodyProducer
from .errors import writeHTTPError
from .headers import (
    HeaderValue,
    connectionTokens,
    endToEnd,
    finishUpstreamHeaders,
    isEventStream,
    singleContentLength,
)
from .output import flushOutput, holdOutput

_log = Logger()

# Outcomes of an exchange (L{ForwardResult.outcome}).
#: The upstream response was relayed in full and the request finished.
COMPLETE = "complete"
#: The upstream broke off mid-body; the client connection was closed
#: without the end of the body.
TRUNCATED = "truncated"
#: The client went away; the upstream request was aborted.
CLIENT_GONE = "client-gone"
#: No usable response arrived; an error response was written to the client.
FAILED = "failed"


# ---------------------------------------------------------------------------
# The relay


class Tap(TypingProtocol):
    """
    An observer of one relayed response (activity parser, byte counter).
    Taps are called inline on the hot path: they must be quick and must not
    keep the chunks.  An exception from a tap is logged and the tap dropped;
    the stream goes on.
    """

    def responseStarted(self, status: int, headers: Headers) -> None:
        """
        The upstream answered with C{status} and C{headers} (as received,
        before hop-by-hop filtering).
        """

    def dataReceived(self, data: bytes) -> None:
        """
        C{data} passed from the upstream to the client.
        """

    def responseEnded(self, reason: Failure | None) -> None:
        """
        The exchange is over: L{None} when the response was relayed in full,
        otherwise why not.  Called exactly once per L{Forwarder.forward},
        also when no response ever started.
        """


@frozen
class ForwardResult:
    """
    How one exchange ended.

    @ivar outcome: L{COMPLETE}, L{TRUNCATED}, L{CLIENT_GONE} or L{FAILED}.
    @ivar status: the status the client was sent, or L{None} if none was.
    @ivar bodyBytes: response body bytes received from the upstream.
    @ivar reason: the failure behind any outcome but L{COMPLETE}.
    @ivar startedAt: clock time C{forward} was called.
    @ivar headersAt: clock time the upstream's response headers arrived.
    @ivar firstByteAt: clock time of the first body byte.
    @ivar endedAt: clock time the exchange ended.
    """

    outcome: str
    status: int | None
    bodyBytes: int
    reason: Failure | None
    startedAt: float
    headersAt: float | None
    firstByteAt: float | None
    endedAt: float


@functools.lru_cache(maxsize=256)
def _splitBase(upstreamURL: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    parts = urlsplit(upstreamURL)
    return (parts.scheme, parts.netloc, parts.path.rstrip(b"/"), parts.query)


def joinURL(upstreamURL: bytes | str, path: bytes | str) -> bytes:
    """
    C{path} (with its query) joined onto C{upstreamURL}: the base URL's path
    prefix is kept and the queries are merged, base first.

        >>> joinURL(b"http://127.0.0.1:5800/api?k=1", b"/v1/models?x=2")
        b'http://127.0.0.1:5800/api/v1/models?k=1&x=2'
    """
    if isinstance(upstreamURL, str):
        upstreamURL = upstreamURL.encode("ascii")
    if isinstance(path, str):
        path = path.encode("ascii")
    scheme, netloc, prefix, baseQuery = _splitBase(upstreamURL)
    rest, _, query = path.partition(b"?")
    if rest and not rest.startswith(b"/"):
        rest = b"/" + rest
    url = scheme + b"://" + netloc + ((prefix + rest) or b"/")
    if baseQuery and query:
        return url + b"?" + baseQuery + b"&" + query
    if baseQuery or query:
        return url + b"?" + (baseQuery or query)
    return url


def isRefused(failure: Failure) -> bool:
    """
    Whether C{failure} is (or wraps, as Twisted's C{ResponseNeverReceived}
    and friends do in C{reasons}) a refused connection: nothing listens on
    the upstream's port.
    """
    if failure.check(ConnectionRefusedError):
        return True
    reasons = getattr(failure.value, "reasons", None)
    if isinstance(reasons, (list, tuple)):
        return any(isinstance(r, Failure) and isRefused(r) for r in reasons)
    return False


def errorEvent(reason: Failure | None) -> bytes:
    """
    The Server-Sent Event that ends a stream cut off by the upstream: the
    error envelope as its data (OpenAI clients raise it as an API error).
    """
    value = reason.value if reason is not None else None
    if isinstance(value, HTTPError):
        status, message = value.status, value.message
    else:
        status = 502
        text = describeFailure(reason) if reason is not None else "unknown"
        message = f"upstream broke off the response: {text}"
    return b"data: " + envelopeBytes(status, message) + b"\n\n"


def _nominatedHeaders(response: IResponse) -> frozenset[bytes]:
    """
    The header names the upstream's C{Connection} header lists, which are
    hop-by-hop too (L{llamaswap.web.h1client.Response} keeps them apart;
    other responses have none).
    """
    headers = getattr(response, "connectionHeaders", None)
    return connectionTokens(headers) if isinstance(headers, Headers) else frozenset()




class RelayCore:
    """
    What both relays (L{_Relay} here, the websocket tunnel's exchange)
    do alike: the opening (give up at once on a client already gone, else
    watch for it leaving and start the response-header timer), the checks
    after an upstream failure, and the finish.  The relay provides the
    attributes annotated here, C{_timeout} and C{_end}.
    """

    _request: Request
    _clock: IReactorTime
    _headerTimeout: float | None
    _timer: IDelayedCall | None
    _timeout: Callable[[], None]
    _end: Callable[[str, Failure | None], None]
    _finished: bool
    _clientGone: Failure | None

    def _open(self, onLostClient: Callable[[Failure], object]) -> bool:
        """
        Begin relaying: L{False} (and ended as C{CLIENT_GONE}) when the
        client has already gone.
        """
        request = self._request
        if isDisconnected(request) or request.finished:
            self._end(CLIENT_GONE, Failure(ConnectionLost("client already gone")))
            return False
        whenLost(request, onLostClient)
        if self._headerTimeout is not None:
            self._timer = self._clock.callLater(self._headerTimeout, self._timeout)
        return True

    def _overBeforeAnswer(self) -> bool:
        """
        Whether what just happened upstream no longer matters: the relay
        has ended, or the client has left (the relay now ends as
        C{CLIENT_GONE}).
        """
        if self._finished:
            return True
        if self._clientGone is not None:
            self._end(CLIENT_GONE, self._clientGone)
            return True
        return False

    def _finish(self) -> bool:
        """
        Mark the relay finished and stop its timers: L{False} when it had
        already finished (nothing more to do).
        """
        if self._finished:
            return False
        self._finished = True
        self._cancelTimer()
        return True

    def _cancelTimer(self) -> None:
        self._timer = cancelCall(self._timer)


@implementer(IPushProducer)
class _Relay(RelayCore, Protocol):
    """
    One exchange: issues the upstream request, then, as the response's body
    protocol and the client request's streaming producer, moves each chunk
    across and passes pause/resume/stop the other way.
    """

    #: The upstream body transport (a TransportProxyProducer) while the
    #: response streams; None before and after.
    _upstream: IPushProducer | None

    def __init__(
        self,
        request: Request,
        agent: IAgent,
        clock: IReactorTime,
        method: bytes,
        url: bytes,
        headers: Headers,
        body: IBodyProducer | None,
        responseHeaderTimeout: float | None,
        taps: Sequence[Tap],
        idleTimeout: float | None = None,
        deferRefused: bool = False,
    ) -> None:
        self._request = request
        self._agent = agent
        self._clock = clock
        self._method = method
        self._url = url
        self._headers = headers
        self._body = body
        self._headerTimeout = responseHeaderTimeout or None
        self._taps = list(taps)
        #: The response's status and headers, until the taps are told.
        self._headForTaps: tuple[int, Headers] | None = None
        self._upstream = None
        self._idleTimeout = idleTimeout or None
        self._idleDeadline: Deadline | None = None
        self._idled = False
        self._deferRefused = deferRefused

        self._pending: Deferred[IResponse] | None = None
        self._timer: IDelayedCall | None = None
        self._timedOut = False
        self._clientGone: Failure | None = None
        self._paused = False
        self._finished = False
        self._status: int | None = None
        self._bodyBytes = 0
        self._startedAt = clock.seconds()
        self._headersAt: float | None = None
        self._firstByteAt: float | None = None
        self.done: Deferred[ForwardResult] = Deferred(self._cancel)

    # -- start ------------------------------------------------------------

    def start(self) -> Deferred[ForwardResult]:
        if not self._open(self._lostClient):
            return self.done
        self._touch()
        try:
            self._pending = self._agent.request(
                self._method, self._url, self._headers, self._body
            )
        except Exception:
            self._pending = defer.fail()
        self._pending.addCallbacks(self._gotResponse, self._requestFailed)
        return self.done

    def _timeout(self) -> None:
        self._timer = None
        if self._pending is not None:
            self._timedOut = True
            self._pending.cancel()

    # -- the idle timeout ---------------------------------------------------

    def _touch(self) -> None:
        """
        The upstream just sent something (or may now): restart the idle
        countdown (a L{Deadline}: per chunk, only a time is recorded).
        """
        if self._idleTimeout is None or self._finished or self._paused:
            return
        deadline = self._idleDeadline
        if deadline is None:
            deadline = self._idleDeadline = Deadline(self._clock, self._idle)
        deadline.start(self._idleTimeout)

    def _stopIdle(self) -> None:
        if self._idleDeadline is not None:
            if self._finished:
                self._idleDeadline.close()
            else:
                self._idleDeadline.stop()

    def _idle(self) -> None:
        if self._finished or self._clientGone is not None:
            return
        self._idled = True
        self._abortUpstream()

    def _abortUpstream(self) -> None:
        """
        Give up on the upstream: cancel the request not yet answered, or
        close the socket of the response streaming (its connectionLost then
        ends the relay).
        """
        if self._pending is not None:
            self._pending.cancel()
        elif self._upstream is not None:
            self._upstream.stopProducing()

    def _idleError(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"upstream sent nothing for {self._idleTimeout:g}s (idle timeout)"
        )

    # -- before the response ----------------------------------------------

    def _requestFailed(self, failure: Failure) -> None:
        self._pending = None
        if self._overBeforeAnswer():
            return
        error: HTTPError
        if self._deferRefused and isRefused(failure) and not self._request.startedWriting:
            self._end(FAILED, failure)
            return
        if self._idled:
            error = self._idleError()
        elif self._timedOut:
            error = UpstreamTimeout(
                f"upstream did not send response headers within "
                f"{self._headerTimeout:g}s"
            )
        else:
            error = connectionError(failure)
        _log.info(
            "upstream request {method} {url} failed: {reason}",
            method=self._method.decode("ascii", "replace"),
            url=self._url.decode("ascii", "replace"),
            reason=describeFailure(failure),
        )
        if writeHTTPError(self._request, error):
            self._status = error.status
        self._end(FAILED, Failure(error) if self._timedOut or self._idled else failure)

    def _gotResponse(self, response: IResponse) -> None:
        self._pending = None
        self._cancelTimer()
        self._touch()
        self._headersAt = self._clock.seconds()
        if self._finished or self._clientGone is not None:
            # Cancelled meanwhile: take the body only to close the connection.
            response.deliverBody(_Discard())
            if not self._finished:
                self._end(CLIENT_GONE, self._clientGone)
            return

        request = self._request
        if request.startedWriting:
            # The caller already started the response (a loading-state
            # stream): the client keeps the status and headers it was
            # sent, and the upstream's body follows what was written.
            self._status = int(request.code)
        else:
            self._status = response.code
            self._copyHead(response)

        # The taps hear of the head once it has left (_tellHead).
        self._headForTaps = (response.code, response.headers)

        request.registerProducer(self, True)
        # The head and body are sent together, once per upstream read.
        holdOutput(request)
        if isClientBufferFull(request):
            # HTTPChannel does not pause a producer registered while the
            # client's buffer is already full; do it ourselves.
            self._paused = True
        request.write(b"")  # the status line and headers (see readEnded)
        response.deliverBody(self)
        if self._paused and self._upstream is not None and not self._finished:
            # deliverBody resumes the transport after connecting us.
            self._upstream.pauseProducing()

    def _copyHead(self, response: IResponse) -> None:
        """
        Give the client the upstream's status and end-to-end headers.
        """
        request = self._request
        request.setResponseCode(response.code, response.phrase)
        headers = endToEnd(
            response.headers, _nominatedHeaders(response), into=request.responseHeaders
        )
        if headers.hasHeader(b"content-length"):
            # Only HEAD answers keep it in response.headers.
            if singleContentLength(response.headers) is None:
                headers.removeHeader(b"content-length")
        elif (
            isinstance(response.length, int)
            and response.code not in (204, 304)
            and self._method != b"HEAD"
        ):
            headers.setRawHeaders(b"content-length", [b"%d" % (response.length,)])
        if isEventStream(headers):
            headers.setRawHeaders(b"x-accel-buffering", [b"no"])
        if not headers.hasHeader(b"content-type"):
            request.defaultContentType = None

    # -- streaming ----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._touch()
        first = self._firstByteAt is None
        if first:
            self._firstByteAt = self._clock.seconds()
        self._bodyBytes += len(data)
        if self._clientGone is None and not self._finished:
            self._request.write(data)
            # What this read brought (a stream's first token) leaves
            # before the taps read it.
            self._sendNow()
        self._tellHead()
        for tap in tuple(self._taps):
            self._callTap(tap, "dataReceived", data)

    def readEnded(self) -> None:
        """
        One read from the upstream was relayed (L{h1client.Response}): a
        head that came without body bytes leaves now.
        """
        if self._clientGone is None and not self._finished:
            self._sendNow()
        self._tellHead()

    def connectionMade(self) -> None:
        self._upstream = cast(IPushProducer, self.transport)
        if self._finished or self._clientGone is not None:
            self._upstream.stopProducing()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._upstream = None
        if self._overBeforeAnswer():
            return
        request = self._request
        complete = reason is None or isinstance(reason.value, (ResponseDone, PotentialDataLoss))
        try:
            request.unregisterProducer()
        except Exception:
            pass
        if complete:
            # The reply's bytes leave before the bookkeeping that follows
            # (taps, request-end watchers, the lease's release); a chunked
            # reply's last chunk is written by finish() and follows the
            # taps, which only queue their work, so that the request's end
            # watchers know the relay reported it.
            self._sendNow()
            self._notifyEnd(None)
            request.finish()
            self._end(COMPLETE, None)
            return
        if self._idled:
            reason = Failure(self._idleError())
        _log.info(
            "upstream {url} broke off its response after {n} bytes: {reason}",
            url=self._url.decode("ascii", "replace"),
            n=self._bodyBytes,
            reason=describeFailure(reason),
        )
        if isEventStream(request.responseHeaders) and not isDisconnected(request):
            # A client reading events gets the reason as the last event.
            request.write(errorEvent(reason))
            request.finish()
        else:
            request.loseConnection()
        self._end(TRUNCATED, reason)

    def _sendNow(self) -> None:
        flushOutput(self._request)

    # IPushProducer, driven by the client's HTTPChannel.

    def pauseProducing(self) -> None:
        self._paused = True
        self._stopIdle()
        if self._upstream is not None:
            self._upstream.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        self._touch()
        if self._upstream is not None:
            self._upstream.resumeProducing()

    def stopProducing(self) -> None:
        self._lostClient(Failure(ConnectionLost("client stopped consuming")))

    # -- endings -------------------------------------------------------------

    def _lostClient(self, failure: Failure) -> None:
        if self._finished or self._clientGone is not None:
            return
        self._clientGone = failure
        self._abortUpstream()

    def _cancel(self, done: Deferred[ForwardResult]) -> None:
        """
        The caller gave up on the exchange (shutdown): abort the upstream
        side; a response already started is cut off, one not started is
        left to the caller.
        """
        if not self._finish():
            return
        if self._pending is not None:
            self._pending.cancel()
        if self._upstream is not None:
            self._upstream.stopProducing()
        request = self._request
        if request.startedWriting and not isDisconnected(request):
            try:
                request.unregisterProducer()
            except Exception:
                pass
            request.loseConnection()
        self._notifyEnd(Failure(CancelledError()))

    def _end(self, outcome: str, reason: Failure | None) -> None:
        if not self._finish():
            return
        self._notifyEnd(reason)
        self.done.callback(
            ForwardResult(
                outcome=outcome,
                status=self._status,
                bodyBytes=self._bodyBytes,
                reason=reason,
                startedAt=self._startedAt,
                headersAt=self._headersAt,
                firstByteAt=self._firstByteAt,
                endedAt=self._clock.seconds(),
            )
        )

    def _tellHead(self) -> None:
        """
        Tell the taps the response's status and headers, once: after the
        head has been sent, so their bookkeeping is off the client's path.
        """
        head, self._headForTaps = self._headForTaps, None
        if head is not None:
            for tap in list(self._taps):
                self._callTap(tap, "responseStarted", *head)

    def _notifyEnd(self, reason: Failure | None) -> None:
        self._tellHead()
        for tap in list(self._taps):
            self._callTap(tap, "responseEnded", reason)
        self._taps = []

    def _cancelTimer(self) -> None:
        super()._cancelTimer()
        if self._finished:
            self._stopIdle()

    def _callTap(self, tap: Tap, method: str, *args: object) -> None:
        try:
            getattr(tap, method)(*args)
        except Exception:
            _log.failure("tap {tap!r} failed in {method}; dropped", tap=tap, method=method)
            if tap in self._taps:
                self._taps.remove(tap)


class _Discard(Protocol):
    """
    Takes a response body nobody wants and closes its connection.
    """

    def connectionMade(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]


class Forwarder:
    """
    Relays requests to upstream servers; see the module docstring.

    @param agent: the L{IAgent} for upstream requests; an L{UpstreamAgent}
        also honours per-request connect timeouts.
    @param clock: the clock for response-header timeouts and timestamps.
    """

    def __init__(
        self,
        agent: IAgent,
        clock: IReactorTime,
        whileAwaiting: Callable[[], object] | None = None,
    ) -> None:
        """
        @param whileAwaiting: called once a request has gone upstream, while
            its answer is awaited: runs bookkeeping that waits for a quiet
            moment (L{llamaswap.backlog.Backlog.runWhileIdle}).
        """
        self._agent = agent
        self._clock = clock
        self._whileAwaiting = whileAwaiting

    def forward(
        self,
        request: Request,
        upstreamURL: bytes | str,
        path: bytes | str,
        body: BodyArg = None,
        *,
        method: bytes | None = None,
        connectTimeout: float | None = None,
        responseHeaderTimeout: float | None = None,
        extraHeaders: Mapping[str | bytes, HeaderValue] | None = None,
        taps: Iterable[Tap] = (),
        preserveHost: bool = True,
        forwardedFor: bool = True,
        idleTimeout: float | None = None,
        deferRefused: bool = False,
    ) -> Deferred[ForwardResult]:
        """
        Send C{request} to C{upstreamURL} + C{path} and stream the response
        back to it.  The caller's C{render} returns
        L{twisted.web.server.NOT_DONE_YET}; from then on the relay owns the
        request and finishes it (or closes its connection).  Release leases
        and in-flight counts when the returned Deferred fires, not on
        C{notifyFinish}: a truncated relay never finishes the request.

        The site should be built with C{parsePOSTFormSubmission=False}:
        bodies are relayed untouched, and twisted.web's form parsing would
        read every multipart upload into memory once more.

        @param upstreamURL: the server's base URL, C{http://127.0.0.1:5800}
            (a path prefix and query in it are kept, see L{joinURL}).
        @param path: the path and query to request, C{/v1/chat/completions}.
        @param body: L{None} to send the client's own body
            (C{request.content}, streamed from where twisted.web buffered
            it), C{bytes} for a rewritten body, or any L{IBodyProducer}.
        @param method: defaults to the client's method.
        @param connectTimeout: seconds to establish the connection (L{None}
            or 0: the agent's default); needs an L{UpstreamAgent}.
        @param responseHeaderTimeout: seconds from issuing the request to
            the upstream's response headers (L{None} or 0: no limit); on
            expiry the client gets a 504.
        @param extraHeaders: request headers to set (a value replaces the
            client's) or, with value L{None}, to remove.
        @param taps: L{Tap}s fed the response as it passes.
        @param preserveHost: send the client's C{Host} (llama-swap's local
            behaviour) rather than the upstream's.
        @param forwardedFor: append the client's address to
            C{X-Forwarded-For}.
        @param idleTimeout: seconds the upstream may send nothing (L{None}
            or 0: no limit); then a 504 before the response, an error
            event (event streams) or a cut connection after it.
        @param deferRefused: leave a refused connection unanswered (result
            L{FAILED} with no status) for the caller to retry.

        @return: a L{Deferred} firing with a L{ForwardResult} once the
            exchange is over (never failing; cancelling it aborts the
            exchange and fails it with L{CancelledError}).
        """
        if method is None:
            method = request.method
        url = joinURL(upstreamURL, path)
        headers = self._upstreamHeaders(request, extraHeaders, preserveHost, forwardedFor)
        agent = self._agent
        if connectTimeout:
            withTimeout = getattr(agent, "withConnectTimeout", None)
            if withTimeout is not None:
                agent = withTimeout(connectTimeout)
        relay = _Relay(
            request,
            agent,
            self._clock,
            method,
            url,
            headers,
            self._bodyProducer(request, body),
            responseHeaderTimeout,
            list(taps),
            idleTimeout,
            deferRefused,
        )
        done = relay.start()
        if self._whileAwaiting is not None:
            self._whileAwaiting()
        return done

    def _bodyProducer(self, request: Request, body: BodyArg) -> IBodyProducer | None:
        if IBodyProducer.providedBy(body):
            return body  # type: ignore[return-value]
        if isinstance(body, (bytes, bytearray, memoryview)):
            return BodyProducer(body) if len(body) else None
        content = getattr(request, "content", None)
        if content is None or content.closed:
            return None
        producer = BodyProducer(content)
        return producer if producer.length else None

    def _upstreamHeaders(
        self,
        request: Request,
        extraHeaders: Mapping[str | bytes, HeaderValue] | None,
        preserveHost: bool,
        forwardedFor: bool,
    ) -> Headers:
        headers = endToEnd(
            request.requestHeaders, drop=(b"content-length", b"expect")
        )
        if not preserveHost or len(headers.getRawHeaders(b"host", ())) != 1:
            headers.removeHeader(b"host")
        return finishUpstreamHeaders(headers, request, forwardedFor, extraHeaders)


__all__ = [
    "BodyArg",
    "BodyProducer",
    "CHUNK_SIZE",
    "CLIENT_GONE",
    "COMPLETE",
    "FAILED",
    "ForwardResult",
    "Forwarder",
    "Tap",
    "TRUNCATED",
    "errorEvent",
    "isRefused",
    "joinURL",
]
