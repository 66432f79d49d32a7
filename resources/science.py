"""ScienceResource: photometry, mosaics and variability settings."""

from __future__ import annotations

import dagster as dg


class ScienceResource(dg.ConfigurableResource):
    """Science products of one deployment. Fluxes in Jy, times in seconds."""

    reference_catalogue: str = ""
    """CSV catalogue (:mod:`dsa_assets.catalogue`) measured by forced photometry; empty: blind
    detections only."""
    detect_snr: float = 5.0
    flux_systematic_fraction: float = 0.03
    """Fraction of each flux added in quadrature to its error (calibration and deconvolution)."""
    new_source_factor: float = 5.0
    """A detection absent from the catalogue is new above this many times the lowest earlier rms."""
    mosaic_inputs: int = 12
    """Observation windows an hourly mosaic waits for."""
    mosaic_timeout_s: float = 1800.0
    """After the hour's end plus this long, the hour is mosaicked with what there is."""
    variability_interval_s: float = 600.0
    """The variability table is recomputed at most this often while new photometry arrives."""

    def catalogue_sources(self, db) -> list:
        """Reference catalogue sources plus the new sources found so far (from ``db``)."""
        from dsa_assets import catalogue

        known = catalogue.read(self.reference_catalogue) if self.reference_catalogue else []
        found = [catalogue.CatalogueSource(s["name"], s["ra_deg"], s["dec_deg"], 0.0) for s in db.new_sources()]
        return known + found

    def photometry_stage(self):
        from dsa_assets.stages.photometry import PhotometryConfig, PhotometryStage

        return PhotometryStage(PhotometryConfig(detect_snr=self.detect_snr,
                                                systematic_fraction=self.flux_systematic_fraction))
