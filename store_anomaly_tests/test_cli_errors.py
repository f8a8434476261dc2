"""The CLI's error contract, through `python -m store_anomaly_assets.cli` in a subprocess.

Bad input: one stderr line starting `error: ` that names what is at fault, exit status 2,
no traceback, nothing written; an argument the parser refuses is preceded by the
command's usage line. A failed run: exit status 1 and the last stderr line is
the cause. Everything runs in `cli_err_*` databases (dropped at the end) from a
temporary working directory, with a temporary data directory and DAGSTER_HOME.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote_plus

import pytest
import sqlalchemy as sa
from conftest import database_url
from local_env import without_settings

from store_anomaly_assets.db.analytics import schema
from store_anomaly_assets.db.analytics.init_db import init_db
from store_anomaly_assets.db.sources.schema import t_shop_info
from store_anomaly_assets.demo import loaders

pytestmark = pytest.mark.integration


DATABASES = {
    "OPSHOP_": "cli_err_opshop",
    "SALESORDER_": "cli_err_sales_order",
    "OPPRODUCTION_": "cli_err_opproduction",
    "OPEMPEFFICIENCY_": "cli_err_opempefficiency",
    "OPQUALITYCONTROL_": "cli_err_opqualitycontrol",
    "DBATEST_": "cli_err_analytics",
}
BARE = "cli_err_bare"  # no tables at all
BROKEN = "cli_err_broken"  # tables that lack a column: store_anomaly_alerts, t_shop_info
ALL_DATABASES = (*DATABASES.values(), BARE, BROKEN)
USER, PASSWORD = "cli_err_user", "p:/%#?@w"
DAY = "2025-07-05"
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None


@pytest.fixture(scope="module")
def databases(server: sa.Engine) -> Iterator[dict[str, int]]:
    """The six cli_err_ databases (no t_order), BARE, BROKEN and a password account.

    Yields the ids of two open alerts: "open" stays open through the module, "ack" is
    for the one acknowledgment that succeeds.
    """
    with server.begin() as conn:
        for name in ALL_DATABASES:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        conn.execute(sa.text(f"DROP USER IF EXISTS '{USER}'@'%'"))
        conn.execute(sa.text(f"CREATE USER '{USER}'@'%' IDENTIFIED BY :pw"), {"pw": PASSWORD})
        conn.execute(sa.text(f"GRANT ALL PRIVILEGES ON `cli\\_err\\_%`.* TO '{USER}'@'%'"))
    engines = {name: sa.create_engine(database_url(name)) for name in ALL_DATABASES}
    try:
        loaders.create_source_schemas(
            {p: engines[db] for p, db in DATABASES.items() if p != "DBATEST_"})
        with engines[DATABASES["OPSHOP_"]].begin() as conn:
            conn.execute(t_shop_info.insert().values(
                dept_id=1101, shop_name="Test Store", time_zone="America/New_York",
                open_date=date(2025, 1, 1), shop_status=1, is_deleted=0))
        with engines[DATABASES["SALESORDER_"]].begin() as conn:
            conn.exec_driver_sql("DROP TABLE t_order")
        analytics = engines[DATABASES["DBATEST_"]]
        init_db(analytics)
        ids = {}
        with analytics.begin() as conn:
            for key, metric in (("open", "revenue"), ("ack", "order_count")):
                ids[key] = conn.execute(schema.store_anomaly_alerts.insert().values(
                    store_id=1101, alert_date=date(2025, 7, 4), metric_name=metric,
                    store_name="Test Store", severity="WARNING", scope="STORE",
                    description_en=f"{metric} below expectation", acknowledged=False,
                    created_at=datetime(2025, 7, 5, 12))).inserted_primary_key[0]
        broken = engines[BROKEN]
        init_db(broken)
        t_shop_info.create(broken)
        with broken.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE store_anomaly_alerts DROP COLUMN description_en")
            conn.exec_driver_sql("ALTER TABLE t_shop_info DROP COLUMN time_zone")
        yield ids
    finally:
        for engine in engines.values():
            engine.dispose()
        with server.begin() as conn:
            for name in ALL_DATABASES:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
            conn.execute(sa.text(f"DROP USER IF EXISTS '{USER}'@'%'"))


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cli-err-", dir=SCRATCH) as folder:
        yield Path(folder)


def environment(workdir: Path, databases: dict[str, str] | None = None,
                **settings: str) -> dict[str, str]:
    """The process environment without anyone's database or behaviour settings, plus ours.

    `databases` maps prefixes to database names on the local server (None: embedded).
    """
    env = without_settings(dict(os.environ))
    env.update(STORE_ANOMALY_DATA_DIR=str(workdir / "data"),
               DAGSTER_HOME=str(workdir / "dagster_home"),
               PARTITION_START_DATE="2025-07-01")
    for prefix, name in (databases or {}).items():
        env.update({f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": "3306",
                    f"{prefix}USER": "root", f"{prefix}DB": name})
    env.update(settings)
    return env


def cli(workdir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "store_anomaly_assets.cli", *args],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


def one_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The single `error: ` line of a refused command (exit status 2)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def usage_error(result: subprocess.CompletedProcess, command: str, *needles: str) -> str:
    """An argument the parser refused (exit status 2): the command's usage, then one
    `error: ` line naming what is at fault."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(f"Usage: store-anomaly {command} "), result.stderr
    assert lines[1].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[1], (needle, lines[1])
    return lines[1]


