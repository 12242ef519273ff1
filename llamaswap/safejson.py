# -*- test-case-name: test.test_safejson -*-
"""
JSON parsing that never raises anything but L{JSONError}.

L{json.loads} raises L{RecursionError} (not L{ValueError}) for a document
nested deeper than the interpreter's recursion limit, and
L{UnicodeDecodeError} for bytes that are not UTF-8.  A body a client or an
upstream sends is data, never a reason for a traceback: every place that
parses one goes through L{loads} or L{firstValue} and treats L{JSONError}
as "not JSON".  L{dumps} does the same for serialising a document that was
parsed (a document nested just under the parser's limit can exceed the
encoder's when serialised from deeper in the stack).
"""

from __future__ import annotations

import json
from typing import Any


class JSONError(ValueError):
    """
    The text is not a JSON document this process can handle.
    """


class JSONTooDeep(JSONError):
    """
    The document may be valid but is nested deeper than this process can
    parse or serialise.
    """


def loads(data: bytes | bytearray | str, **kwargs: Any) -> Any:
    """
    L{json.loads} C{data}.

    @raise JSONError: it is not JSON, not UTF-8, or nested too deeply.
    """
    try:
        return json.loads(data, **kwargs)
    except (ValueError, RecursionError, TypeError) as e:
        raise _error(e) from None


def firstValue(data: bytes) -> Any:
    """
    The first JSON value of C{data} (leading whitespace skipped, anything
    after it ignored, as Go's decoder reads a request body).

    @raise JSONError: no JSON value starts C{data}.
    """
    try:
        text = data.decode("utf-8")
        document, _ = json.JSONDecoder().raw_decode(text.lstrip())
    except (ValueError, RecursionError) as e:
        raise _error(e) from None
    return document


def dumps(document: Any, **kwargs: Any) -> str:
    """
    L{json.dumps} C{document}.

    @raise JSONError: it is nested too deeply to serialise (or holds
        something that is not JSON).
    """
    try:
        return json.dumps(document, **kwargs)
    except (ValueError, RecursionError, TypeError) as e:
        raise _error(e) from None


def _error(error: BaseException) -> JSONError:
    if isinstance(error, RecursionError):
        return JSONTooDeep("JSON nested too deeply")
    if isinstance(error, UnicodeDecodeError):
        return JSONError("JSON is not valid UTF-8")
    return JSONError(f"invalid JSON: {error}")


__all__ = ["JSONError", "JSONTooDeep", "dumps", "firstValue", "loads"]
