"""
Tests for L{llamaswap.web.mux}: routing, Go C{ServeMux}'s generic answers
(301/404/405, HEAD), the CORS preflight and where authentication applies,
through a real twisted.web L{Site} over an in-memory transport.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request, Site

from llamaswap.web.mux import (
    ADMIN,
    DEFAULT_ALLOW_HEADERS,
    INFERENCE,
    MONITOR,
    Mux,
    cleanPath,
    decodePath,
    preflightAllowHeaders,
    sanitizeRequestHeaders,
)

from .helpers import Client, ParsedResponse


class Recorder:
    """
    A handler that records its calls and answers with a fixed body.
    """

    def __init__(self, body: bytes = b"handled") -> None:
        self.body = body
        self.calls: list[tuple[bytes, bytes, bytes]] = []

    def __call__(self, request: Request, rest: bytes) -> bytes:
        self.calls.append((request.method, request.path, rest))
        return self.body


class Refuser:
    """
    An authenticator that refuses everything with a 401 and counts calls.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.scopes: list[str] = []

    def __call__(self, request: Request, scope: str) -> bytes:
        self.calls += 1
        self.scopes.append(scope)
        request.setResponseCode(401)
        return b"refused"


def send(
    mux: Mux,
    method: bytes,
    path: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> ParsedResponse:
    """
    One request through a real L{Site} serving C{mux}.
    """
    client = Client(Site(mux, reactor=Clock()))
    client.send(method, path, headers=headers)
    return client.response()


class RoutingTests(SynchronousTestCase):
    """
    Which handler a path and method reach, and with what rest.
    """

    def test_exactRoute(self) -> None:
        """
        An exact route gets its path with an empty rest.
        """
        mux, handler = Mux(), Recorder()
        mux.route("GET", "/v1/models", handler)
        response = send(mux, b"GET", b"/v1/models")
        self.assertEqual((response.status, response.body), (200, b"handled"))
        self.assertEqual(handler.calls, [(b"GET", b"/v1/models", b"")])

    def test_prefixRouteRestIsRaw(self) -> None:
        """
        A prefix route gets the rest of the path after its prefix exactly as
        the client escaped it, so a relay can forward it byte for byte.
        """
        mux, handler = Mux(), Recorder()
        mux.route("*", "/upstream/", handler)
        send(mux, b"POST", b"/upstream/author%2Fmodel/api/x%2Fy?q=1")
        send(mux, b"GET", b"/upstream/")
        self.assertEqual(
            [rest for _, _, rest in handler.calls],
            [b"author%2Fmodel/api/x%2Fy", b""],
        )
        self.assertEqual(decodePath(handler.calls[0][2]), "author/model/api/x/y")

    def test_segmentsMatchDecoded(self) -> None:
        """
        Paths are matched segment by segment on their decoded form: an
        escaped letter matches, an escaped slash stays inside its segment.
        """
        mux, handler = Mux(), Recorder()
        mux.route("GET", "/v1/models", handler)
        self.assertEqual(send(mux, b"GET", b"/v1/model%73").status, 200)
        self.assertEqual(send(mux, b"GET", b"/v1%2Fmodels").status, 404)
        self.assertEqual(len(handler.calls), 1)

    def test_mostSpecificWins(self) -> None:
        """
        An exact route beats a prefix route, and a longer prefix a shorter
        one; a request a specific route cannot take falls to a less specific
        one that can.
        """
        mux = Mux()
        short, long, exact = Recorder(b"short"), Recorder(b"long"), Recorder(b"exact")
        mux.route("*", "/a/", short)
        mux.route("GET", "/a/b/", long)
        mux.route("GET", "/a/b/c", exact)
        self.assertEqual(send(mux, b"GET", b"/a/b/c").body, b"exact")
        self.assertEqual(send(mux, b"GET", b"/a/b/d").body, b"long")
        self.assertEqual(send(mux, b"GET", b"/a/x").body, b"short")
        self.assertEqual(send(mux, b"POST", b"/a/b/d").body, b"short")
        self.assertEqual(long.calls[0][2], b"d")
        self.assertEqual(short.calls[-1][2], b"b/d")

    def test_anyMethod(self) -> None:
        """
        A route registered for C{*} serves every method.
        """
        mux, handler = Mux(), Recorder()
        mux.route("*", "/comfyui", handler)
        for method in (b"GET", b"POST", b"PATCH", b"DELETE", b"PROPFIND"):
            self.assertEqual(send(mux, method, b"/comfyui").status, 200, method)

    def test_routesInOrder(self) -> None:
        """
        L{Mux.routes} lists every route in registration order, with its
        methods, path, kind and whether it needs a key.
        """
        mux = Mux()
        mux.route(["GET", "post"], "/x", Recorder())
        mux.route("GET", "/y/", Recorder(), auth=False)
        routes = mux.routes()
        self.assertEqual(
            [(r.methods, r.path, r.prefix, r.auth) for r in routes],
            [
                (frozenset({b"GET", b"POST"}), b"/x", False, True),
                (frozenset({b"GET"}), b"/y/", True, False),
            ],
        )

    def test_rootIsExact(self) -> None:
        """
        C{/} is an exact route (Go's C{/{$}}), not a catch-all.
        """
        mux, handler = Mux(), Recorder()
        mux.route("GET", "/", handler)
        self.assertEqual(send(mux, b"GET", b"/").status, 200)
        self.assertEqual(send(mux, b"GET", b"/other").status, 404)

    def test_relativePathRefused(self) -> None:
        """
        A route path must be absolute.
        """
        self.assertRaises(ValueError, Mux().route, "GET", "health", Recorder())


class GenericAnswerTests(SynchronousTestCase):
    """
    The answers Go's C{ServeMux} gives on its own.
    """

    def test_notFound(self) -> None:
        """
        An unknown path is a plain-text C{404 page not found}, not the JSON
        envelope.
        """
        mux = Mux()
        mux.route("GET", "/health", Recorder())
        response = send(mux, b"GET", b"/does-not-exist")
        self.assertEqual(response.status, 404)
        self.assertEqual(response.body, b"404 page not found\n")
        self.assertEqual(response.header(b"content-type"), b"text/plain; charset=utf-8")
        self.assertEqual(response.header(b"x-content-type-options"), b"nosniff")

    def test_methodNotAllowed(self) -> None:
        """
        A known path with the wrong method is a 405 whose C{Allow} lists
        every method of the routes at that path, sorted, HEAD included for
        GET.
        """
        mux = Mux()
        mux.route("POST", "/x", Recorder())
        mux.route("GET", "/x", Recorder())
        response = send(mux, b"DELETE", b"/x")
        self.assertEqual(response.status, 405)
        self.assertEqual(response.body, b"Method Not Allowed\n")
        self.assertEqual(response.header(b"allow"), b"GET, HEAD, POST")

    def test_headForGet(self) -> None:
        """
        A GET route answers HEAD: the handler runs, the length of its body
        is announced and no body is sent.
        """
        mux, handler = Mux(), Recorder(b"twelve bytes")
        mux.route("GET", "/running", handler)
        client = Client(Site(mux, reactor=Clock()))
        client.send(b"HEAD", b"/running")
        raw = client.transport.value()
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw)
        self.assertIn(b"Content-Length: 12", raw)
        self.assertTrue(raw.endswith(b"\r\n\r\n"), raw)
        self.assertEqual(handler.calls[0][0], b"HEAD")

    def test_headNotForPost(self) -> None:
        """
        HEAD on a POST-only route is a 405.
        """
        mux = Mux()
        mux.route("POST", "/x", Recorder())
        client = Client(Site(mux, reactor=Clock()))
        client.send(b"HEAD", b"/x")
        self.assertIn(b" 405 ", client.transport.value().split(b"\r\n")[0])

    def test_nonCanonicalRedirected(self) -> None:
        """
        C{//}, C{/./} and C{/../} are 301-redirected to the cleaned path,
        query kept, whether or not a route exists there; a GET gets Go's
        small HTML body.
        """
        mux = Mux()
        mux.route("GET", "/v1/models", Recorder())
        cases = [
            (b"//v1/models", b"/v1/models"),
            (b"/v1/./models", b"/v1/models"),
            (b"/v1/x/../models?a=1&b", b"/v1/models?a=1&b"),
            (b"/a//b/", b"/a/b/"),
            (b"/..", b"/"),
        ]
        for path, location in cases:
            response = send(mux, b"GET", path)
            self.assertEqual(response.status, 301, path)
            self.assertEqual(response.header(b"location"), location, path)
        response = send(mux, b"GET", b"//v1/models")
        self.assertEqual(response.body, b'<a href="/v1/models">Moved Permanently</a>.\n\n')
        self.assertEqual(response.header(b"content-type"), b"text/html; charset=utf-8")

    def test_redirectKeepsEscaping(self) -> None:
        """
        The cleaned path is the client's escaped path: escapes are kept,
        and escaped dots are not path elements.
        """
        mux = Mux()
        response = send(mux, b"POST", b"/upstream//m%2F1/%2E%2E/x%20y")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header(b"location"), b"/upstream/m%2F1/%2E%2E/x%20y")
        self.assertEqual(response.body, b"")

    def test_trailingSlashRedirect(self) -> None:
        """
        A path whose C{/}-terminated form is the root of a prefix route that
        takes the method is 301-redirected there, query kept; for a method
        the prefix route does not take it is a 405 naming its methods.
        """
        mux = Mux()
        mux.route("GET", "/ui/", Recorder())
        response = send(mux, b"GET", b"/ui?x=1")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header(b"location"), b"/ui/?x=1")
        response = send(mux, b"POST", b"/ui")
        self.assertEqual(response.status, 405)
        self.assertEqual(response.header(b"allow"), b"GET, HEAD")

    def test_exactRouteBeatsTrailingSlash(self) -> None:
        """
        An exact route at the path itself is served rather than redirected
        (C{GET /upstream} beside C{/upstream/}); a method only the prefix
        route takes is redirected, as Go's C{ServeMux} does.
        """
        mux = Mux()
        exact = Recorder(b"exact")
        mux.route("GET", "/upstream", exact)
        mux.route("*", "/upstream/", Recorder())
        self.assertEqual(send(mux, b"GET", b"/upstream").body, b"exact")
        response = send(mux, b"POST", b"/upstream")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header(b"location"), b"/upstream/")

    def test_deeperPrefixRootRedirects(self) -> None:
        """
        The redirect applies even when a shorter prefix route would take the
        path, since the longer route's root is an exact match.
        """
        mux = Mux()
        mux.route("GET", "/logs/", Recorder())
        mux.route("GET", "/logs/stream/", Recorder())
        response = send(mux, b"GET", b"/logs/stream")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header(b"location"), b"/logs/stream/")


