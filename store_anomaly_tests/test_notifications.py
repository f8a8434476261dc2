"""Alert and data-team notifications, end to end over loopback only.

A real SMTP server (aiosmtpd) and a real HTTP receiver (http.server) on 127.0.0.1, the
real MariaDB with a scratch database `satn_notify` (the analytics schema plus a small
`t_shop_info`), real apprise, real Dagster sensors evaluated with an injected clock. The
shared backfill and the `test` database are not touched.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
import yaml
from sinks import SmtpSink, free_port

from store_anomaly_assets import notify as nf
from store_anomaly_assets.config import NotifySettings
from store_anomaly_assets.core.alerts import ALERT_COLUMNS, describe, recommend
from store_anomaly_assets.db.analytics.init_db import init_db
from store_anomaly_assets.db.analytics.schema import store_anomaly_alerts, store_anomaly_incidents
from store_anomaly_assets.db.analytics.writes import merge_alerts
from store_anomaly_assets.db.engines import create_engine
from store_anomaly_assets.db.sources.schema import t_shop_info
from store_anomaly_assets.defs.resources import Database
from store_anomaly_assets.defs.sensors import (
    build_alert_notification_sensor,
    build_check_failure_sensor,
    build_run_failure_sensor,
)

SCRATCH_DB = "satn_notify"
NY = ZoneInfo("America/New_York")
DAY = date(2026, 1, 15)  # a Thursday; the alerts' business day
NOTIFY = NotifySettings(lookback_days=7, timeout_seconds=10, max_alerts_per_message=50)

STORES = [  # dept_id, name, name_cn, district, region (district names repeat by region)
    (1101, "Midtown Manhattan", "曼哈顿中城店", "District A", "East"),
    (1102, "Wall Street", "华尔街店", "District A", "East"),
    (1103, "Brooklyn Heights", "布鲁克林高地店", "District B", "East"),
    (1108, "Santa Monica Place", "圣莫尼卡广场店", "District A", "West"),
]


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY)


# --------------------------------------------------------------------------------------
# Receivers


@dataclass
class HttpSink:
    """http.server in a thread on loopback, keeping every JSON body posted to it."""

    port: int
    posts: list[tuple[str, dict]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> HttpSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server hook name
                length = int(self.headers.get("Content-Length", 0))
                sink.posts.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def take(self) -> list[tuple[str, dict]]:
        taken, self.posts = self.posts, []
        return taken


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.controller.start()
    yield sink
    sink.controller.stop()


@pytest.fixture(scope="module")
def http() -> Iterator[HttpSink]:
    sink = HttpSink(free_port()).start()
    yield sink
    sink.stop()


# --------------------------------------------------------------------------------------
# The scratch database


@pytest.fixture(scope="module")
def scratch(server: sa.Engine) -> Iterator[sa.Engine]:
    """`satn_notify`: the analytics tables and a t_shop_info, created for these tests."""
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{SCRATCH_DB}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{SCRATCH_DB}` CHARACTER SET utf8mb4")
    engine = create_engine(server.url.set(database=SCRATCH_DB), read_only=False)
    init_db(engine)
    t_shop_info.create(engine)
    with engine.begin() as conn:
        conn.execute(t_shop_info.insert(), [
            {"dept_id": i, "shop_name": n, "shop_name_cn": cn, "city": "", "state": "",
             "district": d, "region": r, "shop_status": 1, "is_deleted": 0}
            for i, n, cn, d, r in STORES
        ])
    yield engine
    engine.dispose()
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{SCRATCH_DB}`")


@pytest.fixture()
def alerts_table(scratch: sa.Engine) -> sa.Engine:
    with scratch.begin() as conn:
        conn.execute(store_anomaly_alerts.delete())
        conn.execute(store_anomaly_incidents.delete())
    return scratch


def databases() -> dict[str, Database]:
    common = {"database": SCRATCH_DB, "host": "127.0.0.1", "port": 3306, "user": "root"}
    return {"analytics": Database(**common, read_only=False),
            "opshop": Database(**common, read_only=True)}


def alert(store_id: int, metric: str, severity: str, value: float, expected: float,
          z: float | None, rules: str, day: date = DAY) -> dict:
    name = next(n for i, n, *_ in STORES if i == store_id)
    row = {"store_id": store_id, "alert_date": day, "metric_name": metric, "store_name": name,
           "severity": severity, "metric_value": value, "expected_value": expected,
           "z_score": z, "rules_violated": rules, "scope": "STORE",
           "impact_usd": round(expected - value, 2) if metric == "revenue" else None}
    row["description_en"], row["description_zh"] = describe(row)
    row["recommended_action"], row["recommended_action_zh"] = recommend(severity, metric)
    return row


def merge(engine: sa.Engine, rows: list[dict], start: date = DAY, end: date = DAY) -> None:
    """Write alerts the way the pipeline does (merge_alerts keeps notified_at and acks)."""
    frame = pl.DataFrame(rows, infer_schema_length=None).select(ALERT_COLUMNS)
    merge_alerts(engine, frame, start, end, [s[0] for s in STORES], "test-run",
                 datetime(2026, 1, 16, 12, 0))


def alert_rows(engine: sa.Engine) -> dict[tuple[int, str], dict]:
    t = store_anomaly_alerts
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.id, t.c.store_id, t.c.metric_name, t.c.severity,
                                      t.c.notified_at, t.c.description_en,
                                      t.c.description_zh, t.c.incident_id)).mappings().all()
    return {(r["store_id"], r["metric_name"]): dict(r) for r in rows}


def write_routing(path: Path, recipients: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({
        "schedule": {"timezone": "America/New_York", "daily_at": "08:00",
                     "weekly_on": "monday", "weekly_at": "08:00"},
        "recipients": recipients,
    }, allow_unicode=True))
    return path


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def tick(sensor: dg.SensorDefinition, cursor: str | None,
         instance: dg.DagsterInstance | None = None,
         definitions: dg.Definitions | None = None, **resources) -> str | None:
    """Evaluate a sensor once, as the daemon would; returns the cursor it leaves."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions,
                                      resources=resources or None)
    return sensor.evaluate_tick(context).cursor


