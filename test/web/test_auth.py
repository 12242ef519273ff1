"""
Tests for L{llamaswap.web.auth}: reading the API key, comparing it, the
401, what upstreams see, and an authentication matrix over every route the
site registers.
"""

from __future__ import annotations

import base64
import hashlib
import json

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request, Site

from llamaswap.app import LlamaSwap
from llamaswap.config.load import loadConfigText
from llamaswap.config.model import Config, ModelConfig, PeerConfig
from llamaswap.holder import Holder
from llamaswap.web.auth import (
    APIKeyAuthenticator,
    authenticatorFor,
    extractAPIKey,
    upstreamAuthHeaders,
)
from llamaswap.web.mux import Mux, Route
from llamaswap.web.site import buildResource

from .helpers import Client, ParsedResponse

KEYS = ("k1-secret", "k2-secret")


def basic(user: str, password: str) -> bytes:
    """
    An C{Authorization: Basic} value.
    """
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


class FakeRequest:
    """
    Just enough of a request for L{extractAPIKey}: raw request headers.
    """

    def __init__(self, *headers: tuple[bytes, bytes]) -> None:
        from twisted.web.http_headers import Headers

        self.requestHeaders = Headers()
        for name, value in headers:
            self.requestHeaders.addRawHeader(name, value)


def key(*headers: tuple[bytes, bytes]) -> bytes:
    return extractAPIKey(FakeRequest(*headers))  # type: ignore[arg-type]


class ExtractTests(SynchronousTestCase):
    """
    L{extractAPIKey} follows llama-swap's precedence and parsing.
    """

    def test_sources(self) -> None:
        """
        The key comes from a Bearer token, a Basic password (user ignored)
        or C{x-api-key}; nothing gives C{b""}.
        """
        self.assertEqual(key((b"Authorization", b"Bearer abc")), b"abc")
        self.assertEqual(key((b"Authorization", basic("anyone", "abc"))), b"abc")
        self.assertEqual(key((b"x-api-key", b"abc")), b"abc")
        self.assertEqual(key(), b"")

    def test_precedence(self) -> None:
        """
        An C{Authorization} header that yields a key wins over
        C{x-api-key}, even when C{x-api-key} holds the right one.
        """
        self.assertEqual(
            key((b"Authorization", b"Bearer wrong"), (b"x-api-key", b"right")), b"wrong"
        )
        self.assertEqual(
            key((b"Authorization", basic("u", "pw")), (b"x-api-key", b"right")), b"pw"
        )

    def test_schemeCaseInsensitive(self) -> None:
        """
        The scheme word is matched case-insensitively.
        """
        for scheme in (b"bearer", b"BEARER", b"bEaReR"):
            self.assertEqual(key((b"Authorization", scheme + b" tok")), b"tok")
        value = basic("u", "pw").replace(b"Basic", b"bAsIc")
        self.assertEqual(key((b"Authorization", value)), b"pw")

    def test_bearerUntrimmed(self) -> None:
        """
        The token is everything after the first space, not trimmed.
        """
        self.assertEqual(key((b"Authorization", b"Bearer  two spaces")), b" two spaces")

    def test_fallThrough(self) -> None:
        """
        A malformed Basic value, a Basic value without C{:} or with an empty
        password, an empty Bearer token, a scheme without credentials and an
        unknown scheme all fall through to C{x-api-key}.
        """
        fallbacks = [
            b"Basic %%%notbase64",
            b"Basic " + base64.b64encode(b"nocolon"),
            basic("user", ""),
            b"Bearer ",
            b"Bearer",
            b"Token abc",
        ]
        for value in fallbacks:
            self.assertEqual(
                key((b"Authorization", value), (b"x-api-key", b"xk")), b"xk", value
            )

    def test_passwordWithColon(self) -> None:
        """
        Only the first C{:} separates user and password.
        """
        self.assertEqual(key((b"Authorization", basic("u", "a:b"))), b"a:b")

    def test_firstHeaderValue(self) -> None:
        """
        Repeated headers are read by their first value, as Go does.
        """
        self.assertEqual(
            key((b"x-api-key", b"first"), (b"x-api-key", b"second")), b"first"
        )


