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
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyChannel

from llamaswap.config.load import loadConfigText
from llamaswap.demo.server import DemoOptions, DemoUpstream, makeSite
from llamaswap.holder import Holder
from llamaswap.observe.tracking import Tracker
from llamaswap.upstream.lifecycle import State
from llamaswap.web.inference import (
    BODY_ROUTES,
    QUERY_ROUTES,
    VERSIONLESS_ROUTES,
    ModelRoute,
    upstreamPath,
)
from llamaswap.web.peers import PeerRouter

from ..harness import Running, demoMacros, startLlamaSwap
from ..util import freePort, poll
from .helpers import UpstreamExchange
from .inmemory import InMemoryLlamaSwap
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


def sentJSON(exchange: UpstreamExchange | None) -> Any:
    assert exchange is not None
    return json.loads(exchange.sentBody())


def sentHeader(exchange: UpstreamExchange | None, name: str) -> list[str]:
    assert exchange is not None
    return [v.decode() for v in exchange.sentHeaders().getRawHeaders(name.encode(), [])]


def pathOf(exchange: UpstreamExchange | None) -> str:
    """
    The path and query an upstream was asked for.
    """
    assert exchange is not None
    uri = exchange.uri.decode()
    return uri[uri.index("/", len("http://")) :]


LOCAL = """
models:
  a:
    cmd: x
    proxy: http://127.0.0.1:9001
"""