def acknowledged(alert_id: int) -> bool:
    engine = sa.create_engine(database_url(DATABASES["DBATEST_"]))
    try:
        with engine.connect() as conn:
            return bool(conn.execute(
                sa.select(schema.store_anomaly_alerts.c.acknowledged)
                .where(schema.store_anomaly_alerts.c.id == alert_id)).scalar_one())
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------- ack, alerts


def test_a_note_too_long_is_refused_without_echoing_it(databases, workdir) -> None:
    note = "n" * 70_000
    result = cli(workdir, environment(workdir, DATABASES),
                 "ack", str(databases["open"]), "--by", "Dana", "--note", note)
    line = one_error(result, "--note", "65,535")
    assert "nnnnnnnnnn" not in line and len(line) < 300
    assert not acknowledged(databases["open"])


def test_a_name_too_long_is_refused(databases, workdir) -> None:
    result = cli(workdir, environment(workdir, DATABASES),
                 "ack", str(databases["open"]), "--by", "b" * 200)
    line = one_error(result, "--by", "128")
    assert "bbbbbbbbbb" not in line
    assert not acknowledged(databases["open"])


@pytest.mark.parametrize("days", ["1000000", "-1"])
def test_older_than_out_of_range_is_refused(databases, workdir, days: str) -> None:
    result = cli(workdir, environment(workdir, DATABASES),
                 "ack", "--severity", "WARNING", "--older-than", days, "--by", "x")
    one_error(result, "--older-than", "36500")
    assert not acknowledged(databases["open"])


@pytest.mark.parametrize("limit", ["-1", "0", "many"])
def test_alerts_limit_must_be_positive(workdir, limit: str) -> None:
    usage_error(cli(workdir, environment(workdir), "alerts", "--limit", limit), "alerts",
                "--limit")


# ------------------------------------------------------------------ missing schema, report


@pytest.mark.parametrize(
    ("args", "table"),
    [(["alerts"], "store_anomaly_incidents"), (["alerts", "--each-alert"], "store_anomaly_alerts"),
     (["ack", "1", "--by", "Dana"], "store_anomaly_alerts"),
     (["report", "--date", DAY], "store_anomaly_alerts")],
    ids=["alerts", "each-alert", "ack", "report"],
)
def test_missing_analytics_tables_say_run_init_db(databases, workdir, args, table) -> None:
    env = environment(workdir, {**DATABASES, "DBATEST_": BARE})
    one_error(cli(workdir, env, *args), table, BARE, "init-db", "demo")


def test_missing_embedded_analytics_database_creates_no_file(workdir) -> None:
    one_error(cli(workdir, environment(workdir), "alerts"), "init-db")
    assert not list(workdir.rglob("*.sqlite"))


def test_empty_report_path_is_refused(workdir) -> None:
    usage_error(cli(workdir, environment(workdir), "report", "--date", DAY, "--out", ""),
                "report", "--out")


def test_report_path_that_is_a_directory_is_refused(databases, workdir) -> None:
    engine = sa.create_engine(database_url(DATABASES["DBATEST_"]))
    with engine.begin() as conn:
        conn.execute(schema.store_health_scores.insert().values(
            store_id=1101, metric_date=date(2025, 7, 5), store_name="Test Store",
            health_score=90.0, health_status="HEALTHY"))
    engine.dispose()
    (workdir / "reports").mkdir()
    result = cli(workdir, environment(workdir, DATABASES),
                 "report", "--date", DAY, "--out", "reports")
    one_error(result, "--out", "reports")
    assert list((workdir / "reports").iterdir()) == [] and not list(workdir.glob(".*.tmp"))


# ------------------------------------------------------------------- sources, run, homes


def test_missing_shop_info_names_the_table_and_database(databases, workdir) -> None:
    env = environment(workdir, {**DATABASES, "OPSHOP_": BARE})
    line = one_error(cli(workdir, env, "run", "--date", DAY), "t_shop_info", BARE)
    assert "unreachable" not in line and "cannot connect" not in line


def test_a_source_table_lacking_a_column_is_not_unreachable(databases, workdir) -> None:
    env = environment(workdir, {**DATABASES, "OPSHOP_": BROKEN})
    line = one_error(cli(workdir, env, "run", "--date", DAY), "t_shop_info", BROKEN, "time_zone")
    assert "unreachable" not in line and "cannot connect" not in line


