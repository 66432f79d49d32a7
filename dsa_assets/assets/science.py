"""Science assets: photometry of every image, hourly mosaics and their photometry, and the
variability table with light curves."""

import csv
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import numpy as np

from resources.pipeline import PipelineResource
from resources.science import ScienceResource

from .. import fsutil, naming, partitions
from ..exceptions import DSA110Error
from ..logs import attach_log_file, log_context
from .images import image, thumbnail_markdown

PULLS_CHECK = dg.AssetCheckSpec(
    name="forced_fluxes_match_truth",
    asset="photometry",
    description=(
        "For simulated observations (truth file beside the subbands): forced fluxes of the simulated "
        "sources above 5 sigma agree with their true flux densities within their errors: pull "
        "distribution mean within +-0.5 and standard deviation below 2."
    ),
)


def _image_row(image_id: str, kind: str, partition_key: str, path: Path, epoch_unix: float, result, n_inputs=1):
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


def _measure_and_record(db, science, stage_call, image_id, kind, partition_key, path, epoch_unix, n_inputs=1):
    """Forced photometry at the catalogue sources within the image, blind detections, new
    sources; all recorded for ``image_id`` in one transaction. Returns (result, new)."""
    from ..stages.photometry import new_source_candidates

    sources = science.catalogue_sources(db)
    result = stage_call(sources)
    row = _image_row(image_id, kind, partition_key, path, epoch_unix, result, n_inputs)
    new = new_source_candidates(result, db.images_before(epoch_unix, kind), science.new_source_factor)
    new_rows = [{"name": m.source, "ra_deg": float(m.ra_deg) % 360.0, "dec_deg": float(m.dec_deg),
                 "in_catalogue": False, "first_image_id": image_id} for m in new]
    db.record_photometry(row, _measurement_rows(result, epoch_unix), new_rows)
    return result, new


@dg.asset(
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    deps=[image],
    check_specs=[PULLS_CHECK],
    group_name="science",
    kinds={"python", "sqlite"},
    description=(
        "Forced photometry (restoring-beam fits) at the reference catalogue's positions and blind "
        "detections on each observation's beam-corrected image, stored in the products database; "
        "detections absent from the catalogue and bright enough to have been seen before are new sources."
    ),
)
def photometry(context: dg.AssetExecutionContext, pipeline: PipelineResource, science: ScienceResource):
    from ..stages.photometry import PhotometryError

    attach_log_file()
    start, end = partitions.window_bounds(context.partition_key)
    db = pipeline.products()
    stage = science.photometry_stage()
    done = []
    for g in pipeline.queue().groups_between(start, end):
        files = naming.image_files(pipeline.output_path, g.group_id)
        if g.state != "completed" or not files["image"].exists():
            continue
        context.log.info(f"{g.group_id}: measuring {files['image'].name}")
        ms_row = db.measurement_set(g.group_id) or {}
        epoch = naming.parse_time(g.group_id).timestamp() + (ms_row.get("duration_s") or 0.0) / 2
        with log_context(partition=context.partition_key, run_id=context.run.run_id, stage="photometry",
                         observation=g.group_id):
            t = time.perf_counter()
            try:
                result, new = _measure_and_record(
                    db, science,
                    lambda s: stage.execute_observation(files["image"], files["residual"], files["pb"], s,
                                                        psf=files["psf"]),
                    g.group_id, "observation", context.partition_key, files["image"], epoch)
            except (PhotometryError, DSA110Error) as exc:
                raise dg.Failure(description=f"{g.group_id}: {exc}") from exc
        context.log.info(f"{g.group_id}: {len(result.forced())} forced, {len(result.blind())} blind, "
                         f"{len(new)} new in {time.perf_counter() - t:.1f} s; errors scaled by "
                         f"{result.error_scale:.2f} (blank sky)")
        done.append((g, result, new))
    metadata = {"n_images": len(done)}
    if done:
        _, result, _ = done[0]
        metadata.update({
            "n_forced": sum(len(r.forced()) for _, r, _ in done),
            "n_blind": sum(len(r.blind()) for _, r, _ in done),
            "n_matched": sum(sum(1 for m in r.blind() if m.matched) for _, r, _ in done),
            "new_sources": dg.MetadataValue.json([m.source for _, _, n in done for m in n]),
            "median_noise_mjy": round(result.rms_jy * 1e3, 4),
            "error_scale": round(max(r.error_scale for _, r, _ in done), 3),
            "photometry_s": round(sum(sum(r.timings_s.values()) for _, r, _ in done), 2),
        })
    return dg.MaterializeResult(metadata=metadata, check_results=[pulls_check(pipeline, done)])


