"""
Tests for L{llamaswap.upstream.registry}.
"""

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.upstream.registry import Upstreams


class UpstreamsTests(SynchronousTestCase):
    def test_mapping(self) -> None:
        """
        L{Upstreams} reads like the mapping it was built from.
        """
        upstreams = Upstreams({"a": 1, "b": 2})
        self.assertEqual(dict(upstreams), {"a": 1, "b": 2})
        self.assertEqual(upstreams.get("c"), None)
        self.assertIn("a", upstreams)
        self.assertEqual(len(upstreams), 2)

    def test_addRemoveTellObservers(self) -> None:
        """
        L{Upstreams.add} and L{Upstreams.remove} change the mapping in place
        and tell observers C{(modelID, old, new)}; a removed observer hears
        nothing more, a failing one does not stop the others.
        """
        upstreams: Upstreams[int] = Upstreams({"a": 1})
        seen: list[tuple[str, object, object]] = []

        def broken(*args: object) -> None:
            raise RuntimeError("broken observer")

        upstreams.addObserver(broken)
        stop = upstreams.addObserver(lambda *args: seen.append(args))
        upstreams.add("b", 2)
        upstreams.add("a", 3)
        self.assertEqual(upstreams.remove("a"), 3)
        self.assertIsNone(upstreams.remove("zzz"))
        stop()
        upstreams.add("c", 4)
        self.assertEqual(seen, [("b", None, 2), ("a", 1, 3), ("a", 3, None)])
        self.assertEqual(dict(upstreams), {"b": 2, "c": 4})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 4)
