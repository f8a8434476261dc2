"""Daily partitions: one per store-local business day, and the ranges runs cover."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from store_anomaly_assets.config import AppConfig

# Dagster's run tags for a ranged (single-run backfill) run and a one-partition run.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"


def daily_partitions(config: AppConfig) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(
        start_date=config.partition_start_date.isoformat(), timezone=config.business_timezone
    )


def range_tags(start: date, end: date) -> dict[str, str]:
    """Run tags asking Dagster for one run over the partitions start..end."""
    return {RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat()}


def last_complete_day(config: AppConfig, now: datetime | None = None) -> date:
    """The newest partition at `now`: yesterday in the business time zone."""
    now = now or datetime.now(UTC)
    return now.astimezone(ZoneInfo(config.business_timezone)).date() - timedelta(days=1)


def daily_range(config: AppConfig, last_day: date) -> tuple[date, date]:
    """The daily run's range: the last complete day and its lookback for late records."""
    first = max(last_day - timedelta(days=config.lookback_days), config.partition_start_date)
    return first, last_day


def validate_range(config: AppConfig, start: date, end: date) -> None:
    """Raise ValueError naming the date when a range falls outside the partitions."""
    if start > end:
        raise ValueError(f"--backfill-from {start} is after --backfill-to {end}")
    first, last = config.partition_start_date, last_complete_day(config)
    for day in (start, end):
        if not first <= day <= last:
            raise ValueError(
                f"date {day} is outside the partitions {first}..{last} "
                "(PARTITION_START_DATE to the last complete business day)"
            )


def tag_range(tags: dict[str, str]) -> tuple[date | None, date | None]:
    """The business days a run covers, from its tags (None, None if unpartitioned)."""
    if RANGE_START_TAG in tags:
        return date.fromisoformat(tags[RANGE_START_TAG]), date.fromisoformat(tags[RANGE_END_TAG])
    if PARTITION_TAG in tags:
        day = date.fromisoformat(tags[PARTITION_TAG])
        return day, day
    return None, None


def run_range(context: dg.AssetExecutionContext) -> tuple[date | None, date | None]:
    """The business days a run covers.

    Unpartitioned steps (the store master, the checks) read the run's tags, since only
    partitioned assets see a partition range on their context.
    """
    return tag_range(context.run.tags)


def partition_dates(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """First and last business day of a partitioned asset's run."""
    keys = context.partition_key_range
    return date.fromisoformat(keys.start), date.fromisoformat(keys.end)
