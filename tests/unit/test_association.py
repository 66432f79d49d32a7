"""Association across epochs: the de Ruiter radius, Condon's position errors, and a month of
simulated detections through the products database."""

from __future__ import annotations

import numpy as np
import pytest

from dsa_assets import association
from dsa_assets.association import Position
from dsa_assets.products import ProductsDB
from dsa_assets.sim import detections as simulated


def test_de_ruiter_radius_weighs_each_axis_by_its_errors():
    # 3 arcsec north with 1 arcsec errors on each side: r = 3 / sqrt(2)
    assert association.de_ruiter(150, 30, 1, 1, 150, 30 + 3 / 3600, 1, 1) == pytest.approx(3 / np.sqrt(2))
    # 4 arcsec east on the sky at Dec 60 is 8 arcsec of RA; errors 2 and 0 along RA
    r = association.de_ruiter(359.999, 60, 2, 1, 359.999 + 8 / 3600, 60, 0, 1)
    assert r == pytest.approx(2.0, rel=1e-4)
    # across RA 0
    assert association.de_ruiter(0.0005, 10, 1, 1, 359.9995, 10, 1, 1) == pytest.approx(
        0.001 * 3600 * np.cos(np.radians(10)) / np.sqrt(2), rel=1e-6)


def test_condon_position_errors_and_beam_axes():
    # circular 30 arcsec beam at SNR 10: sqrt(2) * 30 / 2.3548 / 10 = 1.80 arcsec per axis
    ra_err, dec_err = association.position_errors([10.0], (30.0, 30.0, 0.0), 0.0)
    assert ra_err[0] == pytest.approx(1.8017, rel=1e-3) and dec_err[0] == pytest.approx(ra_err[0])
    ra_err, _ = association.position_errors([10.0], (30.0, 30.0, 0.0), 3.0)
    assert ra_err[0] == pytest.approx(np.hypot(1.8017, 3.0), rel=1e-3)
    # a beam elongated north-south (PA 0) is wide along Dec and narrow along RA
    assert association.beam_axis_fwhm(40.0, 20.0, 0.0) == pytest.approx((20.0, 40.0))
    assert association.beam_axis_fwhm(40.0, 20.0, 90.0) == pytest.approx((40.0, 20.0))


def test_associations_are_one_to_one_closest_first():
    known = [Position("A", 150.0, 30.0, 2, 2), Position("B", 150.0, 30.0 + 20 / 3600, 2, 2)]
    detections = [Position("", 150.0, 30.0 + 12 / 3600, 1, 1),   # 12" from A, 8" from B
                  Position("", 150.0, 30.0 + 19 / 3600, 1, 1),   # 1" from B: takes B first
                  Position("", 150.0, 30.5, 1, 1)]               # nothing near
    (a, r_a), (b, r_b), (none, r_none) = association.associate(detections, known, max_separation_arcsec=45)
    assert (a, b, none) == ("A", "B", None)
    assert r_b == pytest.approx(1 / np.sqrt(5)) and r_a == pytest.approx(12 / np.sqrt(5)) and np.isnan(r_none)
    # beyond the separation limit nothing associates, whatever the errors
    wide = [Position("", 150.0, 30.0 + 50 / 3600, 100, 100)]   # 30" from B, r = 0.3
    assert association.associate(wide, known, max_separation_arcsec=45)[0][0] == "B"
    assert association.associate(wide, known, max_separation_arcsec=25)[0][0] is None


def test_weighted_position_straddles_ra_zero():
    ra, dec, ra_err, dec_err = association.weighted_position([359.999, 0.001], [10.0, 10.0], [1.0, 1.0], [1.0, 2.0])
    assert min(ra, 360 - ra) < 1e-9 and dec == 10.0
    assert ra_err == pytest.approx(1 / np.sqrt(2)) and dec_err == pytest.approx(1 / np.sqrt(1 + 0.25))


@pytest.fixture(scope="module")
def a_month(tmp_path_factory):
    truth = simulated.sky(n_sources=300, n_pairs=15, n_transients=8, n_epochs=30, seed=3)
    epochs = simulated.epochs(truth, n_epochs=30, seed=4)
    db = ProductsDB(tmp_path_factory.mktemp("association") / "products.sqlite")
    simulated.associate_epochs(db, truth, epochs)
    return db, truth, epochs


def test_a_month_of_detections_gets_one_identity_per_source(a_month):
    db, truth, epochs = a_month
    scores = simulated.scores(db, truth, epochs)
    assert scores.n_detections > 5000
    # measured with bench/association.py at larger scale: purity and completeness >= 0.99
    assert scores.purity >= 0.98, scores
    assert scores.completeness >= 0.98, scores
    assert scores.transients_detected >= 6 and scores.transients_found == scores.transients_detected, scores


def test_uncatalogued_positions_converge_on_the_truth(a_month):
    db, truth, _ = a_month
    pulls = []
    for s in db.uncatalogued_sources():
        if s["n_detections"] < 10:
            continue
        assert len(db.source_detections(s["name"])) == s["n_detections"]
        sep = np.hypot((truth.ra_deg - s["ra_deg"]) * np.cos(np.radians(s["dec_deg"])), truth.dec_deg - s["dec_deg"])
        i = int(np.argmin(sep))
        assert sep[i] * 3600 < 5 * max(s["ra_err_arcsec"], s["dec_err_arcsec"])
        pulls.append((s["dec_deg"] - truth.dec_deg[i]) * 3600 / s["dec_err_arcsec"])
    assert len(pulls) > 50
    # the per-epoch offsets are shared by all sources of an epoch, so their average over 30
    # epochs moves every source alike: the pulls are centred within that common offset
    assert abs(np.median(pulls)) < 1.5 and np.std(pulls) < 2.0, (np.median(pulls), np.std(pulls))


def test_remeasuring_an_epoch_replaces_its_detections_and_the_sources_it_began(a_month, tmp_path):
    _, truth, epochs = a_month
    db = ProductsDB(tmp_path / "products.sqlite")
    simulated.associate_epochs(db, truth, epochs[:3])
    before = {s["name"]: s for s in db.uncatalogued_sources()}
    n_measurements = db.count_measurements()
    simulated.associate_epochs(db, truth, epochs[2:3])   # the third epoch again
    assert db.count_measurements() == n_measurements
    after = {s["name"]: s for s in db.uncatalogued_sources()}
    assert set(after) == set(before)
    assert [after[n]["n_detections"] for n in sorted(after)] == [before[n]["n_detections"] for n in sorted(before)]
    assert sum(len(db.source_detections(n)) for n in after) == sum(s["n_detections"] for s in after.values())
