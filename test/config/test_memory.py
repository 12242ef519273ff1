"""
Tests for L{llamaswap.config.memory}: the memory and keep-alive keys, as
loaded from YAML, and the finishing step (auto budget, devices,
estimates).
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.devices import POOL
from llamaswap.config.errors import ConfigError, Problems
from llamaswap.config.load import loadConfigText
from llamaswap.config.memory import describeMemory, finishMemory
from llamaswap.config.model import Config, MemoryConfig, ModelConfig, RequestTTLConfig
from test.integration.gguf import writeTinyModel

GiB = 1024**3


def load(text: str) -> Config:
    return loadConfigText(text, "config.yaml").config


def errors(text: str) -> list[str]:
    try:
        loadConfigText(text, "config.yaml")
    except ConfigError as e:
        return [str(p) for p in e.errors]
    raise AssertionError("loaded")


class KeysTests(SynchronousTestCase):
    """
    C{memoryBudget}, C{memoryReserve}, C{requestTTL}, C{memory}, C{devices}.
    """

    def test_defaults(self) -> None:
        config = load("models: {a: {cmd: 'x --port ${PORT}'}}")
        self.assertEqual(config.memory, MemoryConfig())
        self.assertFalse(config.memory.enabled)
        self.assertEqual(config.requestTTL, RequestTTLConfig(enabled=True, max=0))
        self.assertIsNone(config.models["a"].memory)
        self.assertEqual(config.models["a"].devices, ())

    def test_sizes(self) -> None:
        config = load(
            "memoryBudget: 24GiB\n"
            "models:\n"
            "  a: {cmd: 'x --port ${PORT}', memory: 6GiB}\n"
            "  b: {cmd: 'x --port ${PORT}', memory: 1500000000}\n"
        )
        self.assertEqual(dict(config.memory.budget), {POOL: 24 * GiB})
        self.assertTrue(config.memory.enabled)
        self.assertEqual(config.models["a"].memory, 6 * GiB)
        self.assertEqual(config.models["b"].memoryNeed, 1_500_000_000)

    def test_perDevice(self) -> None:
        config = load(
            "memoryBudget: {gpu0: 24GiB, gpu1: 16GiB}\n"
            "models:\n"
            "  a: {cmd: 'x --port ${PORT}', memory: 6GiB, devices: [gpu1]}\n"
        )
        self.assertEqual(dict(config.memory.budget), {"gpu0": 24 * GiB, "gpu1": 16 * GiB})
        self.assertEqual(config.models["a"].devices, ("gpu1",))

    def test_errorsNameKeyPaths(self) -> None:
        found = errors(
            "memoryBudget: {gpu0: lots}\n"
            "requestTTL: {max: forever}\n"
            "models:\n"
            "  a: {cmd: 'x --port ${PORT}', memory: big, devices: [gpu7]}\n"
        )
        joined = "\n".join(found)
        self.assertIn("memoryBudget.gpu0", joined)
        self.assertIn("requestTTL.max", joined)
        self.assertIn("models.a.memory", joined)
        self.assertIn("config.yaml:", joined)

    def test_zeroBudget(self) -> None:
        [found] = errors("memoryBudget: 0GiB\n")
        self.assertIn("memoryBudget: must be more than 0", found)

    def test_unknownDevice(self) -> None:
        found = errors(
            "memoryBudget: {gpu0: 24GiB}\nmodels:\n  a: {cmd: 'x --port ${PORT}', devices: [gpu7]}\n"
        )
        self.assertEqual(len(found), 1)
        self.assertIn("models.a.devices[0]", found[0])
        self.assertIn("unknown device 'gpu7' (memoryBudget has: gpu0)", found[0])

    def test_requestTTL(self) -> None:
        self.assertEqual(load("requestTTL: false").requestTTL, RequestTTLConfig(enabled=False))
        self.assertEqual(load("requestTTL: {max: 1h}").requestTTL, RequestTTLConfig(max=3600))
        self.assertEqual(
            load("requestTTL: {enabled: true, max: 600}").requestTTL, RequestTTLConfig(max=600)
        )


class FinishTests(SynchronousTestCase):
    """
    L{finishMemory}: auto budgets, estimates.
    """

    def test_auto(self) -> None:
        config = Config(memory=MemoryConfig(auto=True, reserve=GiB))
        problems = Problems()
        finished = finishMemory(config, problems, detect=lambda: ({"gpu0": 8 * GiB}, "nvidia-smi"))
        self.assertEqual(dict(finished.memory.budget), {"gpu0": 7 * GiB})
        self.assertFalse(problems.hasErrors())

    def test_reserveTooBig(self) -> None:
        problems = Problems()
        finishMemory(
            Config(memory=MemoryConfig(auto=True, reserve=8 * GiB)),
            problems,
            detect=lambda: ({"gpu0": 8 * GiB}, "nvidia-smi"),
        )
        [error] = problems.errors
        self.assertEqual(error.path, ("memoryReserve",))
        self.assertIn("leaves nothing of gpu0's 8.0 GiB (nvidia-smi)", error.message)

    def test_autoFindsNothing(self) -> None:
        problems = Problems()
        finishMemory(Config(memory=MemoryConfig(auto=True)), problems, detect=lambda: ({}, ""))
        self.assertIn("auto found no", str(problems.errors[0]))

    def test_estimates(self) -> None:
        """
        A model loading a GGUF file without C{memory} gets an estimate;
        C{memory} wins; check-config's description says which.
        """
        path = writeTinyModel(self.mktemp() + ".gguf", 1, name="tiny")
        config = load(
            "models:\n"
            f"  est: {{cmd: 'llama-server --port ${{PORT}} -m {path} -c 512'}}\n"
            f"  set: {{cmd: 'llama-server --port ${{PORT}} -m {path}', memory: 1GiB}}\n"
            "  none: {cmd: 'vllm serve x --port ${PORT}'}\n"
        )
        estimated = config.models["est"].estimatedMemory
        assert estimated is not None
        self.assertGreater(estimated, os.path.getsize(path))
        self.assertIsNone(config.models["set"].estimatedMemory)
        self.assertEqual(config.models["set"].memoryNeed, GiB)
        self.assertIsNone(config.models["none"].memoryNeed)
        self.assertIn("(estimated)", describeMemory(config.models["est"]))
        self.assertEqual(describeMemory(config.models["set"]), "1.0 GiB")
        self.assertEqual(describeMemory(ModelConfig(id="x")), "unknown")
