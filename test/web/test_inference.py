"""
Tests for L{llamaswap.web.inference}: model-routed requests go through a
whole llamaswap over real HTTP to demo upstreams (processes for local
models, an in-process demo server for peers), and each test checks what the
upstream received (its C{/_demo/requests} log) and what the client got.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyChannel

from llamaswap.config.load import loadConfigText
from llamaswap.demo.server import DemoOptions, DemoUpstream, makeSite
from llamaswap.web.inference import (
    BODY_ROUTES,
    QUERY_ROUTES,
    VERSIONLESS_ROUTES,
    ModelRoute,
    Upstream,
    upstreamPath,
)

from ..harness import Running, demoMacros, startLlamaSwap
from ..util import freePort, poll
from .test_multipart import BOUNDARY, encodeForm

MULTIPART_ROUTES = ("/v1/audio/transcriptions", "/v1/images/edits")
MULTIPART_TYPE = "multipart/form-data; boundary=" + BOUNDARY.decode()

#: A body every JSON route of the demo upstream accepts.
JSON_BODY = {
    "model": "a",
    "messages": [{"role": "user", "content": "hi"}],
    "prompt": "hi",
    "input": "hi",
    "max_tokens": 2,
}


def header(entry: dict[str, Any], name: str) -> list[str]:
    """
    The values of header C{name} in a demo request log entry.
    """
    return [v for k, v in entry["headers"] if k.lower() == name.lower()]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def received(running: Running, model: str) -> list[dict[str, Any]]:
    """
    The requests model C{model}'s demo upstream has received.
    """
    proxy = running.app.config.models[model].proxy
    response = await treq.get(proxy + "/_demo/requests", pool=running.pool)
    return list(await response.json())


async def lastReceived(running: Running, model: str) -> dict[str, Any]:
    """
    The last request model C{model}'s upstream received.
    """
    return (await received(running, model))[-1]


def config(body: str) -> str:
    """
    A configuration with the demo macro and a free start port (other test
    runs may use the default one).
    """
    return demoMacros() + f"startPort: {freePort()}\n" + body


class DemoPeer:
    """
    A demo upstream served in this process, standing in for a remote
    OpenAI-compatible server.

    @ivar url: its base URL.
    @ivar upstream: its state (C{requests} is what it received).
    """

    def __init__(self, test: TestCase) -> None:
        self.upstream = DemoUpstream(DemoOptions(model="peer-model", silent=True), reactor, os.getpid())
        site = makeSite(self.upstream, reactor)
        self.connections: set[Any] = set()
        build = site.buildProtocol

        def buildProtocol(addr: Any) -> Any:
            protocol = build(addr)
            lost = protocol.connectionLost

            def connectionLost(reason: Any) -> None:
                self.connections.discard(protocol)
                lost(reason)

            protocol.connectionLost = connectionLost
            self.connections.add(protocol)
            return protocol

        site.buildProtocol = buildProtocol  # type: ignore[method-assign]
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        test.addCleanup(self.stop)

    async def stop(self) -> None:
        await self.port.stopListening()
        for protocol in list(self.connections):
            # twisted.web wraps its HTTPChannel; the wrapper has no transport.
            getattr(protocol, "_channel", protocol).transport.abortConnection()
        await poll(lambda: not self.connections, 5, "peer connections to close", 0.01)

    @property
    def last(self) -> dict[str, Any]:
        """
        The last request it received.
        """
        return self.upstream.requests[-1]


class RoutesTests(TestCase):
    """
    Every model-routed route reaches the model's upstream at the right path
    with the client's bytes.
    """

    timeout = 60

    async def test_jsonRoutes(self) -> None:
        """
        Each JSON route relays the body untouched (same bytes) to the same
        path, or with C{/v} or C{/audioapi} removed, and the client gets
        the upstream's answer.
        """
        running = await startLlamaSwap(self, config("models:\n  a:\n    cmd: ${demo}\n"))
        raw = json.dumps(JSON_BODY, indent=1).encode()
        for path in BODY_ROUTES + VERSIONLESS_ROUTES:
            if path in MULTIPART_ROUTES:
                continue
            response = await running.post(
                path + "?x=1", data=raw, headers={"Content-Type": "application/json"}
            )
            text = await response.text()
            self.assertEqual(response.code, 200, (path, text))
            self.assertEqual(response.headers.getRawHeaders("x-demo-model"), ["demo"], path)
            entry = await lastReceived(running, "a")
            expected = path[2:] if path.startswith("/v/") else path
            expected = expected.removeprefix("/audioapi")
            self.assertEqual(entry["path"], expected + "?x=1")
            self.assertEqual(entry["body_sha256"], sha(raw), path)

    async def test_queryRoutes(self) -> None:
        """
        The GET routes take the model from the query and relay path and
        query as they are.
        """
        running = await startLlamaSwap(self, config("models:\n  a:\n    cmd: ${demo}\n"))
        for path in QUERY_ROUTES:
            response = await running.get(path + "?b=2&model=a&c=%2F")
            body = await response.json()
            self.assertEqual(response.code, 200, body)
            self.assertEqual(body["path"], path)
            self.assertEqual(body["query"], "b=2&model=a&c=%2F")
            self.assertEqual(body["method"], "GET")
        response = await running.get("/props")
        self.assertEqual(response.code, 404)
        self.assertIn("no model id could be identified", await response.text())

    async def test_multipartRoutes(self) -> None:
        """
        Multipart uploads are routed by their C{model} field wherever it is
        in the form and arrive byte-identical, content type and all; with
        C{useModelName} only the model field's content differs.
        """
        running = await startLlamaSwap(self, config("""
