"""
Tests for L{llamaswap.config.discover}: a folder of GGUF files becomes
models, with no configuration.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.discover import (
    DiscoveredModel,
    applyModelsDir,
    discoverModels,
    listGGUF,
    modelCommand,
)
from llamaswap.config.errors import ConfigError, Problems
from llamaswap.config.load import loadConfig, loadConfigText
from llamaswap.config.model import DEFAULT_MODELS_DIR_CMD


class DiscoverTests(SynchronousTestCase):
    """
    L{discoverModels} over listings.
    """

    def test_table(self) -> None:
        models, warnings = discoverModels(
            [
                "qwen.gguf",
                "big-00001-of-00003.gguf",
                "big-00002-of-00003.gguf",
                "big-00003-of-00003.gguf",
                "vision/llava.gguf",
                "vision/mmproj-llava.gguf",
                "notes.txt",
                "other/qwen.gguf",
            ]
        )
        self.assertEqual(
            models,
            {
                "qwen": DiscoveredModel("qwen", "other/qwen.gguf"),
                "big": DiscoveredModel("big", "big-00001-of-00003.gguf"),
                "llava": DiscoveredModel("llava", "vision/llava.gguf", "vision/mmproj-llava.gguf"),
            },
        )
        self.assertEqual(len(warnings), 1)
        self.assertIn("qwen.gguf: model qwen is already other/qwen.gguf", warnings[0])

    def test_mmprojOnlyModel(self) -> None:
        """
        A projector whose name matches no model goes to the only model of
        its directory, and to none when there are several.
        """
        one, _ = discoverModels(["a/gemma-3-4b.gguf", "a/mmproj-F16.gguf"])
        self.assertEqual(one["gemma-3-4b"].mmproj, "a/mmproj-F16.gguf")
        two, _ = discoverModels(["x.gguf", "y.gguf", "mmproj-F16.gguf"])
        self.assertEqual({m.mmproj for m in two.values()}, {None})
        # Of two projectors for one model, the first in sorted order.
        pair, _ = discoverModels(["m.gguf", "mmproj-m-f16.gguf", "mmproj-m-f32.gguf"])
        self.assertEqual(pair["m"].mmproj, "mmproj-m-f16.gguf")

    def test_command(self) -> None:
        model = DiscoveredModel("m", "sub dir/m.gguf", "sub dir/mmproj-m.gguf")
        self.assertEqual(
            modelCommand(DEFAULT_MODELS_DIR_CMD, "/models", model),
            "llama-server --port ${PORT} --model '/models/sub dir/m.gguf'"
            " --mmproj '/models/sub dir/mmproj-m.gguf'",
        )
        self.assertEqual(
            modelCommand("vllm serve ${MODEL_PATH} --port ${PORT}", "/models", model),
            "vllm serve '/models/sub dir/m.gguf' --port ${PORT}",
        )


class FolderTests(SynchronousTestCase):
    """
    Real folders through L{listGGUF}, L{applyModelsDir} and the loader.
    """

    def setUp(self) -> None:
        self.root = self.mktemp()
        os.makedirs(os.path.join(self.root, "sub"))
        os.makedirs(os.path.join(self.root, ".cache"))
        for name in ("a.gguf", "sub/b.gguf", ".cache/c.gguf", "sub/readme.md", ".hidden.gguf"):
            with open(os.path.join(self.root, name), "wb") as f:
                f.write(b"GGUF")
        bin = os.path.abspath(self.mktemp())
        os.makedirs(bin)
        for program in ("llama-server", "srv", "mine", "other"):
            path = os.path.join(bin, program)
            with open(path, "w") as f:
                f.write("#!/bin/sh\n")
            os.chmod(path, 0o755)
        self.environ = {"PATH": bin}

    def test_listing(self) -> None:
        self.assertEqual(sorted(listGGUF(self.root)), ["a.gguf", "sub/b.gguf"])
        with self.assertRaises(OSError):
            listGGUF(os.path.join(self.root, "missing"))

    def test_noConfig(self) -> None:
        """
        C{--models-dir} alone is a whole configuration.
        """
        config = loadConfig(None, None, self.environ, modelsDir=self.root).config
        self.assertEqual(sorted(config.models), ["a", "b"])
        a = config.models["a"]
        self.assertTrue(a.cmd.startswith("llama-server --port 5800 --model "), a.cmd)
        self.assertTrue(a.cmd.endswith("/a.gguf"), a.cmd)
        self.assertEqual(a.proxy, "http://localhost:5800")
        assert config.modelsDir is not None
        self.assertEqual(config.modelsDir.path, self.root)

    def test_explicitWins(self) -> None:
        text = (
            f"modelsDir: {{path: {self.root}, cmd: 'srv --port ${{PORT}} -m ${{MODEL_PATH}}'}}\n"
            "models:\n"
            "  a: {cmd: 'mine --port ${PORT}'}\n"
            "  z: {cmd: 'other --port ${PORT}', aliases: [b]}\n"
        )
        config = loadConfigText(text, "c.yaml", self.environ).config
        self.assertEqual(sorted(config.models), ["a", "z"])
        self.assertTrue(config.models["a"].cmd.startswith("mine "))

    def test_customTemplate(self) -> None:
        text = f"modelsDir: {{path: {self.root}, cmd: 'srv --port ${{PORT}} -m ${{MODEL_PATH}}'}}\n"
        problems = Problems()
        tree, settings = applyModelsDir(
            {"modelsDir": {"path": self.root, "cmd": "srv -m ${MODEL_PATH}"}},
            problems,
            which=lambda name: "/bin/srv",
        )
        self.assertNotIn("modelsDir", tree)
        self.assertEqual(sorted(tree["models"]), ["a", "b"])
        self.assertIn("/sub/b.gguf", tree["models"]["b"]["cmd"])
        self.assertFalse(problems.hasErrors())
        self.assertIsNotNone(loadConfigText(text, "c.yaml", self.environ))

    def test_serverMissing(self) -> None:
        """
        A clear error when the server is not on PATH, naming the key.
        """
        problems = Problems()
        applyModelsDir({"modelsDir": self.root}, problems, which=lambda name: None)
        [error] = problems.errors
        self.assertEqual(error.path, ("modelsDir",))
        self.assertIn("llama-server was not found on PATH", error.message)

    def test_emptyFolder(self) -> None:
        """
        A folder without models loads, with a warning saying so.
        """
        empty = self.mktemp()
        os.makedirs(empty)
        loaded = loadConfig(None, None, self.environ, modelsDir=empty)
        self.assertEqual(dict(loaded.config.models), {})
        self.assertIn("no *.gguf models found", str(loaded.warnings[0]))

    def test_badModelsStillReported(self) -> None:
        """
        A C{models} that is not a mapping is reported, not replaced by the
        discovered models.
        """
        with self.assertRaises(ConfigError) as caught:
            loadConfigText(f"modelsDir: {self.root}\nmodels: [a]\n", "c.yaml", self.environ)
        self.assertIn("models must be a mapping", str(caught.exception))

    def test_missingFolder(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            loadConfig(None, None, self.environ, modelsDir=os.path.join(self.root, "nope"))
        self.assertIn("modelsDir", str(caught.exception))
        self.assertIn("not a directory", str(caught.exception))

    def test_watchSetting(self) -> None:
        """
        C{modelsDir.watch} (default true) says whether the folder is
        watched; anything but a boolean is an error naming the key.
        """
        config = loadConfigText(f"modelsDir: {self.root}\n", "c.yaml", self.environ).config
        assert config.modelsDir is not None
        self.assertTrue(config.modelsDir.watch)
        text = f"modelsDir: {{path: {self.root}, watch: false}}\n"
        config = loadConfigText(text, "c.yaml", self.environ).config
        assert config.modelsDir is not None
        self.assertFalse(config.modelsDir.watch)
        with self.assertRaises(ConfigError) as caught:
            loadConfigText(
                f"modelsDir: {{path: {self.root}, watch: sometimes}}\n", "c.yaml", self.environ
            )
        self.assertIn("modelsDir.watch: must be true or false", str(caught.exception))
