"""Partitions: 5-minute observation windows and hourly product windows (UTC).

An observation belongs to the window containing its canonical start time (the earliest file
stamp of its group). Nobody else formats or parses partition keys. Window arithmetic is done
here by flooring, never by listing a definition's keys (a year of 5-minute keys takes ~1 s to
list; see ``docs/partitioning.md``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import dagster as dg

WINDOW = timedelta(minutes=5)
HOUR = timedelta(hours=1)
KEY_FORMAT = "%Y-%m-%d-%H:%M"
DEFAULT_START = "2025-01-01"
START_ENV = "DSA110_PARTITION_START"


def partition_start() -> str:
    """First day (UTC, ``YYYY-MM-DD``) of the partitions; ``DSA110_PARTITION_START`` overrides."""
    return os.environ.get(START_ENV) or DEFAULT_START


# end_offset=1 makes the window in progress addressable, so data is processed as it arrives.
OBSERVATION_PARTITIONS = dg.TimeWindowPartitionsDefinition(
    cron_schedule="*/5 * * * *",
    start=datetime.strptime(partition_start(), "%Y-%m-%d").replace(tzinfo=timezone.utc),
    fmt=KEY_FORMAT,
    timezone="UTC",
    end_offset=1,
)
HOURLY_PARTITIONS = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 * * * *",
    start=datetime.strptime(partition_start(), "%Y-%m-%d").replace(tzinfo=timezone.utc),
    fmt=KEY_FORMAT,
    timezone="UTC",
    end_offset=1,
)


def window_start(t: datetime) -> datetime:
    """Start (UTC) of the 5-minute window containing ``t``."""
    t = t.astimezone(timezone.utc)
    return t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0)


def window_key(t: datetime) -> str:
    """Partition key of the 5-minute window containing ``t``."""
    return window_start(t).strftime(KEY_FORMAT)


def window_bounds(key: str) -> tuple[datetime, datetime]:
    """[start, end) of a 5-minute partition key, UTC."""
    start = datetime.strptime(key, KEY_FORMAT).replace(tzinfo=timezone.utc)
    return start, start + WINDOW


def windows_between(first_key: str, last_key: str) -> list[str]:
    """Keys strictly after ``first_key`` and strictly before ``last_key``."""
    start, _ = window_bounds(first_key)
    end, _ = window_bounds(last_key)
    keys = []
    t = start + WINDOW
    while t < end:
        keys.append(t.strftime(KEY_FORMAT))
        t += WINDOW
    return keys


def hour_key(t: datetime) -> str:
    """Partition key of the hour containing ``t``."""
    return t.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0).strftime(KEY_FORMAT)


def hour_bounds(key: str) -> tuple[datetime, datetime]:
    """[start, end) of an hourly partition key, UTC."""
    start = datetime.strptime(key, KEY_FORMAT).replace(tzinfo=timezone.utc)
    return start, start + HOUR


def windows_in(start: datetime, end: datetime) -> list[str]:
    """Keys of the 5-minute windows in [start, end)."""
    keys, t = [], window_start(start)
    while t < end:
        keys.append(t.strftime(KEY_FORMAT))
        t += WINDOW
    return keys
