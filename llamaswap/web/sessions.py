# -*- test-case-name: test.web.test_sessions -*-
"""
UI login sessions: a signed cookie standing for one configured key.

The cookie never holds the key.  Its value is
C{<name>.<expiry>.<tag>.<signature>}: the key's name (base64url), the
expiry (Unix seconds), a tag binding the session to the key's current
value (HMAC of the key) and an HMAC-SHA256 signature over the rest.  The
signing secret is C{auth.sessionSecret} or, when unset, random per
process.  At every request the key is looked up again by name and tag in
the current configuration, so a reload that removes or changes a key ends
its sessions at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from typing import Callable

from twisted.internet.interfaces import IReactorTime

from ..config.model import APIKey, Config
from ..holder import Holder

#: The session cookie's name.
COOKIE = b"llamaswap_session"


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


class Sessions:
    """
    Issues and checks session cookie values.

    @param config: the current configuration (keys, C{auth}).
    @param clock: what C{now} is.
    @param randomSecret: the per-process secret used when
        C{auth.sessionSecret} is empty.
    """

    def __init__(
        self,
        config: Holder[Config],
        clock: IReactorTime,
        randomSecret: Callable[[], bytes] = lambda: os.urandom(32),
    ) -> None:
        self.config = config
        self.clock = clock
        self._random = randomSecret()

    def _secret(self) -> bytes:
        configured = self.config.value.auth.sessionSecret
        return configured.encode("utf-8") if configured else self._random

    def _mac(self, secret: bytes, message: bytes) -> bytes:
        return hmac.new(secret, message, hashlib.sha256).digest()

    def _tag(self, secret: bytes, key: APIKey) -> bytes:
        return _b64(self._mac(secret, b"key:" + key.key.encode("utf-8"))[:16])

    @property
    def ttl(self) -> int:
        """
        Seconds a session lasts.
        """
        return self.config.value.auth.sessionTTL

    def issue(self, key: APIKey) -> bytes:
        """
        A cookie value for a session of C{key}, valid for L{ttl} seconds.
        """
        secret = self._secret()
        expiry = int(self.clock.seconds()) + self.ttl
        body = b"%s.%d.%s" % (_b64(key.name.encode("utf-8")), expiry, self._tag(secret, key))
        return body + b"." + _b64(self._mac(secret, b"session:" + body))

    def lookup(self, value: bytes) -> APIKey | None:
        """
        The key a cookie value stands for: L{None} when it is forged,
        expired, or its key is no longer configured as it was.
        """
        parts = value.split(b".")
        if len(parts) != 4:
            return None
        rawName, rawExpiry, tag, signature = parts
        secret = self._secret()
        body = b".".join(parts[:3])
        expected = _b64(self._mac(secret, b"session:" + body))
        if not hmac.compare_digest(expected, signature):
            return None
        try:
            expiry = int(rawExpiry)
            name = _unb64(rawName).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if expiry <= self.clock.seconds():
            return None
        for key in self.config.value.apiKeys:
            if key.name == name and hmac.compare_digest(self._tag(secret, key), tag):
                return key
        return None


def cookieHeader(value: bytes, maxAge: int, secure: bool) -> bytes:
    """
    The C{Set-Cookie} value for a session (an empty C{value} with
    C{maxAge} 0 ends it): C{HttpOnly}, C{SameSite=Strict}, C{Path=/},
    C{Secure} under TLS.
    """
    attributes = [
        COOKIE + b"=" + value,
        b"Path=/",
        b"Max-Age=%d" % (maxAge,),
        b"HttpOnly",
        b"SameSite=Strict",
    ]
    if secure:
        attributes.append(b"Secure")
    return b"; ".join(attributes)


__all__ = ["COOKIE", "Sessions", "cookieHeader"]
