"""
Tests for L{llamaswap.config.decode_models}: models, aliases, filters,
capabilities and timeouts.
"""

from __future__ import annotations

from llamaswap.config.model import Capabilities, Timeouts

from .helpers import MODELS, BuildTestCase


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
