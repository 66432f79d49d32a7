"""Science assets: photometry of every image, hourly mosaics and their photometry, and the
variability table with light curves."""

import time
from dataclasses import dataclass, replace

import dagster as dg
import numpy as np

from resources.pipeline import PipelineResource
from resources.science import ScienceResource

from .. import partitions, qa
from ..stages.photometry import with_flag
from .checks import CATALOGUE_CHECK, MOSAIC_CATALOGUE_CHECK, catalogue_check
from .common import for_each_observation, refuse_removed, step, thumbnail_markdown
from .images import image


def _image_row(image_id: str, kind: str, partition_key: str, path, epoch_unix: float, result, n_inputs=1):
    from ..stages.imaging import image_extent

    ra, dec, half_diagonal = image_extent(path)
    # plain floats: database drivers such as psycopg2 do not adapt numpy scalars
    return {
        "image_id": image_id, "kind": kind, "partition_key": partition_key, "path": str(path),
        "epoch_unix": float(epoch_unix), "centre_ra_deg": float(ra), "centre_dec_deg": float(dec),
        "radius_deg": float(half_diagonal / np.sqrt(2)), "rms_jy": float(result.rms_jy),
        "beam_major_arcsec": float(result.beam_arcsec[0]), "beam_minor_arcsec": float(result.beam_arcsec[1]),
        "beam_pa_deg": float(result.beam_arcsec[2]), "n_inputs": int(n_inputs),
    }


def _forced_rows(result, epoch_unix: float, bad_image: bool = False) -> list[dict]:
    return [{"source_name": m.source, "epoch_unix": float(epoch_unix), "kind": "forced", "flux_jy": float(m.flux_jy),
             "flux_err_jy": float(m.flux_err_jy), "local_rms_jy": float(m.local_rms_jy), "snr": float(m.snr),
             "flags": with_flag(m.flags, "bad_image" if bad_image else "")} for m in result.forced()]


def _detection_rows(result, new: set[int], bad_image: bool = False) -> list[dict]:
    """The blind detections as :meth:`ProductsDB.record_photometry` takes them; ``new``: the ids
    of those bright enough that earlier images would have shown them."""
    return [{"source_name": m.matched, "ra_deg": float(m.ra_deg) % 360.0, "dec_deg": float(m.dec_deg),
             "ra_err_arcsec": float(m.ra_err_arcsec), "dec_err_arcsec": float(m.dec_err_arcsec),
             "flux_jy": float(m.flux_jy), "flux_err_jy": float(m.flux_err_jy), "local_rms_jy": float(m.local_rms_jy),
             "snr": float(m.snr), "de_ruiter": m.de_ruiter, "new": id(m) in new,
             "flags": with_flag(m.flags, "bad_image" if bad_image else "")} for m in result.blind()]


def _flag_counts(forced) -> dict:
    """``n_<flag>``: how many of the ``forced`` measurements carry each of photometry's flags
    (``qa.UNRELIABLE_FLAGS``)."""
    forced = list(forced)
    return {f"n_{flag}": sum(1 for m in forced if flag in m.flags) for flag in qa.UNRELIABLE_FLAGS}


@dataclass(frozen=True)
class Measured:
    """One image measured and recorded: its photometry, the uncatalogued sources it began (and
    which of them are new), how it compares with the reference catalogue (``problems`` empty:
    its measurements count in light curves) and the earlier images it added measurements to."""

    result: object
    created: list[str]
    new: list[str]
    comparison: qa.CatalogueComparison
    problems: list[str]
    backfilled: int = 0


def _image_frequency_hz(path) -> float | None:
    """The image's frequency (Hz) from its FITS spectral axis, if it has one."""
    from astropy.io import fits

    header = fits.getheader(path)
    axis = next((i for i in range(1, header.get("NAXIS", 0) + 1) if header.get(f"CTYPE{i}", "").startswith("FREQ")), None)
    return float(header[f"CRVAL{axis}"]) if axis else None


