"""The products database: idempotent photometry writes, clustered light curves, schema upgrade."""

import sqlite3

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from dsa_assets.products import SCHEMA_VERSION, ProductsDB


def _image(image_id, epoch, kind="observation"):
    return {"image_id": image_id, "kind": kind, "path": f"/x/{image_id}.fits", "epoch_unix": epoch}


def _row(name, flux, kind="forced"):
    return {"source_name": name, "epoch_unix": 0.0, "kind": kind, "flux_jy": flux, "flux_err_jy": 0.001}


def _record(db, image_id, epoch, rows, kind="observation"):
    db.record_photometry(_image(image_id, epoch, kind), [{**r, "epoch_unix": epoch} for r in rows])


def test_rematerializing_an_image_replaces_its_measurements(tmp_path):
    db = ProductsDB(tmp_path / "p.sqlite3")
    _record(db, "a", 100.0, [_row("S1", 1.0), _row("S2", 2.0)])
    _record(db, "b", 400.0, [_row("S1", 1.1)])
    _record(db, "a", 100.0, [_row("S1", 0.9), _row("S1", 0.5, "blind")])  # again, different result
    assert db.count_measurements() == 3
    assert [(m["epoch_unix"], m["flux_jy"]) for m in db.light_curve("S1")] == [(100.0, 0.9), (400.0, 1.1)]
    assert [m["flux_jy"] for m in db.light_curve("S1", kind="blind")] == [0.5]
    assert db.light_curve("S2") == []


def test_two_blind_detections_matching_one_source_are_both_kept(tmp_path):
    db = ProductsDB(tmp_path / "p.sqlite3")
    _record(db, "a", 100.0, [_row("S1", 1.0, "blind"), _row("S1", 0.2, "blind")])
    assert sorted(m["flux_jy"] for m in db.light_curve("S1", kind="blind")) == [0.2, 1.0]


def test_light_curve_separates_observations_from_mosaics(tmp_path):
    db = ProductsDB(tmp_path / "p.sqlite3")
    _record(db, "obs", 100.0, [_row("S1", 1.0)])
    _record(db, "mosaic:h", 1800.0, [_row("S1", 1.05)], kind="mosaic")
    assert [m["image_id"] for m in db.light_curve("S1")] == ["obs"]
    assert [m["image_id"] for m in db.light_curve("S1", image_kind="mosaic")] == ["mosaic:h"]
    assert len(db.light_curve("S1", image_kind=None)) == 2


def _detect(db, image_id, epoch, ra_deg, kind="observation", new=True):
    """An image (centred on the detection) holding one blind detection no known source explains."""
    image = {**_image(image_id, epoch, kind), "centre_ra_deg": ra_deg, "centre_dec_deg": 60.0, "radius_deg": 1.0}
    db.record_photometry(image, [], [{"ra_deg": ra_deg, "dec_deg": 60.0, "ra_err_arcsec": 3.0, "dec_err_arcsec": 3.0,
                                      "flux_jy": 0.03, "flux_err_jy": 0.005, "local_rms_jy": 0.005, "snr": 6.0,
                                      "source_name": None, "new": new}])


def test_a_new_source_is_declared_when_a_second_look_confirms_it(tmp_path):
    db = ProductsDB(tmp_path / "p.sqlite3")
    _detect(db, "obs1", 100.0, 150.0)                  # seen once, then in its hour's mosaic: one look
    _detect(db, "mosaic:h1", 1800.0, 150.0, kind="mosaic")
    _detect(db, "obs2", 100.0, 170.0)                  # seen in two observation images
    _detect(db, "obs3", 409.0, 170.0)
    _detect(db, "mosaic:h2", 1800.0, 190.0, kind="mosaic")  # in the mosaics of two hours
    _detect(db, "mosaic:h3", 5400.0, 190.0, kind="mosaic")
    _detect(db, "obs4", 100.0, 210.0, new=False)       # seen twice, but earlier images could have missed it
    _detect(db, "obs5", 409.0, 210.0, new=False)
    confirmed = {round(s["ra_deg"]): (s["n_observation_images"], s["n_mosaics"]) for s in db.new_sources()}
    assert confirmed == {170: (2, 0), 190: (0, 2)}
    assert [(round(s["ra_deg"]), s["n_observation_images"], s["n_mosaics"]) for s in db.new_source_candidates()] \
        == [(150, 1, 1)]
    assert {round(s["ra_deg"]) for s in db.new_sources(min_images=1)} == {150, 170, 190}
    assert len(db.uncatalogued_sources()) == 4