class RoutesTests(SynchronousTestCase):
    """
    Every model-routed route reaches the model's upstream at the right path
    with the client's bytes (in memory: no process, no socket).
    """

    def test_jsonRoutes(self) -> None:
        """
        Each JSON route relays the body untouched (same bytes) to the same
        path, or with C{/v} or C{/audioapi} removed, and the client gets
        the upstream's answer.
        """
        app = InMemoryLlamaSwap(self, LOCAL)
        raw = json.dumps(JSON_BODY, indent=1).encode()
        for path in BODY_ROUTES + VERSIONLESS_ROUTES:
            if path in MULTIPART_ROUTES:
                continue
            answer, exchange = app.roundTrip(
                "POST", path + "?x=1", data=raw, headers={"Content-Type": "application/json"},
                reply=b'{"from":"a"}',
            )
            self.assertEqual((answer.code, answer.json()), (200, {"from": "a"}), path)
            expected = path[2:] if path.startswith("/v/") else path
            expected = expected.removeprefix("/audioapi")
            self.assertEqual(pathOf(exchange), expected + "?x=1")
            assert exchange is not None
            self.assertEqual(exchange.sentBody(), raw, path)

    def test_queryRoutes(self) -> None:
        """
        The GET routes take the model from the query and relay path and
        query as they are.
        """
        app = InMemoryLlamaSwap(self, LOCAL)
        for path in QUERY_ROUTES:
            answer, exchange = app.roundTrip("GET", path + "?b=2&model=a&c=%2F")
            self.assertEqual(answer.code, 200, path)
            self.assertEqual(pathOf(exchange), path + "?b=2&model=a&c=%2F")
            assert exchange is not None
            self.assertEqual(exchange.method, b"GET")
        answer, exchange = app.roundTrip("GET", "/props")
        self.assertEqual((answer.code, exchange), (404, None))
        self.assertIn("no model id could be identified", answer.body.decode())

    def test_multipartRoutes(self) -> None:
        """
        Multipart uploads are routed by their C{model} field wherever it is
        in the form and arrive byte-identical, content type and all; with
        C{useModelName} only the model field's content differs.
        """
        app = InMemoryLlamaSwap(self, LOCAL + """
  b:
    cmd: x
    proxy: http://127.0.0.1:9002
    useModelName: served-b
""")
        audio = bytes(range(256)) * 2000
        for path in MULTIPART_ROUTES:
            body = encodeForm([("file", "x.wav", audio), ("model", None, b"a"),
                               ("language", None, b"en")])
            answer, exchange = app.roundTrip(
                "POST", path, data=body, headers={"Content-Type": MULTIPART_TYPE}
            )
            assert exchange is not None
            self.assertEqual(answer.code, 200, path)
            self.assertEqual(pathOf(exchange), path)
            self.assertEqual(sha(exchange.sentBody()), sha(body))
            self.assertEqual(sentHeader(exchange, "content-type"), [MULTIPART_TYPE])

            body = encodeForm([("file", "x.wav", audio), ("model", None, b"b")])
            answer, exchange = app.roundTrip(
                "POST", path, data=body, headers={"Content-Type": MULTIPART_TYPE}
            )
            assert exchange is not None
            self.assertEqual(answer.code, 200, path)
            expected = encodeForm([("file", "x.wav", audio), ("model", None, b"served-b")])
            self.assertTrue(exchange.uri.startswith(b"http://127.0.0.1:9002/"))
            self.assertEqual(sha(exchange.sentBody()), sha(expected))
            self.assertEqual(sentHeader(exchange, "content-length"), [str(len(expected))])

    def test_multipartQueryModel(self) -> None:
        """
        A form without a C{model} field is routed by the query; a malformed
        form names no model.
        """
        app = InMemoryLlamaSwap(self, LOCAL)
        body = encodeForm([("file", "x.png", b"PNG")])
        answer, exchange = app.roundTrip(
            "POST", "/v1/images/edits?model=a", data=body, headers={"Content-Type": MULTIPART_TYPE}
        )
        assert exchange is not None
        self.assertEqual(answer.code, 200)
        self.assertEqual((pathOf(exchange), exchange.sentBody()), ("/v1/images/edits?model=a", body))
        answer, exchange = app.roundTrip(
            "POST", "/v1/images/edits?model=a", data=b"junk", headers={"Content-Type": MULTIPART_TYPE}
        )
        self.assertEqual((answer.code, exchange), (404, None), answer.body)
        self.assertIn("no model id could be identified", answer.body.decode())

    def test_urlencoded(self) -> None:
        """
        An urlencoded body is routed by its C{model} field and relayed as
        it is; a JSON body without a JSON content type names no model.
        """
        app = InMemoryLlamaSwap(self, LOCAL)
        answer, exchange = app.roundTrip("POST", "/v1/audio/speech", data={"model": "a", "input": "hi"})
        assert exchange is not None
        self.assertEqual(answer.code, 200)
        self.assertEqual(exchange.sentBody(), b"model=a&input=hi")
        answer, exchange = app.roundTrip(
            "POST", "/v1/chat/completions", data=json.dumps(JSON_BODY).encode()
        )
        self.assertEqual((answer.code, exchange), (404, None))
        self.assertEqual(answer.json()["error"]["message"], "no model id could be identified")

    def test_headers(self) -> None:
        """
        A local upstream gets the client's C{Host} and C{Authorization} and
        the client's address appended to C{X-Forwarded-For}.
        """
        app = InMemoryLlamaSwap(self, LOCAL)
        answer, exchange = app.roundTrip(
            "POST",
            "/v1/chat/completions",
            json=JSON_BODY,
            headers={"Authorization": "Bearer client", "X-Forwarded-For": "10.0.0.1"},
        )
        self.assertEqual(answer.code, 200)
        self.assertEqual(sentHeader(exchange, "host"), ["llamaswap.test"])
        self.assertEqual(sentHeader(exchange, "authorization"), ["Bearer client"])
        self.assertEqual(sentHeader(exchange, "x-forwarded-for"), ["10.0.0.1, 127.0.0.1"])

    def test_tooLarge(self) -> None:
        """
        A body over the limit is a 413 before any model starts.
        """
        app = InMemoryLlamaSwap(self, LOCAL + "limits: {maxRequestBodyBytes: 100}\n")
        answer, exchange = app.roundTrip(
            "POST", "/v1/embeddings", json={"model": "a", "input": "x" * 200}
        )
        self.assertEqual((answer.code, exchange), (413, None))
        self.assertEqual(answer.json()["error"]["type"], "invalid_request_error")
        self.assertEqual(app.router.running(), [])

    def test_clientLeavesWhileStarting(self) -> None:
        """
        A client that leaves while its model starts withdraws its request:
        nothing is relayed and the request leaves the in-flight list.
        """
        app = InMemoryLlamaSwap(self, LOCAL)
        pending = app.chat("a")
        app.flush()
        self.assertEqual(len(app.tracker.inflight), 1)
        pending.cancel()
        self.failureResultOf(pending)
        app.flush()
        app.ready("a")
        self.assertEqual(app.upstream.exchanges, [])
        self.assertEqual(len(app.tracker.inflight), 0)
        self.assertEqual(app.supervisors["a"].finished, app.supervisors["a"].started)