def test_an_analytics_table_lacking_a_column_is_not_unreachable(databases, workdir) -> None:
    env = environment(workdir, {**DATABASES, "DBATEST_": BROKEN})
    line = one_error(cli(workdir, env, "alerts", "--each-alert"), "store_anomaly_alerts", BROKEN,
                     "description_en")
    assert "unreachable" not in line and "cannot connect" not in line


@pytest.mark.parametrize(
    ("settings", "needle"),
    [({"DBATEST_PORT": "1"}, "127.0.0.1:1/"),
     ({"DBATEST_DB": "cli_err_no_such_database"}, "cli_err_no_such_database"),
     ({"DBATEST_USER": USER, "DBATEST_PASS": "wrong-" + PASSWORD}, "Access denied")],
    ids=["refused", "unknown-database", "bad-password"],
)
def test_connection_failures_say_which_database(databases, workdir, settings, needle) -> None:
    env = environment(workdir, DATABASES, **settings)
    line = one_error(cli(workdir, env, "alerts"), "cannot connect to", needle)
    assert PASSWORD not in line and quote_plus(PASSWORD) not in line


@pytest.mark.parametrize("home", ["/proc/forbidden", "{workdir}/a_file/dagster_home"])
def test_unwritable_dagster_home_is_named(databases, workdir, home: str) -> None:
    (workdir / "a_file").write_text("not a folder")
    env = environment(workdir, DATABASES, DAGSTER_HOME=home.format(workdir=workdir))
    one_error(cli(workdir, env, "run", "--date", DAY), "DAGSTER_HOME")


def test_a_failed_run_ends_with_its_cause(databases, workdir) -> None:
    """t_order is missing: the sales extract fails; the last line says so, not Dagster."""
    result = cli(workdir, environment(workdir, DATABASES), "run", "--date", DAY)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "t_order" in last, last
    assert "Error occurred while executing" not in last


def test_a_run_that_cannot_take_the_lock_ends_with_the_reason(databases, workdir) -> None:
    """No step fails: the run lock's resource does. The last line is its message."""
    engine = sa.create_engine(database_url(DATABASES["DBATEST_"]))
    lock = f"store_anomaly_pipeline:{DATABASES['DBATEST_']}"
    with engine.connect() as holder:
        assert holder.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": lock}).scalar() == 1
        env = environment(workdir, DATABASES, RUN_LOCK_TIMEOUT_SECONDS="0")
        result = cli(workdir, env, "run", "--date", DAY)
    engine.dispose()
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "lock" in last, last
    assert "Error occurred while" not in last and "see the Dagster UI" not in last


# ------------------------------------------------------------------- passwords, exiting


def test_an_account_with_a_password_works_and_is_never_shown(databases, workdir) -> None:
    env = environment(workdir, DATABASES)
    for prefix in DATABASES:
        env.update({f"{prefix}USER": USER, f"{prefix}PASS": PASSWORD})
    doctor = cli(workdir, env, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert doctor.stdout.count("OK ") == 6
    alerts = cli(workdir, env, "alerts", "--each-alert")
    assert alerts.returncode == 0, alerts.stderr
    assert f"#{databases['open']}" in alerts.stdout
    ack = cli(workdir, env, "ack", str(databases["ack"]), "--by", "Dana", "--note", "checked")
    assert ack.returncode == 0, ack.stderr
    assert acknowledged(databases["ack"])
    for result in (doctor, alerts, ack):
        output = result.stdout + result.stderr
        assert "Traceback" not in output
        assert PASSWORD not in output and quote_plus(PASSWORD) not in output


def test_a_password_kept_only_in_dot_env_reaches_every_connection(databases, workdir) -> None:
    """The README's set-up: the six databases in `.env` in the working directory."""
    env = environment(workdir)
    lines = [f"{prefix}{key}={value}" for prefix, name in DATABASES.items()
             for key, value in (("HOST", "127.0.0.1"), ("PORT", "3306"), ("USER", USER),
                                ("PASS", PASSWORD), ("DB", name))]
    (workdir / ".env").write_text("\n".join(lines) + "\n")
    doctor = cli(workdir, env, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert doctor.stdout.count("OK ") == 6 and PASSWORD not in doctor.stdout
    # A Dagster run resolves the passwords as EnvVars: it gets as far as the sources, and
    # fails only on this module's missing t_order.
    run = cli(workdir, env, "run", "--date", DAY)
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 1 and "t_order" in last, run.stderr[-2000:]
    assert "EnvVar" not in run.stderr and "Access denied" not in run.stderr
    assert PASSWORD not in run.stdout + run.stderr


def test_the_cli_exits_normally_without_os_exit(workdir) -> None:
    """The console script ends through sys.exit, so atexit handlers and buffers run."""
    code = ("import atexit, sys; atexit.register(lambda: print('atexit ran', flush=True)); "
            "sys.argv = ['store-anomaly', 'alerts', '--limit', '0']; "
            "from store_anomaly_assets.cli import entrypoint; entrypoint()")
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir,
                            env=environment(workdir), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert "atexit ran" in result.stdout
    usage_error(result, "alerts", "--limit")
