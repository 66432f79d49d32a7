"""Runs the retention job every ``retention_interval_s``, one at a time. Not gated by the disk
guard: a full disk is when removing what is no longer needed matters most."""

from __future__ import annotations

import time

import dagster as dg

from dsa_assets.assets.retention import IN_PROGRESS, RETENTION_JOB, retention_job
from resources.retention import RetentionResource


@dg.sensor(name="retention_sensor", job=retention_job, minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Requests the retention job every retention_interval_s (one run at a time).")
def retention_sensor(context: dg.SensorEvaluationContext, retention: RetentionResource):
    now = time.time()
    last = float(context.cursor or 0.0)
    if now - last < retention.retention_interval_s:
        return dg.SkipReason(f"next retention pass in {retention.retention_interval_s - (now - last):.0f} s")
    if context.instance.get_runs(filters=dg.RunsFilter(job_name=RETENTION_JOB, statuses=IN_PROGRESS), limit=1):
        return dg.SkipReason("a retention run is in progress")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"retention-{int(now)}")], cursor=str(now))
