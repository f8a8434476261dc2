"""Steps 6-11: the analytics tables, each written for exactly the run's range.

Assets stay thin: read what they need, call the pure functions in `core/`, write one
transaction, log the step. Each requires `run_lock`, so a run of any subset of them
holds the run lock (see resources.RunLock) while it writes. Downstream assets read their
inputs back from the analytics database, so any one of them can be re-materialized alone.
"""


import time
from collections.abc import Sequence
from datetime import timedelta

import dagster as dg
import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.core import alerts as alert_stats
from store_anomaly_assets.core import calendar, health, kpis, quality, spc
from store_anomaly_assets.core.contracts import SEVERITY_ORDER
from store_anomaly_assets.db.analytics import reads, schema
from store_anomaly_assets.db.analytics.pipeline_log import logged_step, utcnow, write_log_row
from store_anomaly_assets.db.analytics.reads import days_without_rows, format_days
from store_anomaly_assets.db.analytics.writes import (
    merge_alerts,
    range_writer,
    replace_findings,
    replace_kpis,
)
from store_anomaly_assets.db.sources.extraction import active_store_ids, store_places
from store_anomaly_assets.defs.assets.metadata import asset_attributes, range_metadata
from store_anomaly_assets.defs.partitions import partition_dates
from store_anomaly_assets.defs.resources import AnomalySettings, Database
from store_anomaly_assets.defs.run_lock import RunLock

GROUP = "analytics"

# A run tagged with this (value "true") writes over the data-quality gate: a deliberate
# rewrite of a range whose source lost rows. `store-anomaly run --accept-source-gaps`
# sets it; in the UI, add the tag to the run or backfill.
ACCEPT_SOURCE_GAPS_TAG = "store_anomaly/accept_source_gaps"


def store_batches(store_ids: Sequence[int], size: int) -> list[list[int]]:
    """The stores in batches of STORE_BATCH_SIZE; scores and health are per store, so a
    batch's results do not depend on the other stores."""
    ids = list(store_ids)
    return [ids[i:i + size] for i in range(0, len(ids), size)] or [[]]


def _md_table(frame: pl.DataFrame, limit: int = 10) -> str:
    """A small markdown table for the Dagster UI."""
    if frame.is_empty():
        return "_none_"
    head = frame.head(limit)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += [
        "| " + " | ".join("" if v is None else str(v) for v in row) + " |"
        for row in head.iter_rows()
    ]
    return "\n".join(lines)