models:
  a:
    cmd: ${demo}
  b:
    cmd: ${demo}
    useModelName: served-b
"""))
        audio = bytes(range(256)) * 2000
        for path in MULTIPART_ROUTES:
            body = encodeForm([("file", "x.wav", audio), ("model", None, b"a"),
                               ("language", None, b"en")])
            response = await running.post(
                path, data=body, headers={"Content-Type": MULTIPART_TYPE}
            )
            echo = await response.json()
            self.assertEqual(response.code, 200, path)
            self.assertEqual(echo["path"], path)
            self.assertEqual(echo["body_sha256"], sha(body))
            self.assertEqual(header(echo, "content-type"), [MULTIPART_TYPE])

            body = encodeForm([("file", "x.wav", audio), ("model", None, b"b")])
            response = await running.post(
                path, data=body, headers={"Content-Type": MULTIPART_TYPE}
            )
            echo = await response.json()
            self.assertEqual(response.code, 200, path)
            expected = encodeForm([("file", "x.wav", audio), ("model", None, b"served-b")])
            self.assertEqual(echo["body_sha256"], sha(expected))
            self.assertEqual(echo["body_length"], len(expected))
            self.assertEqual(echo["model"], "demo")
            self.assertEqual((await lastReceived(running, "b"))["path"], path)

    async def test_multipartQueryModel(self) -> None:
        """
        A form without a C{model} field is routed by the query; a malformed
        form names no model.
        """
        running = await startLlamaSwap(self, config("models:\n  a:\n    cmd: ${demo}\n"))
        body = encodeForm([("file", "x.png", b"PNG")])
        response = await running.post(
            "/v1/images/edits?model=a", data=body, headers={"Content-Type": MULTIPART_TYPE}
        )
        echo = await response.json()
        self.assertEqual(response.code, 200)
        self.assertEqual((echo["query"], echo["body_sha256"]), ("model=a", sha(body)))
        response = await running.post(
            "/v1/images/edits?model=a", data=b"junk", headers={"Content-Type": MULTIPART_TYPE}
        )
        self.assertEqual(response.code, 404)
        self.assertIn("no model id could be identified", await response.text())

    async def test_urlencoded(self) -> None:
        """
        An urlencoded body is routed by its C{model} field and relayed as
        it is; a JSON body without a JSON content type names no model.
        """
        running = await startLlamaSwap(self, config("models:\n  a:\n    cmd: ${demo}\n"))
        response = await running.post("/v1/audio/speech", data={"model": "a", "input": "hi"})
        echo = await response.json()
        self.assertEqual(response.code, 200)
        self.assertEqual(echo["body"], "model=a&input=hi")
        response = await running.post("/v1/chat/completions", data=json.dumps(JSON_BODY).encode())
        self.assertEqual(response.code, 404)
        self.assertEqual((await response.json())["error"]["message"],
                         "no model id could be identified")

    async def test_headers(self) -> None:
        """
        A local upstream gets the client's C{Host} and C{Authorization} and
        the client's address appended to C{X-Forwarded-For}.
        """
        running = await startLlamaSwap(self, config("models:\n  a:\n    cmd: ${demo}\n"))
        response = await running.post(
            "/v1/chat/completions",
            json=JSON_BODY,
            headers={"Authorization": "Bearer client", "X-Forwarded-For": "10.0.0.1"},
        )
        self.assertEqual(response.code, 200)
        entry = await lastReceived(running, "a")
        self.assertEqual(header(entry, "host"), [running.url.removeprefix("http://")])
        self.assertEqual(header(entry, "authorization"), ["Bearer client"])
        self.assertEqual(header(entry, "x-forwarded-for"), ["10.0.0.1, 127.0.0.1"])

    async def test_tooLarge(self) -> None:
        """
        A body over the app's limit is a 413 before any model starts.
        """
        running = await startLlamaSwap(self, config("models:\n  a:\n    cmd: ${demo}\n"))
        running.app.maxBodyBytes = 100
        response = await running.post("/v1/embeddings", json={"model": "a", "input": "x" * 200})
        self.assertEqual(response.code, 413)
        self.assertEqual((await response.json())["error"]["type"], "invalid_request_error")
        self.assertEqual(running.app.router.running(), [])


class ResolutionTests(TestCase):
    """
    Names are resolved and rewritten as llama-swap does before relaying.
    """

    timeout = 60

    async def test_aliasesAndFilters(self) -> None:
        """
        Aliases and C{setParamsByID} keys reach their model; the upstream
        sees C{useModelName}, the stripped and set parameters, and the
        parameters of the requested name.
        """
        running = await startLlamaSwap(self, config("""
