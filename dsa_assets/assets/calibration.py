"""The ``calibration_tables`` and ``calibrated_ms`` assets.

``calibration_tables`` of a window solves K/B/G on the observation when a calibrator transits
in it (and solving is on), then assigns every observation of the window the valid solution
nearest in time: its own, or one from another partition, named in the metadata.
``calibrated_ms`` applies the assigned solution to a flagged copy of the Measurement Set.
"""

from pathlib import Path

import dagster as dg

from resources.calibration import CalibrationResource
from resources.imaging import ImagingResource
from resources.pipeline import PipelineResource

from .. import metrics, partitions
from .checks import FLAGGED_CHECK, QUALITY_CHECK, flagged_check, quality_check
from .common import for_each_observation, peeled_markdown, rounded
from .measurement_sets import measurement_set


@dg.asset(
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    deps=[measurement_set],
    check_specs=[QUALITY_CHECK],
    group_name="calibration",
    kinds={"casa"},
    description=(
        "Delay (K), bandpass (B) and gain (G) solutions. Solved here when a VLA calibrator transits "
        "in the window (Perley-Butler 2017 flux for primary calibrators, primary-beam attenuated); "
        "otherwise the nearest valid solution within the validity window, whose partition is named in "
        "the metadata."
    ),
)
def calibration_tables(context: dg.AssetExecutionContext, pipeline: PipelineResource,
                       calibration: CalibrationResource) -> dg.MaterializeResult:
    from ..stages.calibration_selection import calibrate_observation

    products = pipeline.catalogue()
    stage = calibration.stage(pipeline.output_path, pipeline.scratch_path)

    def calibrate(obs):
        o = calibrate_observation(stage, products.db, calibration, obs.group_id, obs.require("raw_ms"),
                                  context.partition_key, field_sources=pipeline.reference_sources())
        if o.transits:
            context.log.info(f"{obs.group_id}: transits {[t.as_dict() for t in o.transits]}")
        if o.solve_failure:
            context.log.error(f"{obs.group_id}: {o.solve_failure}")
        if o.solution:
            for step, seconds in o.solution.timings_s.items():
                metrics.STAGE_DURATION.labels(f"calibration_{step}").observe(seconds)
            context.log.info(f"{obs.group_id}: solved on {o.transit.calibrator.label} with a {o.model_size}-source "
                             f"model; problems: {o.problems or 'none'}")
        return o

    outcomes = for_each_observation(context, products.in_window(context.partition_key, having=("measurement_set",)),
                                    "calibration", calibrate)
    missing = {o.group_id: o.missing for _, o in outcomes if o.missing}
    if missing:
        for reason in missing.values():
            context.log.error(reason)
        if calibration.missing_policy == "wait":
            raise dg.RetryRequested(max_retries=max(int(calibration.wait_timeout_s // calibration.wait_s), 1),
                                    seconds_to_wait=calibration.wait_s)
        raise dg.Failure(description="; ".join(missing.values()),
                         metadata={g: dg.MetadataValue.text(r) for g, r in missing.items()})
    solved = [(obs, o) for obs, o in outcomes if o.solution]
    assigned = [o.assignment for _, o in outcomes]
    solve_failures = {o.group_id: o.solve_failure for _, o in outcomes if o.solve_failure}
    metadata = {
        "n_observations": len(assigned),
        "solved_here": ", ".join(f"{obs.group_id} on {o.transit.calibrator.label}" for obs, o in solved),
        "solve_failures": dg.MetadataValue.json(solve_failures),
        "assignments": dg.MetadataValue.json([{k: v for k, v in a.items() if k != "quality"} for a in assigned]),
    }
    if assigned:
        first = assigned[0]
        metadata.update({
            "solution_partition": first["solution_partition"],
            "calibrator": first["calibrator"],
            "solution_offset_h": first["offset_h"],
            "path": dg.MetadataValue.path(first["path"]),
        })
    if solved:
        _, o = solved[0]
        q, sol = o.solution.quality, o.solution
        metadata.update({
            "transit": dg.MetadataValue.json(o.transit.as_dict()),
            "refant": sol.refant,
            "model_sources": len(sol.sources),
            "gain_median_snr": round(q.tables["G"].median_snr or 0.0, 1),
            "bandpass_median_snr": round(q.tables["B"].median_snr or 0.0, 1),
            "calibrated_flux_ratio": round(q.flux_ratio, 5),
            "phase_scatter_deg": round(q.phase_scatter_deg, 3),
            "fraction_flagged": round(sol.flags.fraction_after, 5),
            "timings_s": dg.MetadataValue.json(rounded(sol.timings_s)),
        })
    return dg.MaterializeResult(metadata=metadata, check_results=[quality_check(solved, assigned, solve_failures)])


@dg.asset(
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    deps=[measurement_set, calibration_tables],
    check_specs=[FLAGGED_CHECK],
    group_name="calibration",
    kinds={"casa"},
    description=(
        "Each observation flagged (zeros, dead antennas, RFI) and calibrated with its assigned solution: "
        "a copy of the Measurement Set whose DATA are the calibrated visibilities, with calibrated weights "
        "(--calibrated-keeps-raw-data: CORRECTED_DATA beside the raw DATA)."
    ),
)
def calibrated_ms(context: dg.AssetExecutionContext, pipeline: PipelineResource,
                  calibration: CalibrationResource, imaging: ImagingResource) -> dg.MaterializeResult:
    products = pipeline.catalogue()
    # peeling's level changes at the image's edge
    stage = calibration.stage(pipeline.output_path, pipeline.scratch_path, imaging.half_width_deg)

    def apply(obs):
        if obs.solution_group_id is None:
            raise dg.Failure(f"{obs.group_id} has no calibration assignment: materialize calibration_tables first")
        solution = products.db.solution(obs.solution_group_id)
        res = stage.execute_apply(obs.group_id, obs.require("raw_ms"), Path(solution["path"]),
                                  pipeline.reference_sources())
        products.db.record_calibrated_ms(group_id=obs.group_id, partition_key=context.partition_key,
                                         path=str(res.ms_path), solution_group_id=solution["group_id"],
                                         flagged_fraction=res.fraction_flagged)
        context.log.info(f"calibrated {obs.group_id} with the solution of {solution['group_id']}")
        return res, solution

    results = [r for _, r in for_each_observation(
        context, products.in_window(context.partition_key, having=("measurement_set",)), "applycal", apply)]
    metadata = {"n_observations": len(results)}
    if results:
        res, solution = results[0]
        metadata.update({
            "path": dg.MetadataValue.path(str(res.ms_path)),
            "solution_partition": solution["partition_key"],
            "calibrator": solution["calibrator"],
            "fraction_flagged": res.fraction_flagged,
            "rfi_fraction": res.flags.rfi_fraction,
            "dead_antennas": dg.MetadataValue.json(res.flags.dead_antennas),
            "timings_s": dg.MetadataValue.json(rounded(res.timings_s)),
            "peeled": dg.MetadataValue.md(peeled_markdown(res.peeled)),
            "subtracted_outside": len(res.subtracted),
            "subtracted_outside_apparent_jy": round(sum(a for _, a in res.subtracted), 4),
        })
    check = flagged_check([r.fraction_flagged for r, _ in results])
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
