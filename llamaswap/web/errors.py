# -*- test-case-name: test.web.test_errors -*-
"""
Rendering of L{llamaswap.httperrors}: content negotiation and writing an
error to a request (llama-swap's HTTP behaviour, section 6).

Negotiation (L{negotiate}): an C{Accept} containing C{text/plain} (checked
first) gets C{llamaswap: <message>} as plain text, one containing
C{text/html} a tiny HTML page, anything else the JSON envelope.  Errors that
carry a complete response of their own (the 429) are always JSON.

Asynchronous paths answer with L{writeHTTPError}/L{writeFailure}; a
C{render_*} method returns L{renderHTTPError}.
"""

from __future__ import annotations

import html

from twisted.python.failure import Failure
from twisted.web.server import Request

from ..compat import isDisconnected
from ..httperrors import SOURCE, HeaderMap, HTTPError, envelopeBytes, errorFromFailure


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
    if isDisconnected(request) or request.finished:
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


def writeHTTPError(request: Request, error: HTTPError) -> bool:
    """
    L{writeError} C{error} to C{request}.
    """
    return writeError(
        request,
        error.status,
        error.message,
        code=error.code,
        headers=error.headers,
        verbatim=error.verbatim,
    )


def renderHTTPError(request: Request, error: HTTPError) -> bytes:
    """
    Set the status and headers of C{error} on C{request} and return its
    body, for a C{render_*} method to return.
    """
    return _prepare(
        request, error.status, error.message, error.code, error.headers, error.verbatim
    )


def writeFailure(request: Request, failure: Failure | BaseException) -> bool:
    """
    Answer C{request} with L{errorFromFailure}C{(failure)}; suitable as an
    errback at the end of a request's Deferred chain.
    """
    return writeHTTPError(request, errorFromFailure(failure))
