"""Reads of the analytics tables that the assets and the CLI share."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.core.contracts import (
    FINDING_COLUMNS,
    FINDING_SCHEMA,
    FINDING_SEVERITIES,
)
from store_anomaly_assets.core.kpis import KPI_COLUMNS
from store_anomaly_assets.core.quality import EXTRACT_SOURCES
from store_anomaly_assets.core.spc import SCORE_COLUMNS
from store_anomaly_assets.db.analytics.schema import (
    store_anomaly_scores,
    store_data_quality,
    store_kpi_daily,
)
from store_anomaly_assets.db.frames import read_frame

_KPI_TYPES = {c: pl.Float64 for c in KPI_COLUMNS} | {
    "store_id": pl.Int64, "metric_date": pl.Date, "store_name": pl.String,
    "order_count": pl.Int64, "production_count": pl.Int64, "headcount": pl.Int64,
    "inspection_count": pl.Int64,
}
_SCORE_TYPES = {c: pl.Float64 for c in SCORE_COLUMNS} | {
    "store_id": pl.Int64, "metric_date": pl.Date, "metric_name": pl.String,
    "store_name": pl.String, "baseline_n": pl.Int32, "rules_violated": pl.String,
    "severity": pl.String, **{f"we_rule_{n}": pl.Boolean for n in range(1, 6)},
}


def read_kpis(
    engine: sa.Engine, store_ids: Sequence[int], start: date, end: date,
    columns: Sequence[str] = KPI_COLUMNS,
) -> pl.DataFrame:
    t = store_kpi_daily
    query = sa.select(*[t.c[c] for c in columns]).where(
        t.c.store_id.in_(list(store_ids)), t.c.metric_date.between(start, end)
    ).order_by(t.c.store_id, t.c.metric_date)
    return read_frame(engine, query, schema_overrides={c: _KPI_TYPES[c] for c in columns})


def read_first_dates(engine: sa.Engine, store_ids: Sequence[int]) -> pl.DataFrame:
    """Each store's first day with KPIs: the start of its history."""
    t = store_kpi_daily
    query = (
        sa.select(t.c.store_id, sa.func.min(t.c.metric_date).label("first_date"))
        .where(t.c.store_id.in_(list(store_ids)))
        .group_by(t.c.store_id)
    )
    return read_frame(
        engine, query, schema_overrides={"store_id": pl.Int64, "first_date": pl.Date}
    )


def read_scores(
    engine: sa.Engine, store_ids: Sequence[int], start: date, end: date,
    columns: Sequence[str] = SCORE_COLUMNS,
) -> pl.DataFrame:
    t = store_anomaly_scores
    query = sa.select(*[t.c[c] for c in columns]).where(
        t.c.store_id.in_(list(store_ids)), t.c.metric_date.between(start, end)
    )
    return read_frame(engine, query, schema_overrides={c: _SCORE_TYPES[c] for c in columns})


# What the health and alert steps use of a score row; the rest (baseline, limits, rule
# flags) is for dashboards. Reading a backfill's ~18K rows is mostly PyMySQL parsing each
# value, so narrower reads are proportionally faster.
HEALTH_SCORE_COLUMNS = ["store_id", "metric_date", "metric_name", "z_score", "rules_violated"]
ALERT_SCORE_COLUMNS = [*HEALTH_SCORE_COLUMNS, "store_name", "metric_value", "cl", "severity"]


def days_without_rows(frame: pl.DataFrame, start: date, end: date) -> list[date]:
    """Days of start..end on which `frame` (keyed by metric_date) has no row."""
    present = set(frame["metric_date"].to_list())
    days = (start + timedelta(days=i) for i in range((end - start).days + 1))
    return [day for day in days if day not in present]


def format_days(days: Sequence[date]) -> str:
    """`2025-12-25, 2026-11-26..2026-11-29`: consecutive days as ranges."""
    runs: list[list[date]] = []
    for day in sorted(days):
        if runs and day - runs[-1][-1] == timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs)


def days_without_kpis(engine: sa.Engine, start: date, end: date) -> list[date]:
    """Days of start..end with no KPI row for any store: no source had data."""
    t = store_kpi_daily
    query = sa.select(t.c.metric_date).where(t.c.metric_date.between(start, end)).distinct()
    return days_without_rows(read_frame(engine, query), start, end)


def held_source_rows(
    engine: sa.Engine, store_ids: Sequence[int], start: date, end: date
) -> dict[str, int]:
    """What the KPI table holds of each extract source for the range, in its row units.

    The units are each source's `rows` column (core/quality.py): orders, drinks,
    employees on shift, inspections.
    """
    t = store_kpi_daily
    query = sa.select(
        *[sa.func.coalesce(sa.func.sum(t.c[s.rows]), 0).label(s.name) for s in EXTRACT_SOURCES]
    ).where(t.c.store_id.in_(list(store_ids)), t.c.metric_date.between(start, end))
    with engine.connect() as conn:
        row = conn.execute(query).one()
    return {s.name: int(row[i]) for i, s in enumerate(EXTRACT_SOURCES)}


def read_findings(
    engine: sa.Engine, store_ids: Sequence[int], start: date, end: date,
    severities: Sequence[str] = FINDING_SEVERITIES,
) -> pl.DataFrame:
    """The range's data-quality findings of the stores, and the chain-wide ones."""
    t = store_data_quality
    query = sa.select(*[t.c[c] for c in FINDING_COLUMNS]).where(
        t.c.metric_date.between(start, end),
        t.c.store_id.in_(list(store_ids)) | t.c.store_id.is_(None),
        t.c.severity.in_(list(severities)),
    ).order_by(t.c.metric_date, t.c.store_id, t.c.source, t.c.check_name)
    return read_frame(engine, query, schema_overrides=FINDING_SCHEMA)
