# -*- test-case-name: test.web.test_extract -*-
"""
Which model a request names, and where it names it.

llama-swap's rules (HTTP behaviour §3.1):

 - C{GET} (and C{HEAD}): the C{model} query parameter;
 - a body whose C{Content-Type} contains C{application/json}: the
   top-level C{model} (a number is taken as its text); invalid JSON or no
   model means no model;
 - C{multipart/form-data}: the first plain C{model} field wherever it is in
   the form, else the C{model} query parameter; a malformed form means no
   model;
 - anything else: the C{model} field of a C{application/x-www-form-urlencoded}
   body, else the C{model} query parameter.

The result records the place (L{Extracted.source}) so that a rewrite
(profile pin, selector, peer name, C{useModelName}) changes the model exactly
where the client put it, and keeps what was read so that nothing is read
twice.
"""

from __future__ import annotations

import json
from typing import IO, Any
from urllib.parse import unquote_plus

from attrs import frozen
from twisted.web.server import Request

from .. import safejson
from ..httperrors import PayloadTooLarge
from .multipart import MultipartError, MultipartForm, boundaryOf, parseForm

#: The model was the C{model} query parameter.
QUERY = "query"
#: The model was the top-level C{model} of a JSON body.
JSON = "json"
#: The model was a field of a C{multipart/form-data} body.
MULTIPART = "multipart"
#: The model was a field of a C{application/x-www-form-urlencoded} body.
FORM = "form"


@frozen
class Extracted:
    """
    What a request asks for.

    @ivar model: the model name as sent; C{""} when none could be found.
    @ivar source: where it was found: L{QUERY}, L{JSON}, L{MULTIPART} or
        L{FORM} (meaningless when C{model} is empty).
    @ivar stream: whether a streamed response was asked for.
    @ivar json: the parsed body, when it is a JSON object.
    @ivar form: where the parts of a multipart body are.
    @ivar raw: the body bytes, when they were read (JSON, urlencoded).
    """

    model: str
    source: str = QUERY
    stream: bool = False
    json: dict[str, Any] | None = None
    form: MultipartForm | None = None
    raw: bytes | None = None


def bodySize(request: Request) -> int:
    """
    The size of the body twisted.web buffered for C{request}.
    """
    content = request.content
    if content is None or content.closed:
        return 0
    return int(content.seek(0, 2))


def checkBodySize(request: Request, limit: int) -> int:
    """
    The body's size, refusing bodies over C{limit} bytes.

    @raise PayloadTooLarge: the body is larger than C{limit}.
    """
    size = bodySize(request)
    if size > limit:
        raise PayloadTooLarge(
            f"request body of {size} bytes exceeds the limit of {limit} bytes"
        )
    return size


def readBody(request: Request, limit: int) -> bytes:
    """
    The request body, refusing bodies over C{limit} bytes with a 413.  The
    file position is left at the start for the relay.
    """
    checkBodySize(request, limit)
    content = request.content
    if content is None or content.closed:
        return b""
    content.seek(0)
    data = content.read()
    content.seek(0)
    return bytes(data)


def queryValue(query: bytes, name: str) -> str | None:
    """
    The first value of C{name} in a URL-encoded C{query} (or form body).
    """
    for pair in query.split(b"&"):
        if not pair:
            continue
        key, _, value = pair.partition(b"=")
        if _unquote(key) == name:
            return _unquote(value)
    return None


def _unquote(encoded: bytes) -> str:
    return unquote_plus(encoded.decode("utf-8", "replace"), errors="replace")


def _query(request: Request) -> bytes:
    return request.uri.partition(b"?")[2]


def _fromQuery(request: Request) -> Extracted:
    query = _query(request)
    return Extracted(
        queryValue(query, "model") or "", QUERY, queryValue(query, "stream") == "true"
    )


def _fromJSON(request: Request, limit: int) -> Extracted:
    raw = readBody(request, limit)
    try:
        parsed = safejson.loads(raw)
    except safejson.JSONError:
        return Extracted("", JSON, raw=raw)
    if not isinstance(parsed, dict):
        return Extracted("", JSON, raw=raw)
    model = parsed.get("model")
    if isinstance(model, (int, float)) and not isinstance(model, bool):
        model = json.dumps(model)
    return Extracted(
        model if isinstance(model, str) else "",
        JSON,
        bool(parsed.get("stream")),
        parsed,
        raw=raw,
    )


def _fromMultipart(request: Request, boundary: bytes, limit: int) -> Extracted:
    size = checkBodySize(request, limit)
    content: IO[bytes] | None = request.content
    if content is None:
        return Extracted("")
    try:
        form = parseForm(content, boundary, size)
        model = form.value(content, "model")
        stream = form.value(content, "stream")
    except MultipartError:
        return Extracted("", MULTIPART)
    finally:
        content.seek(0)
    return _orFromQuery(request, model, stream, MULTIPART, form=form)


def _fromForm(request: Request, limit: int) -> Extracted:
    raw = readBody(request, limit)
    model = queryValue(raw, "model")
    stream = queryValue(raw, "stream")
    return _orFromQuery(request, model, stream, FORM, raw=raw)


def _orFromQuery(
    request: Request, model: str | None, stream: str | None, source: str, **body: Any
) -> Extracted:
    """
    The body's C{model} and C{stream} (found in C{source}), or the query
    string's where the body has none; C{body} keeps what was parsed.
    """
    query = _query(request)
    if stream is None:
        stream = queryValue(query, "stream")
    streaming = stream == "true"
    if model:
        return Extracted(model, source, streaming, **body)
    return Extracted(queryValue(query, "model") or "", QUERY, streaming, **body)


def extract(request: Request, limit: int) -> Extracted:
    """
    Find the model C{request} asks for; see the module docstring.

    @param limit: the largest body accepted.
    @raise PayloadTooLarge: the body is larger than C{limit}.
    """
    if request.method in (b"GET", b"HEAD"):
        return _fromQuery(request)
    contentType = request.getHeader(b"content-type") or b""
    lowered = contentType.lower()
    if b"application/json" in lowered:
        return _fromJSON(request, limit)
    if b"multipart/form-data" in lowered:
        boundary = boundaryOf(contentType)
        if boundary is None:
            checkBodySize(request, limit)
            return Extracted("", MULTIPART)
        return _fromMultipart(request, boundary, limit)
    if lowered.split(b";")[0].strip() == b"application/x-www-form-urlencoded":
        return _fromForm(request, limit)
    checkBodySize(request, limit)
    return _fromQuery(request)


__all__ = [
    "FORM",
    "JSON",
    "MULTIPART",
    "QUERY",
    "Extracted",
    "bodySize",
    "checkBodySize",
    "extract",
    "queryValue",
    "readBody",
]
