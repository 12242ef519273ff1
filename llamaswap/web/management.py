# -*- test-case-name: test.web.test_management -*-
"""
Management routes: the model list, what is running, unloading, runtime
profiles and the version (llama-swap's HTTP behaviour, sections 1.2 and 7).

 - C{GET /v1/models}, C{GET /models}: the OpenAI-style list (L{modelRecords}).
 - C{GET /running}: the local upstreams not stopped (L{runningRecords}).
 - C{GET /unload}, C{POST /api/models/unload}: stop every local upstream,
   answering once they are stopped; C{POST /api/models/unload/<model>}: one.
 - C{GET /api/profiles}, C{PUT /api/profiles/active}: list and switch the
   runtime profile, kept in the active-profile L{Holder}.
 - C{GET /api/version}.
 - C{GET /}: a redirect to the web UI.

The documents are built by pure functions of the configuration and the
upstream states; the handlers only read their collaborators and write
responses.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from .. import __version__, safejson
from ..compat import isDisconnected
from ..config.memory import budgetFields, memoryFields
from ..config.model import Capabilities, Config, ModelConfig
from ..holder import Holder
from ..httperrors import SOURCE, BadRequest, HTTPError, NotFound
from ..observe.events import capabilityFlags
from ..routing.router import Router
from ..upstream.lifecycle import State
from .errors import renderHTTPError, writeFailure
from .grants import mayUseModel
from .mux import ADMIN, INFERENCE, MONITOR, Mux, decodePath, firstHeader, redirect

log = Logger()

#: Where C{GET /} sends browsers.
UI_PATH = b"/ui/"
#: C{owned_by} of every listed model.
OWNER = SOURCE
#: User metadata keys that a configured capabilities block replaces.
RENDERED_KEYS = ("architecture", "capabilities", "supported_parameters", "context_length")

MODEL_NOT_FOUND = "model not found"
NO_LOCAL_SERVER = "no local server found for requested model"


# ---------------------------------------------------------------- documents


def capabilityFields(caps: Capabilities) -> dict[str, Any]:
    """
    The record fields advertising C{caps}: C{architecture} (modalities),
    C{capabilities} (flags), C{supported_parameters} and C{context_length},
    each only when there is something to say.
    """
    fields: dict[str, Any] = {}
    ins, outs = list(caps.inputs), list(caps.outputs)
    if ins or outs:
        architecture: dict[str, Any] = {}
        if ins:
            architecture["input_modalities"] = ins
        if outs:
            architecture["output_modalities"] = outs
        if ins and outs:
            architecture["modality"] = "+".join(ins) + "->" + "+".join(outs)
        fields["architecture"] = architecture
    present = capabilityFlags(caps)
    if present:
        fields["capabilities"] = present
    if caps.tools:
        fields["supported_parameters"] = ["tools", "tool_choice"]
    if caps.context > 0:
        fields["context_length"] = caps.context
    return fields


def _record(
    id: str,
    created: int,
    *,
    name: str = "",
    description: str = "",
    capabilities: Capabilities | None = None,
    metadata: Mapping[str, Any] | None = None,
    internal: Mapping[str, Any],
    loaded: bool = False,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": id,
        "object": "model",
        "created": created,
        "owned_by": OWNER,
    }
    if name.strip():
        record["name"] = name.strip()
    if description.strip():
        record["description"] = description.strip()
    user = dict(metadata or {})
    context = 0
    if capabilities is not None and not capabilities.isEmpty():
        record.update(capabilityFields(capabilities))
        for key in RENDERED_KEYS:
            user.pop(key, None)
        context = capabilities.context
    meta: dict[str, Any] = {}
    merged = {**user, **internal}
    if merged:
        meta["llamaswap"] = merged
    if context > 0:
        meta["n_ctx"] = context
    if meta:
        record["meta"] = meta
    record["status"] = {"value": "loaded" if loaded else "unloaded"}
    return record


def _isLoaded(state: State | None) -> bool:
    return state is not None and state not in (State.STOPPED, State.SHUTDOWN)


def _isReserved(config: Config, name: str) -> bool:
    """
    Whether C{name} already names something (model, alias, peer model,
    selector), so a profile pin on it gets no record of its own.
    """
    return (
        name in config.models
        or name in config.aliases
        or name in config.selectors
        or config.resolvePeerModel(name) is not None
    )


def modelRecords(
    config: Config,
    states: Mapping[str, State],
    activeProfile: str | None,
    created: int,
) -> list[dict[str, Any]]:
    """
    The C{data} of C{GET /v1/models}, sorted by ID: listed local models
    (and, with C{includeAliasesInList}, their aliases), every peer model by
    its fully-qualified name, listed selectors, and the pins of the active
    profile that name nothing else.

    @param states: model ID to state, for models whose upstream runs.
    @param created: the C{created} timestamp of every record.
    """
    records: list[dict[str, Any]] = []
    for modelID, model in config.models.items():
        if model.unlisted:
            continue
        loaded = _isLoaded(states.get(modelID))
        internal: dict[str, Any] = {"type": "model"}
        if model.aliases:
            internal["aliases"] = list(model.aliases)
        records.append(_modelRecord(modelID, model, created, internal, loaded))
        if config.includeAliasesInList:
            for alias in model.aliases:
                alias = alias.strip()
                if alias:
                    records.append(
                        _modelRecord(
                            alias,
                            model,
                            created,
                            {"type": "alias", "modelID": modelID},
                            loaded,
                        )
                    )
    for peerID, peer in config.peers.items():
        for modelID in peer.models:
            records.append(
                _record(
                    peer.fqn(modelID),
                    created,
                    name=f"{peerID}: {modelID}",
                    internal={"type": "peer", "peerID": peerID},
                )
            )
    for selector in config.selectors.values():
        if selector.unlisted:
            continue
        internal = {
            "type": "selector",
            "strategy": selector.strategy,
            "targets": list(selector.targets),
        }
        if selector.strategy == "spillover":
            internal["spillover"] = selector.spillover
        examined = selector.targets[:1] if selector.strategy == "pin" else selector.targets
        loaded = any(
            states.get(config.realModelName(t) or "") in (State.READY, State.STARTING)
            for t in examined
        )
        records.append(
            _record(
                selector.id,
                created,
                name=selector.name,
                description=selector.description,
                metadata=selector.metadata,
                internal=internal,
                loaded=loaded,
            )
        )
    profile = config.profiles.get(activeProfile) if activeProfile else None
    if profile is not None:
        for pinned, target in profile.pins.items():
            if target and not _isReserved(config, pinned):
                records.append(_record(pinned, created, internal={"type": "profile"}))
    records.sort(key=lambda r: r["id"])
    return records


def _modelRecord(
    id: str, model: ModelConfig, created: int, internal: dict[str, Any], loaded: bool
) -> dict[str, Any]:
    return _record(
        id,
        created,
        name=model.name,
        description=model.description,
        capabilities=model.capabilities,
        metadata=model.metadata,
        internal=internal,
        loaded=loaded,
    )


def runningRecords(
    config: Config, running: Iterable[tuple[str, State]]
) -> list[dict[str, Any]]:
    """
    The C{running} list of C{GET /running}: one entry per local upstream
    that is not stopped, sorted by model.  A model a reload removed is
    left out while its upstream is still stopping.
    """
    entries = []
    for modelID, state in sorted(running, key=lambda item: item[0]):
        model = config.models.get(modelID)
        if model is None:
            continue
        entries.append(
            {
                "model": modelID,
                "state": state.value,
                "cmd": config.shownCommand(model.cmd),
                "proxy": model.proxy,
                "ttl": model.ttl,
                "name": model.name,
                "description": model.description,
                **memoryFields(model),
            }
        )
    return entries


def profilesDocument(config: Config, active: str | None) -> dict[str, Any]:
    """
    The body of C{GET /api/profiles}: the active profile (or null) and every
    profile, sorted by ID, with its pins (disabled pins as C{""}).
    """
    return {
        "active": active,
        "profiles": [
            {
                "id": profileID,
                "description": profile.description,
                "pins": dict(profile.pins),
            }
            for profileID, profile in sorted(config.profiles.items())
        ],
    }


def parseProfileRequest(body: bytes, config: Config) -> str | None:
    """
    The profile a C{PUT /api/profiles/active} body asks for (L{None}: none).

    Like Go's decoder, only the first JSON value of the body is read.

    @raise BadRequest: the body is not a JSON object with a C{name} that is
        a string or null.
    @raise NotFound: no such profile.
    """
    try:
        document = safejson.firstValue(body)
    except safejson.JSONError:
        raise BadRequest("invalid profile request")
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise BadRequest("invalid profile request")
    if "name" not in document:
        raise BadRequest("profile name is required")
    name = document["name"]
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise BadRequest("profile name must be a string or null")
    if name not in config.profiles:
        raise NotFound(f"profile {json.dumps(name, ensure_ascii=False)} not found")
    return name


def setActiveProfile(activeProfile: Holder[str | None], name: str | None) -> bool:
    """
    Make C{name} the active profile; on a change, log it and set the
    holder (which tells its observers).

    @return: whether it changed.
    """
    if activeProfile.value == name:
        return False
    log.info('active profile changed to "{profile}"', profile=name or "")
    activeProfile.set(name)
    return True


# ---------------------------------------------------------------- responses


def jsonBody(request: Request, document: Any, status: int = 200) -> bytes:
    """
    Set C{status} and the JSON content type on C{request}; the encoded
    C{document} (compact, UTF-8, newline-terminated as Go's encoder does).
    """
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


def _textBody(request: Request, text: bytes) -> bytes:
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return text


def _finishWith(request: Request, body: bytes) -> None:
    """
    Write C{body} and finish, unless the client has gone.
    """
    if isDisconnected(request) or request.finished:
        return
    request.setHeader(b"content-length", b"%d" % (len(body),))
    request.write(body)
    request.finish()


def _readBody(request: Request) -> bytes:
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data = content.read()
    content.seek(0)
    return bytes(data)


class ManagementRoutes:
    """
    The handlers of the management routes.
    """

    def __init__(
        self,
        *,
        config: Holder[Config],
        activeProfile: Holder[str | None],
        router: Router,
        clock: IReactorTime,
    ) -> None:
        """
        @param router: what runs (C{running}, C{stateOf}) and unloads (a
            L{llamaswap.routing.router.Router}).
        @param clock: for the model list's C{created} stamps.
        """
        self.config = config
        self.activeProfile = activeProfile
        self.router = router
        self.clock = clock

    def listModels(self, request: Request, rest: bytes) -> bytes:
        """
        C{GET /v1/models}: the model list (only the models the request's
        key may use); a request's C{Origin} is echoed in
        C{Access-Control-Allow-Origin} so browser clients can read it.
        """
        config = self.config.value
        records = modelRecords(
            config,
            dict(self.router.running()),
            self.activeProfile.value,
            int(self.clock.seconds()),
        )
        records = [r for r in records if mayUseModel(request, config, r["id"])]
        origin = firstHeader(request, b"origin")
        if origin:
            request.setHeader(b"access-control-allow-origin", origin)
        return jsonBody(request, {"object": "list", "data": records})

    def running(self, request: Request, rest: bytes) -> bytes:
        """
        C{GET /running}.
        """
        config = self.config.value
        running = self.router.running()
        document: dict[str, Any] = {"running": runningRecords(config, running)}
        if config.memory.budget:
            document["memory"] = budgetFields(config, [m for m, _ in running])
        return jsonBody(request, document)

    def unloadAll(self, request: Request, rest: bytes) -> int:
        """
        C{GET /unload}: stop every local upstream, then answer C{OK}.
        """
        return self._unload(request, None, lambda: _textBody(request, b"OK"))

    def apiUnloadAll(self, request: Request, rest: bytes) -> int:
        """
        C{POST /api/models/unload}: stop every local upstream, then answer
        C{{"msg":"ok"}}.
        """
        return self._unload(request, None, lambda: jsonBody(request, {"msg": "ok"}))

    def apiUnloadModel(self, request: Request, rest: bytes) -> bytes | int:
        """
        C{POST /api/models/unload/<model>}: stop one model (named by ID or
        alias; profiles do not apply), then answer C{OK}.
        """
        config = self.config.value
        name = decodePath(rest)
        modelID = config.realModelName(name) if name else None
        if modelID is None or self.router.stateOf(modelID) is None:
            if modelID is None and config.resolvePeerModel(name) is None:
                return renderHTTPError(request, NotFound(MODEL_NOT_FOUND))
            return renderHTTPError(request, NotFound(NO_LOCAL_SERVER))
        return self._unload(request, [modelID], lambda: _textBody(request, b"OK"))

    def _unload(
        self, request: Request, models: list[str] | None, answer: Callable[[], bytes]
    ) -> int:
        """
        Unload C{models} (all: L{None}); once they are stopped, answer with
        the body C{answer} renders.
        """
        d: Deferred[None] = self.router.unload(models)

        def done(_: object) -> None:
            _finishWith(request, answer())

        def failed(failure: Failure) -> None:
            # Logged by writeFailure, as every unexpected error answered 500.
            writeFailure(request, failure)

        d.addCallbacks(done, failed)
        return NOT_DONE_YET

    def profiles(self, request: Request, rest: bytes) -> bytes:
        """
        C{GET /api/profiles}.
        """
        return jsonBody(
            request, profilesDocument(self.config.value, self.activeProfile.value)
        )

    def setProfile(self, request: Request, rest: bytes) -> bytes:
        """
        C{PUT /api/profiles/active}: switch the runtime profile.
        """
        try:
            name = parseProfileRequest(_readBody(request), self.config.value)
        except HTTPError as e:
            return renderHTTPError(request, e)
        setActiveProfile(self.activeProfile, name)
        return jsonBody(request, {"active": name})

    def version(self, request: Request, rest: bytes) -> bytes:
        """
        C{GET /api/version}.
        """
        return jsonBody(
            request,
            {"version": __version__, "commit": "unknown", "build_date": "unknown"},
        )

    def root(self, request: Request, rest: bytes) -> bytes:
        """
        C{GET /}: to the web UI.
        """
        return redirect(request, UI_PATH, 302)


def install(mux: Mux, routes: ManagementRoutes) -> None:
    """
    Register the management routes.
    """
    mux.route("GET", "/v1/models", routes.listModels, scope=INFERENCE)
    mux.route("GET", "/models", routes.listModels, scope=INFERENCE)
    mux.route("GET", "/running", routes.running, scope=MONITOR)
    mux.route("GET", "/unload", routes.unloadAll, scope=ADMIN)
    mux.route("POST", "/api/models/unload", routes.apiUnloadAll, scope=ADMIN)
    mux.route("POST", "/api/models/unload/", routes.apiUnloadModel, scope=ADMIN)
    mux.route("GET", "/api/profiles", routes.profiles, scope=MONITOR)
    mux.route("PUT", "/api/profiles/active", routes.setProfile, scope=ADMIN)
    mux.route("GET", "/api/version", routes.version, scope=MONITOR)
    mux.route("GET", "/", routes.root, auth=False)


__all__ = [
    "ManagementRoutes",
    "capabilityFields",
    "install",
    "jsonBody",
    "modelRecords",
    "parseProfileRequest",
    "profilesDocument",
    "runningRecords",
    "setActiveProfile",
]
