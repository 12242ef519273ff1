"""
Write tiny, deterministic llama-architecture GGUF models for tests.

The models are random (they produce gibberish) but structurally valid, so a
real ``llama-server`` loads them in well under a second and serves every
endpoint llamaswap proxies: chat/completions (streamed or not), completions,
responses, Anthropic messages, and embeddings.

Shape: n_embd 64, 2 layers, 4 heads, n_ff 128, F32 weights, and an SPM
(sentencepiece-style) vocabulary of ``<unk>``, ``<s>``, ``</s>``, the 256
``<0xNN>`` byte tokens and a few dozen word pieces -- about 0.5 MB on disk.

Different ``seed``/``name`` values give different files (weights and
``general.name`` metadata).  llama-server reports a model by its path (or
``--alias``) in ``/v1/models`` and ``/props``, so write each model to a file
named after it to make a swap observable.  The same arguments always give
byte-identical files.

Requires the ``gguf`` and ``numpy`` packages.
"""

from __future__ import annotations

import os
from typing import List, Tuple, Union

import numpy as np
from gguf import GGUFWriter, PoolingType, TokenType

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_FF = 128
N_CTX = 2048

#: A simple ChatML template, so the chat endpoints work without
#: ``--chat-template``.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORDS = (
    "hello world the a an of to and is it you I we model swap llama"
    " proxy server test yes no ok one two three"
).split()


def _vocabulary() -> List[Tuple[str, float, TokenType]]:
    """
    Build an SPM vocabulary with no duplicate token texts (llama.cpp aborts
    on duplicates).
    """
    vocab: List[Tuple[str, float, TokenType]] = [
        ("<unk>", 0.0, TokenType.UNKNOWN),
        ("<s>", 0.0, TokenType.CONTROL),
        ("</s>", 0.0, TokenType.CONTROL),
    ]
    vocab += [(f"<0x{b:02X}>", 0.0, TokenType.BYTE) for b in range(256)]
    pieces = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["\u2581" + w for w in _WORDS]
    seen = {text for text, _, _ in vocab}
    for piece in pieces:
        if piece in seen:
            continue
        seen.add(piece)
        # SPM merges prefer higher scores; longer pieces score higher.
        vocab.append((piece, -1000.0 + len(piece), TokenType.NORMAL))
    return vocab


def writeTinyModel(
    path: Union[str, os.PathLike],
    seed: int,
    *,
    name: str,
    embeddings: bool = False,
) -> str:
    """
    Write a tiny random llama model to C{path} and return C{path} as a str.

    @param seed: Seeds the weights; the same arguments give identical bytes.
    @param name: Stored as C{general.name} (llama-server itself shows the
        file path or C{--alias}; name the file after the model).
    @param embeddings: Also declare mean pooling, so C{/v1/embeddings} works
        on a server started with C{--embeddings} without C{--pooling}.
    """
    path = os.fspath(path)
    rng = np.random.default_rng(seed)
    vocab = _vocabulary()
    n_vocab = len(vocab)

    writer = GGUFWriter(path, "llama")
    writer.add_name(name)
    writer.add_description(f"llamaswap tiny test model (seed {seed})")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(0)  # ALL_F32
    if embeddings:
        writer.add_pooling_type(PoolingType.MEAN)

    writer.add_tokenizer_model("llama")
    writer.add_token_list([text.encode("utf-8") for text, _, _ in vocab])
    writer.add_token_scores([score for _, score, _ in vocab])
    writer.add_token_types([int(kind) for _, _, kind in vocab])
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    def weight(*shape: int) -> np.ndarray:
        # numpy shape is (rows, cols) = reversed ggml ne.
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    writer.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"{blk}.attn_q.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"{blk}.attn_k.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"{blk}.attn_v.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"{blk}.attn_output.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"{blk}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_down.weight", weight(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", ones(N_EMBD))
    writer.add_tensor("output.weight", weight(n_vocab, N_EMBD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
