"""
Live reconfiguration over real processes (issue #10): a whole llamaswap on
the real reactor with demo upstreams, its configuration file rewritten and
reloaded through the app's L{llamaswap.reload.Reloader} or
C{POST /api/config/reload}.
"""

from __future__ import annotations

import os
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from llamaswap.config.model import Config
from llamaswap.reload import reloadTriggers
from llamaswap.upstream.lifecycle import State

from .harness import Running, demoMacros, freePortRange, startLlamaSwap


def pidAlive(pid: int) -> bool:
    """
    Whether process C{pid} exists (and is not a zombie we already reaped).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def configText(startPort: int, models: str) -> str:
    """
    A configuration of C{models} (YAML under C{models:}) using the demo
    upstream.
    """
    return f"startPort: {startPort}\n" + demoMacros() + "models:\n" + models


ALPHA = "  alpha:\n    cmd: ${demo} --model alpha\n    ttl: 300\n"
SLOW = "  slow:\n    cmd: ${demo} --model slow --tokens 12 --token-delay 0.25\n"


def whenConfig(running: Running, test: Any) -> Deferred[Config]:
    """
    Fires with the first new configuration that C{test} accepts.
    """
    d: Deferred[Config] = Deferred()

    def changed(old: Config, new: Config) -> None:
        if not d.called and test(new):
            remove()
            d.callback(new)

    remove = running.app.configHolder.addObserver(changed)
    return d


def whenState(running: Running, model: str, states: set[State]) -> Deferred[None]:
    """
    Fires once C{model}'s current supervisor is in one of C{states}.
    """
    d: Deferred[None] = Deferred()

    def check(*_: object) -> None:
        supervisor = running.app.supervisors.get(model)
        if not d.called and supervisor is not None and supervisor.state in states:
            for r in removers:
                r()
            d.callback(None)

    removers = [running.app.supervisors.addObserver(lambda *a: reactor.callLater(0, check))]
    for supervisor in running.app.supervisors.values():
        removers.append(supervisor.addStateObserver(lambda *a: reactor.callLater(0, check)))
    check()
    return d


class LiveReloadTests(TestCase):
    """
    What a reload keeps, restarts, adds and removes, with real upstreams.
    """

    timeout = 120

    async def start(self, models: str) -> tuple[Running, str, int]:
        self.startPort = freePortRange(16)
        path = os.path.abspath(self.mktemp())
        running = await startLlamaSwap(
            self, configText(self.startPort, models), configFile=path
        )
        return running, path, self.startPort

    def rewrite(self, path: str, models: str) -> None:
        with open(path, "w") as f:
            f.write(configText(self.startPort, models))

    async def test_unchangedKeepsPIDAcross100Reloads(self) -> None:
        """
        A running model whose definition is unchanged keeps its process
        (same PID, same port) across 100 reloads that change other things
        (its TTL, another model coming and going).
        """
        running, path, _ = await self.start(ALPHA)
        status, _ = await running.chat("alpha")
        self.assertEqual(status, 200)
        supervisor = running.app.supervisors["alpha"]
        pid = supervisor.pid
        port = running.app.config.models["alpha"].port
        self.assertIsNotNone(pid)
        for i in range(100):
            extra = f"  extra{i % 3}:\n    cmd: ${{demo}} --model x\n" if i % 2 else ""
            self.rewrite(path, ALPHA.replace("300", str(300 + i)) + extra)
            result = await running.app.reloader.reload("api")
            self.assertTrue(result.ok, result.errors)
            self.assertNotIn("alpha", result.diff.restarted)
        self.assertIs(running.app.supervisors["alpha"], supervisor)
        self.assertEqual(supervisor.pid, pid)
        self.assertEqual(running.app.config.models["alpha"].port, port)
        self.assertEqual(supervisor.spec.ttl, 399.0)
        status, _ = await running.chat("alpha")
        self.assertEqual(status, 200)
        self.assertEqual(supervisor.pid, pid)

    async def test_changedRestartsAfterStream(self) -> None:
        """
        A changed model finishes its stream in flight on the old process
        (intact), a request arriving meanwhile waits and is served by the
        new definition, and the old process is gone.
        """
        running, path, _ = await self.start(SLOW)
        response = await running.post(
            "/v1/chat/completions",
            json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            unbuffered=True,
        )
        self.assertEqual(response.code, 200)
        chunks: list[bytes] = []
        collected = treq.collect(response, chunks.append)
        oldPID = running.app.supervisors["slow"].pid
        self.assertIsNotNone(oldPID)
        self.rewrite(path, SLOW.replace("--tokens 12", "--tokens 2"))
        result = await running.app.reloader.reload("api")
        self.assertEqual(list(result.diff.restarted), ["slow"])
        self.assertFalse(collected.called, "the stream ended before the reload mattered")
        self.assertTrue(pidAlive(oldPID))
        waiting = Deferred.fromCoroutine(running.chat("slow"))
        self.assertFalse(waiting.called)
        await collected
        body = b"".join(chunks)
        self.assertTrue(body.rstrip().endswith(b"data: [DONE]"), body[-200:])
        self.assertEqual(body.count(b"chat.completion.chunk"), 12 + 2, body)
        status, _ = await waiting
        self.assertEqual(status, 200)
        newPID = running.app.supervisors["slow"].pid
        self.assertNotEqual(newPID, oldPID)
        self.assertFalse(pidAlive(oldPID))
        self.assertEqual(running.app.router.retiring(), frozenset())

    async def test_removedGoneAfterDrain(self) -> None:
        """
        A removed model's process is gone once its requests are done; its
        name answers 404 at once; an added model is served at once.
        """
        running, path, _ = await self.start(ALPHA + SLOW)
        status, _ = await running.chat("alpha")
        self.assertEqual(status, 200)
        pid = running.app.supervisors["alpha"].pid
        self.rewrite(path, SLOW + "  beta:\n    cmd: ${demo} --model beta\n")
        response = await running.post("/api/config/reload")
        summary = await response.json()
        self.assertEqual(response.code, 200, summary)
        self.assertEqual((summary["removed"], summary["added"]), (["alpha"], ["beta"]))
        status, _ = await running.chat("alpha")
        self.assertEqual(status, 404)
        status, _ = await running.chat("beta")
        self.assertEqual(status, 200)
        await whenState(running, "beta", {State.READY})
        self.assertNotIn("alpha", running.app.supervisors)
        self.assertFalse(pidAlive(pid))

    async def test_drainingPortNotReused(self) -> None:
        """
        While a removed model drains its stream, a model added by a later
        reload does not get its C{${PORT}}; the stream completes intact.
        """
        running, path, start = await self.start(ALPHA + SLOW)
        slowPort = running.app.config.models["slow"].port
        response = await running.post(
            "/v1/chat/completions",
            json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            unbuffered=True,
        )
        chunks: list[bytes] = []
        collected = treq.collect(response, chunks.append)
        self.rewrite(path, ALPHA)
        self.assertTrue((await running.app.reloader.reload("api")).ok)
        self.rewrite(path, ALPHA + "  beta:\n    cmd: ${demo} --model beta\n")
        result = await running.app.reloader.reload("api")
        self.assertTrue(result.ok, result.errors)
        self.assertFalse(collected.called, "the stream ended before the reloads mattered")
        self.assertNotEqual(running.app.config.models["beta"].port, slowPort)
        await collected
        self.assertTrue(b"".join(chunks).rstrip().endswith(b"data: [DONE]"))

    async def test_brokenFileKeepsServingThenFixApplies(self) -> None:
        """
        A broken file changes nothing: the reload endpoint answers 422 with
        the problem (file:line: key path), the model keeps serving on the
        same process; fixing the file applies the fix.
        """
        running, path, _ = await self.start(ALPHA)
        status, _ = await running.chat("alpha")
        pid = running.app.supervisors["alpha"].pid
        self.rewrite(path, ALPHA + "    ttl: -5\n" + "  beta:\n    cmd: ${demo}\n")
        response = await running.post("/api/config/reload")
        body = await response.json()
        self.assertEqual(response.code, 422, body)
        self.assertIn("models.alpha.ttl", body["error"]["message"])
        self.assertIn(os.path.basename(path), body["error"]["message"])
        config = await (await running.get("/api/config")).json()
        self.assertTrue(config["errors"])
        self.assertEqual(config["lastReload"]["ok"], False)
        status, _ = await running.chat("alpha")
        self.assertEqual(status, 200)
        self.assertEqual(running.app.supervisors["alpha"].pid, pid)
        self.assertNotIn("beta", running.app.config.models)
        self.rewrite(path, ALPHA + "  beta:\n    cmd: ${demo} --model beta\n")
        response = await running.post("/api/config/reload")
        body = await response.json()
        self.assertEqual(response.code, 200, body)
        self.assertEqual(running.app.supervisors["alpha"].pid, pid)
        status, _ = await running.chat("beta")
        self.assertEqual(status, 200)
        config = await (await running.get("/api/config")).json()
        self.assertEqual(config["errors"], [])

    async def test_watchedFileNewModelServable(self) -> None:
        """
        With the file watched, a model added by an atomic rename is
        servable without any explicit reload.
        """
        running, path, _ = await self.start(ALPHA)
        for trigger in reloadTriggers(running.app.reloader, reactor, path, None, True):
            trigger.startService()
            self.addCleanup(trigger.stopService)
        added = whenConfig(running, lambda c: "beta" in c.models)
        temp = path + ".tmp"
        with open(temp, "w") as f:
            f.write(configText(self.startPort, ALPHA + "  beta:\n    cmd: ${demo} --model beta\n"))
        os.rename(temp, path)
        await added
        status, body = await running.chat("beta")
        self.assertEqual(status, 200, body)