class SpyCompare:
    """
    A comparison that records its arguments and delegates to equality.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, a: bytes, b: bytes) -> bool:
        self.calls.append((a, b))
        return a == b


class CompareTests(SynchronousTestCase):
    """
    L{APIKeyAuthenticator.isValid} compares the key with every configured
    key.
    """

    def test_everyKeyCompared(self) -> None:
        """
        Whether the key matches the first, the last or no key, every key is
        compared exactly once: no early exit.
        """
        keys = ("alpha", "beta", "gamma")
        for provided, expected in [
            (b"alpha", True),
            (b"gamma", True),
            (b"delta", False),
            (b"", False),
        ]:
            spy = SpyCompare()
            auth = APIKeyAuthenticator(lambda: keys, compare=spy)
            self.assertEqual(auth.isValid(provided), expected, provided)
            self.assertEqual(len(spy.calls), len(keys), provided)
            self.assertEqual(
                [b for _, b in spy.calls],
                [hashlib.sha256(k.encode()).digest() for k in keys],
            )

    def test_digestsHideLength(self) -> None:
        """
        What is compared are fixed-length digests, so
        L{hmac.compare_digest} never returns early on a length mismatch.
        """
        spy = SpyCompare()
        auth = APIKeyAuthenticator(lambda: ("short", "a much longer key"), compare=spy)
        auth.isValid(b"x" * 1000)
        self.assertEqual({(len(a), len(b)) for a, b in spy.calls}, {(32, 32)})

    def test_realCompare(self) -> None:
        """
        The default comparison accepts exactly the configured keys (also
        non-ASCII ones, compared as UTF-8).
        """
        auth = APIKeyAuthenticator(lambda: ("k1", "clé"))
        self.assertTrue(auth.isValid(b"k1"))
        self.assertTrue(auth.isValid("clé".encode()))
        self.assertFalse(auth.isValid(b"k2"))
        self.assertFalse(auth.isValid(b"k1 "))

    def test_keysReadPerRequest(self) -> None:
        """
        The keys are read when a request is checked, so new keys apply at
        once.
        """
        keys: list[tuple[str, ...]] = [("old",)]
        auth = APIKeyAuthenticator(lambda: keys[0])
        self.assertTrue(auth.isValid(b"old"))
        keys[0] = ("new",)
        self.assertFalse(auth.isValid(b"old"))
        self.assertTrue(auth.isValid(b"new"))


def serve(authenticator: APIKeyAuthenticator) -> Mux:
    mux = Mux(authenticator=authenticator)
    mux.route("GET", "/running", lambda request, rest: b"ran")
    return mux


def get(
    mux: Mux, path: bytes = b"/running", headers: list[tuple[bytes, bytes]] | None = None
) -> ParsedResponse:
    client = Client(Site(mux, reactor=Clock()))
    client.send(b"GET", path, headers=headers)
    return client.response()


class RefusalTests(SynchronousTestCase):
    """
    The authenticator's answers.
    """

    def test_disabledWithoutKeys(self) -> None:
        """
        Without configured keys every request passes.
        """
        response = get(serve(APIKeyAuthenticator(lambda: ())))
        self.assertEqual((response.status, response.body), (200, b"ran"))

    def test_unauthorized(self) -> None:
        """
        A missing or wrong key is a 401 envelope with C{WWW-Authenticate}.
        """
        mux = serve(APIKeyAuthenticator(lambda: KEYS))
        for headers in ([], [(b"Authorization", b"Bearer nope")]):
            response = get(mux, headers=headers)
            self.assertEqual(response.status, 401)
            self.assertEqual(
                response.header(b"www-authenticate"), b'Basic realm="llamaswap"'
            )
            self.assertEqual(response.header(b"content-type"), b"application/json")
            body = json.loads(response.body)
            self.assertEqual(
                body["error"],
                {
                    "message": "unauthorized: invalid or missing API key",
                    "type": "authentication_error",
                    "param": None,
                    "code": "unauthorized",
                },
            )

    def test_negotiated(self) -> None:
        """
        The refusal is content-negotiated like every llamaswap error.
        """
        mux = serve(APIKeyAuthenticator(lambda: KEYS))
        response = get(mux, headers=[(b"Accept", b"text/plain")])
        self.assertEqual(response.status, 401)
        self.assertEqual(response.body, b"llamaswap: unauthorized: invalid or missing API key")

    def test_accepted(self) -> None:
        """
        Any configured key, in any accepted form, passes.
        """
        mux = serve(APIKeyAuthenticator(lambda: KEYS))
        for headers in (
            [(b"Authorization", b"Bearer k2-secret")],
            [(b"x-api-key", b"k1-secret")],
            [(b"Authorization", basic("ui", "k2-secret"))],
        ):
            self.assertEqual(get(mux, headers=headers).status, 200, headers)

    def test_authenticatorForConfig(self) -> None:
        """
        L{authenticatorFor} reads the current configuration of its holder.
        """
        config = Holder(Config(apiKeys=("a",)))
        auth = authenticatorFor(config)
        self.assertTrue(auth.isValid(b"a"))
        config.set(Config())
        self.assertFalse(auth.enabled)


class UpstreamHeadersTests(SynchronousTestCase):
    """
    L{upstreamAuthHeaders} decides the credentials upstreams see.
    """

    request = FakeRequest((b"Authorization", b"Bearer client"), (b"x-api-key", b"client"))

    def test_peerKeyReplacesClient(self) -> None:
        """
        A peer with an C{apiKey} gets its own key in both headers.
        """
        peer = PeerConfig("p", "http://127.0.0.1:1", ("m",), apiKey="peer-key")
        self.assertEqual(
            upstreamAuthHeaders(self.request, peer),  # type: ignore[arg-type]
            {"Authorization": "Bearer peer-key", "x-api-key": "peer-key"},
        )

    def test_otherwiseUntouched(self) -> None:
        """
        Local models, peers without a key and no configuration change
        nothing: the client's headers pass through.
        """
        for config in (
            ModelConfig("m"),
            PeerConfig("p", "http://127.0.0.1:1", ("m",)),
            None,
        ):
            self.assertEqual(upstreamAuthHeaders(self.request, config), {}, config)  # type: ignore[arg-type]


#: Routes that llama-swap leaves unauthenticated (http-behaviour.md section
#: 8): health checks, the root and C{/upstream} redirects, the favicon.
OPEN_ROUTES = {
    (b"GET", b"/health"),
    (b"GET", b"/wol-health"),
    (b"GET", b"/"),
    (b"GET", b"/upstream"),
    (b"GET", b"/favicon.ico"),
    (b"POST", b"/api/login"),
    (b"POST", b"/api/logout"),
    (b"GET", b"/api/session"),
    (b"GET", b"/ui/"),
}

MATRIX_CONFIG = """
apiKeys: [k1-secret, k2-secret]
models:
  m:
    cmd: /bin/false --port ${PORT}
    aliases: [alias]
