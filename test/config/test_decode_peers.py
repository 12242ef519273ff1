"""
Tests for L{llamaswap.config.decode_peers} and the peer model namespace
checks of L{llamaswap.config.crosscheck}.
"""

from __future__ import annotations

from llamaswap.config.model import Timeouts

from .helpers import BuildTestCase

PEERS = """
peers:
  p1:
    proxy: http://peer1:8080/api
    apiKey: secret
    models: [llama, org/model, shared, p2/x]
  p2:
    proxy: http://peer2:8080
    models: [shared, x, qwen]
"""


class PeerTests(BuildTestCase):
    """
    Peers, peer model resolution and the peer namespace.
    """

    def test_fields(self) -> None:
        """
        A peer's proxy, key, models (de-duplicated), filters and timeouts
        (with the peer defaults) are decoded.
        """
        config = self.loads(
            """
            peers:
              remote:
                proxy: https://example.com/api
                models: [a, b, a]
                filters:
                  stripParams: "top_p, model, temperature"
                  setParams: {max_tokens: 4096, nested: {a: [1, 2]}}
            """
        )
        peer = config.peers["remote"]
        self.assertEqual(peer.models, ("a", "b"))
        self.assertEqual(peer.apiKey, "")
        self.assertEqual(
            (peer.proxyURL.scheme, peer.proxyURL.hostname, peer.proxyURL.path),
            ("https", "example.com", "/api"),
        )
        self.assertEqual(peer.filters.sanitizedStripParams, ("temperature", "top_p"))
        self.assertEqual(peer.filters.setParams, {"max_tokens": 4096, "nested": {"a": (1, 2)}})
        self.assertEqual(peer.timeouts, Timeouts(30, 30, 60, 10, 1, 90))
        self.assertEqual(self.loads(PEERS).peers["p1"].apiKey, "secret")

    def test_peerTimeouts(self) -> None:
        """
        Peer timeouts parse; unset ones keep the peer defaults.
        """
        peer = self.loads(
            "peers: {p: {proxy: 'http://h', models: [a], timeouts: {connect: 5, responseHeader: 0}}}"
        ).peers["p"]
        self.assertEqual(peer.timeouts, Timeouts(connect=5, responseHeader=0))

    def test_errors(self) -> None:
        """
        proxy is required and must parse; models must be non-empty.
        """
        self.assertEqual(
            self.fails("peers: {p: {models: [a]}}", "proxy").message, "proxy is required"
        )
        self.fails("peers: {p: {proxy: '', models: [a]}}", "proxy is required")
        self.assertEqual(
            self.fails(
                "peers: {p: {proxy: '://invalid', models: [a]}}", "invalid peer proxy URL"
            ).message,
            'invalid peer proxy URL (://invalid): parse "://invalid": missing protocol scheme',
        )
        problem = self.fails("peers: {p: {proxy: 'http://h'}}", "peer models")
        self.assertEqual(problem.message, "peer models can not be empty")
        self.assertEqual(problem.path, ("peers", "p", "models"))
        self.fails("peers: {p: {proxy: 'http://h', models: []}}", "peer models can not be empty")

    def test_resolvePeerModel(self) -> None:
        """
        Fully-qualified names resolve for every peer (model IDs may hold
        slashes); a bare name resolves only when one peer offers it; an FQN
        beats a bare name spelled the same.
        """
        config = self.loads(PEERS)
        self.assertEqual(config.resolvePeerModel("p1/llama"), ("p1", "llama"))
        self.assertEqual(config.resolvePeerModel("p1/org/model"), ("p1", "org/model"))
        self.assertEqual(config.resolvePeerModel("p2/shared"), ("p2", "shared"))
        self.assertEqual(config.resolvePeerModel("llama"), ("p1", "llama"))
        self.assertIsNone(config.resolvePeerModel("shared"))
        self.assertIsNone(config.resolvePeerModel("nope"))
        # p1 lists a model literally named "p2/x"; p2's FQN "p2/x" wins.
        self.assertEqual(config.resolvePeerModel("p2/x"), ("p2", "x"))
        self.assertEqual(config.resolvePeerModel("p1/p2/x"), ("p1", "p2/x"))

    def test_resolveBaseModelPrefersLocal(self) -> None:
        """
        A local model beats a peer model of the same name.
        """
        config = self.loads(PEERS + "models: {shared: {cmd: x, proxy: 'http://h:1'}}")
        self.assertEqual(config.resolveBaseModel("shared"), "shared")
        self.assertEqual(config.resolveBaseModel("llama"), "llama")
        self.assertIsNone(config.resolveBaseModel("ghost"))

    def test_namespaceAmbiguous(self) -> None:
        """
        Two peers producing the same fully-qualified name is an error.
        """
        problem = self.fails(
            "peers: {a: {proxy: 'http://h', models: [b/c]}, a/b: {proxy: 'http://h', models: [c]}}",
            "ambiguous",
        )
        self.assertEqual(
            problem.message,
            'peer model name "a/b/c" is ambiguous between peers.a model "b/c" and peers.a/b model "c"',
        )

    def test_namespaceCollisions(self) -> None:
        """
        A fully-qualified peer name may not also be a local model ID, an
        alias (explicit or from setParamsByID), a selector ID or a pin.
        """
        peer = "peers: {p: {proxy: 'http://h', models: [m]}}\n"
        suffix = "conflicts with fully qualified peer model name"
        self.assertEqual(
            self.fails(peer + "models: {p/m: {cmd: x, proxy: 'http://h:1'}}", suffix).message,
            f'model ID "p/m" {suffix}',
        )
        self.assertEqual(
            self.fails(
                peer + "models: {x: {cmd: x, proxy: 'http://h:1', aliases: [p/m]}}", suffix
            ).message,
            f'model x alias "p/m" {suffix}',
        )
        self.fails(
            peer
            + "models: {x: {cmd: x, proxy: 'http://h:1', filters: {setParamsByID: {p/m: {a: 1}}}}}",
            suffix,
        )
        self.fails(
            peer
            + "models: {x: {cmd: x, proxy: 'http://h:1'}}\nselectors: {p/m: {strategy: pin, targets: [x]}}",
            f'selector ID "p/m" {suffix}',
        )
        self.fails(
            peer + "models: {x: {cmd: x, proxy: 'http://h:1'}}\nprofiles: {prof: {pins: {p/m: x}}}",
            f'profile prof pin "p/m" {suffix}',
        )
