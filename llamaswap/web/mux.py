# -*- test-case-name: test.web.test_mux -*-
"""
The request multiplexer: one table of routes for the whole HTTP surface.

llama-swap's routes are Go 1.22 C{ServeMux} patterns; this reproduces the
parts clients notice:

 - exact routes and prefix routes (C{/upstream/{path...}}, registered as
   C{/upstream/}); paths are matched segment by segment on their
   percent-decoded form, so C{/v1/model%73} is C{/v1/models} while an
   escaped C{%2F} stays inside its segment;
 - the most specific route that accepts the method wins: exact routes
   before prefix routes, longer prefixes before shorter ones;
 - non-canonical paths (C{//}, C{/./}, C{/../}) are answered with
   C{301 Moved Permanently} to the cleaned path (query kept), and a path
   whose C{/}-terminated form is exactly the root of a prefix route is
   redirected there (C{/ui} to C{/ui/});
 - C{405 Method Not Allowed} with an C{Allow} header for a known path with
   the wrong method, a plain-text C{404 page not found} for unknown paths;
 - GET routes answer HEAD (without a body);
 - C{OPTIONS} is answered as a CORS preflight before routing and before
   authentication;
 - the authentication check runs only after a route was found, so the
   mux's own 301/404/405 answers never need a key.

Each route family lives in its own module and adds itself with
C{install(mux, app)}; L{llamaswap.web.site} lists the families.
"""

from __future__ import annotations

import html
import re
from typing import Callable, Iterable, Iterator, Union
from urllib.parse import unquote_to_bytes

from attrs import frozen
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ..httperrors import InternalError
from .errors import renderHTTPError

#: A handler gets the request and the rest of the path after a prefix
#: route's prefix (C{b""} for exact routes) and renders like C{render}.
#: The rest is the client's raw (still percent-encoded) text, so a relay
#: can forward it byte for byte; L{decodePath} gives Go's decoded value.
Handler = Callable[[Request, bytes], Union[bytes, int]]
#: An authentication check given the request and the scope its route
#: needs: C{None} to let the request through, or the rendered refusal.
Authenticator = Callable[[Request, str], Union[bytes, int, None]]

#: The scopes a route may need (see L{llamaswap.web.grants}); a route
#: registered without one needs C{admin}, so a new route is never more
#: open than intended.
INFERENCE = "inference"
MONITOR = "monitor"
ADMIN = "admin"

_log = Logger()

#: Stands for every method in L{Mux.route}.
ANY_METHOD = "*"

