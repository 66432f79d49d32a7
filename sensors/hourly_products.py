"""Automation of the products after the image: hourly mosaics and the variability table.

Mosaics. An hourly mosaic is requested once all of its hour's ``mosaic_inputs`` observation
windows have an image, or, for an hour that stays incomplete (a failed or missing observation),
once ``mosaic_timeout_s`` has passed after the hour's end; the gap is recorded in the mosaic's
metadata. Dagster's declarative automation conditions misfire here: ``eager()`` on the hourly
asset fires as soon as the first 5-minute image of the hour lands (a mosaic of one image, then
eleven re-materializations), and ``on_cron("0 * * * *")`` waits for all parents, so an hour with
one failed window is never mosaicked. A sensor states the rule exactly.

Variability. After new ``photometry`` materializations the variability table is requested, at
most every ``variability_interval_s``.
"""

from __future__ import annotations

import json
import time

import dagster as dg

from dsa_assets import partitions
from resources.science import ScienceResource

MOSAIC_JOB = "mosaic_job"
VARIABILITY_JOB = "variability_job"
LOOKBACK_HOURS = 24
"""Hours before the newest image that a tick looks at: late images still produce their mosaic."""


def hours_ready(imaged_windows: set[str], expected: int, timeout_s: float, now: float,
                seen: dict[str, dict]) -> tuple[dict[str, str], dict[str, dict]]:
    """Which hours to mosaic now, and the updated record of each hour.

    ``seen`` maps an hour to {"n": windows imaged when last looked at, "changed": when that number
    last changed (Unix s), "mosaicked": windows in its latest mosaic}. An hour is mosaicked when
    ``expected`` windows are imaged ("complete"), or when it ended and nothing new arrived for
    ``timeout_s`` ("timeout"); an hour mosaicked on a timeout is mosaicked again if late images
    arrive. Timeouts count from the last arrival, not from the wall clock alone, so a backfill of
    old data waits for its hours to fill instead of mosaicking each first image."""
    counts: dict[str, int] = {}
    for w in imaged_windows:
        hour = partitions.hour_key(partitions.window_bounds(w)[0])
        counts[hour] = counts.get(hour, 0) + 1
    record = {h: dict(v) for h, v in seen.items()}
    ready = {}
    for hour, n in counts.items():
        r = record.setdefault(hour, {"n": 0, "changed": now, "mosaicked": 0})
        if n != r["n"]:
            r.update(n=n, changed=now)
        if n <= r["mosaicked"]:
            continue
        _, end = partitions.hour_bounds(hour)
        if n >= expected:
            ready[hour] = "complete"
        elif now >= max(end.timestamp(), r["changed"]) + timeout_s:
            ready[hour] = "timeout"
        if hour in ready:
            r["mosaicked"] = n
    return ready, record


def evaluate(instance: dg.DagsterInstance, science: ScienceResource, cursor: str | None,
             now: float | None = None) -> dg.SensorResult:
    """One tick, as a plain function of the instance, the settings and the cursor (testable):
    mosaics if ``science.enable_mosaic_creation``, variability if ``science.enable_photometry``."""
    now = time.time() if now is None else now
    state = json.loads(cursor) if cursor else {"hours": {}, "photometry_id": 0, "variability_at": 0.0}
    requests = []
    if science.enable_mosaic_creation:
        imaged = instance.get_materialized_partitions(dg.AssetKey("image"))
        newest = max(imaged, default=None)
        if newest:
            horizon = partitions.hour_key(partitions.window_bounds(newest)[0] - partitions.HOUR * LOOKBACK_HOURS)
            recent = {w for w in imaged if w >= horizon}
            ready, record = hours_ready(recent, science.mosaic_inputs, science.mosaic_timeout_s, now, state["hours"])
            for hour, reason in sorted(ready.items()):
                n = record[hour]["n"]
                requests.append(dg.RunRequest(run_key=f"mosaic:{hour}:{n}", job_name=MOSAIC_JOB, partition_key=hour,
                                              tags={"dsa110/mosaic": reason, "dsa110/mosaic_inputs": str(n)}))
            state["hours"] = {h: r for h, r in record.items() if h >= horizon}
    if science.enable_photometry:
        record = instance.fetch_materializations(dg.AssetKey("photometry"), limit=1).records
        latest = record[0].storage_id if record else 0
        if latest > state["photometry_id"] and now - state["variability_at"] >= science.variability_interval_s:
            requests.append(dg.RunRequest(run_key=f"variability:{latest}", job_name=VARIABILITY_JOB))
            state.update(photometry_id=latest, variability_at=now)
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(state, sort_keys=True),
                           skip_reason=None if requests else "no hour complete or timed out; no new photometry")


mosaic_job = dg.define_asset_job(MOSAIC_JOB, selection=["mosaic", "mosaic_photometry"],
                                 description="Mosaic one hour of observation images and measure the mosaic.")
variability_job = dg.define_asset_job(VARIABILITY_JOB, selection=["variability"],
                                      description="Recompute light-curve variability statistics.")


@dg.sensor(
    name="hourly_products_sensor",
    jobs=[mosaic_job, variability_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests hourly mosaics when an hour is imaged (or timed out) and the variability table "
                "after new photometry.",
)
def hourly_products_sensor(context: dg.SensorEvaluationContext, science: ScienceResource):
    return evaluate(context.instance, science, context.cursor)
