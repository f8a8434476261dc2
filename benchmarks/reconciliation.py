"""Benchmark: the reconciliation check's per-store range totals at 100 stores.

Usage:  python benchmarks/reconciliation.py [--runs 3] [--before FILE]

Needs the `bench_scale_100_*` databases that benchmarks/scale.py generates and keeps.
Times `defs.checks._orders_per_store` over the chain's last year; with `--before`, a
previous version of defs/checks.py (`git show REV:store_anomaly_assets/defs/checks.py >
FILE`) is timed in the same invocation, and both totals are printed to show they agree.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from datetime import date
from decimal import Decimal
from types import ModuleType

import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.db.engines import create_engine
from store_anomaly_assets.db.sources.extraction import load_store_master
from store_anomaly_assets.defs import checks

SERVER = sa.URL.create("mysql+pymysql", username="root", host="127.0.0.1", port=3306)
START, END = date(2025, 2, 16), date(2026, 2, 15)


def load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("checks_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", help="a previous defs/checks.py to time as well")
    args = parser.parse_args()
    shop, sales = (create_engine(SERVER.set(database=f"bench_scale_100_{name}"),
                                 read_only=True, tmp_table_mb=256)
                   for name in ("opshop", "sales_order"))
    stores = load_store_master(shop).filter(pl.col("is_active"))
    versions = [("now", checks)] + ([("before", load(args.before))] if args.before else [])
    for name, module in versions:
        times = []
        for _ in range(args.runs):
            clock = time.perf_counter()
            totals = module._orders_per_store(sales, stores, START, END, Decimal(1000))
            times.append(time.perf_counter() - clock)
        print(f"{name}: median {statistics.median(times):.1f} s of {args.runs} run(s); "
              f"{totals.height} stores, {int(totals['order_count'].sum()):,} orders, "
              f"${totals['revenue'].sum():,.2f}")


if __name__ == "__main__":
    main()
