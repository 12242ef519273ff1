# -*- test-case-name: test.web.test_loading -*-
"""
The "loading state" stream (C{sendLoadingState}): while a model starts, a
streaming chat-completions client gets a 200 C{text/event-stream} at once
and watches the load as reasoning text, instead of a silent wait that
trips its read timeout.

Every event is an OpenAI chat-completion chunk whose only content is
C{choices[0].delta.reasoning_content}, so a client shows it as "thinking"
and then the real answer, streamed by the upstream into the same response,
follows.  The text is "typed" in pieces of L{CHUNK_CHARS} characters at
L{CHARS_PER_SECOND}: a header naming the model, then every L{TICK} seconds
a queue position (when it changed), a remark (every 5-9 s) or a dot, and
when the model is ready a C{Done! (X.XXs)} block.

L{Narration} decides the text (pure, time is an argument, randomness from
an injected L{random.Random}); L{LoadingStream} writes it to the request
on an injected clock, as the request's push producer so a client that does
not read pauses the typing instead of filling memory.

Deliberate differences from llama-swap:
 - the events also carry the standard chunk fields (C{id}, C{object},
   C{created}, C{model}, C{index}, C{finish_reason}) so strict client
   libraries that require them accept the events;
 - remark and queue lines start with the elapsed time, C{[12.0s]}, a
   machine-readable progress mark;
 - the first remark comes after 2-5 s (llama-swap's first tick already
   shows one), so a quick load shows only dots;
 - an unchanged queue position is not repeated;
 - when the model is ready the rest of the text and the C{Done!} block are
   written at once, not typed, so the answer is not held back; a failed
   start ends with C{Failed! (X.XXs)} instead of C{Done!};
 - a dozen remarks of our own.
"""

from __future__ import annotations

import json
import random
from typing import Callable, Sequence, TypeVar

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from ..compat import isClientBufferFull, isDisconnected
from ..finish import whenLost

__all__ = [
    "CHARS_PER_SECOND",
    "CHUNK_CHARS",
    "REMARKS",
    "SEPARATOR",
    "TICK",
    "LoadingStream",
    "Narration",
    "acquireWithLoadingState",
    "loadingEvent",
    "wantsLoadingState",
]

T = TypeVar("T")

#: The path prefix of the only requests that get a loading-state stream.
CHAT_COMPLETIONS = b"/v1/chat/completions"

#: Characters per written piece of text.
CHUNK_CHARS = 5
#: Typing speed.
CHARS_PER_SECOND = 75.0
#: Seconds between progress ticks (a dot, a remark or a queue position).
TICK = 0.75
#: The line framing the loading text.
SEPARATOR = "\u2501" * 5
#: Seconds before the first remark, drawn uniformly.
FIRST_REMARK = (2.0, 5.0)
#: Seconds between later remarks, drawn uniformly.
REMARK_INTERVAL = (5.0, 9.0)
#: The C{id} of every loading event.
EVENT_ID = "chatcmpl-llamaswap-loading"

#: Remarks shown while waiting, in a shuffled order per request.
REMARKS: tuple[str, ...] = (
    "Reading the weights, one float at a time",
    "Asking the GPU nicely for some memory",
    "Unpacking the vocabulary",
    "Counting attention heads, twice to be sure",
    "Warming up the matrix multipliers",
    "Filling the KV cache with good intentions",
    "Still here, still loading",
    "Big models take a moment to stretch",
    "Mapping layers into memory",
    "Checking the tokenizer knows its words",
    "Almost certainly making progress",
    "Brewing tensors",
)


def loadingEvent(text: str, modelID: str, created: int) -> bytes:
    """
    One SSE event carrying C{text} as reasoning content in an OpenAI
    chat-completion chunk.
    """
    chunk = {
        "id": EVENT_ID,
        "object": "chat.completion.chunk",
        "created": created,
        "model": modelID,
        "choices": [
            {"index": 0, "delta": {"reasoning_content": text}, "finish_reason": None}
        ],
    }
    data = json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + data.encode("utf-8") + b"\n\n"


