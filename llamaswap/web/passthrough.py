# -*- test-case-name: test.web.test_passthrough -*-
"""
Direct passthrough to one model's server: C{/upstream/<model>/<path>} and
C{/comfyui/<path>} (HTTP behaviour §7.4, §7.5; core behaviour §3.7, §3.8).

C{/upstream/<model>/<path>}, any method:

 1. The active profile's pin whose name is the longest prefix of the path
    (the whole name, followed by C{/} or the end) replaces that prefix.
 2. The model is the longest run of leading path segments that names a
    local model (ID, alias) or a peer model; model names may contain C{/},
    which may also arrive escaped (C{author%2Fmodel}).  Selectors are not
    names here.  Unknown: 404 C{model not found}.
 3. Nothing after the model and no trailing slash: a redirect to
    C{/upstream/<model>/} with the query, 301 for GET and HEAD, 308 for
    the rest (which keeps the method and body).
 4. The rest of the path is forwarded exactly as the client escaped it
    (C{%2F}, C{%20}, C{%252F} stay), with the query.
 5. A path matching C{upstream.ignorePaths} (searched anywhere in the
    decoded rest) does not start a local model: unless it is ready, 409.
 6. Otherwise the request is served like any model request: it waits for
    the model (starting it, swapping others out) and holds a lease while
    it is relayed.  Peer models are relayed to their peer.

C{/comfyui/<path>} is the same for the fixed model C{comfyui_auto}, with
one rule of its own: only the root C{/comfyui/} may start the model; any
other path while it is not ready is a 409 and reaches nothing.

Websocket upgrades (C{Connection: upgrade} + C{Upgrade: websocket}) go
through L{llamaswap.web.tunnel} and hold their lease until the websocket
closes.  For a model with C{compat.ignoreWebsockets} (forced for
C{comfyui_auto}) they bypass the scheduler instead: a 409 unless the model
is ready, otherwise relayed without a lease, so they neither start, nor
keep alive, nor hold back the model.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping
from urllib.parse import quote, unquote_to_bytes

from attrs import define, frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from ..compat import isDisconnected
from ..config.limits import idleTimeoutFor
from ..config.model import COMFYUI_MODEL_ID, PeerConfig
from ..httperrors import Conflict, HTTPError, NotFound
from ..upstream.lifecycle import State
from .auth import upstreamAuthHeaders
from .errors import renderHTTPError, writeFailure, writeHTTPError
from .grants import mayUseModel, modelForbidden, principalOf
from .leased import serveLeased
from .mux import ANY_METHOD, INFERENCE, Mux, rawQuery, redirect, requestPath
from .peers import PeerModel
from .routed import RoutedHandler
from .tunnel import Tunneler, isWebsocketUpgrade

log = Logger()

MODEL_NOT_FOUND = "model not found"
#: Characters left unescaped when a model name is put into a path.
_NAME_SAFE = "/!$&'()*+,;=:@-._~"
#: Inbound proxy headers a peer must not see (llama-swap's peer proxy
#: strips them and adds none).
_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto")


# ---------------------------------------------------------------------------
# Paths (pure)


def _decode(raw: bytes) -> str:
    """
    The percent-decoded text of C{raw}; undecodable bytes survive as
    surrogates so that L{_encode} gives them back.
    """
    return unquote_to_bytes(raw).decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def escapePath(text: str) -> bytes:
    """
    C{text} (a decoded path or model name) percent-encoded for a URL path,
    keeping C{/} and the other characters a path segment may hold.
    """
    return quote(_encode(text), safe=_NAME_SAFE).encode("ascii")


def escapedSuffix(raw: bytes, decodedPrefix: bytes) -> bytes | None:
    """
    What follows C{decodedPrefix} in the raw path C{raw}, still escaped as
    the client sent it: C{raw} is walked one byte or one C{%XX} escape at a
    time until the decoded bytes make up C{decodedPrefix}.

        >>> escapedSuffix(b"author%2Fmodel/api/x%2Fy", b"author/model")
        b'/api/x%2Fy'

    @return: the raw suffix, or L{None} if C{raw} does not start with
        C{decodedPrefix}.
    """
    i = j = 0
    while j < len(decodedPrefix):
        if i >= len(raw):
            return None
        if raw[i : i + 1] == b"%" and _isHex(raw[i + 1 : i + 3]):
            byte, i = int(raw[i + 1 : i + 3], 16), i + 3
        else:
            byte, i = raw[i], i + 1
        if byte != decodedPrefix[j]:
            return None
        j += 1
    return raw[i:]


def _isHex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


@frozen
class PathMatch:
    """
    A model found at the start of a passthrough path.

    @ivar name: the model name as requested (decoded).
    @ivar remaining: the decoded rest of the path, starting with C{/}
        (C{/} when nothing follows the name).
    @ivar escaped: the rest as the client escaped it, starting with C{/};
        C{b""} when nothing follows the name.
    """

    name: str
    remaining: str
    escaped: bytes

    @property
    def upstreamPath(self) -> bytes:
        """
        The path to request upstream: the client's escaping, or C{/}.
        """
        return self.escaped or b"/"


def findModelInPath(rest: bytes, isName: Callable[[str], bool]) -> PathMatch | None:
    """
    Find the model at the start of the raw path C{rest} (what follows
    C{/upstream/}): the longest run of leading decoded segments, joined
    with C{/}, for which C{isName} holds.  Empty segments are skipped, as
    llama-swap does.
    """
    parts = _decode(rest).split("/")
    name = ""
    found: tuple[str, int] | None = None
    for i, part in enumerate(parts):
        if not part:
            continue
        name = f"{name}/{part}" if name else part
        if isName(name):
            found = (name, i)
    if found is None:
        return None
    name, i = found
    remaining = "/" + "/".join(parts[i + 1 :])
    escaped = escapedSuffix(rest, _encode(name))
    if escaped is None:
        # The name was not at the very start (empty segments before it):
        # fall back to re-escaping the decoded rest.
        escaped = escapePath(remaining) if remaining != "/" else b""
    return PathMatch(name, remaining, escaped)


def applyPin(rest: bytes, pins: Mapping[str, str]) -> bytes:
    """
    Apply a profile's C{pins} to the raw passthrough path C{rest}: the pin
    whose name is the longest prefix of the decoded path (followed by C{/}
    or the end) replaces it; the rest keeps the client's escaping.  A pin
    to C{""} empties the path (which then names no model).
    """
    decoded = _decode(rest)
    best = ""
    for key in pins:
        if len(key) > len(best) and (decoded == key or decoded.startswith(key + "/")):
            best = key
    if not best:
        return rest
    target = pins[best]
    if not target:
        return b""
    suffix = escapedSuffix(rest, _encode(best))
    if suffix is None:
        suffix = escapePath(decoded[len(best) :])
    return escapePath(target) + suffix


def withQuery(path: bytes, query: bytes) -> bytes:
    """
    C{path}, and C{?query} when there is one.
    """
    return path + b"?" + query if query else path


def redirectCode(method: bytes) -> int:
    """
    301 for GET and HEAD, 308 (method and body kept) for the rest.
    """
    return 301 if method in (b"GET", b"HEAD") else 308


# ---------------------------------------------------------------------------
# The handlers


def peerHeaders(request: Request, peer: PeerConfig) -> dict[str | bytes, Any]:
    """
    The header overrides for a request relayed to C{peer}: no inbound
    forwarding headers, and the peer's API key when it has one.
    """
    headers: dict[str | bytes, Any] = {name: None for name in _FORWARDING_HEADERS}
    headers.update(upstreamAuthHeaders(request, peer))
    return headers


@define(kw_only=True, slots=False, eq=False)
class Passthrough(RoutedHandler):
    """
    The C{/upstream} and C{/comfyui} handlers.

    @ivar tunneler: relays websocket upgrades (the tracker sees every
        non-websocket local request).
    """

    tunneler: Tunneler

    # -- /upstream ------------------------------------------------------------

    def models(self, request: Request, rest: bytes) -> bytes:
        """
        C{GET /upstream}: the UI's model page.
        """
        return redirect(request, b"/ui/#/models", 302)

    def upstream(self, request: Request, rest: bytes) -> bytes | int:
        """
        C{/upstream/<model>/<path>}; see the module docstring.
        """
        config = self.config.value
        profile = config.profiles.get(self.activeProfile.value or "")
        if profile is not None:
            rest = applyPin(rest, profile.pins)
        match = findModelInPath(rest, self._isName)
        if match is None:
            return renderHTTPError(request, NotFound(MODEL_NOT_FOUND))
        query = rawQuery(request)
        if match.remaining == "/" and not _decode(requestPath(request)).endswith("/"):
            location = b"/upstream/" + escapePath(match.name) + b"/"
            return redirect(request, withQuery(location, query), redirectCode(request.method))
        if not mayUseModel(request, config, match.name):
            return renderHTTPError(request, modelForbidden(match.name))
        target = withQuery(match.upstreamPath, query)
        local = self.router.resolve(match.name)
        if local is not None:
            modelID = local[0]
            if config.upstream.isIgnored(match.remaining) and not self._ready(modelID):
                return renderHTTPError(
                    request,
                    Conflict(f"model {modelID} is not loaded; path matches upstream.ignorePaths"),
                )
            return self._run(request, self._serveLocal(request, modelID, target))
        peer = self.peers.resolve(match.name)
        if peer is not None:
            return self._run(request, self._servePeer(request, peer, target))
        return renderHTTPError(request, NotFound(f"no router for model {match.name}"))

    def _isName(self, name: str) -> bool:
        return (
            self.router.resolve(name) is not None
            or self.peers.resolve(name) is not None
        )

    # -- /comfyui -------------------------------------------------------------

    def comfyRoot(self, request: Request, rest: bytes) -> bytes:
        """
        C{/comfyui}: to C{/comfyui/}, query kept.
        """
        location = withQuery(b"/comfyui/", rawQuery(request))
        return redirect(request, location, redirectCode(request.method))

    def comfy(self, request: Request, rest: bytes) -> bytes | int:
        """
        C{/comfyui/<path>}: the model C{comfyui_auto}; only the root may
        start it.
        """
        modelID = COMFYUI_MODEL_ID
        if self.router.resolve(modelID) is None:
            return renderHTTPError(request, NotFound(f"local model {modelID} not found"))
        if not mayUseModel(request, self.config.value, modelID):
            return renderHTTPError(request, modelForbidden(modelID))
        if rest and not self._ready(modelID):
            return renderHTTPError(
                request, Conflict(f"model {modelID} is not loaded; only /comfyui/ can start it")
            )
        target = withQuery(b"/" + rest, rawQuery(request))
        return self._run(request, self._serveLocal(request, modelID, target))

    # -- serving --------------------------------------------------------------

    def _ready(self, modelID: str) -> bool:
        return self.router.stateOf(modelID) is State.READY

    def _run(self, request: Request, coroutine: Any) -> int:
        d = Deferred.fromCoroutine(coroutine)
        d.addErrback(self._unexpected, request)
        return NOT_DONE_YET

    def _unexpected(self, failure: Failure, request: Request) -> None:
        if failure.check(CancelledError):
            return
        log.failure("passthrough request failed", failure)
        if not request.startedWriting and not isDisconnected(request):
            writeFailure(request, failure)

    async def _serveLocal(self, request: Request, modelID: str, target: bytes) -> None:
        """
        Relay C{request} to local model C{modelID}, holding a lease unless
        it is an ignored websocket.
        """
        model = self.config.value.models[modelID]
        websocket = isWebsocketUpgrade(request.requestHeaders)
        options: dict[str, Any] = dict(
            connectTimeout=model.timeouts.connect,
            responseHeaderTimeout=model.timeouts.responseHeader,
            extraHeaders=upstreamAuthHeaders(request, model) or None,
        )
        if websocket and model.compat.ignoreWebsockets:
            if not self._ready(modelID):
                writeHTTPError(
                    request,
                    Conflict(
                        f"model {modelID} is not loaded; ignored websocket requests "
                        f"cannot start it"
                    ),
                )
                return
            await self.tunneler.tunnel(request, model.proxy, target, **options)
            return
        track = None if websocket else self.tracker.begin(
            request, modelID, target, keyName=principalOf(request).name
        )

        def relay(lease: Any) -> Deferred[Any]:
            if track is None:
                return self.tunneler.tunnel(request, lease.url, target, **options)
            return self.forwarder.forward(
                request,
                lease.url,
                target,
                taps=track.forwarding(),
                idleTimeout=idleTimeoutFor(model.timeouts.idle, self.config.value.limits),
                **options,
            )

        await serveLeased(request, track, lambda: self.router.acquire(modelID), relay)

    async def _servePeer(self, request: Request, peer: PeerModel, target: bytes) -> None:
        """
        Relay C{request} to the peer serving C{peer}.
        """
        config = peer.peer
        try:
            self.peers.checkOpen()
        except HTTPError as e:
            writeHTTPError(request, e)
            return
        extra = peerHeaders(request, config)
        timeouts = config.timeouts
        # A peer sees its own host and no forwarding headers.
        options: dict[str, Any] = dict(
            connectTimeout=timeouts.connect,
            responseHeaderTimeout=timeouts.responseHeader,
            extraHeaders=extra,
            preserveHost=False,
            forwardedFor=False,
        )
        relay: Deferred[Any]
        if isWebsocketUpgrade(request.requestHeaders):
            relay = self.tunneler.tunnel(
                request, config.proxy, target, failureMessage="peer proxy error", **options
            )
        else:
            relay = self.peers.forwarder.forward(
                request,
                config.proxy,
                target,
                idleTimeout=idleTimeoutFor(timeouts.idle, self.config.value.limits),
                **options,
            )
        try:
            await self.peers.track(relay)
        except HTTPError as e:
            writeHTTPError(request, e)


def install(mux: Mux, passthrough: Passthrough) -> Passthrough:
    """
    Register C{passthrough} for C{GET /upstream}, C{/upstream/...},
    C{/comfyui} and C{/comfyui/...}.
    """
    mux.route("GET", "/upstream", passthrough.models, auth=False)
    mux.route(ANY_METHOD, "/upstream/", passthrough.upstream, scope=INFERENCE)
    mux.route(ANY_METHOD, "/comfyui", passthrough.comfyRoot, scope=INFERENCE)
    mux.route(ANY_METHOD, "/comfyui/", passthrough.comfy, scope=INFERENCE)
    return passthrough


__all__ = [
    "MODEL_NOT_FOUND",
    "PathMatch",
    "Passthrough",
    "applyPin",
    "escapePath",
    "escapedSuffix",
    "findModelInPath",
    "install",
    "peerHeaders",
    "redirectCode",
    "withQuery",
]