models:
  a:
    cmd: ${demo}
    aliases: [first]
    useModelName: served-a
    filters:
      stripParams: "temperature, top_p"
      setParams: {max_tokens: 3, nested.k: true}
      setParamsByID:
        "a:hot": {temperature: 1.5}
"""))
        for name, extra in [("first", {}), ("a:hot", {"temperature": 1.5})]:
            status, body = await running.chat(name, temperature=0.1, top_p=0.5)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["demo"]["requested_model"], "served-a")
            sent = (await lastReceived(running, "a"))["json"]
            self.assertEqual(
                sent,
                {"model": "served-a", "messages": [{"role": "user", "content": "hi"}],
                 "max_tokens": 3, "nested": {"k": True}, **extra},
            )

    async def test_legacyProfile(self) -> None:
        """
        A v1 C{profile/model} name (or C{profile:model}) reaches the member,
        which is sent its bare name.
        """
        running = await startLlamaSwap(self, config("""
models:
  a:
    cmd: ${demo}
    aliases: [alpha]
profiles:
  duo: [a]
"""))
        for name, bare in [("duo/a", "a"), ("duo:alpha", "alpha")]:
            status, body = await running.chat(name)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["demo"]["requested_model"], bare)

    async def test_profilePins(self) -> None:
        """
        With a runtime profile active its pins rewrite the model wherever
        the client put it (JSON, query, form); an empty pin disables the
        name; a pin may name a selector; without an active profile the
        names are unknown.
        """
        running = await startLlamaSwap(self, config("""
models:
  a:
    cmd: ${demo}
profiles:
  public:
    pins: {pub: a, off: "", sel: choose}
selectors:
  choose: {strategy: pin, targets: [a]}
"""))
        status, body = await running.chat("pub")
        self.assertEqual((status, body["error"]["message"]), (404, "no router for requested model"))
        response = await running.request("PUT", "/api/profiles/active", json={"name": "public"})
        self.assertEqual(response.code, 200, await response.text())
        for name in ["pub", "sel"]:
            status, body = await running.chat(name)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["demo"]["requested_model"], "a")
        response = await running.get("/props?x=1&model=pub")
        echo = await response.json()
        self.assertEqual(echo["query"], "x=1&model=a")
        response = await running.post("/v1/audio/speech", data={"model": "pub", "input": "hi"})
        self.assertEqual((await response.json())["body"], "model=a&input=hi")
        response = await running.post(
            "/v1/audio/transcriptions",
            data=encodeForm([("model", None, b"pub"), ("file", "f.wav", b"x")]),
            headers={"Content-Type": MULTIPART_TYPE},
        )
        self.assertEqual(
            (await response.json())["body_sha256"],
            sha(encodeForm([("model", None, b"a"), ("file", "f.wav", b"x")])),
        )
        status, body = await running.chat("off")
        self.assertEqual((status, body["error"]["message"]), (404, "no model id could be identified"))

    async def test_selectors(self) -> None:
        """
        A selector's choice is what the upstream is asked for: C{pin} its
        first target, C{warm} the running one.
        """
        running = await startLlamaSwap(self, config("""
