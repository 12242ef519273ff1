"""
Tests for L{llamaswap.holder}.
"""

from twisted.trial.unittest import SynchronousTestCase

from llamaswap.holder import Holder


class HolderTests(SynchronousTestCase):
    def test_setNotifiesOldAndNew(self) -> None:
        """
        L{Holder.set} makes the value current before observers hear of it.
        """
        holder: Holder[str | None] = Holder(None)
        seen: list[tuple[object, object, object]] = []
        holder.addObserver(lambda old, new: seen.append((old, new, holder.value)))
        holder.set("fast")
        self.assertEqual(seen, [(None, "fast", "fast")])
        self.assertEqual(holder.value, "fast")

    def test_removeObserver(self) -> None:
        """
        The function L{Holder.addObserver} returns stops the notifications.
        """
        holder = Holder(1)
        seen: list[int] = []
        remove = holder.addObserver(lambda old, new: seen.append(new))
        holder.set(2)
        remove()
        remove()
        holder.set(3)
        self.assertEqual(seen, [2])

    def test_failingObserverLogged(self) -> None:
        """
        An observer that raises is logged and the others still run.
        """
        holder = Holder(1)
        seen: list[int] = []

        def broken(old: int, new: int) -> None:
            raise RuntimeError("boom")

        holder.addObserver(broken)
        holder.addObserver(lambda old, new: seen.append(new))
        holder.set(2)
        self.assertEqual(seen, [2])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
