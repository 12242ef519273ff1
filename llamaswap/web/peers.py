# -*- test-case-name: test.web.test_peers -*-
"""
The peer router: models served by other servers (C{peers.<id>}), reached
by name and relayed to (core behaviour §3.10, HTTP behaviour §5.2).

 - Names: every peer model is reachable as its fully-qualified name
   C{<peerID>/<modelID>}, and as its bare C{<modelID>} when exactly one peer
   offers it and no fully-qualified name is spelled the same.  Local model
   IDs and aliases win over both; that is the caller's first check.
 - Relaying goes through a L{Forwarder} of its own whose agent answers a
   connection failure with llama-swap's C{502 peer proxy error: ...}
   (L{PeerErrorAgent}); headers (the peer's own C{Host}, the API key, no
   C{X-Forwarded-*}) are the caller's to set, as for local models.
 - In-flight relays are counted (L{PeerRouter.track}) so that
   L{PeerRouter.shutdown} can refuse new requests and wait for, or cut
   off, the running ones.
"""

from __future__ import annotations

from typing import Any, Mapping

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from ..config.model import Config, PeerConfig
from ..httperrors import InternalError, ModelNotFound, connectionError
from ..unpausable import Unpausable
from .errors import negotiate
from .forward import Forwarder

NO_PEER = "no peer found for requested model"
SHUTTING_DOWN = "unspecific error: peer proxy is shutting down"


class NoPeer(ModelNotFound):
    """
    404: no peer serves the requested name.
    """

    defaultMessage = NO_PEER


class PeerShuttingDown(InternalError):
    """
    500: the peer router is shutting down and takes no new requests.
    """

    defaultMessage = SHUTTING_DOWN


class PeerShutdownError(Exception):
    """
    L{PeerRouter.shutdown} did not end cleanly (timed out, or was already
    in progress).
    """


@frozen
class PeerModel:
    """
    A model of a peer.

    @ivar peer: the peer serving it.
    @ivar modelID: the model's name on the peer (what the peer is sent).
    """

    peer: PeerConfig
    modelID: str

    @property
    def fqn(self) -> str:
        """
        C{<peerID>/<modelID>}.
        """
        return self.peer.fqn(self.modelID)


def peerRoutes(config: Config) -> dict[str, PeerModel]:
    """
    Every name a peer model is reachable by: all fully-qualified names,
    and each bare model ID offered by exactly one peer that no
    fully-qualified name equals.
    """
    routes: dict[str, PeerModel] = {}
    bare: dict[str, list[PeerModel]] = {}
    for peer in config.peers.values():
        for modelID in peer.models:
            model = PeerModel(peer, modelID)
            routes[model.fqn] = model
            bare.setdefault(modelID, []).append(model)
    for name, offered in bare.items():
        if len(offered) == 1 and name not in routes:
            routes[name] = offered[0]
    return routes


class _NoTransport(Unpausable):
    """
    The transport of a synthetic response: nothing to pause or stop.
    """


@implementer(IResponse)
class SyntheticResponse:
    """
    A complete response made up locally (an error answered in the peer's
    place), delivered like a real one.
    """

    version = (b"HTTP", 1, 1)
    previousResponse = None
    request = None

    def __init__(self, code: int, phrase: bytes, headers: Headers, body: bytes) -> None:
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self.length = len(body)
        self._body = body

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(_NoTransport())
        if self._body:
            protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response


