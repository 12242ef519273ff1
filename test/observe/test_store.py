"""
Tests for L{llamaswap.observe.store}: the SQLite activity store.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llamaswap.observe.activity import ActivityRecord
from llamaswap.observe.store import (
    FLUSH_DELAY,
    FLUSH_ROWS,
    INLINE_ROWS,
    LOAD_HISTORY,
    MEMORY,
    ActivityQuery,
    ActivityStore,
    InThreadPool,
    StoreClosed,
    activityStats,
    connect,
    defaultPool,
    insertLoad,
    insertRecord,
    insertRecords,
    queryActivity,
    recentLoads,
)
from llamaswap.observe.usage import TokenMetrics


def row(model: str = "m1", ts: float = 1000, **kw: Any) -> ActivityRecord:
    tokens = kw.pop("tokens", TokenMetrics(inputTokens=1, outputTokens=2))
    return ActivityRecord(
        timestamp=ts, model=model, reqPath="/v1/chat/completions", status=200, tokens=tokens,
        **kw,
    )


class StoreLogicTests(SynchronousTestCase):
    """
    The store's queries, on a plain in-memory connection.
    """

    def setUp(self) -> None:
        self.db = connect()
        self.addCleanup(self.db.close)
        self.cursor = self.db.cursor()

    def insert(self, *records: ActivityRecord, keep: int | None = None) -> list[int]:
        return [insertRecord(self.cursor, r, keep) for r in records]

    def ids(self, **kw: Any) -> list[int]:
        rows, total = queryActivity(self.cursor, ActivityQuery(**kw))
        return [r.id for r in rows]  # type: ignore[misc]

    def test_pagingNewestFirst(self) -> None:
        """
        Rows come newest first; the total counts every matching row.
        """
        self.insert(row(), row(), row())
        rows, total = queryActivity(self.cursor, ActivityQuery(limit=2))
        self.assertEqual(([r.id for r in rows], total), ([3, 2], 3))
        rows, total = queryActivity(self.cursor, ActivityQuery(limit=2, page=2))
        self.assertEqual(([r.id for r in rows], total), ([1], 3))

    def test_batchIDs(self) -> None:
        """
        A batch's rows get consecutive IDs, reported in order, after the
        rows before them; with C{keep}, older rows are pruned and the IDs
        go on from the newest, never reused.
        """
        self.assertEqual(insertRecords(self.cursor, []), [])
        self.assertEqual(insertRecords(self.cursor, [row("a"), row("b")]), [1, 2])
        self.insert(row("c"))
        self.assertEqual(insertRecords(self.cursor, [row(m) for m in "def"], keep=2), [4, 5, 6])
        self.assertEqual(self.ids(), [6, 5])
        self.assertEqual(insertRecords(self.cursor, [row("g")], keep=2), [7])
        rows, _ = queryActivity(self.cursor, ActivityQuery())
        self.assertEqual([(r.id, r.model) for r in rows], [(7, "g"), (6, "f")])

    def test_roundTrip(self) -> None:
        """
        Every field comes back, C{-1} sentinels and metadata included.
        """
        record = row(
            tokens=TokenMetrics(
                inputTokens=5, outputTokens=6, cacheTokens=-1, promptPerSecond=-1.0,
                tokensPerSecond=12.5, draftTokens=-1, draftAcceptedTokens=-1,
            ),
            respContentType="text/event-stream",
            durationMs=1450,
            errorMsg="",
            metadata={"fifo_priority": "0", "client": "x"},
            ttfbMs=120,
            queueMs=30,
        )
        self.insert(record)
        [back], _ = queryActivity(self.cursor, ActivityQuery())
        self.assertEqual(back.id, 1)
        back.id = None
        self.assertEqual(back.tokens.cacheTokens, -1)
        self.assertEqual(back.tokens.tokensPerSecond, 12.5)
        self.assertEqual(back.metadata, {"fifo_priority": "0", "client": "x"})
        self.assertEqual((back.ttfbMs, back.queueMs, back.durationMs), (120, 30, 1450))
        self.assertEqual(back.respContentType, "text/event-stream")

    def test_filters(self) -> None:
        """
        llama-swap's filter cases: ids 1-4 at 1000-1003 for m1, m2, m1, m3.
        """
        self.insert(row("m1", 1000), row("m2", 1001), row("m1", 1002), row("m3", 1003))
        t0, t1, t2, t3 = 1000, 1001, 1002, 1003
        cases = [
            (dict(models=("m1", "m3")), [4, 3, 1]),
            (dict(models=("m2",)), [2]),
            (dict(minID=2, maxID=3), [3, 2]),
            (dict(minID=4), [4]),
            (dict(maxID=2), [2, 1]),
            (dict(models=("m1",), minID=2), [3]),
            (dict(start=t2), [4, 3]),
            (dict(end=t1), [2, 1]),
            (dict(start=t1, end=t2), [3, 2]),
            (dict(start=t0, end=t3, models=("m1",)), [3, 1]),
            (dict(start=t0, minID=3), [4, 3]),
            (dict(), [4, 3, 2, 1]),
            (dict(models=("", " ")), [4, 3, 2, 1]),
            (dict(models=("nope",)), []),
        ]
        for kw, expected in cases:
            rows, total = queryActivity(self.cursor, ActivityQuery(**kw))  # type: ignore[arg-type]
            self.assertEqual([r.id for r in rows], expected, kw)
            self.assertEqual(total, len(expected), kw)

    def test_combinedPaging(self) -> None:
        """
        Filters and paging together: the total is the filtered count.
        """
        self.insert(*(row("m1" if i % 2 else "m2", 1000 + i) for i in range(6)))
        rows, total = queryActivity(
            self.cursor, ActivityQuery(models=("m1",), minID=3, limit=1, page=1)
        )
        self.assertEqual(([r.id for r in rows], total), ([6], 2))

    def test_sorting(self) -> None:
        """
        Sort by a column in either direction, ties broken by ID the same
        way; an unknown column sorts by ID.
        """
        for output in (5, 1, 5, 3):
            self.insert(row(tokens=TokenMetrics(outputTokens=output)))
        self.assertEqual(self.ids(sort="generated", descending=False), [2, 4, 1, 3])
        self.assertEqual(self.ids(sort="generated"), [3, 1, 4, 2])
        self.assertEqual(self.ids(sort="nonsense", descending=False), [1, 2, 3, 4])

    def test_stats(self) -> None:
        """
        Totals, cache counting only positive values, and the positive
        speeds.
        """
        self.insert(
            row("m1", tokens=TokenMetrics(inputTokens=1, outputTokens=2, cacheTokens=1,
                                          promptPerSecond=100, tokensPerSecond=-1)),
            row("m1", tokens=TokenMetrics(inputTokens=3, outputTokens=4, cacheTokens=-1,
                                          promptPerSecond=50, tokensPerSecond=20)),
            row("m2", tokens=TokenMetrics(inputTokens=100)),
        )
        stats = activityStats(self.cursor, "m1")
        self.assertEqual(
            stats,
            {"total_requests": 2, "total_input_tokens": 4, "total_output_tokens": 6,
             "total_cache_tokens": 1, "prompt_speeds": [100.0, 50.0], "gen_speeds": [20.0]},
        )
        self.assertEqual(activityStats(self.cursor)["total_requests"], 3)
        empty = connect()
        self.addCleanup(empty.close)
        self.assertEqual(activityStats(empty.cursor())["total_input_tokens"], 0)

    def test_prune(self) -> None:
        """
        With C{keep}, only the newest rows stay.
        """
        self.insert(*(row() for _ in range(5)), keep=2)
        self.assertEqual(self.ids(), [5, 4])

    def test_loads(self) -> None:
        """
        Load times: only the last L{LOAD_HISTORY} per model are kept, and
        only successful ones are reported.
        """
        for i in range(LOAD_HISTORY + 5):
            insertLoad(self.cursor, 1000 + i, "a", 100 + i, True)
        insertLoad(self.cursor, 2000, "b", 7, False)
        insertLoad(self.cursor, 2001, "b", 9, True)
        loads = recentLoads(self.cursor)
        self.assertEqual(loads["b"], [9])
        self.assertEqual(loads["a"], [105 + i for i in range(LOAD_HISTORY)])

    def test_fileAndMigration(self) -> None:
        """
        A file database uses WAL and keeps rows across connections; a
        llama-swap database without our columns gets them, its rows
        keeping their data.
        """
        path = self.mktemp()
        legacy = sqlite3.connect(path)
        legacy.executescript(
            "CREATE TABLE activity (id INTEGER PRIMARY KEY AUTOINCREMENT, ts_created INTEGER "
            "NOT NULL, model_id TEXT NOT NULL, req_path TEXT NOT NULL DEFAULT '', "
            "resp_content_type TEXT NOT NULL DEFAULT '', resp_status_code INTEGER NOT NULL "
            "DEFAULT 0, cache_tokens INTEGER NOT NULL DEFAULT 0, draft_tokens INTEGER NOT NULL "
            "DEFAULT 0, draft_acc_tokens INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT "
            "NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0, prompt_per_second REAL "
            "NOT NULL DEFAULT 0, tokens_per_second REAL NOT NULL DEFAULT 0, duration_ms INTEGER "
            "NOT NULL DEFAULT 0, error_msg TEXT NOT NULL DEFAULT '', metadata_json TEXT NOT NULL "
            "DEFAULT '');"
            "INSERT INTO activity (ts_created, model_id, input_tokens) VALUES (5, 'old', 42);"
        )
        legacy.commit()
        legacy.close()
        first = connect(path)
        self.assertEqual(first.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        insertRecord(first.cursor(), row("new"))
        first.commit()
        first.close()
        second = connect(path)
        self.addCleanup(second.close)
        rows, total = queryActivity(second.cursor(), ActivityQuery())
        self.assertEqual([(r.model, r.tokens.inputTokens, r.ttfbMs) for r in rows],
                         [("new", 1, -1), ("old", 42, -1)])


class ActivityStoreTests(TestCase):
    """
    L{ActivityStore} runs the logic where L{defaultPool} says: inline for a
    small in-memory store, on its database thread for a file.
    """

    async def test_memory(self) -> None:
        """
        Rows are inserted, pruned to C{keep}, queried and summed; a closed
        store refuses work.
        """
        store = ActivityStore(None, keep=2)
        self.addCleanup(store.close)
        inserted = [store.insert(row(ts=1000 + i)) for i in range(3)]
        # The query writes the queued rows first.
        rows, total = await store.query(ActivityQuery())
        self.assertEqual(await gatherResults(inserted), [1, 2, 3])
        self.assertEqual(([r.id for r in rows], total), ([3, 2], 2))
        stats = await store.stats()
        self.assertEqual(stats["total_output_tokens"], 4)
        await store.recordLoad(1000, "a", 1500, True)
        self.assertEqual(await store.recentLoads(), {"a": [1500]})
        store.close()
        with self.assertRaises(StoreClosed):
            await store.insert(row())

    async def test_fileSurvivesReopen(self) -> None:
        """
        A file store keeps everything (no pruning) across close and reopen.
        """
        path = self.mktemp()
        store = ActivityStore(path, keep=1)
        await store.insert(row(ts=1000))
        for i in range(1, 3):
            store.insert(row(ts=1000 + i))
        store.close()  # writes the queued rows
        again = ActivityStore(path, keep=1)
        self.addCleanup(again.close)
        rows, total = await again.query(ActivityQuery())
        self.assertEqual(([r.id for r in rows], total), ([3, 2, 1], 3))


class DefaultPoolTests(SynchronousTestCase):
    """
    L{defaultPool} runs a small in-memory store on the reactor thread and
    anything else on a database thread.
    """

    def threadPool(self, path: str, keep: int | None) -> adbapi.ConnectionPool:
        reactor = MemoryReactorClock()
        pool = defaultPool(path, reactor, keep)
        # Never started: the fake reactor does not run its startup calls.
        self.assertEqual(len(reactor.whenRunningHooks), 1)
        assert isinstance(pool, adbapi.ConnectionPool)
        return pool

    def test_smallMemoryInline(self) -> None:
        """
        Up to L{INLINE_ROWS}, an in-memory store's jobs run at once.
        """
        for keep in (1, 1000, INLINE_ROWS):
            pool = defaultPool(MEMORY, Clock(), keep)
            self.addCleanup(pool.close)
            self.assertIsInstance(pool, InThreadPool)

    def test_largeMemoryThreaded(self) -> None:
        """
        A larger in-memory store gets a database thread.
        """
        self.assertEqual(self.threadPool(MEMORY, INLINE_ROWS + 1).connargs, (MEMORY,))

    def test_fileThreaded(self) -> None:
        """
        A file store gets a database thread whatever its size (its commits
        wait for the disk).
        """
        path = self.mktemp()
        self.assertEqual(self.threadPool(path, None).connargs, (path,))

    def test_storeDefault(self) -> None:
        """
        L{ActivityStore} opens L{defaultPool} when not given a pool: rows of
        a default in-memory store are written as soon as they are flushed.
        """
        store = ActivityStore(None, keep=1000, reactor=Clock())
        self.addCleanup(store.close)
        inserted = store.insert(row())
        store.flush()
        self.assertEqual(self.successResultOf(inserted), 1)


class InThreadPoolTests(SynchronousTestCase):
    """
    L{InThreadPool} runs a job at once, committing it, or rolling it back
    when it raises.
    """

    def test_commitAndRollback(self) -> None:
        path = self.mktemp()
        pool = InThreadPool(path)
        self.addCleanup(pool.close)

        def broken(cursor: Any) -> None:
            insertRecord(cursor, row(ts=2))
            raise sqlite3.IntegrityError("no")

        self.assertEqual(self.successResultOf(pool.runInteraction(insertRecord, row(ts=1))), 1)
        self.failureResultOf(pool.runInteraction(broken), sqlite3.IntegrityError)
        db = connect(path)
        self.addCleanup(db.close)
        rows, total = queryActivity(db.cursor(), ActivityQuery())
        self.assertEqual(([r.timestamp for r in rows], total), ([1], 1))


class BatchingTests(SynchronousTestCase):
    """
    L{ActivityStore} writes queued rows in one database job, after
    L{FLUSH_DELAY} on its clock, at L{FLUSH_ROWS} rows, before reads and
    when closed.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.jobs: list[str] = []
        self.store = ActivityStore(None, keep=1000, reactor=self.clock, openPool=self.openPool)
        self.db = connect()
        self.addCleanup(self.db.close)

    def openPool(self, path: str, reactor: Any) -> InThreadPool:
        """
        The database thread's jobs, run at once and recorded by name.
        """
        jobs = self.jobs

        class Recording(InThreadPool):
            def runInteraction(self, interaction: Any, *args: Any) -> Deferred[Any]:
                jobs.append(interaction.__name__)
                return super().runInteraction(interaction, *args)

        return Recording(path, reactor)

    def test_afterDelay(self) -> None:
        """
        Rows inserted within the delay are written together when it ends;
        their Deferreds fire with their IDs then.
        """
        first = self.store.insert(row(ts=1))
        self.clock.advance(FLUSH_DELAY / 2)
        second = self.store.insert(row(ts=2))
        self.assertNoResult(first)
        self.assertEqual(self.jobs, [])
        self.clock.advance(FLUSH_DELAY / 2)
        self.assertEqual(self.jobs, ["insertRecords"])
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (1, 2))
        third = self.store.insert(row(ts=3))
        self.clock.advance(FLUSH_DELAY)
        self.assertEqual(self.successResultOf(third), 3)
        self.assertEqual(self.jobs, ["insertRecords", "insertRecords"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_fullBatch(self) -> None:
        """
        L{FLUSH_ROWS} queued rows are written at once.
        """
        inserted = [self.store.insert(row(ts=i)) for i in range(FLUSH_ROWS)]
        self.assertEqual(self.jobs, ["insertRecords"])
        self.assertEqual([self.successResultOf(d) for d in inserted],
                         list(range(1, FLUSH_ROWS + 1)))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_readsSeeQueuedRows(self) -> None:
        """
        A query or stats request writes the queued rows first.
        """
        inserted = self.store.insert(row(ts=1))
        rows, total = self.successResultOf(self.store.query(ActivityQuery()))
        self.assertEqual(([r.id for r in rows], total), ([1], 1))
        self.assertEqual(self.successResultOf(inserted), 1)
        self.store.insert(row(ts=2))
        self.assertEqual(self.successResultOf(self.store.stats())["total_requests"], 2)
        self.assertEqual(self.jobs, ["insertRecords", "queryActivity", "insertRecords",
                                     "activityStats"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closeWritesQueued(self) -> None:
        """
        Closing writes the queued rows; later inserts fail.
        """
        inserted = self.store.insert(row(ts=1))
        self.store.close()
        self.assertEqual(self.successResultOf(inserted), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(self.store.insert(row()), StoreClosed)

    def test_failedBatch(self) -> None:
        """
        A batch that cannot be written fails every row's Deferred.
        """
        self.patch(
            InThreadPool, "runInteraction", lambda *a: fail(sqlite3.OperationalError("disk I/O"))
        )
        inserted = [self.store.insert(row(ts=i)) for i in range(2)]
        self.clock.advance(FLUSH_DELAY)
        for d in inserted:
            self.failureResultOf(d, sqlite3.OperationalError)

    def test_insertRecordsPrunes(self) -> None:
        """
        L{insertRecords} inserts in order and prunes to C{keep} once.
        """
        cursor = self.db.cursor()
        self.assertEqual(insertRecords(cursor, [row(ts=i) for i in range(5)], 2), [1, 2, 3, 4, 5])
        rows, total = queryActivity(cursor, ActivityQuery())
        self.assertEqual(([r.id for r in rows], total), ([5, 4], 2))
        self.assertEqual(insertRecords(cursor, [], 2), [])
