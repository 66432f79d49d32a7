"""Scanner and StreamingWatcher: only complete, stable, valid UVH5 files are registered."""

from __future__ import annotations

import os
import shutil
import time

import h5py
import numpy as np

from dsa_assets.streaming import StreamingWatcher, SubbandQueue
from dsa_assets.streaming.scanner import scan_directory

OLD = time.time() - 3600


def age(path, t=OLD):
    os.utime(path, (t, t))


def test_scan_registers_complete_group(group_copy, tmp_path):
    group, incoming, files = group_copy
    for f in files:
        age(f)
    q = SubbandQueue(db_path=tmp_path / "q.db")
    report = scan_directory(incoming, q, stable_s=5)
    assert len(report.registered) == 16
    (ready,) = q.ready_groups()
    assert ready.group_id == group.stamp
    # a second scan finds nothing new
    assert scan_directory(incoming, q, stable_s=5).registered == []


def test_incomplete_and_unstable_files_wait(group_copy, tmp_path):
    _, incoming, files = group_copy
    writing = files[0].with_name(files[0].name.replace(".hdf5", "_incomplete.hdf5"))
    files[0].rename(writing)
    q = SubbandQueue(db_path=tmp_path / "q.db")
    for f in files[2:]:
        age(f)
    # files[1] was just modified: not stable yet
    os.utime(files[1], None)
    report = scan_directory(incoming, q, stable_s=30)
    assert writing.name in report.waiting and files[1].name in report.waiting
    assert len(report.registered) == 14
    writing.rename(files[0])
    age(files[0])
    age(files[1])
    assert len(scan_directory(incoming, q, stable_s=30).registered) == 2
    assert len(q.ready_groups()) == 1


def test_corrupt_and_foreign_files_are_rejected_with_reason_and_kept(group_copy, tmp_path):
    _, incoming, files = group_copy
    truncated = files[3]
    with open(truncated, "r+b") as fh:
        fh.truncate(os.path.getsize(truncated) // 3)
    foreign = files[4]
    foreign.unlink()
    with h5py.File(foreign, "w") as fh:
        fh["something"] = np.arange(3)
    not_hdf5 = files[5]
    not_hdf5.write_bytes(b"plain text, not HDF5")
    for f in files:
        age(f)
    q = SubbandQueue(db_path=tmp_path / "q.db")
    report = scan_directory(incoming, q, stable_s=1)
    reasons = {os.path.basename(p): r for p, r in report.rejected}
    assert "not a readable HDF5 file" in reasons[truncated.name] or "unreadable" in reasons[truncated.name]
    assert "HDF5 but not UVH5" in reasons[foreign.name]
    assert "not a readable HDF5 file" in reasons[not_hdf5.name]
    assert all(f.exists() for f in (truncated, foreign, not_hdf5)), "rejected files are never deleted"
    assert {r["status"] for r in q.file_records()} == {"valid", "rejected"}
    assert q.groups()[0].n_subbands == 13


def test_scan_limits_to_stamp_range(group_copy, tmp_path):
    group, incoming, files = group_copy
    for f in files:
        age(f)
    q = SubbandQueue(db_path=tmp_path / "q.db")
    from datetime import timedelta

    later = group.data_start + timedelta(hours=1)
    assert scan_directory(incoming, q, stable_s=1, since=later).registered == []
    assert len(scan_directory(incoming, q, stable_s=1, until=later).registered) == 16


def _run_watcher_until(watcher, q, expected, timeout=30):
    watcher.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(g.n_subbands for g in q.groups()) >= expected:
                return True
            time.sleep(0.2)
        return False
    finally:
        watcher.stop()


def test_watcher_picks_up_files_renamed_into_place(simulated_group, tmp_path):
    incoming = tmp_path / "in"
    incoming.mkdir()
    q = SubbandQueue(db_path=tmp_path / "q.db")
    watcher = StreamingWatcher(incoming, q, stable_s=0.5, poll_interval_s=60)
    # copy as the correlator writes: under the _incomplete name, then rename
    for f in simulated_group.files[:4]:
        tmp = incoming / f.name.replace(".hdf5", "_incomplete.hdf5")
        shutil.copy(f, tmp)
        tmp.rename(incoming / f.name)
    assert _run_watcher_until(watcher, q, 4), f"registered only {q.groups()}"
    assert watcher.mode == "events+polling"


def test_polling_only_watcher_for_filesystems_without_events(simulated_group, tmp_path):
    incoming = tmp_path / "in"
    incoming.mkdir()
    for f in simulated_group.files[:3]:
        shutil.copy(f, incoming / f.name)
    q = SubbandQueue(db_path=tmp_path / "q.db")
    watcher = StreamingWatcher(incoming, q, stable_s=0.5, poll_interval_s=0.3, force_polling=True)
    assert _run_watcher_until(watcher, q, 3)
    assert watcher.mode == "polling"