def build_analytics_assets(
    partitions_def: dg.PartitionsDefinition, storage_kind: str, database: str
) -> list[dg.AssetsDefinition]:
    """Steps 6-10 over `partitions_def`, writing the analytics tables of `database`."""

    def common(table: sa.Table) -> dict:
        return asset_attributes(table, database, GROUP, storage_kind, partitions_def)

    @dg.asset(
        **common(schema.store_data_quality),
        description="Step 6a: the data-quality gate and findings. Stops the run before any "
        "table is written when a source lost its rows; records rows left out of the KPIs, "
        "sources missing on a store-day and closures.",
    )
    def store_data_quality(
        context: dg.AssetExecutionContext,
        analytics: Database,
        anomaly_settings: AnomalySettings,
        run_lock: RunLock,
        store_master: pl.DataFrame,
        sales_extract: pl.DataFrame,
        production_extract: pl.DataFrame,
        staffing_extract: pl.DataFrame,
        quality_extract: pl.DataFrame,
    ) -> dg.MaterializeResult:
        start, end = partition_dates(context)
        engine, store_ids = analytics.engine(), active_store_ids(store_master)
        limits = anomaly_settings.data_quality
        extracts = dict(zip([s.name for s in quality.EXTRACT_SOURCES],
                            [sales_extract, production_extract, staffing_extract,
                             quality_extract], strict=True))
        accepted = context.run.tags.get(ACCEPT_SOURCE_GAPS_TAG, "").lower() == "true"
        with logged_step(engine, context.run.run_id, start, end, 6,
                         "check_source_quality") as step:
            totals = {s.name: int(extracts[s.name][s.rows].sum() or 0)
                      for s in quality.EXTRACT_SOURCES}
            gaps = quality.source_gaps(
                totals, reads.held_source_rows(engine, store_ids, start, end), start, end,
                limits)
            if gaps and not accepted:
                raise quality.SourceGapError(
                    "; ".join(g.message for g in gaps) + ". Nothing was written. If the "
                    "source is right, rerun with --accept-source-gaps (run tag "
                    f"{ACCEPT_SOURCE_GAPS_TAG}=true)")
            rows = quality.source_rows(extracts)
            first_dates = pl.concat([
                reads.read_first_dates(engine, store_ids),
                rows.filter(pl.col("active")).group_by("store_id")
                .agg(first_date=pl.col("metric_date").min()),
            ]).group_by("store_id").agg(pl.col("first_date").min())
            events = calendar.known_events(store_ids, start, end,
                                           anomaly_settings.known_events,
                                           anomaly_settings.known_events_file)
            findings = quality.all_findings(
                quality.excluded_row_findings(extracts, limits),
                quality.missing_source_findings(rows),
                quality.closure_findings(rows, first_dates, start, end, events),
                quality.accepted_gap_findings(gaps, end),
            )
            step.rows_affected = replace_findings(
                engine, findings, start, end, store_ids,
                {"run_id": context.run.run_id, "updated_at": utcnow()},
            )
        for gap in gaps:
            context.log.warning(f"written over the data-quality gate: {gap.message}")
        counts = findings.group_by("severity", "check_name").len()
        return dg.MaterializeResult(
            metadata={
                **range_metadata(step.rows_affected, start, end),
                **{f"{c}_{s.lower()}": n for s, c, n in counts.iter_rows()},
                "source_rows": ", ".join(f"{k} {v:,}" for k, v in totals.items()),
                "accepted_source_gaps": len(gaps),
            }
        )

    @dg.asset(
        **common(schema.store_kpi_daily),
        deps=[store_data_quality],
        description="Step 6: daily KPIs per store and local business day, with the derived "
        "per-labor-hour ratios; a source missing on a day the store traded leaves its "
        "KPIs NULL.",
    )
    def store_kpi_daily(
        context: dg.AssetExecutionContext,
        analytics: Database,
        run_lock: RunLock,
        store_master: pl.DataFrame,
        sales_extract: pl.DataFrame,
        production_extract: pl.DataFrame,
        staffing_extract: pl.DataFrame,
        quality_extract: pl.DataFrame,
    ) -> dg.MaterializeResult:
        start, end = partition_dates(context)
        engine = analytics.engine()
        with logged_step(engine, context.run.run_id, start, end, 6) as step:
            frame = kpis.build_kpis(
                store_master, sales_extract, production_extract, staffing_extract, quality_extract
            )
            step.rows_affected = replace_kpis(
                engine, frame, start, end, active_store_ids(store_master),
                {"run_id": context.run.run_id, "updated_at": utcnow()},
            )
        quiet_days = days_without_rows(frame, start, end)
        if quiet_days:
            context.log.warning(f"no source data for {format_days(quiet_days)}: those days have no "
                                "KPIs, scores, health or alerts")
        return dg.MaterializeResult(
            metadata={
                **range_metadata(step.rows_affected, start, end),
                "stores": frame["store_id"].n_unique(),
                "revenue_total": round(float(frame["revenue"].sum() or 0), 2),
                "days_without_source_data": format_days(quiet_days) or "none",
            }
        )


    @dg.asset(
        **common(schema.store_anomaly_scores),
        deps=[store_kpi_daily],
        description="Steps 7-8: day-of-week adjusted z-scores, control limits, Western Electric "
        "rules and severity per store, day and metric.",
    )
    def store_anomaly_scores(
        context: dg.AssetExecutionContext,
        analytics: Database,
        anomaly_settings: AnomalySettings,
        run_lock: RunLock,
        store_master: pl.DataFrame,
    ) -> dg.MaterializeResult:
        start, end = partition_dates(context)
        settings, engine, store_ids = anomaly_settings.spc, analytics.engine(), active_store_ids(
            store_master
        )
        # Steps 7 (z-scores) and 8 (rules, severity) are one pure function; the log keeps
        # the guide's two rows: scoring, then the write of the scored rows. Stores are
        # scored and written in batches inside one transaction, so a run's memory follows
        # the batch rather than the chain; each step's row carries its own share of time.
        run_id, first_day = context.run.run_id, start - timedelta(days=settings.history_days)
        audit = {"run_id": run_id, "updated_at": utcnow()}
        started, step, scoring_s, scored_rows, scored_all = utcnow(), 7, 0.0, 0, False
        batches, severities = store_batches(store_ids, anomaly_settings.store_batch_size), []
        try:
            with range_writer(engine, schema.store_anomaly_scores, start, end, store_ids,
                              audit) as writer:
                for number, ids in enumerate(batches, start=1):
                    step, clock = 7, time.perf_counter()
                    scored = spc.score_metrics(
                        reads.read_kpis(engine, ids, first_day, end),
                        reads.read_first_dates(engine, ids), settings,
                        calendar.known_events(ids, first_day, end, settings.known_events,
                                              settings.known_events_file),
                    ).filter(pl.col("metric_date").is_between(start, end))
                    scored_rows += scored.filter(pl.col("z_score").is_not_null()).height
                    severities.append(scored.group_by("severity").len())
                    scoring_s += time.perf_counter() - clock
                    step, scored_all = 8, number == len(batches)
                    writer.append(scored)
                    del scored
        except Exception as exc:
            if step == 8 and scored_all:
                write_log_row(engine, run_id, start, end, 7, "SUCCESS",
                              rows_affected=scored_rows, duration_seconds=round(scoring_s, 3),
                              started_at=started)
            write_log_row(engine, run_id, start, end, step, "FAILED",
                          duration_seconds=round((utcnow() - started).total_seconds(), 3),
                          error_message=f"{type(exc).__name__}: {exc}", started_at=started)
            raise
        write_log_row(engine, run_id, start, end, 7, "SUCCESS", rows_affected=scored_rows,
                      duration_seconds=round(scoring_s, 3), started_at=started)
        write_log_row(engine, run_id, start, end, 8, "SUCCESS", rows_affected=writer.rows,
                      duration_seconds=round(writer.seconds, 3), started_at=started)
        rows_written = writer.rows
        by_severity = (pl.concat(severities).group_by("severity").agg(pl.col("len").sum())
                       .drop_nulls("severity") if severities else
                       pl.DataFrame(schema={"severity": pl.String, "len": pl.UInt32}))
        return dg.MaterializeResult(
            metadata={
                **range_metadata(rows_written, start, end),
                **{f"{s.lower()}_scores": n for s, n in by_severity.iter_rows()},
            }
        )


    @dg.asset(
        **common(schema.store_health_scores),
        deps=[store_anomaly_scores],
        description="Step 9: composite health score (0-100) and status per store and day.",
    )
    def store_health_scores(
        context: dg.AssetExecutionContext,
        analytics: Database,
        anomaly_settings: AnomalySettings,
        run_lock: RunLock,
        store_master: pl.DataFrame,
    ) -> dg.MaterializeResult:
        start, end = partition_dates(context)
        settings, engine, store_ids = anomaly_settings.spc, analytics.engine(), active_store_ids(
            store_master
        )
        audit = {"run_id": context.run.run_id, "updated_at": utcnow()}
        places = store_places(store_master)
        last_days = []
        with (logged_step(engine, context.run.run_id, start, end, 9) as step,
              range_writer(engine, schema.store_health_scores, start, end, store_ids,
                           audit) as writer):
            for ids in store_batches(store_ids, anomaly_settings.store_batch_size):
                days = reads.read_kpis(engine, ids, start, end, ["store_id", "metric_date",
                                                                 "store_name"])
                days = spc.with_eligibility(
                    days, reads.read_first_dates(engine, ids), settings.rolling_window
                )
                inspections = reads.read_kpis(
                    engine, ids, start - timedelta(days=settings.quality_lookback_days), end,
                    ["store_id", "metric_date", "inspection_score"],
                ).drop_nulls("inspection_score")
                scores = spc.with_adverse_z(reads.read_scores(engine, ids, start, end,
                                                              reads.HEALTH_SCORE_COLUMNS))
                frame = health.health_scores(days, scores, inspections, settings).join(
                    places, on="store_id", how="left")
                writer.append(frame)
                last_days.append(frame.filter(pl.col("metric_date") == end))
            step.rows_affected = writer.rows
        frame = pl.concat(last_days)
        last_day = frame.filter(pl.col("metric_date") == end).sort("health_score", nulls_last=True)
        return dg.MaterializeResult(
            metadata={
                **range_metadata(step.rows_affected, start, end),
                "worst_stores": dg.MetadataValue.md(
                    _md_table(last_day.select("store_id", "store_name", "health_score",
                                              "health_status"), 5)
                ),
            }
        )


    @dg.asset(
        **common(schema.store_anomaly_alerts),
        # After health, so that step 11's row closes a run whose steps 1-10 all succeeded.
        deps=[store_anomaly_scores, store_health_scores],
        description="Step 10: tiered bilingual alerts, merged so acknowledgments survive "
        "recomputes.",
    )
    def store_anomaly_alerts(
        context: dg.AssetExecutionContext,
        analytics: Database,
        anomaly_settings: AnomalySettings,
        run_lock: RunLock,
        store_master: pl.DataFrame,
    ) -> dg.MaterializeResult:
        start, end = partition_dates(context)
        settings, engine, store_ids = anomaly_settings.spc, analytics.engine(), active_store_ids(
            store_master
        )
        with logged_step(engine, context.run.run_id, start, end, 10) as step:
            scores = spc.with_eligibility(
                reads.read_scores(engine, store_ids, start, end, reads.ALERT_SCORE_COLUMNS),
                reads.read_first_dates(engine, store_ids),
                settings.rolling_window,
            )
            issues = reads.read_findings(engine, store_ids, start, end, ["ERROR"])
            alerts = alert_stats.build_alerts(scores, settings, issues)
            merged = merge_alerts(engine, alerts, start, end, store_ids, context.run.run_id,
                                  utcnow(), store_places(store_master))
            step.rows_affected = merged.inserted + merged.updated
        # Step 11 closes the run's log: what the graph did, in one row.
        write_log_row(
            engine, context.run.run_id, start, end, 11, "SUCCESS", rows_affected=alerts.height,
        )
        newest = alerts.filter(pl.col("alert_date") == end).sort(
            pl.col("severity").replace_strict(SEVERITY_ORDER), pl.col("impact_usd"),
            descending=[False, True], nulls_last=True,
        )
        return dg.MaterializeResult(
            metadata={
                "inserted": merged.inserted,
                "updated": merged.updated,
                "removed": merged.removed,
                "acknowledged_kept": merged.kept_acknowledged,
                "incidents_new": merged.incidents.inserted,
                "incidents_updated": merged.incidents.updated,
                "incidents_removed": merged.incidents.removed,
                **range_metadata(alerts.height, start, end),
                "latest_day_alerts": dg.MetadataValue.md(
                    _md_table(newest.select("store_name", "metric_name", "severity", "z_score",
                                            "impact_usd"))
                ),
            }
        )

    return [store_data_quality, store_kpi_daily, store_anomaly_scores, store_health_scores,
            store_anomaly_alerts]
