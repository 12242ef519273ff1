"""
Tests for L{llamaswap.listen}.
"""

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.listen import ListenError, parseListen


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
