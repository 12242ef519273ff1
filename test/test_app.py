"""
A whole llamaswap over real HTTP with demo upstreams: the swap that the
example configuration shows.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llamaswap.app import LlamaSwap
from llamaswap.backlog import DELAY
from llamaswap.config.load import loadConfigText
from llamaswap.config.model import Config
from llamaswap.upstream.lifecycle import State
from llamaswap.web.client import poolKey
from llamaswap.web.site import buildSite

from .harness import demoMacros, startLlamaSwap
from .web.helpers import Client, ParsedResponse


def load(text: str) -> Config:
    return loadConfigText(text, environ={}).config


class SwapTests(TestCase):
    """
    Requests for two models of the default group swap them.
    """

    timeout = 60

    async def test_swap(self) -> None:
        """
        Asking for A then B starts A, then stops A (its process is gone)
        and starts B (through the launcher started in advance after A's
        start); aliases and C{useModelName} reach the upstream.
        """
        running = await startLlamaSwap(self, demoMacros() + """
models:
  a:
    cmd: ${demo} --model a
    aliases: [first]
  b:
    cmd: ${demo} --model b
    useModelName: served-b
""")
        status, body = await running.chat("first")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["demo"]["served_model"], "a")
        pidA = body["demo"]["pid"]
        status, body = await running.chat("b")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["demo"]["served_model"], "b")
        self.assertEqual(body["demo"]["requested_model"], "served-b")
        self.assertFalse(os.path.exists(f"/proc/{pidA}/cmdline") and
                         b"llamaswap.demo" in open(f"/proc/{pidA}/cmdline", "rb").read())
        self.assertEqual([m for m, _ in running.app.router.running()], ["b"])
        self.assertEqual(running.app.launchers.used, 1)

    async def test_idleConnectionsClosedOnStop(self) -> None:
        """
        The upstream pool keeps as many idle connections per server as a
        model admits requests (at least 64); when a model's process is
        told to stop, the idle connections to it are closed (and again
        once it is gone).
        """
        running = await startLlamaSwap(self, demoMacros() + """
models:
  a:
    cmd: ${demo} --model a
    concurrencyLimit: 100
""")
        agent = running.app.upstreamAgent
        self.assertEqual(agent.pool.maxPersistentPerHost, 100)
        closed: list[str] = []
        original = agent.closeCachedConnectionsTo

        def closeTo(url: str) -> Deferred[None]:
            closed.append(url)
            return original(url)

        self.patch(agent, "closeCachedConnectionsTo", closeTo)
        status, body = await running.chat("a")
        self.assertEqual(status, 200, body)
        proxy = running.app.supervisors["a"].spec.proxy
        self.assertTrue(agent.pool.idle(poolKey(proxy)))
        self.assertEqual(closed, [])
        stopping: list[bool] = []
        running.app.supervisors["a"].addStateObserver(
            lambda model, old, new: stopping.append(bool(closed)) if new is State.STOPPING else None
        )
        await running.app.router.unload(["a"])
        self.assertEqual(stopping, [True])
        self.assertEqual(closed, [proxy, proxy])
        self.assertFalse(agent.pool.idle(poolKey(proxy)))

    async def test_unknownModel(self) -> None:
        """
        An unknown model is a 404 envelope saying so; a body without a
        model says no model could be identified.
        """
        running = await startLlamaSwap(self, demoMacros() + "models:\n  a:\n    cmd: ${demo}\n")
        status, body = await running.chat("nope")
        self.assertEqual(status, 404)
        self.assertEqual(body["error"]["message"], "no router for requested model")
        response = await running.post("/v1/chat/completions", json={"messages": []})
        self.assertEqual(response.code, 404)
        self.assertIn("no model id could be identified", await response.text())

    async def test_startFailureReportsOutput(self) -> None:
        """
        An upstream that exits while starting fails the request at once
        with its exit status and its own last output lines.
        """
        running = await startLlamaSwap(self, demoMacros() + """
models:
  broken:
    cmd: ${demo} --exit-during-start 3 --startup-delay 0.2
""")
        status, body = await running.chat("broken")
        self.assertEqual(status, 500, body)
        message = body["error"]["message"]
        self.assertIn("exit status 3", message)
        self.assertIn("demo: error: failed to load model", message)


WIRED = """
models:
  a:
    cmd: x
    proxy: http://127.0.0.1:9001
