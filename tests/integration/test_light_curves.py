"""Six days of the same field through the whole platform: photometry, mosaics, light curves and
variability, with a flaring and a stepping source among constant ones."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pytest
from astropy.io import fits

from dsa_assets import catalogue, naming, partitions, qa, variability
from dsa_assets.definitions import build_definitions
from dsa_assets.products import ProductsDB
from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig, calibrator_field
from dsa_assets.sim.sky import Variation
from resources.calibration import CalibrationResource
from resources.science import ScienceResource
from resources.settings import Settings

from ..conftest import SCALED_SEFD_JY, scaled_imaging, settle

pytestmark = pytest.mark.slow

SIDEREAL_DAY_S = 86164.0905
N_DAYS = 6
FLARE_DAY = 3


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """Day 0: a 3C286 transit, then the field 20 minutes later; days 1-5: that field again at the
    same sidereal time; a reference catalogue without the source that appears. Returns
    (incoming, [target groups], variations, calibrator group)."""
    incoming = tmp_path_factory.mktemp("days") / "in"
    base, start = calibrator_field(
        SimConfig(n_antennas=24, n_integrations=4, channels_per_subband=4, n_sources=14, seed=21, gains=True,
                  sefd_jy=SCALED_SEFD_JY, flux_range_jy=(0.02, 0.3), timestamp_jitter=False),
        "3C286", datetime(2026, 4, 1, tzinfo=UTC))
    cal_group = CorrelatorSimulator(base).write_observation(incoming, start)
    first = start + timedelta(minutes=20)
    from astropy.time import Time

    from dsa_assets import geometry

    centre = geometry.meridian_icrs(base.pointing_dec_rad, Time(first + timedelta(seconds=26)), geometry.default_site())
    near = catalogue.within(CorrelatorSimulator(base).sky(), centre.ra.deg, centre.dec.deg, 1.1)
    visible = sorted(near, key=lambda s: -s.flux_jy)
    t_flare = (first + timedelta(seconds=FLARE_DAY * SIDEREAL_DAY_S)).timestamp()
    variations = (Variation(visible[1].name, "flare", t_flare, 1.0, width_s=0.3 * 86400),
                  Variation(visible[2].name, "step", t_flare - 3600, 0.6),
                  # absent from the reference catalogue, appears on the flare's day
                  Variation(visible[3].name, "on", t_flare - 3600, 1.0))
    sim = CorrelatorSimulator(replace(base, variations=variations))
    targets = [sim.write_observation(incoming, first + timedelta(seconds=d * SIDEREAL_DAY_S), seed=100 + d)
               for d in range(N_DAYS)]
    catalogue.write(incoming / "reference.csv", [s for s in sim.sky() if s.name != variations[2].source])
    settle(incoming)
    return incoming, targets, variations, cal_group


def test_photometry_mosaic_and_variability_through_the_platform(field, tmp_path):
    incoming, targets, variations, cal_group = field
    settings = Settings(
        input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=0, simulated=True,
        reference_catalogue=str(incoming / "reference.csv"), imaging=scaled_imaging(size=1280, cell_arcsec=8, niter=500),
        calibration=CalibrationResource(enable_solving=True, validity_hours=24 * N_DAYS),
        science=ScienceResource(mosaic_inputs=1, enable_photometry=True, enable_mosaic_creation=True))
    pipeline = settings.pipeline
    defs = build_definitions(settings)
    job = defs.resolve_job_def("observation_job")
    with dg.instance_for_test() as instance:
        for g in [cal_group] + targets:
            result = job.execute_in_process(instance=instance, partition_key=partitions.window_key(g.data_start),
                                            raise_on_error=False)
            assert result.success, g.stamp
        pulls = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("photometry"), "forced_fluxes_match_truth")])
        hour = partitions.hour_key(targets[0].data_start)
        assert defs.resolve_job_def("mosaic_job").execute_in_process(instance=instance, partition_key=hour).success
        mosaic_meta = instance.fetch_materializations(dg.AssetKey("mosaic"), limit=1).records[0] \
            .asset_materialization.metadata
        assert mosaic_meta["n_inputs"].value == 1 and len(mosaic_meta["gaps"].value) == 11
        assert defs.resolve_job_def("variability_job").execute_in_process(instance=instance).success
        var_meta = instance.fetch_materializations(dg.AssetKey("variability"), limit=1).records[0] \
            .asset_materialization.metadata

    db = ProductsDB(pipeline.products_target)
    flare, step = variations[0].source, variations[1].source
    assert len(db.light_curve(flare)) == N_DAYS
    flagged = set(var_meta["variable_sources"].value)
    assert {flare, step} <= flagged, var_meta["table"].value
    # the source absent from the catalogue: one identity from its first detection (the flare's
    # day), later detections joined to it, measured (forced) in the three earlier images too
    truth = next(s for s in targets[-1].truth.sources if s.name == variations[2].source)
    uncatalogued = db.uncatalogued_sources()
    offsets = catalogue.angular_distance_deg([s["ra_deg"] for s in uncatalogued], [s["dec_deg"] for s in uncatalogued],
                                             truth.ra_deg, truth.dec_deg) * 3600
    assert np.sum(offsets < 60) == 1, "one identity, not several"
    found = uncatalogued[int(np.argmin(offsets))]
    assert offsets.min() < 2 * max(found["ra_err_arcsec"], found["dec_err_arcsec"])
    assert found["new"] and found["n_detections"] == N_DAYS - FLARE_DAY
    assert found["first_epoch_unix"] == pytest.approx(targets[FLARE_DAY].data_start.timestamp(), abs=600)
    assert found["name"] in var_meta["new_sources"].value
    # the rest are 3C286's sidelobes (15 Jy, 4.3 deg away, not subtracted): recurring detections
    # of 20-40 mJy near its declination, each day at the same hour angle (README)
    print(f"uncatalogued sources: {len(uncatalogued)}, "
          f"{sum(s['n_detections'] >= 2 for s in uncatalogued)} detected more than once")
    lc = db.light_curve(found["name"])
    assert len(lc) == N_DAYS, "forced at its position before and after its first detection"
    before = [r["flux_jy"] / r["flux_err_jy"] for r in lc[:FLARE_DAY]]
    assert all(abs(p) < 5 for p in before), f"absent before it appeared: {before}"
    assert all(r["snr"] > 10 for r in lc[FLARE_DAY:])
    # every constant catalogue source measured in the target field on every day: not flagged
    in_catalogue = {s.name for s in catalogue.read(incoming / "reference.csv")}
    constant = [n for n in db.measured_sources() if n in in_catalogue and n not in (flare, step)
                and len(db.light_curve(n)) == N_DAYS]
    assert len(constant) >= 5
    false_positives = [n for n in constant if n in flagged]
    assert len(false_positives) <= 1, false_positives
    # forced fluxes against the truth, over every target observation
    truth_pulls = []
    for g in targets:
        true_flux = {s.name: s.flux_jy for s in g.truth.sources}
        for name in constant + [flare, step]:
            row = next((r for r in db.light_curve(name) if r["image_id"] == g.stamp), None)
            if row and row["snr"] > 5:
                truth_pulls.append((row["flux_jy"] - true_flux[name]) / row["flux_err_jy"])
    truth_pulls = np.array(truth_pulls)
    print(f"pulls: n={len(truth_pulls)} mean={truth_pulls.mean():.2f} std={truth_pulls.std():.2f}")
    # measured: mean 0.31, std 1.67 (151 pulls); in an earlier run sources above 20 sigma read
    # 0.991 +- 0.023 of the truth. The tail is four faint sources under the sidelobes of 3C286
    # (15 Jy, 4.3 deg away in the primary beam's first sidelobe, outside the image): without it
    # they read 0.91-1.07 (README)
    assert abs(np.mean(truth_pulls)) < 0.5 and np.std(truth_pulls) < 2.0
    # the products database and the command line agree
    from dsa_assets.cli import main

    assert main(["lightcurve", "--products-db", pipeline.products_target, "--source", flare,
                 "--csv", str(tmp_path / "lc.csv"), "--png", str(tmp_path / "lc.png")]) == 0
    forced_lines = [line for line in (tmp_path / "lc.csv").read_text().splitlines() if ",forced," in line]
    assert (tmp_path / "lc.png").exists() and len(forced_lines) == N_DAYS
    assert (tmp_path / "out" / "variability" / "variability.csv").exists()
    assert pulls  # the check ran
    # every image held to the reference catalogue (the simulated sky): all pass
    for g in targets:
        quality = db.image_quality(g.stamp)
        assert quality["n_flux"] >= qa.MIN_CATALOGUE_SOURCES and quality["problems"] == "", quality
        assert abs(quality["flux_ratio"] - 1) < qa.FLUX_SCALE_TOLERANCE

    # a bad epoch: one day's image reads 30% low (a calibration gone wrong). Held to the catalogue
    # it fails, is kept with its measurements flagged, and no constant source turns variable
    bad = targets[1]
    for kind in ("image", "residual"):
        with fits.open(naming.image_file(pipeline.output_path, bad.stamp, kind), mode="update") as hdul:
            hdul[0].data *= 0.7
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, partition_key=partitions.window_key(bad.data_start),
                                        asset_selection=[dg.AssetKey("photometry")])
        (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "held_to_catalogue"]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert defs.resolve_job_def("variability_job").execute_in_process(instance=instance).success
        after = set(instance.fetch_materializations(dg.AssetKey("variability"), limit=1).records[0]
                    .asset_materialization.metadata["variable_sources"].value)
    quality = db.image_quality(bad.stamp)
    assert quality["problems"].startswith("flux scale") and quality["flux_ratio"] == pytest.approx(0.7, abs=0.03)
    assert all("bad_image" in r["flags"] for n in constant for r in db.light_curve(n) if r["image_id"] == bad.stamp)
    assert all(len(db.light_curve(n, usable_only=True)) == N_DAYS - 1 for n in constant)
    assert {flare, step} <= after and len([n for n in constant if n in after]) <= 1
    ungated = [n for n in constant if variability.metrics(*zip(*[(r["flux_jy"], r["flux_err_jy"])
                                                               for r in db.light_curve(n)])).variable]
    print(f"constant sources flagged variable with the bad epoch counted: {len(ungated)} of {len(constant)}")
    assert len(ungated) > len([n for n in constant if n in after]), "the gate is what keeps them constant"