class Narration:
    """
    What the loading stream says, and when; pure.

    @param rng: the source of the remark order and intervals.
    @param remarks: the remarks to draw from (shuffled, reshuffled when all
        were used).
    """

    def __init__(
        self, rng: random.Random, remarks: Sequence[str] = REMARKS
    ) -> None:
        self._rng = rng
        self._remarks = list(remarks)
        self._deck: list[str] = []
        self._nextRemarkAt = rng.uniform(*FIRST_REMARK)
        self._position: int | None = None
        self._shownPosition: int | None = None

    def header(self, modelID: str) -> str:
        """
        The text that opens the stream.
        """
        return f"{SEPARATOR}\nllamaswap loading model: {modelID}"

    def queuePosition(self, position: int) -> None:
        """
        The request's 1-based place in the queue is now C{position}; the
        latest value wins.
        """
        self._position = position

    def tick(self, elapsed: float) -> str:
        """
        The text for the tick C{elapsed} seconds after the start: a changed
        queue position, else a remark when one is due, else a dot.
        """
        position = self._position
        if position is not None and position != self._shownPosition:
            self._shownPosition = position
            return f"\n{_stamp(elapsed)} Queue position: #{position} "
        if self._remarks and elapsed >= self._nextRemarkAt:
            self._nextRemarkAt = elapsed + self._rng.uniform(*REMARK_INTERVAL)
            return f"\n{_stamp(elapsed)} {self._nextRemark()} "
        return "."

    def done(self, elapsed: float, failed: bool = False) -> str:
        """
        The text that closes the stream: C{Done!} (or C{Failed!}) with the
        seconds waited, the separator and a line holding a single space.
        """
        word = "Failed!" if failed else "Done!"
        return f"\n{word} ({elapsed:.2f}s)\n{SEPARATOR}\n \n"

    def _nextRemark(self) -> str:
        if not self._deck:
            self._deck = self._remarks[:]
            self._rng.shuffle(self._deck)
        return self._deck.pop()


def _stamp(elapsed: float) -> str:
    return f"[{elapsed:.1f}s]"


@implementer(IPushProducer)
class LoadingStream:
    """
    The loading-state stream of one request; it starts at once: status 200,
    the event-stream headers, then the typed text.

    End it with exactly one of L{finish} (the model is ready or failed) or
    L{stop} (the client left; it also stops by itself when the request's
    connection is lost).  After either, no more bytes are written and the
    request is free for the upstream's response (no producer registered).

    @param request: the client's request; nothing written to it yet.
    @param clock: times the typing and the ticks.
    @param modelID: the model named in the header.
    @param rng: remark order and intervals (seed it in tests).
    @param remarks: the remarks to use.
    """

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        modelID: str,
        *,
        rng: random.Random | None = None,
        remarks: Sequence[str] = REMARKS,
    ) -> None:
        self._request = request
        self._clock = clock
        self._modelID = modelID
        self._narration = Narration(rng if rng is not None else random.Random(), remarks)
        self._startedAt = clock.seconds()
        self._created = int(self._startedAt)
        self._pending = ""
        self._nextTypeAt = self._startedAt
        self._typing: IDelayedCall | None = None
        self._ticking: IDelayedCall | None = None
        self._paused = False
        self._done = False
        self._start()

    @property
    def done(self) -> bool:
        """
        Whether the stream has ended (finished or stopped).
        """
        return self._done

    # -- the caller's side ---------------------------------------------------

    def queuePosition(self, position: int) -> None:
        """
        The request is at 1-based C{position} in the queue; shown on the
        next tick.
        """
        if not self._done:
            self._narration.queuePosition(position)

    def finish(self, elapsed: float | None = None, *, failed: bool = False) -> Deferred[None]:
        """
        End the stream: write what is still untyped and the closing block
        at once.

        @param elapsed: the seconds to show; by default since the stream
            started.
        @param failed: the model did not start (C{Failed!} instead of
            C{Done!}); the caller writes the error after.
        @return: fires when no more loading bytes will be written (at once).
        """
        if self._done:
            return succeed(None)
        if elapsed is None:
            elapsed = self._clock.seconds() - self._startedAt
        text = self._pending + self._narration.done(elapsed, failed)
        self._pending = ""
        self._write(text)
        self._end()
        return succeed(None)

    def stop(self) -> None:
        """
        End the stream without another byte (the client has gone).
        """
        if not self._done:
            self._pending = ""
            self._end()

    # -- IPushProducer, driven by the client's channel -------------------------

    def pauseProducing(self) -> None:
        self._paused = True
        self._cancel("_typing")

    def resumeProducing(self) -> None:
        self._paused = False
        if not self._done:
            self._type()

    def stopProducing(self) -> None:
        self.stop()

    # -- inside --------------------------------------------------------------

    def _start(self) -> None:
        request = self._request
        if isDisconnected(request) or request.finished:
            self._done = True
            return
        request.setResponseCode(200)
        headers = request.responseHeaders
        headers.setRawHeaders(b"content-type", [b"text/event-stream"])
        headers.setRawHeaders(b"cache-control", [b"no-cache"])
        headers.setRawHeaders(b"x-accel-buffering", [b"no"])
        if not headers.hasHeader(b"connection"):
            # twisted.web has already put "close" here when it will close.
            headers.setRawHeaders(b"connection", [b"keep-alive"])
        whenLost(request, self._lost)
        request.registerProducer(self, True)
        if isClientBufferFull(request):
            self._paused = True
        request.write(b"")
        self._ticking = self._clock.callLater(TICK, self._tick)
        self._say(self._narration.header(self._modelID))

    def _lost(self, failure: Failure) -> None:
        self.stop()

    def _tick(self) -> None:
        self._ticking = self._clock.callLater(TICK, self._tick)
        if not self._paused:
            self._say(self._narration.tick(self._clock.seconds() - self._startedAt))

    def _say(self, text: str) -> None:
        self._pending += text
        if self._typing is None:
            self._type()

    def _type(self) -> None:
        """
        Write the next piece when its time has come, and schedule the one
        after.
        """
        self._typing = None
        if self._paused or self._done or not self._pending:
            return
        now = self._clock.seconds()
        if now + 1e-9 >= self._nextTypeAt:
            piece, self._pending = self._pending[:CHUNK_CHARS], self._pending[CHUNK_CHARS:]
            self._write(piece)
            self._nextTypeAt = max(now, self._nextTypeAt) + CHUNK_CHARS / CHARS_PER_SECOND
            if not self._pending:
                return
        self._typing = self._clock.callLater(max(0.0, self._nextTypeAt - now), self._type)

    def _write(self, text: str) -> None:
        if text and not isDisconnected(self._request):
            self._request.write(loadingEvent(text, self._modelID, self._created))

    def _end(self) -> None:
        self._done = True
        self._cancel("_typing")
        self._cancel("_ticking")
        request = self._request
        if request.producer is self:
            if request.channel is not None:
                request.unregisterProducer()
            else:
                request.producer = None

    def _cancel(self, name: str) -> None:
        call: IDelayedCall | None = getattr(self, name)
        if call is not None:
            if call.active():
                call.cancel()
            setattr(self, name, None)