def _measure_and_record(db, science, reference, stage_call, image_id, kind, partition_key, path, epoch_unix,
                        n_inputs=1, rms_over_thermal=None):
    """Forced photometry at the ``reference`` sources and those found so far, blind detections
    associated with them or beginning new sources, and the image held to the reference
    catalogue (and, for an observation image, its noise to the thermal expectation): an image
    that fails is kept, its measurements flagged ``bad_image`` (out of light-curve statistics).
    All recorded for ``image_id`` in one transaction."""
    from ..association import MAX_SEPARATION_BEAMS
    from ..stages.photometry import new_source_candidates

    result = stage_call(science.catalogue_sources(reference, db))
    row = _image_row(image_id, kind, partition_key, path, epoch_unix, result, n_inputs)
    comparison = qa.compare_with_catalogue(result.measurements, {s.name: s for s in reference},
                                           _image_frequency_hz(path))
    problems = comparison.problems(result.beam_arcsec[1])
    if science.max_rms_over_thermal and rms_over_thermal and rms_over_thermal > science.max_rms_over_thermal:
        problems.append(f"rms {rms_over_thermal:.1f} x the thermal expectation")
    # earlier images that can cover a detection (within radius x sqrt 2 of this centre): theirs
    # within their radius of it, so centres within 2.5 radii
    earlier = db.images_before(epoch_unix, kind, near=(row["centre_ra_deg"], row["centre_dec_deg"], 2.5 * row["radius_deg"]))
    new = {id(m) for m in new_source_candidates(result, earlier, science.new_source_factor,
                                                 science.new_source_snr(kind, row))}
    associated = db.record_photometry(row, _forced_rows(result, epoch_unix, bool(problems)),
                                      _detection_rows(result, new, bool(problems)),
                                      quality={**comparison.as_dict(), "problems": "; ".join(problems)},
                                      max_separation_arcsec=MAX_SEPARATION_BEAMS * result.beam_arcsec[0])
    return Measured(result, [c["name"] for c in associated.created], [c["name"] for c in associated.created if c["new"]],
                    comparison, problems)


def _backfill(products, science, reference, measured: Measured, before_unix: float) -> int:
    """Forced measurements of the sources an image began (``measured.created``) in that image,
    whose forced fits ran before they existed, and of the new ones among them in the
    observation images of the ``science.backfill_days`` before it (``before_unix``: its epoch)
    that cover them, so that a new source's light curve shows it absent before. (The others
    were too faint for those images: their forced values there would be noise.) Images whose
    files retention removed are skipped. Returns the number of measurements added."""
    from .. import catalogue
    from ..exceptions import ProductsError

    db = products.db
    if not measured.created:
        return 0
    known = science.catalogue_sources(reference, db)
    targets = [s for s in known if s.name in set(measured.created)]
    stage, added = science.photometry_stage(), 0
    centre = targets[0]  # a coarse first cut (10 deg); each image's coverage is checked below
    since = before_unix - science.backfill_days * 86400.0
    # up to a second after the epoch: the finding image itself (the next is 309 s later)
    for img in db.images_before(before_unix + 1.0, "observation", since_unix=since, near=(centre.ra_deg, centre.dec_deg, 10.0)):
        finding = img["epoch_unix"] >= before_unix
        reach = (img["radius_deg"] or 0.0) * np.sqrt(2)
        covering = {t.name for t, sep in zip(targets, catalogue.separation_deg(targets, img["centre_ra_deg"],
                                                                             img["centre_dec_deg"]))
                    if sep <= reach and (finding or t.name in measured.new)}
        try:
            files = products.observation(img["image_id"]).images if covering else None
        except ProductsError:
            files = None
        if not files or not all(files[k].exists() for k in ("image", "residual", "pb", "psf")):
            continue
        result = stage.execute_observation(files["image"], files["residual"], files["pb"], known, psf=files["psf"],
                                           only=covering)
        quality = db.image_quality(img["image_id"]) or {}
        rows = _forced_rows(result, img["epoch_unix"], bool(quality.get("problems")))
        db.add_measurements(img["image_id"], rows)
        added += len(rows)
    return added


