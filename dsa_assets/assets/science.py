"""Science assets: photometry of every image, hourly mosaics and their photometry, and the
variability table with light curves."""

import time

import dagster as dg
import numpy as np

from resources.pipeline import PipelineResource
from resources.science import ScienceResource

from .. import partitions
from .common import for_each_observation, refuse_removed, step, thumbnail_markdown
from .images import image


def _image_row(image_id: str, kind: str, partition_key: str, path, epoch_unix: float, result, n_inputs=1):
    from ..stages.imaging import image_extent

    ra, dec, half_diagonal = image_extent(path)
    # plain floats: database drivers such as psycopg2 do not adapt numpy scalars
    return {
        "image_id": image_id, "kind": kind, "partition_key": partition_key, "path": str(path),
        "epoch_unix": float(epoch_unix), "centre_ra_deg": ra, "centre_dec_deg": dec,
        "radius_deg": float(half_diagonal / np.sqrt(2)), "rms_jy": float(result.rms_jy),
        "beam_major_arcsec": float(result.beam_arcsec[0]), "beam_minor_arcsec": float(result.beam_arcsec[1]),
        "beam_pa_deg": float(result.beam_arcsec[2]), "n_inputs": int(n_inputs),
    }


def _measurement_rows(result, epoch_unix: float) -> list[dict]:
    return [{"source_name": m.source, "epoch_unix": float(epoch_unix), "kind": m.kind, "flux_jy": float(m.flux_jy),
             "flux_err_jy": float(m.flux_err_jy), "local_rms_jy": float(m.local_rms_jy), "snr": float(m.snr),
             "flags": m.flags} for m in result.measurements]


def _measure_and_record(db, science, reference, stage_call, image_id, kind, partition_key, path, epoch_unix,
                        n_inputs=1):
    """Forced photometry at the ``reference`` sources and those found so far, blind detections,
    new sources; all recorded for ``image_id`` in one transaction. Returns (result, new)."""
    from ..stages.photometry import new_source_candidates

    result = stage_call(science.catalogue_sources(reference, db))
    row = _image_row(image_id, kind, partition_key, path, epoch_unix, result, n_inputs)
    new = new_source_candidates(result, db.images_before(epoch_unix, kind), science.new_source_factor)
    new_rows = [{"name": m.source, "ra_deg": float(m.ra_deg) % 360.0, "dec_deg": float(m.dec_deg),
                 "in_catalogue": False, "first_image_id": image_id} for m in new]
    db.record_photometry(row, _measurement_rows(result, epoch_unix), new_rows)
    return result, new


@dg.asset(
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    deps=[image],
    group_name="science",
    kinds={"python", "sqlite"},
    description=(
        "Forced photometry (restoring-beam fits) at the reference catalogue's positions and blind "
        "detections on each observation's beam-corrected image, stored in the products database; "
        "detections absent from the catalogue and bright enough to have been seen before are new sources."
    ),
)
def photometry(context: dg.AssetExecutionContext, pipeline: PipelineResource, science: ScienceResource):
    products = pipeline.catalogue()
    stage = science.photometry_stage()

    def measure(obs):
        files = obs.images
        context.log.info(f"{obs.group_id}: measuring {files['image'].name}")
        t = time.perf_counter()
        result, new = _measure_and_record(
            products.db, science, pipeline.reference_sources(),
            lambda s: stage.execute_observation(files["image"], files["residual"], files["pb"], s, psf=files["psf"]),
            obs.group_id, "observation", context.partition_key, files["image"], obs.mid_unix)
        context.log.info(f"{obs.group_id}: {len(result.forced())} forced, {len(result.blind())} blind, "
                         f"{len(new)} new in {time.perf_counter() - t:.1f} s; errors scaled by "
                         f"{result.error_scale:.2f} (blank sky)")
        return result, new

    observations = products.in_window(context.partition_key)
    refuse_removed(observations, "images")
    done = [r for _, r in for_each_observation(
        context, [o for o in observations if o.has("image")], "photometry", measure)]
    metadata = {"n_images": len(done)}
    if done:
        result, _ = done[0]
        metadata.update({
            "n_forced": sum(len(r.forced()) for r, _ in done),
            "n_blind": sum(len(r.blind()) for r, _ in done),
            "n_matched": sum(sum(1 for m in r.blind() if m.matched) for r, _ in done),
            "new_sources": dg.MetadataValue.json([m.source for _, n in done for m in n]),
            "median_noise_mjy": round(result.rms_jy * 1e3, 4),
            "error_scale": round(max(r.error_scale for r, _ in done), 3),
            "photometry_s": round(sum(sum(r.timings_s.values()) for r, _ in done), 2),
        })
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    partitions_def=partitions.HOURLY_PARTITIONS,
    deps=[image],
    group_name="science",
    kinds={"python", "fits"},
    description=(
        "The hour's observation images on one grid, primary-beam and noise weighted "
        "(sum PB I / sigma^2 / sum PB^2 / sigma^2), with noise and weight maps; windows without an "
        "image are listed as gaps."
    ),
)
def mosaic(context: dg.AssetExecutionContext, pipeline: PipelineResource):
    from ..stages.mosaic import MosaicConfig, MosaicInput, MosaicStage

    observations = pipeline.catalogue().in_hour(context.partition_key)
    refuse_removed(observations, "images")
    imaged = [o for o in observations if o.has("image")]
    inputs = [MosaicInput(o.group_id, o.images["image"], o.images["residual"], o.images["pb"], o.images.get("psf"))
              for o in imaged]
    gaps = sorted(set(partitions.windows_in(*partitions.hour_bounds(context.partition_key))) - {o.window for o in imaged})
    if not inputs:
        raise dg.Failure(description=f"no observation images in {context.partition_key}",
                         metadata={"gaps": dg.MetadataValue.json(gaps)})
    context.log.info(f"{context.partition_key}: mosaicking {len(inputs)} image(s), {len(gaps)} gap(s)")
    stage = MosaicStage(MosaicConfig(pipeline.output_path, pipeline.scratch_path))
    with step(context, "mosaic"):
        result = stage.execute(context.partition_key, inputs)
    m = result.metrics
    return dg.MaterializeResult(metadata={
        "n_inputs": result.n_inputs,
        "inputs": dg.MetadataValue.json(result.inputs),
        "gaps": dg.MetadataValue.json(gaps),
        "path": dg.MetadataValue.path(str(result.paths["image"])),
        "noise_path": dg.MetadataValue.path(str(result.paths["noise"])),
        "noise_median_mjy": round(m["noise_median_jy"] * 1e3, 4),
        "noise_min_mjy": round(m["noise_min_jy"] * 1e3, 4),
        "noise_p90_mjy": round(m["noise_p90_jy"] * 1e3, 4),
        "peak_jy": round(m["peak_jy"], 4),
        "mosaic_s": round(sum(result.timings_s.values()), 1),
        "thumbnail": dg.MetadataValue.md(thumbnail_markdown(result.thumbnail)),
    })


