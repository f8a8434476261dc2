"""Transactional writes of partition ranges to the analytics tables.

Every write is one transaction: a failure leaves the previous rows in place. Ranges are
replaced for exactly the stores processed, so a narrowed allow-list or a store that has
since closed never loses its history. Alerts are merged, never replaced, because their
acknowledgments are user data.

A range of at least BULK_LOAD_ROWS rows (the engine's setting) goes to MySQL/MariaDB by
LOAD DATA LOCAL INFILE from a CSV file polars writes, inside the same transaction as the
delete: PyMySQL's executemany escapes every value in Python and holds the rows as dicts,
which at chain scale costs more time and memory than the statistics. Where the server or the client
refuses local files, the write falls back to executemany and says so once.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

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
from store_anomaly_assets.db.engines import bulk_load_rows, local_infile_allowed
from store_anomaly_assets.db.frames import frame_rows

_CHUNK = 5000
_log = logging.getLogger(__name__)
_NOTIFIED: set[str] = set()


def _insert(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    for i in range(0, len(rows), _CHUNK):
        conn.execute(table.insert(), rows[i : i + _CHUNK])


def _use_bulk_load(conn: sa.Connection, rows: int) -> bool:
    threshold = bulk_load_rows(conn.engine)
    if threshold <= 0 or rows < threshold or conn.dialect.name not in ("mysql", "mariadb"):
        return False
    if local_infile_allowed(conn.engine):
        return True
    url = conn.engine.url.render_as_string(hide_password=True)
    if url not in _NOTIFIED:
        _NOTIFIED.add(url)
        _log.warning("LOAD DATA LOCAL INFILE is not allowed on %s (server local_infile off "
                     "or client without it): large range writes use executemany", url)
    return False


def bulk_load(conn: sa.Connection, table: sa.Table, frame: pl.DataFrame) -> int:
    """Append `frame`'s rows to `table` by LOAD DATA LOCAL INFILE, in `conn`'s transaction.

    LOCAL turns data errors and duplicate keys into warnings, so any warning (or a row
    count that differs) raises and the caller's transaction rolls back, as executemany's
    error would.
    """
    csv = frame.with_columns(
        [pl.col(c).fill_nan(None) for c, t in frame.schema.items() if t.is_float()]
    ).with_columns(
        pl.col(pl.Boolean).cast(pl.Int8),
        pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S"),
    )
    quote = conn.dialect.identifier_preparer.quote
    with tempfile.TemporaryDirectory(prefix="store-anomaly-load-") as folder:
        path = Path(folder) / f"{table.name}.csv"
        # Strings always quoted, NULL never: with no escape character the unquoted word
        # NULL is the only NULL, so a text "NULL" stays text.
        csv.write_csv(path, include_header=False, null_value="NULL", quote_style="non_numeric")
        loaded = conn.exec_driver_sql(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {quote(table.name)} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
            f"LINES TERMINATED BY '\\n' ({', '.join(quote(c) for c in csv.columns)})",
            (str(path),),
        ).rowcount
    warnings = conn.exec_driver_sql("SHOW WARNINGS LIMIT 1").all()
    if warnings or loaded != frame.height:
        detail = warnings[0][2] if warnings else "no warning"
        raise RuntimeError(f"{table.name}: LOAD DATA loaded {loaded} of {frame.height} rows "
                           f"({detail}); the range is left as it was")
    return loaded


def _write(conn: sa.Connection, table: sa.Table, frame: pl.DataFrame, columns: list[str],
           audit: dict) -> int:
    """Insert the frame's `columns` plus the constant `audit` columns."""
    if _use_bulk_load(conn, frame.height):
        return bulk_load(conn, table, frame.select(columns).with_columns(
            [pl.lit(value).alias(name) for name, value in audit.items()]))
    rows = frame_rows(frame, columns)
    for row in rows:
        row.update(audit)
    _insert(conn, table, rows)
    return len(rows)


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


def _check_inside(table: sa.Table, frame: pl.DataFrame, start: date, end: date) -> None:
    outside = frame.filter(~pl.col("metric_date").is_between(start, end))
    if not outside.is_empty():
        raise ValueError(
            f"{table.name}: refusing to write {outside.height} row(s) outside "
            f"{start}..{end}, e.g. store {outside['store_id'][0]} on {outside['metric_date'][0]}"
        )


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
    _check_inside(table, frame, start, end)
    columns = [c.name for c in table.columns if c.name in frame.columns and c.name not in audit]
    stores = table.c.store_id.in_(list(store_ids))
    if chain_rows:
        stores = stores | table.c.store_id.is_(None)
    conn.execute(table.delete().where(table.c.metric_date.between(start, end), stores))
    return _write(conn, table, frame, columns, audit)


@dataclass
class RangeWriter:
    """A range replaced in parts (store batches) inside one transaction: `append` each
    part; the range is deleted before the first part and committed after the last."""

    conn: sa.Connection
    table: sa.Table
    start: date
    end: date
    audit: dict
    rows: int = 0
    seconds: float = 0.0  # time spent deleting and writing, for the step log

    def append(self, frame: pl.DataFrame) -> int:
        clock = time.perf_counter()
        _check_inside(self.table, frame, self.start, self.end)
        columns = [c.name for c in self.table.columns
                   if c.name in frame.columns and c.name not in self.audit]
        written = _write(self.conn, self.table, frame, columns, self.audit)
        self.rows += written
        self.seconds += time.perf_counter() - clock
        return written


@contextmanager
def range_writer(
    engine: sa.Engine,
    table: sa.Table,
    start: date,
    end: date,
    store_ids: Sequence[int],
    audit: dict,
) -> Iterator[RangeWriter]:
    """Replace the rows of `store_ids` dated start..end with the parts appended, atomically:
    an exception inside the block leaves the previous rows in place."""
    with engine.begin() as conn:
        clock = time.perf_counter()
        conn.execute(table.delete().where(table.c.metric_date.between(start, end),
                                          table.c.store_id.in_(list(store_ids))))
        writer = RangeWriter(conn, table, start, end, audit,
                             seconds=time.perf_counter() - clock)
        yield writer
        clock = time.perf_counter()
    writer.seconds += time.perf_counter() - clock


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
    places: pl.DataFrame | None = None,
) -> AlertMerge:
    """Merge recomputed alerts for start..end into the table in one transaction.

    New conditions are inserted; existing ones are updated in place (keeping `id`,
    acknowledgment and `created_at`; a changed severity clears `notified_at` so the
    escalation is notified); unacknowledged alerts whose condition no longer holds are
    removed; acknowledged ones are always kept. In the same transaction the alerts are
    grouped into incidents (db/analytics/incidents.py), which carry `places`' district and
    region (store_id, district, region).
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
        incidents = merge_incidents(conn, store_ids, start, end, run_id, now, places)
    return AlertMerge(inserted, updated, removed, kept, incidents)
