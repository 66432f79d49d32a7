"""The ``calibration_tables`` and ``calibrated_ms`` assets, with their checks.

``calibration_tables`` of a window solves K/B/G on the observation when a calibrator transits
in it (and solving is on), then assigns every observation of the window the valid solution
nearest in time: its own, or one from another partition, named in the metadata.
``calibrated_ms`` applies the assigned solution to a flagged copy of the Measurement Set.
"""

from pathlib import Path

import dagster as dg
import numpy as np

from resources.calibration import CalibrationResource
from resources.pipeline import PipelineResource

from .. import metrics, partitions
from ..exceptions import DSA110Error
from ..logs import attach_log_file, log_context
from .measurement_sets import measurement_set

QUALITY_CHECK = dg.AssetCheckSpec(
    name="solution_quality",
    asset="calibration_tables",
    description=(
        "Every solution solved in this window is usable: median gain SNR and flagged-solution fraction "
        "within the CalibrationResource limits; the calibrated calibrator's flux within 2% of its model "
        "and its phase scatter below 10 deg. Windows that borrow a solution report its figures."
    ),
)
GAINS_CHECK = dg.AssetCheckSpec(
    name="simulated_gains_recovered",
    asset="calibration_tables",
    description=(
        "For simulated calibrator observations (truth file beside the subbands): the total antenna "
        "gains K.B.G match the injected gains and bandpasses within 1% in amplitude and 1 deg in "
        "phase on every antenna, channel and polarisation."
    ),
)
FLAGGED_CHECK = dg.AssetCheckSpec(
    name="fraction_flagged",
    asset="calibrated_ms",
    description="At most half of each calibrated Measurement Set is flagged.",
)
MAX_FLAGGED = 0.5
FLUX_TOLERANCE = 0.02
MAX_PHASE_SCATTER_DEG = 10.0


def _window_groups(pipeline: PipelineResource, partition_key: str):
    start, end = partitions.window_bounds(partition_key)
    return [g for g in pipeline.queue().groups_between(start, end) if g.state == "completed" and g.ms_path]


@dg.asset(
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    deps=[measurement_set],
    check_specs=[QUALITY_CHECK, GAINS_CHECK],
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

    attach_log_file()
    db = pipeline.products()
    stage = calibration.stage(pipeline.output_path, pipeline.scratch_path)
    outcomes = []
    for g in _window_groups(pipeline, context.partition_key):
        with log_context(partition=context.partition_key, run_id=context.run.run_id, stage="calibration",
                         observation=g.group_id):
            o = calibrate_observation(stage, db, calibration, g.group_id, g.ms_path, context.partition_key)
        if o.transits:
            context.log.info(f"{g.group_id}: transits {[t.as_dict() for t in o.transits]}")
        if o.solve_failure:
            context.log.error(f"{g.group_id}: {o.solve_failure}")
        if o.solution:
            for step, seconds in o.solution.timings_s.items():
                metrics.STAGE_DURATION.labels(f"calibration_{step}").observe(seconds)
            context.log.info(f"{g.group_id}: solved on {o.transit.calibrator.label} with a {o.model_size}-source "
                             f"model; problems: {o.problems or 'none'}")
        outcomes.append((g, o))
    missing = {o.group_id: o.missing for _, o in outcomes if o.missing}
    if missing:
        for reason in missing.values():
            context.log.error(reason)
        if calibration.missing_policy == "wait":
            raise dg.RetryRequested(max_retries=max(int(calibration.wait_timeout_s // calibration.wait_s), 1),
                                    seconds_to_wait=calibration.wait_s)
        raise dg.Failure(description="; ".join(missing.values()),
                         metadata={g: dg.MetadataValue.text(r) for g, r in missing.items()})
    solved = [(g, o) for g, o in outcomes if o.solution]
    assigned = [o.assignment for _, o in outcomes]
    solve_failures = {o.group_id: o.solve_failure for _, o in outcomes if o.solve_failure}
    metadata = {
        "n_observations": len(assigned),
        "solved_here": ", ".join(f"{g.group_id} on {o.transit.calibrator.label}" for g, o in solved),
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
            "gain_median_snr": round(q["tables"]["G"]["median_snr"] or 0.0, 1),
            "bandpass_median_snr": round(q["tables"]["B"]["median_snr"] or 0.0, 1),
            "calibrated_flux_ratio": round(q["flux_ratio"], 5),
            "phase_scatter_deg": round(q["phase_scatter_deg"], 3),
            "fraction_flagged": round(sol.flags["fraction_after"], 5),
            "timings_s": dg.MetadataValue.json({k: round(v, 2) for k, v in sol.timings_s.items()}),
        })
    return dg.MaterializeResult(metadata=metadata, check_results=[
        quality_check(solved, assigned, solve_failures), gains_check(pipeline, solved),
    ])


def quality_check(solved, assigned, solve_failures) -> dg.AssetCheckResult:
    problems = [f"{gid}: {reason}" for gid, reason in solve_failures.items()]
    for g, o in solved:
        sol = o.solution
        problems += [f"{g.group_id}: {p}" for p in o.problems]
        if abs(sol.quality["flux_ratio"] - 1.0) > FLUX_TOLERANCE:
            problems.append(f"{g.group_id}: calibrated flux / model = {sol.quality['flux_ratio']:.4f}")
        if sol.quality["phase_scatter_deg"] > MAX_PHASE_SCATTER_DEG:
            problems.append(f"{g.group_id}: phase scatter {sol.quality['phase_scatter_deg']:.1f} deg")
    used = {a["solution_observation"]: a["quality"] for a in assigned}
    return dg.AssetCheckResult(
        check_name=QUALITY_CHECK.name, asset_key=QUALITY_CHECK.asset_key, passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems),
                  "solutions_used": dg.MetadataValue.json({k: {"tables": v.get("tables"),
                                                               "flux_ratio": v.get("flux_ratio"),
                                                               "phase_scatter_deg": v.get("phase_scatter_deg")}
                                                           for k, v in used.items()})},
    )