# --------------------------------------------------------------------------------------
# (a), (b): who gets what, once


def test_alerts_reach_exactly_their_recipients_once(
    alerts_table: sa.Engine, smtp: SmtpSink, http: HttpSink, tmp_path: Path
) -> None:
    smtp.take(), http.take()
    routing = write_routing(tmp_path / "routing.yaml", [
        {"id": "sm-1101", "name": "SM Midtown", "role": "store_manager", "stores": [1101],
         "urls": [http.url("sm-1101")]},
        {"id": "sm-1103", "name": "SM Brooklyn", "role": "store_manager", "stores": [1103],
         "urls": [smtp.url("sm-1103@example.com")]},
        {"id": "dm-east-a", "name": "DM East A", "role": "district_manager",
         "districts": [{"region": "East", "district": "District A"}],
         "urls": [smtp.url("dm-east-a@example.com")]},
        {"id": "dm-east-b", "name": "DM East B", "role": "district_manager",
         "districts": [{"region": "East", "district": "District B"}],
         "urls": [smtp.url("dm-east-b@example.com")]},
        {"id": "dm-west-a", "name": "DM West A", "role": "district_manager",
         "districts": [{"region": "West", "district": "District A"}],
         "urls": [smtp.url("dm-west-a@example.com")]},
        {"id": "vp-east", "name": "VP East", "role": "regional_vp", "regions": ["East"],
         "urls": [smtp.url("vp-east@example.com")]},
        {"id": "vp-west", "name": "VP West", "role": "regional_vp", "regions": ["West"],
         "urls": [smtp.url("vp-west@example.com")]},
        {"id": "ops", "name": "Ops Director", "role": "operations_director",
         "urls": [smtp.url("ops@example.com"), http.url("ops")]},
        {"id": "data", "name": "Data team", "role": "data_team", "urls": [http.url("data")]},
    ])
    rows = [
        alert(1101, "revenue", "CRITICAL", 3200.0, 4012.5, -3.6, "WE1"),
        alert(1108, "revenue", "CRITICAL", 2500.0, 4000.0, -4.1, "WE1"),
        alert(1102, "order_count", "WARNING", 610.0, 720.0, -2.4, "Z>2"),
        alert(1103, "order_count", "WARNING", 500.0, 600.0, -2.2, "Z>2"),  # acknowledged
        alert(1101, "avg_production_seconds", "INFO", 160.0, 150.0, 1.1, "WE5"),
        alert(1103, "revenue", "CRITICAL", 1000.0, 3000.0, -5.0, "WE1",
              day=date(2025, 12, 1)),  # older than NOTIFY_LOOKBACK_DAYS
    ]
    merge(alerts_table, rows[:5])
    merge(alerts_table, rows[5:], date(2025, 12, 1), date(2025, 12, 1))
    with alerts_table.begin() as conn:
        conn.execute(store_anomaly_alerts.update()
                     .where(store_anomaly_alerts.c.store_id == 1103,
                            store_anomaly_alerts.c.metric_name == "order_count")
                     .values(acknowledged=True, acknowledged_by="dm-east-b"))

    clock = Clock(local(date(2026, 1, 16), 7, 0))  # Friday 07:00, before the daily digest
    sensor = build_alert_notification_sensor(routing_file=routing, clock=clock, notify=NOTIFY)
    cursor = tick(sensor, None, **databases())

    # CRITICAL at once: regional VP, operations director and district manager, each once.
    mails = smtp.take()
    by_to = {m.to[0]: m for m in mails}
    assert sorted(m.to[0] for m in mails) == sorted([
        "dm-east-a@example.com", "vp-east@example.com", "ops@example.com",
        "dm-west-a@example.com", "vp-west@example.com",
    ])
    posts = http.take()
    assert [p for p, _ in posts] == ["/ops"]
    state = alert_rows(alerts_table)
    midtown, santa_monica = state[(1101, "revenue")], state[(1108, "revenue")]
    vp_east = by_to["vp-east@example.com"]
    assert "CRITICAL" in vp_east.subject and "严重" in vp_east.subject
    assert midtown["description_en"] in vp_east.text
    assert midtown["description_zh"] in vp_east.text
    assert "营业额" in vp_east.text and "曼哈顿中城店" in vp_east.text
    assert f"Alert id 告警编号: {midtown['id']} " in vp_east.text
    # Acknowledgment is per incident: the message says which and how.
    assert midtown["incident_id"] is not None
    assert (f"store-anomaly ack --incident {midtown['incident_id']} --by NAME"
            in vp_east.text)
    assert santa_monica["description_en"] not in vp_east.text  # the other region's
    # The operations director gets both in one message: the larger revenue gap first.
    for text in (by_to["ops@example.com"].text, posts[0][1]["message"]):
        assert text.index(santa_monica["description_en"]) < text.index(
            midtown["description_en"])
    assert posts[0][1]["type"] == "failure"
    assert midtown["notified_at"] is not None and santa_monica["notified_at"] is not None
    assert state[(1102, "order_count")]["notified_at"] is None  # WARNING waits for 08:00
    assert state[(1101, "avg_production_seconds")]["notified_at"] is None

    # (b) The next tick, and a pipeline rerun that recomputes the same alerts: nothing new.
    clock.now += timedelta(minutes=5)
    cursor = tick(sensor, cursor, **databases())
    merge(alerts_table, rows[:5])
    clock.now += timedelta(minutes=5)
    cursor = tick(sensor, cursor, **databases())
    assert smtp.take() == [] and http.take() == []

    # The daily digest at 08:00: WARNING to the district manager only; the acknowledged
    # WARNING and the stale CRITICAL never go out.
    clock.now = local(date(2026, 1, 16), 8, 5)
    cursor = tick(sensor, cursor, **databases())
    mails = smtp.take()
    assert [m.to for m in mails] == [["dm-east-a@example.com"]]
    assert "WARNING" in mails[0].subject and "警告" in mails[0].subject
    assert state[(1102, "order_count")]["description_zh"] in mails[0].text
    assert http.take() == []
    clock.now += timedelta(minutes=5)
    cursor = tick(sensor, cursor, **databases())
    assert smtp.take() == [] and http.take() == []

    # The weekly digest on Monday 08:00: INFO to the store manager.
    clock.now = local(date(2026, 1, 19), 8, 5)
    cursor = tick(sensor, cursor, **databases())
    assert smtp.take() == []
    posts = http.take()
    assert [p for p, _ in posts] == ["/sm-1101"]
    info = alert_rows(alerts_table)[(1101, "avg_production_seconds")]
    assert info["description_en"] in posts[0][1]["message"]
    assert info["description_zh"] in posts[0][1]["message"]

    # Escalation: a recompute raises the WARNING to CRITICAL, which clears notified_at;
    # the next tick tells the VP, the director and the district manager.
    rows[2] = alert(1102, "order_count", "CRITICAL", 400.0, 720.0, -3.9, "WE1")
    merge(alerts_table, rows[:5])
    clock.now += timedelta(minutes=5)
    tick(sensor, cursor, **databases())
    assert sorted(m.to[0] for m in smtp.take()) == [
        "dm-east-a@example.com", "ops@example.com", "vp-east@example.com"]
    assert [p for p, _ in http.take()] == ["/ops"]
    state = alert_rows(alerts_table)
    assert all(r["notified_at"] is not None for k, r in state.items()
               if k != (1103, "order_count") and k != (1103, "revenue"))
    assert state[(1103, "order_count")]["notified_at"] is None
    assert state[(1103, "revenue")]["notified_at"] is None


