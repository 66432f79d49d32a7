"""When hourly mosaics are requested (sensors/hourly_products.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from dsa_assets import partitions
from sensors.hourly_products import hours_ready

HOUR = "2026-01-15-13:00"
END = datetime(2026, 1, 15, 14, 0, tzinfo=UTC).timestamp()


def windows(n: int) -> set[str]:
    start, end = partitions.hour_bounds(HOUR)
    return set(partitions.windows_in(start, end)[:n])


def test_complete_hour_is_mosaicked_at_once():
    ready, record = hours_ready(windows(12), 12, 1800, END - 100, {})
    assert ready == {HOUR: "complete"} and record[HOUR]["mosaicked"] == 12
    again, _ = hours_ready(windows(12), 12, 1800, END + 5000, record)
    assert again == {}, "not requested twice"


def test_incomplete_hour_waits_for_the_timeout_after_its_last_image():
    ready, record = hours_ready(windows(11), 12, 1800, END + 60, {})
    assert ready == {}
    ready, record = hours_ready(windows(11), 12, 1800, END + 60 + 1799, record)
    assert ready == {}
    ready, record = hours_ready(windows(11), 12, 1800, END + 60 + 1800, record)
    assert ready == {HOUR: "timeout"}
    # the missing window's image arrives late: the hour is mosaicked again, complete
    ready, record = hours_ready(windows(12), 12, 1800, END + 9000, record)
    assert ready == {HOUR: "complete"}


def test_backfill_of_old_data_waits_for_the_hour_to_fill():
    long_after = END + 30 * 86400
    ready, record = hours_ready(windows(1), 12, 1800, long_after, {})
    assert ready == {}, "the first image of a backfilled hour is not mosaicked alone"
    ready, record = hours_ready(windows(6), 12, 1800, long_after + 600, record)
    assert ready == {}
    ready, _ = hours_ready(windows(6), 12, 1800, long_after + 600 + 1800, record)
    assert ready == {HOUR: "timeout"}
