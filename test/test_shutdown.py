"""
Graceful shutdown: the pieces of L{llamaswap.shutdown} with fakes, and the
whole of it on a real C{twistd -n llamaswap} that receives SIGTERM or SIGINT
while a slow streamed completion is in flight.
"""

from __future__ import annotations

import signal
from typing import Any, Callable

import treq
from twisted.application.service import Service
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, ProcessDone, ReactorNotRunning
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseNeverReceived

from llamaswap.drain import RequestTracker
from llamaswap.shutdown import DrainService, GracefulExit, OrderedShutdown
from llamaswap.tap import Options
from llamaswap.upstream.leftovers import waitGone

from .twistdproc import demoConfig, startTwistd
from .util import poll


class Recorded(Service):
    """
    A service that records its stop and finishes it when told.
    """

    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name = name
        self._log = log
        self._fail = fail
        self.stopping: Deferred[None] | None = None

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._log.append(f"stop {self.name}")
        if self._fail:
            raise RuntimeError("broken")
        self.stopping = Deferred()
        return self.stopping


class OrderedShutdownTests(SynchronousTestCase):
    """
    L{OrderedShutdown} stops its children one by one, last added first.
    """

    def test_sequential(self) -> None:
        """
        Each child stops only once the one added after it has stopped.
        """
        log: list[str] = []
        root = OrderedShutdown()
        app, drain, listener = (Recorded(n, log) for n in ("app", "drain", "listener"))
        for child in (app, drain, listener):
            child.setServiceParent(root)
        root.startService()
        d = root.stopService()
        self.assertEqual(log, ["stop listener"])
        assert listener.stopping is not None
        listener.stopping.callback(None)
        self.assertEqual(log, ["stop listener", "stop drain"])
        assert drain.stopping is not None
        drain.stopping.callback(None)
        self.assertEqual(log, ["stop listener", "stop drain", "stop app"])
        self.assertNoResult(d)
        assert app.stopping is not None
        app.stopping.callback(None)
        self.successResultOf(d)

    def test_failureDoesNotBlock(self) -> None:
        """
        A child whose stop fails is logged; the next still stops.
        """
        log: list[str] = []
        root = OrderedShutdown()
        first, broken = Recorded("first", log), Recorded("broken", log, fail=True)
        first.setServiceParent(root)
        broken.setServiceParent(root)
        root.startService()
        d = root.stopService()
        self.assertEqual(log, ["stop broken", "stop first"])
        assert first.stopping is not None
        first.stopping.callback(None)
        self.successResultOf(d)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class DrainServiceTests(SynchronousTestCase):
    """
    L{DrainService} drains its tracker on stop.
    """

    def test_drainsWithTimeout(self) -> None:
        """
        Stopping waits for the tracker's drain, with the configured timeout.
        """
        calls: list[float] = []
        tracker = RequestTracker(Clock())
        d: Deferred[int] = Deferred()

        def drain(timeout: float) -> Deferred[int]:
            calls.append(timeout)
            return d

        tracker.drain = drain  # type: ignore[method-assign]
        service = DrainService(tracker, 7.5)
        service.startService()
        stopped = service.stopService()
        self.assertEqual(calls, [7.5])
        self.assertNoResult(stopped)
        d.callback(0)
        self.successResultOf(stopped)


class FakeReactor:
    """
    Records C{callWhenRunning}, C{callFromThread} and C{stop}.
    """

    def __init__(self) -> None:
        self.whenRunning: list[Callable[[], None]] = []
        self.stops = 0

    def callWhenRunning(self, f: Callable[[], None]) -> None:
        self.whenRunning.append(f)

    def callFromThread(self, f: Callable[..., None], *args: Any) -> None:
        f(*args)

    def stop(self) -> None:
        self.stops += 1
        if self.stops > 1:
            raise ReactorNotRunning()


class GracefulExitTests(SynchronousTestCase):
    """
    L{GracefulExit} replaces twistd's SIGTERM/SIGINT handling.
    """

    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.handlers: dict[int, Any] = {}
        self.service = GracefulExit(
            self.reactor, installer=lambda sig, handler: self.handlers.__setitem__(sig, handler)
        )

    def test_installedOnceRunning(self) -> None:
        """
        The handlers are installed when the reactor runs, not before.
        """
        self.service.startService()
        self.assertEqual(self.handlers, {})
        [install] = self.reactor.whenRunning
        install()
        self.assertEqual(set(self.handlers), {signal.SIGTERM, signal.SIGINT})

    def test_firstSignalStopsOnce(self) -> None:
        """
        The first signal stops the reactor; later ones are ignored.
        """
        self.service.startService()
        self.reactor.whenRunning[0]()
        self.handlers[signal.SIGTERM](signal.SIGTERM, None)
        self.assertEqual(self.reactor.stops, 1)
        self.handlers[signal.SIGINT](signal.SIGINT, None)
        self.handlers[signal.SIGTERM](signal.SIGTERM, None)
        self.assertEqual(self.reactor.stops, 1)

    def test_ignoredOnceStopping(self) -> None:
        """
        Once the services are stopping (whoever started it), a signal does
        nothing.
        """
        self.service.startService()
        self.reactor.whenRunning[0]()
        self.service.stopService()
        self.handlers[signal.SIGINT](signal.SIGINT, None)
        self.assertEqual(self.reactor.stops, 0)


