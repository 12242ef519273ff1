"""
Tests for L{llamaswap.config.ggufsize}: estimates from real GGUF files
written by the C{gguf} package (the writer llama.cpp's converters use).
"""

from __future__ import annotations

import io
import os

from gguf import GGUFWriter
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.ggufsize import (
    OVERHEAD,
    GGUFError,
    estimateCommand,
    estimateFile,
    kvCacheBytes,
    modelPathOf,
    readHeader,
    splitParts,
)
from test.integration.gguf import N_CTX, N_EMBD, N_LAYER, writeTinyModel


def writeGQA(path: str, *, layers: int = 4, heads: int = 8, headsKV: int = 2) -> str:
    """
    A header-only model with grouped-query attention, a big string array
    (the vocabulary) before the keys the estimate needs, and no tensors.
    """
    writer = GGUFWriter(path, "qwen2")
    writer.add_token_list([f"tok{i}".encode() for i in range(5000)])
    writer.add_token_scores([0.0] * 5000)
    writer.add_context_length(32768)
    writer.add_embedding_length(1024)
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(headsKV)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


class HeaderTests(SynchronousTestCase):
    """
    L{readHeader} reads the needed keys and skips everything else.
    """

    def test_tinyModel(self) -> None:
        path = writeTinyModel(self.mktemp() + ".gguf", 1, name="tiny")
        with open(path, "rb") as stream:
            header = readHeader(stream)
        self.assertEqual(header["arch"], "llama")
        self.assertEqual(header["llama.block_count"], N_LAYER)
        self.assertEqual(header["llama.embedding_length"], N_EMBD)
        self.assertEqual(header["llama.context_length"], N_CTX)

    def test_skipsArrays(self) -> None:
        path = writeGQA(self.mktemp())
        with open(path, "rb") as stream:
            header = readHeader(stream)
        self.assertEqual(header["qwen2.attention.head_count_kv"], 2)
        self.assertNotIn("tokenizer.ggml.tokens", header)

    def test_notGGUF(self) -> None:
        for data in (b"", b"GGML\x03\x00\x00\x00", b"GGUF\x09\x00\x00\x00", b"GGUF\x03\x00"):
            with self.assertRaises(GGUFError):
                readHeader(io.BytesIO(data))


class EstimateTests(SynchronousTestCase):
    """
    L{estimateFile} adds weights, KV cache and overhead.
    """

    def test_kvCacheGQA(self) -> None:
        """
        K and V widths are head_count_kv x head size, per layer, f16.
        """
        path = writeGQA(self.mktemp(), layers=4, heads=8, headsKV=2)
        estimate = estimateFile(path, 1000)
        headSize = 1024 // 8
        self.assertEqual(estimate.kvCache, 4 * 2 * (2 * headSize) * 2 * 1000)
        self.assertEqual(estimate.context, 1000)

    def test_defaultContextIsTheModels(self) -> None:
        path = writeGQA(self.mktemp())
        self.assertEqual(estimateFile(path).context, 32768)

    def test_cacheTypes(self) -> None:
        path = writeGQA(self.mktemp())
        f16 = estimateFile(path, 4096).kvCache
        q8 = estimateFile(path, 4096, typeK="q8_0", typeV="q8_0").kvCache
        self.assertEqual(q8, int(f16 / 2 * 34 / 32))

    def test_tinyModel(self) -> None:
        path = writeTinyModel(self.mktemp() + ".gguf", 1, name="tiny")
        estimate = estimateFile(path, 512)
        size = os.path.getsize(path)
        self.assertEqual(estimate.weights, size)
        self.assertEqual(estimate.kvCache, N_LAYER * 2 * N_EMBD * 2 * 512)
        self.assertEqual(estimate.overhead, OVERHEAD + int(size * 0.05))
        self.assertEqual(estimate.total, estimate.weights + estimate.kvCache + estimate.overhead)

    def test_splitAndMMProj(self) -> None:
        """
        Every part of a split model counts, and so does the projector.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        first = writeGQA(os.path.join(directory, "big-00001-of-00002.gguf"))
        second = os.path.join(directory, "big-00002-of-00002.gguf")
        with open(second, "wb") as f:
            f.write(b"x" * 1000)
        mmproj = os.path.join(directory, "mmproj-big.gguf")
        with open(mmproj, "wb") as f:
            f.write(b"y" * 500)
        self.assertEqual(splitParts(first), [first, second])
        estimate = estimateFile(first, 16, extra=[mmproj])
        self.assertEqual(estimate.weights, os.path.getsize(first) + 1000 + 500)


class CommandTests(SynchronousTestCase):
    """
    L{estimateCommand} reads the model, context and cache types from argv.
    """

    def test_options(self) -> None:
        path = writeGQA(self.mktemp() + ".gguf")
        argv = ["llama-server", "--port", "1", "-m", path, "--ctx-size=2048", "-ctk", "q8_0"]
        estimate = estimateCommand(argv)
        assert estimate is not None
        self.assertEqual(estimate.context, 2048)
        self.assertEqual(estimate, estimateFile(path, 2048, typeK="q8_0"))
        self.assertEqual(estimateCommand(["x", "--model", path, "-c", "0"]), estimateFile(path))

    def test_noModel(self) -> None:
        self.assertIsNone(modelPathOf(["vllm", "serve", "org/model"]))
        self.assertIsNone(estimateCommand(["vllm", "serve", "org/model"]))
        self.assertIsNone(estimateCommand(["llama-server", "-m", "/nonexistent/x.gguf"]))
        bad = self.mktemp() + ".gguf"
        with open(bad, "wb") as f:
            f.write(b"not gguf")
        self.assertIsNone(estimateCommand(["llama-server", "-m", bad]))

    def test_kvCacheBytesEmptyHeader(self) -> None:
        self.assertEqual(kvCacheBytes({}, 4096), 0)
