"""Transactional writes of partition ranges to the analytics tables.

Every write is one transaction: a failure leaves the previous rows in place. Ranges are
replaced for exactly the stores processed, so a narrowed allow-list or a store that has
since closed never loses its history. Alerts are merged, never replaced, because their
acknowledgments are user data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.db.analytics.incidents import IncidentMerge, merge_incidents
from store_anomaly_assets.db.analytics.schema import (
    store_anomaly_alerts,
    store_anomaly_scores,
    store_data_quality,
    store_health_scores,
    store_kpi_daily,
)
from store_anomaly_assets.db.frames import frame_rows

_CHUNK = 5000


def _insert(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    for i in range(0, len(rows), _CHUNK):
        conn.execute(table.insert(), rows[i : i + _CHUNK])


def replace_range(
    engine: sa.Engine,
    table: sa.Table,
    frame: pl.DataFrame,
    start: date,
    end: date,
    store_ids: Sequence[int],
    audit: dict,
) -> int:
    """Replace the rows of `store_ids` dated start..end with `frame`, atomically."""
    with engine.begin() as conn:
        return _replace(conn, table, frame, start, end, store_ids, audit)


def _replace(
    conn: sa.Connection,
    table: sa.Table,
    frame: pl.DataFrame,
    start: date,
    end: date,
    store_ids: Sequence[int],
    audit: dict,
    chain_rows: bool = False,
) -> int:
    outside = frame.filter(~pl.col("metric_date").is_between(start, end))
    if not outside.is_empty():
        raise ValueError(
            f"{table.name}: refusing to write {outside.height} row(s) outside "
            f"{start}..{end}, e.g. store {outside['store_id'][0]} on {outside['metric_date'][0]}"
        )
    columns = [c.name for c in table.columns if c.name in frame.columns]
    rows = frame_rows(frame, columns)
    for row in rows:
        row.update(audit)
    stores = table.c.store_id.in_(list(store_ids))
    if chain_rows:
        stores = stores | table.c.store_id.is_(None)
    conn.execute(table.delete().where(table.c.metric_date.between(start, end), stores))
    _insert(conn, table, rows)
    return len(rows)


def replace_findings(
    engine: sa.Engine,
    frame: pl.DataFrame,
    start: date,
    end: date,
    store_ids: Sequence[int],
    audit: dict,
) -> int:
    """Replace the range's data-quality findings: the stores' and the chain-wide ones."""
    with engine.begin() as conn:
        return _replace(conn, store_data_quality, frame, start, end, store_ids, audit,
                        chain_rows=True)


def replace_kpis(
    engine: sa.Engine,
    frame: pl.DataFrame,
    start: date,
    end: date,
    store_ids: Sequence[int],
    audit: dict,
) -> int:
    """Replace the KPI range, and in the same transaction drop what described lost days.

    A store-day whose KPIs are gone (a closure, a source that lost its rows) must not keep
    scores, health or open alerts from an earlier run: if a later step fails, the tables
    still agree. Acknowledged alerts are user data and stay.
    """
    k = store_kpi_daily
    with engine.begin() as conn:
        written = _replace(conn, k, frame, start, end, store_ids, audit)
        for table, date_column, keep in (
            (store_anomaly_scores, "metric_date", None),
            (store_health_scores, "metric_date", None),
            (store_anomaly_alerts, "alert_date", store_anomaly_alerts.c.acknowledged),
        ):
            day = table.c[date_column]
            has_kpis = sa.exists().where(k.c.store_id == table.c.store_id,
                                         k.c.metric_date == day)
            where = [day.between(start, end), table.c.store_id.in_(list(store_ids)), ~has_kpis]
            if keep is not None:
                where.append(keep.is_(False))
            conn.execute(table.delete().where(*where))
    return written


@dataclass(frozen=True)
class AlertMerge:
    inserted: int
    updated: int
    removed: int
    kept_acknowledged: int
    incidents: IncidentMerge


# Columns a recompute may change; acknowledgment, notification and creation are the
# user's and the notifier's, and survive.
_RECOMPUTED = (
    "store_name", "severity", "metric_value", "expected_value", "z_score", "rules_violated",
    "scope", "impact_usd", "description_en", "description_zh", "recommended_action",
    "recommended_action_zh",
)
_KEY = ("store_id", "alert_date", "metric_name")


def merge_alerts(
    engine: sa.Engine,
    alerts: pl.DataFrame,
    start: date,
    end: date,
    store_ids: Sequence[int],
    run_id: str,
    now: datetime,
) -> AlertMerge:
    """Merge recomputed alerts for start..end into the table in one transaction.

    New conditions are inserted; existing ones are updated in place (keeping `id`,
    acknowledgment and `created_at`; a changed severity clears `notified_at` so the
    escalation is notified); unacknowledged alerts whose condition no longer holds are
    removed; acknowledged ones are always kept. In the same transaction the alerts are
    grouped into incidents (db/analytics/incidents.py).
    """
    t = store_anomaly_alerts
    fresh = {tuple(r[k] for k in _KEY): r for r in frame_rows(alerts, [*_KEY, *_RECOMPUTED])}
    inserted = updated = removed = kept = 0
    with engine.begin() as conn:
        existing = conn.execute(
            sa.select(t.c.id, *[t.c[k] for k in _KEY], t.c.acknowledged, t.c.severity)
            .where(t.c.alert_date.between(start, end), t.c.store_id.in_(list(store_ids)))
            .with_for_update()
        ).all()
        updates, deletes = [], []
        for row in existing:
            key = (row.store_id, row.alert_date, row.metric_name)
            new = fresh.pop(key, None)
            if new is None:
                if row.acknowledged:
                    kept += 1
                else:
                    deletes.append(row.id)
                continue
            change = {f"new_{c}": new[c] for c in _RECOMPUTED}
            change.update(
                b_id=row.id,
                new_run_id=run_id,
                new_updated_at=now,
                severity_changed=new["severity"] != row.severity,
            )
            updates.append(change)
        if deletes:
            conn.execute(t.delete().where(t.c.id.in_(deletes)))
            removed = len(deletes)
        if updates:
            values = {c: sa.bindparam(f"new_{c}") for c in (*_RECOMPUTED, "run_id", "updated_at")}
            # notified_at is cleared only where the severity changed: run as two batches.
            for changed in (True, False):
                batch = [
                    {k: v for k, v in u.items() if k != "severity_changed"}
                    for u in updates
                    if u["severity_changed"] is changed
                ]
                if not batch:
                    continue
                stmt = t.update().where(t.c.id == sa.bindparam("b_id")).values(**values)
                if changed:
                    stmt = stmt.values(notified_at=None)
                conn.execute(stmt, batch)
            updated = len(updates)
        if fresh:
            rows = [
                {**r, "acknowledged": False, "created_at": now, "run_id": run_id,
                 "updated_at": now}
                for r in fresh.values()
            ]
            _insert(conn, t, rows)
            inserted = len(rows)
        incidents = merge_incidents(conn, store_ids, start, end, run_id, now)
    return AlertMerge(inserted, updated, removed, kept, incidents)
