"""
Tests for L{llamaswap.web.passthrough}: C{/upstream/<model>/<path>} and
C{/comfyui/<path>}.

The path functions are tested on their own; the rest runs a whole
llamaswap over real HTTP (L{test.harness}) with demo upstreams, whose
catch-all answer echoes the method, path, query and headers it received,
and the websocket echo server of L{test.web.test_tunnel}.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from twisted.internet import reactor
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from llamaswap.web.passthrough import (
    applyPin,
    escapedSuffix,
    findModelInPath,
    redirectCode,
)

from ..harness import Running, demoMacros, startLlamaSwap
from ..util import freePort
from .helpers import Client, UpstreamExchange
from .inmemory import InMemoryLlamaSwap
from .test_tunnel import (
    CLOSE,
    TEXT,
    acceptFor,
    connectWebsocket,
    headHeaders,
    headStatus,
    listenEcho,
)


class PathTests(SynchronousTestCase):
    """
    Finding the model in a passthrough path and keeping the client's
    escaping of the rest.
    """

    names = {"simple", "author/model", "author", "m1"}

    def find(self, rest: bytes) -> tuple[str, str, bytes] | None:
        match = findModelInPath(rest, self.names.__contains__)
        return None if match is None else (match.name, match.remaining, match.escaped)

    def test_longestPrefix(self) -> None:
        """
        The longest run of leading segments naming a model wins; the rest
        is what follows it (C{/} when nothing does).
        """
        self.assertEqual(self.find(b"simple/v1/chat"), ("simple", "/v1/chat", b"/v1/chat"))
        self.assertEqual(
            self.find(b"author/model/v1/chat"), ("author/model", "/v1/chat", b"/v1/chat")
        )
        self.assertEqual(self.find(b"author/model"), ("author/model", "/", b""))
        self.assertEqual(self.find(b"author/model/"), ("author/model", "/", b"/"))
        self.assertEqual(self.find(b"author/v1/chat"), ("author", "/v1/chat", b"/v1/chat"))
        self.assertIsNone(self.find(b"unknown/v1"))
        self.assertIsNone(self.find(b""))

    def test_escapedRest(self) -> None:
        """
        The rest keeps the client's escaping; a name may arrive with an
        escaped slash.
        """
        self.assertEqual(
            self.find(b"m1/api/userdata/workflows%2Fexample.json"),
            ("m1", "/api/userdata/workflows/example.json", b"/api/userdata/workflows%2Fexample.json"),
        )
        self.assertEqual(
            self.find(b"author/model/api/x%2Fy")[2], b"/api/x%2Fy"  # type: ignore[index]
        )
        self.assertEqual(
            self.find(b"author%2Fmodel/api/x%2Fy"), ("author/model", "/api/x/y", b"/api/x%2Fy")
        )
        self.assertEqual(
            self.find(b"m1/%E2%9C%93%2F/a%20b/%252F")[2],  # type: ignore[index]
            b"/%E2%9C%93%2F/a%20b/%252F",
        )
        self.assertEqual(self.find(b"%6D1/x")[:2], ("m1", "/x"))  # type: ignore[index]

    def test_escapedSuffix(self) -> None:
        """
        L{escapedSuffix} strips a decoded prefix from a raw path, or says
        it is not there.
        """
        self.assertEqual(escapedSuffix(b"author%2Fmodel/api/x%2Fy", b"author/model"), b"/api/x%2Fy")
        self.assertEqual(escapedSuffix(b"m1", b"m1"), b"")
        self.assertEqual(escapedSuffix(b"%E2%9C%93/x", "✓".encode()), b"/x")
        self.assertIsNone(escapedSuffix(b"m2/x", b"m1"))
        self.assertIsNone(escapedSuffix(b"m", b"m1"))
        # A % that starts no escape is itself, as when decoding.
        self.assertEqual(escapedSuffix(b"m%2G", b"m%"), b"2G")

    def test_pins(self) -> None:
        """
        The longest pin that is a whole-segment prefix replaces it, the
        rest keeping its escaping; a pin to C{""} empties the path.
        """
        pins = {"public": "real", "author": "a", "author/public": "target", "off": ""}
        self.assertEqual(applyPin(b"public/v1/x%2Fy", pins), b"real/v1/x%2Fy")
        self.assertEqual(applyPin(b"author/public/x", pins), b"target/x")
        self.assertEqual(applyPin(b"author%2Fpublic", pins), b"target")
        self.assertEqual(applyPin(b"author/other", pins), b"a/other")
        self.assertEqual(applyPin(b"publicity/x", pins), b"publicity/x")
        self.assertEqual(applyPin(b"off/x", pins), b"")
        self.assertEqual(applyPin(b"other/x", {}), b"other/x")

    def test_redirectCode(self) -> None:
        """
        GET and HEAD are redirected with 301, everything else with 308.
        """
        self.assertEqual([redirectCode(m) for m in (b"GET", b"HEAD")], [301, 301])
        self.assertEqual([redirectCode(m) for m in (b"POST", b"PUT", b"DELETE")], [308] * 3)


class Answer:
    """
    A response read in full.
    """

    def __init__(self, code: int, headers: Headers, body: bytes) -> None:
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


async def fetch(
    running: Running, method: bytes, target: bytes, headers: dict[bytes, list[bytes]] | None = None,
    body: bytes | None = None,
) -> Answer:
    """
    Send C{method} C{target} exactly as written (no URL normalisation, no
    redirects followed).
    """
    agent = Agent(reactor, pool=running.pool)
    producer = FileBodyProducer(BytesIO(body)) if body is not None else None
    response = await agent.request(
        method, running.url.encode() + target, Headers(headers or {}), producer
    )
    data = await readBody(response)
    return Answer(response.code, response.headers, data)


def running(app: Running) -> list[str]:
    """
    The models that are not stopped.
    """
    return [model for model, _ in app.app.router.running()]


def ports() -> str:
    """
    A C{startPort} line with a port that was just free, so that the demo
    upstreams do not meet other test runs' on the default ports.
    """
    return f"startPort: {freePort()}\n"


MODELS = """
models:
  m1:
    cmd: ${demo} --model m1
    aliases: [first]
  author:
    cmd: ${demo} --model author
  author/model:
    cmd: ${demo} --model author-model
