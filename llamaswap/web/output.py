# -*- test-case-name: test.web.test_output -*-
"""
A client connection whose response bytes can be held and sent in one go.

Twisted's transport buffers every write and asks the reactor to watch the
socket for writability; once the buffer is sent the watch is dropped
again.  That is two C{epoll_ctl} calls per response on top of the
C{send}, and a relayed response's head and body are written separately.

While a relay holds its channel's output (L{HeldOutputChannel.holdOutput}),
the head (built as one string) and the body it writes are kept by the
channel; L{HeldOutputChannel.flushOutput} sends them with one
C{send} when nothing else is buffered (L{llamaswap.compat.writeNow}), so
the reactor never watches the socket for that response.  The hold ends
when the request is done or the connection is closed, after sending what
is held: nothing written is ever left behind.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

from ..compat import sendNow, writeNow


class HeldOutputChannel(HTTPChannel):
    """
    An L{HTTPChannel} whose output a relay may hold (see the module).
    """

    #: The bytes held, L{None} when not holding.
    _held: list[bytes] | None = None

    def holdOutput(self) -> None:
        """
        Keep what is written from now on until L{flushOutput}; the hold
        lasts until the current request is done.
        """
        if self._held is None:
            self._held = []

    def flushOutput(self) -> None:
        """
        Send what is held now (the hold goes on), or what the transport
        buffered when nothing is held.
        """
        held = self._held
        if held:
            self._held = []
            writeNow(self.transport, held[0] if len(held) == 1 else b"".join(held))
        elif held is None:
            sendNow(self.transport)

    def _release(self) -> None:
        """
        Send what is held and stop holding.
        """
        if self._held and self.transport is not None:
            self.flushOutput()
        self._held = None

    # -- what Request calls --------------------------------------------------

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        if not isinstance(headers, Headers):
            super().writeHeaders(version, code, reason, headers)
            return
        # One string rather than a sequence of four pieces per header, each
        # checked by the transport.
        lines = [b"%s %s %s\r\n" % (version, code, reason)]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"\r\n")
        self.write(b"".join(lines))

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self.transport.write(data)  # type: ignore[union-attr]
        elif data:
            held.append(data)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        held = self._held
        if held is None:
            self.transport.writeSequence(iovec)  # type: ignore[union-attr]
        else:
            held.extend(data for data in iovec if data)

    # -- where a hold ends -----------------------------------------------------

    def requestDone(self, request: Any) -> None:
        self._release()
        super().requestDone(request)

    def loseConnection(self) -> None:
        self._release()
        super().loseConnection()

    def connectionLost(self, reason: Any) -> None:
        self._held = None
        super().connectionLost(reason)


def holdOutput(request: Any) -> None:
    """
    Hold C{request}'s output if its channel can (see the module).
    """
    hold = getattr(getattr(request, "channel", None), "holdOutput", None)
    if hold is not None:
        hold()


def flushOutput(request: Any) -> None:
    """
    Send what C{request}'s channel holds or buffered now, rather than when
    the reactor next polls.
    """
    channel = getattr(request, "channel", None)
    flush = getattr(channel, "flushOutput", None)
    if flush is not None:
        flush()
    else:
        sendNow(getattr(channel, "transport", None))


__all__ = ["HeldOutputChannel", "flushOutput", "holdOutput"]
