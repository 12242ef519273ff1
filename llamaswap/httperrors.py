# -*- test-case-name: test.web.test_errors -*-
"""
Errors that carry an HTTP status: raised anywhere (routing, peers,
tracking, web), rendered only by L{llamaswap.web.errors}.

The OpenAI-compatible envelope::

    {"src": "llamaswap",
     "error": {"message": "...", "type": "...", "param": null, "code": "..."}}

C{type} and the default C{code} follow from the status (L{errorKind}); an
error may override the code (the 429 of the concurrency limit says
C{concurrency_limit}).
"""

from __future__ import annotations

import json
from typing import Mapping

from twisted.logger import Logger
from twisted.python.failure import Failure

#: The C{src} field of the envelope and the prefix of plain-text errors.
SOURCE = "llamaswap"

_log = Logger()

HeaderMap = Mapping[str, str]

#: status → (type, default code); see L{errorKind} for the fallbacks.
STATUS_KINDS: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthorized"),
    403: ("authentication_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}


def errorKind(status: int) -> tuple[str, str]:
    """
    The envelope's C{(type, code)} for C{status}: the table in
    L{STATUS_KINDS}, else C{invalid_request_error}/C{invalid_request} for
    other 4xx and C{server_error}/C{internal_error} for everything else.
    """
    kind = STATUS_KINDS.get(status)
    if kind is not None:
        return kind
    if 400 <= status < 500:
        return ("invalid_request_error", "invalid_request")
    return ("server_error", "internal_error")


def envelope(status: int, message: str, code: str | None = None) -> dict[str, object]:
    """
    The error envelope for C{status} and C{message} as a JSON-ready dict.
    """
    errType, defaultCode = errorKind(status)
    error: dict[str, object] = {
        "message": message,
        "type": errType,
        "param": None,
    }
    chosen = code if code is not None else defaultCode
    if chosen:
        error["code"] = chosen
    return {"src": SOURCE, "error": error}


def envelopeBytes(status: int, message: str, code: str | None = None) -> bytes:
    """
    L{envelope} serialised as compact UTF-8 JSON.
    """
    return json.dumps(
        envelope(status, message, code), ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


class HTTPError(Exception):
    """
    An error with an HTTP status that llamaswap answers itself.

    Subclasses set L{status} (and may set L{code}, L{headers},
    L{verbatim}); C{str(error)} is the message.

    @ivar status: the HTTP status code.
    @ivar code: the envelope code, or L{None} for the status default.
    @ivar headers: extra response headers.
    @ivar verbatim: always answered as JSON, whatever the client accepts.
    """

    status: int = 500
    code: str | None = None
    verbatim: bool = False
    defaultMessage: str = "unspecific error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        headers: HeaderMap | None = None,
    ) -> None:
        if message is None:
            message = self.defaultMessage
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(self.defaultHeaders())
        self.headers.update(headers or {})

    def defaultHeaders(self) -> HeaderMap:
        """
        Headers every instance of this class carries.
        """
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r})"


class BadRequest(HTTPError):
    """400: the request cannot be served as sent."""

    status = 400


class Unauthorized(HTTPError):
    """401: missing or wrong API key; carries C{WWW-Authenticate}."""

    status = 401
    defaultMessage = "unauthorized: invalid or missing API key"

    def defaultHeaders(self) -> HeaderMap:
        return {"WWW-Authenticate": f'Basic realm="{SOURCE}"'}


class Forbidden(HTTPError):
    """403."""

    status = 403


class NotFound(HTTPError):
    """404: no such thing."""

    status = 404


class ModelNotFound(NotFound):
    """404: no model could be identified, or no server knows the model."""

    defaultMessage = "no model id could be identified"


class Conflict(HTTPError):
    """409: e.g. a path that may not start an unloaded model."""

    status = 409


class PayloadTooLarge(HTTPError):
    """413: the request body is over the configured limit."""

    status = 413


class TooManyRequests(HTTPError):
    """
    429: the model's concurrency limit is reached.  Always JSON, with
    C{Retry-After}.
    """

    status = 429
    code = "concurrency_limit"
    verbatim = True
    defaultMessage = "Too many requests"

    def __init__(
        self,
        message: str | None = None,
        *,
        retryAfter: int = 1,
        code: str | None = None,
        headers: HeaderMap | None = None,
    ) -> None:
        self.retryAfter = retryAfter
        super().__init__(message, code=code, headers=headers)

    def defaultHeaders(self) -> HeaderMap:
        return {"Retry-After": str(self.retryAfter)}


class InternalError(HTTPError):
    """500: llama-swap's "unspecific error" (model failed to start, ...)."""

    status = 500


class BadGateway(HTTPError):
    """502: the upstream could not be reached or broke before answering."""

    status = 502


class UpstreamUnavailable(HTTPError):
    """503: the upstream is not ready (C{[model] process is not ready})."""

    status = 503


class UpstreamTimeout(HTTPError):
    """504: the upstream did not answer in time."""

    status = 504


def describeFailure(failure: Failure, *, typeNames: bool = True) -> str:
    """
    A short reason for a connection-level failure, listing the reasons
    inside Twisted's wrapper exceptions (C{ResponseNeverReceived} and
    friends carry them in C{reasons}):
    C{ResponseNeverReceived: ConnectionLost: Connection lost.}, or, without
    C{typeNames}, C{Connection lost.} (an exception without a message is
    named by its class either way).
    """
    exc = failure.value
    name = type(exc).__name__
    reasons = getattr(exc, "reasons", None)
    if isinstance(reasons, (list, tuple)) and reasons:
        inner = "; ".join(describeFailure(r, typeNames=typeNames) for r in reasons)
        return f"{name}: {inner}" if typeNames else inner
    text = str(exc).strip()
    if not text:
        return name
    return f"{name}: {text}" if typeNames else text


def connectionError(
    failure: Failure,
    prefix: str = "upstream connection error",
    *,
    typeNames: bool = True,
) -> BadGateway:
    """
    The 502 for an upstream that could not be reached or broke before
    answering: C{<prefix>: <reason>} (L{describeFailure}).  The one wording
    of such failures for the relay, the tunnel, the peer proxy
    (C{peer proxy error}, without type names, like llama-swap) and the
    activity log.
    """
    return BadGateway(f"{prefix}: {describeFailure(failure, typeNames=typeNames)}")


def errorFromFailure(failure: Failure | BaseException) -> HTTPError:
    """
    The L{HTTPError} to answer with for C{failure}: itself if it is one,
    otherwise a 500 C{unspecific error: ...} (logged, since it is a bug or an
    unexpected condition).
    """
    exc = failure.value if isinstance(failure, Failure) else failure
    if isinstance(exc, HTTPError):
        return exc
    _log.failure(
        "unexpected error answered as 500",
        failure=failure if isinstance(failure, Failure) else Failure(exc),
    )
    return InternalError(f"unspecific error: {exc}")
