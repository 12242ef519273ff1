# -*- test-case-name: test.test_demo -*-
"""
The demo upstream's HTTP side: an OpenAI- and Anthropic-compatible resource
that stands in for llama-server in tests and example configs.

Every response names the model and process that served it (C{X-Demo-Model},
C{X-Demo-Pid} and a C{demo} field in JSON bodies), recent requests are kept for
inspection at C{/_demo/requests}, and unknown paths echo what they received, so
proxy tests can check exactly what reached the upstream.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import json
from typing import Any, Callable
from urllib.parse import parse_qs

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llamaswap.demo import text
from llamaswap.demo.generation import (
    AnthropicEmitter,
    BaseEmitter,
    Emitter,
    Generation,
    OpenAIChatEmitter,
    OpenAICompletionEmitter,
    Reply,
    dumpJSON,
)

REQUEST_LOG_SIZE = 100
DEFAULT_EMBEDDING_DIMENSIONS = 16
MAX_EMBEDDING_DIMENSIONS = 4096


@frozen
class DemoOptions:
    """
    How the demo upstream behaves over HTTP.

    @ivar model: The model name it reports.
    @ivar startupDelay: Seconds after start during which it answers 503
        "Loading model"; C{math.inf} never becomes ready.
    @ivar tokens: Pieces generated per completion when C{respond} is unset.
    @ivar tokenDelay: Seconds between generated pieces.
    @ivar respond: Fixed completion text, split into word pieces, if set.
    @ivar silent: Whether to skip the per-request log line.
    """

    model: str = "demo"
    startupDelay: float = 0.0
    tokens: int = 8
    tokenDelay: float = 0.0
    respond: str | None = None
    silent: bool = False


class DemoUpstream:
    """
    The state behind the demo resource: options, readiness, identity and the
    log of recent requests.

    @ivar options: The L{DemoOptions}.
    @ivar clock: Time source for readiness, timers and timestamps.
    @ivar pid: The process id to report.
    @ivar grandchildPid: The pid of the forked grandchild, if any, also reported.
    @ivar startedAt: C{clock.seconds()} when this was created.
    @ivar requests: The last L{REQUEST_LOG_SIZE} requests, oldest first.
    """

    def __init__(self, options: DemoOptions, clock: IReactorTime, pid: int) -> None:
        self.options = options
        self.clock = clock
        self.pid = pid
        self.grandchildPid: int | None = None
        self.startedAt = clock.seconds()
        self.requests: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=REQUEST_LOG_SIZE
        )
        self._ids = itertools.count(1)

    def isReady(self) -> bool:
        """
        Whether the simulated model load has finished.
        """
        return self.clock.seconds() - self.startedAt >= self.options.startupDelay

    def identity(self, requestedModel: Any = None) -> dict[str, Any]:
        """
        The C{demo} field of JSON bodies.

        @param requestedModel: The C{model} the request asked for, if any.
        """
        return {
            "pid": self.pid,
            "served_model": self.options.model,
            "requested_model": requestedModel,
            "grandchild_pid": self.grandchildPid,
        }

    def newId(self, prefix: str) -> str:
        """
        A response id unique within this process.

        @param prefix: E.g. C{"chatcmpl-"} or C{"msg_"}.
        """
        return "%sdemo%d-%d" % (prefix, self.pid, next(self._ids))

    def pieces(self, prompt: str, maxTokens: int | None) -> tuple[list[str], bool]:
        """
        Decide what a completion generates.

        @param prompt: The prompt text, which seeds the generated words.
        @param maxTokens: The request's token limit, if any.
        @return: The pieces and whether the limit truncated them.
        """
        if self.options.respond is not None:
            pieces = text.splitText(self.options.respond)
        else:
            pieces = text.generateWords(prompt, self.options.tokens)
        if maxTokens is not None and maxTokens < len(pieces):
            return pieces[:maxTokens], True
        return pieces, False

    def record(self, request: Request, body: bytes, parsed: Any, isJSON: bool) -> None:
        """
        Remember a received request for C{GET /_demo/requests}.

        @param request: The request.
        @param body: Its body.
        @param parsed: Its body parsed as JSON, if C{isJSON}.
        @param isJSON: Whether the body parsed as JSON.
        """
        entry: dict[str, Any] = {
            "method": request.method.decode("latin-1"),
            "path": request.uri.decode("latin-1"),
            "headers": headerPairs(request),
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "time": self.clock.seconds(),
        }
        if isJSON:
            entry["json"] = parsed
        self.requests.append(entry)


class BadRequest(Exception):
    """
    The request can't be served; the message goes into a 400 error envelope.
    """


def headerPairs(request: Request) -> list[list[str]]:
    """
    The request's headers as C{[name, value]} pairs, one per value.

    @param request: The request.
    @return: Names in canonical capitalisation, values decoded as Latin-1.
    """
    return [
        [name.decode("latin-1"), value.decode("latin-1")]
        for name, values in request.requestHeaders.getAllRawHeaders()
        for value in values
    ]


def parseJSON(body: bytes) -> tuple[Any, bool]:
    """
    Parse a body as JSON if it is JSON.

    @param body: The body.
    @return: The value and C{True}, or C{(None, False)} if it isn't JSON.
    """
    if not body.strip():
        return None, False
    try:
        return json.loads(body), True
    except ValueError:
        return None, False


def requireObject(body: bytes) -> dict[str, Any]:
    """
    Parse a body that must be a JSON object.

    @param body: The body.
    @raise BadRequest: If it isn't.
    """
    try:
        value = json.loads(body)
    except ValueError as e:
        raise BadRequest("Invalid JSON in request body: %s" % (e,))
    if not isinstance(value, dict):
        raise BadRequest("Request body must be a JSON object")
    return value


def maxTokens(obj: dict[str, Any]) -> int | None:
    """
    The token limit a completion request sets, if any.

    @param obj: The request body; C{max_tokens}, C{max_completion_tokens} and
        llama.cpp's C{n_predict} are honoured, negative values mean no limit.
    """
    for key in ("max_tokens", "max_completion_tokens", "n_predict"):
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def errorBody(request: Request, code: int, message: str, kind: str) -> bytes:
    """
    Respond with an OpenAI (and llama-server) style error envelope.

    @param request: The request.
    @param code: The HTTP status.
    @param message: The C{error.message}.
    @param kind: The C{error.type}, e.g. C{invalid_request_error}.
    @return: The body to return from C{render}.
    """
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return dumpJSON({"error": {"message": message, "type": kind, "code": code}})


def jsonBody(request: Request, obj: Any) -> bytes:
    """
    Respond 200 with a JSON body.

    @param request: The request.
    @param obj: The body.
    @return: The body to return from C{render}.
    """
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return dumpJSON(obj)


_Handler = Callable[[Request, bytes], "bytes | int"]


class DemoResource(Resource):
    """
    The whole demo API as one leaf resource dispatching on method and path.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, upstream: DemoUpstream) -> None:
        super().__init__()
        self.upstream = upstream
        get, post = frozenset([b"GET"]), frozenset([b"POST"])
        self._routes: dict[bytes, tuple[frozenset[bytes], _Handler]] = {
            b"/health": (get, self._health),
            b"/v1/models": (get, self._models),
            b"/v1/chat/completions": (post, self._chatCompletions),
            b"/v1/completions": (post, self._completions),
            b"/v1/embeddings": (post, self._embeddings),
            b"/v1/messages": (post, self._messages),
            b"/v1/messages/count_tokens": (post, self._countTokens),
        }

    def render(self, request: Request) -> bytes | int:
        """
        Record, log and dispatch one request.

        @param request: The request.
        @return: A body, or C{NOT_DONE_YET} for generations.
        """
        upstream = self.upstream
        startedAt = upstream.clock.seconds()
        body = b""
        if request.content is not None:
            request.content.seek(0)
            body = request.content.read()
        request.setHeader(b"X-Demo-Model", upstream.options.model.encode("utf-8"))
        request.setHeader(b"X-Demo-Pid", b"%d" % (upstream.pid,))
        if upstream.grandchildPid is not None:
            request.setHeader(b"X-Demo-Grandchild-Pid", b"%d" % (upstream.grandchildPid,))
        path = request.path
        parsed, isJSON = parseJSON(body)
        if not path.startswith(b"/_demo/"):
            upstream.record(request, body, parsed, isJSON)
        if not upstream.options.silent:
            request.notifyFinish().addBoth(self._logRequest, request, startedAt)

        if path == b"/_demo/requests":
            return self._demoRequests(request)
        if not upstream.isReady():
            return errorBody(request, 503, "Loading model", "unavailable_error")
        route = self._routes.get(path)
        if route is None:
            return self._echo(request, body, parsed, isJSON)
        methods, handler = route
        method = b"GET" if request.method == b"HEAD" else request.method
        if method not in methods:
            return errorBody(
                request,
                405,
                "Method %s not allowed on %s"
                % (request.method.decode("latin-1"), path.decode("latin-1")),
                "invalid_request_error",
            )
        try:
            return handler(request, body)
        except BadRequest as e:
            return errorBody(request, 400, str(e), "invalid_request_error")

    def _logRequest(self, result: None | Failure, request: Request, startedAt: float) -> None:
        """
        Log one line for a finished (or abandoned) request.
        """
        elapsedMs = (self.upstream.clock.seconds() - startedAt) * 1000.0
        if isinstance(result, Failure):
            self.log.info(
                "{method} {uri} -> client disconnected after {elapsedMs:.1f} ms",
                method=request.method.decode("latin-1"),
                uri=request.uri.decode("latin-1"),
                elapsedMs=elapsedMs,
            )
        else:
            self.log.info(
                "{method} {uri} -> {status} in {elapsedMs:.1f} ms",
                method=request.method.decode("latin-1"),
                uri=request.uri.decode("latin-1"),
                status=request.code,
                elapsedMs=elapsedMs,
            )

    def _identity(self, obj: Any = None) -> dict[str, Any]:
        """
        The C{demo} field, naming the model the request body asked for.
        """
        requested = obj.get("model") if isinstance(obj, dict) else None
        return self.upstream.identity(requested)

    def _demoRequests(self, request: Request) -> bytes:
        """
        C{GET} lists the request log, C{DELETE} clears it.
        """
        if request.method in (b"GET", b"HEAD"):
            return jsonBody(request, list(self.upstream.requests))
        if request.method == b"DELETE":
            cleared = len(self.upstream.requests)
            self.upstream.requests.clear()
            return jsonBody(request, {"cleared": cleared})
        return errorBody(request, 405, "Use GET or DELETE", "invalid_request_error")

    def _health(self, request: Request, body: bytes) -> bytes:
        """
        C{GET /health} once loaded.
        """
        return jsonBody(
            request,
            {"status": "ok", "model": self.upstream.options.model, "demo": self._identity()},
        )

    def _models(self, request: Request, body: bytes) -> bytes:
        """
        C{GET /v1/models}: the one model.
        """
        model = self.upstream.options.model
        entry = {
            "id": model,
            "object": "model",
            "created": int(self.upstream.startedAt),
            "owned_by": "llamaswap-demo",
        }
        return jsonBody(
            request,
            {"object": "list", "data": [entry], "model": model, "demo": self._identity()},
        )

    def _generate(
        self,
        request: Request,
        obj: dict[str, Any],
        prompt: str,
        emitterType: type[BaseEmitter],
        idPrefix: str,
    ) -> int:
        """
        Start a L{Generation} of this request's pieces in C{emitterType}'s format.
        """
        upstream = self.upstream
        pieces, truncated = upstream.pieces(prompt, maxTokens(obj))
        reply = Reply(
            responseId=upstream.newId(idPrefix),
            created=int(upstream.clock.seconds()),
            model=upstream.options.model,
            identity=self._identity(obj),
            promptTokens=text.countTokens(prompt),
            truncated=truncated,
        )
        emitter: Emitter = emitterType(request, reply, obj.get("stream") is True)
        Generation(request, emitter, pieces, upstream.clock, upstream.options.tokenDelay).start()
        return NOT_DONE_YET

    def _chatCompletions(self, request: Request, body: bytes) -> int:
        """
        C{POST /v1/chat/completions}.
        """
        obj = requireObject(body)
        messages = obj.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' is required and must be a non-empty list")
        prompt = text.messagesText(messages)
        return self._generate(request, obj, prompt, OpenAIChatEmitter, "chatcmpl-")

    def _completions(self, request: Request, body: bytes) -> int:
        """
        C{POST /v1/completions}.
        """
        obj = requireObject(body)
        if "prompt" not in obj:
            raise BadRequest("'prompt' is required")
        prompt = text.promptText(obj["prompt"])
        return self._generate(request, obj, prompt, OpenAICompletionEmitter, "cmpl-")

    def _messages(self, request: Request, body: bytes) -> int:
        """
        C{POST /v1/messages} (Anthropic).
        """
        obj = requireObject(body)
        messages = obj.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' is required and must be a non-empty list")
        prompt = text.messagesText(messages, obj.get("system"))
        return self._generate(request, obj, prompt, AnthropicEmitter, "msg_")

    def _countTokens(self, request: Request, body: bytes) -> bytes:
        """
        C{POST /v1/messages/count_tokens} (Anthropic).
        """
        obj = requireObject(body)
        messages = obj.get("messages")
        if not isinstance(messages, list):
            raise BadRequest("'messages' is required and must be a list")
        count = text.countTokens(text.messagesText(messages, obj.get("system")))
        return jsonBody(
            request,
            {
                "input_tokens": count,
                "model": self.upstream.options.model,
                "demo": self._identity(obj),
            },
        )

    def _embeddings(self, request: Request, body: bytes) -> bytes:
        """
        C{POST /v1/embeddings}: deterministic unit vectors.
        """
        obj = requireObject(body)
        inputs = obj.get("input", obj.get("content"))
        if isinstance(inputs, str):
            texts = [inputs]
        elif isinstance(inputs, list) and inputs:
            if all(isinstance(item, int) for item in inputs):
                texts = [text.promptText(inputs)]
            else:
                texts = [text.promptText(item) for item in inputs]
        else:
            raise BadRequest("'input' must be a string or a non-empty list")
        dimensions = obj.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
        if (
            not isinstance(dimensions, int)
            or isinstance(dimensions, bool)
            or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS
        ):
            raise BadRequest(
                "'dimensions' must be an integer from 1 to %d" % (MAX_EMBEDDING_DIMENSIONS,)
            )
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": text.embeddingVector(t, dimensions),
            }
            for index, t in enumerate(texts)
        ]
        tokens = sum(text.countTokens(t) for t in texts)
        return jsonBody(
            request,
            {
                "object": "list",
                "data": data,
                "model": self.upstream.options.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "demo": self._identity(obj),
            },
        )

    def _echo(self, request: Request, body: bytes, parsed: Any, isJSON: bool) -> bytes:
        """
        Any other path: answer with what was received.
        """
        query = request.uri.partition(b"?")[2].decode("latin-1")
        try:
            bodyText, encoding = body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            bodyText, encoding = base64.b64encode(body).decode("ascii"), "base64"
        echo: dict[str, Any] = {
            "method": request.method.decode("latin-1"),
            "path": request.path.decode("latin-1"),
            "query": query,
            "args": parse_qs(query, keep_blank_values=True),
            "headers": headerPairs(request),
            "body": bodyText,
            "body_encoding": encoding,
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "model": self.upstream.options.model,
            "demo": self._identity(parsed),
        }
        if isJSON:
            echo["json"] = parsed
        return jsonBody(request, echo)


class DemoSite(Site):
    """
    A L{Site} without the combined-format access log: L{DemoResource} logs
    its own line per request, which C{--silent} turns off.
    """

    def log(self, request: Request) -> None:
        """
        Write no access-log line.
        """


def makeSite(upstream: DemoUpstream, reactor: IReactorTime, **kwargs: Any) -> Site:
    """
    Build the HTTP factory for the demo upstream.

    Form and multipart bodies are left unparsed so they reach the echo intact.

    @param upstream: The state to serve.
    @param reactor: The reactor (or clock) for the site's timeouts.
    @param kwargs: More L{Site} arguments, e.g. C{timeout=None} in tests.
    """
    site = DemoSite(
        DemoResource(upstream), parsePOSTFormSubmission=False, reactor=reactor, **kwargs
    )
    site.noisy = False
    return site