peers:
  p:
    proxy: http://127.0.0.1:9
    models: [remote]
"""


class AuthMatrixTests(SynchronousTestCase):
    """
    Every route the site registers (whoever registered it) × every way of
    presenting a key.
    """

    def setUp(self) -> None:
        config = loadConfigText(MATRIX_CONFIG, environ={}).config
        self.app = LlamaSwap(config, MemoryReactorClock(), runtimeDir=self.mktemp())
        self.mux = buildResource(self.app.webParts())
        self.routes = self.mux.routes()

    def requests(self) -> list[tuple[Route, bytes, bytes]]:
        """
        One request per route and method: the route's path (a prefix route
        with something below it).
        """
        out = []
        for route in self.routes:
            path = route.path + (b"probe" if route.prefix else b"")
            if b"*" in route.methods:
                methods = [b"GET", b"POST"]
            else:
                methods = sorted(route.methods)
            for method in methods:
                out.append((route, method, path))
        return out

    def send(
        self, mux: Mux, method: bytes, path: bytes, headers: list[tuple[bytes, bytes]]
    ) -> ParsedResponse:
        client = Client(Site(mux, reactor=Clock()))
        client.send(method, path, headers=headers)
        return client.response()

    def test_tableCovered(self) -> None:
        """
        The site has the management routes and the health checks, and the
        only routes without a key are those llama-swap leaves open.
        """
        table = {(m, r.path) for r in self.routes for m in r.methods}
        for expected in [
            (b"GET", b"/health"),
            (b"GET", b"/v1/models"),
            (b"GET", b"/running"),
            (b"POST", b"/api/models/unload/"),
            (b"PUT", b"/api/profiles/active"),
            (b"POST", b"/v1/chat/completions"),
        ]:
            self.assertIn(expected, table)
        open_ = {(m, r.path) for r in self.routes if not r.auth for m in r.methods}
        self.assertTrue(open_ <= OPEN_ROUTES, open_ - OPEN_ROUTES)
        self.assertTrue({(b"GET", b"/health"), (b"GET", b"/wol-health")} <= open_)

    def test_refusedWithoutKey(self) -> None:
        """
        On the real site, every protected route refuses a request with no
        key or a wrong key (Bearer, x-api-key or Basic) with a 401, before
        its handler runs.
        """
        wrong = [
            [],
            [(b"Authorization", b"Bearer wrong")],
            [(b"x-api-key", b"wrong")],
            [(b"Authorization", basic("u", "wrong"))],
            [(b"Authorization", b"Bearer wrong"), (b"x-api-key", b"k1-secret")],
        ]
        checked = 0
        for route, method, path in self.requests():
            if not route.auth:
                continue
            for headers in wrong:
                response = self.send(self.mux, method, path, headers)
                self.assertEqual(response.status, 401, (method, path, headers))
                self.assertEqual(
                    response.header(b"www-authenticate"),
                    b'Basic realm="llamaswap"',
                    (method, path),
                )
                checked += 1
        self.assertGreater(checked, 50)

    def test_matrix(self) -> None:
        """
        With the handlers replaced by recorders, every route × (no key,
        wrong key, Bearer, x-api-key, Basic): protected routes reach their
        handler exactly with a valid key, open routes always; an OPTIONS
        preflight on every route path is a 204 without a key.
        """
        reached: list[Route] = []
        stubbed = Mux(authenticator=self.mux.authenticator)
        for route in self.routes:

            def handler(request: Request, rest: bytes, route: Route = route) -> bytes:
                reached.append(route)
                return b"reached"

            stubbed.route(
                [m.decode() for m in route.methods],
                route.path.decode(),
                handler,
                auth=route.auth,
                scope=route.scope,
            )
        cases = {
            "none": ([], False),
            "wrong": ([(b"Authorization", b"Bearer nope")], False),
            "bearer": ([(b"Authorization", b"Bearer k1-secret")], True),
            "x-api-key": ([(b"x-api-key", b"k2-secret")], True),
            "basic": ([(b"Authorization", basic("ui", "k1-secret"))], True),
        }
        for route, method, path in self.requests():
            for name, (headers, valid) in cases.items():
                del reached[:]
                response = self.send(stubbed, method, path, headers)
                where = (method, path, name)
                if valid or not route.auth:
                    self.assertNotEqual(response.status, 401, where)
                    self.assertEqual(reached, [route], where)
                else:
                    self.assertEqual(response.status, 401, where)
                    self.assertEqual(reached, [], where)
            preflight = self.send(stubbed, b"OPTIONS", path, [])
            self.assertEqual(preflight.status, 204, path)

    def test_healthWithoutKey(self) -> None:
        """
        On the real site the health checks answer without a key.
        """
        for path in (b"/health", b"/wol-health"):
            response = self.send(self.mux, b"GET", path, [])
            self.assertEqual((response.status, response.body), (200, b"OK"), path)


#: The scope every protected route needs: stated here so that a change is
#: deliberate.  A route missing from this table fails the matrix.
ROUTE_SCOPES = {
    b"/v1/models": "inference",
    b"/models": "inference",
    b"/upstream/": "inference",
    b"/comfyui": "inference",
    b"/comfyui/": "inference",
    b"/running": "monitor",
    b"/api/profiles": "monitor",
    b"/api/version": "monitor",
    b"/logs": "monitor",
    b"/log": "monitor",
    b"/logs/stream": "monitor",
    b"/logs/stream/": "monitor",
    b"/logs/streamSSE": "monitor",
    b"/logs/streamSSE/": "monitor",
    b"/api/events": "monitor",
    b"/api/metrics/activity": "monitor",
    b"/api/metrics/stats": "monitor",
    b"/api/captures/": "monitor",
    b"/metrics": "monitor",
    b"/api/performance": "monitor",
    b"/api/hardware": "monitor",
    b"/unload": "admin",
    b"/api/models/unload": "admin",
    b"/api/models/unload/": "admin",
    b"/api/profiles/active": "admin",
    b"/api/inflight/": "admin",
    b"/api/config": "admin",
    b"/api/config/reload": "admin",
}

SCOPED_CONFIG = """
apiKeys:
  - full-secret
  - {key: inf-secret, name: app-a, scopes: [inference]}
  - {key: lim-secret, name: app-b, scopes: [inference], models: [m, ghost*]}
  - {key: mon-secret, name: watcher, scopes: [monitor]}
  - {key: adm-secret, name: ops, scopes: [admin]}
