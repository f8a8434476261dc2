"""Every query against the source databases, in one place (the guide's steps 1-5).

Aggregation happens inside the source database: orders, production records and
inspections are grouped by store and local business day, so only one row per store and
day crosses the network. The local day is computed in the query from the UTC time and
the UTC offset in force at that instant, a CASE over the store's zone and the offset
changes (daylight saving) that zoneinfo finds in the range, to the minute: local days
are exact in every zone, half-hour and quarter-hour ones included. Time predicates are
half-open ranges on the indexed column, so they stay sargable.

The row-validity rules of core/quality.py are applied in the same queries, as one
range predicate per measure (a NULL fails it too): rows that break them are counted
(`rows_excluded` = all rows - valid rows), never summed.

The same SQLAlchemy Core statements run on MySQL/MariaDB and on the embedded SQLite
demo; the SQL functions below that differ between dialects compile per dialect.
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


class epoch_minutes(FunctionElement):
    """Whole minutes from 1970-01-01 to a naive UTC DATETIME."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(epoch_minutes, "mysql")
@compiles(epoch_minutes, "mariadb")
def _epoch_minutes_mysql(element, compiler, **kw):
    # TIMESTAMPDIFF on DATETIME ignores the session time zone, unlike UNIX_TIMESTAMP.
    (column,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"TIMESTAMPDIFF(MINUTE, '1970-01-01 00:00:00', {column})"


@compiles(epoch_minutes, "sqlite")
def _epoch_minutes_sqlite(element, compiler, **kw):
    (column,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / 60)"


class day_of_minutes(FunctionElement):
    """Whole days in a non-negative count of minutes (integer division by 1440)."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(day_of_minutes, "mysql")
@compiles(day_of_minutes, "mariadb")
def _day_of_minutes_mysql(element, compiler, **kw):
    (minutes,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"(({minutes}) DIV 1440)"


@compiles(day_of_minutes, "sqlite")
def _day_of_minutes_sqlite(element, compiler, **kw):
    (minutes,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"(({minutes}) / 1440)"


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


Transitions = list[tuple[datetime | None, int]]


def _offset_minutes(instant: datetime, zone: ZoneInfo) -> int:
    offset = instant.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone).utcoffset()
    return int(offset.total_seconds() // 60)


def zone_transitions(time_zone: str, utc_lo: datetime, utc_hi: datetime) -> Transitions:
    """The UTC offsets (minutes) in force in a zone over naive UTC [utc_lo, utc_hi):
    `[(None, offset at utc_lo), (instant, offset from then on), ...]`, to the minute.

    Offsets change at most a few times a year and never twice within hours, so hourly
    probes find every change and a bisection finds its minute.
    """
    zone = ZoneInfo(time_zone)
    found: Transitions = [(None, _offset_minutes(utc_lo, zone))]
    probe = utc_lo
    while probe < utc_hi:
        following = min(probe + timedelta(hours=1), utc_hi)
        offset = _offset_minutes(following, zone)
        if offset != found[-1][1]:
            low, high = probe, following  # the change is in (low, high]
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                middle = middle.replace(second=0, microsecond=0)
                if middle <= low:
                    break
                if _offset_minutes(middle, zone) == found[-1][1]:
                    low = middle
                else:
                    high = middle
            found.append((high, offset))
        probe = following
    return found


def local_day(store_id: sa.ColumnElement, utc_time: sa.ColumnElement,
              stores: pl.DataFrame, utc_lo: datetime, utc_hi: datetime) -> sa.ColumnElement:
    """The local business day of `utc_time` at its store, as days since 1970-01-01.

    local minutes = UTC minutes + the offset of the store's zone at that instant; the
    offsets are a CASE over the zones (store ids) and, within a zone, its changes.
    """
    def zone_offset(transitions: Transitions) -> sa.ColumnElement:
        if len(transitions) == 1:
            return sa.literal(transitions[0][1])
        whens = [(utc_time < instant, transitions[i][1])
                 for i, (instant, _) in enumerate(transitions[1:])]
        return sa.case(*whens, else_=transitions[-1][1])

    by_zone = stores.group_by("time_zone", maintain_order=True).agg("store_id").rows()
    offsets = [(ids, zone_offset(zone_transitions(tz, utc_lo, utc_hi))) for tz, ids in by_zone]
    offset = offsets[-1][1] if len(offsets) == 1 else sa.case(
        *[(store_id.in_(ids), zone) for ids, zone in offsets[:-1]], else_=offsets[-1][1])
    return day_of_minutes(epoch_minutes(utc_time) + offset)


def _day_query(
    table: sa.Table,
    time_col: sa.Column,
    stores: pl.DataFrame,
    utc_bounds_: tuple[datetime, datetime],
    measures: Sequence[sa.ColumnElement],
    *filters: sa.ColumnElement,
) -> sa.Select:
    lo, hi = utc_bounds_
    day = local_day(table.c.dept_id, time_col, stores, lo, hi).label("local_day")
    return (
        sa.select(table.c.dept_id.label("store_id"), day, *measures,
                  sa.func.count().label("rows_total"))
        .where(
            table.c.dept_id.in_(sa.bindparam("store_ids", expanding=True)),
            time_col >= sa.bindparam("utc_lo"),
            time_col < sa.bindparam("utc_hi"),
            *filters,
        )
        .group_by(table.c.dept_id, day)
    )


Window = tuple[pl.DataFrame, datetime, datetime]  # stores, naive UTC [lo, hi)


def sales_query(window: Window) -> sa.Select:
    """Step 2: completed orders with a plausible amount, and their revenue, per store and
    local day. Binds `max_order_amount`."""
    o = t_order.c
    valid = o.pay_amount.between(0, sa.bindparam("max_order_amount"))
    return _day_query(
        t_order, o.create_time, window[0], window[1:],
        [sa.func.sum(sa.case((valid, o.pay_amount))).label("revenue"),
         sa.func.count(sa.case((valid, 1))).label("order_count")],
        o.order_status == 1,
    )


def production_query(window: Window) -> sa.Select:
    """Step 3: finished production records of a plausible duration, per store and local
    day. Binds `max_production_seconds`."""
    p = t_production_record.c
    seconds = seconds_between(p.start_time, p.finish_time)
    valid = seconds.between(0, sa.bindparam("max_production_seconds"))
    return _day_query(
        t_production_record, p.start_time, window[0], window[1:],
        [sa.func.count(sa.case((valid, 1))).label("production_count"),
         sa.func.sum(sa.case((valid, seconds))).label("production_seconds")],
        p.finish_time.is_not(None),
    )


def quality_query(window: Window) -> sa.Select:
    """Step 5: inspections with a score within 0-100, and their summed score, per store
    and local day."""
    q = t_inspection_record.c
    low, high = INSPECTION_SCORE_RANGE
    valid = q.total_score.between(low, high)
    return _day_query(
        t_inspection_record, q.inspection_time, window[0], window[1:],
        [sa.func.count(sa.case((valid, 1))).label("inspection_count"),
         sa.func.sum(sa.case((valid, q.total_score))).label("score_sum")],
    )


def staffing_query() -> sa.Select:
    """Step 4: scheduled hours and distinct employees per store and local work date.

    A shift outside 0-16 hours counts in `rows_excluded` only.
    """
    e = t_employee_schedule.c
    valid = sa.and_(e.scheduled_hours.is_not(None),
                    e.scheduled_hours.between(0, MAX_SHIFT_HOURS))
    excluded = sa.func.sum(sa.case((valid, 0), else_=1)).label("rows_excluded")
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


def _daily(
    engine: sa.Engine,
    query: Callable[[Window], sa.Select],
    params: dict[str, object],
    stores: pl.DataFrame,
    start: date,
    end: date,
    measures: dict[str, type[pl.DataType]],
    derived: dict[str, pl.Expr],
    schema: dict[str, type[pl.DataType]],
    valid_rows: str,
) -> pl.DataFrame:
    """Run a per-store, per-local-day aggregate over start..end, then derive.

    `valid_rows` names the measure that counts the rows passing the validity rules."""
    active = _active(stores)
    if active.is_empty():
        return _empty(schema)
    lo, hi = utc_bounds(active["time_zone"].unique().to_list(), start, end)
    types = {"store_id": pl.Int64, "local_day": pl.Int64, **measures, "rows_total": pl.Int64}
    bound = {**params, "store_ids": active["store_id"].to_list(), "utc_lo": lo, "utc_hi": hi}
    return (
        read_frame(engine, query((active, lo, hi)), bound, schema_overrides=types)
        .with_columns(pl.col(list(measures)).fill_null(0),  # a day of invalid rows sums 0
                      metric_date=pl.from_epoch("local_day", time_unit="d"),
                      rows_excluded=pl.col("rows_total") - pl.col(valid_rows))
        # The UTC bounds span every zone's days, so other zones' neighbour days come too.
        .filter(pl.col("metric_date").is_between(start, end))
        .with_columns(**derived)
        .select(list(schema))
        .sort("store_id", "metric_date")
    )


def extract_sales(engine: sa.Engine, stores: pl.DataFrame, start: date, end: date,
                  limits: DataQualitySettings = _DEFAULT_LIMITS) -> pl.DataFrame:
    """Revenue (to the cent) and valid completed orders per active store and local day."""
    return _daily(
        engine, sales_query, {"max_order_amount": limits.max_order_amount}, stores,
        start, end,
        measures={"revenue": pl.Float64, "order_count": pl.Int64},
        derived={"revenue": pl.col("revenue").round(2)},
        schema=SALES_SCHEMA, valid_rows="order_count",
    )


def extract_production(engine: sa.Engine, stores: pl.DataFrame, start: date, end: date,
                       limits: DataQualitySettings = _DEFAULT_LIMITS) -> pl.DataFrame:
    """Valid finished production records and their mean seconds per store and local day."""
    return _daily(
        engine, production_query, {"max_production_seconds": limits.max_production_seconds},
        stores, start, end,
        measures={"production_count": pl.Int64, "production_seconds": pl.Float64},
        derived={"avg_production_seconds": pl.when(pl.col("production_count") > 0)
                 .then(pl.col("production_seconds") / pl.col("production_count"))},
        schema=PRODUCTION_SCHEMA, valid_rows="production_count",
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
    return _daily(
        engine, quality_query, {}, stores, start, end,
        measures={"inspection_count": pl.Int64, "score_sum": pl.Float64},
        derived={"inspection_score": pl.when(pl.col("inspection_count") > 0)
                 .then(pl.col("score_sum") / pl.col("inspection_count")).round(2)},
        schema=QUALITY_SCHEMA, valid_rows="inspection_count",
    )
