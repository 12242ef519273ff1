# -*- test-case-name: test.observe.test_quiet -*-
"""
Keep routine Twisted chatter out of the logs.

Every new client connection of an L{HTTPConnectionPool} starts and stops
a connection factory, and Twisted logs both ("Starting factory
_HTTP11ClientFactory(...)") at info level: two lines per upstream
connection and health probe, drowning the proxy log.
"""

from __future__ import annotations

from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory


class QuietHTTP11ClientFactory(_HTTP11ClientFactory):
    """
    The pool's connection factory, without the start/stop log lines.
    """

    noisy = False


def quietPool(pool: HTTPConnectionPool) -> HTTPConnectionPool:
    """
    Make C{pool}'s new connections silent (C{pool._factory} is the hook
    Twisted's own tests use to replace the factory); returns C{pool}.
    """
    pool._factory = QuietHTTP11ClientFactory  # type: ignore[attr-defined]
    return pool


__all__ = ["QuietHTTP11ClientFactory", "quietPool"]