class PreflightTests(SynchronousTestCase):
    """
    C{OPTIONS} is a CORS preflight on every path.
    """

    def test_preflightEverywhere(self) -> None:
        """
        Any OPTIONS request, on a known or unknown path, even a
        non-canonical one, is a 204 with permissive CORS headers and never
        reaches the authenticator or a handler.
        """
        refuser, handler = Refuser(), Recorder()
        mux = Mux(authenticator=refuser)
        mux.route("POST", "/v1/chat/completions", handler)
        for path in (b"/v1/chat/completions", b"/nowhere", b"//x/../y"):
            response = send(
                mux,
                b"OPTIONS",
                path,
                [(b"Access-Control-Request-Headers", b"  X-Custom ,  Accept ")],
            )
            self.assertEqual(response.status, 204, path)
            self.assertEqual(response.header(b"access-control-allow-origin"), b"*")
            self.assertEqual(
                response.header(b"access-control-allow-methods"),
                b"GET, POST, PUT, PATCH, DELETE, OPTIONS",
            )
            self.assertEqual(response.header(b"access-control-max-age"), b"86400")
            self.assertEqual(
                response.header(b"access-control-allow-headers"), b"X-Custom, Accept"
            )
        self.assertEqual((refuser.calls, handler.calls), (0, []))

    def test_defaultAllowHeaders(self) -> None:
        """
        Without C{Access-Control-Request-Headers} (or with an empty one) the
        default list is allowed; with only invalid names, none.
        """
        self.assertEqual(preflightAllowHeaders(None), DEFAULT_ALLOW_HEADERS)
        self.assertEqual(preflightAllowHeaders(b""), DEFAULT_ALLOW_HEADERS)
        self.assertEqual(preflightAllowHeaders(b"Bad@Header"), b"")
        self.assertEqual(
            DEFAULT_ALLOW_HEADERS, b"Content-Type, Authorization, Accept, X-Requested-With"
        )

    def test_sanitize(self) -> None:
        """
        Requested header names are trimmed, blanks and names with
        characters outside the token set dropped.
        """
        cases = {
            b"Content-Type, Authorization": b"Content-Type, Authorization",
            b"  X-Custom ,  Accept ": b"X-Custom, Accept",
            b"Valid, Bad Header": b"Valid",
            b"Bad@Header": b"",
            b"": b"",
            b"a,,b, ,c": b"a, b, c",
        }
        for given_, expected in cases.items():
            self.assertEqual(sanitizeRequestHeaders(given_), expected, given_)
        token = b"aZ09!#$%&'*+-.^_`|~"
        self.assertEqual(sanitizeRequestHeaders(token), token)
        for bad in (b" x", b"@", b"(", b")", b"/", b"\t", b'"'):
            self.assertEqual(sanitizeRequestHeaders(b"a" + bad + b"b"), b"", bad)


