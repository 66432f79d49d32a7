"""The ``image`` asset: one 5-minute window's observations imaged, with QA metadata, a
thumbnail in the UI, and checks against the thermal noise and the pixel sampling."""

import time

import dagster as dg

from resources.imaging import ImagingResource
from resources.pipeline import PipelineResource

from .. import metrics, naming, partitions
from ..stages.peeling import read_record, read_subtracted
from .calibration import calibrated_ms
from .checks import NOISE_CHECK, SAMPLING_CHECK, SELFCAL_CHECK, noise_check, sampling_check, selfcal_check
from .common import for_each_observation, peeled_markdown, thumbnail_markdown


@dg.asset(
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    deps=[calibrated_ms],
    check_specs=[NOISE_CHECK, SAMPLING_CHECK, SELFCAL_CHECK],
    group_name="observations",
    kinds={"wsclean", "fits"},
    tags={"dsa110/heavy": "imaging"},
    description=(
        "Restored, residual, PSF, model, primary-beam and primary-beam-corrected FITS images of each "
        "calibrated observation of the window (WSClean by default, CASA tclean as the alternative)."
    ),
)
def image(context: dg.AssetExecutionContext, pipeline: PipelineResource, imaging: ImagingResource):
    products = pipeline.catalogue()
    stage = imaging.stage(pipeline.output_path, pipeline.scratch_path)

    peeled, subtracted = {}, {}

    def image_one(obs):
        ms_path = obs.require("calibrated_ms")
        result = stage.execute(group_id=obs.group_id, ms_path=ms_path)
        peeled[obs.group_id], subtracted[obs.group_id] = read_record(ms_path), len(read_subtracted(ms_path))
        m = result.metrics
        products.db.record_observation_image(
            group_id=obs.group_id, partition_key=context.partition_key,
            directory=str(naming.image_dir(pipeline.output_path, obs.group_id)), imager=m["imager"],
            rms_jy=float(m["rms_jy"]), rms_over_thermal=float(m["rms_over_thermal"]))
        metrics.LATENCY.labels("image").observe(max(time.time() - obs.last_arrival_unix, 0.0))
        context.log.info(f"imaged {obs.group_id}: rms {m['rms_jy'] * 1e3:.3f} mJy/beam")
        return result

    results = [r for _, r in for_each_observation(
        context, products.in_window(context.partition_key, having=("measurement_set",)), "imaging", image_one)]
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
            "peeled": dg.MetadataValue.md(peeled_markdown(peeled[first.group_id], m["restored"])),
            "subtracted_outside": subtracted[first.group_id],
            "self_calibration": dg.MetadataValue.json(m["self_calibration"]),
        })
    return dg.MaterializeResult(metadata=metadata,
                                check_results=[noise_check(results), sampling_check(results), selfcal_check(results)])
