"""CalibrationResource: when to solve, how long a solution stays valid, how to flag."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import dagster as dg

from dsa_assets.stages.calibration import CalibrationConfig, CalibrationStage, SolveOptions
from dsa_assets.stages.flagging import RFI_METHODS, FlaggingConfig
from dsa_assets.stages.peeling import PeelingConfig

from .options import option


class CalibrationResource(dg.ConfigurableResource):
    """Calibration policy of one deployment. Times in hours or seconds as named, flux in Jy."""

    enable_solving: bool = option(False, flag="--enable-calibration-solving")
    """Solve calibration on calibrator transits (otherwise only apply solutions already in the
    products database)."""
    validity_hours: float = option(6.0, flag="--calibration-validity-hours", metavar="HOURS")
    """An observation takes the valid solution nearest in time, at most this many hours away."""
    missing_policy: Literal["fail", "wait"] = option("fail", flag="--missing-calibration")
    """With no valid solution in reach: fail the partition with the reason, or wait (retry the
    step every --calibration-wait-s until --calibration-wait-timeout-s; the run keeps its slot)."""
    wait_s: float = option(300.0, flag="--calibration-wait-s", metavar="SECONDS")
    """Seconds between retries while waiting for a solution."""
    wait_timeout_s: float = option(3600.0, flag="--calibration-wait-timeout-s", metavar="SECONDS")
    """Seconds after which waiting for a solution gives up."""
    min_calibrator_flux_jy: float = 1.0
    """Apparent flux (Jy; flux x mean beam response) a transit needs to be solved on."""
    max_offset_deg: float = option(1.5, flag="--max-calibrator-offset-deg")
    """Calibrators further than this (deg) from the beam centre at transit are not used."""
    rfi_flagger: Literal[RFI_METHODS] = "aoflagger"
    """RFI flagging before calibration: AOFlagger, CASA flagdata's tfcrop or rflag, or none."""
    flag_workers: int = 0
    """Processes AOFlagger runs in (0: the cores the process may use)."""
    model_radius_deg: float = option(2.0, flag="--calibrator-model-radius-deg")
    """Reference-catalogue sources within this radius (deg) of the beam centre join a
    calibrator's model."""
    model_min_flux_jy: float = option(0.05, flag="--calibrator-model-min-flux-jy")
    """... if brighter than this (Jy)."""
    model_sky_beyond: bool = option(True, flag="--calibrator-model-field-only")
    """The calibrator's model also takes the sky beyond its radius that the data hold, at the
    peeling levels: the A-team and bright sources (each found in the data by a first solve) and
    the reference catalogue outside the image above --subtract-outside-above-jy (found as a
    whole); solved again with them (--calibrator-model-field-only: the calibrator and its
    field alone)."""
    refant: str = ""
    """Reference antenna name; empty picks one per solve."""
    min_gain_snr: float = 10.0
    """A solution whose median gain SNR is lower is recorded but not used."""
    max_flagged_solutions: float = 0.2
    """A solution with a larger fraction of its solutions flagged is recorded but not used."""
    keep_raw_data: bool = option(False, flag="--calibrated-keeps-raw-data")
    """The calibrated Measurement Set keeps the raw visibilities (DATA) beside CORRECTED_DATA,
    twice the bytes; otherwise its DATA are the calibrated visibilities alone."""

    peeling: bool = option(True, flag="--no-peeling")
    """Peel bright sources from each calibrated observation, each with its own antenna gains:
    the A-team, and VLA calibrators and reference-catalogue sources above --peel-above-jy outside
    the image and --peel-in-field-above-jy inside it, those inside the image put back into it at
    the flux peeling took; then the fainter sky outside the image above --subtract-outside-above-jy,
    as predicted (--no-peeling: subtract nothing)."""
    peel_a_team_above_jy: float = option(0.5, metavar="JY")
    """An A-team source is peeled when its apparent flux density (flux x beam response at
    mid-observation, Jy) exceeds this."""
    peel_above_jy: float = option(0.3, metavar="JY")
    """Another source outside the image is peeled when its apparent flux density (Jy) exceeds
    this: CLEAN never sees it, and its sidelobes fall on the image undeconvolved."""
    subtract_outside_above_jy: float = option(0.01, metavar="JY")
    """Every other reference-catalogue source outside the image above this apparent flux density
    (Jy) is subtracted as predicted, through the calibrated gains (inf: none)."""
    peel_in_field_above_jy: float = option(0.5, metavar="JY")
    """A source inside the image is peeled and restored when its apparent flux density at
    transit (Jy; the most the beam gives it) exceeds this: drifting through the beam it changes
    during the observation, which CLEAN cannot follow; judged at transit, it is treated alike in
    every observation of its passage (inf: leave the field to CLEAN)."""
    peel_solution_bands: int = option(16, metavar="N")
    """Each peeled source's gains are solved per integration over this many equal parts of the
    band (1: the whole band; 16: per subband, for sidelobes whose errors change with frequency;
    1.4 times the time at full scale)."""
    peel_cycles: int = option(2, metavar="N")
    """Passes over the peeled sources: from the second on, each is put back with its last gains
    and peeled again against the sky left once the others have been taken with theirs (1: one
    pass, each solved against the others' catalogue models)."""

    def stage(self, output_dir: Path, scratch_dir: Path,
              image_half_width_deg: float = PeelingConfig.image_half_width_deg) -> CalibrationStage:
        """The stage; ``image_half_width_deg``: how far (deg) the images reach along each axis
        (``ImagingResource.half_width_deg``), where peeling's level changes."""
        levels = PeelingConfig(a_team_above_jy=self.peel_a_team_above_jy, above_jy=self.peel_above_jy,
                               in_field_above_jy=self.peel_in_field_above_jy,
                               solution_bands=self.peel_solution_bands, cycles=self.peel_cycles,
                               subtract_above_jy=self.subtract_outside_above_jy,
                               image_half_width_deg=image_half_width_deg)
        return CalibrationStage(CalibrationConfig(
            output_dir=output_dir, scratch_dir=scratch_dir,
            flagging=FlaggingConfig(rfi=self.rfi_flagger, workers=self.flag_workers),
            solve=SolveOptions(refant=self.refant or None), keep_raw_data=self.keep_raw_data,
            peeling=levels if self.peeling else None, model_sky_beyond=levels if self.model_sky_beyond else None,
        ))

    def model(self, calibrator, span, field_sources=()) -> list:
        """The sky model for a calibrator transit during ``span`` (an ObservationSpan): the
        calibrator and the ``field_sources`` (reference catalogue) near it."""
        from dsa_assets.stages.calibration import SourceModel, calibrator_model

        return calibrator_model(SourceModel.from_calibrator(calibrator), list(field_sources), span.centre_ra_deg,
                                span.centre_dec_deg, self.model_radius_deg, self.model_min_flux_jy)

    def solution_problems(self, quality) -> list[str]:
        """Why a solution should not be used (empty: usable)."""
        from dsa_assets.qa import solution_problems

        return solution_problems(quality, self.min_gain_snr, self.max_flagged_solutions)
