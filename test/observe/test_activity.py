"""
Tests for L{llamaswap.observe.usage}, L{llamaswap.observe.activity} and
L{llamaswap.observe.captures}: usage read from responses as they stream,
error messages, decompression, histograms, captures and redaction.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import tracemalloc
import zlib
from typing import Any, Iterator

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from llamaswap.observe import usage
from llamaswap.observe.activity import (
    ActivityRecord,
    ResponseReader,
    errorMessage,
    histogram,
    isMetered,
    rfc3339,
    statusText,
)
from llamaswap.observe.captures import (
    REDACTED,
    Capture,
    CaptureCache,
    canonicalHeaderName,
    maskFor,
    mayHoldSecrets,
    redactBody,
    redactHeaders,
)
from llamaswap.observe.usage import (
    INFILL_PATHS,
    ITEM,
    USAGE_PATHS,
    WHOLE_LIMIT,
    JSONScan,
    JSONUsage,
    SSEUsage,
    TokenMetrics,
    UsageTotals,
    documentCaptures,
    wholeCaptures,
)


def scan(document: bytes | str, paths: Any = USAGE_PATHS, step: int = 0) -> Any:
    """
    Scan C{document}, fed in pieces of C{step} bytes (0: at once).
    """
    data = document.encode("utf-8") if isinstance(document, str) else document
    scanner = JSONScan(paths)
    if step:
        for i in range(0, len(data), step):
            scanner.feed(data[i : i + step])
    else:
        scanner.feed(data)
    return scanner.end()


def jsonMetrics(body: Any, wallMs: int = 1000, infill: bool = False) -> TokenMetrics | None:
    totals = UsageTotals()
    parser = JSONUsage(totals, infill)
    parser.feed(json.dumps(body).encode("utf-8"))
    parser.close()
    return totals.build(wallMs)


def sse(*events: Any) -> bytes:
    lines = []
    for event in events:
        payload = event if isinstance(event, (str, bytes)) else json.dumps(event)
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        lines.append(b"data: " + payload + b"\n\n")
    return b"".join(lines)


def streamMetrics(data: bytes, wallMs: int = 1000, step: int = 0) -> TokenMetrics | None:
    totals = UsageTotals()
    parser = SSEUsage(totals)
    if step:
        for i in range(0, len(data), step):
            parser.feed(data[i : i + step])
    else:
        parser.feed(data)
    parser.close()
    return totals.build(wallMs)


# ---------------------------------------------------------------- JSONScan

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                ["usage", "timings", "metrics", "response", "message", "a", "b\"", "é"]
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)
_documents = st.dictionaries(
    st.sampled_from(["usage", "timings", "metrics", "response", "message", "choices", "x"]),
    _values,
    max_size=6,
)


def expectedCaptures(document: Any, paths: Any = USAGE_PATHS) -> dict[tuple[str, ...], Any]:
    """
    What a scan should find, computed from the parsed document.
    """
    found: dict[tuple[str, ...], Any] = {}
    for path in paths:
        if path[0] == ITEM:
            if isinstance(document, list) and document:
                last = document[-1]
                value = last.get(path[1]) if isinstance(last, dict) else None
                if isinstance(value, dict):
                    found[path] = value
            continue
        node = document
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            found[path] = node
    return found


class JSONScanTests(SynchronousTestCase):
    """
    L{JSONScan} finds the objects at its paths in any valid document, fed
    in any pieces.
    """

    @settings(max_examples=300, deadline=None)
    @given(
        document=_documents,
        indent=st.sampled_from([None, 0, 2]),
        ascii=st.booleans(),
        step=st.integers(1, 40),
    )
    def test_matchesJSONLoads(
        self, document: dict[str, Any], indent: int | None, ascii: bool, step: int
    ) -> None:
        """
        Whatever the layout and the piece size, the captures are exactly
        the objects at the paths of the parsed document.
        """
        text = json.dumps(document, indent=indent, ensure_ascii=ascii)
        self.assertEqual(scan(text, step=step), expectedCaptures(document))

    @settings(max_examples=100, deadline=None)
    @given(elements=st.lists(_documents, min_size=1, max_size=4), step=st.integers(1, 30))
    def test_infillArrays(self, elements: list[dict[str, Any]], step: int) -> None:
        """
        With the C{/infill} paths, an array's timings are those of its
        last element (none if the last element has none).
        """
        text = json.dumps(elements)
        self.assertEqual(scan(text, INFILL_PATHS, step), expectedCaptures(elements, INFILL_PATHS))

    def test_invalidDocuments(self) -> None:
        """
        Anything but one whole JSON object or array yields nothing, even if
        a wanted object was seen before the error.
        """
        for bad in [
            "[DONE]",
            "",
            "   ",
            '"usage"',
            "123",
            '{"usage":{"prompt_tokens":1}} x',
            '{"usage":{"prompt_tokens":1}}{}',
            '{"usage":{"prompt_tokens":1}',
            '{"usage":{"prompt_tokens":1},"a":tru}',
            '{"usage":{"prompt_tokens":1},"a":[1,2}',
            '{"usage":{"prompt_tokens":1},"a" 1}',
            '{"usage":{"prompt_tokens":}}',
            '{"usage":{"prompt_tokens":1},"a":"unterminated}',
        ]:
            self.assertIsNone(scan(bad), bad)

    def test_escapesAcrossPieces(self) -> None:
        """
        Escaped quotes and backslashes inside strings do not end them, even
        when a piece ends right after the backslash.
        """
        text = '{"choices":[{"text":"a \\"usage\\": {\\\\"}],"usage":{"prompt_tokens":2}}'
        for step in range(1, len(text)):
            self.assertEqual(scan(text, step=step), {("usage",): {"prompt_tokens": 2}})

    def test_bigCaptureIgnored(self) -> None:
        """
        An object at a wanted path that is bigger than the capture limit is
        not kept (it is not what we look for).
        """
        scanner = JSONScan(USAGE_PATHS, maxCapture=100)
        scanner.feed(json.dumps({"usage": {"x": "y" * 200}, "timings": {"a": 1}}).encode())
        self.assertEqual(scanner.end(), {("timings",): {"a": 1}})

    def test_deepNesting(self) -> None:
        """
        Nesting far deeper than the tracked levels is followed with a
        counter, and a wanted object after it is still found.
        """
        deep = "[" * 5000 + "]" * 5000
        text = '{"a":' + deep + ',"usage":{"prompt_tokens":3}}'
        self.assertEqual(scan(text, step=7), {("usage",): {"prompt_tokens": 3}})


    def test_escapedKeys(self) -> None:
        """
        Keys are compared after their escapes are resolved, as
        L{json.loads} reads them.
        """
        text = '{"us\\u0061ge":{"prompt_tokens":4},"t\\u0069mings":{"prompt_n":2}}'
        expected = {("usage",): {"prompt_tokens": 4}, ("timings",): {"prompt_n": 2}}
        for step in (0, 1, 5):
            self.assertEqual(scan(text, step=step), expected)
        self.assertEqual(scan('{"usage\\"":{"a":1}}'), {})


class WholeDocumentTests(SynchronousTestCase):
    """
    L{wholeCaptures} (one L{json.loads}) finds what L{JSONScan} finds, and
    leaves to the scan the documents on which their rules could differ.
    """

    @settings(max_examples=300, deadline=None)
    @given(
        document=st.one_of(_documents, st.lists(_documents, max_size=3), _scalars),
        indent=st.sampled_from([None, 2]),
        ascii=st.booleans(),
        infill=st.booleans(),
    )
    def test_matchesScan(
        self, document: Any, indent: int | None, ascii: bool, infill: bool
    ) -> None:
        """
        Any valid document, object, array or scalar: decided, with the
        scan's result.
        """
        paths = INFILL_PATHS if infill else USAGE_PATHS
        data = json.dumps(document, indent=indent, ensure_ascii=ascii).encode("utf-8")
        self.assertEqual(wholeCaptures(data, paths), (True, scan(data, paths)))
        self.assertEqual(documentCaptures(data, paths), scan(data, paths))

    def test_leftToTheScan(self) -> None:
        """
        Documents json.loads rejects or reads differently from the scan are
        not decided; L{documentCaptures} gives the scan's answer for them.
        """
        for bad in [
            '{"usage":{"prompt_tokens":1},"usage":null}',
            '{"usage":{"prompt_tokens":1},"us\\u0061ge":{"prompt_tokens":2}}',
            '{"usage":{"prompt_tokens":1},"choices":[{"a":1,"a":2}]}',
            '{"response":{"usage":{"input_tokens":NaN}}}',
            '{"usage":{"prompt_tokens":1},"choices":[{"a":tru}]}',
            '{"usage":{"prompt_tokens":1},"choices":[{"a":"\x01"}]}',
            '\ufeff{"usage":{"prompt_tokens":1}}',
            '{"a":' + "[" * 100_000 + "]" * 100_000 + ',"usage":{"prompt_tokens":3}}',
            "",
            '{"usage":{"prompt_tokens":1}',
        ]:
            data = bad.encode("utf-8")
            self.assertEqual(wholeCaptures(data), (False, None), bad[:60])
            self.assertEqual(documentCaptures(data), scan(data), bad[:60])
        self.assertEqual(wholeCaptures(b'{"usage":{"a":1},"x":"\xff"}'), (False, None))
        self.assertEqual(
            documentCaptures(b'{"usage":{"prompt_tokens":1},"usage":null}'),
            {("usage",): {"prompt_tokens": 1}},
        )

    def test_jsonUsageSmallIsParsedWhole(self) -> None:
        """
        An answer within L{WHOLE_LIMIT} is never scanned, in however many
        pieces it comes; a longer one is scanned, from its first byte.
        """
        scans: list[JSONScan] = []

        class Counting(JSONScan):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, **kw)
                scans.append(self)

        self.patch(usage, "JSONScan", Counting)
        head = b'{"usage":{"prompt_tokens":5,"completion_tokens":6},"content":"'
        tail = b'"}'
        for size, scanned in [(WHOLE_LIMIT, 0), (WHOLE_LIMIT + 1, 1)]:
            del scans[:]
            body = head + b"x" * (size - len(head) - len(tail)) + tail
            self.assertEqual(len(body), size)
            totals = UsageTotals()
            parser = JSONUsage(totals)
            for i in range(0, len(body), 1000):
                parser.feed(body[i : i + 1000])
            parser.close()
            self.assertEqual((totals.inputTokens, totals.outputTokens), (5, 6))
            self.assertEqual(len(scans), scanned)


# ------------------------------------------------------------ metrics rules


class UsageRuleTests(SynchronousTestCase):
    """
    llama-swap's token and speed rules, with its test values.
    """

    def test_chatUsage(self) -> None:
        """
        OpenAI usage with cached prompt tokens: 12/7/4; speeds unknown.
        """
        metrics = jsonMetrics(
            {
                "choices": [{"message": {"content": "hi"}}],
                "usage": {
                    "prompt_tokens": 12,
                    "completion_tokens": 7,
                    "prompt_tokens_details": {"cached_tokens": 4},
                },
            }
        )
        self.assertEqual(
            metrics,
            TokenMetrics(
                inputTokens=12,
                outputTokens=7,
                cacheTokens=4,
                promptPerSecond=-1,
                tokensPerSecond=-1,
                draftTokens=-1,
                draftAcceptedTokens=-1,
                durationMs=1000,
            ),
        )

    def test_llamaCppTimings(self) -> None:
        """
        llama.cpp timings give 20/50/8 at 100 and 40 tok/s, and the
        duration is the larger of wall time and prompt + predicted time.
        """
        metrics = jsonMetrics(
            {
                "usage": {"prompt_tokens": 99, "completion_tokens": 99},
                "timings": {
                    "prompt_n": 20,
                    "predicted_n": 50,
                    "prompt_per_second": 100.0,
                    "predicted_per_second": 40.0,
                    "prompt_ms": 200.0,
                    "predicted_ms": 1250.0,
                    "cache_n": 8,
                },
            },
            wallMs=1000,
        )
        assert metrics is not None
        self.assertEqual(
            (metrics.inputTokens, metrics.outputTokens, metrics.cacheTokens), (20, 50, 8)
        )
        self.assertEqual((metrics.promptPerSecond, metrics.tokensPerSecond), (100.0, 40.0))
        self.assertEqual(metrics.durationMs, 1450)
        self.assertEqual(jsonMetrics({"timings": {"prompt_ms": 1.0}}, 3000).durationMs, 3000)

    def test_streamUsage(self) -> None:
        """
        A stream with a usage chunk and C{[DONE]}: 15/33, whatever the
        piece size and line endings.
        """
        data = sse(
            {"choices": [{"delta": {"content": "a"}}]},
            {"choices": [], "usage": {"prompt_tokens": 15, "completion_tokens": 33}},
            "[DONE]",
        )
        for step in (0, 1, 3, 17):
            for stream in (data, data.replace(b"\n", b"\r\n")):
                metrics = streamMetrics(stream, step=step)
                assert metrics is not None
                self.assertEqual((metrics.inputTokens, metrics.outputTokens), (15, 33))

    @settings(max_examples=200, deadline=None)
    @given(
        events=st.lists(
            st.one_of(
                st.just({"choices": [{"delta": {"content": "tok"}}]}),
                st.builds(
                    lambda i, o: {"choices": [], "usage": {"prompt_tokens": i,
                                                           "completion_tokens": o}},
                    st.integers(1, 99), st.integers(1, 99),
                ),
                st.builds(lambda n: {"timings": {"prompt_n": n, "predicted_n": n}},
                          st.integers(1, 99)),
                st.just("[DONE]"),
                st.just("{not json, \"usage\""),
            ),
            max_size=8,
        ),
        crlf=st.booleans(),
        step=st.integers(0, 50),
    )
    def test_streamInAnyPieces(self, events: list[Any], crlf: bool, step: int) -> None:
        """
        However the stream is cut, it reads as its events read one by one.
        """
        expected = UsageTotals()
        for event in events:
            payload = sse(event)[len(b"data: "):].strip()
            found = scan(payload)
            if found is not None:
                expected.addEvent(found)
        data = sse(*events)
        if crlf:
            data = data.replace(b"\n", b"\r\n")
        self.assertEqual(streamMetrics(data, step=step), expected.build(1000))

    def test_streamDeltasNotParsed(self) -> None:
        """
        Lines naming none of the keys looked for are never parsed.
        """
        parsed: list[bytes] = []
        self.patch(usage, "documentCaptures", lambda data, paths: parsed.append(data))
        self.patch(usage, "JSONScan", lambda paths: self.fail("scanned"))
        parser = SSEUsage(UsageTotals())
        for i in range(100):
            parser.feed(sse({"choices": [{"delta": {"content": f"t{i}"}}]}))
        parser.feed(b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n')
        parser.close()
        self.assertEqual(parsed, [b' {"choices":[],"usage":{"prompt_tokens":1}}'])

    def test_streamOnlyDone(self) -> None:
        """
        A stream with nothing but C{[DONE]} is a parse failure (no metrics).
        """
        self.assertIsNone(streamMetrics(sse("[DONE]")))
        self.assertIsNone(streamMetrics(b": comment\n\nevent: x\ndata:\n\ndata: nope\n\n"))

    def test_vllmStream(self) -> None:
        """
        vLLM's streamed metrics: 14/152, cache unknown, prompt speed from
        the time to first token (200 tok/s), generation from the mean
        inter-token latency (100 tok/s).
        """
        metrics = streamMetrics(
            sse(
                {"choices": [{"delta": {"content": "x"}}]},
                {
                    "usage": {"prompt_tokens": 14, "completion_tokens": 152},
                    "metrics": {"time_to_first_token_ms": 70, "mean_itl_ms": 10},
                },
                "[DONE]",
            )
        )
        assert metrics is not None
        self.assertEqual((metrics.inputTokens, metrics.outputTokens), (14, 152))
        self.assertEqual(metrics.cacheTokens, -1)
        self.assertAlmostEqual(metrics.promptPerSecond, 200.0)
        self.assertAlmostEqual(metrics.tokensPerSecond, 100.0)

    def test_vllmJSONWithCache(self) -> None:
        """
        vLLM JSON with 20 cached tokens: prompt speed counts the uncached
        tokens only.
        """
        metrics = jsonMetrics(
            {
                "usage": {
                    "prompt_tokens": 42,
                    "completion_tokens": 128,
                    "prompt_tokens_details": {"cached_tokens": 20},
                },
                "metrics": {"time_to_first_token_ms": 85.2, "mean_itl_ms": 9.1},
            }
        )
        assert metrics is not None
        self.assertAlmostEqual(metrics.promptPerSecond, (42 - 20) / (85.2 / 1000))
        self.assertAlmostEqual(metrics.tokensPerSecond, 1000 / 9.1)

    def test_speculativeDecoding(self) -> None:
        """
        vLLM draft counts need both numbers; a streamed final chunk works
        too; an empty object does not overwrite llama.cpp's draft counts.
        """
        complete = {"num_draft_tokens": 20, "num_accepted_draft_tokens": 14}
        metrics = jsonMetrics({"usage": {}, "metrics": {"speculative_decoding": complete}})
        assert metrics is not None
        self.assertEqual((metrics.draftTokens, metrics.draftAcceptedTokens), (20, 14))
        partial = jsonMetrics(
            {"usage": {}, "metrics": {"speculative_decoding": {"num_draft_tokens": 20}}}
        )
        assert partial is not None
        self.assertEqual((partial.draftTokens, partial.draftAcceptedTokens), (-1, -1))
        streamed = streamMetrics(
            sse({"choices": []}, {"metrics": {"speculative_decoding": complete}}, "[DONE]")
        )
        assert streamed is not None
        self.assertEqual((streamed.draftTokens, streamed.draftAcceptedTokens), (20, 14))
        kept = jsonMetrics(
            {
                "timings": {"prompt_n": 1, "draft_n": 30, "draft_n_accepted": 12},
                "metrics": {"speculative_decoding": {}},
            }
        )
        assert kept is not None
        self.assertEqual((kept.draftTokens, kept.draftAcceptedTokens), (30, 12))

    def test_infill(self) -> None:
        """
        C{/infill} answers with an array; the last element's timings count.
        """
        body = [
            {"content": "a", "timings": {"prompt_n": 1, "predicted_n": 2}},
            {"content": "b", "timings": {"prompt_n": 5, "predicted_n": 9}},
        ]
        metrics = jsonMetrics(body, infill=True)
        assert metrics is not None
        self.assertEqual((metrics.inputTokens, metrics.outputTokens), (5, 9))
        self.assertIsNone(jsonMetrics(body, infill=False))

    def test_anthropicStream(self) -> None:
        """
        Anthropic: input tokens from C{message_start}'s C{message.usage},
        output from C{message_delta}'s usage; a later zero does not replace
        a count; cached from C{cache_read_input_tokens}.
        """
        metrics = streamMetrics(
            b"event: message_start\n"
            + sse(
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "usage": {
                            "input_tokens": 25,
                            "output_tokens": 1,
                            "cache_read_input_tokens": 6,
                        },
                    },
                }
            )
            + b"event: content_block_delta\n"
            + sse({"type": "content_block_delta", "delta": {"text": "hi"}})
            + b"event: message_delta\n"
            + sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"input_tokens": 0, "output_tokens": 40},
                }
            )
            + b"event: message_stop\n"
            + sse({"type": "message_stop"})
        )
        assert metrics is not None
        self.assertEqual(
            (metrics.inputTokens, metrics.outputTokens, metrics.cacheTokens), (25, 40, 6)
        )

    def test_anthropicJSON(self) -> None:
        """
        A non-streamed Anthropic message.
        """
        metrics = jsonMetrics(
            {
                "type": "message",
                "content": [{"type": "text", "text": "x"}],
                "usage": {"input_tokens": 10, "output_tokens": 3},
            }
        )
        assert metrics is not None
        self.assertEqual((metrics.inputTokens, metrics.outputTokens), (10, 3))

    def test_responsesAPI(self) -> None:
        """
        Responses API: C{response.usage} of the C{response.completed}
        event (cached from C{input_tokens_details}), and top-level usage of
        a non-streamed response.
        """
        usage = {
            "input_tokens": 30,
            "output_tokens": 12,
            "input_tokens_details": {"cached_tokens": 8},
        }
        streamed = streamMetrics(
            b"event: response.created\n"
            + sse({"type": "response.created", "response": {"id": "r", "usage": None}})
            + sse({"type": "response.output_text.delta", "delta": "hi"})
            + b"event: response.completed\n"
            + sse(
                {
                    "type": "response.completed",
                    "response": {"id": "r", "output": [{"content": "hi"}], "usage": usage},
                }
            )
        )
        assert streamed is not None
        self.assertEqual(
            (streamed.inputTokens, streamed.outputTokens, streamed.cacheTokens), (30, 12, 8)
        )
        plain = jsonMetrics({"object": "response", "output": [], "usage": usage})
        assert plain is not None
        self.assertEqual((plain.inputTokens, plain.outputTokens, plain.cacheTokens), (30, 12, 8))

    def test_nothingFound(self) -> None:
        """
        No usage, timings or metrics: no metrics (the row gets zeros).
        """
        self.assertIsNone(jsonMetrics({"data": [{"embedding": [0.1, 0.2]}]}))
        self.assertIsNone(jsonMetrics([1, 2, 3]))


# ------------------------------------------------------------ memory

_MB = 1024 * 1024


def _chunks(parts: Iterator[bytes], size: int = 16 * 1024) -> Iterator[bytes]:
    """
    Re-chunk generated parts into C{size}-byte pieces without holding more
    than one piece.
    """
    pending = b""
    for part in parts:
        pending += part
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


def _peakWhileFeeding(parser: Any, pieces: Iterator[bytes]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        total = 0
        for piece in pieces:
            total += len(piece)
            parser.feed(piece)
            del piece
        parser.close()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak


class MemoryTests(SynchronousTestCase):
    """
    Parser memory does not depend on the response's size.
    """

    def test_bigJSONBody(self) -> None:
        """
        A non-streamed answer (one huge escape-heavy string, then usage) is
        read with the same small peak whether it is 1 MB or 8 MB.
        """

        def parts(megabytes: int) -> Iterator[bytes]:
            yield b'{"id":"x","choices":[{"message":{"role":"assistant","content":"'
            for _ in range(megabytes * 64):
                yield b"token \\\"quoted\\\" " * 1024
            yield b'"}}],"usage":{"prompt_tokens":7,"completion_tokens":9}}'

        peaks = []
        for megabytes in (1, 8):
            totals = UsageTotals()
            peaks.append(_peakWhileFeeding(JSONUsage(totals), _chunks(parts(megabytes))))
            self.assertEqual((totals.inputTokens, totals.outputTokens), (7, 9))
        self.assertLess(peaks[1], 512 * 1024)
        self.assertLess(abs(peaks[1] - peaks[0]), 16 * 1024)

    def test_bigStream(self) -> None:
        """
        A stream of 20,000 events plus one 8 MB event line (a Responses
        API C{response.completed} repeating the whole output) keeps a small
        peak too.
        """

        def parts() -> Iterator[bytes]:
            for i in range(20_000):
                yield b'data: {"choices":[{"delta":{"content":"tok%d"}}]}\n\n' % i
            yield b'data: {"type":"response.completed","response":{"output":"'
            for _ in range(8 * 64):
                yield b"x" * 16 * 1024
            yield b'","usage":{"input_tokens":5,"output_tokens":20000}}}\n\n'
            yield b"data: [DONE]\n\n"

        totals = UsageTotals()
        peak = _peakWhileFeeding(SSEUsage(totals), _chunks(parts()))
        self.assertLess(peak, 256 * 1024)
        self.assertEqual((totals.inputTokens, totals.outputTokens), (5, 20_000))


# ------------------------------------------------------------ the reader


def headers(**values: str) -> Headers:
    h = Headers()
    for name, value in values.items():
        h.addRawHeader(name.replace("_", "-").encode(), value.encode())
    return h


def read(
    body: bytes,
    status: int = 200,
    path: str = "/v1/chat/completions",
    captureLimit: int = 0,
    step: int = 7,
    reason: Failure | None = None,
    **hs: str,
) -> ResponseReader:
    reader = ResponseReader(path, captureLimit)
    reader.responseStarted(status, headers(**hs))
    for i in range(0, len(body), step):
        reader.dataReceived(body[i : i + step])
    reader.responseEnded(reason)
    return reader


CHAT = json.dumps({"usage": {"prompt_tokens": 3, "completion_tokens": 4}}).encode()


class ResponseReaderTests(SynchronousTestCase):
    """
    L{ResponseReader} decompresses, parses and keeps what a row and a
    capture need.
    """

    def test_plain(self) -> None:
        """
        A plain JSON answer: metrics, no error, body kept within the limit.
        """
        reader = read(CHAT, content_type="application/json", captureLimit=1000)
        metrics = reader.metrics(5)
        assert metrics is not None
        self.assertEqual((metrics.inputTokens, metrics.outputTokens), (3, 4))
        self.assertEqual(reader.errorMessage(), "")
        self.assertEqual(reader.body(), CHAT)
        self.assertTrue(reader.capturable)
        self.assertEqual(reader.bodyBytes, len(CHAT))
        self.assertEqual(reader.contentType, "application/json")

    def test_gzipAndDeflate(self) -> None:
        """
        gzip, zlib-wrapped deflate and raw deflate bodies are decompressed
        for parsing and for the capture.
        """
        raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        rawDeflate = raw.compress(CHAT) + raw.flush()
        for encoding, body in [
            ("gzip", gzip.compress(CHAT)),
            ("deflate", zlib.compress(CHAT)),
            ("deflate", rawDeflate),
        ]:
            reader = read(body, content_encoding=encoding, captureLimit=1000, step=3)
            metrics = reader.metrics(1)
            assert metrics is not None, encoding
            self.assertEqual((metrics.inputTokens, metrics.outputTokens), (3, 4))
            self.assertEqual(reader.body(), CHAT)

    def test_bogusGzip(self) -> None:
        """
        A body that is not gzip: no metrics, an error message, no capture.
        """
        reader = read(b"this is not gzip at all", content_encoding="gzip", captureLimit=100)
        self.assertIsNone(reader.metrics(1))
        self.assertTrue(reader.errorMessage().startswith("response decompression failed: "))
        self.assertFalse(reader.capturable)
        truncated = read(gzip.compress(CHAT)[:-8], content_encoding="gzip")
        self.assertIn("decompression failed", truncated.errorMessage())

    def test_unknownEncodingIsIdentity(self) -> None:
        """
        Encodings other than gzip and deflate are read as they are.
        """
        reader = read(CHAT, content_encoding="br")
        self.assertIsNotNone(reader.metrics(1))

    def test_errorBodies(self) -> None:
        """
        A non-200 answer: no metrics; the JSON message, else the status
        text; no body for the capture.
        """
        reader = read(
            b'{"error":{"message":"model unavailable"}}', 502, captureLimit=100,
            content_type="application/json",
        )
        self.assertIsNone(reader.metrics(1))
        self.assertEqual(reader.errorMessage(), "model unavailable")
        self.assertIsNone(reader.body())
        self.assertEqual(read(b"<html>oops</html>", 502).errorMessage(), "502 Bad Gateway")
        self.assertEqual(read(b"", 201).errorMessage(), "201 Created")
        self.assertEqual(read(b"", 599).errorMessage(), "HTTP 599")
        self.assertEqual(
            read(gzip.compress(b'{"error":"boom"}'), 500, content_encoding="gzip").errorMessage(),
            "boom",
        )
        self.assertIn(
            "response decode failed",
            read(b"nope", 500, content_encoding="gzip").errorMessage(),
        )

    def test_captureOverflow(self) -> None:
        """
        A body bigger than the capture limit makes the exchange
        uncapturable, without keeping the body.
        """
        reader = read(CHAT, captureLimit=10)
        self.assertFalse(reader.capturable)
        self.assertIsNone(reader.body())
        self.assertIsNotNone(reader.metrics(1))

    def test_streamed(self) -> None:
        """
        An event stream is recognised by its content type.
        """
        reader = read(
            sse({"usage": {"prompt_tokens": 1, "completion_tokens": 2}}, "[DONE]"),
            content_type="text/event-stream; charset=utf-8",
        )
        self.assertTrue(reader.streamed)
        metrics = reader.metrics(1)
        assert metrics is not None
        self.assertEqual(metrics.outputTokens, 2)

    def test_infillPath(self) -> None:
        """
        The C{/infill} path reads arrays.
        """
        body = json.dumps([{"timings": {"prompt_n": 5, "predicted_n": 9}}]).encode()
        metrics = read(body, path="/infill").metrics(1)
        assert metrics is not None
        self.assertEqual((metrics.inputTokens, metrics.outputTokens), (5, 9))


class ErrorMessageTests(SynchronousTestCase):
    """
    L{errorMessage} quotes a JSON error body.
    """

    def test_paths(self) -> None:
        """
        C{error.message}, a string C{error}, C{message}, C{detail}; nothing
        for an object error without message, no error, or invalid JSON.
        """
        self.assertEqual(errorMessage(b'{"error":{"message":"a"}}'), "a")
        self.assertEqual(errorMessage(b'{"error":"b"}'), "b")
        self.assertEqual(errorMessage(b'{"message":"c"}'), "c")
        self.assertEqual(errorMessage(b'{"detail":"d"}'), "d")
        self.assertEqual(errorMessage(b'{"error":{"type":"x"}}'), "")
        self.assertEqual(errorMessage(b'{"ok":true}'), "")
        self.assertEqual(errorMessage(b"{nope"), "")
        self.assertEqual(errorMessage(b'{"error":"  ","message":"e"}'), "e")

    def test_truncated(self) -> None:
        """
        Messages are cut to 500 characters plus C{...}.
        """
        message = errorMessage(json.dumps({"error": "x" * 600}).encode())
        self.assertEqual(message, "x" * 500 + "...")

    def test_statusText(self) -> None:
        self.assertEqual(statusText(429), "429 Too Many Requests")
        self.assertEqual(statusText(799), "HTTP 799")


# ------------------------------------------------------------ rows


class RecordTests(SynchronousTestCase):
    """
    Activity rows as the API shows them.
    """

    def setUp(self) -> None:
        self.oldTZ = os.environ.get("TZ")
        os.environ["TZ"] = "UTC"
        time.tzset()

    def tearDown(self) -> None:
        if self.oldTZ is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = self.oldTZ
        time.tzset()

    def test_rfc3339(self) -> None:
        """
        Local time with second resolution; C{Z} in UTC.
        """
        self.assertEqual(rfc3339(1000.7), "1970-01-01T00:16:40Z")
        os.environ["TZ"] = "Europe/Berlin"
        time.tzset()
        self.assertEqual(rfc3339(1000), "1970-01-01T01:16:40+01:00")

    def test_toJSON(self) -> None:
        """
        Entries omit empty error messages and metadata.
        """
        record = ActivityRecord(
            timestamp=1000,
            model="m1",
            reqPath="/v1/chat/completions",
            respContentType="application/json",
            status=200,
            tokens=TokenMetrics(inputTokens=1, outputTokens=2, cacheTokens=-1),
            durationMs=10,
            id=4,
        )
        entry = record.toJSON(hasCapture=True)
        self.assertEqual(entry["tokens"]["input_tokens"], 1)
        self.assertEqual(entry["tokens"]["cache_tokens"], -1)
        self.assertEqual(entry["timestamp"], "1970-01-01T00:16:40Z")
        self.assertTrue(entry["has_capture"])
        self.assertNotIn("error_msg", entry)
        self.assertNotIn("metadata", entry)
        record.errorMsg = "boom"
        record.metadata = {"fifo_priority": "0"}
        entry = record.toJSON()
        self.assertEqual(entry["error_msg"], "boom")
        self.assertEqual(entry["metadata"], {"fifo_priority": "0"})

    def test_metered(self) -> None:
        """
        POSTs to model routes are metered; GETs and other paths are not.
        """
        self.assertTrue(isMetered(b"POST", "/v1/chat/completions"))
        self.assertTrue(isMetered("post", "/infill"))
        self.assertFalse(isMetered(b"GET", "/v1/chat/completions"))
        self.assertFalse(isMetered(b"POST", "/probe"))


class HistogramTests(SynchronousTestCase):
    """
    L{histogram} of speeds.
    """

    def test_empty(self) -> None:
        self.assertIsNone(histogram([]))
        self.assertIsNone(histogram([0, -1]))

    def test_equal(self) -> None:
        """
        All-equal values make one bin of width 0.
        """
        self.assertEqual(
            histogram([5.0, 5.0, 5.0]),
            {"bins": [3], "min": 5.0, "max": 5.0, "binSize": 0.0, "p50": 5.0, "p95": 5.0,
             "p99": 5.0},
        )

    def test_bins(self) -> None:
        """
        At least 5 bins, C{ceil(log2 n) + 1} for more values (at most 20);
        the maximum lands in the last bin; percentiles interpolate.
        """
        result = histogram([1.0, 2.0, 3.0, 4.0, 5.0, -1.0])
        assert result is not None
        self.assertEqual(result["bins"], [1, 1, 1, 1, 1])
        self.assertEqual(result["binSize"], 0.8)
        self.assertEqual(result["p50"], 3.0)
        self.assertAlmostEqual(result["p95"], 4.8)
        many = histogram([float(i) for i in range(1, 101)])
        assert many is not None
        self.assertEqual(len(many["bins"]), 8)
        self.assertEqual(sum(many["bins"]), 100)
        huge = histogram([float(i) for i in range(1, 2_000_000, 3)])
        assert huge is not None
        self.assertEqual(len(huge["bins"]), 20)


# ------------------------------------------------------------ captures


class CaptureTests(SynchronousTestCase):
    """
    The capture cache, masks and redaction.
    """

    def capture(self, id: int, size: int) -> Capture:
        return Capture(id, "/p", None, b"x" * (size - 2), None, None)

    def test_withID(self) -> None:
        """
        L{Capture.withID} is the same capture under another ID.
        """
        capture = Capture(0, "/v1/x", {"A": "1"}, b"req", {"B": "2"}, b"resp")
        self.assertEqual(capture.withID(7), Capture(7, "/v1/x", {"A": "1"}, b"req", {"B": "2"}, b"resp"))
        self.assertEqual(capture.id, 0)

    def test_budget(self) -> None:
        """
        Oldest captures are evicted to make room; one bigger than the
        budget is refused; adding an ID again replaces it.
        """
        cache = CaptureCache(100)
        self.assertTrue(cache.add(self.capture(1, 40)))
        self.assertTrue(cache.add(self.capture(2, 40)))
        self.assertTrue(cache.add(self.capture(3, 40)))
        self.assertNotIn(1, cache)
        self.assertIn(2, cache)
        self.assertEqual(cache.used, 80)
        self.assertFalse(cache.add(self.capture(4, 101)))
        self.assertTrue(cache.add(self.capture(3, 10)))
        self.assertEqual(cache.used, 50)
        self.assertEqual(len(cache), 2)
        cache.clear()
        self.assertIsNone(cache.get(2))

    def test_disabled(self) -> None:
        """
        A budget of 0 keeps nothing.
        """
        cache = CaptureCache.fromMegabytes(0)
        self.assertFalse(cache.enabled)
        self.assertFalse(cache.add(self.capture(1, 5)))
        self.assertIsNone(cache.get(1))
        self.assertEqual(CaptureCache.fromMegabytes(5).budget, 5 * 1024 * 1024)

    def test_masks(self) -> None:
        """
        Chat keeps everything; speech keeps the request and the response
        headers.
        """
        chat = maskFor("/v1/chat/completions")
        self.assertTrue(chat.reqBody and chat.respBody and chat.reqHeaders and chat.respHeaders)
        speech = maskFor("/v1/audio/speech")
        self.assertEqual(
            (speech.reqHeaders, speech.reqBody, speech.respHeaders, speech.respBody),
            (True, True, True, False),
        )

    def test_redactHeaders(self) -> None:
        """
        First values, canonical names, secrets replaced, dropped names
        left out.
        """
        h = Headers()
        h.addRawHeader(b"authorization", b"Bearer sk-secret")
        h.addRawHeader(b"x-api-key", b"k")
        h.addRawHeader(b"user-agent", b"ua")
        h.addRawHeader(b"x-multi", b"one")
        h.addRawHeader(b"x-multi", b"two")
        h.addRawHeader(b"content-encoding", b"gzip")
        result = redactHeaders(h.getAllRawHeaders(), drop=("content-encoding",))
        self.assertEqual(
            result,
            {"Authorization": REDACTED, "X-Api-Key": REDACTED, "User-Agent": "ua",
             "X-Multi": "one"},
        )
        self.assertEqual(canonicalHeaderName("x-API-key"), "X-Api-Key")

    def test_redactBody(self) -> None:
        """
        API keys in JSON (at any depth) and form bodies are replaced;
        other bodies are left alone, byte for byte.
        """
        body = json.dumps(
            {"model": "m", "api_key": "sk-1", "max_tokens": 5, "tools": [{"Password": "p"}]}
        ).encode()
        redacted = json.loads(redactBody(body))
        self.assertEqual(redacted["api_key"], REDACTED)
        self.assertEqual(redacted["tools"][0]["Password"], REDACTED)
        self.assertEqual(redacted["max_tokens"], 5)
        untouched = b'{"model": "m",  "max_tokens": 5}'
        self.assertIs(redactBody(untouched), untouched)
        self.assertEqual(
            redactBody(b"model=m&api_key=sk-1&x=2", "application/x-www-form-urlencoded"),
            b"model=m&api_key=[REDACTED]&x=2",
        )
        binary = b"\x00token\xff"
        self.assertEqual(redactBody(binary), binary)

    def test_mayHoldSecrets(self) -> None:
        """
        Only a body naming a secret field as a whole key or form field is
        worth redacting: C{max_tokens} names none.
        """
        self.assertTrue(mayHoldSecrets(b'{"api_key": "sk-1"}'))
        self.assertTrue(mayHoldSecrets(b'{"a": {"Client_Secret" : "s"}}'))
        self.assertTrue(mayHoldSecrets(b"token=t"))
        self.assertFalse(mayHoldSecrets(b'{"max_tokens": 5, "tokenizer": "x"}'))
        self.assertTrue(mayHoldSecrets(b"model=m&password=p"))
        self.assertFalse(mayHoldSecrets(b'{"model": "m",  "max_tokens": 5}'))
        self.assertFalse(mayHoldSecrets(b""))

    def test_captureSize(self) -> None:
        """
        A capture's size counts its path, bodies and header names and
        values.
        """
        capture = Capture(0, "/p", {"Ab": "cde"}, b"12", {"F": "g"}, b"3456")
        self.assertEqual(capture.size, 2 + 2 + 4 + 5 + 2)
        self.assertEqual(Capture(0, "/p", None, None, None, None).size, 2)

    def test_toJSON(self) -> None:
        """
        Bodies are base64; absent parts are null.
        """
        capture = Capture(7, "/v1/chat/completions", {"A": "b"}, b"hi", None, None)
        self.assertEqual(
            capture.toJSON(),
            {"id": 7, "req_path": "/v1/chat/completions", "req_headers": {"A": "b"},
             "req_body": "aGk=", "resp_headers": None, "resp_body": None},
        )
