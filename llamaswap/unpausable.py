"""
L{Unpausable}: the producer methods of something with nothing to pause
or stop (a body written at once, a response made up locally).  Bottom
level, so upstream/ and web/ may both use it.
"""

from __future__ import annotations


class Unpausable:
    """
    C{pauseProducing}, C{resumeProducing} and C{stopProducing} that do
    nothing: all there is has been (or is about to be) written at once.
    """

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


__all__ = ["Unpausable"]
