"""
Tests for L{llamaswap.web.guard}, L{llamaswap.web.hostcheck} and
L{llamaswap.web.cors}: DNS-rebinding protection and the configured CORS
policy.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request, Site

from llamaswap.config.load import loadConfigText
from llamaswap.web.guard import Guard
from llamaswap.web.hostcheck import _loopbackHeader, hostName, isAllowedHost
from llamaswap.web.limits import applyLimits
from llamaswap.web.mux import Mux

from .helpers import Client, ParsedResponse
from .inmemory import InMemoryLlamaSwap


def handler(request: Request, rest: bytes) -> bytes:
    # An upstream's own CORS policy, relayed.
    request.setHeader(b"access-control-allow-origin", b"*")
    request.setHeader(b"content-type", b"application/json")
    return b"{}"


def serve(configText: str, loopbackOnly: bool = True) -> Site:
    config = loadConfigText(configText, environ={}).config
    mux = Mux()
    mux.route(["GET", "POST"], "/v1/models", handler)
    site = Site(Guard(mux, lambda: config, loopbackOnly), reactor=Clock())
    return applyLimits(site, lambda: config.limits)


def send(site: Site, method: bytes = b"GET", host: bytes = b"127.0.0.1:8080",
         headers: list[tuple[bytes, bytes]] = []) -> ParsedResponse:
    client = Client(site)
    lines = [b"%s /v1/models HTTP/1.1" % method, b"Host: " + host]
    lines += [name + b": " + value for name, value in headers]
    client.channel.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n")
    return client.response()


class HostCheckTests(SynchronousTestCase):
    def test_names(self) -> None:
        self.assertEqual(hostName(b"[::1]:8080"), "::1")
        self.assertEqual(hostName(b"LocalHost:80"), "localhost")
        for host in (b"localhost", b"127.0.0.1:8080", b"[::1]:1", b"app.localhost", None):
            self.assertTrue(isAllowedHost(host, ()), host)
        self.assertFalse(isAllowedHost(b"evil.example", ()))
        self.assertTrue(isAllowedHost(b"box.lan:8080", ["box.lan"]))
        self.assertTrue(isAllowedHost(b"a.home.arpa", [".home.arpa"]))
        self.assertTrue(isAllowedHost(b"evil.example", ["*"]))

    def test_repeatedHostsParsedOnce(self) -> None:
        """
        A C{Host} value seen before is not parsed again; the answer still
        depends on the current C{allowedHosts}; the cache is bounded.
        """
        _loopbackHeader.cache_clear()
        for _ in range(3):
            self.assertTrue(isAllowedHost(b"127.0.0.1:8080", ()))
            self.assertFalse(isAllowedHost(b"box.lan:8080", ()))
            self.assertTrue(isAllowedHost(b"box.lan:8080", ["box.lan"]))
        info = _loopbackHeader.cache_info()
        self.assertEqual((info.misses, info.hits), (2, 7))
        self.assertEqual(info.maxsize, 256)

    def test_rebindingRefused(self) -> None:
        """
        Listening on loopback without keys, a foreign C{Host} is a 403
        envelope; loopback and allowed names are served.
        """
        site = serve("models: {}\nsecurity: {allowedHosts: [box.lan]}\n")
        response = send(site, host=b"evil.example:8080")
        self.assertEqual(response.status, 403)
        self.assertIn("host not allowed", json.loads(response.body)["error"]["message"])
        self.assertEqual(send(site, host=b"localhost:8080").status, 200)
        self.assertEqual(send(site, host=b"box.lan").status, 200)

    def test_offWithKeysOrOtherInterfaces(self) -> None:
        self.assertEqual(send(serve("models: {}\n", loopbackOnly=False),
                              host=b"evil.example").status, 200)
        self.assertEqual(send(serve("models: {}\napiKeys: [k]\n"),
                              host=b"evil.example").status, 200)


CORS = """
models: {}
security:
  cors:
    allowedOrigins: ["https://app.example"]
    allowCredentials: true
    allowedMethods: [GET, POST]
    exposedHeaders: [X-Request-Id]
    maxAge: 600
    allowPrivateNetwork: true
