# -*- test-case-name: test.web.test_site -*-
"""
The HTTP surface: every route family installed on one L{Mux}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.web.server import Request, Site

from . import api, inference, logs, management, passthrough
from .auth import authenticatorFor
from .guard import Guard
from .limits import applyLimits
from .mux import Mux

if TYPE_CHECKING:
    from ..app import LlamaSwap


def health(request: Request, rest: bytes) -> bytes:
    """
    C{/health}: C{OK} while the proxy runs (llama-swap's answer, which
    load balancers and systemd checks already expect).
    """
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return b"OK"


def buildResource(app: LlamaSwap) -> Mux:
    """
    The root resource for C{app}.
    """
    mux = Mux(authenticator=authenticatorFor(app))
    mux.route("GET", "/health", health, auth=False)
    mux.route("GET", "/wol-health", health, auth=False)
    inference.install(mux, app)
    management.install(mux, app)
    logs.install(mux, app)
    passthrough.install(mux, app)
    api.install(mux, app)
    return mux


def buildSite(app: LlamaSwap) -> Site:
    """
    The site serving C{app}.  Form bodies are not parsed by twisted.web:
    they are relayed untouched (and a multipart upload would otherwise be
    read into memory once more).
    """
    loopbackOnly = app.listen is not None and app.listen.isLoopbackOnly
    root = Guard(buildResource(app), lambda: app.config, loopbackOnly)
    site = logs.AccessLogSite(root, app.reactor, parsePOSTFormSubmission=False)
    return applyLimits(site, lambda: app.config.limits)
