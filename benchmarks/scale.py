"""Benchmark at chain scale: 100 (or 300) stores, the read floor, the backfill, the daily run.

Usage:  python benchmarks/scale.py [--stores 100] [--runs 3] [--daily-runs 3] [--no-2y]
                                   [--variant NAME:KEY=VALUE[,KEY=VALUE]] [--drop]
        python benchmarks/scale.py --regions          four concurrent region backfills
        python benchmarks/scale.py --stats 1000 5000 --batch 500 1000
                                   statistics alone (no database writes) for larger chains

Needs MariaDB on 127.0.0.1:3306 (root, empty password). It uses only databases named
bench_scale_<stores>_* : five sources and one analytics database. Scratch files (the
SQLite Dagster home, extracts, the log of every run) go to one folder under /dev/shm,
removed at the end.

Setup (cached)
--------------
A synthetic chain of <stores> operating stores over two years (2024-02-16..2026-02-15, so
the daily run can be measured with one and with two years of history): the demo chain's
eight stores that are open the whole time, repeated with new ids across four regions and
the four mainland US zones, with the demo's anomalies on every copy. Generated in groups
of stores (the generator draws per store, so a group's rows do not depend on the others)
and loaded with LOAD DATA LOCAL INFILE. A table `bench_chain` in the store master database
records what was loaded; when it matches, a later invocation skips generation and loading.
--drop drops the databases at the end instead of keeping them for the next invocation.

What it measures, in one invocation
-----------------------------------
1. floor: the independent read floor, four full-scan `GROUP BY dept_id, DATE(...)`
   aggregates (orders, production, shifts, inspections) over the backfill's rows, written
   by hand (not the pipeline's queries), on sessions with tmp_table_size =
   max_heap_table_size = 1 GiB so the grouping stays in memory. execute + fetch, median.
2. backfill: `run_pipeline` over the last 365 days (2025-02-16..2026-02-15) in one Dagster
   run, in a fresh process (this script re-invoked), on an analytics database that starts
   empty, so the history is one year. Runs 2..N rewrite the range. Per run: process wall
   time, run time, peak RSS (VmHWM of the child), and the project's per-step durations
   from store_anomaly_pipeline_log.
   --variant adds the same backfill with other settings (e.g. `--variant
   before:SOURCE_TMP_TABLE_MB=0,BULK_LOAD_ROWS=0`), measured in the same invocation.
3. daily, 1 year: `run_pipeline` over the last day and its 3-day lookback, N runs.
4. the first year is backfilled once (timed, printed, not a target), then daily, 2 years.
Then the targets of the scale issue with their figures: backfill <= 2x the floor, peak RSS
< 1 GiB, daily <= 5 s, daily with 2 years <= 1.2x daily with 1 year.

--regions: the one-year backfill of the whole chain, then four region backfills (one per
region, ACTIVE_STORES) as concurrent processes, each writing its own analytics database
(bench_scale_<stores>_analytics_<region>, dropped after) so the run lock, which is scoped
to the analytics database, does not serialize them. Prints each region's time and the
wall time against the whole-chain run.

--stats N...: steps 7-10 alone (no database writes) for chains of N stores x 365 days, in
batches of --batch stores: the KPIs a backfill of --stores wrote, repeated under new store
ids. Prints time per step and peak RSS per (N, batch), each in a fresh process.

The machine has 2 cores and may be shared: `uptime` is printed at the start, before each
group and at the end. Ratios within one invocation are what counts.
"""

from __future__ import annotations

# Only the standard library at module level: the environment must be set before the
# package is imported (see benchmarks/backfill.py).
import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa

_PROCESS_START = time.perf_counter()

HOST, PORT, USER = "127.0.0.1", 3306, "root"
SCRIPT = Path(__file__).resolve()
RESULT_MARKER = "BENCH_RESULT "
LOG_LEVEL = "INFO"

CHAIN_START, CHAIN_END = date(2024, 2, 16), date(2026, 2, 15)
YEAR_1 = (date(2025, 2, 16), CHAIN_END)
YEAR_0 = (CHAIN_START, date(2025, 2, 15))
DAILY = (CHAIN_END - timedelta(days=3), CHAIN_END)
GENERATION_GROUP = 10  # stores generated and loaded together: bounds the setup's memory
# The demo chain's stores that are open for the whole two years (1101..1108).
TEMPLATE_IDS = tuple(range(1101, 1109))
REGIONS = (("East", "America/New_York"), ("Central", "America/Chicago"),
           ("Mountain", "America/Denver"), ("West", "America/Los_Angeles"))