profiles:
  p:
    pins: {public: a}
"""


class WiringTests(SynchronousTestCase):
    """
    The app builds its parts around one configuration holder and one
    active-profile holder: setting either reaches every part at once.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.app = LlamaSwap(load(WIRED), self.reactor, runtimeDir=self.mktemp())
        # The channels' timeouts go on the fake reactor, not the real one.
        self.site = buildSite(self.app.webParts(), reactor=self.reactor)

    def get(self, path: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> ParsedResponse:
        client = Client(self.site)
        client.send(b"GET", path, b"", headers)
        return client.response()

    def test_partsShareTheHolders(self) -> None:
        """
        The web parts and the observability service read the app's own
        holders and supervisor registry; the service sets nothing on the
        app.
        """
        parts = self.app.webParts()
        self.assertIs(parts.config, self.app.configHolder)
        self.assertIs(parts.activeProfile, self.app.activeProfile)
        self.assertIs(self.app.observability.configHolder, self.app.configHolder)
        self.assertIs(self.app.observability.supervisors, self.app.supervisors)
        self.assertIs(parts.tracker, self.app.observability.tracker)
        self.assertNotIn("events", vars(self.app))

    def test_newConfigurationEverywhere(self) -> None:
        """
        After C{configHolder.set}, the authenticator and the handlers of
        the already built site use the new configuration.
        """
        self.assertEqual(self.get(b"/v1/models").status, 200)
        self.app.configHolder.set(load(WIRED + "apiKeys: [sekrit]\n"))
        self.assertIs(self.app.config, self.app.configHolder.value)
        self.assertEqual(self.get(b"/v1/models").status, 401)
        answer = self.get(b"/api/profiles", [(b"authorization", b"Bearer sekrit")])
        self.assertEqual(json.loads(answer.body)["profiles"][0]["id"], "p")

    def test_activeProfileEverywhere(self) -> None:
        """
        Setting the active profile is seen by the management routes and
        announced on the event bus.
        """
        published: list[tuple[str, object]] = []
        self.app.observability.startService()
        self.addCleanup(self.app.observability.stopService)
        self.app.observability.events.subscribe(lambda e: published.append((e.kind, e.data)))
        self.app.activeProfile.set("p")
        self.assertEqual(json.loads(self.get(b"/api/profiles").body)["active"], "p")
        self.assertIn(("profileChanged", {"active": "p"}), published)


class BacklogWiringTests(SynchronousTestCase):
    """
    The app's bookkeeping waits in one backlog: the access log and the
    request tracker queue there, the forwarder and the reading routes
    settle it, and stopping the app runs what waits.
    """

    setUp = WiringTests.setUp
    get = WiringTests.get

    def accessLines(self, events: Any) -> list[str]:
        return [e["path"] for e in events if e.get("log_namespace") == "llamaswap.access"]

    def test_accessLinesWait(self) -> None:
        """
        A request's access line is written when a reading route runs (it
        settles first), or a moment later (L{DELAY}).
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.assertEqual(self.get(b"/v1/models").status, 200)
        self.assertEqual(self.accessLines(events), [])
        self.assertEqual(self.get(b"/running").status, 200)
        self.assertEqual(self.accessLines(events), ["/v1/models"])
        self.reactor.advance(DELAY)
        self.assertEqual(self.accessLines(events), ["/v1/models", "/running"])

    def test_partsShareIt(self) -> None:
        """
        The tracker records through the backlog and the forwarder runs it
        while idle once a request is sent.
        """
        backlog = self.app.backlog
        self.assertEqual(self.app.observability.tracker.later, backlog.later)
        self.assertEqual(self.app.forwarder._whileAwaiting, backlog.runWhileIdle)
        self.assertIs(self.app.webParts().backlog, backlog)

    def test_stoppingRunsWhatWaits(self) -> None:
        """
        Stopping the app writes what waits, and from then on nothing waits.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.get(b"/v1/models")
        self.app.startService()
        self.app.stopService()
        self.assertEqual(self.accessLines(events), ["/v1/models"])
        self.get(b"/v1/models")
        self.assertEqual(self.accessLines(events), ["/v1/models", "/v1/models"])


class ApplyTests(SynchronousTestCase):
    """
    L{LlamaSwap.applyConfig}: a reload's diff carried out on the app's
    parts (nothing is started: the reactor is a fake).
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.app = LlamaSwap(load(WIRED), self.reactor, runtimeDir=self.mktemp())
        self.published: list[tuple[str, object]] = []
        self.app.observability.startService()
        self.addCleanup(self.app.observability.stopService)
        self.app.observability.events.subscribe(
            lambda e: self.published.append((e.kind, e.data))
        )

    def apply(self, text: str) -> Config:
        from llamaswap.config.diff import diffConfigs

        new = load(text)
        self.app.applyConfig(new, diffConfigs(self.app.config, new))
        return new

    def test_addedAndLiveSettings(self) -> None:
        """
        An added model gets a supervisor, a log monitor and a route at
        once; a kept model keeps its supervisor and takes its new TTL; the
        holder holds the new configuration.
        """
        kept = self.app.supervisors["a"]
        new = self.apply(
            WIRED.replace("cmd: x", "cmd: x\n    ttl: 42").replace(
                "profiles:", "  b:\n    cmd: y\n    proxy: http://127.0.0.1:9002\nprofiles:"
            )
        )
        self.assertIs(self.app.config, new)
        self.assertIs(self.app.supervisors["a"], kept)
        self.assertEqual(kept.spec.ttl, 42.0)
        self.assertIn("b", self.app.supervisors)
        self.assertIn("b", self.app.logs.models)
        self.assertEqual(self.app.router.resolve("b"), ("b", None))

    def test_removedIdleModelGoes(self) -> None:
        """
        A removed model that is not running is dropped at once.
        """
        self.apply(WIRED.replace("  a:\n", "  b:\n").replace("{public: a}", "{public: b}"))
        self.assertEqual(sorted(self.app.supervisors), ["b"])

    def test_profiles(self) -> None:
        """
        The active profile is cleared when it no longer exists; a new
        C{hooks.on_startup.profile} is activated.
        """
        self.app.activeProfile.set("p")
        self.apply(WIRED.replace("  p:\n", "  q:\n"))
        self.assertIsNone(self.app.activeProfile.value)
        self.apply(WIRED + "hooks:\n  on_startup:\n    profile: p\n")
        self.assertEqual(self.app.activeProfile.value, "p")

    def test_events(self) -> None:
        """
        Reloads, successful or not, are published on the event bus with
        their summary.
        """
        from llamaswap.reload import ReloadResult

        self.app._reloaded(ReloadResult("api", self.app.config, None, ("x",)))
        self.app._reloadFailed(ReloadResult("api", self.app.config, None, ("bad",)))
        kinds = [kind for kind, _ in self.published]
        self.assertIn("configReloaded", kinds)
        self.assertIn("configReloadFailed", kinds)
        failed = dict(self.published)["configReloadFailed"]
        self.assertEqual(failed["errors"], ["bad"])

    def test_startupProfile(self) -> None:
        """
        C{hooks.on_startup.profile} is active once the app starts.
        """
        app = LlamaSwap(
            load(WIRED + "hooks:\n  on_startup:\n    profile: p\n"),
            self.reactor,
            runtimeDir=self.mktemp(),
        )
        app.startService()
        self.addCleanup(app.stopService)
        self.assertEqual(app.activeProfile.value, "p")

    def test_idleRemovedPortReleased(self) -> None:
        """
        A removed model that is not running is gone at once, and so is the
        reservation of its C{${PORT}} (see test.test_livereload for one
        that drains).
        """
        from llamaswap.config.diff import diffConfigs

        app = LlamaSwap(
            load("startPort: 7000\nmodels:\n  a:\n    cmd: x --port ${PORT}\n"),
            self.reactor,
            runtimeDir=self.mktemp(),
        )
        new = load("startPort: 7000\nmodels:\n  b:\n    cmd: x --port ${PORT}\n")
        app.applyConfig(new, diffConfigs(app.config, new))
        self.assertEqual(app._drainingPorts, {})
        self.assertEqual(sorted(app.supervisors), ["b"])
