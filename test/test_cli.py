"""
Tests for L{llamaswap.cli}: C{llamaswap check-config} and llama-swap's
command line.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from llamaswap import __version__
from llamaswap.cli import checkConfig, goFlags

from .util import REPO, childEnv, freePort, poll

# (name, YAML, substrings the error output must contain). Each is a mistake
# a user can make; each message must say what and where.
BROKEN = [
    ("ttl-negative",
     "models:\n  m1:\n    cmd: srv --port ${PORT}\n    ttl: -5\n",
     ["bad.yaml:4", "models.m1.ttl", "invalid TTL value -5"]),
    ("start-port-text",
     "startPort: abcd\n",
     ["bad.yaml:1", "startPort", "abcd"]),
    ("start-port-zero",
     "startPort: 0\n",
     ["startPort must be greater than 1"]),
    ("global-ttl-negative",
     "globalTTL: -1\n",
     ["globalTTL must be >= 0"]),
    ("unload-timeout-negative",
     "unloadTimeout: -3\n",
     ["unloadTimeout must be >= 0"]),
    ("model-unload-timeout",
     "models:\n  m1:\n    cmd: s ${PORT}\n    unloadTimeout: -1\n",
     ["models.m1.unloadTimeout", "invalid unloadTimeout value -1"]),
    ("duplicate-alias",
     "models:\n  a:\n    cmd: s ${PORT}\n    aliases: [x]\n"
     "  b:\n    cmd: s ${PORT}\n    aliases: [x]\n",
     ["duplicate alias x found in model"]),
    ("log-to-stdout",
     "logToStdout: everywhere\n",
     ["logToStdout must be one of: proxy, upstream, both, none"]),
    ("performance-every",
     "performance:\n  every: 2s\n",
     ["performance: every must be at least 5s, got 2s"]),
    ("fixed-port-no-proxy",
     "models:\n  m1:\n    cmd: srv --port 9000\n",
     ["model m1: proxy uses ${PORT} but cmd does not"]),
    ("reserved-macro",
     "macros:\n  PORT: 1\n",
     ["macro name 'PORT' is reserved"]),
    ("self-reference",
     "macros:\n  a: \"x ${a}\"\n",
     ["macro 'a' contains self-reference"]),
    ("unknown-macro",
     "models:\n  m1:\n    cmd: srv ${PORT} ${nope}\n",
     ["unknown macro '${nope}' found in m1.cmd"]),
    ("env-unset",
     "models:\n  m1:\n    cmd: srv ${PORT} ${env.LLAMASWAP_TEST_UNSET_VAR}\n",
     ["bad.yaml:3", "environment variable 'LLAMASWAP_TEST_UNSET_VAR' is not set"]),
    ("groups-and-matrix",
     "models:\n  a:\n    cmd: s ${PORT}\ngroups:\n  g: {members: [a]}\n"
     "matrix:\n  sets: {s: a}\n",
     ["config cannot use both 'groups' and 'matrix'"]),
    ("member-in-two-groups",
     "models:\n  a:\n    cmd: s ${PORT}\ngroups:\n  g1: {members: [a]}\n  g2: {members: [a]}\n",
     ["model member a is used in multiple groups"]),
    ("unknown-group-member",
     "models:\n  a:\n    cmd: s ${PORT}\ngroups:\n  g1: {members: [a, ghost]}\n",
     ["groups.g1.members[1]", "no model config for \"ghost\""]),
    ("unknown-router",
     "routing:\n  router:\n    use: random\n",
     ["routing.router.use: unknown router \"random\" (valid: group, matrix)"]),
    ("unknown-scheduler",
     "routing:\n  scheduler:\n    use: lifo\n",
     ["routing.scheduler.use: unknown scheduler \"lifo\" (valid: fifo)"]),
    ("empty-api-key",
     "apiKeys: [\"\"]\n",
     ["empty api key found in apiKeys"]),
    ("api-key-space",
     "apiKeys: [ok, \"has space\"]\n",
     ["apiKeys[1]: api key cannot contain spaces"]),
    ("api-key-bad-scope",
     "apiKeys:\n  - {key: k1, name: app, scopes: [inference, root]}\n",
     ["bad.yaml:2", "apiKeys[0].scopes[1]: unknown scope 'root'"]),
    ("api-key-empty-mapping-key",
     "apiKeys:\n  - {key: '', name: app}\n",
     ["apiKeys[0].key: empty api key found in apiKeys"]),
    ("peer-without-proxy",
     "peers:\n  p:\n    models: [m]\n",
     ["peers.p", "proxy is required"]),
    ("peer-without-models",
     "peers:\n  p:\n    proxy: http://127.0.0.1:1\n",
     ["peer models can not be empty"]),
    ("matrix-unknown-model",
     "models:\n  a:\n    cmd: s ${PORT}\nmatrix:\n  sets: {s: \"a & zz\"}\n",
     ["matrix: ", "unknown var or model \"zz\""]),
    ("bad-capability",
     "models:\n  a:\n    cmd: s ${PORT}\n    capabilities: {in: [video]}\n",
     ["invalid modality \"video\""]),
    ("yaml-syntax",
     "models:\n  a:\n    cmd: [unclosed\n",
     ["bad.yaml:"]),
    ("duplicate-key",
     "models:\n  a:\n    cmd: s ${PORT}\n    cmd: t ${PORT}\n",
     ["bad.yaml:4", "mapping key \"cmd\" already defined at line 3"]),
    ("not-a-mapping",
     "- just\n- a list\n",
     ["top-level YAML must be a mapping"]),
    ("wrong-type",
     "models:\n  a:\n    cmd: s ${PORT}\n    aliases: {x: y}\n",
     ["models.a.aliases"]),
    ("bad-ignore-path",
     "upstream:\n  ignorePaths: ['(']\n",
     ["upstream.ignorePaths: invalid regular expression"]),
]


class CheckConfigTests(SynchronousTestCase):
    """
    C{llamaswap check-config} reports every problem clearly and sets the
    exit status.
    """

    def check(self, *paths: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = checkConfig(list(paths), out, err)
        return status, out.getvalue(), err.getvalue()

    def writeConfig(self, text: str, name: str = "bad.yaml") -> str:
        base = self.mktemp()
        os.makedirs(base)
        path = os.path.join(base, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_brokenConfigs(self) -> None:
        """
        Each broken configuration of the table fails with exit status 1 and
        a message naming what is wrong and where; none is a traceback.
        """
        self.assertGreaterEqual(len(BROKEN), 20)
        for name, text, expected in BROKEN:
            status, out, err = self.check(self.writeConfig(text))
            self.assertEqual(status, 1, f"{name}: {out}{err}")
            for fragment in expected:
                self.assertIn(fragment, err, f"{name}: {fragment!r} not in {err!r}")
            self.assertNotIn("Traceback", err + out, name)

    def test_allErrorsReported(self) -> None:
        """
        Several mistakes in one file are all reported, not just the first.
        """
        status, out, err = self.check(self.writeConfig(
            "globalTTL: -1\nlogToStdout: x\nmodels:\n  m:\n    cmd: s ${PORT}\n"
            "    ttl: -2\n"
        ))
        self.assertEqual(status, 1)
        self.assertIn("3 error(s)", err)
        for fragment in ["globalTTL must be >= 0", "logToStdout must be one of",
                         "invalid TTL value -2"]:
            self.assertIn(fragment, err)

    def test_unknownKeyWarning(self) -> None:
        """
        A typo like C{tll:} is a warning naming the key and suggesting the
        right one; the config still loads.
        """
        status, out, err = self.check(self.writeConfig(
            "models:\n  m:\n    cmd: s ${PORT}\n    tll: 5\n", "typo.yaml"
        ))
        self.assertEqual(status, 0, err)
        self.assertIn("typo.yaml:4", err)
        self.assertIn("models.m.tll", err)
        self.assertIn("did you mean 'ttl'", err)

    def test_summary(self) -> None:
        """
        A good configuration exits 0 with its models, ports, aliases and
        groups.
        """
        status, out, err = self.check(self.writeConfig(
            "startPort: 7000\nmodels:\n  b:\n    cmd: s --port ${PORT}\n"
            "    aliases: [bee]\n  a:\n    cmd: s --port ${PORT}\n"
            "groups:\n  pair:\n    swap: false\n    members: [a, b]\n",
            "good.yaml",
        ))
        self.assertEqual(status, 0, err)
        self.assertIn("good.yaml: OK", out)
        self.assertIn("a: port 7000", out)
        self.assertIn("b: port 7001", out)
        self.assertIn("aliases bee", out)
        self.assertIn("pair [swap=false exclusive=true persistent=false]: a, b", out)

    def test_modelsDirEstimates(self) -> None:
        """
        With --models-dir the folder's models are listed with their
        estimated memory, and the budget is shown.
        """
        from test.integration.gguf import writeTinyModel

        folder = self.mktemp()
        os.makedirs(folder)
        writeTinyModel(os.path.join(folder, "tiny.gguf"), 1, name="tiny")
        config = self.writeConfig(
            "memoryBudget: 2GiB\n"
            "modelsDir:\n"
            "  path: /nonexistent\n"
            f"  cmd: {sys.executable} -m llamaswap.demo --port ${{PORT}} --model ${{MODEL_PATH}}\n",
            "dir.yaml",
        )
        status, out, err = self.check(config, "--models-dir", folder)
        self.assertEqual(status, 0, err)
        self.assertIn("tiny: port", out)
        self.assertRegex(out, r"memory [0-9.]+ MiB \(estimated\)")
        self.assertIn("memory budget: memory: 2.0 GiB", out)

    def test_exampleConfig(self) -> None:
        """
        The shipped example configuration is valid and warns about nothing.
        """
        status, out, err = self.check(os.path.join(REPO, "config.example.yaml"))
        self.assertEqual((status, err), (0, ""))

    def test_v1Profiles(self) -> None:
        """
        llama-swap v1's list-form profiles load and are listed.
        """
        status, out, err = self.check(self.writeConfig(
            "models:\n  qwen:\n    cmd: s --port ${PORT}\n  llama:\n"
            "    cmd: s --port ${PORT}\nprofiles:\n  coding:\n    - qwen\n    - llama\n",
            "v1.yaml",
        ))
        self.assertEqual(status, 0, err)
        self.assertIn("coding: qwen, llama", out)

    def test_configDir(self) -> None:
        """
        With --config-dir the directory's files are checked merged; a model
        defined in two files is an error naming both.
        """
        base = self.mktemp()
        os.makedirs(base)
        for name in ("a.yaml", "b.yaml"):
            with open(os.path.join(base, name), "w") as f:
                f.write("models:\n  dup:\n    cmd: s ${PORT}\n")
        status, out, err = self.check("--config-dir", base)
        self.assertEqual(status, 1)
        self.assertIn('duplicate models "dup"', err)
        self.assertIn("b.yaml", err)

    def test_missingFile(self) -> None:
        """
        A file that does not exist is reported, not a traceback.
        """
        status, out, err = self.check("/nonexistent/llamaswap.yaml")
        self.assertEqual(status, 1)
        self.assertIn("/nonexistent/llamaswap.yaml", err)
        self.assertNotIn("Traceback", err)

    def test_noArguments(self) -> None:
        """
        Nothing to check is a usage error.
        """
        status, out, err = self.check()
        self.assertEqual(status, 1)
        self.assertIn("give at least one FILE", err)


class ConsoleScriptTests(SynchronousTestCase):
    """
    The console entry point exits with the status of the check.
    """

    def test_exitStatus(self) -> None:
        """
        C{python -m llamaswap check-config} exits 1 on a broken file and 0
        on the example, without a traceback.
        """
        base = self.mktemp()
        os.makedirs(base)
        bad = os.path.join(base, "bad.yaml")
        with open(bad, "w") as f:
            f.write("globalTTL: -1\n")
        command = [sys.executable, "-m", "llamaswap", "check-config"]
        result = subprocess.run(command + [bad], env=childEnv(), capture_output=True,
                                text=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertIn("globalTTL must be >= 0", result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        result = subprocess.run(command + [os.path.join(REPO, "config.example.yaml")],
                                env=childEnv(), capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)


class GoFlagsTests(SynchronousTestCase):
    """
    L{goFlags}: llama-swap's Go-style command line.
    """

    def test_forms(self) -> None:
        """
        One dash or two, value after C{=} or as the next argument.
        """
        cases = [
            (["-config", "c.yaml"], ["--config", "c.yaml"]),
            (["--config", "c.yaml"], ["--config", "c.yaml"]),
            (["-config=c.yaml"], ["--config=c.yaml"]),
            (["--config=c.yaml"], ["--config=c.yaml"]),
            (["-listen", ":8080"], ["--listen", ":8080"]),
            (["-config-dir", "conf.d"], ["--config-dir", "conf.d"]),
            (["-tls-cert-file", "c.pem", "-tls-key-file=k.pem"],
             ["--tls-cert-file", "c.pem", "--tls-key-file=k.pem"]),
            (["-watch-config"], ["--watch-config"]),
            (["-watch-config=true"], ["--watch-config"]),
            (["-watch-config=1"], ["--watch-config"]),
            (["-watch-config=false"], []),
            (["-version"], ["--version"]),
            (["-validate"], ["--validate"]),
            (["-help"], ["--help"]),
            (["-h"], ["--help"]),
            (["-c", "c.yaml", "-w"], ["-c", "c.yaml", "-w"]),
            (["-config", "-odd-name.yaml"], ["--config", "-odd-name.yaml"]),
            (["--", "-config"], ["--", "-config"]),
            (["-unknown"], ["-unknown"]),
        ]
        for given, expected in cases:
            self.assertEqual(goFlags(given), expected, given)

    def test_badBoolean(self) -> None:
        """
        A boolean value Go would refuse is an error.
        """
        self.assertRaises(ValueError, goFlags, ["-watch-config=maybe"])

    def test_parsedByOptions(self) -> None:
        """
        The rewritten arguments are what the twistd plugin's options
        accept.
        """
        from llamaswap.tap import Options

        options = Options()
        options.parseOptions(
            goFlags(["-config=c.yaml", "-listen", "127.0.0.1:9", "-watch-config"])
        )
        self.assertEqual(options["config"], os.path.abspath("c.yaml"))
        self.assertTrue(options["watch-config"])
        self.assertEqual(options["listenAddress"].port, 9)


class GoCommandLineTests(TestCase):
    """
    C{llamaswap} run with llama-swap's flags, as real processes.
    """

    timeout = 60

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)

    def llamaswap(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llamaswap", *args],
            env=childEnv(), capture_output=True, text=True, timeout=60, cwd=self.base,
        )

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.base, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_validate(self) -> None:
        """
        C{-validate -config bad.yaml} prints the errors and exits 1;
        C{--validate --config=good.yaml} prints the summary and exits 0.
        """
        self.write("bad.yaml", "globalTTL: -1\nmodels:\n  m:\n    cmd: s ${PORT}\n    ttl: -2\n")
        result = self.llamaswap("-validate", "-config", "bad.yaml")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("bad.yaml:1: globalTTL must be >= 0", result.stderr)
        self.assertIn("invalid TTL value -2", result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        self.write("good.yaml", "models:\n  m:\n    cmd: s ${PORT}\n")
        result = self.llamaswap("--validate", "--config=good.yaml")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("good.yaml: OK", result.stdout)
        self.assertIn("m: port 5800", result.stdout)

    def test_version(self) -> None:
        """
        C{-version} prints the version and exits 0.
        """
        result = self.llamaswap("-version")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, f"llamaswap version: {__version__}\n")

    async def test_serves(self) -> None:
        """
        C{llamaswap -config c.yaml -listen 127.0.0.1:PORT -watch-config}
        serves, and exits 0 on SIGTERM.
        """
        self.write("c.yaml", "models:\n  m:\n    cmd: s ${PORT}\n")
        port = freePort()
        ended: Deferred[Any] = Deferred()

        class Ended(ProcessProtocol):
            output = b""

            def childDataReceived(self, fd: int, data: bytes) -> None:
                self.output += data

            def processEnded(self, reason: Failure) -> None:
                ended.callback(reason.value)

        protocol = Ended()
        args = [sys.executable, "-m", "llamaswap", "-config", "c.yaml",
                "-listen", f"127.0.0.1:{port}", "-watch-config"]
        env = childEnv(XDG_RUNTIME_DIR=self.base)
        transport = reactor.spawnProcess(protocol, args[0], args, env=env, path=self.base)

        def kill() -> Deferred[Any] | None:
            if ended.called:
                return None
            transport.signalProcess("KILL")
            return ended

        self.addCleanup(kill)
        pool = HTTPConnectionPool(reactor, persistent=False)

        async def healthy() -> bool:
            if ended.called:
                raise AssertionError(protocol.output.decode())
            try:
                response = await treq.get(f"http://127.0.0.1:{port}/health", pool=pool)
                await response.content()
            except Exception:
                return False
            return response.code == 200

        await poll(healthy, 30, "llamaswap to answer /health")
        transport.signalProcess("TERM")
        reason = await ended
        self.assertIsInstance(reason, ProcessDone, protocol.output.decode())
