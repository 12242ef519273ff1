"""
Tests for L{llamaswap.web.configapi}: C{GET /api/config} (redacted
effective configuration) and C{POST /api/config/reload}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from llamaswap.config.diff import diffConfigs
from llamaswap.config.load import loadConfigText
from llamaswap.config.model import Config
from llamaswap.holder import Holder
from llamaswap.reload import ReloadResult
from llamaswap.web.configapi import (
    REDACTED,
    ConfigRoutes,
    install,
    redactCommand,
    redactedConfig,
)
from llamaswap.web.mux import Mux

from .helpers import Client

SECRET = """
apiKeys: [topsecret]
auth:
  sessionSecret: cookiesecret
peers:
  far:
    proxy: http://127.0.0.1:9100
    apiKey: peersecret
    models: [x]
models:
  a:
    cmd: srv --port ${PORT} --api-key cmdsecret --hf-token=tok123 -m model.gguf
    env: [HF_TOKEN=envsecret, PLAIN=1]
"""


def load(text: str) -> Config:
    return loadConfigText(text, environ={}, reservedPorts={}).config


class FakeReloader:
    """
    Answers reloads when the test says so; reports fixed check errors.
    """

    def __init__(self) -> None:
        self.lastResult: ReloadResult | None = None
        self.pending: list[Deferred[ReloadResult]] = []
        self.errors: tuple[str, ...] = ()

    def reload(self, trigger: str = "api") -> Deferred[ReloadResult]:
        d: Deferred[ReloadResult] = Deferred()
        self.pending.append(d)
        return d

    def check(self) -> tuple[str, ...]:
        return self.errors


class RedactionTests(SynchronousTestCase):
    """
    No secret of the configuration is shown.
    """

    def test_noSecretLeft(self) -> None:
        """
        API keys, the peers' keys, environment values and secret flags are
        replaced; everything else is kept.
        """
        data = redactedConfig(load(SECRET))
        text = json.dumps(data)
        for secret in ("topsecret", "cookiesecret", "peersecret", "cmdsecret", "tok123", "envsecret"):
            self.assertNotIn(secret, text)
        self.assertEqual(data["apiKeys"], [REDACTED])
        model = data["models"]["a"]
        self.assertEqual(model["env"], ["HF_TOKEN=***", "PLAIN=***"])
        self.assertIn("-m model.gguf", model["cmd"])
        self.assertIn("--api-key ***", model["cmd"])

    def test_redactCommand(self) -> None:
        """
        Both C{--flag value} and C{--flag=value} forms; other flags stay.
        """
        self.assertEqual(
            redactCommand("srv --api-key k --port 5 --token=t"),
            "srv --api-key *** --port 5 --token=***",
        )


class RoutesTests(SynchronousTestCase):
    """
    The two routes over a fake reloader.
    """

    def setUp(self) -> None:
        self.config = load(SECRET)
        self.reloader = FakeReloader()
        mux = Mux()
        install(mux, ConfigRoutes(Holder(self.config), self.reloader, ("/etc/c.yaml", None)))
        self.site = Site(mux, reactor=MemoryReactorClock())

    def request(self, method: bytes, path: bytes) -> Client:
        client = Client(self.site)
        client.send(method, path)
        return client

    def answer(self, client: Client) -> tuple[int, Any]:
        response = client.response()
        return response.status, json.loads(response.body)

    def test_show(self) -> None:
        """
        C{GET /api/config}: the redacted configuration, its path, the
        errors of the files now and the last reload.
        """
        self.reloader.errors = ("c.yaml:3: models.a.ttl: bad",)
        status, body = self.answer(self.request(b"GET", b"/api/config"))
        self.assertEqual(status, 200)
        self.assertEqual(body["path"], "/etc/c.yaml")
        self.assertEqual(body["errors"], ["c.yaml:3: models.a.ttl: bad"])
        self.assertIsNone(body["lastReload"])
        self.assertNotIn("topsecret", json.dumps(body))
        self.reloader.lastResult = ReloadResult(
            "watch", self.config, diffConfigs(self.config, self.config)
        )
        status, body = self.answer(self.request(b"GET", b"/api/config"))
        self.assertEqual(body["lastReload"]["trigger"], "watch")

    def test_reloadOK(self) -> None:
        """
        C{POST /api/config/reload} answers once the reload is done: 200
        with its summary.
        """
        client = self.request(b"POST", b"/api/config/reload")
        self.assertEqual(len(self.reloader.pending), 1)
        self.reloader.pending[0].callback(
            ReloadResult("api", self.config, diffConfigs(self.config, self.config))
        )
        status, body = self.answer(client)
        self.assertEqual(status, 200)
        self.assertEqual((body["ok"], body["kept"]), (True, ["a"]))

    def test_reloadRefused(self) -> None:
        """
        A broken file: 422 with every problem in an C{invalid_config}
        envelope.
        """
        client = self.request(b"POST", b"/api/config/reload")
        self.reloader.pending[0].callback(
            ReloadResult("api", self.config, None, ("c.yaml:3: models.a.ttl: bad",))
        )
        status, body = self.answer(client)
        self.assertEqual(status, 422)
        self.assertEqual(body["error"]["code"], "invalid_config")
        self.assertIn("c.yaml:3: models.a.ttl: bad", body["error"]["message"])
        self.assertEqual(body["reload"]["ok"], False)
