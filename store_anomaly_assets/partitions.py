"""Daily partitions: one per store-local business day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from store_anomaly_assets.settings import Settings

_settings = Settings.from_env()

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=_settings.partition_start.isoformat(),
    timezone=_settings.business_timezone,
)

RANGE_START_TAG = ASSET_PARTITION_RANGE_START_TAG
RANGE_END_TAG = ASSET_PARTITION_RANGE_END_TAG
PARTITION_TAG = PARTITION_NAME_TAG


def range_tags(start: date, end: date) -> dict[str, str]:
    """Run tags asking Dagster for one run over the partitions start..end."""
    return {RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat()}


def last_complete_day(now: datetime | None = None) -> date:
    """The newest partition at `now`: yesterday in the business time zone."""
    now = now or datetime.now(UTC)
    return now.astimezone(ZoneInfo(_settings.business_timezone)).date() - timedelta(days=1)


def daily_range(last_day: date, lookback_days: int) -> tuple[date, date]:
    """The daily run's range: the last complete day and its lookback for late records."""
    first = max(last_day - timedelta(days=lookback_days), _settings.partition_start)
    return first, last_day


def validate_range(start: date, end: date) -> None:
    """Raise ValueError naming the date when a range falls outside the partitions."""
    if start > end:
        raise ValueError(f"--backfill-from {start} is after --backfill-to {end}")
    first = _settings.partition_start
    last = last_complete_day()
    for day in (start, end):
        if not first <= day <= last:
            raise ValueError(
                f"date {day} is outside the partitions {first}..{last} "
                "(PARTITION_START_DATE to the last complete business day)"
            )


def run_range(context: dg.AssetExecutionContext) -> tuple[date | None, date | None]:
    """The business days a run covers, from its partition tags (None, None if unpartitioned).

    Unpartitioned steps (the store master, the checks) read the run's tags, since only
    partitioned assets see a partition range on their context.
    """
    tags = context.run.tags
    if RANGE_START_TAG in tags:
        return date.fromisoformat(tags[RANGE_START_TAG]), date.fromisoformat(tags[RANGE_END_TAG])
    if PARTITION_TAG in tags:
        day = date.fromisoformat(tags[PARTITION_TAG])
        return day, day
    return None, None


def partition_dates(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """First and last business day of a partitioned asset's run."""
    keys = context.partition_key_range
    return date.fromisoformat(keys.start), date.fromisoformat(keys.end)