def gains_check(pipeline: PipelineResource, solved) -> dg.AssetCheckResult:
    """Compare solutions with the simulator's truth file, when there is one."""
    from ..naming import truth_file_name
    from ..sim.sky import Truth
    from ..stages.calibration import antenna_gains, channel_frequencies, gain_errors

    results, problems = {}, []
    for g, o in solved:
        sol = o.solution
        truth_path = Path(pipeline.input_dir) / truth_file_name(g.group_id)
        if not truth_path.exists():
            continue
        truth = Truth.read(truth_path)
        measured = antenna_gains(g.ms_path, sol.table_list(), pipeline.scratch_path)
        # the MS holds conjugated UVH5 visibilities, so CASA's gains are the conjugate
        expected = np.conj(truth.total_gains(channel_frequencies(g.ms_path)))
        err = gain_errors(measured, expected)
        results[g.group_id] = err
        if err["amplitude_error_max"] > 0.01 or err["phase_error_max_deg"] > 1.0 or err["solutions_missing"]:
            problems.append(f"{g.group_id}: {err}")
    return dg.AssetCheckResult(
        check_name=GAINS_CHECK.name, asset_key=GAINS_CHECK.asset_key, passed=not problems,
        metadata={"simulated_solutions": len(results), "errors": dg.MetadataValue.json(results),
                  "problems": dg.MetadataValue.json(problems)},
    )


@dg.asset(
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    deps=[measurement_set, calibration_tables],
    check_specs=[FLAGGED_CHECK],
    group_name="calibration",
    kinds={"casa"},
    description=(
        "Each observation flagged (zeros, dead antennas, RFI) and calibrated with its assigned solution: "
        "a copy of the Measurement Set with CORRECTED_DATA and calibrated weights."
    ),
)
def calibrated_ms(context: dg.AssetExecutionContext, pipeline: PipelineResource,
                  calibration: CalibrationResource) -> dg.MaterializeResult:
    attach_log_file()
    db = pipeline.products()
    stage = calibration.stage(pipeline.output_path, pipeline.scratch_path)
    results = []
    for g in _window_groups(pipeline, context.partition_key):
        assignment = db.assignment(g.group_id)
        if assignment is None:
            raise dg.Failure(f"{g.group_id} has no calibration assignment: materialize calibration_tables first")
        solution = db.solution(assignment["solution_group_id"])
        with log_context(partition=context.partition_key, run_id=context.run.run_id, stage="applycal",
                         observation=g.group_id):
            try:
                res = stage.execute_apply(g.group_id, g.ms_path, Path(solution["path"]))
            except DSA110Error as exc:
                raise dg.Failure(description=f"{g.group_id}: {exc}") from exc
        metrics.STAGE_DURATION.labels("applycal").observe(sum(res.timings_s.values()))
        db.record_calibrated_ms(group_id=g.group_id, partition_key=context.partition_key, path=str(res.ms_path),
                                solution_group_id=solution["group_id"],
                                flagged_fraction=res.flags["fraction_after_applycal"])
        context.log.info(f"calibrated {g.group_id} with the solution of {solution['group_id']}")
        results.append((res, solution))
    metadata = {"n_observations": len(results)}
    if results:
        res, solution = results[0]
        metadata.update({
            "path": dg.MetadataValue.path(str(res.ms_path)),
            "solution_partition": solution["partition_key"],
            "calibrator": solution["calibrator"],
            "fraction_flagged": res.flags["fraction_after_applycal"],
            "rfi_fraction": res.flags["rfi_fraction"],
            "dead_antennas": dg.MetadataValue.json(res.flags["dead_antennas"]),
            "timings_s": dg.MetadataValue.json({k: round(v, 2) for k, v in res.timings_s.items()}),
        })
    worst = max((r.flags["fraction_after_applycal"] for r, _ in results), default=0.0)
    check = dg.AssetCheckResult(check_name=FLAGGED_CHECK.name, asset_key=FLAGGED_CHECK.asset_key,
                                passed=bool(worst <= MAX_FLAGGED), metadata={"worst_fraction_flagged": float(worst)})
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
