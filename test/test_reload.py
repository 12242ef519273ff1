"""
Tests for L{llamaswap.reload}: the reload driver, with a fake apply.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.diff import ConfigDiff
from llamaswap.config.load import LoadedConfig, loadConfigText
from llamaswap.config.model import Config
from llamaswap.holder import Holder
from llamaswap.modelswatch import ModelsWatcher
from llamaswap.reload import (
    Reloader,
    ReloadResult,
    fileLoader,
    httpAnswer,
    reloadTriggers,
)
from llamaswap.watch import ConfigWatcher

GOOD = """startPort: 7100
models:
  a:
    cmd: srv --port ${PORT} -m a
  b:
    cmd: srv --port ${PORT} -m b
"""


class Files:
    """
    A configuration "file" held in memory, loaded like the real one.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.reserved: list[Mapping[str, int]] = []

    def load(self, reservedPorts: Mapping[str, int]) -> LoadedConfig:
        self.reserved.append(dict(reservedPorts))
        return loadConfigText(self.text, "config.yaml", reservedPorts=reservedPorts)


class Harness:
    """
    A L{Reloader} over L{Files}, a L{Holder} and a recording apply.
    """

    def __init__(self, text: str = GOOD, **kw: Any) -> None:
        self.files = Files(text)
        self.holder = Holder(self.files.load({}).config)
        self.applied: list[tuple[Config, ConfigDiff]] = []
        self.reloaded: list[ReloadResult] = []
        self.failed: list[ReloadResult] = []
        self.applyResult: Any = None
        self.reloader = Reloader(
            self.files.load,
            lambda: self.holder.value,
            self.apply,
            onReloaded=self.reloaded.append,
            onReloadFailed=self.failed.append,
            **kw,
        )

    def apply(self, config: Config, diff: ConfigDiff) -> Any:
        self.applied.append((config, diff))
        self.holder.set(config)
        return self.applyResult


