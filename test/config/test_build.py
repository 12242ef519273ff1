"""
Tests for L{llamaswap.config.build}: every default, immutability, and
the whole loading pipeline end to end.

Each section's rules are tested next to its decoder (C{test_decode_*},
C{test_sections}, C{test_goformats}).
"""

from __future__ import annotations

import re
from textwrap import dedent
from typing import Any

from llamaswap.config.build import buildConfig
from llamaswap.config.errors import Problems
from llamaswap.config.model import (
    DEFAULT_GROUP_ID,
    Config,
    FrozenDict,
    GroupConfig,
    HooksConfig,
    ModelConfig,
    RoutingConfig,
    Timeouts,
)

from .helpers import MODELS, BuildTestCase


class DefaultsTests(BuildTestCase):
    """
    Every default of the global and per-model keys.
    """

    def test_emptyConfig(self) -> None:
        """
        An empty configuration is valid and has every global default.
        """
        config = self.loads("")
        self.assertEqual(config, Config(routing=config.routing))
        self.assertEqual(config.healthCheckTimeout, 120)
        self.assertEqual(config.startPort, 5800)
        self.assertEqual(config.logLevel, "info")
        self.assertEqual(config.logTimeFormat, "")
        self.assertEqual(config.logToStdout, "proxy")
        self.assertEqual(config.metricsMaxInMemory, 1000)
        self.assertEqual(config.captureBuffer, 5)
        self.assertEqual(config.globalTTL, 0)
        self.assertEqual(config.unloadTimeout, 10)
        self.assertFalse(config.sendLoadingState)
        self.assertFalse(config.includeAliasesInList)
        self.assertEqual(config.apiKeys, ())
        self.assertIsNone(config.store)
        self.assertEqual(config.ui.sessionIDHeaders, ("X-Session-ID", "X-Litellm-Session-Id"))
        self.assertFalse(config.performance.disabled)
        self.assertEqual(config.performance.every, 5.0)
        self.assertEqual(config.hooks.preload, ())
        self.assertEqual(
            [p.pattern for p in config.upstream.ignorePaths],
            [r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$"],
        )
        self.assertEqual(config.routing.use, "group")
        self.assertEqual(config.routing.scheduler, "fifo")
        self.assertEqual(config.routing.maxWaitForSwap, 30)
        self.assertEqual(dict(config.routing.priority), {})
        self.assertEqual(
            dict(config.routing.groups), {DEFAULT_GROUP_ID: GroupConfig(DEFAULT_GROUP_ID)}
        )
        self.noWarnings()

    def test_defaultValues(self) -> None:
        """
        llama-swap's DefaultValues: one model with only C{cmd} gets the
        default proxy on its port, every model default, and a C{(default)}
        group holding it.
        """
        config = self.loads(
            """
            models:
              model1:
                cmd: path/to/cmd --port 5800
            """,
            ports={"model1": 5800},
        )
        self.assertEqual(
            config.routing.groups[DEFAULT_GROUP_ID],
            GroupConfig(
                DEFAULT_GROUP_ID, swap=True, exclusive=True, persistent=False, members=("model1",)
            ),
        )
        model = config.models["model1"]
        self.assertEqual(model.cmd, "path/to/cmd --port 5800")
        self.assertEqual(model.cmdStop, "")
        self.assertEqual(model.proxy, "http://localhost:5800")
        self.assertEqual(model.port, 5800)
        self.assertEqual(model.checkEndpoint, "/health")
        self.assertEqual(model.aliases, ())
        self.assertEqual(model.env, ())
        self.assertEqual(model.ttl, 0)
        self.assertEqual(model.unloadTimeout, 10)
        self.assertFalse(model.unlisted)
        self.assertEqual(model.useModelName, "")
        self.assertEqual(model.concurrencyLimit, 0)
        self.assertEqual(model.effectiveConcurrencyLimit, 10)
        self.assertEqual(model.filters.stripParams, "")
        self.assertEqual(model.filters.sanitizedStripParams, ())
        self.assertEqual(dict(model.filters.setParams), {})
        self.assertEqual(dict(model.metadata), {})
        self.assertEqual(model.timeouts, Timeouts(30, 30, 0, 10, 1, 90))
        self.assertTrue(model.capabilities.isEmpty())
        self.assertFalse(model.compat.ignoreWebsockets)
        self.assertFalse(model.sendLoadingState)
        self.assertEqual(model.healthCheckTimeout, 120)
        self.assertEqual(model.name, "")
        self.assertEqual(model.description, "")

    def test_loadPosix(self) -> None:
        """
        llama-swap's LoadPosix: the whole structure, including the
        healthCheckTimeout and sendLoadingState copied into each model,
        the macro list, preload list, groups with sorted orphans in
        C{(default)} and the alias map.  (The v1 list profile is kept as a
        legacy profile.)
        """
        config = self.loads(
            """
            hooks:
              on_startup:
                preload: ["model1", "model2"]
            models:
              model1:
                cmd: path/to/cmd --arg1 one
                proxy: "http://localhost:8080"
                name: "Model 1"
                description: "This is model 1"
                aliases:
                  - "m1"
                  - "model-one"
                env:
                  - "VAR1=value1"
                  - "VAR2=value2"
                checkEndpoint: "/health"
              model2:
                cmd: path/to/server --arg1 one
                proxy: "http://localhost:8081"
                aliases:
                  - "m2"
                checkEndpoint: "/"
              model3:
                cmd: path/to/cmd --arg1 one
                proxy: "http://localhost:8081"
                aliases:
                  - "mthree"
                checkEndpoint: "/"
              model4:
                cmd: path/to/cmd --arg1 one
                proxy: "http://localhost:8082"
                checkEndpoint: "/"

            healthCheckTimeout: 15
            profiles:
              test:
                - model1
                - model2
            groups:
              group1:
                swap: true
                exclusive: false
                members: ["model2"]
              forever:
                exclusive: false
                persistent: true
                members:
                  - "model4"
            """,
            globalMacros=(("svr-path", "path/to/server"),),
        )
        groups = {
            DEFAULT_GROUP_ID: GroupConfig(DEFAULT_GROUP_ID, members=("model1", "model3")),
            "group1": GroupConfig("group1", swap=True, exclusive=False, members=("model2",)),
            "forever": GroupConfig(
                "forever", swap=True, exclusive=False, persistent=True, members=("model4",)
            ),
        }

        def model(modelID: str, **kwargs: Any) -> ModelConfig:
            return ModelConfig(
                id=modelID,
                healthCheckTimeout=15,
                sendLoadingState=False,
                timeouts=Timeouts(),
                unloadTimeout=10,
                ttl=0,
                **kwargs,
            )

        expected = Config(
            healthCheckTimeout=15,
            macros=(("svr-path", "path/to/server"),),
            hooks=HooksConfig(preload=("model1", "model2")),
            models={
                "model1": model(
                    "model1",
                    cmd="path/to/cmd --arg1 one",
                    proxy="http://localhost:8080",
                    aliases=("m1", "model-one"),
                    env=("VAR1=value1", "VAR2=value2"),
                    checkEndpoint="/health",
                    name="Model 1",
                    description="This is model 1",
                ),
                "model2": model(
                    "model2",
                    cmd="path/to/server --arg1 one",
                    proxy="http://localhost:8081",
                    aliases=("m2",),
                    checkEndpoint="/",
                ),
                "model3": model(
                    "model3",
                    cmd="path/to/cmd --arg1 one",
                    proxy="http://localhost:8081",
                    aliases=("mthree",),
                    checkEndpoint="/",
                ),
                "model4": model(
                    "model4",
                    cmd="path/to/cmd --arg1 one",
                    proxy="http://localhost:8082",
                    checkEndpoint="/",
                ),
            },
            aliases={"m1": "model1", "model-one": "model1", "m2": "model2", "mthree": "model3"},
            routing=RoutingConfig(use="group", groups=groups, scheduler="fifo"),
            legacyProfiles={"test": ("model1", "model2")},
        )
        self.assertEqual(config, expected)
        self.assertEqual(list(config.models), ["model1", "model2", "model3", "model4"])
        self.assertEqual(config.realModelName("m1"), "model1")

    def test_macrosReattached(self) -> None:
        """
        The global and per-model macro declarations are re-attached as
        declared (unexpanded).
        """
        config = self.loads(
            MODELS,
            globalMacros=(("a", "x-${MODEL_ID}"), ("n", 3)),
            modelMacros={"model2": (("b", True),)},
        )
        self.assertEqual(config.macros, (("a", "x-${MODEL_ID}"), ("n", 3)))
        self.assertEqual(config.models["model2"].macros, (("b", True),))
        self.assertEqual(config.models["model1"].macros, ())


class ImmutabilityTests(BuildTestCase):
    """
    A built configuration cannot be changed.
    """

    def test_frozen(self) -> None:
        """
        Mappings refuse mutation and attributes cannot be set.
        """
        config = self.loads(MODELS)
        for mapping in (config.models, config.aliases, config.routing.groups):
            assert isinstance(mapping, FrozenDict)
            self.assertRaises(TypeError, mapping.__setitem__, "x", None)
            self.assertRaises(TypeError, mapping.pop, DEFAULT_GROUP_ID)
        self.assertRaises(AttributeError, setattr, config, "startPort", 1)
        self.assertRaises(AttributeError, setattr, config.models["model1"], "cmd", "x")
        hash(config.models["model1"])
        self.assertIsInstance(config.upstream.ignorePaths[0], re.Pattern)


class EndToEndTests(BuildTestCase):
    """
    Through the real earlier stages: L{readText} then L{expand} then
    L{buildConfig}.
    """

    def pipeline(self, text: str) -> tuple[Config | None, Problems]:
        from llamaswap.config.macros import expand
        from llamaswap.config.sources import readText

        problems = Problems()
        tree, sourceMap = readText(dedent(text), "config.yaml", {}, problems)
        problems.sourceMap = sourceMap
        return buildConfig(expand(tree, sourceMap, problems), problems), problems

    def test_loadPosixWithMacros(self) -> None:
        """
        Macros expand before decoding, are re-attached unexpanded, and
        ports are allocated in sorted model order.
        """
        config, problems = self.pipeline(
            """
            startPort: 9990
            macros:
              svr-path: "path/to/server"
              ctx: 4096
            models:
              model1:
                cmd: ${svr-path} --port ${PORT}
                aliases: ["m1-${PORT}"]
                capabilities: {context: "${ctx}"}
                filters:
                  setParamsByID:
                    "${MODEL_ID}:high": {reasoning: high}
              model2:
                cmd: ${svr-path} --port ${PORT}
              model3:
                cmd: other --port 8000
                proxy: http://localhost:8000
            """
        )
        assert config is not None, [str(p) for p in problems]
        self.assertEqual(config.macros, (("svr-path", "path/to/server"), ("ctx", 4096)))
        model1 = config.models["model1"]
        self.assertEqual(model1.cmd, "path/to/server --port 9990")
        self.assertEqual((model1.port, model1.proxy), (9990, "http://localhost:9990"))
        self.assertEqual(model1.capabilities.context, 4096)
        self.assertEqual(model1.aliases, ("m1-9990", "model1:high"))
        self.assertEqual(config.realModelName("model1:high"), "model1")
        self.assertEqual(config.models["model2"].port, 9991)
        self.assertIsNone(config.models["model3"].port)

    def test_earlierStageErrorNotRepeated(self) -> None:
        """
        A key already rejected by macro expansion (C{startPort: abcd}) is
        not reported again by decoding.
        """
        config, problems = self.pipeline("startPort: abcd\n")
        self.assertIsNone(config)
        self.assertEqual([p.path for p in problems.errors], [("startPort",)])

    def test_unknownKeyLocatedInItsFile(self) -> None:
        """
        Warnings carry the line of the key in its source.
        """
        config, problems = self.pipeline("models:\n  m:\n    cmd: x --port ${PORT}\n    ttll: 4\n")
        self.assertIsNotNone(config)
        (warning,) = problems.warnings
        self.assertEqual(str(warning.location), "config.yaml:4")
