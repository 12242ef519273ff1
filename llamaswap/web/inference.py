# -*- test-case-name: test.web.test_inference -*-
"""
Model-routed endpoints: find the model a request names, make it run, relay.

Covers the OpenAI, Anthropic, llama.cpp, stable-diffusion.cpp and audio.cpp
routes of llama-swap's route table whose model is named in the JSON body, a
form field or the query string (HTTP behaviour §1.1).  One request goes
through these steps (§2), in L{ModelRoute._handle}:

 1. L{extract}: find the model (body read once; 413 over the size limit);
 2. the active runtime profile's pin for that name, if any (an empty pin
    target disables the name);
 3. a selector picks one of its targets (reserving it for spillover);
 4. route: a local model (ID, alias, C{setParamsByID} alias, v1
    C{profile/model}) wins over a peer model (fully-qualified or unique
    bare name); neither is a 404;
 5. L{ModelRoute._plan}: decide what goes upstream (L{Upstream}): the path
    (C{/v} and C{/audioapi} removed), the model renamed where the client
    put it (the rewritten name, the local model's C{useModelName}, the bare
    member of a v1 profile name, or the peer's own model name), the JSON
    filters of the model or peer, and the headers;
 6. for a local model, L{llamaswap.web.leased.serveLeased}: wait for
    the router's lease (a streamed chat completion for a model with
    C{sendLoadingState} that has to wait watches the load meanwhile, see
    L{llamaswap.web.loading}), relay to the URL it carries, release it;
 7. L{ModelRoute._relay}: the single place a request is handed to a
    L{Forwarder}.  When nothing was rewritten the client's bytes are
    relayed untouched, streamed from where twisted.web buffered them.

Deliberate differences from llama-swap: a rewritten multipart body keeps
its boundary, part order and part headers (only the model field's content
changes); a rewritten query or urlencoded form keeps its other pairs in
order; a model given in the query of a form or multipart request is
rewritten in the query.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from attrs import define, field, frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from .. import safejson
from ..config.limits import idleTimeoutFor
from ..config.model import Config, Filters, Timeouts
from ..httperrors import BadRequest, HTTPError, InternalError, ModelNotFound
from ..observe.tracking import RequestTrack
from ..routes import BODY_ROUTES, QUERY_ROUTES, VERSIONLESS_ROUTES, upstreamPath
from ..routing.router import Lease
from ..upstream.lifecycle import State
from .auth import upstreamAuthHeaders
from .errors import writeFailure, writeHTTPError
from .extract import FORM, MULTIPART, QUERY, Extracted, extract
from .forward import BodyArg, BodyProducer, ForwardResult, Tap
from .grants import checkModel, principalOf
from .headers import HeaderValue
from .keepalive import KeepAlive, takeKeepAlive
from .leased import serveLeased
from .loading import acquireWithLoadingState, wantsLoadingState
from .multipart import MultipartError
from .mux import INFERENCE, Mux
from .peers import PeerModel, PeerShuttingDown
from .recovery import HoldEnd
from .rewrite import applyFilters, replaceEncodedValue, replaceQueryValue
from .routed import RoutedHandler
from .selectors import Choice, Selectors

log = Logger()

NO_MODEL = "no model id could be identified"
NO_ROUTER = "no router for requested model"


@frozen
class Local:
    """
    A request routed to a local model.

    @ivar modelID: the model's ID.
    @ivar member: for a v1 C{profile/model} name, the member as named
        after the profile (what the upstream is sent), else L{None}.
    """

    modelID: str
    member: str | None = None


@frozen
class Upstream:
    """
    Everything decided about one relay: where it goes and what is sent.

    @ivar requested: the model name after profile and selector rewriting
        (what routing used).
    @ivar local: the local route, or L{None} for a peer.
    @ivar peer: the peer model, or L{None} for a local model.
    @ivar selector: the selector that chose the model, if any.
    @ivar stream: whether the client asked for a streamed response.
    @ivar url: the server's base URL (for a local model filled in once it
        is running).
    @ivar path: the path and query requested upstream.
    @ivar body: L{None} for the client's own bytes, or the rewritten body.
    @ivar extraHeaders: request headers to set or (value L{None}) remove.
    @ivar timeouts: the model's or peer's C{timeouts} (connect and
        response-header apply).
    @ivar preserveHost: whether the client's C{Host} is sent (local
        models) rather than the server's (peers).
    @ivar forwardedFor: whether the client's address is appended to
        C{X-Forwarded-For} (local models only).
    @ivar keepAlive: the idle timeout the request's C{ttl}/C{keep_alive}
        set for its local model (L{llamaswap.web.keepalive}), if any.
    """

    requested: str
    local: Local | None
    peer: PeerModel | None
    selector: str | None
    stream: bool
    url: str
    path: bytes
    body: BodyArg
    extraHeaders: Mapping[str | bytes, HeaderValue]
    timeouts: Timeouts
    preserveHost: bool
    forwardedFor: bool
    keepAlive: KeepAlive | None = None


@define(kw_only=True, slots=False, eq=False)
class ModelRoute(RoutedHandler):
    """
    The handler of every model-routed endpoint.

    @ivar clock: for the loading-state stream.
    @ivar selectors: the selectors and their spillover reservations,
        rebuilt when the configuration changes.
    """

    clock: IReactorTime
    selectors: Selectors = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.selectors = Selectors(self.config.value, self.router.stateOf)
        self.config.addObserver(self._configChanged)

    def _configChanged(self, old: Config, new: Config) -> None:
        """
        A new configuration: new selectors (reservations start afresh).
        """
        self.selectors = Selectors(new, self.router.stateOf)

    def __call__(self, request: Request, rest: bytes) -> int:
        d = Deferred.fromCoroutine(self._handle(request))
        d.addErrback(self._unexpected, request)
        return NOT_DONE_YET

    def _unexpected(self, failure: Failure, request: Request) -> None:
        if not failure.check(CancelledError):
            log.failure("model request failed", failure)
        writeFailure(request, failure)

    # -- the steps ------------------------------------------------------------

    async def _handle(self, request: Request) -> None:
        choice: Choice | None = None
        track = self.tracker.begin(request, keyName=principalOf(request).name)
        try:
            try:
                asked = extract(request, self.config.value.limits.maxRequestBodyBytes)
                track.model = asked.model
                name = self._pinned(asked.model)
                if name in self.selectors:
                    choice = self.selectors.choose(name)
                    name = choice.target
                if not name:
                    raise ModelNotFound(NO_MODEL)
                checkModel(request, self.config.value, asked.model, name)
                upstream = self._plan(request, asked, name, choice)
                if upstream.local is None:
                    self.peers.checkOpen()
            except HTTPError as e:
                writeHTTPError(request, e)
                track.finished(None, e)
                return
            if upstream.local is not None:
                await self._serveLocal(request, upstream, name, track)
            else:
                taps = track.relaying(upstream.requested, upstream.selector, upstream.body)
                await self._relay(request, upstream, taps)
        finally:
            if choice is not None:
                choice.release()

    async def _serveLocal(
        self, request: Request, upstream: Upstream, name: str, track: RequestTrack
    ) -> None:
        """
        Serve the request on a local model through L{serveLeased}, which
        restarts a model whose server refused the connection and relays
        once more (L{llamaswap.web.recovery}): the first attempt's taps
        hold back a refused end (L{HoldEnd}) so that the retry reports to
        the same track.
        """
        held = HoldEnd(track.relaying(upstream.requested, upstream.selector, upstream.body))
        retried = False

        async def relayLeased(lease: Lease, deferRefused: bool) -> ForwardResult | None:
            nonlocal retried
            retried = retried or not deferRefused
            if upstream.keepAlive is not None:
                lease.supervisor.setIdleTimeout(upstream.keepAlive.seconds)
            taps = [held] if deferRefused else held.taps
            return await self._relay(request, upstream, taps, deferRefused, url=lease.url)

        try:
            await serveLeased(
                request,
                track,
                lambda: self._acquire(request, name, upstream),
                relayLeased,
                retryRefused=True,
            )
        finally:
            if not retried:
                held.release()

    def _pinned(self, name: str) -> str:
        """
        C{name} after the active runtime profile's pins (HTTP behaviour
        §4.1): a pinned name becomes its target, C{""} when disabled.
        """
        pins = self._activePins()
        if name and name in pins:
            return pins[name] or ""
        return name

    def _activePins(self) -> Mapping[str, str]:
        active = self.activeProfile.value
        profile = self.config.value.profiles.get(active) if active is not None else None
        return profile.pins if profile is not None else {}

    def _route(self, name: str) -> Local | PeerModel:
        """
        Where C{name} is served: locally when the router knows it (local
        wins), else by a peer.
        """
        resolved = self.router.resolve(name)
        if resolved is not None:
            modelID, profile = resolved
            member = name[len(profile) + 1 :] if profile is not None else None
            return Local(modelID, member)
        peer = self.peers.resolve(name)
        if peer is not None:
            return peer
        raise ModelNotFound(NO_ROUTER)

    def _plan(
        self, request: Request, asked: Extracted, name: str, choice: Choice | None
    ) -> Upstream:
        """
        Decide what is sent upstream for a request for C{name}.
        """
        route = self._route(name)
        extraHeaders: dict[str | bytes, HeaderValue] = {}
        changed, keepAlive = False, None
        if isinstance(route, Local) and asked.json is not None:
            changed, keepAlive = takeKeepAlive(asked.json, self.config.value.requestTTL)
        if isinstance(route, Local):
            model = self.config.value.models[route.modelID]
            sent = route.member or name
            if model.useModelName and (asked.json is not None or asked.form is not None):
                sent = model.useModelName
            filters, timeouts = model.filters, model.timeouts
            local, peer, url, preserveHost = route, None, model.proxy, True
        else:
            sent = route.modelID
            filters, timeouts = route.peer.filters, route.peer.timeouts
            local, peer, url, preserveHost = None, route, route.peer.proxy, False
            # A peer sees no inbound forwarding headers, and its own key.
            for header, _ in request.requestHeaders.getAllRawHeaders():
                lowered = header.lower()
                if lowered.startswith(b"x-forwarded-") or lowered == b"forwarded":
                    extraHeaders[header] = None
            extraHeaders.update(upstreamAuthHeaders(request, route.peer))
        path, body = self._rewrite(request, asked, sent, filters, name, changed)
        return Upstream(
            requested=name,
            local=local,
            peer=peer,
            selector=choice.selector if choice is not None else None,
            stream=asked.stream,
            url=url,
            path=path,
            body=body,
            extraHeaders=extraHeaders,
            timeouts=timeouts,
            preserveHost=preserveHost,
            forwardedFor=preserveHost,
            keepAlive=keepAlive,
        )

    def _rewrite(
        self,
        request: Request,
        asked: Extracted,
        sent: str,
        filters: Filters,
        requested: str,
        changed: bool = False,
    ) -> tuple[bytes, BodyArg]:
        """
        The upstream path and body: C{sent} as the model where the client
        named it, and for JSON bodies the filters (C{setParamsByID} by the
        C{requested} name).  The body is L{None} when unchanged (and
        C{changed} is false: the JSON was already edited).
        """
        path = upstreamPath(request.uri)
        body: BodyArg = None
        if asked.json is not None:
            if sent != asked.model:
                asked.json["model"] = sent
                changed = True
            changed = applyFilters(asked.json, filters, requested) or changed
            if changed:
                try:
                    text = safejson.dumps(asked.json, ensure_ascii=False)
                except safejson.JSONError as e:
                    raise BadRequest(str(e))
                body = text.encode("utf-8")
        elif sent != asked.model:
            if asked.source == QUERY:
                path = replaceQueryValue(path, "model", sent)
            elif asked.source == FORM and asked.raw is not None:
                body = replaceEncodedValue(asked.raw, "model", sent)
            elif asked.source == MULTIPART and asked.form is not None:
                try:
                    spliced = asked.form.withValue(request.content, "model", sent)
                except MultipartError as e:
                    raise BadRequest(str(e))
                body = BodyProducer(spliced, spliced.length)
        return path, body

    def _acquire(self, request: Request, name: str, upstream: Upstream) -> Deferred[Any]:
        """
        Start waiting for the model.  A streamed chat completion for a
        model with C{sendLoadingState} that has to wait gets the
        loading-state stream meanwhile (the response then starts before
        the upstream's).
        """
        modelID = upstream.local.modelID if upstream.local is not None else name
        model = self.config.value.models.get(modelID)
        ready = self.router.stateOf(modelID) in (None, State.READY)
        if model is not None and wantsLoadingState(
            request.path, upstream.stream, model.sendLoadingState, ready
        ):
            return acquireWithLoadingState(
                request,
                self.clock,
                modelID,
                lambda onQueuePosition: self.router.acquire(
                    name, onQueuePosition=onQueuePosition
                ),
            )
        return self.router.acquire(name)

    async def _relay(
        self,
        request: Request,
        upstream: Upstream,
        taps: Iterable[Tap],
        deferRefused: bool = False,
        url: str | None = None,
    ) -> ForwardResult | None:
        """
        Hand the request to the forwarder of its kind: the one place where
        a model request goes upstream.  A relay cut off by a shutdown that
        had not answered yet still gets an answer.

        @param taps: fed the response (the request track's).
        @param deferRefused: leave a refused connection unanswered (the
            caller restarts the model and relays again).
        @param url: the server's base URL when not C{upstream.url} (a local
            model's, known once it runs).
        @return: how the exchange ended (L{None}: cut off by a shutdown).
        """
        forwarder = self.forwarder if upstream.peer is None else self.peers.forwarder
        relay: Deferred[ForwardResult] = forwarder.forward(
            request,
            upstream.url if url is None else url,
            upstream.path,
            upstream.body,
            connectTimeout=upstream.timeouts.connect,
            responseHeaderTimeout=upstream.timeouts.responseHeader,
            extraHeaders=upstream.extraHeaders,
            taps=taps,
            preserveHost=upstream.preserveHost,
            forwardedFor=upstream.forwardedFor,
            idleTimeout=idleTimeoutFor(upstream.timeouts.idle, self.config.value.limits),
            deferRefused=deferRefused,
        )
        if upstream.peer is not None:
            relay = self.peers.track(relay)
        try:
            return await relay
        except CancelledError:
            if not request.startedWriting:
                error: HTTPError = (
                    PeerShuttingDown()
                    if upstream.peer is not None
                    else InternalError("unspecific error: aborted")
                )
                writeHTTPError(request, error)
        except HTTPError as e:
            writeHTTPError(request, e)
        return None


def install(mux: Mux, handler: ModelRoute) -> ModelRoute:
    """
    Register C{handler} for the model-routed endpoints.

    @return: the handler.
    """
    for path in BODY_ROUTES + VERSIONLESS_ROUTES:
        methods = ["POST", "GET"] if path in QUERY_ROUTES else ["POST"]
        mux.route(methods, path, handler, scope=INFERENCE)
    for path in QUERY_ROUTES:
        if path not in BODY_ROUTES:
            mux.route(["GET"], path, handler, scope=INFERENCE)
    return handler
