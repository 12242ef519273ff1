"""
Tests for L{llamaswap.web.ui}: the web UI's static files, through a real
L{Site} over an in-memory transport.
"""

from __future__ import annotations

import gzip
import os
import re

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from llamaswap.web import ui
from llamaswap.web.mux import Mux
from llamaswap.web.ui import (
    CONTENT_SECURITY_POLICY,
    UI_DIRECTORY,
    acceptsGzip,
    etagMatches,
    loadAssets,
)

from .helpers import Client, ParsedResponse

INDEX = (
    b'<!doctype html><html><head><base href="./"><script type="module" src="app.js">'
    b"</script></head><body></body></html>\n"
)
SCRIPT = b"export const answer = 42;\n" * 40


def writeTree(base: str, files: dict[str, bytes]) -> str:
    for name, body in files.items():
        path = os.path.join(base, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)
    return base


class UITestsMixin:
    def setUp(self) -> None:
        self.directory = writeTree(
            self.mktemp(),  # type: ignore[attr-defined]
            {
                "index.html": INDEX,
                "app.js": SCRIPT,
                "style.css": b"body { color: red; }\n",
                "favicon.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                "vendor/lib-1.0.0.js": b"export default 1;\n" * 30,
                "tiny.txt": b"x",
                ".hidden": b"secret",
                "notes.py": b"print(1)",
            },
        )
        self.mux = Mux()
        ui.install(self.mux, self.directory)

    def get(self, path: bytes, headers: list[tuple[bytes, bytes]] | None = None,
            method: bytes = b"GET") -> ParsedResponse:
        client = Client(Site(self.mux, reactor=Clock()))
        client.send(method, path, headers=headers)
        return client.response()


class ServingTests(UITestsMixin, SynchronousTestCase):
    """
    Which file answers which path, with what headers.
    """

    def test_redirect(self) -> None:
        """
        C{/ui} is redirected to C{/ui/}.
        """
        response = self.get(b"/ui")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header(b"location"), b"/ui/")

    def test_index(self) -> None:
        """
        C{/ui/} and C{/ui/index.html} are the page, as HTML, revalidated on
        every use.
        """
        for path in (b"/ui/", b"/ui/index.html"):
            response = self.get(path)
            self.assertEqual(response.status, 200)
            self.assertEqual(response.body, INDEX)
            self.assertEqual(response.header(b"content-type"), b"text/html; charset=utf-8")
            self.assertEqual(response.header(b"cache-control"), b"no-cache")

    def test_contentTypes(self) -> None:
        """
        Each file is served with the type of its extension; scripts as
        C{text/javascript} (module scripts need a JavaScript type).
        """
        expected = {
            b"/ui/app.js": b"text/javascript; charset=utf-8",
            b"/ui/style.css": b"text/css; charset=utf-8",
            b"/ui/favicon.svg": b"image/svg+xml",
            b"/ui/tiny.txt": b"text/plain; charset=utf-8",
        }
        for path, contentType in expected.items():
            response = self.get(path)
            self.assertEqual(response.status, 200, path)
            self.assertEqual(response.header(b"content-type"), contentType, path)

    def test_securityHeaders(self) -> None:
        """
        Every file carries the strict Content-Security-Policy (no inline
        scripts or styles, no framing, no plugins), C{nosniff} and no
        referrer.
        """
        response = self.get(b"/ui/")
        csp = response.header(b"content-security-policy")
        self.assertEqual(csp, CONTENT_SECURITY_POLICY)
        assert csp is not None
        directives = dict(d.strip().split(b" ", 1) for d in csp.split(b";"))
        self.assertEqual(directives[b"script-src"], b"'self'")
        self.assertEqual(directives[b"style-src"], b"'self'")
        self.assertEqual(directives[b"default-src"], b"'self'")
        self.assertEqual(directives[b"object-src"], b"'none'")
        self.assertEqual(directives[b"frame-ancestors"], b"'none'")
        self.assertEqual(directives[b"connect-src"], b"'self'")
        self.assertNotIn(b"unsafe", csp)
        self.assertEqual(response.header(b"x-content-type-options"), b"nosniff")
        self.assertEqual(response.header(b"referrer-policy"), b"no-referrer")

    def test_appPathFallback(self) -> None:
        """
        A path whose last segment has no dot is an app route: the page,
        with a C{<base>} that leads relative URLs back to C{/ui/}.
        """
        response = self.get(b"/ui/models")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, INDEX)
        deeper = self.get(b"/ui/models/org/model-7b")
        self.assertEqual(deeper.status, 200)
        self.assertIn(b'<base href="../../">', deeper.body)
        self.assertNotIn(b'<base href="./">', deeper.body)
        self.assertEqual(deeper.header(b"content-type"), b"text/html; charset=utf-8")
        slashed = self.get(b"/ui/models/")
        self.assertIn(b'<base href="../">', slashed.body)

    def test_missingFile(self) -> None:
        """
        A missing file (last segment with a dot) is a plain 404, not the
        page.
        """
        for path in (b"/ui/missing.js", b"/ui/vendor/nope-1.0.js", b"/ui/.hidden",
                     b"/ui/notes.py"):
            response = self.get(path)
            self.assertEqual(response.status, 404, path)
            self.assertEqual(response.body, b"404 page not found\n")
            self.assertEqual(response.header(b"content-type"), b"text/plain; charset=utf-8")

    def test_vendorImmutable(self) -> None:
        """
        Vendored files carry their version in the name and are cached for a
        year.
        """
        response = self.get(b"/ui/vendor/lib-1.0.0.js")
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.header(b"cache-control"), b"public, max-age=31536000, immutable"
        )

    def test_head(self) -> None:
        """
        HEAD gives the GET's headers and no body.
        """
        response = self.get(b"/ui/app.js", method=b"HEAD")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header(b"content-length"), b"%d" % (len(SCRIPT),))
        self.assertEqual(response.raw.partition(b"\r\n\r\n")[2], b"")

    def test_postRefused(self) -> None:
        """
        The UI answers GET and HEAD only.
        """
        response = self.get(b"/ui/app.js", method=b"POST")
        self.assertEqual(response.status, 405)


