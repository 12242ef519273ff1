"""
Tests for L{llamaswap.config.redact}: secrets never shown with a command
(C{/running}, logs), llama-swap #761.
"""

from __future__ import annotations

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.load import loadConfigText
from llamaswap.config.redact import (
    MASK,
    RecordingEnviron,
    isSecretFlag,
    redactArgv,
    redactCommand,
)
from llamaswap.upstream.lifecycle import State
from llamaswap.upstream.spec import UpstreamSpec
from llamaswap.upstream.supervisor import Supervisor

from ..web.test_management import Served


class RedactCommandTests(SynchronousTestCase):
    def test_flags(self) -> None:
        """
        Values of secret-looking flags are masked in every spelling; other
        flags and boolean secret-ish flags keep their neighbours.
        """
        self.assertEqual(
            redactCommand(
                "llama-server --port 9 --api-key sk-123 --hf-token='a b'"
                ' --password="x y" -m /m.gguf HF_TOKEN=zz --no-auth --keep 4'
                " --api-key-file /k --ssl-key-file /s"
            ),
            "llama-server --port 9 --api-key *** --hf-token=***"
            " --password=*** -m /m.gguf HF_TOKEN=*** --no-auth --keep 4"
            " --api-key-file *** --ssl-key-file /s",
        )

    def test_envValues(self) -> None:
        """
        Substrings that came from the environment are masked; values too
        short to be secrets are not.
        """
        self.assertEqual(
            redactCommand("srv -m /models/abcdef/x.gguf --gpu 0", ["abcdef", "0"]),
            "srv -m /models/***/x.gguf --gpu 0",
        )

    def test_argv(self) -> None:
        self.assertEqual(
            redactArgv(["srv", "--no-auth", "--api-key", "sk", "--token=t", "K_TOKEN=v",
                        "--keep", "4", "-m", "abcd/e"], ["abcd"]),
            ["srv", "--no-auth", "--api-key", MASK, "--token=***", "K_TOKEN=***",
             "--keep", "4", "-m", "***/e"],
        )
        self.assertTrue(isSecretFlag("--api-key"))
        self.assertFalse(isSecretFlag("--keep"))

    def test_recording(self) -> None:
        recording = RecordingEnviron({"A": "secret-value", "B": "1", "C": "unused"})
        self.assertEqual(recording.get("A"), "secret-value")
        self.assertEqual(recording.get("B"), "1")
        self.assertEqual(recording.secrets(), frozenset({"secret-value"}))


CONFIG = """
models:
  m:
    cmd: srv --port ${PORT} --api-key sk-live-123 -m ${env.MODEL_DIR}/x.gguf
"""


class ShownCommandTests(SynchronousTestCase):
    def test_configRecordsEnvValues(self) -> None:
        config = loadConfigText(CONFIG, environ={"MODEL_DIR": "/srv/private"}).config
        self.assertEqual(config.envSecrets, frozenset({"/srv/private"}))
        self.assertEqual(
            config.shownCommand(config.models["m"].cmd),
            "srv --port 5800 --api-key *** -m ***/x.gguf",
        )

    def test_running(self) -> None:
        """
        C{/running} shows the command with its secrets masked.
        """
        served = Served(loadConfigText(CONFIG, environ={"MODEL_DIR": "/srv/private"}).config)
        served.app.router.states = {"m": State.READY}
        _, body = served.json(b"GET", b"/running")
        cmd = body["running"][0]["cmd"]
        self.assertNotIn("sk-live-123", cmd)
        self.assertNotIn("/srv/private", cmd)

    def test_spawnFailureMessage(self) -> None:
        """
        The error of a command that cannot be spawned shows it masked.
        """
        from twisted.internet.task import Clock

        class FailingReactor:
            def spawnProcess(self, *a: object, **kw: object) -> None:
                raise OSError("no such file")

        spec = UpstreamSpec(
            modelID="m",
            argv=("srv", "--api-key", "sk-live-123", "-m", "/srv/private/x"),
            proxy="http://127.0.0.1:9",
            secrets={"/srv/private"},
            checkEndpoint="none",
        )
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        supervisor = Supervisor(spec, processReactor=FailingReactor(), clock=Clock())
        d = supervisor.ensureReady()
        failure = self.failureResultOf(d)
        text = str(failure.value) + " ".join(
            str(e.get("log_format", "")).format(**e) for e in events
            if isinstance(e.get("log_format"), str)
        )
        self.assertIn("srv --api-key *** -m ***/x", str(failure.value))
        self.assertNotIn("sk-live-123", text)
