"""
Tests for L{llamaswap.config.diff} and the C{${PORT}} pinning of
L{llamaswap.config.load.loadConfigText}'s C{reservedPorts}.
"""

from __future__ import annotations

import json

from attrs import fields
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.diff import (
    LIVE_SETTINGS,
    MODEL_IGNORED_FIELDS,
    MODEL_LIVE_FIELDS,
    MODEL_PROCESS_FIELDS,
    RESTART_SETTINGS,
    ConfigDiff,
    diffConfigs,
    pinnedPorts,
)
from llamaswap.config.load import loadConfigText
from llamaswap.config.model import Config, ModelConfig

BASE = """
startPort: 7000
models:
  a:
    cmd: srv --port ${PORT} --model a.gguf
  b:
    cmd: srv --port ${PORT} --model b.gguf
    ttl: 30
  c:
    cmd: srv --port 9999
    proxy: http://127.0.0.1:9999
"""


def load(text: str, reserved: dict[str, int] | None = None) -> Config:
    return loadConfigText(text, reservedPorts=reserved).config


def modelBlock(modelID: str, extra: str = "") -> str:
    return f"  {modelID}:\n    cmd: srv --port ${{PORT}} --model {modelID}.gguf\n{extra}"


class ClassificationTests(SynchronousTestCase):
    """
    Every field has a declared effect.
    """

    def test_everyModelFieldClassified(self) -> None:
        """
        Each L{ModelConfig} field is a process field, a live field or
        ignored, exactly once.
        """
        names = [a.name for a in fields(ModelConfig)]
        classified = [*MODEL_PROCESS_FIELDS, *MODEL_LIVE_FIELDS, *MODEL_IGNORED_FIELDS]
        self.assertEqual(sorted(classified), sorted(names))

    def test_everySettingClassified(self) -> None:
        """
        Each top-level L{Config} field but C{models} is live or needs a
        restart, exactly once.
        """
        names = [a.name for a in fields(Config) if a.name != "models"]
        self.assertEqual(sorted([*LIVE_SETTINGS, *RESTART_SETTINGS]), sorted(names))


# (what, model lines added to model b, expected restart reasons, expected
# live changes); None changes b's cmd, "" its ttl.
MODEL_CHANGES = [
    ("cmd", None, ("cmd",), ()),
    ("env", "    env: [A=1]\n", ("env",), ()),
    ("proxy", "    proxy: http://127.0.0.1:${PORT}/v1\n", ("proxy",), ()),
    ("checkEndpoint", "    checkEndpoint: /ready\n", ("checkEndpoint",), ()),
    ("cmdStop", "    cmdStop: kill ${PID}\n", ("cmdStop",), ()),
    ("ttl", "", (), ("ttl",)),
    ("aliases", "    aliases: [bee]\n", (), ("aliases",)),
    ("unloadTimeout", "    unloadTimeout: 3\n", (), ("unloadTimeout",)),
    ("concurrencyLimit", "    concurrencyLimit: 2\n", (), ("concurrencyLimit",)),
    ("useModelName", "    useModelName: other\n", (), ("useModelName",)),
    ("filters", "    filters:\n      stripParams: top_k\n", (), ("filters",)),
    ("name", "    name: Bee\n", (), ("name",)),
    ("description", "    description: the b model\n", (), ("description",)),
    ("unlisted", "    unlisted: true\n", (), ("unlisted",)),
    ("metadata", "    metadata: {x: 1}\n", (), ("metadata",)),
    ("sendLoadingState", "    sendLoadingState: true\n", (), ("sendLoadingState",)),
    ("timeouts", "    timeouts: {connect: 5}\n", (), ("timeouts",)),
    ("compat", "    compat: {ignoreWebsockets: true}\n", (), ("compat",)),
    ("capabilities", "    capabilities: {tools: true}\n", (), ("capabilities",)),
    ("macros", "    macros: {unused: 1}\n", (), ()),
]