class AuthenticationTests(SynchronousTestCase):
    """
    Where the mux asks its authenticator.
    """

    def test_onlyAuthRoutesAsk(self) -> None:
        """
        Routes registered with C{auth=True} are refused by the
        authenticator before the handler runs; C{auth=False} routes and the
        mux's own 301/404/405 answers never ask.
        """
        refuser = Refuser()
        mux = Mux(authenticator=refuser)
        protected, open_ = Recorder(), Recorder()
        mux.route("GET", "/running", protected)
        mux.route("GET", "/health", open_, auth=False)
        mux.route("GET", "/ui/", protected)
        self.assertEqual(send(mux, b"GET", b"/running").status, 401)
        self.assertEqual(refuser.calls, 1)
        self.assertEqual(send(mux, b"GET", b"/health").status, 200)
        self.assertEqual(send(mux, b"GET", b"/nope").status, 404)
        self.assertEqual(send(mux, b"POST", b"/running").status, 405)
        self.assertEqual(send(mux, b"GET", b"//running").status, 301)
        self.assertEqual(send(mux, b"GET", b"/ui").status, 301)
        self.assertEqual(refuser.calls, 1)
        self.assertEqual(protected.calls, [])
        self.assertEqual(len(open_.calls), 1)

    def test_scopePassed(self) -> None:
        """
        The authenticator is told the scope the route was registered with;
        a route registered without one needs C{admin}.
        """
        refuser = Refuser()
        mux = Mux(authenticator=refuser)
        mux.route("GET", "/a", Recorder(), scope=MONITOR)
        mux.route("GET", "/b", Recorder())
        send(mux, b"GET", b"/a")
        send(mux, b"GET", b"/b")
        self.assertEqual(refuser.scopes, [MONITOR, ADMIN])

    def test_headRefusedWithoutBody(self) -> None:
        """
        A refused HEAD request gets the refusal's status and length but no
        body.
        """
        mux = Mux(authenticator=Refuser())
        mux.route("GET", "/running", Recorder())
        client = Client(Site(mux, reactor=Clock()))
        client.send(b"HEAD", b"/running")
        raw = client.transport.value()
        self.assertTrue(raw.startswith(b"HTTP/1.1 401 "), raw)
        self.assertIn(b"Content-Length: 7", raw)
        self.assertTrue(raw.endswith(b"\r\n\r\n"), raw)

    def test_noAuthenticator(self) -> None:
        """
        Without an authenticator every route is open.
        """
        mux, handler = Mux(), Recorder()
        mux.route("GET", "/running", handler)
        self.assertEqual(send(mux, b"GET", b"/running").status, 200)


