# -*- test-case-name: test.web.test_guard -*-
"""
DNS-rebinding protection: a page on a malicious site can make the
browser resolve its own host name to 127.0.0.1 and then talk to a
llamaswap that listens on loopback without API keys.  Such requests carry
the attacker's name in C{Host}; like Jupyter, llamaswap then answers only
requests whose C{Host} is a loopback name or address, or one of
C{security.allowedHosts} (C{"*"}: any).  Listening on other interfaces, or
with C{apiKeys}, the check is off (the keys are the protection).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Iterable

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost",
                            "ip6-loopback"})


def hostName(header: bytes | str | None) -> str | None:
    """
    The host name of a C{Host} header value, lower case, without the port
    and IPv6 brackets; L{None} when there is none.
    """
    if header is None:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    header = header.strip().lower()
    if not header:
        return None
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


def isLoopbackHost(name: str) -> bool:
    """
    Whether C{name} is a loopback name (C{localhost}, C{*.localhost}) or
    address.
    """
    name = name.rstrip(".")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=256)
def _loopbackHeader(header: bytes | str | None) -> tuple[str | None, bool]:
    """
    C{header}'s host name and whether it needs no further check (none, or
    loopback).  Cached: clients send the same few C{Host} values on every
    request, and parsing an address costs more than the rest of the check.
    """
    name = hostName(header)
    return name, name is None or isLoopbackHost(name)


def isAllowedHost(header: bytes | str | None, allowed: Iterable[str]) -> bool:
    """
    Whether a request with C{Host: header} may be answered: no C{Host}
    (HTTP/1.0), a loopback one, or one of C{allowed} (C{"*"}: any; a
    leading C{.} allows a domain and its subdomains).
    """
    name, loopback = _loopbackHeader(header)
    if loopback:
        return True
    for entry in allowed:
        entry = entry.lower()
        if entry == "*" or entry == name:
            return True
        if entry.startswith(".") and (name.endswith(entry) or name == entry[1:]):
            return True
    return False


def hostCheckApplies(loopbackOnly: bool, apiKeys: Iterable[str]) -> bool:
    """
    Whether the check is on: listening on loopback only, without API keys.
    """
    return loopbackOnly and not tuple(apiKeys)


__all__ = ["hostCheckApplies", "hostName", "isAllowedHost", "isLoopbackHost"]
