"""Asset checks: the specs and their Dagster results. The logic and tolerances are
:mod:`dsa_assets.qa` (plain Python); this module only words them for the UI.

Checks that compare products with a simulation's truth (``TRUTH_CHECKS``) are separate check
definitions that read the products back through the catalogue; the definitions register them
only for a deployment whose input is simulated (``--simulated``).
"""


import dagster as dg

from resources.pipeline import PipelineResource

from .. import qa
from ..truth import read_truth


def _result(spec: dg.AssetCheckSpec, passed: bool, severity=dg.AssetCheckSeverity.ERROR, **metadata):
    return dg.AssetCheckResult(check_name=spec.name, asset_key=spec.asset_key, passed=bool(passed),
                               severity=severity, metadata=metadata)


# -- checks made inside their asset's step ---------------------------------------------------

MS_CHECK = dg.AssetCheckSpec(
    name="ms_matches_inputs", asset="measurement_set", blocking=True,
    description="Every Measurement Set opens in casatools with the rows, channels and subbands of its inputs.",
)
QUALITY_CHECK = dg.AssetCheckSpec(
    name="solution_quality", asset="calibration_tables",
    description=(
        "Every solution solved in this window is usable: median gain SNR and flagged-solution fraction "
        "within the calibration settings' limits; the calibrated calibrator's flux within "
        f"{qa.CALIBRATOR_FLUX_TOLERANCE:.0%} of its model and its phase scatter below "
        f"{qa.MAX_PHASE_SCATTER_DEG:g} deg. Windows that borrow a solution report its figures."
    ),
)
FLAGGED_CHECK = dg.AssetCheckSpec(
    name="fraction_flagged", asset="calibrated_ms",
    description=f"At most {qa.MAX_FLAGGED_FRACTION:.0%} of each calibrated Measurement Set is flagged.",
)
NOISE_CHECK = dg.AssetCheckSpec(
    name="rms_near_thermal", asset="image",
    description=f"Residual rms of every image is at most {qa.MAX_RMS_OVER_THERMAL:g} x the thermal expectation "
                "from the SEFD.",
)
SAMPLING_CHECK = dg.AssetCheckSpec(
    name="pixels_sample_the_beam", asset="image",
    description=(
        "Every image has enough pixels across the restoring beam's minor axis and no baseline beyond its "
        "uv grid (1 / (2 x pixel) wavelengths): coarser pixels drop the longest baselines and lower "
        "fitted fluxes by percents depending on where a source falls within its pixel."
    ),
)
SELFCAL_CHECK = dg.AssetCheckSpec(
    name="self_calibration_helped", asset="image",
    description=(
        "With --self-calibration, its first (phase-only) round was kept on every image: it lowered the "
        "residual rms and raised the dynamic range. A round that does not help is undone, so a failure "
        "costs nothing but says the data could not support it (faint field, bad model). Passes when off."
    ),
)
_CATALOGUE_WORDS = (
    f"Each image against the reference catalogue: the median measured / catalogue flux of the reference "
    f"sources above {qa.CATALOGUE_SNR:g} sigma and unblended within {qa.FLUX_SCALE_TOLERANCE:.0%} of 1, and "
    f"the median offset of their detections within {qa.ASTROMETRY_TOLERANCE_BEAMS:g} of the beam's minor "
    f"axis (fewer than {qa.MIN_CATALOGUE_SOURCES} such sources say nothing). An image that fails is kept, "
    "and its measurements are flagged bad_image: shown in light curves, left out of their statistics."
)
CATALOGUE_CHECK = dg.AssetCheckSpec(name="held_to_catalogue", asset="photometry", description=_CATALOGUE_WORDS)
MOSAIC_CATALOGUE_CHECK = dg.AssetCheckSpec(name="held_to_catalogue", asset="mosaic_photometry",
                                           description=_CATALOGUE_WORDS)
AGREEMENT_CHECK = dg.AssetCheckSpec(
    name="wsclean_tclean_agree", asset="imager_cross_check",
    description=f"Every source above {qa.CROSSCHECK_SNR:g} sigma has WSClean and tclean fluxes within "
                f"{qa.CROSSCHECK_TOLERANCE:.0%} (+{qa.NOISE_ALLOWANCE_SIGMA:g} sigma).",
)


