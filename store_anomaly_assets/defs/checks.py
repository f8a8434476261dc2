"""Step 12: verification as asset checks over the run's partition range.

Integrity checks are ERROR and blocking, so bad numbers never reach the alerts. The
data-quality check reports the run's findings: ERROR when a source was missing on a
store-day (its KPIs are NULL, the run goes on), WARN for the rest. Each check logs a
step-12 row and states what it found in its metadata. Checks read the run's range from
its tags: partitioned asset checks are a preview in Dagster 1.13 and record nothing per
partition in ranged runs.
"""


import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.core.contracts import SEVERITIES
from store_anomaly_assets.core.health import HEALTHY_MIN, WATCH_MIN
from store_anomaly_assets.db.analytics import reads, schema
from store_anomaly_assets.db.analytics.pipeline_log import write_log_row
from store_anomaly_assets.db.frames import read_frame
from store_anomaly_assets.db.sources import extraction
from store_anomaly_assets.db.sources.schema import t_order
from store_anomaly_assets.defs.partitions import run_range
from store_anomaly_assets.defs.resources import AnomalySettings, Database


@dataclass
class Finding:
    """What a check found: failures (with a few examples) and figures for the UI."""

    problems: list[str] = field(default_factory=list)
    figures: dict[str, int | float | str] = field(default_factory=dict)
    # The check's severity for what it found, when that depends on the finding.
    severity: dg.AssetCheckSeverity | None = None

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
    severity = finding.severity or severity
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


def _utc_window(day_first: date, day_last: date, time_zone: str) -> tuple[datetime, datetime]:
    """Naive UTC [lo, hi) of local days day_first..day_last, straight from zoneinfo."""
    zone, utc = ZoneInfo(time_zone), ZoneInfo("UTC")
    lo = datetime.combine(day_first, time(), zone).astimezone(utc)
    hi = datetime.combine(day_last + timedelta(days=1), time(), zone).astimezone(utc)
    return lo.replace(tzinfo=None), hi.replace(tzinfo=None)


def _valid_amount(amount: Decimal | None, limit: Decimal) -> bool:
    return amount is not None and Decimal(0) <= amount <= limit


def _orders_per_store_day(
    engine: sa.Engine, stores: pl.DataFrame, days: list[date], limit: Decimal
) -> pl.DataFrame:
    """Revenue and orders of each store on each of `days`, summed here order by order.

    Independent of the extraction: the day's UTC window comes from zoneinfo, not from
    time buckets, and the amounts are checked and added in Python, not in SQL.
    """
    o = t_order.c
    query = sa.select(o.pay_amount).where(
        o.dept_id == sa.bindparam("store_id"), o.order_status == 1,
        o.create_time >= sa.bindparam("lo"), o.create_time < sa.bindparam("hi"))
    rows = []
    with engine.connect() as conn:
        for store_id, time_zone in stores.select("store_id", "time_zone").iter_rows():
            for day in days:
                lo, hi = _utc_window(day, day, time_zone)
                amounts = [a for (a,) in conn.execute(query, {"store_id": store_id, "lo": lo,
                                                              "hi": hi})
                           if _valid_amount(None if a is None else Decimal(a), limit)]
                rows.append((store_id, day, float(sum(amounts, Decimal(0))), len(amounts)))
    return pl.DataFrame(rows, schema={"store_id": pl.Int64, "metric_date": pl.Date,
                                      "revenue": pl.Float64, "order_count": pl.Int64},
                        orient="row")


def _orders_per_store(
    engine: sa.Engine, stores: pl.DataFrame, start: date, end: date, limit: Decimal
) -> pl.DataFrame:
    """Revenue and orders of each store over the whole range, its local days' UTC window
    from zoneinfo.

    One pass over the range's orders: the time predicate alone bounds the read (a scan at
    the cost of one source aggregate), and each order counts only inside its own store's
    window. Filtering on the stores in the WHERE clause would make the server fetch each
    store's orders through the (dept_id, create_time) index, by primary key one by one.
    """
    o = t_order.c
    valid = sa.and_(o.pay_amount.is_not(None), o.pay_amount >= 0, o.pay_amount <= limit)
    windows = []
    for (time_zone,), group in stores.partition_by("time_zone", as_dict=True).items():
        lo, hi = _utc_window(start, end, time_zone)
        windows.append((group["store_id"].to_list(), lo, hi))
    if not windows:
        return pl.DataFrame(schema={"store_id": pl.Int64, "revenue": pl.Float64,
                                    "order_count": pl.Int64})
    own_window = sa.or_(*[sa.and_(o.dept_id.in_(ids), o.create_time >= lo, o.create_time < hi)
                          for ids, lo, hi in windows])
    counted = sa.and_(own_window, valid)
    # Grouped by an expression, not the column: grouping along a (dept_id, ...) index
    # would spare the GROUP BY its small temporary table at the price of one primary-key
    # lookup per order. The expression works whatever the source's indexes are called.
    store = (o.dept_id + 0).label("store_id")
    query = sa.select(
        store,
        sa.func.sum(sa.case((counted, o.pay_amount))).label("revenue"),
        sa.func.sum(sa.case((counted, 1), else_=0)).label("order_count"),
    ).where(
        o.order_status == 1,
        o.create_time >= min(lo for _, lo, _ in windows),
        o.create_time < max(hi for _, _, hi in windows),
    ).group_by(store)
    found = read_frame(engine, query, schema_overrides={
        "store_id": pl.Int64, "revenue": pl.Float64, "order_count": pl.Int64})
    return found.filter(pl.col("store_id").is_in(stores["store_id"].to_list()))