class ModelDiffTests(SynchronousTestCase):
    """
    Which model changes restart the model and which apply live.
    """

    def test_unchanged(self) -> None:
        """
        The same text twice: everything kept, nothing changed.
        """
        diff = diffConfigs(load(BASE), load(BASE))
        self.assertEqual(diff.kept, ("a", "b", "c"))
        self.assertFalse(diff.changed)
        self.assertEqual(diff.describe(), "no changes (3 models kept)")

    def test_table(self) -> None:
        """
        Each field change in L{MODEL_CHANGES} has its documented effect.
        """
        old = load(BASE)
        for what, lines, reasons, live in MODEL_CHANGES:
            if lines is None:
                text = BASE.replace("--model b.gguf", "--model b2.gguf")
            elif not lines:
                text = BASE.replace("    ttl: 30\n", "    ttl: 60\n")
            else:
                text = BASE.replace("    ttl: 30\n", "    ttl: 30\n" + lines)
            diff = diffConfigs(old, load(text, pinnedPorts(old)))
            with self.subTest(what):
                self.assertEqual(diff.restartReasons.get("b", ()), reasons, what)
                self.assertEqual(diff.updated.get("b", ()), live, what)
                self.assertEqual(diff.restarted, ("b",) if reasons else (), what)
                self.assertIn("a", diff.kept)

    def test_cmdFormatting(self) -> None:
        """
        Re-wrapping a command, adding comment lines or blanks does not
        restart the model: the argv is compared.
        """
        old = load(BASE)
        text = BASE.replace(
            "    cmd: srv --port ${PORT} --model a.gguf\n",
            "    cmd: |\n      # the a model\n      srv   --port ${PORT} \\\n"
            "        --model a.gguf\n",
        )
        diff = diffConfigs(old, load(text))
        self.assertEqual(diff.restarted, ())
        self.assertIn("a", diff.kept)

    def test_envOrder(self) -> None:
        """
        Reordering distinct environment entries is no change; overriding
        one is.
        """
        one = load(BASE.replace("    ttl: 30\n", "    ttl: 30\n    env: [A=1, B=2]\n"))
        two = load(BASE.replace("    ttl: 30\n", "    ttl: 30\n    env: [B=2, A=1]\n"))
        three = load(BASE.replace("    ttl: 30\n", "    ttl: 30\n    env: [B=2, A=1, A=3]\n"))
        self.assertEqual(diffConfigs(one, two).restarted, ())
        self.assertEqual(diffConfigs(one, three).restarted, ("b",))

    def test_addedRemoved(self) -> None:
        """
        Models only in the new configuration are added, only in the old
        one removed.
        """
        old = load(BASE)
        text = BASE.replace("  a:\n    cmd: srv --port ${PORT} --model a.gguf\n", "")
        text += modelBlock("d")
        diff = diffConfigs(old, load(text, pinnedPorts(old)))
        self.assertEqual(diff.added, ("d",))
        self.assertEqual(diff.removed, ("a",))
        self.assertEqual(diff.kept, ("b", "c"))
        self.assertIn("added d", diff.describe())
        self.assertIn("removed a", diff.describe())

    def test_globalDefaultsReachModels(self) -> None:
        """
        A global default such as C{globalTTL} is a live setting and a live
        change of each model it reaches.
        """
        old = load(BASE)
        diff = diffConfigs(old, load("globalTTL: 5\n" + BASE))
        self.assertIn("globalTTL", diff.settings)
        self.assertEqual(diff.updated["a"], ("ttl",))
        self.assertNotIn("b", diff.updated)  # its own ttl wins
        self.assertEqual(diff.restarted, ())


