# -*- test-case-name: test.observe.test_events -*-
"""
Live events for the UI: an in-process bus and the C{/api/events}
server-sent-event stream.

Frames are llama-swap's: C{event:message\\ndata:<json>\\n\\n} where the JSON
is C{{"type": <kind>, "data": <string>}} and the string is itself JSON
(double-encoded, as the UI expects).  Kinds: C{modelStatus}, C{logData},
C{activity}, C{inflight}, C{uiConfig}, C{profileChanged}, and ours,
C{loadProgress}, C{configReloaded} and C{configReloadFailed} (the reload's
summary: L{llamaswap.reload.ReloadResult.summary}).

Each connection is a push producer on its request: while the client's
socket is full, events queue (up to L{QUEUE_LIMIT}; beyond that they are
dropped, and a dropped in-flight update is made good with a fresh snapshot
once the client catches up).  A comment line is sent every
L{HEARTBEAT} seconds so idle connections survive proxies (llama-swap sends
none).
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Callable, Iterable, Mapping

from attrs import define, field
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from ..compat import isDisconnected
from ..config.memory import memoryFields
from ..config.model import Capabilities, Config
from ..finish import whenFinished

log = Logger()

#: Events a slow connection may have waiting before more are dropped.
QUEUE_LIMIT = 1024
#: Seconds between keep-alive comments.
HEARTBEAT = 15.0

HEARTBEAT_FRAME = b": keepalive\n\n"


class Event:
    """
    One event; its frame is encoded once, however many connections get it.
    """

    __slots__ = ("kind", "data", "_frame")

    def __init__(self, kind: str, data: Any) -> None:
        self.kind = kind
        self.data = data
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """
        The SSE frame (payload double-encoded).
        """
        if self._frame is None:
            inner = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)
            outer = json.dumps(
                {"type": self.kind, "data": inner}, separators=(",", ":"), ensure_ascii=False
            )
            self._frame = b"event:message\ndata:" + outer.encode("utf-8") + b"\n\n"
        return self._frame

    def __repr__(self) -> str:
        return f"<Event {self.kind} {self.data!r}>"


Sink = Callable[[Event], None]


class EventBus:
    """
    Fan-out of events to subscribers; publishing never blocks or fails.
    """

    def __init__(self) -> None:
        self._sinks: list[Sink] = []

    def subscribe(self, sink: Sink) -> Callable[[], None]:
        """
        Call C{sink(event)} for every later event.

        @return: a callable that unsubscribes.
        """
        self._sinks.append(sink)

        def unsubscribe() -> None:
            if sink in self._sinks:
                self._sinks.remove(sink)

        return unsubscribe

    def publish(self, kind: str, data: Any) -> None:
        """
        Send an event of C{kind} with the JSON-serialisable C{data}.
        """
        if not self._sinks:
            return
        event = Event(kind, data)
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:
                log.failure("event subscriber failed on {kind}", kind=kind)

    @property
    def subscribers(self) -> int:
        return len(self._sinks)


def capabilityFlags(capabilities: Capabilities) -> dict[str, bool]:
    """
    The C{capabilities} object of a model's C{/v1/models} record and
    C{modelStatus} entry: each capability it has, mapped to C{true}.
    """
    return {name: True for name in capabilityNames(capabilities)}


def capabilityNames(capabilities: Capabilities) -> list[str]:
    """
    The capability tags of a model, in llama-swap's order.
    """
    inputs, outputs = set(capabilities.inputs), set(capabilities.outputs)
    flags = (
        ("vision", "image" in inputs),
        ("audio_transcriptions", "audio" in inputs and "text" in outputs),
        ("audio_speech", "text" in inputs and "audio" in outputs),
        ("image_generation", "text" in inputs and "image" in outputs),
        ("image_to_image", "image" in inputs and "image" in outputs),
        ("function_calling", capabilities.tools),
        ("reranker", capabilities.reranker),
    )
    names = [name for name, on in flags if on]
    return names


def modelStatus(config: Config, states: Mapping[str, str]) -> list[dict[str, Any]]:
    """
    The C{modelStatus} payload: every local model (unlisted ones too)
    sorted by ID with its state, then one entry per peer model.

    @param states: model ID to state name; missing ones are C{stopped}.
    """
    entries: list[dict[str, Any]] = []
    for modelID in sorted(config.models):
        model = config.models[modelID]
        entry: dict[str, Any] = {
            "id": modelID,
            "name": model.name,
            "description": model.description,
            "state": states.get(modelID, "stopped"),
            "unlisted": model.unlisted,
            "peerID": "",
        }
        if model.aliases:
            entry["aliases"] = list(model.aliases)
        flags = capabilityFlags(model.capabilities)
        if flags:
            entry["capabilities"] = flags
        if model.capabilities.context > 0:
            entry["context_length"] = model.capabilities.context
        entry.update(memoryFields(model))
        entries.append(entry)
    for peer in config.peers.values():
        for modelID in peer.models:
            entries.append(
                {
                    "id": peer.fqn(modelID),
                    "name": "",
                    "description": "",
                    "state": "",
                    "unlisted": False,
                    "peerID": peer.id,
                }
            )
    return entries


@implementer(IPushProducer)
@define(eq=False, slots=False)
class EventStream:
    """
    One C{/api/events} connection.

    @ivar dropped: events dropped because the client was too slow.
    """

    _request: Request
    _clock: IReactorTime
    _limit: int = field(default=QUEUE_LIMIT, kw_only=True)
    _heartbeat: float = field(default=HEARTBEAT, kw_only=True)
    #: Makes a fresh C{inflight} snapshot event, sent after in-flight
    #: updates had to be dropped.
    _resync: Callable[[], Event] | None = field(default=None, kw_only=True)
    _queue: deque[Event] = field(factory=deque, init=False)
    _paused: bool = field(default=False, init=False)
    _closed: bool = field(default=False, init=False)
    _needResync: bool = field(default=False, init=False)
    _timer: IDelayedCall | None = field(default=None, init=False)
    _unsubscribe: Callable[[], None] | None = field(default=None, init=False)
    _onClose: list[Callable[[], None]] = field(factory=list, init=False)
    dropped: int = field(default=0, init=False)

    def start(self, initial: Iterable[Event], bus: EventBus) -> None:
        """
        Send the headers and C{initial} events, then follow C{bus}.
        """
        request = self._request
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"connection", b"keep-alive")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"x-accel-buffering", b"no")
        request.registerProducer(self, True)
        whenFinished(request, self._lost)
        request.write(b"")
        for event in initial:
            self.deliver(event)
        self._unsubscribe = bus.subscribe(self.deliver)
        self._arm()

    def onClose(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} when the connection ends (other subscriptions).
        """
        if self._closed:
            callback()
        else:
            self._onClose.append(callback)

    def deliver(self, event: Event) -> None:
        """
        Send C{event}, or queue it while the client is slow.
        """
        if self._closed:
            return
        if self._paused or self._queue:
            if len(self._queue) >= self._limit:
                self._drop(event)
                return
            self._queue.append(event)
            return
        self._request.write(event.frame)

    def _drop(self, event: Event) -> None:
        if not self.dropped:
            log.warn("event stream client too slow; dropping events")
        self.dropped += 1
        if event.kind == "inflight":
            self._needResync = True

    def _flush(self) -> None:
        while self._queue and not self._paused and not self._closed:
            self._request.write(self._queue.popleft().frame)
        if self._needResync and not self._queue and not self._paused and self._resync:
            self._needResync = False
            self._request.write(self._resync().frame)

    def _arm(self) -> None:
        if self._heartbeat > 0 and not self._closed:
            self._timer = self._clock.callLater(self._heartbeat, self._beat)

    def _beat(self) -> None:
        self._timer = None
        if self._closed:
            return
        if not self._paused:
            self._request.write(HEARTBEAT_FRAME)
        self._arm()

    # IPushProducer

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._flush()

    def stopProducing(self) -> None:
        self._shutDown()

    # ending

    def close(self) -> None:
        """
        End the stream (server shutdown).
        """
        if self._closed:
            return
        self._shutDown()
        request = self._request
        try:
            request.unregisterProducer()
        except Exception:
            pass
        if not isDisconnected(request) and not request.finished:
            request.finish()

    def _lost(self, _: object) -> None:
        self._shutDown()

    def _shutDown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        callbacks, self._onClose = self._onClose, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.failure("event stream close callback failed")


__all__ = [
    "Event",
    "EventBus",
    "EventStream",
    "HEARTBEAT",
    "QUEUE_LIMIT",
    "capabilityFlags",
    "capabilityNames",
    "modelStatus",
]
