# -*- test-case-name: test.web.test_client -*-
"""
The outbound HTTP client: how llamaswap connects to upstream servers.

 - L{UpstreamAgent}: an C{IAgent} whose connect timeout can be chosen per
   request, all of its clients sharing one pool; requests go through
   llamaswap's own HTTP/1.1 client (L{llamaswap.web.h1client}), which
   keeps idle connections per server (as many as requests may run at
   once, L{idleConnectionLimit}), each for 90 seconds, and sends a request
   with a replayable body again once when a pooled connection turns out
   closed.  L{UpstreamAgent.closeCachedConnectionsTo} drops the idle
   connections to a model whose process stopped; L{UpstreamAgent.warm}
   opens one ahead of the first request (L{llamaswap.web.warm}).
 - L{UpstreamEndpoints}: endpoints built once per server: IP literals
   connect directly, C{localhost} tries 127.0.0.1 first
   (L{LoopbackEndpoint}), and no connection logs its factory
   (L{QuietEndpoint}).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    BrowserLikePolicyForHTTPS,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from ..tlsgate import TLS_MISSING, tlsAvailable
from .h1client import ConnectionPool, UpstreamClient, UpstreamConnection


@functools.lru_cache(maxsize=256)
def poolKey(upstreamURL: bytes | str) -> tuple[bytes, bytes, int]:
    """
    The key a pool files connections to C{upstreamURL}'s server under:
    C{(scheme, host, port)}, as C{Agent} makes it.
    """
    if isinstance(upstreamURL, str):
        upstreamURL = upstreamURL.encode("ascii")
    uri = URI.fromBytes(upstreamURL)
    return (uri.scheme, uri.host, uri.port)


#: Idle connections kept per upstream server, at least and at most (see
#: L{idleConnectionLimit}).
MIN_IDLE_PER_SERVER = 64
MAX_IDLE_PER_SERVER = 256


def idleConnectionLimit(concurrencyLimits: Iterable[int] = ()) -> int:
    """
    How many idle connections per server a pool should keep: as many as
    the most requests one model admits at once (within
    L{MIN_IDLE_PER_SERVER} and L{MAX_IDLE_PER_SERVER}).  With fewer, a
    burst of concurrent requests closes the surplus connections after
    use and the next burst opens (and, for a name like C{localhost},
    resolves) them again.
    """
    return max(
        MIN_IDLE_PER_SERVER, min(MAX_IDLE_PER_SERVER, max(concurrencyLimits, default=0))
    )


@implementer(IStreamClientEndpoint)
class LoopbackEndpoint:
    """
    C{localhost}: 127.0.0.1 first and, only if that is refused, ::1 at once.

    Upstreams usually bind 127.0.0.1 (llama-server's default); resolving
    C{localhost} in the thread pool and racing its addresses with
    L{HostnameEndpoint} costs tens of milliseconds per new connection, which
    readiness probes of a starting model pay on every attempt.
    """

    def __init__(self, reactor: Any, port: int, timeout: float | None) -> None:
        self._v4 = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=timeout)  # type: ignore[arg-type]
        self._v6 = TCP6ClientEndpoint(reactor, "::1", port, timeout=timeout)  # type: ignore[arg-type]

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        def tryV6(failure: Failure) -> Deferred[Any]:
            failure.trap(ConnectionRefusedError)
            return self._v6.connect(protocolFactory)

        return self._v4.connect(protocolFactory).addErrback(tryV6)


@implementer(IStreamClientEndpoint)
class QuietEndpoint:
    """
    An endpoint whose connection factories do not log.

    A connection pool starts and stops a factory per new connection, and
    Twisted logs both ("Starting factory _HTTP11ClientFactory(...)") at
    info level: two lines per upstream connection and health probe,
    drowning the proxy log.  Factories have a public C{noisy} switch.
    """

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self.endpoint = endpoint

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        protocolFactory.noisy = False
        return self.endpoint.connect(protocolFactory)


#: Seconds HostnameEndpoint waits before trying a name's next address.
ATTEMPT_DELAY = 0.02


@implementer(IAgentEndpointFactory)
class UpstreamEndpoints:
    """
    Endpoints for upstream URLs, built once per server and reused: Agent's
    standard factory builds a L{HostnameEndpoint} (IDNA-encoding the host)
    on every request, and resolves even IP literals through the reactor's
    thread pool.  Here an IP literal gets a plain TCP endpoint; names get a
    L{HostnameEndpoint}; C{https} is wrapped in TLS with Twisted's
    browser-like policy; C{localhost} gets a L{LoopbackEndpoint}.  Every
    endpoint is a L{QuietEndpoint}.
    """

    _maxCached = 256

    def __init__(self, reactor: Any, connectTimeout: float | None) -> None:
        self._reactor = reactor
        self._timeout = connectTimeout
        self._cache: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}
        self._tls: BrowserLikePolicyForHTTPS | None = None

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._cache.get(key)
        if endpoint is None:
            if len(self._cache) >= self._maxCached:
                self._cache.clear()
            endpoint = self._cache[key] = QuietEndpoint(self._build(uri))
        return endpoint

    def _build(self, uri: URI) -> IStreamClientEndpoint:
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")
        host = uri.host.decode("ascii", "replace")
        endpoint: IStreamClientEndpoint
        # connectTCP takes timeout=None as "no timeout" (the stubs say float).
        if host == "localhost":
            endpoint = LoopbackEndpoint(self._reactor, uri.port, self._timeout)
        elif isIPAddress(host):
            endpoint = TCP4ClientEndpoint(
                self._reactor,
                host,
                uri.port,
                timeout=self._timeout,  # type: ignore[arg-type]
            )
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(
                self._reactor,
                host,
                uri.port,
                timeout=self._timeout,  # type: ignore[arg-type]
            )
        else:
            # A short attempt delay: when the first address refuses (a
            # server starting up, or one bound to 127.0.0.1 only while
            # localhost resolves to ::1 first) the next is tried at once
            # instead of after HostnameEndpoint's default 0.3 s.
            endpoint = HostnameEndpoint(
                self._reactor,
                uri.host,
                uri.port,
                timeout=30 if self._timeout is None else self._timeout,
                attemptDelay=ATTEMPT_DELAY,
            )
        if uri.scheme == b"https":
            if not tlsAvailable():
                raise SchemeNotSupported(TLS_MISSING)
            if self._tls is None:
                self._tls = BrowserLikePolicyForHTTPS()
            endpoint = wrapClientTLS(
                self._tls.creatorForNetloc(uri.host, uri.port), endpoint
            )
        return endpoint


@implementer(IAgent)
class UpstreamAgent:
    """
    An L{IAgent} for upstream servers whose connect timeout can be chosen
    per request (L{withConnectTimeout}); all of its clients share one
    L{ConnectionPool}.

    @ivar pool: the shared pool.
    """

    def __init__(
        self,
        reactor: Any,
        pool: ConnectionPool | None = None,
        *,
        connectTimeout: float | None = 30.0,
    ) -> None:
        self._reactor = reactor
        self.pool = pool if pool is not None else ConnectionPool(reactor)
        self._default = connectTimeout or None
        self._clients: dict[float | None, UpstreamClient] = {}
        self._endpoints: dict[float | None, UpstreamEndpoints] = {}

    def withConnectTimeout(self, timeout: float | None) -> IAgent:
        """
        A client on the shared pool that gives up connecting after
        C{timeout} seconds (L{None} or 0: never).
        """
        timeout = timeout or None
        client = self._clients.get(timeout)
        if client is None:
            client = self._clients[timeout] = UpstreamClient(
                self.pool, self._endpointsFor(timeout).endpointForURI
            )
        return client

    def _endpointsFor(self, timeout: float | None) -> UpstreamEndpoints:
        endpoints = self._endpoints.get(timeout)
        if endpoints is None:
            endpoints = self._endpoints[timeout] = UpstreamEndpoints(
                self._reactor, timeout
            )
        return endpoints

    def warm(
        self, upstreamURL: bytes | str, wanted: Callable[[], bool] = lambda: True
    ) -> Deferred[bool]:
        """
        Open a connection to C{upstreamURL}'s server (plain C{http} only)
        and leave it idle in the pool, for the next request to it to take
        without connecting first.

        @param wanted: asked once connected; if it says no (the server is
            being stopped meanwhile), the connection is closed instead.
        @return: fires with C{True} once the connection is in the pool,
            C{False} if it could not be made (refused, say) or was not
            wanted any more; never fails.
        """
        if isinstance(upstreamURL, str):
            upstreamURL = upstreamURL.encode("ascii")
        try:
            uri = URI.fromBytes(upstreamURL)
            if uri.scheme != b"http":
                return succeed(False)
            key = (uri.scheme, uri.host, uri.port)
            endpoint = self._endpointsFor(self._default).endpointForURI(uri)
        except Exception:
            return succeed(False)

        def connected(connection: UpstreamConnection) -> bool:
            if not wanted():
                connection.whenClosed()
                return False
            self.pool.put(key, connection)
            return True

        return self.pool.connect(key, endpoint).addCallbacks(
            connected, lambda failure: False
        )

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        return self.withConnectTimeout(self._default).request(
            method, uri, headers, bodyProducer
        )

    def closeCachedConnectionsTo(self, upstreamURL: bytes | str) -> Deferred[None]:
        """
        Close the pool's idle connections to C{upstreamURL}'s server (its
        scheme, host and port; the path is ignored), e.g. when that model's
        process is stopped, so that no later request picks a connection to
        a dead or different process.  Connections in use are not touched:
        they end with their exchange.

        @return: a Deferred that fires when they are closed.
        """
        return self.pool.closeCachedConnectionsTo(poolKey(upstreamURL))

    def closeCachedConnections(self) -> Deferred[None]:
        """
        Close every idle connection (service shutdown, test cleanup).
        """
        return self.pool.closeCachedConnections()


__all__ = [
    "ATTEMPT_DELAY",
    "LoopbackEndpoint",
    "MAX_IDLE_PER_SERVER",
    "MIN_IDLE_PER_SERVER",
    "QuietEndpoint",
    "UpstreamAgent",
    "UpstreamEndpoints",
    "idleConnectionLimit",
    "poolKey",
]