_ANY = b"*"
_TOKEN = re.compile(rb"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
DEFAULT_ALLOW_HEADERS = b"Content-Type, Authorization, Accept, X-Requested-With"
_REASONS = {301: "Moved Permanently", 302: "Found", 307: "Temporary Redirect",
            308: "Permanent Redirect"}


@frozen
class Route:
    """
    One registered route.

    @ivar methods: upper-case method names (C{b"*"}: any); GET implies
        HEAD.
    @ivar path: the exact path, or for prefix routes the prefix ending in
        C{/}.
    @ivar prefix: whether the route matches every path under C{path}.
    @ivar auth: whether the API key check applies.
    @ivar scope: the scope a key needs (L{INFERENCE}, L{MONITOR},
        L{ADMIN}).
    """

    methods: frozenset[bytes]
    path: bytes
    handler: Handler
    prefix: bool = False
    auth: bool = True
    scope: str = ADMIN

    def allows(self, method: bytes) -> bool:
        """
        Whether the route serves C{method}.
        """
        return (
            _ANY in self.methods
            or method in self.methods
            or (method == b"HEAD" and b"GET" in self.methods)
        )


def preflightAllowHeaders(requested: bytes | None) -> bytes:
    """
    The C{Access-Control-Allow-Headers} value for a preflight: the request's
    C{Access-Control-Request-Headers} without blanks and invalid names
    (L{sanitizeRequestHeaders}), or the default list when the request had
    none or an empty one (as llama-swap, which tests for an empty value).
    """
    if not requested:
        return DEFAULT_ALLOW_HEADERS
    return sanitizeRequestHeaders(requested)


def sanitizeRequestHeaders(requested: bytes) -> bytes:
    """
    C{requested} split on commas, each name trimmed, blank names and names
    with characters outside the HTTP token set dropped, re-joined with
    C{", "} (possibly empty).
    """
    names = [n.strip() for n in requested.split(b",")]
    return b", ".join(n for n in names if n and _TOKEN.match(n))


def cleanPath(path: bytes) -> bytes:
    """
    Go's C{ServeMux} path canonicalisation, applied to the escaped path:
    rooted, repeated slashes collapsed, C{.} and C{..} segments resolved
    (never above the root), a trailing slash kept.
    """
    if not path:
        return b"/"
    if not path.startswith(b"/"):
        path = b"/" + path
    elif b"//" not in path and b"/." not in path:
        return path
    kept: list[bytes] = []
    for segment in path.split(b"/"):
        if segment in (b"", b"."):
            continue
        if segment == b"..":
            if kept:
                kept.pop()
            continue
        kept.append(segment)
    cleaned = b"/" + b"/".join(kept)
    if path.endswith(b"/") and cleaned != b"/":
        cleaned += b"/"
    return cleaned


def decodePath(raw: bytes) -> str:
    """
    The percent-decoded text of a raw path (or path remainder), as Go's
    C{{name...}} wildcards deliver it; invalid UTF-8 is replaced.
    """
    return unquote_to_bytes(raw).decode("utf-8", "replace")


def _segments(path: bytes) -> tuple[bytes, ...]:
    raw = path[1:].split(b"/")
    if b"%" not in path:
        return tuple(raw)
    return tuple(unquote_to_bytes(s) if b"%" in s else s for s in raw)


def requestPath(request: Request) -> bytes:
    """
    The raw path of C{request}; an absolute-form target
    (C{GET http://host/path}) is reduced to its path.
    """
    path: bytes = request.path
    if not path.startswith(b"/"):
        scheme, sep, rest = path.partition(b"://")
        if sep and scheme.lower() in (b"http", b"https"):
            path = b"/" + rest.partition(b"/")[2]
    return path


def firstHeader(request: Request, name: bytes) -> bytes | None:
    """
    The first value of header C{name}, as Go's C{Header.Get} reads it
    (twisted's C{getHeader} gives the last).
    """
    values = request.requestHeaders.getRawHeaders(name)
    return values[0] if values else None


def rawQuery(request: Request) -> bytes:
    """
    The raw query string of C{request} (without C{?}), C{b""} if none.
    """
    return request.uri.partition(b"?")[2]


def redirect(request: Request, location: bytes | str, code: int = 302) -> bytes:
    """
    Answer C{request} with a redirect to C{location}, the way Go's
    C{http.Redirect} does: a GET gets a tiny HTML body with the link.

    @return: the body, for a handler to return.
    """
    if isinstance(location, str):
        location = location.encode("utf-8")
    request.setResponseCode(code)
    request.setHeader(b"location", location)
    if request.method not in (b"GET", b"HEAD"):
        return b""
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    if request.method == b"HEAD":
        return b""
    link = html.escape(location.decode("utf-8", "replace"))
    return f'<a href="{link}">{_REASONS.get(code, "Redirect")}</a>.\n\n'.encode("utf-8")


def _withQuery(path: bytes, query: bytes) -> bytes:
    return path + b"?" + query if query else path


def _plainError(request: Request, code: int, body: bytes) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"x-content-type-options", b"nosniff")
    return body


