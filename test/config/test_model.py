"""
Tests for L{llamaswap.config.model}: the frozen configuration objects and
their name-resolution methods.
"""

from __future__ import annotations

import copy
import json
import pickle

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.model import (
    DEFAULT_GROUP_ID,
    Capabilities,
    Config,
    Filters,
    FrozenDict,
    GroupConfig,
    ModelConfig,
    PeerConfig,
    RoutingConfig,
    UpstreamConfig,
    freeze,
    peerModelFQN,
    sanitizeSetParams,
    sanitizeStripParams,
    thaw,
)


class FrozenDictTests(SynchronousTestCase):
    """
    L{FrozenDict} and L{freeze}.
    """

    def test_immutable(self) -> None:
        """
        Every mutating method raises L{TypeError}.
        """
        d = FrozenDict({"a": 1})
        for call in (
            lambda: d.__setitem__("b", 2),
            lambda: d.__delitem__("a"),
            lambda: d.clear(),
            lambda: d.pop("a"),
            lambda: d.popitem(),
            lambda: d.setdefault("b", 2),
            lambda: d.update(b=2),
        ):
            self.assertRaises(TypeError, call)
        with self.assertRaises(TypeError):
            d |= {"b": 2}
        self.assertEqual(d, {"a": 1})

    def test_jsonHashCopy(self) -> None:
        """
        A frozen value serialises as JSON, hashes, copies and pickles.
        """
        frozen = freeze({"a": [1, {"b": None}], 2: "x"})
        self.assertEqual(json.loads(json.dumps(frozen)), {"a": [1, {"b": None}], "2": "x"})
        self.assertEqual(hash(frozen), hash(freeze({"a": [1, {"b": None}], 2: "x"})))
        self.assertIs(copy.deepcopy(frozen), frozen)
        self.assertEqual(pickle.loads(pickle.dumps(frozen)), frozen)
        self.assertIsInstance(frozen["a"], tuple)
        self.assertIsInstance(frozen["a"][1], FrozenDict)

    def test_thaw(self) -> None:
        """
        L{thaw} gives back mutable plain data.
        """
        plain = thaw(freeze({"a": [1, {"b": 2}]}))
        plain["a"][1]["c"] = 3
        self.assertEqual(plain, {"a": [1, {"b": 2, "c": 3}]})


class FilterTests(SynchronousTestCase):
    """
    Parameter sanitising, as llama-swap's filters tests.
    """

    def test_stripParams(self) -> None:
        """
        Split, trimmed, blanks and C{model} dropped, de-duplicated, sorted.
        """
        cases = {
            "": (),
            "temperature": ("temperature",),
            "top_p, temperature": ("temperature", "top_p"),
            "model": (),
            "model, temperature": ("temperature",),
            "a, a, b": ("a", "b"),
            "  x  ,   y ": ("x", "y"),
            "a,,b, ,": ("a", "b"),
        }
        for raw, expected in cases.items():
            self.assertEqual(sanitizeStripParams(raw), expected, raw)
            self.assertEqual(Filters(stripParams=raw).sanitizedStripParams, expected)

    def test_setParams(self) -> None:
        """
        C{model} dropped, nested values kept, keys sorted.
        """
        self.assertEqual(sanitizeSetParams({}), {})
        self.assertEqual(sanitizeSetParams({"model": "x"}), {})
        result = sanitizeSetParams({"top_p": 1, "model": "x", "stop": ["a"], "extra": {"n": 1}})
        self.assertEqual(list(result), ["extra", "stop", "top_p"])
        self.assertEqual(result["stop"], ("a",))

    def test_paramsForID(self) -> None:
        """
        setParamsByID is looked up by the requested name.
        """
        filters = Filters(setParamsByID={"m:high": {"effort": "high"}})
        self.assertEqual(filters.paramsForID("m:high"), {"effort": "high"})
        self.assertIsNone(filters.paramsForID("m"))


class ModelConfigTests(SynchronousTestCase):
    """
    Derived properties of L{ModelConfig} and L{Capabilities}.
    """

    def test_effectiveConcurrencyLimit(self) -> None:
        """
        Zero or negative means the scheduler default of 10.
        """
        for raw, effective in ((0, 10), (-1, 10), (1, 1), (25, 25)):
            self.assertEqual(
                ModelConfig(id="m", concurrencyLimit=raw).effectiveConcurrencyLimit, effective
            )

    def test_healthCheckDisabled(self) -> None:
        """
        C{none} (trimmed) disables health checks.
        """
        self.assertTrue(ModelConfig(id="m", checkEndpoint=" none ").healthCheckDisabled)
        self.assertFalse(ModelConfig(id="m").healthCheckDisabled)

    def test_capabilitiesEmpty(self) -> None:
        """
        Only the all-zero block is empty.
        """
        self.assertTrue(Capabilities().isEmpty())
        self.assertFalse(Capabilities(reranker=True).isEmpty())
        self.assertFalse(Capabilities(inputs=("text",)).isEmpty())