class SettleTests(SynchronousTestCase):
    """
    The mux settles the backlog before the routes that read what it
    writes, and not before a model request (which settles it once sent).
    """

    def test_beforeNonInferenceRoutes(self) -> None:
        calls: list[str] = []
        mux = Mux(settle=lambda: calls.append("settle"))

        def handler(name: str) -> Any:
            def handle(request: Any, rest: bytes) -> bytes:
                calls.append(name)
                return b""

            return handle

        mux.route("GET", "/api/metrics", handler("monitor"), scope=MONITOR)
        mux.route("POST", "/api/models/unload", handler("admin"))
        mux.route("POST", "/v1/chat/completions", handler("inference"), scope=INFERENCE)
        send(mux, b"GET", b"/api/metrics")
        send(mux, b"POST", b"/api/models/unload")
        send(mux, b"POST", b"/v1/chat/completions")
        self.assertEqual(calls, ["settle", "monitor", "settle", "admin", "inference"])

    def test_notBeforeRefusals(self) -> None:
        """
        A request the mux or the authenticator refuses settles nothing.
        """
        calls: list[str] = []
        mux = Mux(authenticator=Refuser(), settle=lambda: calls.append("settle"))
        mux.route("GET", "/api/metrics", Recorder(), scope=MONITOR)
        send(mux, b"GET", b"/api/metrics")
        send(mux, b"GET", b"/nope")
        self.assertEqual(calls, [])


