"""
Tests for C{llamaswap/config.schema.json}: it lists exactly the keys the
loader knows, and accepts and rejects the right documents.
"""

from __future__ import annotations

import json
import os
from textwrap import dedent
from typing import Any

import jsonschema
import yaml
from twisted.trial.unittest import SkipTest, SynchronousTestCase

import llamaswap
from llamaswap.config.keys import KNOWN_KEYS

SCHEMA_PATH = os.path.join(os.path.dirname(llamaswap.__file__), "config.schema.json")

# Where each section of KNOWN_KEYS lives in the schema: property names to
# follow from the root ("*" is a map's value schema).
SECTION_PATHS = {
    "global": [],
    "model": ["models", "*"],
    "model.filters": ["models", "*", "filters"],
    "model.timeouts": ["models", "*", "timeouts"],
    "model.capabilities": ["models", "*", "capabilities"],
    "model.compat": ["models", "*", "compat"],
    "peer": ["peers", "*"],
    "peer.filters": ["peers", "*", "filters"],
    "peer.timeouts": ["peers", "*", "timeouts"],
    "group": ["groups", "*"],
    "matrix": ["matrix"],
    "selector": ["selectors", "*"],
    "selector.settings": ["selectors", "*", "settings"],
    "profile": ["profiles", "*"],
    "routing": ["routing"],
    "routing.router": ["routing", "router"],
    "routing.router.settings": ["routing", "router", "settings"],
    "routing.scheduler": ["routing", "scheduler"],
    "routing.scheduler.settings": ["routing", "scheduler", "settings"],
    "routing.scheduler.settings.fifo": ["routing", "scheduler", "settings", "fifo"],
    "hooks": ["hooks"],
    "hooks.on_startup": ["hooks", "on_startup"],
    "store": ["store"],
    "ui": ["ui"],
    "ui.activity": ["ui", "activity"],
    "performance": ["performance"],
    "upstream": ["upstream"],
    "requestTTL": ["requestTTL"],
    "modelsDir": ["modelsDir"],
    "apiKey": ["apiKeys", "[]"],
    "auth": ["auth"],
    "limits": ["limits"],
    "security": ["security"],
    "security.cors": ["security", "cors"],
}


def loadSchema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    return schema


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """
    Follow C{$ref}s; for an C{anyOf} take the object alternative.
    """
    while True:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            node = schema["definitions"][name]
        elif "anyOf" in node and "properties" not in node:
            node = next(n for n in node["anyOf"] if "properties" in resolve(schema, n))
        else:
            return node


def sectionSchema(schema: dict[str, Any], steps: list[str]) -> dict[str, Any]:
    node = resolve(schema, schema)
    for step in steps:
        if step == "*":
            node = resolve(schema, node["additionalProperties"])
        elif step == "[]":
            node = resolve(schema, node["items"])
        else:
            node = resolve(schema, node["properties"][step])
    return node


RICH = """
healthCheckTimeout: 60
logLevel: debug
logTimeFormat: rfc3339
logToStdout: both
metricsMaxInMemory: 500
captureBuffer: 10
store: {path: /var/lib/llamaswap/activity.db}
ui: {activity: {session_id: [X-Session-ID]}}
performance: {disabled: false, every: 1m30s}
startPort: "${first_port}"
globalTTL: 300
unloadTimeout: 15
sendLoadingState: true
includeAliasesInList: true
apiKeys:
  - sk-one
  - {key: sk-two, name: app-a, scopes: [inference, monitor], models: [llama*], concurrencyLimit: 2}
auth: {sessionSecret: s3cret, sessionTTL: 8h}
x-common: &common
  ttl: 60
macros:
  first_port: 9000
  server: /opt/llama-server
models:
  llama:
    <<: *common
    cmd: |
      ${server} --port ${PORT}
      # a comment
    cmdStop: kill ${PID}
    aliases: [gpt-4o]
    env: [CUDA_VISIBLE_DEVICES=0]
    checkEndpoint: /health
    unloadTimeout: 5
    unlisted: false
    useModelName: llama-3
    name: Llama
    description: A model
    concurrencyLimit: 4
    macros: {ctx: 8192}
    metadata: {family: llama, sizes: [8, 70]}
    sendLoadingState: false
    timeouts: {connect: 5, keepalive: 30, responseHeader: 0, tlsHandshake: 10, expectContinue: 1, idleConn: 90}
    compat: {ignoreWebsockets: true}
    capabilities: {in: [text, image], out: [text], tools: true, reranker: false, context: "${ctx}"}
    filters:
      stripParams: "top_k, top_p"
      setParams: {temperature: 0.7}
      setParamsByID:
        "llama:hot": {temperature: 1.2}
  qwen:
    cmd: ${server} --port ${PORT}
    proxy: http://localhost:${PORT}
peers:
  remote:
    proxy: https://example.com/v1
    apiKey: secret
    models: [big-model]
    filters: {stripParams: top_k, setParams: {max_tokens: 100}}
    timeouts: {responseHeader: 120}
routing:
  router:
    use: group
    settings:
      groups:
        pair: {swap: false, exclusive: true, persistent: false, members: [llama, qwen]}
      matrix:
        vars: {l: llama, q: qwen}
        evict_costs: {l: 5}
        sets: {both: "l & q"}
  scheduler:
    use: fifo
    settings:
      fifo: {priority: {llama: 10}, maxWaitForSwap: 20}
hooks: {on_startup: {preload: [llama]}}
profiles:
  work: {description: Work, pins: {default: llama, off: null}}
  legacy: [llama, qwen]
selectors:
  auto:
    strategy: spillover
    targets: [llama, qwen]
    settings: {spillover: 2}
    name: Auto
    description: Either
    unlisted: false
    metadata: {x: 1}
upstream: {ignorePaths: ["\\\\.png$"]}
"""


