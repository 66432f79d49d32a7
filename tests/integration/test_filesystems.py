"""Real filesystem faults: an output disk too small, and one that fills up mid-write (tmpfs
mounts made by the tests), and a file that grows slowly in place, seen only by polling (as on
FUSE or NFS mounts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from dsa_assets.stages.conversion import ConversionConfig, ConversionError, ConversionStage
from dsa_assets.streaming import SubbandQueue
from dsa_assets.streaming.watcher import StreamingWatcher


@contextmanager
def tmpfs(mount: Path, size: str):
    """A size-limited tmpfs at ``mount`` for the duration (skips the test where mounting is not
    allowed)."""
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); "
                    "test_streaming_conversion.py injects ENOSPC instead")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: smaller than one scaled-down Measurement Set."""
    with tmpfs(tmp_path / "small", "1m") as mount:
        yield mount


def test_output_disk_too_small_is_refused_before_writing(group_copy, small_disk, tmp_path):
    """On a real full filesystem casacore aborts the process at its table flush (C++ terminate),
    so the converter checks the space first and refuses with the reason; a disk filling up
    during the write is the next test."""
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


CONVERT = """
import sys
from dsa_assets.stages.conversion import ConversionConfig, ConversionError, ConversionStage
disk, stamp, *files = sys.argv[1:]
stage = ConversionStage(ConversionConfig(output_dir=disk + "/out", scratch_dir=disk + "/scratch"))
try:
    stage.execute(group_id=stamp, hdf5_files=files)
except ConversionError as exc:
    print("REFUSED:", exc)
    sys.exit(3)
print("CONVERTED")
"""


def test_disk_filling_up_during_the_write(tmp_path):
    """Another writer takes all the space while a Measurement Set is being written, on a real
    tmpfs (the space check before writing passed). casacore aborts at its table flush
    ("FilebufIO: write error ... No space left on device", SIGABRT), which no handler can
    catch, so the writer runs in a child process: the conversion fails with a
    ConversionError carrying that message, nothing is published, the earlier product and the
    inputs are untouched, no scratch copy is left, and once space returns the observation
    converts."""
    from dsa_assets.sim.correlator import CorrelatorSimulator
    from dsa_assets.stages.ms_inspect import inspect_ms

    from ..conftest import SMALL, START

    group = CorrelatorSimulator(replace(SMALL, n_antennas=64, n_integrations=12, channels_per_subband=12,
                                        noise=False)).write_observation(tmp_path / "in", START)
    sizes = {f: f.stat().st_size for f in group.files}
    with tmpfs(tmp_path / "disk", "1g") as disk:
        earlier = disk / "out" / "ms" / "earlier-product"
        earlier.parent.mkdir(parents=True)
        earlier.write_text("an earlier product")
        proc = subprocess.Popen([sys.executable, "-c", CONVERT, str(disk), group.stamp, *map(str, group.files)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        filler = disk / "another-writer"
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not list(disk.glob("scratch/convert-*/*.ms")):
            time.sleep(0.001)
        with open(filler, "wb") as fh:  # all the space there is, in 8 MiB steps
            size = 0
            while True:
                try:
                    os.posix_fallocate(fh.fileno(), size, 8 << 20)
                except OSError:
                    break
                size += 8 << 20
        output = proc.communicate(timeout=300)[0]
        assert "CONVERTED" not in output, "the write finished before the disk filled:\n" + output
        # casacore aborts its process at the table flush; that process is the writer child, so
        # the conversion fails with the library's message and the caller lives on to record it
        assert proc.returncode == 3 and "REFUSED:" in output, f"exit {proc.returncode}:\n{output}"
        assert "the writer process died (signal SIGABRT)" in output and "No space left on device" in output, output
        assert not list((disk / "out").rglob("*.ms")), "nothing published"
        assert earlier.read_text() == "an earlier product"
        assert {f: f.stat().st_size for f in group.files} == sizes, "inputs untouched"

        filler.unlink()
        from dsa_assets.stages.conversion import ConversionConfig, ConversionStage

        assert not list((disk / "scratch").iterdir()), "no scratch copy left"
        stage = ConversionStage(ConversionConfig(output_dir=disk / "out", scratch_dir=disk / "scratch"))
        ms = stage.execute(group_id=group.stamp, hdf5_files=group.files).ms_path
        assert inspect_ms(ms)["rows"] == 12 * 64 * 65 // 2


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