def _differ(left: str, right: str) -> pl.Expr:
    """Revenue more than half a cent apart, or order counts unequal (NULL as zero)."""
    return (
        (pl.col(f"revenue{left}").fill_null(0) - pl.col(f"revenue{right}").fill_null(0)).abs()
        >= 0.005
    ) | (pl.col(f"order_count{left}").fill_null(0) != pl.col(f"order_count{right}").fill_null(0))


def reconcile_kpis(analytics: sa.Engine, sales_order: sa.Engine, active: pl.DataFrame,
                   max_order_amount: float, start: date, end: date) -> Finding:
    """KPI revenue and orders of the `active` stores against t_order, independently of the
    extraction: order by order on the first and last day, per store over the range."""
    finding = Finding()
    limit = Decimal(str(max_order_amount))
    kpi = _table(analytics, schema.store_kpi_daily, "metric_date", start, end,
                 ["store_id", "metric_date", "revenue", "order_count"]).filter(
        pl.col("store_id").is_in(active["store_id"].to_list()))
    kpi = kpi.with_columns(pl.col("revenue").cast(pl.Float64),
                           pl.col("order_count").cast(pl.Int64))
    key = ["store_id", "metric_date"]
    finding.expect_none(kpi.filter(pl.struct(key).is_duplicated()), "duplicate KPI keys")
    edge_days = sorted({start, end})
    per_order = _orders_per_store_day(sales_order, active, edge_days, limit)
    finding.expect_none(
        per_order.join(kpi, on=key, how="left", suffix="_kpi").filter(_differ("", "_kpi"))
        .select(*key, "revenue", "revenue_kpi", "order_count", "order_count_kpi"),
        "store-days whose revenue or orders differ from t_order summed order by order",
    )
    totals = _orders_per_store(sales_order, active, start, end, limit)
    kpi_totals = kpi.group_by("store_id").agg(pl.col("revenue").sum(),
                                              pl.col("order_count").sum())
    finding.expect_none(
        totals.join(kpi_totals, on="store_id", how="full", suffix="_kpi",
                    coalesce=True).filter(_differ("", "_kpi")),
        f"stores whose revenue or orders over {start}..{end} differ from t_order",
    )
    finding.figures.update(
        kpi_rows=kpi.height,
        store_days_checked_order_by_order=per_order.height,
        orders_checked_order_by_order=int(per_order["order_count"].sum() or 0),
        source_revenue=round(float(totals["revenue"].sum() or 0), 2),
        kpi_revenue=round(float(kpi["revenue"].sum() or 0), 2),
        source_orders=int(totals["order_count"].sum() or 0),
        kpi_orders=int(kpi["order_count"].sum() or 0),
    )
    return finding


@dg.asset_check(asset="store_kpi_daily", blocking=True,
                description="KPI keys unique; revenue and orders reconcile to the cent with "
                "t_order, recomputed independently of the extraction: order by order on "
                "the range's first and last day, and per store over the whole range.")
def kpis_complete_and_reconciled(
    context: dg.AssetCheckExecutionContext,
    analytics: Database,
    opshop: Database,
    sales_order: Database,
    anomaly_settings: AnomalySettings,
) -> dg.AssetCheckResult:
    def find(start: date, end: date) -> Finding:
        stores = extraction.load_store_master(opshop.engine(), anomaly_settings.active_stores)
        return reconcile_kpis(analytics.engine(), sales_order.engine(),
                              stores.filter(pl.col("is_active")),
                              anomaly_settings.max_order_amount, start, end)

    return _result(context, analytics, "kpis_complete_and_reconciled", find)


@dg.asset_check(asset="store_data_quality",
                description="The run's data-quality findings: ERROR when a source had no "
                "rows on a day the store traded (those KPIs are NULL), WARN for rows left "
                "out of the KPIs, closures and writes over the gate.")
def source_data_quality(
    context: dg.AssetCheckExecutionContext,
    analytics: Database,
    opshop: Database,
    anomaly_settings: AnomalySettings,
) -> dg.AssetCheckResult:
    def find(start: date, end: date) -> Finding:
        finding = Finding()
        active = extraction.active_store_ids(
            extraction.load_store_master(opshop.engine(), anomaly_settings.active_stores))
        findings = reads.read_findings(analytics.engine(), active, start, end)
        for severity in ("ERROR", "WARN"):
            found = findings.filter(pl.col("severity") == severity)
            finding.expect_none(
                found.select("store_id", "metric_date", "source", "check_name",
                             "rows_affected"),
                f"{severity} findings")
            for source, check, n in found.group_by("source", "check_name").len().rows():
                finding.figures[f"{severity.lower()}_{source}_{check}"] = n
        if findings.filter(pl.col("severity") == "ERROR").is_empty():
            finding.severity = dg.AssetCheckSeverity.WARN
        finding.figures.update(findings=findings.height)
        return finding

    return _result(context, analytics, "source_data_quality", find)


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


ALL_CHECKS = [source_data_quality, kpis_complete_and_reconciled, scores_valid, health_valid,
              alerts_match_scores]
