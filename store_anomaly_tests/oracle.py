"""Test oracle: the daily KPIs of a generated chain, computed plainly from its raw rows.

Independent of the pipeline's extraction queries and its KPI step, so comparing the two
proves both.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from store_anomaly_assets.demo.synthetic import SyntheticChain, utc_to_local


def _with_local_date(df: pl.DataFrame, utc_col: str, zones: Mapping[int, str]) -> pl.DataFrame:
    """Add `metric_date`: the store-local calendar day of a naive UTC column."""
    parts = []
    for tz in sorted(set(zones.values())):
        ids = [d for d, z in zones.items() if z == tz]
        part = df.filter(pl.col("dept_id").is_in(ids))
        local_day = utc_to_local(part[utc_col], tz).dt.date().alias("metric_date")
        parts.append(part.with_columns(local_day))
    return pl.concat(parts) if parts else df.with_columns(metric_date=pl.lit(None, pl.Date))


def expected_kpis(chain: SyntheticChain, include_late: bool = True) -> pl.DataFrame:
    """Reference daily KPIs per store and store-local day, computed plainly from raw rows.

    Counts and sums are 0 on a store-day with activity but none of that kind; means
    (avg_production_seconds, inspection_score) are null then.
    """
    zones = dict(zip(chain.shop_info["dept_id"], chain.shop_info["time_zone"], strict=True))
    orders, production = chain.orders, chain.production
    if include_late:
        orders = pl.concat([orders, chain.late_orders])
        production = pl.concat([production, chain.late_production])
    orders = _with_local_date(orders, "create_time", zones)
    production = _with_local_date(production, "start_time", zones)
    inspections = _with_local_date(chain.inspections, "inspection_time", zones)
    schedules = chain.schedules.with_columns(metric_date=pl.col("work_date"))
    key = ["dept_id", "metric_date"]

    sales = (
        orders.filter(pl.col("order_status") == 1)
        .group_by(key)
        .agg(revenue=pl.col("pay_amount").sum().round(2), order_count=pl.len())
    )
    prod = (
        production.filter(pl.col("finish_time").is_not_null())
        .group_by(key)
        .agg(
            production_count=pl.len(),
            avg_production_seconds=(
                (pl.col("finish_time") - pl.col("start_time")).dt.total_microseconds() / 1e6
            ).mean(),
        )
    )
    staff = schedules.group_by(key).agg(
        scheduled_hours=pl.col("scheduled_hours").sum().round(2),
        headcount=pl.col("employee_id").n_unique(),
    )
    quality = inspections.group_by(key).agg(
        inspection_count=pl.len(), inspection_score=pl.col("total_score").mean()
    )
    activity = pl.concat([df.select(key) for df in (orders, production, schedules, inspections)])
    out = activity.unique()
    for part in (sales, prod, staff, quality):
        out = out.join(part, on=key, how="left")
    return (
        out.with_columns(
            pl.col("revenue").fill_null(0.0),
            pl.col("order_count", "production_count", "headcount", "inspection_count")
            .fill_null(0)
            .cast(pl.Int64),
            pl.col("scheduled_hours").fill_null(0.0),
        )
        .rename({"dept_id": "store_id"})
        .select(
            "store_id",
            "metric_date",
            "revenue",
            "order_count",
            "production_count",
            "avg_production_seconds",
            "scheduled_hours",
            "headcount",
            "inspection_count",
            "inspection_score",
        )
        .sort("store_id", "metric_date")
    )
