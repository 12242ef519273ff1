# -*- test-case-name: test.web.test_tunnel -*-
"""
Protocol upgrades (websockets) through the proxy.

twisted.web's server has no notion of C{Upgrade}: a request is answered
with one response and the connection goes back to parsing requests.  A
websocket has to leave HTTP after the C{101 Switching Protocols}, so
L{Tunneler.tunnel} relays an upgrade request itself:

 1. It opens a plain TCP (or TLS) connection to the upstream and writes
    the request head: the client's end-to-end headers, C{Connection:
    Upgrade} and the client's C{Upgrade}, C{Host} and C{X-Forwarded-For} as
    the forwarder sets them, then any request body.
 2. It reads the upstream's response head.  Interim C{1xx} answers other
    than C{101} are skipped.
 3. On C{101} it takes the client's transport over from twisted.web's
    C{HTTPChannel} (L{takeOver}), writes the upstream's head to it
    verbatim, and splices the two connections: each transport is
    registered as the other's streaming producer, so a full socket buffer
    on either side stops reading on the other and nothing piles up in
    memory.  When either side closes, the other is closed after its
    pending bytes are written (and aborted if that takes longer than
    L{CLOSE_GRACE} seconds).
 4. Any other answer (the upstream refused the upgrade) is relayed as a
    normal response through the twisted.web request, with its body
    framing (C{Content-Length}, chunked, or up to the close) decoded and
    backpressure on the upstream connection.

Failures before an answer get llamaswap's error envelope: 502 when the
connection fails or the upstream answers garbage, 504 when no response
head arrives within C{responseHeaderTimeout}.

Every tunnel ends with exactly one L{TunnelResult}: for an upgraded
connection when both sides are closed, which is where a caller releases
its lease.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping
from typing import Protocol as TypingProtocol
from urllib.parse import urlsplit

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.client import URI
from twisted.web.http_headers import Headers
from twisted.web.server import Request
from zope.interface import implementer

from ..compat import chunkedDecoder, identityDecoder, isDisconnected, takeReadBuffer
from ..httperrors import HTTPError, UpstreamTimeout, connectionError, describeFailure
from .client import UpstreamEndpoints
from .errors import writeHTTPError
from .forward import CLIENT_GONE, COMPLETE, FAILED, TRUNCATED, RelayCore, joinURL
from .headers import (
    HeaderValue,
    endToEnd,
    finishUpstreamHeaders,
    singleContentLength,
)

_log = Logger()

#: The upstream switched protocols and the connection was spliced; the
#: outcome once both sides have closed.
UPGRADED = "upgraded"

#: Largest upstream response head accepted.
MAX_HEAD_BYTES = 64 * 1024

#: Seconds the second side of a spliced connection gets to flush and close
#: after the first closed, before it is aborted.
CLOSE_GRACE = 10.0


def headerTokens(headers: Headers, name: bytes) -> frozenset[bytes]:
    """
    The lower-cased, comma-separated tokens of every C{name} header.
    """
    tokens = set()
    for value in headers.getRawHeaders(name, ()):
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                tokens.add(token)
    return frozenset(tokens)


def isWebsocketUpgrade(headers: Headers) -> bool:
    """
    Whether a request with C{headers} asks for a websocket: C{Connection}
    lists C{upgrade} and C{Upgrade} lists C{websocket} (case-insensitive,
    in comma lists or repeated headers), as llama-swap decides it.
    """
    return b"upgrade" in headerTokens(headers, b"connection") and (
        b"websocket" in headerTokens(headers, b"upgrade")
    )


# ---------------------------------------------------------------------------
# Heads


class HeadError(ValueError):
    """
    The upstream's response head cannot be parsed.
    """


@frozen
class ResponseHead:
    """
    A parsed response head.

    @ivar status: the status code.
    @ivar phrase: the reason phrase (possibly empty).
    @ivar headers: the header fields, names and values as sent.
    """

    status: int
    phrase: bytes
    headers: Headers


def parseResponseHead(head: bytes) -> ResponseHead:
    """
    Parse a response head (status line and header lines, without the blank
    line that ends it).

    @raise HeadError: it is not an HTTP/1.x response head.
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HeadError(f"bad status line {lines[0][:100]!r}")
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise HeadError(f"bad status code {code[:20]!r}")
    headers = Headers()
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise HeadError(f"bad header line {line[:100]!r}")
        try:
            headers.addRawHeader(name, value.strip(b" \t"))
        except ValueError as e:  # InvalidHeaderName, bad characters
            raise HeadError(f"bad header line {line[:100]!r}") from e
    return ResponseHead(int(code), parts[2] if len(parts) > 2 else b"", headers)


