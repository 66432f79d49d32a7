"""kill -9 of the platform during each stage, then a restart: nothing lost, nothing
half-written, nothing done twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dsa_assets.sim.correlator import CorrelatorSimulator
from dsa_assets.stages.mosaic import PRODUCTS as MOSAIC_PRODUCTS
from dsa_assets.stages.ms_inspect import inspect_ms
from dsa_assets.streaming import SubbandQueue

from ..conftest import SMALL, START

pytestmark = pytest.mark.slow


def stream_once(incoming: Path, out: Path, *options: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    return subprocess.Popen(
        [sys.executable, "-m", "dsa_assets.streaming.cli", "--input-dir", str(incoming), "--output-dir", str(out),
         "--once", "--stable-seconds", "0", "--enable-calibration-solving", *options],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def kill_at_step_start(proc: subprocess.Popen, step: str) -> None:
    """kill -9 the whole process group at the first Dagster log line of ``step`` (each step
    logs what it is about to do as it starts)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if " - dagster - " in line and f" - {step} - " in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert f" - {step} - " in seen[-1], f"{step} never started:\n" + "".join(seen)


def kill_when_scratch_has(proc: subprocess.Popen, scratch: Path, pattern: str, stage: str) -> None:
    """kill -9 the whole process group as soon as ``scratch`` holds ``pattern`` (work under way)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if scratch.exists() and any(scratch.glob(pattern)):
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"{stage} finished before it could be interrupted:\n" + proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_during_conversion_then_restart(tmp_path):
    incoming, out = tmp_path / "in", tmp_path / "out"
    # big enough that the conversion lasts a moment
    group = CorrelatorSimulator(replace(SMALL, n_antennas=64, n_integrations=12, channels_per_subband=48,
                                        noise=False)).write_observation(incoming, START)
    inputs = {f: f.stat().st_size for f in group.files}
    scratch = out / "scratch"
    kill_when_scratch_has(stream_once(incoming, out), scratch, "convert-*/*.ms", "conversion")

    queue = SubbandQueue(out / "state" / "queue.sqlite3")
    assert queue.group(group.stamp).state == "processing"
    assert not list((out / "ms").rglob("*.ms")) if (out / "ms").exists() else True, "no partial MS published"
    assert {f: f.stat().st_size for f in group.files} == inputs, "inputs untouched"

    restart = stream_once(incoming, out, "--keep-raw-ms", "forever")  # kept to inspect it
    log_text = restart.communicate(timeout=600)[0]
    assert restart.returncode == 0, log_text
    assert "re-queued 1 observation(s) left processing by a crash" in log_text
    g = queue.group(group.stamp)
    assert g.state == "completed" and g.attempts == 2
    (ms,) = list((out / "ms").rglob("*.ms"))
    assert inspect_ms(ms)["rows"] == 12 * 64 * 65 // 2
    assert not list(scratch.glob("convert-*")), "scratch left-overs swept"
    assert {f: f.stat().st_size for f in group.files} == inputs


@pytest.mark.parametrize("stage, scratch_pattern, product_dir", [
    ("solve", "cal-*", "caltables"), ("applycal", "apply-*", "calibrated"), ("imaging", "image-*", "images")])
def test_kill_after_conversion_then_restart_resumes_without_reconverting(tmp_path, stage, scratch_pattern, product_dir):
    """kill -9 while calibrating, applying or imaging: on restart only the steps after conversion
    re-run, nothing half-published is left, and the observation is converted once."""
    incoming, out = tmp_path / "in", tmp_path / "out"
    group = CorrelatorSimulator(replace(SMALL, n_integrations=8)).write_observation(incoming, START)
    scratch = out / "scratch"
    kill_when_scratch_has(stream_once(incoming, out), scratch, scratch_pattern, stage)
    queue = SubbandQueue(out / "state" / "queue.sqlite3")
    assert queue.group(group.stamp).state == "completed"
    (ms,) = list((out / "ms").rglob("*.ms"))
    ms_mtime = ms.stat().st_mtime_ns
    published = out / product_dir
    assert not published.exists() or not [p for p in published.rglob("*") if p.is_file()], "nothing half-published"

    restart = stream_once(incoming, out, "--keep-raw-ms", "forever")  # kept to compare it
    log_text = restart.communicate(timeout=600)[0]
    assert restart.returncode == 0, log_text
    assert "(after conversion)" in log_text
    assert queue.group(group.stamp).attempts == 1, "not converted twice"
    assert ms.stat().st_mtime_ns == ms_mtime
    images = {p.name for p in (out / "images").rglob("*") if p.is_file()}
    assert f"{group.stamp}-pbcor.fits" in images and f"{group.stamp}.png" in images
    assert (out / "calibrated" / group.stamp[:10] / f"{group.stamp}.ms").is_dir()
    assert not [p for p in scratch.iterdir() if p.name.startswith(("cal-", "apply-", "image-"))], "scratch swept"


SCIENCE = ("--enable-photometry", "--enable-mosaic-creation", "--mosaic-observations", "1")


@pytest.mark.parametrize("step", ["photometry", "mosaic", "mosaic_photometry", "variability"])
def test_kill_during_science_steps_then_restart_completes_them_once(tmp_path, step):
    """kill -9 while measuring, mosaicking or computing variability: the restart runs exactly
    the interrupted and later steps, the database holds one set of measurements per image, and
    the mosaic directory is whole."""
    from dsa_assets import partitions
    from dsa_assets.products import ProductsDB
    from dsa_assets.sim.sky import SKY_CATALOGUE

    incoming, out = tmp_path / "in", tmp_path / "out"
    group = CorrelatorSimulator(replace(SMALL, n_integrations=8)).write_observation(incoming, START)
    options = SCIENCE + ("--reference-catalogue", str(incoming / SKY_CATALOGUE))
    kill_at_step_start(stream_once(incoming, out, *options), step)
    queue = SubbandQueue(out / "state" / "queue.sqlite3")
    assert queue.group(group.stamp).state == "completed"
    mosaics = out / "mosaics"
    if step in ("photometry", "mosaic"):
        assert not mosaics.exists() or not [p for p in mosaics.rglob("*") if p.is_file()], "no mosaic published"

    restart = stream_once(incoming, out, *options)
    log_text = restart.communicate(timeout=600)[0]
    assert restart.returncode == 0, log_text
    assert queue.group(group.stamp).attempts == 1, "not converted twice"
    reran = {"photometry": "(after conversion)", "mosaic": "mosaic ", "mosaic_photometry": "mosaic ",
             "variability": "variability: materialized"}[step]
    assert reran in log_text, log_text
    if step != "photometry":
        assert "(after conversion)" not in log_text, "finished windows are not run again"

    db = ProductsDB(out / "state" / "products.sqlite3")
    with db.engine.connect() as conn:
        from sqlalchemy import text

        per_image = dict(conn.execute(text(
            "SELECT image_id, COUNT(*) FROM measurements WHERE kind = 'forced' GROUP BY image_id")).all())
        twice = conn.execute(text("SELECT COUNT(*) FROM (SELECT 1 FROM measurements WHERE kind = 'forced' "
                                  "GROUP BY image_id, source_name HAVING COUNT(*) > 1) AS d")).scalar()
    assert set(per_image) == {group.stamp, f"mosaic:{partitions.hour_key(group.data_start)}"}, per_image
    assert twice == 0, "no measurement recorded twice"
    (hour_dir,) = [d for d in mosaics.glob("*/*") if d.is_dir()]
    stem = hour_dir.name
    assert sorted(p.name for p in hour_dir.iterdir()) == sorted(
        [f"{stem}-{kind}.fits" for kind in MOSAIC_PRODUCTS] + [f"{stem}.png"]), "the whole set, once"
    assert not [p for p in mosaics.rglob("*") if p.name.startswith(".")], "no partial or retired copies"
    assert (out / "variability" / "variability.csv").exists()
    assert not list((out / "scratch").glob("mosaic-*")), "scratch swept"
    # the pass ends with the retention job: the raw Measurement Set went once calibrated (the
    # default), and the removal is recorded
    (purge,) = [r for r in db.purged() if r["product"] == "raw_ms"]
    assert purge["key"] == group.stamp and purge["policy"] == "until_downstream", db.purged()
    assert "retention: materialized" in log_text and not (out / "ms" / group.stamp[:10] / f"{group.stamp}.ms").exists()
