"""
Tests for L{llamaswap.listen}.
"""

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.listen import (
    DEFAULT_BACKLOG,
    ListenError,
    hostBacklog,
    parseListen,
    withBacklog,
)


class ParseListenTests(SynchronousTestCase):
    """
    L{parseListen} accepts llama-swap's address forms and endpoint strings.
    """

    def test_hostPort(self) -> None:
        """
        C{HOST:PORT} listens on that interface only.
        """
        address = parseListen("127.0.0.1:8080")
        self.assertEqual(address.endpoint, "tcp:8080:interface=127.0.0.1")
        self.assertTrue(address.isLoopbackOnly)
        self.assertEqual(address.url, "http://127.0.0.1:8080")

    def test_allInterfaces(self) -> None:
        """
        C{:PORT} listens on every interface, as in llama-swap, and is not
        loopback-only.
        """
        address = parseListen(":8080")
        self.assertEqual(address.endpoint, "tcp:8080")
        self.assertFalse(address.isLoopbackOnly)
        self.assertFalse(parseListen("0.0.0.0:80").isLoopbackOnly)

    def test_localhost(self) -> None:
        """
        C{localhost:PORT} binds the IPv4 loopback address.
        """
        address = parseListen("localhost:9000")
        self.assertEqual(address.endpoint, "tcp:9000:interface=127.0.0.1")
        self.assertTrue(address.isLoopbackOnly)

    def test_ipv6(self) -> None:
        """
        C{[::1]:PORT} listens on IPv6 with the colons escaped.
        """
        address = parseListen("[::1]:8080")
        self.assertEqual(address.endpoint, "tcp6:8080:interface=\\:\\:1")
        self.assertTrue(address.isLoopbackOnly)
        self.assertEqual(address.url, "http://[::1]:8080")

    def test_tls(self) -> None:
        """
        With certificate and key the endpoint is C{ssl:} with escaped paths.
        """
        address = parseListen("127.0.0.1:8443", "/etc/c:ert.pem", "/etc/key.pem")
        self.assertEqual(
            address.endpoint,
            "ssl:8443:privateKey=/etc/key.pem:certKey=/etc/c\\:ert.pem"
            ":interface=127.0.0.1",
        )
        self.assertEqual(address.url, "https://127.0.0.1:8443")

    def test_endpointDescription(self) -> None:
        """
        Twisted endpoint descriptions pass through unchanged.
        """
        for value in ["unix:/run/llamaswap.sock", "systemd:domain=INET:index=0",
                      "tcp:0:interface=127.0.0.1"]:
            self.assertEqual(parseListen(value).endpoint, value)
        self.assertTrue(parseListen("unix:/tmp/x.sock").isLoopbackOnly)

    def test_invalid(self) -> None:
        """
        Addresses without a port, with a non-numeric or out-of-range port,
        or with a broken IPv6 bracket are rejected with a message.
        """
        for value in ["8080", "host:http", "host:70000", "[::1", "[::1]8080"]:
            self.assertRaises(ListenError, parseListen, value)


class BacklogTests(SynchronousTestCase):
    """
    L{hostBacklog} and L{withBacklog}: llamaswap listens with the host's
    backlog, not Twisted's 50.
    """

    def test_hostBacklog(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("4096\n")
        self.assertEqual(hostBacklog(path), 4096)
        with open(path, "w") as f:
            f.write("junk")
        self.assertEqual(hostBacklog(path), DEFAULT_BACKLOG)
        self.assertEqual(hostBacklog(path + ".missing"), DEFAULT_BACKLOG)

    def test_withBacklog(self) -> None:
        """
        TCP and TLS descriptions get the backlog (and Twisted accepts
        them); others, and those naming their own, are left alone.
        """
        self.assertEqual(withBacklog("tcp:8080:interface=127.0.0.1", 1024),
                         "tcp:8080:interface=127.0.0.1:backlog=1024")
        self.assertEqual(withBacklog("tcp:1:backlog=7", 1024), "tcp:1:backlog=7")
        self.assertEqual(withBacklog("unix:/run/x.sock", 1024), "unix:/run/x.sock")
        endpoint = serverFromString(reactor, withBacklog(parseListen(":0").endpoint, 999))
        self.assertEqual(endpoint._backlog, 999)  # type: ignore[attr-defined]

    def test_service(self) -> None:
        """
        C{makeService} listens with the host's backlog.
        """
        from llamaswap.tap import Options, makeService

        path = self.mktemp()
        with open(path, "w") as f:
            f.write("models: {}\n")
        options = Options()
        options.parseOptions(["--config", path, "--listen", "127.0.0.1:0"])
        service = makeService(options, reactor=Clock())
        endpoints = [s.endpoint for s in service if hasattr(s, "endpoint")]
        self.assertEqual([e._backlog for e in endpoints], [hostBacklog()])  # type: ignore[attr-defined]
        from llamaswap.idlespin import IdleSpin
        from llamaswap.tap import StartupFreeze

        self.assertIsInstance(list(service)[-1], StartupFreeze)
        [spin] = [s for s in service if isinstance(s, IdleSpin)]
        self.assertEqual(spin.limit, 0.0002)


class StartupFreezeTests(SynchronousTestCase):
    def test_freezesOnce(self) -> None:
        """
        The service started last freezes the start-up objects, once per
        process however often it starts.
        """
        import gc

        from llamaswap.tap import YOUNG_GENERATION, StartupFreeze

        calls: list[object] = []
        self.patch(gc, "collect", lambda *a: calls.append("collect") or 0)
        self.patch(gc, "freeze", lambda: calls.append("freeze"))
        self.patch(gc, "get_threshold", lambda: (700, 11, 12))
        self.patch(gc, "set_threshold", lambda *t: calls.append(t))
        self.patch(StartupFreeze, "frozen", False)
        StartupFreeze().startService()
        StartupFreeze().startService()
        self.assertEqual(calls, ["collect", "freeze", (YOUNG_GENERATION, 11, 12)])