@implementer(IAgent)
class PeerErrorAgent:
    """
    An agent for peers that answers a request which failed before any
    response (connection refused, reset, TLS failure...) with a C{502}
    C{peer proxy error: <reason>} error, negotiated on the request's
    C{Accept} like llamaswap's own errors.  Cancellations (a client that
    left, a response-header timeout) pass through unchanged.
    """

    def __init__(self, agent: IAgent) -> None:
        self._agent = agent

    def withConnectTimeout(self, timeout: float | None) -> IAgent:
        """
        The same, over the wrapped agent's agent with that connect timeout.
        """
        inner = getattr(self._agent, "withConnectTimeout", None)
        if inner is None:
            return self
        return PeerErrorAgent(inner(timeout))

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        cancelled = False
        try:
            inner = self._agent.request(method, uri, headers, bodyProducer)
        except Exception:
            inner = fail()

        def cancel(d: Deferred[IResponse]) -> None:
            nonlocal cancelled
            cancelled = True
            inner.cancel()

        outer: Deferred[IResponse] = Deferred(cancel)

        def failed(failure: Failure) -> None:
            if cancelled or failure.check(CancelledError):
                outer.errback(failure)
                return
            accept = (headers or Headers()).getRawHeaders(b"accept", [b""])[0]
            message = connectionError(failure, "peer proxy error", typeNames=False).message
            contentType, body = negotiate(accept, 502, message)
            outer.callback(
                SyntheticResponse(
                    502,
                    b"Bad Gateway",
                    Headers({b"content-type": [contentType]}),
                    body,
                )
            )

        inner.addCallbacks(outer.callback, failed)
        return outer


class PeerRouter:
    """
    Resolves peer model names and relays to peers.

    @ivar routes: every name a peer model is reachable by.
    @ivar forwarder: the L{Forwarder} for peer requests.
    """

    def __init__(self, config: Config, agent: IAgent, clock: IReactorTime) -> None:
        self._clock = clock
        self.routes: Mapping[str, PeerModel] = peerRoutes(config)
        self.forwarder = Forwarder(PeerErrorAgent(agent), clock)
        self._inFlight: dict[Deferred[Any], Deferred[None]] = {}
        self._shuttingDown = False

    def reconfigure(self, config: Config) -> None:
        """
        Route by C{config}'s peers from now on (a reload); relays in
        flight finish with the peer they started with.
        """
        self.routes = peerRoutes(config)

    def resolve(self, name: str) -> PeerModel | None:
        """
        The peer model C{name} refers to, if any.
        """
        return self.routes.get(name)

    def track(self, relay: Deferred[Any]) -> Deferred[Any]:
        """
        Count C{relay} (a L{Forwarder.forward} result) as in flight until it
        fires.

        @return: C{relay}.
        @raise PeerShuttingDown: the router is shutting down; the relay is
            cancelled.
        """
        if self._shuttingDown:
            relay.cancel()
            raise PeerShuttingDown()
        ended: Deferred[None] = Deferred()
        self._inFlight[relay] = ended

        def done(result: object) -> object:
            self._inFlight.pop(relay, None)
            ended.callback(None)
            return result

        return relay.addBoth(done)

    def checkOpen(self) -> None:
        """
        @raise PeerShuttingDown: the router takes no new requests.
        """
        if self._shuttingDown:
            raise PeerShuttingDown()

    @property
    def inFlight(self) -> int:
        """
        How many relays are running.
        """
        return len(self._inFlight)

    def shutdown(self, timeout: float = 0) -> Deferred[None]:
        """
        Refuse new requests, then wait for the running ones; after
        C{timeout} seconds (at once for 0) cut them off.

        @return: fires when no relay is left; fails with
            L{PeerShutdownError} when relays had to be cut off after a
            positive timeout, or when a shutdown is already in progress.
        """
        if self._shuttingDown:
            return fail(PeerShutdownError("shutdown already in progress"))
        self._shuttingDown = True
        if not self._inFlight:
            return succeed(None)
        waiting = DeferredList(list(self._inFlight.values()))
        timer: IDelayedCall | None = None
        timedOut = False

        def cutOff() -> None:
            nonlocal timer, timedOut
            timer = None
            timedOut = True
            for relay in list(self._inFlight):
                relay.cancel()

        if timeout <= 0:
            cutOff()
            timedOut = False
        else:
            timer = self._clock.callLater(timeout, cutOff)

        def finished(_: object) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            if timedOut:
                raise PeerShutdownError(f"peer shutdown timed out after {timeout:g}s")

        return waiting.addCallback(finished)


__all__ = [
    "NO_PEER",
    "NoPeer",
    "PeerErrorAgent",
    "PeerModel",
    "PeerRouter",
    "PeerShutdownError",
    "PeerShuttingDown",
    "SyntheticResponse",
    "peerRoutes",
]
