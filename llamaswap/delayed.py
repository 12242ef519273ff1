"""
L{cancelCall}: stop a timer that may have fired or been cancelled already.
Bottom level: every layer keeps optional L{IDelayedCall}s.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall


def cancelCall(call: IDelayedCall | None) -> None:
    """
    Cancel C{call} if it is still pending (a call that ran or was cancelled
    cannot be cancelled again).  Returns L{None}, for
    C{self._timer = cancelCall(self._timer)}.
    """
    if call is not None and call.active():
        call.cancel()
    return None


__all__ = ["cancelCall"]
