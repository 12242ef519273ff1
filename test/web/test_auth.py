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
