"""`store-anomaly demo`: the synthetic chain in embedded SQLite, backfilled end to end."""

from __future__ import annotations

import time
from datetime import date

import dagster as dg
import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.config import DATABASES, SOURCE_PREFIXES, AppConfig
from store_anomaly_assets.db.analytics import schema
from store_anomaly_assets.db.analytics.init_db import init_db
from store_anomaly_assets.db.frames import read_frame
from store_anomaly_assets.defs.resources import resolved_databases
from store_anomaly_assets.demo import synthetic


def source_engines(config: AppConfig) -> dict[str, sa.Engine]:
    """Writable engines on the source databases, for loading a generated chain."""
    resources = resolved_databases(config)
    return {
        prefix: resources[key].writable_engine()
        for prefix, (key, _) in DATABASES.items()
        if prefix in SOURCE_PREFIXES
    }


def load_demo_chain(config: AppConfig, scale: float = 1.0) -> synthetic.SyntheticChain:
    chain = synthetic.generate(synthetic.default_chain(scale=scale))
    synthetic.load_chain(chain, source_engines(config), include_late=True)
    return chain


def health_grid(engine: sa.Engine, day: date) -> pl.DataFrame:
    t = schema.store_health_scores
    query = sa.select(
        t.c.store_id, t.c.store_name, t.c.health_score, t.c.health_status, t.c.sales_score,
        t.c.operations_score, t.c.staffing_score, t.c.quality_score,
    ).where(t.c.metric_date == day).order_by(t.c.health_score.is_(None), t.c.health_score)
    return read_frame(engine, query)


def top_alerts(engine: sa.Engine, limit: int = 10) -> pl.DataFrame:
    """Open alerts, most severe first, then the newest, then the costliest."""
    t = schema.store_anomaly_alerts
    severity_rank = sa.case({"CRITICAL": 0, "WARNING": 1, "INFO": 2}, value=t.c.severity)
    query = (
        sa.select(t.c.id, t.c.alert_date, t.c.store_name, t.c.severity, t.c.metric_name,
                  t.c.description_en)
        .where(t.c.acknowledged.is_(False))
        .order_by(severity_rank, t.c.alert_date.desc(), t.c.impact_usd.desc())
        .limit(limit)
    )
    return read_frame(engine, query)


def run_demo(config: AppConfig, scale: float = 1.0, fresh: bool = False) -> int:
    from store_anomaly_assets.cli import RunFailed, ensure_dagster_home, run_pipeline

    data_dir = config.data_dir
    marker = data_dir / "ground_truth.csv"
    clock = time.perf_counter()
    spec = synthetic.default_chain(scale=scale)
    if fresh or not marker.exists():
        print(f"Generating the demo chain ({len(spec.stores)} stores, {spec.start}..{spec.end}) "
              f"into {data_dir} ...")
        chain = load_demo_chain(config, scale)
        synthetic.write_ground_truth(chain, marker)
        print(f"  {chain.orders.height:,} orders, {chain.production.height:,} production "
              f"records, {chain.schedules.height:,} shifts, {chain.inspections.height} "
              f"inspections in {time.perf_counter() - clock:.1f} s")
    analytics = resolved_databases(config)["analytics"].writable_engine()
    init_db(analytics)
    home = ensure_dagster_home(config)
    print(f"Backfilling {spec.start}..{spec.end} in one Dagster run ...")
    clock = time.perf_counter()
    outcome = run_pipeline(config, spec.start, spec.end, instance=dg.DagsterInstance.get(),
                           log_level="WARNING")
    if not outcome.success:
        raise RunFailed(f"demo run {outcome.run_id} failed: {outcome.error}")
    print(f"  done in {time.perf_counter() - clock:.1f} s (run {outcome.run_id})\n")
    with pl.Config(tbl_rows=30, tbl_cols=10, fmt_str_lengths=110, tbl_hide_dataframe_shape=True,
                   tbl_width_chars=160):
        print(f"Health grid on {spec.end}:")
        print(health_grid(analytics, spec.end))
        print("\nTop open alerts:")
        print(top_alerts(analytics))
    print(f"\nGround truth of the injected anomalies: {marker}")
    if not config.schedule_enabled:
        print(f"The daily schedule is off in the demo: its chain ends on {spec.end}, so a "
              "daily run would find no source data (DAILY_SCHEDULE_ENABLED=true turns it on).")
    print("Open the Dagster UI on this demo:")
    print(f"  DAGSTER_HOME={home} STORE_ANOMALY_DATA_DIR={data_dir} "
          "dagster dev -m store_anomaly_assets.defs.definitions -h 127.0.0.1 -p 3000")
    print("  then browse http://127.0.0.1:3000")
    return 0
