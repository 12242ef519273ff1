"""
Tests for L{llamaswap.config.build}: typed decoding, defaults and every
validation of llama-swap's loading steps 12 to 14.

The inputs are YAML texts read with L{llamaswap.config.yaml12.loadYAML}
(yaml.v3 scalar rules, line numbers) and handed over as an
L{ExpandedTree}, as if macro expansion had already run; models therefore
spell out C{proxy} or are given a port.
"""

from __future__ import annotations

import os
import re
import tempfile
from textwrap import dedent
from typing import Any, Mapping

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.build import (
    KNOWN_KEYS,
    buildConfig,
    describeValue,
    formatGoDuration,
    goQuote,
    goURLError,
    parseGoDuration,
    suggestKey,
)
from llamaswap.config.errors import Problem, Problems
from llamaswap.config.expanded import ExpandedTree, MacroList
from llamaswap.config.model import (
    DEFAULT_GROUP_ID,
    Capabilities,
    Config,
    FrozenDict,
    GroupConfig,
    HooksConfig,
    ModelConfig,
    RoutingConfig,
    Timeouts,
)
from llamaswap.config.yaml12 import loadYAML


def build(
    text: str,
    ports: Mapping[str, int] | None = None,
    globalMacros: MacroList = (),
    modelMacros: Mapping[str, MacroList] | None = None,
) -> tuple[Config | None, Problems]:
    """
    Read C{text} as YAML and build it as an already expanded tree.
    """
    problems = Problems()
    tree, sourceMap = loadYAML(dedent(text), "config.yaml", problems)
    assert not problems.hasErrors(), [str(p) for p in problems]
    problems.sourceMap = sourceMap
    expanded = ExpandedTree(
        tree if tree is not None else {},
        sourceMap,
        globalMacros,
        modelMacros or {},
        ports or {},
    )
    return buildConfig(expanded, problems), problems


MODELS = """
models:
  model1:
    cmd: serve model1
    proxy: http://localhost:9001
    aliases: [m1]
  model2:
    cmd: serve model2
    proxy: http://localhost:9002
  model3:
    cmd: serve model3
    proxy: http://localhost:9003
"""


class BuildTestCase(SynchronousTestCase):
    """
    Assertions shared by the build tests.
    """

    lastProblems: Problems

    def loads(self, text: str, **kwargs: Any) -> Config:
        """
        Build C{text}; fail with every problem if it did not load.
        """
        config, problems = build(text, **kwargs)
        self.assertIsNot(config, None, "\n".join(str(p) for p in problems))
        assert config is not None
        self.lastProblems = problems
        return config

    def fails(self, text: str, fragment: str, **kwargs: Any) -> Problem:
        """
        Build C{text}; assert it failed with an error containing
        C{fragment}, and return that error.
        """
        config, problems = build(text, **kwargs)
        self.assertIs(config, None)
        self.lastProblems = problems
        for problem in problems.errors:
            if fragment in problem.message:
                return problem
        raise self.failureException(
            f"no error containing {fragment!r} in:\n" + "\n".join(str(p) for p in problems)
        )

    def warned(self, fragment: str) -> Problem:
        """
        The warning of the last build containing C{fragment}.
        """
        for problem in self.lastProblems.warnings:
            if fragment in problem.message:
                return problem
        raise self.failureException(
            f"no warning containing {fragment!r} in:\n"
            + "\n".join(str(p) for p in self.lastProblems)
        )

    def noWarnings(self) -> None:
        self.assertEqual([str(p) for p in self.lastProblems.warnings], [])


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


