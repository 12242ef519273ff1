"""
Tests for L{llamaswap.web.management}: the model list, C{/running}, the
unload endpoints, the profiles API, the version and the root redirect;
first against a fake app through a real L{Site} in memory, then end to end
with demo upstreams.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from llamaswap import __version__
from llamaswap.config.load import loadConfigText
from llamaswap.config.model import Capabilities, Config
from llamaswap.holder import Holder
from llamaswap.httperrors import BadRequest, NotFound
from llamaswap.upstream.lifecycle import State
from llamaswap.web.management import (
    ManagementRoutes,
    capabilityFields,
    install,
    modelRecords,
    parseProfileRequest,
)
from llamaswap.web.mux import Mux

from ..harness import demoMacros, startLlamaSwap
from .helpers import Client, ParsedResponse
from .inmemory import InMemoryLlamaSwap

NOW = 1_760_000_000


def load(text: str) -> Config:
    return loadConfigText(text, environ={}).config


class FakeRouter:
    """
    The router as the management routes see it: states and unloads.
    """

    def __init__(self, served: Any = ()) -> None:
        self.served = set(served)
        self.states: dict[str, State] = {}
        self.unloads: list[tuple[list[str] | None, Deferred[None]]] = []

    def running(self) -> list[tuple[str, State]]:
        return sorted(
            (m, s)
            for m, s in self.states.items()
            if s not in (State.STOPPED, State.SHUTDOWN)
        )

    def stateOf(self, model: str) -> State | None:
        return self.states.get(model, State.STOPPED) if model in self.served else None

    def unload(self, models: list[str] | None = None) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.unloads.append((models, d))
        return d


class Parts:
    """
    The collaborators of the management routes.
    """

    def __init__(self, config: Config) -> None:
        self.config = Holder(config)
        self.router = FakeRouter(config.models)
        self.clock = Clock()
        self.clock.advance(NOW + 0.7)
        self.activeProfile: Holder[str | None] = Holder(None)


class Served:
    """
    The management routes on a L{Mux}, with fake collaborators.
    """

    def __init__(self, config: Config) -> None:
        self.app = Parts(config)
        self.mux = Mux()
        install(
            self.mux,
            ManagementRoutes(
                config=self.app.config,
                activeProfile=self.app.activeProfile,
                router=self.app.router,
                clock=self.app.clock,
            ),
        )

    def send(
        self,
        method: bytes,
        path: bytes,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> Client:
        client = Client(Site(self.mux, reactor=Clock()))
        client.send(method, path, body, headers)
        return client

    def request(self, method: bytes, path: bytes, body: bytes = b"", **kw: Any) -> ParsedResponse:
        return self.send(method, path, body, **kw).response()

    def json(self, method: bytes, path: bytes, body: bytes = b"", **kw: Any) -> Any:
        response = self.request(method, path, body, **kw)
        assert response.header(b"content-type") == b"application/json", response.raw
        return response.status, json.loads(response.body)


LISTING = """
includeAliasesInList: true
models:
  zeta:
    cmd: /bin/true --port ${PORT}
    name: "  Zeta model  "
    description: "  "
    aliases: [z, " "]
    metadata: {family: llama, architecture: mine}
    capabilities:
      in: [text, image]
      out: [text, audio]
      tools: true
      context: 100000
  alpha:
    cmd: /bin/true --port ${PORT}
    metadata: {architecture: kept, context_length: 5}
  hidden:
    cmd: /bin/true --port ${PORT}
    unlisted: true
    aliases: [secret]
peers:
  cuda:
    proxy: http://127.0.0.1:9
    models: [alpha, big/model]
