"""SubbandQueue: grouping, states, duplicates, late files, several processes at once."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from dsa_assets.exceptions import QueueError
from dsa_assets.streaming import SubbandQueue

T0 = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)


def reg(q, tmp_path, seconds, sb, name=None):
    t = T0 + timedelta(seconds=seconds)
    path = tmp_path / (name or f"{t:%Y-%m-%dT%H:%M:%S}_sb{sb:02d}.hdf5")
    return q.register(path, file_time=t, subband=sb)


def test_files_within_tolerance_form_one_group_with_earliest_canonical_time(tmp_path):
    q = SubbandQueue(db_path=tmp_path / "q.db", expected_subbands=16)
    assert reg(q, tmp_path, 2, 0).group_id == "2026-01-15T12:00:02"
    # an earlier straggler moves the canonical time (and id) back while pending
    assert reg(q, tmp_path, 0, 1).group_id == "2026-01-15T12:00:00"
    assert reg(q, tmp_path, 80, 2).group_id == "2026-01-15T12:00:00"
    (group,) = q.groups()
    assert (group.group_id, group.n_subbands, group.state) == ("2026-01-15T12:00:00", 3, "pending")
    # the next observation, 309 s later, starts a new group
    assert reg(q, tmp_path, 309, 0).group_id == "2026-01-15T12:05:09"
    assert [g.group_id for g in q.groups()] == ["2026-01-15T12:00:00", "2026-01-15T12:05:09"]


def test_ready_after_all_subbands_and_state_machine(tmp_path):
    q = SubbandQueue(db_path=tmp_path / "q.db", expected_subbands=16)
    for sb in range(15):
        reg(q, tmp_path, sb % 3, sb)
    assert q.ready_groups() == []
    assert q.missing_subbands("2026-01-15T12:00:00") == [15]
    reg(q, tmp_path, 1, 15)
    (ready,) = q.ready_groups()
    gid = ready.group_id
    assert len(q.files(gid)) == 16
    assert q.claim(gid)
    assert not q.claim(gid), "a group being processed cannot be claimed twice"
    q.complete(gid, "/out/x.ms")
    g = q.group(gid)
    assert (g.state, g.attempts, g.ms_path) == ("completed", 1, "/out/x.ms")
    assert q.counts()["completed"] == 1


def test_duplicate_and_late_subbands_are_recorded_not_grouped(tmp_path):
    q = SubbandQueue(db_path=tmp_path / "q.db", expected_subbands=2)
    reg(q, tmp_path, 0, 0)
    dup = reg(q, tmp_path, 1, 0)
    assert dup.status == "duplicate" and "already has sb00" in dup.reason
    reg(q, tmp_path, 1, 1)
    gid = q.ready_groups()[0].group_id
    q.claim(gid)
    late = reg(q, tmp_path, 3, 0, name="late_copy_sb00.hdf5")
    assert late.status == "late" and "left pending" in late.reason
    assert q.group(gid).n_subbands == 2
    # registering the same path again is a no-op
    again = reg(q, tmp_path, 1, 0)
    assert again.new is False and again.status == "duplicate"


def test_rejected_files_keep_their_reason(tmp_path):
    q = SubbandQueue(db_path=tmp_path / "q.db")
    assert q.reject(tmp_path / "bad_sb00.hdf5", "not HDF5")
    assert not q.reject(tmp_path / "bad_sb00.hdf5", "not HDF5")
    (rec,) = q.file_records("rejected")
    assert rec["reason"] == "not HDF5"


def claim_in_a_process_that_exits(db, gid):
    import subprocess
    import sys

    code = f"from dsa_assets.streaming import SubbandQueue; SubbandQueue({str(db)!r}).claim({gid!r})"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fail_requeue_and_unknown_group(tmp_path):
    q = SubbandQueue(db_path=tmp_path / "q.db", expected_subbands=1)
    gid = reg(q, tmp_path, 0, 0).group_id
    q.claim(gid)
    assert q.requeue_stuck() == [], "a live worker keeps its group"
    q.fail(gid, "reset")
    claim_in_a_process_that_exits(tmp_path / "q.db", gid)
    assert q.requeue_stuck() == [gid], "a dead worker's group goes back to pending"
    assert q.group(gid).state == "pending"
    q.claim(gid)
    q.fail(gid, "boom")
    assert (q.group(gid).state, q.group(gid).error, q.group(gid).attempts) == ("failed", "boom", 3)
    with pytest.raises(QueueError, match="unknown group"):
        q.group("1999-01-01T00:00:00")


def test_locked_database_gives_clear_error(tmp_path):
    q = SubbandQueue(db_path=tmp_path / "q.db", busy_timeout_s=0.2)
    blocker = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(QueueError, match="stayed locked for more than 0.2 s"):
            reg(q, tmp_path, 0, 0)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert reg(q, tmp_path, 0, 0).status == "valid"



def _hold_a_fresh_file_for(path, seconds):
    """A second process's connection holding a write lock on a queue file still in rollback
    mode, as while it creates the file; released after ``seconds`` (s) from a thread."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other(a)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other VALUES (1)")
    timer = threading.Timer(seconds, lambda: (holder.execute("COMMIT"), holder.close()))
    timer.start()
    return timer


