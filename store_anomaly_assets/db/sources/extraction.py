"""Every query against the source databases, in one place (the guide's steps 1-5).

Aggregation happens inside the source database: orders, production records and
inspections are grouped by store and UTC time bucket, so no raw rows cross the network.
The buckets are then assigned to each store's local business day in polars. A bucket
never straddles a local midnight: it is an hour for stores whose zone is a whole number
of hours from UTC throughout the range, and a quarter of an hour for the others
(Asia/Kolkata, Asia/Kathmandu, Australia/Lord_Howe...), since every offset in use is a
multiple of 15 minutes. Local days are therefore exact across daylight-saving changes.
Time predicates are half-open ranges on the indexed column, so they stay sargable.

The row-validity rules of core/quality.py are applied in the same queries: rows that
break them are counted (`rows_excluded`), never summed.

The same SQLAlchemy Core statements run on MySQL/MariaDB and on the embedded SQLite
demo; the two functions below that differ between dialects compile per dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from store_anomaly_assets.core.quality import (
    INSPECTION_SCORE_RANGE,
    MAX_SHIFT_HOURS,
    DataQualitySettings,
)
from store_anomaly_assets.db.frames import read_frame
from store_anomaly_assets.db.sources.schema import (
    t_employee_schedule,
    t_inspection_record,
    t_order,
    t_production_record,
    t_shop_info,
)

_DEFAULT_LIMITS = DataQualitySettings()

STORE_COLUMNS = {
    "store_id": pl.Int64,
    "store_name": pl.String,
    "store_name_cn": pl.String,
    "city": pl.String,
    "state": pl.String,
    "district": pl.String,
    "region": pl.String,
    "time_zone": pl.String,
    "open_date": pl.Date,
    "shop_status": pl.Int64,
    "is_active": pl.Boolean,
}


class epoch_bucket(FunctionElement):
    """The start of a naive UTC DATETIME's bucket, in whole minutes since 1970-01-01.

    `width` (minutes, a divisor of 60) is a constant of the query, not data: it is a
    literal clause so that it is part of the statement's cache key.
    """

    type = sa.BigInteger()
    inherit_cache = True

    def __init__(self, column: sa.ColumnElement, width: int) -> None:
        if 60 % width:
            raise ValueError(f"bucket width {width} does not divide an hour")
        super().__init__(column, sa.literal_column(str(int(width))))


@compiles(epoch_bucket, "mysql")
@compiles(epoch_bucket, "mariadb")
def _epoch_bucket_mysql(element, compiler, **kw):
    # TIMESTAMPDIFF on DATETIME ignores the session time zone, unlike UNIX_TIMESTAMP.
    column, width = (compiler.process(c, **kw) for c in element.clauses)
    if width == "60":
        return f"(TIMESTAMPDIFF(HOUR, '1970-01-01 00:00:00', {column}) * 60)"
    return f"(TIMESTAMPDIFF(MINUTE, '1970-01-01 00:00:00', {column}) DIV {width} * {width})"


@compiles(epoch_bucket, "sqlite")
def _epoch_bucket_sqlite(element, compiler, **kw):
    column, width = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / ({width} * 60) * {width})"


class seconds_between(FunctionElement):
    """Whole seconds from the first DATETIME to the second."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(seconds_between, "mysql")
@compiles(seconds_between, "mariadb")
def _seconds_between_mysql(element, compiler, **kw):
    start, end = list(element.clauses)
    return f"TIMESTAMPDIFF(SECOND, {compiler.process(start, **kw)}, {compiler.process(end, **kw)})"


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element, compiler, **kw):
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return (
        f"(CAST(strftime('%s', {end}) AS INTEGER) - CAST(strftime('%s', {start}) AS INTEGER))"
    )


def store_master_query() -> sa.Select:
    """Step 1: every store that is not deleted, with its time zone and status."""
    s = t_shop_info.c
    return sa.select(
        s.dept_id.label("store_id"),
        s.shop_name.label("store_name"),
        s.shop_name_cn.label("store_name_cn"),
        s.city,
        s.state,
        s.district,
        s.region,
        s.time_zone,
        s.open_date,
        s.shop_status,
    ).where(s.is_deleted == 0)


