"""Incidents: one store's alerts that share a cause, counted and shown once.

A drop in sales moves revenue, orders, drinks made, AOV and both per-labor-hour ratios
on the same day, and a sustained drop alerts on consecutive days: each is one incident.
The grouping is by store and time: alerts of one store on the same day, or on days that
follow each other without a gap, form one incident. Known-event marks (`EVENT:`) have
their own cause, so they form their own incidents and never join an unexplained one.
"""

from __future__ import annotations

import polars as pl

from store_anomaly_assets.core.calendar import EVENT_PREFIX
from store_anomaly_assets.core.contracts import SEVERITY_ORDER
from store_anomaly_assets.core.spc import METRICS

INCIDENT_COLUMNS = [
    "incident_key", "store_id", "first_date", "last_date", "severity", "primary_metric",
    "dimensions", "scope", "known_event", "n_alerts", "impact_usd",
]
_METRIC_ORDER = {name: rank for rank, name in enumerate(METRICS)}


def incident_key(store_id: pl.Expr, first_date: pl.Expr, known_event: pl.Expr) -> pl.Expr:
    """`<store_id>:<first date>`, with `:event` for a known event's own incident."""
    return pl.concat_str(
        [store_id.cast(pl.String), pl.lit(":"), first_date.cast(pl.String),
         pl.when(known_event).then(pl.lit(":event")).otherwise(pl.lit(""))]
    )


def assign_incidents(alerts: pl.DataFrame, max_gap_days: int = 1) -> pl.DataFrame:
    """`alerts` with `incident_key`, `incident_first_date` and `known_event` added.

    Alerts of a store (and of the same kind: known event or not) whose days are at most
    `max_gap_days` apart chain into one incident; its key is the store and its first
    day, so recomputing the same days gives the same keys.
    """
    if alerts.is_empty():
        return alerts.with_columns(
            incident_key=pl.lit(None, dtype=pl.String),
            incident_first_date=pl.lit(None, dtype=pl.Date),
            known_event=pl.lit(None, dtype=pl.Boolean),
        )
    group = ["store_id", "known_event"]
    event = (pl.col("rules_violated").fill_null("").str.starts_with(EVENT_PREFIX)
             if "rules_violated" in alerts.columns else pl.lit(False))
    days = (
        alerts.select("store_id", "alert_date", event.alias("known_event")).unique()
        .sort([*group, "alert_date"])
        .with_columns(
            _new=(pl.col("alert_date").diff().dt.total_days().over(group) > max_gap_days)
            .fill_null(True)
        )
        .with_columns(_run=pl.col("_new").cum_sum().over(group))
        .with_columns(
            incident_first_date=pl.col("alert_date").min().over([*group, "_run"]))
        .select("store_id", "alert_date", "known_event", "incident_first_date")
    )
    return alerts.with_columns(event.alias("known_event")).join(
        days, on=["store_id", "alert_date", "known_event"], how="left"
    ).with_columns(
        incident_key=incident_key(pl.col("store_id"), pl.col("incident_first_date"),
                                  pl.col("known_event"))
    )


def summarize_incidents(assigned: pl.DataFrame) -> pl.DataFrame:
    """One row per incident from `assign_incidents` output (INCIDENT_COLUMNS).

    severity: the highest among its alerts; primary_metric: the metric of its most
    severe alert with the largest impact (then the metric order of DESIGN section 5);
    dimensions: the dimensions it touches, comma-separated in that order; scope: NETWORK
    when any of its alerts is; impact_usd: per day the largest alert impact (the
    metrics of one day measure the same loss), summed over its days.
    """
    if assigned.is_empty():
        return pl.DataFrame(schema={
            "incident_key": pl.String, "store_id": pl.Int64, "first_date": pl.Date,
            "last_date": pl.Date, "severity": pl.String, "primary_metric": pl.String,
            "dimensions": pl.String, "scope": pl.String, "known_event": pl.Boolean,
            "n_alerts": pl.UInt32, "impact_usd": pl.Float64})
    dims = [m.dimension for m in METRICS.values()]
    dim_order = {d: dims.index(d) for d in dims}
    ranked = assigned.with_columns(
        _sev=pl.col("severity").replace_strict(SEVERITY_ORDER, default=len(SEVERITY_ORDER)),
        _metric=pl.col("metric_name").replace_strict(_METRIC_ORDER, default=len(METRICS)),
        _dimension=pl.col("metric_name").replace_strict(
            {name: m.dimension for name, m in METRICS.items()}, default=None),
        _impact=pl.col("impact_usd").cast(pl.Float64) if "impact_usd" in assigned.columns
        else pl.lit(None, dtype=pl.Float64),
    )
    primary = (
        ranked.sort(["incident_key", "_sev", "_impact", "_metric"],
                    descending=[False, False, True, False], nulls_last=True)
        .group_by("incident_key", maintain_order=True)
        .agg(pl.col("metric_name").first().alias("primary_metric"))
    )
    daily_impact = (
        ranked.group_by("incident_key", "alert_date").agg(pl.col("_impact").max())
        .group_by("incident_key").agg(pl.col("_impact").sum().alias("impact_usd"))
    )
    scope = (pl.col("scope") == "NETWORK").any() if "scope" in assigned.columns else pl.lit(
        False)
    summary = ranked.group_by("incident_key").agg(
        pl.col("store_id").first(),
        pl.col("incident_first_date").first().alias("first_date"),
        pl.col("alert_date").max().alias("last_date"),
        pl.col("_sev").min().alias("_best"),
        pl.col("_dimension").drop_nulls().unique().alias("_dims"),
        pl.when(scope).then(pl.lit("NETWORK")).otherwise(pl.lit("STORE")).alias("scope"),
        pl.col("known_event").first(),
        pl.len().alias("n_alerts"),
    )
    severities = list(SEVERITY_ORDER)
    return (
        summary.join(primary, on="incident_key").join(daily_impact, on="incident_key")
        .with_columns(
            severity=pl.col("_best").replace_strict(
                dict(enumerate(severities)), default=None, return_dtype=pl.String),
            dimensions=pl.col("_dims").list.eval(
                pl.element().sort_by(pl.element().replace_strict(dim_order)))
            .list.join(","),
        )
        .select(INCIDENT_COLUMNS)
        .sort("first_date", "store_id", "incident_key")
    )


def group_incidents(alerts: pl.DataFrame, max_gap_days: int = 1
                    ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Alerts with their incident key, and one summary row per incident."""
    assigned = assign_incidents(alerts, max_gap_days)
    return assigned, summarize_incidents(assigned)
