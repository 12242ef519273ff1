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


class PassthroughTests(TestCase):
    """
    C{/upstream} over real HTTP with demo upstreams.
    """

    timeout = 60

    async def test_resolution(self) -> None:
        """
        The longest name wins, escaped slashes in names count, aliases
        work, and the rest reaches the upstream escaped as sent, with the
        query.
        """
        app = await startLlamaSwap(self, config())
        answer = await fetch(app, b"GET", b"/upstream/author/model/v1/x%2Fy?q=%2F&r=a+b")
        self.assertEqual(answer.code, 200, answer.body)
        echo = answer.json()
        self.assertEqual(
            (echo["model"], echo["path"], echo["query"]), ("author-model", "/v1/x%2Fy", "q=%2F&r=a+b")
        )
        echo = (await fetch(app, b"POST", b"/upstream/author%2Fmodel/api/x%2Fy", body=b"{}")).json()
        self.assertEqual((echo["model"], echo["path"], echo["method"]), ("author-model", "/api/x%2Fy", "POST"))
        echo = (await fetch(app, b"GET", b"/upstream/author/v1/chat")).json()
        self.assertEqual((echo["model"], echo["path"]), ("author", "/v1/chat"))
        echo = (await fetch(app, b"GET", b"/upstream/first/a%20b/%252F/%E2%9C%93%2F")).json()
        self.assertEqual((echo["model"], echo["path"]), ("m1", "/a%20b/%252F/%E2%9C%93%2F"))
        echo = (await fetch(app, b"GET", b"/upstream/m1/")).json()
        self.assertEqual(echo["path"], "/")

    async def test_redirectsAndUnknown(self) -> None:
        """
        A model path without its slash is redirected (301 for GET and
        HEAD, 308 otherwise, query kept), C{GET /upstream} goes to the UI,
        unknown names are 404; none of it starts a model.
        """
        app = await startLlamaSwap(self, config())
        for method, code in [(b"GET", 301), (b"HEAD", 301), (b"POST", 308), (b"DELETE", 308)]:
            answer = await fetch(app, method, b"/upstream/m1?x=1")
            self.assertEqual(answer.code, code, method)
            self.assertEqual(answer.header(b"location"), b"/upstream/m1/?x=1")
        answer = await fetch(app, b"GET", b"/upstream/author%2Fmodel")
        self.assertEqual((answer.code, answer.header(b"location")), (301, b"/upstream/author/model/"))
        answer = await fetch(app, b"GET", b"/upstream")
        self.assertEqual((answer.code, answer.header(b"location")), (302, b"/ui/models"))
        for target in [b"/upstream/nope/v1", b"/upstream/"]:
            answer = await fetch(app, b"GET", target)
            self.assertEqual(answer.code, 404, target)
            self.assertEqual(answer.json()["error"]["message"], "model not found")
        answer = await fetch(app, b"GET", b"/comfyui/")
        self.assertEqual(answer.code, 404)
        self.assertEqual(answer.json()["error"]["message"], "local model comfyui_auto not found")
        self.assertEqual(running(app), [])

    async def test_ignorePaths(self) -> None:
        """
        An ignored path (static assets by default) does not start a model:
        409 while it is not ready.  Any other path starts it, and then the
        ignored path is relayed too.
        """
        app = await startLlamaSwap(self, config())
        answer = await fetch(app, b"GET", b"/upstream/m1/assets/app.js")
        self.assertEqual(answer.code, 409)
        self.assertEqual(
            answer.json()["error"]["message"],
            "model m1 is not loaded; path matches upstream.ignorePaths",
        )
        self.assertEqual(running(app), [])
        answer = await fetch(app, b"GET", b"/upstream/m1/?_=123")
        self.assertEqual(answer.code, 200)
        self.assertEqual(running(app), ["m1"])
        echo = (await fetch(app, b"GET", b"/upstream/m1/assets/app.js")).json()
        self.assertEqual(echo["path"], "/assets/app.js")

    async def test_auth(self) -> None:
        """
        With API keys the passthrough needs one (and the upstream sees the
        client's credentials); C{GET /upstream} does not.
        """
        app = await startLlamaSwap(self, config("apiKeys: [sekrit]\n"))
        self.assertEqual((await fetch(app, b"GET", b"/upstream")).code, 302)
        self.assertEqual((await fetch(app, b"GET", b"/upstream/m1/x")).code, 401)
        self.assertEqual((await fetch(app, b"GET", b"/comfyui/")).code, 401)
        answer = await fetch(
            app, b"GET", b"/upstream/m1/x", {b"authorization": [b"Bearer sekrit"]}
        )
        self.assertEqual(answer.code, 200)
        self.assertIn(["Authorization", "Bearer sekrit"], answer.json()["headers"])

    async def test_profilePin(self) -> None:
        """
        The active profile's pins rewrite the model part of the path.
        """
        app = await startLlamaSwap(
            self, config("profiles:\n  p:\n    pins:\n      public: m1\n")
        )
        self.assertEqual((await fetch(app, b"GET", b"/upstream/public/x")).code, 404)
        app.app.activeProfile = "p"
        echo = (await fetch(app, b"GET", b"/upstream/public/custom%2Fx")).json()
        self.assertEqual((echo["model"], echo["path"]), ("m1", "/custom%2Fx"))

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


