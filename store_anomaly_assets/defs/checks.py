"""Step 12: verification as asset checks over the run's partition range.

Integrity checks are ERROR and blocking, so bad numbers never reach the alerts;
freshness is a WARN. Each check logs a step-12 row and states what it found in its
metadata. Checks read the run's range from its tags: partitioned asset checks are a
preview in Dagster 1.13 and record nothing per partition in ranged runs.
"""


import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import dagster as dg
import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.core.contracts import SEVERITIES
from store_anomaly_assets.core.health import HEALTHY_MIN, WATCH_MIN
from store_anomaly_assets.db.analytics import reads, schema
from store_anomaly_assets.db.analytics.pipeline_log import write_log_row
from store_anomaly_assets.db.frames import read_frame
from store_anomaly_assets.db.sources import extraction
from store_anomaly_assets.defs.partitions import run_range
from store_anomaly_assets.defs.resources import AnomalySettings, Database


@dataclass
class Finding:
    """What a check found: failures (with a few examples) and figures for the UI."""

    problems: list[str] = field(default_factory=list)
    figures: dict[str, int | float | str] = field(default_factory=dict)

    def expect_none(self, frame: pl.DataFrame, what: str) -> None:
        if frame.height:
            examples = "; ".join(
                " ".join(f"{k}={v}" for k, v in r.items())
                for r in frame.head(3).iter_rows(named=True)
            )
            self.problems.append(f"{frame.height} {what}, e.g. {examples}")


def _result(
    context: dg.AssetCheckExecutionContext,
    analytics: Database,
    name: str,
    find: Callable[[date, date], Finding],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    start, end = run_range(context)
    if start is None or end is None:
        # Run on its own, a check has no range to verify: it says so rather than pass.
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN,
            description="not evaluated: the run has no partition range; run the check with "
            "its asset's partitions",
            metadata={"evaluated": False},
        )
    try:
        finding = find(start, end)
    except Exception as exc:
        # A check that cannot run has not verified anything: its step fails, logged.
        write_log_row(analytics.engine(), context.run.run_id, start, end, 12, "FAILED",
                      error_message=f"{name} could not run: {type(exc).__name__}: {exc}",
                      step_name=f"verify_{name}")
        raise
    passed = not finding.problems
    # A WARN finding (a closed day, a quiet source) is worth reading but is no failed
    # step: it is logged as SUCCESS with the warning, so the guide's FAILED query stays
    # about what is broken.
    blocking = severity == dg.AssetCheckSeverity.ERROR
    message = None if passed else ("" if blocking else "warning: ") + " | ".join(
        finding.problems
    )
    write_log_row(
        analytics.engine(), context.run.run_id, start, end, 12,
        "FAILED" if message and blocking else "SUCCESS",
        error_message=message,
        step_name=f"verify_{name}",
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=severity,
        metadata={
            "range": f"{start}..{end}",
            "found": "; ".join(finding.problems) or "no problems",
            **finding.figures,
        },
    )


def _table(engine: sa.Engine, table: sa.Table, date_col: str, start: date, end: date,
           columns: list[str]) -> pl.DataFrame:
    query = sa.select(*[table.c[c] for c in columns]).where(
        table.c[date_col].between(start, end)
    )
    return read_frame(engine, query)


@dg.asset_check(asset="store_kpi_daily", blocking=True,
                description="KPI keys unique, one row for every active store with source "
                "activity, revenue and orders reconcile with t_order to the cent.")
