"""
Tests for L{llamaswap.web.login} and L{llamaswap.web.sessions}: the UI's
login, its session cookie, logout and expiry.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.load import loadConfigText
from llamaswap.config.model import APIKey, AuthConfig, Config
from llamaswap.holder import Holder
from llamaswap.web.sessions import COOKIE, Sessions, cookieHeader

from .test_auth import SAME_ORIGIN, SCOPED_CONFIG, ScopedSite, bearer


def login(site: ScopedSite, key: str, headers: list[tuple[bytes, bytes]] = SAME_ORIGIN):
    return site.send(b"POST", b"/api/login", headers, json.dumps({"key": key}).encode())


def cookieOf(response) -> list[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    return [(b"Cookie", (response.header(b"set-cookie") or b"").split(b";")[0])]


class LoginTests(SynchronousTestCase):
    """
    C{POST /api/login}, C{POST /api/logout}, C{GET /api/session}.
    """

    def setUp(self) -> None:
        self.site = ScopedSite(self)

    def test_login(self) -> None:
        """
        A valid key gets a session cookie (HttpOnly, SameSite=Strict,
        Path=/, 12 h) that holds neither the key nor its digest, and the
        session document; the cookie then authorises requests with the
        key's scopes.
        """
        response = login(self.site, "mon-secret")
        self.assertEqual(response.status, 200)
        self.assertEqual(
            json.loads(response.body),
            {"authenticated": True, "name": "watcher", "scopes": ["monitor"], "keysRequired": True},
        )
        cookie = response.header(b"set-cookie") or b""
        attributes = cookie.split(b"; ")
        self.assertTrue(attributes[0].startswith(COOKIE + b"="))
        self.assertEqual(
            set(attributes[1:]), {b"Path=/", b"Max-Age=43200", b"HttpOnly", b"SameSite=Strict"}
        )
        self.assertNotIn(b"mon-secret", cookie)
        session = cookieOf(response)
        self.assertEqual(self.site.send(b"GET", b"/running", session).status, 200)
        self.assertEqual(self.site.send(b"POST", b"/api/models/unload", session + SAME_ORIGIN).status, 403)

    def test_sessionDocument(self) -> None:
        """
        C{GET /api/session} reports who the request is (cookie or header),
        or that a login is needed.
        """
        anonymous = json.loads(self.site.send(b"GET", b"/api/session", []).body)
        self.assertEqual(
            anonymous, {"authenticated": False, "name": None, "scopes": [], "keysRequired": True}
        )
        byHeader = json.loads(self.site.send(b"GET", b"/api/session", bearer("adm-secret")).body)
        self.assertEqual((byHeader["name"], byHeader["scopes"]), ("ops", ["admin", "monitor"]))
        session = cookieOf(login(self.site, "full-secret"))
        byCookie = json.loads(self.site.send(b"GET", b"/api/session", session).body)
        self.assertEqual(byCookie["name"], "key-1")

    def test_wrongKey(self) -> None:
        """
        A wrong key is a 401 without C{WWW-Authenticate} (no browser
        dialog) and no cookie; a malformed body is a 400.
        """
        response = login(self.site, "nope")
        self.assertEqual(response.status, 401)
        self.assertIsNone(response.header(b"www-authenticate"))
        self.assertIsNone(response.header(b"set-cookie"))
        for body in (b"", b"{", b"[]", b'{"key": 3}', b'{"key": ""}'):
            response = self.site.send(b"POST", b"/api/login", SAME_ORIGIN, body)
            self.assertEqual(response.status, 400, body)

    def test_crossOriginLogin(self) -> None:
        """
        A login posted from another origin is refused (login CSRF).
        """
        response = login(self.site, "full-secret", [(b"Origin", b"https://evil.example")])
        self.assertEqual(response.status, 403)
        self.assertIsNone(response.header(b"set-cookie"))

    def test_logout(self) -> None:
        """
        C{POST /api/logout} clears the cookie.
        """
        response = self.site.send(b"POST", b"/api/logout", SAME_ORIGIN)
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.header(b"set-cookie"),
            COOKIE + b"=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict",
        )

    def test_expiry(self) -> None:
        """
        A session ends after C{auth.sessionTTL}.
        """
        session = cookieOf(login(self.site, "full-secret"))
        self.site.clock.advance(12 * 3600 - 1)
        self.assertEqual(self.site.send(b"GET", b"/running", session).status, 200)
        self.site.clock.advance(1)
        self.assertEqual(self.site.send(b"GET", b"/running", session).status, 401)

    def test_reloadEndsSessionsOfChangedKeys(self) -> None:
        """
        A configuration without the key (or with another key under the
        same name) ends its sessions; other sessions continue.
        """
        full = cookieOf(login(self.site, "full-secret"))
        mon = cookieOf(login(self.site, "mon-secret"))
        text = SCOPED_CONFIG.replace("{key: mon-secret,", "{key: mon-rotated,")
        self.site.app.webParts().config.set(loadConfigText(text, environ={}).config)
        self.assertEqual(self.site.send(b"GET", b"/running", mon).status, 401)
        self.assertEqual(self.site.send(b"GET", b"/running", full).status, 200)

    def test_noKeys(self) -> None:
        """
        Without keys the login is a no-op and the session document says
        none are required.
        """
        self.site.app.webParts().config.set(Config())
        response = login(self.site, "anything")
        self.assertEqual(response.status, 200)
        self.assertEqual(json.loads(response.body)["keysRequired"], False)
        self.assertIsNone(response.header(b"set-cookie"))


class SessionsTests(SynchronousTestCase):
    """
    L{Sessions}: signing and checking cookie values.
    """

    key = APIKey(key="k-secret", name="app")

    def sessions(self, secret: str = "", clock: Clock | None = None) -> Sessions:
        config = Holder(Config(apiKeys=(self.key,), auth=AuthConfig(sessionSecret=secret)))
        return Sessions(config, clock or Clock())

    def test_roundTrip(self) -> None:
        s = self.sessions()
        self.assertEqual(s.lookup(s.issue(self.key)), self.key)

    def test_tampered(self) -> None:
        """
        Any change to the value (name, expiry, tag, signature) is refused.
        """
        s = self.sessions()
        value = s.issue(self.key)
        for i in range(len(value)):
            changed = value[:i] + (b"A" if value[i : i + 1] != b"A" else b"B") + value[i + 1 :]
            self.assertIsNone(s.lookup(changed), i)
        for junk in (b"", b"a.b.c", b"a.b.c.d.e", b"...."):
            self.assertIsNone(s.lookup(junk))

    def test_perProcessSecret(self) -> None:
        """
        Without C{sessionSecret} each process (L{Sessions}) has its own
        secret; with one, sessions survive a restart.
        """
        self.assertIsNone(self.sessions().lookup(self.sessions().issue(self.key)))
        shared = self.sessions("configured")
        self.assertEqual(self.sessions("configured").lookup(shared.issue(self.key)), self.key)

    def test_secure(self) -> None:
        """
        Under TLS the cookie is C{Secure}.
        """
        self.assertTrue(cookieHeader(b"v", 10, True).endswith(b"; Secure"))
        self.assertNotIn(b"Secure", cookieHeader(b"v", 10, False))
