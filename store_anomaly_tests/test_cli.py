"""The Typer CLI's additions (issue 13): --version, -v/-q, usage on bad input, `alerts`
filters and formats with a true total, bulk `ack` that previews unless --yes, the demo's
tables rendered for people, progress on terminals only.

`alerts` and `ack` run in-process (`main([...])`) against `cli2_*` databases on the local
MariaDB (dropped at the end): an opshop with districts and an analytics database whose
alerts every test re-creates, so the tests do not depend on their order. The demo runs
once as a subprocess on the embedded SQLite chain, its stderr on a pseudo-terminal.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from conftest import database_url
from local_env import without_settings

from store_anomaly_assets.cli import app as cli_app
from store_anomaly_assets.cli import main, render
from store_anomaly_assets.cli.pipeline import RunOutcome, RunSummary
from store_anomaly_assets.core.contracts import SEVERITIES, SEVERITY_ORDER
from store_anomaly_assets.db.analytics import schema
from store_anomaly_assets.db.analytics.init_db import init_db
from store_anomaly_assets.db.frames import read_frame
from store_anomaly_assets.db.sources.schema import t_shop_info

OPSHOP, ANALYTICS = "cli2_opshop", "cli2_analytics"
# store id: (name, district); 2104 has no district, 2105 is deleted.
STORES = {2101: ("Herald Square", "Manhattan"), 2102: ("SoHo", "Manhattan"),
          2103: ("DUMBO", "Brooklyn"), 2104: ("Astoria", None), 2105: ("Closed", "Manhattan")}
FIRST_DAY, DAYS = date(2026, 1, 1), 30
ACKNOWLEDGED = 6  # the first rows inserted are acknowledged already
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DTYPE_ROW = re.compile(r"^\W*(i64|i32|f64|str|date|bool)(\W+(i64|i32|f64|str|date|bool))+\W*$")


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cli2_databases(server: sa.Engine) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    """cli2_opshop (t_shop_info with districts) and cli2_analytics (the tables)."""
    with server.begin() as conn:
        for name in (OPSHOP, ANALYTICS):
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    opshop = sa.create_engine(database_url(OPSHOP))
    analytics = sa.create_engine(database_url(ANALYTICS))
    try:
        t_shop_info.create(opshop)
        with opshop.begin() as conn:
            for store_id, (name, district) in STORES.items():
                conn.execute(t_shop_info.insert().values(
                    dept_id=store_id, shop_name=name, district=district,
                    time_zone="America/New_York", open_date=date(2025, 1, 1), shop_status=1,
                    is_deleted=int(store_id == 2105)))
        init_db(analytics)
        yield opshop, analytics
    finally:
        opshop.dispose()
        analytics.dispose()
        with server.begin() as conn:
            for name in (OPSHOP, ANALYTICS):
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")


def alert_rows() -> list[dict[str, object]]:
    """30 days x 5 stores of alerts, severities cycling, some impacts unknown."""
    rows = []
    for day in range(DAYS):
        for i, (store_id, (name, _)) in enumerate(STORES.items()):
            severity = SEVERITIES[(day + i) % 3]
            rows.append(dict(
                store_id=store_id, store_name=name, alert_date=FIRST_DAY + timedelta(days=day),
                metric_name="revenue", severity=severity, scope="STORE",
                impact_usd=None if (day + i) % 7 == 0 else float((day * 37 + i * 11) % 500),
                description_en=f"Revenue was {1000 + day}.{i:02d} at {name} on day {day}, "
                               f"{10 + i}.5% below the expected {1200 + day}.75; this text is "
                               f"long enough to wrap in any table, and ends with END{day}-{i}.",
                acknowledged=False, created_at=datetime(2026, 2, 1)))
    return rows


@pytest.fixture
def alerts(cli2_databases, monkeypatch: pytest.MonkeyPatch) -> pl.DataFrame:
    """Fresh alerts in cli2_analytics, the CLI pointed at it; returns the rows, with ids."""
    _, analytics = cli2_databases
    table = schema.store_anomaly_alerts
    with analytics.begin() as conn:
        conn.execute(table.delete())
        conn.execute(table.insert(), alert_rows())
        first = conn.execute(sa.select(sa.func.min(table.c.id))).scalar_one()
        conn.execute(table.update().where(table.c.id < first + ACKNOWLEDGED)
                     .values(acknowledged=True, acknowledged_by="earlier"))
    monkeypatch.setenv("OPSHOP_DB", OPSHOP)
    monkeypatch.setenv("DBATEST_DB", ANALYTICS)
    return read_frame(analytics, sa.select(table))


def open_in_order(rows: pl.DataFrame) -> pl.DataFrame:
    """The open alerts in the guide's order, computed independently of the query."""
    return rows.filter(~pl.col("acknowledged").cast(pl.Boolean)).sort(
        [pl.col("severity").replace_strict(SEVERITY_ORDER), pl.col("alert_date"),
         pl.col("impact_usd").is_null(), pl.col("impact_usd"), pl.col("id")],
        descending=[False, True, False, True, False])