TIME_COLUMNS = {"t_order": ("SALESORDER_", "create_time"),
                "t_production_record": ("OPPRODUCTION_", "start_time"),
                "t_employee_schedule": ("OPEMPEFFICIENCY_", "work_date"),
                "t_inspection_record": ("OPQUALITYCONTROL_", "inspection_time")}
LOAD_ROWS = 1_000_000
CHAIN_VERSION = 1  # bump when the chain's construction changes

TARGET_RATIO = 2.0
TARGET_PEAK_MB = 1024.0
TARGET_DAILY_S = 5.0
TARGET_DAILY_2Y = 1.2


def databases(stores: int) -> dict[str, str]:
    base = f"bench_scale_{stores}_"
    return {"OPSHOP_": base + "opshop", "SALESORDER_": base + "sales_order",
            "OPPRODUCTION_": base + "opproduction", "OPEMPEFFICIENCY_": base + "opempefficiency",
            "OPQUALITYCONTROL_": base + "opqualitycontrol", "DBATEST_": base + "analytics"}


def server_url(database: str | None = None, local_infile: bool = False) -> sa.URL:
    import sqlalchemy as sa

    return sa.URL.create("mysql+pymysql", username=USER, host=HOST, port=PORT, database=database,
                         query={"charset": "utf8mb4",
                                **({"local_infile": "1"} if local_infile else {})})


def configure_environment(stores: int, workdir: Path, extra: dict[str, str]) -> None:
    """Point the product at this chain's databases; call before importing the package."""
    sys.path.insert(0, str(SCRIPT.parents[1] / "store_anomaly_tests"))
    from local_env import use_local_databases

    use_local_databases(databases(stores), workdir / "data", HOST, PORT, USER)
    os.environ["PARTITION_START_DATE"] = CHAIN_START.isoformat()
    os.environ.update(extra)


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------- chain


def chain_specs(stores: int) -> tuple[list, list]:
    """The scale chain's StoreSpecs and Anomalies: demo templates repeated across regions."""
    from dataclasses import replace

    from store_anomaly_assets.demo import synthetic

    demo = synthetic.default_chain()
    templates = [s for s in demo.stores if s.dept_id in TEMPLATE_IDS]
    specs, anomalies = [], []
    for i in range(stores):
        template = templates[i % len(templates)]
        region, zone = REGIONS[i % len(REGIONS)]
        dept_id = 20001 + i
        specs.append(replace(template, dept_id=dept_id, shop_name=f"{template.shop_name} {i + 1}",
                             region=region, time_zone=zone, open_date=date(2023, 1, 2)))
        anomalies += [replace(a, dept_id=dept_id) for a in demo.anomalies
                      if a.dept_id == template.dept_id]
    return specs, anomalies


def fingerprint(stores: int) -> str:
    return hashlib.sha1(f"{CHAIN_VERSION}:{stores}:{CHAIN_START}:{CHAIN_END}".encode()).hexdigest()


def cached(server: sa.Engine, stores: int) -> bool:
    names = databases(stores)
    with server.connect() as conn:
        present = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name = 'bench_chain'", (names["OPSHOP_"],)
        ).scalar_one()
        if not present:
            return False
        row = conn.exec_driver_sql(
            f"SELECT fingerprint, orders FROM `{names['OPSHOP_']}`.bench_chain").first()
        if row is None or row[0] != fingerprint(stores):
            return False
        orders = conn.exec_driver_sql(
            f"SELECT COUNT(*) FROM `{names['SALESORDER_']}`.t_order").scalar_one()
    return orders == row[1]


def load_data_infile(engine: sa.Engine, table: str, frame, scratch: Path) -> None:
    """Append `frame` to `table` through a CSV file and LOAD DATA LOCAL INFILE."""
    import polars as pl

    path = scratch / f"{table}.csv"
    frame.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(
        path, include_header=False, null_value="NULL")
    columns = ", ".join(f"`{c}`" for c in frame.columns)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE `{table}` CHARACTER SET utf8mb4 "
            f"FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
            f"LINES TERMINATED BY '\\n' ({columns})")
    path.unlink()