models:
  m:
    cmd: /bin/false --port ${PORT}
    aliases: [alias]
  n:
    cmd: /bin/false --port ${PORT}
peers:
  p:
    proxy: http://127.0.0.1:9
    models: [remote]
"""

#: Each key, and the scopes it holds (admin includes monitor).
SCOPED_KEYS = {
    "full-secret": {"inference", "monitor", "admin"},
    "inf-secret": {"inference"},
    "lim-secret": {"inference"},
    "mon-secret": {"monitor"},
    "adm-secret": {"monitor", "admin"},
}

SAME_ORIGIN = [(b"Origin", b"http://proxy.example:8080"), (b"Sec-Fetch-Site", b"same-origin")]
CROSS_ORIGIN = [(b"Origin", b"https://evil.example"), (b"Sec-Fetch-Site", b"cross-site")]


def bearer(secret: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", b"Bearer " + secret.encode())]


class ScopedSite:
    """
    The real site over L{SCOPED_CONFIG}, and a copy of its route table
    whose handlers only record that they were reached.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        config = loadConfigText(SCOPED_CONFIG, environ={}).config
        self.clock = MemoryReactorClock()
        self.app = LlamaSwap(config, self.clock, runtimeDir=case.mktemp())
        self.mux = buildResource(self.app.webParts())
        self.reached: list[Route] = []
        self.stubbed = Mux(authenticator=self.mux.authenticator)
        for route in self.mux.routes():

            def handler(request: Request, rest: bytes, route: Route = route) -> bytes:
                self.reached.append(route)
                return b"reached"

            self.stubbed.route(
                [m.decode() for m in route.methods],
                route.path.decode(),
                handler,
                auth=route.auth,
                scope=route.scope,
            )
        self.login = next(r for r in self.mux.routes() if r.path == b"/api/login")

    def send(
        self,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
        stubbed: bool = False,
    ) -> ParsedResponse:
        client = Client(Site(self.stubbed if stubbed else self.mux, reactor=Clock()))
        client.send(method, path, body=body, headers=headers)
        return client.response()

    def cookieFor(self, secret: str) -> list[tuple[bytes, bytes]]:
        """
        A C{Cookie} header for a session logged in with C{secret}.
        """
        response = self.send(
            b"POST", b"/api/login", SAME_ORIGIN, json.dumps({"key": secret}).encode()
        )
        assert response.status == 200, response.raw
        cookie = response.header(b"set-cookie") or b""
        return [(b"Cookie", cookie.split(b";")[0])]


