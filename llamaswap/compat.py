# -*- test-case-name: test.test_compat -*-
"""
The one place llamaswap touches Twisted's private internals.

Each helper says why the public API does not suffice; L{test.test_compat}
fails loudly when a Twisted release changes what a helper relies on.
"""

from __future__ import annotations

from twisted.web.server import Request


def isDisconnected(request: Request) -> bool:
    """
    Whether the client of C{request} has gone.  C{notifyFinish} tells when
    it happens; a synchronous check (before writing, or for a request whose
    Deferred was already consumed) needs the flag behind it.
    """
    return bool(getattr(request, "_disconnected", False))
