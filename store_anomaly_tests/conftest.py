"""Shared fixtures: the real MariaDB on 127.0.0.1:3306 and one backfilled synthetic chain.

The five source databases get their own `sat_*` names so the tests never touch a real
deployment's; the analytics tables live in `test`, because the guide's SQL names
`test.` and must run verbatim. The environment is set here,
once, as a deployment's would be.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from local_env import use_local_databases

from store_anomaly_assets.cli import RunOutcome, run_pipeline
from store_anomaly_assets.config import AppConfig, load_config
from store_anomaly_assets.db.analytics.init_db import init_db
from store_anomaly_assets.db.analytics.schema import ANALYTICS_TABLES
from store_anomaly_assets.db.engines import create_engine, dispose_engines
from store_anomaly_assets.demo import loaders, synthetic
from store_anomaly_assets.event_log import sqlite_instance_config

MARIADB = sa.URL.create("mysql+pymysql", username="root", host="127.0.0.1", port=3306)
SOURCE_DATABASES = {
    "OPSHOP_": "sat_opshop",
    "SALESORDER_": "sat_sales_order",
    "OPPRODUCTION_": "sat_opproduction",
    "OPEMPEFFICIENCY_": "sat_opempefficiency",
    "OPQUALITYCONTROL_": "sat_opqualitycontrol",
}
ANALYTICS_DATABASE = "test"
# Dagster's event log is the slow part of a ranged run; keep test instances in memory.
_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
DATA_DIR = Path(tempfile.mkdtemp(prefix="store-anomaly-tests-", dir=_SCRATCH))

use_local_databases({**SOURCE_DATABASES, "DBATEST_": ANALYTICS_DATABASE}, DATA_DIR)
# The session's chain checks the guide's literal rules (DESIGN section 5) and the guide's
# SQL against them; the deployed-shape modules (test_production_cli, test_data_quality)
# run with a clean environment, so with the default profile.
os.environ["ALERT_PROFILE"] = "guide"
os.environ["DAGSTER_HOME"] = str(DATA_DIR / "dagster_home")


# A test that needs any of these talks to MariaDB: it is an integration test.
_DATABASE_FIXTURES = {"server", "source_engines", "analytics_engine", "backfill",
                      "backfilled_analytics", "dagster_instance"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tiers: `browser` and `integration` where declared or implied, `unit` otherwise."""
    for item in items:
        if item.get_closest_marker("browser") or item.get_closest_marker("integration"):
            continue
        uses_database = _DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.integration if uses_database else pytest.mark.unit)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(DATA_DIR, ignore_errors=True)


def database_url(name: str) -> sa.URL:
    return MARIADB.set(database=name)


@pytest.fixture(scope="session")
def server() -> Iterator[sa.Engine]:
    """The MariaDB server; a test run without it fails loudly rather than skipping.

    At the end of the session it drops the `sat*` databases the tests created (the
    analytics tables stay in `test`, the server's own database).
    """
    engine = sa.create_engine(MARIADB)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"MariaDB is not reachable on 127.0.0.1:3306 ({exc.orig}); start it first")
    yield engine
    dispose_engines()
    with engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION lock_wait_timeout = 10")
        created = conn.exec_driver_sql("SHOW DATABASES LIKE 'sat%%'").scalars().all()
        for name in created:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    engine.dispose()


def recreate_database(server: sa.Engine, name: str) -> None:
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")


@pytest.fixture(scope="session")
def source_engines(server: sa.Engine) -> dict[str, sa.Engine]:
    """Writable engines on the five (recreated) source databases."""
    for name in SOURCE_DATABASES.values():
        recreate_database(server, name)
    return {p: create_engine(database_url(db), read_only=False)
            for p, db in SOURCE_DATABASES.items()}


@pytest.fixture(scope="session")
def analytics_engine(server: sa.Engine) -> sa.Engine:
    """The analytics database with freshly created tables."""
    with server.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{ANALYTICS_DATABASE}`")
    engine = create_engine(database_url(ANALYTICS_DATABASE), read_only=False)
    with engine.begin() as conn:
        for table in ANALYTICS_TABLES:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{table.name}`")
    init_db(engine)
    return engine


@pytest.fixture(scope="session")
def chain() -> synthetic.SyntheticChain:
    """The default demo chain at the guide's volume (~520K orders)."""
    return synthetic.generate(synthetic.default_chain(scale=1.0))


@pytest.fixture(scope="session")
def settings() -> AppConfig:
    return load_config(env_file=None)


@pytest.fixture(scope="session")
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    """The instance `store-anomaly` configures for a new home: SQLite, batched event log."""
    temp_dir = Path(tempfile.mkdtemp(dir=_SCRATCH))
    with dg.instance_for_test(temp_dir=str(temp_dir),
                              overrides=sqlite_instance_config(temp_dir)) as instance:
        yield instance


@pytest.fixture(scope="session")
def backfill(
    chain: synthetic.SyntheticChain,
    source_engines: dict[str, sa.Engine],
    analytics_engine: sa.Engine,
    settings: AppConfig,
    dagster_instance: dg.DagsterInstance,
) -> RunOutcome:
    """The whole chain loaded (late records held back) and backfilled in one run."""
    loaders.load_chain(chain, source_engines)
    outcome = run_pipeline(settings, chain.spec.start, chain.spec.end, dagster_instance,
                           log_level="WARNING")
    assert outcome.success, outcome.error
    return outcome


@pytest.fixture(scope="session")
def backfilled_analytics(backfill: RunOutcome, analytics_engine: sa.Engine) -> sa.Engine:
    """The analytics database after the full backfill (for dashboard and report tests)."""
    return analytics_engine
