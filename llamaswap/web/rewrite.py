# -*- test-case-name: test.web.test_rewrite -*-
"""
Request rewriting: the C{filters} of a model or peer over JSON bodies, and
the model name in URL-encoded queries and forms.

Pure functions.  Filter keys are dotted paths (C{a.b} addresses
C{{"a": {"b": ...}}}), as in llama-swap; the C{model} key is protected
from C{stripParams} and C{setParams}.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping
from urllib.parse import quote_plus, unquote_plus

from ..config.model import Filters


def _setPath(body: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = body
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _deletePath(body: dict[str, Any], key: str) -> bool:
    parts = key.split(".")
    node: Any = body
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return False
    if isinstance(node, dict) and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False


def _thawed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thawed(v) for v in value]
    return value


def applyFilters(
    body: dict[str, Any],
    filters: Filters,
    requested: str,
    useModelName: str = "",
    strip: Iterable[str] | None = None,
) -> bool:
    """
    Rewrite C{body} in place in llama-swap's order: C{useModelName},
    C{stripParams}, C{setParams}, then C{setParamsByID[requested]}.

    @param requested: the model name as the client sent it.
    @return: whether anything changed (when not, the original bytes can be
        sent unchanged).
    """
    changed = False
    if useModelName and body.get("model") != useModelName:
        body["model"] = useModelName
        changed = True
    for key in filters.sanitizedStripParams if strip is None else strip:
        changed = _deletePath(body, key) or changed
    byID = filters.paramsForID(requested) or {}
    for params in (filters.setParams, byID):
        for key, value in params.items():
            if key == "model":
                continue
            _setPath(body, key, _thawed(value))
            changed = True
    return changed


def replaceEncodedValue(encoded: bytes, name: str, value: str) -> bytes:
    """
    Set C{name} to C{value} in a URL-encoded query or form body: the first
    C{name} pair is replaced, later ones dropped, a missing one appended;
    every other pair is kept byte for byte and in order (llama-swap
    re-encodes the whole form, sorted).
    """
    replacement = (quote_plus(name) + "=" + quote_plus(value)).encode("ascii")
    pairs: list[bytes] = []
    done = False
    for pair in encoded.split(b"&") if encoded else []:
        key = pair.partition(b"=")[0]
        if unquote_plus(key.decode("utf-8", "replace")) == name:
            if not done:
                pairs.append(replacement)
                done = True
            continue
        pairs.append(pair)
    if not done:
        pairs.append(replacement)
    return b"&".join(pairs)


def replaceQueryValue(uri: bytes, name: str, value: str) -> bytes:
    """
    C{uri} (a path with an optional query) with C{name} set to C{value} in
    its query (see L{replaceEncodedValue}).
    """
    path, _, query = uri.partition(b"?")
    return path + b"?" + replaceEncodedValue(query, name, value)