def load_store_master(engine: sa.Engine, allow_list: Sequence[int] = ()) -> pl.DataFrame:
    """The store master with `is_active`: operating, not deleted, and on the allow-list.

    Raises ValueError naming the ids when the allow-list names stores the master lacks,
    and naming the store when its time zone is not a valid IANA name.
    """
    stores = read_frame(engine, store_master_query(), schema_overrides=STORE_COLUMNS)
    stores = stores.with_columns(pl.col("time_zone").fill_null("America/New_York"))
    unknown = sorted(set(allow_list) - set(stores["store_id"].to_list()))
    if unknown:
        raise ValueError(
            f"ACTIVE_STORES names store id(s) {unknown} that are not in "
            f"t_shop_info (or are deleted)"
        )
    for store_id, tz in stores.select("store_id", "time_zone").iter_rows():
        try:
            ZoneInfo(tz)
        except Exception:
            raise ValueError(
                f"store {store_id}: t_shop_info.time_zone {tz!r} is not an IANA time zone"
            ) from None
    active = pl.col("shop_status") == 1
    if allow_list:
        active = active & pl.col("store_id").is_in(list(allow_list))
    return stores.with_columns(is_active=active).select(list(STORE_COLUMNS))


def require_stores(stores: pl.DataFrame, where: str) -> None:
    """Refuse a store master with nothing to process: a run over it would write nothing
    and still succeed. Raises ValueError naming the table and the database."""
    if stores.is_empty():
        raise ValueError(f"t_shop_info in {where} has no stores (none that are not deleted): "
                         "nothing to process; is this the right database?")
    if not stores["is_active"].any():
        raise ValueError(f"t_shop_info in {where} has {stores.height} store(s) but none is "
                         "active (shop_status 1 and on ACTIVE_STORES): nothing to process")


def active_store_ids(stores: pl.DataFrame) -> list[int]:
    """The ids of the store master's active stores: the stores a run processes."""
    return stores.filter(pl.col("is_active"))["store_id"].to_list()


def store_places(stores: pl.DataFrame) -> pl.DataFrame:
    """Each store's district and region, blank names as NULL (store_id, district, region)."""
    blank_as_null = [pl.col(c).str.strip_chars().replace("", None).alias(c)
                     for c in ("district", "region")]
    return stores.select("store_id", *blank_as_null)


def utc_bounds(time_zones: Sequence[str], start: date, end: date) -> tuple[datetime, datetime]:
    """Naive UTC [lo, hi) covering local days start..end in every given time zone."""
    utc = ZoneInfo("UTC")
    lo = min(
        datetime.combine(start, time(), ZoneInfo(tz)).astimezone(utc) for tz in time_zones
    )
    hi = max(
        datetime.combine(end + timedelta(days=1), time(), ZoneInfo(tz)).astimezone(utc)
        for tz in time_zones
    )
    return lo.replace(tzinfo=None), hi.replace(tzinfo=None)


def sub_hour_zones(time_zones: Sequence[str], start: date, end: date) -> set[str]:
    """The zones that are not a whole number of hours from UTC at some point in the range.

    Offsets change at most a few times a year, so the offset at each day's UTC noon
    (one day before to one day after the range) sees every offset in force for a day.
    """
    days = pl.datetime_range(
        datetime.combine(start - timedelta(days=1), time(12)),
        datetime.combine(end + timedelta(days=1), time(12)),
        "1d", time_zone="UTC", eager=True,
    )
    found = set()
    for tz in set(time_zones):
        local = days.dt.convert_time_zone(tz)
        offset = (local.dt.base_utc_offset() + local.dt.dst_offset()).dt.total_minutes()
        if (offset % 60 != 0).any():
            found.add(tz)
    return found


def bucket_groups(
    active: pl.DataFrame, start: date, end: date
) -> list[tuple[int, dict[str, object]]]:
    """The bucketed queries local days start..end need: (bucket minutes, parameters).

    Stores in sub-hour zones get their own query with quarter-hour buckets, so the
    common case keeps the cheaper hourly grouping.
    """
    quarter = list(sub_hour_zones(active["time_zone"].unique().to_list(), start, end))
    groups = []
    for width, group in ((60, active.filter(~pl.col("time_zone").is_in(quarter))),
                         (15, active.filter(pl.col("time_zone").is_in(quarter)))):
        if not group.is_empty():
            lo, hi = utc_bounds(group["time_zone"].unique().to_list(), start, end)
            groups.append((width, {"store_ids": group["store_id"].to_list(),
                                   "utc_lo": lo, "utc_hi": hi}))
    return groups


def _bucket_query(
    table: sa.Table,
    time_col: sa.Column,
    width: int,
    measures: Sequence[sa.ColumnElement],
    *filters: sa.ColumnElement,
) -> sa.Select:
    bucket = epoch_bucket(time_col, width).label("epoch_minute")
    return (
        sa.select(table.c.dept_id.label("store_id"), bucket, *measures)
        .where(
            table.c.dept_id.in_(sa.bindparam("store_ids", expanding=True)),
            time_col >= sa.bindparam("utc_lo"),
            time_col < sa.bindparam("utc_hi"),
            *filters,
        )
        .group_by(table.c.dept_id, bucket)
    )


