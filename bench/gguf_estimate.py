"""
Benchmark of the memory estimate's GGUF header read: how long
C{llamaswap.config.ggufsize.estimateFile} takes on a header shaped like a
real model's (a vocabulary of C{--vocab} strings, its scores and types,
and as many BPE merges), since every configuration load estimates every
model without C{memory}.  Not a test.

The file is written once into a temporary folder with the C{gguf}
package (header only, no tensors) and removed afterwards.

Run: python bench/gguf_estimate.py [--vocab 152000] [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from gguf import GGUFWriter  # noqa: E402

from bench.common import percentiles  # noqa: E402
from llamaswap.config.ggufsize import estimateFile  # noqa: E402


def writeHeader(path: str, vocab: int) -> None:
    writer = GGUFWriter(path, "qwen2")
    writer.add_context_length(32768)
    writer.add_embedding_length(3584)
    writer.add_block_count(28)
    writer.add_head_count(28)
    writer.add_head_count_kv(4)
    writer.add_token_list([f"tok{i}".encode() for i in range(vocab)])
    writer.add_token_scores([0.0] * vocab)
    writer.add_token_types([1] * vocab)
    writer.add_token_merges([f"t{i} k{i}" for i in range(vocab)])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--vocab", type=int, default=152000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.gguf")
        writeHeader(path, args.vocab)
        size = os.path.getsize(path)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            estimate = estimateFile(path, 8192)
            times.append(time.perf_counter() - start)
    print(f"header {size / 1e6:.1f} MB, vocabulary {args.vocab} strings + {args.vocab} merges")
    print(f"estimate (KV cache {estimate.kvCache} bytes at 8192 tokens): {percentiles(times)}")


if __name__ == "__main__":
    main()
