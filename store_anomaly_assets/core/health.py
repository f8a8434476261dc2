"""Step 9: composite store health, 0-100, from the day's z-scores and the latest inspection.

Each SPC metric scores clamp(100 - 20 * max(0, adverse z), 0, 100); a dimension is the
mean of its metrics that have a z; quality is the latest inspection score within
`quality_lookback_days` (D included). The composite is the weighted mean of the
dimensions present, the weights redistributed over them.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from store_anomaly_assets.core.calendar import EVENT_PREFIX
from store_anomaly_assets.core.settings import SpcSettings
from store_anomaly_assets.core.spc import METRICS

WEIGHTS: dict[str, float] = {"sales": 0.35, "operations": 0.25, "staffing": 0.25, "quality": 0.15}
HEALTHY_MIN, WATCH_MIN = 80.0, 60.0
HEALTH_COLUMNS = [
    "store_id", "metric_date", "store_name", "sales_score", "operations_score",
    "staffing_score", "quality_score", "health_score", "health_status", "dimensions_used",
]


def metric_score(adverse_z: pl.Expr) -> pl.Expr:
    """100 at or better than the baseline, 20 points lost per adverse sigma, floor 0."""
    return (100 - 20 * pl.max_horizontal(adverse_z, pl.lit(0.0))).clip(0, 100)


def health_status(score: pl.Expr) -> pl.Expr:
    return (
        pl.when(score.is_null()).then(pl.lit("INSUFFICIENT_DATA"))
        .when(score >= HEALTHY_MIN).then(pl.lit("HEALTHY"))
        .when(score >= WATCH_MIN).then(pl.lit("WATCH"))
        .otherwise(pl.lit("AT_RISK"))
    )


def latest_inspection(
    days: pl.DataFrame, inspections: pl.DataFrame, lookback_days: int
) -> pl.DataFrame:
    """For each store-day, the most recent inspection score within the lookback."""
    if inspections.is_empty():
        return days.select("store_id", "metric_date").with_columns(
            quality_score=pl.lit(None, dtype=pl.Float64)
        )
    found = (
        days.select("store_id", "metric_date")
        .sort("store_id", "metric_date")
        .join_asof(
            inspections.select(
                "store_id",
                pl.col("metric_date").alias("inspected_on"),
                pl.col("inspection_score").cast(pl.Float64).alias("quality_score"),
            ).sort("store_id", "inspected_on"),
            left_on="metric_date",
            right_on="inspected_on",
            by="store_id",
            strategy="backward",
            tolerance=timedelta(days=lookback_days),
            check_sortedness=False,  # sorted by store, then date, just above
        )
    )
    return found.select("store_id", "metric_date", "quality_score")


def health_scores(
    days: pl.DataFrame,
    scores: pl.DataFrame,
    inspections: pl.DataFrame,
    settings: SpcSettings,
) -> pl.DataFrame:
    """One health row per store-day of `days` (store_id, metric_date, store_name, eligible).

    `scores` are the day's metric scores with `adverse_z`; `inspections` (store_id,
    metric_date, inspection_score) must reach `quality_lookback_days` before the first day.
    A store without enough history is INSUFFICIENT_DATA whatever else is known.
    """
    dimension_of = pl.DataFrame(
        {"metric_name": list(METRICS), "dimension": [m.dimension for m in METRICS.values()]}
    )
    # A known-event day's deviation is expected (stats/calendar.py): it does not count
    # against the store's health.
    expected = pl.col("rules_violated").fill_null("").str.starts_with(EVENT_PREFIX) if (
        "rules_violated" in scores.columns) else pl.lit(False)
    dimensions = (
        scores.filter(pl.col("adverse_z").is_not_null() & ~expected)
        .join(dimension_of, on="metric_name")
        .group_by("store_id", "metric_date", "dimension")
        .agg(metric_score(pl.col("adverse_z")).mean().alias("score"))
        .pivot(on="dimension", index=["store_id", "metric_date"], values="score")
    )
    for dimension in ("sales", "operations", "staffing"):
        if dimension not in dimensions.columns:
            dimensions = dimensions.with_columns(pl.lit(None, dtype=pl.Float64).alias(dimension))
    key = ["store_id", "metric_date"]
    frame = (
        days.join(dimensions.rename({d: f"{d}_score" for d in ("sales", "operations",
                                                               "staffing")}),
                  on=key, how="left")
        .join(latest_inspection(days, inspections, settings.quality_lookback_days), on=key,
              how="left")
    )
    names = list(WEIGHTS)
    dim_cols = [f"{d}_score" for d in names]
    frame = frame.with_columns(
        [pl.when(pl.col("eligible")).then(pl.col(c)).alias(c) for c in dim_cols]
    )
    weight = [pl.when(pl.col(c).is_not_null()).then(pl.lit(WEIGHTS[d])).otherwise(0.0)
              for d, c in zip(names, dim_cols, strict=True)]
    weighted = [pl.col(c).fill_null(0.0) * w for c, w in zip(dim_cols, weight, strict=True)]
    total_weight = pl.sum_horizontal(weight)
    composite = pl.when(total_weight > 0).then(pl.sum_horizontal(weighted) / total_weight)
    used = pl.concat_str(
        [pl.when(pl.col(c).is_not_null()).then(pl.lit(d))
         for d, c in zip(names, dim_cols, strict=True)],
        separator=",", ignore_nulls=True,
    )
    return (
        frame.with_columns(health_score=composite.round(2), dimensions_used=used)
        .with_columns(
            health_status=health_status(pl.col("health_score")),
            dimensions_used=pl.when(pl.col("dimensions_used") != "")
            .then(pl.col("dimensions_used")),
        )
        .select(HEALTH_COLUMNS)
        .sort(key)
    )
