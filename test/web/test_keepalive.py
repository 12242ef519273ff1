"""
Tests for per-request keep-alive (L{llamaswap.web.keepalive}): the field
parsing, the handler setting the model's idle timeout, and a whole
llamaswap where the field never reaches the upstream and C{keep_alive: 0}
unloads the model after the request.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llamaswap.config.model import RequestTTLConfig
from llamaswap.httperrors import BadRequest
from llamaswap.upstream.lifecycle import State
from llamaswap.web.keepalive import KeepAlive, takeKeepAlive

from ..harness import startLlamaSwap
from ..util import poll
from .test_inference import APP, FakeRouter, Parts, config, lastReceived, postJSON

ON = RequestTTLConfig()


class TakeTests(SynchronousTestCase):
    """
    L{takeKeepAlive} removes the fields and reads them.
    """

    def test_table(self) -> None:
        cases = [
            ({"ttl": 300}, ON, KeepAlive(300.0)),
            ({"keep_alive": "5m"}, ON, KeepAlive(300.0)),
            ({"keep_alive": 0}, ON, KeepAlive(0.0)),
            ({"keep_alive": -1}, ON, KeepAlive(None)),
            ({"keep_alive": "-1m"}, ON, KeepAlive(None)),
            ({"keep_alive": "10m", "ttl": 5}, ON, KeepAlive(600.0)),
            ({"keep_alive": None, "ttl": 5}, ON, KeepAlive(5.0)),
            ({"keep_alive": None}, ON, None),
            ({"ttl": 7200}, RequestTTLConfig(max=3600), KeepAlive(3600.0)),
            ({"keep_alive": -1}, RequestTTLConfig(max=3600), KeepAlive(3600.0)),
            ({"ttl": 60}, RequestTTLConfig(max=3600), KeepAlive(60.0)),
        ]
        for body, settings, expected in cases:
            body = dict(body, model="m")
            changed, keepAlive = takeKeepAlive(body, settings)
            self.assertEqual((changed, keepAlive), (True, expected), body)
            self.assertEqual(body, {"model": "m"})

    def test_absent(self) -> None:
        body = {"model": "m"}
        self.assertEqual(takeKeepAlive(body, ON), (False, None))

    def test_disabled(self) -> None:
        """
        Disabled, the fields stay in the body and mean nothing.
        """
        body = {"model": "m", "ttl": 5, "keep_alive": "5m"}
        self.assertEqual(takeKeepAlive(body, RequestTTLConfig(enabled=False)), (False, None))
        self.assertEqual(body, {"model": "m", "ttl": 5, "keep_alive": "5m"})

    def test_bad(self) -> None:
        for value in ("soon", True, [1], {"a": 1}):
            with self.assertRaises(BadRequest) as caught:
                takeKeepAlive({"keep_alive": value}, ON)
            self.assertIn("keep_alive: must be seconds or a duration", str(caught.exception))


class RecordingSupervisor:
    def __init__(self) -> None:
        self.idleTimeouts: list[float | None] = []

    def setIdleTimeout(self, seconds: float | None) -> None:
        self.idleTimeouts.append(seconds)


class RecordingRouter(FakeRouter):
    """
    A router granting at once, with leases naming one recording supervisor.
    """

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.supervisor = RecordingSupervisor()

    def acquire(self, name: str) -> Deferred[Any]:
        d = super().acquire(name)
        self.leases[-1].supervisor = self.supervisor  # type: ignore[attr-defined]
        return d


def parts() -> Parts:
    app = Parts(APP)
    app.router = RecordingRouter(app.config.value)
    return app


class HandlerTests(SynchronousTestCase):
    """
    The handler strips the fields for local models and sets the idle
    timeout once the model is granted; peers get the body as it is.
    """

    def test_local(self) -> None:
        app = parts()
        postJSON(app.handler(), {"model": "a", "keep_alive": "2m"})
        ((args, kwargs),) = app.forwarder.calls
        self.assertEqual(args[3], b'{"model": "a"}')
        self.assertEqual(app.router.supervisor.idleTimeouts, [120.0])  # type: ignore[attr-defined]

    def test_noField(self) -> None:
        """
        Without the fields the idle timeout is left alone.
        """
        app = parts()
        postJSON(app.handler(), {"model": "a"})
        self.assertEqual(len(app.forwarder.calls), 1)
        self.assertEqual(app.router.supervisor.idleTimeouts, [])  # type: ignore[attr-defined]

    def test_peerUntouched(self) -> None:
        app = parts()
        handler = app.handler()
        handler.peers.forwarder = app.forwarder  # type: ignore[assignment]
        postJSON(handler, {"model": "p/m", "ttl": 5})
        ((args, kwargs),) = app.forwarder.calls
        self.assertEqual(args[3], b'{"model": "m", "ttl": 5}')

    def test_badValue(self) -> None:
        app = parts()
        request = postJSON(app.handler(), {"model": "a", "ttl": "later"})
        self.assertEqual(request.code, 400)
        self.assertEqual(app.forwarder.calls, [])


class WholeTests(TestCase):
    """
    Through a whole llamaswap and a real demo upstream.
    """

    timeout = 60

    async def test_keepAliveZeroUnloads(self) -> None:
        """
        C{keep_alive: 0}: the upstream never sees the field, and the model
        unloads as soon as the request is done.
        """
        running = await startLlamaSwap(self, config("models:\n  a:\n    cmd: ${demo}\n"))
        status, body = await running.chat("a", keep_alive=0, max_tokens=1)
        self.assertEqual(status, 200, body)
        supervisor = running.app.supervisors["a"]
        await poll(lambda: supervisor.state is State.STOPPED, 20, "model a unloaded")
        status, body = await running.chat("a", ttl=600, max_tokens=1)
        self.assertEqual(status, 200, body)
        entry = await lastReceived(running, "a")
        self.assertEqual(entry["json"]["max_tokens"], 1)
        self.assertNotIn("ttl", entry["json"])
        self.assertNotIn("keep_alive", entry["json"])
        self.assertIs(supervisor.state, State.READY)