class SchemaTests(SynchronousTestCase):
    """
    The JSON schema matches the loader.
    """

    def setUp(self) -> None:
        self.schema = loadSchema()
        self.validator = jsonschema.Draft7Validator(self.schema)

    def test_validSchema(self) -> None:
        """
        The schema is a valid draft-07 schema.
        """
        jsonschema.Draft7Validator.check_schema(self.schema)
        self.assertEqual(self.schema["$schema"], "http://json-schema.org/draft-07/schema#")

    def test_sectionsMatchKnownKeys(self) -> None:
        """
        Every section of the schema lists exactly the keys the loader
        knows, rejects others, and describes each key.
        """
        self.assertEqual(set(SECTION_PATHS), set(KNOWN_KEYS))
        for section, steps in SECTION_PATHS.items():
            node = sectionSchema(self.schema, steps)
            self.assertEqual(set(node["properties"]), set(KNOWN_KEYS[section]), section)
            self.assertIs(node["additionalProperties"], False, section)
            for key, prop in node["properties"].items():
                self.assertIn("description", prop, f"{section}.{key}")

    def test_richSampleValidates(self) -> None:
        """
        A configuration using every key validates.
        """
        document = yaml.safe_load(RICH)
        errors = [e.message for e in self.validator.iter_errors(document)]
        self.assertEqual(errors, [])
        self.assertTrue(self.validator.is_valid(None))
        self.assertTrue(self.validator.is_valid({}))

    def test_ownKeysAllowed(self) -> None:
        """
        Top-level C{x-} and C{.} keys are allowed; other unknown keys are
        not.
        """
        self.assertTrue(self.validator.is_valid({"x-anchors": [1], ".hidden": 2}))
        self.assertFalse(self.validator.is_valid({"defs": 1}))

    def test_wrongDocumentsRejected(self) -> None:
        """
        Wrong keys, types and values are rejected.
        """
        wrong = [
            "models: {m: {cmd: x, ttll: 5}}",
            "startPort: abcd",
            "logToStdout: stderr",
            "performance: {every: soon}",
            "peers: {p: {models: [a]}}",
            "peers: {p: {proxy: 'http://h', models: []}}",
            "selectors: {s: {strategy: random, targets: [a]}}",
            "profiles: {p: {pins: {}}}",
            "models: {m: {cmd: x, capabilities: {in: [video]}}}",
            "routing: {router: {use: random}}",
            "groups: {g: {members: a}}",
            "apiKeys: ['has space']",
            "matrix: {vars: {bad_name: m}, sets: {s: m}}",
            "hooks: {on_startup: {preload: llama}}",
            "store: {path: ''}",
        ]
        for text in wrong:
            self.assertFalse(self.validator.is_valid(yaml.safe_load(dedent(text))), text)

    def test_exampleValidates(self) -> None:
        """
        The shipped C{config.example.yaml} validates against the schema.
        """
        example = os.path.join(os.path.dirname(os.path.dirname(SCHEMA_PATH)), "config.example.yaml")
        if not os.path.exists(example):
            raise SkipTest("no config.example.yaml in this tree")
        with open(example, encoding="utf-8") as f:
            document = yaml.safe_load(f)
        self.assertEqual([e.message for e in self.validator.iter_errors(document)], [])