class CleanPathTests(SynchronousTestCase):
    """
    L{cleanPath} is Go's C{ServeMux} canonicalisation.
    """

    def test_examples(self) -> None:
        """
        Rooted, slashes collapsed, dot segments resolved, trailing slash
        kept.
        """
        cases = {
            b"": b"/",
            b"/": b"/",
            b"x": b"/x",
            b"//": b"/",
            b"/a/b": b"/a/b",
            b"/a/b/": b"/a/b/",
            b"/a//b": b"/a/b",
            b"/a/./b/.": b"/a/b",
            b"/a/./b/./": b"/a/b/",
            b"/a/b/../c": b"/a/c",
            b"/../../a": b"/a",
            b"/a/..": b"/",
            b"/a/../": b"/",
            b"/a/%2e%2e/b": b"/a/%2e%2e/b",
            b"/a/...": b"/a/...",
        }
        for path, expected in cases.items():
            self.assertEqual(cleanPath(path), expected, path)

    @settings(deadline=None)
    @given(
        st.lists(
            st.sampled_from([b"", b".", b"..", b"a", b"b%2F", b"..."]), max_size=8
        ),
        st.booleans(),
    )
    def test_canonicalAndIdempotent(self, segments: list[bytes], trailing: bool) -> None:
        """
        A cleaned path is rooted, has no empty, C{.} or C{..} segments
        (except the final empty one of a trailing slash) and is its own
        cleaning.
        """
        path = b"/" + b"/".join(segments) + (b"/" if trailing else b"")
        cleaned = cleanPath(path)
        self.assertTrue(cleaned.startswith(b"/"))
        inner = cleaned[1:-1] if cleaned.endswith(b"/") else cleaned[1:]
        if inner:
            for segment in inner.split(b"/"):
                self.assertNotIn(segment, (b"", b".", b".."))
        self.assertEqual(cleanPath(cleaned), cleaned)
