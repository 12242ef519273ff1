# -*- test-case-name: test.web.test_system -*-
"""
The host routes the UI's Performance and Hardware pages read:

 - C{GET /api/performance[?after=<RFC3339>]} (HTTP behaviour section
   7.10): the performance monitor's samples; C{503 {"enabled":false}} when
   the C{performance:} section disables it; a bad C{after} is a 400.
 - C{GET /api/hardware} (section 7.11): the hardware snapshot; 503
   C{hardware detection unavailable} when detection failed.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from ..compat import isDisconnected
from ..httperrors import BadRequest, HTTPError
from ..observe.sysstats import parseStamp
from .errors import renderHTTPError, writeHTTPError
from .mux import MONITOR, Mux

log = Logger()

class HardwareUnavailable(HTTPError):
    """503: hardware detection failed (llama-swap's answer)."""

    status = 503
    defaultMessage = "hardware detection unavailable"


class Sampler(Protocol):
    def snapshot(self, after: int | None = None) -> dict[str, Any]: ...


class Hardware(Protocol):
    def current(self) -> Deferred[dict[str, Any] | None]: ...


def _json(request: Request, document: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document, separators=(",", ":")).encode("utf-8") + b"\n"


def afterParameter(request: Request) -> int | None:
    """
    C{?after=} as microseconds since the epoch; L{None} when absent or
    empty.

    @raise BadRequest: with llama-swap's message when it is not RFC 3339.
    """
    values = (request.args or {}).get(b"after") or []
    text = values[0].decode("utf-8", "replace") if values else ""
    if not text:
        return None
    stamp = parseStamp(text)
    if stamp is None:
        raise BadRequest("invalid 'after' timestamp, use RFC3339 format")
    return stamp


class SystemRoutes:
    """
    The handlers, reading only the sampler and the hardware detector.
    """

    def __init__(self, sampler: Sampler, hardware: Hardware) -> None:
        self.sampler = sampler
        self.hardware = hardware

    def performance(self, request: Request, rest: bytes) -> bytes:
        try:
            after = afterParameter(request)
        except HTTPError as e:
            return renderHTTPError(request, e)
        document = self.sampler.snapshot(after)
        return _json(request, document, 200 if document.get("enabled") else 503)

    def hardwareSnapshot(self, request: Request, rest: bytes) -> int:
        def answer(snapshot: dict[str, Any] | None) -> None:
            if isDisconnected(request) or request.finished:
                return
            if snapshot is None:
                writeHTTPError(request, HardwareUnavailable())
                return
            request.write(_json(request, snapshot))
            request.finish()

        def failed(reason: Failure) -> None:
            log.failure("hardware snapshot failed", reason)
            answer(None)

        self.hardware.current().addCallbacks(answer, failed)
        return NOT_DONE_YET


def install(mux: Mux, sampler: Sampler, hardware: Hardware) -> None:
    """
    Register C{/api/performance} and C{/api/hardware}.
    """
    routes = SystemRoutes(sampler, hardware)
    mux.route("GET", "/api/performance", routes.performance, scope=MONITOR)
    mux.route("GET", "/api/hardware", routes.hardwareSnapshot, scope=MONITOR)


__all__ = ["HardwareUnavailable", "SystemRoutes", "afterParameter", "install"]
