# -*- test-case-name: test.web.test_inference -*-
"""
The model-routed endpoints, in one place: the resource tree registers
them, the activity recorder meters them.
"""

from __future__ import annotations

#: POST routes whose model is in the JSON body (or a form field).
BODY_ROUTES = (
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/embeddings",
    "/reranking",
    "/rerank",
    "/v1/rerank",
    "/v1/reranking",
    "/infill",
    "/completion",
    "/v1/audio/speech",
    "/v1/audio/voices",
    "/v1/audio/transcriptions",
    "/v1/images/generations",
    "/v1/images/edits",
    "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img",
    "/audioapi/v1/tasks/run",
)
#: The versionless variants: C{/v} is removed before forwarding.
VERSIONLESS_ROUTES = (
    "/v/chat/completions",
    "/v/responses",
    "/v/completions",
    "/v/messages",
    "/v/messages/count_tokens",
    "/v/embeddings",
    "/v/rerank",
    "/v/reranking",
)
#: GET routes whose model is the C{model} query parameter.
QUERY_ROUTES = ("/v1/audio/voices", "/sdapi/v1/loras", "/props")


def upstreamPath(uri: bytes) -> bytes:
    """
    The path and query sent upstream: llama-swap removes the C{/v} of the
    versionless routes and the C{/audioapi} prefix.
    """
    if uri.startswith(b"/v/"):
        return uri[2:]
    if uri.startswith(b"/audioapi/"):
        return uri[len(b"/audioapi") :]
    return uri


#: Paths as the upstream sees them (prefixes removed) of the POST routes
#: that are metered: llama-swap's model routes.
METERED_PATHS = frozenset(
    upstreamPath(p.encode("ascii")).decode("ascii")
    for p in BODY_ROUTES + VERSIONLESS_ROUTES
)
