# -*- test-case-name: test.web.test_login -*-
"""
The web UI's login: C{POST /api/login}, C{POST /api/logout},
C{GET /api/session}.

These routes are open (they are how a browser gets a session) and answer
JSON only:

 - C{POST /api/login} with C{{"key": "..."}}: a valid key gets a session
   cookie (L{llamaswap.web.sessions}) and the session document; a wrong
   one a 401 without C{WWW-Authenticate}; a cross-origin attempt a 403;
 - C{POST /api/logout}: the cookie is cleared;
 - C{GET /api/session}: C{{authenticated, name, scopes, keysRequired}} for
   the key the request presents (header or cookie), so the UI knows
   whether to show its login form.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.server import Request

from ..httperrors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized
from .auth import APIKeyAuthenticator, sameOrigin
from .errors import renderHTTPError
from .grants import Principal
from .mux import Mux
from .sessions import Sessions, cookieHeader

#: The largest login body read.
MAX_LOGIN_BYTES = 16 * 1024


def _json(request: Request, document: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document, separators=(",", ":")).encode("utf-8") + b"\n"


def sessionDocument(principal: Principal | None, keysRequired: bool) -> dict[str, Any]:
    """
    What C{/api/session} tells the UI (never a key).
    """
    if principal is None:
        return {"authenticated": False, "name": None, "scopes": [], "keysRequired": keysRequired}
    return {
        "authenticated": True,
        "name": principal.name,
        "scopes": sorted(principal.scopes),
        "keysRequired": keysRequired,
    }


class LoginRoutes:
    """
    The login handlers.

    @param authenticator: finds keys (the mux's).
    @param sessions: issues session cookies.
    """

    def __init__(self, authenticator: APIKeyAuthenticator, sessions: Sessions) -> None:
        self.authenticator = authenticator
        self.sessions = sessions

    def login(self, request: Request, rest: bytes) -> bytes:
        """
        C{POST /api/login}.
        """
        if not sameOrigin(request):
            return renderHTTPError(
                request, Forbidden("forbidden: cross-origin login", code="forbidden")
            )
        if not self.authenticator.enabled:
            return _json(request, sessionDocument(None, False))
        body = request.content.read(MAX_LOGIN_BYTES + 1) if request.content else b""
        if len(body) > MAX_LOGIN_BYTES:
            return renderHTTPError(request, PayloadTooLarge("login body too large"))
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        provided = document.get("key") if isinstance(document, dict) else None
        if not isinstance(provided, str) or not provided:
            return renderHTTPError(request, BadRequest('expected a JSON body {"key": "..."}'))
        key = self.authenticator.find(provided.encode("utf-8"))
        if key is None:
            refusal = Unauthorized()
            refusal.headers.pop("WWW-Authenticate", None)
            return renderHTTPError(request, refusal)
        cookie = cookieHeader(self.sessions.issue(key), self.sessions.ttl, request.isSecure())
        request.setHeader(b"set-cookie", cookie)
        return _json(request, sessionDocument(Principal.forKey(key, viaSession=True), True))

    def logout(self, request: Request, rest: bytes) -> bytes:
        """
        C{POST /api/logout}: the session cookie is cleared.
        """
        request.setHeader(b"set-cookie", cookieHeader(b"", 0, request.isSecure()))
        return _json(request, sessionDocument(None, self.authenticator.enabled))

    def session(self, request: Request, rest: bytes) -> bytes:
        """
        C{GET /api/session}.
        """
        enabled = self.authenticator.enabled
        if not enabled:
            return _json(request, sessionDocument(None, False))
        return _json(request, sessionDocument(self.authenticator.identify(request), True))


def install(mux: Mux, authenticator: APIKeyAuthenticator, sessions: Sessions) -> LoginRoutes:
    """
    Register the login routes (open: no key needed).
    """
    routes = LoginRoutes(authenticator, sessions)
    mux.route("POST", "/api/login", routes.login, auth=False)
    mux.route("POST", "/api/logout", routes.logout, auth=False)
    mux.route("GET", "/api/session", routes.session, auth=False)
    return routes


__all__ = ["LoginRoutes", "install", "sessionDocument"]
