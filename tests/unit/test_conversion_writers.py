"""The streaming writer and the pyuvdata reference writer produce the same Measurement Set."""

from __future__ import annotations

import numpy as np
import pytest

from dsa_assets.stages import ConversionStage
from dsa_assets.stages.conversion import ConversionConfig

MAIN_COLUMNS = ("DATA", "FLAG", "WEIGHT", "UVW", "TIME", "ANTENNA1", "ANTENNA2", "INTERVAL", "EXPOSURE",
                "SCAN_NUMBER", "FIELD_ID", "DATA_DESC_ID", "TIME_CENTROID")
SUBTABLE_COLUMNS = {
    "ANTENNA": ("NAME", "POSITION", "DISH_DIAMETER", "STATION", "MOUNT", "OFFSET"),
    "SPECTRAL_WINDOW": ("CHAN_FREQ", "CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION", "REF_FREQUENCY",
                        "TOTAL_BANDWIDTH", "NUM_CHAN", "MEAS_FREQ_REF"),
    "FIELD": ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR", "NAME"),
    "POLARIZATION": ("CORR_TYPE", "NUM_CORR", "CORR_PRODUCT"),
    "OBSERVATION": ("TELESCOPE_NAME",),
    "DATA_DESCRIPTION": ("SPECTRAL_WINDOW_ID", "POLARIZATION_ID"),
}


def read_columns(path):
    from casacore import tables

    out = {}
    with tables.table(str(path), ack=False) as t:
        for c in MAIN_COLUMNS:
            out[c] = t.getcol(c)
        out["SIGMA"] = t.getcol("SIGMA")
        out["keywords"] = t.getcolkeyword("DATA", "QuantumUnits")
    with tables.table(f"{path}/OBSERVATION", ack=False) as t:
        out["OBSERVATION/TIME_RANGE"] = t.getcol("TIME_RANGE")
    for sub, cols in SUBTABLE_COLUMNS.items():
        with tables.table(f"{path}/{sub}", ack=False) as t:
            for c in cols:
                out[f"{sub}/{c}"] = t.getcol(c)
    return out


@pytest.fixture(scope="module")
def both(simulated_group, tmp_path_factory):
    # gains and a missing subband exercise every path of the writers
    from dataclasses import replace

    from dsa_assets.sim.correlator import CorrelatorSimulator
    from tests.conftest import SMALL, START

    d = tmp_path_factory.mktemp("writers")
    group = CorrelatorSimulator(replace(SMALL, gains=True)).write_observation(d / "in", START, missing=(6,))
    out = {}
    for writer in ("streaming", "pyuvdata"):
        stage = ConversionStage(ConversionConfig(output_dir=d / writer, writer=writer))
        out[writer] = read_columns(stage.execute(group_id=group.stamp, hdf5_files=group.files).ms_path)
    return out


@pytest.mark.parametrize("column", MAIN_COLUMNS + tuple(f"{s}/{c}" for s, cols in SUBTABLE_COLUMNS.items()
                                                         for c in cols))
def test_same_content(both, column):
    fast, ref = both["streaming"][column], both["pyuvdata"][column]
    assert np.shape(fast) == np.shape(ref)
    if np.asarray(ref).dtype.kind in "fc":
        scale = np.max(np.abs(ref)) if np.size(ref) else 1.0
        np.testing.assert_allclose(fast, ref, rtol=2e-6, atol=2e-6 * scale)
    else:
        np.testing.assert_array_equal(fast, ref)


def test_observation_time_range_spans_the_integrations(both):
    t = both["streaming"]["TIME"]
    (t0, t1), = both["streaming"]["OBSERVATION/TIME_RANGE"]
    assert t0 == pytest.approx(t.min() - 12.884902 / 2) and t1 == pytest.approx(t.max() + 12.884902 / 2)


def test_sigma_where_weighted(both):
    w = both["pyuvdata"]["WEIGHT"]
    np.testing.assert_allclose(both["streaming"]["SIGMA"][w > 0], both["pyuvdata"]["SIGMA"][w > 0], rtol=1e-6)
    assert both["streaming"]["keywords"] == both["pyuvdata"]["keywords"]


def test_streaming_ms_reads_back_in_pyuvdata(simulated_group, tmp_path):
    """The streaming writer's MS is readable by pyuvdata, with the group's shape and phase centre."""
    import warnings

    from pyuvdata import UVData

    stage = ConversionStage(ConversionConfig(output_dir=tmp_path))
    result = stage.execute(group_id=simulated_group.stamp, hdf5_files=simulated_group.files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv = UVData.from_file(str(result.ms_path), file_type="ms")
    assert uv.Nblts == result.n_rows and uv.Nfreqs == result.n_channels and uv.Npols == 2
    (center,) = uv.phase_center_catalog.values()
    assert np.degrees(center["cat_lon"]) == pytest.approx(result.phase_center_ra_deg, abs=1e-9)
    assert np.degrees(center["cat_lat"]) == pytest.approx(result.phase_center_dec_deg, abs=1e-9)
    assert uv.telescope.name == "OVRO_MMA"


def test_block_reader_that_dies_is_an_error_not_a_hang(converted_ms):
    """If the reader process dies (killed, or its writer's disk filled and aborted it), the
    writer gets an OSError within a second or two instead of waiting forever."""
    import os
    import signal
    import time

    import pytest

    from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
    from dsa_assets.stages.ms_writer import BlockReader

    group, _ = converted_ms
    plan = ConversionStage(ConversionConfig(output_dir="/tmp")).validate(group.stamp, group.files)
    reader = BlockReader(plan, n_pol=2, block_rows=10)
    os.kill(reader._proc.pid, signal.SIGKILL)
    reader._proc.join()
    t = time.monotonic()
    with pytest.raises(OSError, match="exited unexpectedly"):
        for _ in reader:
            pass
    assert time.monotonic() - t < 10
    reader.close()


@pytest.mark.parametrize("writer", ["streaming", "pyuvdata"])
def test_nonfinite_samples_are_flagged_and_counted(group_copy, tmp_path, writer):
    """A bad packet (NaN and Inf samples in one subband) becomes flagged zeros, counted; the
    rest of the data is untouched."""
    import h5py
    from casacore import tables

    group, _, files = group_copy
    with h5py.File(files[3], "r+") as fh:
        vis = fh["Data/visdata"]
        block = vis[5:15]
        block[:, 0, :2, 0] = np.nan
        block[:, 0, 2, 1] = np.inf
        vis[5:15] = block
    n_bad = 10 * 2 + 10
    clean = ConversionStage(ConversionConfig(output_dir=tmp_path / "clean", writer=writer)).execute(
        group_id=group.stamp, hdf5_files=group.files)
    result = ConversionStage(ConversionConfig(output_dir=tmp_path / "bad", writer=writer)).execute(
        group_id=group.stamp, hdf5_files=files)
    assert result.n_nonfinite == n_bad and clean.n_nonfinite == 0
    with tables.table(str(result.ms_path), ack=False) as t, tables.table(str(clean.ms_path), ack=False) as c:
        data, flags, reference = t.getcol("DATA"), t.getcol("FLAG"), c.getcol("DATA")
    assert np.isfinite(data).all()
    newly_flagged = flags & ~np.isnan(reference) & (data == 0) & (reference != 0)
    assert newly_flagged.sum() == n_bad
    assert np.array_equal(data[~flags], reference[~flags])