class ResolutionTests(SynchronousTestCase):
    """
    Names are resolved and rewritten as llama-swap does before relaying.
    """

    def chat(self, app: InMemoryLlamaSwap, model: str, **extra: Any) -> tuple[Any, Any]:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        answer, exchange = app.roundTrip("POST", "/v1/chat/completions", json=body)
        return answer, exchange

    def test_aliasesAndFilters(self) -> None:
        """
        Aliases and C{setParamsByID} keys reach their model; the upstream
        sees C{useModelName}, the stripped and set parameters, and the
        parameters of the requested name.
        """
        app = InMemoryLlamaSwap(self, """
models:
  a:
    cmd: x
    proxy: http://127.0.0.1:9001
    aliases: [first]
    useModelName: served-a
    filters:
      stripParams: "temperature, top_p"
      setParams: {max_tokens: 3, nested.k: true}
      setParamsByID:
        "a:hot": {temperature: 1.5}
""")
        for name, extra in [("first", {}), ("a:hot", {"temperature": 1.5})]:
            answer, exchange = self.chat(app, name, temperature=0.1, top_p=0.5)
            self.assertEqual(answer.code, 200)
            self.assertEqual(
                sentJSON(exchange),
                {"model": "served-a", "messages": [{"role": "user", "content": "hi"}],
                 "max_tokens": 3, "nested": {"k": True}, **extra},
            )

    def test_legacyProfile(self) -> None:
        """
        A v1 C{profile/model} name (or C{profile:model}) reaches the member,
        which is sent its bare name.
        """
        app = InMemoryLlamaSwap(self, LOCAL + """
    aliases: [alpha]
profiles:
  duo: [a]
""")
        for name, bare in [("duo/a", "a"), ("duo:alpha", "alpha")]:
            answer, exchange = self.chat(app, name)
            self.assertEqual(answer.code, 200)
            self.assertEqual(sentJSON(exchange)["model"], bare)

    def test_profilePins(self) -> None:
        """
        With a runtime profile active its pins rewrite the model wherever
        the client put it (JSON, query, form); an empty pin disables the
        name; a pin may name a selector; without an active profile the
        names are unknown.
        """
        app = InMemoryLlamaSwap(self, LOCAL + """
profiles:
  public:
    pins: {pub: a, off: "", sel: choose}
selectors:
  choose: {strategy: pin, targets: [a]}
""")
        answer, _ = self.chat(app, "pub")
        self.assertEqual((answer.code, answer.json()["error"]["message"]),
                         (404, "no router for requested model"))
        answer = app.send("PUT", "/api/profiles/active", json={"name": "public"})
        self.assertEqual(answer.code, 200)
        self.assertEqual(app.activeProfile.value, "public")
        for name in ["pub", "sel"]:
            answer, exchange = self.chat(app, name)
            self.assertEqual(answer.code, 200)
            self.assertEqual(sentJSON(exchange)["model"], "a")
        _, exchange = app.roundTrip("GET", "/props?x=1&model=pub")
        self.assertEqual(pathOf(exchange), "/props?x=1&model=a")
        _, exchange = app.roundTrip("POST", "/v1/audio/speech", data={"model": "pub", "input": "hi"})
        assert exchange is not None
        self.assertEqual(exchange.sentBody(), b"model=a&input=hi")
        _, exchange = app.roundTrip(
            "POST",
            "/v1/audio/transcriptions",
            data=encodeForm([("model", None, b"pub"), ("file", "f.wav", b"x")]),
            headers={"Content-Type": MULTIPART_TYPE},
        )
        assert exchange is not None
        self.assertEqual(
            exchange.sentBody(), encodeForm([("model", None, b"a"), ("file", "f.wav", b"x")])
        )
        answer, _ = self.chat(app, "off")
        self.assertEqual((answer.code, answer.json()["error"]["message"]),
                         (404, "no model id could be identified"))

    def test_selectors(self) -> None:
        """
        A selector's choice is what the upstream is asked for: C{pin} its
        first target, C{warm} the running one.
        """
        app = InMemoryLlamaSwap(self, LOCAL + """
  b:
    cmd: x
    proxy: http://127.0.0.1:9002
    aliases: [bee]
selectors:
  first: {strategy: pin, targets: [bee, a]}
  warm: {strategy: warm, targets: [a, b]}
""")
        answer, exchange = self.chat(app, "first")
        assert exchange is not None
        self.assertEqual(answer.code, 200)
        self.assertTrue(exchange.uri.startswith(b"http://127.0.0.1:9002/"))
        self.assertEqual(sentJSON(exchange)["model"], "bee")
        answer, exchange = self.chat(app, "warm")
        assert exchange is not None
        self.assertTrue(exchange.uri.startswith(b"http://127.0.0.1:9002/"))
        self.assertEqual(sentJSON(exchange)["model"], "b")

    def test_unknown(self) -> None:
        """
        A name neither local nor a peer's is a 404 envelope.
        """
        app = InMemoryLlamaSwap(self, LOCAL)
        answer, exchange = self.chat(app, "nope")
        self.assertEqual((answer.code, exchange), (404, None))
        self.assertEqual(answer.json()["error"],
                         {"message": "no router for requested model", "type": "invalid_request_error",
                          "param": None, "code": "not_found"})


