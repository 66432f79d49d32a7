"""The simulator writes the correlator's file layout to the letter."""

from __future__ import annotations

from datetime import datetime

import h5py
import numpy as np

from dsa_assets import constants as C
from dsa_assets.naming import parse_subband_name
from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig, active_stations, correlator_baselines
from dsa_assets.sim.sky import Truth

from ..conftest import SMALL


def test_group_files_names_and_stamps(simulated_group):
    names = [f.name for f in simulated_group.files]
    assert len(names) == 16
    parsed = [parse_subband_name(n) for n in names]
    assert sorted(sb for _, sb in parsed) == list(range(16))
    stamps = [t for t, _ in parsed]
    assert min(stamps).strftime(C.FILE_NAME_TIME_FORMAT) == simulated_group.stamp
    assert (max(stamps) - min(stamps)).total_seconds() < C.GROUP_TOLERANCE_S
    assert not list(simulated_group.files[0].parent.glob("*_incomplete.hdf5"))


def test_old_uvh5_header_layout(simulated_group):
    f = next(p for p in simulated_group.files if p.name.endswith("_sb00.hdf5"))
    with h5py.File(f, "r") as fh:
        h, d = fh["Header"], fh["Data"]
        assert "version" not in h and "phase_center_catalog" not in h and "vis_units" not in h
        assert h["telescope_name"][()] == b"OVRO_MMA" and h["phase_type"][()] == b"drift"
        assert h["instrument"][()] == b"DSA" and h["object_name"][()] == b"search"
        assert h["Nants_telescope"][()] == 117
        assert list(h["antenna_names"][:3]) == [b"1", b"2", b"3"]
        assert list(h["antenna_numbers"][:3]) == [0, 1, 2]
        assert np.all(h["antenna_diameters"][()] == 4.65)
        n_ant = 24
        assert h["Nbls"][()] == n_ant * (n_ant + 1) // 2
        a1, a2 = h["ant_1_array"][()], h["ant_2_array"][()]
        assert np.any(a1 > a2) and np.any(a1 == a2), "ant1 > ant2 baselines and autos present"
        freqs = h["freq_array"][()]
        assert freqs.shape == (1, 4) and np.all(np.diff(freqs[0]) < 0)
        assert freqs[0, 0] == C.TOP_CHANNEL_FREQ_HZ
        assert h["channel_width"][()] == -C.CHANNEL_WIDTH_HZ
        assert list(h["polarization_array"][()]) == [-5, -6]
        uvw = h["uvw_array"][()]
        assert uvw.dtype == np.float32
        nbl = h["Nbls"][()]
        assert np.array_equal(uvw[:nbl], uvw[nbl : 2 * nbl]), "meridian uvw: time-invariant"
        times = np.unique(h["time_array"][()])
        assert np.allclose(np.diff(times) * 86400, C.INTEGRATION_TIME_S, atol=1e-3)
        assert np.allclose(h["integration_time"][()], C.INTEGRATION_TIME_S)
        ek = h["extra_keywords"]
        assert ek["phase_center_dec"][()] == simulated_group.truth.pointing_dec_rad == SMALL.pointing_dec_rad
        assert ek["ha_phase_center"][()] == 0.0 and ek["phase_center_epoch"][()] == b"HADEC"
        assert len(ek["applied_delays_ns"][()].split()) == 234
        vis = d["visdata"]
        assert vis.dtype == np.complex64 and vis.shape == (h["Nblts"][()], 1, 4, 2)
        assert vis.compression is None and vis.chunks is not None
        assert not d["flags"][()].any()


def test_full_scale_dimensions():
    sim = CorrelatorSimulator(SimConfig())
    assert len(sim.antennas) == 96
    assert len(sim.ant1) == 4656
    assert 9 not in sim.antennas and 116 not in sim.antennas  # DSA-010 and DSA-117 inactive


def test_interrupted_and_missing_subbands(tmp_path):
    cfg = SimConfig(n_antennas=4, n_integrations=2, channels_per_subband=1, n_sources=1)
    g = CorrelatorSimulator(cfg).write_observation(
        tmp_path, datetime(2026, 1, 15, 12, 0, 0).astimezone(), missing=(3,), interrupted=(5,)
    )
    assert len(g.files) == 14
    leftovers = list(tmp_path.glob("*_incomplete.hdf5"))
    assert len(leftovers) == 1 and "_sb05_" in leftovers[0].name
    assert not list(tmp_path.glob("*_sb03*"))
    truth = Truth.read(g.truth_path)
    assert truth.missing_subbands == [3, 5]


def test_baseline_order_covers_each_pair_once():
    ants = active_stations(10)
    a1, a2 = correlator_baselines(ants)
    pairs = {tuple(sorted(p)) for p in zip(a1, a2)}
    assert len(pairs) == len(a1) == 55


def test_noise_level_matches_sefd(tmp_path):
    cfg = SimConfig(n_antennas=16, n_integrations=2, channels_per_subband=8, sources=(), gains=False)
    g = CorrelatorSimulator(cfg).write_observation(tmp_path, datetime(2026, 1, 15, 12, 0, 0).astimezone())
    with h5py.File(g.files[0], "r") as fh:
        vis = fh["Data/visdata"][()]
        cross = fh["Header/ant_1_array"][()] != fh["Header/ant_2_array"][()]
    expected = C.SEFD_JY / np.sqrt(2 * C.CHANNEL_WIDTH_HZ * C.INTEGRATION_TIME_S)
    assert abs(np.std(vis[cross].real) / expected - 1) < 0.05
