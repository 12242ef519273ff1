"""
Tests for L{llamaswap.tlsgate}: TLS support is loaded only when the
configuration uses it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported

from llamaswap import tlsgate
from llamaswap.tlsgate import TLS_MISSING, needsTLS, withoutTLS
from llamaswap.web.client import UpstreamEndpoints

from .util import childEnv

#: Builds the service like twistd does, then reports whether OpenSSL was
#: loaded and what an https endpoint gives.
PROBE = """
import json, sys
from llamaswap.tap import Options, makeService
options = Options()
options.parseOptions(["--config", sys.argv[1], "--listen", sys.argv[2]])
makeService(options)
from twisted.internet import reactor
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported
from llamaswap.web.client import UpstreamEndpoints
try:
    UpstreamEndpoints(reactor, 1).endpointForURI(URI.fromBytes(b"https://127.0.0.1:1/"))
    error = None
except SchemeNotSupported as e:
    error = str(e)
print(json.dumps({"openssl": "OpenSSL" in sys.modules, "error": error}))
"""

MODEL = """
models:
  m:
    cmd: sleep 100
    proxy: {proxy}
"""


class NeedsTLSTests(SynchronousTestCase):
    def test_decision(self) -> None:
        """
        TLS is needed for a TLS (or unknown) listener and for any https
        upstream, whatever its case or surrounding space.
        """
        plain = "tcp:port=8080:interface=127.0.0.1"
        self.assertFalse(needsTLS(plain, ["http://127.0.0.1:5800", "http://h/api"]))
        self.assertFalse(needsTLS("unix:/run/l.sock", []))
        self.assertFalse(needsTLS("systemd:domain=INET:index=0", []))
        self.assertTrue(needsTLS(plain, ["http://a", " HTTPS://b"]))
        self.assertTrue(needsTLS("ssl:8443:privateKey=k.pem:certKey=c.pem", []))
        self.assertTrue(needsTLS("le:/certs:tcp:443", []))

    def test_notAfterTwisted(self) -> None:
        """
        In a process that already loaded TLS support (this one), or with
        C{LLAMASWAP_TLS=1}, nothing is kept out.
        """
        before = list(sys.meta_path)
        self.assertFalse(withoutTLS({tlsgate.FORCE_ENV: "1"}))
        self.assertFalse(withoutTLS({}))
        self.assertEqual(sys.meta_path, before)

    def test_httpsWithoutTLS(self) -> None:
        """
        An https upstream without TLS support is refused with
        L{TLS_MISSING}, as an unsupported scheme.
        """
        from llamaswap.web import client

        self.patch(client, "tlsAvailable", lambda: False)
        endpoints = UpstreamEndpoints(object(), 1)
        error = self.assertRaises(
            SchemeNotSupported, endpoints.endpointForURI, URI.fromBytes(b"https://h:1/")
        )
        self.assertEqual(str(error), TLS_MISSING)


class ServiceTests(SynchronousTestCase):
    """
    L{llamaswap.tap.makeService} in a fresh process.
    """

    def probe(self, proxy: str, listen: str = "127.0.0.1:0", **env: str) -> dict:
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "config.yaml")
            with open(path, "w") as f:
                f.write(MODEL.format(proxy=proxy))
            environ = childEnv(RUNTIME_DIRECTORY=work, **env)
            environ.pop(tlsgate.FORCE_ENV, None)
            environ.update(env)
            done = subprocess.run(
                [sys.executable, "-c", PROBE, path, listen],
                env=environ,
                capture_output=True,
                timeout=60,
                cwd=work,
            )
        self.assertEqual(done.returncode, 0, done.stderr.decode(errors="replace"))
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    def test_plain(self) -> None:
        """
        Plain listener and http upstreams: OpenSSL is never imported and an
        https upstream added later is refused with the reason.
        """
        self.assertEqual(
            self.probe("http://127.0.0.1:5800"), {"openssl": False, "error": TLS_MISSING}
        )

    def test_httpsUpstream(self) -> None:
        """
        An https upstream keeps TLS support.
        """
        self.assertEqual(self.probe("https://127.0.0.1:5800"), {"openssl": True, "error": None})

    def test_tlsListener(self) -> None:
        """
        A TLS listener keeps TLS support (and can be built with it).
        """
        import twisted.test

        pem = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
        listen = f"ssl:0:interface=127.0.0.1:privateKey={pem}"
        self.assertEqual(
            self.probe("http://127.0.0.1:5800", listen=listen), {"openssl": True, "error": None}
        )

    def test_forced(self) -> None:
        """
        C{LLAMASWAP_TLS=1} keeps TLS support.
        """
        self.assertEqual(
            self.probe("http://127.0.0.1:5800", LLAMASWAP_TLS="1"),
            {"openssl": True, "error": None},
        )
