"""Partitions: the Dagster partitions of 5-minute observation windows and hourly products.

The window arithmetic and key format are :mod:`dsa_assets.windows` (plain Python), re-exported
here for the assets and sensors.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import dagster as dg

from .windows import (
    HOUR,
    KEY_FORMAT,
    WINDOW,
    hour_bounds,
    hour_key,
    window_bounds,
    window_key,
    window_start,
    windows_between,
    windows_in,
)

__all__ = ["HOUR", "HOURLY_PARTITIONS", "KEY_FORMAT", "OBSERVATION_PARTITIONS", "WINDOW", "hour_bounds", "hour_key",
           "window_bounds", "window_key", "window_start", "windows_between", "windows_in"]

DEFAULT_START = "2025-01-01"
START_ENV = "DSA110_PARTITION_START"


def partition_start() -> str:
    """First day (UTC, ``YYYY-MM-DD``) of the partitions; ``DSA110_PARTITION_START`` overrides."""
    return os.environ.get(START_ENV) or DEFAULT_START


# end_offset=1 makes the window in progress addressable, so data is processed as it arrives.
OBSERVATION_PARTITIONS = dg.TimeWindowPartitionsDefinition(
    cron_schedule="*/5 * * * *",
    start=datetime.strptime(partition_start(), "%Y-%m-%d").replace(tzinfo=UTC),
    fmt=KEY_FORMAT,
    timezone="UTC",
    end_offset=1,
)
HOURLY_PARTITIONS = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 * * * *",
    start=datetime.strptime(partition_start(), "%Y-%m-%d").replace(tzinfo=UTC),
    fmt=KEY_FORMAT,
    timezone="UTC",
    end_offset=1,
)
