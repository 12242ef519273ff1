# -*- test-case-name: test.observe.test_activity -*-
"""
Request/response captures: what a metered request sent and got back, kept
in a byte-budgeted memory cache keyed by activity row ID for the UI's
capture viewer (C{GET /api/captures/<id>}).

Captures hold prompts and answers, so secrets are taken out before they are
stored: credential headers (C{Authorization}, C{X-Api-Key}, cookies...) and
API-key fields of JSON and form bodies become C{[REDACTED]}.
"""

from __future__ import annotations

import base64
import re
from collections import OrderedDict
from typing import Any, Iterable

from attrs import frozen

from .. import safejson

#: What replaces a secret.
REDACTED = "[REDACTED]"

#: Headers whose values are secrets.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "cookie",
        "set-cookie",
    }
)

#: Body fields (JSON keys, form fields; case-insensitive) holding secrets.
SECRET_FIELDS = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "x-api-key",
        "authorization",
        "password",
        "secret",
        "client_secret",
        "access_token",
        "refresh_token",
        "token",
    }
)
#: A secret field's name as a whole JSON key (in quotes) or form field
#: name (after C{&} or at the start, before C{=}): the only bodies worth
#: parsing for redaction.  A bare substring would send every chat request
#: through the JSON parser for its C{max_tokens}.
_SECRET_FIELD_TEXT = re.compile(
    rb'(?i)(?:^|["&])(?:api[_-]?key|x-api-key|authorization|password|secret|'
    rb'client_secret|access_token|refresh_token|token)["=]'
)
_FORM_SECRET = re.compile(
    rb"(?i)(^|&)(api_key|apikey|api-key|x-api-key|authorization|password|secret|"
    rb"client_secret|access_token|refresh_token|token)=[^&]*"
)

#: One mebibyte: C{captureBuffer} is in these.
MB = 1024 * 1024


@frozen
class CaptureMask:
    """
    Which parts of an exchange a path's captures keep (binary audio and
    images are left out).
    """

    reqHeaders: bool = True
    reqBody: bool = True
    respHeaders: bool = True
    respBody: bool = True


_ALL = CaptureMask()
#: llama-swap's per-path masks; other paths keep everything.
MASKS: dict[str, CaptureMask] = {
    "/v1/audio/speech": CaptureMask(respBody=False),
    "/v1/audio/voices": CaptureMask(reqBody=False),
    "/v1/audio/transcriptions": CaptureMask(reqBody=False),
    "/v1/images/generations": CaptureMask(respBody=False),
    "/v1/images/edits": CaptureMask(reqBody=False, respBody=False),
    "/sdapi/v1/txt2img": CaptureMask(respBody=False),
    "/sdapi/v1/img2img": CaptureMask(reqBody=False, respBody=False),
}


def maskFor(path: str) -> CaptureMask:
    """
    The capture mask for a request path (without query).
    """
    return MASKS.get(path, _ALL)


def canonicalHeaderName(name: str) -> str:
    """
    Go's canonical header casing: C{x-api-key} becomes C{X-Api-Key}.
    """
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


#: Raw header name to its lower-case and canonical forms and whether its
#: value is a secret (every request redacts a few dozen names, nearly
#: always the same ones).
_NAMES: dict[bytes, tuple[str, str, bool]] = {}
#: The most names remembered; clients choose names, so this is bounded.
_MAX_NAMES = 1024


def _headerName(rawName: bytes) -> tuple[str, str, bool]:
    known = _NAMES.get(rawName)
    if known is None:
        name = rawName.decode("latin-1").lower()
        known = (name, canonicalHeaderName(name), name in SECRET_HEADERS)
        if len(_NAMES) >= _MAX_NAMES:
            _NAMES.clear()
        _NAMES[rawName] = known
    return known


def redactHeaders(
    headers: Iterable[tuple[bytes, list[bytes]]], drop: Iterable[str] = ()
) -> dict[str, str]:
    """
    A header map for display: the first value of each header, names in
    canonical casing, secrets replaced by L{REDACTED}.

    @param headers: name and values pairs, e.g. C{Headers.getAllRawHeaders()}.
    @param drop: lower-case names to leave out.
    """
    skip = drop if isinstance(drop, (tuple, frozenset, set)) else frozenset(drop)
    result: dict[str, str] = {}
    known = _NAMES.get
    for rawName, values in headers:
        name, key, secret = known(rawName) or _headerName(rawName)
        if not values or (skip and name in skip) or key in result:
            continue
        result[key] = REDACTED if secret else values[0].decode("latin-1")
    return result


