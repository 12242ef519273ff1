"""
Tests for L{llamaswap.config.sections}: type errors and unknown keys,
through L{llamaswap.config.build.buildConfig}.
"""

from __future__ import annotations

from textwrap import dedent

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.keys import KNOWN_KEYS
from llamaswap.config.model import Timeouts
from llamaswap.config.sections import describeValue, suggestKey

from .helpers import MODELS, BuildTestCase, build


class HelperTests(SynchronousTestCase):
    """
    Value descriptions and key suggestions.
    """

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
            ("apiKeys: secret", ("apiKeys",), 'must be a list of keys, got string "secret"'),
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
                (4, ("apiKeys", 0)),
                (6, ("models", "m", "ttl")),
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
