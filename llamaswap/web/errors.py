# -*- test-case-name: test.web.test_errors -*-
"""
Errors that llamaswap itself answers with: the OpenAI-compatible envelope,
its status table and its content negotiation (llama-swap's HTTP behaviour,
section 6).

The envelope::

    {"src": "llamaswap",
     "error": {"message": "...", "type": "...", "param": null, "code": "..."}}

C{type} and the default C{code} follow from the status (L{errorKind}); a
producer may override the code (the 429 of the concurrency limit says
C{concurrency_limit}).

Negotiation (L{negotiate}): an C{Accept} containing C{text/plain} (checked
first) gets C{llamaswap: <message>} as plain text, one containing
C{text/html} a tiny HTML page, anything else the JSON envelope.  Errors that
carry a complete response of their own (the 429) are always JSON.

Code raises the exception classes below; the resource tree turns them into
responses with L{writeError}/L{HTTPError.writeTo} (asynchronous paths) or
L{renderError} (a C{render_*} method returning bytes).
"""

from __future__ import annotations

import html
import json
from typing import Mapping

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

#: The C{src} field of the envelope and the prefix of plain-text errors.
SOURCE = "llamaswap"

_log = Logger()

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


def negotiate(
    accept: bytes | str | None, status: int, message: str, code: str | None = None
) -> tuple[bytes, bytes]:
    """
    Choose the representation of an error for a client sending C{Accept:
    accept}.

    @return: C{(content type, body)}.
    """
    if isinstance(accept, bytes):
        accept = accept.decode("latin-1")
    accept = (accept or "").lower()
    if "text/plain" in accept:
        return (
            b"text/plain; charset=utf-8",
            f"{SOURCE}: {message}".encode("utf-8"),
        )
    if "text/html" in accept:
        page = (
            f"<html><body><h1>{SOURCE}</h1>"
            f"<p>{html.escape(message)}</p></body></html>"
        )
        return (b"text/html; charset=utf-8", page.encode("utf-8"))
    return (b"application/json", envelopeBytes(status, message, code))


HeaderMap = Mapping[str, str]


def _prepare(
    request: Request,
    status: int,
    message: str,
    code: str | None,
    headers: HeaderMap | None,
    verbatim: bool,
) -> bytes:
    if verbatim:
        contentType, body = b"application/json", envelopeBytes(status, message, code)
    else:
        contentType, body = negotiate(
            request.getHeader(b"accept"), status, message, code
        )
    request.setResponseCode(status)
    request.responseHeaders.setRawHeaders(b"content-type", [contentType])
    request.responseHeaders.setRawHeaders(
        b"content-length", [b"%d" % (len(body),)]
    )
    for name, value in (headers or {}).items():
        request.responseHeaders.setRawHeaders(name, [value])
    return body


def writeError(
    request: Request,
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: HeaderMap | None = None,
    verbatim: bool = False,
) -> bool:
    """
    Answer C{request} with an error and finish it.

    Safe to call in any state: if the client has gone or the request is
    already finished, nothing happens; if the response has already started
    (status and headers sent, e.g. a loading-state stream), the JSON
    envelope is appended to the body and the request finished, as
    llama-swap does.

    @param code: overrides the envelope's default code for C{status}.
    @param headers: extra response headers (e.g. C{Retry-After}).
    @param verbatim: always JSON, whatever the client accepts.
    @return: whether anything was written.
    """
    if getattr(request, "_disconnected", False) or request.finished:
        return False
    if request.startedWriting:
        body = envelopeBytes(status, message, code)
    else:
        body = _prepare(request, status, message, code, headers, verbatim)
    if request.producer is not None:
        request.unregisterProducer()
    request.write(body)
    request.finish()
    return True


def renderError(
    request: Request,
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: HeaderMap | None = None,
    verbatim: bool = False,
) -> bytes:
    """
    Set the status and headers of an error on C{request} and return its body,
    for a C{render_*} method to return.
    """
    return _prepare(request, status, message, code, headers, verbatim)


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

    def writeTo(self, request: Request) -> bool:
        """
        L{writeError} this error to C{request}.
        """
        return writeError(
            request,
            self.status,
            self.message,
            code=self.code,
            headers=self.headers,
            verbatim=self.verbatim,
        )

    def render(self, request: Request) -> bytes:
        """
        L{renderError} this error: set status and headers, return the body.
        """
        return renderError(
            request,
            self.status,
            self.message,
            code=self.code,
            headers=self.headers,
            verbatim=self.verbatim,
        )

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


def writeFailure(request: Request, failure: Failure | BaseException) -> bool:
    """
    Answer C{request} with L{errorFromFailure}C{(failure)}; suitable as an
    errback at the end of a request's Deferred chain.
    """
    return errorFromFailure(failure).writeTo(request)


__all__ = [
    "SOURCE",
    "STATUS_KINDS",
    "errorKind",
    "envelope",
    "envelopeBytes",
    "negotiate",
    "writeError",
    "renderError",
    "writeFailure",
    "errorFromFailure",
    "HTTPError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "ModelNotFound",
    "Conflict",
    "PayloadTooLarge",
    "TooManyRequests",
    "InternalError",
    "BadGateway",
    "UpstreamUnavailable",
    "UpstreamTimeout",
]
