"""The Definitions: assets, checks, jobs, sensors and resources of one deployment, built from
its :class:`~resources.settings.Settings`.

The daemon's and webserver's code location is this module's ``defs``, built on first access
from the settings file that ``DSA110_SETTINGS`` names (``dsa110-stream`` writes it), so a
deployment has one configuration file and one variable. Tests and ``dsa110-stream --once``
call :func:`build_definitions` with settings of their own.
"""

from __future__ import annotations

import dagster as dg

from resources.settings import ServiceSettings, Settings
from sensors.alerts import operations_alerts, run_failure_alerts
from sensors.hourly_products import hourly_products_sensor, mosaic_job, variability_job
from sensors.late_calibration import late_calibration_sensor
from sensors.retention import retention_sensor
from sensors.subband_arrival import OBSERVATION_JOB, subband_arrival_sensor

from .assets.calibration import calibrated_ms, calibration_tables
from .assets.checks import TRUTH_CHECKS
from .assets.images import image
from .assets.imaging_qa import imager_cross_check
from .assets.measurement_sets import measurement_set
from .assets.retention import retention_job
from .assets.science import mosaic, mosaic_photometry, photometry, variability
from .assets.subband_files import SUBBAND_FILES

ASSETS = [SUBBAND_FILES, measurement_set, calibration_tables, calibrated_ms, image, imager_cross_check,
          photometry, mosaic, mosaic_photometry, variability]


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


def executor_for(service: ServiceSettings):
    """Celery (steps spread over worker machines) for ``executor: celery``; None (Dagster's
    multiprocess executor) otherwise."""
    if service.executor != "celery":
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured({"broker": service.celery_broker, "backend": service.celery_backend})


def build_definitions(settings: Settings) -> dg.Definitions:
    """Every asset is in the graph (so any can be backfilled from the UI); the science settings
    decide what runs by itself (photometry in the observation job, the hourly-products sensor),
    and the truth checks are registered only for simulated input."""
    science = settings.science
    automated_science = science.enable_photometry or science.enable_mosaic_creation
    return dg.Definitions(
        executor=executor_for(settings.service),
        assets=ASSETS,
        asset_checks=TRUTH_CHECKS if settings.pipeline.simulated else [],
        jobs=[observation_job_for(science.enable_photometry), mosaic_job, variability_job, retention_job],
        sensors=[subband_arrival_sensor, late_calibration_sensor, run_failure_alerts, operations_alerts,
                 retention_sensor]
        + ([hourly_products_sensor] if automated_science else []),
        resources=settings.resources(),
    )


def __getattr__(name: str):
    # the code location's Definitions, built when Dagster first asks (importing this module
    # for build_definitions needs no settings file)
    if name == "defs":
        globals()["defs"] = build_definitions(Settings.from_environment())
        return globals()["defs"]
    raise AttributeError(name)


def observation_job_definition():
    """The observation job of ``defs``, as a module-level function so that
    ``dg.reconstructable`` can point worker processes on other machines at it."""
    return __getattr__("defs").resolve_job_def(OBSERVATION_JOB)
