# -*- test-case-name: test.upstream.test_slots -*-
"""
A small client for llama-server's slot API, used by the prompt cache.

What a real llama-server (b11434) does, checked by hand and by
C{test.integration.test_promptcache}:

 - C{GET /props} has C{total_slots} (the C{--parallel} count).
 - C{POST /slots/<id>?action=save} with C{{"filename": NAME}} writes
   C{<--slot-save-path>/NAME} and answers
   C{{"id_slot", "filename", "n_saved", "n_written", "timings": {"save_ms"}}};
   an empty slot answers C{n_saved: 0} and still writes a small file.
 - C{action=restore} answers C{{"n_restored", "n_read",
   "timings": {"restore_ms"}}}; a missing, truncated or foreign file is a
   400 whose message says "invalid slot save file", and the server carries
   on.
 - C{NAME} may not contain C{/} or C{..} (400 "Invalid filename").
 - Without C{--slot-save-path} every action is a 501
   C{not_supported_error}.
"""

from __future__ import annotations

import json
from typing import Any

from attrs import define, field, frozen, setters
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer
from zope.interface import implementer

from ..httperrors import describeFailure
from ..unpausable import Unpausable

#: Seconds one slot request may take before it is abandoned.
REQUEST_TIMEOUT = 60.0


class SlotsError(Exception):
    """
    A slot request failed: C{status} is the HTTP status (C{None} for a
    transport failure), C{message} the server's explanation.
    """

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message


class SlotsUnsupported(SlotsError):
    """
    The server has no slot save/restore API (not llama-server, or started
    without C{--slot-save-path}).
    """


@frozen
class SlotSaved:
    """
    One slot written to disk: C{tokens} cached tokens in C{bytes} bytes.
    """

    slot: int
    tokens: int
    bytes: int
    milliseconds: float


@frozen
class SlotRestored:
    """
    One slot read back: C{tokens} cached tokens from C{bytes} bytes.
    """

    slot: int
    tokens: int
    bytes: int
    milliseconds: float


@define(eq=False, slots=False, on_setattr=setters.NO_OP)
class SlotsClient:
    """
    Talks to the slot API of the server at C{baseURL}.
    """

    _agent: IAgent
    _clock: IReactorTime
    _base: str = field(alias="baseURL", converter=lambda url: url.rstrip("/"))
    _timeout: float = REQUEST_TIMEOUT

    async def totalSlots(self) -> int:
        """
        How many slots the server has (C{/props}'s C{total_slots}).
        """
        body = await self._call(b"GET", "/props", None)
        total = body.get("total_slots")
        if not isinstance(total, int) or isinstance(total, bool) or total < 1:
            raise SlotsUnsupported(None, "/props has no total_slots")
        return total

    async def _slotAction(
        self, slot: int, action: str, filename: str, done: str, moved: str
    ) -> tuple[int, int, int, float]:
        """
        C{POST /slots/<slot>?action=<action>} with C{filename}: the slot,
        the answer's C{done} and C{moved} counts and C{<action>_ms}.
        """
        body = await self._call(b"POST", f"/slots/{slot}?action={action}", {"filename": filename})
        return slot, _count(body, done), _count(body, moved), _millis(body, f"{action}_ms")

    async def save(self, slot: int, filename: str) -> SlotSaved:
        """
        Save C{slot} to C{filename} (relative to C{--slot-save-path}).
        """
        return SlotSaved(*await self._slotAction(slot, "save", filename, "n_saved", "n_written"))

    async def restore(self, slot: int, filename: str) -> SlotRestored:
        """
        Restore C{slot} from C{filename}.
        """
        return SlotRestored(
            *await self._slotAction(slot, "restore", filename, "n_restored", "n_read")
        )

    async def _call(self, method: bytes, path: str, payload: object) -> dict[str, Any]:
        headers = Headers({b"user-agent": [b"llamaswap-promptcache"]})
        producer = None
        if payload is not None:
            headers.setRawHeaders(b"content-type", [b"application/json"])
            producer = _SmallBody(json.dumps(payload).encode("utf-8"))
        d: Deferred[Any] = self._agent.request(
            method, (self._base + path).encode("ascii"), headers, producer
        )
        d.addTimeout(self._timeout, self._clock, onTimeoutCancel=_timedOut)
        try:
            response = await d
            raw = await readBody(response).addTimeout(
                self._timeout, self._clock, onTimeoutCancel=_timedOut
            )
        except SlotsError:
            raise
        except Exception:
            raise SlotsError(None, describeFailure(Failure())) from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if response.code != 200:
            message = _errorMessage(body) or raw[:200].decode("utf-8", "replace")
            kind = SlotsUnsupported if response.code in (404, 405, 501) else SlotsError
            raise kind(response.code, message)
        if not isinstance(body, dict):
            raise SlotsError(response.code, "the answer is not a JSON object")
        return body


@implementer(IBodyProducer)
class _SmallBody(Unpausable):
    """
    A few bytes of request body, written at once.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._data)
        return succeed(None)


def _timedOut(result: object, timeout: float) -> None:
    raise SlotsError(None, f"no answer within {timeout:g} s")


def _errorMessage(body: object) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    return ""


def _count(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SlotsError(200, f"the answer has no {key}")
    return value


def _millis(body: dict[str, Any], key: str) -> float:
    timings = body.get("timings")
    if isinstance(timings, dict):
        value = timings.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0