def requestHead(method: bytes, target: bytes, headers: Headers) -> bytes:
    """
    An HTTP/1.1 request head for C{method} C{target} with C{headers}, ending
    with the blank line.
    """
    lines = [method + b" " + target + b" HTTP/1.1"]
    for name, values in headers.getAllRawHeaders():
        for value in values:
            lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def upgradeRequestHeaders(
    request: Request,
    upstreamHost: bytes,
    bodyLength: int,
    extraHeaders: Mapping[str | bytes, HeaderValue] | None = None,
    preserveHost: bool = True,
    forwardedFor: bool = True,
) -> Headers:
    """
    The headers of an upgrade request sent upstream: C{Host} first (the
    client's when C{preserveHost} and it sent exactly one, else
    C{upstreamHost}), the client's end-to-end headers, C{Connection:
    Upgrade} with the client's C{Upgrade}, C{Content-Length} for a body,
    C{X-Forwarded-For}, then C{extraHeaders} applied.
    """
    given = request.requestHeaders
    hosts = given.getRawHeaders(b"host", [])
    headers = Headers()
    headers.setRawHeaders(
        b"host", [hosts[0] if preserveHost and len(hosts) == 1 else upstreamHost]
    )
    for name, values in endToEnd(
        given, drop=(b"host", b"content-length", b"expect")
    ).getAllRawHeaders():
        headers.setRawHeaders(name, list(values))
    headers.setRawHeaders(b"connection", [b"Upgrade"])
    headers.setRawHeaders(b"upgrade", [b", ".join(given.getRawHeaders(b"upgrade", []))])
    if bodyLength:
        headers.setRawHeaders(b"content-length", [b"%d" % (bodyLength,)])
    return finishUpstreamHeaders(headers, request, forwardedFor, extraHeaders)


# ---------------------------------------------------------------------------
# Taking the client's connection over


class TakeOverError(Exception):
    """
    The request's connection cannot be taken over (already gone, or not a
    plain HTTP/1.1 channel).
    """


class _DetachedChannel:
    """
    Stands in for the C{HTTPChannel} of a request whose connection was
    taken over: whatever twisted.web or an observer still does with the
    request (finishing it, logging it) must not touch the connection, which
    now carries another protocol.  Closing the connection through the
    request closes the tunnel.
    """

    def __init__(self, channel: Any, transport: Any, close: Callable[[], None]) -> None:
        self.factory = getattr(channel, "factory", None)
        self.site = getattr(channel, "site", None)
        self.requests: list[Any] = []
        self._transport = transport
        self._close = close
        self._secure = bool(channel.isSecure()) if hasattr(channel, "isSecure") else False

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Any) -> None:
        pass

    def writeHeaders(self, *args: Any, **kwargs: Any) -> None:
        pass

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def requestDone(self, request: Any) -> None:
        pass

    def loseConnection(self) -> None:
        self._close()

    def isSecure(self) -> bool:
        return self._secure

    def getPeer(self) -> Any:
        return self._transport.getPeer()

    def getHost(self) -> Any:
        return self._transport.getHost()


def takeOver(
    request: Request, protocol: Protocol, close: Callable[[], None]
) -> tuple[ITransport, bytes]:
    """
    Detach C{request}'s connection from twisted.web and connect C{protocol}
    to it (autobahn's C{WebSocketResource} does the same).

    The transport stops delivering to the site's protocol (the
    C{_GenericHTTPChannelProtocol} wrapper, or the TLS wrapper's wrapped
    protocol) and delivers to C{protocol} instead; the C{HTTPChannel} is
    unregistered as the transport's producer and left without a transport;
    the request gets a stand-in channel so that finishing it later (for
    the access log and C{notifyFinish}) writes nothing.

    @param close: what C{request.loseConnection()} does from now on.
    @return: the transport and the bytes the channel had already read past
        the request (a client may send right after its request).
    @raise TakeOverError: the connection is gone or not a plain HTTP/1.1
        one.
    """
    channel = request.channel
    transport = getattr(channel, "transport", None)
    if transport is None or isDisconnected(request):
        raise TakeOverError("the client connection is gone")
    data = takeReadBuffer(channel)
    if data is None:
        raise TakeOverError(f"cannot take over a {type(channel).__name__}")
    detached = _DetachedChannel(channel, transport, close)
    channel.setTimeout(None)
    stopTimers = getattr(channel, "stopTimers", None)
    if stopTimers is not None:
        # The channel never hears of the connection again (no connectionLost).
        stopTimers()
    try:
        transport.unregisterProducer()
    except RuntimeError:
        pass
    channel.transport = None
    if isinstance(transport, ProtocolWrapper):
        # TLS (or another wrapping factory): the wrapper is the transport.
        transport.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    request.channel = detached  # type: ignore[assignment]
    protocol.makeConnection(transport)
    return transport, data