@dg.asset(
    partitions_def=partitions.HOURLY_PARTITIONS,
    deps=[mosaic],
    group_name="science",
    kinds={"python", "sqlite"},
    description="Forced photometry and blind detections on the hourly mosaic, with its noise map.",
)
def mosaic_photometry(context: dg.AssetExecutionContext, pipeline: PipelineResource, science: ScienceResource):
    products = pipeline.catalogue()
    made = products.mosaic(context.partition_key)
    if not made.exists:
        raise dg.Failure(description=f"no mosaic of {context.partition_key}: materialize mosaic first")
    files = made.files
    start, end = partitions.hour_bounds(context.partition_key)
    context.log.info(f"{context.partition_key}: measuring {files['image'].name}")
    stage = science.photometry_stage()
    # mosaics made before residual and dirty-beam products were kept are fitted with the restoring beam
    with step(context, "mosaic_photometry"):
        result, new = _measure_and_record(
            products.db, science, pipeline.reference_sources(),
            lambda s: stage.execute_mosaic(files["image"], files["noise"], s, files.get("residual"), files.get("psf")),
            f"mosaic:{context.partition_key}", "mosaic", context.partition_key, files["image"],
            (start.timestamp() + end.timestamp()) / 2)
    return dg.MaterializeResult(metadata={
        "n_forced": len(result.forced()), "n_blind": len(result.blind()),
        "new_sources": dg.MetadataValue.json([m.source for m in new]),
        "median_noise_mjy": round(result.rms_jy * 1e3, 4),
        "error_scale": round(result.error_scale, 3),
    })


@dg.asset(
    deps=[photometry],
    group_name="science",
    kinds={"python", "csv"},
    description=(
        "Every source's light curve from the observation images' forced photometry, with the VAST "
        "variability statistics (V, eta, and Vs, m of the most significant pair); variable sources get "
        "a PNG light curve. Written to <output>/variability/."
    ),
)
def variability(context: dg.AssetExecutionContext, pipeline: PipelineResource):
    from ..stages.variability import VariabilityConfig, VariabilityStage

    db = pipeline.products()
    with step(context, "variability"):
        result = VariabilityStage(VariabilityConfig(pipeline.output_path, pipeline.scratch_path)).execute(db)
    context.log.info(f"light curves of {len(result.rows)} source(s), {len(result.variable)} variable")
    metadata = {
        "n_sources": len(result.rows),
        "n_variable": len(result.variable),
        "variable_sources": dg.MetadataValue.json([v.name for v in result.variable]),
        "new_sources": dg.MetadataValue.json([s["name"] for s in db.new_sources()]),
        "table": dg.MetadataValue.md(result.markdown()),
        "path": dg.MetadataValue.path(str(result.table)),
    }
    if result.variable:
        metadata["light_curve"] = dg.MetadataValue.md(thumbnail_markdown(result.variable[0].plot, width=480))
    return dg.MaterializeResult(metadata=metadata)