def catalogue_check(spec: dg.AssetCheckSpec, measured: dict) -> dg.AssetCheckResult:
    """``measured``: image id -> the image measured (its catalogue comparison and problems).
    A warning, not an error: the image stays, its measurements flagged."""
    failed = {image_id: m.problems for image_id, m in measured.items() if m.problems}
    return _result(spec, not failed, severity=dg.AssetCheckSeverity.WARN,
                   excluded_from_light_curves=dg.MetadataValue.json(failed),
                   flux_ratio=dg.MetadataValue.json({k: m.comparison.flux_ratio for k, m in measured.items()}),
                   offset_arcsec=dg.MetadataValue.json({k: [m.comparison.offset_ra_arcsec, m.comparison.offset_dec_arcsec]
                                                         for k, m in measured.items()}))


def ms_check(results, n_subbands: int) -> dg.AssetCheckResult:
    from ..stages.ms_inspect import inspect_ms

    problems, details = [], {}
    for r in results:
        details[r.group_id] = found = inspect_ms(r.ms_path)
        problems += qa.ms_problems(r, found, n_subbands)
    return _result(MS_CHECK, not problems, problems=dg.MetadataValue.json(problems),
                   measurement_sets=dg.MetadataValue.json(details))


def quality_check(solved, assigned, solve_failures) -> dg.AssetCheckResult:
    """``solved``: (observation, ObservationCalibration) pairs solved here; ``assigned``: the
    assignments made; ``solve_failures``: observation -> why its solve failed."""
    problems = [f"{gid}: {reason}" for gid, reason in solve_failures.items()]
    for obs, o in solved:
        problems += [f"{obs.group_id}: {p}" for p in o.problems + qa.calibrator_problems(o.solution.quality)]
    used = {a["solution_observation"]: a["quality"] for a in assigned}
    summary = {k: {f: v.get(f) for f in ("tables", "flux_ratio", "phase_scatter_deg")} for k, v in used.items()}
    return _result(QUALITY_CHECK, not problems, problems=dg.MetadataValue.json(problems),
                   solutions_used=dg.MetadataValue.json(summary))


def flagged_check(fractions: list[float]) -> dg.AssetCheckResult:
    worst = max(fractions, default=0.0)
    return _result(FLAGGED_CHECK, worst <= qa.MAX_FLAGGED_FRACTION, worst_fraction_flagged=float(worst))


def noise_check(results) -> dg.AssetCheckResult:
    worst = max((r.metrics["rms_over_thermal"] for r in results), default=0.0)
    return _result(NOISE_CHECK, qa.noise_passes(worst), worst_rms_over_thermal=float(worst))


def sampling_check(results) -> dg.AssetCheckResult:
    from ..stages.imaging import undersampled

    worst_pixels = min((r.metrics["pixels_per_beam"] for r in results), default=float("inf"))
    worst_outside = max((r.metrics["uv_outside_grid_fraction"] for r in results), default=0.0)
    return _result(SAMPLING_CHECK, not any(undersampled(r.metrics) for r in results), dg.AssetCheckSeverity.WARN,
                   fewest_pixels_per_beam=round(float(worst_pixels), 2) if results else None,
                   largest_fraction_of_baselines_beyond_grid=round(float(worst_outside), 4))


def selfcal_check(results) -> dg.AssetCheckResult:
    rounds = [r.metrics.get("self_calibration") or [] for r in results]
    tried = [r for r in rounds if r]
    unhelped = sum(1 for r in tried if not r[0]["accepted"])
    return _result(SELFCAL_CHECK, unhelped == 0, dg.AssetCheckSeverity.WARN, images_self_calibrated=len(tried),
                   images_first_round_not_kept=unhelped)


def agreement_check(rows: list[dict], problems: list[str]) -> dg.AssetCheckResult:
    return _result(AGREEMENT_CHECK, bool(rows) and not problems, sources_compared=len(rows),
                   problems=dg.MetadataValue.json(problems))


# -- checks against a simulation's truth -------------------------------------------------------