def kpis_complete_and_reconciled(
    context: dg.AssetCheckExecutionContext,
    analytics: Database,
    opshop: Database,
    sales_order: Database,
    anomaly_settings: AnomalySettings,
) -> dg.AssetCheckResult:
    def find(start: date, end: date) -> Finding:
        finding = Finding()
        stores = extraction.load_store_master(opshop.engine(), anomaly_settings.active_stores)
        active = extraction.active_store_ids(stores)
        kpi = _table(analytics.engine(), schema.store_kpi_daily, "metric_date", start, end,
                     ["store_id", "metric_date", "revenue", "order_count"]).filter(
            pl.col("store_id").is_in(active))
        kpi = kpi.with_columns(pl.col("revenue").cast(pl.Float64),
                               pl.col("order_count").cast(pl.Int64))
        key = ["store_id", "metric_date"]
        finding.expect_none(kpi.filter(pl.struct(key).is_duplicated()), "duplicate KPI keys")
        source = extraction.extract_sales(sales_order.engine(), stores, start, end)
        joined = source.join(kpi, on=key, how="left", suffix="_kpi")
        finding.expect_none(
            joined.filter(pl.col("order_count_kpi").is_null()).select(key),
            "store-days with orders but no KPI row",
        )
        finding.expect_none(
            joined.filter(
                ((pl.col("revenue") - pl.col("revenue_kpi")).abs() >= 0.005)
                | (pl.col("order_count") != pl.col("order_count_kpi"))
            ).select(*key, "revenue", "revenue_kpi", "order_count", "order_count_kpi"),
            "store-days whose revenue or orders differ from t_order",
        )
        finding.figures.update(
            kpi_rows=kpi.height,
            source_revenue=round(float(source["revenue"].sum() or 0), 2),
            kpi_revenue=round(float(kpi["revenue"].sum() or 0), 2),
            source_orders=int(source["order_count"].sum() or 0),
            kpi_orders=int(kpi["order_count"].sum() or 0),
        )
        return finding

    return _result(context, analytics, "kpis_complete_and_reconciled", find)


@dg.asset_check(asset="store_anomaly_scores", blocking=True,
                description="z-scores finite, limits ordered lcl_3s <= lcl_2s <= cl <= "
                "ucl_2s <= ucl_3s, severities valid.")
def scores_valid(
    context: dg.AssetCheckExecutionContext, analytics: Database
) -> dg.AssetCheckResult:
    def find(start: date, end: date) -> Finding:
        finding = Finding()
        cols = ["store_id", "metric_date", "metric_name", "z_score", "lcl_3s", "lcl_2s", "cl",
                "ucl_2s", "ucl_3s", "severity"]
        scores = _table(analytics.engine(), schema.store_anomaly_scores, "metric_date", start,
                        end, cols)
        z = pl.col("z_score").cast(pl.Float64)
        finding.expect_none(scores.filter(z.is_not_null() & ~z.is_finite()), "non-finite z")
        limits = ["lcl_3s", "lcl_2s", "cl", "ucl_2s", "ucl_3s"]
        disorder = pl.any_horizontal(
            [pl.col(a) > pl.col(b) + 1e-9 for a, b in itertools.pairwise(limits)]
        )
        finding.expect_none(scores.filter(disorder.fill_null(False)).select(cols[:3]),
                            "rows with disordered limits")
        finding.expect_none(
            scores.filter(pl.col("severity").is_not_null()
                          & ~pl.col("severity").is_in(SEVERITIES)),
            "unknown severities")
        finding.figures.update(score_rows=scores.height,
                               scored=scores.filter(z.is_not_null()).height)
        return finding

    return _result(context, analytics, "scores_valid", find)


@dg.asset_check(asset="store_health_scores", blocking=True,
                description="Health within 0-100 and its status consistent with the score.")
def health_valid(
    context: dg.AssetCheckExecutionContext, analytics: Database
) -> dg.AssetCheckResult:
    def find(start: date, end: date) -> Finding:
        finding = Finding()
        cols = ["store_id", "metric_date", "health_score", "health_status"]
        rows = _table(analytics.engine(), schema.store_health_scores, "metric_date", start,
                      end, cols)
        score = pl.col("health_score").cast(pl.Float64)
        finding.expect_none(rows.filter(~score.is_between(0, 100)), "scores outside 0-100")
        expected = (
            pl.when(score.is_null()).then(pl.lit("INSUFFICIENT_DATA"))
            .when(score >= HEALTHY_MIN).then(pl.lit("HEALTHY"))
            .when(score >= WATCH_MIN).then(pl.lit("WATCH")).otherwise(pl.lit("AT_RISK"))
        )
        finding.expect_none(rows.filter(pl.col("health_status") != expected),
                            "statuses inconsistent with the score")
        finding.figures.update(health_rows=rows.height)
        return finding

    return _result(context, analytics, "health_valid", find)