class CachingTests(UITestsMixin, SynchronousTestCase):
    """
    ETags and conditional requests.
    """

    def test_etagIsContentHash(self) -> None:
        """
        The ETag is a strong tag derived from the content: equal files have
        equal tags, different files different ones.
        """
        first = self.get(b"/ui/app.js").header(b"etag")
        again = self.get(b"/ui/app.js").header(b"etag")
        other = self.get(b"/ui/style.css").header(b"etag")
        assert first is not None
        self.assertRegex(first, rb'^"[0-9a-f]{20}"$')
        self.assertEqual(first, again)
        self.assertNotEqual(first, other)

    def test_notModified(self) -> None:
        """
        C{If-None-Match} with the current tag (also weak, or in a list) is
        answered with 304 and no body.
        """
        etag = self.get(b"/ui/app.js").header(b"etag")
        assert etag is not None
        for header in (etag, b"W/" + etag, b'"other", ' + etag, b"*"):
            response = self.get(b"/ui/app.js", [(b"If-None-Match", header)])
            self.assertEqual(response.status, 304, header)
            self.assertEqual(response.body, b"")
            self.assertEqual(response.header(b"etag"), etag)

    def test_changedTag(self) -> None:
        """
        A stale tag gets the whole file.
        """
        response = self.get(b"/ui/app.js", [(b"If-None-Match", b'"stale"')])
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, SCRIPT)


class CompressionTests(UITestsMixin, SynchronousTestCase):
    """
    gzip for clients that accept it.
    """

    def test_gzip(self) -> None:
        """
        With C{Accept-Encoding: gzip} a compressible file is sent gzipped,
        with its own ETag and C{Vary: Accept-Encoding}.
        """
        plain = self.get(b"/ui/app.js")
        packed = self.get(b"/ui/app.js", [(b"Accept-Encoding", b"gzip, deflate, br")])
        self.assertEqual(packed.header(b"content-encoding"), b"gzip")
        self.assertEqual(gzip.decompress(packed.body), SCRIPT)
        self.assertLess(len(packed.body), len(SCRIPT))
        self.assertEqual(packed.header(b"vary"), b"Accept-Encoding")
        self.assertEqual(plain.header(b"vary"), b"Accept-Encoding")
        self.assertIsNone(plain.header(b"content-encoding"))
        self.assertNotEqual(packed.header(b"etag"), plain.header(b"etag"))
        etag = packed.header(b"etag")
        assert etag is not None
        again = self.get(
            b"/ui/app.js", [(b"Accept-Encoding", b"gzip"), (b"If-None-Match", etag)]
        )
        self.assertEqual(again.status, 304)

    def test_notWorthIt(self) -> None:
        """
        A file that gzip would not shrink is always sent as is.
        """
        response = self.get(b"/ui/tiny.txt", [(b"Accept-Encoding", b"gzip")])
        self.assertIsNone(response.header(b"content-encoding"))
        self.assertEqual(response.body, b"x")

    def test_refused(self) -> None:
        """
        C{gzip;q=0} or other codings only: no compression.
        """
        for header in (b"gzip;q=0", b"br", b"identity", b"*;q=0"):
            response = self.get(b"/ui/app.js", [(b"Accept-Encoding", header)])
            self.assertIsNone(response.header(b"content-encoding"), header)
            self.assertEqual(response.body, SCRIPT)

    def test_acceptsGzip(self) -> None:
        """
        L{acceptsGzip} reads codings and qualities.
        """
        self.assertTrue(acceptsGzip(b"gzip"))
        self.assertTrue(acceptsGzip(b"deflate, GZIP;q=0.5"))
        self.assertTrue(acceptsGzip(b"*"))
        self.assertTrue(acceptsGzip(b"x-gzip"))
        self.assertFalse(acceptsGzip(None))
        self.assertFalse(acceptsGzip(b""))
        self.assertFalse(acceptsGzip(b"gzip;q=0"))
        self.assertFalse(acceptsGzip(b"gzip;q=0, *"))
        self.assertFalse(acceptsGzip(b"gzip;q=bad"))
        self.assertFalse(acceptsGzip(b"br, deflate"))

    def test_etagMatches(self) -> None:
        """
        L{etagMatches} compares weakly, in lists, and understands C{*}.
        """
        self.assertTrue(etagMatches(b'"a"', (b'"a"',)))
        self.assertTrue(etagMatches(b'W/"a"', (b'"a"',)))
        self.assertTrue(etagMatches(b'"b" , "a"', (b'"a"',)))
        self.assertTrue(etagMatches(b"*", (b'"a"',)))
        self.assertFalse(etagMatches(b'"b"', (b'"a"',)))
        self.assertFalse(etagMatches(None, (b'"a"',)))