@dg.asset_check(
    asset="calibration_tables", name="simulated_gains_recovered",
    description=(
        "For simulated calibrator observations: the total antenna gains K.B.G solved here match the injected "
        f"gains and bandpasses within {qa.GAIN_AMPLITUDE_TOLERANCE:.0%} in amplitude and "
        f"{qa.GAIN_PHASE_TOLERANCE_DEG:g} deg in phase on every antenna, channel and polarisation, "
        f"or within {qa.GAIN_NOISE_SIGMAS:g} sigma of the solutions' own noise (1 / SNR)."
    ),
)
def simulated_gains_recovered(context: dg.AssetCheckExecutionContext, pipeline: PipelineResource):
    import numpy as np

    from ..stages.calibration import antenna_gains, channel_frequencies, gain_errors, solution_tables
    from ..stages.gain_readback import solution_noise

    products = pipeline.catalogue()
    results, problems = {}, []
    for obs in products.in_window(context.op_execution_context.partition_key, having=("measurement_set",)):
        solution, truth = products.db.solution(obs.group_id), read_truth(pipeline.input_dir, obs.group_id)
        if solution is None or truth is None:
            continue
        ms = obs.require("raw_ms")
        tables = solution_tables(solution["path"])
        measured = antenna_gains(ms, tables, pipeline.scratch_path)
        # the MS holds conjugated UVH5 visibilities, so CASA's gains are the conjugate
        expected = np.conj(truth.total_gains(channel_frequencies(ms)))
        results[obs.group_id] = err = gain_errors(measured, expected, solution_noise(tables, expected.shape))
        if qa.gains_miss_truth(err):
            problems.append(f"{obs.group_id}: {err}")
    return dg.AssetCheckResult(passed=not problems, metadata={
        "simulated_solutions": len(results), "errors": dg.MetadataValue.json(results),
        "problems": dg.MetadataValue.json(problems)})


@dg.asset_check(
    asset="image", name="simulated_sources_recovered",
    description=(
        f"For simulated observations: every source above {qa.RECOVERY_SNR:g} sigma lies within "
        f"{qa.RECOVERY_POSITION_BEAMS:g} of the beam of its true position, with its flux within "
        f"{qa.RECOVERY_FLUX_TOLERANCE:.0%} (+{qa.NOISE_ALLOWANCE_SIGMA:g} sigma) after "
        "primary-beam correction."
    ),
)
def simulated_sources_recovered(context: dg.AssetCheckExecutionContext, pipeline: PipelineResource):
    from ..stages.imaging import source_recovery

    products = pipeline.catalogue()
    rows, problems, simulated = [], [], 0
    for obs in products.in_window(context.op_execution_context.partition_key, having=("image",)):
        truth, recorded = read_truth(pipeline.input_dir, obs.group_id), products.db.observation_image(obs.group_id)
        if truth is None or recorded is None:
            continue
        simulated += 1
        found = source_recovery(obs.images["image"], obs.images["pb"], truth.sources, recorded["rms_jy"])
        rows += found
        problems += qa.recovery_problems(found)
    return dg.AssetCheckResult(passed=not problems, metadata={
        "simulated_observations": simulated, "sources_measured": len(rows),
        "problems": dg.MetadataValue.json(problems),
        "sources": dg.MetadataValue.json([{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()}
                                          for r in rows])})


@dg.asset_check(
    asset="photometry", name="forced_fluxes_match_truth",
    description=(
        f"For simulated observations: forced fluxes of the simulated sources truly above {qa.PULL_SNR:g} sigma agree with "
        f"their true flux densities within their errors: pull mean within +-{qa.MAX_PULL_MEAN:g} and standard "
        f"deviation below {qa.MAX_PULL_STD:g}."
    ),
)
def forced_fluxes_match_truth(context: dg.AssetCheckExecutionContext, pipeline: PipelineResource):
    products = pipeline.catalogue()
    pulls = []
    for obs in products.in_window(context.op_execution_context.partition_key, having=("image",)):
        truth = read_truth(pipeline.input_dir, obs.group_id)
        if truth is not None:
            pulls += qa.forced_pulls(products.db.image_measurements(obs.group_id, "forced"), truth)
    summary = qa.summarize_pulls(pulls)
    if summary.enough:
        metadata = {"pulls": summary.n, "pull_mean": summary.mean, "pull_std": summary.std}
    else:
        metadata = {"pulls": summary.n,
                    "note": f"fewer than {qa.MIN_PULLS} simulated sources above {qa.PULL_SNR:g} sigma"}
    return dg.AssetCheckResult(passed=summary.passed, metadata=metadata)


TRUTH_CHECKS = [simulated_gains_recovered, simulated_sources_recovered, forced_fluxes_match_truth]
