"""
Tests for L{llamaswap.web.recovery}: a request relayed to a model whose
server just died is served after a restart, not answered 502 (hardening
#3).
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llamaswap.upstream.lifecycle import State
from llamaswap.web.forward import COMPLETE, FAILED, ForwardResult
from llamaswap.web.recovery import HoldEnd, refusedUnanswered

from ..harness import startLlamaSwap
from .helpers import RecordingTap
from .test_inference import APP, Parts, config, postJSON


class Supervisor:
    def __init__(self, proxy: str) -> None:
        self.spec = type("Spec", (), {"proxy": proxy})()
        self.stops = 0

    def stop(self, timeout: float | None = None) -> Deferred[None]:
        self.stops += 1
        return succeed(None)


class Lease:
    def __init__(self, model: str, supervisor: Supervisor) -> None:
        self.model = model
        self.supervisor = supervisor
        self.released = 0

    @property
    def url(self) -> str:
        return self.supervisor.spec.proxy  # type: ignore[no-any-return]

    def release(self) -> bool:
        self.released += 1
        return self.released == 1


class Router:
    def __init__(self, config: Any) -> None:
        self.config = config
        self.supervisor = Supervisor("http://127.0.0.1:9")
        self.leases: list[Lease] = []

    def resolve(self, name: str) -> tuple[str, None] | None:
        real = self.config.realModelName(name)
        return (real, None) if real is not None else None

    def stateOf(self, model: str) -> State | None:
        return State.READY if model in self.config.models else None

    def acquire(self, name: str) -> Deferred[Any]:
        lease = Lease(name, self.supervisor)
        self.leases.append(lease)
        return succeed(lease)


def result(outcome: str, status: int | None, reason: Failure | None) -> ForwardResult:
    return ForwardResult(outcome, status, 0, reason, 0.0, None, None, 0.0)


REFUSED = Failure(ConnectionRefusedError("nobody home"))


class RestartTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.app = Parts(APP)
        self.app.router = Router(self.app.config.value)  # type: ignore[assignment]
        self.handler = self.app.handler()

    def test_refusedRestartsAndRetries(self) -> None:
        """
        A refused connection to a granted model stops its server (marking
        it failed), releases the lease, waits for a new one and relays the
        request again; the client never saw the refusal.
        """
        request = postJSON(self.handler, {"model": "a"})
        forwarder = self.app.forwarder
        (_, first), = forwarder.calls
        self.assertTrue(first["deferRefused"])
        forwarder.results[0].callback(result(FAILED, None, REFUSED))
        router = self.app.router
        self.assertEqual(router.supervisor.stops, 1)
        self.assertEqual([lease.released for lease in router.leases], [1, 0])
        self.assertEqual(len(forwarder.calls), 2)
        self.assertFalse(forwarder.calls[1][1].get("deferRefused"))
        self.assertFalse(request.startedWriting)
        forwarder.results[1].callback(result(COMPLETE, 200, None))
        self.assertEqual([lease.released for lease in router.leases], [1, 1])

    def test_otherFailuresNotRetried(self) -> None:
        """
        A failure the client was answered for is not retried.
        """
        postJSON(self.handler, {"model": "a"})
        self.app.forwarder.results[0].callback(result(FAILED, 502, REFUSED))
        self.assertEqual(len(self.app.forwarder.calls), 1)
        self.assertEqual(self.app.router.supervisor.stops, 0)


class HoldEndTests(SynchronousTestCase):
    def test_holdsRefusedEnd(self) -> None:
        tap = RecordingTap()
        held = HoldEnd([tap])
        held.responseEnded(REFUSED)
        self.assertEqual(tap.ended, [])
        held.release()
        self.assertEqual(len(tap.ended), 1)

    def test_passesOthers(self) -> None:
        tap = RecordingTap()
        held = HoldEnd([tap])
        held.responseEnded(None)
        self.assertEqual(tap.ended, [None])
        self.assertTrue(refusedUnanswered(result(FAILED, None, REFUSED)))
        self.assertFalse(refusedUnanswered(result(FAILED, 502, REFUSED)))


class CrashTests(TestCase):
    """
    With a real upstream that is SIGKILLed while ready.
    """

    timeout = 60

    async def test_requestsRightAfterCrash(self) -> None:
        """
        Requests sent right after the model's server was killed are all
        served (by a restarted server).
        """
        running = await startLlamaSwap(self, config("models:\n  a:\n    cmd: ${demo}\n"))
        status, _ = await running.chat("a")
        self.assertEqual(status, 200)
        supervisor = running.app.supervisors["a"]
        self.assertEqual(supervisor.state, State.READY)
        os.kill(supervisor.pid, signal.SIGKILL)
        body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
        results = await DeferredList(
            [running.post("/v1/chat/completions", json=body) for _ in range(6)],
            consumeErrors=True,
        )
        codes = []
        for ok, response in results:
            self.assertTrue(ok, response)
            text = await response.text()
            codes.append(response.code)
            self.assertEqual(response.code, 200, text)
            self.assertIn("choices", json.loads(text))
        self.assertEqual(codes, [200] * 6)
