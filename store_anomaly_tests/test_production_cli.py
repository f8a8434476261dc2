"""The real `store-anomaly` CLI, run the way a production user runs it (issue 10).

Six separately named databases (`prod_e2e_*`, analytics deliberately not `test`),
least-privilege accounts whose passwords contain `:/%#?@`, the Grafana read-only account
from sql/03, and the CLI as a subprocess from a directory that is not the repository,
with an environment that holds only what the README's configuration section asks for.
Everything the module creates (databases, accounts, files, processes) goes in teardown.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus
from zoneinfo import ZoneInfo

import polars as pl
import pymysql
import pytest
import sqlalchemy as sa
from deployed import (
    CAPTURED,
    HOST,
    PORT,
    Background,
    Cli,
    clean_environment,
    describe,
    execute_admin,
    expect_ok,
    last_line,
    one_line_error,
    root_connection,
)
from oracle import expected_kpis

from store_anomaly_assets.db.analytics.schema import ANALYTICS_TABLES
from store_anomaly_assets.demo import loaders, synthetic

pytestmark = pytest.mark.integration


PROJECT = Path(__file__).resolve().parents[1]
SOURCE_DATABASES = {
    "OPSHOP_": "prod_e2e_opshop",
    "SALESORDER_": "prod_e2e_sales_order",
    "OPPRODUCTION_": "prod_e2e_opproduction",
    "OPEMPEFFICIENCY_": "prod_e2e_opempefficiency",
    "OPQUALITYCONTROL_": "prod_e2e_opqualitycontrol",
}
ANALYTICS_DATABASE = "prod_e2e_analytics"
ALL_DATABASES = (*SOURCE_DATABASES.values(), ANALYTICS_DATABASE)

SOURCE_USER, ANALYTICS_USER, GRAFANA_USER = "pe2e_source", "pe2e_analytics", "pe2e_grafana_ro"
PASSWORDS = {
    SOURCE_USER: "S:r/c%#?@1x",
    ANALYTICS_USER: "A:n/l%#?@2y",
    GRAFANA_USER: "G:r/o%#?@3z",
}
# '%' is what the guide's SQL creates; 'localhost' as well, so that an anonymous
# ''@'localhost' account (on servers that resolve 127.0.0.1 to localhost) cannot shadow it.
USER_HOSTS = ("%", "localhost")
GRAFANA_SQL = PROJECT / "sql" / "03_create_grafana_readonly_user.sql"

CHAIN_START, CHAIN_END = date(2025, 7, 1), date(2026, 2, 15)
CLOSURE_DAY = date(2025, 12, 25)
SCALE = 0.2
DAY_TABLES = ("store_kpi_daily", "store_anomaly_scores", "store_health_scores")

_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None


# ------------------------------------------------------------------------------ helpers


def drop_everything() -> None:
    execute_admin(
        [f"DROP DATABASE IF EXISTS `{db}`" for db in ALL_DATABASES]
        + [f"DROP USER IF EXISTS '{user}'@'{host}'" for user in PASSWORDS for host in USER_HOSTS]
    )


def grafana_statements(sql: str, password: str) -> list[str]:
    """sql/03 for this module: its password, database and user name; one per host."""
    sql = re.sub(r"--[^\n]*", "", sql)
    sql = sql.replace("REPLACE_WITH_GENERATED_PASSWORD", password)
    sql = re.sub(r"\btest\.", f"{ANALYTICS_DATABASE}.", sql)
    sql = re.sub(r"\bgrafana_ro\b", GRAFANA_USER, sql)
    statements = [s.strip() for s in sql.split(";") if s.strip()]
    return [s.replace("'@'%'", f"'@'{host}'") for host in USER_HOSTS for s in statements]


@dataclass
class ProductionSetup:
    root: Path
    data_dir: Path
    dagster_home: Path
    cli: Cli
    analytics: sa.Engine  # root, for checking what the CLI did

    def rows(self, sql: str, **params: object) -> list[sa.Row]:
        with self.analytics.connect() as conn:
            return list(conn.execute(sa.text(sql), params))

    def scalar(self, sql: str, **params: object) -> object:
        with self.analytics.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def max_log_id(self) -> int:
        return int(self.scalar("SELECT COALESCE(MAX(id), 0) FROM store_anomaly_pipeline_log"))

    def wait_for_new_run(self, after_id: int, job: Background, timeout: float) -> str:
        """The run id of the first pipeline-log row written after `after_id`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.rows("SELECT run_id FROM store_anomaly_pipeline_log WHERE id > :i "
                              "ORDER BY id LIMIT 1", i=after_id)
            if found:
                return found[0].run_id
            if job.proc.poll() is not None:
                job.record()
                pytest.fail(f"`{describe(job.args)}` exited {job.proc.returncode} before "
                            f"logging a step: {last_line(job.stderr)}")
            time.sleep(0.1)
        pytest.fail(f"`{describe(job.args)}` logged no step within {timeout} s")

    def day_counts(self, first: date, last: date) -> dict[str, int]:
        return {
            table: int(self.scalar(f"SELECT COUNT(*) FROM {table} "
                                   "WHERE metric_date BETWEEN :a AND :b", a=first, b=last))
            for table in DAY_TABLES
        }


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def chain() -> synthetic.SyntheticChain:
    return synthetic.generate(synthetic.default_chain(scale=SCALE))


