"""ImagingResource: the imager and its parameters (DSA-110 defaults)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dsa_assets.stages.imaging import ImagingConfig, ImagingStage


class ImagingResource(dg.ConfigurableResource):
    """Imager choice and parameters; sizes in pixels, angles in arcseconds."""

    imager: str = "wsclean"
    """"wsclean" or "tclean"."""
    size: int = 2048
    cell_arcsec: float = 6.0
    robust: float = 0.5
    niter: int = 1000
    auto_threshold: float = 3.0
    auto_mask: float = 5.0
    gridder: str = "wstacking"
    """WSClean's gridder: "wstacking" or "wgridder"."""
    padding: float = 1.5
    baseline_averaging_wavelengths: float = 4.0
    threads: int = 2
    data_column: str = "CORRECTED_DATA"
    """Column imaged: the calibrated data."""

    def stage(self, output_dir: Path, scratch_dir: Path) -> ImagingStage:
        """The stage with these settings; every field here is an ImagingConfig field of the same
        name (the config's docstrings explain them)."""
        return ImagingStage(ImagingConfig(output_dir=output_dir, scratch_dir=scratch_dir, **self.model_dump()))