def prepare_chain(server: sa.Engine, stores: int, scratch: Path) -> None:
    """Generate and load the chain unless the databases already hold it."""
    import polars as pl
    import sqlalchemy as sa

    from store_anomaly_assets.demo import loaders, synthetic

    names = databases(stores)
    if cached(server, stores):
        print(f"Chain of {stores} stores already loaded in bench_scale_{stores}_*: skipping "
              "generation")
        return
    clock = time.perf_counter()
    with server.begin() as conn:
        for prefix, name in names.items():
            if prefix != "DBATEST_":
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
                conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    engines = {p: sa.create_engine(server_url(n, local_infile=True))
               for p, n in names.items() if p != "DBATEST_"}
    loaders.create_source_schemas(engines)
    specs, anomalies = chain_specs(stores)
    parts: dict[str, list[pl.DataFrame]] = {t: [] for t in TIME_COLUMNS}
    shop_parts, order_offset = [], 0
    for first in range(0, stores, GENERATION_GROUP):
        group = specs[first:first + GENERATION_GROUP]
        ids = {s.dept_id for s in group}
        chain = synthetic.generate(synthetic.ChainSpec(
            start=CHAIN_START, end=CHAIN_END, seed=7, stores=tuple(group),
            anomalies=tuple(a for a in anomalies if a.dept_id in ids), late_store=None))
        shop_parts.append(chain.shop_info)
        # Order ids unique across groups, so production rows still name their order.
        parts["t_order"].append(chain.orders.with_columns(pl.col("id") + order_offset))
        parts["t_production_record"].append(
            chain.production.with_columns(pl.col("order_id") + order_offset))
        parts["t_employee_schedule"].append(chain.schedules)
        parts["t_inspection_record"].append(chain.inspections)
        order_offset += chain.orders.height
        print(f"  stores {first + 1}..{first + len(group)} generated "
              f"({time.perf_counter() - clock:.0f} s)", flush=True)
    totals: dict[str, int] = {}
    renumbered = None
    for table, (prefix, time_column) in TIME_COLUMNS.items():
        # Ids in time order across the chain, as a live source assigns them: the clustered
        # index and the time index then grow at their ends while loading.
        frame = pl.concat(parts.pop(table)).sort(time_column, "dept_id", "id")
        if table == "t_order":
            renumbered = frame.select(pl.col("id").alias("order_id"),
                                      pl.int_range(1, frame.height + 1).alias("new_id"))
        if table == "t_production_record":
            frame = (frame.join(renumbered, on="order_id", how="left")
                     .with_columns(order_id=pl.col("new_id")).drop("new_id"))
        frame = frame.with_columns(id=pl.int_range(1, frame.height + 1))
        for offset in range(0, frame.height, LOAD_ROWS):
            load_data_infile(engines[prefix], table, frame.slice(offset, LOAD_ROWS), scratch)
        totals[table] = frame.height
        print(f"  {table} loaded ({time.perf_counter() - clock:.0f} s)", flush=True)
        del frame
    load_data_infile(engines["OPSHOP_"], "t_shop_info", pl.concat(shop_parts), scratch)
    with engines["OPSHOP_"].begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bench_chain (fingerprint CHAR(40), orders BIGINT)")
        conn.exec_driver_sql("INSERT INTO bench_chain VALUES (%s, %s)",
                             (fingerprint(stores), totals["t_order"]))
    for engine in engines.values():
        engine.dispose()
    for name in names.values():
        with server.begin() as conn:
            tables = conn.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (name,)).scalars().all()
            for table in tables:
                conn.exec_driver_sql(f"ANALYZE TABLE `{name}`.`{table}`").all()
    print(f"Generated and loaded {stores} stores x {(CHAIN_END - CHAIN_START).days + 1} days in "
          f"{time.perf_counter() - clock:.0f} s: "
          + ", ".join(f"{t} {n:,}" for t, n in totals.items()))