def errorMessage(response: ParsedResponse) -> str:
    message: str = json.loads(response.body)["error"]["message"]
    return message


class ScopeMatrixTests(SynchronousTestCase):
    """
    Every registered route × {no key, wrong key, each scope's key, a
    session cookie from the same origin and from another one}.
    """

    def setUp(self) -> None:
        self.site = ScopedSite(self)

    def requests(self) -> list[tuple[Route, bytes, bytes]]:
        out = []
        for route in self.site.mux.routes():
            path = route.path + (b"probe" if route.prefix else b"")
            methods = [b"GET", b"POST"] if b"*" in route.methods else sorted(route.methods)
            out.extend((route, method, path) for method in methods)
        return out

    def test_everyRouteHasItsScope(self) -> None:
        """
        Every protected route needs the scope L{ROUTE_SCOPES} names (model
        routes: C{inference}); nothing protected is missing from the table.
        """
        from llamaswap.routes import BODY_ROUTES, QUERY_ROUTES, VERSIONLESS_ROUTES

        modelPaths = {p.encode() for p in BODY_ROUTES + QUERY_ROUTES + VERSIONLESS_ROUTES}
        for route in self.site.mux.routes():
            if not route.auth:
                continue
            if route.path in modelPaths:
                self.assertEqual(route.scope, "inference", route.path)
            else:
                self.assertEqual(route.scope, ROUTE_SCOPES.get(route.path), route.path)

    def test_matrix(self) -> None:
        """
        A protected route reaches its handler exactly when the key holds its
        scope; without a key or with a wrong one it is a 401, with a key
        lacking the scope a 403 naming the scope (and no key).  A session
        cookie carries its key's scopes from the same origin and is refused
        (403) from another one.  Open routes are always reached.
        """
        site = self.site
        sessions = {secret: site.cookieFor(secret) for secret in SCOPED_KEYS}
        checked = 0
        for route, method, path in self.requests():
            cases: list[tuple[str, list[tuple[bytes, bytes]], object]] = [
                ("none", [], 401),
                ("wrong", bearer("wrong"), 401),
                ("basic-wrong", [(b"Authorization", basic("u", "nope"))], 401),
            ]
            for secret, scopes in SCOPED_KEYS.items():
                expected = "reached" if route.scope in scopes else 403
                cases.append((secret, bearer(secret), expected))
                cases.append((secret + "+x-api-key", [(b"x-api-key", secret.encode())], expected))
                cases.append((secret + "+cookie", sessions[secret] + SAME_ORIGIN, expected))
                cases.append((secret + "+cookie-cross", sessions[secret] + CROSS_ORIGIN, 403))
            for name, headers, expected in cases:
                checked += 1
                del site.reached[:]
                response = site.send(method, path, headers, stubbed=True)
                where = (method, path, name)
                if not route.auth or expected == "reached":
                    self.assertEqual(site.reached, [route], where)
                    self.assertEqual(response.body, b"reached", where)
                    continue
                self.assertEqual(response.status, expected, where)
                self.assertEqual(site.reached, [], where)
                message = errorMessage(response)
                self.assertNotIn("secret", message, where)
                if name.endswith("cookie-cross"):
                    self.assertIn("cross-origin", message, where)
                elif expected == 403:
                    self.assertEqual(
                        message, f"forbidden: this API key lacks the {route.scope!r} scope", where
                    )
                    self.assertEqual(json.loads(response.body)["error"]["code"], "forbidden")
        self.assertGreater(checked, 1500)

    def test_cookieUnsafeWithoutOrigin(self) -> None:
        """
        A state-changing request authorised by a cookie with neither
        C{Origin} nor C{Sec-Fetch-Site} is refused; a safe one is let
        through (the C{SameSite=Strict} cookie is not sent cross-site);
        an C{Origin} naming the request's host is enough.
        """
        site = self.site
        cookie = site.cookieFor("full-secret")
        self.assertEqual(site.send(b"POST", b"/api/models/unload", cookie, stubbed=True).status, 403)
        self.assertEqual(site.send(b"GET", b"/running", cookie, stubbed=True).body, b"reached")
        origin = [(b"Origin", b"http://proxy.example:8080")]
        self.assertEqual(
            site.send(b"POST", b"/api/models/unload", cookie + origin, stubbed=True).body,
            b"reached",
        )
        other = [(b"Origin", b"http://proxy.example:9999")]
        self.assertEqual(
            site.send(b"POST", b"/api/models/unload", cookie + other, stubbed=True).status, 403
        )

    def test_headerKeyWinsOverCookie(self) -> None:
        """
        A request presenting a key in a header is judged by that key, not
        by its cookie: a wrong header key is a 401 even with a valid
        session, and a header key needs no C{Origin}.
        """
        site = self.site
        cookie = site.cookieFor("full-secret")
        self.assertEqual(
            site.send(b"GET", b"/running", cookie + bearer("wrong"), stubbed=True).status, 401
        )
        self.assertEqual(
            site.send(b"POST", b"/api/models/unload", bearer("adm-secret") + CROSS_ORIGIN,
                      stubbed=True).body,
            b"reached",
        )


