"""Product paths come from well-formed keys only: nothing lands outside the output directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa_assets import naming
from dsa_assets.exceptions import ProductNameError
from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
from dsa_assets.stages.mosaic import MosaicConfig, MosaicStage


@pytest.mark.parametrize("bad", ["../../x", "", "2026-01-15T12:00:00/../../x", "2026-13-45T12:00:00",
                                 "2026-01-15 12:00:00", "/etc/passwd", "2026-01-15T12:00:00.ms"])
def test_malformed_observation_ids_are_refused(bad, tmp_path):
    for build in (naming.ms_path, naming.image_dir, naming.caltable_dir, naming.calibrated_ms_path):
        with pytest.raises(ProductNameError, match="not an observation id"):
            build(tmp_path, bad)


def test_product_paths_of_an_observation(tmp_path):
    gid = "2026-01-15T12:03:07"
    assert naming.ms_path(tmp_path, gid) == tmp_path / "ms" / "2026-01-15" / f"{gid}.ms"
    assert naming.calibrated_ms_path(tmp_path, gid) == tmp_path / "calibrated" / "2026-01-15" / f"{gid}.ms"
    assert naming.image_file(tmp_path, gid, "pbcor") == tmp_path / "images" / "2026-01-15" / gid / f"{gid}-pbcor.fits"
    assert set(naming.image_files(tmp_path, gid, naming.IMAGE_PRODUCTS)) == set(naming.IMAGE_PRODUCTS)


def test_mosaic_paths_and_malformed_hour_keys(tmp_path):
    files = naming.mosaic_files(tmp_path, "2026-01-15-13:00")
    assert files["noise"] == tmp_path / "mosaics" / "2026-01-15" / "2026-01-15-1300" / "2026-01-15-1300-noise.fits"
    assert set(files) == set(naming.MOSAIC_PRODUCTS)
    for bad in ("2026-01-15-13:05", "../2026-01-15-13:00", "k"):
        with pytest.raises(ProductNameError, match="not an hourly partition key"):
            naming.mosaic_dir(tmp_path, bad)



def test_every_product_path_lies_under_its_kinds_root(tmp_path):
    gid = "2026-01-15T13:05:00"
    under = {"ms": naming.ms_path(tmp_path, gid), "calibrated": naming.calibrated_ms_path(tmp_path, gid),
             "caltables": naming.caltable_dir(tmp_path, gid), "images": naming.image_dir(tmp_path, gid),
             "mosaics": naming.mosaic_dir(tmp_path, "2026-01-15-13:00")}
    assert set(under) == set(naming.PRODUCT_ROOTS)
    for kind, path in under.items():
        assert path.relative_to(naming.product_root(tmp_path, kind)).parts[0] == "2026-01-15"
    with pytest.raises(ProductNameError, match="no product kind 'logs'"):
        naming.product_root(tmp_path, "logs")

def test_stages_refuse_a_malformed_id_before_writing(tmp_path, simulated_group):
    out = tmp_path / "out"
    stage = ConversionStage(ConversionConfig(output_dir=out, scratch_dir=tmp_path / "scratch"))
    with pytest.raises(ProductNameError):
        stage.execute(group_id="../../x", hdf5_files=simulated_group.files)
    assert not (tmp_path / "x").exists() and not list(Path(tmp_path).glob("**/*.ms"))
    with pytest.raises(ProductNameError):
        MosaicStage(MosaicConfig(output_dir=out)).execute("../../x", [])
