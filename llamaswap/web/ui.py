# -*- test-case-name: test.web.test_ui -*-
"""
The web UI under C{/ui/}: static files from the package's C{ui} directory,
read and compressed once at start.

 - C{/ui} is redirected to C{/ui/} by the mux (a prefix route's root);
   C{/ui/} and C{/ui/index.html} are the page;
 - a path whose last segment has no C{.} (C{/ui/models}) is the page too,
   so links into the single-page app work (with a C{<base>} pointing back
   to C{/ui/}, as every URL in the UI is relative: it works behind a path
   prefix); a missing file is a plain 404;
 - every answer has a strong C{ETag} (content hash) and is revalidated
   (C{no-cache}, 304 on a match), except C{vendor/} files, whose names carry
   their version and are cached for a year;
 - C{Content-Encoding: gzip} when the client accepts it and it saves
   bytes (precomputed);
 - a strict C{Content-Security-Policy}: only this origin's scripts, styles
   and connections, no inline code, no framing;
 - no API key needed: the assets are not secret, and the page must load to
   show its login form when C{apiKeys} are set.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from typing import Mapping

from attrs import frozen
from twisted.web.server import Request

from .mux import Mux, decodePath, firstHeader

#: The assets shipped in the package.
UI_DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ui")

CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; "
    b"img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    b"object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

CONTENT_TYPES: Mapping[str, bytes] = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".mjs": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
    ".json": b"application/json",
    ".md": b"text/markdown; charset=utf-8",
    ".txt": b"text/plain; charset=utf-8",
    ".woff2": b"font/woff2",
}
#: Files matching these are not served (editor leftovers, licences are
#: served: they ship with the vendored code).
_SKIP = re.compile(r"(^|/)(\.|__pycache__)|~$")
#: Revalidate on every use: the file may change with an upgrade.
NO_CACHE = b"no-cache"
#: Versioned names never change.
IMMUTABLE = b"public, max-age=31536000, immutable"
INDEX = "index.html"
_BASE = b'<base href="./">'


@frozen
class Asset:
    """
    One file, ready to send.

    @ivar gzipped: the gzip encoding, or L{None} when it would not be
        smaller.
    """

    body: bytes
    gzipped: bytes | None
    etag: bytes
    contentType: bytes
    cacheControl: bytes

    @classmethod
    def build(cls, name: str, body: bytes) -> Asset:
        """
        The asset for file C{name} (its path under the UI directory).
        """
        digest = hashlib.sha256(body).hexdigest()[:20].encode("ascii")
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        extension = os.path.splitext(name)[1].lower()
        return cls(
            body=body,
            gzipped=packed if len(packed) < len(body) else None,
            etag=b'"' + digest + b'"',
            contentType=CONTENT_TYPES.get(extension, b"application/octet-stream"),
            cacheControl=IMMUTABLE if name.startswith("vendor/") else NO_CACHE,
        )

    def gzipETag(self) -> bytes:
        """
        The ETag of the gzip representation (another entity than the plain
        one, so it gets its own tag).
        """
        return self.etag[:-1] + b'-gz"'


def loadAssets(directory: str = UI_DIRECTORY) -> dict[str, Asset]:
    """
    Every file under C{directory} by its C{/}-separated relative path.
    """
    assets: dict[str, Asset] = {}
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not _SKIP.search(d))
        for filename in sorted(files):
            path = os.path.join(root, filename)
            name = os.path.relpath(path, directory).replace(os.sep, "/")
            if _SKIP.search(name) or name.endswith((".py", ".pyc")):
                continue
            with open(path, "rb") as f:
                assets[name] = Asset.build(name, f.read())
    return assets


def acceptsGzip(header: bytes | None) -> bool:
    """
    Whether an C{Accept-Encoding} value allows gzip (C{gzip} or C{*} with a
    non-zero quality).
    """
    if not header:
        return False
    allowed = False
    for item in header.lower().split(b","):
        coding, _, params = item.strip().partition(b";")
        coding = coding.strip()
        if coding not in (b"gzip", b"x-gzip", b"*"):
            continue
        quality = 1.0
        for param in params.split(b";"):
            key, _, value = param.strip().partition(b"=")
            if key == b"q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if coding == b"*":
            allowed = allowed or quality > 0
        else:
            return quality > 0
    return allowed


def etagMatches(header: bytes | None, tags: tuple[bytes, ...]) -> bool:
    """
    Whether C{If-None-Match} names one of C{tags} (weak comparison, as
    RFC 9110 asks for this header).
    """
    if not header:
        return False
    if header.strip() == b"*":
        return True
    for candidate in header.split(b","):
        candidate = candidate.strip()
        if candidate.startswith(b"W/"):
            candidate = candidate[2:]
        if candidate in tags:
            return True
    return False


def fallbackPage(index: Asset, depth: int) -> Asset:
    """
    The page served for an app path C{depth} directories below C{/ui/}:
    its C{<base>} climbs back to C{/ui/} so relative URLs resolve the same.
    """
    if depth == 0:
        return index
    base = b'<base href="' + b"../" * depth + b'">'
    return Asset.build(INDEX, index.body.replace(_BASE, base, 1))


class UIFiles:
    """
    The handler for C{/ui/...}.
    """

    def __init__(self, assets: Mapping[str, Asset]) -> None:
        self._assets = dict(assets)
        self._fallbacks: dict[int, Asset] = {}

    def find(self, raw: bytes) -> Asset | None:
        """
        The asset answering C{/ui/<raw>} (the raw, still escaped rest of
        the path): the file, the page for app paths, or L{None} for a
        missing file.
        """
        name = decodePath(raw) or INDEX
        asset = self._assets.get(name)
        if asset is not None:
            return asset
        last = name.rstrip("/").rsplit("/", 1)[-1]
        if "." in last or ".." in name.split("/"):
            return None
        index = self._assets.get(INDEX)
        if index is None:
            return None
        depth = raw.count(b"/")
        page = self._fallbacks.get(depth)
        if page is None:
            page = self._fallbacks[depth] = fallbackPage(index, depth)
        return page

    def __call__(self, request: Request, rest: bytes) -> bytes:
        request.setHeader(b"x-content-type-options", b"nosniff")
        asset = self.find(rest.partition(b"?")[0])
        if asset is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"404 page not found\n"
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"cache-control", asset.cacheControl)
        request.setHeader(b"content-type", asset.contentType)
        useGzip = asset.gzipped is not None and acceptsGzip(
            firstHeader(request, b"accept-encoding")
        )
        if asset.gzipped is not None:
            request.setHeader(b"vary", b"Accept-Encoding")
        etag = asset.gzipETag() if useGzip else asset.etag
        request.setHeader(b"etag", etag)
        if etagMatches(firstHeader(request, b"if-none-match"), (etag,)):
            request.setResponseCode(304)
            return b""
        body = asset.body
        if useGzip:
            assert asset.gzipped is not None
            request.setHeader(b"content-encoding", b"gzip")
            body = asset.gzipped
        request.setHeader(b"content-length", b"%d" % (len(body),))
        return body


#: The package's own assets, read once per process (every site built, in
#: tests hundreds, serves the same files).
_shipped: dict[str, Asset] | None = None


def shippedAssets() -> dict[str, Asset]:
    """
    The assets in L{UI_DIRECTORY}, loaded on first use.
    """
    global _shipped
    if _shipped is None:
        _shipped = loadAssets(UI_DIRECTORY)
    return _shipped


def install(mux: Mux, directory: str | None = None) -> UIFiles:
    """
    Serve the UI in C{directory} (default: the package's) under C{/ui/},
    open to all (unlike llama-swap, whose UI sits behind the browser's
    Basic prompt): the files hold no secret, and with C{apiKeys} the page
    must load to show its login form (L{llamaswap.web.login}); every API
    call it makes is checked.
    """
    assets = shippedAssets() if directory is None else loadAssets(directory)
    files = UIFiles(assets)
    mux.route("GET", "/ui/", files, auth=False)
    return files


__all__ = [
    "Asset",
    "CONTENT_SECURITY_POLICY",
    "UIFiles",
    "UI_DIRECTORY",
    "acceptsGzip",
    "etagMatches",
    "install",
    "loadAssets",
    "shippedAssets",
]