models:
  a:
    cmd: ${demo} --model a
  b:
    cmd: ${demo} --model b
    aliases: [bee]
selectors:
  first: {strategy: pin, targets: [bee, a]}
  warm: {strategy: warm, targets: [a, b]}
"""))
        status, body = await running.chat("first")
        self.assertEqual(status, 200, body)
        self.assertEqual((body["demo"]["served_model"], body["demo"]["requested_model"]), ("b", "bee"))
        status, body = await running.chat("warm")
        self.assertEqual((body["demo"]["served_model"], body["demo"]["requested_model"]), ("b", "b"))

    async def test_unknown(self) -> None:
        """
        A name neither local nor a peer's is a 404 envelope.
        """
        running = await startLlamaSwap(self, config("models:\n  a:\n    cmd: ${demo}\n"))
        status, body = await running.chat("nope")
        self.assertEqual(status, 404)
        self.assertEqual(body["error"],
                         {"message": "no router for requested model", "type": "invalid_request_error",
                          "param": None, "code": "not_found"})


class PeerTests(TestCase):
    """
    Peer models are relayed to their peer with its key, its own model name
    and its filters.
    """

    timeout = 60

    async def test_peer(self) -> None:
        """
        A fully-qualified or unique bare name reaches the peer: the path is
        appended to the peer's proxy path, C{Host} is the peer's, the API
        key replaces the client's in both headers, no C{X-Forwarded-*} is
        sent, the model is the peer's own name and the peer's filters apply.
        """
        peer = DemoPeer(self)
        running = await startLlamaSwap(self, config(f"""
models:
  a:
    cmd: ${{demo}}
peers:
  remote:
    proxy: {peer.url}/api
    apiKey: sekrit
    models: [org/rm, other]
    filters:
      stripParams: top_p
      setParams: {{temperature: 0.25}}
"""))
        for name in ["remote/org/rm", "org/rm"]:
            response = await running.post(
                "/v/chat/completions?q=1",
                json={**JSON_BODY, "model": name, "top_p": 0.3},
                headers={"Authorization": "Bearer client", "X-API-Key": "client",
                         "X-Forwarded-For": "10.1.1.1", "X-Forwarded-Host": "x"},
            )
            echo = await response.json()
            self.assertEqual(response.code, 200, echo)
            self.assertEqual(echo["path"], "/api/chat/completions")
            self.assertEqual(echo["query"], "q=1")
            last = peer.last
            self.assertEqual(last["json"], {**JSON_BODY, "model": "org/rm", "temperature": 0.25})
            self.assertEqual(header(last, "authorization"), ["Bearer sekrit"])
            self.assertEqual(header(last, "x-api-key"), ["sekrit"])
            self.assertEqual(header(last, "host"), [peer.url.removeprefix("http://")])
            self.assertEqual([k for k, _ in last["headers"] if k.lower().startswith("x-forwarded")], [])
        self.assertEqual(running.app.router.running(), [])

        response = await running.get("/props?model=remote/other")
        self.assertEqual((await response.json())["query"], "model=other")
        status, body = await running.chat("remote/nope")
        self.assertEqual((status, body["error"]["message"]), (404, "no router for requested model"))

    async def test_noKey(self) -> None:
        """
        Without an C{apiKey} the client's credentials go to the peer, and a
        bare name sent as the peer knows it is relayed untouched.
        """
        peer = DemoPeer(self)
        running = await startLlamaSwap(self, config(f"""
models: {{}}
peers:
  remote: {{proxy: "{peer.url}", models: [rm]}}
