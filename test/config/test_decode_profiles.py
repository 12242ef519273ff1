"""
Tests for L{llamaswap.config.decode_profiles} (both forms) and the pin
checks of L{llamaswap.config.crosscheck}.
"""

from __future__ import annotations

from textwrap import dedent

from .helpers import MODELS, SELECTOR_BASE, BuildTestCase


class ProfileTests(BuildTestCase):
    """
    C{profiles} in the pin form.
    """

    def test_pins(self) -> None:
        """
        Pins may target a model, an alias, a setParamsByID alias, a bare or
        fully-qualified peer model, a selector; C{""} and null disable; a
        pin may shadow a local model name.
        """
        config = self.loads(
            SELECTOR_BASE
            + dedent(
                """
            selectors:
              sel: {strategy: pin, targets: [a]}
            profiles:
              work:
                description: For work
                pins:
                  p1: a
                  p2: alias-a
                  p3: variant
                  p4: remote-model
                  p5: remote/remote-model
                  p6: sel
                  off1: ""
                  off2: ~
                  b: remote-model
            """
            )
        )
        profile = config.profiles["work"]
        self.assertEqual(profile.description, "For work")
        self.assertEqual(profile.pins["off1"], "")
        self.assertEqual(profile.pins["off2"], "")
        self.assertEqual(profile.pins["b"], "remote-model")
        self.assertEqual(len(profile.pins), 9)

    def test_errors(self) -> None:
        """
        Every pin-form profile validation error.
        """
        cases = [
            ("work: {pins: {}}", "profiles.work.pins must contain at least one entry"),
            ("work: {description: x}", "profiles.work.pins must contain at least one entry"),
            ("work: {pins: {x: ghost}}", 'profiles.work.pins.x references unknown model "ghost"'),
            ("work: {pins: {x: a, y: x}}", 'profiles.work.pins.y references unknown model "x"'),
            ("work: {pins: {' ': a}}", "profiles.work.pins: pin names cannot be empty"),
            ("' ': {pins: {x: a}}", "profiles: profile names cannot be empty"),
            ("work: 5", "profile must be a mapping with description and pins"),
        ]
        for profiles, message in cases:
            self.fails(SELECTOR_BASE + "profiles:\n  " + profiles, message)


class LegacyProfileTests(BuildTestCase):
    """
    llama-swap v1 list-form profiles, which llamaswap still loads.
    """

    def test_loaded(self) -> None:
        """
        A list profile loads as models that run together (aliases
        resolved to IDs), with a warning suggesting a group.
        """
        config = self.loads(MODELS + "profiles: {pair: [m1, model2]}")
        self.assertEqual(config.legacyProfiles, {"pair": ("model1", "model2")})
        warning = self.warned("legacy")
        self.assertIn("swap: false", warning.message)
        self.assertEqual(warning.path, ("profiles", "pair"))

    def test_names(self) -> None:
        """
        C{profile/model} and C{profile:model} (member by ID or alias)
        resolve to the model, with the profile known.
        """
        config = self.loads(MODELS + "profiles: {pair: [model1, model2]}")
        for name in ("pair/model1", "pair:model1", "pair/m1"):
            self.assertEqual(config.realModelName(name), "model1", name)
            self.assertEqual(config.resolveLegacyProfile(name), ("pair", "model1"))
            self.assertEqual(config.findModel(name), (config.models["model1"], "model1"))
        self.assertIsNone(config.realModelName("pair/model3"))
        self.assertIsNone(config.realModelName("other/model1"))
        self.assertIsNone(config.resolveLegacyProfile("model1"))

    def test_unknownMember(self) -> None:
        """
        A member that is not a model or alias is an error.
        """
        problem = self.fails(MODELS + "profiles: {pair: [model1, ghost]}", "unknown model")
        self.assertEqual(problem.message, 'profiles.pair[1] references unknown model "ghost"')
        self.assertEqual(problem.path, ("profiles", "pair", 1))

    def test_mixedForms(self) -> None:
        """
        Pin-form and list-form profiles may be mixed; pins may target a
        legacy profile name.
        """
        config = self.loads(
            MODELS + "profiles: {pair: [model1, model2], work: {pins: {fast: pair/model2}}}"
        )
        self.assertEqual(list(config.legacyProfiles), ["pair"])
        self.assertEqual(list(config.profiles), ["work"])
        self.assertEqual(config.profiles["work"].pins["fast"], "pair/model2")

    def test_preloadAndPriority(self) -> None:
        """
        A legacy profile name may be preloaded or prioritised; it stands
        for its model.
        """
        config = self.loads(
            MODELS + "profiles: {pair: [model1, model2]}\n"
            "hooks: {on_startup: {preload: [pair/model2]}}\n"
            "routing: {scheduler: {settings: {fifo: {priority: {pair/model2: 4}}}}}"
        )
        self.assertEqual(config.hooks.preload, ("model2",))
        self.assertEqual(config.routing.priorityOf("model2"), 4)
