"""Real filesystem faults: a disk that fills up mid-write (a small tmpfs mounted by the test),
and a file that grows slowly in place, seen only by polling (as on FUSE or NFS mounts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from dsa_assets.stages.conversion import ConversionConfig, ConversionError, ConversionStage
from dsa_assets.streaming import SubbandQueue
from dsa_assets.streaming.watcher import StreamingWatcher


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: smaller than one scaled-down Measurement Set."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); "
                    "test_streaming_conversion.py injects ENOSPC instead")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_output_disk_too_small_is_refused_before_writing(group_copy, small_disk, tmp_path):
    """On a real full filesystem casacore aborts the process at its table flush (C++ terminate),
    so the converter checks the space first and refuses with the reason; a disk filling up
    during the write is covered by injecting ENOSPC (test_streaming_conversion.py)."""
    group, _, files = group_copy
    sizes = {f: f.stat().st_size for f in files}
    earlier = small_disk / "ms" / "earlier-product"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("an earlier product")
    stage = ConversionStage(ConversionConfig(output_dir=small_disk, scratch_dir=small_disk / "scratch"))
    with pytest.raises(ConversionError, match="No space left on device"):
        stage.execute(group_id=group.stamp, hdf5_files=files)
    assert earlier.read_text() == "an earlier product", "earlier products intact"
    assert not list(small_disk.rglob("*.ms")), "no half-written Measurement Set"
    scratch = small_disk / "scratch"
    assert not scratch.exists() or not list(scratch.iterdir()), "nothing left in scratch"
    assert {f: f.stat().st_size for f in files} == sizes, "inputs untouched"
    # the space is back: the same observation converts
    shutil.rmtree(small_disk / "ms")
    roomy = ConversionStage(ConversionConfig(output_dir=tmp_path / "out", scratch_dir=tmp_path / "scratch"))
    assert roomy.execute(group_id=group.stamp, hdf5_files=files).ms_path.is_dir()


def test_file_growing_slowly_in_place_is_registered_only_when_complete(simulated_group, tmp_path):
    """A writer that appends to the final name over several seconds (no _incomplete rename, as
    some FUSE and NFS clients do), watched by polling only."""
    incoming = tmp_path / "in"
    incoming.mkdir()
    source = simulated_group.files[0]
    data = source.read_bytes()
    target = incoming / source.name
    queue = SubbandQueue(db_path=tmp_path / "q.db")
    watcher = StreamingWatcher(incoming, queue, stable_s=1.5, poll_interval_s=0.2, force_polling=True)
    chunks = [data[i : i + len(data) // 10 + 1] for i in range(0, len(data), len(data) // 10 + 1)]

    def write_slowly():
        with open(target, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
                time.sleep(0.5)

    writer = threading.Thread(target=write_slowly)
    watcher.start()
    try:
        writer.start()
        seen_while_writing = []
        while writer.is_alive():
            seen_while_writing.append(len(queue.file_records()))
            time.sleep(0.2)
        assert watcher.mode == "polling"
        assert max(seen_while_writing) == 0, "nothing registered (or rejected) while the file grew"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not queue.file_records():
            time.sleep(0.2)
    finally:
        watcher.stop()
        writer.join()
    (record,) = queue.file_records()
    assert record["status"] == "valid" and Path(record["path"]).name == source.name