class OptionTests(SynchronousTestCase):
    """
    C{--shutdown-timeout}.
    """

    def test_default(self) -> None:
        """
        30 seconds, like llama-swap.
        """
        options = Options()
        options.parseOptions(["--config", "x.yaml"])
        self.assertEqual(options["shutdown-timeout"], 30.0)

    def test_value(self) -> None:
        """
        A number of seconds; negative is refused.
        """
        options = Options()
        options.parseOptions(["--config", "x.yaml", "--shutdown-timeout", "2.5"])
        self.assertEqual(options["shutdown-timeout"], 2.5)
        from twisted.python.usage import UsageError

        self.assertRaises(
            UsageError, Options().parseOptions, ["--config", "x.yaml", "--shutdown-timeout", "-1"]
        )


def slow() -> str:
    """
    A model streaming 12 tokens in about 3 s, with a grandchild.
    """
    return demoConfig(
        "  slow:\n    cmd: ${demo} --tokens 12 --token-delay 0.25 --fork-grandchild\n"
    )


class GracefulShutdownTests(TestCase):
    """
    A real C{twistd -n llamaswap} shutting down with a request in flight.
    """

    timeout = 90

    async def streamThenSignal(self, sig: int) -> None:
        """
        Start a slow streamed completion, send C{sig} once its first chunk
        arrived, and check the stream completes, new connections are
        refused, the process exits 0 and nothing it started survives.
        """
        running = await startTwistd(self, slow(), "--shutdown-timeout", "20")
        response = await running.post(
            "/v1/chat/completions",
            json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            unbuffered=True,
        )
        if response.code != 200:
            self.fail(f"{response.code} {await response.text()}\n{running.output}")
        chunks: list[bytes] = []
        collected = treq.collect(response, chunks.append)
        await poll(lambda: bool(chunks), 20, "the first chunk")
        tree = running.remember()
        self.assertGreaterEqual(len(tree), 3, "launcher, upstream, grandchild")
        running.signal(sig)

        async def refused() -> bool:
            try:
                r = await treq.get(running.url + "/health", pool=running.pool, timeout=2)
                await r.content()
            except (ConnectError, ResponseNeverReceived):
                # Refused, or reset while in the closing listener's backlog
                # (before or after the request went out).
                return True
            return False

        await poll(refused, 10, "the listener to close")
        self.assertFalse(collected.called, "the stream ended before the drain could matter")
        await collected
        body = b"".join(chunks)
        self.assertTrue(body.rstrip().endswith(b"data: [DONE]"), body[-200:])
        self.assertEqual(body.count(b"chat.completion.chunk"), 12 + 2, body)
        reason = await running.ended
        self.assertIsInstance(reason, ProcessDone, running.output)
        self.assertEqual(await waitGone(tree, reactor, 10.0), [])
        self.assertIn("shutting down", running.output)

    async def test_sigterm(self) -> None:
        """
        SIGTERM: the stream in flight completes, then llamaswap exits 0
        and its upstream is gone.
        """
        await self.streamThenSignal(signal.SIGTERM)

    async def test_sigint(self) -> None:
        """
        SIGINT (Ctrl-C) behaves like SIGTERM.
        """
        await self.streamThenSignal(signal.SIGINT)

    async def test_drainTimeout(self) -> None:
        """
        A request longer than C{--shutdown-timeout} is cut off when it runs
        out; llamaswap still exits 0 with nothing left.
        """
        running = await startTwistd(
            self,
            demoConfig("  slow:\n    cmd: ${demo} --tokens 400 --token-delay 0.25\n"),
            "--shutdown-timeout",
            "1",
        )
        response = await running.post(
            "/v1/chat/completions",
            json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            unbuffered=True,
        )
        chunks: list[bytes] = []
        collected = treq.collect(response, chunks.append)
        await poll(lambda: bool(chunks), 20, "the first chunk")
        tree = running.remember()
        before = reactor.seconds()
        running.signal(signal.SIGTERM)
        reason = await running.ended
        elapsed = reactor.seconds() - before
        self.assertIsInstance(reason, ProcessDone, running.output)
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertLess(elapsed, 15.0)
        self.assertNotIn(b"[DONE]", b"".join(chunks))
        try:
            await collected
        except Exception:
            pass
        self.assertEqual(await waitGone(tree, reactor, 10.0), [])
        self.assertIn("still in flight", running.output)