# --------------------------------------------------------------------------------------
# (c) A receiver that is down


def test_a_down_receiver_gets_the_alert_when_it_comes_up(
    alerts_table: sa.Engine, smtp: SmtpSink, tmp_path: Path
) -> None:
    smtp.take()
    down = HttpSink(free_port())  # nothing listens on this port yet
    routing = write_routing(tmp_path / "routing.yaml", [
        {"id": "dm-east-a", "name": "DM East A", "role": "district_manager",
         "districts": [{"region": "East", "district": "District A"}],
         "urls": [smtp.url("dm-east-a@example.com")]},
        {"id": "vp-east", "name": "VP East", "role": "regional_vp", "regions": ["East"],
         "urls": [smtp.url("vp-east@example.com")]},
        {"id": "ops", "name": "Ops Director", "role": "operations_director",
         "urls": [smtp.url("ops@example.com"), down.url("ops")]},
    ])
    merge(alerts_table, [alert(1101, "revenue", "CRITICAL", 3000.0, 4000.0, -3.5, "WE1")])
    clock = Clock(local(date(2026, 1, 16), 7, 0))
    sensor = build_alert_notification_sensor(routing_file=routing, clock=clock, notify=NOTIFY)

    cursor = tick(sensor, None, **databases())
    assert sorted(m.to[0] for m in smtp.take()) == [
        "dm-east-a@example.com", "ops@example.com", "vp-east@example.com"]
    assert alert_rows(alerts_table)[(1101, "revenue")]["notified_at"] is None

    clock.now += timedelta(minutes=5)  # still down: retried, nothing resent by e-mail
    cursor = tick(sensor, cursor, **databases())
    assert smtp.take() == []
    assert alert_rows(alerts_table)[(1101, "revenue")]["notified_at"] is None

    down.start()
    try:
        clock.now += timedelta(minutes=5)
        cursor = tick(sensor, cursor, **databases())
        posts = down.take()
        assert [p for p, _ in posts] == ["/ops"]
        assert "Midtown Manhattan" in posts[0][1]["message"]
        assert smtp.take() == []
        assert alert_rows(alerts_table)[(1101, "revenue")]["notified_at"] is not None

        clock.now += timedelta(minutes=5)
        tick(sensor, cursor, **databases())
        assert down.take() == [] and smtp.take() == []
    finally:
        down.stop()


