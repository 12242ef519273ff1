"""
Tests for L{llamaswap.web.extract}.
"""

from __future__ import annotations

import io
import json

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from llamaswap.httperrors import PayloadTooLarge
from llamaswap.web.extract import FORM, JSON, MULTIPART, QUERY, extract, queryValue
from llamaswap.web.rewrite import replaceEncodedValue, replaceQueryValue

from .test_multipart import BOUNDARY, encodeForm

LIMIT = 1 << 20
MULTIPART_TYPE = b"multipart/form-data; boundary=" + BOUNDARY


def makeRequest(
    method: bytes, uri: bytes, body: bytes = b"", contentType: bytes | None = None
) -> Request:
    """
    A real twisted.web L{Request} as a resource sees it: body buffered.
    """
    request = Request(DummyChannel())
    request.method = method
    request.uri = uri
    request.path = uri.partition(b"?")[0]
    request.content = io.BytesIO(body)
    if contentType is not None:
        request.requestHeaders.setRawHeaders(b"content-type", [contentType])
    return request


class ExtractTests(SynchronousTestCase):
    """
    L{extract} finds the model where llama-swap does.
    """

    def test_get(self) -> None:
        """
        GET and HEAD take the C{model} query parameter and C{stream=true}.
        """
        asked = extract(makeRequest(b"GET", b"/props?model=a%2Fb&stream=true"), LIMIT)
        self.assertEqual((asked.model, asked.source, asked.stream), ("a/b", QUERY, True))
        asked = extract(makeRequest(b"HEAD", b"/props?x=1"), LIMIT)
        self.assertEqual(asked.model, "")

    def test_json(self) -> None:
        """
        A JSON body's C{model} and C{stream}, whatever else the content type
        says; the parsed body and raw bytes are kept.
        """
        raw = json.dumps({"model": "m", "stream": True}).encode()
        asked = extract(
            makeRequest(b"POST", b"/v1/chat/completions?model=q", raw,
                        b"application/json; charset=utf-8"),
            LIMIT,
        )
        self.assertEqual((asked.model, asked.source, asked.stream), ("m", JSON, True))
        self.assertEqual(asked.json, {"model": "m", "stream": True})
        self.assertEqual(asked.raw, raw)

    def test_jsonNumber(self) -> None:
        """
        A numeric model is taken as its text.
        """
        asked = extract(makeRequest(b"POST", b"/", b'{"model": 7}', b"application/json"), LIMIT)
        self.assertEqual(asked.model, "7")

    def test_jsonNoModel(self) -> None:
        """
        Invalid JSON, a non-object, a missing or non-string model give no
        model (404 upstream of here, not 400); the query is not consulted.
        """
        for body in [b"{not json", b"[1]", b'{"messages": []}', b'{"model": null}',
                     b'{"model": ""}']:
            asked = extract(
                makeRequest(b"POST", b"/x?model=q", body, b"application/json"), LIMIT
            )
            self.assertEqual(asked.model, "", body)

    def test_multipart(self) -> None:
        """
        A multipart body's C{model} field, after a file part; C{stream}
        from the form.
        """
        body = encodeForm([("file", "a.wav", b"RIFF"), ("model", None, b"whisper"),
                           ("stream", None, b"true")])
        request = makeRequest(b"POST", b"/v1/audio/transcriptions", body, MULTIPART_TYPE)
        asked = extract(request, LIMIT)
        self.assertEqual((asked.model, asked.source, asked.stream), ("whisper", MULTIPART, True))
        self.assertIsNotNone(asked.form)
        self.assertEqual(request.content.tell(), 0)

    def test_multipartQueryFallback(self) -> None:
        """
        Without a C{model} field the query's model counts.
        """
        body = encodeForm([("file", "a.wav", b"RIFF")])
        asked = extract(
            makeRequest(b"POST", b"/v1/images/edits?model=sd", body, MULTIPART_TYPE), LIMIT
        )
        self.assertEqual((asked.model, asked.source), ("sd", QUERY))

    def test_multipartMalformed(self) -> None:
        """
        A malformed form, or one without a boundary, gives no model.
        """
        asked = extract(
            makeRequest(b"POST", b"/v1/images/edits?model=q", b"garbage", MULTIPART_TYPE), LIMIT
        )
        self.assertEqual(asked.model, "")
        asked = extract(
            makeRequest(b"POST", b"/v1/images/edits", b"x", b"multipart/form-data"), LIMIT
        )
        self.assertEqual(asked.model, "")

    def test_urlencoded(self) -> None:
        """
        An urlencoded body's C{model} field, else the query's.
        """
        form = b"application/x-www-form-urlencoded"
        asked = extract(makeRequest(b"POST", b"/x?model=q", b"a=1&model=m+1", form), LIMIT)
        self.assertEqual((asked.model, asked.source), ("m 1", FORM))
        asked = extract(makeRequest(b"POST", b"/x?model=q&stream=true", b"a=1", form), LIMIT)
        self.assertEqual((asked.model, asked.source, asked.stream), ("q", QUERY, True))

    def test_otherContentTypes(self) -> None:
        """
        Other bodies (no content type, text) are not parsed: only the query
        names a model, so C{curl -d '{"model":..}'} without a JSON content
        type finds none.
        """
        body = b'{"model": "m"}'
        self.assertEqual(extract(makeRequest(b"POST", b"/x", body), LIMIT).model, "")
        asked = extract(makeRequest(b"POST", b"/x?model=q", body, b"text/plain"), LIMIT)
        self.assertEqual((asked.model, asked.source), ("q", QUERY))

    def test_tooLarge(self) -> None:
        """
        A body over the limit is refused, whatever its type.
        """
        for contentType in [b"application/json", MULTIPART_TYPE,
                            b"application/x-www-form-urlencoded", None]:
            request = makeRequest(b"POST", b"/x", b"x" * 11, contentType)
            self.assertRaises(PayloadTooLarge, extract, request, 10)


