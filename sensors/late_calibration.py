"""Windows that found no calibration solution, run again once one reaches them.

An observation takes the valid solution nearest in time within ``validity_hours``, but in
streaming only the solutions of calibrators that have already transited exist. Where the sky
holds no usable calibrator for hours (at Dec +62.7 the VLA list has none from 0014+612 to
1206+642, 11.8 h of right ascension), the windows of the gap's second half arrive before the
solution that would reach them: a simulated day lost 67 of its 281 windows so. Each tick this
sensor finds the observations with a Measurement Set but no solution assigned whose window no
run holds, asks the products database for the solution the calibration step would now choose
(the same rule), and requests the window's steps after conversion, once per window and
solution (run key ``late-calibration:<window>:<solution>``): a window that fails again for
another reason is not retried with the same solution. A window left waiting under the
``wait`` policy is a run in progress, and is left to it.
"""

from __future__ import annotations

import dagster as dg

from dsa_assets.assets.retention import running_partitions
from resources.calibration import CalibrationResource
from resources.pipeline import PipelineResource

from .subband_arrival import OBSERVATION_JOB


def steps_after_conversion(job: dg.JobDefinition) -> list[dg.AssetKey]:
    """The observation job's assets after ``measurement_set``, in key order."""
    return sorted(k for k in job.asset_layer.executable_asset_keys if k != dg.AssetKey("measurement_set"))


def evaluate(instance: dg.DagsterInstance, pipeline: PipelineResource, calibration: CalibrationResource,
             steps: list[dg.AssetKey]) -> dg.SensorResult:
    """One tick, as a plain function of the instance, the settings and the ``steps`` to run
    again (:func:`steps_after_conversion`; testable)."""
    db = pipeline.products()
    held = running_partitions(instance)
    reached: dict[str, tuple[str, list[str]]] = {}
    for obs in db.uncalibrated_observations():
        window = obs["partition_key"]
        if window in held:
            continue
        solution = db.nearest_solution(obs["mid_unix"], calibration.validity_hours * 3600.0)
        if solution is not None:
            # a window's observations share their solution: the first one names the run
            reached.setdefault(window, (solution["group_id"], []))[1].append(obs["group_id"])
    requests = [dg.RunRequest(run_key=f"late-calibration:{window}:{solution}", job_name=OBSERVATION_JOB,
                              partition_key=window, asset_selection=steps,
                              tags={"dsa110/window": window, "dsa110/stage": "calibration",
                                    "dsa110/observation": ",".join(observations),
                                    "dsa110/late_calibration": solution})
                for window, (solution, observations) in sorted(reached.items())]
    return dg.SensorResult(run_requests=requests,
                           skip_reason=None if requests else "no uncalibrated observation within reach of a solution")


@dg.sensor(
    name="late_calibration_sensor",
    job_name=OBSERVATION_JOB,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs again, from calibration on, the windows that found no calibration solution once a "
                "later calibrator's solution reaches them.",
)
def late_calibration_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineResource,
                            calibration: CalibrationResource):
    return evaluate(context.instance, pipeline, calibration,
                    steps_after_conversion(context.repository_def.get_job(OBSERVATION_JOB)))