class ShippedUITests(SynchronousTestCase):
    """
    The UI in the package itself.
    """

    def setUp(self) -> None:
        self.assets = loadAssets(UI_DIRECTORY)

    def test_files(self) -> None:
        """
        The page, the app, one module per page, styles, icon and vendored
        libraries with their licences are shipped.
        """
        for name in (
            "index.html", "app.js", "style.css", "favicon.svg",
            "pages/models.js", "pages/activity.js", "pages/logs.js",
            "pages/playground.js", "pages/performance.js", "pages/hardware.js",
            "pages/config.js", "pages/settings.js", "pages/model.js",
            "vendor/LICENSE-preact.txt", "vendor/LICENSE-htm.txt", "vendor/README.md",
        ):
            self.assertIn(name, self.assets)

    def test_noInlineCode(self) -> None:
        """
        The page has no inline scripts, styles or event handlers (the CSP
        would block them) and its only script is the app module.
        """
        page = self.assets["index.html"].body
        self.assertEqual(re.findall(rb"<script[^>]*>", page),
                         [b'<script type="module" src="app.js">'])
        self.assertNotIn(b"<style", page)
        self.assertIsNone(re.search(rb"\son[a-z]+=", page))
        self.assertIsNone(re.search(rb"\sstyle=", page))
        self.assertIn(b'<base href="./">', page)

    def test_relativeURLs(self) -> None:
        """
        No module addresses the server by absolute path (so the UI works
        under a path prefix): imports are relative and API calls go
        through C{url()}.
        """
        for name, asset in self.assets.items():
            if not name.endswith(".js") or name.startswith("vendor/"):
                continue
            text = asset.body.decode("utf-8")
            for spec in re.findall(r"""from\s+['"]([^'"]+)['"]""", text):
                self.assertTrue(spec.startswith("./") or spec.startswith("../"), (name, spec))
            self.assertIsNone(re.search(r"""fetch\(\s*['"`]/""", text), name)
            self.assertIsNone(re.search(r"""EventSource\(\s*['"`]/""", text), name)

    def test_firstLoadSize(self) -> None:
        """
        Everything the browser can fetch for the first page, gzipped, stays
        far below 300 KB.
        """
        total = sum(
            len(a.gzipped if a.gzipped is not None else a.body)
            for name, a in self.assets.items()
            if name.endswith((".js", ".css", ".html", ".svg"))
        )
        self.assertLess(total, 300 * 1024)

    def test_moduleTypes(self) -> None:
        """
        Every module is served as JavaScript and vendored modules as
        immutable.
        """
        for name, asset in self.assets.items():
            if name.endswith(".js"):
                self.assertEqual(asset.contentType, b"text/javascript; charset=utf-8")
            if name.startswith("vendor/"):
                self.assertIn(b"immutable", asset.cacheControl)


class AuthenticationTests(SynchronousTestCase):
    """
    The UI's files are open (unlike llama-swap's): with API keys the page
    must load to show its login form; the API it calls stays protected.
    """

    def test_openWithoutKey(self) -> None:
        """
        An authenticator refusing every request is never asked about the
        UI's files: the page, a module and an app path are served without a
        key, with no Basic challenge.
        """
        directory = writeTree(self.mktemp(), {"index.html": INDEX, "app.js": b"export {};\n"})
        asked: list[bytes] = []

        def authenticator(request, scope):  # type: ignore[no-untyped-def]
            asked.append(request.path)
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Basic realm="llamaswap"')
            return b"unauthorized"

        mux = Mux(authenticator=authenticator)
        ui.install(mux, directory)
        for path, body in ((b"/ui/", INDEX), (b"/ui/app.js", b"export {};\n"), (b"/ui/models", None)):
            client = Client(Site(mux, reactor=Clock()))
            client.send(b"GET", path)
            response = client.response()
            self.assertEqual(response.status, 200, path)
            self.assertIsNone(response.header(b"www-authenticate"), path)
            if body is not None:
                self.assertEqual(response.body, body)
        self.assertEqual(asked, [])
        self.assertFalse(next(r for r in mux.routes() if r.path == b"/ui/").auth)
