"""The product catalogue: an observation's products as a window's assets see them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dsa_assets import naming
from dsa_assets.product_catalogue import ProductCatalogue
from dsa_assets.products import ProductsDB
from dsa_assets.streaming import SubbandQueue

T0 = datetime(2026, 1, 15, 12, 0, 30, tzinfo=UTC)


def register(queue, stamp_time, n_subbands, tmp_path):
    for sb in range(n_subbands):
        queue.register(tmp_path / f"{naming.format_time(stamp_time)}_sb{sb:02d}.hdf5", file_time=stamp_time, subband=sb)
    return naming.format_time(stamp_time)


def test_observations_of_a_window_by_product(tmp_path):
    out = tmp_path / "out"
    queue, db = SubbandQueue(tmp_path / "q.sqlite3", expected_subbands=2), ProductsDB(tmp_path / "p.sqlite3")
    catalogue = ProductCatalogue(queue, db, out)
    done = register(queue, T0, 2, tmp_path)
    waiting = register(queue, T0.replace(minute=3), 1, tmp_path)
    register(queue, T0.replace(minute=7), 2, tmp_path)  # the next window
    window = "2026-01-15-12:00"
    assert [o.group_id for o in catalogue.in_window(window)] == [done, waiting]
    assert catalogue.in_window(window, having=("measurement_set",)) == []

    queue.claim(done)
    queue.complete(done, str(naming.ms_path(out, done)))
    db.record_measurement_set(group_id=done, partition_key=window, path=str(naming.ms_path(out, done)), duration_s=300.0)
    (obs,) = catalogue.in_window(window, having=("measurement_set",))
    assert obs.ms_path == naming.ms_path(out, done) and obs.mid_unix == T0.timestamp() + 150.0
    assert obs.window == window and obs.state == "completed"
    assert catalogue.in_window(window, having=("calibration",)) == []

    db.record_assignment(group_id=done, partition_key=window, solution_group_id=done, solution_partition_key=window,
                         offset_s=0.0)
    db.record_calibrated_ms(group_id=done, partition_key=window, path=str(naming.calibrated_ms_path(out, done)))
    (obs,) = catalogue.in_window(window, having=("calibration", "calibrated_ms"))
    assert obs.solution_group_id == done and obs.calibrated_ms_path == naming.calibrated_ms_path(out, done)
    assert catalogue.in_window(window, having=("image",)) == [], "no published image yet"

    for kind in ("image", "residual", "pb", "psf"):
        path = naming.image_file(out, done, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (obs,) = catalogue.in_hour("2026-01-15-12:00", having=("image",))
    assert obs.images == {k: naming.image_file(out, done, k) for k in ("image", "residual", "psf", "pb")}
    with pytest.raises(ValueError, match="unknown products"):
        catalogue.in_window(window, having=("mosiac",))


def test_an_hours_mosaic(tmp_path):
    catalogue = ProductCatalogue(SubbandQueue(tmp_path / "q.sqlite3"), ProductsDB(tmp_path / "p.sqlite3"), tmp_path)
    assert not catalogue.mosaic("2026-01-15-13:00").exists
    for kind in ("image", "noise"):
        path = naming.mosaic_files(tmp_path, "2026-01-15-13:00")[kind]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    made = catalogue.mosaic("2026-01-15-13:00")
    assert made.exists and set(made.files) == {"image", "noise"}, "older mosaics lack residual and dirty beam"
