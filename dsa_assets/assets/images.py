"""The ``image`` asset: one 5-minute window's observations imaged, with QA metadata,
a thumbnail in the UI, and checks against the thermal noise."""

import base64
import time
from pathlib import Path

import dagster as dg

from resources.imaging import ImagingResource
from resources.pipeline import PipelineResource

from .. import metrics, partitions
from ..logs import attach_log_file, log_context
from .calibration import calibrated_ms

RECOVERY_CHECK = dg.AssetCheckSpec(
    name="simulated_sources_recovered",
    asset="image",
    description=(
        "For simulated observations (a truth file beside the subbands): every source above 10 sigma "
        "lies within 1/5 of the beam of its true position, with its flux within 5% (+3 sigma) after "
        "primary-beam correction. Real observations have no truth file; the check records that."
    ),
)

NOISE_CHECK = dg.AssetCheckSpec(
    name="rms_near_thermal",
    asset="image",
    description="Residual rms of every image is at most 1.5 x the thermal expectation from the SEFD.",
)


SAMPLING_CHECK = dg.AssetCheckSpec(
    name="pixels_sample_the_beam",
    asset="image",
    description=(
        "Every image has at least 5 pixels across the restoring beam's minor axis and no baseline "
        "beyond its uv grid (1 / (2 x pixel) wavelengths): coarser pixels drop the longest baselines "
        "and lower fitted fluxes by percents depending on where a source falls within its pixel."
    ),
)


def sampling_check(results) -> dg.AssetCheckResult:
    from ..stages.imaging import undersampled

    worst_pixels = min((r.metrics["pixels_per_beam"] for r in results), default=float("inf"))
    worst_outside = max((r.metrics["uv_outside_grid_fraction"] for r in results), default=0.0)
    return dg.AssetCheckResult(
        check_name=SAMPLING_CHECK.name,
        asset_key=SAMPLING_CHECK.asset_key,
        passed=not any(undersampled(r.metrics) for r in results),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"fewest_pixels_per_beam": round(float(worst_pixels), 2) if results else None,
                  "largest_fraction_of_baselines_beyond_grid": round(float(worst_outside), 4)},
    )


def thumbnail_markdown(png_path, width: int = 360) -> str:
    data = base64.b64encode(open(png_path, "rb").read()).decode()
    return f'<img src="data:image/png;base64,{data}" width="{width}"/>'


@dg.asset(
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    deps=[calibrated_ms],
    check_specs=[NOISE_CHECK, RECOVERY_CHECK, SAMPLING_CHECK],
    group_name="observations",
    kinds={"wsclean", "fits"},
    tags={"dsa110/heavy": "imaging"},
    description=(
        "Restored, residual, PSF, model, primary-beam and primary-beam-corrected FITS images of each "
        "calibrated observation of the window (WSClean by default, CASA tclean as the alternative)."
    ),
)
def image(context: dg.AssetExecutionContext, pipeline: PipelineResource, imaging: ImagingResource):
    start, end = partitions.window_bounds(context.partition_key)
    groups = [g for g in pipeline.queue().groups_between(start, end) if g.state == "completed" and g.ms_path]
    db = pipeline.products()
    stage = imaging.stage(pipeline.output_path, pipeline.scratch_path)
    attach_log_file()
    results = []
    for g in groups:
        with log_context(partition=context.partition_key, run_id=context.run.run_id, stage="imaging",
                         observation=g.group_id):
            calibrated = db.calibrated_ms(g.group_id)
            if calibrated is None:
                raise dg.Failure(f"{g.group_id} has no calibrated Measurement Set: materialize calibrated_ms first")
            result = stage.execute(group_id=g.group_id, ms_path=calibrated["path"])
        metrics.STAGE_DURATION.labels("imaging").observe(result.wall_time_s)
        metrics.LATENCY.labels("image").observe(max(time.time() - g.last_arrival, 0.0))
        context.log.info(f"imaged {g.group_id}: rms {result.metrics['rms_jy'] * 1e3:.3f} mJy/beam")
        results.append(result)
    metadata = {"n_images": len(results), "observations": ", ".join(r.group_id for r in results)}
    if results:
        first = results[0]
        m = first.metrics
        metadata.update({
            "path": dg.MetadataValue.path(str(first.images["image"])),
            "pbcor_path": dg.MetadataValue.path(str(first.images["pbcor"])),
            "rms_mjy": round(m["rms_jy"] * 1e3, 4),
            "rms_over_thermal": round(m["rms_over_thermal"], 3),
            "peak_jy": round(m["peak_jy"], 4),
            "dynamic_range": round(m["dynamic_range"], 1),
            "beam_arcsec": f'{m["beam_major_arcsec"]:.1f} x {m["beam_minor_arcsec"]:.1f} @ {m["beam_pa_deg"]:.0f} deg',
            "pixels_per_beam": round(m["pixels_per_beam"], 2),
            "n_sources_5sigma": m["n_sources_5sigma"],
            "imager": m["imager"],
            "imaging_s": round(sum(r.wall_time_s for r in results), 1),
            "thumbnail": dg.MetadataValue.md(thumbnail_markdown(first.thumbnail)),
        })
    worst = max((r.metrics["rms_over_thermal"] for r in results), default=0.0)
    check = dg.AssetCheckResult(
        check_name=NOISE_CHECK.name,
        asset_key=NOISE_CHECK.asset_key,
        passed=bool(worst <= 1.5),
        metadata={"worst_rms_over_thermal": float(worst)},
    )
    return dg.MaterializeResult(metadata=metadata,
                                check_results=[check, recovery_check(pipeline, results), sampling_check(results)])


def recovery_check(pipeline: PipelineResource, results) -> dg.AssetCheckResult:
    """Compare each image with the simulator's truth file, when there is one."""
    from ..naming import truth_file_name
    from ..sim.sky import Truth
    from ..stages.imaging import recovery_problems, source_recovery

    rows, problems, simulated = [], [], 0
    for r in results:
        truth_path = Path(pipeline.input_dir) / truth_file_name(r.group_id)
        if not truth_path.exists():
            continue
        simulated += 1
        found = source_recovery(r.images["image"], r.images["pb"], Truth.read(truth_path).sources, r.metrics["rms_jy"])
        rows += found
        problems += recovery_problems(found)
    return dg.AssetCheckResult(
        check_name=RECOVERY_CHECK.name,
        asset_key=RECOVERY_CHECK.asset_key,
        passed=not problems,
        metadata={
            "simulated_observations": simulated,
            "sources_measured": len(rows),
            "problems": dg.MetadataValue.json(problems),
            "sources": dg.MetadataValue.json([{k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}
                                              for row in rows]),
        },
    )
