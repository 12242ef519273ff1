# -*- test-case-name: test.integration.test_through_llamaswap -*-
"""
llamaswap configurations whose models are real C{llama-server} processes
serving L{writeTinyModel} models, for the integration tests and
C{bench/swap_real.py}.

Each model is named with C{--alias}, which llama-server reports in
C{/v1/models}, C{/props} and every response's C{model} field, so a test
sees which server answered.  Every server gets one thread and one slot
(C{--threads 1 --parallel 1}): the models are tiny, and several tests may
run at once on a small machine.
"""

from __future__ import annotations

import json
import os
import random
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path

from attrs import frozen

from .gguf import writeTinyModel
from .llamaserver import findLlamaServer

#: Flags every server gets, before the model's own (later flags win).
COMMON_ARGS: tuple[str, ...] = ("--threads", "1", "--parallel", "1")


@frozen
class RealModel:
    """
    One model of a configuration.

    @ivar id: the model ID, also its C{--alias} and file name.
    @ivar seed: L{writeTinyModel}'s seed (different seeds, different models).
    @ivar ctx: C{-c}, the context size.
    @ivar embeddings: serve C{/v1/embeddings} (C{--embeddings} and a model
        declaring mean pooling).
    @ivar args: more llama-server flags.
    """

    id: str
    seed: int
    ctx: int = 256
    embeddings: bool = False
    args: tuple[str, ...] = ()


#: Three chat models and one embedding model.
STANDARD_MODELS: tuple[RealModel, ...] = (
    RealModel("alpha", 11),
    RealModel("beta", 12),
    RealModel("gamma", 13),
    RealModel("embed", 14, embeddings=True),
)


#: Ports llamaswap hands out here lie below Linux's ephemeral range
#: (32768-60999), where the tests' own client connections take their local
#: ports: llama-server could not bind a port one of them holds.
PORT_RANGE = (20000, 32000)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def freePortRun(count: int, attempts: int = 200) -> int:
    """
    The first of C{count} consecutive ports on 127.0.0.1, all free a moment
    ago, picked at random in L{PORT_RANGE} (not llamaswap's default 5800,
    which concurrent test runs would share).  C{${PORT}} gives each model
    of a configuration the next port, in model order.
    """
    low, high = PORT_RANGE
    rng = random.Random()
    for _ in range(attempts):
        start = rng.randrange(low, high - count)
        if all(_bindable(start + i) for i in range(count)):
            return start
    raise RuntimeError(f"no {count} consecutive free ports in {PORT_RANGE}")


def commandFor(binary: str, model: RealModel, path: str) -> str:
    """
    The model's C{cmd}: llama-server on llamaswap's C{${PORT}}.
    """
    argv = [
        binary, "--port", "${PORT}", "--host", "127.0.0.1",
        "-m", path, "--alias", model.id, "-c", str(model.ctx),
        *COMMON_ARGS,
    ]
    if model.embeddings:
        argv.append("--embeddings")
    argv.extend(model.args)
    for word in argv:
        if any(c.isspace() or c in "\"'\\" for c in word):
            raise ValueError(f"cannot put {word!r} in a cmd; use a plainer path")
    return " ".join(argv)


def realConfig(
    directory: os.PathLike | str,
    models: Sequence[RealModel] = STANDARD_MODELS,
    *,
    binary: str | None = None,
    startPort: int | None = None,
    proxyHost: str | None = None,
    extra: str = "",
) -> str:
    """
    Write each model's GGUF file into C{directory} and return the YAML of
    a configuration serving them (one swap group: one model at a time).

    @param binary: llama-server (default: L{findLlamaServer}, which fails
        with build instructions when there is none).
    @param startPort: the first C{${PORT}}; default L{freePortRun}.
    @param proxyHost: when given, each model's C{proxy} is
        C{http://<proxyHost>:${PORT}} instead of llamaswap's default
        C{http://localhost:${PORT}}.
    @param extra: more top-level YAML, appended.
    """
    if binary is None:
        binary = findLlamaServer()
    if startPort is None:
        startPort = freePortRun(len(models))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"startPort: {startPort}", "models:"]
    for model in models:
        path = writeTinyModel(
            directory / f"{model.id}.gguf", model.seed, name=model.id,
            embeddings=model.embeddings,
        )
        lines.append(f"  {model.id}:")
        lines.append(f"    cmd: {json.dumps(commandFor(binary, model, path))}")
        if proxyHost is not None:
            lines.append(f"    proxy: http://{proxyHost}:${{PORT}}")
    return "\n".join(lines) + "\n" + extra


def llamaServerEnviron(environ: dict | None = None) -> dict:
    """
    C{environ} (default the process's) without C{LLAMA_ARG_*}, so a
    developer's environment cannot change the servers' flags.
    """
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if not k.startswith("LLAMA_ARG_")}


__all__: Iterable[str] = [
    "COMMON_ARGS",
    "STANDARD_MODELS",
    "RealModel",
    "commandFor",
    "freePortRun",
    "llamaServerEnviron",
    "realConfig",
]
