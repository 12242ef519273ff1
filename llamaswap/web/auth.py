# -*- test-case-name: test.web.test_auth -*-
"""
API keys (C{apiKeys}): who may use llamaswap, and what upstreams see of it.

When the configuration lists keys, every route registered with C{auth=True}
needs one of them: everything except the few registered with C{auth=False}
(C{/health}, C{/wol-health}, the C{GET /} and C{GET /upstream} redirects),
CORS preflights and the mux's own 301/404/405 answers.  A key is read the
way llama-swap reads it (L{extractAPIKey}):

 1. C{Authorization: Basic <base64(user:password)>}: the password (the user
    name is ignored), when the value decodes, holds a C{:} and the password
    is not empty;
 2. C{Authorization: Bearer <token>}: everything after the first space,
    untrimmed;
 3. the C{x-api-key} header.

The scheme word is case-insensitive.  An C{Authorization} header that
yields a key wins even when C{x-api-key} holds the valid one; a malformed
one falls through to C{x-api-key}.

Unlike llama-swap (plain string equality, stopping at the first match), the
key is compared with every configured key, always all of them, with
L{hmac.compare_digest} over SHA-256 digests: neither the position of the
matching key nor the length or content of the keys leaks through timing.

A refusal is the 401 envelope C{unauthorized: invalid or missing API key}
(content-negotiated like every llamaswap error) with C{WWW-Authenticate:
Basic realm="llamaswap"}, so browsers prompt for credentials and then send
them on the UI's own requests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, Callable, Sequence

from twisted.web.server import Request

from ..config.model import Config
from ..holder import Holder
from ..httperrors import Unauthorized
from .errors import renderHTTPError
from .mux import firstHeader

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


class APIKeyAuthenticator:
    """
    The mux's authenticator: lets requests with a configured key through
    and answers the rest with a 401.

    @ivar keys: returns the configured keys at the time of the request
        (empty: authentication disabled).
    """

    def __init__(
        self,
        keys: Callable[[], Sequence[str]],
        compare: Compare = hmac.compare_digest,
    ) -> None:
        self.keys = keys
        self._compare = compare
        self._cachedFor: Sequence[str] | None = None
        self._digests: tuple[bytes, ...] = ()

    def _keyDigests(self) -> tuple[bytes, ...]:
        keys = self.keys()
        if keys is not self._cachedFor:
            self._digests = tuple(_digest(k.encode("utf-8")) for k in keys)
            self._cachedFor = keys
        return self._digests

    @property
    def enabled(self) -> bool:
        """
        Whether any key is configured.
        """
        return bool(self._keyDigests())

    def isValid(self, provided: bytes) -> bool:
        """
        Whether C{provided} is one of the keys.  Every key is compared, in
        constant time, whatever the outcome of earlier comparisons.
        """
        offered = _digest(provided)
        valid = False
        for digest in self._keyDigests():
            valid |= self._compare(offered, digest)
        return valid and bool(provided)

    def __call__(self, request: Request) -> bytes | None:
        """
        L{None} to let C{request} through, or the rendered 401.
        """
        if not self.enabled:
            return None
        if self.isValid(extractAPIKey(request)):
            return None
        return renderHTTPError(request, Unauthorized())


def authenticatorFor(config: Holder[Config]) -> APIKeyAuthenticator:
    """
    The authenticator checking the current configuration's C{apiKeys},
    read on every request (a configuration swapped in later is honoured).
    """
    return APIKeyAuthenticator(lambda: config.value.apiKeys)


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
    "authenticatorFor",
    "extractAPIKey",
    "upstreamAuthHeaders",
]
