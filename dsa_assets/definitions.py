"""The one Definitions object: assets, checks, jobs, sensors and resources.

Paths come from the environment at run time (``dg.EnvVar``): ``DSA110_INPUT_DIR`` and
``DSA110_OUTPUT_DIR`` (required), optional ``DSA110_SCRATCH_DIR``, ``DSA110_QUEUE_DB``,
``DSA110_PRODUCTS_DB``, ``DSA110_INCOMPLETE_POLICY``, ``DSA110_INCOMPLETE_TIMEOUT_S``,
``DSA110_STABLE_S``, ``DSA110_DISK_WARN_GB``, ``DSA110_DISK_PAUSE_GB``, the imaging settings
of :func:`imaging_resource_from_env` and the calibration settings of
:func:`calibration_resource_from_env` (``dsa110-stream`` sets them all).
``DSA110_EXECUTOR=celery`` spreads run steps over Celery workers on other machines
(``deploy/production/README.md``). Tests and ``dsa110-stream`` build their own with
:func:`build_definitions`.
"""

from __future__ import annotations

import os

import dagster as dg

from dsa_assets.constants import INCOMPLETE_GROUP_TIMEOUT_S
from resources.calibration import CalibrationResource
from resources.imaging import ImagingResource
from resources.pipeline import PipelineResource
from resources.science import ScienceResource
from sensors.hourly_products import build_sensor, mosaic_job, variability_job
from sensors.subband_arrival import OBSERVATION_JOB, subband_arrival_sensor

from .assets.calibration import calibrated_ms, calibration_tables
from .assets.images import image
from .assets.imaging_qa import imager_cross_check
from .assets.science import mosaic, mosaic_photometry, photometry, variability
from .assets.measurement_sets import measurement_set
from .assets.subband_files import SUBBAND_FILES

def observation_job_for(with_photometry: bool) -> dg.UnresolvedAssetJobDefinition:
    """The per-window job: conversion, calibration and imaging, then photometry when enabled."""
    assets = [measurement_set, calibration_tables, calibrated_ms, image] + ([photometry] if with_photometry else [])
    return dg.define_asset_job(
        OBSERVATION_JOB,
        selection=dg.AssetSelection.assets(*assets),
        description=(
            "Convert the observations of one 5-minute window to Measurement Sets, calibrate (solving on a "
            "calibrator transit) and image them" + (", and measure the images." if with_photometry else ".")
        ),
    )


def celery_executor_from_env():
    """The Celery executor (steps spread over worker machines) when ``DSA110_EXECUTOR=celery``;
    broker and result backend from ``DSA110_CELERY_BROKER`` / ``DSA110_CELERY_BACKEND``.
    None (Dagster's default multiprocess executor) otherwise."""
    if os.environ.get("DSA110_EXECUTOR") != "celery":
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {"broker": {"env": "DSA110_CELERY_BROKER"}, "backend": {"env": "DSA110_CELERY_BACKEND"}}
    )


def build_definitions(
    pipeline: PipelineResource,
    imaging: ImagingResource | None = None,
    executor=None,
    calibration: CalibrationResource | None = None,
    science: ScienceResource | None = None,
    enable_photometry: bool = False,
    enable_mosaics: bool = False,
) -> dg.Definitions:
    """Every asset is in the graph (so any can be backfilled from the UI); the flags decide what
    runs by itself: photometry in the observation job, and the hourly-products sensor."""
    sensors = [subband_arrival_sensor]
    if enable_photometry or enable_mosaics:
        sensors.append(build_sensor(enable_mosaics, enable_photometry))
    return dg.Definitions(
        executor=executor,
        assets=[SUBBAND_FILES, measurement_set, calibration_tables, calibrated_ms, image, imager_cross_check,
                photometry, mosaic, mosaic_photometry, variability],
        jobs=[observation_job_for(enable_photometry), mosaic_job, variability_job],
        sensors=sensors,
        resources={
            "pipeline": pipeline,
            "imaging": imaging or ImagingResource(),
            "calibration": calibration or CalibrationResource(),
            "science": science or ScienceResource(),
        },
    )


def calibration_resource_from_env() -> CalibrationResource:
    """``DSA110_ENABLE_CALIBRATION_SOLVING`` (0/1), ``DSA110_CALIBRATION_VALIDITY_H``,
    ``DSA110_MISSING_CALIBRATION`` (fail | wait), ``DSA110_RFI_FLAGGER`` (aoflagger | tfcrop |
    rflag | none), ``DSA110_REFERENCE_CATALOGUE`` (CSV path)."""
    env = os.environ
    return CalibrationResource(
        enable_solving=env.get("DSA110_ENABLE_CALIBRATION_SOLVING", "0") == "1",
        validity_hours=float(env.get("DSA110_CALIBRATION_VALIDITY_H", 6.0)),
        missing_policy=env.get("DSA110_MISSING_CALIBRATION", "fail"),
        rfi_flagger=env.get("DSA110_RFI_FLAGGER", "aoflagger"),
        reference_catalogue=env.get("DSA110_REFERENCE_CATALOGUE", ""),
    )


def imaging_resource_from_env() -> ImagingResource:
    """``DSA110_IMAGER``, ``DSA110_IMAGE_SIZE`` (pixels), ``DSA110_CELL_ARCSEC``: each unset one
    keeps the resource's default."""
    names = {"imager": "DSA110_IMAGER", "size": "DSA110_IMAGE_SIZE", "cell_arcsec": "DSA110_CELL_ARCSEC"}
    return ImagingResource(**{field: os.environ[name] for field, name in names.items() if os.environ.get(name)})


def _optional(name: str):
    return dg.EnvVar(name) if os.environ.get(name) else ""


defs = build_definitions(
    PipelineResource(
        input_dir=dg.EnvVar("DSA110_INPUT_DIR"),
        output_dir=dg.EnvVar("DSA110_OUTPUT_DIR"),
        scratch_dir=_optional("DSA110_SCRATCH_DIR"),
        queue_db=_optional("DSA110_QUEUE_DB"),
        products_db=_optional("DSA110_PRODUCTS_DB"),
        incomplete_policy=os.environ.get("DSA110_INCOMPLETE_POLICY", "convert_partial"),
        incomplete_timeout_s=float(os.environ.get("DSA110_INCOMPLETE_TIMEOUT_S", INCOMPLETE_GROUP_TIMEOUT_S)),
        stable_s=float(os.environ.get("DSA110_STABLE_S", 5.0)),
        disk_warn_gb=float(os.environ.get("DSA110_DISK_WARN_GB", 10.0)),
        disk_pause_gb=float(os.environ.get("DSA110_DISK_PAUSE_GB", 2.0)),
    ),
    imaging_resource_from_env(),
    executor=celery_executor_from_env(),
    calibration=calibration_resource_from_env(),
    science=ScienceResource(
        reference_catalogue=os.environ.get("DSA110_REFERENCE_CATALOGUE", ""),
        mosaic_inputs=int(os.environ.get("DSA110_MOSAIC_OBSERVATIONS", 12)),
        mosaic_timeout_s=float(os.environ.get("DSA110_MOSAIC_TIMEOUT_S", 1800.0)),
    ),
    enable_photometry=os.environ.get("DSA110_ENABLE_PHOTOMETRY", "0") == "1",
    enable_mosaics=os.environ.get("DSA110_ENABLE_MOSAIC_CREATION", "0") == "1",
)


def observation_job_definition():
    """The observation job of ``defs``, as a module-level function so that
    ``dg.reconstructable`` can point worker processes on other machines at it."""
    return defs.resolve_job_def(OBSERVATION_JOB)