class GlobalKeyTests(BuildTestCase):
    """
    Normalisation and validation of the global keys.
    """

    def test_healthCheckTimeoutClamped(self) -> None:
        """
        A healthCheckTimeout below 15 becomes 15 and every model gets the
        global value; a per-model value is ignored with a warning.
        """
        config = self.loads(
            """
            healthCheckTimeout: 5
            models:
              m:
                cmd: x
                proxy: http://h:1
                healthCheckTimeout: 300
            """
        )
        self.assertEqual(config.healthCheckTimeout, 15)
        self.assertEqual(config.models["m"].healthCheckTimeout, 15)
        problem = self.warned("global healthCheckTimeout")
        self.assertEqual(problem.path, ("models", "m", "healthCheckTimeout"))
        self.assertEqual(self.loads("healthCheckTimeout: 200").healthCheckTimeout, 200)

    def test_startPort(self) -> None:
        """
        startPort is kept when positive (1 is accepted despite the
        message); below 1 or not an integer is an error.
        """
        self.assertEqual(self.loads("").startPort, 5800)
        self.assertEqual(self.loads("startPort: 1000").startPort, 1000)
        self.assertEqual(self.loads("startPort: 1").startPort, 1)
        problem = self.fails("startPort: -99", "startPort must be greater than 1")
        self.assertEqual(problem.path, ("startPort",))
        self.assertEqual(problem.message, "startPort must be greater than 1")
        self.fails("startPort: 0", "startPort must be greater than 1")
        problem = self.fails("startPort: abcd", "must be an integer")
        self.assertEqual(problem.message, 'must be an integer, got string "abcd"')
        self.assertEqual(
            str(problem), 'config.yaml:1: startPort: must be an integer, got string "abcd"'
        )

    def test_globalTTL(self) -> None:
        """
        globalTTL defaults to 0, propagates to models without their own
        ttl (or with -1), an explicit model ttl (even 0) wins, and a
        negative globalTTL is an error.
        """
        config = self.loads(
            """
            globalTTL: 300
            models:
              inherit: {cmd: x, proxy: "http://h:1"}
              minusOne: {cmd: x, proxy: "http://h:1", ttl: -1}
              never: {cmd: x, proxy: "http://h:1", ttl: 0}
              own: {cmd: x, proxy: "http://h:1", ttl: 600}
            """
        )
        self.assertEqual(config.globalTTL, 300)
        ttls = {k: m.ttl for k, m in config.models.items()}
        self.assertEqual(ttls, {"inherit": 300, "minusOne": 300, "never": 0, "own": 600})
        self.assertEqual(self.loads(MODELS).models["model1"].ttl, 0)
        problem = self.fails("globalTTL: -1", "globalTTL must be >= 0")
        self.assertEqual(problem.message, "globalTTL must be >= 0")

    def test_modelTTLInvalid(self) -> None:
        """
        A model ttl below -1 is an error naming the model and value.
        """
        problem = self.fails(
            "models:\n  model1: {cmd: x, proxy: 'http://h:1', ttl: -5}\n",
            "invalid TTL",
        )
        self.assertEqual(problem.message, "model model1: invalid TTL value -5")
        self.assertEqual(problem.path, ("models", "model1", "ttl"))
        self.assertEqual(problem.location.line, 2)  # type: ignore[union-attr]

    def test_unloadTimeout(self) -> None:
        """
        unloadTimeout defaults to 10 globally and per model, a global value
        propagates, a model value overrides, a model 0 means the global
        value, and negatives are errors.
        """
        config = self.loads(MODELS)
        self.assertEqual(config.unloadTimeout, 10)
        self.assertEqual(config.models["model1"].unloadTimeout, 10)
        config = self.loads(
            """
            unloadTimeout: 25
            models:
              a: {cmd: x, proxy: "http://h:1"}
              b: {cmd: x, proxy: "http://h:1", unloadTimeout: 45}
              c: {cmd: x, proxy: "http://h:1", unloadTimeout: 0}
            """
        )
        self.assertEqual(config.unloadTimeout, 25)
        self.assertEqual(
            {k: m.unloadTimeout for k, m in config.models.items()}, {"a": 25, "b": 45, "c": 25}
        )
        self.assertEqual(self.loads("unloadTimeout: 0").unloadTimeout, 10)
        self.fails("unloadTimeout: -1", "unloadTimeout must be >= 0")
        problem = self.fails(
            "models:\n  model1: {cmd: x, proxy: 'http://h:1', unloadTimeout: -1}\n",
            "invalid unloadTimeout",
        )
        self.assertEqual(problem.message, "model model1: invalid unloadTimeout value -1")

    def test_logLevel(self) -> None:
        """
        logLevel is trimmed and case-insensitive; an unknown level means
        info, with a warning.
        """
        self.assertEqual(self.loads("logLevel: ' DEBUG '").logLevel, "debug")
        self.assertEqual(self.loads("logLevel: Warn").logLevel, "warn")
        self.assertEqual(self.loads("logLevel: error").logLevel, "error")
        self.assertEqual(self.loads("logLevel: verbose").logLevel, "info")
        self.assertEqual(self.warned("unknown logLevel").path, ("logLevel",))

    def test_logTimeFormat(self) -> None:
        """
        logTimeFormat names a Go layout case-insensitively; anything else
        means no timestamp, with a warning.
        """
        self.assertEqual(self.loads("logTimeFormat: RFC3339").logTimeFormat, "rfc3339")
        self.assertEqual(self.loads("logTimeFormat: kitchen").logTimeFormat, "kitchen")
        self.assertEqual(self.loads("logTimeFormat: iso").logTimeFormat, "")
        self.warned("unknown logTimeFormat")

    def test_logToStdout(self) -> None:
        """
        logToStdout must be one of the four modes.
        """
        for mode in ("proxy", "upstream", "both", "none"):
            self.assertEqual(self.loads(f"logToStdout: {mode}").logToStdout, mode)
        problem = self.fails("logToStdout: stderr", "logToStdout")
        self.assertEqual(problem.message, "logToStdout must be one of: proxy, upstream, both, none")

    def test_logRequestsDeprecated(self) -> None:
        """
        logRequests is accepted, ignored and warned about.
        """
        self.loads("logRequests: true")
        self.assertEqual(self.warned("deprecated").message, "logRequests is deprecated and ignored")

    def test_simpleGlobals(self) -> None:
        """
        The plain global values are decoded.
        """
        config = self.loads(
            """
            metricsMaxInMemory: 50
            captureBuffer: 0
            sendLoadingState: true
            includeAliasesInList: true
            """
        )
        self.assertEqual(config.metricsMaxInMemory, 50)
        self.assertEqual(config.captureBuffer, 0)
        self.assertTrue(config.sendLoadingState)
        self.assertTrue(config.includeAliasesInList)

    def test_performance(self) -> None:
        """
        performance.every is a Go duration of at least 5s (default 5s, also
        for 0); performance.disabled keeps the period.
        """
        cases = {
            "": (False, 5.0),
            "performance: {every: 30s}": (False, 30.0),
            "performance: {disabled: true}": (True, 5.0),
            "performance: {every: 10s}": (False, 10.0),
            "performance: {every: 1m30s}": (False, 90.0),
            "performance: {every: 0s}": (False, 5.0),
            "performance: {every: 5.5s}": (False, 5.5),
        }
        for text, (disabled, every) in cases.items():
            config = self.loads(text)
            self.assertEqual(
                (config.performance.disabled, config.performance.every), (disabled, every), text
            )
        problem = self.fails("performance: {every: 4s}", "every must be at least 5s")
        self.assertEqual(problem.message, "performance: every must be at least 5s, got 4s")
        self.assertEqual(problem.path, ("performance", "every"))
        problem = self.fails("performance: {every: 500ms}", "at least 5s")
        self.assertEqual(problem.message, "performance: every must be at least 5s, got 500ms")

    def test_performanceDurationType(self) -> None:
        """
        Like yaml.v3 decoding into a time.Duration, performance.every must
        be a duration string: a bare number or a malformed string is a type
        error.
        """
        problem = self.fails("performance: {every: 30}", "must be a duration")
        self.assertIn("got integer 30", problem.message)
        self.fails("performance: {every: soon}", 'got string "soon"')
        self.fails("performance: {every: 5}", "must be a duration")

    def test_uiSessionIDs(self) -> None:
        """
        ui.activity.session_id is trimmed, blanks dropped and de-duplicated
        case-insensitively keeping the first spelling; [] disables it.
        """
        config = self.loads(
            "ui: {activity: {session_id: [' X-Trace-ID ', '', x-trace-id, X-Session-ID, X-TRACE-ID]}}"
        )
        self.assertEqual(config.ui.sessionIDHeaders, ("X-Trace-ID", "X-Session-ID"))
        self.assertEqual(self.loads("ui: {activity: {session_id: []}}").ui.sessionIDHeaders, ())
        self.assertEqual(
            self.loads("ui: {}").ui.sessionIDHeaders, ("X-Session-ID", "X-Litellm-Session-Id")
        )

    def test_storePath(self) -> None:
        """
        store.path is accepted in a writable directory or as a writable
        file, and rejected when blank, a directory, or in a directory that
        cannot be written.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, directory)
        fresh = os.path.join(directory, "activity.db")
        config = self.loads(f"store: {{path: '{fresh}'}}")
        self.assertEqual(config.store.path, fresh)  # type: ignore[union-attr]

        existing = os.path.join(directory, "existing.db")
        with open(existing, "w"):
            pass
        self.addCleanup(os.remove, existing)
        self.assertEqual(self.loads(f"store: {{path: '{existing}'}}").store.path, existing)  # type: ignore[union-attr]

        problem = self.fails("store: {path: /no/such/dir/x.db}", "not writable")
        self.assertTrue(
            problem.message.startswith("store.path: directory /no/such/dir is not writable"),
            problem.message,
        )
        self.assertEqual(problem.path, ("store", "path"))
        self.assertEqual(
            self.fails("store: {path: ''}", "must not be empty").message,
            "store.path must not be empty",
        )
        self.fails("store: {}", "store.path must not be empty")
        self.assertEqual(
            self.fails(f"store: {{path: '{directory}'}}", "directory").message,
            f"store.path: {directory} is a directory, not a file",
        )
        self.assertIsNone(self.loads("store: ~").store)

    def test_ignorePaths(self) -> None:
        """
        upstream.ignorePaths defaults to the static-asset pattern (also for
        C{upstream: {}}), which matches asset paths only; a custom list is
        compiled in order; a bad regular expression is an error.
        """
        for text in ("", "upstream: {}", "upstream: {ignorePaths: []}"):
            upstream = self.loads(text).upstream
            self.assertEqual(len(upstream.ignorePaths), 1)
            for path in (
                "/foo.js",
                "/bar/baz.json",
                "/static/img.png",
                "/notes.txt",
                "/favicon.ico",
            ):
                self.assertTrue(upstream.isIgnored(path), path)
            for path in ("/v1/chat/completions", "/v1/models", "/health"):
                self.assertFalse(upstream.isIgnored(path), path)
        upstream = self.loads("upstream: {ignorePaths: ['^/static/', 'metrics$']}").upstream
        self.assertEqual([p.pattern for p in upstream.ignorePaths], ["^/static/", "metrics$"])
        self.assertTrue(upstream.isIgnored("/v1/metrics"))
        self.assertFalse(upstream.isIgnored("/foo.js"))
        problem = self.fails("upstream: {ignorePaths: ['ok', '(']}", "invalid regular expression")
        self.assertTrue(
            problem.message.startswith('upstream.ignorePaths: invalid regular expression "(": '),
            problem.message,
        )
        self.assertEqual(problem.path, ("upstream", "ignorePaths", 1))

    def test_apiKeys(self) -> None:
        """
        API keys must be non-empty and contain no spaces; the index of a
        bad key is named.
        """
        self.assertEqual(self.loads("apiKeys: [k1, k2]").apiKeys, ("k1", "k2"))
        self.assertEqual(
            self.fails("apiKeys: ['']", "empty").message, "empty api key found in apiKeys"
        )
        self.assertEqual(
            self.fails("apiKeys: [good, 'bad key']", "spaces").message,
            "apiKeys[1]: api key cannot contain spaces",
        )
        self.fails("apiKeys: [' lead', x]", "apiKeys[0]: api key cannot contain spaces")


class ModelTests(BuildTestCase):
    """
    Per-model decoding and validation.
    """

    def test_fields(self) -> None:
        """
        Every model key is decoded.
        """
        config = self.loads(
            """
            models:
              m:
                cmd: |
                  serve
                  --flag
                cmdStop: kill ${PID}
                proxy: http://127.0.0.1:8000/base
                aliases: [a1, a2]
                env: [A=1, B=2]
                checkEndpoint: none
                ttl: 60
                unlisted: true
                useModelName: real-name
                name: Nice
                description: Desc
                concurrencyLimit: 3
                metadata: {k: [1, {x: y}]}
                sendLoadingState: true
                timeouts: {connect: 1, keepalive: 2, responseHeader: 3, tlsHandshake: 4, expectContinue: 5, idleConn: 6}
                compat: {ignoreWebsockets: true}
            """
        )
        m = config.models["m"]
        self.assertEqual(m.cmd, "serve\n--flag\n")
        self.assertEqual(m.cmdStop, "kill ${PID}")
        self.assertEqual(m.proxy, "http://127.0.0.1:8000/base")
        self.assertEqual(m.proxyURL.port, 8000)
        self.assertEqual(m.aliases, ("a1", "a2"))
        self.assertEqual(m.env, ("A=1", "B=2"))
        self.assertTrue(m.healthCheckDisabled)
        self.assertEqual(m.ttl, 60)
        self.assertTrue(m.unlisted)
        self.assertEqual(m.useModelName, "real-name")
        self.assertEqual((m.name, m.description), ("Nice", "Desc"))
        self.assertEqual(m.concurrencyLimit, 3)
        self.assertEqual(m.effectiveConcurrencyLimit, 3)
        self.assertEqual(m.metadata, {"k": (1, {"x": "y"})})
        self.assertTrue(m.sendLoadingState)
        self.assertEqual(m.timeouts, Timeouts(1, 2, 3, 4, 5, 6))
        self.assertTrue(m.compat.ignoreWebsockets)
        self.assertEqual(config.aliases, {"a1": "m", "a2": "m"})

    def test_timeoutsZeroAndPartial(self) -> None:
        """
        Explicit zero timeouts are preserved; unset ones keep defaults.
        """
        m = self.loads(
            "models: {m: {cmd: x, proxy: 'http://h:1', timeouts: {connect: 0, idleConn: 0}}}"
        ).models["m"]
        self.assertEqual(m.timeouts, Timeouts(connect=0, idleConn=0))

    def test_concurrencyLimitEffective(self) -> None:
        """
        A zero or negative concurrencyLimit is kept as configured but the
        effective limit is 10.
        """
        m = self.loads("models: {m: {cmd: x, proxy: 'http://h:1', concurrencyLimit: -3}}").models[
            "m"
        ]
        self.assertEqual((m.concurrencyLimit, m.effectiveConcurrencyLimit), (-3, 10))

    def test_comfyui(self) -> None:
        """
        The model C{comfyui_auto} has a concurrencyLimit of at least 50 and
        always ignores websockets; other models are unaffected.
        """
        for limit, expected in (
            ("", 50),
            ("concurrencyLimit: 10", 50),
            ("concurrencyLimit: 50", 50),
            ("concurrencyLimit: 60", 60),
        ):
            config = self.loads(
                f"""
                models:
                  comfyui_auto:
                    cmd: x
                    proxy: http://h:1
                    {limit}
                  other:
                    cmd: x
                    proxy: http://h:1
                    {limit}
                """
            )
            comfy = config.models["comfyui_auto"]
            self.assertEqual(comfy.concurrencyLimit, expected)
            self.assertTrue(comfy.compat.ignoreWebsockets)
            self.assertFalse(config.models["other"].compat.ignoreWebsockets)
            self.assertNotEqual(config.models["other"].concurrencyLimit, 50 if limit == "" else -1)

    def test_sendLoadingStateInherited(self) -> None:
        """
        A model's sendLoadingState defaults to the global one; an explicit
        model value wins.
        """
        config = self.loads(
            """
            sendLoadingState: true
            models:
              a: {cmd: x, proxy: "http://h:1"}
              b: {cmd: x, proxy: "http://h:1", sendLoadingState: false}
            """
        )
        self.assertTrue(config.models["a"].sendLoadingState)
        self.assertFalse(config.models["b"].sendLoadingState)

    def test_invalidProxy(self) -> None:
        """
        A proxy Go's url.Parse rejects is an error; an empty proxy loads.
        """
        problem = self.fails(
            "models: {m: {cmd: x, proxy: 'http://localhost:abc'}}", "invalid proxy URL"
        )
        self.assertEqual(
            problem.message,
            'model m: invalid proxy URL: parse "http://localhost:abc": invalid port ":abc" after host',
        )
        self.assertEqual(self.loads("models: {m: {cmd: x, proxy: ''}}").models["m"].proxy, "")

    def test_aliasesUnique(self) -> None:
        """
        llama-swap's ModelAliasesAreUnique: an alias on two models, or twice
        on one, is an error.
        """
        problem = self.fails(
            """
            models:
              model1: {cmd: x, proxy: "http://h:1", aliases: [m1]}
              model2: {cmd: x, proxy: "http://h:1", aliases: [m1]}
            """,
            "duplicate alias",
        )
        self.assertEqual(problem.message, "duplicate alias m1 found in model: model2")
        self.assertEqual(problem.path, ("models", "model2", "aliases", 0))
        self.fails(
            "models: {model1: {cmd: x, proxy: 'http://h:1', aliases: [a, a]}}",
            "duplicate alias a found in model: model1",
        )

    def test_aliasShadowedByModelID(self) -> None:
        """
        An alias equal to another model's ID loads (the ID wins) with a
        warning.
        """
        config = self.loads(
            """
            models:
              a: {cmd: x, proxy: "http://h:1", aliases: [b]}
              b: {cmd: x, proxy: "http://h:1"}
            """
        )
        self.assertEqual(config.realModelName("b"), "b")
        self.warned("shadowed")

    def test_findModel(self) -> None:
        """
        llama-swap's FindConfig: by ID, by alias (giving the real ID), and
        unknown.
        """
        config = self.loads(MODELS)
        self.assertEqual(config.findModel("model1"), (config.models["model1"], "model1"))
        self.assertEqual(config.findModel("m1"), (config.models["model1"], "model1"))
        self.assertIsNone(config.findModel("nope"))
        self.assertIsNone(config.realModelName("nope"))

    def test_capabilities(self) -> None:
        """
        Capabilities parse; partial blocks leave the rest empty; only an
        all-zero block is empty.
        """
        m = self.loads(
            """
            models:
              m:
                cmd: x
                proxy: http://h:1
                capabilities: {in: [text, image], out: [text, audio], tools: true, reranker: false, context: 8192}
            """
        ).models["m"]
        self.assertEqual(
            m.capabilities, Capabilities(("text", "image"), ("text", "audio"), True, False, 8192)
        )
        self.assertFalse(m.capabilities.isEmpty())
        for block, empty in (
            ("{}", True),
            ("{tools: false}", True),
            ("{reranker: false}", True),
            ("{reranker: true}", False),
            ("{context: 5}", False),
        ):
            m = self.loads(
                f"models: {{m: {{cmd: x, proxy: 'http://h:1', capabilities: {block}}}}}"
            ).models["m"]
            self.assertEqual(m.capabilities.isEmpty(), empty, block)
            self.assertEqual(m.capabilities.inputs, ())

    def test_capabilitiesInvalid(self) -> None:
        """
        An unknown modality in C{in} or C{out}, or a negative context, is
        an error naming the field and value.
        """
        problem = self.fails(
            "models: {m: {cmd: x, proxy: 'http://h:1', capabilities: {in: [text, video]}}}",
            "invalid modality",
        )
        self.assertEqual(
            problem.message,
            'model m: capabilities.in: invalid modality "video", must be one of: text, audio, image',
        )
        self.assertEqual(problem.path, ("models", "m", "capabilities", "in", 1))
        self.fails(
            "models: {m: {cmd: x, proxy: 'http://h:1', capabilities: {out: [video]}}}",
            'capabilities.out: invalid modality "video"',
        )
        self.assertEqual(
            self.fails(
                "models: {m: {cmd: x, proxy: 'http://h:1', capabilities: {context: -1}}}",
                "context",
            ).message,
            "model m: capabilities.context: must be >= 0",
        )

    def test_stripParams(self) -> None:
        """
        stripParams keeps the raw string and sanitises to sorted, unique
        names without C{model}; the legacy C{strip_params} behaves the
        same (with a warning).
        """
        for key in ("stripParams", "strip_params"):
            m = self.loads(
                f"""
                models:
                  m:
                    cmd: x
                    proxy: http://h:1
                    filters:
                      {key}: "model, top_k, temperature, , top_p, top_k"
                """
            ).models["m"]
            self.assertEqual(m.filters.stripParams, "model, top_k, temperature, , top_p, top_k")
            self.assertEqual(m.filters.sanitizedStripParams, ("temperature", "top_k", "top_p"))
        self.warned("legacy spelling")

    def test_setParams(self) -> None:
        """
        setParams drops C{model} (with a warning) and sorts its keys.
        """
        m = self.loads(
            """
            models:
              m:
                cmd: x
                proxy: http://h:1
                filters:
                  setParams: {top_p: 0.9, model: nope, temperature: 0.1, stop: ["\\n"]}
            """
        ).models["m"]
        self.assertEqual(list(m.filters.setParams), ["stop", "temperature", "top_p"])
        self.assertEqual(m.filters.setParams["stop"], ("\n",))
        self.assertEqual(m.filters.setParams["temperature"], 0.1)
        self.assertEqual(
            self.warned("protected").path, ("models", "m", "filters", "setParams", "model")
        )

    def test_setParamsByIDAliases(self) -> None:
        """
        Every setParamsByID key other than the model's own ID becomes an
        alias, appended after the explicit ones; a key already an explicit
        alias of the same model is fine.
        """
        config = self.loads(
            """
            models:
              model1:
                cmd: x
                proxy: http://h:1
                aliases: [fast]
                filters:
                  setParamsByID:
                    model1: {temperature: 1}
                    "model1:high": {reasoning: high, model: x}
                    "model1:low": {reasoning: low}
                    fast: {temperature: 0}
            """
        )
        model = config.models["model1"]
        self.assertEqual(model.aliases, ("fast", "model1:high", "model1:low"))
        self.assertEqual(config.realModelName("model1:high"), "model1")
        self.assertEqual(config.realModelName("model1:low"), "model1")
        self.assertEqual(model.filters.paramsForID("model1:high"), {"reasoning": "high"})
        self.assertIsNone(model.filters.paramsForID("other"))

    def test_setParamsByIDConflicts(self) -> None:
        """
        A setParamsByID key equal to another model ID, or already an alias
        of another model, is an error.
        """
        problem = self.fails(
            """
            models:
              model1:
                cmd: x
                proxy: http://h:1
                filters: {setParamsByID: {model2: {a: 1}}}
              model2: {cmd: x, proxy: "http://h:1"}
            """,
            "conflicts",
        )
        self.assertEqual(
            problem.message,
            "model model1 filters.setParamsByID: key 'model2' conflicts with an existing model ID",
        )
        problem = self.fails(
            """
            models:
              a:
                cmd: x
                proxy: http://h:1
                filters: {setParamsByID: {shared: {x: 1}}}
              b:
                cmd: x
                proxy: http://h:1
                filters: {setParamsByID: {shared: {x: 2}}}
            """,
            "duplicate alias",
        )
        self.assertEqual(
            problem.message,
            "duplicate alias 'shared' in model b filters.setParamsByID, already used by model a",
        )
        self.fails(
            """
            models:
              a: {cmd: x, proxy: "http://h:1", aliases: [taken]}
              b: {cmd: x, proxy: "http://h:1", filters: {setParamsByID: {taken: {x: 1}}}}
            """,
            "already used by model a",
        )


class TypeTests(BuildTestCase):
    """
    Values of the wrong type are errors naming the expected type.
    """

    def test_typeMismatches(self) -> None:
        """
        Each mismatch names the expected type and what was found, at the
        key's path.
        """
        cases = [
            ("globalTTL: x", ("globalTTL",), 'must be an integer, got string "x"'),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', ttl: 'x'}}",
                ("models", "m", "ttl"),
                'must be an integer, got string "x"',
            ),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', ttl: true}}",
                ("models", "m", "ttl"),
                "must be an integer, got boolean true",
            ),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', ttl: 1.5}}",
                ("models", "m", "ttl"),
                "must be an integer, got float 1.5",
            ),
            ("models: [a, b]", ("models",), "must be a mapping, got a list"),
            ("models: {m: [x]}", ("models", "m"), "must be a mapping, got a list"),
            (
                "models: {m: {cmd: [a], proxy: 'http://h:1'}}",
                ("models", "m", "cmd"),
                "must be a string, got a list",
            ),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', aliases: foo}}",
                ("models", "m", "aliases"),
                'must be a list of strings, got string "foo"',
            ),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', unlisted: 1}}",
                ("models", "m", "unlisted"),
                "must be a boolean, got integer 1",
            ),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', metadata: [1]}}",
                ("models", "m", "metadata"),
                "must be a mapping, got a list",
            ),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', timeouts: 5}}",
                ("models", "m", "timeouts"),
                "must be a mapping, got integer 5",
            ),
            ("apiKeys: secret", ("apiKeys",), 'must be a list of strings, got string "secret"'),
            (
                "hooks: {on_startup: {preload: [[a]]}}",
                ("hooks", "on_startup", "preload", 0),
                "must be a string, got a list",
            ),
            (
                "routing: {scheduler: {settings: {fifo: {priority: {m1: high}}}}}\n" + MODELS,
                ("routing", "scheduler", "settings", "fifo", "priority", "m1"),
                'must be an integer, got string "high"',
            ),
        ]
        for text, path, message in cases:
            config, problems = build(text)
            self.assertIsNone(config, text)
            self.assertIn((path, message), [(p.path, p.message) for p in problems.errors], text)

    def test_booleanWords(self) -> None:
        """
        Boolean fields accept yes/no/on/off/y/n in any case, as yaml.v3
        does for Go bools.
        """
        for word, value in (
            ("yes", True),
            ("On", True),
            ("Y", True),
            ("NO", False),
            ("off", False),
            ("n", False),
            ("true", True),
        ):
            m = self.loads(
                f"models: {{m: {{cmd: x, proxy: 'http://h:1', unlisted: {word}}}}}"
            ).models["m"]
            self.assertIs(m.unlisted, value, word)
        self.fails(
            "models: {m: {cmd: x, proxy: 'http://h:1', unlisted: maybe}}",
            'must be a boolean, got string "maybe"',
        )

    def test_scalarsAsStrings(self) -> None:
        """
        Like yaml.v3, a number or boolean where a string is expected is
        taken as its text.
        """
        m = self.loads(
            "models: {m: {cmd: x, proxy: 'http://h:1', name: 42, aliases: [7, true]}}"
        ).models["m"]
        self.assertEqual(m.name, "42")
        self.assertEqual(m.aliases, ("7", "true"))

    def test_nullMeansDefault(self) -> None:
        """
        A null value leaves the default in place.
        """
        config = self.loads(
            """
            startPort: ~
            models:
              m: {cmd: x, proxy: "http://h:1", ttl: null, timeouts: ~, checkEndpoint: ~}
            """
        )
        self.assertEqual(config.startPort, 5800)
        self.assertEqual(config.models["m"].checkEndpoint, "/health")
        self.assertEqual(config.models["m"].timeouts, Timeouts())

    def test_everyErrorReported(self) -> None:
        """
        Loading does not stop at the first error: every one is reported,
        each with its line.
        """
        config, problems = build(
            """\
            startPort: abcd
            globalTTL: -1
            logToStdout: nowhere
            apiKeys: ['']
            models:
              m: {cmd: x, proxy: "http://h:1", ttl: -7}
            """
        )
        self.assertIsNone(config)
        self.assertEqual(
            [(p.location.line, p.path) for p in problems.errors],  # type: ignore[union-attr]
            [
                (1, ("startPort",)),
                (2, ("globalTTL",)),
                (3, ("logToStdout",)),
                (6, ("models", "m", "ttl")),
                (4, ("apiKeys", 0)),
            ],
        )


class UnknownKeyTests(BuildTestCase):
    """
    Unknown keys at every level are warned about, with a suggestion.
    """

    def test_everyLevel(self) -> None:
        """
        An unknown key in any section is a warning naming its full key
        path, suggesting the closest known key.
        """
        cases = [
            ("modles: {}", ("modles",), "'models'"),
            ("startport: 1", ("startport",), "'startPort'"),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', ttll: 5}}",
                ("models", "m", "ttll"),
                "'ttl'",
            ),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', filters: {stripparams: a}}}",
                ("models", "m", "filters", "stripparams"),
                "'stripParams'",
            ),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', timeouts: {conect: 1}}}",
                ("models", "m", "timeouts", "conect"),
                "'connect'",
            ),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', capabilities: {tool: true}}}",
                ("models", "m", "capabilities", "tool"),
                "'tools'",
            ),
            (
                "models: {m: {cmd: x, proxy: 'http://h:1', compat: {ignoreWebSockets: true}}}",
                ("models", "m", "compat", "ignoreWebSockets"),
                "'ignoreWebsockets'",
            ),
            (
                "peers: {p: {proxy: 'http://h', models: [a], apikey: k}}",
                ("peers", "p", "apikey"),
                "'apiKey'",
            ),
            (
                "peers: {p: {proxy: 'http://h', models: [a], filters: {setParamsByID: {}}}}",
                ("peers", "p", "filters", "setParamsByID"),
                "'setParams'",
            ),
            (
                "peers: {p: {proxy: 'http://h', models: [a], timeouts: {idel: 1}}}",
                ("peers", "p", "timeouts", "idel"),
                "'idle'",
            ),
            ("groups: {g: {exlusive: false}}", ("groups", "g", "exlusive"), "'exclusive'"),
            (
                "selectors: {s: {strategy: pin, targets: [m1], target: x}}\n" + MODELS,
                ("selectors", "s", "target"),
                "'targets'",
            ),
            (
                "selectors: {s: {strategy: pin, targets: [m1], settings: {spilover: 2}}}\n"
                + MODELS,
                ("selectors", "s", "settings", "spilover"),
                "'spillover'",
            ),
            (
                "profiles: {p: {pins: {a: m1}, descripton: x}}\n" + MODELS,
                ("profiles", "p", "descripton"),
                "'description'",
            ),
            ("routing: {routers: {}}", ("routing", "routers"), "'router'"),
            ("routing: {router: {usе: group, use: group}}", ("routing", "router", "usе"), "'use'"),
            (
                "routing: {router: {settings: {group: {}}}}",
                ("routing", "router", "settings", "group"),
                "'groups'",
            ),
            (
                "routing: {scheduler: {settings: {fifo: {priorities: {}}}}}",
                ("routing", "scheduler", "settings", "fifo", "priorities"),
                "'priority'",
            ),
            (
                "routing: {scheduler: {settings: {lifo: {}}}}",
                ("routing", "scheduler", "settings", "lifo"),
                "'fifo'",
            ),
            ("hooks: {onStartup: {}}", ("hooks", "onStartup"), "'on_startup'"),
            (
                "hooks: {on_startup: {preloads: []}}",
                ("hooks", "on_startup", "preloads"),
                "'preload'",
            ),
            ("ui: {activity: {sessionId: []}}", ("ui", "activity", "sessionId"), "'session_id'"),
            ("ui: {activty: {}}", ("ui", "activty"), "'activity'"),
            ("performance: {enabled: true}", ("performance", "enabled"), None),
            ("upstream: {ignorePath: []}", ("upstream", "ignorePath"), "'ignorePaths'"),
            ("store: {path: '/tmp/x.db', file: y}", ("store", "file"), None),
            ("matrix: {sets: {s: m1}, var: {}}\n" + MODELS, ("matrix", "var"), "'vars'"),
        ]
        for text, path, suggestion in cases:
            config, problems = build(text)
            matches = [p for p in problems.warnings if p.path == path]
            self.assertEqual(len(matches), 1, (text, [str(p) for p in problems]))
            message = matches[0].message
            self.assertIn("unknown key", message)
            self.assertTrue(str(matches[0]).startswith("config.yaml:1: warning: "), str(matches[0]))
            if suggestion is None:
                self.assertNotIn("did you mean", message, text)
            else:
                self.assertIn(f"did you mean {suggestion}?", message, text)

    def test_fullPathInMessage(self) -> None:
        """
        The warning's message starts with the full key path.
        """
        build_ = build("models: {m: {cmd: x, proxy: 'http://h:1', ttll: 5}}")[1]
        (warning,) = build_.warnings
        self.assertEqual(
            warning.message, "models.m.ttll: unknown key (ignored); did you mean 'ttl'?"
        )
        self.assertEqual(
            str(warning),
            "config.yaml:1: warning: models.m.ttll: unknown key (ignored); did you mean 'ttl'?",
        )

    def test_topLevelExemptions(self) -> None:
        """
        Top-level keys starting with C{x-} or C{.} are the user's own; a
        C{defs} key is warned about, pointing at C{x-}.
        """
        self.loads("x-anchors: {a: 1}\n.hidden: 2\n")
        self.noWarnings()
        self.loads("defs: {a: 1}")
        warning = self.warned("unknown key")
        self.assertEqual(warning.path, ("defs",))
        self.assertIn("'x-'", warning.message)
        self.assertNotIn("did you mean", warning.message)

    def test_freeFormContentsExempt(self) -> None:
        """
        The contents of metadata, setParams, setParamsByID, env, priority
        maps and pins are not checked.
        """
        self.loads(
            MODELS
            + dedent(
                """\
                  free:
                    cmd: x
                    proxy: http://h:1
                    env: [WHATEVER=1]
                    metadata: {anything: {goes: here}}
                    filters: {setParams: {custom_key: 1}, setParamsByID: {"free:x": {other: 2}}}
                routing: {scheduler: {settings: {fifo: {priority: {model1: 2}}}}}
                profiles: {p: {pins: {whatever: model1}}}
                """
            )
        )
        self.noWarnings()


class RoutingTests(BuildTestCase):
    """
    Legacy C{groups}/C{matrix} versus C{routing.router}, groups, scheduler.
    """

    def test_legacyGroups(self) -> None:
        """
        Top-level groups are used by the group router with the fifo
        scheduler.
        """
        config = self.loads(MODELS + "groups: {g: {members: [model1, model2]}}")
        self.assertEqual(config.routing.use, "group")
        self.assertEqual(config.routing.scheduler, "fifo")
        self.assertEqual(config.routing.groups["g"].members, ("model1", "model2"))
        self.assertIsNone(config.routing.matrix)

    def test_newStyleGroups(self) -> None:
        """
        routing.router.settings.groups is honoured, with or without
        C{use: group}.
        """
        for use in ("use: group, ", ""):
            config = self.loads(
                MODELS
                + f"routing: {{router: {{{use}settings: {{groups: {{g: {{swap: false, members: [model3]}}}}}}}}}}"
            )
            self.assertEqual(config.routing.use, "group")
            self.assertEqual(
                config.routing.groups["g"], GroupConfig("g", swap=False, members=("model3",))
            )
            self.assertEqual(config.routing.groups[DEFAULT_GROUP_ID].members, ("model1", "model2"))

    def test_noRoutingDefaults(self) -> None:
        """
        Without routing configuration every model is in the C{(default)}
        group, sorted.
        """
        config = self.loads(MODELS)
        self.assertEqual(config.routing.use, "group")
        self.assertEqual(list(config.routing.groups), [DEFAULT_GROUP_ID])
        self.assertEqual(
            config.routing.groups[DEFAULT_GROUP_ID].members, ("model1", "model2", "model3")
        )
        self.assertEqual(config.groupOf("model2"), config.routing.groups[DEFAULT_GROUP_ID])

    def test_groupDefaults(self) -> None:
        """
        A group defaults to swap, exclusive, not persistent, no members.
        """
        config = self.loads(MODELS + "groups: {g: {members: [model1]}, e: {}}")
        self.assertEqual(
            config.routing.groups["g"], GroupConfig("g", True, True, False, ("model1",))
        )
        self.assertEqual(config.routing.groups["e"], GroupConfig("e"))

    def test_legacyMatrix(self) -> None:
        """
        A top-level matrix selects the matrix router with a compiled
        program and no groups; the routing.router spelling gives the same.
        """
        legacy = self.loads(MODELS + "matrix: {sets: {pair: 'model1 & model2'}}")
        self.assertEqual(legacy.routing.use, "matrix")
        self.assertIsNotNone(legacy.routing.matrix)
        self.assertEqual(dict(legacy.routing.groups), {})
        self.assertIsNone(legacy.groupOf("model1"))
        self.assertTrue(legacy.routing.matrix.canContainAll(["model1", "model2"]))
        self.assertFalse(legacy.routing.matrix.canContainAll(["model1", "model3"]))
        new = self.loads(
            MODELS
            + "routing: {router: {use: matrix, settings: {matrix: {sets: {pair: 'model1 & model2'}}}}}"
        )
        self.assertEqual(new.routing.use, "matrix")
        self.assertTrue(new.routing.matrix.canContainAll(["model1", "model2"]))

    def test_matrixErrorsReported(self) -> None:
        """
        Matrix compile errors (from the DSL compiler) fail the load.
        """
        self.fails(MODELS + "matrix: {sets: {}}", "matrix: ")

    def test_legacyAndRoutingConflict(self) -> None:
        """
        Legacy top-level keys together with routing.router are an error
        asking to migrate.
        """
        problem = self.fails(
            MODELS + "groups: {g: {members: [model1]}}\nrouting: {router: {use: group}}",
            "migrate",
        )
        self.assertEqual(
            problem.message,
            "config uses both the legacy top-level 'matrix'/'groups' keys and the new"
            " 'routing.router' block; please migrate the top-level keys into"
            " 'routing.router' and remove them",
        )

    def test_legacyGroupsAndMatrix(self) -> None:
        """
        Top-level groups and matrix together are an error.
        """
        self.fails(
            MODELS + "groups: {g: {members: [model1]}}\nmatrix: {sets: {s: model1}}",
            "config cannot use both 'groups' and 'matrix'",
        )

    def test_matrixWithoutSettings(self) -> None:
        """
        C{use: matrix} without settings.matrix is an error.
        """
        self.assertEqual(
            self.fails(MODELS + "routing: {router: {use: matrix}}", "not set").message,
            "routing.router.use is 'matrix' but routing.router.settings.matrix is not set",
        )

    def test_groupsWinWhenBothSettings(self) -> None:
        """
        C{use: group} with both settings: the groups are used and the matrix
        is ignored (with a warning).
        """
        config = self.loads(
            MODELS + "routing: {router: {use: group, settings: {groups: {g: {members: [model1]}},"
            " matrix: {sets: {s: model1}}}}}"
        )
        self.assertEqual(config.routing.use, "group")
        self.assertIsNone(config.routing.matrix)
        self.assertIn("g", config.routing.groups)
        self.warned("is not 'matrix'")

    def test_unknownRouter(self) -> None:
        """
        An unknown router name is an error.
        """
        self.assertEqual(
            self.fails(MODELS + "routing: {router: {use: random}}", "unknown router").message,
            'routing.router.use: unknown router "random" (valid: group, matrix)',
        )

    def test_scheduler(self) -> None:
        """
        The scheduler must be fifo.
        """
        self.assertEqual(self.loads("routing: {scheduler: {use: fifo}}").routing.scheduler, "fifo")
        self.assertEqual(
            self.fails("routing: {scheduler: {use: lifo}}", "unknown scheduler").message,
            'routing.scheduler.use: unknown scheduler "lifo" (valid: fifo)',
        )

    def test_fifoPriority(self) -> None:
        """
        Priority keys must name models or aliases; values are kept (alias
        keys resolved to the model ID); unknown names are errors.
        """
        config = self.loads(
            MODELS + "routing: {scheduler: {settings: {fifo: {priority: {model2: 5, m1: 3}}}}}"
        )
        self.assertEqual(dict(config.routing.priority), {"model2": 5, "model1": 3})
        self.assertEqual(config.routing.priorityOf("model2"), 5)
        self.assertEqual(config.routing.priorityOf("model3"), 0)
        problem = self.fails(
            MODELS + "routing: {scheduler: {settings: {fifo: {priority: {ghost: 1}}}}}",
            "unknown model",
        )
        self.assertEqual(
            problem.message,
            'routing.scheduler.settings.fifo.priority references unknown model "ghost"',
        )

    def test_maxWaitForSwap(self) -> None:
        """
        maxWaitForSwap defaults to 30 seconds, may be set, must be >= 0.
        """
        self.assertEqual(self.loads("").routing.maxWaitForSwap, 30)
        self.assertEqual(
            self.loads(
                "routing: {scheduler: {settings: {fifo: {maxWaitForSwap: 0}}}}"
            ).routing.maxWaitForSwap,
            0,
        )
        self.assertEqual(
            self.loads(
                "routing: {scheduler: {settings: {fifo: {maxWaitForSwap: 5}}}}"
            ).routing.maxWaitForSwap,
            5,
        )
        self.fails(
            "routing: {scheduler: {settings: {fifo: {maxWaitForSwap: -1}}}}",
            "routing.scheduler.settings.fifo.maxWaitForSwap must be >= 0",
        )

    def test_memberInTwoGroups(self) -> None:
        """
        llama-swap's GroupMemberIsUnique: a model in two groups is an error.
        """
        problem = self.fails(
            MODELS + "groups: {g1: {members: [model1, model2]}, g2: {members: [model2]}}",
            "multiple groups",
        )
        self.assertEqual(
            problem.message, "model member model2 is used in multiple groups: g1 and g2"
        )
        self.assertEqual(problem.path, ("groups", "g2", "members", 0))

    def test_duplicateMember(self) -> None:
        """
        A member listed twice in one group is an error.
        """
        self.fails(
            MODELS + "groups: {g: {members: [model1, model1]}}",
            "duplicate model member model1 found in group: g",
        )

    def test_unknownMember(self) -> None:
        """
        A member that is not a model is a load error.
        """
        problem = self.fails(MODELS + "groups: {g: {members: [model1, ghost]}}", "no model config")
        self.assertEqual(problem.message, 'no model config for "ghost"')
        self.assertEqual(problem.path, ("groups", "g", "members", 1))

    def test_aliasMember(self) -> None:
        """
        An alias as a group member is replaced by its model ID (warning),
        so the model is not also put in C{(default)}.
        """
        config = self.loads(MODELS + "groups: {g: {members: [m1]}}")
        self.assertEqual(config.routing.groups["g"].members, ("model1",))
        self.assertEqual(config.routing.groups[DEFAULT_GROUP_ID].members, ("model2", "model3"))
        self.warned("is an alias of model")

    def test_userDefaultGroupReplaced(self) -> None:
        """
        A user group named C{(default)} is replaced by the automatic one
        (warning); its models are ungrouped and so land in it.
        """
        config = self.loads(
            MODELS
            + "groups: {'(default)': {swap: false, members: [model1]}, g: {members: [model2]}}"
        )
        self.assertEqual(
            config.routing.groups[DEFAULT_GROUP_ID],
            GroupConfig(DEFAULT_GROUP_ID, members=("model1", "model3")),
        )
        self.warned("reserved")


class HooksTests(BuildTestCase):
    """
    C{hooks.on_startup.preload}.
    """

    def test_preload(self) -> None:
        """
        Entries are trimmed, blanks dropped, aliases resolved; unknown
        names are dropped with a warning.
        """
        config = self.loads(MODELS + "hooks: {on_startup: {preload: [' m1 ', '', model2, ghost]}}")
        self.assertEqual(config.hooks.preload, ("model1", "model2"))
        self.assertEqual(self.warned("ghost").path, ("hooks", "on_startup", "preload", 3))


PEERS = """
peers:
  p1:
    proxy: http://peer1:8080/api
    apiKey: secret
    models: [llama, org/model, shared, p2/x]
  p2:
    proxy: http://peer2:8080
    models: [shared, x, qwen]
