"""`store-anomaly demo`: the synthetic chain in embedded SQLite, backfilled end to end."""

from __future__ import annotations

import time
from datetime import date

import dagster as dg
import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.cli import render
from store_anomaly_assets.cli.errors import RunFailed
from store_anomaly_assets.cli.pipeline import ensure_dagster_home, run_pipeline
from store_anomaly_assets.config import DATABASES, SOURCE_PREFIXES, AppConfig
from store_anomaly_assets.db.analytics import schema
from store_anomaly_assets.db.analytics.acknowledgments import open_alerts
from store_anomaly_assets.db.analytics.init_db import init_db
from store_anomaly_assets.db.frames import read_frame
from store_anomaly_assets.defs.resources import resolved_databases
from store_anomaly_assets.demo import loaders, synthetic

TOP_ALERTS = 10


def source_engines(config: AppConfig) -> dict[str, sa.Engine]:
    """Writable engines on the source databases, for loading a generated chain."""
    resources = resolved_databases(config)
    return {
        prefix: resources[key].writable_engine()
        for prefix, (key, _) in DATABASES.items()
        if prefix in SOURCE_PREFIXES
    }


def load_demo_chain(config: AppConfig, scale: float = 1.0,
                    quiet: bool = False) -> synthetic.SyntheticChain:
    """Generate the demo chain and load it into the source databases (spinners on a tty)."""
    spec = synthetic.default_chain(scale=scale)
    with render.status(f"Generating {len(spec.stores)} stores' orders, production, shifts "
                       "and inspections ...", quiet):
        chain = synthetic.generate(spec)
    with render.status(f"Loading {chain.orders.height:,} orders and "
                       f"{chain.production.height:,} production records ...", quiet):
        loaders.load_chain(chain, source_engines(config), include_late=True)
    return chain


def health_grid(engine: sa.Engine, day: date) -> pl.DataFrame:
    t = schema.store_health_scores
    query = sa.select(
        t.c.store_id, t.c.store_name, t.c.health_score, t.c.health_status, t.c.sales_score,
        t.c.operations_score, t.c.staffing_score, t.c.quality_score,
    ).where(t.c.metric_date == day).order_by(t.c.health_score.is_(None), t.c.health_score)
    return read_frame(engine, query)


def top_alerts(engine: sa.Engine, limit: int = TOP_ALERTS) -> pl.DataFrame:
    """Open alerts in the open-alert order (most severe, newest, costliest first)."""
    return open_alerts(engine, limit=limit)


def run_demo(config: AppConfig, scale: float = 1.0, fresh: bool = False,
             quiet: bool = False) -> int:
    data_dir = config.data_dir
    marker = data_dir / "ground_truth.csv"
    clock = time.perf_counter()
    spec = synthetic.default_chain(scale=scale)
    if fresh or not marker.exists():
        render.say(f"Generating the demo chain ({len(spec.stores)} stores, "
                   f"{spec.start}..{spec.end}) into {data_dir} ...")
        chain = load_demo_chain(config, scale, quiet)
        loaders.write_ground_truth(chain, marker)
        render.say(f"  {chain.orders.height:,} orders, {chain.production.height:,} production "
                   f"records, {chain.schedules.height:,} shifts, {chain.inspections.height} "
                   f"inspections in {time.perf_counter() - clock:.1f} s")
    analytics = resolved_databases(config)["analytics"].writable_engine()
    init_db(analytics)
    home = ensure_dagster_home(config)
    render.say(f"Backfilling {spec.start}..{spec.end} in one Dagster run ...")
    clock = time.perf_counter()
    with render.step_progress("Backfilling", quiet) as progress:
        outcome = run_pipeline(config, spec.start, spec.end, instance=dg.DagsterInstance.get(),
                               log_level="WARNING", progress=progress)
    if not outcome.success:
        raise RunFailed(f"demo run {outcome.run_id} failed: {outcome.error}")
    render.say(f"  done in {time.perf_counter() - clock:.1f} s (run {outcome.run_id})\n")
    render.print_tables(
        (f"Health grid on {spec.end}:", render.health_table(health_grid(analytics, spec.end))),
        ("\nTop open alerts:", render.alerts_table(top_alerts(analytics))),
    )
    render.say(f"\nGround truth of the injected anomalies: {marker}")
    if not config.schedule_enabled:
        render.say(f"The daily schedule is off in the demo: its chain ends on {spec.end}, so a "
                   "daily run would find no source data (DAILY_SCHEDULE_ENABLED=true turns it "
                   "on).")
    render.say("Open the Dagster UI on this demo:")
    render.say(f"  DAGSTER_HOME={home} STORE_ANOMALY_DATA_DIR={data_dir} "
               "dagster dev -m store_anomaly_assets.defs.definitions -h 127.0.0.1 -p 3000")
    render.say("  then browse http://127.0.0.1:3000")
    return 0
