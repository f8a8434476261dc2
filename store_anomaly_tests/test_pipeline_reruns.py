"""Reruns, acknowledgments, late records, failures and the CLI, on the backfilled chain.

These tests change the data, so they run after the read-only backfill checks (pytest
orders files by name) and each leaves the tables consistent for the next.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
from conftest import recreate_database
from guide_sql import ACK_ONE, BULK_ACK_INFO, LOG_ROTATION, REBUILD_STORE
from oracle import expected_kpis

from store_anomaly_assets.cli import RunOutcome, main
from store_anomaly_assets.config import AppConfig, load_config
from store_anomaly_assets.db.analytics import schema
from store_anomaly_assets.db.analytics.writes import replace_range
from store_anomaly_assets.db.frames import read_frame
from store_anomaly_assets.defs.definitions import build_definitions
from store_anomaly_assets.defs.resources import database_resources
from store_anomaly_assets.demo import loaders, synthetic

PROJECT = Path(__file__).resolve().parents[1]
LATE_STORE, LATE_DAY = 1105, date(2026, 2, 10)
TABLES = ("store_kpi_daily", "store_anomaly_scores", "store_health_scores",
          "store_anomaly_alerts")


@pytest.fixture(autouse=True)
def _backfilled(backfill: RunOutcome) -> None:
    """Every test here starts from the backfilled chain, whatever ran before it."""


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.exec_driver_sql(f"SELECT COUNT(*) FROM {t}").scalar_one() for t in TABLES}


def frame(engine: sa.Engine, sql: str, **params: object) -> pl.DataFrame:
    return read_frame(engine, sa.text(sql), params)


def run_cli(*args: str) -> int:
    return main(["run", *args])


def test_identical_rerun_changes_no_row_count(
    backfill: RunOutcome, analytics_engine: sa.Engine, chain: synthetic.SyntheticChain
) -> None:
    before = counts(analytics_engine)
    kpis_before = frame(analytics_engine, "SELECT * FROM store_kpi_daily ORDER BY 1, 2")
    start = chain.spec.end - timedelta(days=20)
    assert run_cli("--backfill-from", str(start), "--backfill-to", str(chain.spec.end)) == 0
    assert counts(analytics_engine) == before
    kpis_after = frame(analytics_engine, "SELECT * FROM store_kpi_daily ORDER BY 1, 2")
    assert kpis_after.drop("run_id", "updated_at").equals(
        kpis_before.drop("run_id", "updated_at")
    )
    rewritten = kpis_after.filter(pl.col("metric_date") >= start)["run_id"].unique()
    kept = kpis_after.filter(pl.col("metric_date") < start)["run_id"].unique()
    assert rewritten.to_list() != kept.to_list()  # exactly the range was replaced


def test_acknowledgment_survives_a_recompute(analytics_engine: sa.Engine) -> None:
    alert = frame(analytics_engine,
                  "SELECT id, alert_date FROM store_anomaly_alerts WHERE severity = 'CRITICAL' "
                  "AND store_id <> :late ORDER BY alert_date DESC LIMIT 1", late=LATE_STORE)
    alert_id, day = alert["id"][0], alert["alert_date"][0]
    with analytics_engine.begin() as conn:
        conn.exec_driver_sql(ACK_ONE.replace("<alert_id>", str(alert_id)))
        conn.execute(sa.text("UPDATE store_anomaly_alerts SET ack_note = 'checked the POS' "
                             "WHERE id = :id"), {"id": alert_id})
    assert run_cli("--date", str(day)) == 0
    after = frame(analytics_engine, "SELECT * FROM store_anomaly_alerts WHERE id = :id",
                  id=alert_id)
    assert after.height == 1
    row = after.row(0, named=True)
    assert row["acknowledged"] == 1 and row["acknowledged_by"] == "manager_name"
    assert row["ack_note"] == "checked the POS" and row["acknowledged_at"] is not None


def test_late_records_fill_a_missing_export(
    analytics_engine: sa.Engine,
    source_engines: dict[str, sa.Engine],
    chain: synthetic.SyntheticChain,
) -> None:
    # Every order and drink of the day is held back while the shifts are there: a missing
    # export, so the day's sales and production are unknown and nobody is paged.
    def day_findings() -> list[tuple]:
        return frame(analytics_engine,
                     "SELECT source, severity FROM store_data_quality WHERE store_id = :s "
                     "AND metric_date = :d ORDER BY source", s=LATE_STORE, d=LATE_DAY).rows()

    before = frame(analytics_engine, "SELECT revenue, production_count, scheduled_hours "
                   "FROM store_kpi_daily WHERE store_id = :s AND metric_date = :d",
                   s=LATE_STORE, d=LATE_DAY).row(0, named=True)
    assert before["revenue"] is None and before["production_count"] is None
    assert before["scheduled_hours"] > 0
    assert day_findings() == [("opproduction", "ERROR"), ("salesorder", "ERROR")]
    alerts = frame(analytics_engine, "SELECT metric_name FROM store_anomaly_alerts WHERE "
                   "store_id = :s AND alert_date = :d", s=LATE_STORE, d=LATE_DAY)
    assert not {"revenue", "order_count", "production_count"} & set(alerts["metric_name"])

    loaders.load_late_records(chain, source_engines)
    assert run_cli("--date", str(LATE_DAY)) == 0

    kpi = frame(analytics_engine, "SELECT * FROM store_kpi_daily WHERE store_id = :s AND "
                "metric_date = :d", s=LATE_STORE, d=LATE_DAY).row(0, named=True)
    want = expected_kpis(chain, include_late=True).filter(
        pl.col("store_id") == LATE_STORE, pl.col("metric_date") == LATE_DAY
    ).row(0, named=True)
    assert kpi["order_count"] == want["order_count"] > 0
    assert float(kpi["revenue"]) == pytest.approx(want["revenue"], abs=0.001)
    assert kpi["production_count"] == want["production_count"] > 0
    assert day_findings() == []


def test_guide_maintenance_sql_runs_verbatim(analytics_engine: sa.Engine) -> None:
    with analytics_engine.begin() as conn:
        conn.exec_driver_sql(LOG_ROTATION)
        for statement in REBUILD_STORE.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
        info_before = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM store_anomaly_alerts WHERE severity = 'INFO' AND "
            "acknowledged = FALSE AND alert_date < DATE_SUB(CURDATE(), INTERVAL 30 DAY)"
        ).scalar_one()
        updated = conn.exec_driver_sql(BULK_ACK_INFO).rowcount
    assert updated == info_before


def test_a_rerun_after_bulk_acknowledgment_keeps_every_acknowledgment(
    analytics_engine: sa.Engine, chain: synthetic.SyntheticChain
) -> None:
    with analytics_engine.begin() as conn:  # the guide's weekly clean-up, whatever ran before
        conn.exec_driver_sql(BULK_ACK_INFO)
    acked = frame(analytics_engine, "SELECT id FROM store_anomaly_alerts WHERE acknowledged")
    assert acked.height > 1
    assert run_cli("--backfill-from", str(chain.spec.start),
                   "--backfill-to", str(chain.spec.end)) == 0
    still = frame(analytics_engine, "SELECT id FROM store_anomaly_alerts WHERE acknowledged")
    assert set(still["id"]) == set(acked["id"])


def test_a_failed_extract_write_is_logged_with_its_cause(
    analytics_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A failure outside the project's logged steps (the IO manager's write) still leaves
    a FAILED row with the cause, and the run's closing step-11 row."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "extracts").write_text("a file where the extract folder should be")
    monkeypatch.setenv("STORE_ANOMALY_DATA_DIR", str(data_dir))
    assert run_cli("--date", "2026-01-07") == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "extracts" in last, last
    run_id = frame(analytics_engine, "SELECT run_id FROM store_anomaly_pipeline_log "
                   "ORDER BY id DESC LIMIT 1")["run_id"][0]
    failed = frame(analytics_engine,
                   "SELECT step_number, error_message FROM store_anomaly_pipeline_log "
                   "WHERE run_id = :r AND status = 'FAILED' ORDER BY step_number", r=run_id)
    steps = failed["step_number"].to_list()
    assert steps[-1] == 11 and any(1 <= step <= 5 for step in steps[:-1]), failed
    assert "extracts" in failed["error_message"][0]


def test_failed_step_is_logged_without_the_password(
    analytics_engine: sa.Engine, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "s3cret-Pa55word"
    monkeypatch.setenv("SALESORDER_PASS", secret)
    assert run_cli("--date", "2026-01-05") == 1
    err = capsys.readouterr().err
    assert "extract" in err and "Access denied" in err
    newest_run = frame(analytics_engine, "SELECT run_id FROM store_anomaly_pipeline_log "
                       "ORDER BY id DESC LIMIT 1")["run_id"][0]
    failed = frame(analytics_engine,
                   "SELECT step_number, error_message FROM store_anomaly_pipeline_log "
                   "WHERE run_id = :r AND status = 'FAILED' ORDER BY id", r=newest_run)
    assert failed["step_number"].to_list() == [2, 11]
    assert "Access denied" in failed["error_message"][0]
    assert "failed at step(s) 2" in failed["error_message"][1]
    everything = frame(analytics_engine, "SELECT error_message FROM store_anomaly_pipeline_log "
                       "WHERE error_message IS NOT NULL")
    assert not any(secret in m for m in everything["error_message"])
    assert secret not in err


def test_a_failed_table_write_leaves_the_old_rows(analytics_engine: sa.Engine) -> None:
    day = date(2026, 1, 20)
    before = frame(analytics_engine, "SELECT * FROM store_kpi_daily WHERE metric_date = :d",
                   d=day)
    duplicate = before.head(1).select("store_id", "metric_date", "store_name")
    with pytest.raises(sa.exc.IntegrityError):
        replace_range(analytics_engine, schema.store_kpi_daily,
                      pl.concat([duplicate, duplicate]), day, day,
                      before["store_id"].to_list(), {"run_id": "broken", "updated_at": None})
    after = frame(analytics_engine, "SELECT * FROM store_kpi_daily WHERE metric_date = :d",
                  d=day)
    assert after.equals(before)


def test_source_sessions_are_read_only(settings: AppConfig, backfill: RunOutcome) -> None:
    sales = database_resources(settings)["sales_order"].engine()
    with pytest.raises(sa.exc.OperationalError, match="READ ONLY"), sales.begin() as conn:
        conn.exec_driver_sql("DELETE FROM t_order WHERE id = -1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2024-01-01"], "outside the partitions"),
        (["--date", "2099-01-01"], "outside the partitions"),
        (["--backfill-from", "2026-01-10", "--backfill-to", "2026-01-01"], "is after"),
        (["--backfill-from", "2026-01-10"], "go together"),
        (["--date", "2026-13-01"], "not a YYYY-MM-DD date"),
    ],
)
def test_bad_arguments_give_one_clear_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(*args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # The usage line may come first (argument problems); the error is one line, and last.
    assert lines[-1].startswith("error: ") and message in lines[-1], lines
    assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("Usage: ")), lines


def test_the_console_script_exits_with_mains_status_and_its_output() -> None:
    """The console script's exit status and last words survive its shutdown."""
    script = Path(sys.executable).with_name("store-anomaly")
    bad = subprocess.run([str(script), "run", "--date", "2099-01-01"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and "outside the partitions" in bad.stderr
    usage = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                           timeout=120, check=False)
    assert usage.returncode == 0 and "init-db" in usage.stdout


def test_unknown_store_in_the_allow_list_is_named(
    backfill: RunOutcome, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTIVE_STORES", "1101, 9999")
    assert run_cli("--date", "2026-01-05") == 2
    err = capsys.readouterr().err.strip()
    assert "9999" in err and len(err.splitlines()) == 1


def test_allow_list_narrows_a_run_without_touching_other_stores(
    analytics_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = date(2026, 1, 6)
    before = frame(analytics_engine, "SELECT store_id, run_id FROM store_kpi_daily "
                   "WHERE metric_date = :d ORDER BY store_id", d=day)
    monkeypatch.setenv("ACTIVE_STORES", "1101")
    assert run_cli("--date", str(day)) == 0
    after = frame(analytics_engine, "SELECT store_id, run_id FROM store_kpi_daily "
                  "WHERE metric_date = :d ORDER BY store_id", d=day)
    assert after["store_id"].to_list() == before["store_id"].to_list()
    changed = after.join(before, on="store_id", suffix="_before").filter(
        pl.col("run_id") != pl.col("run_id_before"))
    assert changed["store_id"].to_list() == [1101]


def test_init_db_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init-db"]) == 0
    assert main(["init-db"]) == 0
    assert "store_anomaly_alerts" in capsys.readouterr().out


def test_doctor_reports_each_database_and_hides_passwords(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["doctor"]) == 0
    assert capsys.readouterr().out.count("OK ") == 6
    secret = "hunter2-very-secret"
    monkeypatch.setenv("OPPRODUCTION_PASS", secret)
    monkeypatch.setenv("OPQUALITYCONTROL_PORT", "1")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert secret not in out
    assert "FAIL  OPPRODUCTION_" in out and "FAIL  OPQUALITYCONTROL_" in out
    assert out.count("OK ") == 4


def test_log_level_debug_is_honoured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    assert run_cli("--date", "2026-01-07") == 0
    captured = capsys.readouterr()
    assert "DEBUG" in captured.err + captured.out
    assert os.environ["LOG_LEVEL"] == "DEBUG"


def test_overlapping_runs_on_a_mysql_instance_never_write_at_once(
    server: sa.Engine, analytics_engine: sa.Engine, backfill: RunOutcome, tmp_path: Path
) -> None:
    """Two CLI runs over overlapping ranges, on the example dagster-mysql instance."""
    recreate_database(server, "sat_dagster")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_MYSQL_USER": "root",
           "DAGSTER_MYSQL_PASS": "", "DAGSTER_MYSQL_HOST": "127.0.0.1",
           "DAGSTER_MYSQL_DB": "sat_dagster"}
    # The instance's MySQL schema first, as `dagster instance migrate` does on deployment:
    # two first runs at once would both try to create it.
    subprocess.run([sys.executable, "-c", "import dagster as dg; dg.DagsterInstance.get()"],
                   env=env, check=True, timeout=120)
    command = [sys.executable, "-m", "store_anomaly_assets.cli", "run"]
    first = subprocess.Popen([*command, "--backfill-from", "2025-12-01", "--backfill-to",
                              "2025-12-31"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    second = subprocess.Popen([*command, "--backfill-from", "2025-12-20", "--backfill-to",
                               "2026-01-10"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    run_ids = [re.search(r"Run (\S+) succeeded", out).group(1) for out in outputs]
    spans = frame(
        analytics_engine,
        "SELECT run_id, MIN(started_at) AS began, MAX(finished_at) AS ended "
        "FROM store_anomaly_pipeline_log WHERE run_id IN :ids GROUP BY run_id ORDER BY began",
        ids=tuple(run_ids),
    )
    assert spans.height == 2
    assert spans["ended"][0] <= spans["began"][1], spans  # one after the other
    with server.connect() as conn:
        stored = conn.exec_driver_sql("SELECT run_id FROM sat_dagster.runs").scalars().all()
    assert set(run_ids) <= set(stored)  # both runs are in the MySQL instance storage


def test_alerts_lists_open_alerts_in_the_guide_order(
    backfill: RunOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alerts", "--each-alert", "--limit", "500"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("#")]
    severities = [line.split()[1] for line in lines]
    rank = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}
    assert severities and [rank[s] for s in severities] == sorted(rank[s] for s in severities)


def test_ack_command_records_who_and_why_and_refuses_mistakes(
    analytics_engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    alert_id = frame(analytics_engine, "SELECT MIN(id) AS id FROM store_anomaly_alerts "
                     "WHERE acknowledged = FALSE")["id"][0]
    assert main(["ack", str(alert_id), "--by", "Dana Wu", "--note", "POS outage"]) == 0
    row = frame(analytics_engine, "SELECT * FROM store_anomaly_alerts WHERE id = :id",
                id=alert_id).row(0, named=True)
    assert (row["acknowledged"], row["acknowledged_by"], row["ack_note"]) == (
        1, "Dana Wu", "POS outage")
    capsys.readouterr()
    for args, message in (
        ([str(alert_id), "--by", "Dana Wu"], "already acknowledged"),
        (["99999999", "--by", "Dana Wu"], "does not exist"),
        ([str(alert_id + 1), "--by", "  "], "needs the name"),
    ):
        assert main(["ack", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_bulk_ack_cleans_up_old_info_alerts(analytics_engine: sa.Engine) -> None:
    with analytics_engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE store_anomaly_alerts SET acknowledged = FALSE, acknowledged_by = NULL "
            "WHERE severity = 'INFO'")
    old_info = frame(analytics_engine, "SELECT COUNT(*) AS n FROM store_anomaly_alerts WHERE "
                     "severity = 'INFO' AND acknowledged = FALSE")["n"][0]
    bulk = ["ack", "--severity", "INFO", "--older-than", "30", "--by", "system_cleanup"]
    assert main(bulk) == 0  # a preview: nothing is written without --yes
    assert frame(analytics_engine, "SELECT COUNT(*) AS n FROM store_anomaly_alerts WHERE "
                 "acknowledged_by = 'system_cleanup'")["n"][0] == 0
    assert main([*bulk, "--yes"]) == 0
    cleaned = frame(analytics_engine, "SELECT COUNT(*) AS n FROM store_anomaly_alerts WHERE "
                    "acknowledged_by = 'system_cleanup' AND severity = 'INFO'")["n"][0]
    assert cleaned == old_info  # every INFO alert of the chain is older than 30 days


def test_log_rotation_job_purges_only_old_rows(
    analytics_engine: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    with analytics_engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO store_anomaly_pipeline_log (run_id, run_date, step_number, step_name,"
            " status) VALUES ('old', DATE_SUB(CURDATE(), INTERVAL 91 DAY), 1, 'x', 'SUCCESS'),"
            " ('recent', DATE_SUB(CURDATE(), INTERVAL 89 DAY), 1, 'x', 'SUCCESS')")
    defs = build_definitions(load_config(env_file=None))
    result = defs.resolve_job_def("log_rotation_job").execute_in_process(
        instance=dagster_instance)
    assert result.success
    left = frame(analytics_engine, "SELECT run_id FROM store_anomaly_pipeline_log "
                 "WHERE run_id IN ('old', 'recent')")
    assert left["run_id"].to_list() == ["recent"]


MIDTOWN, DROP_DAY = 1101, date(2025, 10, 8)


def test_one_incident_per_cause_and_its_acknowledgment_survives_recomputes(
    analytics_engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """Midtown's one-day drop: six alerts, one incident. Acknowledging the incident
    acknowledges its alerts once; a recompute keeps its id, its alerts and the ack."""
    def incident() -> dict:
        return frame(analytics_engine, "SELECT * FROM store_anomaly_incidents WHERE "
                     "store_id = :s AND first_date = :d", s=MIDTOWN, d=DROP_DAY
                     ).row(0, named=True)

    def alerts() -> pl.DataFrame:
        return frame(analytics_engine, "SELECT id, incident_id, acknowledged, acknowledged_by, "
                     "ack_note FROM store_anomaly_alerts WHERE store_id = :s AND alert_date = :d"
                     " ORDER BY id", s=MIDTOWN, d=DROP_DAY)

    before = incident()
    assert (before["severity"], before["primary_metric"], before["last_date"]) == (
        "CRITICAL", "revenue", DROP_DAY)
    assert before["alert_count"] == alerts().height >= 5
    assert set(alerts()["incident_id"]) == {before["id"]}
    assert "Same incident:" in before["description_en"] and before["description_zh"]
    unlinked = frame(analytics_engine, "SELECT COUNT(*) AS n FROM store_anomaly_alerts "
                     "WHERE incident_id IS NULL")
    assert unlinked["n"][0] == 0

    if before["acknowledged_at"] is None:
        assert main(["ack", "--incident", str(before["id"]), "--by", "Dana Wu", "--note",
                     "POS outage"]) == 0
        assert f"Incident {before['id']} and its" in capsys.readouterr().out
    assert main(["ack", "--incident", str(before["id"]), "--by", "Dana Wu"]) == 2
    assert "already acknowledged by Dana Wu" in capsys.readouterr().err
    acked = alerts()
    assert acked["acknowledged"].cast(pl.Boolean).all()
    assert set(acked["acknowledged_by"]) == {"Dana Wu"}

    assert run_cli("--backfill-from", str(DROP_DAY - timedelta(days=2)), "--backfill-to",
                   str(DROP_DAY + timedelta(days=2))) == 0
    after = incident()
    assert after["id"] == before["id"] and after["status"] == "ACKNOWLEDGED"
    assert (after["acknowledged_by"], after["ack_note"]) == ("Dana Wu", "POS outage")
    assert alerts().equals(acked)


def test_alerts_lists_open_incidents(analytics_engine: sa.Engine,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "--format", "json", "--limit", "1000"]) == 0
    listed = json.loads(capsys.readouterr().out)
    expected = frame(analytics_engine, "SELECT COUNT(*) AS n FROM store_anomaly_incidents i "
                     "WHERE acknowledged_at IS NULL AND EXISTS (SELECT 1 FROM "
                     "store_anomaly_alerts a WHERE a.incident_id = i.id AND NOT a.acknowledged)")
    assert listed["total"] == expected["n"][0] > 0
    rank = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}
    keys = [(rank[r["severity"]], -date.fromisoformat(r["last_date"]).toordinal())
            for r in listed["incidents"]]
    assert keys == sorted(keys)
    assert {r["status"] for r in listed["incidents"]} <= {"OPEN", "RESOLVED"}