def reset_analytics(server: sa.Engine, stores: int) -> None:
    """An empty analytics database, so the first backfill leaves one year of history."""
    from store_anomaly_assets.db.analytics.init_db import init_db
    from store_anomaly_assets.db.engines import create_engine

    name = databases(stores)["DBATEST_"]
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    engine = create_engine(server_url(name), read_only=False)
    init_db(engine)
    engine.dispose()


def drop_all(server: sa.Engine, stores: int) -> None:
    with server.begin() as conn:
        for name in databases(stores).values():
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")


# ---------------------------------------------------------------------------- floor

FLOOR_QUERIES = {
    "orders": ("SALESORDER_",
               "SELECT dept_id, DATE(create_time), COUNT(*), SUM(pay_amount) FROM t_order "
               "WHERE create_time >= %s AND create_time < %s AND order_status = 1 "
               "GROUP BY dept_id, DATE(create_time)"),
    "production": ("OPPRODUCTION_",
                   "SELECT dept_id, DATE(start_time), COUNT(*), "
                   "SUM(TIMESTAMPDIFF(SECOND, start_time, finish_time)) FROM t_production_record "
                   "WHERE start_time >= %s AND start_time < %s AND finish_time IS NOT NULL "
                   "GROUP BY dept_id, DATE(start_time)"),
    "shifts": ("OPEMPEFFICIENCY_",
               "SELECT dept_id, work_date, SUM(scheduled_hours), COUNT(DISTINCT employee_id) "
               "FROM t_employee_schedule WHERE work_date >= %s AND work_date < %s "
               "GROUP BY dept_id, work_date"),
    "inspections": ("OPQUALITYCONTROL_",
                    "SELECT dept_id, DATE(inspection_time), COUNT(*), SUM(total_score) "
                    "FROM t_inspection_record WHERE inspection_time >= %s "
                    "AND inspection_time < %s GROUP BY dept_id, DATE(inspection_time)"),
}


def measure_floor(stores: int, runs: int, start: date, end: date) -> list[float]:
    """The independent read floor: daily UTC aggregates with in-memory temporary tables.

    UTC days widened by a day on each side cover every store's local days; the time is
    what a full scan of the range and an in-memory grouping cost, whatever the buckets.
    """
    import sqlalchemy as sa

    names = databases(stores)
    lo, hi = start - timedelta(days=1), end + timedelta(days=2)
    totals = []
    print(f"\n== independent floor, {start}..{end} | {load_average()}")
    for run in range(1, runs + 1):
        parts = {}
        for label, (prefix, sql) in FLOOR_QUERIES.items():
            engine = sa.create_engine(server_url(names[prefix]))
            with engine.connect() as conn:
                conn.exec_driver_sql("SET SESSION tmp_table_size = 1073741824, "
                                     "max_heap_table_size = 1073741824")
                clock = time.perf_counter()
                conn.exec_driver_sql(sql, (lo, hi)).fetchall()
                parts[label] = time.perf_counter() - clock
            engine.dispose()
        totals.append(sum(parts.values()))
        print(f"  run {run}: {totals[-1]:.2f} s ("
              + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()) + ")", flush=True)
    return totals


# ---------------------------------------------------------------------------- statistics only


