"""
Tests for L{llamaswap.config.macros}, driven through L{readText} as
llama-swap's own tests drive C{LoadConfigFromReader}.
"""

from __future__ import annotations

from typing import Any, Mapping

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.cmdline import splitCommand
from llamaswap.config.errors import Location, Problems
from llamaswap.config.expanded import ExpandedTree
from llamaswap.config.macros import expand, formatGoFloat
from llamaswap.config.sources import readText


def load(text: str, environ: Mapping[str, str] | None = None) -> tuple[ExpandedTree, Problems]:
    """
    Read C{text} as C{c.yaml} and expand it.
    """
    problems = Problems()
    tree, sourceMap = readText(text, "c.yaml", environ or {}, problems)
    return expand(tree, sourceMap, problems), problems


def loadOK(text: str, environ: Mapping[str, str] | None = None) -> ExpandedTree:
    """
    Like L{load}, asserting that nothing was reported.
    """
    expanded, problems = load(text, environ)
    assert len(problems) == 0, [str(p) for p in problems]
    return expanded


def errors(text: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """
    The error messages loading C{text} reports.
    """
    return [p.message for p in load(text, environ)[1].errors]


def models(expanded: ExpandedTree) -> Any:
    """
    The expanded C{models} mapping.
    """
    return expanded.tree["models"]


def argv(expanded: ExpandedTree, modelID: str, field: str = "cmd") -> str:
    """
    The command of a model as llama-swap would run it, joined by spaces.
    """
    return " ".join(splitCommand(models(expanded)[modelID][field]))


PROXY_ERROR = (
    "model model1: proxy uses ${PORT} but cmd does not - ${PORT} is only available when used in cmd"
)


class PortTests(SynchronousTestCase):
    """
    C{startPort} and C{${PORT}} allocation (AutomaticPortAssignments).
    """

    def test_emptyConfig(self) -> None:
        """
        An empty configuration expands to an empty tree with no ports.
        """
        expanded = loadOK("")
        self.assertEqual(expanded.tree, {})
        self.assertEqual(expanded.ports, {})

    def test_startPortKept(self) -> None:
        """
        A user C{startPort} is where allocation starts.
        """
        expanded = loadOK("startPort: 1000\nmodels:\n  m:\n    cmd: s --port ${PORT}\n")
        self.assertEqual(expanded.ports, {"m": 1000})

    def test_startPortInvalid(self) -> None:
        """
        C{startPort} must be an integer of at least 1.
        """
        self.assertEqual(errors("startPort: abcd"), ["cannot unmarshal !!str `abcd` into int"])
        self.assertEqual(errors('startPort: "6200"'), ["cannot unmarshal !!str `6200` into int"])
        self.assertEqual(errors("startPort: [1]"), ["cannot unmarshal !!seq into int"])
        self.assertEqual(errors("startPort: true"), ["cannot unmarshal !!bool `true` into int"])
        self.assertEqual(errors("startPort: -99"), ["startPort must be greater than 1"])
        self.assertEqual(errors("startPort: 0"), ["startPort must be greater than 1"])
        self.assertEqual(errors("startPort: 1"), [])

    def test_startPortLine(self) -> None:
        """
        The C{startPort} error carries its line.
        """
        _, problems = load("\n\nstartPort: -99\n")
        self.assertEqual(
            [str(p) for p in problems], ["c.yaml:3: startPort must be greater than 1"]
        )

    def test_automaticAssignments(self) -> None:
        """
        Models whose C{cmd} uses C{${PORT}} get consecutive ports in sorted
        order; the default and custom proxies use them; a fixed-port model
        takes none.
        """
        expanded = loadOK(
            "startPort: 5800\n"
            "models:\n"
            "  model1:\n    cmd: svr --port ${PORT}\n"
            "  model2:\n    cmd: svr --port ${PORT}\n    proxy: \"http://172.11.22.33:${PORT}\"\n"
            "  model3:\n    cmd: svr --port 1999\n    proxy: \"http://1.2.3.4:1999\"\n"
        )
        self.assertEqual(
            models(expanded),
            {
                "model1": {"cmd": "svr --port 5800", "proxy": "http://localhost:5800"},
                "model2": {"cmd": "svr --port 5801", "proxy": "http://172.11.22.33:5801"},
                "model3": {"cmd": "svr --port 1999", "proxy": "http://1.2.3.4:1999"},
            },
        )
        self.assertEqual(expanded.ports, {"model1": 5800, "model2": 5801})

    def test_proxyRequiredWithoutPort(self) -> None:
        """
        A fixed-port command with the default proxy is the exact error.
        """
        self.assertEqual(errors("models:\n  model1:\n    cmd: svr --port 111\n"), [PROXY_ERROR])

    def test_portOnlyInProxy(self) -> None:
        """
        C{${PORT}} in an explicit proxy but not in the command is the same
        error, located at the proxy.
        """
        _, problems = load(
            "models:\n  model1:\n    cmd: svr\n    proxy: http://localhost:${PORT}\n"
        )
        [problem] = problems.errors
        self.assertEqual(problem.message, PROXY_ERROR)
        self.assertEqual(problem.location, Location("c.yaml", 4))

    def test_portInCommentDoesNotCount(self) -> None:
        """
        A C{${PORT}} in a comment line of C{cmd} allocates no port.
        """
        expanded = loadOK(
            "models:\n"
            "  a:\n    cmd: |\n      # was --port ${PORT}\n      svr --port 9\n"
            "    proxy: http://h:9\n"
            "  b:\n    cmd: svr --port ${PORT}\n"
        )
        self.assertEqual(expanded.ports, {"b": 5800})
        self.assertEqual(models(expanded)["a"]["cmd"], "svr --port 9\n")

    def test_portInCheckEndpointWithoutCmd(self) -> None:
        """
        C{${PORT}} in C{checkEndpoint} of a model without one is reported as
        not substituted.
        """
        self.assertEqual(
            errors(
                "models:\n  m:\n    cmd: svr\n    proxy: http://h:1\n"
                "    checkEndpoint: /${PORT}\n"
            ),
            ["macro '${PORT}' should have been substituted in m.checkEndpoint"],
        )

    def test_macroStartPort(self) -> None:
        """
        C{startPort} may be a macro; it takes the macro's integer value.
        """
        expanded = loadOK(
            "macros:\n  FIRST_PORT: 6200\nstartPort: \"${FIRST_PORT}\"\n"
            "models:\n  model1:\n    cmd: server --port ${PORT}\n"
        )
        self.assertEqual(expanded.tree["startPort"], 6200)
        self.assertEqual(
            models(expanded)["model1"],
            {"cmd": "server --port 6200", "proxy": "http://localhost:6200"},
        )

    def test_runtimePort(self) -> None:
        """
        The allocated port reaches every field of its model, typed where a
        value is exactly C{${PORT}}.
        """
        expanded = loadOK(
            "startPort: 6100\n"
            "models:\n"
            "  model1:\n"
            "    cmd: server --port ${PORT}\n"
            "    proxy: http://localhost:${PORT}\n"
            "    checkEndpoint: /health/${PORT}\n"
            "    aliases: [\"port-${PORT}\"]\n"
            "    metadata:\n      port: \"${PORT}\"\n"
        )
        self.assertEqual(
            models(expanded)["model1"],
            {
                "cmd": "server --port 6100",
                "proxy": "http://localhost:6100",
                "checkEndpoint": "/health/6100",
                "aliases": ["port-6100"],
                "metadata": {"port": 6100},
            },
        )


class MacroTests(SynchronousTestCase):
    """
    Macro substitution (config_test.go).
    """

    def test_macroReplacement(self) -> None:
        """
        Macros (one holding C{${PORT}}, one overridden by the model, one in
        a comment line) build the command and the stop command.
        """
        expanded = loadOK(
            """
startPort: 9990
macros:
  svr-path: "path/to/server"
  argOne: "--arg1"
  argTwo: "--arg2"
  autoPort: "--port ${PORT}"
  overriddenByModelMacro: failed

models:
  model1:
    macros:
      overriddenByModelMacro: success
    cmd: |
      ${svr-path} ${argTwo}
      # the automatic ${PORT} is replaced
      ${autoPort}
      ${argOne}
      --arg3 three
      --overridden ${overriddenByModelMacro}
    cmdStop: |
      /path/to/stop.sh --port ${PORT} ${argTwo}
"""
        )
        self.assertEqual(
            argv(expanded, "model1"),
            "path/to/server --arg2 --port 9990 --arg1 --arg3 three --overridden success",
        )
        self.assertEqual(argv(expanded, "model1", "cmdStop"), "/path/to/stop.sh --port 9990 --arg2")
        self.assertEqual(
            expanded.globalMacros,
            (
                ("svr-path", "path/to/server"),
                ("argOne", "--arg1"),
                ("argTwo", "--arg2"),
                ("autoPort", "--port ${PORT}"),
                ("overriddenByModelMacro", "failed"),
            ),
        )
        self.assertEqual(expanded.modelMacros, {"model1": (("overriddenByModelMacro", "success"),)})
        self.assertNotIn("macros", expanded.tree)
        self.assertNotIn("macros", models(expanded)["model1"])

    def test_reservedNames(self) -> None:
        """
        C{PORT}, C{MODEL_ID} and C{PID} cannot be declared, globally or in a
        model.
        """
        cases = {
            'macros:\n  PORT: "1111"\n': "macro name 'PORT' is reserved",
            "macros:\n  MODEL_ID: model1\n": "macro name 'MODEL_ID' is reserved",
            "macros:\n  PID: 1\n": "macro name 'PID' is reserved",
            "models:\n  model1:\n    macros:\n      PORT: 1111\n": (
                "model model1: macro name 'PORT' is reserved"
            ),
            "models:\n  model1:\n    macros:\n      MODEL_ID: model1\n": (
                "model model1: macro name 'MODEL_ID' is reserved"
            ),
            "models:\n  model1:\n    macros:\n      PID: 1234\n": (
                "model model1: macro name 'PID' is reserved"
            ),
        }
        for text, expected in cases.items():
            text += "    cmd: x\n    proxy: http://h:1\n" if "models:" in text else ""
            self.assertEqual(errors(text), [expected], text)

    def test_nameValidation(self) -> None:
        """
        Names are at most 63 characters of C{[a-zA-Z0-9_-]}.
        """
        self.assertEqual(
            errors("macros:\n  bad.name: value\n"),
            [
                "macro name 'bad.name' contains invalid characters, "
                "must match pattern ^[a-zA-Z0-9_-]+$"
            ],
        )
        name = "a" * 64
        self.assertEqual(
            errors(f"macros:\n  {name}: value\n"),
            [f"macro name '{name}' exceeds maximum length of 63 characters"],
        )
        self.assertEqual(errors(f"macros:\n  {'a' * 63}: value\n"), [])

    def test_unknownMacros(self) -> None:
        """
        An unknown macro in each named model field is reported with that
        field.
        """
        header = "startPort: 9990\nmacros:\n  svr-path: \"path/to/server\"\nmodels:\n  model1:\n"
        cases = {
            "cmd": "    cmd: |\n      ${svr-path} --port ${PORT}\n      ${unknownMacro}\n",
            "cmdStop": (
                "    cmd: \"${svr-path} --port ${PORT}\"\n    cmdStop: \"kill ${unknownMacro}\"\n"
            ),
            "proxy": (
                "    cmd: \"${svr-path} --port ${PORT}\"\n"
                "    proxy: \"http://${unknownMacro}:${PORT}\"\n"
            ),
            "checkEndpoint": (
                "    cmd: \"${svr-path} --port ${PORT}\"\n"
                "    checkEndpoint: \"http://localhost:${unknownMacro}/health\"\n"
            ),
            "filters.stripParams": (
                "    cmd: \"${svr-path} --port ${PORT}\"\n"
                "    filters:\n      stripParams: \"model,${unknownMacro}\"\n"
            ),
        }
        for field, body in cases.items():
            expected = f"unknown macro '${{unknownMacro}}' found in model1.{field}"
            self.assertEqual(errors(header + body), [expected])

    def test_everyLeftoverReported(self) -> None:
        """
        All leftovers are reported at once, each at its own line.
        """
        _, problems = load(
            "models:\n"
            "  m:\n"
            "    cmd: run ${A} ${B}\n"
            "    proxy: http://h:1\n"
            "    name: ${C}\n"
            "peers:\n"
            "  p:\n"
            "    apiKey: ${D}\n"
        )
        self.assertEqual(
            [str(p) for p in problems.errors],
            [
                "c.yaml:3: models.m.cmd: unknown macro '${A}' found in m.cmd",
                "c.yaml:3: models.m.cmd: unknown macro '${B}' found in m.cmd",
                "c.yaml:5: models.m.name: unknown macro '${C}' found in m.name",
                "c.yaml:8: peers.p.apiKey: unknown macro '${D}'",
            ],
        )

    def test_commentStrippedBeforeExpansion(self) -> None:
        """
        A multi-line macro named in a comment line is not expanded into the
        command.
        """
        expanded = loadOK(
            """
startPort: 9990
macros:
  "latest-llama": >
    /user/llama.cpp/build/bin/llama-server
    --port ${PORT}

models:
  "test-model":
    cmd: |
      # ${latest-llama} is a macro that is defined above
      ${latest-llama}
      --model /path/to/model.gguf
      -ngl 99
"""
        )
        self.assertEqual(
            argv(expanded, "test-model"),
            "/user/llama.cpp/build/bin/llama-server --port 9990 "
            "--model /path/to/model.gguf -ngl 99",
        )

    def test_modelID(self) -> None:
        """
        C{${MODEL_ID}} expands per model, also inside global macros; ports
        go in byte-wise ID order; the declared macro keeps its literal text.
        """
        expanded = loadOK(
            """
startPort: 9000
macros:
  "docker-llama": docker run --name ${MODEL_ID} -p ${PORT}:8080 docker_img
  "docker-stop": docker stop ${MODEL_ID}

models:
  model1:
    cmd: /path/to/server -p ${PORT} -hf ${MODEL_ID}

  model2:
    cmd: ${docker-llama}
    cmdStop: ${docker-stop}

  author/model:F16:
    cmd: /path/to/server -p ${PORT} -hf ${MODEL_ID}
    cmdStop: stop
"""
        )
        self.assertEqual(argv(expanded, "model1"), "/path/to/server -p 9001 -hf model1")
        self.assertEqual(
            argv(expanded, "model2"), "docker run --name model2 -p 9002:8080 docker_img"
        )
        self.assertEqual(argv(expanded, "model2", "cmdStop"), "docker stop model2")
        self.assertEqual(
            argv(expanded, "author/model:F16"), "/path/to/server -p 9000 -hf author/model:F16"
        )
        self.assertEqual(expanded.ports, {"author/model:F16": 9000, "model1": 9001, "model2": 9002})
        self.assertIn(("docker-stop", "docker stop ${MODEL_ID}"), expanded.globalMacros)

    def test_typedMacrosInMetadata(self) -> None:
        """
        A value that is exactly C{${X}} takes the macro's type; interpolated
        values are text, floats in Go's shortest form.
        """
        expanded = loadOK(
            """
startPort: 10000
macros:
  PORT_NUM: 10001
  TEMP: 0.7
  ENABLED: true
  NAME: "llama model"
  CTX: 16384

models:
  test-model:
    cmd: /path/to/server -p ${PORT}
    metadata:
      port: ${PORT_NUM}
      temperature: ${TEMP}
      enabled: ${ENABLED}
      model_name: ${NAME}
      context: ${CTX}
      quoted: "${CTX}"
      note: "Running on port ${PORT_NUM} with temp ${TEMP} and context ${CTX}, ${ENABLED}"
"""
        )
        meta = models(expanded)["test-model"]["metadata"]
        self.assertEqual(
            [(type(v), v) for v in meta.values()],
            [
                (int, 10001),
                (float, 0.7),
                (bool, True),
                (str, "llama model"),
                (int, 16384),
                (int, 16384),
                (str, "Running on port 10001 with temp 0.7 and context 16384, true"),
            ],
        )

    def test_nestedStructuresInMetadata(self) -> None:
        """
        Macros, C{${PORT}} (typed) and C{${MODEL_ID}} reach nested maps and
        lists.
        """
        expanded = loadOK(
            """
startPort: 10000
macros:
  TEMP: 0.7

models:
  test-model:
    cmd: /path/to/server -p ${PORT}
    metadata:
      config:
        port: ${PORT}
        temperature: ${TEMP}
      tags: ["model:${MODEL_ID}", "port:${PORT}"]
      nested:
        deep:
          value: ${TEMP}
"""
        )
        self.assertEqual(
            models(expanded)["test-model"]["metadata"],
            {
                "config": {"port": 10000, "temperature": 0.7},
                "tags": ["model:test-model", "port:10000"],
                "nested": {"deep": {"value": 0.7}},
            },
        )

    def test_modelMacroPrecedence(self) -> None:
        """
        A model macro beats the global one; globals and model-only macros
        are both visible.
        """
        expanded = loadOK(
            """
startPort: 10000
macros:
  TEMP: 0.5
  GLOBAL_VAL: "global"

models:
  test-model:
    cmd: /path/to/server -p ${PORT}
    macros:
      TEMP: 0.9
      LOCAL_VAL: "local"
    metadata:
      temperature: ${TEMP}
      global: ${GLOBAL_VAL}
      local: ${LOCAL_VAL}
"""
        )
        self.assertEqual(
            models(expanded)["test-model"]["metadata"],
            {"temperature": 0.9, "global": "global", "local": "local"},
        )

    def test_unknownMacroInMetadata(self) -> None:
        """
        An unknown macro in metadata names the model and the macro, at its
        line.
        """
        _, problems = load(
            "startPort: 10000\nmodels:\n  test-model:\n    cmd: /path/to/server -p ${PORT}\n"
            "    metadata:\n      value: ${UNKNOWN_MACRO}\n"
        )
        self.assertEqual(
            [str(p) for p in problems.errors],
            [
                "c.yaml:6: models.test-model.metadata.value: "
                "model test-model metadata: unknown macro '${UNKNOWN_MACRO}'"
            ],
        )

    def test_macroTypes(self) -> None:
        """
        String, int, float and bool macros are fine; lists and maps are not.
        """
        footer = "models:\n  test-model:\n    cmd: /path/to/server -p ${PORT}\n"
        for value in ['"test"', "42", "3.14", "true"]:
            self.assertEqual(errors(f"macros:\n  OK: {value}\n" + footer), [])
        self.assertEqual(
            errors("macros:\n  ARR: [1, 2, 3]\n" + footer),
            [
                "macro 'ARR' has invalid type []interface {}, "
                "must be a scalar type (string, int, float, or bool)"
            ],
        )
        self.assertEqual(
            errors("macros:\n  INVALID:\n    nested: value\n" + footer),
            [
                "macro 'INVALID' has invalid type map[string]interface {}, "
                "must be a scalar type (string, int, float, or bool)"
            ],
        )

    def test_rejectedMacroNotReportedAgain(self) -> None:
        """
        Uses of a macro whose declaration was rejected are not also reported
        as unknown.
        """
        self.assertEqual(
            errors("macros:\n  M: [1]\nmodels:\n  m:\n    cmd: run ${M}\n    proxy: http://h:1\n"),
            [
                "macro 'M' has invalid type []interface {}, "
                "must be a scalar type (string, int, float, or bool)"
            ],
        )

    def test_macrosMustBeMapping(self) -> None:
        """
        A C{macros} block that is not a mapping is reported.
        """
        self.assertEqual(errors("macros: [a, b]\n"), ["macros must be a mapping"])


class EnvMacroTests(SynchronousTestCase):
    """
    Environment macros combined with the rest (EnvMacros,
    APIKeys_EnvMacros, PeerApiKey_EnvMacros).
    """

    def test_fields(self) -> None:
        """
        Environment macros work in commands, proxy, health check, macro
        values, metadata, filters and cmdStop (where C{${PID}} stays).
        """
        environ = {
            "HOST": "myserver",
            "PORT_NO": "9999",
            "BASE": "/usr/local",
            "DIR": "/models/llama",
            "KEY": "secret123",
            "STRIP": "temperature,top_p",
            "SIG": "SIGTERM",
        }
        expanded = loadOK(
            """
macros:
  SERVER_PATH: "${env.BASE}/bin/server"
models:
  test:
    macros:
      MODEL_FILE: "${env.DIR}/model.gguf"
    cmd: "${SERVER_PATH} --host ${env.HOST} --model ${MODEL_FILE} --port ${PORT}"
    cmdStop: "kill -${env.SIG} ${PID}"
    checkEndpoint: "http://${env.HOST}/health"
    metadata:
      api_key: "${env.KEY}"
      nested:
        key: "${env.KEY}"
    filters:
      stripParams: "${env.STRIP}"
  other:
    cmd: "server"
    proxy: "http://${env.HOST}:${env.PORT_NO}"
""",
            environ,
        )
        test = models(expanded)["test"]
        self.assertEqual(
            test["cmd"],
            "/usr/local/bin/server --host myserver --model /models/llama/model.gguf --port 5800",
        )
        self.assertEqual(test["cmdStop"], "kill -SIGTERM ${PID}")
        self.assertEqual(test["checkEndpoint"], "http://myserver/health")
        self.assertEqual(test["metadata"], {"api_key": "secret123", "nested": {"key": "secret123"}})
        self.assertEqual(test["filters"], {"stripParams": "temperature,top_p"})
        self.assertEqual(models(expanded)["other"]["proxy"], "http://myserver:9999")

    def test_unset(self) -> None:
        """
        An unset variable anywhere is an error naming it.
        """
        for where in [
            "macros:\n  PATH: \"${env.UNSET_VAR}\"\n",
            "models:\n  t:\n    macros:\n      P: \"${env.UNSET_VAR}\"\n"
            "    cmd: s\n    proxy: http://h:1\n",
            "models:\n  t:\n    cmd: s\n    proxy: http://h:1\n"
            "    metadata:\n      k: \"${env.UNSET_VAR}\"\n",
            "peers:\n  p:\n    proxy: https://x\n    apiKey: \"${env.UNSET_VAR}\"\n",
            'apiKeys: ["${env.UNSET_VAR}"]\n',
        ]:
            self.assertEqual(errors(where), ["environment variable 'UNSET_VAR' is not set"], where)

    def test_combinedWithMacros(self) -> None:
        """
        Environment and ordinary macros combine.
        """
        expanded = loadOK(
            "macros:\n  MODEL_BASE: \"${env.ROOT}/models\"\n"
            "models:\n  test:\n    cmd: \"server --model ${MODEL_BASE}/${MODEL_ID}.gguf\"\n"
            "    proxy: \"http://localhost:8080\"\n",
            {"ROOT": "/data"},
        )
        self.assertEqual(models(expanded)["test"]["cmd"], "server --model /data/models/test.gguf")

    def test_apiKeys(self) -> None:
        """
        Environment values become API keys, alone or mixed with static ones.
        """
        expanded = loadOK(
            'apiKeys: ["${env.K1}", "${env.K2}", "static-key"]\n',
            {"K1": "key-one", "K2": "key-two"},
        )
        self.assertEqual(expanded.tree["apiKeys"], ["key-one", "key-two", "static-key"])
        self.assertEqual(loadOK('apiKeys: ["${env.E}"]\n', {"E": ""}).tree["apiKeys"], [""])

    def test_peers(self) -> None:
        """
        Environment and global macros reach peer settings, typed when exact;
        unknown macros there name the peer path.
        """
        expanded = loadOK(
            """
macros:
  API_KEY: sk-from-global-macro
  MAX_TOKENS: 4096
  STRIP_LIST: "temperature, top_p"
peers:
  openrouter:
    proxy: https://openrouter.ai/api
    apiKey: "${API_KEY}"
    models:
      - llama-3.1-8b
    filters:
      stripParams: "${STRIP_LIST}"
      setParams:
        max_tokens: "${MAX_TOKENS}"
        data_collection: "${env.POLICY}"
""",
            {"POLICY": "deny"},
        )
        peer = expanded.tree["peers"]["openrouter"]
        self.assertEqual(peer["apiKey"], "sk-from-global-macro")
        self.assertEqual(
            peer["filters"],
            {
                "stripParams": "temperature, top_p",
                "setParams": {"max_tokens": 4096, "data_collection": "deny"},
            },
        )
        self.assertEqual(
            errors(
                "peers:\n  openrouter:\n    proxy: https://x\n    apiKey: \"${UNDEFINED_MACRO}\"\n"
                "    filters:\n      setParams:\n        value: \"${UNDEFINED_MACRO}\"\n"
            ),
            [
                "peers.openrouter.apiKey: unknown macro '${UNDEFINED_MACRO}'",
                "peers.openrouter.filters.setParams.value: unknown macro '${UNDEFINED_MACRO}'",
            ],
        )

    def test_commentsIgnored(self) -> None:
        """
        Unset variables only in comments are no error.
        """
        expanded = loadOK(
            '# apiKeys: ["${env.COMMENTED_OUT_KEY}"]\n'
            'apiKeys: ["${env.ACTIVE}"] # TODO: add ${env.FUTURE_KEY} later\n',
            {"ACTIVE": "active-key-value"},
        )
        self.assertEqual(expanded.tree["apiKeys"], ["active-key-value"])


class MacroInMacroTests(SynchronousTestCase):
    """
    Macros referring to macros (macro_in_macro_test.go and friends).
    """

    def cmd(self, text: str, modelID: str = "test") -> str:
        """
        The expanded C{cmd} of C{modelID} in C{text}, which must load cleanly.
        """
        return str(models(loadOK(text))[modelID]["cmd"])

    def test_basicAndChain(self) -> None:
        """
        A macro may use macros declared before it, to any depth.
        """
        self.assertEqual(
            self.cmd(
                'macros:\n  A: "value-A"\n  B: "prefix-${A}-suffix"\n'
                "models:\n  test:\n    cmd: echo ${B}\n    proxy: http://localhost:8080\n"
            ),
            "echo prefix-value-A-suffix",
        )
        self.assertEqual(
            self.cmd(
                'macros:\n  base: "/models"\n  path: "${base}/llama"\n'
                '  full: "${path}/model.gguf"\n'
                "models:\n  test:\n    cmd: load ${full}\n    proxy: http://localhost:8080\n"
            ),
            "load /models/llama/model.gguf",
        )

    def test_modelIDInGlobalMacro(self) -> None:
        """
        C{${MODEL_ID}} inside a global macro takes each model's ID.
        """
        self.assertEqual(
            self.cmd(
                'macros:\n  podman: "podman run --name ${MODEL_ID} img"\n'
                "models:\n  my-model:\n    cmd: ${podman} -m model.gguf\n"
                "    proxy: http://localhost:8080\n",
                "my-model",
            ),
            "podman run --name my-model img -m model.gguf",
        )

    def test_overrideReachesGlobal(self) -> None:
        """
        A global macro using a name the model overrides sees the model's
        value.
        """
        self.assertEqual(
            self.cmd(
                'macros:\n  tag: "global"\n  msg: "value-${tag}"\n'
                'models:\n  test:\n    macros:\n      tag: "model-level"\n'
                "    cmd: echo ${msg}\n    proxy: http://localhost:8080\n"
            ),
            "echo value-model-level",
        )

    def test_selfReference(self) -> None:
        """
        A macro using itself is rejected.
        """
        self.assertEqual(
            errors(
                'macros:\n  recursive: "value-${recursive}"\n'
                "models:\n  test:\n    cmd: echo ${recursive}\n    proxy: http://localhost:8080\n"
            ),
            ["macro 'recursive' contains self-reference"],
        )

    def test_nameAndDescription(self) -> None:
        """
        Macros and C{${MODEL_ID}} expand in C{name} and C{description};
        unknown ones are reported.
        """
        expanded = loadOK(
            'macros:\n  VARIANT: "Q4_K_M"\n  FAMILY: "llama"\n'
            "models:\n  my-model:\n    cmd: echo ok\n    proxy: http://localhost:8080\n"
            '    name: "${FAMILY} ${VARIANT} (${MODEL_ID})"\n'
            '    description: "A ${FAMILY} model in ${VARIANT} format"\n'
        )
        model = models(expanded)["my-model"]
        self.assertEqual(model["name"], "llama Q4_K_M (my-model)")
        self.assertEqual(model["description"], "A llama model in Q4_K_M format")
        self.assertEqual(
            errors(
                "models:\n  test:\n    cmd: echo ok\n    proxy: http://localhost:8080\n"
                '    description: "Model ${UNDEFINED}"\n'
            ),
            ["unknown macro '${UNDEFINED}' found in test.description"],
        )

    def test_undefinedAndForwardReferences(self) -> None:
        """
        A macro value using an undefined macro, or one declared after it,
        leaves it unresolved.
        """
        self.assertEqual(
            errors(
                'macros:\n  A: "value-${UNDEFINED}"\n'
                "models:\n  test:\n    cmd: echo ${A}\n    proxy: http://localhost:8080\n"
            ),
            ["unknown macro '${UNDEFINED}' found in test.cmd"],
        )
        self.assertEqual(
            errors(
                'macros:\n  FIRST: "value-${SECOND}"\n  SECOND: later\n'
                "models:\n  model1:\n    cmd: echo ${FIRST}\n    proxy: http://localhost:8080\n"
            ),
            ["unknown macro '${SECOND}' found in model1.cmd"],
        )

    def test_noLeakBetweenModels(self) -> None:
        """
        One model's macros are not visible in another.
        """
        self.assertEqual(
            errors(
                "models:\n"
                "  owner:\n    macros:\n      LOCAL: owner-value\n    cmd: echo ${LOCAL}\n"
                "    proxy: http://localhost:8080\n"
                "  other:\n    cmd: echo ${LOCAL}\n    proxy: http://localhost:8081\n"
            ),
            ["unknown macro '${LOCAL}' found in other.cmd"],
        )

    def test_acrossConfiguration(self) -> None:
        """
        Macros reach global settings (typed), the UI, hooks, and model
        ttl, timeouts and env.
        """
        expanded = loadOK(
            """
macros:
  GLOBAL_TTL: 120
  MODEL_TTL: 45
  SESSION_HEADER: X-Macro-Session
  LOADING: true
  MODEL_NAME: model1

globalTTL: "${GLOBAL_TTL}"
sendLoadingState: "${LOADING}"
ui:
  activity:
    session_id: ["${SESSION_HEADER}"]
hooks:
  on_startup:
    preload: ["${MODEL_NAME}"]

models:
  model1:
    macros:
      MODEL_TTL: 30
      CONNECT_TIMEOUT: 12
    cmd: server --port ${PORT}
    ttl: "${MODEL_TTL}"
    timeouts:
      connect: "${CONNECT_TIMEOUT}"
    env:
      - "MODEL=${MODEL_ID}"
"""
        )
        tree = expanded.tree
        self.assertEqual(tree["globalTTL"], 120)
        self.assertIs(tree["sendLoadingState"], True)
        self.assertEqual(tree["ui"], {"activity": {"session_id": ["X-Macro-Session"]}})
        self.assertEqual(tree["hooks"], {"on_startup": {"preload": ["model1"]}})
        model = models(expanded)["model1"]
        self.assertEqual(model["ttl"], 30)
        self.assertEqual(model["timeouts"], {"connect": 12})
        self.assertEqual(model["env"], ["MODEL=model1"])

    def test_pid(self) -> None:
        """
        C{${PID}} survives in C{cmdStop}, even arriving through a macro, and
        is unknown anywhere else.
        """
        expanded = loadOK(
            "macros:\n  STOP: kill ${PID}\n"
            "models:\n  model1:\n    cmd: server\n    cmdStop: \"${STOP}\"\n"
            "    proxy: http://localhost:8080\n"
        )
        self.assertEqual(models(expanded)["model1"]["cmdStop"], "kill ${PID}")
        self.assertEqual(
            errors(
                "models:\n  model1:\n    cmd: server ${PID}\n    proxy: http://localhost:8080\n"
                "    metadata:\n      pid: \"${PID}\"\n"
            ),
            [
                "unknown macro '${PID}' found in model1.cmd",
                "model model1 metadata: unknown macro '${PID}'",
            ],
        )

    def test_otherModelFields(self) -> None:
        """
        Leftovers in other model fields use the model and field path;
        capabilities are named as a whole.
        """
        self.assertEqual(
            errors(
                "models:\n  m:\n    cmd: s\n    proxy: http://h:1\n"
                "    aliases: [\"${A}\"]\n    capabilities:\n      context: ${B}\n"
                "    timeouts:\n      connect: ${C}\n"
            ),
            [
                "model m aliases: unknown macro '${A}'",
                "model m capabilities: unknown macro '${B}'",
                "model m timeouts.connect: unknown macro '${C}'",
            ],
        )


class TreeTests(SynchronousTestCase):
    """
    The shape of the expanded tree: scopes, keys, anchors, bad input.
    """

    def test_globalScope(self) -> None:
        """
        Global macros apply to unknown top-level keys too, but leftovers
        there are not checked.
        """
        expanded = loadOK("macros:\n  X: 1\ndefs:\n  a: ${X}\n  b: ${NOPE}\n")
        self.assertEqual(expanded.tree, {"defs": {"a": 1, "b": "${NOPE}"}})

    def test_mapKeysLiteral(self) -> None:
        """
        Ordinary mapping keys are never rewritten.
        """
        expanded = loadOK(
            "macros:\n  KEY: expanded\nmodels:\n  model1:\n    cmd: server\n"
            "    proxy: http://localhost:8080\n    metadata:\n      \"${KEY}\": value\n"
        )
        self.assertEqual(models(expanded)["model1"]["metadata"], {"${KEY}": "value"})

    def test_setParamsByIDKeys(self) -> None:
        """
        C{setParamsByID} keys expand with the model's macros and its port,
        keep their order, and stay located at their lines.
        """
        expanded = loadOK(
            "startPort: 6300\n"
            "models:\n"
            "  model1:\n"
            "    cmd: server --port ${PORT}\n"
            "    filters:\n"
            "      setParamsByID:\n"
            "        \"${MODEL_ID}:high\":\n          temperature: 0.9\n"
            "        \"model1:${PORT}\":\n          temperature: 0.5\n"
            "        plain: {}\n"
        )
        params = models(expanded)["model1"]["filters"]["setParamsByID"]
        self.assertEqual(
            params,
            {"model1:high": {"temperature": 0.9}, "model1:6300": {"temperature": 0.5}, "plain": {}},
        )
        self.assertEqual(list(params), ["model1:high", "model1:6300", "plain"])
        base = ("models", "model1", "filters", "setParamsByID")
        self.assertEqual(
            expanded.sourceMap.locate(base + ("model1:6300", "temperature")), Location("c.yaml", 10)
        )

    def test_setParamsByIDCollision(self) -> None:
        """
        Two keys resolving to the same value is an error naming both.
        """
        self.assertEqual(
            errors(
                "macros:\n  FIRST: shared\n  SECOND: shared\n"
                "models:\n  model1:\n    cmd: server\n    proxy: http://localhost:8080\n"
                "    filters:\n      setParamsByID:\n"
                "        \"${FIRST}\":\n          temperature: 0.1\n"
                "        \"${SECOND}\":\n          temperature: 0.2\n"
            ),
            [
                'model model1 filters.setParamsByID: keys "${FIRST}" and "${SECOND}" '
                "resolve to the same value"
            ],
        )

    def test_setParamsByIDUnknownKey(self) -> None:
        """
        A key still holding a macro is reported.
        """
        self.assertEqual(
            errors(
                "models:\n  m:\n    cmd: s\n    proxy: http://h:1\n"
                "    filters:\n      setParamsByID:\n        \"${NOPE}\": {}\n"
            ),
            ["unknown macro '${NOPE}' found in model m filters.setParamsByID key"],
        )

    def test_anchorsPerModel(self) -> None:
        """
        The same anchored block expands with each model's own macros.
        """
        expanded = loadOK(
            """
defs:
  model: &model
    cmd: echo ${LOCAL}
    proxy: http://localhost:8080
    env: ["MODEL_VALUE=${LOCAL}"]
    metadata:
      value: "${LOCAL}"

models:
  first:
    <<: *model
    macros:
      LOCAL: first-value
  second:
    <<: *model
    macros:
      LOCAL: second-value
"""
        )
        for modelID, expected in [("first", "first-value"), ("second", "second-value")]:
            self.assertEqual(
                models(expanded)[modelID],
                {
                    "cmd": "echo " + expected,
                    "proxy": "http://localhost:8080",
                    "env": ["MODEL_VALUE=" + expected],
                    "metadata": {"value": expected},
                },
            )

    def test_anchoredCapabilities(self) -> None:
        """
        Anchored capabilities with a macro take each model's own value.
        """
        expanded = loadOK(
            """
macros:
  default_ctx: 98304
defs:
  llm-capabilities: &llm-capabilities
    in: [text]
    out: [text]
    tools: true
    context: ${default_ctx}
models:
  model1:
    cmd: path/to/cmd --port ${PORT}
    macros:
      default_ctx: 4096
    capabilities:
      <<: [*llm-capabilities]
  model2:
    cmd: path/to/cmd --port ${PORT}
    macros:
      default_ctx: 8192
    capabilities:
      <<: [*llm-capabilities]
      tools: false
"""
        )
        self.assertEqual(
            models(expanded)["model1"]["capabilities"],
            {"in": ["text"], "out": ["text"], "tools": True, "context": 4096},
        )
        self.assertEqual(
            models(expanded)["model2"]["capabilities"],
            {"in": ["text"], "out": ["text"], "tools": False, "context": 8192},
        )
        self.assertEqual(expanded.tree["defs"]["llm-capabilities"]["context"], 98304)

    def test_proxyDefault(self) -> None:
        """
        An absent or null proxy becomes the default before expansion.
        """
        expanded = loadOK(
            "models:\n  a:\n    cmd: s ${PORT}\n  b:\n    proxy:\n    cmd: s ${PORT}\n"
        )
        self.assertEqual(models(expanded)["a"]["proxy"], "http://localhost:5800")
        self.assertEqual(list(models(expanded)["b"]), ["proxy", "cmd"])
        self.assertEqual(models(expanded)["b"]["proxy"], "http://localhost:5801")

    def test_inputUnchanged(self) -> None:
        """
        L{expand} does not modify the tree it is given.
        """
        problems = Problems()
        tree, sourceMap = readText(
            "macros:\n  X: 1\nmodels:\n  m:\n    cmd: s ${PORT} ${X}\n", "c.yaml", {}, problems
        )
        before = repr(tree)
        expand(tree, sourceMap, problems)
        self.assertEqual(repr(tree), before)

    def test_notMappings(self) -> None:
        """
        C{models} or a model that is not a mapping is reported and skipped.
        """
        _, problems = load("models: [a, b]\n")
        self.assertEqual(
            [str(p) for p in problems.errors], ["c.yaml:1: models must be a mapping, not a list"]
        )
        expanded, problems = load("models:\n  bad: just text\n  good:\n    cmd: s ${PORT}\n")
        self.assertEqual(
            [str(p) for p in problems.errors],
            ["c.yaml:2: models.bad: model bad must be a mapping, not a string"],
        )
        self.assertEqual(models(expanded)["bad"], "just text")
        self.assertEqual(expanded.ports, {"good": 5800})

    def test_notAMappingTree(self) -> None:
        """
        Even a tree that is not a mapping is reported, not raised.
        """
        problems = Problems()
        expanded = expand([1, 2], Problems().sourceMap, problems)  # type: ignore[arg-type]
        self.assertEqual(expanded.tree, {})
        self.assertEqual(len(problems.errors), 1)


class FormatTests(SynchronousTestCase):
    """
    L{formatGoFloat} prints floats as Go's C{%v}.
    """

    def test_table(self) -> None:
        """
        Shortest digits, exponent form below 1e-4 and from 1e6 on.
        """
        table = [
            (0.7, "0.7"),
            (1.0, "1"),
            (100000.0, "100000"),
            (123456.7, "123456.7"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5, "-2.5"),
            (0.0, "0"),
            (-0.0, "-0"),
            (float("inf"), "+Inf"),
            (float("-inf"), "-Inf"),
            (float("nan"), "NaN"),
            (1e100, "1e+100"),
        ]
        for number, expected in table:
            self.assertEqual(formatGoFloat(number), expected, number)

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_roundTrips(self, number: float) -> None:
        """
        The text always parses back to the same float.
        """
        self.assertEqual(float(formatGoFloat(number)), number)