class ReloaderTests(SynchronousTestCase):
    """
    L{Reloader}: load, diff, apply or report.
    """

    def reload(self, h: Harness, trigger: str = "test") -> ReloadResult:
        return self.successResultOf(h.reloader.reload(trigger))

    def test_success(self) -> None:
        """
        A valid new file is diffed against the running configuration and
        applied; C{onReloaded} gets the summary.
        """
        h = Harness()
        h.files.text = GOOD + "  c:\n    cmd: srv --port ${PORT} -m c\n"
        result = self.reload(h, "sighup")
        self.assertTrue(result.ok)
        self.assertEqual(len(h.applied), 1)
        config, diff = h.applied[0]
        self.assertEqual(diff.added, ("c",))
        self.assertEqual(diff.kept, ("a", "b"))
        self.assertIs(h.holder.value, config)
        self.assertEqual(h.reloaded, [result])
        self.assertEqual(h.failed, [])
        summary = result.summary()
        self.assertEqual(summary["ok"], True)
        self.assertEqual(summary["trigger"], "sighup")
        self.assertEqual(summary["added"], ["c"])
        self.assertEqual(summary["errors"], [])
        self.assertIn("added c", result.describe())

    def test_portsPinned(self) -> None:
        """
        The ports of the running configuration are passed to the loader,
        so a model sorted first does not move the others.
        """
        h = Harness()
        h.files.text = GOOD + "  0new:\n    cmd: srv --port ${PORT} -m n\n"
        result = self.reload(h)
        self.assertEqual(h.files.reserved[-1], {"a": 7100, "b": 7101})
        assert result.diff is not None
        self.assertEqual(result.diff.restarted, ())
        self.assertEqual(result.config.models["0new"].port, 7102)

    def test_brokenFileChangesNothing(self) -> None:
        """
        A configuration error applies nothing; C{onReloadFailed} gets every
        error with its file, line and key path.
        """
        h = Harness()
        before = h.holder.value
        h.files.text = GOOD + "    ttl: -5\n  c:\n    cmd: srv\n"
        result = self.reload(h)
        self.assertFalse(result.ok)
        self.assertEqual(h.applied, [])
        self.assertIs(h.holder.value, before)
        self.assertIs(result.config, before)
        self.assertEqual(h.failed, [result])
        self.assertEqual(len(result.errors), 2)
        self.assertIn("config.yaml:7: models.b.ttl: model b: invalid TTL value -5", result.errors)
        summary = result.summary()
        self.assertEqual(summary["ok"], False)
        self.assertEqual(summary["errors"], list(result.errors))
        self.assertNotIn("kept", summary)
        self.assertIn("failed, the running configuration is unchanged", result.describe())

    def test_recovers(self) -> None:
        """
        After a failed reload, fixing the file reloads normally.
        """
        h = Harness()
        h.files.text = "models: ["
        self.assertFalse(self.reload(h).ok)
        h.files.text = GOOD.replace("-m b", "-m b2")
        result = self.reload(h)
        self.assertTrue(result.ok)
        self.assertEqual(h.applied[0][1].restarted, ("b",))

    def test_applyFails(self) -> None:
        """
        An apply that raises is reported as a failed reload.
        """
        h = Harness()

        def broken(config: Config, diff: ConfigDiff) -> None:
            raise RuntimeError("no")

        h.reloader._apply = broken
        result = self.reload(h)
        self.assertFalse(result.ok)
        self.assertEqual(result.errors, ("applying the new configuration failed: no",))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_loaderCrash(self) -> None:
        """
        An unexpected exception while loading is a failed reload, not a
        crash of the trigger.
        """
        h = Harness()

        def crash(reserved: Mapping[str, int]) -> LoadedConfig:
            raise OSError("disk on fire")

        h.reloader._load = crash
        result = self.reload(h)
        self.assertEqual(result.errors, ("loading failed: disk on fire",))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_oneAtATime(self) -> None:
        """
        While an apply is in progress, the next reload waits for it, then
        diffs against the configuration it made current.  Triggers during
        the wait share that one next reload.
        """
        h = Harness()
        pending: Deferred[None] = Deferred()
        h.applyResult = pending
        h.files.text = GOOD + "  c:\n    cmd: srv --port ${PORT} -m c\n"
        first = h.reloader.reload("one")
        h.applyResult = None
        h.files.text += "  d:\n    cmd: srv --port ${PORT} -m d\n"
        later = [h.reloader.reload(name) for name in ("two", "three", "four")]
        self.assertNoResult(first)
        for d in later:
            self.assertNoResult(d)
        self.assertEqual(len(h.applied), 1)
        pending.callback(None)
        self.assertTrue(self.successResultOf(first).ok)
        results = [self.successResultOf(d) for d in later]
        self.assertEqual(len(h.applied), 2)
        self.assertIs(results[0], results[2])
        result = results[0]
        self.assertEqual(result.trigger, "two")
        assert result.diff is not None
        self.assertEqual(result.diff.added, ("d",))
        self.assertEqual(h.files.reserved[-1], {"a": 7100, "b": 7101, "c": 7102})
        self.assertTrue(self.successResultOf(h.reloader.reload("five")).ok)
        self.assertEqual(len(h.applied), 3)

    def test_callbackErrorsContained(self) -> None:
        """
        A failing C{onReloaded} is logged; the reload still succeeds.
        """
        h = Harness()

        def boom(result: ReloadResult) -> None:
            raise ValueError("listener")

        h.reloader._onReloaded = boom
        self.assertTrue(self.reload(h).ok)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_startOnlyFiles(self) -> None:
        """
        A changed TLS file is reported as needing a restart; the rest
        still applies.
        """
        cert = self.mktemp()
        with open(cert, "w") as f:
            f.write("old")
        h = Harness(startOnlyFiles={"tls-cert-file": cert, "tls-key-file": None})
        result = self.reload(h)
        assert result.diff is not None
        self.assertEqual(result.diff.needsRestart, ())
        with open(cert, "w") as f:
            f.write("new")
        result = self.reload(h)
        assert result.diff is not None
        self.assertEqual(result.diff.needsRestart, ("tls-cert-file",))
        self.assertEqual(result.summary()["needsRestart"], ["tls-cert-file"])

    def test_warnings(self) -> None:
        """
        The new configuration's warnings are in the result.
        """
        h = Harness()
        h.files.text = GOOD + "    tll: 5\n"
        result = self.reload(h)
        self.assertTrue(result.ok)
        self.assertEqual(len(result.warnings), 1)
        self.assertIn("ttl", result.warnings[0])


