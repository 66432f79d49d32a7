"""The ``dsa110`` query commands: light curves and the variability table, printed and exported
as CSV and VOTable (read back with astropy), flagged points shown but kept out of the statistics."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from astropy.table import Table

from dsa_assets.cli import main
from dsa_assets.products import ProductsDB


@pytest.fixture
def db_path(tmp_path):
    """Eight epochs of two constant sources; epoch 3 is a bad image, 40% low."""
    path = tmp_path / "products.sqlite3"
    db = ProductsDB(path)
    for epoch in range(8):
        bad = epoch == 3
        image = {"image_id": f"2026-01-0{epoch + 1}T12:00:00", "kind": "observation", "partition_key": "k",
                 "path": "x", "epoch_unix": 1.77e9 + epoch * 86164.0}
        db.record_photometry(image, [
            {"source_name": name, "epoch_unix": image["epoch_unix"], "kind": "forced",
             "flux_jy": (0.6 if bad else 1.0) * flux * (1 + 0.001 * np.sin(epoch)), "flux_err_jy": 0.002,
             "local_rms_jy": None if name == "B" else 0.001, "flags": "bad_image" if bad else ""}
            for name, flux in (("A", 0.1), ("B", 0.05))])
    return path


def test_a_light_curve_is_printed_and_exported_with_its_flags(db_path, tmp_path, capsys):
    out_csv, out_vot = tmp_path / "a.csv", tmp_path / "a.vot"
    assert main(["lightcurve", "--products-db", str(db_path), "--source", "B", "--csv", str(out_csv),
                 "--votable", str(out_vot)]) == 0
    printed = capsys.readouterr().out
    assert "bad_image" in printed and "variable=no (1 flagged point(s) left out)" in printed
    table = Table.read(out_vot, format="votable")
    assert len(table) == 8 and str(table["flux_jy"].unit) == "Jy" and list(table["flags"]).count("bad_image") == 1
    assert [bool(c) for c in table["counted"]] == [True] * 3 + [False] + [True] * 4
    assert np.ma.getmaskarray(table["local_rms_jy"]).all(), "no local rms: null in the VOTable"
    rows = list(csv.DictReader(out_csv.open()))
    assert [float(r["flux_jy"]) for r in rows] == pytest.approx(list(table["flux_jy"]))


def test_the_variability_table_leaves_flagged_points_out_and_exports(db_path, tmp_path, capsys):
    out_vot = tmp_path / "v.vot"
    assert main(["variables", "--products-db", str(db_path), "--all", "--votable", str(out_vot)]) == 0
    table = Table.read(out_vot, format="votable")
    assert sorted(table["source"]) == ["A", "B"] and list(table["n"]) == [7, 7]
    assert not any(table["variable"]), "the bad epoch would make both variable"
    assert main(["variables", "--products-db", str(db_path), "--votable", str(out_vot)]) == 0
    assert len(Table.read(out_vot, format="votable")) == 0
