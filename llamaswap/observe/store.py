# -*- test-case-name: test.observe.test_store -*-
"""
The activity store: SQLite, in memory by default or in the C{store.path}
file, written off the reactor thread.

The schema is llama-swap's C{activity} table (so its database file can be
opened) plus two columns of ours (C{ttfb_ms}, C{queue_ms}) and a
C{model_loads} table of past load durations, added in place when missing.
The in-memory store keeps the newest C{metricsMaxInMemory} rows; a file
store keeps everything and uses WAL.

The functions taking a cursor are the store's logic, testable with a plain
C{sqlite3} connection; L{ActivityStore} runs them on one database thread
(L{twisted.enterprise.adbapi} with a single connection).  Rows are written
in batches: handing a job to that thread costs the reactor thread more
than the insert itself, so new rows wait (at most L{FLUSH_DELAY} seconds,
or until L{FLUSH_ROWS} are queued) and go in one job.  Every read, and
closing, writes the queued rows first, so reads see every row inserted
before them.

Where the database runs is L{ActivityStore}'s C{openPool}: L{defaultPool}
by default, which keeps a file store on adbapi's thread (its commits wait
for the disk) and runs an in-memory store of up to L{INLINE_ROWS} rows on
the reactor thread (L{InThreadPool}).  A batch of 100 rows takes about
0.5 ms there; on a thread it cost more, because the thread and the reactor
hand the GIL to each other at every system call the reactor makes (about
three thread switches per request under load; issue #16's measurements
in docs/performance.rst).  Larger in-memory stores keep the thread: their
totals take milliseconds to sum.
"""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from typing import Any, Callable, Iterable, Protocol, Sequence

from attrs import frozen
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from .activity import ActivityRecord
from .usage import TokenMetrics

MEMORY = ":memory:"

SCHEMA = """
CREATE TABLE IF NOT EXISTS activity (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts_created INTEGER NOT NULL,
  model_id TEXT NOT NULL,
  req_path TEXT NOT NULL DEFAULT '',
  resp_content_type TEXT NOT NULL DEFAULT '',
  resp_status_code INTEGER NOT NULL DEFAULT 0,
  cache_tokens INTEGER NOT NULL DEFAULT 0,
  draft_tokens INTEGER NOT NULL DEFAULT 0,
  draft_acc_tokens INTEGER NOT NULL DEFAULT 0,
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  prompt_per_second REAL NOT NULL DEFAULT 0,
  tokens_per_second REAL NOT NULL DEFAULT 0,
  duration_ms INTEGER NOT NULL DEFAULT 0,
  error_msg TEXT NOT NULL DEFAULT '',
  metadata_json TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS idx_activity_ts ON activity (ts_created DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_activity_model
  ON activity (model_id, ts_created DESC, id DESC);
CREATE TABLE IF NOT EXISTS model_loads (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts_created INTEGER NOT NULL,
  model_id TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  ok INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_model_loads ON model_loads (model_id, id DESC);
"""

#: Our columns beyond llama-swap's, added to an existing table if missing.
EXTRA_COLUMNS = (
    ("ttfb_ms", "INTEGER NOT NULL DEFAULT -1"),
    ("queue_ms", "INTEGER NOT NULL DEFAULT 0"),
)

#: The activity row's columns and the L{ActivityRecord} attribute each
#: holds, in C{SELECT} order; the written row is the same without C{id}.
_RECORD_COLUMNS = (
    ("id", "id"),
    ("ts_created", "timestamp"),
    ("model_id", "model"),
    ("req_path", "reqPath"),
    ("resp_content_type", "respContentType"),
    ("resp_status_code", "status"),
    ("duration_ms", "durationMs"),
    ("error_msg", "errorMsg"),
    ("ttfb_ms", "ttfbMs"),
    ("queue_ms", "queueMs"),
)
#: The columns holding L{TokenMetrics} attributes (its C{durationMs} is
#: the record's C{duration_ms}).
_TOKEN_COLUMNS = (
    ("cache_tokens", "cacheTokens"),
    ("draft_tokens", "draftTokens"),
    ("draft_acc_tokens", "draftAcceptedTokens"),
    ("input_tokens", "inputTokens"),
    ("output_tokens", "outputTokens"),
    ("prompt_per_second", "promptPerSecond"),
    ("tokens_per_second", "tokensPerSecond"),
)
_COLUMN_NAMES = tuple(c for c, _ in _RECORD_COLUMNS + _TOKEN_COLUMNS) + ("metadata_json",)
_COLUMNS = ", ".join(_COLUMN_NAMES)
_INSERT = "INSERT INTO activity ({}) VALUES ({})".format(
    ", ".join(_COLUMN_NAMES[1:]), ", ".join("?" * (len(_COLUMN_NAMES) - 1))
)