class HTTPAnswerTests(SynchronousTestCase):
    """
    L{httpAnswer}: what C{POST /api/config/reload} sends.
    """

    def test_ok(self) -> None:
        h = Harness()
        result = self.successResultOf(h.reloader.reload("api"))
        status, body = httpAnswer(result)
        self.assertEqual(status, 200)
        self.assertEqual(body, result.summary())
        self.assertEqual(json.loads(json.dumps(body))["kept"], ["a", "b"])

    def test_errors(self) -> None:
        h = Harness()
        h.files.text = "globalTTL: -1\n"
        result = self.successResultOf(h.reloader.reload("api"))
        status, body = httpAnswer(result)
        self.assertEqual(status, 422)
        self.assertEqual(body["src"], "llamaswap")
        self.assertEqual(body["error"]["code"], "invalid_config")
        self.assertEqual(body["error"]["type"], "invalid_request_error")
        self.assertEqual(
            body["error"]["message"],
            "configuration not reloaded: config.yaml:1: globalTTL must be >= 0",
        )
        self.assertEqual(body["reload"]["errors"], ["config.yaml:1: globalTTL must be >= 0"])
        self.assertEqual(body["reload"]["ok"], False)


class FileLoaderTests(SynchronousTestCase):
    """
    L{fileLoader} reads the files again on each call.
    """

    def test_rereads(self) -> None:
        base = self.mktemp()
        os.makedirs(os.path.join(base, "conf.d"))
        path = os.path.join(base, "config.yaml")
        with open(path, "w") as f:
            f.write(GOOD)
        load = fileLoader(path, os.path.join(base, "conf.d"))
        self.assertEqual(sorted(load({}).config.models), ["a", "b"])
        with open(os.path.join(base, "conf.d", "more.yaml"), "w") as f:
            f.write("models:\n  c:\n    cmd: srv --port ${PORT}\n")
        loaded = load({"a": 9000})
        self.assertEqual(sorted(loaded.config.models), ["a", "b", "c"])
        self.assertEqual(loaded.config.models["a"].port, 9000)

    def test_modelsDir(self) -> None:
        """
        A reload discovers C{--models-dir} again, as the start does: a
        model file added to the folder appears, the explicit ones stay.
        """
        base = os.path.abspath(self.mktemp())
        folder = os.path.join(base, "models")
        os.makedirs(folder)
        path = os.path.join(base, "config.yaml")
        with open(path, "w") as f:
            f.write(GOOD + "modelsDir: {cmd: '/bin/sh --port ${PORT} -m ${MODEL_PATH}'}\n")
        open(os.path.join(folder, "one.gguf"), "wb").close()
        load = fileLoader(path, None, folder)
        self.assertEqual(sorted(load({}).config.models), ["a", "b", "one"])
        open(os.path.join(folder, "two.gguf"), "wb").close()
        loaded = load({"a": 9000})
        self.assertEqual(sorted(loaded.config.models), ["a", "b", "one", "two"])
        self.assertIn(os.path.join(folder, "two.gguf"), loaded.config.models["two"].cmd)


class ReloadTriggersTests(SynchronousTestCase):
    """
    L{reloadTriggers}: which services call the reloader.
    """

    def test_modelsFolderWithoutWatchConfig(self) -> None:
        """
        A models folder is watched without C{--watch-config}; a change in it
        reloads with the trigger C{models-dir}.
        """
        clock = Clock()
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        reloads: list[str] = []
        reloader: Any = type("R", (), {"reload": lambda self, trigger: reloads.append(trigger)})()
        services = reloadTriggers(reloader, clock, None, None, False, lambda: folder)
        [watcher] = [s for s in services if isinstance(s, ModelsWatcher)]
        self.assertFalse([s for s in services if type(s) is ConfigWatcher])
        self.assertEqual(watcher.folder(), folder)
        watcher.callback(("x.gguf",))
        self.assertEqual(reloads, ["models-dir"])

    def test_noModelsFolder(self) -> None:
        """
        Without a models folder source there is no models watcher.
        """
        reloader: Any = object()
        services = reloadTriggers(reloader, Clock(), None, None, False)
        self.assertFalse([s for s in services if isinstance(s, ModelsWatcher)])