@pytest.fixture(scope="module")
def prod(chain: synthetic.SyntheticChain) -> Iterator[ProductionSetup]:
    """Six databases, two least-privilege accounts, the chain loaded, a clean CLI env."""
    try:
        root_connection().close()
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB is not reachable on {HOST}:{PORT} ({exc}); start it first")
    drop_everything()  # leftovers of an interrupted session
    root = Path(tempfile.mkdtemp(prefix="store-anomaly-prod-e2e-", dir=_SCRATCH))
    engines: list[sa.Engine] = []
    cli: Cli | None = None
    try:
        statements = [f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4" for db in ALL_DATABASES]
        for host in USER_HOSTS:
            for user in (SOURCE_USER, ANALYTICS_USER):
                statements.append(
                    f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{PASSWORDS[user]}'")
            statements += [f"GRANT SELECT ON `{db}`.* TO '{SOURCE_USER}'@'{host}'"
                           for db in SOURCE_DATABASES.values()]
            statements.append(f"GRANT ALL PRIVILEGES ON `{ANALYTICS_DATABASE}`.* "
                              f"TO '{ANALYTICS_USER}'@'{host}'")
        execute_admin(statements)

        def root_engine(database: str) -> sa.Engine:
            engine = sa.create_engine(sa.URL.create(
                "mysql+pymysql", username="root", host=HOST, port=PORT, database=database,
                query={"charset": "utf8mb4"}))
            engines.append(engine)
            return engine

        loaders.load_chain(chain, {p: root_engine(db) for p, db in SOURCE_DATABASES.items()},
                             include_late=True)
        analytics = root_engine(ANALYTICS_DATABASE)

        data_dir, dagster_home = root / "data", root / "dagster_home"
        cwd = root / "cwd"
        cwd.mkdir()
        env = clean_environment()
        for prefix, database in {**SOURCE_DATABASES, "DBATEST_": ANALYTICS_DATABASE}.items():
            user = ANALYTICS_USER if prefix == "DBATEST_" else SOURCE_USER
            env.update({f"{prefix}HOST": HOST, f"{prefix}PORT": str(PORT),
                        f"{prefix}USER": user, f"{prefix}PASS": PASSWORDS[user],
                        f"{prefix}DB": database})
        env.update(STORE_ANOMALY_DATA_DIR=str(data_dir), DAGSTER_HOME=str(dagster_home),
                   DB_CONNECT_TIMEOUT_SECONDS="5")
        cli = Cli(cwd, env, root / "background")
        yield ProductionSetup(root, data_dir, dagster_home, cli, analytics)
    finally:
        if cli is not None:
            cli.kill_background()
        for engine in engines:
            engine.dispose()
        drop_everything()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def initialized(prod: ProductionSetup) -> subprocess.CompletedProcess[str]:
    """`init-db` as the analytics account, then sql/03's Grafana account (needs the tables)."""
    result = prod.cli("init-db")
    if result.returncode != 0:
        pytest.fail(f"init-db exited {result.returncode}: {last_line(result.stderr)}")
    statements = grafana_statements(GRAFANA_SQL.read_text(), PASSWORDS[GRAFANA_USER])
    assert any(s.upper().startswith("CREATE USER") for s in statements), statements
    execute_admin(statements)
    return result


@pytest.fixture(scope="module")
def backfilled(prod: ProductionSetup,
               initialized: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """One ranged run over the whole chain, shared by every test that needs results."""
    result = prod.cli("run", "--backfill-from", str(CHAIN_START), "--backfill-to",
                      str(CHAIN_END), timeout=300)
    if result.returncode != 0:
        pytest.fail(f"the backfill exited {result.returncode}: {last_line(result.stderr)}")
    return result


# ------------------------------------------------------------------------------ tests


def test_doctor_reaches_all_six_databases(prod: ProductionSetup) -> None:
    result = prod.cli("doctor")
    output = result.stdout + result.stderr
    expect_ok(result)
    assert re.search(r"all (six|6) databases (are )?reachable", output, re.IGNORECASE), output
    for password in PASSWORDS.values():
        for form in {password, quote(password, safe=""), quote_plus(password)}:
            assert form not in output


def test_init_db_creates_the_analytics_tables(
    prod: ProductionSetup, initialized: subprocess.CompletedProcess[str]
) -> None:
    expect_ok(initialized)
    found = {r.table_name for r in prod.rows(
        "SELECT table_name AS table_name FROM information_schema.tables "
        "WHERE table_schema = :db", db=ANALYTICS_DATABASE)}
    assert {t.name for t in ANALYTICS_TABLES} <= found


def test_backfill_writes_the_chain(
    prod: ProductionSetup, backfilled: subprocess.CompletedProcess[str],
    chain: synthetic.SyntheticChain,
) -> None:
    expect_ok(backfilled)
    got = pl.DataFrame(
        [(r.store_id, r.metric_date, float(r.revenue), r.order_count) for r in prod.rows(
            "SELECT store_id, metric_date, revenue, order_count FROM store_kpi_daily")],
        schema={"store_id": pl.Int64, "metric_date": pl.Date, "revenue_db": pl.Float64,
                "order_count_db": pl.Int64}, orient="row",
    )
    operating = chain.shop_info.filter(pl.col("shop_status") == 1)["dept_id"].implode()
    want = expected_kpis(chain, include_late=True).filter(
        pl.col("store_id").is_in(operating))
    joined = want.join(got, on=["store_id", "metric_date"], how="full", coalesce=True)
    assert joined.height == want.height == got.height
    assert (joined["revenue"] - joined["revenue_db"]).abs().max() < 0.001
    assert (joined["order_count"] == joined["order_count_db"]).all()
    assert int(prod.scalar("SELECT COUNT(*) FROM store_anomaly_alerts")) > 0


def test_closure_day_runs_and_the_tables_agree(
    prod: ProductionSetup, backfilled: subprocess.CompletedProcess[str]
) -> None:
    result = prod.cli("run", "--date", str(CLOSURE_DAY))
    expect_ok(result)
    lines = [line for line in result.stdout.lower().splitlines() if "no source data" in line]
    assert any(str(CLOSURE_DAY) in line for line in lines), result.stdout
    assert prod.day_counts(CLOSURE_DAY, CLOSURE_DAY) == dict.fromkeys(DAY_TABLES, 0)
    open_alerts = prod.scalar("SELECT COUNT(*) FROM store_anomaly_alerts "
                              "WHERE alert_date = :d AND NOT acknowledged", d=CLOSURE_DAY)
    assert open_alerts == 0


def _last_complete_day() -> date:
    return datetime.now(UTC).astimezone(ZoneInfo("America/New_York")).date() - timedelta(days=1)


@pytest.mark.parametrize("args", [(), ("--date", "2026-11-20")],
                         ids=["no-arguments", "a-day-past-the-data"])
def test_a_run_past_the_data_says_no_source_data(
    prod: ProductionSetup, backfilled: subprocess.CompletedProcess[str], args: tuple[str, ...]
) -> None:
    if args:
        first = last = date.fromisoformat(args[1])
    else:
        last = _last_complete_day()
        first = last - timedelta(days=3)
    assert first > CHAIN_END  # the point of the test: days the sources have nothing for
    result = prod.cli("run", *args)
    expect_ok(result)
    assert "no source data" in result.stdout.lower(), result.stdout
    assert prod.day_counts(first, last) == dict.fromkeys(DAY_TABLES, 0)


def test_alerts_and_acknowledgment(
    prod: ProductionSetup, backfilled: subprocess.CompletedProcess[str]
) -> None:
    # The open incidents; acknowledging one acknowledges all its alerts, once.
    listed = prod.cli("alerts")
    expect_ok(listed)
    ids = [int(i) for i in re.findall(r"^#(\d+)", listed.stdout, re.MULTILINE)]
    assert ids, listed.stdout
    incident_id = ids[0]
    ack = prod.cli("ack", "--incident", str(incident_id), "--by", "Dana Wu", "--note",
                   "POS outage")
    expect_ok(ack)
    rows = prod.rows("SELECT acknowledged, acknowledged_by, ack_note FROM store_anomaly_alerts "
                     "WHERE incident_id = :i", i=incident_id)
    assert rows and {(bool(r.acknowledged), r.acknowledged_by, r.ack_note) for r in rows} == {
        (True, "Dana Wu", "POS outage")}
    again = prod.cli("ack", "--incident", str(incident_id), "--by", "Dana Wu")
    assert again.returncode == 2, again.stderr
    assert "already acknowledged by Dana Wu" in one_line_error(again.stderr)

    # One alert on its own, as the guide's protocol has it.
    listed = prod.cli("alerts", "--each-alert")
    expect_ok(listed)
    alert_id = int(re.findall(r"^#(\d+)", listed.stdout, re.MULTILINE)[0])
    ack = prod.cli("ack", str(alert_id), "--by", "Dana Wu", "--note", "POS outage")
    expect_ok(ack)
    row = prod.rows("SELECT acknowledged, acknowledged_by, ack_note FROM store_anomaly_alerts "
                    "WHERE id = :i", i=alert_id)[0]
    assert (bool(row.acknowledged), row.acknowledged_by, row.ack_note) == (
        True, "Dana Wu", "POS outage")

    again = prod.cli("ack", str(alert_id), "--by", "Dana Wu", "--note", "POS outage")
    assert again.returncode == 2, again.stderr
    one_line_error(again.stderr)


def test_report_writes_html(
    prod: ProductionSetup, backfilled: subprocess.CompletedProcess[str]
) -> None:
    out = prod.root / "reports" / "r.html"
    result = prod.cli("report", "--date", "2025-10-08", "--out", str(out))
    expect_ok(result)
    html = out.read_text(encoding="utf-8")
    assert "<html" in html.lower()
    assert "Midtown Manhattan" in html


def test_a_hung_source_fails_its_step_and_releases_the_lock(
    prod: ProductionSetup, backfilled: subprocess.CompletedProcess[str]
) -> None:
    before = prod.max_log_id()
    locker = root_connection(SOURCE_DATABASES["SALESORDER_"])
    try:
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLES t_order WRITE")
        started = time.monotonic()
        result = prod.cli("run", "--date", "2026-01-10",
                          env_overrides={"DB_READ_TIMEOUT_SECONDS": "3"}, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        with locker.cursor() as cursor:
            cursor.execute("UNLOCK TABLES")
        locker.close()
    assert result.returncode == 1, result.stderr
    assert elapsed < 60
    cause = last_line(result.stderr)
    assert "prod_e2e_sales_order" in cause or "SALESORDER" in cause, cause
    assert re.search(r"time[ds]? ?out|did not answer|not answer", cause, re.IGNORECASE), cause
    failed = prod.rows("SELECT run_id, step_number FROM store_anomaly_pipeline_log "
                       "WHERE id > :i AND status = 'FAILED' ORDER BY id DESC", i=before)
    assert failed, "the timed-out run left no FAILED row in store_anomaly_pipeline_log"
    newest_run = failed[0].run_id
    assert 2 in {r.step_number for r in failed if r.run_id == newest_run}, failed

    again = prod.cli("run", "--date", "2026-01-10", timeout=60)
    expect_ok(again)


def test_a_select_only_account_cannot_block_runs(
    prod: ProductionSetup, backfilled: subprocess.CompletedProcess[str]
) -> None:
    reader = pymysql.connect(host=HOST, port=PORT, user=GRAFANA_USER,
                             password=PASSWORDS[GRAFANA_USER], database=ANALYTICS_DATABASE,
                             autocommit=True)
    try:
        with reader.cursor() as cursor:
            for name in (f"store_anomaly_pipeline:{ANALYTICS_DATABASE}",
                         "store_anomaly_pipeline"):
                cursor.execute("SELECT GET_LOCK(%s, 0)", (name,))
                assert cursor.fetchone()[0] == 1  # the reader really holds them
        result = prod.cli("run", "--date", "2026-01-11", timeout=60)
    finally:
        reader.close()
    expect_ok(result)


def test_a_waiting_run_names_the_run_holding_the_lock(
    prod: ProductionSetup, backfilled: subprocess.CompletedProcess[str]
) -> None:
    # The holder is a real run kept mid-way: root holds row locks on the KPI rows it
    # replaces (step 6), so it stops there holding the run lock, after logging step 1.
    # Row locks block writers only (up to innodb_lock_wait_timeout, 50 s by default):
    # whatever the waiting run reads before asking for the lock is not held up.
    day = "2026-01-12"
    before = prod.max_log_id()
    locker = root_connection(ANALYTICS_DATABASE)
    holder: Background | None = None
    try:
        locker.autocommit(False)
        with locker.cursor() as cursor:
            cursor.execute("SELECT store_id FROM store_kpi_daily WHERE metric_date = %s "
                           "FOR UPDATE", (day,))
            assert cursor.fetchall(), f"no KPI rows for {day} to hold"
        holder = prod.cli.start("lock-holder", "run", "--date", day)
        holder_run = prod.wait_for_new_run(before, holder, timeout=30)
        time.sleep(1)
        assert holder.proc.poll() is None, "the holder run did not wait for the KPI rows"
        waiting = prod.cli("run", "--date", day,
                           env_overrides={"RUN_LOCK_TIMEOUT_SECONDS": "2"}, timeout=40)
    finally:
        locker.rollback()
        locker.close()
        holder_rc = holder.finish(timeout=90) if holder is not None else None
    assert waiting.returncode == 1, waiting.stderr
    cause = last_line(waiting.stderr)
    assert cause.startswith("error:"), cause
    assert holder_run[:8] in cause, f"{holder_run} not named in: {cause}"
    assert "since" in cause.lower(), cause
    assert holder_rc == 0, last_line(holder.stderr) if holder else None


def test_a_killed_run_is_marked_failed_by_the_next_run(
    prod: ProductionSetup, backfilled: subprocess.CompletedProcess[str]
) -> None:
    before = prod.max_log_id()
    job = prod.cli.start("killed-backfill", "run", "--backfill-from", str(CHAIN_START),
                         "--backfill-to", str(CHAIN_END))
    killed_run = prod.wait_for_new_run(before, job, timeout=120)
    if job.proc.poll() is not None:
        pytest.fail("the backfill ended before it could be killed")
    job.kill()
    assert job.proc.returncode == -signal.SIGKILL

    result = prod.cli("run", "--date", "2026-01-13")
    expect_ok(result)
    marked = prod.rows("SELECT status, error_message FROM store_anomaly_pipeline_log "
                       "WHERE run_id = :r AND status = 'FAILED'", r=killed_run)
    assert marked, f"no FAILED row for the killed run {killed_run}"
    assert any((r.error_message or "").strip() for r in marked), marked


@pytest.mark.parametrize(("name", "value"), [
    ("SIGMA_WARNING", "nan"),
    ("SIGMA_CRITICAL", "inf"),
    ("DB_READ_TIMEOUT_SECONDS", "-1"),
])
def test_a_bad_setting_is_refused_in_one_line(
    prod: ProductionSetup, name: str, value: str
) -> None:
    result = prod.cli("run", "--date", "2026-01-10", env_overrides={name: value})
    assert result.returncode == 2, result.stderr
    assert name in one_line_error(result.stderr)


def test_a_short_rolling_window_without_masking_is_not_refused_for_rebaselining(
    prod: ProductionSetup, backfilled: subprocess.CompletedProcess[str]
) -> None:
    result = prod.cli("run", "--date", "2026-01-10",
                      env_overrides={"ROLLING_WINDOW": "14", "BASELINE_MASKING": "off"})
    if result.returncode != 0:
        line = one_line_error(result.stderr)
        assert result.returncode == 2, line
        assert "REBASELINE_DAYS" not in line


def test_without_configuration_alerts_says_to_initialise_and_creates_nothing() -> None:
    root = Path(tempfile.mkdtemp(prefix="store-anomaly-noconf-", dir=_SCRATCH))
    try:
        data_dir, cwd = root / "data", root / "cwd"
        data_dir.mkdir()
        cwd.mkdir()
        cli = Cli(cwd, {**clean_environment(), "STORE_ANOMALY_DATA_DIR": str(data_dir)},
                  root / "background")
        result = cli("alerts", timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        line = one_line_error(result.stderr)
        assert "init-db" in line or "demo" in line, line
        assert [p for p in data_dir.rglob("*") if p.is_file()] == []
        assert [p for p in cwd.rglob("*") if p.is_file()] == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_passwords_never_leak(
    prod: ProductionSetup, backfilled: subprocess.CompletedProcess[str]
) -> None:
    """Grep for every password (raw and URL-quoted) in everything the CLI left behind.

    Runs its own short tour so it checks something whatever ran before it; placed last, it
    also covers every earlier test's output, files and log rows.
    """
    for args in (("doctor",), ("init-db",), ("run", "--date", str(CLOSURE_DAY)),
                 ("alerts", "--limit", "5"), ("ack", "999999999", "--by", "Dana Wu")):
        prod.cli(*args)
    forms = {form for pw in PASSWORDS.values()
             for form in (pw, quote(pw, safe=""), quote_plus(pw))}
    leaks: list[str] = []
    for captured in CAPTURED:
        for stream in ("stdout", "stderr"):
            text = getattr(captured, stream)
            leaks += [f"{stream} of `{describe(captured.args)}`"
                      for form in forms if form in text]
    files = [p for p in prod.root.rglob("*") if p.is_file()]
    assert any(p.is_relative_to(prod.dagster_home) for p in files)  # Dagster's storage
    for path in files:
        content = path.read_bytes()
        leaks += [str(path) for form in forms if form.encode() in content]
    columns = prod.rows(
        "SELECT table_name AS t, column_name AS c FROM information_schema.columns "
        "WHERE table_schema = :db AND data_type IN "
        "('char', 'varchar', 'text', 'tinytext', 'mediumtext', 'longtext')",
        db=ANALYTICS_DATABASE)
    for table in {t.name for t in ANALYTICS_TABLES}:
        names = [r[1] for r in columns if r[0] == table]
        if not names:
            continue
        for row in prod.rows(f"SELECT {', '.join(f'`{n}`' for n in names)} FROM `{table}`"):
            for name, value in zip(names, row, strict=True):
                if value is not None and any(form in value for form in forms):
                    leaks.append(f"{table}.{name}")
    assert not leaks, f"a password appears in: {sorted(set(leaks))}"
