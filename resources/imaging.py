"""ImagingResource: the imager and its parameters (DSA-110 defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import dagster as dg

from dsa_assets import constants as C
from dsa_assets.stages.imaging import ImagingConfig, ImagingStage

from .options import option


class ImagingResource(dg.ConfigurableResource):
    """Imager choice and parameters; sizes in pixels, angles in arcseconds. Every field is an
    :class:`~dsa_assets.stages.imaging.ImagingConfig` field of the same name and default (a test
    holds them equal); the config's docstrings give the measurements behind each default."""

    imager: Literal["wsclean", "tclean"] = "wsclean"
    """Imager: WSClean, or CASA tclean."""
    size: int = option(2048, flag="--image-size", metavar="PIXELS")
    """Image width and height (pixels); 2048 x 6 arcsec spans the primary beam's FWHM."""
    cell_arcsec: float = option(6.0, metavar="ARCSEC")
    """Pixel size (arcsec); keep 5 or more pixels across the beam's minor axis and every baseline
    on the uv grid (the image asset's pixels_sample_the_beam check says)."""
    weighting: Literal["briggs", "natural", "uniform"] = "briggs"
    """Visibility weighting."""
    robust: float = 0.5
    """Briggs robustness."""
    niter: int = 1000
    """Maximum CLEAN iterations."""
    auto_threshold: float = 3.0
    """Stop cleaning at this many times the residual rms."""
    auto_mask: float = 5.0
    """Clean freely down to this many sigma, then only inside the mask so formed."""
    mgain: float = 0.8
    """Major-cycle gain: the fraction of the peak cleaned before the next major cycle."""
    gridder: Literal["wgridder", "wstacking"] = "wgridder"
    """WSClean's gridder (w-stacking leaves false sources at a bright off-centre source's far sidelobes)."""
    padding: float = 1.5
    """WSClean's padding factor of the gridded image."""
    channels_out: int = 1
    """Sub-bands deconvolved jointly with a fitted spectrum (WSClean -channels-out; 1: the band
    as one image): follows bright off-centre sources across the band, for 1.7-3 times the time."""
    baseline_averaging_wavelengths: float = 4.0
    """WSClean's baseline-dependent averaging (wavelengths of uv-track; 0: off)."""
    threads: int = option(2, flag="--imaging-threads")
    """Imager threads."""
    data_column: Literal["auto", "CORRECTED_DATA", "DATA"] = "auto"
    """Column imaged; "auto" takes CORRECTED_DATA where present (calibrated data), else DATA."""
    pb_cutoff: float = 0.1
    """The beam-corrected image is blank where the beam falls below this fraction of its peak."""
    sefd_jy: float = option(C.SEFD_JY, metavar="JY")
    """System equivalent flux density per antenna (Jy) behind each image's thermal-noise
    expectation (rms_over_thermal); ~6,500 Jy for DSA-110's 4.65 m dishes. Simulations made
    with another ``dsa110-sim --sefd-jy`` need the same value here."""

    self_calibration: Literal["off", "phase", "phase+amplitude"] = "off"
    """Self-calibrate each observation against its own CLEAN model: a phase-only round per
    integration, then (phase+amplitude) one amplitude-and-phase round; a round is kept only
    when it lowers the residual rms and raises the dynamic range (WSClean only)."""
    selfcal_min_improvement: float = 0.02
    """Fraction by which a self-calibration round must lower the residual rms to be kept."""

    @property
    def half_width_deg(self) -> float:
        """How far (deg) each image reaches from its centre along each axis."""
        return self.size * self.cell_arcsec / 2.0 / 3600.0

    def stage(self, output_dir: Path, scratch_dir: Path) -> ImagingStage:
        """The stage with these settings."""
        return ImagingStage(ImagingConfig(output_dir=output_dir, scratch_dir=scratch_dir, **self.model_dump()))
