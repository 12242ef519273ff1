# -*- test-case-name: test.web.test_headers -*-
"""
Header handling for the relay: hop-by-hop filtering (RFC 9110 section 7.6.1)
and the few headers a proxy adds.

Everything here is pure and works on L{twisted.web.http_headers.Headers}; the
cost is proportional to the number of headers, never to a body.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence, Union

from twisted.web.http_headers import Headers

from ..compat import rawHeaderDict

#: Headers that describe one connection rather than the message; never
#: forwarded in either direction.  C{Proxy-*} is matched as a prefix.
HOP_BY_HOP: frozenset[bytes] = frozenset(
    [
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    ]
)

HeaderValue = Union[str, bytes, Sequence[Union[str, bytes]], None]


#: Raw header name to its lower-case form (names repeat on every request;
#: bounded, since clients choose them).
_LOWERED: dict[bytes | str, bytes] = {}
_MAX_LOWERED = 1024


def _lower(name: bytes | str) -> bytes:
    lowered = _LOWERED.get(name)
    if lowered is None:
        lowered = (name.encode("latin-1") if isinstance(name, str) else name).lower()
        if len(_LOWERED) >= _MAX_LOWERED:
            _LOWERED.clear()
        _LOWERED[name] = lowered
    return lowered


def connectionTokens(headers: Headers) -> frozenset[bytes]:
    """
    The header names listed in every C{Connection} header of C{headers},
    lower-cased (C{Connection: close, X-Foo} gives C{{b"close", b"x-foo"}}).
    """
    tokens = set()
    for value in headers.getRawHeaders(b"connection", ()):
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                tokens.add(token)
    return frozenset(tokens)


def isHopByHop(name: bytes | str, named: Iterable[bytes] = ()) -> bool:
    """
    Whether the header C{name} is hop-by-hop: one of L{HOP_BY_HOP}, any
    C{Proxy-*} header, or one of the (lower-case) names in C{named} (the
    tokens of the message's C{Connection} header).
    """
    lower = _lower(name)
    return lower in HOP_BY_HOP or lower.startswith(b"proxy-") or lower in named


def endToEnd(
    headers: Headers, drop: Iterable[bytes | str] = (), into: Headers | None = None
) -> Headers:
    """
    A copy of C{headers} without hop-by-hop headers, without anything named
    in its C{Connection} headers and without the names in C{drop}
    (case-insensitive).  Order and repeated values are preserved.

    @param into: copy into these headers (each copied name replaces its
        values there) instead of new ones.
    @return: the copy (C{into} if given).
    """
    named = connectionTokens(headers) if headers.hasHeader(b"connection") else frozenset()
    if drop:
        named = named | {_lower(d) for d in drop}
    out = Headers() if into is None else into
    # Names and values come from another Headers, already canonical and
    # checked: stored as they are, without setRawHeaders' work per value.
    raw = rawHeaderDict(out) if type(headers) is Headers else None
    setRawHeaders = out.setRawHeaders
    for name, values in headers.getAllRawHeaders():
        lower = _lower(name)
        if lower in HOP_BY_HOP or lower in named or lower.startswith(b"proxy-"):
            continue
        if raw is not None:
            raw[name] = list(values)
        else:
            setRawHeaders(name, values)
    return out


def applyOverrides(headers: Headers, overrides: Mapping[str | bytes, HeaderValue]) -> None:
    """
    Set or remove headers in place: each C{name: value} replaces every value
    of C{name}; a value of L{None} removes the header; a list sets repeated
    values.
    """
    for name, value in overrides.items():
        if isinstance(name, str):
            name = name.encode("latin-1")
        if value is None:
            headers.removeHeader(name)
        elif isinstance(value, (str, bytes)):
            headers.setRawHeaders(name, [value])
        else:
            headers.setRawHeaders(name, list(value))


def appendForwardedFor(headers: Headers, clientHost: str | None) -> None:
    """
    Append C{clientHost} to C{X-Forwarded-For} the way Go's reverse proxy
    does: prior values joined with C{", "}, then the client, in one header.
    """
    if not clientHost:
        return
    prior = headers.getRawHeaders(b"x-forwarded-for", [])
    value = b", ".join(list(prior) + [clientHost.encode("ascii", "replace")])
    headers.setRawHeaders(b"x-forwarded-for", [value])


def finishUpstreamHeaders(
    headers: Headers,
    request: Any,
    forwardedFor: bool,
    extraHeaders: Mapping[str | bytes, HeaderValue] | None,
) -> Headers:
    """
    The last steps of every upstream request's headers (plain and websocket
    alike): the client's address appended to C{X-Forwarded-For} when asked,
    then the configured overrides.

    @param request: the client's request (its C{getClientAddress()}).
    """
    if forwardedFor:
        address = request.getClientAddress()
        appendForwardedFor(headers, getattr(address, "host", None))
    if extraHeaders:
        applyOverrides(headers, extraHeaders)
    return headers


def singleContentLength(headers: Headers) -> int | None:
    """
    The message's length if it carries exactly one well-formed
    C{Content-Length} (repeated identical values count as one) and no
    C{Transfer-Encoding}; L{None} otherwise.
    """
    if headers.hasHeader(b"transfer-encoding"):
        return None
    values = headers.getRawHeaders(b"content-length")
    if not values:
        return None
    parts = {p.strip() for v in values for p in v.split(b",")}
    if len(parts) != 1:
        return None
    (text,) = parts
    if not text.isdigit():
        return None
    return int(text)


def isEventStream(headers: Headers) -> bool:
    """
    Whether the C{Content-Type} of C{headers} is C{text/event-stream}
    (substring match, as llama-swap does).
    """
    return any(
        b"text/event-stream" in v.lower()
        for v in headers.getRawHeaders(b"content-type", ())
    )