def listed_ids(out: str) -> list[int]:
    return [int(i) for i in re.findall(r"^#(\d+)\s", out, re.MULTILINE)]


def alerts_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["alerts", "--each-alert", "--format", "json", *args]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return json.loads(captured.out)


# ---------------------------------------------------------------------------- global options


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"store-anomaly {metadata.version('store-anomaly')}\n"


def test_help_returns_zero_without_raising(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "init-db", "doctor", "alerts", "ack", "demo", "report"):
        assert command in out


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`run` without Dagster: records the log level the run would get."""
    levels: list[str] = []

    def run_pipeline(config, start, end, instance=None, log_level="INFO", progress=None,
                     accept_source_gaps=False):
        levels.append(log_level)
        return RunOutcome("fake-run", True, None)

    monkeypatch.setattr(cli_app, "validate_run", lambda *args: None)
    monkeypatch.setattr(cli_app, "ensure_dagster_home", lambda config: None)
    monkeypatch.setattr(cli_app, "run_summary", lambda *args: RunSummary({}, None))
    monkeypatch.setattr(cli_app, "run_pipeline", run_pipeline)
    return levels


@pytest.mark.parametrize(("flags", "env_level", "expected"), [
    ([], "ERROR", "ERROR"),
    (["-v"], "ERROR", "DEBUG"),
    (["--verbose"], "INFO", "DEBUG"),
    (["-q"], "DEBUG", "WARNING"),
    (["--quiet"], "INFO", "WARNING"),
])
def test_verbose_and_quiet_override_log_level(
    fake_run: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    flags: list[str], env_level: str, expected: str,
) -> None:
    monkeypatch.setenv("LOG_LEVEL", env_level)
    assert main([*flags, "run", "--date", "2026-01-05"]) == 0
    assert fake_run == [expected]
    assert logging.getLogger("store_anomaly").level == logging.getLevelName(expected)
    assert "Run fake-run succeeded." in capsys.readouterr().out


# ---------------------------------------------------------------------------- usage


@pytest.mark.parametrize(("args", "usage", "needles"), [
    (["alerts", "--limit", "0"], "alerts", ["--limit", "between 1 and 1,000,000"]),
    (["alerts", "--limit", "many"], "alerts", ["--limit", "'many' is not a whole number"]),
    (["alerts", "--severity", "URGENT"], "alerts", ["--severity", "URGENT"]),
    (["alerts", "--since", "2026-02-30"], "alerts", ["--since", "not a YYYY-MM-DD date"]),
    (["alerts", "--format", "xml"], "alerts", ["--format", "'xml'", "table, json, csv"]),
    (["alerts", "--store", "x"], "alerts", ["--store", "'x'"]),
    (["alerts", "--bogus"], "alerts", ["--bogus"]),
    (["run", "--date", "2026-13-01"], "run", ["--date", "not a YYYY-MM-DD date"]),
    (["run", "--backfill-from", "2026-01-10"], "run", ["go together"]),
    (["ack", "--by", "Dana"], "ack", ["alert ID", "--severity", "--older-than"]),
    (["ack", "7", "--severity", "INFO", "--older-than", "3", "--by", "x"], "ack", ["give one of"]),
    (["ack", "seven", "--by", "x"], "ack", ["ID", "'seven'"]),
    (["ack", "7"], "ack", ["missing option --by"]),
    (["report", "--out", "r.html"], "report", ["missing option --date"]),
    (["report", "--date", "2026-01-05", "--out", ""], "report", ["--out", "empty path"]),
    (["demo", "--scale", "-1"], "demo", ["--scale"]),
    (["-v", "-q", "alerts"], "", ["-v/--verbose", "-q/--quiet"]),
    (["nope"], "", ["nope"]),
    ([], "", ["command"]),
])
def test_bad_input_shows_the_usage_then_one_error_line(
    capsys: pytest.CaptureFixture[str], args: list[str], usage: str, needles: list[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith(f"Usage: store-anomaly {usage}".rstrip()), err[0]
    assert err[0] == " ".join(err[0].split())  # one line, no wrapping
    assert err[1].startswith("error: "), err[1]
    for needle in needles:
        assert needle in err[1], (needle, err[1])


def test_errors_that_are_not_about_arguments_stay_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIGMA_WARNING", "nan")
    assert main(["alerts"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "SIGMA_WARNING" in err[0], err


# ---------------------------------------------------------------------------- alerts


def test_alerts_footer_states_the_true_total(
    alerts: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = open_in_order(alerts)
    assert main(["alerts", "--each-alert", "--limit", "7"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert listed_ids(captured.out) == expected["id"].head(7).to_list()
    assert f"showing 7 of {expected.height} open alerts" in captured.out
    assert expected.height == len(STORES) * DAYS - ACKNOWLEDGED > 50


def test_alerts_table_keeps_the_guide_order_and_whole_descriptions(
    alerts: pl.DataFrame, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "90")  # narrow: descriptions must wrap, not be cut
    expected = open_in_order(alerts).head(50)
    assert main(["alerts", "--each-alert"]) == 0
    out = capsys.readouterr().out
    assert listed_ids(out) == expected["id"].to_list()  # the default limit is 50
    lines = out.splitlines()
    assert all(len(line) <= 90 for line in lines)
    rows = [line.split() for line in lines if line.startswith("#")]
    assert [row[1] for row in rows] == expected["severity"].to_list()
    flat = " ".join(out.split())
    for description in expected["description_en"]:
        assert description in flat  # every word of it, in order
    assert "…" not in out


def test_alerts_filters_combine(
    alerts: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    opened = open_in_order(alerts)
    cases = [
        (["--severity", "CRITICAL"], pl.col("severity") == "CRITICAL"),
        (["-s", "critical,info"], pl.col("severity").is_in(["CRITICAL", "INFO"])),
        (["--severity", "WARNING", "--severity", "INFO"],
         pl.col("severity").is_in(["WARNING", "INFO"])),
        (["--store", "2101"], pl.col("store_id") == 2101),
        (["--store", "2101,2103", "--store", "2104"], pl.col("store_id").is_in([2101, 2103, 2104])),
        (["--district", "Manhattan"], pl.col("store_id").is_in([2101, 2102])),  # not deleted 2105
        (["--district", " brooklyn "], pl.col("store_id") == 2103),
        (["--district", "manhattan", "--store", "2102,2103"], pl.col("store_id") == 2102),
        (["--since", "2026-01-25"], pl.col("alert_date") >= date(2026, 1, 25)),
        (["--since", "2026-01-20", "--severity", "WARNING", "--district", "Manhattan"],
         (pl.col("alert_date") >= date(2026, 1, 20)) & (pl.col("severity") == "WARNING")
         & pl.col("store_id").is_in([2101, 2102])),
    ]
    for args, condition in cases:
        want = opened.filter(condition)
        assert want.height > 3, args
        document = alerts_json(capsys, "--limit", "3", *args)
        assert document["total"] == want.height, args
        assert document["shown"] == 3
        assert [a["id"] for a in document["alerts"]] == want["id"].head(3).to_list(), args


def test_alerts_json_holds_the_alert_and_the_filters(
    alerts: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    document = alerts_json(capsys, "--store", "2103", "--since", "2026-01-29", "--limit", "10")
    want = open_in_order(alerts).filter((pl.col("store_id") == 2103)
                                        & (pl.col("alert_date") >= date(2026, 1, 29)))
    assert document["total"] == document["shown"] == want.height == 2
    assert document["filters"] == {"store": [2103], "since": "2026-01-29"}
    first = document["alerts"][0]
    row = want.row(0, named=True)
    assert first["id"] == row["id"] and first["alert_date"] == str(row["alert_date"])
    assert first["description_en"] == row["description_en"]
    assert {"severity", "store_name", "metric_name", "scope", "impact_usd",
            "recommended_action", "description_zh"} <= set(first)


def test_alerts_matching_nothing(alerts: pl.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    document = alerts_json(capsys, "--since", "2030-01-01")
    assert document == {"total": 0, "shown": 0, "filters": {"since": "2030-01-01"},
                        "alerts": []}
    assert main(["alerts", "--each-alert", "--since", "2030-01-01"]) == 0
    assert capsys.readouterr().out == "No open alerts matching since 2030-01-01.\n"


def test_alerts_csv_is_the_rows_and_a_truncation_note(
    alerts: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    want = open_in_order(alerts).filter(pl.col("severity") == "INFO")
    assert main(["alerts", "--each-alert", "--format", "csv", "--severity", "INFO",
                 "--limit", "4"]) == 0
    captured = capsys.readouterr()
    got = pl.read_csv(io.StringIO(captured.out))
    assert got["id"].to_list() == want["id"].head(4).to_list()
    assert got["description_en"].to_list() == want["description_en"].head(4).to_list()
    assert captured.err.strip() == (f"showing 4 of {want.height} open alerts matching "
                                    "severity INFO (raise --limit for more)")
    assert main(["alerts", "--each-alert", "-f", "CSV", "--severity", "INFO",
                 "--limit", "1000"]) == 0
    captured = capsys.readouterr()
    assert pl.read_csv(io.StringIO(captured.out)).height == want.height
    assert captured.err == ""


def test_an_unknown_district_is_one_line(
    alerts: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alerts", "--district", "Queens"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: --district 'Queens'"), err
    assert "t_shop_info" in err[0] and OPSHOP in err[0]
    assert "Brooklyn, Manhattan" in err[0]


# ---------------------------------------------------------------------------- ack


def open_count(analytics: sa.Engine, severity: str) -> int:
    table = schema.store_anomaly_alerts
    with analytics.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(
            table.c.severity == severity, table.c.acknowledged.is_(False))).scalar_one()


def test_bulk_ack_previews_until_yes(
    cli2_databases, alerts: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    _, analytics = cli2_databases
    want = open_in_order(alerts).filter(pl.col("severity") == "INFO")
    args = ["ack", "--severity", "INFO", "--older-than", "30", "--by", "system_cleanup"]
    cutoff = datetime.now(UTC).date() - timedelta(days=30)
    assert cutoff > FIRST_DAY + timedelta(days=DAYS)

    assert main(args) == 0
    preview = capsys.readouterr().out
    assert open_count(analytics, "INFO") == want.height  # nothing written
    assert preview.startswith(f"{want.height} open INFO alerts older than 30 days (dated "
                              f"before {cutoff}) would be acknowledged by system_cleanup:\n")
    assert listed_ids(preview) == want["id"].head(5).to_list()
    assert f"... and {want.height - 5} more." in preview
    assert preview.rstrip().endswith(f"add --yes to acknowledge these {want.height}.")

    assert main([*args, "--yes"]) == 0
    assert capsys.readouterr().out == (f"{want.height} INFO alert(s) older than 30 days "
                                       "acknowledged by system_cleanup.\n")
    assert open_count(analytics, "INFO") == 0
    assert open_count(analytics, "WARNING") == alerts.filter(
        (pl.col("severity") == "WARNING") & ~pl.col("acknowledged").cast(pl.Boolean)).height

    assert main(args) == 0
    assert capsys.readouterr().out == ("No open INFO alerts older than 30 days (dated before "
                                       f"{cutoff}): nothing to acknowledge.\n")


def test_bulk_ack_checks_its_arguments_before_the_preview(
    alerts: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ack", "--severity", "INFO", "--older-than", "99999", "--by", "x"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--older-than" in err[0] and "36500" in err[0], err
    assert main(["ack", "--severity", "info", "--older-than", "30", "--by", " "]) == 2
    assert "--by" in capsys.readouterr().err


def test_single_ack_needs_no_yes(
    cli2_databases, alerts: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    _, analytics = cli2_databases
    alert_id = open_in_order(alerts)["id"][0]
    assert main(["ack", str(alert_id), "--by", "Dana Wu", "--note", "POS outage"]) == 0
    assert capsys.readouterr().out == f"Alert {alert_id} acknowledged by Dana Wu.\n"
    table = schema.store_anomaly_alerts
    with analytics.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.id == alert_id)).one()
    assert (bool(row.acknowledged), row.acknowledged_by, row.ack_note) == (
        True, "Dana Wu", "POS outage")


# ---------------------------------------------------------------------------- rendering


def test_tables_for_people_wrap_and_show_no_dtypes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    grid = pl.DataFrame({
        "store_id": [1101, 1110], "store_name": ["Midtown Manhattan", "Irvine Spectrum"],
        "health_score": [83.4123, None], "health_status": ["HEALTHY", "INSUFFICIENT_DATA"],
        "sales_score": [78.01, None], "operations_score": [81.88, None],
        "staffing_score": [83.15, None], "quality_score": [99.0, None]})
    rows = pl.DataFrame([dict(r, id=i) for i, r in enumerate(alert_rows()[:3], start=1)])
    render.print_tables(("Health grid:", render.health_table(grid)),
                        ("Top open alerts:", render.alerts_table(rows)))
    out = capsys.readouterr().out
    assert not [line for line in out.splitlines() if DTYPE_ROW.match(line.strip())]
    assert "┆" not in out and "---" not in out and "…" not in out and "null" not in out
    flat = " ".join(out.split())
    assert {"Midtown", "Manhattan", "Irvine", "Spectrum"} <= set(flat.split())  # may wrap
    assert "83.4" in out and "83.4123" not in out
    for description in rows["description_en"]:
        assert description in flat
    assert all(len(line) <= 80 for line in out.splitlines())
    assert out == out.rstrip() + "\n" and all(line == line.rstrip() for line in out.splitlines())


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_terminals_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # asks for colours, not for a terminal
    with render.step_progress("Running") as progress:
        assert progress is None  # pytest captures stderr: not a terminal
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with render.step_progress("Running", quiet=True) as progress:
        assert progress is None  # -q draws nothing
    assert terminal.getvalue() == ""
    with render.step_progress("Running") as progress:
        assert callable(progress)
        progress("store_kpi_daily", 3, 15)
    drawn = ANSI.sub("", terminal.getvalue())
    assert "Running: store_kpi_daily" in drawn and "3/15 steps" in drawn


# ---------------------------------------------------------------------------- the demo


def _read_all(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the terminal closed
            return
        if not chunk:
            return
        into.append(chunk)


@pytest.fixture(scope="module")
def demo_run() -> Iterator[tuple[subprocess.CompletedProcess, str, Path]]:
    """`store-anomaly demo --scale 0.05`, stdout to a pipe, stderr to a pseudo-terminal."""
    with tempfile.TemporaryDirectory(prefix="cli2-demo-", dir=SCRATCH) as folder:
        root = Path(folder)
        env = without_settings(dict(os.environ))
        env.update(STORE_ANOMALY_DATA_DIR=str(root / "data"),
                   DAGSTER_HOME=str(root / "dagster_home"), COLUMNS="100")
        env.pop("FORCE_TERMINAL", None)
        master, slave = pty.openpty()
        terminal: list[bytes] = []
        reader = threading.Thread(target=_read_all, args=(master, terminal), daemon=True)
        reader.start()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "store_anomaly_assets.cli", "demo", "--scale", "0.05"],
                cwd=root, env=env, stdout=subprocess.PIPE, stderr=slave, text=True)
            os.close(slave)
            out, _ = proc.communicate(timeout=600)
        finally:
            reader.join(timeout=10)
            os.close(master)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
        yield result, b"".join(terminal).decode("utf-8", "replace"), root / "data"


@pytest.mark.integration
def test_demo_prints_tables_for_people(demo_run) -> None:
    result, terminal, data_dir = demo_run
    assert result.returncode == 0, terminal[-2000:]
    out = result.stdout
    assert "Health grid on 2026-02-15:" in out and "Top open alerts:" in out
    lines = out.splitlines()
    assert not [line for line in lines if DTYPE_ROW.match(line.strip())]
    assert "┆" not in out and "…" not in out and "null" not in out
    assert any(re.match(r"Store\s+Name\s+Health\s+Status", line) for line in lines)
    ground_truth = next(i for i, line in enumerate(lines) if line.startswith("Ground truth"))
    table_lines = lines[lines.index("Health grid on 2026-02-15:"):ground_truth]
    assert all(len(line) <= 100 for line in table_lines)
    assert "\x1b[" not in out  # no colour codes in captured output
    engine = sa.create_engine(f"sqlite:///{data_dir / 'test.sqlite'}")
    try:
        top = read_frame(engine, sa.text(
            "SELECT id, description_en FROM store_anomaly_alerts WHERE NOT acknowledged"))
    finally:
        engine.dispose()
    shown = listed_ids(out)
    assert len(shown) == 10 and set(shown) <= set(top["id"])
    flat = " ".join(out.split())
    for row in top.filter(pl.col("id").is_in(shown)).iter_rows(named=True):
        assert row["description_en"] in flat  # wrapped, never cut mid-number


@pytest.mark.integration
def test_demo_progress_goes_to_the_terminal_only(demo_run) -> None:
    result, terminal, _ = demo_run
    assert "Generating" in terminal and "Backfilling" in terminal
    drawn = ANSI.sub("", terminal)
    assert re.search(r"\b15/15 steps\b", drawn), drawn[-2000:]
    assert "Backfilling:" not in result.stdout and "steps" not in result.stdout