#: C{sort} parameter to column.
SORT_COLUMNS = {
    "id": "id",
    "time": "ts_created",
    "model": "model_id",
    "req_path": "req_path",
    "resp_status_code": "resp_status_code",
    "resp_content_type": "resp_content_type",
    "cached": "cache_tokens",
    "prompt": "input_tokens",
    "generated": "output_tokens",
    "drafted": "draft_tokens",
    "prompt_speed": "prompt_per_second",
    "gen_speed": "tokens_per_second",
    "duration": "duration_ms",
    "ttfb": "ttfb_ms",
    "queue": "queue_ms",
}

#: How many past loads per model are kept for the expected load time.
LOAD_HISTORY = 20
#: Seconds a new row may wait for others to be written with it.
FLUSH_DELAY = 0.5
#: Queued rows that are written at once, without waiting.
FLUSH_ROWS = 100
#: The most rows an in-memory store may keep and still run on the reactor
#: thread (its totals take about 8 ms to sum at this size).
INLINE_ROWS = 10_000


class StoreClosed(Exception):
    """
    The store was closed (llamaswap is stopping).
    """


@frozen
class ActivityQuery:
    """
    A page of activity: filters AND together, models OR.

    @ivar start: inclusive lower bound, Unix seconds.
    @ivar end: inclusive upper bound, Unix seconds.
    """

    models: tuple[str, ...] = ()
    start: int | None = None
    end: int | None = None
    minID: int | None = None
    maxID: int | None = None
    limit: int = 25
    page: int = 1
    sort: str = "id"
    descending: bool = True


def setUp(connection: Any, path: str = MEMORY) -> None:
    """
    Prepare a new connection: pragmas, schema, our extra columns.
    """
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 5000")
    if path != MEMORY:
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.executescript(SCHEMA)
    present = {row[1] for row in cursor.execute("PRAGMA table_info(activity)")}
    for name, declaration in EXTRA_COLUMNS:
        if name not in present:
            cursor.execute(f"ALTER TABLE activity ADD COLUMN {name} {declaration}")
    connection.commit()


def insertRecord(cursor: Any, record: ActivityRecord, keep: int | None = None) -> int:
    """
    Insert C{record}; with C{keep}, delete all but the newest C{keep} rows.

    @return: the new row's ID.
    """
    cursor.execute(_INSERT, _rowValues(record))
    id = int(cursor.lastrowid)
    if keep is not None:
        cursor.execute("DELETE FROM activity WHERE id <= ?", (id - max(keep, 1),))
    return id


def insertRecords(
    cursor: Any, records: Sequence[ActivityRecord], keep: int | None = None
) -> list[int]:
    """
    Insert C{records} in order; with C{keep}, then delete all but the
    newest C{keep} rows.

    @return: the new rows' IDs.
    """
    if not records:
        return []
    # One statement for the batch; its rows get consecutive IDs (one
    # writer, AUTOINCREMENT), the last of which SQLite reports.
    cursor.executemany(_INSERT, [_rowValues(record) for record in records])
    cursor.execute("SELECT last_insert_rowid()")
    last = int(cursor.fetchone()[0])
    ids = list(range(last - len(records) + 1, last + 1))
    if keep is not None:
        cursor.execute("DELETE FROM activity WHERE id <= ?", (last - max(keep, 1),))
    return ids


def _rowValues(record: ActivityRecord) -> list[Any]:
    """
    The values of the columns L{_INSERT} writes for C{record}.
    """
    values = [getattr(record, attr) for _, attr in _RECORD_COLUMNS[1:]]
    values[0] = int(record.timestamp)
    values += [getattr(record.tokens, attr) for _, attr in _TOKEN_COLUMNS]
    values.append(json.dumps(record.metadata, sort_keys=True) if record.metadata else "")
    return values


def _record(row: Sequence[Any]) -> ActivityRecord:
    values = dict(zip(_COLUMN_NAMES, row))
    metadata: dict[str, str] = {}
    if values["metadata_json"]:
        try:
            parsed = json.loads(values["metadata_json"])
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            metadata = {str(k): str(v) for k, v in parsed.items()}
    tokens = TokenMetrics(
        durationMs=values["duration_ms"],
        **{attr: values[column] for column, attr in _TOKEN_COLUMNS},
    )
    return ActivityRecord(
        tokens=tokens,
        metadata=metadata,
        **{attr: values[column] for column, attr in _RECORD_COLUMNS},
    )


