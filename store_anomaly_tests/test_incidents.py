"""Incidents in the analytics database: grouping, stable ids, acknowledgment, status."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

import polars as pl
import pytest
import sqlalchemy as sa

from store_anomaly_assets.core.alerts import ALERT_COLUMNS, describe, recommend
from store_anomaly_assets.core.contracts import ALERT_SCHEMA
from store_anomaly_assets.db.analytics.incidents import acknowledge_incident
from store_anomaly_assets.db.analytics.init_db import init_db
from store_anomaly_assets.db.analytics.schema import (
    store_anomaly_alerts,
    store_anomaly_incidents,
    store_kpi_daily,
)
from store_anomaly_assets.db.analytics.writes import merge_alerts
from store_anomaly_assets.db.engines import create_engine

SCRATCH_DB = "sat_incidents"
D1 = date(2026, 1, 12)
NOW = datetime(2026, 1, 20, 12, 0)
STORES = [1, 2]


@pytest.fixture(scope="module")
def scratch(server: sa.Engine) -> Iterator[sa.Engine]:
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{SCRATCH_DB}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{SCRATCH_DB}` CHARACTER SET utf8mb4")
    engine = create_engine(server.url.set(database=SCRATCH_DB), read_only=False)
    init_db(engine)
    yield engine
    engine.dispose()
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{SCRATCH_DB}`")


@pytest.fixture
def db(scratch: sa.Engine) -> sa.Engine:
    with scratch.begin() as conn:
        for table in (store_anomaly_alerts, store_anomaly_incidents, store_kpi_daily):
            conn.execute(table.delete())
    return scratch


def alert(store_id: int, day: int, metric: str = "revenue", severity: str = "CRITICAL",
          impact: float = 100.0) -> dict:
    row = {"store_id": store_id, "alert_date": D1 + timedelta(days=day), "metric_name": metric,
           "store_name": f"Store {store_id}", "severity": severity, "metric_value": 50.0,
           "expected_value": 100.0, "z_score": -4.0, "rules_violated": "WE1",
           "scope": "STORE", "impact_usd": impact}
    row["description_en"], row["description_zh"] = describe(row)
    row["recommended_action"], row["recommended_action_zh"] = recommend(severity, metric)
    return row


def merge(engine: sa.Engine, rows: list[dict], first: int = 0, last: int = 6):
    frame = pl.DataFrame(rows, schema=ALERT_SCHEMA).select(ALERT_COLUMNS)
    return merge_alerts(engine, frame, D1 + timedelta(days=first), D1 + timedelta(days=last),
                        STORES, "run", NOW)


def incidents(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(store_anomaly_incidents).order_by(
            store_anomaly_incidents.c.store_id, store_anomaly_incidents.c.first_date))
        return [dict(r._mapping) for r in rows]


def links(engine: sa.Engine) -> dict[tuple[int, date, str], int]:
    a = store_anomaly_alerts
    with engine.connect() as conn:
        rows = conn.execute(sa.select(a.c.store_id, a.c.alert_date, a.c.metric_name,
                                      a.c.incident_id))
        return {(s, d, m): i for s, d, m, i in rows}


def test_alerts_of_a_cause_form_one_incident(db: sa.Engine) -> None:
    rows = [alert(1, 0), alert(1, 0, "order_count", "WARNING", 80.0), alert(1, 1),
            alert(1, 4, "headcount", "WARNING", 20.0), alert(2, 0, "aov", "INFO", 5.0)]
    result = merge(db, rows)
    found = incidents(db)
    assert [(i["store_id"], i["first_date"], i["last_date"], i["severity"], i["alert_count"])
            for i in found] == [
        (1, D1, D1 + timedelta(days=1), "CRITICAL", 3),
        (1, D1 + timedelta(days=4), D1 + timedelta(days=4), "WARNING", 1),
        (2, D1, D1, "INFO", 1)]
    assert found[0]["primary_metric"] == "revenue" and found[0]["dimensions"] == "sales"
    assert found[0]["impact_usd"] == 200.0  # per day the largest, summed over the days
    assert "Same incident: order count" in found[0]["description_en"]
    assert result.incidents.inserted == 3
    linked = links(db)
    assert {linked[(1, D1, "revenue")], linked[(1, D1, "order_count")],
            linked[(1, D1 + timedelta(days=1), "revenue")]} == {found[0]["id"]}

    # A recompute keeps every id; a new day that continues the chain joins it.
    again = merge(db, [*rows, alert(1, 2)])
    assert again.incidents.inserted == 0
    after = incidents(db)
    assert [i["id"] for i in after] == [i["id"] for i in found]
    assert after[0]["last_date"] == D1 + timedelta(days=2)
    # ... and one that bridges the gap merges the two incidents under the larger one's id.
    bridged = merge(db, [*rows, alert(1, 2), alert(1, 3)])
    assert bridged.incidents.removed == 1
    assert [(i["id"], i["alert_count"]) for i in incidents(db) if i["store_id"] == 1] == [
        (found[0]["id"], 6)]


def test_an_acknowledged_incident_is_closed_and_kept(db: sa.Engine) -> None:
    merge(db, [alert(1, 0), alert(1, 0, "order_count")])
    [first] = incidents(db)
    assert acknowledge_incident(db, first["id"], "Dana Wu", "POS outage") == 2
    with pytest.raises(ValueError, match="already acknowledged by Dana Wu"):
        acknowledge_incident(db, first["id"], "Dana Wu")
    with pytest.raises(LookupError, match="incident 999999 does not exist"):
        acknowledge_incident(db, 999999, "Dana Wu")
    # The drop goes on the next day: a new incident, which will page; the first keeps
    # its alerts and acknowledgment through the recompute.
    merge(db, [alert(1, 0), alert(1, 0, "order_count"), alert(1, 1)])
    kept, new = incidents(db)
    assert (kept["id"], kept["status"], kept["acknowledged_by"], kept["ack_note"]) == (
        first["id"], "ACKNOWLEDGED", "Dana Wu", "POS outage")
    assert kept["alert_count"] == 2
    assert new["first_date"] == D1 + timedelta(days=1) and new["acknowledged_at"] is None
    # An acknowledged incident survives a recompute that no longer raises its alerts.
    merge(db, [])
    assert [i["id"] for i in incidents(db)] == [first["id"]]


def test_status_follows_the_newest_day_and_explained_incidents_go(db: sa.Engine) -> None:
    with db.begin() as conn:
        conn.execute(store_kpi_daily.insert(), [
            {"store_id": 1, "metric_date": D1 + timedelta(days=d)} for d in range(4)])
    merge(db, [alert(1, 0), alert(1, 3, "aov", "WARNING")])
    assert [i["status"] for i in incidents(db)] == ["RESOLVED", "OPEN"]
    # Late records explain the first day away: its unacknowledged incident goes with it.
    result = merge(db, [alert(1, 3, "aov", "WARNING")])
    assert result.incidents.removed == 1
    assert [i["first_date"] for i in incidents(db)] == [D1 + timedelta(days=3)]
