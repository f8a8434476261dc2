"""`store-anomaly demo` with no database configured: the embedded SQLite chain."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from local_env import without_settings
from oracle import expected_kpis

from store_anomaly_assets.config import DATABASES
from store_anomaly_assets.db.frames import read_frame
from store_anomaly_assets.demo import synthetic

pytestmark = pytest.mark.integration

SCALE = 0.1


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    data_dir = tmp_path_factory.mktemp("demo")
    env = without_settings(dict(os.environ))
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None
    env.update(STORE_ANOMALY_DATA_DIR=str(data_dir),
               DAGSTER_HOME=tempfile.mkdtemp(prefix="demo-home-", dir=scratch))
    result = subprocess.run(
        [sys.executable, "-m", "store_anomaly_assets.cli", "demo", "--scale", str(SCALE)],
        env=env, cwd=data_dir, capture_output=True, text=True, timeout=600,
    )
    return result, data_dir


def test_demo_runs_end_to_end_and_explains_itself(demo) -> None:
    result, data_dir = demo
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "Health grid on 2026-02-15" in out and "Top open alerts" in out
    assert "dagster dev -m store_anomaly_assets.defs.definitions -h 127.0.0.1" in out
    assert "daily schedule is off in the demo" in out
    truth = pl.read_csv(data_dir / "ground_truth.csv")
    assert truth.height >= 8 and {"store_id", "metric_date", "metric_name"} <= set(truth.columns)
    assert sorted(p.name for p in data_dir.glob("*.sqlite")) == sorted(
        f"{name}.sqlite" for _, name in DATABASES.values()
    )


def test_sqlite_kpis_equal_the_source(demo) -> None:
    _, data_dir = demo
    engine = sa.create_engine(f"sqlite:///{data_dir / 'test.sqlite'}")
    kpis = read_frame(engine, sa.text("SELECT store_id, metric_date, revenue, order_count, "
                                      "production_count FROM store_kpi_daily"))
    chain = synthetic.generate(synthetic.default_chain(scale=SCALE))
    operating = chain.shop_info.filter(pl.col("shop_status") == 1)["dept_id"].implode()
    want = expected_kpis(chain, include_late=True).filter(
        pl.col("store_id").is_in(operating))
    got = kpis.with_columns(pl.col("metric_date").str.to_date() if kpis["metric_date"].dtype
                            == pl.String else pl.col("metric_date"))
    joined = want.join(got, on=["store_id", "metric_date"], how="full", suffix="_db")
    assert joined.height == want.height == got.height
    assert (joined["revenue"] - joined["revenue_db"]).abs().max() < 0.001
    assert (joined["order_count"] == joined["order_count_db"]).all()
    assert (joined["production_count"] == joined["production_count_db"]).all()
