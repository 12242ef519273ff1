# -*- test-case-name: test.web.test_forward -*-
"""
Request bodies sent upstream.

L{BodyProducer} streams a body that is already complete (bytes, or the
file twisted.web buffered the client's body in) to the upstream
connection, a chunk at a time and only while the socket accepts it, so a
large upload is never copied into memory as a whole; it can be started
again for a retry on a fresh connection.
"""

from __future__ import annotations

import io
import os
from typing import IO, Union

from twisted.internet.defer import Deferred
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

#: Size of the pieces a request body is written upstream in.
CHUNK_SIZE = 64 * 1024


class _ProducerRun:
    """
    One pass of a L{BodyProducer} over its source (a retry starts another).
    """

    def __init__(self, producer: BodyProducer, consumer: object) -> None:
        self._producer = producer
        self._consumer = consumer
        self._offset = 0
        self._paused = False
        self._stopped = False
        self._pumping = False
        self.done: Deferred[None] = Deferred(lambda d: self.stop())

    def pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            length = self._producer.length
            while not (self._paused or self._stopped) and self._offset < length:
                want = min(self._producer.chunkSize, length - self._offset)
                try:
                    chunk = self._producer._read(self._offset, want)
                except Exception:
                    self._stopped = True
                    self.done.errback()
                    return
                if not chunk:
                    self._stopped = True
                    self.done.errback(
                        ValueError(
                            f"request body ended at {self._offset} of {length} bytes"
                        )
                    )
                    return
                self._offset += len(chunk)
                self._consumer.write(chunk)  # type: ignore[attr-defined]
            if self._offset >= length and not self._stopped:
                self._stopped = True
                self.done.callback(None)
        finally:
            self._pumping = False

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self.pump()

    def stop(self) -> None:
        self._stopped = True


@implementer(IBodyProducer)
class BodyProducer:
    """
    An L{IBodyProducer} over a request body that is already complete: bytes,
    or a seekable binary file such as twisted.web's C{request.content}.

    It writes C{chunkSize} pieces synchronously for as long as the consumer
    does not pause it, and continues on C{resumeProducing}, so at most about
    one socket buffer of the body is in flight in memory.  The file is read
    at explicit offsets (its position is not relied on between chunks).

    It may be started again after a failed attempt (a retry on a fresh
    connection); each start sends the whole body again.

    @ivar length: the body's length in bytes.
    """

    def __init__(
        self,
        source: bytes | IO[bytes],
        length: int | None = None,
        chunkSize: int = CHUNK_SIZE,
    ) -> None:
        self._bytes: bytes | None = None
        self._file: IO[bytes] | None = None
        self._fd: int | None = None
        if isinstance(source, io.BytesIO) and length is None:
            # twisted.web keeps a small body in memory.
            source = source.getvalue()
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._bytes = bytes(source)
            self.length = len(self._bytes) if length is None else length
        else:
            self._file = source
            if length is None:
                length = source.seek(0, os.SEEK_END)
                source.seek(0)
            self.length = length
            try:
                source.flush()
                self._fd = source.fileno()
            except (AttributeError, OSError, ValueError):
                self._fd = None
        self.chunkSize = chunkSize
        self._run: _ProducerRun | None = None

    def _read(self, offset: int, size: int) -> bytes:
        if self._bytes is not None:
            if offset == 0 and size == len(self._bytes):
                return self._bytes
            return self._bytes[offset : offset + size]
        assert self._file is not None
        if self._file.closed:
            raise ValueError("request body file is closed")
        if self._fd is not None:
            return os.pread(self._fd, size, offset)
        self._file.seek(offset)
        return self._file.read(size)

    def whole(self, limit: int) -> bytes | None:
        """
        The whole body if it is at most C{limit} bytes (L{None} otherwise,
        or if it cannot be read): a small body goes out in the same write
        as the request head, without a producer run.
        """
        if self.length > limit:
            return None
        try:
            data = self._read(0, self.length) if self.length else b""
        except Exception:
            return None
        return data if len(data) == self.length else None

    def startProducing(self, consumer: object) -> Deferred[None]:
        if self._run is not None:
            self._run.stop()
        run = self._run = _ProducerRun(self, consumer)
        run.pump()
        return run.done

    def pauseProducing(self) -> None:
        if self._run is not None:
            self._run.pause()

    def resumeProducing(self) -> None:
        if self._run is not None:
            self._run.resume()

    def stopProducing(self) -> None:
        if self._run is not None:
            self._run.stop()


#: What L{llamaswap.web.forward.Forwarder.forward} takes as a body: L{None}
#: for the client's own, bytes for a rewritten one, or any producer.
BodyArg = Union[IBodyProducer, bytes, None]


__all__ = ["BodyArg", "BodyProducer", "CHUNK_SIZE"]
