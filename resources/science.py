"""ScienceResource: photometry, mosaics and variability settings."""

from __future__ import annotations

import dagster as dg

from dsa_assets.variability import EXPECTED_FALSE_VARIABLES

from .options import option


class ScienceResource(dg.ConfigurableResource):
    """Science products of one deployment. Fluxes in Jy, times in seconds."""

    enable_photometry: bool = False
    """Forced photometry and source finding on every image (and mosaic), and the variability
    table, run by themselves after imaging."""
    enable_mosaic_creation: bool = False
    """Hourly mosaics, once an hour is imaged or --mosaic-timeout after its last image."""
    detect_snr: float = 5.0
    """Blind detections: peak at least this many times the local noise."""
    systematic_fraction: float = option(0.03, flag="--flux-systematic-fraction")
    """Fraction of each flux added in quadrature to its error (calibration and deconvolution)."""
    new_source_factor: float = 5.0
    """A detection absent from the catalogue is new above this many times the lowest earlier rms."""
    backfill_days: float = option(3.0, metavar="DAYS")
    """A source found in an image is measured (forced) there and, when new, in the observation
    images of this many days (d) before it, so its light curve shows it absent before (0: only
    the image that found it)."""
    mosaic_inputs: int = option(12, flag="--mosaic-observations", metavar="N")
    """Imaged observation windows that complete an hour's mosaic."""
    mosaic_timeout_s: float = option(1800.0, flag="--mosaic-timeout", metavar="SECONDS")
    """Mosaic an incomplete hour this long (s) after it ended and its last image arrived."""
    max_rms_over_thermal: float = 0.0
    """Keep an observation image's measurements out of light curves when its residual rms
    exceeds the thermal expectation by more than this factor (0: not applied; images held to
    the reference catalogue regardless)."""
    explorer_url: str = "http://127.0.0.1:3001"
    """Where scientists reach the source explorer (``--explorer-port`` serves it beside the
    Dagster UI); asset metadata links to its pages (empty: no links)."""
    expected_false_variables: float = EXPECTED_FALSE_VARIABLES
    """Constant sources expected to be flagged variable in one variability table (correct
    errors): each source's false-alarm probability is this over the number of sources, at most
    1e-3, so a survey of thousands of sources does not flag a few constant ones on every run."""
    variability_interval_s: float = option(600.0, metavar="SECONDS")
    """The variability table is recomputed at most this often (s) while new photometry arrives."""

    def catalogue_sources(self, reference: list, db) -> list:
        """The ``reference`` catalogue's sources plus the uncatalogued sources found so far (from
        ``db``), with their measured position errors."""
        return list(reference) + db.uncatalogued_positions()

    def explorer_link(self, name: str | None = None) -> str | None:
        """The explorer's page of source ``name`` (its home page without one), or None."""
        from urllib.parse import quote

        if not self.explorer_url:
            return None
        return self.explorer_url.rstrip("/") + ("/source/" + quote(name, safe="") if name else "/")

    def photometry_stage(self):
        from dsa_assets.stages.photometry import PhotometryConfig, PhotometryStage

        return PhotometryStage(PhotometryConfig(detect_snr=self.detect_snr,
                                                systematic_fraction=self.systematic_fraction))