class QueryValueTests(SynchronousTestCase):
    """
    L{queryValue} decodes URL-encoded pairs.
    """

    def test_decode(self) -> None:
        """
        Keys and values are percent- and plus-decoded as UTF-8; the first
        value counts; a key without C{=} has an empty value.
        """
        self.assertEqual(queryValue(b"a=1&model=%C3%A9+x&model=2", "model"), "\xe9 x")
        self.assertEqual(queryValue(b"mod%65l=x", "model"), "x")
        self.assertEqual(queryValue(b"model", "model"), "")
        self.assertIsNone(queryValue(b"", "model"))


class ReplaceEncodedValueTests(SynchronousTestCase):
    """
    L{replaceEncodedValue} and L{replaceQueryValue} change one pair only
    (they are the inverse of L{queryValue}).
    """

    def test_replace(self) -> None:
        """
        The first pair is replaced in place, later ones dropped, the rest
        kept byte for byte.
        """
        self.assertEqual(
            replaceEncodedValue(b"z=%7e&model=a&b=2&model=c", "model", "p/q r"),
            b"z=%7e&model=p%2Fq+r&b=2",
        )
        self.assertEqual(queryValue(b"model=p%2Fq+r", "model"), "p/q r")

    def test_add(self) -> None:
        """
        A missing pair is appended; an empty form becomes the pair.
        """
        self.assertEqual(replaceEncodedValue(b"a=1", "model", "m"), b"a=1&model=m")
        self.assertEqual(replaceEncodedValue(b"", "model", "m"), b"model=m")

    def test_query(self) -> None:
        """
        Only the query of a path is touched.
        """
        self.assertEqual(
            replaceQueryValue(b"/props?model=a&x=1", "model", "b"), b"/props?model=b&x=1"
        )
        self.assertEqual(replaceQueryValue(b"/props", "model", "b"), b"/props?model=b")
