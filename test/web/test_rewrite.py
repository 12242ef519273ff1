"""
Tests for L{llamaswap.web.rewrite}.
"""

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.model import Filters
from llamaswap.web.rewrite import applyFilters


class ApplyFiltersTests(SynchronousTestCase):
    """
    L{applyFilters} rewrites bodies in llama-swap's order.
    """

    def test_order(self) -> None:
        """
        useModelName, then stripParams, then setParams, then setParamsByID
        for the requested name, which overrides setParams.
        """
        filters = Filters(
            stripParams="temperature, top_p, model",
            setParams={"max_tokens": 64, "top_k": 5},
            setParamsByID={"m:hot": {"top_k": 50, "temperature": 1.5}},
        )
        body = {"model": "m:hot", "temperature": 0.1, "top_p": 0.9, "stream": True}
        self.assertTrue(applyFilters(body, filters, "m:hot", "served-name"))
        self.assertEqual(
            body,
            {"model": "served-name", "stream": True, "max_tokens": 64, "top_k": 50,
             "temperature": 1.5},
        )

    def test_modelProtected(self) -> None:
        """
        Filters never strip or set C{model}.
        """
        body = {"model": "m"}
        applyFilters(body, Filters(stripParams="model", setParams={"model": "x"}), "m")
        self.assertEqual(body, {"model": "m"})

    def test_unchanged(self) -> None:
        """
        Without filters nothing changes and the caller may relay the
        original bytes.
        """
        body = {"model": "m", "temperature": 1}
        self.assertFalse(applyFilters(body, Filters(), "m"))
        self.assertFalse(applyFilters(body, Filters(stripParams="top_p"), "m"))

    def test_dottedPaths(self) -> None:
        """
        Dotted keys address nested objects, creating them when needed.
        """
        body = {"model": "m", "a": {"b": 1, "c": 2}}
        applyFilters(body, Filters(stripParams="a.b", setParams={"x.y": 3}), "m")
        self.assertEqual(body, {"model": "m", "a": {"c": 2}, "x": {"y": 3}})
