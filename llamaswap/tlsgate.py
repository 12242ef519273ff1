# -*- test-case-name: test.test_tlsgate -*-
"""
TLS support only when the configuration uses it.

Importing Twisted's TCP support loads pyOpenSSL and C{cryptography} (for
C{startTLS}) whenever they are installed, and they are (service-identity
needs them): about 15 MB of a 63 MB idle llamaswap.  A llamaswap that
listens without TLS and whose models and peers are all C{http://} never
uses them, so L{withoutTLS} makes C{OpenSSL} unimportable before Twisted's
networking is imported, and Twisted falls back to TCP without TLS (its
documented behaviour without pyOpenSSL).

A configuration reloaded later with an C{https://} upstream then gets a
clear error for those requests (L{TLS_MISSING}); set
C{LLAMASWAP_TLS=1} to load TLS support regardless.
"""

from __future__ import annotations

import os
import sys
from importlib.abc import MetaPathFinder
from typing import Iterable, Sequence

#: The environment variable that forces TLS support in (C{1}) or lets
#: llamaswap decide (unset or anything else).
FORCE_ENV = "LLAMASWAP_TLS"

#: Listen endpoint descriptions that need no TLS.
PLAIN_LISTEN_PREFIXES = ("tcp:", "tcp6:", "unix:", "systemd:")

#: The message of an https request when TLS support was left out.
TLS_MISSING = (
    "https upstreams need TLS support, which llamaswap did not load because "
    "the configuration it started with used no TLS; restart llamaswap "
    f"(or start it with {FORCE_ENV}=1)"
)

_BLOCKED = "OpenSSL"


def needsTLS(listenEndpoint: str, upstreamURLs: Iterable[str]) -> bool:
    """
    Whether a llamaswap listening on C{listenEndpoint} (a Twisted server
    endpoint description) and calling C{upstreamURLs} (models' and peers'
    C{proxy}) uses TLS.  Unknown endpoint kinds count as TLS.
    """
    if not listenEndpoint.startswith(PLAIN_LISTEN_PREFIXES):
        return True
    return any(url.strip().lower().startswith("https:") for url in upstreamURLs)


class _NoOpenSSL(MetaPathFinder):
    """
    Makes C{OpenSSL} (and its submodules) unimportable.
    """

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: object = None
    ) -> None:
        if name == _BLOCKED or name.startswith(_BLOCKED + "."):
            raise ModuleNotFoundError(f"{name} left out: no TLS configured", name=name)
        return None


def withoutTLS(environ: dict[str, str] | None = None) -> bool:
    """
    Keep TLS support out of this process, unless it is already loaded (or
    Twisted's TCP support, which decides about it at import, is) or
    C{LLAMASWAP_TLS=1}.

    @return: whether TLS support is now kept out.
    """
    env = os.environ if environ is None else environ
    if env.get(FORCE_ENV) == "1":
        return False
    if any(isinstance(f, _NoOpenSSL) for f in sys.meta_path):
        return True
    if _BLOCKED in sys.modules or "twisted.internet.tcp" in sys.modules:
        return False
    sys.meta_path.insert(0, _NoOpenSSL())
    return True


def tlsAvailable() -> bool:
    """
    Whether this process can make TLS connections.
    """
    try:
        import OpenSSL.SSL  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["FORCE_ENV", "TLS_MISSING", "needsTLS", "tlsAvailable", "withoutTLS"]
