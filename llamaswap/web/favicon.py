# -*- test-case-name: test.web.test_system -*-
"""
C{GET /favicon.ico} without an API key (llama-swap serves it from its UI
bundle without auth, so a browser tab shows the icon before any login):
the UI's C{favicon.svg} when the package ships one, else a small built-in
SVG.  Browsers take an SVG icon at this path by its content type.
"""

from __future__ import annotations

import os

from twisted.web.server import Request

from .mux import Mux

#: Where the web UI's icon is shipped.
UI_ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "ui", "favicon.svg")

#: A swap arrow on a rounded square, used when the UI's icon is absent.
BUILTIN_ICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect width="32" height="32" rx="6" fill="#1f6feb"/>'
    b'<path d="M8 12h13l-4-4M24 20H11l4 4" fill="none" stroke="#fff" stroke-width="2.5" '
    b'stroke-linecap="round" stroke-linejoin="round"/></svg>'
)


def loadIcon(path: str = UI_ICON_PATH) -> bytes:
    """
    The icon at C{path}, or L{BUILTIN_ICON} when it cannot be read.
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return BUILTIN_ICON


def install(mux: Mux, icon: bytes | None = None) -> None:
    """
    Register C{/favicon.ico} (no authentication) serving C{icon}
    (default: L{loadIcon}).
    """
    body = loadIcon() if icon is None else icon

    def favicon(request: Request, rest: bytes) -> bytes:
        request.setHeader(b"content-type", b"image/svg+xml")
        request.setHeader(b"cache-control", b"public, max-age=86400")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return body

    mux.route("GET", "/favicon.ico", favicon, auth=False)


__all__ = ["BUILTIN_ICON", "UI_ICON_PATH", "install", "loadIcon"]
