"""
Tests for L{llamaswap.tap} options.
"""

import contextlib
import io
import os

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from llamaswap import __version__
from llamaswap.tap import Options


class OptionsTests(SynchronousTestCase):
    """
    L{Options} checks combinations and normalises paths.
    """

    def test_needsConfig(self) -> None:
        """
        Without --config or --config-dir parsing fails with llama-swap's
        message.
        """
        with self.assertRaises(UsageError) as ctx:
            Options().parseOptions([])
        self.assertIn("at least one of --config, --config-dir or --models-dir", str(ctx.exception))

    def test_modelsDirAlone(self) -> None:
        """
        --models-dir alone is enough, and becomes absolute.
        """
        options = Options()
        options.parseOptions(["--models-dir", "models"])
        self.assertEqual(options["models-dir"], os.path.abspath("models"))
        self.assertIsNone(options["config"])

    def test_defaults(self) -> None:
        """
        The default listen address is loopback port 8080 (safer than
        llama-swap's every-interface default); config paths become absolute.
        """
        options = Options()
        options.parseOptions(["--config", "config.yaml"])
        self.assertEqual(options["config"], os.path.abspath("config.yaml"))
        self.assertEqual(options["listenAddress"].endpoint, "tcp:8080:interface=127.0.0.1")
        self.assertFalse(options["watch-config"])

    def test_configDirAndListen(self) -> None:
        """
        --config-dir alone is enough; --listen :PORT means every interface.
        """
        options = Options()
        options.parseOptions(["--config-dir", "conf.d", "--listen", ":9000", "-w"])
        self.assertEqual(options["config-dir"], os.path.abspath("conf.d"))
        self.assertEqual(options["listenAddress"].endpoint, "tcp:9000")
        self.assertTrue(options["watch-config"])

    def test_tlsNeedsBoth(self) -> None:
        """
        Only one of the TLS files is an error; both switch the default port
        to 8443.
        """
        with self.assertRaises(UsageError) as ctx:
            Options().parseOptions(["--config", "c.yaml", "--tls-cert-file", "c.pem"])
        self.assertIn("both --tls-cert-file and --tls-key-file", str(ctx.exception))
        options = Options()
        options.parseOptions(
            ["--config", "c.yaml", "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem"]
        )
        self.assertTrue(options["listenAddress"].endpoint.startswith("ssl:8443:"))

    def test_badListen(self) -> None:
        """
        A malformed --listen is a usage error.
        """
        self.assertRaises(
            UsageError, Options().parseOptions, ["--config", "c", "--listen", "nope"]
        )

    def test_idleSpin(self) -> None:
        """
        --idle-spin is 200 microseconds unless given; 0 turns it off; it is
        neither negative nor more than 10 ms.
        """
        options = Options()
        options.parseOptions(["--config", "c.yaml"])
        self.assertEqual(options["idle-spin"], 200.0)
        options = Options()
        options.parseOptions(["--config", "c.yaml", "--idle-spin", "0"])
        self.assertEqual(options["idle-spin"], 0.0)
        for bad in ("-1", "10001"):
            with self.assertRaises(UsageError) as ctx:
                Options().parseOptions(["--config", "c.yaml", "--idle-spin", bad])
            self.assertIn("--idle-spin must be between 0 and 10000", str(ctx.exception))

    def test_version(self) -> None:
        """
        --version prints the version and exits 0.
        """
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit) as ctx:
            Options().parseOptions(["--version"])
        self.assertEqual(ctx.exception.code, 0)
        self.assertEqual(out.getvalue(), f"llamaswap version: {__version__}\n")