def test_a_light_curve_is_one_range_of_the_clustered_table(tmp_path):
    """On SQLite the measurements are stored in (source, epoch) order, so the query reads a
    contiguous range of the table itself, not an index then scattered rows."""
    path = tmp_path / "p.sqlite3"
    ProductsDB(path)
    con = sqlite3.connect(path)
    ddl = con.execute("SELECT sql FROM sqlite_master WHERE name = 'measurements'").fetchone()[0]
    assert "WITHOUT ROWID" in ddl.upper()
    plan = " ".join(r[-1] for r in con.execute(
        "EXPLAIN QUERY PLAN SELECT flux_jy FROM measurements WHERE source_name = 'S1' AND kind = 'forced' "
        "AND image_kind = 'observation' ORDER BY epoch_unix"))
    assert "PRIMARY KEY" in plan and "TEMP B-TREE" not in plan, plan


V3_MEASUREMENTS = """
CREATE TABLE measurements (
    id INTEGER NOT NULL PRIMARY KEY, image_id VARCHAR(64) NOT NULL, source_name VARCHAR(64) NOT NULL,
    epoch_unix FLOAT NOT NULL, kind VARCHAR(8) NOT NULL, image_kind VARCHAR(16) NOT NULL,
    flux_jy FLOAT NOT NULL, flux_err_jy FLOAT NOT NULL, local_rms_jy FLOAT, snr FLOAT, flags VARCHAR(64));
CREATE INDEX ix_measurements_image_id ON measurements (image_id);
CREATE INDEX ix_measurements_source_epoch ON measurements (source_name, epoch_unix);
CREATE TABLE schema_info (version INTEGER NOT NULL PRIMARY KEY);
INSERT INTO schema_info VALUES (3);
INSERT INTO measurements (image_id, source_name, epoch_unix, kind, image_kind, flux_jy, flux_err_jy) VALUES
    ('b', 'S1', 400.0, 'forced', 'observation', 1.1, 0.001),
    ('a', 'S1', 100.0, 'forced', 'observation', 1.0, 0.001),
    ('a', 'S1', 100.0, 'blind', 'observation', 0.7, 0.001),
    ('a', 'S1', 100.0, 'blind', 'observation', 0.3, 0.001);
"""


def test_a_schema_3_database_is_upgraded_keeping_every_measurement(tmp_path):
    path = tmp_path / "p.sqlite3"
    con = sqlite3.connect(path)
    con.executescript(V3_MEASUREMENTS)
    con.close()
    db = ProductsDB(path)
    assert db.count_measurements() == 4
    assert [m["flux_jy"] for m in db.light_curve("S1")] == [1.0, 1.1]
    assert sorted(m["flux_jy"] for m in db.light_curve("S1", kind="blind")) == [0.3, 0.7]
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM schema_info")).scalar() == SCHEMA_VERSION
        assert conn.execute(text("SELECT seq FROM measurements WHERE kind = 'blind' ORDER BY seq")).scalars().all() \
            == [1, 2]
    # opening again is a no-op, and writing works as on a new database
    _record(ProductsDB(path), "a", 100.0, [_row("S1", 0.95)])
    assert [m["flux_jy"] for m in db.light_curve("S1")] == [0.95, 1.1]


@pytest.mark.parametrize("bad", [{"flux_err_jy": None}, {"source_name": None}])
def test_an_incomplete_measurement_is_refused_and_nothing_is_written(tmp_path, bad):
    db = ProductsDB(tmp_path / "p.sqlite3")
    _record(db, "a", 100.0, [_row("S1", 1.0)])
    with pytest.raises(IntegrityError):
        _record(db, "a", 100.0, [_row("S1", 2.0), {**_row("S2", 1.0), **bad}])
    assert [m["flux_jy"] for m in db.light_curve("S1")] == [1.0]


def test_an_upgrade_raced_by_another_process_is_harmless(tmp_path, monkeypatch):
    """Two processes open a schema-3 database at once: the one that finds the table already
    rebuilt when it tries (its checks saw the old table) rolls its whole attempt back, schema
    changes included, and carries on; nothing is lost."""
    import dsa_assets.products as products

    path = tmp_path / "p.sqlite3"
    _record(ProductsDB(path), "a", 100.0, [_row("S1", 1.0), _row("S2", 2.0)])
    stale = [True, True]  # both checks see the old table; the other process then rebuilt it
    real = products._needs_clustering
    monkeypatch.setattr(products, "_needs_clustering", lambda conn: stale.pop() if stale else real(conn))
    db = ProductsDB(path)
    assert not stale, "the stale checks were taken"
    assert db.count_measurements() == 2 and [m["flux_jy"] for m in db.light_curve("S2")] == [2.0]
