"""
Tests for L{llamaswap.config.decode_selectors} and the selector checks
of L{llamaswap.config.crosscheck}.
"""

from __future__ import annotations

from textwrap import dedent

from .helpers import SELECTOR_BASE, BuildTestCase


class SelectorTests(BuildTestCase):
    """
    C{selectors}.
    """

    def test_fields(self) -> None:
        """
        A selector's fields load; spillover defaults to 1.
        """
        config = self.loads(
            SELECTOR_BASE
            + dedent(
                """
            selectors:
              public:
                strategy: warm
                targets: [a, b]
                name: Public
                description: D
                unlisted: true
                metadata: {tier: 1}
            """
            )
        )
        selector = config.selectors["public"]
        self.assertEqual(selector.strategy, "warm")
        self.assertEqual(selector.targets, ("a", "b"))
        self.assertEqual(selector.spillover, 1)
        self.assertEqual(
            (selector.name, selector.description, selector.unlisted), ("Public", "D", True)
        )
        self.assertEqual(selector.metadata, {"tier": 1})

    def test_errors(self) -> None:
        """
        Every selector validation error of llama-swap.
        """
        cases = [
            ("'': {strategy: pin, targets: [a]}", "selectors: selector names cannot be empty"),
            ("a: {strategy: pin, targets: [b]}", 'selectors.a: name conflicts with model ID "a"'),
            (
                "alias-a: {strategy: pin, targets: [b]}",
                'selectors.alias-a: name conflicts with model alias "alias-a"',
            ),
            (
                "variant: {strategy: pin, targets: [b]}",
                'selectors.variant: name conflicts with model alias "variant"',
            ),
            ("s: {targets: [a]}", "selectors.s.strategy is required"),
            (
                "s: {strategy: random, targets: [a]}",
                'selectors.s.strategy: unknown strategy "random" (valid: warm, pin, spillover)',
            ),
            ("s: {strategy: pin}", "selectors.s.targets must contain at least one entry"),
            (
                "s: {strategy: pin, targets: [a, ghost]}",
                'selectors.s.targets[1] references unknown model "ghost"',
            ),
            (
                "s: {strategy: pin, targets: [t]}\n  t: {strategy: pin, targets: [a]}",
                'selectors.s.targets[0] references selector "t"; selector chaining is not supported',
            ),
            (
                "s: {strategy: warm, targets: [remote-model]}",
                'selectors.s.targets[0] must resolve to a local model for strategy "warm"',
            ),
            (
                "s: {strategy: spillover, targets: [a], settings: {spillover: 0}}",
                "selectors.s.settings.spillover must be >= 1",
            ),
            (
                "s: {strategy: spillover, targets: [a, alias-a]}",
                'selectors.s.targets contains duplicate resolved model "a"',
            ),
            (
                "s: {strategy: spillover, targets: [remote-model, remote/remote-model]}",
                'selectors.s.targets contains duplicate resolved model "remote/remote-model"',
            ),
            (
                "s: {strategy: spillover, targets: [a, b]}",
                "selectors.s spillover targets must share a group with swap: false",
            ),
        ]
        for selectors, message in cases:
            self.fails(SELECTOR_BASE + "selectors:\n  " + selectors, message)

    def test_peerTargets(self) -> None:
        """
        pin and spillover selectors may target peer models (bare or
        fully-qualified); a selector may be named like a bare peer model.
        """
        config = self.loads(
            SELECTOR_BASE
            + dedent(
                """
            selectors:
              remote-model: {strategy: pin, targets: [remote/remote-model]}
              mixed: {strategy: spillover, targets: [a, other-remote]}
              remoteOnly: {strategy: spillover, targets: [remote/remote-model, other-remote]}
            """
            )
        )
        self.assertEqual(config.selectors["mixed"].targets, ("a", "other-remote"))

    def test_spilloverGroups(self) -> None:
        """
        Spillover targets must share one group with swap: false.
        """
        self.loads(
            SELECTOR_BASE
            + "groups: {pool: {swap: false, members: [a, b]}}\nselectors: {s: {strategy: spillover, targets: [a, b]}}"
        )
        self.fails(
            SELECTOR_BASE
            + "groups: {pool: {swap: true, members: [a, b]}}\nselectors: {s: {strategy: spillover, targets: [a, b]}}",
            "selectors.s spillover targets must share a group with swap: false",
        )
        self.fails(
            SELECTOR_BASE
            + "groups: {first: {swap: false, members: [a]}, second: {swap: false, members: [b]}}\n"
            "selectors: {s: {strategy: spillover, targets: [a, b]}}",
            "selectors.s spillover targets must share one routing group",
        )

    def test_spilloverMatrix(self) -> None:
        """
        With the matrix router, spillover targets must appear together in
        some expanded set.
        """
        self.loads(
            SELECTOR_BASE
            + "matrix: {sets: {both: 'a & b'}}\nselectors: {s: {strategy: spillover, targets: [a, b]}}"
        )
        self.fails(
            SELECTOR_BASE
            + "matrix: {sets: {either: 'a | b'}}\nselectors: {s: {strategy: spillover, targets: [a, b]}}",
            "selectors.s.targets must all appear together in one expanded matrix set",
        )
