"""Dagster sensors: the automation that turns arrivals into runs."""

from .subband_arrival import subband_arrival_sensor

__all__ = ["subband_arrival_sensor"]