"""


class ListModelsTests(SynchronousTestCase):
    """
    C{GET /v1/models} and C{GET /models}.
    """

    def test_records(self) -> None:
        """
        Listed models, their aliases and every peer model by its
        fully-qualified name, sorted by ID, each with the common fields; a
        configured capabilities block is rendered and replaces the
        metadata keys it renders; unlisted models and their aliases are
        hidden.
        """
        served = Served(load(LISTING))
        served.app.router.states = {"zeta": State.READY, "hidden": State.READY}
        status, body = served.json(b"GET", b"/v1/models")
        self.assertEqual(status, 200)
        self.assertEqual(body["object"], "list")
        records = {r["id"]: r for r in body["data"]}
        self.assertEqual(
            [r["id"] for r in body["data"]],
            ["alpha", "cuda/alpha", "cuda/big/model", "z", "zeta"],
        )
        common = {"object": "model", "created": NOW, "owned_by": "llamaswap"}
        capabilities = {
            "architecture": {
                "input_modalities": ["text", "image"],
                "output_modalities": ["text", "audio"],
                "modality": "text+image->text+audio",
            },
            "capabilities": {
                "vision": True,
                "audio_speech": True,
                "function_calling": True,
            },
            "supported_parameters": ["tools", "tool_choice"],
            "context_length": 100000,
        }
        self.assertEqual(
            records["zeta"],
            {
                "id": "zeta",
                **common,
                "name": "Zeta model",
                **capabilities,
                "meta": {
                    "llamaswap": {"family": "llama", "type": "model", "aliases": ["z", " "]},
                    "n_ctx": 100000,
                },
                "status": {"value": "loaded"},
            },
        )
        self.assertEqual(
            records["z"],
            {
                "id": "z",
                **common,
                "name": "Zeta model",
                **capabilities,
                "meta": {
                    "llamaswap": {"family": "llama", "type": "alias", "modelID": "zeta"},
                    "n_ctx": 100000,
                },
                "status": {"value": "loaded"},
            },
        )
        self.assertEqual(
            records["alpha"],
            {
                "id": "alpha",
                **common,
                "meta": {
                    "llamaswap": {"architecture": "kept", "context_length": 5, "type": "model"}
                },
                "status": {"value": "unloaded"},
            },
        )
        self.assertEqual(
            records["cuda/big/model"],
            {
                "id": "cuda/big/model",
                **common,
                "name": "cuda: big/model",
                "meta": {"llamaswap": {"type": "peer", "peerID": "cuda"}},
                "status": {"value": "unloaded"},
            },
        )

    def test_modelsAlias(self) -> None:
        """
        C{/models} is the same list.
        """
        served = Served(load(LISTING))
        self.assertEqual(served.json(b"GET", b"/models"), served.json(b"GET", b"/v1/models"))

    def test_aliasesOnlyWhenAsked(self) -> None:
        """
        Without C{includeAliasesInList}, aliases are only named in their
        model's record.
        """
        served = Served(load(LISTING.replace("includeAliasesInList: true", "")))
        _, body = served.json(b"GET", b"/v1/models")
        self.assertNotIn("z", [r["id"] for r in body["data"]])

    def test_loadedStates(self) -> None:
        """
        A model (and its alias) is C{loaded} in every state but stopped:
        starting, ready and stopping.
        """
        config = load(LISTING)
        for state, value in [
            (State.STARTING, "loaded"),
            (State.READY, "loaded"),
            (State.STOPPING, "loaded"),
            (State.STOPPED, "unloaded"),
            (State.SHUTDOWN, "unloaded"),
        ]:
            records = modelRecords(config, {"zeta": state}, None, NOW)
            values = {r["id"]: r["status"]["value"] for r in records}
            self.assertEqual((values["zeta"], values["z"]), (value, value), state)

    def test_origin(self) -> None:
        """
        A request's C{Origin} is echoed in C{Access-Control-Allow-Origin};
        without one there is no CORS header.
        """
        served = Served(load(LISTING))
        response = served.request(
            b"GET", b"/v1/models", headers=[(b"Origin", b"http://example.com")]
        )
        self.assertEqual(response.header(b"access-control-allow-origin"), b"http://example.com")
        response = served.request(b"GET", b"/v1/models")
        self.assertIsNone(response.header(b"access-control-allow-origin"))

    def test_peerNamespaces(self) -> None:
        """
        A local model and two peers offering the same name are listed as
        exactly three IDs: the local one and two qualified peer names.
        """
        config = load(
            """
models:
  shared:
    cmd: /bin/true --port ${PORT}
peers:
  cuda: {proxy: "http://127.0.0.1:9", models: [shared]}
  strix: {proxy: "http://127.0.0.1:9", models: [shared]}