@dg.asset_check(asset="store_anomaly_alerts", blocking=True,
                description="Every CRITICAL score has an alert and every alert a score.")
def alerts_match_scores(
    context: dg.AssetCheckExecutionContext, analytics: Database
) -> dg.AssetCheckResult:
    def find(start: date, end: date) -> Finding:
        finding = Finding()
        engine = analytics.engine()
        key = ["store_id", "metric_date", "metric_name"]
        scores = _table(engine, schema.store_anomaly_scores, "metric_date", start, end,
                        [*key, "severity"]).drop_nulls("severity")
        alerts = _table(engine, schema.store_anomaly_alerts, "alert_date", start, end,
                        ["store_id", "alert_date", "metric_name", "acknowledged"]).rename(
            {"alert_date": "metric_date"})
        critical = scores.filter(pl.col("severity") == "CRITICAL")
        finding.expect_none(critical.join(alerts, on=key, how="anti"),
                            "CRITICAL scores without an alert")
        # Acknowledged alerts are kept even when a recompute clears their condition.
        open_alerts = alerts.filter(~pl.col("acknowledged").cast(pl.Boolean))
        finding.expect_none(open_alerts.join(scores, on=key, how="anti"),
                            "open alerts without a flagged score")
        finding.figures.update(alerts=alerts.height, critical_scores=critical.height)
        return finding

    return _result(context, analytics, "alerts_match_scores", find)


@dg.asset_check(asset="store_kpi_daily", description="Each operational source has rows for "
                "the latest partition (inspections are sparse and not required).")
def sources_fresh(
    context: dg.AssetCheckExecutionContext, analytics: Database
) -> dg.AssetCheckResult:
    def find(start: date, end: date) -> Finding:
        finding = Finding()
        rows = _table(analytics.engine(), schema.store_kpi_daily, "metric_date", end, end,
                      ["store_id", "order_count", "production_count", "scheduled_hours"])
        for source, column in (("t_order", "order_count"),
                               ("t_production_record", "production_count"),
                               ("t_employee_schedule", "scheduled_hours")):
            present = rows.filter(pl.col(column).cast(pl.Float64) > 0).height
            finding.figures[f"stores_with_{column}"] = present
            if present == 0:
                finding.problems.append(f"{source} has no rows for {end}")
        return finding

    return _result(context, analytics, "sources_fresh", find, dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset="store_kpi_daily", description="Coverage: every active store has a KPI "
                "row on every day of the range since its first activity (a gap is a closed "
                "day or a missing source).")
def kpis_cover_every_store_day(
    context: dg.AssetCheckExecutionContext,
    analytics: Database,
    opshop: Database,
    anomaly_settings: AnomalySettings,
) -> dg.AssetCheckResult:
    def find(start: date, end: date) -> Finding:
        finding = Finding()
        active = extraction.active_store_ids(
            extraction.load_store_master(opshop.engine(), anomaly_settings.active_stores)
        )
        engine = analytics.engine()
        first = reads.read_first_dates(engine, active)
        kpi = reads.read_kpis(engine, active, start, end, ["store_id", "metric_date"])
        expected = (
            first.with_columns(
                metric_date=pl.date_ranges(pl.max_horizontal("first_date", pl.lit(start)),
                                           pl.lit(end))
            )
            .explode("metric_date")
            .drop_nulls("metric_date")
            .select("store_id", "metric_date")
        )
        missing = expected.join(kpi, on=["store_id", "metric_date"], how="anti")
        finding.expect_none(missing.sort("metric_date"), "store-days without KPIs")
        finding.figures.update(expected_store_days=expected.height, kpi_rows=kpi.height)
        return finding

    return _result(context, analytics, "kpis_cover_every_store_day", find,
                   dg.AssetCheckSeverity.WARN)


ALL_CHECKS = [kpis_complete_and_reconciled, kpis_cover_every_store_day, scores_valid,
              health_valid, alerts_match_scores, sources_fresh]