class PeerTests(SynchronousTestCase):
    """
    Peer models are relayed to their peer with its key, its own model name
    and its filters (in memory).
    """

    def test_peer(self) -> None:
        """
        A fully-qualified or unique bare name reaches the peer: the path is
        appended to the peer's proxy path, C{Host} is the peer's, the API
        key replaces the client's in both headers, no C{X-Forwarded-*} is
        sent, the model is the peer's own name and the peer's filters apply.
        """
        app = InMemoryLlamaSwap(self, LOCAL + """
peers:
  remote:
    proxy: http://peer.test:8080/api
    apiKey: sekrit
    models: [org/rm, other]
    filters:
      stripParams: top_p
      setParams: {temperature: 0.25}
""")
        for name in ["remote/org/rm", "org/rm"]:
            answer, exchange = app.roundTrip(
                "POST",
                "/v/chat/completions?q=1",
                json={**JSON_BODY, "model": name, "top_p": 0.3},
                headers={"Authorization": "Bearer client", "X-API-Key": "client",
                         "X-Forwarded-For": "10.1.1.1", "X-Forwarded-Host": "x"},
            )
            assert exchange is not None
            self.assertEqual(answer.code, 200)
            self.assertEqual(exchange.uri, b"http://peer.test:8080/api/chat/completions?q=1")
            self.assertEqual(sentJSON(exchange), {**JSON_BODY, "model": "org/rm", "temperature": 0.25})
            self.assertEqual(sentHeader(exchange, "authorization"), ["Bearer sekrit"])
            self.assertEqual(sentHeader(exchange, "x-api-key"), ["sekrit"])
            self.assertEqual(sentHeader(exchange, "host"), ["peer.test:8080"])
            forwarded = [
                k for k, _ in exchange.sentHeaders().getAllRawHeaders()
                if k.lower().startswith(b"x-forwarded")
            ]
            self.assertEqual(forwarded, [])
        self.assertEqual(app.router.running(), [])
        self.assertEqual(app.upstream.exchanges, [])

        _, exchange = app.roundTrip("GET", "/props?model=remote/other")
        self.assertEqual(pathOf(exchange), "/api/props?model=other")
        answer, exchange = app.roundTrip("POST", "/v1/chat/completions", json={"model": "remote/nope"})
        self.assertEqual((answer.code, answer.json()["error"]["message"], exchange),
                         (404, "no router for requested model", None))

    def test_noKey(self) -> None:
        """
        Without an C{apiKey} the client's credentials go to the peer, and a
        bare name sent as the peer knows it is relayed untouched.
        """
        app = InMemoryLlamaSwap(self, """
models: {}
peers:
  remote: {proxy: "http://peer.test", models: [rm]}
""")
        raw = json.dumps({**JSON_BODY, "model": "rm"}, indent=2).encode()
        answer, exchange = app.roundTrip(
            "POST", "/v1/embeddings", data=raw,
            headers={"Content-Type": "application/json", "Authorization": "Bearer client"},
        )
        assert exchange is not None
        self.assertEqual(answer.code, 200)
        self.assertEqual(exchange.sentBody(), raw)
        self.assertEqual(sentHeader(exchange, "authorization"), ["Bearer client"])

    def test_localWins(self) -> None:
        """
        A bare name that is also a local model goes to the local model.
        """
        app = InMemoryLlamaSwap(self, LOCAL + """
peers:
  remote: {proxy: "http://peer.test", models: [a]}
""")
        _, exchange = app.roundTrip("POST", "/v1/chat/completions", json={"model": "a"})
        self.assertEqual((app.upstream.exchanges, app.peerAgent.exchanges), ([exchange], []))
        _, exchange = app.roundTrip("POST", "/v1/chat/completions", json={"model": "remote/a"})
        self.assertEqual(app.peerAgent.exchanges, [exchange])

    def test_peerDown(self) -> None:
        """
        A peer that cannot be reached is a 502 envelope saying so.
        """
        app = InMemoryLlamaSwap(self, """
models: {}
peers:
  remote: {proxy: "http://peer.test", models: [rm]}
""")
        app.peerAgent.failWith = lambda: Failure(ConnectionRefusedError("refused"))
        answer, _ = app.roundTrip("POST", "/v1/chat/completions", json={"model": "rm"})
        self.assertEqual(answer.code, 502)
        self.assertTrue(answer.json()["error"]["message"].startswith("peer proxy error: "))
        self.assertEqual(answer.json()["error"]["code"], "bad_gateway")


