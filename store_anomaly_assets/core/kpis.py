"""Step 6: one row of daily KPIs per store and local business day."""

from __future__ import annotations

import polars as pl

KPI_COLUMNS = [
    "store_id", "metric_date", "store_name", "revenue", "order_count", "aov",
    "production_count", "avg_production_seconds", "scheduled_hours", "headcount",
    "inspection_count", "inspection_score", "orders_per_labor_hour", "revenue_per_labor_hour",
    "production_per_labor_hour",
]


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

    A store-day exists when any source has activity. On a day with operational activity
    (orders, production or shifts) a missing sales or production aggregate means zero,
    which is itself a signal; a day with only an inspection leaves them unknown.
    """
    key = ["store_id", "metric_date"]
    operational = (
        pl.concat([sales.select(key), production.select(key), staffing.select(key)])
        .unique()
        .with_columns(operational=pl.lit(True))
    )
    days = pl.concat([operational.select(key), quality.select(key)]).unique()
    zero_if_operational = [
        pl.when(pl.col("operational"))
        .then(pl.col(c).fill_null(0))
        .otherwise(pl.col(c))
        .alias(c)
        for c in ("revenue", "order_count", "production_count")
    ]
    return (
        days.join(stores.filter(pl.col("is_active")).select("store_id", "store_name"),
                  on="store_id", how="inner")
        .join(operational, on=key, how="left")
        .join(sales, on=key, how="left")
        .join(production, on=key, how="left")
        .join(staffing, on=key, how="left")
        .join(quality, on=key, how="left")
        .with_columns(pl.col("operational").fill_null(False))
        .with_columns(zero_if_operational)
        .with_columns(
            pl.col("inspection_count").fill_null(0),
            aov=_ratio("revenue", "order_count"),
            orders_per_labor_hour=_ratio("order_count", "scheduled_hours"),
            revenue_per_labor_hour=_ratio("revenue", "scheduled_hours"),
            production_per_labor_hour=_ratio("production_count", "scheduled_hours"),
        )
        .select(KPI_COLUMNS)
        .sort(key)
    )
