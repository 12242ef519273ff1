"""
Tests for L{llamaswap.observe.events} (the bus and the SSE stream) and
L{llamaswap.observe.loads} (model status and load progress).
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llamaswap.config.load import loadConfigText
from llamaswap.observe.events import (
    HEARTBEAT_FRAME,
    Event,
    EventBus,
    EventStream,
    capabilityNames,
    modelStatus,
)
from llamaswap.observe.loads import LoadHistory, LoadWatcher
from llamaswap.upstream.lifecycle import State

from ..web.helpers import Client


def frames(body: bytes) -> list[tuple[str, Any]]:
    """
    The events of an SSE body, payloads decoded twice.
    """
    found = []
    for block in body.split(b"\n\n"):
        if not block or block.startswith(b":"):
            continue
        event, data = block.split(b"\n")
        assert event == b"event:message", block
        assert data.startswith(b"data:"), block
        outer = json.loads(data[5:])
        found.append((outer["type"], json.loads(outer["data"])))
    return found


class EventTests(SynchronousTestCase):
    """
    L{Event} frames and the L{EventBus}.
    """

    def test_frame(self) -> None:
        """
        llama-swap's frame: no spaces after the colons, the payload a JSON
        string inside the JSON envelope.
        """
        event = Event("activity", {"id": 3})
        self.assertEqual(
            event.frame, b'event:message\ndata:{"type":"activity","data":"{\\"id\\":3}"}\n\n'
        )
        self.assertIs(event.frame, event.frame)

    def test_bus(self) -> None:
        """
        Subscribers get every event until they unsubscribe; one failing
        does not stop the others.
        """
        bus = EventBus()
        seen: list[Event] = []

        def broken(event: Event) -> None:
            raise RuntimeError("nope")

        bus.subscribe(broken)
        unsubscribe = bus.subscribe(seen.append)
        bus.publish("a", 1)
        unsubscribe()
        bus.publish("b", 2)
        self.assertEqual([(e.kind, e.data) for e in seen], [("a", 1)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)


class StreamResource(Resource):
    isLeaf = True

    def __init__(self, make: Callable[[Request], EventStream], initial: list[Event],
                 bus: EventBus) -> None:
        super().__init__()
        self.make = make
        self.initial = initial
        self.bus = bus
        self.streams: list[EventStream] = []

    def render(self, request: Request) -> Any:
        stream = self.make(request)
        self.streams.append(stream)
        stream.start(self.initial, self.bus)
        return NOT_DONE_YET


class EventStreamTests(SynchronousTestCase):
    """
    L{EventStream} over a real twisted.web request.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.bus = EventBus()
        self.resyncs = 0

        def resync() -> Event:
            self.resyncs += 1
            return Event("inflight", {"operation": "snapshot"})

        self.resource = StreamResource(
            lambda request: EventStream(request, self.clock, limit=3, resync=resync),
            [Event("modelStatus", []), Event("uiConfig", {"activity": {}})],
            self.bus,
        )
        self.client = Client(Site(self.resource, reactor=self.clock))
        self.client.send(b"GET", b"/api/events")

    def test_headersAndInitial(self) -> None:
        """
        SSE headers go out at once, then the initial events, then live ones.
        """
        self.bus.publish("activity", {"id": 1})
        response = self.client.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header(b"content-type"), b"text/event-stream")
        self.assertEqual(response.header(b"x-accel-buffering"), b"no")
        self.assertEqual(response.header(b"cache-control"), b"no-cache")
        self.assertEqual(
            frames(response.body),
            [("modelStatus", []), ("uiConfig", {"activity": {}}), ("activity", {"id": 1})],
        )

    def test_slowClient(self) -> None:
        """
        While the client is paused, up to C{limit} events wait; more are
        dropped, and a dropped in-flight update brings a fresh snapshot
        once the queue is sent.
        """
        self.client.pause()
        for i in range(3):
            self.bus.publish("activity", {"id": i})
        self.bus.publish("inflight", {"operation": "remove", "id": "9"})
        self.bus.publish("activity", {"id": 99})
        before = frames(self.client.response().body)
        self.client.resume()
        after = frames(self.client.response().body)[len(before):]
        self.assertEqual(
            after,
            [("activity", {"id": 0}), ("activity", {"id": 1}), ("activity", {"id": 2}),
             ("inflight", {"operation": "snapshot"})],
        )
        self.assertEqual(self.resource.streams[0].dropped, 2)
        self.assertEqual(self.resyncs, 1)
        self.flushLoggedErrors()

    def test_heartbeat(self) -> None:
        """
        A comment goes out every 15 seconds (not while the client is
        paused).
        """
        self.clock.advance(15)
        self.assertTrue(self.client.response().body.endswith(HEARTBEAT_FRAME))
        self.client.pause()
        length = len(self.client.transport.value())
        self.clock.advance(15)
        self.assertEqual(len(self.client.transport.value()), length)
        self.client.resume()
        self.clock.advance(15)
        self.assertTrue(self.client.response().body.endswith(HEARTBEAT_FRAME))

    def test_disconnect(self) -> None:
        """
        A client that leaves is unsubscribed and its timer cancelled.
        """
        self.assertEqual(self.bus.subscribers, 1)
        closed: list[bool] = []
        self.resource.streams[0].onClose(lambda: closed.append(True))
        self.client.disconnect()
        self.assertEqual(self.bus.subscribers, 0)
        self.assertIsNone(self.resource.streams[0]._timer)
        self.assertEqual(closed, [True])

    def test_close(self) -> None:
        """
        Closing the stream (shutdown) finishes the response.
        """
        self.resource.streams[0].close()
        self.assertTrue(self.client.response().complete)
        self.assertEqual(self.bus.subscribers, 0)
        self.assertIsNone(self.resource.streams[0]._timer)


