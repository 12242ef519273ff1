# -*- test-case-name: test.web.test_inference -*-
"""
Model-routed endpoints: find the model a request names, make it run, relay.

Covers the OpenAI, Anthropic, llama.cpp and stable-diffusion.cpp routes of
llama-swap's route table whose model is named in the JSON body, the query
string or a form field.  The body is read once, only to find the model (and
to apply filters); the relay streams it from where twisted.web buffered it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from .errors import HTTPError, ModelNotFound, PayloadTooLarge, writeFailure
from .mux import Mux
from .rewrite import applyFilters

if TYPE_CHECKING:
    from ..app import LlamaSwap

log = Logger()

#: POST routes whose model is in the JSON body (or a form field).
BODY_ROUTES = (
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/embeddings",
    "/reranking",
    "/rerank",
    "/v1/rerank",
    "/v1/reranking",
    "/infill",
    "/completion",
    "/v1/audio/speech",
    "/v1/audio/voices",
    "/v1/audio/transcriptions",
    "/v1/images/generations",
    "/v1/images/edits",
    "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img",
    "/audioapi/v1/tasks/run",
)
#: The versionless variants: C{/v} is removed before forwarding.
VERSIONLESS_ROUTES = (
    "/v/chat/completions",
    "/v/responses",
    "/v/completions",
    "/v/messages",
    "/v/messages/count_tokens",
    "/v/embeddings",
    "/v/rerank",
    "/v/reranking",
)
#: GET routes whose model is the C{model} query parameter.
QUERY_ROUTES = ("/v1/audio/voices", "/sdapi/v1/loras", "/props")

NO_MODEL = "no model id could be identified"
NO_LOCAL = "no local server found for requested model"


def upstreamPath(uri: bytes) -> bytes:
    """
    The path and query sent upstream: llama-swap removes the C{/v} of the
    versionless routes and the C{/audioapi} prefix.
    """
    if uri.startswith(b"/v/"):
        return uri[2:]
    if uri.startswith(b"/audioapi/"):
        return uri[len(b"/audioapi") :]
    return uri


def _queryModel(request: Request) -> str:
    values = (request.args or {}).get(b"model") or []
    return values[0].decode("utf-8", "replace") if values else ""


def readBody(request: Request, limit: int) -> bytes:
    """
    The request body, refusing bodies over C{limit} bytes with a 413.
    """
    content = request.content
    if content is None:
        return b""
    size = content.seek(0, 2)
    if size > limit:
        raise PayloadTooLarge(
            f"request body of {size} bytes exceeds the limit of {limit} bytes"
        )
    content.seek(0)
    data = content.read()
    content.seek(0)
    return bytes(data)


class Extracted:
    """
    What a request asks for.

    @ivar model: the model name as sent.
    @ivar json: the parsed JSON body, when the body is JSON.
    @ivar stream: whether a streamed response was asked for.
    """

    def __init__(self, model: str, json: dict[str, Any] | None, stream: bool) -> None:
        self.model = model
        self.json = json
        self.stream = stream


def extract(request: Request, limit: int) -> Extracted:
    """
    Find the requested model: the query for GET, the JSON C{model} field,
    or the C{model} field of a urlencoded form (falling back to the query).
    """
    if request.method in (b"GET", b"HEAD"):
        query = (request.args or {}).get(b"stream") or [b""]
        return Extracted(_queryModel(request), None, query[0] == b"true")
    contentType = (request.getHeader(b"content-type") or b"").lower()
    if b"application/json" in contentType:
        body = readBody(request, limit)
        try:
            parsed = json.loads(body)
        except ValueError:
            return Extracted("", None, False)
        if not isinstance(parsed, dict):
            return Extracted("", None, False)
        model = parsed.get("model")
        if isinstance(model, (int, float)) and not isinstance(model, bool):
            model = str(model)
        return Extracted(
            model if isinstance(model, str) else "", parsed, bool(parsed.get("stream"))
        )
    if b"application/x-www-form-urlencoded" in contentType:
        form = parse_qs(readBody(request, limit).decode("utf-8", "replace"))
        model = (form.get("model") or [""])[0] or _queryModel(request)
        return Extracted(model, None, (form.get("stream") or [""])[0] == "true")
    return Extracted(_queryModel(request), None, False)


class ModelRoute:
    """
    The handler of every model-routed endpoint.
    """

    def __init__(self, app: LlamaSwap) -> None:
        self.app = app

    def __call__(self, request: Request, rest: bytes) -> int:
        d = Deferred.fromCoroutine(self._handle(request))
        d.addErrback(self._unexpected, request)
        return NOT_DONE_YET

    def _unexpected(self, failure: Failure, request: Request) -> None:
        if not failure.check(CancelledError):
            log.failure("model request failed", failure)
        writeFailure(request, failure)

    async def _handle(self, request: Request) -> None:
        app = self.app
        try:
            asked = extract(request, app.maxBodyBytes)
            if not asked.model:
                raise ModelNotFound(NO_MODEL)
            resolved = app.router.resolve(asked.model)
            if resolved is None:
                raise ModelNotFound(NO_LOCAL)
            modelID = resolved[0]
            model = app.config.models[modelID]
            body: bytes | None = None
            if asked.json is not None and applyFilters(
                asked.json, model.filters, asked.model, model.useModelName
            ):
                body = json.dumps(asked.json, ensure_ascii=False).encode("utf-8")
            lease = await self._acquire(request, asked.model)
        except HTTPError as e:
            e.writeTo(request)
            return
        except CancelledError:
            return
        try:
            await app.forwarder.forward(
                request,
                lease.supervisor.spec.proxy,
                upstreamPath(request.uri),
                body,
                connectTimeout=model.timeouts.connect,
                responseHeaderTimeout=model.timeouts.responseHeader,
            )
        finally:
            lease.release()

    def _acquire(self, request: Request, name: str) -> Deferred:
        """
        Wait for the model; a client that leaves while waiting withdraws
        its request at once.
        """
        acquiring = self.app.router.acquire(name)
        finished = request.notifyFinish()

        def gone(failure: Failure) -> None:
            if not acquiring.called:
                acquiring.cancel()

        finished.addErrback(gone)
        return acquiring


def install(mux: Mux, app: LlamaSwap) -> None:
    """
    Register the model-routed endpoints.
    """
    handler = ModelRoute(app)
    for path in BODY_ROUTES + VERSIONLESS_ROUTES:
        methods = ["POST", "GET"] if path in QUERY_ROUTES else ["POST"]
        mux.route(methods, path, handler)
    for path in QUERY_ROUTES:
        if path not in BODY_ROUTES:
            mux.route(["GET"], path, handler)