def chat(model: str) -> bytes:
    return json.dumps({"model": model, "messages": []}).encode()


class ModelGrantTests(SynchronousTestCase):
    """
    A key limited to C{models} may use only those (by ID, alias or glob),
    on every kind of model route.
    """

    def setUp(self) -> None:
        self.site = ScopedSite(self)

    def post(self, secret: str, model: str, path: bytes = b"/v1/chat/completions") -> ParsedResponse:
        return self.site.send(
            b"POST", path, bearer(secret) + [(b"Content-Type", b"application/json")], chat(model)
        )

    def test_bodyRouteForbidden(self) -> None:
        """
        A model outside the key's list is a 403 naming the model, on every
        body-routed endpoint; a peer model too.
        """
        from llamaswap.routes import BODY_ROUTES

        for path in BODY_ROUTES:
            for model in ("n", "remote", "p/remote"):
                response = self.post("lim-secret", model, path.encode())
                self.assertEqual(response.status, 403, (path, model))
                self.assertEqual(
                    errorMessage(response), f"forbidden: this API key may not use model {model}"
                )

    def test_globAllowed(self) -> None:
        """
        A name matching one of the key's globs passes the check (this one
        names no model, hence the 404 after it).
        """
        response = self.post("lim-secret", "ghost-1")
        self.assertEqual(response.status, 404)

    def test_unlimitedKey(self) -> None:
        """
        A key without C{models} passes the check for any model.
        """
        self.assertEqual(self.post("inf-secret", "ghost-1").status, 404)

    def test_queryRoute(self) -> None:
        """
        A model named in the query is checked too.
        """
        from llamaswap.routes import QUERY_ROUTES

        path = QUERY_ROUTES[0].encode() + b"?model=n"
        response = self.site.send(b"GET", path, bearer("lim-secret"))
        self.assertEqual(response.status, 403, response.raw)

    def test_upstreamPath(self) -> None:
        """
        C{/upstream/<model>/...} checks the model named in the path.
        """
        response = self.site.send(b"GET", b"/upstream/n/health", bearer("lim-secret"))
        self.assertEqual(response.status, 403)
        self.assertEqual(errorMessage(response), "forbidden: this API key may not use model n")
        response = self.site.send(b"GET", b"/upstream/p/remote/x", bearer("lim-secret"))
        self.assertEqual(response.status, 403)

    def test_comfy(self) -> None:
        """
        C{/comfyui/} needs the key to allow C{comfyui_auto} (when it exists).
        """
        text = SCOPED_CONFIG.replace(
            "  n:\n", "  comfyui_auto:\n    cmd: /bin/false --port ${PORT}\n  n:\n"
        )
        config = loadConfigText(text, environ={}).config
        app = LlamaSwap(config, MemoryReactorClock(), runtimeDir=self.mktemp())
        mux = buildResource(app.webParts())
        client = Client(Site(mux, reactor=Clock()))
        client.send(b"GET", b"/comfyui/", headers=bearer("lim-secret"))
        self.assertEqual(client.response().status, 403)

    def test_modelsListFiltered(self) -> None:
        """
        C{/v1/models} lists only the models the key may use; an unlimited
        key sees everything.
        """

        def ids(secret: str) -> list[str]:
            response = self.site.send(b"GET", b"/v1/models", bearer(secret))
            self.assertEqual(response.status, 200)
            return [r["id"] for r in json.loads(response.body)["data"]]

        self.assertEqual(ids("lim-secret"), ["m"])
        self.assertEqual(sorted(ids("inf-secret")), ["m", "n", "p/remote"])

    def test_aliasesAndGlobs(self) -> None:
        """
        L{Principal.mayUse} over L{modelNames}: a key listing a model's
        alias may use the model by ID and every alias; globs match.
        """
        from llamaswap.config.model import APIKey
        from llamaswap.web.grants import Principal, modelNames

        config = self.site.app.webParts().config.value
        byAlias = Principal.forKey(APIKey(key="x", name="a", models=("alias",)))
        self.assertTrue(byAlias.mayUse(modelNames(config, "m")))
        self.assertTrue(byAlias.mayUse(modelNames(config, "alias")))
        self.assertFalse(byAlias.mayUse(modelNames(config, "n")))
        glob = Principal.forKey(APIKey(key="x", name="a", models=("p/*",)))
        self.assertTrue(glob.mayUse(modelNames(config, "remote")))
        self.assertFalse(glob.mayUse(modelNames(config, "m")))