"""))
        raw = json.dumps({**JSON_BODY, "model": "rm"}, indent=2).encode()
        response = await running.post(
            "/v1/embeddings", data=raw,
            headers={"Content-Type": "application/json", "Authorization": "Bearer client"},
        )
        self.assertEqual(response.code, 200, await response.text())
        self.assertEqual(peer.last["body_sha256"], sha(raw))
        self.assertEqual(header(peer.last, "authorization"), ["Bearer client"])

    async def test_localWins(self) -> None:
        """
        A bare name that is also a local model goes to the local model.
        """
        peer = DemoPeer(self)
        running = await startLlamaSwap(self, config(f"""
models:
  a:
    cmd: ${{demo}} --model local-a
peers:
  remote: {{proxy: "{peer.url}", models: [a]}}
"""))
        status, body = await running.chat("a")
        self.assertEqual(body["demo"]["served_model"], "local-a")
        status, body = await running.chat("remote/a")
        self.assertEqual(body["demo"]["served_model"], "peer-model")

    async def test_peerDown(self) -> None:
        """
        A peer that cannot be reached is a 502 envelope saying so.
        """
        running = await startLlamaSwap(self, config(f"""
models: {{}}
peers:
  remote: {{proxy: "http://127.0.0.1:{freePort()}", models: [rm]}}
"""))
        status, body = await running.chat("rm")
        self.assertEqual(status, 502)
        self.assertTrue(body["error"]["message"].startswith("peer proxy error: "), body)
        self.assertEqual(body["error"]["code"], "bad_gateway")


# ---------------------------------------------------------------------------
# The handler on its own, with a recording forwarder.


class FakeLease:
    def __init__(self, proxy: str) -> None:
        self.supervisor = type("S", (), {"spec": type("Spec", (), {"proxy": proxy})()})()
        self.released = 0

    def release(self) -> None:
        self.released += 1


class FakeRouter:
    def __init__(self, config: Any) -> None:
        self.config = config
        self.leases: list[FakeLease] = []

    def resolve(self, name: str) -> tuple[str, None] | None:
        real = self.config.realModelName(name)
        return (real, None) if real is not None else None

    def acquire(self, name: str) -> Deferred[Any]:
        lease = FakeLease(self.config.models[self.config.realModelName(name)].proxy)
        self.leases.append(lease)
        return succeed(lease)


class FakeForwarder:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.results: list[Deferred[Any]] = []

    def forward(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        self.calls.append((args, kwargs))
        d: Deferred[Any] = Deferred()
        self.results.append(d)
        return d


class FakeApp:
    def __init__(self, text: str) -> None:
        self.config = loadConfigText(text, "t.yaml", environ={}).config
        self.supervisors: dict[str, Any] = {}
        self.router = FakeRouter(self.config)
        self.forwarder = FakeForwarder()
        self.upstreamAgent = None
        self.reactor = Clock()
        self.maxBodyBytes = 1 << 20


def postJSON(handler: ModelRoute, body: dict[str, Any], uri: bytes = b"/v1/chat/completions") -> Request:
    request = Request(DummyChannel())
    request.method = b"POST"
    request.uri = request.path = uri
    request.content = io.BytesIO(json.dumps(body).encode())
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
    request.requestHeaders.setRawHeaders(b"x-forwarded-proto", [b"https"])
    assert handler(request, b"") == NOT_DONE_YET
    return request


APP = """
models:
  a:
    cmd: x
    proxy: "http://127.0.0.1:9"
    timeouts: {connect: 3, responseHeader: 7}
peers:
  p: {proxy: "https://example.invalid/api", apiKey: k, models: [m]}
selectors:
  s: {strategy: spillover, targets: [a, p/m]}
