"""SubbandQueue: the durable record of every subband file and observation group (SQLite, WAL).

A file joins the pending group whose canonical time (the earliest file stamp in the group)
is within ``tolerance_s`` of its own stamp; an earlier file joining moves the canonical time
(and so the group id) back, which is allowed only while the group is pending. Groups move
pending -> processing -> completed | failed, with timestamps, attempt count and error text.

Every write runs in one ``BEGIN IMMEDIATE`` transaction on a fresh connection, so a watcher,
the sensor and several runs in other processes can share the file without losing or
duplicating a registration (``path`` is unique; a second registration is a no-op).
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .. import processes
from ..constants import GROUP_TOLERANCE_S, N_SUBBANDS, OBSERVATION_CADENCE_S
from ..exceptions import QueueError
from ..naming import format_time

PENDING, PROCESSING, COMPLETED, FAILED = "pending", "processing", "completed", "failed"
STATES = (PENDING, PROCESSING, COMPLETED, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id TEXT NOT NULL UNIQUE,
    canonical_time REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    n_subbands INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL,
    last_arrival REAL NOT NULL,
    updated_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    decision TEXT,
    ms_path TEXT,
    processing_started REAL,
    completed_at REAL,
    claimed_by TEXT
);
CREATE INDEX IF NOT EXISTS groups_state ON groups(state);
CREATE INDEX IF NOT EXISTS groups_time ON groups(canonical_time);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    group_ref INTEGER REFERENCES groups(id),
    subband INTEGER,
    file_time REAL,
    size INTEGER,
    mtime REAL,
    status TEXT NOT NULL,
    reason TEXT,
    registered_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_group ON files(group_ref);
"""

VALID, REJECTED, DUPLICATE, LATE = "valid", "rejected", "duplicate", "late"


@dataclass(frozen=True)
class GroupRecord:
    """One observation group as the queue knows it (times are POSIX seconds, UTC)."""

    group_id: str
    canonical_time: float
    state: str
    n_subbands: int
    first_seen: float
    last_arrival: float
    updated_at: float
    attempts: int
    error: str | None
    decision: str | None
    ms_path: str | None

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.canonical_time, UTC)

    def waited(self, timeout_s: float, now: float) -> bool:
        """Whether it has waited ``timeout_s`` for missing subbands (:func:`stale_cutoffs`)."""
        first_seen_before, stamped_before = stale_cutoffs(timeout_s, now)
        return self.first_seen <= first_seen_before or self.canonical_time <= stamped_before


def stale_cutoffs(timeout_s: float, now: float) -> tuple[float, float]:
    """The one rule for how long an incomplete group waits (Unix s): it has waited once its
    first file arrived before the first cutoff, or (old data registered only now) its stamp is
    older than the second, the timeout plus one observation cadence."""
    return now - timeout_s, now - timeout_s - OBSERVATION_CADENCE_S


@dataclass(frozen=True)
class SubbandFile:
    """A complete, valid subband file to register: path, file-name time (UTC), subband index,
    size (bytes) and mtime (POSIX s)."""

    path: Path
    file_time: datetime
    subband: int
    size: int | None = None
    mtime: float | None = None


@dataclass(frozen=True)
class Registration:
    """Outcome of registering one file: its status and, if it joined one, the group id."""

    path: str
    status: str
    group_id: str | None
    reason: str | None = None
    new: bool = True


_GROUP_COLS = (
    "group_id, canonical_time, state, n_subbands, first_seen, last_arrival, updated_at, "
    "attempts, error, decision, ms_path"
)