"""
        )
        ids = [r["id"] for r in modelRecords(config, {}, None, NOW)]
        self.assertEqual(ids, ["cuda/shared", "shared", "strix/shared"])

    def test_emptyList(self) -> None:
        """
        No models: an empty C{data} array.
        """
        served = Served(Config())
        self.assertEqual(served.json(b"GET", b"/v1/models"), (200, {"object": "list", "data": []}))


SELECTORS = """
models:
  a:
    cmd: /bin/true --port ${PORT}
  b:
    cmd: /bin/true --port ${PORT}
    aliases: [bee]
selectors:
  any:
    strategy: warm
    targets: [a, bee]
    name: " Any "
    description: either
    metadata: {tier: free}
  first:
    strategy: pin
    targets: [a, b]
  quiet:
    strategy: warm
    targets: [a]
    unlisted: true
"""


class SelectorRecordTests(SynchronousTestCase):
    """
    Selectors in the list.
    """

    def test_records(self) -> None:
        """
        A listed selector has its name, description and metadata and an
        internal description of its strategy; unlisted ones are absent.
        """
        records = {r["id"]: r for r in modelRecords(load(SELECTORS), {}, None, NOW)}
        self.assertNotIn("quiet", records)
        self.assertEqual(
            records["any"],
            {
                "id": "any",
                "object": "model",
                "created": NOW,
                "owned_by": "llamaswap",
                "name": "Any",
                "description": "either",
                "meta": {
                    "llamaswap": {
                        "tier": "free",
                        "type": "selector",
                        "strategy": "warm",
                        "targets": ["a", "bee"],
                    }
                },
                "status": {"value": "unloaded"},
            },
        )
        self.assertNotIn("spillover", records["first"]["meta"]["llamaswap"])

    def test_status(self) -> None:
        """
        A selector is loaded when a target (named by ID or alias) is ready
        or starting, not stopping; a pin selector looks at its first target
        only.
        """
        config = load(SELECTORS)

        def status(states: dict[str, State]) -> dict[str, str]:
            return {
                r["id"]: r["status"]["value"]
                for r in modelRecords(config, states, None, NOW)
                if r["id"] in ("any", "first")
            }

        self.assertEqual(status({"b": State.STARTING}), {"any": "loaded", "first": "unloaded"})
        self.assertEqual(status({"a": State.READY}), {"any": "loaded", "first": "loaded"})
        self.assertEqual(status({"a": State.STOPPING}), {"any": "unloaded", "first": "unloaded"})

    def test_spillover(self) -> None:
        """
        A spillover selector states its C{spillover} setting.
        """
        config = load(
            """
groups:
  g: {swap: false, members: [a, b]}
models:
  a: {cmd: "/bin/true --port ${PORT}"}
  b: {cmd: "/bin/true --port ${PORT}"}
selectors:
  spill: {strategy: spillover, targets: [a, b]}
"""
        )
        (record,) = [r for r in modelRecords(config, {}, None, NOW) if r["id"] == "spill"]
        self.assertEqual(record["meta"]["llamaswap"]["spillover"], 1)


PROFILES = """
models:
  real:
    cmd: /bin/true --port ${PORT}
    name: Real
    aliases: [nick]
  hidden:
    cmd: /bin/true --port ${PORT}
    unlisted: true
peers:
  remote:
    proxy: http://127.0.0.1:9
    models: [remote-model]
selectors:
  sel: {strategy: pin, targets: [real], unlisted: true}
profiles:
  coding:
    description: for code
    pins:
      public: real
      expose: remote/remote-model
      disabled: ""
      real: hidden
      nick: hidden
      hidden: real
      remote-model: real
      sel: real
  other:
    pins: {x: real}