def _where(
    models: Iterable[str] = (),
    start: int | None = None,
    end: int | None = None,
    minID: int | None = None,
    maxID: int | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    wanted = [m for m in models if m.strip()]
    if wanted:
        clauses.append("model_id IN (%s)" % ", ".join("?" * len(wanted)))
        params.extend(wanted)
    for clause, value in (
        ("ts_created >= ?", start),
        ("ts_created <= ?", end),
        ("id >= ?", minID),
        ("id <= ?", maxID),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def queryActivity(cursor: Any, query: ActivityQuery) -> tuple[list[ActivityRecord], int]:
    """
    One page of rows and the number of rows matching the filters.  An
    unknown sort column sorts by ID; ties are broken by ID in the same
    direction.
    """
    where, params = _where(query.models, query.start, query.end, query.minID, query.maxID)
    cursor.execute("SELECT COUNT(*) FROM activity" + where, params)
    total = int(cursor.fetchone()[0])
    column = SORT_COLUMNS.get(query.sort, "id")
    direction = "DESC" if query.descending else "ASC"
    order = f"{column} {direction}" + (f", id {direction}" if column != "id" else "")
    cursor.execute(
        f"SELECT {_COLUMNS} FROM activity{where} ORDER BY {order} LIMIT ? OFFSET ?",
        params + [query.limit, (query.page - 1) * query.limit],
    )
    return [_record(row) for row in cursor.fetchall()], total


def activityStats(cursor: Any, model: str | None = None) -> dict[str, Any]:
    """
    Totals over all rows (or C{model}'s) and the positive speeds.
    """
    where, params = _where([model] if model else [])
    cursor.execute(
        "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
        "COALESCE(SUM(CASE WHEN cache_tokens > 0 THEN cache_tokens ELSE 0 END), 0) "
        "FROM activity" + where,
        params,
    )
    count, inputs, outputs, cached = cursor.fetchone()
    cursor.execute(
        "SELECT prompt_per_second, tokens_per_second FROM activity" + where + " ORDER BY id",
        params,
    )
    promptSpeeds: list[float] = []
    genSpeeds: list[float] = []
    for prompt, gen in cursor.fetchall():
        if prompt > 0:
            promptSpeeds.append(prompt)
        if gen > 0:
            genSpeeds.append(gen)
    return {
        "total_requests": int(count),
        "total_input_tokens": int(inputs),
        "total_output_tokens": int(outputs),
        "total_cache_tokens": int(cached),
        "prompt_speeds": promptSpeeds,
        "gen_speeds": genSpeeds,
    }


def insertLoad(cursor: Any, ts: float, model: str, durationMs: int, ok: bool) -> None:
    """
    Remember one load of C{model}; only the last L{LOAD_HISTORY} per model
    are kept.
    """
    cursor.execute(
        "INSERT INTO model_loads (ts_created, model_id, duration_ms, ok) VALUES (?, ?, ?, ?)",
        (int(ts), model, int(durationMs), 1 if ok else 0),
    )
    cursor.execute(
        "DELETE FROM model_loads WHERE model_id = ? AND id NOT IN "
        "(SELECT id FROM model_loads WHERE model_id = ? ORDER BY id DESC LIMIT ?)",
        (model, model, LOAD_HISTORY),
    )


def recentLoads(cursor: Any) -> dict[str, list[int]]:
    """
    Model to the durations of its recent successful loads, oldest first.
    """
    cursor.execute("SELECT model_id, duration_ms FROM model_loads WHERE ok = 1 ORDER BY id")
    loads: dict[str, list[int]] = {}
    for model, duration in cursor.fetchall():
        loads.setdefault(model, []).append(int(duration))
    return {m: d[-LOAD_HISTORY:] for m, d in loads.items()}


class Pool(Protocol):
    """
    What runs the store's jobs: the part of L{adbapi.ConnectionPool} used.
    """

    def runInteraction(self, interaction: Any, *args: Any) -> Deferred[Any]: ...

    def close(self) -> None: ...


def threadPool(path: str, reactor: Any) -> Pool:
    """
    One database thread with one connection to C{path}.
    """
    return adbapi.ConnectionPool(  # type: ignore[no-any-return]
        "sqlite3",
        path,
        check_same_thread=False,
        cp_min=1,
        cp_max=1,
        cp_openfun=lambda connection: setUp(connection, path),
        cp_reactor=reactor,
    )


class InThreadPool:
    """
    A L{Pool} running each job at once on the calling thread, over one
    connection, committing after a job and rolling back when it raises.
    """

    def __init__(self, path: str, reactor: Any = None) -> None:
        self.connection = connect(path)

    def runInteraction(self, interaction: Any, *args: Any) -> Deferred[Any]:
        cursor = self.connection.cursor()
        try:
            result = interaction(cursor, *args)
        except BaseException:
            self.connection.rollback()
            return fail()
        finally:
            cursor.close()
        self.connection.commit()
        return succeed(result)

    def close(self) -> None:
        self.connection.close()


def defaultPool(path: str, reactor: Any, keep: int | None) -> Pool:
    """
    Where a store of C{keep} rows (L{None}: a file, all rows) at C{path}
    runs: on the reactor thread when it is in memory and small, else on
    its database thread.
    """
    if path == MEMORY and keep is not None and keep <= INLINE_ROWS:
        return InThreadPool(path, reactor)
    return threadPool(path, reactor)


class ActivityStore:
    """
    The store, run where L{defaultPool} (or the given C{openPool}) says.

    @ivar path: the database file, or L{MEMORY}.
    @ivar keep: rows kept in memory (L{None}: all, for a file).
    """

    def __init__(
        self,
        path: str | None,
        keep: int = 1000,
        reactor: Any = None,
        flushDelay: float = FLUSH_DELAY,
        flushRows: int = FLUSH_ROWS,
        openPool: Callable[[str, Any], Pool] | None = None,
    ) -> None:
        """
        @param path: the file (C{store.path}); L{None} or L{MEMORY} for an
            in-memory database pruned to C{keep} rows.
        @param reactor: runs the database thread and times the batches.
        @param flushDelay: seconds a new row may wait to be written.
        @param flushRows: how many queued rows are written without waiting.
        @param openPool: opens the L{Pool} for a path and the reactor
            (L{None}: L{defaultPool}).
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self.path = path or MEMORY
        self.keep: int | None = keep if self.path == MEMORY else None
        self._reactor = reactor
        self._flushDelay = flushDelay
        self._flushRows = max(1, flushRows)
        self._openPool = openPool or partial(defaultPool, keep=self.keep)
        self._pool: Pool | None = None
        self._closed = False
        self._queued: list[tuple[ActivityRecord, Deferred[int]]] = []
        self._timer: IDelayedCall | None = None

    def _run(self, function: Any, *args: Any) -> Deferred[Any]:
        if self._closed:
            return fail(StoreClosed())
        if self._pool is None:
            # Opened on first use: a store never used starts no thread.
            self._pool = self._openPool(self.path, self._reactor)
        return self._pool.runInteraction(function, *args)

    def _read(self, function: Any, *args: Any) -> Deferred[Any]:
        """
        Run C{function} after the queued rows are written (the database
        thread runs jobs in order).
        """
        self.flush()
        return self._run(function, *args)

    def insert(self, record: ActivityRecord) -> Deferred[int]:
        """
        Queue C{record}; it is written with the rows queued with it.

        @return: fires with its ID once it is written.
        """
        if self._closed:
            return fail(StoreClosed())
        d: Deferred[int] = Deferred()
        self._queued.append((record, d))
        if len(self._queued) >= self._flushRows:
            self.flush()
        elif self._timer is None:
            self._timer = self._reactor.callLater(self._flushDelay, self.flush)
        return d

    def flush(self) -> Deferred[None]:
        """
        Write the queued rows now, in one database job.

        @return: fires when they are written (or failed: their own
            Deferreds get the failure).
        """
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        batch, self._queued = self._queued, []
        if not batch:
            return succeed(None)

        def written(ids: list[int]) -> None:
            for (_, d), id in zip(batch, ids):
                d.callback(id)

        def failed(failure: Failure) -> None:
            for _, d in batch:
                d.errback(failure)

        return self._run(insertRecords, [record for record, _ in batch], self.keep).addCallbacks(
            written, failed
        )

    def query(self, query: ActivityQuery) -> Deferred[tuple[list[ActivityRecord], int]]:
        return self._read(queryActivity, query)

    def stats(self, model: str | None = None) -> Deferred[dict[str, Any]]:
        return self._read(activityStats, model)

    def recordLoad(self, ts: float, model: str, durationMs: int, ok: bool) -> Deferred[None]:
        return self._run(insertLoad, ts, model, durationMs, ok)

    def recentLoads(self) -> Deferred[dict[str, list[int]]]:
        return self._run(recentLoads)

    def close(self) -> None:
        """
        Write the queued rows, finish the queued jobs and close the
        database (blocks until the database thread is done).
        """
        if not self._closed:
            self.flush()
            self._closed = True
            if self._pool is not None:
                self._pool.close()


def connect(path: str = MEMORY) -> sqlite3.Connection:
    """
    A set-up connection for direct use (tests, tools).
    """
    connection = sqlite3.connect(path)
    setUp(connection, path)
    return connection


__all__ = [
    "ActivityQuery",
    "ActivityStore",
    "FLUSH_DELAY",
    "FLUSH_ROWS",
    "INLINE_ROWS",
    "InThreadPool",
    "MEMORY",
    "Pool",
    "SORT_COLUMNS",
    "StoreClosed",
    "activityStats",
    "connect",
    "defaultPool",
    "insertLoad",
    "insertRecord",
    "insertRecords",
    "queryActivity",
    "recentLoads",
    "setUp",
    "threadPool",
]
