# -*- test-case-name: test.web.test_site -*-
"""
The HTTP resource tree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

if TYPE_CHECKING:
    from ..app import LlamaSwap


class Health(Resource):
    """
    C{/health}: C{OK} while the proxy runs (llama-swap's answer, which
    load balancers and systemd checks already expect).
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"OK"

    render_HEAD = render_GET


def buildResource(app: LlamaSwap) -> Resource:
    """
    The root resource for C{app}.
    """
    root = Resource()
    root.putChild(b"health", Health())
    return root


def buildSite(app: LlamaSwap) -> Site:
    """
    The site serving C{app}.
    """
    return Site(buildResource(app))
