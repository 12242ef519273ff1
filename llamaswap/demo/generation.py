# -*- test-case-name: test.test_demo -*-
"""
Token-by-token generation for the demo upstream's completion routes.

A L{Generation} emits one piece of text per tick of the injected clock
(C{--token-delay} apart) through an I{emitter}, which encodes the pieces in one
API's format: OpenAI chat completions, OpenAI text completions or Anthropic
messages, each either streamed as server-sent events or collected into a single
JSON body.  Streamed pieces are written to the request as they are produced, the
generation is a push producer (so a full client socket pauses it), and a client
disconnect cancels the pending tick.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from attrs import define, field, frozen
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from llamaswap.demo import text

SYSTEM_FINGERPRINT = "llamaswap-demo"


@frozen
class Reply:
    """
    What every encoding of one response shares.

    @ivar responseId: The C{id} of the response (C{chatcmpl-...}, C{msg_...}).
    @ivar created: Unix time the response was created.
    @ivar model: The model name the demo reports.
    @ivar identity: The C{demo} field: which process and model served it.
    @ivar promptTokens: Tokens counted in the prompt.
    @ivar truncated: Whether C{max_tokens} cut the output short.
    """

    responseId: str
    created: int
    model: str
    identity: dict[str, Any]
    promptTokens: int
    truncated: bool


class Emitter(Protocol):
    """
    Encodes a generation's pieces in one API format.

    @ivar streaming: Whether pieces are written as they come (server-sent
        events) or collected into one JSON body.
    @ivar reply: What the response shares across encodings.
    """

    streaming: bool
    reply: Reply

    def begin(self) -> None:
        """
        Write whatever precedes the first piece (stream headers, opening events).
        """

    def piece(self, piece: str) -> None:
        """
        Emit one generated piece (one token).
        """

    def end(self, completionTokens: int, timings: dict[str, Any]) -> None:
        """
        Write whatever follows the last piece; the caller then finishes the
        request.
        """


def dumpJSON(obj: Any) -> bytes:
    """
    Encode C{obj} as compact UTF-8 JSON.

    @param obj: A JSON-compatible value.
    @return: The encoded bytes.
    """
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class BaseEmitter:
    """
    Shared plumbing: stream headers, SSE framing, collected pieces, JSON body.
    """

    def __init__(self, request: Request, reply: Reply, streaming: bool) -> None:
        self.request = request
        self.reply = reply
        self.streaming = streaming
        self.pieces: list[str] = []

    def startStream(self) -> None:
        """
        Send the headers of a server-sent event stream.
        """
        self.request.setHeader(b"Content-Type", b"text/event-stream")
        self.request.setHeader(b"Cache-Control", b"no-cache")

    def event(self, obj: Any, name: str | None = None) -> None:
        """
        Write one server-sent event now.

        @param obj: The JSON payload of its C{data:} line.
        @param name: The C{event:} line's value, if any.
        """
        prefix = b"event: " + name.encode("ascii") + b"\n" if name else b""
        self.request.write(prefix + b"data: " + dumpJSON(obj) + b"\n\n")

    def writeJSON(self, obj: Any) -> None:
        """
        Write a complete non-streamed JSON body with its C{Content-Length}.

        @param obj: The body.
        """
        body = dumpJSON(obj)
        self.request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        self.request.setHeader(b"Content-Length", b"%d" % (len(body),))
        self.request.write(body)

    def usage(self, completionTokens: int) -> dict[str, int]:
        """
        The OpenAI C{usage} object.

        @param completionTokens: Tokens generated.
        """
        return {
            "completion_tokens": completionTokens,
            "prompt_tokens": self.reply.promptTokens,
            "total_tokens": completionTokens + self.reply.promptTokens,
        }

    def openAIEnvelope(self, kind: str, choice: dict[str, Any]) -> dict[str, Any]:
        """
        The fields every OpenAI response object or chunk carries.

        @param kind: The C{object} field.
        @param choice: The single choice.
        """
        return {
            "choices": [choice],
            "created": self.reply.created,
            "id": self.reply.responseId,
            "model": self.reply.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "object": kind,
            "demo": self.reply.identity,
        }

    @property
    def finishReason(self) -> str:
        """
        The OpenAI C{finish_reason}.
        """
        return "length" if self.reply.truncated else "stop"


class OpenAIChatEmitter(BaseEmitter):
    """
    C{/v1/chat/completions}: a C{chat.completion} object, or
    C{chat.completion.chunk} events ending with C{data: [DONE]}.
    """

    def begin(self) -> None:
        """
        Send the stream headers and the C{role} chunk.
        """
        if self.streaming:
            self.startStream()
            self.event(self._chunk({"role": "assistant", "content": None}))

    def piece(self, piece: str) -> None:
        """
        Send (or collect) one C{delta.content} token.
        """
        self.pieces.append(piece)
        if self.streaming:
            self.event(self._chunk({"content": piece}))

    def end(self, completionTokens: int, timings: dict[str, Any]) -> None:
        """
        Send the C{finish_reason} chunk with usage and timings, then
        C{[DONE]}; or write the whole object.
        """
        extra = {"usage": self.usage(completionTokens), "timings": timings}
        if self.streaming:
            self.event(self._chunk({}, self.finishReason) | extra)
            self.request.write(b"data: [DONE]\n\n")
        else:
            choice = {
                "finish_reason": self.finishReason,
                "index": 0,
                "message": {"role": "assistant", "content": "".join(self.pieces)},
            }
            self.writeJSON(self.openAIEnvelope("chat.completion", choice) | extra)

    def _chunk(self, delta: dict[str, Any], finishReason: str | None = None) -> dict[str, Any]:
        """
        One C{chat.completion.chunk} object.
        """
        choice = {"finish_reason": finishReason, "index": 0, "delta": delta}
        return self.openAIEnvelope("chat.completion.chunk", choice)


class OpenAICompletionEmitter(BaseEmitter):
    """
    C{/v1/completions}: a C{text_completion} object, or C{text_completion}
    chunks ending with C{data: [DONE]}.
    """

    def begin(self) -> None:
        """
        Send the stream headers.
        """
        if self.streaming:
            self.startStream()

    def piece(self, piece: str) -> None:
        """
        Send (or collect) one C{text} token.
        """
        self.pieces.append(piece)
        if self.streaming:
            self.event(self._choice(piece, None))

    def end(self, completionTokens: int, timings: dict[str, Any]) -> None:
        """
        Send the C{finish_reason} chunk with usage and timings, then
        C{[DONE]}; or write the whole object.
        """
        extra = {"usage": self.usage(completionTokens), "timings": timings}
        if self.streaming:
            self.event(self._choice("", self.finishReason) | extra)
            self.request.write(b"data: [DONE]\n\n")
        else:
            self.writeJSON(self._choice("".join(self.pieces), self.finishReason) | extra)

    def _choice(self, content: str, finishReason: str | None) -> dict[str, Any]:
        """
        One C{text_completion} object with a single choice.
        """
        choice = {
            "text": content,
            "index": 0,
            "logprobs": None,
            "finish_reason": finishReason,
        }
        return self.openAIEnvelope("text_completion", choice)


class AnthropicEmitter(BaseEmitter):
    """
    C{/v1/messages}: a C{message} object, or the Messages streaming event
    sequence C{message_start}, C{content_block_start},
    C{content_block_delta}..., C{content_block_stop}, C{message_delta} (with
    usage), C{message_stop}.
    """

    @property
    def stopReason(self) -> str:
        """
        The Anthropic C{stop_reason}.
        """
        return "max_tokens" if self.reply.truncated else "end_turn"

    def begin(self) -> None:
        """
        Send the stream headers, C{message_start} and C{content_block_start}.
        """
        if not self.streaming:
            return
        self.startStream()
        message = self._message([], None, 0)
        self.event(
            {"type": "message_start", "message": message, "demo": self.reply.identity},
            "message_start",
        )
        self.event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        )

    def piece(self, piece: str) -> None:
        """
        Send (or collect) one C{text_delta}.
        """
        self.pieces.append(piece)
        if self.streaming:
            self.event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
                "content_block_delta",
            )

    def end(self, completionTokens: int, timings: dict[str, Any]) -> None:
        """
        Close the block and the message with C{stop_reason} and usage, or
        write the whole message.
        """
        if not self.streaming:
            content = [{"type": "text", "text": "".join(self.pieces)}]
            message = self._message(content, self.stopReason, completionTokens)
            self.writeJSON(message | {"demo": self.reply.identity})
            return
        self.event({"type": "content_block_stop", "index": 0}, "content_block_stop")
        self.event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stopReason, "stop_sequence": None},
                "usage": {
                    "input_tokens": self.reply.promptTokens,
                    "output_tokens": completionTokens,
                },
                "demo": self.reply.identity,
            },
            "message_delta",
        )
        self.event({"type": "message_stop"}, "message_stop")

    def _message(
        self, content: list[dict[str, Any]], stopReason: str | None, outputTokens: int
    ) -> dict[str, Any]:
        """
        The C{message} object, as in C{message_start} or a non-streamed reply.
        """
        return {
            "id": self.reply.responseId,
            "type": "message",
            "role": "assistant",
            "model": self.reply.model,
            "content": content,
            "stop_reason": stopReason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.reply.promptTokens,
                "output_tokens": outputTokens,
            },
        }


@implementer(IPushProducer)
@define(eq=False, slots=False)
class Generation:
    """
    Emit pieces one per C{tokenDelay} on C{clock} until done or the client
    goes away.

    The first piece comes one delay after L{start}, and the closing events
    follow the last piece immediately.  While the client's socket is full
    (L{pauseProducing}) no tick is pending.

    @ivar done: Whether the generation ended, by finishing or by the client
        disconnecting.
    """

    log = Logger()

    _request: Request
    _emitter: Emitter
    _pieces: list[str]
    _clock: IReactorTime
    _tokenDelay: float
    _index: int = field(default=0, init=False)
    _startedAt: float = field(default=0.0, init=False)
    _call: IDelayedCall | None = field(default=None, init=False)
    _paused: bool = field(default=False, init=False)
    _producing: bool = field(default=False, init=False)
    done: bool = field(default=False, init=False)

    def start(self) -> None:
        """
        Begin: watch for disconnects, register as producer when streaming,
        write the opening and schedule the first piece.
        """
        self._startedAt = self._clock.seconds()
        self._request.notifyFinish().addErrback(self._clientGone)
        if self._emitter.streaming:
            self._request.registerProducer(self, True)
            self._producing = True
        self._emitter.begin()
        self._schedule()

    def _schedule(self) -> None:
        """
        Schedule the next tick unless done, paused or already scheduled.
        """
        if self.done or self._paused or self._call is not None:
            return
        self._call = self._clock.callLater(self._tokenDelay, self._tick)

    def _tick(self) -> None:
        """
        Emit the next piece; finish after the last one.
        """
        self._call = None
        if self._index < len(self._pieces):
            self._emitter.piece(self._pieces[self._index])
            self._index += 1
        if self._index >= len(self._pieces):
            self._finish()
        else:
            self._schedule()

    def _finish(self) -> None:
        """
        Write the closing events with usage and timings, and finish the request.
        """
        self.done = True
        elapsedMs = (self._clock.seconds() - self._startedAt) * 1000.0
        promptTokens = self._emitter.reply.promptTokens
        self._emitter.end(self._index, text.timings(promptTokens, self._index, elapsedMs))
        if self._producing:
            self._request.unregisterProducer()
            self._producing = False
        self._request.finish()

    def _cancelCall(self) -> None:
        """
        Cancel the pending tick, if any.
        """
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _clientGone(self, reason: Failure) -> None:
        """
        The client disconnected before the end: stop generating.
        """
        if self.done:
            return
        self.log.info(
            "client went away after {pieces} of {total} tokens",
            pieces=self._index,
            total=len(self._pieces),
        )
        self.stopProducing()

    def pauseProducing(self) -> None:
        """
        The client's socket is full: generate nothing until resumed.
        """
        self._paused = True
        self._cancelCall()

    def resumeProducing(self) -> None:
        """
        The client's socket drained: carry on generating.
        """
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        """
        Stop for good without writing anything more.
        """
        self.done = True
        self._producing = False
        self._cancelCall()