"""


class CorsTests(SynchronousTestCase):
    def test_preflight(self) -> None:
        site = serve(CORS)
        response = send(site, b"OPTIONS", headers=[
            (b"Origin", b"https://app.example"),
            (b"Access-Control-Request-Method", b"POST"),
            (b"Access-Control-Request-Headers", b"content-type, x-stainless-os"),
            (b"Access-Control-Request-Private-Network", b"true"),
        ])
        self.assertEqual(response.status, 204)
        self.assertEqual(response.header(b"access-control-allow-origin"), b"https://app.example")
        self.assertEqual(response.header(b"access-control-allow-methods"), b"GET, POST")
        self.assertEqual(response.header(b"access-control-allow-headers"),
                         b"content-type, x-stainless-os")
        self.assertEqual(response.header(b"access-control-max-age"), b"600")
        self.assertEqual(response.header(b"access-control-allow-credentials"), b"true")
        self.assertEqual(response.header(b"access-control-allow-private-network"), b"true")

    def test_foreignOriginRefused(self) -> None:
        site = serve(CORS)
        for method in (b"OPTIONS", b"POST"):
            response = send(site, method, headers=[
                (b"Origin", b"https://evil.example"),
                (b"Access-Control-Request-Method", b"POST"),
            ])
            self.assertEqual(response.status, 403)
            self.assertIsNone(response.header(b"access-control-allow-origin"))

    def test_actualRequest(self) -> None:
        """
        An allowed origin gets llamaswap's headers, not the upstream's; a
        request without C{Origin} gets none; the UI's same-origin requests
        pass.
        """
        site = serve(CORS)
        response = send(site, headers=[(b"Origin", b"https://app.example")])
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.getRawHeaders(b"access-control-allow-origin"),
                         [b"https://app.example"])
        self.assertEqual(response.header(b"access-control-expose-headers"), b"X-Request-Id")
        self.assertEqual(response.header(b"vary"), b"Origin")
        plain = send(site)
        self.assertIsNone(plain.header(b"access-control-allow-origin"))
        same = send(site, b"POST", headers=[(b"Origin", b"http://127.0.0.1:8080")])
        self.assertEqual(same.status, 200)

    def test_privateNetworkNeedsOrigins(self) -> None:
        from llamaswap.config.errors import ConfigError

        self.assertRaises(ConfigError, loadConfigText,
                          "security: {cors: {allowPrivateNetwork: true}}\n", environ={})

    def test_unconfiguredKeepsLlamaSwapBehaviour(self) -> None:
        site = serve("models: {}\n")
        response = send(site, headers=[(b"Origin", b"https://x.example")])
        self.assertEqual(response.header(b"access-control-allow-origin"), b"*")


class WiredSiteTests(SynchronousTestCase):
    """
    The site L{llamaswap.web.site.buildSite} makes from L{WebParts} passes
    every request through the L{Guard} and the limits, reading the current
    configuration.
    """

    CONFIG = "models:\n  a:\n    cmd: x\n    proxy: http://127.0.0.1:9001\n"

    def test_hostCheckWhenLoopbackOnly(self) -> None:
        """
        Listening on loopback only without API keys, a foreign C{Host} is
        refused (403) and a loopback one served; a reload adding the name
        to C{security.allowedHosts} lets it in.
        """
        app = InMemoryLlamaSwap(self, self.CONFIG, loopbackOnly=True)
        answer, exchange = app.roundTrip("GET", "/v1/models")
        self.assertEqual((answer.code, exchange), (403, None))
        answer, _ = app.roundTrip("GET", "/v1/models", headers={"Host": "127.0.0.1:8080"})
        self.assertEqual(answer.code, 200)
        app.config.set(
            loadConfigText(self.CONFIG + "security: {allowedHosts: [llamaswap.test]}\n").config
        )
        answer, _ = app.roundTrip("GET", "/v1/models")
        self.assertEqual(answer.code, 200)

    def test_bodyLimitFromCurrentConfig(self) -> None:
        """
        C{limits.maxRequestBodyBytes} is read at request time: a reload
        lowering it refuses the next larger body with 413.
        """
        app = InMemoryLlamaSwap(self, self.CONFIG)
        body = {"model": "a", "input": "x" * 200}
        answer, exchange = app.roundTrip("POST", "/v1/embeddings", json=body)
        self.assertEqual(answer.code, 200)
        self.assertIsNotNone(exchange)
        app.config.set(loadConfigText(self.CONFIG + "limits: {maxRequestBodyBytes: 100}\n").config)
        answer, exchange = app.roundTrip("POST", "/v1/embeddings", json=body)
        self.assertEqual((answer.code, exchange), (413, None))