class WebsocketTests(TestCase):
    """
    Websockets through C{/upstream} and C{/comfyui}.
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

    async def test_refusedUpgrade(self) -> None:
        """
        An upgrade the upstream refuses reaches the client as the
        upstream's answer, and the lease is released.
        """
        echo, echoPort = listenEcho(self)
        app = await startLlamaSwap(self, wsModel(echoPort))
        answer = await fetch(app, b"GET", b"/upstream/ws/reject", UPGRADE)
        self.assertEqual((answer.code, answer.body), (403, b"no websockets here"))
        self.assertEqual(running(app), ["ws"])
        self.assertEqual(self.inFlight(app, "ws"), 0)

    async def test_ignoreWebsockets(self) -> None:
        """
        With C{compat.ignoreWebsockets} a websocket cannot start the model
        (409) and, once the model runs, holds no lease.
        """
        echo, echoPort = listenEcho(self)
        app = await startLlamaSwap(
            self, wsModel(echoPort, compat="    compat:\n      ignoreWebsockets: true\n")
        )
        port = app.port.getHost().port
        answer = await fetch(app, b"GET", b"/upstream/ws/ws", UPGRADE)
        self.assertEqual(answer.code, 409)
        self.assertEqual(
            answer.json()["error"]["message"],
            "model ws is not loaded; ignored websocket requests cannot start it",
        )
        self.assertEqual(running(app), [])
        self.assertEqual((await fetch(app, b"GET", b"/upstream/ws/")).code, 200)
        client, head = await connectWebsocket(self, port, b"/upstream/ws/ws")
        self.assertEqual(headStatus(head), 101)
        self.assertEqual(self.inFlight(app, "ws"), 0)
        client.send(TEXT, b"still here")
        self.assertEqual(await client.nextFrame(), (TEXT, b"still here"))

    async def test_comfyui(self) -> None:
        """
        C{/comfyui} redirects to C{/comfyui/}; only the root starts
        C{comfyui_auto}; other paths (the websocket too) get 409 until it
        runs, then are relayed with their escaping, websockets without a
        lease.
        """
        echo, echoPort = listenEcho(self)
        app = await startLlamaSwap(self, wsModel(echoPort, name="comfyui_auto"))
        port = app.port.getHost().port
        for method, code in [(b"GET", 301), (b"HEAD", 301), (b"POST", 308)]:
            answer = await fetch(app, method, b"/comfyui?token=value")
            self.assertEqual((answer.code, answer.header(b"location")), (code, b"/comfyui/?token=value"))
        answer = await fetch(app, b"POST", b"/comfyui/api/prompt", body=b"{}")
        self.assertEqual(answer.code, 409)
        self.assertIn("only /comfyui/ can start it", answer.json()["error"]["message"])
        answer = await fetch(app, b"GET", b"/comfyui/ws?clientId=1", UPGRADE)
        self.assertEqual(answer.code, 409)
        self.assertEqual(running(app), [])
        self.assertEqual([t for _, t, _ in echo.requests if t != b"/health"], [])

        answer = await fetch(app, b"GET", b"/comfyui/?token=value")
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.json()["target"], "/?token=value")
        answer = await fetch(app, b"GET", b"/comfyui/api/userdata/a%2Fb%252F.json?x=1")
        self.assertEqual(answer.json()["target"], "/api/userdata/a%2Fb%252F.json?x=1")
        client, head = await connectWebsocket(self, port, b"/comfyui/ws?clientId=1")
        self.assertEqual(headStatus(head), 101)
        self.assertEqual(self.inFlight(app, "comfyui_auto"), 0)
        client.send(TEXT, b"{}")
        self.assertEqual(await client.nextFrame(), (TEXT, b"{}"))