# --------------------------------------------------------------------------------------
# (d) The data team: failed checks and failed runs


@dg.asset
def tiny_asset() -> int:
    return -1


@dg.asset_check(asset=tiny_asset)
def tiny_asset_is_positive() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, metadata={"found": "value -1 is below 0"})


@dg.asset_check(asset=tiny_asset)
def tiny_asset_is_an_int() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.asset
def broken_asset() -> int:
    raise ValueError("source database timed out")


def test_a_failed_check_reaches_the_data_team_exactly_once(
    http: HttpSink, tmp_path: Path
) -> None:
    http.take()
    routing = write_routing(tmp_path / "routing.yaml", [
        {"id": "data", "name": "Data team", "role": "data_team", "urls": [http.url("data")]},
        {"id": "ops", "name": "Ops Director", "role": "operations_director",
         "urls": [http.url("ops")]},
    ])
    checks = build_check_failure_sensor(routing_file=routing, notify=NOTIFY)
    runs = build_run_failure_sensor(routing_file=routing, notify=NOTIFY)
    # The code location, so the check sensor keeps to its own checks as in production.
    defs = dg.Definitions(assets=[tiny_asset, broken_asset],
                          asset_checks=[tiny_asset_is_positive, tiny_asset_is_an_int],
                          sensors=[checks, runs])
    with dg.instance_for_test(temp_dir=tempfile.mkdtemp()) as instance:
        check_cursor = tick(checks, None, instance, defs)  # starts from now
        run_cursor = tick(runs, None, instance)

        result = dg.materialize(
            [tiny_asset, tiny_asset_is_positive, tiny_asset_is_an_int], instance=instance
        )
        assert result.success  # a failed check does not fail the run...
        run_cursor = tick(runs, run_cursor, instance)
        assert http.take() == []  # ...so the run-failure sensor has nothing to say

        check_cursor = tick(checks, check_cursor, instance, defs)
        posts = http.take()
        assert [p for p, _ in posts] == ["/data"]
        message = posts[0][1]["message"]
        assert "tiny_asset_is_positive" in message and "value -1 is below 0" in message
        assert "tiny_asset_is_an_int" not in message
        assert result.run_id in message

        check_cursor = tick(checks, check_cursor, instance, defs)
        assert http.take() == []

        failed = dg.materialize([broken_asset], instance=instance, raise_on_error=False)
        assert not failed.success
        run_cursor = tick(runs, run_cursor, instance)
        check_cursor = tick(checks, check_cursor, instance, defs)
        posts = http.take()
        assert [p for p, _ in posts] == ["/data"]  # one message, from the run sensor
        assert failed.run_id in posts[0][1]["message"]
        assert "source database timed out" in posts[0][1]["message"]
        tick(runs, run_cursor, instance)
        tick(checks, check_cursor, instance, defs)
        assert http.take() == []


