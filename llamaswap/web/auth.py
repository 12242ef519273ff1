# -*- test-case-name: test.web.test_auth -*-
"""
API keys (C{apiKeys}): who may use llamaswap, for what, and what upstreams
see of it.

When the configuration lists keys, every route registered with C{auth=True}
needs a key holding the route's scope (C{inference}, C{monitor} or
C{admin}; see L{llamaswap.web.grants} and docs/security.rst); routes
registered with C{auth=False} (C{/health}, C{/wol-health}, the C{GET /} and
C{GET /upstream} redirects, the favicon, the login routes), CORS preflights
and the mux's own 301/404/405 answers need none.  A key is read the way
llama-swap reads it (L{extractAPIKey}):

 1. C{Authorization: Basic <base64(user:password)>}: the password (the user
    name is ignored), when the value decodes, holds a C{:} and the password
    is not empty;
 2. C{Authorization: Bearer <token>}: everything after the first space,
    untrimmed;
 3. the C{x-api-key} header;

and, when none is given, a UI session cookie (L{llamaswap.web.sessions}),
accepted only from the same origin (L{sameOrigin}).  The scheme word is
case-insensitive.  An C{Authorization} header that yields a key wins even
when C{x-api-key} holds the valid one; a malformed one falls through to
C{x-api-key}.

Unlike llama-swap (plain string equality, stopping at the first match), the
key is compared with every configured key, always all of them, with
L{hmac.compare_digest} over SHA-256 digests: neither the position of the
matching key nor the length or content of the keys leaks through timing.

A missing or unknown key is the 401 envelope C{unauthorized: invalid or
missing API key} (content-negotiated like every llamaswap error) with
C{WWW-Authenticate: Basic realm="llamaswap"} unless a page's script made
the request (L{wantsBasicPrompt}); a key without the scope is a 403 naming
the scope; a key over its C{concurrencyLimit} a 429.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, Callable, Sequence

from twisted.web.server import Request

from ..config.model import APIKey, Config, toAPIKeys
from ..finish import whenFinished
from ..holder import Holder
from ..httperrors import Forbidden, TooManyRequests, Unauthorized
from .errors import renderHTTPError
from .grants import ANONYMOUS, Principal, missingScope
from .mux import firstHeader
from .sessions import COOKIE, Sessions

#: Compares two digests; L{hmac.compare_digest} (injectable for tests).
Compare = Callable[[bytes, bytes], bool]


def extractAPIKey(request: Request) -> bytes:
    """
    The API key C{request} presents (C{b""} if none), by llama-swap's
    precedence: Basic password, then Bearer token, then C{x-api-key}.
    Headers are read by their first value, as Go does.
    """
    basic = bearer = b""
    authorization = firstHeader(request, b"authorization")
    if authorization:
        scheme, space, credentials = authorization.partition(b" ")
        if space:
            scheme = scheme.lower()
            if scheme == b"bearer":
                bearer = credentials
            elif scheme == b"basic":
                basic = _basicPassword(credentials)
    if basic:
        return basic
    if bearer:
        return bearer
    return firstHeader(request, b"x-api-key") or b""


def _basicPassword(credentials: bytes) -> bytes:
    """
    The password of Basic C{credentials}, C{b""} when they do not decode or
    have no C{:}.
    """
    try:
        decoded = base64.b64decode(credentials, validate=True)
    except (binascii.Error, ValueError):
        return b""
    user, colon, password = decoded.partition(b":")
    return password if colon else b""


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


#: Methods that change nothing (a cookie-authorised one needs no C{Origin}).
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})


def wantsBasicPrompt(request: Request) -> bool:
    """
    Whether a 401 should carry C{WWW-Authenticate: Basic} (which makes
    browsers show their password dialog): not for scripted browser
    requests (C{X-Requested-With}, or a C{Sec-Fetch-Mode} other than
    C{navigate}), whose page shows its own login form; clients that send
    neither header (curl, SDKs) keep the header.
    """
    if firstHeader(request, b"x-requested-with"):
        return False
    mode = firstHeader(request, b"sec-fetch-mode")
    return mode is None or mode.lower() == b"navigate"


def sameOrigin(request: Request) -> bool:
    """
    Whether a request authorised by a session cookie comes from llamaswap's
    own pages (CSRF protection): C{Sec-Fetch-Site} when present must be
    C{same-origin} or C{none}; else an C{Origin} when present must name
    the C{Host} the request was sent to; a request with neither is
    accepted only for a safe method (the C{SameSite=Strict} cookie is not
    sent cross-site anyway).
    """
    site = firstHeader(request, b"sec-fetch-site")
    if site is not None:
        return site.lower() in (b"same-origin", b"none")
    origin = firstHeader(request, b"origin")
    if origin is not None:
        host = firstHeader(request, b"host") or b""
        _, sep, originHost = origin.partition(b"://")
        return bool(sep) and bool(host) and originHost.lower() == host.lower()
    return request.method in SAFE_METHODS


def sessionCookie(request: Request) -> bytes | None:
    """
    The session cookie C{request} carries, if any.
    """
    value = request.getCookie(COOKIE)
    return value or None


class APIKeyAuthenticator:
    """
    The mux's authenticator: finds the key a request presents (a header,
    or a UI session cookie), checks the route's scope and the key's
    concurrency limit, and attaches the L{Principal} to the request as
    C{request.principal}.

    Answers: 401 for a missing or unknown key, 403 (naming the missing
    scope, never other keys) for a key without the route's scope or a
    cookie request from another origin, 429 over the key's limit.

    @ivar keys: returns the configured keys (L{APIKey}s or plain strings)
        at the time of the request (empty: authentication disabled).
    @ivar sessions: checks session cookies (L{None}: no UI sessions).
    """

    def __init__(
        self,
        keys: Callable[[], Sequence[APIKey | str]],
        compare: Compare = hmac.compare_digest,
        sessions: Sessions | None = None,
    ) -> None:
        self.keys = keys
        self.sessions = sessions
        self._compare = compare
        self._cachedFor: Sequence[APIKey | str] | None = None
        self._entries: tuple[tuple[bytes, APIKey], ...] = ()
        self._inflight: dict[str, int] = {}

    def _keyDigests(self) -> tuple[tuple[bytes, APIKey], ...]:
        keys = self.keys()
        if keys is not self._cachedFor:
            self._entries = tuple(
                (_digest(k.key.encode("utf-8")), k) for k in toAPIKeys(keys)
            )
            self._cachedFor = keys
        return self._entries

    @property
    def enabled(self) -> bool:
        """
        Whether any key is configured.
        """
        return bool(self._keyDigests())

    def find(self, provided: bytes) -> APIKey | None:
        """
        The configured key C{provided} is, if any.  Every key is compared,
        in constant time, whatever the outcome of earlier comparisons.
        """
        offered = _digest(provided)
        found: APIKey | None = None
        for digest, key in self._keyDigests():
            if self._compare(offered, digest) and found is None:
                found = key
        return found if provided else None

    def isValid(self, provided: bytes) -> bool:
        """
        Whether C{provided} is one of the keys.
        """
        return self.find(provided) is not None

    def identify(self, request: Request) -> Principal | None:
        """
        The principal of C{request}'s key (a header first, else a session
        cookie), L{None} when it presents none or an unknown one.
        """
        provided = extractAPIKey(request)
        if provided:
            key = self.find(provided)
            return Principal.forKey(key) if key is not None else None
        cookie = sessionCookie(request)
        if cookie is not None and self.sessions is not None:
            key = self.sessions.lookup(cookie)
            if key is not None:
                return Principal.forKey(key, viaSession=True)
        return None

    def __call__(self, request: Request, scope: str = "admin") -> bytes | None:
        """
        L{None} to let C{request} through to a route needing C{scope}, or
        the rendered refusal.
        """
        if not self.enabled:
            request.principal = ANONYMOUS  # type: ignore[attr-defined]
            return None
        principal = self.identify(request)
        if principal is None:
            refusal = Unauthorized()
            if not wantsBasicPrompt(request):
                refusal.headers.pop("WWW-Authenticate", None)
            return renderHTTPError(request, refusal)
        if principal.viaSession and not sameOrigin(request):
            return renderHTTPError(
                request,
                Forbidden(
                    "forbidden: cross-origin request with a session cookie",
                    code="forbidden",
                ),
            )
        if not principal.has(scope):
            return renderHTTPError(request, missingScope(scope))
        request.principal = principal  # type: ignore[attr-defined]
        return self._admit(request, principal)

    def _admit(self, request: Request, principal: Principal) -> bytes | None:
        """
        Count the request against its key's concurrency limit until it
        finishes; the 429 when the limit is reached.
        """
        name = principal.name or ""
        current = self._inflight.get(name, 0)
        if principal.concurrencyLimit and current >= principal.concurrencyLimit:
            return renderHTTPError(
                request,
                TooManyRequests(
                    f"too many requests: API key {name} has {current} requests in flight"
                    f" (limit {principal.concurrencyLimit})",
                    code="key_concurrency_limit",
                ),
            )
        self._inflight[name] = current + 1

        def release(result: object) -> None:
            left = self._inflight.get(name, 1) - 1
            if left > 0:
                self._inflight[name] = left
            else:
                self._inflight.pop(name, None)

        whenFinished(request, release)
        return None

    def inflight(self, name: str) -> int:
        """
        Requests in flight with the key named C{name}.
        """
        return self._inflight.get(name, 0)


def authenticatorFor(
    config: Holder[Config], sessions: Sessions | None = None
) -> APIKeyAuthenticator:
    """
    The authenticator checking the current configuration's C{apiKeys},
    read on every request (a configuration swapped in later is honoured),
    and UI sessions from C{sessions}.
    """
    return APIKeyAuthenticator(lambda: config.value.apiKeys, sessions=sessions)


def upstreamAuthHeaders(request: Request, config: Any) -> dict[str, str]:
    """
    The header overrides (for L{Forwarder.forward}'s C{extraHeaders}) that
    decide which credentials an upstream sees, as llama-swap does:

     - a peer with an C{apiKey} (C{config} a L{PeerConfig}): its own key,
       as both C{Authorization: Bearer <key>} and C{x-api-key: <key>},
       replacing whatever the client sent;
     - anything else (a local model's L{ModelConfig}, a peer without a
       key, L{None}): nothing; the client's C{Authorization} and
       C{x-api-key} pass through unchanged (so an upstream started with
       its own C{--api-key} can still be reached with that key, and one
       whose key equals llamaswap's works as is).

    @param request: the client's request (the present policy does not
        need it; it is here so the policy can change in one place).
    @param config: the target's configuration.
    @return: header name to value; empty when nothing changes.
    """
    key = getattr(config, "apiKey", "") or ""
    if not key:
        return {}
    return {"Authorization": f"Bearer {key}", "x-api-key": key}


__all__ = [
    "APIKeyAuthenticator",
    "sameOrigin",
    "wantsBasicPrompt",
    "authenticatorFor",
    "extractAPIKey",
    "upstreamAuthHeaders",
]