def test_opening_a_queue_another_process_is_creating_waits_for_it(tmp_path):
    """SQLite refuses the switch to WAL at once, without the busy timeout, while another
    connection writes to a rollback-mode file: two runs opening one fresh queue raced there."""
    db = tmp_path / "q.db"
    timer = _hold_a_fresh_file_for(db, 0.5)
    started = time.monotonic()
    q = SubbandQueue(db_path=db, expected_subbands=16, busy_timeout_s=10)
    waited = time.monotonic() - started
    timer.join()
    assert 0.4 < waited < 5
    assert reg(q, tmp_path, 0, 0).status == "valid"
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_opening_a_queue_held_beyond_the_timeout_is_a_clear_error(tmp_path):
    db = tmp_path / "q.db"
    timer = _hold_a_fresh_file_for(db, 3)
    try:
        with pytest.raises(QueueError, match=r"q\.db stayed locked for more than 0.3 s while opening it"):
            SubbandQueue(db_path=db, busy_timeout_s=0.3)
    finally:
        timer.join()


def _register_many(db, root, worker, n_groups):
    q = SubbandQueue(db_path=db, expected_subbands=16)
    # every worker registers every file, in a different order
    items = [(g, sb) for g in range(n_groups) for sb in range(16)]
    if worker % 2:
        items.reverse()
    for g, sb in items:
        t = T0 + timedelta(seconds=309 * g + (sb % 4))
        q.register(f"{root}/{t:%Y-%m-%dT%H:%M:%S}_sb{sb:02d}.hdf5", file_time=t, subband=sb)


def test_concurrent_processes_neither_lose_nor_duplicate(tmp_path):
    db = tmp_path / "q.db"
    SubbandQueue(db_path=db)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_register_many, args=(db, str(tmp_path), w, 6)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    q = SubbandQueue(db_path=db)
    groups = q.groups()
    assert len(groups) == 6
    assert all(g.n_subbands == 16 for g in groups)
    assert len(q.file_records()) == 6 * 16
    assert all(r["status"] == "valid" for r in q.file_records())


def test_claim_of_a_dead_worker_is_taken_over(tmp_path):
    """A run killed with -9 leaves its group processing; the retried run takes it over."""
    q = SubbandQueue(db_path=tmp_path / "q.db", expected_subbands=1)
    gid = reg(q, tmp_path, 0, 0).group_id
    claim_in_a_process_that_exits(tmp_path / "q.db", gid)
    assert q.group(gid).state == "processing"
    assert q.claim(gid), "the claimant is dead: the claim is taken over"
    assert not q.claim(gid), "a live claimant (this process) keeps it"
    assert q.group(gid).attempts == 2
