"""Every query against the source databases, in one place (the guide's steps 1-5).

Aggregation happens inside the source database: orders, production records and
inspections are grouped by store and UTC hour, so no raw rows cross the network. The
hour buckets are then assigned to each store's local business day in polars, which is
exact across daylight-saving changes (23- and 25-hour days) because every US offset is a
whole number of hours. Time predicates are half-open ranges on the indexed column, so
they stay sargable.

The same SQLAlchemy Core statements run on MySQL/MariaDB and on the embedded SQLite
demo; the two functions below that differ between dialects compile per dialect.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from store_anomaly_assets.db.frames import read_frame
from store_anomaly_assets.db.sources.schema import (
    t_employee_schedule,
    t_inspection_record,
    t_order,
    t_production_record,
    t_shop_info,
)

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


class epoch_hour(FunctionElement):
    """Whole hours since 1970-01-01 of a naive UTC DATETIME, as an integer."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(epoch_hour, "mysql")
@compiles(epoch_hour, "mariadb")
def _epoch_hour_mysql(element, compiler, **kw):
    # TIMESTAMPDIFF on DATETIME ignores the session time zone, unlike UNIX_TIMESTAMP.
    column = compiler.process(element.clauses, **kw)
    return f"TIMESTAMPDIFF(HOUR, '1970-01-01 00:00:00', {column})"


@compiles(epoch_hour, "sqlite")
def _epoch_hour_sqlite(element, compiler, **kw):
    return f"(CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER) / 3600)"


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


def active_store_ids(stores: pl.DataFrame) -> list[int]:
    """The ids of the store master's active stores: the stores a run processes."""
    return stores.filter(pl.col("is_active"))["store_id"].to_list()


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


def _hourly_query(
    table: sa.Table, time_col: sa.Column, measures: Sequence[sa.ColumnElement], *filters
) -> sa.Select:
    hour = epoch_hour(time_col).label("epoch_hour")
    return (
        sa.select(table.c.dept_id.label("store_id"), hour, *measures)
        .where(
            table.c.dept_id.in_(sa.bindparam("store_ids", expanding=True)),
            time_col >= sa.bindparam("utc_lo"),
            time_col < sa.bindparam("utc_hi"),
            *filters,
        )
        .group_by(table.c.dept_id, hour)
    )


def sales_query() -> sa.Select:
    """Step 2: completed orders and their revenue per store and UTC hour."""
    o = t_order.c
    return _hourly_query(
        t_order,
        o.create_time,
        [sa.func.sum(o.pay_amount).label("revenue"), sa.func.count().label("order_count")],
        o.order_status == 1,
    )


def production_query() -> sa.Select:
    """Step 3: finished production records and their total seconds per store and UTC hour."""
    p = t_production_record.c
    return _hourly_query(
        t_production_record,
        p.start_time,
        [
            sa.func.count().label("production_count"),
            sa.func.sum(seconds_between(p.start_time, p.finish_time)).label("production_seconds"),
        ],
        p.finish_time.is_not(None),
    )


def quality_query() -> sa.Select:
    """Step 5: inspections and their summed score per store and UTC hour."""
    q = t_inspection_record.c
    return _hourly_query(
        t_inspection_record,
        q.inspection_time,
        [
            sa.func.count().label("inspection_count"),
            sa.func.sum(q.total_score).label("score_sum"),
        ],
    )


def staffing_query() -> sa.Select:
    """Step 4: scheduled hours and distinct employees per store and local work date."""
    e = t_employee_schedule.c
    return (
        sa.select(
            e.dept_id.label("store_id"),
            e.work_date.label("metric_date"),
            sa.func.sum(e.scheduled_hours).label("scheduled_hours"),
            sa.func.count(sa.distinct(e.employee_id)).label("headcount"),
        )
        .where(
            e.dept_id.in_(sa.bindparam("store_ids", expanding=True)),
            e.work_date >= sa.bindparam("date_lo"),
            e.work_date <= sa.bindparam("date_hi"),
        )
        .group_by(e.dept_id, e.work_date)
    )