class Mux(Resource):
    """
    The root resource: dispatches on the whole path.

    @ivar authenticator: applied to routes registered with C{auth=True};
        L{None} lets everything through.
    @ivar settle: called before a route other than an inference route
        runs, so that what it reads includes the bookkeeping that waited
        for a quiet moment (L{llamaswap.backlog.Backlog.settle}).
    """

    isLeaf = True

    def __init__(
        self,
        authenticator: Authenticator | None = None,
        settle: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self.authenticator = authenticator
        self.settle = settle
        self._exact: dict[tuple[bytes, ...], list[Route]] = {}
        self._prefixes: list[tuple[tuple[bytes, ...], Route]] = []
        self._order: list[Route] = []

    def route(
        self,
        methods: Iterable[str] | str,
        path: str,
        handler: Handler,
        *,
        auth: bool = True,
        scope: str = ADMIN,
    ) -> None:
        """
        Register C{handler} for C{path}. A path ending in C{/} (other than
        C{/} itself) is a prefix route matching everything below it.

        @param methods: method names; L{ANY_METHOD} (C{"*"}) for all.
        @param auth: whether the API key check applies.
        @param scope: the scope a key needs for this route.
        """
        if isinstance(methods, str):
            methods = [methods]
        encoded = path.encode("utf-8")
        if not encoded.startswith(b"/"):
            raise ValueError(f"route path must start with /: {path!r}")
        isPrefix = encoded.endswith(b"/") and encoded != b"/"
        route = Route(
            frozenset(m.upper().encode("ascii") for m in methods),
            encoded,
            handler,
            isPrefix,
            auth,
            scope,
        )
        self._order.append(route)
        segments = _segments(encoded)
        if isPrefix:
            self._prefixes.append((segments[:-1], route))
            # Stable: equally long prefixes keep registration order.
            self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        else:
            self._exact.setdefault(segments, []).append(route)

    def routes(self) -> list[Route]:
        """
        Every registered route, in registration order (for tests and
        documentation).
        """
        return list(self._order)

    def match(self, path: bytes) -> list[tuple[Route, bytes]]:
        """
        The routes whose path matches the raw C{path}, most specific
        first, each with the raw rest of the path after its prefix.
        """
        return list(self._matches(path))

    def _matches(self, path: bytes) -> Iterator[tuple[Route, bytes]]:
        segments = _segments(path)
        for route in self._exact.get(segments, ()):
            yield route, b""
        raw: list[bytes] | None = None
        for root, route in self._prefixes:
            n = len(root)
            if len(segments) > n and segments[:n] == root:
                if raw is None:
                    raw = path[1:].split(b"/")
                yield route, b"/".join(raw[n:])

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        method = request.method
        if method == b"OPTIONS":
            return self._preflight(request)
        path = requestPath(request)
        cleaned = cleanPath(path)
        if cleaned != path:
            return redirect(request, _withQuery(cleaned, rawQuery(request)), 301)
        chosen = next(
            ((r, rest) for r, rest in self._matches(path) if r.allows(method)), None
        )
        exact = chosen is not None and (not chosen[0].prefix or chosen[1] == b"")
        slashed: list[tuple[Route, bytes]] = []
        if not exact and not path.endswith(b"/"):
            slashed = self.match(path + b"/")
            if any(r.prefix and rest == b"" and r.allows(method) for r, rest in slashed):
                return redirect(request, _withQuery(path + b"/", rawQuery(request)), 301)
        if chosen is None:
            return self._refuse(request, self.match(path) + slashed)
        route, rest = chosen
        result = None
        if route.auth and self.authenticator is not None:
            result = self.authenticator(request, route.scope)
        if result is None:
            if self.settle is not None and route.scope != INFERENCE:
                self.settle()
            try:
                result = route.handler(request, rest)
            except Exception:
                # A handler's bug is a 500 envelope and one log entry, never
                # twisted.web's HTML traceback page.
                _log.failure("unhandled error in {path!r}", path=path)
                return renderHTTPError(request, InternalError("internal error"))
        if method == b"HEAD" and isinstance(result, bytes):
            # A HEAD answer carries the GET's length but no body (and
            # twisted.web would log every swallowed body).
            if not request.responseHeaders.hasHeader(b"content-length"):
                request.setHeader(b"content-length", b"%d" % (len(result),))
            return b""
        return result

    def _refuse(self, request: Request, matches: list[tuple[Route, bytes]]) -> bytes:
        """
        404 for an unknown path, 405 with C{Allow} for a known one.
        """
        if not matches:
            return _plainError(request, 404, b"404 page not found\n")
        allowed = {m for r, _ in matches for m in r.methods}
        if b"GET" in allowed:
            allowed.add(b"HEAD")
        request.setHeader(b"allow", b", ".join(sorted(allowed)))
        return _plainError(request, 405, b"Method Not Allowed\n")

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
                firstHeader(request, b"access-control-request-headers")
            ),
        )
        return b""


__all__ = [
    "ADMIN",
    "ANY_METHOD",
    "INFERENCE",
    "MONITOR",
    "Mux",
    "Route",
    "Handler",
    "Authenticator",
    "NOT_DONE_YET",
    "cleanPath",
    "decodePath",
    "firstHeader",
    "preflightAllowHeaders",
    "rawQuery",
    "redirect",
    "requestPath",
    "sanitizeRequestHeaders",
]