class SubbandQueue:
    """Registry of subband files grouped into observations; safe across processes."""

    def __init__(
        self,
        db_path: Path | str,
        expected_subbands: int = N_SUBBANDS,
        tolerance_s: float = GROUP_TOLERANCE_S,
        busy_timeout_s: float = 30.0,
    ):
        self.db_path = Path(db_path)
        self.expected_subbands = expected_subbands
        self.tolerance_s = tolerance_s
        self.busy_timeout_s = busy_timeout_s
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._initialise()

    def _initialise(self) -> None:
        """Switch the file to WAL and create the schema, retrying while another process holds it.

        Switching the journal mode returns "database is locked" at once, without waiting in
        the busy handler, while another connection holds a write lock on a file still in
        rollback mode (two runs creating one fresh queue at once); so the whole step is retried
        for up to ``busy_timeout_s`` (s).
        """
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            conn = self._connect()
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                columns = {row[1] for row in conn.execute("PRAGMA table_info(groups)")}
                if "claimed_by" not in columns:  # queues created before claims were recorded
                    conn.execute("ALTER TABLE groups ADD COLUMN claimed_by TEXT")
                return
            except sqlite3.OperationalError as exc:
                if "duplicate column" in str(exc):  # another process added it first
                    return
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise QueueError(f"subband queue {self.db_path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise QueueError(
                        f"subband queue {self.db_path} stayed locked for more than {self.busy_timeout_s} s "
                        f"while opening it ({exc})"
                    ) from exc
                time.sleep(0.05)
            finally:
                conn.close()

    # -- plumbing -----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=self.busy_timeout_s, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def _transaction(self):
        conn = self._connect()
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise QueueError(
                    f"subband queue {self.db_path} stayed locked for more than {self.busy_timeout_s} s ({exc})"
                ) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def _read(self, sql: str, args=()) -> list[tuple]:
        conn = self._connect()
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise QueueError(f"subband queue {self.db_path}: {exc}") from exc
        finally:
            conn.close()

    # -- registration ---------------------------------------------------------------------
    def register(
        self,
        path: Path | str,
        *,
        file_time: datetime,
        subband: int,
        size: int | None = None,
        mtime: float | None = None,
        now: float | None = None,
    ) -> Registration:
        """Record a valid subband file and attach it to its group (creating one if needed).

        Returns status ``valid`` (joined a group), ``duplicate`` (the group already has this
        subband from another file) or ``late`` (its group is no longer pending). Registering
        a path twice changes nothing and returns the first outcome with ``new=False``.
        """
        return self.register_many([SubbandFile(Path(path), file_time, subband, size, mtime)], now=now)[0]

    def register_many(self, files: list[SubbandFile], now: float | None = None) -> list[Registration]:
        """``register`` for many files in one transaction (backfills of large directories)."""
        now = time.time() if now is None else now
        with self._transaction() as conn:
            return [self._register_in(conn, f, now) for f in files]

    def _register_in(self, conn, f: SubbandFile, now: float) -> Registration:
        path = str(Path(f.path).resolve())
        t = f.file_time.timestamp()
        prior = conn.execute(
            "SELECT f.status, g.group_id, f.reason FROM files f LEFT JOIN groups g ON g.id = f.group_ref "
            "WHERE f.path = ?",
            (path,),
        ).fetchone()
        if prior:
            return Registration(path, prior[0], prior[1], prior[2], new=False)
        group = conn.execute(
            "SELECT id, group_id, canonical_time, state FROM groups "
            "WHERE canonical_time BETWEEN ? AND ? ORDER BY ABS(canonical_time - ?) LIMIT 1",
            (t - self.tolerance_s, t + self.tolerance_s, t),
        ).fetchone()
        if group is None:
            gid = format_time(f.file_time)
            cur = conn.execute(
                "INSERT INTO groups (group_id, canonical_time, first_seen, last_arrival, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (gid, t, now, now, now),
            )
            group = (cur.lastrowid, gid, t, PENDING)
        ref, gid, canonical, state = group
        status, reason = VALID, None
        if state != PENDING:
            status, reason = LATE, f"arrived after group {gid} left pending (state {state})"
        elif conn.execute(
            "SELECT 1 FROM files WHERE group_ref = ? AND subband = ? AND status = ?", (ref, f.subband, VALID)
        ).fetchone():
            status, reason = DUPLICATE, f"group {gid} already has sb{f.subband:02d} from another file"
        conn.execute(
            "INSERT INTO files (path, group_ref, subband, file_time, size, mtime, status, reason, registered_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (path, ref, f.subband, t, f.size, f.mtime, status, reason, now),
        )
        if status == VALID:
            if t < canonical:
                gid = format_time(f.file_time)
                conn.execute("UPDATE groups SET group_id = ?, canonical_time = ? WHERE id = ?", (gid, t, ref))
            conn.execute(
                "UPDATE groups SET n_subbands = n_subbands + 1, last_arrival = ?, updated_at = ? WHERE id = ?",
                (now, now, ref),
            )
        return Registration(path, status, gid, reason)

    def reject(self, path: Path | str, reason: str, now: float | None = None) -> bool:
        """Record a file that is not a usable subband (the file itself is left alone).
        Returns False if the path was already recorded."""
        path = str(Path(path).resolve())
        now = time.time() if now is None else now
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO files (path, status, reason, registered_at) VALUES (?, ?, ?, ?)",
                (path, REJECTED, reason, now),
            )
            return cur.rowcount == 1

    def known_paths(self, paths: list[str]) -> set[str]:
        """The subset of (resolved) ``paths`` already recorded, in any status."""
        known: set[str] = set()
        for i in range(0, len(paths), 500):
            chunk = paths[i : i + 500]
            marks = ",".join("?" * len(chunk))
            known.update(r[0] for r in self._read(f"SELECT path FROM files WHERE path IN ({marks})", chunk))
        return known

    def file_records(self, status: str | None = None) -> list[dict]:
        """Recorded files (optionally of one status) with their reasons."""
        sql = "SELECT path, subband, status, reason FROM files"
        rows = self._read(sql + (" WHERE status = ?" if status else ""), (status,) if status else ())
        return [dict(zip(("path", "subband", "status", "reason"), r)) for r in rows]

    # -- groups ---------------------------------------------------------------------------
    def group(self, group_id: str) -> GroupRecord:
        rows = self._read(f"SELECT {_GROUP_COLS} FROM groups WHERE group_id = ?", (group_id,))
        if not rows:
            raise QueueError(f"unknown group {group_id}")
        return GroupRecord(*rows[0])

    def groups(self, state: str | None = None) -> list[GroupRecord]:
        sql = f"SELECT {_GROUP_COLS} FROM groups"
        rows = self._read(sql + (" WHERE state = ?" if state else "") + " ORDER BY canonical_time", (state,) if state else ())
        return [GroupRecord(*r) for r in rows]

    def groups_between(self, start: datetime, end: datetime) -> list[GroupRecord]:
        """Groups whose canonical time lies in [start, end)."""
        rows = self._read(
            f"SELECT {_GROUP_COLS} FROM groups WHERE canonical_time >= ? AND canonical_time < ? ORDER BY canonical_time",
            (start.timestamp(), end.timestamp()),
        )
        return [GroupRecord(*r) for r in rows]

    def ready_groups(self) -> list[GroupRecord]:
        """Pending groups that have all expected subbands."""
        rows = self._read(
            f"SELECT {_GROUP_COLS} FROM groups WHERE state = ? AND n_subbands >= ? ORDER BY canonical_time",
            (PENDING, self.expected_subbands),
        )
        return [GroupRecord(*r) for r in rows]

    def stale_groups(self, timeout_s: float, now: float | None = None) -> list[GroupRecord]:
        """Pending, incomplete, undecided groups that have waited ``timeout_s``
        (:func:`stale_cutoffs`)."""
        now = time.time() if now is None else now
        rows = self._read(
            f"SELECT {_GROUP_COLS} FROM groups WHERE state = ? AND n_subbands < ? AND decision IS NULL "
            "AND (first_seen <= ? OR canonical_time <= ?) ORDER BY canonical_time",
            (PENDING, self.expected_subbands, *stale_cutoffs(timeout_s, now)),
        )
        return [GroupRecord(*r) for r in rows]

    def files(self, group_id: str) -> list[Path]:
        """Valid subband files of a group, by subband index."""
        rows = self._read(
            "SELECT f.path FROM files f JOIN groups g ON g.id = f.group_ref "
            "WHERE g.group_id = ? AND f.status = ? ORDER BY f.subband",
            (group_id, VALID),
        )
        return [Path(r[0]) for r in rows]

    def missing_subbands(self, group_id: str) -> list[int]:
        rows = self._read(
            "SELECT f.subband FROM files f JOIN groups g ON g.id = f.group_ref WHERE g.group_id = ? AND f.status = ?",
            (group_id, VALID),
        )
        present = {r[0] for r in rows}
        return [s for s in range(self.expected_subbands) if s not in present]

    # -- state machine --------------------------------------------------------------------
    def _transition(self, group_id: str, allowed_from: tuple[str, ...], sets: str, args: tuple) -> bool:
        now = time.time()
        with self._transaction() as conn:
            row = conn.execute("SELECT state FROM groups WHERE group_id = ?", (group_id,)).fetchone()
            if row is None:
                raise QueueError(f"unknown group {group_id}")
            if row[0] not in allowed_from:
                return False
            conn.execute(f"UPDATE groups SET {sets}, updated_at = ? WHERE group_id = ?", (*args, now, group_id))
            return True

    def claim(self, group_id: str, *, allow_reprocess: bool = True) -> bool:
        """pending (or, re-materializing, completed/failed) -> processing; counts an attempt and
        records the claimant (host:pid). A group processing under a claimant process that no
        longer exists on this host (a run killed with -9, retried) is taken over. Returns
        False if a live worker holds it."""
        allowed = (PENDING, COMPLETED, FAILED) if allow_reprocess else (PENDING,)
        now = time.time()
        me = processes.this_process()
        with self._transaction() as conn:
            row = conn.execute("SELECT state, claimed_by FROM groups WHERE group_id = ?", (group_id,)).fetchone()
            if row is None:
                raise QueueError(f"unknown group {group_id}")
            state, claimant = row
            if state not in allowed and not (state == PROCESSING and processes.is_gone(claimant)):
                return False
            conn.execute(
                "UPDATE groups SET state = 'processing', attempts = attempts + 1, error = NULL, "
                "processing_started = ?, claimed_by = ?, updated_at = ? WHERE group_id = ?",
                (now, me, now, group_id),
            )
            return True

    def complete(self, group_id: str, ms_path: str) -> None:
        if not self._transition(
            group_id, (PROCESSING,), "state = 'completed', ms_path = ?, completed_at = ?", (ms_path, time.time())
        ):
            raise QueueError(f"group {group_id} was not processing; cannot complete it")

    def fail(self, group_id: str, error: str) -> None:
        """Any state -> failed, with the reason."""
        self._transition(group_id, STATES, "state = 'failed', error = ?", (error,))

    def decide(self, group_id: str, decision: str) -> None:
        """Record the policy decision taken for an incomplete group (shown in the UI)."""
        self._transition(group_id, STATES, "decision = ?", (decision,))

    def requeue_stuck(self, older_than_s: float = 0.0) -> list[str]:
        """processing -> pending for groups whose worker died (crash recovery). A group whose
        claimant process is still alive on this host (a run that outlived a restart of the
        service), or that another host claimed, is left to its worker."""
        cutoff = time.time() - older_than_s
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT group_id, claimed_by FROM groups WHERE state = ? AND processing_started <= ?",
                (PROCESSING, cutoff),
            ).fetchall()
            stuck = [gid for gid, claimant in rows if claimant is None or processes.is_gone(claimant)]
            conn.executemany(
                "UPDATE groups SET state = 'pending', updated_at = ? WHERE group_id = ?",
                [(time.time(), gid) for gid in stuck],
            )
        return stuck

    def counts(self) -> dict[str, int]:
        """Number of groups in each state."""
        out = dict.fromkeys(STATES, 0)
        out.update(dict(self._read("SELECT state, COUNT(*) FROM groups GROUP BY state")))
        return out