# (setting lines, expected live settings, expected needs-restart settings)
SETTING_CHANGES = [
    ("apiKeys: [k1]\n", ("apiKeys",), ()),
    ("logLevel: debug\n", ("logLevel",), ()),
    ("logToStdout: both\n", (), ("logToStdout",)),
    ("captureBuffer: 9\n", (), ("captureBuffer",)),
    ("metricsMaxInMemory: 5\n", (), ("metricsMaxInMemory",)),
    ("includeAliasesInList: true\n", ("includeAliasesInList",), ()),
    (
        "groups:\n  g:\n    swap: false\n    members: [a, b]\n",
        ("routing",),
        (),
    ),
    ("profiles:\n  p:\n    pins: {x: a}\n", ("profiles",), ()),
    ("hooks:\n  on_startup:\n    preload: [a]\n", ("hooks",), ()),
    ("peers:\n  p:\n    proxy: http://127.0.0.1:1\n    models: [z]\n", ("peers",), ()),
    ("upstream:\n  ignorePaths: ['^/x']\n", ("upstream",), ()),
]


class SettingDiffTests(SynchronousTestCase):
    """
    Top-level settings: live or "needs restart".
    """

    def test_table(self) -> None:
        """
        Each setting change in L{SETTING_CHANGES} lands in the right list,
        and no model restarts.
        """
        old = load(BASE)
        for lines, live, restart in SETTING_CHANGES:
            diff = diffConfigs(old, load(lines + BASE, pinnedPorts(old)))
            with self.subTest(lines):
                self.assertEqual(diff.settings, live, lines)
                self.assertEqual(diff.needsRestart, restart, lines)
                self.assertEqual(diff.restarted, (), lines)
                self.assertTrue(diff.changed)

    def test_compiledPartsCompareByValue(self) -> None:
        """
        Compiled parts (a matrix program, C{ignorePaths} patterns) loaded
        twice from the same text are equal: no spurious "routing changed".
        """
        text = BASE + (
            "matrix:\n  vars: {x: a, y: b}\n  sets:\n    s1: 'x & y'\n"
            "upstream:\n  ignorePaths: ['^/x']\n"
        )
        self.assertFalse(diffConfigs(load(text), load(text)).changed)
        other = text.replace("'x & y'", "'x | y'")
        self.assertEqual(diffConfigs(load(text), load(other)).settings, ("routing",))

    def test_startPortAlone(self) -> None:
        """
        With the running ports pinned, moving C{startPort} moves no running
        model: only the setting changes.
        """
        old = load(BASE)
        diff = diffConfigs(old, load(BASE.replace("7000", "8000"), pinnedPorts(old)))
        self.assertEqual(diff.settings, ("startPort",))
        self.assertEqual(diff.restarted, ())

    def test_startPortUnpinned(self) -> None:
        """
        Without pinning (llama-swap's behaviour) the same change moves
        every C{${PORT}} and restarts those models.
        """
        old = load(BASE)
        diff = diffConfigs(old, load(BASE.replace("7000", "8000")))
        self.assertEqual(diff.restarted, ("a", "b"))
        self.assertEqual(diff.restartReasons["a"], ("cmd", "proxy", "port"))

    def test_withNeedsRestart(self) -> None:
        """
        Files read only at start can be added to the needs-restart list.
        """
        diff = ConfigDiff(kept=("a",)).withNeedsRestart(["tls-cert-file"])
        self.assertEqual(diff.needsRestart, ("tls-cert-file",))
        self.assertTrue(diff.changed)
        self.assertIn("needs restart: tls-cert-file", diff.describe())

    def test_summaryIsJSON(self) -> None:
        """
        The summary is plain JSON data naming every part of the diff.
        """
        old = load(BASE)
        text = "apiKeys: [k]\nlogToStdout: none\n" + BASE.replace("b.gguf", "b2.gguf")
        text = text.replace("  a:\n", "  a:\n    ttl: 9\n") + modelBlock("d")
        summary = diffConfigs(old, load(text, pinnedPorts(old))).summary()
        self.assertEqual(
            json.loads(json.dumps(summary)),
            {
                "changed": True,
                "kept": ["a", "c"],
                "restarted": {"b": ["cmd"]},
                "added": ["d"],
                "removed": [],
                "updated": {"a": ["ttl"]},
                "settings": ["apiKeys", "routing"],  # d joined the default group
                "needsRestart": ["logToStdout"],
            },
        )