"""


class PeerTests(BuildTestCase):
    """
    Peers, peer model resolution and the peer namespace.
    """

    def test_fields(self) -> None:
        """
        A peer's proxy, key, models (de-duplicated), filters and timeouts
        (with the peer defaults) are decoded.
        """
        config = self.loads(
            """
            peers:
              remote:
                proxy: https://example.com/api
                models: [a, b, a]
                filters:
                  stripParams: "top_p, model, temperature"
                  setParams: {max_tokens: 4096, nested: {a: [1, 2]}}
            """
        )
        peer = config.peers["remote"]
        self.assertEqual(peer.models, ("a", "b"))
        self.assertEqual(peer.apiKey, "")
        self.assertEqual(
            (peer.proxyURL.scheme, peer.proxyURL.hostname, peer.proxyURL.path),
            ("https", "example.com", "/api"),
        )
        self.assertEqual(peer.filters.sanitizedStripParams, ("temperature", "top_p"))
        self.assertEqual(peer.filters.setParams, {"max_tokens": 4096, "nested": {"a": (1, 2)}})
        self.assertEqual(peer.timeouts, Timeouts(30, 30, 60, 10, 1, 90))
        self.assertEqual(self.loads(PEERS).peers["p1"].apiKey, "secret")

    def test_peerTimeouts(self) -> None:
        """
        Peer timeouts parse; unset ones keep the peer defaults.
        """
        peer = self.loads(
            "peers: {p: {proxy: 'http://h', models: [a], timeouts: {connect: 5, responseHeader: 0}}}"
        ).peers["p"]
        self.assertEqual(peer.timeouts, Timeouts(connect=5, responseHeader=0))

    def test_errors(self) -> None:
        """
        proxy is required and must parse; models must be non-empty.
        """
        self.assertEqual(
            self.fails("peers: {p: {models: [a]}}", "proxy").message, "proxy is required"
        )
        self.fails("peers: {p: {proxy: '', models: [a]}}", "proxy is required")
        self.assertEqual(
            self.fails(
                "peers: {p: {proxy: '://invalid', models: [a]}}", "invalid peer proxy URL"
            ).message,
            'invalid peer proxy URL (://invalid): parse "://invalid": missing protocol scheme',
        )
        problem = self.fails("peers: {p: {proxy: 'http://h'}}", "peer models")
        self.assertEqual(problem.message, "peer models can not be empty")
        self.assertEqual(problem.path, ("peers", "p", "models"))
        self.fails("peers: {p: {proxy: 'http://h', models: []}}", "peer models can not be empty")

    def test_resolvePeerModel(self) -> None:
        """
        Fully-qualified names resolve for every peer (model IDs may hold
        slashes); a bare name resolves only when one peer offers it; an FQN
        beats a bare name spelled the same.
        """
        config = self.loads(PEERS)
        self.assertEqual(config.resolvePeerModel("p1/llama"), ("p1", "llama"))
        self.assertEqual(config.resolvePeerModel("p1/org/model"), ("p1", "org/model"))
        self.assertEqual(config.resolvePeerModel("p2/shared"), ("p2", "shared"))
        self.assertEqual(config.resolvePeerModel("llama"), ("p1", "llama"))
        self.assertIsNone(config.resolvePeerModel("shared"))
        self.assertIsNone(config.resolvePeerModel("nope"))
        # p1 lists a model literally named "p2/x"; p2's FQN "p2/x" wins.
        self.assertEqual(config.resolvePeerModel("p2/x"), ("p2", "x"))
        self.assertEqual(config.resolvePeerModel("p1/p2/x"), ("p1", "p2/x"))

    def test_resolveBaseModelPrefersLocal(self) -> None:
        """
        A local model beats a peer model of the same name.
        """
        config = self.loads(PEERS + "models: {shared: {cmd: x, proxy: 'http://h:1'}}")
        self.assertEqual(config.resolveBaseModel("shared"), "shared")
        self.assertEqual(config.resolveBaseModel("llama"), "llama")
        self.assertIsNone(config.resolveBaseModel("ghost"))

    def test_namespaceAmbiguous(self) -> None:
        """
        Two peers producing the same fully-qualified name is an error.
        """
        problem = self.fails(
            "peers: {a: {proxy: 'http://h', models: [b/c]}, a/b: {proxy: 'http://h', models: [c]}}",
            "ambiguous",
        )
        self.assertEqual(
            problem.message,
            'peer model name "a/b/c" is ambiguous between peers.a model "b/c" and peers.a/b model "c"',
        )

    def test_namespaceCollisions(self) -> None:
        """
        A fully-qualified peer name may not also be a local model ID, an
        alias (explicit or from setParamsByID), a selector ID or a pin.
        """
        peer = "peers: {p: {proxy: 'http://h', models: [m]}}\n"
        suffix = "conflicts with fully qualified peer model name"
        self.assertEqual(
            self.fails(peer + "models: {p/m: {cmd: x, proxy: 'http://h:1'}}", suffix).message,
            f'model ID "p/m" {suffix}',
        )
        self.assertEqual(
            self.fails(
                peer + "models: {x: {cmd: x, proxy: 'http://h:1', aliases: [p/m]}}", suffix
            ).message,
            f'model x alias "p/m" {suffix}',
        )
        self.fails(
            peer
            + "models: {x: {cmd: x, proxy: 'http://h:1', filters: {setParamsByID: {p/m: {a: 1}}}}}",
            suffix,
        )
        self.fails(
            peer
            + "models: {x: {cmd: x, proxy: 'http://h:1'}}\nselectors: {p/m: {strategy: pin, targets: [x]}}",
            f'selector ID "p/m" {suffix}',
        )
        self.fails(
            peer + "models: {x: {cmd: x, proxy: 'http://h:1'}}\nprofiles: {prof: {pins: {p/m: x}}}",
            f'profile prof pin "p/m" {suffix}',
        )


SELECTOR_BASE = """
models:
  a:
    cmd: x
    proxy: http://h:1
    aliases: [alias-a]
    filters:
      setParamsByID:
        variant: {temperature: 0}
  b: {cmd: x, proxy: "http://h:2"}