"""


def config(extra: str = "") -> str:
    """
    L{MODELS} with the demo macro, fresh ports and C{extra}.
    """
    return demoMacros() + ports() + MODELS + extra


LOCAL_MODELS = """
models:
  m1:
    cmd: x
    proxy: http://127.0.0.1:9001
    aliases: [first]
  author:
    cmd: x
    proxy: http://127.0.0.1:9002
  author/model:
    cmd: x
    proxy: http://127.0.0.1:9003
"""

PORTS = {"m1": 9001, "author": 9002, "author/model": 9003}


def reached(exchange: UpstreamExchange | None) -> tuple[str, str]:
    """
    Which model's server an exchange went to, and the path and query it
    asked for (as sent, still escaped).
    """
    assert exchange is not None
    uri = exchange.uri.decode()
    port = int(uri.split(":")[2].split("/")[0])
    model = {p: m for m, p in PORTS.items()}[port]
    return model, uri[uri.index("/", len("http://")) :]


class InMemoryPassthroughTests(SynchronousTestCase):
    """
    C{/upstream} over the app's site in memory.
    """

    def test_resolution(self) -> None:
        """
        The longest name wins, escaped slashes in names count, aliases
        work, and the rest reaches the upstream escaped as sent, with the
        query.
        """
        app = InMemoryLlamaSwap(self, LOCAL_MODELS)
        answer, exchange = app.roundTrip("GET", "/upstream/author/model/v1/x%2Fy?q=%2F&r=a+b")
        self.assertEqual(answer.code, 200, answer.body)
        self.assertEqual(reached(exchange), ("author/model", "/v1/x%2Fy?q=%2F&r=a+b"))
        answer, exchange = app.roundTrip("POST", "/upstream/author%2Fmodel/api/x%2Fy", data=b"{}")
        assert exchange is not None
        self.assertEqual((reached(exchange), exchange.method), (("author/model", "/api/x%2Fy"), b"POST"))
        _, exchange = app.roundTrip("GET", "/upstream/author/v1/chat")
        self.assertEqual(reached(exchange), ("author", "/v1/chat"))
        _, exchange = app.roundTrip("GET", "/upstream/first/a%20b/%252F/%E2%9C%93%2F")
        self.assertEqual(reached(exchange), ("m1", "/a%20b/%252F/%E2%9C%93%2F"))
        _, exchange = app.roundTrip("GET", "/upstream/m1/")
        self.assertEqual(reached(exchange), ("m1", "/"))

    def test_redirectsAndUnknown(self) -> None:
        """
        A model path without its slash is redirected (301 for GET and
        HEAD, 308 otherwise, query kept), C{GET /upstream} goes to the UI,
        unknown names are 404; none of it starts a model.
        """
        app = InMemoryLlamaSwap(self, LOCAL_MODELS)
        for method, code in [("GET", 301), ("HEAD", 301), ("POST", 308), ("DELETE", 308)]:
            answer = app.send(method, "/upstream/m1?x=1", allow_redirects=False)
            self.assertEqual(answer.code, code, method)
            self.assertEqual(answer.header("location"), "/upstream/m1/?x=1")
        answer = app.send("GET", "/upstream/author%2Fmodel", allow_redirects=False)
        self.assertEqual((answer.code, answer.header("location")), (301, "/upstream/author/model/"))
        answer = app.send("GET", "/upstream", allow_redirects=False)
        self.assertEqual((answer.code, answer.header("location")), (302, "/ui/#/models"))
        for target in ["/upstream/nope/v1", "/upstream/"]:
            answer = app.send("GET", target)
            self.assertEqual(answer.code, 404, target)
            self.assertEqual(answer.json()["error"]["message"], "model not found")
        answer = app.send("GET", "/comfyui/")
        self.assertEqual(answer.code, 404)
        self.assertEqual(answer.json()["error"]["message"], "local model comfyui_auto not found")
        self.assertEqual(app.router.running(), [])
        self.assertEqual(app.upstream.exchanges, [])

    def test_ignorePaths(self) -> None:
        """
        An ignored path (static assets by default) does not start a model:
        409 while it is not ready.  Any other path starts it, and then the
        ignored path is relayed too.
        """
        app = InMemoryLlamaSwap(self, LOCAL_MODELS)
        answer, exchange = app.roundTrip("GET", "/upstream/m1/assets/app.js")
        self.assertEqual((answer.code, exchange), (409, None))
        self.assertEqual(
            answer.json()["error"]["message"],
            "model m1 is not loaded; path matches upstream.ignorePaths",
        )
        self.assertEqual(app.router.running(), [])
        answer, exchange = app.roundTrip("GET", "/upstream/m1/?_=123")
        self.assertEqual(answer.code, 200)
        self.assertEqual([m for m, _ in app.router.running()], ["m1"])
        _, exchange = app.roundTrip("GET", "/upstream/m1/assets/app.js")
        self.assertEqual(reached(exchange), ("m1", "/assets/app.js"))

    def test_auth(self) -> None:
        """
        With API keys the passthrough needs one (and the upstream sees the
        client's credentials); C{GET /upstream} does not.
        """
        app = InMemoryLlamaSwap(self, LOCAL_MODELS + "apiKeys: [sekrit]\n")
        self.assertEqual(app.send("GET", "/upstream", allow_redirects=False).code, 302)
        self.assertEqual(app.send("GET", "/upstream/m1/x").code, 401)
        self.assertEqual(app.send("GET", "/comfyui/").code, 401)
        answer, exchange = app.roundTrip(
            "GET", "/upstream/m1/x", headers={"authorization": "Bearer sekrit"}
        )
        assert exchange is not None
        self.assertEqual(answer.code, 200)
        self.assertEqual(
            exchange.sentHeaders().getRawHeaders(b"authorization"), [b"Bearer sekrit"]
        )

    def test_profilePin(self) -> None:
        """
        The active profile's pins rewrite the model part of the path.
        """
        app = InMemoryLlamaSwap(self, LOCAL_MODELS + "profiles:\n  p:\n    pins:\n      public: m1\n")
        self.assertEqual(app.send("GET", "/upstream/public/x").code, 404)
        app.activeProfile.set("p")
        _, exchange = app.roundTrip("GET", "/upstream/public/custom%2Fx")
        self.assertEqual(reached(exchange), ("m1", "/custom%2Fx"))

    def test_tracked(self) -> None:
        """
        A passthrough request is tracked while in flight, recorded under
        its model with the path after it, and its lease is released when
        the relay ends.
        """
        app = InMemoryLlamaSwap(self, LOCAL_MODELS)
        pending = app.request("GET", "/upstream/m1/v1/x?y=1")
        app.flush()
        app.settle()
        [track] = app.tracker.inflight.values()
        self.assertEqual((track.model, track.path), ("m1", "/v1/x"))
        self.assertEqual(app.supervisors["m1"].started, 1)
        app.respond()
        self.assertEqual(app.answer(pending).code, 200)
        self.assertEqual(app.tracker.inflight, {})
        self.assertEqual(app.supervisors["m1"].finished, 1)


class PassthroughTests(TestCase):
    """
    C{/upstream} over real HTTP with demo upstreams.
    """

    timeout = 60

    async def test_peer(self) -> None:
        """
        A peer model is relayed to its peer with the peer's host, its API
        key and no forwarding headers; websockets too.
        """
        echo, port = listenEcho(self)
        app = await startLlamaSwap(self, config(f"""
peers:
  remote:
    proxy: http://127.0.0.1:{port}
    apiKey: peer-key
    models: [big/model]
"""))
        answer = await fetch(
            app, b"GET", b"/upstream/remote/big/model/v1/x%2Fy?a=1",
            {b"x-forwarded-for": [b"10.0.0.1"], b"authorization": [b"Bearer mine"]},
        )
        self.assertEqual(answer.code, 200, answer.body)
        seen = answer.json()
        self.assertEqual(seen["target"], "/v1/x%2Fy?a=1")
        headers = {name.lower(): value for name, value in seen["headers"]}
        self.assertEqual(headers["host"], f"127.0.0.1:{port}")
        self.assertEqual(headers["authorization"], "Bearer peer-key")
        self.assertEqual(headers["x-api-key"], "peer-key")
        self.assertNotIn("x-forwarded-for", headers)

        client, head = await connectWebsocket(
            self, app.port.getHost().port, b"/upstream/remote/big/model/ws"
        )
        self.assertEqual(headStatus(head), 101)
        method, target, headers = echo.requests[-1]
        self.assertEqual(target, b"/ws")
        self.assertEqual(headers.getRawHeaders(b"host"), [b"127.0.0.1:%d" % (port,)])
        self.assertEqual(headers.getRawHeaders(b"x-api-key"), [b"peer-key"])
        self.assertFalse(headers.hasHeader(b"x-forwarded-for"))
        client.send(TEXT, b"via peer")
        self.assertEqual(await client.nextFrame(), (TEXT, b"via peer"))
        self.assertEqual(running(app), [])


#: Websocket upgrade headers for L{fetch} (which adds C{Connection: close}
#: too, so the answer to a refused upgrade ends with its connection).
UPGRADE = {
    b"connection": [b"Upgrade"],
    b"upgrade": [b"websocket"],
    b"sec-websocket-key": [b"dGhlIHNhbXBsZSBub25jZQ=="],
    b"sec-websocket-version": [b"13"],
}


def wsModel(port: int, name: str = "ws", compat: str = "") -> str:
    """
    One model C{name} whose proxy is the websocket echo server on C{port}.
    """
    return demoMacros() + ports() + f"""
models:
  {name}:
    cmd: ${{demo}} --model {name}
    proxy: http://127.0.0.1:{port}
{compat}"""


UPGRADE_HEADERS = [
    (b"Connection", b"Upgrade"),
    (b"Upgrade", b"websocket"),
    (b"Sec-WebSocket-Key", b"abc"),
    (b"Sec-WebSocket-Version", b"13"),
]
SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Accept: xyz\r\n\r\n"
)
WS_MODEL = """
models:
  ws:
    cmd: x
    proxy: http://127.0.0.1:9009
"""


class InMemoryWebsocketTests(SynchronousTestCase):
    """
    Websockets through C{/upstream} and C{/comfyui}, in memory.
    """

    def upgrade(self, app: InMemoryLlamaSwap, path: bytes) -> Client:
        client = Client(app.site)
        client.send(b"GET", path, b"", UPGRADE_HEADERS)
        app.settle()
        return client

    def test_leaseForTheDuration(self) -> None:
        """
        A websocket starts its model and holds a lease until it closes (on
        both sides); the upstream gets the path as escaped and the
        client's C{Host}; it is not tracked as a model request.
        """
        app = InMemoryLlamaSwap(self, WS_MODEL)
        client = self.upgrade(app, b"/upstream/ws/ws?clientId=a%2Fb")
        self.assertEqual(app.tunnelURLs, [b"http://127.0.0.1:9009/ws?clientId=a%2Fb"])
        upstream, transport = app.tunnels.connections[-1]
        head = transport.value()
        self.assertTrue(head.startswith(b"GET /ws?clientId=a%2Fb HTTP/1.1\r\n"), head)
        self.assertIn(b"\r\nHost: proxy.example:8080\r\n", head)
        self.assertEqual([m for m, _ in app.router.running()], ["ws"])
        self.assertEqual(app.router.scheduler.inFlight("ws"), 1)
        upstream.dataReceived(SWITCH)
        self.assertTrue(client.transport.value().startswith(b"HTTP/1.1 101 "))
        self.assertEqual(app.tracker.inflight, {})
        upstream.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(app.router.scheduler.inFlight("ws"), 1)
        # The tunnel took the connection over from twisted.web.
        client.transport.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(app.router.scheduler.inFlight("ws"), 0)

    def test_refusedUpgrade(self) -> None:
        """
        An upgrade the upstream refuses reaches the client as the
        upstream's answer, and the lease is released.
        """
        app = InMemoryLlamaSwap(self, WS_MODEL)
        client = self.upgrade(app, b"/upstream/ws/reject")
        upstream, _ = app.tunnels.connections[-1]
        upstream.dataReceived(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 18\r\n\r\nno websockets here"
        )
        response = client.response()
        self.assertEqual((response.status, response.body), (403, b"no websockets here"))
        self.assertEqual([m for m, _ in app.router.running()], ["ws"])
        self.assertEqual(app.router.scheduler.inFlight("ws"), 0)

    def test_ignoreWebsockets(self) -> None:
        """
        With C{compat.ignoreWebsockets} a websocket cannot start the model
        (409) and, once the model runs, holds no lease.
        """
        app = InMemoryLlamaSwap(self, WS_MODEL + "    compat:\n      ignoreWebsockets: true\n")
        refused = self.upgrade(app, b"/upstream/ws/ws").response()
        self.assertEqual(refused.status, 409)
        self.assertEqual(
            json.loads(refused.body)["error"]["message"],
            "model ws is not loaded; ignored websocket requests cannot start it",
        )
        self.assertEqual((app.router.running(), app.tunnels.connections), ([], []))
        self.assertEqual(app.roundTrip("GET", "/upstream/ws/")[0].code, 200)
        client = self.upgrade(app, b"/upstream/ws/ws")
        upstream, _ = app.tunnels.connections[-1]
        upstream.dataReceived(SWITCH)
        self.assertTrue(client.transport.value().startswith(b"HTTP/1.1 101 "))
        self.assertEqual(app.router.scheduler.inFlight("ws"), 0)

    def test_comfyui(self) -> None:
        """
        C{/comfyui} redirects to C{/comfyui/}; only the root starts
        C{comfyui_auto}; other paths (the websocket too) get 409 until it
        runs, then are relayed with their escaping, websockets without a
        lease.
        """
        app = InMemoryLlamaSwap(self, WS_MODEL.replace("ws:", "comfyui_auto:"))
        for method, code in [("GET", 301), ("HEAD", 301), ("POST", 308)]:
            answer = app.send(method, "/comfyui?token=value", allow_redirects=False)
            self.assertEqual((answer.code, answer.header("location")), (code, "/comfyui/?token=value"))
        answer = app.send("POST", "/comfyui/api/prompt", data=b"{}")
        self.assertEqual(answer.code, 409)
        self.assertIn("only /comfyui/ can start it", answer.json()["error"]["message"])
        self.assertEqual(self.upgrade(app, b"/comfyui/ws?clientId=1").response().status, 409)
        self.assertEqual((app.router.running(), app.upstream.exchanges), ([], []))
        answer, exchange = app.roundTrip("GET", "/comfyui/")
        self.assertEqual(answer.code, 200)
        _, exchange = app.roundTrip("POST", "/comfyui/api/x%2Fy?q=1", data=b"{}")
        assert exchange is not None
        self.assertEqual(exchange.uri, b"http://127.0.0.1:9009/api/x%2Fy?q=1")
        client = self.upgrade(app, b"/comfyui/ws?clientId=1")
        upstream, transport = app.tunnels.connections[-1]
        self.assertTrue(transport.value().startswith(b"GET /ws?clientId=1 HTTP/1.1\r\n"))
        upstream.dataReceived(SWITCH)
        self.assertTrue(client.transport.value().startswith(b"HTTP/1.1 101 "))
        self.assertEqual(app.router.scheduler.inFlight("comfyui_auto"), 0)


class WebsocketTests(TestCase):
    """
    A websocket through C{/upstream} end to end: real sockets, real
    frames, a real upstream process (the rest is in
    L{InMemoryWebsocketTests}).
    """

    timeout = 60

    def inFlight(self, app: Running, model: str) -> int:
        """
        The requests C{model} is serving (leases held).
        """
        return app.app.router.scheduler.inFlight(model)

    async def test_leaseForTheDuration(self) -> None:
        """
        A websocket starts its model and holds a lease until it closes,
        whichever side closes it; frames pass both ways.
        """
        echo, echoPort = listenEcho(self)
        app = await startLlamaSwap(self, wsModel(echoPort))
        port = app.port.getHost().port
        client, head = await connectWebsocket(self, port, b"/upstream/ws/ws?clientId=a%2Fb")
        self.assertEqual(headStatus(head), 101, head)
        self.assertEqual(
            headHeaders(head).getRawHeaders(b"sec-websocket-accept"), [acceptFor(client.key)]
        )
        self.assertEqual(running(app), ["ws"])
        method, target, headers = echo.requests[-1]
        self.assertEqual(target, b"/ws?clientId=a%2Fb")
        self.assertEqual(headers.getRawHeaders(b"host"), [b"llamaswap.localhost"])
        self.assertEqual(headers.getRawHeaders(b"x-forwarded-for"), [b"127.0.0.1"])
        self.assertEqual(self.inFlight(app, "ws"), 1)
        client.send(TEXT, b"ping")
        self.assertEqual(await client.nextFrame(), (TEXT, b"ping"))
        client.send(CLOSE, b"\x03\xe8")
        self.assertEqual((await client.nextFrame())[0], CLOSE)
        await client.closed
        self.assertEqual(self.inFlight(app, "ws"), 0)

        client, head = await connectWebsocket(self, port, b"/upstream/ws/ws")
        self.assertEqual(self.inFlight(app, "ws"), 1)
        client.send(TEXT, b"close-please")
        await client.closed
        self.assertEqual(self.inFlight(app, "ws"), 0)

        client, head = await connectWebsocket(self, port, b"/upstream/ws/ws")
        self.assertEqual(self.inFlight(app, "ws"), 1)
        client.transport.loseConnection()
        await echo.connections[-1].closed
        self.assertEqual(self.inFlight(app, "ws"), 0)