def configText(models: dict[str, bool], startPort: int) -> str:
    """
    A configuration of C{models} (ID to whether its cmd uses C{${PORT}}).
    """
    lines = [f"startPort: {startPort}", "models:"]
    for modelID, usesPort in models.items():
        if usesPort:
            lines.append(f"  {modelID}:\n    cmd: srv --port ${{PORT}} -m {modelID}")
        else:
            lines.append(
                f"  {modelID}:\n    cmd: srv -m {modelID}\n    proxy: http://127.0.0.1:1"
            )
    return "\n".join(lines) + "\n"


modelSets = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"]), st.booleans(), max_size=8
)


class PortPinningTests(SynchronousTestCase):
    """
    C{reservedPorts}: a running model's C{${PORT}} never moves.
    """

    def test_insertedModel(self) -> None:
        """
        A model sorted before the others would shift every port; pinned,
        the others keep theirs and the new one takes the next free port.
        """
        old = load(BASE)
        self.assertEqual(pinnedPorts(old), {"a": 7000, "b": 7001})
        new = load(BASE + modelBlock("0first"), pinnedPorts(old))
        self.assertEqual(pinnedPorts(new), {"a": 7000, "b": 7001, "0first": 7002})
        self.assertEqual(new.models["a"].proxy, "http://localhost:7000")
        diff = diffConfigs(old, new)
        self.assertEqual(diff.added, ("0first",))
        self.assertEqual(diff.restarted, ())

    def test_removedModelPortNotReused(self) -> None:
        """
        The port of a removed model (whose process may still be draining)
        is not given to a new model in the same reload.
        """
        old = load(BASE)
        text = BASE.replace("  a:\n    cmd: srv --port ${PORT} --model a.gguf\n", "")
        new = load(text + modelBlock("z"), pinnedPorts(old))
        self.assertEqual(pinnedPorts(new), {"b": 7001, "z": 7002})

    def test_withoutReservationsUnchanged(self) -> None:
        """
        Without reservations, allocation is llama-swap's: sorted IDs from
        C{startPort}.
        """
        new = load(BASE + modelBlock("0first"))
        self.assertEqual(pinnedPorts(new), {"0first": 7000, "a": 7001, "b": 7002})

    @settings(max_examples=150, deadline=None)
    @given(modelSets, modelSets, st.integers(6000, 6010), st.integers(6000, 6010))
    def test_pinnedProperty(
        self, before: dict[str, bool], after: dict[str, bool], port1: int, port2: int
    ) -> None:
        """
        For any old and new model sets: a model using C{${PORT}} in both
        keeps its port; ports stay unique; no new allocation takes a port
        reserved by the old configuration; a model unchanged but for the
        allocation is kept.
        """
        old = load(configText(before, port1))
        reserved = pinnedPorts(old)
        new = load(configText(after, port2), reserved)
        ports = pinnedPorts(new)
        self.assertEqual(len(set(ports.values())), len(ports))
        for modelID, port in ports.items():
            if modelID in reserved:
                self.assertEqual(port, reserved[modelID])
            else:
                self.assertNotIn(port, reserved.values())
                self.assertGreaterEqual(port, port2)
        diff = diffConfigs(old, new)
        for modelID in set(before) & set(after):
            if before[modelID] == after[modelID]:
                self.assertIn(modelID, diff.kept)
            else:
                self.assertIn(modelID, diff.restarted)
        self.assertEqual(set(diff.added), set(after) - set(before))
        self.assertEqual(set(diff.removed), set(before) - set(after))
