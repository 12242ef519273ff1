# -*- test-case-name: test.observe.test_activity -*-
"""
Token counts and speeds read from a response while it streams past.

Inference servers report what a request cost in small JSON objects: OpenAI
and Anthropic C{usage} (top level, C{response.usage} in Responses API
events, C{message.usage} in Anthropic's C{message_start}), llama.cpp's
C{timings} and vLLM's C{metrics}.  They sit at the end of a non-streamed
body, in the last events of a stream, or in the last element of
C{/infill}'s array, after answers that may be megabytes long.

Nothing here keeps a response: L{JSONScan} walks one JSON document
incrementally, remembering only the nesting of the first levels, and copies
out just the small objects at the paths it was asked for.  That walk is
Python code, so a small document (the usual answer: at most
L{WHOLE_LIMIT} bytes) is instead parsed once with L{json.loads} when it is
complete (L{wholeCaptures}, the same result); only a bigger one is
scanned.  L{SSEUsage} splits an event stream into lines without holding
more than a few bytes of any line; a C{data:} payload is parsed only when
it names one of the keys looked for (one search over each piece of the
stream), which most events (token deltas) do not.
L{UsageTotals} merges what was found with llama-swap's rules and turns it
into L{TokenMetrics}.

Everything is pure: bytes in, numbers out.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from attrs import frozen

from .. import safejson

#: The key standing for "any element" of an array in a path.
ITEM = "[]"

#: Where llama-swap looks for usage, timings and metrics in a document.
USAGE_PATHS: Mapping[tuple[str, ...], str] = {
    ("usage",): "usage",
    ("response", "usage"): "usage",
    ("message", "usage"): "usage",
    ("timings",): "timings",
    ("metrics",): "metrics",
}
#: C{/infill} answers with an array whose last element has the timings.
INFILL_PATHS: Mapping[tuple[str, ...], str] = {
    **USAGE_PATHS,
    (ITEM, "timings"): "timings",
}

#: The largest object copied out of a document; bigger ones are ignored.
MAX_CAPTURE = 64 * 1024
#: Documents up to this size are kept until complete and parsed whole.
WHOLE_LIMIT = 64 * 1024
#: The longest object key remembered (longer keys never match a path).
MAX_KEY = 256
#: The longest scalar token checked (numbers, literals).
MAX_TOKEN = 64

_SHALLOW = re.compile(rb'[{}\[\]",:]')
_DEEP = re.compile(rb'[{}\[\]"]')
# A string's contents up to its closing quote (or a backslash ending the
# piece): runs of plain bytes and escape pairs, matched in C.
_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.S)
_SCALAR = re.compile(
    rb"(?:-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null)?\Z"
)
_EOL = re.compile(rb"[\r\n]")
_EOL_BYTES = b"\r\n"
_WS = b" \t\r\n"

_OPEN_OBJECT = ord("{")
_OPEN_ARRAY = ord("[")
_CLOSE_OBJECT = ord("}")
_CLOSE_ARRAY = ord("]")
_QUOTE = ord('"')
_COLON = ord(":")
_COMMA = ord(",")
_BACKSLASH = ord("\\")

# Where an object frame is: before a key, between key and colon, at or
# after a value (arrays are always at a value).
_AT_KEY, _AT_COLON, _AT_VALUE = range(3)


class JSONScan:
    """
    An incremental scan of one JSON document that copies out the objects
    found at a few paths (C{("usage",)}, C{("response", "usage")},
    C{(ITEM, "timings")}...).

    State is the nesting of the first few levels (as deep as the longest
    path), a depth counter below that, and the object being copied (at most
    L{MAX_CAPTURE} bytes): memory does not grow with the document.  String
    contents are skipped with a regular expression, never stored (except
    short keys at the tracked levels).

    Validation is structural (brackets, strings, keys, scalar tokens at the
    tracked levels, a single top-level value); copied objects are parsed
    with L{json.loads}.  A document that fails yields nothing.

    @ivar captures: path to the last object found there; for a path through
        an array, only what the array's last element held.
    """

    __slots__ = (
        "_paths",
        "_tracked",
        "_maxCapture",
        "_depth",
        "_frames",
        "_inString",
        "_escape",
        "_key",
        "_token",
        "_pending",
        "_capPath",
        "_capDepth",
        "_capBuf",
        "_capStart",
        "_started",
        "_done",
        "failed",
        "captures",
    )

    def __init__(
        self,
        paths: Mapping[tuple[str, ...], str] = USAGE_PATHS,
        maxCapture: int = MAX_CAPTURE,
    ) -> None:
        self._paths = paths
        self._tracked = max((len(p) for p in paths), default=0)
        self._maxCapture = maxCapture
        self._depth = 0
        # One [isObject, key, phase] per tracked level.
        self._frames: list[list[Any]] = []
        self._inString = False
        self._escape = False
        self._key: bytearray | None = None
        self._token = b""
        self._pending: tuple[str, ...] | None = None
        self._capPath: tuple[str, ...] | None = None
        self._capDepth = 0
        self._capBuf: bytearray | None = None
        self._capStart = 0
        self._started = False
        self._done = False
        self.failed = False
        self.captures: dict[tuple[str, ...], Any] = {}

    # -- public -------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """
        Scan the next piece of the document.
        """
        if self.failed or not data:
            return
        self._capStart = 0
        i = 0
        n = len(data)
        while i < n:
            if self._inString:
                i = self._string(data, i, n)
                continue
            shallow = self._depth <= self._tracked
            match = (_SHALLOW if shallow else _DEEP).search(data, i)
            end = n if match is None else match.start()
            if shallow and end > i:
                self._scalar(data[i:end])
                if self.failed:
                    return
            if match is None:
                break
            self._structural(data[end], data, end)
            if self.failed:
                return
            i = end + 1
        if self._capBuf is not None:
            self._copy(data, self._capStart, n)

    def end(self) -> dict[tuple[str, ...], Any] | None:
        """
        The document is complete: its captures, or L{None} if it was not
        one whole valid JSON object or array.
        """
        if self.failed or not self._done or self._inString or self._token:
            return None
        return self.captures

    # -- scanning -------------------------------------------------------------

    def _fail(self) -> None:
        self.failed = True
        self.captures = {}
        self._capBuf = None

    def _string(self, data: bytes, i: int, n: int) -> int:
        key = self._key
        if self._escape:
            self._escape = False
            if key is not None:
                key += data[i : i + 1]
            return i + 1
        j = _STRING_BODY.match(data, i).end()  # type: ignore[union-attr]
        if key is not None and len(key) <= MAX_KEY:
            key += data[i : min(j, i + MAX_KEY + 1)]
        if j >= n:
            return n
        if data[j] == _BACKSLASH:
            # A backslash ending the piece: its escaped byte comes next.
            self._escape = True
            if key is not None:
                key += b"\\"
            return n
        self._inString = False
        if key is not None:
            frame = self._frames[-1]
            frame[1] = _keyText(key) if len(key) <= MAX_KEY else None
            frame[2] = _AT_COLON
            self._key = None
        return j + 1

    def _scalar(self, text: bytes) -> None:
        text = text.strip(_WS)
        if not text:
            return
        if self._depth == 0 or (self._frames and self._frames[-1][2] != _AT_VALUE):
            # Text outside any value, or where a key belongs.
            self._fail()
            return
        token = self._token + text
        if len(token) > MAX_TOKEN:
            self._fail()
            return
        self._token = token
        self._pending = None

    def _checkToken(self) -> None:
        token = self._token
        if token:
            self._token = b""
            if _SCALAR.match(token) is None:
                self._fail()

    def _structural(self, c: int, data: bytes, j: int) -> None:
        depth = self._depth
        shallow = depth <= self._tracked
        if c == _QUOTE:
            self._inString = True
            if depth == 0:
                self._fail()  # a bare string is no object
                return
            if shallow:
                if self._token:
                    self._fail()
                    return
                frame = self._frames[-1]
                if frame[2] == _AT_KEY:
                    self._key = bytearray()
                elif frame[2] == _AT_COLON:
                    self._fail()
                    return
                else:
                    self._pending = None
            return
        if c == _OPEN_OBJECT or c == _OPEN_ARRAY:
            if depth == 0:
                if self._done or self._started:
                    self._fail()
                    return
                self._started = True
            elif shallow:
                if self._token or self._frames[-1][2] != _AT_VALUE:
                    self._fail()
                    return
            pending, self._pending = self._pending, None
            if pending is not None and c == _OPEN_OBJECT and self._capBuf is None:
                self._capPath = pending
                self._capDepth = depth + 1
                self._capBuf = bytearray()
                self._capStart = j
            depth = self._depth = depth + 1
            if depth <= self._tracked:
                isObject = c == _OPEN_OBJECT
                self._frames.append(
                    [isObject, None if isObject else ITEM, _AT_KEY if isObject else _AT_VALUE]
                )
            return
        if c == _CLOSE_OBJECT or c == _CLOSE_ARRAY:
            if depth == 0:
                self._fail()
                return
            if shallow:
                self._checkToken()
                frame = self._frames[-1]
                if self.failed or frame[0] != (c == _CLOSE_OBJECT) or frame[2] == _AT_COLON:
                    self._fail()
                    return
            self._pending = None
            if self._capBuf is not None and depth == self._capDepth:
                self._finishCapture(data, j)
            depth = self._depth = depth - 1
            if len(self._frames) > depth:
                self._frames.pop()
            if depth == 0:
                self._done = True
            return
        # ':' or ',' (only searched for at tracked levels)
        if depth == 0:
            self._fail()
            return
        frame = self._frames[-1]
        if c == _COLON:
            if not frame[0] or frame[2] != _AT_COLON or self._token:
                self._fail()
                return
            frame[2] = _AT_VALUE
            path = tuple(f[1] for f in self._frames)
            if path in self._paths:
                self._pending = path
            return
        self._checkToken()
        if self.failed:
            return
        self._pending = None
        if frame[0]:
            if frame[2] != _AT_VALUE:
                self._fail()
                return
            frame[1] = None
            frame[2] = _AT_KEY
        elif self.captures:
            prefix = tuple(f[1] for f in self._frames)
            size = len(prefix)
            for path in [p for p in self.captures if len(p) > size and p[:size] == prefix]:
                del self.captures[path]

    # -- copying ----------------------------------------------------------------

    def _copy(self, data: bytes, start: int, stop: int) -> None:
        buf = self._capBuf
        assert buf is not None
        if len(buf) + (stop - start) > self._maxCapture:
            self._capBuf = None  # too big to be what we look for
            return
        buf += data[start:stop]

    def _finishCapture(self, data: bytes, j: int) -> None:
        self._copy(data, self._capStart, j + 1)
        buf, self._capBuf = self._capBuf, None
        path = self._capPath
        if buf is None or path is None:
            return
        try:
            value = safejson.loads(bytes(buf))
        except safejson.JSONError:
            self._fail()
            return
        if isinstance(value, dict):
            self.captures[path] = value


def _keyText(raw: bytes | bytearray) -> str:
    """
    An object key as text, its escapes (C{\\u0061}...) resolved as
    L{json.loads} does, so that both ways of reading a document match the
    same keys.
    """
    if _BACKSLASH not in raw:
        return raw.decode("utf-8", "replace")
    try:
        text = safejson.loads(b'"' + bytes(raw) + b'"')
    except safejson.JSONError:
        return raw.decode("utf-8", "replace")
    return text if isinstance(text, str) else raw.decode("utf-8", "replace")


class _DuplicateKey(ValueError):
    """
    An object repeats a key (L{wholeCaptures} leaves such documents to
    L{JSONScan}, whose rule for them is its own).
    """


def _uniqueObject(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey()
    return result


def _noConstant(name: str) -> Any:
    # NaN and Infinity are not JSON; the scanner decides about them.
    raise ValueError(name)


def wholeCaptures(
    document: bytes, paths: Mapping[tuple[str, ...], str] = USAGE_PATHS
) -> tuple[bool, dict[tuple[str, ...], Any] | None]:
    """
    What L{JSONScan} over C{paths} would find in the complete C{document}
    (its C{end()}), computed with one L{json.loads}: far cheaper than the
    scan for a small document.  Meant for documents of at most
    L{MAX_CAPTURE} bytes (the scan ignores bigger objects); the one other
    difference is that a number longer than the scan's L{MAX_TOKEN}
    (valid JSON, never seen in practice) does not make it invalid.

    Documents that L{json.loads} rejects (not UTF-8, NaN, control
    characters in strings, deeper than its recursion limit...) or that
    repeat a key in some object are not decided here: the scan's rules
    apply to them.

    @return: C{(True, captures)} when decided (C{captures} L{None} for a
        valid document that is no object or array), C{(False, None)} when
        the document must be scanned.
    """
    try:
        value = json.loads(
            document.decode("utf-8"),
            object_pairs_hook=_uniqueObject,
            parse_constant=_noConstant,
        )
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(value, (dict, list)):
        return True, None
    found: dict[tuple[str, ...], Any] = {}
    for path in paths:
        node: Any = value
        for key in path:
            if key == ITEM:
                node = node[-1] if isinstance(node, list) and node else None
            else:
                node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            found[path] = node
    return True, found


def documentCaptures(
    document: bytes, paths: Mapping[tuple[str, ...], str] = USAGE_PATHS
) -> dict[tuple[str, ...], Any] | None:
    """
    The captures of one complete document (as C{JSONScan.end()} gives
    them): parsed whole when it is small and plain, scanned otherwise.
    """
    if len(document) <= WHOLE_LIMIT:
        decided, found = wholeCaptures(document, paths)
        if decided:
            return found
    scan = JSONScan(paths)
    scan.feed(document)
    return scan.end()


class SSEUsage:
    """
    Reads an event stream: every line that is C{data:} followed by a JSON
    document naming one of the keys looked for is read for usage, and each
    complete valid document is handed to a L{UsageTotals} (C{[DONE]},
    empty payloads, comments and invalid JSON are skipped, as llama-swap
    does).

    Pieces made of whole lines are searched once for the keys; most (token
    deltas) name none and need no more work.  A line split across pieces
    is scanned with a L{JSONScan} as it comes, so memory is a few bytes of
    the current line's start plus one scan, however long the lines.
    """

    __slots__ = ("_totals", "_paths", "_wanted", "_state", "_prefix", "_scan")

    _DECIDING, _DATA, _SKIP = range(3)

    def __init__(
        self, totals: UsageTotals, paths: Mapping[tuple[str, ...], str] = USAGE_PATHS
    ) -> None:
        self._totals = totals
        self._paths = paths
        keys = sorted({p[-1] for p in paths})
        self._wanted = re.compile(
            b"|".join(re.escape(b'"' + key.encode("utf-8") + b'"') for key in keys)
        )
        self._state = self._DECIDING
        self._prefix = b""
        self._scan: JSONScan | None = None

    def feed(self, data: bytes) -> None:
        """
        The next piece of the stream.
        """
        n = len(data)
        if not n:
            return
        i = 0
        if self._state != self._DECIDING or self._prefix:
            # First the rest of the line an earlier piece began.
            match = _EOL.search(data)
            if match is None:
                self._segment(data)
                return
            end = match.start()
            if end:
                self._segment(data[:end])
            self._endLine()
            i = end + 1
        # Whole lines up to the last line end: nothing to do unless one
        # of them names a key.
        if data[-1] in _EOL_BYTES:
            last = n - 1
        else:
            last = max(data.rfind(b"\n", i), data.rfind(b"\r", i))
        if last >= i:
            if self._wanted.search(data, i, last) is not None:
                self._lines(data, i, last)
            i = last + 1
        if i < n:
            self._segment(data[i:] if i else data)

    def _lines(self, data: bytes, i: int, last: int) -> None:
        """
        The whole lines of C{data} from C{i} to the line end at C{last}.
        """
        wanted = self._wanted
        while i < last:
            match = _EOL.search(data, i, last + 1)
            end = last if match is None else match.start()
            if end > i and wanted.search(data, i, end) is not None:
                self._line(data[i:end])
            i = end + 1

    def _line(self, line: bytes) -> None:
        line = line.strip(_WS)
        if not line.startswith(b"data:"):
            return
        found = documentCaptures(line[5:], self._paths)
        if found is not None:
            self._totals.addEvent(found)

    def close(self) -> None:
        """
        The stream ended (a last line without a newline still counts).
        """
        self._endLine()

    def _segment(self, segment: bytes) -> None:
        state = self._state
        if state == self._DATA:
            assert self._scan is not None
            self._scan.feed(segment)
            return
        if state == self._SKIP:
            return
        if not self._prefix:
            segment = segment.lstrip(_WS)
            if not segment:
                return
        prefix = self._prefix + segment[:5]
        if len(prefix) < 5:
            if b"data:".startswith(prefix):
                self._prefix = prefix
            else:
                self._state = self._SKIP
            return
        if not prefix.startswith(b"data:"):
            self._state = self._SKIP
            return
        self._state = self._DATA
        scan = self._scan = JSONScan(self._paths)
        scan.feed(prefix[5:] + segment[5:])

    def _endLine(self) -> None:
        if self._state == self._DATA and self._scan is not None:
            found = self._scan.end()
            if found is not None:
                self._totals.addEvent(found)
        self._state = self._DECIDING
        self._prefix = b""
        self._scan = None


class JSONUsage:
    """
    Reads a non-streamed JSON answer (an object, or C{/infill}'s array).

    The first L{WHOLE_LIMIT} bytes are kept: an answer that ends within
    them is parsed once (L{documentCaptures}); a longer one is handed to a
    L{JSONScan}, those bytes first, and nothing more is kept.
    """

    __slots__ = ("_totals", "_paths", "_pieces", "_size", "_scan")

    def __init__(self, totals: UsageTotals, infill: bool = False) -> None:
        self._totals = totals
        self._paths = INFILL_PATHS if infill else USAGE_PATHS
        self._pieces: list[bytes] | None = []
        self._size = 0
        self._scan: JSONScan | None = None

    def feed(self, data: bytes) -> None:
        pieces = self._pieces
        if pieces is None:
            assert self._scan is not None
            self._scan.feed(data)
            return
        size = self._size + len(data)
        if size <= WHOLE_LIMIT:
            pieces.append(bytes(data))
            self._size = size
            return
        self._pieces = None
        scan = self._scan = JSONScan(self._paths)
        for piece in pieces:
            scan.feed(piece)
        scan.feed(data)

    def close(self) -> None:
        pieces = self._pieces
        if pieces is not None:
            self._pieces = None
            document = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            found = documentCaptures(document, self._paths)
        elif self._scan is not None:
            found = self._scan.end()
            self._scan = None
        else:
            return
        if found is not None:
            self._totals.addEvent(found)


# ---------------------------------------------------------------------------
# Merging


@frozen
class TokenMetrics:
    """
    What one request cost, as llama-swap records it.

    C{-1} means unknown (speeds, cached and draft tokens).
    """

    inputTokens: int = 0
    outputTokens: int = 0
    cacheTokens: int = 0
    promptPerSecond: float = 0.0
    tokensPerSecond: float = 0.0
    draftTokens: int = 0
    draftAcceptedTokens: int = 0
    durationMs: int = 0


def _number(obj: Any, key: str) -> float | None:
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _first(obj: Any, *paths: tuple[str, ...]) -> float | None:
    for path in paths:
        node = obj
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        value = _number(node, path[-1])
        if value is not None:
            return value
    return None


class UsageTotals:
    """
    Usage merged over the events of one response with llama-swap's rules:
    input and output tokens are replaced only by positive values, cached
    tokens by any non-negative value; the last C{timings} and C{metrics}
    objects win.

    @ivar found: whether any event carried usage, timings or metrics.
    """

    __slots__ = ("inputTokens", "outputTokens", "cachedTokens", "timings", "metrics", "found")

    def __init__(self) -> None:
        self.inputTokens = 0
        self.outputTokens = 0
        self.cachedTokens: int | None = None
        self.timings: dict[str, Any] | None = None
        self.metrics: dict[str, Any] | None = None
        self.found = False

    def addEvent(self, captures: Mapping[tuple[str, ...], Any]) -> None:
        """
        Merge one event's (or one document's) captures, as found by a
        L{JSONScan} over L{USAGE_PATHS} or L{INFILL_PATHS}.
        """
        usage = None
        for path in (("usage",), ("response", "usage"), ("message", "usage")):
            usage = captures.get(path)
            if usage is not None:
                break
        if usage is not None:
            self.found = True
            inputs = _first(usage, ("prompt_tokens",), ("input_tokens",))
            if inputs is not None and inputs > 0:
                self.inputTokens = int(inputs)
            outputs = _first(usage, ("completion_tokens",), ("output_tokens",))
            if outputs is not None and outputs > 0:
                self.outputTokens = int(outputs)
            cached = _first(
                usage,
                ("cache_read_input_tokens",),
                ("input_tokens_details", "cached_tokens"),
                ("prompt_tokens_details", "cached_tokens"),
            )
            if cached is not None and cached >= 0:
                self.cachedTokens = int(cached)
        timings = captures.get(("timings",))
        if timings is None:
            timings = captures.get((ITEM, "timings"))
        if timings is not None:
            self.found = True
            self.timings = timings
        metrics = captures.get(("metrics",))
        if metrics is not None:
            self.found = True
            self.metrics = metrics

    def build(self, wallMs: int) -> TokenMetrics | None:
        """
        The request's metrics (llama-swap's C{buildMetrics}), or L{None}
        if nothing was found.

        @param wallMs: the request's wall-clock duration.
        """
        if not self.found:
            return None
        inputs = self.inputTokens
        outputs = self.outputTokens
        cache = self.cachedTokens if self.cachedTokens is not None else -1
        promptSpeed = -1.0
        genSpeed = -1.0
        draft = accepted = -1
        duration = wallMs
        timings = self.timings
        if timings is not None:
            inputs = int(_number(timings, "prompt_n") or 0)
            outputs = int(_number(timings, "predicted_n") or 0)
            promptSpeed = _number(timings, "prompt_per_second") or 0.0
            genSpeed = _number(timings, "predicted_per_second") or 0.0
            spent = (_number(timings, "prompt_ms") or 0.0) + (
                _number(timings, "predicted_ms") or 0.0
            )
            duration = max(wallMs, int(spent))
            cacheN = _number(timings, "cache_n")
            if cacheN is not None:
                cache = int(cacheN)
            draftN = _number(timings, "draft_n")
            acceptedN = _number(timings, "draft_n_accepted")
            if draftN is not None and acceptedN is not None:
                draft, accepted = int(draftN), int(acceptedN)
        metrics = self.metrics
        if metrics is not None:
            spec = metrics.get("speculative_decoding")
            drafted = _number(spec, "num_draft_tokens")
            taken = _number(spec, "num_accepted_draft_tokens")
            if drafted is not None and taken is not None:
                draft, accepted = int(drafted), int(taken)
            ttft = _number(metrics, "time_to_first_token_ms")
            if ttft is not None and ttft > 0:
                promptSpeed = (inputs - max(cache, 0)) / (ttft / 1000.0)
            itl = _number(metrics, "mean_itl_ms")
            if itl is not None and itl > 0:
                genSpeed = 1000.0 / itl
        return TokenMetrics(
            inputTokens=inputs,
            outputTokens=outputs,
            cacheTokens=cache,
            promptPerSecond=promptSpeed,
            tokensPerSecond=genSpeed,
            draftTokens=draft,
            draftAcceptedTokens=accepted,
            durationMs=duration,
        )


__all__ = [
    "INFILL_PATHS",
    "ITEM",
    "JSONScan",
    "JSONUsage",
    "SSEUsage",
    "TokenMetrics",
    "USAGE_PATHS",
    "UsageTotals",
    "WHOLE_LIMIT",
    "documentCaptures",
    "wholeCaptures",
]