# --------------------------------------------------------------------------------------
# The routing file and the pure helpers


def test_routing_file_errors_name_the_place(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SATN_MISSING", raising=False)
    cases = [
        ({"recipients": [{"name": "X", "role": "ceo", "urls": ["json://h/x"],
                          "all_stores": True}]}, "recipients[0] (X).role"),
        ({"recipients": [{"name": "X", "role": "district_manager",
                          "urls": ["json://h/x"]}]}, "needs stores, districts or regions"),
        ({"recipients": [{"name": "X", "role": "store_manager", "stores": [1101],
                          "urls": ["json://h/${SATN_MISSING}"]}]}, "SATN_MISSING is not set"),
        ({"recipients": [{"name": "X", "role": "store_manager", "stores": [1101],
                          "urls": ["nosuchservice://secret@h"]}]}, "nosuchservice://"),
        ({"schedule": {"weekly_on": "funday"}, "recipients": []}, "schedule.weekly_on"),
    ]
    for raw, expected in cases:
        with pytest.raises(nf.RoutingError, match=re.escape(expected)):
            nf.parse_routing(raw)
    with pytest.raises(nf.RoutingError) as info:
        nf.parse_routing({"recipients": [{"name": "X", "role": "store_manager", "stores": [1],
                                          "urls": ["nosuchservice://secret@h"]}]})
    assert "secret" not in str(info.value)
    toml = tmp_path / "routing.toml"
    toml.write_text('[schedule]\ndaily_at = 07:30:00\n\n[[recipients]]\nname = "Ops"\n'
                    'role = "operations_director"\nurls = ["json://127.0.0.1:9/ops"]\n')
    routing = nf.load_routing(toml)
    assert routing.schedule.daily_at.hour == 7 and routing.recipients[0].all_stores


def test_digest_slots_and_message_order() -> None:
    schedule = nf.DigestSchedule()
    friday_7 = local(date(2026, 1, 16), 7, 0)
    done = nf.initial_digest_state(schedule, friday_7)
    assert set(nf.due_cadences(schedule, friday_7, done)) == {"immediate"}
    assert set(nf.due_cadences(schedule, local(date(2026, 1, 16), 8, 0), done)) == {
        "immediate", "daily"}
    assert set(nf.due_cadences(schedule, local(date(2026, 1, 19), 8, 0), done)) == {
        "immediate", "daily", "weekly"}

    routing = nf.parse_routing({"recipients": [
        {"id": "ops", "name": "Ops", "role": "operations_director",
         "urls": ["json://127.0.0.1:9/a", "json://127.0.0.1:9/b"]}]})
    alerts = pl.DataFrame([
        {"id": 1, "severity": "WARNING", "impact_usd": 900.0},
        {"id": 2, "severity": "CRITICAL", "impact_usd": None},
        {"id": 3, "severity": "CRITICAL", "impact_usd": 50.0},
    ]).with_columns(store_id=pl.lit(1101), alert_date=pl.lit(DAY), metric_name=pl.lit("revenue"),
                    store_name=pl.lit("S"), description_en=pl.col("id").cast(pl.String),
                    description_zh=pl.lit("中"), recommended_action=pl.lit(""),
                    recommended_action_zh=pl.lit(""))
    routing = nf.Routing(routing.recipients, escalation={
        "CRITICAL": nf.EscalationStep(("operations_director",), "immediate"),
        "WARNING": nf.EscalationStep(("operations_director",), "daily")})
    plan = nf.plan_alert_notifications(alerts, routing)
    assert [m.items for m in plan.messages] == [("3:CRITICAL", "2:CRITICAL", "1:WARNING")] * 2
    # One channel accepted, one failed: nothing is settled, and only the failed one resends.
    delivered = nf.record_deliveries({}, plan.messages, [True, False])
    assert nf.settle(plan.required, delivered) == []
    again = nf.plan_alert_notifications(alerts, routing, delivered)
    assert [m.channel.url for m in again.messages] == ["json://127.0.0.1:9/b"]
    delivered = nf.record_deliveries(delivered, again.messages, [True])
    assert nf.settle(plan.required, delivered) == ["1:WARNING", "2:CRITICAL", "3:CRITICAL"]


@pytest.mark.parametrize("failure", ["check", "run"])
def test_a_data_team_channel_that_was_down_gets_the_failure_later(
    failure: str, http: HttpSink, tmp_path: Path
) -> None:
    http.take()
    down = HttpSink(free_port())
    routing = write_routing(tmp_path / "routing.yaml", [
        {"id": "data", "name": "Data team", "role": "data_team",
         "urls": [http.url("data"), down.url("data-pager")]},
    ])
    build = build_check_failure_sensor if failure == "check" else build_run_failure_sensor
    sensor = build(routing_file=routing, notify=NOTIFY)
    with dg.instance_for_test(temp_dir=tempfile.mkdtemp()) as instance:
        cursor = tick(sensor, None, instance)
        if failure == "check":
            run = dg.materialize([tiny_asset, tiny_asset_is_positive], instance=instance)
            expected = "tiny_asset_is_positive"
        else:
            run = dg.materialize([broken_asset], instance=instance, raise_on_error=False)
            expected = "broken_asset: ValueError: source database timed out"
        cursor = tick(sensor, cursor, instance)
        assert [p for p, _ in http.take()] == ["/data"]
        cursor = tick(sensor, cursor, instance)  # the pager is still down: nothing twice
        assert http.take() == []
        down.start()
        try:
            cursor = tick(sensor, cursor, instance)
            posts = down.take()
            assert [p for p, _ in posts] == ["/data-pager"]
            assert expected in posts[0][1]["message"] and run.run_id in posts[0][1]["message"]
            tick(sensor, cursor, instance)
            assert down.take() == [] and http.take() == []
        finally:
            down.stop()


def test_the_run_failure_sensor_keeps_to_its_code_location(
    http: HttpSink, tmp_path: Path
) -> None:
    http.take()
    routing = write_routing(tmp_path / "routing.yaml", [
        {"id": "data", "name": "Data team", "role": "data_team", "urls": [http.url("data")]},
    ])
    runs = build_run_failure_sensor(routing_file=routing, notify=NOTIFY)
    ours = dg.Definitions(assets=[tiny_asset], sensors=[runs],
                          jobs=[dg.define_asset_job("tiny_job", [tiny_asset])])
    with dg.instance_for_test(temp_dir=tempfile.mkdtemp()) as instance:
        cursor = tick(runs, None, instance, ours)
        # A failed run of a job this code location does not define: not ours to report.
        dg.materialize([broken_asset], instance=instance, raise_on_error=False)
        cursor = tick(runs, cursor, instance, ours)
        assert http.take() == []
        assert json.loads(cursor)["after"] > -1  # ...and not retried either
