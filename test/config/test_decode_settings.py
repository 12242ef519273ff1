"""
Tests for L{llamaswap.config.decode_settings}: the top-level settings and
startup hooks.
"""

from __future__ import annotations

import os
import tempfile

from llamaswap.config.load import loadConfigText

from .helpers import MODELS, BuildTestCase


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
        self.assertEqual(
            [k.key for k in self.loads("apiKeys: [k1, k2]").apiKeys], ["k1", "k2"]
        )
        self.assertEqual(
            self.fails("apiKeys: ['']", "empty").message, "empty api key found in apiKeys"
        )
        self.assertEqual(
            self.fails("apiKeys: [good, 'bad key']", "spaces").message,
            "apiKeys[1]: api key cannot contain spaces",
        )
        self.fails("apiKeys: [' lead', x]", "apiKeys[0]: api key cannot contain spaces")

    def test_scopedKeys(self) -> None:
        """
        A mapping entry names its key, scopes, models and limit; a string
        entry is a full-access key named by its position; the key is kept
        out of C{repr}.
        """
        keys = self.loads(
            "apiKeys:\n"
            "  - plain\n"
            "  - {key: k2, name: app-a, scopes: [inference], models: [llama*, qwen],"
            " concurrencyLimit: 2}\n"
            "  - {key: k3}\n"
        ).apiKeys
        self.assertEqual(
            [(k.key, k.name, sorted(k.scopes), k.models, k.concurrencyLimit) for k in keys],
            [
                ("plain", "key-1", ["admin", "inference", "monitor"], None, 0),
                ("k2", "app-a", ["inference"], ("llama*", "qwen"), 2),
                ("k3", "key-3", ["admin", "inference", "monitor"], None, 0),
            ],
        )
        self.assertNotIn("k2", repr(keys))

    def test_scopedKeyEnv(self) -> None:
        """
        C{key} accepts C{${env.X}}.
        """
        keys = loadConfigText(
            "apiKeys: [{key: '${env.APP_KEY}', name: app}]\n", environ={"APP_KEY": "s3"}
        ).config.apiKeys
        self.assertEqual(keys[0].key, "s3")

    def test_scopedKeyErrors(self) -> None:
        """
        Bad entries are errors at their key path; no message shows a key.
        """
        cases = [
            ("apiKeys: [{name: a}]", "key is required", ("apiKeys", 0, "key")),
            ("apiKeys: [{key: ''}]", "empty api key found in apiKeys", ("apiKeys", 0, "key")),
            ("apiKeys: [{key: 'a b'}]", "api key cannot contain spaces", ("apiKeys", 0, "key")),
            ("apiKeys: [{key: k, scopes: [root]}]", "unknown scope 'root'",
             ("apiKeys", 0, "scopes", 0)),
            ("apiKeys: [{key: k, scopes: []}]", "scopes must not be empty",
             ("apiKeys", 0, "scopes")),
            ("apiKeys: [{key: k, name: 'a b'}]", "name must be", ("apiKeys", 0, "name")),
            ("apiKeys: [{key: k, models: ['']}]", "model name must not be empty",
             ("apiKeys", 0, "models", 0)),
            ("apiKeys: [{key: k, concurrencyLimit: -1}]", "concurrencyLimit must be >= 0",
             ("apiKeys", 0, "concurrencyLimit")),
            ("apiKeys: [{key: k, name: a}, {key: k2, name: a}]", "duplicate key name 'a'",
             ("apiKeys", 1)),
            ("apiKeys: [samesecret, {key: samesecret}]", "the same key is listed twice",
             ("apiKeys", 1)),
            ("apiKeys: [[x]]", "must be a key string or a mapping", ("apiKeys", 0)),
        ]
        for text, fragment, path in cases:
            problem = self.fails(text, fragment)
            self.assertEqual(problem.path, path, text)
            self.assertNotIn("samesecret", problem.message)

    def test_scopedKeyUnknownField(self) -> None:
        """
        An unknown field of an entry is warned about.
        """
        self.loads("apiKeys: [{key: k, scope: [admin]}]")
        self.assertEqual(self.warned("scope").path, ("apiKeys", 0, "scope"))

    def test_auth(self) -> None:
        """
        C{auth} sets the session secret and lifetime (a duration or
        seconds; default 12 h); a non-positive lifetime is an error.
        """
        self.assertEqual(self.loads("").auth.sessionTTL, 12 * 3600)
        auth = loadConfigText(
            "auth: {sessionSecret: '${env.S}', sessionTTL: 90m}\n", environ={"S": "x"}
        ).config.auth
        self.assertEqual((auth.sessionSecret, auth.sessionTTL), ("x", 5400))
        self.assertEqual(self.loads("auth: {sessionTTL: 60}").auth.sessionTTL, 60)
        self.fails("auth: {sessionTTL: 0s}", "sessionTTL must be positive")


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