"""


class ProfileRecordTests(SynchronousTestCase):
    """
    The active profile's pins in the list.
    """

    def test_activePins(self) -> None:
        """
        Pins of the active profile that name nothing else are listed, with
        no name and type C{profile}; disabled pins and pins on model IDs,
        aliases, unlisted models, peer names and selectors are not; the
        pinned real model keeps its record.
        """
        config = load(PROFILES)
        self.assertNotIn("public", [r["id"] for r in modelRecords(config, {}, None, NOW)])
        records = {r["id"]: r for r in modelRecords(config, {}, "coding", NOW)}
        self.assertEqual(
            sorted(records),
            ["expose", "public", "real", "remote/remote-model"],
        )
        self.assertEqual(
            records["public"],
            {
                "id": "public",
                "object": "model",
                "created": NOW,
                "owned_by": "llamaswap",
                "meta": {"llamaswap": {"type": "profile"}},
                "status": {"value": "unloaded"},
            },
        )
        self.assertEqual(records["real"]["name"], "Real")
        self.assertEqual(records["remote/remote-model"]["name"], "remote: remote-model")

    def test_unknownActive(self) -> None:
        """
        An active profile the configuration lacks lists nothing extra.
        """
        config = load(PROFILES)
        self.assertEqual(
            modelRecords(config, {}, "gone", NOW), modelRecords(config, {}, None, NOW)
        )


class CapabilityTests(SynchronousTestCase):
    """
    L{capabilityFields} renders a capabilities block.
    """

    def test_cases(self) -> None:
        """
        Each modality combination gives its flags; fields appear only when
        there is something to say.
        """
        cases = [
            (Capabilities(inputs=("image", "text")), {
                "architecture": {"input_modalities": ["image", "text"]},
                "capabilities": {"vision": True},
            }),
            (Capabilities(outputs=("audio",)), {
                "architecture": {"output_modalities": ["audio"]},
            }),
            (Capabilities(tools=True), {
                "capabilities": {"function_calling": True},
                "supported_parameters": ["tools", "tool_choice"],
            }),
            (Capabilities(reranker=True), {"capabilities": {"reranker": True}}),
            (Capabilities(context=4096), {"context_length": 4096}),
            (Capabilities(inputs=("audio",), outputs=("text",)), {
                "architecture": {
                    "input_modalities": ["audio"],
                    "output_modalities": ["text"],
                    "modality": "audio->text",
                },
                "capabilities": {"audio_transcriptions": True},
            }),
            (Capabilities(inputs=("text",), outputs=("image",)), {
                "architecture": {
                    "input_modalities": ["text"],
                    "output_modalities": ["image"],
                    "modality": "text->image",
                },
                "capabilities": {"image_generation": True},
            }),
            (Capabilities(inputs=("image",), outputs=("image",)), {
                "architecture": {
                    "input_modalities": ["image"],
                    "output_modalities": ["image"],
                    "modality": "image->image",
                },
                "capabilities": {"vision": True, "image_to_image": True},
            }),
            (Capabilities(), {}),
        ]
        for caps, expected in cases:
            self.assertEqual(capabilityFields(caps), expected, caps)


RUNNING = """
globalTTL: 300
models:
  m1:
    cmd: /bin/true --port ${PORT}
    name: One
    description: first
  m2:
    cmd: /bin/true --port ${PORT}
    proxy: http://127.0.0.1:7777
    ttl: 5
  m3:
    cmd: /bin/true --port ${PORT}
"""


class RunningTests(SynchronousTestCase):
    """
    C{GET /running}.
    """

    def test_running(self) -> None:
        """
        The models not stopped, sorted, with command, proxy, effective TTL,
        name and description.
        """
        served = Served(load(RUNNING))
        served.app.router.states = {
            "m2": State.STARTING,
            "m1": State.READY,
            "m3": State.STOPPED,
        }
        status, body = served.json(b"GET", b"/running")
        self.assertEqual(status, 200)
        self.assertEqual(
            body,
            {
                "running": [
                    {
                        "model": "m1",
                        "state": "ready",
                        "cmd": "/bin/true --port 5800",
                        "proxy": "http://localhost:5800",
                        "ttl": 300,
                        "name": "One",
                        "description": "first",
                    },
                    {
                        "model": "m2",
                        "state": "starting",
                        "cmd": "/bin/true --port 5801",
                        "proxy": "http://127.0.0.1:7777",
                        "ttl": 5,
                        "name": "",
                        "description": "",
                    },
                ]
            },
        )

    def test_removedModelStopping(self) -> None:
        """
        A model a reload removed (e.g. its file left a models folder) whose
        upstream is still stopping is left out, not a 500.
        """
        served = Served(load(RUNNING))
        served.app.router.states = {"gone": State.STOPPING, "m3": State.READY}
        status, body = served.json(b"GET", b"/running")
        self.assertEqual(status, 200)
        self.assertEqual([e["model"] for e in body["running"]], ["m3"])

    def test_nothingRunning(self) -> None:
        """
        Always an array.
        """
        served = Served(load(RUNNING))
        self.assertEqual(served.json(b"GET", b"/running"), (200, {"running": []}))


UNLOAD = """
models:
  m1:
    cmd: /bin/true --port ${PORT}
    aliases: [one]
  author/model:
    cmd: /bin/true --port ${PORT}