def pulls_check(pipeline: PipelineResource, done) -> dg.AssetCheckResult:
    from ..sim.sky import Truth

    pulls = []
    for g, result, _ in done:
        truth_path = Path(pipeline.input_dir) / naming.truth_file_name(g.group_id)
        if not truth_path.exists():
            continue
        truth = {s.name: s.flux_jy for s in Truth.read(truth_path).sources}
        pulls += [(m.flux_jy - truth[m.source]) / m.flux_err_jy for m in result.forced()
                  if m.source in truth and m.snr > 5]
    if len(pulls) < 5:
        return dg.AssetCheckResult(check_name=PULLS_CHECK.name, asset_key=PULLS_CHECK.asset_key, passed=True,
                                   metadata={"pulls": len(pulls), "note": "too few simulated sources above 5 sigma"})
    mean, std = float(np.mean(pulls)), float(np.std(pulls))
    return dg.AssetCheckResult(
        check_name=PULLS_CHECK.name, asset_key=PULLS_CHECK.asset_key, passed=bool(abs(mean) < 0.5 and std < 2.0),
        metadata={"pulls": len(pulls), "pull_mean": mean, "pull_std": std},
    )


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
def mosaic(context: dg.AssetExecutionContext, pipeline: PipelineResource, science: ScienceResource):
    from ..stages.mosaic import MosaicConfig, MosaicInput, MosaicStage

    attach_log_file()
    start, end = partitions.hour_bounds(context.partition_key)
    inputs, windows_with_images = [], set()
    for g in pipeline.queue().groups_between(start, end):
        files = naming.image_files(pipeline.output_path, g.group_id)
        if g.state == "completed" and files["image"].exists():
            inputs.append(MosaicInput(g.group_id, files["image"], files["residual"], files["pb"], files["psf"]))
            windows_with_images.add(partitions.window_key(g.start))
    windows = partitions.windows_in(start, end)
    gaps = [w for w in windows if w not in windows_with_images]
    if not inputs:
        raise dg.Failure(description=f"no observation images in {context.partition_key}",
                         metadata={"gaps": dg.MetadataValue.json(gaps)})
    context.log.info(f"{context.partition_key}: mosaicking {len(inputs)} image(s), {len(gaps)} gap(s)")
    with log_context(partition=context.partition_key, run_id=context.run.run_id, stage="mosaic"):
        result = MosaicStage(MosaicConfig(pipeline.output_path, pipeline.scratch_path)).execute(
            context.partition_key, inputs)
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
    from ..stages.mosaic import mosaic_dir

    stem = context.partition_key.replace(":", "")
    d = mosaic_dir(pipeline.output_path, context.partition_key)
    image_path, noise_path = d / f"{stem}-image.fits", d / f"{stem}-noise.fits"
    # mosaics made before residual and dirty-beam products were kept are fitted with the restoring beam
    residual_path, psf_path = (p if p.exists() else None for p in (d / f"{stem}-residual.fits", d / f"{stem}-psf.fits"))
    start, end = partitions.hour_bounds(context.partition_key)
    context.log.info(f"{context.partition_key}: measuring {image_path.name}")
    stage = science.photometry_stage()
    db = pipeline.products()
    try:
        result, new = _measure_and_record(
            db, science, lambda s: stage.execute_mosaic(image_path, noise_path, s, residual_path, psf_path),
            f"mosaic:{context.partition_key}", "mosaic", context.partition_key, image_path,
            (start.timestamp() + end.timestamp()) / 2)
    except DSA110Error as exc:
        raise dg.Failure(description=str(exc)) from exc
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
    from .. import variability as var

    db = pipeline.products()
    names = db.measured_sources()
    context.log.info(f"light curves of {len(names)} source(s)")
    rows, flagged = [], []
    for name in names:
        lc = db.light_curve(name)
        if len(lc) < 2:
            continue
        m = var.metrics([r["flux_jy"] for r in lc], [r["flux_err_jy"] for r in lc])
        rows.append({"source": name, **{k: v for k, v in m.as_dict().items() if k != "pair"}})
        if m.variable:
            flagged.append((name, lc, m))
    # the table and its light curves are one product: built in scratch, renamed in together
    out = pipeline.output_path / "variability"
    with fsutil.scratch_directory(pipeline.scratch_path, "variability-") as tmp:
        bundle = tmp / "publish"
        bundle.mkdir()
        write_table(bundle / "variability.csv", rows)
        for name, lc, m in flagged:
            plot_light_curve(bundle / "lightcurves" / f"{_safe(name)}.png", name, lc, m)
        fsutil.publish(bundle, out)
    pngs = [out / "lightcurves" / f"{_safe(name)}.png" for name, _, _ in flagged]
    top = sorted(rows, key=lambda r: -r["eta"])[:15]
    table = "| source | n | mean mJy | V | eta | Vs | m | variable |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(
        f"| {r['source']} | {r['n']} | {r['mean_flux_jy'] * 1e3:.2f} | {r['v']:.3f} | {r['eta']:.2f} | {r['vs']:.1f} | "
        f"{r['m']:.2f} | {'yes' if r['variable'] else ''} |" for r in top)
    metadata = {
        "n_sources": len(rows),
        "n_variable": len(flagged),
        "variable_sources": dg.MetadataValue.json([n for n, _, _ in flagged]),
        "new_sources": dg.MetadataValue.json([s["name"] for s in db.new_sources()]),
        "table": dg.MetadataValue.md(table),
        "path": dg.MetadataValue.path(str(out / "variability.csv")),
    }
    if pngs:
        metadata["light_curve"] = dg.MetadataValue.md(thumbnail_markdown(pngs[0], width=480))
    return dg.MaterializeResult(metadata=metadata)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "+-._" else "_" for c in name)


def write_table(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        if rows:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


def plot_light_curve(path: Path, name: str, lc: list[dict], metrics=None) -> Path:
    """PNG of a light curve: flux density (mJy) with 1-sigma errors against UTC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    t = [datetime.fromtimestamp(r["epoch_unix"], timezone.utc) for r in lc]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.errorbar(t, [r["flux_jy"] * 1e3 for r in lc], yerr=[r["flux_err_jy"] * 1e3 for r in lc], fmt="o", ms=3)
    ax.set_ylabel("flux density (mJy)")
    ax.set_xlabel("UTC")
    title = name if metrics is None else f"{name}  V={metrics.v:.2f}  eta={metrics.eta:.1f}"
    ax.set_title(title, fontsize=9)
    fig.autofmt_xdate()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return fsutil.publish(tmp, path)