@dg.asset(
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    deps=[image],
    check_specs=[CATALOGUE_CHECK],
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
        imaged = products.db.observation_image(obs.group_id) or {}
        reference = pipeline.reference_sources()
        m = _measure_and_record(
            products.db, science, reference,
            lambda s: stage.execute_observation(files["image"], files["residual"], files["pb"], s, psf=files["psf"]),
            obs.group_id, "observation", context.partition_key, files["image"], obs.mid_unix,
            rms_over_thermal=imaged.get("rms_over_thermal"))
        m = replace(m, backfilled=_backfill(products, science, reference, m, obs.mid_unix))
        context.log.info(f"{obs.group_id}: {len(m.result.forced())} forced, {len(m.result.blind())} blind, "
                         f"{len(m.created)} uncatalogued source(s) begun ({len(m.new)} new, {m.backfilled} earlier "
                         f"measurements) in {time.perf_counter() - t:.1f} s; errors scaled by "
                         f"{m.result.error_scale:.2f} (blank sky)")
        if m.problems:
            context.log.warning(f"{obs.group_id}: kept out of light curves: {'; '.join(m.problems)}")
        return m

    observations = products.in_window(context.partition_key)
    refuse_removed(observations, "images")
    done = {obs.group_id: m for obs, m in for_each_observation(
        context, [o for o in observations if o.has("image")], "photometry", measure)}
    metadata = {"n_images": len(done)}
    if done:
        results = [m.result for m in done.values()]
        metadata.update({
            "n_forced": sum(len(r.forced()) for r in results),
            "n_blind": sum(len(r.blind()) for r in results),
            "n_matched": sum(sum(1 for m in r.blind() if m.matched) for r in results),
            "n_uncatalogued_begun": sum(len(m.created) for m in done.values()),
            "n_backfilled": sum(m.backfilled for m in done.values()),
            **_flag_counts(m for r in results for m in r.forced()),
            "new_source_candidates": dg.MetadataValue.json([name for m in done.values() for name in m.new]),
            **_explorer_links(science, [name for m in done.values() for name in m.new], "new_source_candidate_pages"),
            "median_noise_mjy": round(results[0].rms_jy * 1e3, 4),
            "error_scale": round(max(r.error_scale for r in results), 3),
            "photometry_s": round(sum(sum(r.timings_s.values()) for r in results), 2),
            **_catalogue_metadata(done),
        })
    return dg.MaterializeResult(metadata=metadata, check_results=[catalogue_check(CATALOGUE_CHECK, done)])


def _explorer_links(science, names: list[str], label: str) -> dict:
    """Links to the source explorer: its home page, and the pages of ``names`` (markdown,
    under ``label``)."""
    home = science.explorer_link()
    if home is None:
        return {}
    links = {"source_explorer": dg.MetadataValue.url(home)}
    if names:
        links[label] = dg.MetadataValue.md("\n".join(f"- [{n}]({science.explorer_link(n)})" for n in names[:50]))
    return links


def _catalogue_metadata(done: dict) -> dict:
    """The images against the reference catalogue, for the UI."""
    return {
        "catalogue_comparison": dg.MetadataValue.json({k: m.comparison.as_dict() for k, m in done.items()}),
        "excluded_from_light_curves": dg.MetadataValue.json({k: m.problems for k, m in done.items() if m.problems}),
    }


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
    check_specs=[MOSAIC_CATALOGUE_CHECK],
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
        m = _measure_and_record(
            products.db, science, pipeline.reference_sources(),
            lambda s: stage.execute_mosaic(files["image"], files["noise"], s, files.get("residual"), files.get("psf"),
                                           files.get("weight")),
            f"mosaic:{context.partition_key}", "mosaic", context.partition_key, files["image"],
            (start.timestamp() + end.timestamp()) / 2)
    image_id = f"mosaic:{context.partition_key}"
    return dg.MaterializeResult(metadata={
        "n_forced": len(m.result.forced()), "n_blind": len(m.result.blind()),
        **_flag_counts(m.result.forced()),
        "new_source_candidates": dg.MetadataValue.json(m.new),
        **_explorer_links(science, m.new, "new_source_candidate_pages"),
        "median_noise_mjy": round(m.result.rms_jy * 1e3, 4),
        "error_scale": round(m.result.error_scale, 3),
        **_catalogue_metadata({image_id: m}),
    }, check_results=[catalogue_check(MOSAIC_CATALOGUE_CHECK, {image_id: m})])


@dg.asset(
    deps=[photometry],
    group_name="science",
    kinds={"python", "csv"},
    description=(
        "Every source's light curve from the observation images' forced photometry, with the VAST "
        "variability statistics (V, eta, and Vs, m of the most significant pair) and the ESE and trend "
        "search scores; variable sources and ESE candidates get a PNG light curve. Written to "
        "<output>/variability/ and to the products database (source_statistics), where the source "
        "explorer reads them."
    ),
)
def variability(context: dg.AssetExecutionContext, pipeline: PipelineResource, science: ScienceResource):
    from ..stages.variability import VariabilityConfig, VariabilityStage

    db = pipeline.products()
    with step(context, "variability"):
        result = VariabilityStage(VariabilityConfig(pipeline.output_path, pipeline.scratch_path,
                                                    science.expected_false_variables)).execute(db)
    db.record_source_statistics(result.statistics_rows())
    context.log.info(f"light curves of {len(result.rows)} source(s), {len(result.variable)} variable, "
                     f"{len(result.ese_candidates)} ESE candidate(s)")
    metadata = {
        "n_sources": len(result.rows),
        "n_variable": len(result.variable),
        "variable_sources": dg.MetadataValue.json([v.name for v in result.variable]),
        "ese_candidates": dg.MetadataValue.json(result.ese_candidates),
        **_explorer_links(science, result.ese_candidates, "ese_candidate_pages"),
        "new_sources": dg.MetadataValue.json([s["name"] for s in db.new_sources(science.new_source_images)]),
        "new_source_candidates": dg.MetadataValue.json(
            [s["name"] for s in db.new_source_candidates(science.new_source_images)]),
        "table": dg.MetadataValue.md(result.markdown()),
        "path": dg.MetadataValue.path(str(result.table)),
    }
    if result.variable:
        metadata["light_curve"] = dg.MetadataValue.md(thumbnail_markdown(result.variable[0].plot, width=480))
    return dg.MaterializeResult(metadata=metadata)