class BrowserPromptTests(SynchronousTestCase):
    """
    The 401 asks for Basic credentials only where a browser dialog helps.
    """

    def test_rule(self) -> None:
        """
        Requests from the UI's scripts (C{X-Requested-With}, or a
        C{Sec-Fetch-Mode} other than C{navigate}) get no
        C{WWW-Authenticate}; curl, SDKs and page navigations do.
        """
        site = ScopedSite(self)
        for headers, prompt in [
            ([], True),
            ([(b"Sec-Fetch-Mode", b"navigate")], True),
            ([(b"X-Requested-With", b"llamaswap-ui")], False),
            ([(b"Sec-Fetch-Mode", b"cors")], False),
            ([(b"Sec-Fetch-Mode", b"same-origin")], False),
        ]:
            response = site.send(b"GET", b"/running", headers)
            self.assertEqual(response.status, 401)
            self.assertEqual(
                response.header(b"www-authenticate") is not None, prompt, headers
            )


class KeyConcurrencyTests(SynchronousTestCase):
    """
    A key's C{concurrencyLimit} bounds its requests in flight.
    """

    def test_limit(self) -> None:
        """
        Over the limit a request is a 429 with C{Retry-After}; once a
        request finishes another is admitted; other keys are not counted.
        """
        from twisted.web.server import NOT_DONE_YET

        config = Holder(
            loadConfigText(
                "apiKeys: [{key: one, name: solo, concurrencyLimit: 1}, other]\n", environ={}
            ).config
        )
        auth = authenticatorFor(config)
        mux = Mux(authenticator=auth)
        held: list[Request] = []

        def hold(request: Request, rest: bytes) -> int:
            held.append(request)
            return NOT_DONE_YET

        mux.route("GET", "/hold", hold, scope="monitor")
        site = Site(mux, reactor=Clock())
        first = Client(site)
        first.send(b"GET", b"/hold", headers=bearer("one"))
        self.assertEqual(auth.inflight("solo"), 1)
        second = Client(site)
        second.send(b"GET", b"/hold", headers=bearer("one"))
        response = second.response()
        self.assertEqual(response.status, 429)
        self.assertEqual(response.header(b"retry-after"), b"1")
        self.assertIn("API key solo", errorMessage(response))
        third = Client(site)
        third.send(b"GET", b"/hold", headers=bearer("other"))
        self.assertEqual(len(held), 2)
        held[0].finish()
        self.assertEqual(auth.inflight("solo"), 0)
        fourth = Client(site)
        fourth.send(b"GET", b"/hold", headers=bearer("one"))
        self.assertEqual(len(held), 3)