peers:
  remote:
    proxy: http://example.com
    models: [remote-model, other-remote]
"""


class SelectorTests(BuildTestCase):
    """
    C{selectors}.
    """

    def test_fields(self) -> None:
        """
        A selector's fields load; spillover defaults to 1.
        """
        config = self.loads(
            SELECTOR_BASE
            + dedent(
                """
            selectors:
              public:
                strategy: warm
                targets: [a, b]
                name: Public
                description: D
                unlisted: true
                metadata: {tier: 1}
            """
            )
        )
        selector = config.selectors["public"]
        self.assertEqual(selector.strategy, "warm")
        self.assertEqual(selector.targets, ("a", "b"))
        self.assertEqual(selector.spillover, 1)
        self.assertEqual(
            (selector.name, selector.description, selector.unlisted), ("Public", "D", True)
        )
        self.assertEqual(selector.metadata, {"tier": 1})

    def test_errors(self) -> None:
        """
        Every selector validation error of llama-swap.
        """
        cases = [
            ("'': {strategy: pin, targets: [a]}", "selectors: selector names cannot be empty"),
            ("a: {strategy: pin, targets: [b]}", 'selectors.a: name conflicts with model ID "a"'),
            (
                "alias-a: {strategy: pin, targets: [b]}",
                'selectors.alias-a: name conflicts with model alias "alias-a"',
            ),
            (
                "variant: {strategy: pin, targets: [b]}",
                'selectors.variant: name conflicts with model alias "variant"',
            ),
            ("s: {targets: [a]}", "selectors.s.strategy is required"),
            (
                "s: {strategy: random, targets: [a]}",
                'selectors.s.strategy: unknown strategy "random" (valid: warm, pin, spillover)',
            ),
            ("s: {strategy: pin}", "selectors.s.targets must contain at least one entry"),
            (
                "s: {strategy: pin, targets: [a, ghost]}",
                'selectors.s.targets[1] references unknown model "ghost"',
            ),
            (
                "s: {strategy: pin, targets: [t]}\n  t: {strategy: pin, targets: [a]}",
                'selectors.s.targets[0] references selector "t"; selector chaining is not supported',
            ),
            (
                "s: {strategy: warm, targets: [remote-model]}",
                'selectors.s.targets[0] must resolve to a local model for strategy "warm"',
            ),
            (
                "s: {strategy: spillover, targets: [a], settings: {spillover: 0}}",
                "selectors.s.settings.spillover must be >= 1",
            ),
            (
                "s: {strategy: spillover, targets: [a, alias-a]}",
                'selectors.s.targets contains duplicate resolved model "a"',
            ),
            (
                "s: {strategy: spillover, targets: [remote-model, remote/remote-model]}",
                'selectors.s.targets contains duplicate resolved model "remote/remote-model"',
            ),
            (
                "s: {strategy: spillover, targets: [a, b]}",
                "selectors.s spillover targets must share a group with swap: false",
            ),
        ]
        for selectors, message in cases:
            self.fails(SELECTOR_BASE + "selectors:\n  " + selectors, message)

    def test_peerTargets(self) -> None:
        """
        pin and spillover selectors may target peer models (bare or
        fully-qualified); a selector may be named like a bare peer model.
        """
        config = self.loads(
            SELECTOR_BASE
            + dedent(
                """
            selectors:
              remote-model: {strategy: pin, targets: [remote/remote-model]}
              mixed: {strategy: spillover, targets: [a, other-remote]}
              remoteOnly: {strategy: spillover, targets: [remote/remote-model, other-remote]}
            """
            )
        )
        self.assertEqual(config.selectors["mixed"].targets, ("a", "other-remote"))

    def test_spilloverGroups(self) -> None:
        """
        Spillover targets must share one group with swap: false.
        """
        self.loads(
            SELECTOR_BASE
            + "groups: {pool: {swap: false, members: [a, b]}}\nselectors: {s: {strategy: spillover, targets: [a, b]}}"
        )
        self.fails(
            SELECTOR_BASE
            + "groups: {pool: {swap: true, members: [a, b]}}\nselectors: {s: {strategy: spillover, targets: [a, b]}}",
            "selectors.s spillover targets must share a group with swap: false",
        )
        self.fails(
            SELECTOR_BASE
            + "groups: {first: {swap: false, members: [a]}, second: {swap: false, members: [b]}}\n"
            "selectors: {s: {strategy: spillover, targets: [a, b]}}",
            "selectors.s spillover targets must share one routing group",
        )

    def test_spilloverMatrix(self) -> None:
        """
        With the matrix router, spillover targets must appear together in
        some expanded set.
        """
        self.loads(
            SELECTOR_BASE
            + "matrix: {sets: {both: 'a & b'}}\nselectors: {s: {strategy: spillover, targets: [a, b]}}"
        )
        self.fails(
            SELECTOR_BASE
            + "matrix: {sets: {either: 'a | b'}}\nselectors: {s: {strategy: spillover, targets: [a, b]}}",
            "selectors.s.targets must all appear together in one expanded matrix set",
        )


class ProfileTests(BuildTestCase):
    """
    C{profiles} in the pin form.
    """

    def test_pins(self) -> None:
        """
        Pins may target a model, an alias, a setParamsByID alias, a bare or
        fully-qualified peer model, a selector; C{""} and null disable; a
        pin may shadow a local model name.
        """
        config = self.loads(
            SELECTOR_BASE
            + dedent(
                """
            selectors:
              sel: {strategy: pin, targets: [a]}
            profiles:
              work:
                description: For work
                pins:
                  p1: a
                  p2: alias-a
                  p3: variant
                  p4: remote-model
                  p5: remote/remote-model
                  p6: sel
                  off1: ""
                  off2: ~
                  b: remote-model
            """
            )
        )
        profile = config.profiles["work"]
        self.assertEqual(profile.description, "For work")
        self.assertEqual(profile.pins["off1"], "")
        self.assertEqual(profile.pins["off2"], "")
        self.assertEqual(profile.pins["b"], "remote-model")
        self.assertEqual(len(profile.pins), 9)

    def test_errors(self) -> None:
        """
        Every pin-form profile validation error.
        """
        cases = [
            ("work: {pins: {}}", "profiles.work.pins must contain at least one entry"),
            ("work: {description: x}", "profiles.work.pins must contain at least one entry"),
            ("work: {pins: {x: ghost}}", 'profiles.work.pins.x references unknown model "ghost"'),
            ("work: {pins: {x: a, y: x}}", 'profiles.work.pins.y references unknown model "x"'),
            ("work: {pins: {' ': a}}", "profiles.work.pins: pin names cannot be empty"),
            ("' ': {pins: {x: a}}", "profiles: profile names cannot be empty"),
            ("work: 5", "profile must be a mapping with description and pins"),
        ]
        for profiles, message in cases:
            self.fails(SELECTOR_BASE + "profiles:\n  " + profiles, message)


class LegacyProfileTests(BuildTestCase):
    """
    llama-swap v1 list-form profiles, which llamaswap still loads.
    """

    def test_loaded(self) -> None:
        """
        A list profile loads as models that run together (aliases
        resolved to IDs), with a warning suggesting a group.
        """
        config = self.loads(MODELS + "profiles: {pair: [m1, model2]}")
        self.assertEqual(config.legacyProfiles, {"pair": ("model1", "model2")})
        warning = self.warned("legacy")
        self.assertIn("swap: false", warning.message)
        self.assertEqual(warning.path, ("profiles", "pair"))

    def test_names(self) -> None:
        """
        C{profile/model} and C{profile:model} (member by ID or alias)
        resolve to the model, with the profile known.
        """
        config = self.loads(MODELS + "profiles: {pair: [model1, model2]}")
        for name in ("pair/model1", "pair:model1", "pair/m1"):
            self.assertEqual(config.realModelName(name), "model1", name)
            self.assertEqual(config.resolveLegacyProfile(name), ("pair", "model1"))
            self.assertEqual(config.findModel(name), (config.models["model1"], "model1"))
        self.assertIsNone(config.realModelName("pair/model3"))
        self.assertIsNone(config.realModelName("other/model1"))
        self.assertIsNone(config.resolveLegacyProfile("model1"))

    def test_unknownMember(self) -> None:
        """
        A member that is not a model or alias is an error.
        """
        problem = self.fails(MODELS + "profiles: {pair: [model1, ghost]}", "unknown model")
        self.assertEqual(problem.message, 'profiles.pair[1] references unknown model "ghost"')
        self.assertEqual(problem.path, ("profiles", "pair", 1))

    def test_mixedForms(self) -> None:
        """
        Pin-form and list-form profiles may be mixed; pins may target a
        legacy profile name.
        """
        config = self.loads(
            MODELS + "profiles: {pair: [model1, model2], work: {pins: {fast: pair/model2}}}"
        )
        self.assertEqual(list(config.legacyProfiles), ["pair"])
        self.assertEqual(list(config.profiles), ["work"])
        self.assertEqual(config.profiles["work"].pins["fast"], "pair/model2")

    def test_preloadAndPriority(self) -> None:
        """
        A legacy profile name may be preloaded or prioritised; it stands
        for its model.
        """
        config = self.loads(
            MODELS + "profiles: {pair: [model1, model2]}\n"
            "hooks: {on_startup: {preload: [pair/model2]}}\n"
            "routing: {scheduler: {settings: {fifo: {priority: {pair/model2: 4}}}}}"
        )
        self.assertEqual(config.hooks.preload, ("model2",))
        self.assertEqual(config.routing.priorityOf("model2"), 4)


class GoSyntaxTests(SynchronousTestCase):
    """
    The Go-compatible helpers used for messages and parsing.
    """

    def test_parseDuration(self) -> None:
        """
        Go duration strings parse to nanoseconds.
        """
        cases = {
            "5s": 5_000_000_000,
            "1m30s": 90_000_000_000,
            "500ms": 500_000_000,
            "1.5h": 5_400_000_000_000,
            "0": 0,
            "-2s": -2_000_000_000,
            "1h2m3s4ms5us6ns": 3_723_004_005_006,
            ".5s": 500_000_000,
            "10\u00b5s": 10_000,
        }
        for text, expected in cases.items():
            self.assertEqual(parseGoDuration(text), expected, text)
        for text, message in (
            ("", 'time: invalid duration ""'),
            ("5", 'time: missing unit in duration "5"'),
            ("5x", 'time: unknown unit "x" in duration "5x"'),
            ("s", 'time: invalid duration "s"'),
            (".s", 'time: invalid duration ".s"'),
        ):
            with self.assertRaises(ValueError) as raised:
                parseGoDuration(text)
            self.assertEqual(str(raised.exception), message)

    def test_formatDuration(self) -> None:
        """
        Durations render like Go's Duration.String.
        """
        cases = {
            0: "0s",
            4_000_000_000: "4s",
            90_000_000_000: "1m30s",
            3_600_000_000_000: "1h0m0s",
            1_500_000_000: "1.5s",
            500_000_000: "500ms",
            1_500: "1.5\u00b5s",
            7: "7ns",
            -2_000_000_000: "-2s",
        }
        for value, expected in cases.items():
            self.assertEqual(formatGoDuration(value), expected)

    def test_urlErrors(self) -> None:
        """
        URLs are accepted or rejected like Go's url.Parse, with its
        messages.
        """
        for ok in (
            "http://localhost:8080",
            "",
            "localhost:8080",
            "/path",
            "http://[::1]:80/x",
            "http://u:p@h/x#frag",
        ):
            self.assertIsNone(goURLError(ok), ok)
        cases = {
            "://invalid": 'parse "://invalid": missing protocol scheme',
            "http://h:port": 'parse "http://h:port": invalid port ":port" after host',
            "http://h/%zz": 'parse "http://h/%zz": invalid URL escape "%zz"',
            "http://h\n": 'parse "http://h\\n": net/url: invalid control character in URL',
            "a b:c": 'parse "a b:c": first path segment in URL cannot contain colon',
            "http://a b/": 'parse "http://a b/": invalid character " " in host name',
            "http://[::1": "parse \"http://[::1\": missing ']' in host",
        }
        for raw, message in cases.items():
            self.assertEqual(goURLError(raw), message, raw)

    def test_quote(self) -> None:
        """
        goQuote quotes like Go's %q.
        """
        self.assertEqual(goQuote('a"b\\c\n\x01é'), '"a\\"b\\\\c\\n\\x01é"')

    def test_describeValue(self) -> None:
        """
        Type errors describe values briefly.
        """
        self.assertEqual(
            [describeValue(v) for v in ("x", 1, 1.5, True, None, [1], {"a": 1})],
            ['string "x"', "integer 1", "float 1.5", "boolean true", "null", "a list", "a mapping"],
        )

    def test_suggestKey(self) -> None:
        """
        Suggestions ignore case, underscores and dashes, else use close
        matches, else none.
        """
        known = KNOWN_KEYS["model"]
        self.assertEqual(suggestKey("TTL", known), "ttl")
        self.assertEqual(suggestKey("check_endpoint", known), "checkEndpoint")
        self.assertEqual(suggestKey("aliasses", known), "aliases")
        self.assertIsNone(suggestKey("zzz", known))
        self.assertEqual(suggestKey("strip-params", KNOWN_KEYS["peer.filters"]), "stripParams")


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
