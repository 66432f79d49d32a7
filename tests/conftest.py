"""Shared fixtures: one scaled-down simulated observation per session, copied per test."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig, calibrator_field
from resources.calibration import CalibrationResource
from resources.imaging import ImagingResource

SCALED_SEFD_JY = 400.0
"""The SEFD (Jy) the tests simulate with. At DSA-110's 6,500 Jy a scaled-down array is far
noisier than the full one (the 24-antenna, 4-integration, 64-channel array has 1/1,190 of the
full observation's visibilities: 34.5 times its image noise); at 400 Jy its images have about
twice the noise of a full-scale observation at 6,500 Jy, the full array's signal-to-noise.
Imaging is told the same SEFD, so its thermal-noise expectation holds."""

SMALL, START = calibrator_field(
    SimConfig(n_antennas=24, n_integrations=4, channels_per_subband=4, n_sources=4, gains=False,
              timestamp_jitter=True, seed=7, sefd_jy=SCALED_SEFD_JY),
    "3C286",
    datetime(2026, 1, 15, tzinfo=UTC),
)
"""Small enough to simulate and convert in seconds; long baselines kept for astrometry. The
array points at 3C286's declination and START puts its transit mid-observation, so the whole
observation job (calibration included) runs on the session's observation."""


def scaled_imaging(**fields) -> ImagingResource:
    """Imaging settings for the tests' simulations: their SEFD behind the thermal expectation."""
    return ImagingResource(sefd_jy=SCALED_SEFD_JY, **fields)


SOLVING = CalibrationResource(enable_solving=True)
"""Calibration that solves on calibrator transits (``--enable-calibration-solving``)."""


def settle(directory: Path, age_s: float = 3600.0) -> None:
    """Make every file in ``directory`` look finished ``age_s`` seconds ago (stable for the scanner)."""
    t = time.time() - age_s
    for f in Path(directory).iterdir():
        os.utime(f, (t, t), follow_symlinks=False)


@pytest.fixture(scope="session")
def simulated_group(tmp_path_factory):
    """One complete observation (16 files + truth), written once per session."""
    out = tmp_path_factory.mktemp("sim")
    return CorrelatorSimulator(SMALL).write_observation(out, START)


@pytest.fixture
def group_copy(simulated_group, tmp_path):
    """A private copy of the simulated observation's directory for a test to modify."""
    dest = tmp_path / "incoming"
    shutil.copytree(Path(simulated_group.files[0]).parent, dest)
    files = [dest / f.name for f in simulated_group.files]
    return simulated_group, dest, files


@pytest.fixture(scope="session")
def converted_ms(simulated_group, tmp_path_factory):
    """The simulated observation converted once per session: (group, ConversionResult)."""
    from dsa_assets.stages.conversion import ConversionConfig, ConversionStage

    out = tmp_path_factory.mktemp("ms_out")
    stage = ConversionStage(ConversionConfig(output_dir=out, scratch_dir=out / "scratch"))
    return simulated_group, stage.execute(group_id=simulated_group.stamp, hdf5_files=simulated_group.files)