class SameOriginTests(SynchronousTestCase):
    """
    L{sameOrigin}: where a cookie-authorised request may come from.
    """

    def check(self, method: bytes, *headers: tuple[bytes, bytes]) -> bool:
        from llamaswap.web.auth import sameOrigin

        request = FakeRequest((b"Host", b"llama.example:8080"), *headers)
        request.method = method  # type: ignore[attr-defined]
        return sameOrigin(request)  # type: ignore[arg-type]

    def test_table(self) -> None:
        """
        C{Sec-Fetch-Site} decides when present (C{same-site}, a sibling
        subdomain, is not enough); else C{Origin} must name the C{Host};
        with neither only safe methods pass.
        """
        cases = [
            (b"POST", [(b"Sec-Fetch-Site", b"same-origin")], True),
            (b"POST", [(b"Sec-Fetch-Site", b"none")], True),
            (b"POST", [(b"Sec-Fetch-Site", b"same-site")], False),
            (b"GET", [(b"Sec-Fetch-Site", b"cross-site")], False),
            (b"POST", [(b"Origin", b"http://llama.example:8080")], True),
            (b"POST", [(b"Origin", b"https://LLAMA.example:8080")], True),
            (b"POST", [(b"Origin", b"http://llama.example")], False),
            (b"POST", [(b"Origin", b"null")], False),
            (b"POST", [], False),
            (b"PUT", [], False),
            (b"GET", [], True),
            (b"HEAD", [], True),
        ]
        for method, headers, expected in cases:
            self.assertEqual(self.check(method, *headers), expected, (method, headers))