# ---------------------------------------------------------------------------
# The exchange


@frozen
class TunnelResult:
    """
    How one tunnelled request ended.

    @ivar outcome: L{UPGRADED} (switched protocols and spliced until both
        sides closed), L{COMPLETE} (a refusal relayed in full),
        L{TRUNCATED}, L{FAILED} or L{CLIENT_GONE}.
    @ivar status: the status the client was sent, or L{None}.
    @ivar bytesToUpstream: bytes passed from the client after the head.
    @ivar bytesToClient: bytes passed to the client after the head.
    @ivar reason: the failure behind an outcome other than L{UPGRADED} and
        L{COMPLETE}.
    """

    outcome: str
    status: int | None
    bytesToUpstream: int
    bytesToClient: int
    reason: Failure | None


class _UpstreamSide(Protocol):
    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    def connectionMade(self) -> None:
        self._exchange._upstreamMade(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self._exchange._upstreamData(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._exchange._upstreamLost(reason)


class _ClientSide(Protocol):
    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    def dataReceived(self, data: bytes) -> None:
        self._exchange._clientData(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._exchange._clientLost(reason)


_CONNECTING = "connecting"
_WAITING = "waiting"
_RELAYING = "relaying"
_SPLICED = "spliced"


class _Decoder(TypingProtocol):
    def dataReceived(self, data: bytes) -> None: ...


@implementer(IPushProducer)
class _Exchange(RelayCore):
    """
    One tunnelled request, from connecting to the end of the splice or the
    relayed refusal.  While a refusal is relayed it is the request's
    streaming producer (pausing the upstream connection).
    """

    def __init__(
        self,
        request: Request,
        head: bytes,
        body: bytes,
        clock: IReactorTime,
        responseHeaderTimeout: float | None,
        failureMessage: str,
    ) -> None:
        self._request = request
        self._head = head
        self._body = body
        self._clock = clock
        self._headerTimeout = responseHeaderTimeout or None
        self._failureMessage = failureMessage
        self._state = _CONNECTING
        self._connecting: Deferred[Any] | None = None
        self._timer: IDelayedCall | None = None
        self._graceTimer: IDelayedCall | None = None
        self._timedOut = False
        self._clientGone: Failure | None = None
        self._finished = False
        self._upstream: Any = None
        self._client: Any = None
        self._upstreamClosed = False
        self._clientClosed = False
        self._buffer = b""
        self._decoder: _Decoder | None = None
        self._status: int | None = None
        self._toUpstream = 0
        self._toClient = 0
        self._detachedDone = False
        self.done: Deferred[TunnelResult] = Deferred(self._cancel)

    # -- start ---------------------------------------------------------------

    def start(self, endpoint: IStreamClientEndpoint) -> Deferred[TunnelResult]:
        if not self._open(self._lostClientEarly):
            return self.done
        self._connecting = connectProtocol(endpoint, _UpstreamSide(self))
        self._connecting.addCallbacks(self._connected, self._connectFailed)
        return self.done

    def _connected(self, protocol: object) -> None:
        self._connecting = None

    def _connectFailed(self, failure: Failure) -> None:
        self._connecting = None
        if self._overBeforeAnswer():
            return
        self._fail(failure)

    def _upstreamMade(self, transport: Any) -> None:
        self._upstream = transport
        if self._finished or self._clientGone is not None:
            transport.abortConnection()
            return
        self._state = _WAITING
        transport.write(self._head + self._body)

    def _timeout(self) -> None:
        self._timer = None
        self._timedOut = True
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._state == _WAITING and not self._finished:
            self._fail(Failure(UpstreamTimeout("timeout")))

    def _fail(self, failure: Failure) -> None:
        """
        No usable answer: tell the client (502, or 504 after the header
        timeout) and drop the upstream connection.
        """
        error: HTTPError
        if self._timedOut:
            error = UpstreamTimeout(
                f"upstream did not send response headers within "
                f"{self._headerTimeout:g}s"
            )
        else:
            error = connectionError(failure, self._failureMessage)
        _log.info(
            "upgrade request {uri} failed: {reason}",
            uri=self._request.uri.decode("ascii", "replace"),
            reason=error.message,
        )
        if writeHTTPError(self._request, error):
            self._status = error.status
        if self._upstream is not None:
            self._upstream.abortConnection()
        self._end(FAILED, Failure(error) if self._timedOut else failure)

    # -- the response head ---------------------------------------------------

    def _upstreamData(self, data: bytes) -> None:
        if self._state == _SPLICED:
            self._toClient += len(data)
            self._client.write(data)
        elif self._state == _RELAYING:
            self._decode(data)
        elif self._state == _WAITING and not self._finished:
            self._buffer += data
            self._parseHead()

    def _parseHead(self) -> None:
        while self._state == _WAITING and not self._finished:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    self._fail(Failure(HeadError("response head too large")))
                return
            raw, self._buffer = self._buffer[: end + 4], self._buffer[end + 4 :]
            try:
                head = parseResponseHead(raw[:-4])
            except HeadError:
                self._fail(Failure())
                return
            if head.status == 101:
                self._upgrade(raw, head, self._buffer)
            elif head.status >= 200:
                self._relay(head, self._buffer)
            # Other 1xx: interim, the real answer follows.
        self._buffer = b""

    # -- 101: splice ---------------------------------------------------------

    def _upgrade(self, raw: bytes, head: ResponseHead, leftover: bytes) -> None:
        self._cancelTimer()
        request = self._request
        try:
            client, buffered = takeOver(request, _ClientSide(self), self._abort)
        except TakeOverError as e:
            self._clientGone = Failure(e)
            self._upstream.abortConnection()
            self._end(CLIENT_GONE, self._clientGone)
            return
        self._state = _SPLICED
        self._status = 101
        self._client = client
        request.setResponseCode(101, head.phrase)
        for name, values in head.headers.getAllRawHeaders():
            request.responseHeaders.setRawHeaders(name, list(values))
        request.startedWriting = 1
        client.write(raw + leftover)
        self._toClient += len(leftover)
        client.resumeProducing()
        client.registerProducer(self._upstream, True)
        self._upstream.registerProducer(client, True)
        if buffered:
            self._clientData(buffered)

    def _clientData(self, data: bytes) -> None:
        if self._upstreamClosed:
            return
        self._toUpstream += len(data)
        self._upstream.write(data)

    def _clientLost(self, reason: Failure | None) -> None:
        self._clientClosed = True
        if not self._upstreamClosed:
            self._upstream.loseConnection()
            self._armGrace(self._upstream)
        self._spliceEnded()

    def _upstreamLostSpliced(self) -> None:
        if not self._clientClosed:
            self._client.loseConnection()
            self._armGrace(self._client)
        self._spliceEnded()

    def _armGrace(self, transport: Any) -> None:
        if self._graceTimer is None:
            self._graceTimer = self._clock.callLater(
                CLOSE_GRACE, transport.abortConnection
            )

    def _spliceEnded(self) -> None:
        if not (self._clientClosed and self._upstreamClosed):
            return
        if self._graceTimer is not None:
            if self._graceTimer.active():
                self._graceTimer.cancel()
            self._graceTimer = None
        self._finishDetached()
        self._end(UPGRADED, None)

    def _finishDetached(self) -> None:
        if self._detachedDone:
            return
        self._detachedDone = True
        request = self._request
        request.sentLength = self._toClient
        if not request.finished:
            request.finish()

    def _abort(self) -> None:
        """
        Cut a spliced connection off (C{request.loseConnection()}, or
        cancellation): both sides are aborted.
        """
        if self._client is not None and not self._clientClosed:
            self._client.abortConnection()
        if self._upstream is not None and not self._upstreamClosed:
            self._upstream.abortConnection()

    # -- anything else: relay ------------------------------------------------

    def _relay(self, head: ResponseHead, leftover: bytes) -> None:
        self._cancelTimer()
        self._state = _RELAYING
        request = self._request
        self._status = head.status
        request.setResponseCode(head.status, head.phrase)
        headers = endToEnd(head.headers, into=request.responseHeaders)
        noBody = request.method == b"HEAD" or head.status in (204, 304)
        chunked = b"chunked" in headerTokens(head.headers, b"transfer-encoding")
        length = None if chunked else singleContentLength(head.headers)
        if not headers.hasHeader(b"content-type"):
            request.defaultContentType = None
        if noBody:
            if request.method != b"HEAD":
                headers.removeHeader(b"content-length")
            self._relayDone(b"")
            return
        decoder: _Decoder | None = None
        if chunked:
            headers.removeHeader(b"content-length")
            decoder = chunkedDecoder(self._relayData, self._relayDone)
        elif length is not None:
            headers.setRawHeaders(b"content-length", [b"%d" % (length,)])
            decoder = identityDecoder(length, self._relayData, self._relayDone)
        else:
            headers.removeHeader(b"content-length")
        self._decoder = decoder
        request.registerProducer(self, True)
        request.write(b"")
        if length == 0:
            self._relayDone(b"")
        elif leftover:
            self._decode(leftover)

    def _decode(self, data: bytes) -> None:
        if self._finished:
            return
        if self._decoder is None:
            self._relayData(data)
            return
        try:
            self._decoder.dataReceived(data)
        except Exception:
            self._truncated(Failure())

    def _relayData(self, data: bytes) -> None:
        self._toClient += len(data)
        if self._clientGone is None:
            self._request.write(data)

    def _relayDone(self, extra: bytes) -> None:
        if self._finished:
            return
        self._decoder = None
        request = self._request
        request.unregisterProducer()
        if self._clientGone is not None:
            self._end(CLIENT_GONE, self._clientGone)
        else:
            request.finish()
            self._end(COMPLETE, None)
        if self._upstream is not None and not self._upstreamClosed:
            self._upstream.loseConnection()

    def _truncated(self, reason: Failure) -> None:
        if self._finished:
            return
        _log.info(
            "upstream broke off its answer to upgrade request {uri}: {reason}",
            uri=self._request.uri.decode("ascii", "replace"),
            reason=describeFailure(reason),
        )
        request = self._request
        request.unregisterProducer()
        request.loseConnection()
        if self._upstream is not None and not self._upstreamClosed:
            self._upstream.abortConnection()
        self._end(TRUNCATED, reason)

    # IPushProducer for the relayed refusal, driven by the client's channel.

    def pauseProducing(self) -> None:
        if self._upstream is not None and not self._upstreamClosed:
            self._upstream.pauseProducing()

    def resumeProducing(self) -> None:
        if self._upstream is not None and not self._upstreamClosed:
            self._upstream.resumeProducing()

    def stopProducing(self) -> None:
        self._lostClientEarly(Failure(ConnectionLost("client stopped consuming")))

    # -- endings -------------------------------------------------------------

    def _upstreamLost(self, reason: Failure | None) -> None:
        self._upstreamClosed = True
        if self._state == _SPLICED:
            self._upstreamLostSpliced()
            return
        if self._finished:
            return
        if self._clientGone is not None:
            self._end(CLIENT_GONE, self._clientGone)
        elif self._state == _RELAYING:
            if self._decoder is None:
                self._relayDone(b"")
            else:
                self._truncated(reason or Failure(ConnectionLost()))
        else:
            self._fail(
                Failure(ConnectionLost("upstream closed the connection before answering"))
            )

    def _lostClientEarly(self, failure: Failure) -> None:
        """
        The client left before the tunnel was spliced (C{notifyFinish}, or
        the channel stopping the relay's producer).
        """
        if self._finished or self._clientGone is not None or self._state == _SPLICED:
            return
        self._clientGone = failure
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._upstream is not None and not self._upstreamClosed:
            self._upstream.abortConnection()

    def _cancel(self, done: Deferred[TunnelResult]) -> None:
        """
        The caller gave up (shutdown): abort both connections.  A response
        not started is left to the caller.
        """
        if not self._finish():
            return
        if self._connecting is not None:
            self._connecting.cancel()
        if self._state == _SPLICED:
            self._abort()
            self._finishDetached()
            return
        if self._upstream is not None and not self._upstreamClosed:
            self._upstream.abortConnection()
        request = self._request
        if request.startedWriting and not isDisconnected(request):
            request.unregisterProducer()
            request.loseConnection()

    def _end(self, outcome: str, reason: Failure | None) -> None:
        if not self._finish():
            return
        self.done.callback(
            TunnelResult(
                outcome=outcome,
                status=self._status,
                bytesToUpstream=self._toUpstream,
                bytesToClient=self._toClient,
                reason=reason,
            )
        )


# ---------------------------------------------------------------------------
# Public entry point

#: Builds the endpoint for an upstream URL with a connect timeout.
EndpointFor = Callable[[bytes, "float | None"], IStreamClientEndpoint]


class Tunneler:
    """
    Relays upgrade requests; see the module docstring.

    @param reactor: for connecting (plain TCP, C{localhost} through
        happy eyeballs, C{https} upstreams over TLS).
    @param clock: for the response-head timeout and the close grace
        period (default: C{reactor}).
    @param endpointFor: builds the endpoint for an upstream URL and connect
        timeout (tests pass in-memory endpoints).
    """

    def __init__(
        self,
        reactor: Any,
        clock: IReactorTime | None = None,
        endpointFor: EndpointFor | None = None,
    ) -> None:
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        self._endpointFor = endpointFor or self._defaultEndpoint
        self._factories: dict[float | None, UpstreamEndpoints] = {}

    def _defaultEndpoint(self, url: bytes, timeout: float | None) -> IStreamClientEndpoint:
        factory = self._factories.get(timeout)
        if factory is None:
            factory = self._factories[timeout] = UpstreamEndpoints(self._reactor, timeout)
        return factory.endpointForURI(URI.fromBytes(url))

    def tunnel(
        self,
        request: Request,
        upstreamURL: bytes | str,
        path: bytes | str,
        *,
        connectTimeout: float | None = None,
        responseHeaderTimeout: float | None = None,
        extraHeaders: Mapping[str | bytes, HeaderValue] | None = None,
        preserveHost: bool = True,
        forwardedFor: bool = True,
        failureMessage: str = "upstream connection error",
    ) -> Deferred[TunnelResult]:
        """
        Relay the upgrade C{request} to C{upstreamURL} + C{path}.  The
        caller's C{render} returns C{NOT_DONE_YET}; the tunnel owns the
        request from then on.  Release leases when the returned Deferred
        fires: for a websocket that is when both sides have closed.

        @param path: the path and query to request (joined like
            L{joinURL}).
        @param connectTimeout: seconds to connect (L{None} or 0: none).
        @param responseHeaderTimeout: seconds from the start to the
            upstream's response head (L{None} or 0: none); then a 504.
        @param extraHeaders: request headers to set or (value L{None})
            remove.
        @param preserveHost: send the client's C{Host} rather than the
            upstream's.
        @param forwardedFor: append the client to C{X-Forwarded-For}.
        @param failureMessage: the start of the 502 message when the
            upstream cannot be reached.
        @return: fires with a L{TunnelResult} (never fails; cancelling it
            aborts both connections and fails it with L{CancelledError}).
        """
        url = joinURL(upstreamURL, path)
        parts = urlsplit(url)
        target = (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
        content = getattr(request, "content", None)
        body = b""
        if content is not None and not content.closed:
            content.seek(0)
            body = content.read()
            content.seek(0)
        headers = upgradeRequestHeaders(
            request, parts.netloc, len(body), extraHeaders, preserveHost, forwardedFor
        )
        exchange = _Exchange(
            request,
            requestHead(request.method, target, headers),
            body,
            self._clock,
            responseHeaderTimeout,
            failureMessage,
        )
        try:
            endpoint = self._endpointFor(url, connectTimeout or None)
        except Exception:
            failure = Failure()
            exchange._fail(failure)
            return exchange.done
        return exchange.start(endpoint)


__all__ = [
    "CLOSE_GRACE",
    "HeadError",
    "MAX_HEAD_BYTES",
    "ResponseHead",
    "TakeOverError",
    "TunnelResult",
    "Tunneler",
    "UPGRADED",
    "headerTokens",
    "isWebsocketUpgrade",
    "parseResponseHead",
    "requestHead",
    "takeOver",
    "upgradeRequestHeaders",
]
