"""Sensor tick cost with a large input directory and a long partition history.

Sets up, under a scratch directory: 100,000 subband files (6,250 observations, all already
registered, as after three weeks of running), a partition definition whose range spans well
over a year of 5-minute windows (over 105,000 partitions), and a cursor at the newest file.
Then times sensor ticks (the same ``evaluate`` the Dagster sensor calls) for: nothing new,
one new complete observation arriving, and a tick right after it. Prints each tick's time
against the 1 s target.

    python bench/sensor_tick.py [--files 100000] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--scratch", default=os.environ.get("DSA110_BENCH_DIR"))
    args = p.parse_args()

    from dsa_assets import partitions
    from dsa_assets.naming import format_time, subband_file_name
    from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig
    from dsa_assets.streaming.queue import SubbandFile
    from resources.pipeline import PipelineResource
    from sensors.subband_arrival import evaluate

    root = Path(tempfile.mkdtemp(prefix="dsa110-sensor-bench-", dir=args.scratch))
    try:
        incoming = root / "in"
        incoming.mkdir()
        n_obs = args.files // 16
        first = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=309 * (n_obs + 2))
        t = time.perf_counter()
        items = []
        for i in range(n_obs):
            stamp = format_time(first + timedelta(seconds=309 * i))
            for sb in range(16):
                path = incoming / subband_file_name(stamp, sb)
                path.touch()
                items.append(SubbandFile(path, first + timedelta(seconds=309 * i), sb, 0, 0.0))
        pipeline = PipelineResource(input_dir=str(incoming), output_dir=str(root / "out"), stable_s=1)
        queue = pipeline.queue()
        queue.register_many(items)
        with queue._transaction() as conn:  # the history is processed: mark it completed
            conn.execute("UPDATE groups SET state = 'completed'")
        print(f"set-up: {len(items)} files, {n_obs} observations in {time.perf_counter() - t:.1f} s")
        n_partitions = int((datetime.now(UTC) - partitions.OBSERVATION_PARTITIONS.start).total_seconds() // 300)
        print(f"partitions in the definition: {n_partitions} (start {partitions.OBSERVATION_PARTITIONS.start:%Y-%m-%d})")

        last = first + timedelta(seconds=309 * (n_obs - 1))
        cursor = json.dumps({"scan_from": format_time(last - timedelta(minutes=30)),
                             "last_window": partitions.window_key(last)})

        def tick(cur):
            t0 = time.perf_counter()
            result = evaluate(pipeline, cur)
            return time.perf_counter() - t0, result

        idle = [tick(cursor)[0] for _ in range(5)]
        # one new observation arrives (real, valid files)
        new_start = last + timedelta(seconds=309)
        group = CorrelatorSimulator(SimConfig(n_antennas=8, n_integrations=2, channels_per_subband=1, n_sources=1,
                                              timestamp_jitter=False)).write_observation(incoming, new_start)
        old = time.time() - 60
        for f in group.files:
            os.utime(f, (old, old))
        arrival, result = tick(cursor)
        after, _ = tick(result.cursor)
        print(f"\n{'tick':40s} {'seconds':>8s} {'/ 1 s target':>12s}")
        print(f"{'idle (median of 5)':40s} {statistics.median(idle):8.3f} {statistics.median(idle):12.2f}")
        print(f"{'one observation arrives (16 files)':40s} {arrival:8.3f} {arrival:12.2f}")
        print(f"{'next tick':40s} {after:8.3f} {after:12.2f}")
        print(f"run requests on arrival: {[r.run_key for r in result.run_requests]}")
        return 0 if max(arrival, after, *idle) < 1.0 else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
