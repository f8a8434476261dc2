"""What one day's report shows, read from the analytics tables (SQLAlchemy Core).

`load_report_data` is the package's only reader; it works on MySQL/MariaDB and SQLite
alike and returns typed frames (`read_frame` with the schemas below), empty or not.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.core import contracts
from store_anomaly_assets.db.analytics import schema
from store_anomaly_assets.db.frames import read_frame

GRID_DAYS = 14  # days of the health grid, ending on the report day
CHART_DAYS = 60  # days of each control chart, ending on the report day

HEALTH_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "store_id": pl.Int64, "store_name": pl.String, "metric_date": pl.Date,
    "health_score": pl.Float64, "health_status": pl.String,
}
# An alert row, and whether someone has acknowledged it.
ALERT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "id": pl.Int64, **contracts.ALERT_SCHEMA, "acknowledged": pl.Boolean,
    "acknowledged_by": pl.String, "incident_id": pl.Int64,
}
SERIES_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "store_id": pl.Int64, "metric_name": pl.String, "metric_date": pl.Date,
    "metric_value": pl.Float64, "z_score": pl.Float64, "cl": pl.Float64,
    "ucl_2s": pl.Float64, "lcl_2s": pl.Float64, "ucl_3s": pl.Float64, "lcl_3s": pl.Float64,
    "rules_violated": pl.String, "severity": pl.String,
}


# Data-quality findings of the grid's days, with the store's name when it has one.
FINDINGS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    **contracts.FINDING_SCHEMA, "store_name": pl.String,
}


class NoReportData(LookupError):
    """The analytics tables hold nothing for the requested day."""


@dataclass(frozen=True)
class ReportData:
    """What one day's report shows.

    health: store_id, store_name, metric_date, health_score, health_status over the
        `GRID_DAYS` days ending on `day`.
    alerts: the day's rows of store_anomaly_alerts (columns of `ALERT_SCHEMA`).
    series: store_anomaly_scores rows (columns of `SERIES_SCHEMA`) of each alerted store
        and metric over the `CHART_DAYS` days ending on `day`.
    findings: store_data_quality rows (`FINDINGS_SCHEMA`) of the grid's days.
    """

    day: date
    health: pl.DataFrame
    alerts: pl.DataFrame
    series: pl.DataFrame
    findings: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FINDINGS_SCHEMA))


def _coverage(engine: sa.Engine) -> tuple[date | None, date | None]:
    """The first and last day of store_health_scores (None, None when it is empty)."""
    h = schema.store_health_scores
    with engine.connect() as conn:
        first, last = conn.execute(
            sa.select(sa.func.min(h.c.metric_date), sa.func.max(h.c.metric_date))
        ).one()
    return first, last


def load_report_data(engine: sa.Engine, day: date,
                     store_ids: Collection[int] | None = None) -> ReportData:
    """Read the day's report data; NoReportData when no store has a health row that day.

    `store_ids` limits the report to those stores (a district's); chain-wide data-quality
    findings are shown either way.
    """
    h, a, s = schema.store_health_scores, schema.store_anomaly_alerts, schema.store_anomaly_scores
    q = schema.store_data_quality
    grid_start = day - timedelta(days=GRID_DAYS - 1)

    def stores(column: sa.Column, chain_rows: bool = False) -> sa.ColumnElement[bool]:
        if store_ids is None:
            return sa.true()
        chosen = column.in_(sorted(store_ids))
        return chosen | column.is_(None) if chain_rows else chosen

    health = read_frame(
        engine,
        sa.select(*(h.c[c] for c in HEALTH_SCHEMA))
        .where(h.c.metric_date.between(grid_start, day), stores(h.c.store_id))
        .order_by(h.c.store_id, h.c.metric_date),
        schema_overrides=HEALTH_SCHEMA,
    )
    if health.filter(pl.col("metric_date") == day).is_empty():
        if store_ids is not None:
            raise NoReportData(f"no analytics data for {day} for the {len(store_ids)} chosen "
                               "store(s)")
        first, last = _coverage(engine)
        if first is None:
            raise NoReportData(f"no analytics data for {day}: store_health_scores is empty "
                               "(run the pipeline first)")
        raise NoReportData(f"no analytics data for {day}: store_health_scores covers "
                           f"{first}..{last}")
    alerts = read_frame(
        engine,
        sa.select(*(a.c[c] for c in ALERT_SCHEMA)).where(a.c.alert_date == day,
                                                         stores(a.c.store_id))
        .order_by(a.c.store_id, a.c.metric_name),
        schema_overrides=ALERT_SCHEMA,
    )
    pairs = alerts.select("store_id", "metric_name").unique()
    if pairs.is_empty():
        series = pl.DataFrame(schema=SERIES_SCHEMA)
    else:
        series = read_frame(
            engine,
            sa.select(*(s.c[c] for c in SERIES_SCHEMA))
            .where(s.c.metric_date.between(day - timedelta(days=CHART_DAYS - 1), day))
            .where(s.c.store_id.in_(pairs.get_column("store_id").unique().to_list()))
            .where(s.c.metric_name.in_(pairs.get_column("metric_name").unique().to_list()))
            .order_by(s.c.store_id, s.c.metric_name, s.c.metric_date),
            schema_overrides=SERIES_SCHEMA,
        ).join(pairs, on=["store_id", "metric_name"], how="semi")
    findings = read_frame(
        engine,
        sa.select(*(q.c[c] for c in contracts.FINDING_COLUMNS))
        .where(q.c.metric_date.between(grid_start, day), stores(q.c.store_id, chain_rows=True))
        .order_by(q.c.metric_date.desc(), q.c.severity, q.c.source, q.c.store_id),
        schema_overrides=contracts.FINDING_SCHEMA,
    ).join(health.select("store_id", "store_name").unique("store_id"), on="store_id",
           how="left")
    return ReportData(day=day, health=health, alerts=alerts, series=series,
                      findings=findings.select(list(FINDINGS_SCHEMA)))


def load_series(engine: sa.Engine, store_id: int, metric_name: str, day: date) -> pl.DataFrame:
    """One store's metric over the `CHART_DAYS` days ending on `day` (`SERIES_SCHEMA`)."""
    s = schema.store_anomaly_scores
    return read_frame(
        engine,
        sa.select(*(s.c[c] for c in SERIES_SCHEMA))
        .where(s.c.store_id == store_id, s.c.metric_name == metric_name,
               s.c.metric_date.between(day - timedelta(days=CHART_DAYS - 1), day))
        .order_by(s.c.metric_date),
        schema_overrides=SERIES_SCHEMA,
    )
