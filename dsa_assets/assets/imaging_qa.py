"""``imager_cross_check``: an on-demand QA asset. For an observation window already imaged with
WSClean, image the same calibrated data with CASA tclean (same size, cell and weighting) and
compare the two: forced photometry of every source the WSClean image detects above 10 sigma, on
both beam-corrected images. Not part of the observation job (tclean takes minutes at full
scale); materialize or backfill it from the UI for the windows to audit."""

import dagster as dg

from resources.imaging import ImagingResource
from resources.pipeline import PipelineResource

from .. import fsutil, naming, partitions
from .images import image

AGREEMENT_CHECK = dg.AssetCheckSpec(
    name="wsclean_tclean_agree",
    asset="imager_cross_check",
    description="Every source above 10 sigma has WSClean and tclean fluxes within 3% (+3 sigma).",
)
DETECT_SNR = 10.0
TOLERANCE = 0.03


@dg.asset(
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    deps=[image],
    check_specs=[AGREEMENT_CHECK],
    group_name="observations",
    kinds={"casa", "wsclean"},
    description=__doc__,
)
def imager_cross_check(context: dg.AssetExecutionContext, pipeline: PipelineResource, imaging: ImagingResource):
    from ..catalogue import CatalogueSource
    from ..stages.photometry import ImagePlanes, PhotometryConfig, measure

    start, end = partitions.window_bounds(context.partition_key)
    db = pipeline.products()
    # both imagers see the same calibrated data: only the image noise enters the comparison
    config = PhotometryConfig(detect_snr=DETECT_SNR, systematic_fraction=0.0)
    rows, problems = [], []
    for g in pipeline.queue().groups_between(start, end):
        calibrated = db.calibrated_ms(g.group_id)
        ws = naming.image_files(pipeline.output_path, g.group_id)
        if calibrated is None or not ws["image"].exists():
            continue
        with fsutil.scratch_directory(pipeline.scratch_path, f"crosscheck-{g.group_id}-") as tmp:
            settings = imaging.model_dump() | {"imager": "tclean"}
            tc_result = ImagingResource(**settings).stage(tmp, tmp / "scratch").execute(
                group_id=g.group_id, ms_path=calibrated["path"])
            ws_planes = ImagePlanes.from_observation(ws["image"], ws["residual"], ws["pb"], config, ws["psf"])
            detections = [CatalogueSource(m.source, m.ra_deg, m.dec_deg, m.flux_jy)
                          for m in measure(ws_planes, [], config).blind()]
            tc_planes = ImagePlanes.from_observation(tc_result.images["image"], tc_result.images["residual"],
                                                     tc_result.images["pb"], config,
                                                     tc_result.images["psf"])
            a = {m.source: m for m in measure(ws_planes, detections, config).forced()}
            b = {m.source: m for m in measure(tc_planes, detections, config).forced()}
        for name in sorted(set(a) & set(b)):
            fa, fb = a[name].flux_jy, b[name].flux_jy
            noise = max(a[name].flux_err_jy, b[name].flux_err_jy)
            ok = abs(fa - fb) <= TOLERANCE * abs(fa) + 3 * noise
            rows.append({"observation": g.group_id, "source": name, "wsclean_jy": round(fa, 5),
                         "tclean_jy": round(fb, 5), "sigma_jy": round(noise, 5), "agree": ok})
            if not ok:
                problems.append(f"{g.group_id} {name}: WSClean {fa:.4f} Jy, tclean {fb:.4f} Jy")
    check = dg.AssetCheckResult(
        check_name=AGREEMENT_CHECK.name, asset_key=AGREEMENT_CHECK.asset_key,
        passed=bool(rows) and not problems,
        metadata={"sources_compared": len(rows), "problems": dg.MetadataValue.json(problems)},
    )
    return dg.MaterializeResult(metadata={"sources_compared": len(rows), "comparison": dg.MetadataValue.json(rows)},
                                check_results=[check])
