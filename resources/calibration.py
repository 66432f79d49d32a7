"""CalibrationResource: when to solve, how long a solution stays valid, how to flag."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dsa_assets.stages.calibration import CalibrationConfig, CalibrationStage, SolveOptions
from dsa_assets.stages.flagging import FlaggingConfig


class CalibrationResource(dg.ConfigurableResource):
    """Calibration policy of one deployment. Times in hours or seconds as named, flux in Jy."""

    enable_solving: bool = False
    """Solve on calibrator transits; off: only apply solutions already in the products database."""
    validity_hours: float = 6.0
    """An observation takes the valid solution nearest in time, at most this far away."""
    missing_policy: str = "fail"
    """With no valid solution in reach: "fail" the partition with the reason, or "wait" (retry
    the step every ``wait_s`` until ``wait_timeout_s``; the run keeps its slot meanwhile)."""
    wait_s: float = 300.0
    wait_timeout_s: float = 3600.0
    min_calibrator_flux_jy: float = 1.0
    """Apparent flux (flux x mean beam response) a transit needs to be solved on."""
    max_offset_deg: float = 1.5
    """Calibrators further than this from the beam centre at transit are not used."""
    rfi_flagger: str = "aoflagger"
    """"aoflagger", "tfcrop" or "none"."""
    reference_catalogue: str = ""
    """CSV catalogue of the sky (:mod:`dsa_assets.catalogue`); its sources near a calibrator join
    the calibrator in the model. Empty: the model is the calibrator alone."""
    model_radius_deg: float = 2.0
    model_min_flux_jy: float = 0.05
    refant: str = ""
    """Reference antenna name; empty picks one per solve."""
    min_gain_snr: float = 10.0
    """A solution whose median G SNR is lower is recorded but not used."""
    max_flagged_solutions: float = 0.2
    """A solution with more of its solutions flagged is recorded but not used."""

    def stage(self, output_dir: Path, scratch_dir: Path) -> CalibrationStage:
        return CalibrationStage(CalibrationConfig(
            output_dir=output_dir, scratch_dir=scratch_dir,
            flagging=FlaggingConfig(rfi=self.rfi_flagger),
            solve=SolveOptions(refant=self.refant or None),
        ))

    def model(self, calibrator, span) -> list:
        """The sky model for a calibrator transit during ``span`` (an ObservationSpan)."""
        from dsa_assets import catalogue
        from dsa_assets.stages.calibration import SourceModel, calibrator_model

        field = catalogue.read(self.reference_catalogue) if self.reference_catalogue else []
        return calibrator_model(SourceModel.from_calibrator(calibrator), field, span.centre_ra_deg,
                                span.centre_dec_deg, self.model_radius_deg, self.model_min_flux_jy)

    def solution_problems(self, quality: dict) -> list[str]:
        """Why a solution should not be used (empty: usable)."""
        problems = []
        g = quality["tables"]["G"]
        if (g["median_snr"] or 0.0) < self.min_gain_snr:
            problems.append(f"median gain SNR {g['median_snr']} < {self.min_gain_snr}")
        for kind, q in quality["tables"].items():
            if q["flagged_fraction"] > self.max_flagged_solutions:
                problems.append(f"{kind}: {q['flagged_fraction']:.0%} of solutions flagged")
        return problems