def _local_days(hourly: pl.DataFrame, stores: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
    """Attach each store's local business day to UTC hour buckets and keep start..end."""
    with_tz = hourly.join(stores.select("store_id", "time_zone"), on="store_id", how="inner")
    utc_hour = pl.from_epoch(pl.col("epoch_hour") * 3600, time_unit="s").dt.replace_time_zone(
        "UTC"
    )
    # convert_time_zone takes one zone per expression, so convert per zone present.
    parts = [
        part.with_columns(
            metric_date=utc_hour.dt.convert_time_zone(tz).dt.date()
        )
        for (tz,), part in with_tz.partition_by("time_zone", as_dict=True).items()
    ]
    if not parts:
        return with_tz.with_columns(metric_date=pl.lit(None, dtype=pl.Date))
    return pl.concat(parts).filter(pl.col("metric_date").is_between(start, end))


def _active(stores: pl.DataFrame) -> pl.DataFrame:
    return stores.filter(pl.col("is_active"))


def _hourly_params(stores: pl.DataFrame, start: date, end: date) -> dict:
    lo, hi = utc_bounds(stores["time_zone"].unique().to_list(), start, end)
    return {"store_ids": stores["store_id"].to_list(), "utc_lo": lo, "utc_hi": hi}


SALES_SCHEMA = {"store_id": pl.Int64, "metric_date": pl.Date, "revenue": pl.Float64,
                "order_count": pl.Int64}
PRODUCTION_SCHEMA = {"store_id": pl.Int64, "metric_date": pl.Date,
                     "production_count": pl.Int64, "avg_production_seconds": pl.Float64}
STAFFING_SCHEMA = {"store_id": pl.Int64, "metric_date": pl.Date, "scheduled_hours": pl.Float64,
                   "headcount": pl.Int64}
QUALITY_SCHEMA = {"store_id": pl.Int64, "metric_date": pl.Date, "inspection_count": pl.Int64,
                  "inspection_score": pl.Float64}


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _daily_from_hourly(
    engine: sa.Engine,
    query: sa.Select,
    stores: pl.DataFrame,
    start: date,
    end: date,
    measures: dict[str, type[pl.DataType]],
    derived: dict[str, pl.Expr],
    schema: dict[str, type[pl.DataType]],
) -> pl.DataFrame:
    """Run an hourly aggregate, sum its `measures` per store and local day, then derive."""
    active = _active(stores)
    if active.is_empty():
        return _empty(schema)
    hourly = read_frame(
        engine, query, _hourly_params(active, start, end),
        schema_overrides={"store_id": pl.Int64, "epoch_hour": pl.Int64, **measures},
    )
    return (
        _local_days(hourly, active, start, end)
        .group_by("store_id", "metric_date")
        .agg([pl.col(c).sum() for c in measures])
        .with_columns(**derived)
        .select(list(schema))
        .sort("store_id", "metric_date")
    )


def extract_sales(engine: sa.Engine, stores: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
    """Revenue (to the cent) and completed orders per active store and local day."""
    return _daily_from_hourly(
        engine, sales_query(), stores, start, end,
        measures={"revenue": pl.Float64, "order_count": pl.Int64},
        derived={"revenue": pl.col("revenue").round(2)},
        schema=SALES_SCHEMA,
    )


def extract_production(
    engine: sa.Engine, stores: pl.DataFrame, start: date, end: date
) -> pl.DataFrame:
    """Finished production records and their mean seconds per active store and local day."""
    return _daily_from_hourly(
        engine, production_query(), stores, start, end,
        measures={"production_count": pl.Int64, "production_seconds": pl.Float64},
        derived={"avg_production_seconds": pl.col("production_seconds")
                 / pl.col("production_count")},
        schema=PRODUCTION_SCHEMA,
    )


def extract_staffing(
    engine: sa.Engine, stores: pl.DataFrame, start: date, end: date
) -> pl.DataFrame:
    """Scheduled hours and distinct employees per active store and work date."""
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


def extract_quality(
    engine: sa.Engine, stores: pl.DataFrame, start: date, end: date
) -> pl.DataFrame:
    """Inspections and their mean score per active store and local day."""
    return _daily_from_hourly(
        engine, quality_query(), stores, start, end,
        measures={"inspection_count": pl.Int64, "score_sum": pl.Float64},
        derived={"inspection_score": (pl.col("score_sum") / pl.col("inspection_count"))
                 .round(2)},
        schema=QUALITY_SCHEMA,
    )