def stats_child(args: argparse.Namespace) -> int:
    """Steps 7-10 without a database for `--stats` stores: the 100-store chain's KPIs
    (read once from the analytics database a backfill wrote) repeated under new store ids,
    scored, rated and alerted in batches of `--batch` stores. Alerts are built per batch
    here (their NETWORK scope counts the batch's stores only): this is a timing of the
    statistics, not of the pipeline's results."""
    configure_environment(args.stores, args.workdir, {})
    import polars as pl

    from store_anomaly_assets.config import load_config
    from store_anomaly_assets.core import alerts, calendar, health, spc
    from store_anomaly_assets.db.analytics import reads
    from store_anomaly_assets.db.engines import create_engine

    settings = load_config(env_file=None).spc
    start, end = YEAR_1
    first_day = start - timedelta(days=settings.history_days)
    engine = create_engine(server_url(databases(args.stores)["DBATEST_"]), read_only=True)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.exec_driver_sql(
            "SELECT DISTINCT store_id FROM store_kpi_daily ORDER BY 1")]
    base = reads.read_kpis(engine, ids, first_day, end)
    base_first = reads.read_first_dates(engine, ids)
    engine.dispose()
    copies = -(-args.stats // len(ids))
    wanted = [(copy, store) for copy in range(copies) for store in ids][:args.stats]
    batch_ids = [wanted[i:i + args.batch] for i in range(0, len(wanted), args.batch)]
    clock = time.perf_counter()
    totals = {"scores": 0.0, "health": 0.0, "alerts": 0.0}
    rows = {"scores": 0, "alerts": 0}
    for batch in batch_ids:
        mapping = pl.DataFrame({"store_id": [s for _, s in batch],
                                "new_id": [c * 1_000_000 + s for c, s in batch]})

        def renumber(frame: pl.DataFrame, mapping: pl.DataFrame = mapping) -> pl.DataFrame:
            return (frame.join(mapping, on="store_id").drop("store_id")
                    .rename({"new_id": "store_id"}))

        kpis, first = renumber(base), renumber(base_first)
        step = time.perf_counter()
        scored = spc.score_metrics(
            kpis, first, settings,
            calendar.known_events(mapping["new_id"].to_list(), first_day, end,
                                  settings.known_events, settings.known_events_file),
        ).filter(pl.col("metric_date").is_between(start, end))
        totals["scores"] += time.perf_counter() - step
        rows["scores"] += scored.height
        step = time.perf_counter()
        days = spc.with_eligibility(
            kpis.filter(pl.col("metric_date").is_between(start, end))
            .select("store_id", "metric_date", "store_name"), first, settings.rolling_window)
        inspections = kpis.select("store_id", "metric_date", "inspection_score").drop_nulls()
        health.health_scores(days, spc.with_adverse_z(scored), inspections, settings)
        totals["health"] += time.perf_counter() - step
        step = time.perf_counter()
        found = alerts.build_alerts(spc.with_eligibility(scored, first, settings.rolling_window),
                                    settings)
        totals["alerts"] += time.perf_counter() - step
        rows["alerts"] += found.height
        del kpis, scored, days, found
    print(RESULT_MARKER + json.dumps({
        "success": True, "seconds": time.perf_counter() - clock, "steps": totals, "rows": rows,
        "peak_rss_kib": peak_rss_kib()}), flush=True)
    return 0


def run_regions(args: argparse.Namespace) -> int:
    """Four region backfills as four concurrent processes, against one of the whole chain.

    Each region run names its stores (ACTIVE_STORES) and writes its own analytics database
    (bench_scale_<stores>_analytics_<region>): the run lock is scoped to the analytics
    database, so region runs do not wait for each other, as a region-scoped lock would let
    them. All read the same source databases. Backfill of the last year, one run each.
    """
    import sqlalchemy as sa

    from store_anomaly_assets.db.analytics.init_db import init_db
    from store_anomaly_assets.db.engines import create_engine

    workdir = Path(tempfile.mkdtemp(prefix="store-anomaly-scale-", dir="/dev/shm"))
    configure_environment(args.stores, workdir, {})
    server = sa.create_engine(server_url())
    names = databases(args.stores)
    with server.connect() as conn:
        stores = conn.exec_driver_sql(
            f"SELECT region, GROUP_CONCAT(dept_id) FROM `{names['OPSHOP_']}`.t_shop_info "
            "GROUP BY region").all()
    print(f"\n== {len(stores)} concurrent region backfills, {YEAR_1[0]}..{YEAR_1[1]} | "
          f"{load_average()}")
    try:
        if args.whole_seconds:
            whole = Runs("whole chain (given)", wall_s=[args.whole_seconds])
        else:
            reset_analytics(server, args.stores)
            whole = spawn(args, workdir, "whole chain", *YEAR_1, {}, 1)
        procs = []
        for region, ids in stores:
            database = f"{names['DBATEST_']}_{region.lower()}"
            with server.begin() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{database}`")
                conn.exec_driver_sql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
            init_db(create_engine(server_url(database), read_only=False))
            env = {"DBATEST_DB": database, "ACTIVE_STORES": ids}
            command = [sys.executable, str(SCRIPT), "--child-run", "--stores", str(args.stores),
                       "--workdir", str(workdir / region), "--start", YEAR_1[0].isoformat(),
                       "--end", YEAR_1[1].isoformat(), "--env", json.dumps(env)]
            log = (workdir / f"region-{region}.log").open("w")
            procs.append((region, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log,
                                                   text=True)))
        clock = time.perf_counter()
        results = {}
        for region, proc in procs:
            out, _ = proc.communicate()
            lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARKER)]
            results[region] = (time.perf_counter() - clock,
                               json.loads(lines[-1][len(RESULT_MARKER):]) if lines else {})
        wall = max(t for t, _ in results.values())
        for region, (seconds, child) in results.items():
            print(f"  {region:<9} done after {seconds:6.1f} s, success {child.get('success')}, "
                  f"peak RSS {child.get('peak_rss_kib', 0) / 1024:.0f} MB")
        print(f"  whole chain, one run: {whole.wall_s[0]:.1f} s; four concurrent region runs: "
              f"{wall:.1f} s ({wall / whole.wall_s[0]:.2f}x) | {load_average()}")
        print(f"  {'PASS' if wall < whole.wall_s[0] else 'FAIL'}  four concurrent region runs "
              "finish faster than one run of the whole chain")
    finally:
        with server.begin() as conn:
            for region, _ in stores:
                conn.exec_driver_sql(
                    f"DROP DATABASE IF EXISTS `{names['DBATEST_']}_{region.lower()}`")
        server.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """Spawn the statistics-only child for each (stores, batch) asked, print the figures."""
    workdir = Path(tempfile.mkdtemp(prefix="store-anomaly-scale-", dir="/dev/shm"))
    print(f"statistics only, KPIs of bench_scale_{args.stores}_analytics | {load_average()}")
    try:
        for stores in args.stats:
            for batch in args.batch or [stores]:
                command = [sys.executable, str(SCRIPT), "--stats-child", str(stores),
                           "--batch", str(batch), "--stores", str(args.stores),
                           "--workdir", str(workdir)]
                clock = time.perf_counter()
                proc = subprocess.run(command, capture_output=True, text=True, check=False)
                wall = time.perf_counter() - clock
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARKER)]
                if proc.returncode or not lines:
                    print(f"  {stores} stores, batch {batch}: failed\n{proc.stderr[-2000:]}")
                    continue
                r = json.loads(lines[-1][len(RESULT_MARKER):])
                print(f"  {stores:>5} stores x 365 days, batch {batch:>5}: statistics "
                      f"{r['seconds']:6.1f} s (scores {r['steps']['scores']:.1f}, health "
                      f"{r['steps']['health']:.1f}, alerts {r['steps']['alerts']:.1f}), process "
                      f"{wall:.1f} s, peak RSS {r['peak_rss_kib'] / 1024:.0f} MB, "
                      f"{r['rows']['scores']:,} score rows, {r['rows']['alerts']:,} alerts | "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


# ---------------------------------------------------------------------------- pipeline runs


def peak_rss_kib() -> int:
    """VmHWM of this process (ru_maxrss would carry the parent's peak across exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_main(args: argparse.Namespace) -> int:
    """One measured pipeline run; prints its figures as one JSON line."""
    configure_environment(args.stores, args.workdir, json.loads(args.env or "{}"))
    import dagster as dg

    from store_anomaly_assets.cli import run_pipeline
    from store_anomaly_assets.config import load_config
    from store_anomaly_assets.event_log import sqlite_instance_config

    imported = time.perf_counter()
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    home = args.workdir / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home),
                              overrides=sqlite_instance_config(home)) as instance:
        opened = time.perf_counter()
        outcome = run_pipeline(load_config(env_file=None), start, end, instance,
                               log_level=LOG_LEVEL, accept_source_gaps=True)
        ran = time.perf_counter()
    print(RESULT_MARKER + json.dumps({
        "run_id": outcome.run_id, "success": outcome.success, "error": outcome.error,
        "imports_s": imported - _PROCESS_START, "run_s": ran - opened,
        "peak_rss_kib": peak_rss_kib()}), flush=True)
    return 0 if outcome.success else 1


@dataclass
class Runs:
    name: str
    wall_s: list[float] = field(default_factory=list)
    run_s: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)


def logged_steps(stores: int, run_id: str) -> dict[str, float]:
    import sqlalchemy as sa

    from store_anomaly_assets.db.analytics.schema import store_anomaly_pipeline_log as log

    engine = sa.create_engine(server_url(databases(stores)["DBATEST_"]))
    query = (sa.select(log.c.step_number, log.c.step_name, log.c.duration_seconds)
             .where(log.c.run_id == run_id).order_by(log.c.step_number, log.c.id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    engine.dispose()
    return {f"{n} {name}": float(s) for n, name, s in rows if s is not None}


def spawn(args: argparse.Namespace, workdir: Path, name: str, start: date, end: date,
          env: dict[str, str], runs: int) -> Runs:
    result = Runs(name)
    print(f"\n== {name}, {start}..{end} {env or ''} | {load_average()}", flush=True)
    for run in range(1, runs + 1):
        log_path = workdir / "logs" / f"{name.replace(' ', '-')}-{run}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(SCRIPT), "--child-run", "--stores", str(args.stores),
                   "--workdir", str(workdir), "--start", start.isoformat(),
                   "--end", end.isoformat(), "--env", json.dumps(env)]
        load = os.getloadavg()[0]
        with log_path.open("w") as log:
            clock = time.perf_counter()
            proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=log, text=True,
                                  check=False)
            wall = time.perf_counter() - clock
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARKER)]
        child = json.loads(lines[-1][len(RESULT_MARKER):]) if lines else {}
        if proc.returncode != 0 or not child.get("success"):
            tail = "\n".join(log_path.read_text().splitlines()[-15:])
            raise RuntimeError(f"{name} failed (exit {proc.returncode}): {child.get('error')}"
                               f"\n--- {log_path}:\n{tail}")
        steps = logged_steps(args.stores, child["run_id"])
        result.wall_s.append(wall)
        result.run_s.append(child["run_s"])
        result.peak_mb.append(child["peak_rss_kib"] / 1024)
        result.steps.append(steps)
        print(f"  run {run}: process {wall:.2f} s, run {child['run_s']:.2f} s, peak RSS "
              f"{result.peak_mb[-1]:.0f} MB, load {load:.2f}\n    logged: "
              + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()), flush=True)
    return result


def step_medians(runs: Runs) -> dict[str, float]:
    keys = list(dict.fromkeys(k for steps in runs.steps for k in steps))
    return {k: median([steps.get(k, 0.0) for steps in runs.steps]) for k in keys}


def print_breakdown(measured: list[Runs]) -> None:
    """Median logged seconds per step, one column per backfill measurement."""
    medians = [step_medians(m) for m in measured]
    keys = list(dict.fromkeys(k for m in medians for k in m))
    width = max(len(m.name) for m in measured) + 2
    print("\nPer-step breakdown (median logged seconds):")
    print(f"  {'step':<34}" + "".join(f"{m.name:>{width}}" for m in measured))
    for key in keys:
        print(f"  {key:<34}" + "".join(f"{m.get(key, 0.0):>{width}.2f}" for m in medians))
    # Asset checks log no duration, so what they take shows in the run's unlogged time.
    unlogged = [median([run - sum(steps.values()) for run, steps in zip(m.run_s, m.steps,
                                                                         strict=True)])
                for m in measured]
    print(f"  {'not logged: checks, Dagster':<34}" + "".join(f"{u:>{width}.2f}" for u in unlogged))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def run_benchmark(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    began = time.perf_counter()
    print(f"start: {load_average()}")
    workdir = Path(tempfile.mkdtemp(prefix="store-anomaly-scale-", dir="/dev/shm"))
    configure_environment(args.stores, workdir, {})
    home = Path.cwd()
    os.chdir(workdir)  # no developer .env can point a measured run elsewhere
    server = sa.create_engine(server_url())
    try:
        prepare_chain(server, args.stores, workdir)
        floor = measure_floor(args.stores, args.runs, *YEAR_1)
        backfills = []
        for name, env in [("backfill", {}), *args.variant]:
            reset_analytics(server, args.stores)
            backfills.append(spawn(args, workdir, name, *YEAR_1, env, args.runs))
        daily_1y = spawn(args, workdir, "daily 1y", *DAILY, {}, args.daily_runs)
        daily_2y = None
        if not args.no_2y:
            first = spawn(args, workdir, "backfill year 0", *YEAR_0, {}, 1)
            daily_2y = spawn(args, workdir, "daily 2y", *DAILY, {}, args.daily_runs)
        print_breakdown(backfills + [m for m in (daily_1y, daily_2y) if m])
        f = median(floor)
        print(f"\nSummary ({args.stores} stores; medians; RSS: worst run) | {load_average()}")
        print(f"  independent floor               {f:8.2f} s")
        for b in backfills:
            print(f"  {b.name:<31} {median(b.wall_s):8.2f} s (run {median(b.run_s):.2f} s) = "
                  f"{median(b.wall_s) / f:.1f}x the floor, peak RSS {max(b.peak_mb):.0f} MB")
        if not args.no_2y:
            print(f"  backfill of the first year      {first.wall_s[0]:8.2f} s, peak RSS "
                  f"{first.peak_mb[0]:.0f} MB")
        print(f"  daily, 1 year of history        {median(daily_1y.wall_s):8.2f} s "
              f"(run {median(daily_1y.run_s):.2f} s)")
        if daily_2y:
            print(f"  daily, 2 years of history       {median(daily_2y.wall_s):8.2f} s "
                  f"(run {median(daily_2y.run_s):.2f} s)")
        b = backfills[0]
        checks = [
            (f"backfill <= {TARGET_RATIO:.0f}x the floor: {median(b.wall_s) / f:.2f}x",
             median(b.wall_s) / f <= TARGET_RATIO),
            (f"backfill peak RSS < {TARGET_PEAK_MB:.0f} MB: {max(b.peak_mb):.0f} MB",
             max(b.peak_mb) < TARGET_PEAK_MB),
            (f"daily <= {TARGET_DAILY_S:.0f} s: {median(daily_1y.wall_s):.2f} s",
             median(daily_1y.wall_s) <= TARGET_DAILY_S),
        ]
        if daily_2y:
            ratio = median(daily_2y.wall_s) / median(daily_1y.wall_s)
            checks.append((f"daily 2y / 1y <= {TARGET_DAILY_2Y}: {ratio:.2f}",
                           ratio <= TARGET_DAILY_2Y))
        print("\nTargets:")
        for text, ok in checks:
            print(f"  {verdict(ok)}  {text}")
    finally:
        server.dispose()
        os.chdir(home)
        shutil.rmtree(workdir, ignore_errors=True)
        if args.drop:
            drop_all(sa.create_engine(server_url()), args.stores)
            print(f"Dropped bench_scale_{args.stores}_*")
        else:
            print(f"Kept bench_scale_{args.stores}_* (the chain is reused by the next run)")
    print(f"end: {load_average()}; total {time.perf_counter() - began:.0f} s")
    return 0 if all(ok for _, ok in checks) else 1


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, pairs = text.partition(":")
    return name, dict(pair.split("=", 1) for pair in pairs.split(",") if pair)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="backfill and floor runs (median)")
    parser.add_argument("--daily-runs", type=int, default=3)
    parser.add_argument("--no-2y", action="store_true", help="skip the 2-year daily run")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="NAME:KEY=VALUE,... another backfill with these settings")
    parser.add_argument("--drop", action="store_true", help="drop the databases at the end")
    parser.add_argument("--stats", type=int, nargs="+", metavar="STORES",
                        help="statistics only (no database writes) for these chain sizes, "
                        "from the KPIs a backfill of --stores wrote")
    parser.add_argument("--batch", type=int, nargs="*", help="with --stats: store batch sizes")
    parser.add_argument("--regions", action="store_true",
                        help="four concurrent region backfills against one whole-chain run")
    parser.add_argument("--whole-seconds", type=float,
                        help="with --regions: compare with this whole-chain backfill time "
                        "(from an earlier invocation) instead of measuring it")
    parser.add_argument("--stats-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start", help=argparse.SUPPRESS)
    parser.add_argument("--end", help=argparse.SUPPRESS)
    parser.add_argument("--env", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stats_child:
        args.stats, args.batch = args.stats_child, args.batch[0]
        return stats_child(args)
    if args.stats:
        return run_stats(args)
    if args.regions:
        return run_regions(args)
    if args.child_run:
        code = child_main(args)
        from store_anomaly_assets.cli import finish

        finish(code)
    return run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
