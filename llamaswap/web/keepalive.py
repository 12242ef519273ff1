# -*- test-case-name: test.web.test_keepalive -*-
"""
Per-request keep-alive: a request's C{ttl} (LM Studio: seconds) or
C{keep_alive} (Ollama: seconds or a duration such as C{"5m"}; C{0}
unloads right after the request; negative never unloads) sets its model's
idle timeout from this request on.  Both fields are taken out of the body
before it goes upstream.

C{requestTTL.enabled: false} leaves them in the body, untouched and
ignored; C{requestTTL.max} caps what a request may set ("never" included).
"""

from __future__ import annotations

from typing import Any

from attrs import frozen

from ..config.model import RequestTTLConfig
from ..config.sizes import parseSeconds
from ..httperrors import BadRequest

__all__ = ["FIELDS", "KeepAlive", "takeKeepAlive"]

#: The body fields, in order of precedence.
FIELDS = ("keep_alive", "ttl")


@frozen
class KeepAlive:
    """
    The idle timeout a request asked for: seconds (C{0}: unload as soon as
    it is idle) or L{None} (never unload).
    """

    seconds: float | None


def takeKeepAlive(
    body: dict[str, Any], settings: RequestTTLConfig
) -> tuple[bool, KeepAlive | None]:
    """
    Remove the keep-alive fields from the JSON C{body}.

    @return: whether C{body} changed, and the idle timeout asked for
        (L{None} when none was: absent, JSON null, or disabled).
    @raise BadRequest: a field is not seconds or a duration.
    """
    if not settings.enabled:
        return False, None
    given = {name: body.pop(name) for name in FIELDS if name in body}
    if not given:
        return False, None
    chosen = next(((n, v) for n, v in given.items() if v is not None), None)
    if chosen is None:
        return True, None
    name, value = chosen
    try:
        seconds: float | None = parseSeconds(value)
    except ValueError as e:
        raise BadRequest(f"{name}: {e}")
    assert seconds is not None
    if seconds < 0:
        seconds = None
    if settings.max > 0 and (seconds is None or seconds > settings.max):
        seconds = float(settings.max)
    return True, KeepAlive(seconds)
