# -*- test-case-name: test.test_demo -*-
"""
Pure helpers for the demo upstream: deterministic "generated" text, crude
token counting, prompt extraction, embedding vectors and llama.cpp-style
timings.

Nothing here touches the reactor, the clock or the network, so every function
is a plain input-to-output mapping that tests can check directly.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from typing import Any

WORDS: tuple[str, ...] = (
    "llama",
    "swap",
    "token",
    "stream",
    "model",
    "alpaca",
    "vicuna",
    "reactor",
    "deferred",
    "quantized",
    "context",
    "prompt",
    "sampler",
    "kernel",
    "tensor",
    "cache",
)

_PIECE = re.compile(r"\s*\S+|\s+")
_TOKEN = re.compile(r"\w+|[^\w\s]")

NOMINAL_PROMPT_MS_PER_TOKEN = 0.2
"""
Simulated prompt processing time per token (5000 tokens/s), used for
C{prompt_ms} because the demo does no real prompt processing.
"""

NOMINAL_PREDICTED_MS_PER_TOKEN = 1.0
"""
Lower bound for generation time per token, so rates stay finite when
C{--token-delay} is 0.
"""


def splitText(text: str) -> list[str]:
    """
    Split fixed response text into streamable pieces, one "token" each.

    Each piece is a word with the whitespace before it, plus possibly one
    trailing whitespace-only piece, so that C{"".join(splitText(t)) == t}.

    @param text: The text to split.
    @return: The pieces, empty for empty text.
    """
    return _PIECE.findall(text)


def generateWords(seedText: str, count: int) -> list[str]:
    """
    Produce C{count} deterministic word pieces that depend on C{seedText}.

    The first piece has no leading space and the rest do, so joining them gives
    readable text.

    @param seedText: Text (usually the prompt) that selects the words.
    @param count: How many pieces to produce.
    @return: The pieces.
    """
    digest = hashlib.sha256(seedText.encode("utf-8", "replace")).digest()
    pieces = []
    for index in range(count):
        word = WORDS[(digest[index % len(digest)] + index) % len(WORDS)]
        pieces.append(word if index == 0 else " " + word)
    return pieces


def countTokens(text: str) -> int:
    """
    Approximate a tokenizer: every word and every punctuation mark is one token.

    @param text: The text to count.
    @return: The number of tokens, at least 1 for any input (a real model
        always sees a beginning-of-sequence token).
    """
    return max(1, len(_TOKEN.findall(text)))


def contentText(content: Any) -> str:
    """
    Extract the text from an OpenAI or Anthropic message C{content} value.

    @param content: A string, a list of content parts (dicts with a C{text}
        key, or strings), or anything else (ignored).
    @return: The text parts joined by newlines.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


def messagesText(messages: list[Any], system: Any = None) -> str:
    """
    Flatten a chat transcript (OpenAI or Anthropic) to plain text.

    @param messages: The C{messages} list of the request.
    @param system: An Anthropic-style top-level C{system} value, if any.
    @return: The text of the system prompt and every message, one per line.
    """
    lines = []
    if system is not None:
        lines.append(contentText(system))
    for message in messages:
        if isinstance(message, dict):
            lines.append(contentText(message.get("content")))
    return "\n".join(lines)


def promptText(prompt: Any) -> str:
    """
    Flatten a C{/v1/completions} C{prompt} to text.

    @param prompt: A string, a list of strings, a list of token ids, or a list
        of token-id lists; token ids become one word each so they count as one
        token each.
    @return: The text.
    """
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n".join(promptText(item) for item in prompt)
    if isinstance(prompt, (int, float)) and not isinstance(prompt, bool):
        return str(prompt)
    return ""


def embeddingVector(text: str, dimensions: int) -> list[float]:
    """
    Derive a deterministic unit-length vector from C{text}.

    @param text: The input to embed.
    @param dimensions: The vector length.
    @return: C{dimensions} floats with Euclidean norm 1 (the same text always
        gives the same vector).
    """
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(
            b"%d:" % (counter,) + text.encode("utf-8", "replace")
        ).digest()
        for (word,) in struct.iter_unpack(">H", block):
            values.append(word / 32767.5 - 1.0)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def timings(promptN: int, predictedN: int, predictedMs: float) -> dict[str, Any]:
    """
    Build a llama.cpp-style C{timings} object.

    @param promptN: Prompt tokens processed.
    @param predictedN: Tokens generated.
    @param predictedMs: Measured generation time in milliseconds; raised to
        L{NOMINAL_PREDICTED_MS_PER_TOKEN} per token if smaller.
    @return: The object with C{prompt_*}, C{predicted_*} and C{cache_n} fields.
    """
    promptMs = promptN * NOMINAL_PROMPT_MS_PER_TOKEN
    predictedMs = max(predictedMs, predictedN * NOMINAL_PREDICTED_MS_PER_TOKEN)

    def perToken(ms: float, n: int) -> float:
        return ms / n if n else 0.0

    def perSecond(ms: float, n: int) -> float:
        return 1000.0 * n / ms if ms else 0.0

    return {
        "cache_n": 0,
        "prompt_n": promptN,
        "prompt_ms": promptMs,
        "prompt_per_token_ms": perToken(promptMs, promptN),
        "prompt_per_second": perSecond(promptMs, promptN),
        "predicted_n": predictedN,
        "predicted_ms": predictedMs,
        "predicted_per_token_ms": perToken(predictedMs, predictedN),
        "predicted_per_second": perSecond(predictedMs, predictedN),
    }