CONFIG = """
models:
  b:
    cmd: x --port ${PORT}
    name: Bee
    unlisted: true
    capabilities:
      in: [text, image]
      out: [text]
      tools: true
      context: 8192
  a:
    cmd: x --port ${PORT}
    aliases: [first]
peers:
  remote:
    proxy: http://10.0.0.1:8080
    models: [m1]
"""


class ModelStatusTests(SynchronousTestCase):
    """
    The C{modelStatus} payload.
    """

    def test_payload(self) -> None:
        """
        Local models sorted by ID (unlisted included) with states, aliases,
        capabilities and context; then peer models with an empty state.
        """
        config = loadConfigText(CONFIG, "t.yaml", environ={}).config
        self.assertEqual(
            modelStatus(config, {"b": "ready"}),
            [
                {"id": "a", "name": "", "description": "", "state": "stopped",
                 "unlisted": False, "peerID": "", "aliases": ["first"]},
                {"id": "b", "name": "Bee", "description": "", "state": "ready",
                 "unlisted": True, "peerID": "",
                 "capabilities": {"vision": True, "function_calling": True},
                 "context_length": 8192},
                {"id": "remote/m1", "name": "", "description": "", "state": "",
                 "unlisted": False, "peerID": "remote"},
            ],
        )

    def test_capabilityNames(self) -> None:
        from llamaswap.config.model import Capabilities

        self.assertEqual(
            capabilityNames(Capabilities(inputs=("audio",), outputs=("text",))),
            ["audio_transcriptions"],
        )
        self.assertEqual(
            capabilityNames(Capabilities(inputs=("text",), outputs=("image", "audio"))),
            ["audio_speech", "image_generation"],
        )


class FakeSupervisor:
    def __init__(self, model: str) -> None:
        self.model = model
        self.state = State.STOPPED
        self.stateObservers: list[Any] = []
        self.outputObservers: list[Any] = []

    def addStateReporter(self, observer: Any) -> Callable[[], None]:
        self.stateObservers.append(observer)
        return lambda: self.stateObservers.remove(observer)

    def addOutputObserver(self, observer: Any) -> Callable[[], None]:
        self.outputObservers.append(observer)
        return lambda: self.outputObservers.remove(observer)

    def move(self, new: State) -> None:
        old, self.state = self.state, new
        for observer in list(self.stateObservers):
            observer(self.model, old, new)

    def say(self, line: str) -> None:
        for observer in list(self.outputObservers):
            observer(self.model, "stderr", line)


class RecordingMetrics:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, *args))


