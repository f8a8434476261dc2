"""The data-quality gate and findings, through the real CLI on MariaDB.

Six `dq_e2e_*` databases, a SELECT-only source account and an analytics account with
passwords, the CLI as a subprocess from another directory. One store keeps its time zone
in Asia/Kolkata (UTC+5:30). Each test breaks the sources the way production breaks them
(an emptied table, a hostile order, a missing export, half a table), runs the CLI, checks
what people would see, then puts the sources back and re-runs the range, so the tests
hold in any order.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pymysql
import pytest
import sqlalchemy as sa
from deployed import (
    HOST,
    PORT,
    Cli,
    clean_environment,
    execute_admin,
    last_line,
    one_line_error,
)
from grafana_macros import expand

from store_anomaly_assets.demo import loaders, synthetic

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[1]
SOURCE_DATABASES = {
    "OPSHOP_": "dq_e2e_opshop",
    "SALESORDER_": "dq_e2e_sales_order",
    "OPPRODUCTION_": "dq_e2e_opproduction",
    "OPEMPEFFICIENCY_": "dq_e2e_opempefficiency",
    "OPQUALITYCONTROL_": "dq_e2e_opqualitycontrol",
}
ANALYTICS_DATABASE = "dq_e2e_analytics"
ALL_DATABASES = (*SOURCE_DATABASES.values(), ANALYTICS_DATABASE)
SOURCE_USER, ANALYTICS_USER = "dqe2e_source", "dqe2e_analytics"
PASSWORDS = {SOURCE_USER: "Dq:s/%#?@1", ANALYTICS_USER: "Dq:a/%#?@2"}
USER_HOSTS = ("%", "localhost")

CHAIN_START, CHAIN_END = date(2025, 7, 1), date(2026, 2, 15)
KOLKATA_STORE, KOLKATA = 1109, "Asia/Kolkata"
ANALYTICS_TABLES = ("store_kpi_daily", "store_anomaly_scores", "store_health_scores",
                    "store_anomaly_alerts", "store_data_quality")
GATE_HINT = "--accept-source-gaps"


@dataclass
class Deployment:
    cli: Cli
    root: Path
    engines: dict[str, sa.Engine]  # root engines: "analytics" and each source prefix

    def rows(self, database: str, sql: str, **params: object) -> list[sa.Row]:
        with self.engines[database].connect() as conn:
            return list(conn.execute(sa.text(sql), params))

    def execute(self, database: str, *statements: str, **params: object) -> None:
        with self.engines[database].begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)

    def checksums(self) -> dict[str, int]:
        """CHECKSUM TABLE of every analytics table the gate protects: equal means identical."""
        return {t: self.rows("analytics", f"CHECKSUM TABLE {t}")[0][1] for t in ANALYTICS_TABLES}

    def run(self, first: date, last: date, *extra: str):
        return self.cli("run", "--backfill-from", str(first), "--backfill-to", str(last),
                        *extra, timeout=300)

    def run_ok(self, first: date, last: date, *extra: str) -> None:
        result = self.run(first, last, *extra)
        assert result.returncode == 0, result.stderr[-2000:]


def refusal(result) -> str:
    """The gate's refusal: exit 2, and a last line that says why (Dagster logs the failed
    step above it, as for any failed run)."""
    line = last_line(result.stderr)
    assert result.returncode == 2, result.stderr[-3000:]
    assert line.startswith("error: run ") and "refused by the data-quality gate: " in line, line
    return line


def _drop_everything() -> None:
    execute_admin([f"DROP DATABASE IF EXISTS `{db}`" for db in ALL_DATABASES]
                  + [f"DROP USER IF EXISTS '{u}'@'{h}'" for u in PASSWORDS for h in USER_HOSTS])


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    """The chain (store 1109 in Asia/Kolkata) in six databases, backfilled once."""
    try:
        pymysql.connect(host=HOST, port=PORT, user="root", password="").close()
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB is not reachable on {HOST}:{PORT} ({exc}); start it first")
    _drop_everything()
    root = Path(tempfile.mkdtemp(prefix="store-anomaly-dq-e2e-"))
    engines: dict[str, sa.Engine] = {}
    try:
        statements = [f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4" for db in ALL_DATABASES]
        for host in USER_HOSTS:
            for user, password in PASSWORDS.items():
                statements.append(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
            statements += [f"GRANT SELECT ON `{db}`.* TO '{SOURCE_USER}'@'{host}'"
                           for db in SOURCE_DATABASES.values()]
            statements.append(f"GRANT ALL PRIVILEGES ON `{ANALYTICS_DATABASE}`.* TO "
                              f"'{ANALYTICS_USER}'@'{host}'")
        execute_admin(statements)
        for key, database in {**SOURCE_DATABASES, "analytics": ANALYTICS_DATABASE}.items():
            engines[key] = sa.create_engine(sa.URL.create(
                "mysql+pymysql", username="root", host=HOST, port=PORT, database=database,
                query={"charset": "utf8mb4"}))
        chain = synthetic.generate(synthetic.default_chain(scale=0.2))
        chain.shop_info = chain.shop_info.with_columns(
            time_zone=pl.when(pl.col("dept_id") == KOLKATA_STORE).then(pl.lit(KOLKATA))
            .otherwise(pl.col("time_zone")))
        loaders.load_chain(chain, {p: engines[p] for p in SOURCE_DATABASES})
        env = clean_environment()
        for prefix, database in {**SOURCE_DATABASES, "DBATEST_": ANALYTICS_DATABASE}.items():
            user = ANALYTICS_USER if prefix == "DBATEST_" else SOURCE_USER
            env.update({f"{prefix}HOST": HOST, f"{prefix}PORT": str(PORT),
                        f"{prefix}USER": user, f"{prefix}PASS": PASSWORDS[user],
                        f"{prefix}DB": database})
        env.update(STORE_ANOMALY_DATA_DIR=str(root / "data"),
                   DAGSTER_HOME=str(root / "dagster_home"))
        (root / "cwd").mkdir()
        deployment = Deployment(Cli(root / "cwd", env, root / "background"), root, engines)
        assert deployment.cli("init-db").returncode == 0
        deployment.run_ok(CHAIN_START, CHAIN_END)
        yield deployment
    finally:
        for engine in engines.values():
            engine.dispose()
        _drop_everything()
        shutil.rmtree(root, ignore_errors=True)


_SET_ASIDE = itertools.count()


@contextmanager
def set_aside(d: Deployment, prefix: str, table: str, where: str, **params: object):
    """Move the rows of `table` matching `where` out of the source; put them back after."""
    backup = f"{table}_set_aside_{next(_SET_ASIDE)}"
    d.execute(prefix, f"CREATE TABLE {backup} AS SELECT * FROM {table} WHERE {where}",
              f"DELETE FROM {table} WHERE {where}", **params)
    try:
        yield
    finally:
        d.execute(prefix, f"INSERT INTO {table} SELECT * FROM {backup}", f"DROP TABLE {backup}")


def utc_window(day: date, time_zone: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(time_zone)
    lo = datetime.combine(day, time(), zone).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    hi = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(
        ZoneInfo("UTC")).replace(tzinfo=None)
    return lo, hi


def store_day(store_id: int, day: date, time_zone: str = "America/New_York") -> str:
    lo, hi = utc_window(day, time_zone)
    return f"dept_id = {store_id} AND {{col}} >= '{lo}' AND {{col}} < '{hi}'"


def findings(d: Deployment, first: date = CHAIN_START, last: date = CHAIN_END,
             **where: object) -> list[sa.Row]:
    """store_data_quality rows dated first..last that match `where` (column = value)."""
    clause = "".join(f" AND {k} = :{k}" for k in where)
    return d.rows("analytics", "SELECT store_id, metric_date, source, check_name, severity, "
                  "rows_affected, detail, detail_zh FROM store_data_quality WHERE "
                  f"metric_date BETWEEN :first AND :last{clause} "
                  "ORDER BY metric_date, store_id, source", first=first, last=last, **where)


# ------------------------------------------------------------------------------ tests


def test_revenue_is_exact_to_the_cent_in_a_half_hour_time_zone(d: Deployment) -> None:
    """Every local day of the Kolkata store against its orders, each placed by zoneinfo."""
    orders = d.rows("SALESORDER_", "SELECT create_time, pay_amount FROM t_order "
                    "WHERE dept_id = :s AND order_status = 1", s=KOLKATA_STORE)
    utc, zone = ZoneInfo("UTC"), ZoneInfo(KOLKATA)
    expected: dict[date, Decimal] = {}
    straddling = 0
    for created, amount in orders:
        local = created.replace(tzinfo=utc).astimezone(zone)
        expected[local.date()] = expected.get(local.date(), Decimal(0)) + amount
        # Between 18:00 and 18:30 UTC: an hourly bucket would put it on the wrong day.
        straddling += created.hour == 18 and created.minute < 30
    assert straddling > 50, "the chain must have orders in the half hour the test is about"
    kpis = dict(d.rows("analytics", "SELECT metric_date, revenue FROM store_kpi_daily "
                       "WHERE store_id = :s AND revenue IS NOT NULL", s=KOLKATA_STORE))
    in_range = {day: total for day, total in expected.items() if CHAIN_START <= day <= CHAIN_END}
    assert {day: Decimal(str(v)).quantize(Decimal("0.01")) for day, v in kpis.items()} == in_range


def test_an_emptied_order_table_is_refused_and_history_stays_identical(
    d: Deployment,
) -> None:
    before = d.checksums()
    d.execute("SALESORDER_", "RENAME TABLE t_order TO t_order_kept",
              "CREATE TABLE t_order LIKE t_order_kept")
    try:
        line = refusal(d.run(CHAIN_START, CHAIN_END))
        assert "salesorder (t_order) has no valid rows for 2025-07-01..2026-02-15" in line
        assert "Nothing was written" in line and GATE_HINT in line
        assert d.checksums() == before

        # A deliberate rewrite of one week: written, and on record.
        week = (date(2026, 2, 2), date(2026, 2, 8))
        d.run_ok(*week, GATE_HINT)
        accepted = findings(d, check_name="source_gap_accepted")
        assert [(r.store_id, r.metric_date, r.source, r.severity) for r in accepted] == [
            (None, week[1], "salesorder", "WARN")]
        revenue = d.rows("analytics", "SELECT COUNT(*) AS days, COUNT(revenue) AS known "
                         "FROM store_kpi_daily WHERE metric_date BETWEEN :a AND :b", a=week[0],
                         b=week[1])[0]
        assert revenue.days > 0 and revenue.known == 0  # unknown, not zero
    finally:
        d.execute("SALESORDER_", "DROP TABLE t_order", "RENAME TABLE t_order_kept TO t_order")
    d.run_ok(date(2026, 2, 2), date(2026, 2, 8))
    assert findings(d, check_name="source_gap_accepted") == []


def test_a_source_that_lost_most_rows_is_refused(d: Deployment) -> None:
    week = (date(2025, 9, 8), date(2025, 9, 14))
    before = d.checksums()
    lo, hi = utc_window(week[0], "UTC")[0], utc_window(week[1], "UTC")[1]
    with set_aside(d, "OPPRODUCTION_", "t_production_record",
                   "start_time >= :lo AND start_time < :hi AND MOD(id, 10) < 7", lo=lo, hi=hi):
        line = refusal(d.run(*week))
    assert "opproduction (t_production_record) has" in line and "SOURCE_DROP_RATIO=0.5" in line
    assert d.checksums() == before


def test_an_empty_store_master_stops_before_anything_runs(d: Deployment) -> None:
    d.execute("OPSHOP_", "RENAME TABLE t_shop_info TO t_shop_info_kept",
              "CREATE TABLE t_shop_info LIKE t_shop_info_kept")
    try:
        result = d.run(date(2026, 2, 1), date(2026, 2, 1))
    finally:
        d.execute("OPSHOP_", "DROP TABLE t_shop_info",
                  "RENAME TABLE t_shop_info_kept TO t_shop_info")
    line = one_line_error(result.stderr)
    assert result.returncode == 2
    assert f"t_shop_info in mysql {SOURCE_USER}@" in line
    assert f"/{SOURCE_DATABASES['OPSHOP_']} has no stores" in line


HOSTILE_STORE, HUGE_DAY, DROP_DAY = 1108, date(2026, 1, 7), date(2026, 1, 12)
LA = "America/Los_Angeles"


def test_hostile_rows_are_left_out_and_recorded(d: Deployment) -> None:
    """A 9,999,999,999.99 order, negative and empty amounts, impossible drinks, shifts and
    scores: none reaches a KPI, each store-day says how many were left out, and a real
    -65% drop five days after the huge order is still CRITICAL."""
    first, last = date(2026, 1, 5), date(2026, 1, 16)
    clean = dict(d.rows("analytics", "SELECT metric_date, revenue FROM store_kpi_daily "
                        "WHERE store_id = :s", s=HOSTILE_STORE))
    noon = utc_window(HUGE_DAY, LA)[0] + timedelta(hours=12)
    neg_day_lo = utc_window(date(2026, 1, 8), "America/New_York")[0] + timedelta(hours=15)
    # The day's later orders, so that 35% of its revenue stays: a -65% day.
    day_orders = store_day(HOSTILE_STORE, DROP_DAY, LA).format(col="create_time")
    kept, cutoff = Decimal(0), 0
    day_rows = d.rows("SALESORDER_", f"SELECT id, pay_amount FROM t_order WHERE {day_orders} "
                      "AND order_status = 1 ORDER BY id")
    total = sum(amount for _, amount in day_rows)
    for order_id, amount in day_rows:
        if kept + amount > Decimal("0.35") * total:
            break
        kept, cutoff = kept + amount, order_id
    drop = f"{day_orders} AND id > {cutoff}"
    inserted = {
        "SALESORDER_": [
            f"INSERT INTO t_order (dept_id, order_status, pay_amount, item_count, create_time) "
            f"VALUES ({HOSTILE_STORE}, 1, 9999999999.99, 1, '{noon}'), "
            f"(1105, 1, -501.42, 1, '{neg_day_lo}'), (1105, 1, NULL, 1, '{neg_day_lo}')"],
        "OPPRODUCTION_": [
            "INSERT INTO t_production_record (dept_id, product_name, start_time, finish_time) "
            f"VALUES (1105, 'Latte', '{neg_day_lo}', '{neg_day_lo - timedelta(seconds=40)}'), "
            f"(1105, 'Latte', '{neg_day_lo}', '{neg_day_lo + timedelta(hours=5)}')"],
        "OPEMPEFFICIENCY_": [
            "INSERT INTO t_employee_schedule (dept_id, employee_id, work_date, shift_start, "
            "shift_end, scheduled_hours) VALUES (1105, 999001, '2026-01-08', "
            "'2026-01-08 06:00:00', '2026-01-09 02:00:00', 20)"],
        "OPQUALITYCONTROL_": [
            "INSERT INTO t_inspection_record (dept_id, inspection_time, total_score) "
            f"VALUES (1105, '{neg_day_lo}', 150)"],
    }
    cleanup = {
        "SALESORDER_": ["DELETE FROM t_order WHERE pay_amount IS NULL OR pay_amount < 0 "
                        "OR pay_amount > 1000"],
        "OPPRODUCTION_": ["DELETE FROM t_production_record WHERE finish_time < start_time "
                          "OR TIMESTAMPDIFF(SECOND, start_time, finish_time) > 3600"],
        "OPEMPEFFICIENCY_": ["DELETE FROM t_employee_schedule WHERE employee_id = 999001"],
        "OPQUALITYCONTROL_": ["DELETE FROM t_inspection_record WHERE total_score > 100"],
    }
    try:
        for prefix, statements in inserted.items():
            d.execute(prefix, *statements)
        with set_aside(d, "SALESORDER_", "t_order", drop):
            d.run_ok(first, last)
            kpi = dict(d.rows("analytics", "SELECT metric_date, revenue FROM store_kpi_daily "
                              "WHERE store_id = :s", s=HOSTILE_STORE))
            alerts = d.rows("analytics", "SELECT alert_date, metric_name, severity, "
                            "description_en FROM store_anomaly_alerts WHERE store_id IN "
                            "(:s, 1105) AND alert_date BETWEEN :a AND :b", s=HOSTILE_STORE,
                            a=first, b=last)
            recorded = findings(d, first, last, check_name="invalid_rows")
    finally:
        for prefix, statements in cleanup.items():
            d.execute(prefix, *statements)
    d.run_ok(first, last)

    assert kpi[HUGE_DAY] == clean[HUGE_DAY]  # the huge order is not revenue
    assert float(kpi[DROP_DAY]) <= 0.35 * float(clean[DROP_DAY])
    assert ("revenue", "CRITICAL") in {(a.metric_name, a.severity) for a in alerts
                                       if a.alert_date == DROP_DAY}
    assert not any("$-" in a.description_en for a in alerts)
    left_out = {(r.store_id, r.metric_date, r.source): r.rows_affected for r in recorded}
    assert left_out == {
        (HOSTILE_STORE, HUGE_DAY, "salesorder"): 1,
        (1105, date(2026, 1, 8), "salesorder"): 2,
        (1105, date(2026, 1, 8), "opproduction"): 2,
        (1105, date(2026, 1, 8), "opempefficiency"): 1,
        (1105, date(2026, 1, 8), "opqualitycontrol"): 1,
    }
    assert all(r.severity == "WARN" and r.detail and r.detail_zh for r in recorded)
    assert "MAX_ORDER_AMOUNT" in next(r.detail for r in recorded if r.source == "salesorder")


MISSING_STORE, MISSING_DAY = 1105, date(2026, 1, 14)
CLOSED_STORE, CLOSED_DAY = 1101, date(2026, 1, 20)


def test_a_missing_export_is_unknown_not_a_disaster(d: Deployment) -> None:
    first, last = date(2026, 1, 12), date(2026, 1, 21)
    missing = store_day(MISSING_STORE, MISSING_DAY)
    closed = store_day(CLOSED_STORE, CLOSED_DAY)
    slow = missing.format(col="start_time")
    try:
        # The same day's drinks took ten minutes longer: that alert must say the orders
        # are missing, answering the checklist's first question.
        d.execute("OPPRODUCTION_", "UPDATE t_production_record SET finish_time = "
                  f"finish_time + INTERVAL 600 SECOND WHERE {slow}")
        with (set_aside(d, "SALESORDER_", "t_order", missing.format(col="create_time")),
              set_aside(d, "SALESORDER_", "t_order", closed.format(col="create_time")),
              set_aside(d, "OPPRODUCTION_", "t_production_record",
                        closed.format(col="start_time")),
              set_aside(d, "OPEMPEFFICIENCY_", "t_employee_schedule",
                        f"dept_id = {CLOSED_STORE} AND work_date = '{CLOSED_DAY}'"),
              set_aside(d, "OPQUALITYCONTROL_", "t_inspection_record",
                        closed.format(col="inspection_time"))):
            d.run_ok(first, last)
            kpi = d.rows("analytics", "SELECT revenue, order_count, aov, production_count, "
                         "scheduled_hours FROM store_kpi_daily WHERE store_id = :s AND "
                         "metric_date = :day", s=MISSING_STORE, day=MISSING_DAY)[0]
            closed_kpi = d.rows("analytics", "SELECT COUNT(*) AS n FROM store_kpi_daily "
                                "WHERE store_id = :s AND metric_date = :day", s=CLOSED_STORE,
                                day=CLOSED_DAY)[0].n
            alerts = d.rows("analytics", "SELECT metric_name, severity, description_en, "
                            "description_zh FROM store_anomaly_alerts WHERE store_id = :s "
                            "AND alert_date = :day", s=MISSING_STORE, day=MISSING_DAY)
            health = d.rows("analytics", "SELECT health_score, dimensions_used FROM "
                            "store_health_scores WHERE store_id = :s AND metric_date = :day",
                            s=MISSING_STORE, day=MISSING_DAY)[0]
            errors = findings(d, first, last, severity="ERROR")
            closures = findings(d, first, last, check_name="no_activity")
            check = d.rows("analytics", "SELECT status, error_message FROM "
                           "store_anomaly_pipeline_log WHERE step_name = "
                           "'verify_source_data_quality' ORDER BY id DESC LIMIT 1")[0]
            report = d.cli("report", "--date", str(MISSING_DAY), "--out",
                           str(d.root / "report.html"))
            assert report.returncode == 0, report.stderr
            html = (d.root / "report.html").read_text()
            panel = _data_quality_panel(d, first, last)
    finally:
        d.execute("OPPRODUCTION_", "UPDATE t_production_record SET finish_time = "
                  f"finish_time - INTERVAL 600 SECOND WHERE {slow}")
    d.run_ok(first, last)

    assert (kpi.revenue, kpi.order_count, kpi.aov) == (None, None, None)
    assert kpi.production_count > 0 and kpi.scheduled_hours > 0
    assert not {a.metric_name for a in alerts} & {"revenue", "order_count", "aov"}
    # Health from the dimensions that remain.
    assert health.health_score is not None and "sales" not in health.dimensions_used
    assert [(r.store_id, r.metric_date, r.source, r.check_name) for r in errors] == [
        (MISSING_STORE, MISSING_DAY, "salesorder", "missing_rows")]
    assert "while opproduction had" in errors[0].detail
    slow_alert = next(a for a in alerts if a.metric_name == "avg_production_seconds")
    assert "Possible data issue: salesorder had no valid rows for this store-day while " \
        "opproduction had" in slow_alert.description_en
    assert "可能存在数据问题" in slow_alert.description_zh
    assert closed_kpi == 0
    assert [(r.store_id, r.metric_date, r.severity) for r in closures] == [
        (CLOSED_STORE, CLOSED_DAY, "WARN")]
    assert check.status == "FAILED" and "ERROR findings" in check.error_message
    assert 'data-finding="salesorder/missing_rows"' in html
    assert (str(MISSING_DAY), "salesorder", "missing_rows", 1) in panel
    assert findings(d, first, last, severity="ERROR") == []
    assert findings(d, first, last, check_name="no_activity") == []


def _data_quality_panel(d: Deployment, first: date, last: date) -> list[tuple]:
    """The dashboard's data-quality panel, as Grafana would query it for all stores."""
    dashboard = json.loads((PROJECT / "dashboards" / "store_anomaly_dashboard.json").read_text())
    panel = next(p for p in dashboard["panels"] if p["title"].startswith("Data quality"))
    stores = [str(r.store_id) for r in d.rows("analytics", "SELECT DISTINCT store_id FROM "
                                              "store_kpi_daily")]
    sql = expand(panel["targets"][0]["rawSql"], {"store": stores},
                 datetime.combine(first, time()), datetime.combine(last, time(23)))
    with d.engines["analytics"].connect() as conn:
        return [(str(r.metric_date), r.source, r.check_name, int(r.errors))
                for r in conn.exec_driver_sql(sql)]


@pytest.fixture
def d(deployment: Deployment) -> Deployment:
    return deployment