"""


class HandlerTests(SynchronousTestCase):
    """
    L{ModelRoute} hands the forwarder one decided L{Upstream}.
    """

    def test_localTimeouts(self) -> None:
        """
        A local model's C{timeouts} are the relay's connect and
        response-header timeouts; the lease is released when the relay
        ends.
        """
        app = FakeApp(APP)
        handler = ModelRoute(app)  # type: ignore[arg-type]
        postJSON(handler, {"model": "a"})
        (args, kwargs), = app.forwarder.calls
        self.assertEqual(args[1:], ("http://127.0.0.1:9", b"/v1/chat/completions", None))
        self.assertEqual((kwargs["connectTimeout"], kwargs["responseHeaderTimeout"]), (3, 7))
        self.assertEqual((kwargs["preserveHost"], kwargs["forwardedFor"]), (True, True))
        self.assertEqual(kwargs["extraHeaders"], {})
        self.assertEqual(app.router.leases[0].released, 0)
        app.forwarder.results[0].callback(None)
        self.assertEqual(app.router.leases[0].released, 1)

    def test_peerDefaults(self) -> None:
        """
        A peer gets its default 60 s response-header timeout, its key, its
        own host, and no C{X-Forwarded-*}; its relay is counted in flight.
        """
        app = FakeApp(APP)
        handler = ModelRoute(app)  # type: ignore[arg-type]
        handler.peers.forwarder = FakeForwarder()  # type: ignore[assignment]
        postJSON(handler, {"model": "p/m"})
        (args, kwargs), = handler.peers.forwarder.calls  # type: ignore[attr-defined]
        self.assertEqual(args[1], "https://example.invalid/api")
        self.assertEqual(json.loads(args[3]), {"model": "m"})
        self.assertEqual((kwargs["connectTimeout"], kwargs["responseHeaderTimeout"]), (30, 60))
        self.assertEqual((kwargs["preserveHost"], kwargs["forwardedFor"]), (False, False))
        self.assertEqual(
            kwargs["extraHeaders"],
            {b"X-Forwarded-Proto": None, "Authorization": "Bearer k", "x-api-key": "k"},
        )
        self.assertEqual(handler.peers.inFlight, 1)
        self.assertEqual(app.forwarder.calls, [])

    def test_peerShutdown(self) -> None:
        """
        A peer relay cut off by the peer router's shutdown before it
        answered is a 500 saying the peer proxy is shutting down; later
        peer requests get the same at once.
        """
        app = FakeApp(APP)
        handler = ModelRoute(app)  # type: ignore[arg-type]
        handler.peers.forwarder = FakeForwarder()  # type: ignore[assignment]
        request = postJSON(handler, {"model": "p/m"})
        transport = request.channel.transport
        self.successResultOf(handler.peers.shutdown(0))
        self.assertEqual(request.code, 500)
        self.assertIn(b"unspecific error: peer proxy is shutting down", transport.written.getvalue())
        later = postJSON(handler, {"model": "p/m"})
        self.assertEqual(later.code, 500)
        self.assertEqual(len(handler.peers.forwarder.calls), 1)  # type: ignore[attr-defined]

    def test_selectorReleased(self) -> None:
        """
        A spillover reservation lasts until the relay ends.
        """
        app = FakeApp(APP)
        handler = ModelRoute(app)  # type: ignore[arg-type]
        postJSON(handler, {"model": "s"})
        self.assertEqual(handler.selectors.reservations("s"), {"a": 1})
        app.forwarder.results[0].callback(None)
        self.assertEqual(handler.selectors.reservations("s"), {})

    def test_tracker(self) -> None:
        """
        An C{app.tracker} supplies the relay's taps from the decided
        L{Upstream}.
        """
        app = FakeApp(APP)
        seen: list[Upstream] = []
        tap = object()

        class Tracker:
            def tapsFor(self, request: Request, upstream: Upstream) -> list[object]:
                seen.append(upstream)
                return [tap]

        app.tracker = Tracker()  # type: ignore[attr-defined]
        postJSON(ModelRoute(app), {"model": "s"}, b"/v/chat/completions")  # type: ignore[arg-type]
        (args, kwargs), = app.forwarder.calls
        # A local model's first attempt holds back a refused end (retry).
        (held,) = kwargs["taps"]
        self.assertEqual(held.taps, [tap])
        self.assertTrue(kwargs["deferRefused"])
        self.assertEqual((seen[0].requested, seen[0].selector, seen[0].path),
                         ("a", "s", b"/chat/completions"))


class UpstreamPathTests(SynchronousTestCase):
    """
    L{upstreamPath} removes llama-swap's routing prefixes.
    """

    def test_prefixes(self) -> None:
        """
        C{/v} and C{/audioapi} go; other paths and queries stay.
        """
        self.assertEqual(upstreamPath(b"/v/chat/completions?a=1"), b"/chat/completions?a=1")
        self.assertEqual(upstreamPath(b"/audioapi/v1/tasks/run"), b"/v1/tasks/run")
        self.assertEqual(upstreamPath(b"/v1/chat/completions"), b"/v1/chat/completions")
