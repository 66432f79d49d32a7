"""``imager_cross_check``: an on-demand QA asset. For an observation window already imaged with
WSClean, image the same calibrated data with CASA tclean (same size, cell and weighting) and
compare the two: forced photometry of every source the WSClean image detects above 10 sigma, on
both beam-corrected images. Not part of the observation job (tclean takes minutes at full
scale); materialize or backfill it from the UI for the windows to audit."""

import dagster as dg

from resources.imaging import ImagingResource
from resources.pipeline import PipelineResource

from .. import fsutil, partitions, qa
from .checks import AGREEMENT_CHECK, agreement_check
from .common import for_each_observation
from .images import image


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

    # both imagers see the same calibrated data: only the image noise enters the comparison
    config = PhotometryConfig(detect_snr=qa.CROSSCHECK_SNR, systematic_fraction=0.0)
    tclean = imaging.model_copy(update={"imager": "tclean"})

    def compare(obs) -> list[dict]:
        ws = obs.images
        with fsutil.scratch_directory(pipeline.scratch_path, f"crosscheck-{obs.group_id}-") as tmp:
            tc = tclean.stage(tmp, tmp / "scratch").execute(group_id=obs.group_id, ms_path=obs.calibrated_ms_path)
            ws_planes = ImagePlanes.from_observation(ws["image"], ws["residual"], ws["pb"], config, ws["psf"])
            detections = [CatalogueSource(m.source, m.ra_deg, m.dec_deg, m.flux_jy)
                          for m in measure(ws_planes, [], config).blind()]
            tc_planes = ImagePlanes.from_observation(tc.images["image"], tc.images["residual"], tc.images["pb"],
                                                     config, tc.images["psf"])
            a = {m.source: m for m in measure(ws_planes, detections, config).forced()}
            b = {m.source: m for m in measure(tc_planes, detections, config).forced()}
        compared = []
        for name in sorted(set(a) & set(b)):
            fa, fb = a[name].flux_jy, b[name].flux_jy
            noise = max(a[name].flux_err_jy, b[name].flux_err_jy)
            compared.append({"observation": obs.group_id, "source": name, "wsclean_jy": round(fa, 5),
                             "tclean_jy": round(fb, 5), "sigma_jy": round(noise, 5),
                             "agree": qa.imagers_agree(fa, fb, noise)})
        return compared

    observations = pipeline.catalogue().in_window(context.partition_key, having=("calibrated_ms", "image"))
    rows = [r for _, compared in for_each_observation(context, observations, "imager_cross_check", compare)
            for r in compared]
    problems = [f"{r['observation']} {r['source']}: WSClean {r['wsclean_jy']:.4f} Jy, tclean {r['tclean_jy']:.4f} Jy"
                for r in rows if not r["agree"]]
    return dg.MaterializeResult(metadata={"sources_compared": len(rows), "comparison": dg.MetadataValue.json(rows)},
                                check_results=[agreement_check(rows, problems)])
