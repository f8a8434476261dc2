"""Step 6: one row of daily KPIs per store and local business day."""

from __future__ import annotations

import polars as pl

from store_anomaly_assets.core.quality import ACTIVITY_SOURCES, QUALITY

KPI_COLUMNS = [
    "store_id", "metric_date", "store_name", "revenue", "order_count", "aov",
    "production_count", "avg_production_seconds", "scheduled_hours", "headcount",
    "inspection_count", "inspection_score", "orders_per_labor_hour", "revenue_per_labor_hour",
    "production_per_labor_hour",
]
_KEY = ["store_id", "metric_date"]


def _ratio(numerator: str, denominator: str) -> pl.Expr:
    den = pl.col(denominator)
    return pl.when(den > 0).then(pl.col(numerator) / den).otherwise(None)


def build_kpis(
    stores: pl.DataFrame,
    sales: pl.DataFrame,
    production: pl.DataFrame,
    staffing: pl.DataFrame,
    quality: pl.DataFrame,
) -> pl.DataFrame:
    """Join the four extracts into daily KPIs for the active stores.

    A store-day exists when any source has valid rows. A source without valid rows on a
    day the store traded (see core/quality.py) leaves its KPIs unknown (NULL), never 0:
    a missing export is not a day without customers. A day with only an inspection has
    only the inspection's KPIs.
    """
    extracts = {"salesorder": sales, "opproduction": production, "opempefficiency": staffing,
                "opqualitycontrol": quality}
    present = [
        extracts[s.name].filter(pl.col(s.rows) > 0).select(_KEY).with_columns(
            pl.lit(True).alias(f"has_{s.name}"))
        for s in (*ACTIVITY_SOURCES, QUALITY)
    ]
    days = pl.concat([p.select(_KEY) for p in present]).unique()
    for part in present:
        days = days.join(part, on=_KEY, how="left")
    frame = days.join(stores.filter(pl.col("is_active")).select("store_id", "store_name"),
                      on="store_id", how="inner")
    for extract in extracts.values():
        frame = frame.join(extract.drop("rows_excluded", strict=False),
                           on=_KEY, how="left")
    unknown = [
        pl.when(pl.col(f"has_{s.name}").fill_null(False)).then(pl.col(c)).alias(c)
        # The ratios follow from these below.
        for s in ACTIVITY_SOURCES for c in s.kpis if c in extracts[s.name].columns
    ]
    return (
        frame.with_columns(unknown)
        .with_columns(
            pl.col("inspection_count").fill_null(0),
            pl.when(pl.col("inspection_count") > 0).then(pl.col("inspection_score"))
            .alias("inspection_score"),
            aov=_ratio("revenue", "order_count"),
            orders_per_labor_hour=_ratio("order_count", "scheduled_hours"),
            revenue_per_labor_hour=_ratio("revenue", "scheduled_hours"),
            production_per_labor_hour=_ratio("production_count", "scheduled_hours"),
        )
        .select(KPI_COLUMNS)
        .sort(_KEY)
    )