class EndToEndTests(TestCase):
    """
    A whole llamaswap over real HTTP with a real demo upstream process and
    a real peer.
    """

    timeout = 60

    async def test_localAndPeer(self) -> None:
        """
        A local model is started and answers; a peer model reaches the
        peer with its key.
        """
        peer = DemoPeer(self)
        running = await startLlamaSwap(self, config(f"""
models:
  a:
    cmd: ${{demo}} --model local-a
peers:
  remote: {{proxy: "{peer.url}", apiKey: sekrit, models: [a, rm]}}
"""))
        status, body = await running.chat("a")
        self.assertEqual((status, body["demo"]["served_model"]), (200, "local-a"))
        self.assertEqual((await lastReceived(running, "a"))["json"]["model"], "a")
        status, body = await running.chat("rm")
        self.assertEqual((status, body["demo"]["served_model"]), (200, "peer-model"))
        self.assertEqual(header(peer.last, "authorization"), ["Bearer sekrit"])


# ---------------------------------------------------------------------------
# The handler on its own, with a recording forwarder.


class FakeLease:
    def __init__(self, model: str, url: str) -> None:
        self.model = model
        self.url = url
        self.released = 0

    def release(self) -> bool:
        self.released += 1
        return self.released == 1


class FakeRouter:
    def __init__(self, config: Any) -> None:
        self.config = config
        self.leases: list[FakeLease] = []

    def resolve(self, name: str) -> tuple[str, None] | None:
        real = self.config.realModelName(name)
        return (real, None) if real is not None else None

    def stateOf(self, model: str) -> State | None:
        return State.READY if model in self.config.models else None

    def acquire(self, name: str) -> Deferred[Any]:
        model = self.config.models[self.config.realModelName(name)]
        lease = FakeLease(model.id, model.proxy)
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


class Parts:
    """
    The collaborators of a L{ModelRoute}: a router granting at once and a
    recording forwarder.
    """

    def __init__(self, text: str) -> None:
        self.config = Holder(loadConfigText(text, "t.yaml", environ={}).config)
        self.router = FakeRouter(self.config.value)
        self.forwarder = FakeForwarder()
        self.clock = Clock()
        self.tracker = Tracker(self.clock)

    def handler(self) -> ModelRoute:
        return ModelRoute(
            config=self.config,
            activeProfile=Holder(None),
            router=self.router,
            forwarder=self.forwarder,  # type: ignore[arg-type]
            peers=PeerRouter(self.config.value, None, self.clock),  # type: ignore[arg-type]
            tracker=self.tracker,
            clock=self.clock,
        )


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
        app = Parts(APP)
        handler = app.handler()
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
        app = Parts(APP)
        handler = app.handler()
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
        app = Parts(APP)
        handler = app.handler()
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
        app = Parts(APP)
        handler = app.handler()
        postJSON(handler, {"model": "s"})
        self.assertEqual(handler.selectors.reservations("s"), {"a": 1})
        app.forwarder.results[0].callback(None)
        self.assertEqual(handler.selectors.reservations("s"), {})

    def test_tracker(self) -> None:
        """
        The request's track, passed along the request path, is the relay's
        tap; it records the model the lease names and the selector.
        """
        app = Parts(APP)
        postJSON(app.handler(), {"model": "s"}, b"/v/chat/completions")
        (args, kwargs), = app.forwarder.calls
        self.assertEqual(args[2], b"/chat/completions")
        [track] = app.tracker.inflight.values()
        # A local model's first attempt holds back a refused end (retry).
        (held,) = kwargs["taps"]
        self.assertEqual(held.taps, [track])
        self.assertTrue(kwargs["deferRefused"])
        self.assertEqual((track.model, track.metadata["selector"]), ("a", "s"))


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