def _valid_and_excluded(valid: sa.ColumnElement) -> tuple[sa.ColumnElement, sa.ColumnElement]:
    """Counts of the group's rows that pass and that break the validity rules."""
    return (sa.func.sum(sa.case((valid, 1), else_=0)).label("valid_rows"),
            sa.func.sum(sa.case((valid, 0), else_=1)).label("rows_excluded"))


def sales_query(width: int = 60) -> sa.Select:
    """Step 2: completed orders with a plausible amount, and their revenue, per bucket.

    Binds `max_order_amount`.
    """
    o = t_order.c
    amount = o.pay_amount
    valid = sa.and_(amount.is_not(None), amount >= 0,
                    amount <= sa.bindparam("max_order_amount"))
    order_count, excluded = _valid_and_excluded(valid)
    return _bucket_query(
        t_order, o.create_time, width,
        [sa.func.sum(sa.case((valid, amount))).label("revenue"),
         order_count.label("order_count"), excluded],
        o.order_status == 1,
    )


def production_query(width: int = 60) -> sa.Select:
    """Step 3: finished production records of a plausible duration, per bucket.

    Binds `max_production_seconds`.
    """
    p = t_production_record.c
    seconds = seconds_between(p.start_time, p.finish_time)
    valid = sa.and_(seconds >= 0, seconds <= sa.bindparam("max_production_seconds"))
    production_count, excluded = _valid_and_excluded(valid)
    return _bucket_query(
        t_production_record, p.start_time, width,
        [production_count.label("production_count"),
         sa.func.sum(sa.case((valid, seconds))).label("production_seconds"), excluded],
        p.finish_time.is_not(None),
    )


def quality_query(width: int = 60) -> sa.Select:
    """Step 5: inspections with a score within 0-100, and their summed score, per bucket."""
    q = t_inspection_record.c
    low, high = INSPECTION_SCORE_RANGE
    valid = sa.and_(q.total_score.is_not(None), q.total_score.between(low, high))
    inspection_count, excluded = _valid_and_excluded(valid)
    return _bucket_query(
        t_inspection_record, q.inspection_time, width,
        [inspection_count.label("inspection_count"),
         sa.func.sum(sa.case((valid, q.total_score))).label("score_sum"), excluded],
    )


def staffing_query() -> sa.Select:
    """Step 4: scheduled hours and distinct employees per store and local work date.

    A shift outside 0-16 hours counts in `rows_excluded` only.
    """
    e = t_employee_schedule.c
    valid = sa.and_(e.scheduled_hours.is_not(None),
                    e.scheduled_hours.between(0, MAX_SHIFT_HOURS))
    excluded = _valid_and_excluded(valid)[1]
    return (
        sa.select(
            e.dept_id.label("store_id"),
            e.work_date.label("metric_date"),
            sa.func.sum(sa.case((valid, e.scheduled_hours))).label("scheduled_hours"),
            sa.func.count(sa.distinct(sa.case((valid, e.employee_id)))).label("headcount"),
            excluded,
        )
        .where(
            e.dept_id.in_(sa.bindparam("store_ids", expanding=True)),
            e.work_date >= sa.bindparam("date_lo"),
            e.work_date <= sa.bindparam("date_hi"),
        )
        .group_by(e.dept_id, e.work_date)
    )


def _local_days(buckets: pl.DataFrame, stores: pl.DataFrame, start: date,
                end: date) -> pl.DataFrame:
    """Attach each store's local business day to UTC buckets and keep start..end."""
    with_tz = buckets.join(stores.select("store_id", "time_zone"), on="store_id", how="inner")
    utc = pl.from_epoch(pl.col("epoch_minute") * 60, time_unit="s").dt.replace_time_zone("UTC")
    # convert_time_zone takes one zone per expression, so convert per zone present.
    parts = [
        part.with_columns(metric_date=utc.dt.convert_time_zone(tz).dt.date())
        for (tz,), part in with_tz.partition_by("time_zone", as_dict=True).items()
    ]
    if not parts:
        return with_tz.with_columns(metric_date=pl.lit(None, dtype=pl.Date))
    return pl.concat(parts).filter(pl.col("metric_date").is_between(start, end))


def _active(stores: pl.DataFrame) -> pl.DataFrame:
    return stores.filter(pl.col("is_active"))


