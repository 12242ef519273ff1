# -*- test-case-name: test.web.test_mux -*-
"""
The request multiplexer: one table of routes for the whole HTTP surface.

llama-swap's routes are Go 1.22 C{ServeMux} patterns; this reproduces the
parts clients notice: exact and prefix (C{/upstream/{path...}}) routes,
C{405 Method Not Allowed} with an C{Allow} header for a known path with the
wrong method, a plain-text C{404 page not found} for unknown paths, GET
routes answering HEAD, C{OPTIONS} answered as a CORS preflight before
routing and before authentication, and an authentication check for the
routes that need one.

Each route family lives in its own module and adds itself with
C{install(mux, app)}; L{llamaswap.web.site} lists the families.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Union

from attrs import frozen
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

#: A handler gets the request and the rest of the path after a prefix
#: route's prefix (C{b""} for exact routes) and renders like C{render}.
Handler = Callable[[Request, bytes], Union[bytes, int]]
#: An authentication check: C{None} to let the request through, or the
#: rendered refusal.
Authenticator = Callable[[Request], Union[bytes, int, None]]

_TOKEN = re.compile(rb"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
DEFAULT_ALLOW_HEADERS = b"Content-Type, Authorization, Accept, X-Requested-With"


@frozen
class Route:
    """
    One registered route.

    @ivar methods: upper-case method names; GET implies HEAD.
    @ivar path: the exact path, or for prefix routes the prefix ending in
        C{/}.
    @ivar prefix: whether the route matches every path under C{path}.
    @ivar auth: whether the API key check applies.
    """

    methods: frozenset[bytes]
    path: bytes
    handler: Handler
    prefix: bool = False
    auth: bool = True

    def allows(self, method: bytes) -> bool:
        return method in self.methods or (method == b"HEAD" and b"GET" in self.methods)


def preflightAllowHeaders(requested: bytes | None) -> bytes:
    """
    The C{Access-Control-Allow-Headers} value for a preflight: the request's
    C{Access-Control-Request-Headers} without blanks and invalid names, or
    the default list when the request had none.
    """
    if requested is None:
        return DEFAULT_ALLOW_HEADERS
    names = [n.strip() for n in requested.split(b",")]
    return b", ".join(n for n in names if n and _TOKEN.match(n))


class Mux(Resource):
    """
    The root resource: dispatches on the whole path.

    @ivar authenticator: applied to routes registered with C{auth=True};
        L{None} lets everything through.
    """

    isLeaf = True

    def __init__(self, authenticator: Authenticator | None = None) -> None:
        super().__init__()
        self.authenticator = authenticator
        self._exact: dict[bytes, list[Route]] = {}
        self._prefixes: list[Route] = []

    def route(
        self,
        methods: Iterable[str] | str,
        path: str,
        handler: Handler,
        *,
        auth: bool = True,
    ) -> None:
        """
        Register C{handler} for C{path}. A path ending in C{/} (other than
        C{/} itself) is a prefix route matching everything below it.
        """
        if isinstance(methods, str):
            methods = [methods]
        encoded = path.encode("utf-8")
        isPrefix = encoded.endswith(b"/") and encoded != b"/"
        route = Route(
            frozenset(m.upper().encode("ascii") for m in methods),
            encoded,
            handler,
            isPrefix,
            auth,
        )
        if isPrefix:
            self._prefixes.append(route)
            self._prefixes.sort(key=lambda r: len(r.path), reverse=True)
        else:
            self._exact.setdefault(encoded, []).append(route)

    def _candidates(self, path: bytes) -> tuple[list[Route], bytes]:
        exact = self._exact.get(path)
        if exact:
            return exact, b""
        for route in self._prefixes:
            if path.startswith(route.path):
                same = [r for r in self._prefixes if r.path == route.path]
                return same, path[len(route.path) :]
        return [], b""

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        method = request.method
        if method == b"OPTIONS":
            return self._preflight(request)
        path = request.path
        routes, rest = self._candidates(path)
        if not routes:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"404 page not found\n"
        for route in routes:
            if route.allows(method):
                break
        else:
            allowed = sorted({m for r in routes for m in r.methods})
            if b"GET" in allowed:
                allowed.append(b"HEAD")
            request.setResponseCode(405)
            request.setHeader(b"allow", b", ".join(allowed))
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Method Not Allowed\n"
        if route.auth and self.authenticator is not None:
            refusal = self.authenticator(request)
            if refusal is not None:
                return refusal
        return route.handler(request, rest)

    def _preflight(self, request: Request) -> bytes:
        request.setResponseCode(204)
        request.setHeader(b"access-control-allow-origin", b"*")
        request.setHeader(
            b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
        )
        request.setHeader(b"access-control-max-age", b"86400")
        request.setHeader(
            b"access-control-allow-headers",
            preflightAllowHeaders(
                request.getHeader(b"access-control-request-headers")  # type: ignore[arg-type]
            ),
        )
        return b""


__all__ = ["Mux", "Route", "Handler", "NOT_DONE_YET", "preflightAllowHeaders"]
