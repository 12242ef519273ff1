"""
Tests for L{llamaswap.web.bodies}.
"""

from __future__ import annotations

import io
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.web.bodies import BodyProducer


class RecordingConsumer:
    """
    A consumer that may pause its producer after each write.
    """

    def __init__(self, pauseEvery: bool = False) -> None:
        self.data: list[bytes] = []
        self.pauseEvery = pauseEvery
        self.producer: BodyProducer | None = None

    def write(self, data: bytes) -> None:
        self.data.append(data)
        if self.pauseEvery and self.producer is not None:
            self.producer.pauseProducing()


class BodyProducerTests(SynchronousTestCase):
    """
    L{BodyProducer} writes a complete body in chunks and honours pause,
    resume and stop.
    """

    body = bytes(range(256)) * 1000  # 256,000 bytes

    def check(self, producer: BodyProducer) -> None:
        self.assertEqual(producer.length, len(self.body))
        consumer = RecordingConsumer()
        d = producer.startProducing(consumer)
        self.successResultOf(d)
        self.assertEqual(b"".join(consumer.data), self.body)
        self.assertTrue(all(len(c) <= producer.chunkSize for c in consumer.data))

    def test_bytes(self) -> None:
        self.check(BodyProducer(self.body))

    def test_bytesIO(self) -> None:
        self.check(BodyProducer(io.BytesIO(self.body)))

    def test_temporaryFile(self) -> None:
        """
        A temporary file is read at explicit offsets: moving its position
        meanwhile changes nothing.
        """
        with tempfile.TemporaryFile() as f:
            f.write(self.body)
            f.seek(1234)
            producer = BodyProducer(f, chunkSize=1000)
            consumer = RecordingConsumer(pauseEvery=True)
            consumer.producer = producer
            d = producer.startProducing(consumer)
            f.seek(5)
            while not d.called:
                producer.resumeProducing()
            self.assertEqual(b"".join(consumer.data), self.body)

    def test_pauseResume(self) -> None:
        """
        A paused producer writes nothing more until resumed; the Deferred
        fires after the last byte.
        """
        producer = BodyProducer(self.body, chunkSize=100_000)
        consumer = RecordingConsumer(pauseEvery=True)
        consumer.producer = producer
        d = producer.startProducing(consumer)
        self.assertEqual(len(consumer.data), 1)
        self.assertNoResult(d)
        producer.resumeProducing()
        self.assertEqual(len(consumer.data), 2)
        producer.resumeProducing()
        self.assertEqual(len(consumer.data), 3)
        self.successResultOf(d)
        self.assertEqual(b"".join(consumer.data), self.body)

    def test_stop(self) -> None:
        """
        After C{stopProducing} nothing more is written and the Deferred
        never fires.
        """
        producer = BodyProducer(self.body, chunkSize=100_000)
        consumer = RecordingConsumer(pauseEvery=True)
        consumer.producer = producer
        d = producer.startProducing(consumer)
        producer.stopProducing()
        producer.resumeProducing()
        self.assertEqual(len(consumer.data), 1)
        self.assertNoResult(d)

    def test_restart(self) -> None:
        """
        Starting again (a retry) sends the whole body again.
        """
        producer = BodyProducer(io.BytesIO(self.body), chunkSize=100_000)
        first = RecordingConsumer(pauseEvery=True)
        first.producer = producer
        producer.startProducing(first)
        second = RecordingConsumer()
        self.successResultOf(producer.startProducing(second))
        self.assertEqual(b"".join(second.data), self.body)

    def test_shortFile(self) -> None:
        """
        A file shorter than the announced length fails the Deferred.
        """
        producer = BodyProducer(io.BytesIO(b"abc"), length=10)
        self.failureResultOf(producer.startProducing(RecordingConsumer()), ValueError)

    def test_closedFile(self) -> None:
        """
        A file closed underneath (the client went away) fails the Deferred.
        (A C{BytesIO}, twisted.web's small bodies, is read at once.)
        """
        f = tempfile.TemporaryFile()
        f.write(self.body)
        self.addCleanup(f.close)
        producer = BodyProducer(f, chunkSize=1000)
        consumer = RecordingConsumer(pauseEvery=True)
        consumer.producer = producer
        d = producer.startProducing(consumer)
        f.close()
        producer.resumeProducing()
        self.failureResultOf(d, ValueError)