def wantsLoadingState(path: bytes, stream: bool, sendLoadingState: bool, ready: bool) -> bool:
    """
    Whether a request gets a loading-state stream: a streamed chat
    completion (not a C{/v/} or C{/upstream/} route) for a model with
    C{sendLoadingState} that is not ready yet.

    @param path: the request's path as the client sent it.
    @param stream: whether the client asked for a streamed response.
    @param sendLoadingState: the model's effective setting.
    @param ready: whether the model's process is ready now.
    """
    return stream and sendLoadingState and not ready and path.startswith(CHAT_COMPLETIONS)


class _Positions:
    """
    The C{onQueuePosition} callback given to the router: it keeps the
    latest position until the stream exists, then passes positions on.
    """

    def __init__(self) -> None:
        self.latest: int | None = None
        self.stream: LoadingStream | None = None

    def __call__(self, position: int) -> None:
        self.latest = position
        if self.stream is not None:
            self.stream.queuePosition(position)

    def attach(self, stream: LoadingStream) -> None:
        self.stream = stream
        if self.latest is not None:
            stream.queuePosition(self.latest)


def acquireWithLoadingState(
    request: Request,
    clock: IReactorTime,
    modelID: str,
    acquire: Callable[[Callable[[int], None]], Deferred[T]],
    *,
    rng: random.Random | None = None,
) -> Deferred[T]:
    """
    Wait for a model with a loading-state stream.

    C{acquire(onQueuePosition)} asks the router.  An answer that comes at
    once (granted, or refused at admission) is returned as it is and no
    stream starts; otherwise the request was admitted and waits, so a
    L{LoadingStream} starts and shows the queue positions, and ends before
    the answer is passed on: C{Done!} on a grant, C{Failed!} on an error
    (the caller appends the error to the stream), no more bytes when the
    wait is cancelled (the client left).

    @return: the router's Deferred with the stream's ending chained in;
        cancelling it withdraws the request.
    """
    positions = _Positions()
    acquiring = acquire(positions)
    if acquiring.called:
        return acquiring
    stream = LoadingStream(request, clock, modelID, rng=rng)
    positions.attach(stream)

    def end(result: T | Failure) -> T | Failure | Deferred[T | Failure]:
        if isinstance(result, Failure):
            if result.check(CancelledError):
                stream.stop()
                return result
            ending = stream.finish(failed=True)
        else:
            ending = stream.finish()
        return ending.addCallback(lambda _: result)

    return acquiring.addBoth(end)  # type: ignore[arg-type]
