"""Soak: the service runs while a generator writes scaled-down observations at ten times the
real cadence with faults mixed in; at the end every good observation has its products and every
bad file or group a recorded reason. Prints throughput, latency percentiles and peak memory.

``DSA110_SOAK_MINUTES`` sets how long the generator writes: 5 in the suite (leaving room for a
busy machine), 10 for the README's figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from dsa_assets import naming
from dsa_assets.streaming import SubbandQueue

pytestmark = pytest.mark.slow

CADENCE_S = 309.0 / 10  # ten times real time
GENERATOR = r'''
import json, random, sys, time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from dsa_assets import naming
from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig, calibrator_field

out, minutes, cadence = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
config, start = calibrator_field(
    # sefd_jy: tests.conftest.SCALED_SEFD_JY
    SimConfig(n_antennas=16, n_integrations=4, channels_per_subband=4, n_sources=6, seed=3, sefd_jy=400.0),
    "3C286", datetime.now(timezone.utc) - timedelta(days=2))
sim = CorrelatorSimulator(config)
rng = random.Random(7)  # which subband a fault hits
log = []
t0 = time.monotonic()
i = 0
while time.monotonic() - t0 < minutes * 60:
    data_start = start + timedelta(seconds=309 * i)
    # every other observation carries a fault, each kind in turn (the first is the clean calibrator pass)
    fault = "none" if i % 2 == 0 else ["interrupted", "missing", "junk", "duplicate"][(i // 2) % 4]
    missing = (rng.randrange(16),) if fault == "missing" else ()
    interrupted = (rng.randrange(16),) if fault == "interrupted" else ()
    g = sim.write_observation(out, data_start, missing=missing, interrupted=interrupted, seed=100 + i)
    entry = {"stamp": g.stamp, "fault": fault, "written": time.time(), "files": len(g.files)}
    if fault == "junk":  # a file with a subband name that is not HDF5
        name = naming.subband_file_name(naming.format_time(data_start + timedelta(seconds=1)), 3)
        (out / name).write_bytes(b"not an hdf5 file" * 100)
        entry["junk"] = name
    if fault == "duplicate":  # a subband written again under another stamp, as by a restarted node
        first = g.files[0]
        dup = naming.subband_file_name(naming.format_time(data_start + timedelta(seconds=3)),
                                       naming.parse_subband_name(first.name)[1])
        (out / dup).write_bytes(first.read_bytes())
        entry["duplicate"] = dup
    log.append(entry)
    (out.parent / "generator.json").write_text(json.dumps(log))
    i += 1
    time.sleep(max(0.0, t0 + i * cadence - time.monotonic()))
'''


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc] + proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


@pytest.mark.timeout(2700)
def test_soak_with_faults(tmp_path):
    minutes = float(os.environ.get("DSA110_SOAK_MINUTES", "5"))
    incoming, out = tmp_path / "in", tmp_path / "out"
    incoming.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    generator = subprocess.Popen([sys.executable, "-c", GENERATOR, str(incoming), str(minutes), str(CADENCE_S)],
                                 env=env, stdout=open(tmp_path / "generator.log", "w"), stderr=subprocess.STDOUT)
    # the service checks its reference catalogue before it starts: the simulator writes it first
    deadline = time.monotonic() + 120
    while not (incoming / "sky_catalogue.csv").exists() and time.monotonic() < deadline:
        assert generator.poll() is None, (tmp_path / "generator.log").read_text()
        time.sleep(0.2)
    service = subprocess.Popen(
        [sys.executable, "-m", "dsa_assets.streaming.cli", "--input-dir", str(incoming), "--output-dir", str(out),
         "--no-webserver", "--stable-seconds", "2", "--incomplete-timeout", "60", "--enable-calibration-solving",
         "--reference-catalogue", str(incoming / "sky_catalogue.csv"), "--log-format", "json"],
        env=env, stdout=open(tmp_path / "service.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    peak = 0
    queue_path = out / "state" / "queue.sqlite3"
    try:
        while generator.poll() is None:
            peak = max(peak, tree_rss(psutil.Process(service.pid)))
            time.sleep(1)
        assert generator.returncode == 0, (tmp_path / "generator.log").read_text()
        log = json.loads((tmp_path / "generator.json").read_text())
        # drain: every observation reaches a final state and, when completed, its image
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            peak = max(peak, tree_rss(psutil.Process(service.pid)))
            queue = SubbandQueue(queue_path)
            states = {e["stamp"]: queue.group(e["stamp"]).state for e in log}
            imaged = {e["stamp"] for e in log if image_path(out, e["stamp"]).exists()}
            if all(s in ("completed", "failed") for s in states.values()) and \
                    all(st in imaged for st, s in states.items() if s == "completed"):
                break
            assert service.poll() is None, (tmp_path / "service.log").read_text()[-3000:]
            time.sleep(3)
    finally:
        for p in (generator, service):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM) if p is service else p.terminate()
        service.wait(120)

    queue = SubbandQueue(queue_path)
    files = queue.file_records()
    latencies, problems = [], []
    for e in log:
        g = queue.group(e["stamp"])
        if g.state != "completed" or not image_path(out, e["stamp"]).exists():
            problems.append(f"{e['stamp']} ({e['fault']}): state {g.state}, error {g.error}")
            continue
        latencies.append(image_path(out, e["stamp"]).stat().st_mtime - g.last_arrival)
        if e["fault"] in ("interrupted", "missing"):
            assert g.n_subbands == 15 and g.decision, (e, g)  # converted partial after the timeout, decided
    for e in log:
        if "junk" in e:
            (rec,) = [f for f in files if Path(f["path"]).name == e["junk"]]
            assert rec["status"] == "rejected" and rec["reason"], rec
        if "duplicate" in e:
            # whichever of the two copies registered first is used; the other is recorded duplicate
            subband = naming.parse_subband_name(e["duplicate"])[1]
            group_files = [f for f in files if f["subband"] == subband
                           and abs((naming.parse_subband_name(Path(f["path"]).name)[0]
                                    - naming.parse_time(e["stamp"])).total_seconds()) < 60]
            assert sorted(f["status"] for f in group_files) == ["duplicate", "valid"], group_files
            assert all(f["reason"] for f in group_files if f["status"] == "duplicate")
    assert not problems, problems
    assert not list((out / "scratch").glob("*-*")), "no scratch left behind"
    lat = np.array(latencies)
    span_min = (log[-1]["written"] - log[0]["written"]) / 60 or 1
    report = (f"soak: {len(log)} observations in {span_min:.1f} min ({len(log) / span_min:.2f}/min at 10x real time), "
              f"faults {sorted({e['fault'] for e in log})}; latency last subband -> image p50 {np.percentile(lat, 50):.0f} s, "
              f"p90 {np.percentile(lat, 90):.0f} s, max {lat.max():.0f} s; peak memory of the service tree "
              f"{peak / 1e9:.2f} GB")
    print(report)
    (tmp_path / "soak_report.txt").write_text(report)
    report_dir = os.environ.get("DSA110_SOAK_REPORT")
    if report_dir:
        Path(report_dir).write_text(report + "\n")


def image_path(out: Path, stamp: str) -> Path:
    return naming.image_file(out, stamp, "pbcor")