def _redactJSON(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (REDACTED if k.lower() in SECRET_FIELDS else _redactJSON(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redactJSON(v) for v in value]
    return value


def mayHoldSecrets(body: bytes) -> bool:
    """
    Whether C{body} names a secret field at all (L{redactBody} leaves
    every other body as it is).
    """
    return bool(body) and _SECRET_FIELD_TEXT.search(body) is not None


def redactBody(body: bytes, contentType: str = "") -> bytes:
    """
    C{body} with secret fields of a JSON document or a urlencoded form
    replaced; other bodies (and bodies without such fields) unchanged.
    """
    if not mayHoldSecrets(body):
        return body
    if "x-www-form-urlencoded" in contentType.lower():
        return _FORM_SECRET.sub(
            lambda m: m.group(1) + m.group(2) + b"=" + REDACTED.encode("ascii"), body
        )
    try:
        parsed = safejson.loads(body)
    except safejson.JSONTooDeep:
        return REDACTED.encode("ascii")
    except safejson.JSONError:
        return body
    try:
        redacted = _redactJSON(parsed)
        if redacted == parsed:
            return body
        return safejson.dumps(redacted, ensure_ascii=False).encode("utf-8")
    except (safejson.JSONError, RecursionError):
        # Too deep to walk: keep nothing rather than a secret.
        return REDACTED.encode("ascii")


@frozen
class Capture:
    """
    One captured exchange.

    @ivar id: the activity row's ID (0 until it is stored).
    """

    id: int
    reqPath: str
    reqHeaders: dict[str, str] | None
    reqBody: bytes | None
    respHeaders: dict[str, str] | None
    respBody: bytes | None

    @property
    def size(self) -> int:
        """
        Roughly the bytes it holds (what the budget counts).
        """
        size = len(self.reqPath) + len(self.reqBody or b"") + len(self.respBody or b"")
        for headers in (self.reqHeaders, self.respHeaders):
            if headers:
                size += sum(map(len, headers)) + sum(map(len, headers.values()))
        return size

    def withID(self, id: int) -> Capture:
        # The constructor, not attrs.evolve (which walks the fields by
        # name): once per stored request.
        return Capture(
            id, self.reqPath, self.reqHeaders, self.reqBody, self.respHeaders, self.respBody
        )

    def toJSON(self) -> dict[str, Any]:
        """
        The C{/api/captures/<id>} answer: bodies in base64.
        """

        def b64(data: bytes | None) -> str | None:
            return None if data is None else base64.b64encode(data).decode("ascii")

        return {
            "id": self.id,
            "req_path": self.reqPath,
            "req_headers": self.reqHeaders,
            "req_body": b64(self.reqBody),
            "resp_headers": self.respHeaders,
            "resp_body": b64(self.respBody),
        }


class CaptureCache:
    """
    Captures by ID within a byte budget: the oldest are evicted to make
    room; a capture bigger than the whole budget is not kept; adding an ID
    again replaces it.  A budget of 0 disables captures.
    """

    def __init__(self, budget: int) -> None:
        self.budget = max(0, budget)
        self.used = 0
        self._entries: OrderedDict[int, Capture] = OrderedDict()
        #: Each entry's size as counted when it was added.
        self._sizes: dict[int, int] = {}

    @classmethod
    def fromMegabytes(cls, megabytes: int) -> CaptureCache:
        return cls(megabytes * MB)

    @property
    def enabled(self) -> bool:
        return self.budget > 0

    def add(self, capture: Capture) -> bool:
        """
        Keep C{capture}; L{False} if disabled or too big.
        """
        size = capture.size
        if not self.enabled or size > self.budget:
            return False
        self.discard(capture.id)
        while self._entries and self.used + size > self.budget:
            oldest, _ = self._entries.popitem(last=False)
            self.used -= self._sizes.pop(oldest)
        self._entries[capture.id] = capture
        self._sizes[capture.id] = size
        self.used += size
        return True

    def discard(self, id: int) -> None:
        if self._entries.pop(id, None) is not None:
            self.used -= self._sizes.pop(id)

    def get(self, id: int) -> Capture | None:
        return self._entries.get(id)

    def __contains__(self, id: object) -> bool:
        return id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._sizes.clear()
        self.used = 0


__all__ = [
    "Capture",
    "CaptureCache",
    "CaptureMask",
    "MASKS",
    "REDACTED",
    "canonicalHeaderName",
    "maskFor",
    "mayHoldSecrets",
    "redactBody",
    "redactHeaders",
]