SALES_SCHEMA = {"store_id": pl.Int64, "metric_date": pl.Date, "revenue": pl.Float64,
                "order_count": pl.Int64, "rows_excluded": pl.Int64}
PRODUCTION_SCHEMA = {"store_id": pl.Int64, "metric_date": pl.Date,
                     "production_count": pl.Int64, "avg_production_seconds": pl.Float64,
                     "rows_excluded": pl.Int64}
STAFFING_SCHEMA = {"store_id": pl.Int64, "metric_date": pl.Date, "scheduled_hours": pl.Float64,
                   "headcount": pl.Int64, "rows_excluded": pl.Int64}
QUALITY_SCHEMA = {"store_id": pl.Int64, "metric_date": pl.Date, "inspection_count": pl.Int64,
                  "inspection_score": pl.Float64, "rows_excluded": pl.Int64}


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _daily_from_buckets(
    engine: sa.Engine,
    query: Callable[[int], sa.Select],
    params: dict[str, object],
    stores: pl.DataFrame,
    start: date,
    end: date,
    measures: dict[str, type[pl.DataType]],
    derived: dict[str, pl.Expr],
    schema: dict[str, type[pl.DataType]],
) -> pl.DataFrame:
    """Run a bucketed aggregate, sum its `measures` per store and local day, then derive."""
    active = _active(stores)
    if active.is_empty():
        return _empty(schema)
    types = {"store_id": pl.Int64, "epoch_minute": pl.Int64, **measures,
             "rows_excluded": pl.Int64}
    buckets = [
        read_frame(engine, query(width), {**params, **bound}, schema_overrides=types)
        .drop("valid_rows", strict=False)
        for width, bound in bucket_groups(active, start, end)
    ]
    return (
        _local_days(pl.concat(buckets), active, start, end)
        .group_by("store_id", "metric_date")
        .agg([pl.col(c).sum() for c in [*measures, "rows_excluded"]])
        .with_columns(**derived)
        .select(list(schema))
        .sort("store_id", "metric_date")
    )


def extract_sales(engine: sa.Engine, stores: pl.DataFrame, start: date, end: date,
                  limits: DataQualitySettings = _DEFAULT_LIMITS) -> pl.DataFrame:
    """Revenue (to the cent) and valid completed orders per active store and local day."""
    return _daily_from_buckets(
        engine, sales_query, {"max_order_amount": limits.max_order_amount}, stores,
        start, end,
        measures={"revenue": pl.Float64, "order_count": pl.Int64},
        derived={"revenue": pl.col("revenue").round(2)},
        schema=SALES_SCHEMA,
    )


def extract_production(engine: sa.Engine, stores: pl.DataFrame, start: date, end: date,
                       limits: DataQualitySettings = _DEFAULT_LIMITS) -> pl.DataFrame:
    """Valid finished production records and their mean seconds per store and local day."""
    return _daily_from_buckets(
        engine, production_query, {"max_production_seconds": limits.max_production_seconds},
        stores, start, end,
        measures={"production_count": pl.Int64, "production_seconds": pl.Float64},
        derived={"avg_production_seconds": pl.when(pl.col("production_count") > 0)
                 .then(pl.col("production_seconds") / pl.col("production_count"))},
        schema=PRODUCTION_SCHEMA,
    )


def extract_staffing(engine: sa.Engine, stores: pl.DataFrame, start: date, end: date,
                     limits: DataQualitySettings = _DEFAULT_LIMITS) -> pl.DataFrame:
    """Scheduled hours of valid shifts and distinct employees per store and work date."""
    active = _active(stores)
    if active.is_empty():
        return _empty(STAFFING_SCHEMA)
    params = {"store_ids": active["store_id"].to_list(), "date_lo": start, "date_hi": end}
    return (
        read_frame(engine, staffing_query(), params, schema_overrides=STAFFING_SCHEMA)
        .with_columns(pl.col("scheduled_hours").round(2))
        .select(list(STAFFING_SCHEMA))
        .sort("store_id", "metric_date")
    )


def extract_quality(engine: sa.Engine, stores: pl.DataFrame, start: date, end: date,
                    limits: DataQualitySettings = _DEFAULT_LIMITS) -> pl.DataFrame:
    """Valid inspections and their mean score per active store and local day."""
    return _daily_from_buckets(
        engine, quality_query, {}, stores, start, end,
        measures={"inspection_count": pl.Int64, "score_sum": pl.Float64},
        derived={"inspection_score": pl.when(pl.col("inspection_count") > 0)
                 .then(pl.col("score_sum") / pl.col("inspection_count")).round(2)},
        schema=QUALITY_SCHEMA,
    )
