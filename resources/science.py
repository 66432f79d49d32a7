"""ScienceResource: photometry, mosaics and variability settings."""

from __future__ import annotations

import dagster as dg
import numpy as np

from dsa_assets.variability import EXPECTED_FALSE_NEW_SOURCES_PER_DAY, EXPECTED_FALSE_VARIABLES, NEW_SOURCE_IMAGES

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
    edge_margin_deg: float = option(0.5, metavar="DEG")
    """A detection no known source accounts for begins no source within this many degrees (deg)
    of an image's (or mosaic's) east or west edge, where sources beyond it leave their sidelobes;
    consecutive observations overlap in right ascension, and the margin never exceeds half of
    what an image's width exceeds one observation's drift by, so no sky goes unsearched."""
    systematic_fraction: float = option(0.03, flag="--flux-systematic-fraction")
    """Fraction of each flux added in quadrature to its error (calibration and deconvolution)."""
    catalogue_position_error_arcsec: float = option(2.0, flag="--catalogue-position-error", metavar="ARCSEC")
    """1-sigma position error (arcsec, per axis) of reference-catalogue sources that give none:
    detections are associated with them by the de Ruiter radius, and a forced measurement that
    a neighbour's position error can move by more than its own error is flagged ``blend``."""
    low_beam: float = option(0.2, metavar="FRACTION")
    """Measurements where an observation image's primary beam is below this fraction of its
    peak (a mosaic's weight below its square) are flagged ``low_beam``: stored and shown, left
    out of light-curve statistics and the catalogue check, and no detection there is called a
    new source (where the beam is steep, a small error in its model moves a corrected flux
    most)."""
    new_source_factor: float = 5.0
    """A detection absent from the catalogue is new above this many times the lowest earlier rms."""
    expected_false_new_sources_per_day: float = EXPECTED_FALSE_NEW_SOURCES_PER_DAY
    """Noise peaks that may be called new sources in a day of observation images (as many in a
    day of mosaics): a detection must reach the signal-to-noise at which an image of its size
    offers its share of them (5.7 sigma for the full array's images at 0.1)."""
    new_source_images: int = option(NEW_SOURCE_IMAGES, metavar="N")
    """A new source is declared once detected in this many observation images (or mosaics of
    different hours); until then it is a candidate (a single look's noise peak or artefact, or
    a transient shorter than the looks that cover it)."""
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

    def new_source_snr(self, kind: str, image: dict) -> float:
        """The signal-to-noise a detection in ``image`` (a products-database image row: its
        radius in deg, its beam in arcsec) needs to be called new: the image's share of
        ``expected_false_new_sources_per_day`` (an observation image one of 86,400 / 309 s a
        day, a mosaic one of 24) over its independent beams."""
        from dsa_assets import constants as C
        from dsa_assets.variability import new_source_snr

        per_day = 86400.0 / C.OBSERVATION_CADENCE_S if kind == "observation" else 24.0
        beams = np.pi * (image["radius_deg"] * 3600) ** 2 / (1.1331 * image["beam_major_arcsec"]
                                                              * image["beam_minor_arcsec"])
        return new_source_snr(beams, self.expected_false_new_sources_per_day / per_day, self.detect_snr)

    def photometry_stage(self):
        from dsa_assets.stages.photometry import PhotometryConfig, PhotometryStage

        return PhotometryStage(PhotometryConfig(detect_snr=self.detect_snr, edge_margin_deg=self.edge_margin_deg,
                                                systematic_fraction=self.systematic_fraction,
                                                catalogue_position_error_arcsec=self.catalogue_position_error_arcsec,
                                                low_beam=self.low_beam))
