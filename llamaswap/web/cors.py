# -*- test-case-name: test.web.test_guard -*-
"""
The configured CORS policy (C{security.cors}, as llama-swap #1146).

Without C{security.cors} llama-swap's behaviour stays (every preflight
allowed from any origin, C{/v1/models} echoes the origin, upstream CORS
headers passed through).  With it:

 - CORS headers are sent only to requests with an C{Origin};
 - a preflight from an allowed origin is answered 204 with the configured
   methods, headers (or the requested ones), max age, credentials and,
   when asked for and allowed, C{Access-Control-Allow-Private-Network};
 - a request (preflight or not) from an origin not allowed is refused
   with 403 before it reaches a route: a browser form cannot make a
   foreign page's POST run a model; same-origin requests (the UI) always
   pass;
 - every response carries only llamaswap's CORS headers: the upstream's
   own are removed.
"""

from __future__ import annotations

from twisted.web.http_headers import Headers
from twisted.web.server import Request

from ..config.limits import CorsConfig
from .hostcheck import hostName
from .mux import firstHeader, preflightAllowHeaders


def originHost(origin: bytes) -> str | None:
    """
    The host (and port) part of an C{Origin} value.
    """
    text = origin.decode("latin-1").strip()
    _, sep, rest = text.partition("://")
    return rest.lower() if sep else None


def isSameOrigin(request: Request, origin: bytes) -> bool:
    """
    Whether C{origin} is llamaswap's own (the C{Host} the request was sent
    to).
    """
    host = firstHeader(request, b"host")
    return host is not None and originHost(origin) == host.decode("latin-1").strip().lower()


def originAllowed(policy: CorsConfig, request: Request, origin: bytes) -> bool:
    return isSameOrigin(request, origin) or policy.allows(origin.decode("latin-1").strip())


def stripCorsHeaders(headers: Headers) -> None:
    """
    Remove every C{Access-Control-*} header (an upstream's own policy).
    """
    for name, _ in list(headers.getAllRawHeaders()):
        if name.lower().startswith(b"access-control-"):
            headers.removeHeader(name)


def responseHeaders(policy: CorsConfig, origin: bytes) -> list[tuple[bytes, bytes]]:
    """
    The CORS headers of an actual response to an allowed C{origin}.
    """
    wildcard = "*" in policy.allowedOrigins and not policy.allowCredentials
    headers = [(b"access-control-allow-origin", b"*" if wildcard else origin)]
    if not wildcard:
        headers.append((b"vary", b"Origin"))
    if policy.allowCredentials:
        headers.append((b"access-control-allow-credentials", b"true"))
    if policy.exposedHeaders:
        headers.append(
            (b"access-control-expose-headers", ", ".join(policy.exposedHeaders).encode())
        )
    return headers


def answerPreflight(policy: CorsConfig, request: Request, origin: bytes) -> bytes:
    """
    Answer a preflight from an allowed C{origin}.
    """
    request.setResponseCode(204)
    for name, value in responseHeaders(policy, origin):
        request.responseHeaders.addRawHeader(name, value)
    request.setHeader(
        b"access-control-allow-methods", ", ".join(policy.allowedMethods).encode()
    )
    if policy.allowedHeaders:
        allowHeaders = ", ".join(policy.allowedHeaders).encode()
    else:
        allowHeaders = preflightAllowHeaders(
            firstHeader(request, b"access-control-request-headers")
        )
    request.setHeader(b"access-control-allow-headers", allowHeaders)
    request.setHeader(b"access-control-max-age", str(policy.maxAge).encode())
    asked = firstHeader(request, b"access-control-request-private-network")
    if policy.allowPrivateNetwork and asked is not None and asked.lower() == b"true":
        request.setHeader(b"access-control-allow-private-network", b"true")
    return b""


__all__ = [
    "answerPreflight",
    "hostName",
    "isSameOrigin",
    "originAllowed",
    "responseHeaders",
    "stripCorsHeaders",
]