peers:
  p:
    proxy: http://127.0.0.1:9
    models: [far]
"""


class UnloadTests(SynchronousTestCase):
    """
    The unload endpoints answer once the upstreams are stopped.
    """

    def test_unloadAll(self) -> None:
        """
        C{GET /unload} unloads every model and answers C{OK} only when that
        is done.
        """
        served = Served(load(UNLOAD))
        client = served.send(b"GET", b"/unload")
        [(models, d)] = served.app.router.unloads
        self.assertIsNone(models)
        self.assertEqual(client.transport.value(), b"")
        d.callback(None)
        response = client.response()
        self.assertEqual((response.status, response.body), (200, b"OK"))
        self.assertEqual(response.header(b"content-type"), b"text/plain; charset=utf-8")

    def test_apiUnloadAll(self) -> None:
        """
        C{POST /api/models/unload} does the same and answers
        C{{"msg":"ok"}}.
        """
        served = Served(load(UNLOAD))
        client = served.send(b"POST", b"/api/models/unload")
        [(models, d)] = served.app.router.unloads
        self.assertIsNone(models)
        d.callback(None)
        response = client.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(json.loads(response.body), {"msg": "ok"})

    def test_unloadOne(self) -> None:
        """
        C{POST /api/models/unload/<model>} unloads one model, named by ID
        (slashes, escaped or not, allowed) or alias.
        """
        served = Served(load(UNLOAD))
        for path, model in [
            (b"/api/models/unload/one", "m1"),
            (b"/api/models/unload/author/model", "author/model"),
            (b"/api/models/unload/author%2Fmodel", "author/model"),
        ]:
            client = served.send(b"POST", path)
            models, d = served.app.router.unloads[-1]
            self.assertEqual(models, [model], path)
            d.callback(None)
            response = client.response()
            self.assertEqual((response.status, response.body), (200, b"OK"), path)

    def test_unloadOneNotFound(self) -> None:
        """
        An unknown name is C{model not found}; a peer model is not local.
        Neither unloads anything.
        """
        served = Served(load(UNLOAD))
        for path, message in [
            (b"/api/models/unload/nope", "model not found"),
            (b"/api/models/unload/", "model not found"),
            (b"/api/models/unload/far", "no local server found for requested model"),
            (b"/api/models/unload/p/far", "no local server found for requested model"),
        ]:
            status, body = served.json(b"POST", path)
            self.assertEqual((status, body["error"]["message"]), (404, message), path)
        self.assertEqual(served.app.router.unloads, [])

    def test_clientGone(self) -> None:
        """
        A client that leaves while the unload runs gets nothing written;
        the unload still completes.
        """
        served = Served(load(UNLOAD))
        client = served.send(b"GET", b"/unload")
        client.disconnect()
        [(_, d)] = served.app.router.unloads
        d.callback(None)
        self.assertEqual(client.transport.value(), b"")

    def test_failure(self) -> None:
        """
        An unload that fails is a 500 envelope (and logged).
        """
        served = Served(load(UNLOAD))
        client = served.send(b"POST", b"/api/models/unload")
        [(_, d)] = served.app.router.unloads
        d.errback(RuntimeError("stuck"))
        response = client.response()
        self.assertEqual(response.status, 500)
        self.assertIn("stuck", json.loads(response.body)["error"]["message"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_wrongMethod(self) -> None:
        """
        Unloading one model is POST only.
        """
        served = Served(load(UNLOAD))
        response = served.request(b"GET", b"/api/models/unload/m1")
        self.assertEqual(response.status, 405)
        self.assertEqual(response.header(b"allow"), b"POST")


class ProfilesAPITests(SynchronousTestCase):
    """
    C{GET /api/profiles} and C{PUT /api/profiles/active}.
    """

    def setUp(self) -> None:
        self.served = Served(load(PROFILES))
        self.changes: list[str | None] = []
        self.served.app.activeProfile.addObserver(lambda old, new: self.changes.append(new))

    def put(self, body: bytes) -> tuple[int, Any]:
        return self.served.json(b"PUT", b"/api/profiles/active", body)  # type: ignore[no-any-return]

    def test_list(self) -> None:
        """
        The active profile (null when none) and every profile, sorted, with
        its pins; disabled pins appear as C{""}.
        """
        status, body = self.served.json(b"GET", b"/api/profiles")
        self.assertEqual(status, 200)
        self.assertIsNone(body["active"])
        self.assertEqual([p["id"] for p in body["profiles"]], ["coding", "other"])
        coding = body["profiles"][0]
        self.assertEqual(coding["description"], "for code")
        self.assertEqual(coding["pins"]["disabled"], "")
        self.assertEqual(coding["pins"]["public"], "real")
        self.assertEqual(body["profiles"][1], {"id": "other", "description": "", "pins": {"x": "real"}})

    def test_switch(self) -> None:
        """
        Naming a profile activates it (on the app, reported by GET);
        C{null} or C{""} deactivate; observers hear of changes only.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.assertEqual(self.put(b'{"name": "coding"}'), (200, {"active": "coding"}))
        self.assertEqual(self.served.app.activeProfile.value, "coding")
        self.assertEqual(self.served.json(b"GET", b"/api/profiles")[1]["active"], "coding")
        self.assertEqual(self.put(b'{"name": "coding"}'), (200, {"active": "coding"}))
        self.assertEqual(self.put(b'{"name": null}'), (200, {"active": None}))
        self.assertEqual(self.put(b'{"name": "other"}'), (200, {"active": "other"}))
        self.assertEqual(self.put(b'{"name": ""}'), (200, {"active": None}))
        self.assertIsNone(self.served.app.activeProfile.value)
        self.assertEqual(self.changes, ["coding", None, "other", None])
        logged = [
            e["log_format"].format(**e) for e in events if "active profile" in e["log_format"]
        ]
        self.assertEqual(
            logged,
            [
                'active profile changed to "coding"',
                'active profile changed to ""',
                'active profile changed to "other"',
                'active profile changed to ""',
            ],
        )

    def test_listingFollows(self) -> None:
        """
        The model list shows the pins of the profile just activated.
        """
        self.put(b'{"name": "coding"}')
        _, body = self.served.json(b"GET", b"/v1/models")
        self.assertIn("public", [r["id"] for r in body["data"]])

    def test_errors(self) -> None:
        """
        Bad bodies are 400s with llama-swap's messages, an unknown profile
        a 404; none changes the active profile.
        """
        self.put(b'{"name": "coding"}')
        for body, status, message in [
            (b"", 400, "invalid profile request"),
            (b"{nope", 400, "invalid profile request"),
            (b"[1]", 400, "invalid profile request"),
            (b"\xff", 400, "invalid profile request"),
            (b"{}", 400, "profile name is required"),
            (b'{"other": 1}', 400, "profile name is required"),
            (b'{"name": 3}', 400, "profile name must be a string or null"),
            (b'{"name": ["coding"]}', 400, "profile name must be a string or null"),
            (b'{"name": "nope"}', 404, 'profile "nope" not found'),
        ]:
            got, document = self.put(body)
            self.assertEqual((got, document["error"]["message"]), (status, message), body)
        self.assertEqual(self.served.app.activeProfile.value, "coding")
        self.assertEqual(self.changes, ["coding"])

    def test_parseFirstValue(self) -> None:
        """
        Like Go's decoder, only the first JSON value counts.
        """
        config = load(PROFILES)
        self.assertEqual(parseProfileRequest(b' {"name":"other"} trailing', config), "other")
        self.assertRaises(BadRequest, parseProfileRequest, b"null", config)
        self.assertRaises(NotFound, parseProfileRequest, b'{"name":"x"}', config)

    def test_unloadIgnoresPins(self) -> None:
        """
        Unloading by a real model ID is not redirected by the active
        profile's pins.
        """
        self.put(b'{"name": "coding"}')
        self.served.send(b"POST", b"/api/models/unload/real")
        [(models, _)] = self.served.app.router.unloads
        self.assertEqual(models, ["real"])

    def test_observerFailureLogged(self) -> None:
        """
        A failing observer is logged; the switch still happens.
        """

        def broken(old: str | None, new: str | None) -> None:
            raise ValueError("observer")

        self.served.app.activeProfile.addObserver(broken)
        self.assertEqual(self.put(b'{"name": "other"}'), (200, {"active": "other"}))
        self.assertEqual(self.changes, ["other"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class MiscTests(SynchronousTestCase):
    """
    The version and the root redirect.
    """

    def test_version(self) -> None:
        """
        C{GET /api/version} names the version.
        """
        served = Served(Config())
        self.assertEqual(
            served.json(b"GET", b"/api/version"),
            (200, {"version": __version__, "commit": "unknown", "build_date": "unknown"}),
        )

    def test_root(self) -> None:
        """
        C{GET /} is a 302 to the web UI, open without a key; other methods
        are 405.
        """
        served = Served(Config())
        served.mux.authenticator = lambda request: b"refused"
        response = served.request(b"GET", b"/")
        self.assertEqual(response.status, 302)
        self.assertEqual(response.header(b"location"), b"/ui/")
        self.assertEqual(served.request(b"POST", b"/").status, 405)


class EndToEndTests(TestCase):
    """
    The management routes of a whole llamaswap with demo upstreams: real
    processes loaded and stopped (the rest is in memory).
    """

    timeout = 60

    async def test_runningAndUnload(self) -> None:
        """
        Once loaded, models are running and listed as loaded;
        unloading one model by alias stops its process; C{/unload} stops
        the rest and C{/running} is empty again.
        """
        running = await startLlamaSwap(
            self,
            demoMacros()
            + """
globalTTL: 120
groups:
  both: {swap: false, members: [a, b]}
models:
  a:
    cmd: ${demo} --model a
    aliases: [first]
  b:
    cmd: ${demo} --model b
""",
        )
        # Loaded through the router itself, as a request would, so this
        # test does not depend on the inference routes.
        for model in ("first", "b"):
            lease = await running.app.router.acquire(model)
            lease.release()
        response = await running.get("/running")
        listed = (await response.json())["running"]
        self.assertEqual([(m["model"], m["state"], m["ttl"]) for m in listed],
                         [("a", "ready", 120), ("b", "ready", 120)])
        self.assertIn("--model a", listed[0]["cmd"])
        response = await running.get("/v1/models")
        records = {r["id"]: r for r in (await response.json())["data"]}
        self.assertEqual(records["a"]["status"], {"value": "loaded"})
        pidA = running.app.supervisors["a"].pid
        self.assertIsNotNone(pidA)

        response = await running.post("/api/models/unload/first")
        self.assertEqual((response.code, await response.text()), (200, "OK"))
        self.assertFalse(_alive(pidA))
        response = await running.get("/running")
        self.assertEqual([m["model"] for m in (await response.json())["running"]], ["b"])

        response = await running.get("/unload")
        self.assertEqual((response.code, await response.text()), (200, "OK"))
        response = await running.get("/running")
        self.assertEqual(await response.json(), {"running": []})
        response = await running.get("/v1/models")
        statuses = {r["id"]: r["status"]["value"] for r in (await response.json())["data"]}
        self.assertEqual(statuses, {"a": "unloaded", "b": "unloaded"})


class InMemoryEndToEndTests(SynchronousTestCase):
    """
    The management routes over the whole site, in memory.
    """

    def test_apiKeys(self) -> None:
        """
        With API keys the management routes need one, the health check does
        not, and every accepted form of the key works.
        """
        app = InMemoryLlamaSwap(self, """
apiKeys: [sesame]
models:
  a:
    cmd: x
    proxy: http://127.0.0.1:9001
""")
        answer = app.send("GET", "/v1/models")
        self.assertEqual(answer.code, 401)
        self.assertEqual(
            answer.headers.getRawHeaders("www-authenticate"), ['Basic realm="llamaswap"']
        )
        answer = app.send("GET", "/health")
        self.assertEqual((answer.code, answer.body), (200, b"OK"))
        for kw in (
            {"headers": {"Authorization": "Bearer sesame"}},
            {"headers": {"x-api-key": "sesame"}},
            {"auth": ("anyone", "sesame")},
        ):
            answer = app.send("GET", "/v1/models", **kw)
            self.assertEqual(answer.code, 200, kw)
            self.assertEqual([r["id"] for r in answer.json()["data"]], ["a"])


def _alive(pid: int) -> bool:
    """
    Whether process C{pid} exists and is not a zombie.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return os.path.exists(f"/proc/{pid}")