class LoadWatcherTests(SynchronousTestCase):
    """
    L{LoadWatcher} turns state changes into events, metrics and history.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.supervisor = FakeSupervisor("a")
        self.events: list[tuple[str, Any]] = []
        self.metrics = RecordingMetrics()
        self.loads: list[tuple[Any, ...]] = []
        self.watcher = LoadWatcher(
            {"a": self.supervisor},
            self.clock,
            lambda kind, data: self.events.append((kind, data)),
            statusPayload=lambda: [self.supervisor.state.value],
            metrics=self.metrics,
            onLoad=lambda *args: self.loads.append(args),
        )
        self.watcher.start()

    def progress(self) -> list[dict[str, Any]]:
        return [data for kind, data in self.events if kind == "loadProgress"]

    def test_nobodyListening(self) -> None:
        """
        With nobody listening no event payload is built (nor published);
        loads are still measured, counted and recorded.
        """
        supervisor = FakeSupervisor("b")
        built: list[str] = []
        published: list[str] = []
        loads: list[tuple[Any, ...]] = []
        watcher = LoadWatcher(
            {"b": supervisor},
            self.clock,
            lambda kind, data: published.append(kind),
            statusPayload=lambda: built.append("status"),
            metrics=self.metrics,
            onLoad=lambda *args: loads.append(args),
            listening=lambda: 0,
        )
        watcher.start()
        supervisor.move(State.STARTING)
        self.clock.advance(2.5)
        supervisor.move(State.READY)
        watcher.stop()
        self.assertEqual((built, published), ([], []))
        self.assertEqual(loads, [(1002.5, "b", 2500, True)])
        self.assertEqual(watcher.history.expected("b"), 2500)
        self.assertIn(("loadFinished", "b", 2.5, True), self.metrics.calls)

    def test_load(self) -> None:
        """
        A start reports progress at once and every second with the latest
        output line; readiness reports C{ready}, records the duration and
        stops the ticks; a second load knows what to expect.
        """
        self.supervisor.move(State.STARTING)
        self.supervisor.say("llama_model_loader: loaded meta data")
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.watcher.current()[0]["elapsed_ms"], 2000)
        self.clock.advance(0.5)
        self.supervisor.move(State.READY)
        self.clock.advance(5)
        progress = self.progress()
        self.assertEqual([p["phase"] for p in progress], ["starting"] * 3 + ["ready"])
        self.assertEqual([p["elapsed_ms"] for p in progress], [0, 1000, 2000, 2500])
        self.assertEqual(progress[1]["message"], "llama_model_loader: loaded meta data")
        self.assertEqual(progress[-1]["progress"], 1.0)
        self.assertIsNone(progress[0]["expected_ms"])
        self.assertEqual(self.loads, [(1002.5, "a", 2500, True)])
        self.assertIn(("loadFinished", "a", 2.5, True), self.metrics.calls)
        self.assertIn(("stateChanged", "a", "ready"), self.metrics.calls)
        self.assertEqual(
            [data for kind, data in self.events if kind == "modelStatus"],
            [["starting"], ["ready"]],
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.events.clear()
        self.supervisor.move(State.STOPPED)
        self.supervisor.move(State.STARTING)
        self.clock.advance(1)
        second = self.progress()
        self.assertEqual(second[1]["expected_ms"], 2500)
        self.assertEqual(second[1]["progress"], 0.4)

    def test_failure(self) -> None:
        """
        A start that ends anywhere but ready is reported as failed.
        """
        self.supervisor.move(State.STARTING)
        self.clock.advance(3)
        self.supervisor.move(State.STOPPED)
        self.assertEqual(self.progress()[-1]["phase"], "failed")
        self.assertIn(("loadFinished", "a", 3.0, False), self.metrics.calls)
        self.assertEqual(self.loads, [(1003.0, "a", 3000, False)])
        self.assertIsNone(self.watcher.history.expected("a"))

    def test_stop(self) -> None:
        """
        Stopping removes the observers and the timers.
        """
        self.supervisor.move(State.STARTING)
        self.watcher.stop()
        self.assertEqual(self.supervisor.stateObservers, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_replaced(self) -> None:
        """
        A reload's new supervisor is watched instead of the old one; a
        removed model is no longer watched.
        """
        new = FakeSupervisor("a")
        self.watcher.replaced("a", self.supervisor, new)
        self.assertEqual(self.supervisor.stateObservers, [])
        self.assertEqual(len(new.stateObservers), 1)
        new.move(State.STARTING)
        self.assertEqual(self.progress()[0]["phase"], "starting")
        self.watcher.replaced("a", new, None)
        self.assertEqual(new.stateObservers, [])
        self.assertEqual(new.outputObservers, [])

    def test_history(self) -> None:
        """
        Stored loads come before newer ones; the median is expected.
        """
        history = LoadHistory(keep=3)
        history.add("a", 10)
        history.seed({"a": [1, 2, 3], "b": [7]})
        self.assertEqual(history.expected("a"), 3)
        self.assertEqual(history.expected("b"), 7)
        self.assertIsNone(history.expected("c"))