def sampleConfig() -> Config:
    models = {
        "a": ModelConfig(id="a", aliases=("alias-a",)),
        "b": ModelConfig(id="b"),
        "c": ModelConfig(id="c"),
    }
    return Config(
        models=FrozenDict(models),
        aliases=FrozenDict({"alias-a": "a"}),
        legacyProfiles=FrozenDict({"duo": ("a", "b"), "x/y": ("c",)}),
        peers=FrozenDict(
            {
                "p1": PeerConfig(id="p1", proxy="http://p1", models=("llama", "org/m", "same")),
                "p2": PeerConfig(id="p2", proxy="http://p2", models=("same", "a")),
            }
        ),
        routing=RoutingConfig(
            groups=FrozenDict(
                {
                    "g": GroupConfig("g", swap=False, members=("a", "b")),
                    DEFAULT_GROUP_ID: GroupConfig(DEFAULT_GROUP_ID, members=("c",)),
                }
            )
        ),
    )


class ConfigResolutionTests(SynchronousTestCase):
    """
    L{Config}'s name resolution methods.
    """

    def test_realModelName(self) -> None:
        """
        Model ID first, then alias, then legacy profile names.
        """
        config = sampleConfig()
        self.assertEqual(config.realModelName("a"), "a")
        self.assertEqual(config.realModelName("alias-a"), "a")
        self.assertEqual(config.realModelName("duo/b"), "b")
        self.assertEqual(config.realModelName("duo:alias-a"), "a")
        self.assertEqual(config.realModelName("x/y/c"), "c")
        self.assertIsNone(config.realModelName("duo/c"))
        self.assertIsNone(config.realModelName("nope"))

    def test_findModel(self) -> None:
        """
        The model and its ID, or L{None}.
        """
        config = sampleConfig()
        self.assertEqual(config.findModel("alias-a"), (config.models["a"], "a"))
        self.assertIsNone(config.findModel("zzz"))

    def test_resolvePeerModel(self) -> None:
        """
        FQN first; a bare name only when exactly one peer lists it.
        """
        config = sampleConfig()
        self.assertEqual(config.resolvePeerModel("p1/org/m"), ("p1", "org/m"))
        self.assertEqual(config.resolvePeerModel("org/m"), ("p1", "org/m"))
        self.assertEqual(config.resolvePeerModel("p2/same"), ("p2", "same"))
        self.assertIsNone(config.resolvePeerModel("same"))
        self.assertIsNone(config.resolvePeerModel("p3/x"))
        self.assertEqual(peerModelFQN("a/b", "c"), "a/b/c")

    def test_resolveBaseModel(self) -> None:
        """
        Local names win over peer models.
        """
        config = sampleConfig()
        self.assertEqual(config.resolveBaseModel("a"), "a")
        self.assertEqual(config.resolveBaseModel("llama"), "llama")
        self.assertEqual(config.resolveBaseModel("p2/a"), "p2/a")
        self.assertIsNone(config.resolveBaseModel("same"))

    def test_groupOf(self) -> None:
        """
        The group holding a model, or L{None}.
        """
        config = sampleConfig()
        self.assertEqual(config.groupOf("b").id, "g")  # type: ignore[union-attr]
        self.assertEqual(config.groupOf("c").id, DEFAULT_GROUP_ID)  # type: ignore[union-attr]
        self.assertIsNone(config.groupOf("zzz"))

    def test_priorityOf(self) -> None:
        """
        Unlisted models have priority 0.
        """
        routing = RoutingConfig(priority=FrozenDict({"a": 3}))
        self.assertEqual((routing.priorityOf("a"), routing.priorityOf("b")), (3, 0))

    def test_upstreamDefault(self) -> None:
        """
        The default ignore pattern matches static assets anywhere.
        """
        upstream = UpstreamConfig()
        self.assertTrue(upstream.isIgnored("/assets/app.css"))
        self.assertFalse(upstream.isIgnored("/v1/completions"))
