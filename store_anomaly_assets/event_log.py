"""Dagster event-log storages that write a partition range's materializations in one go.

The one module of the project that uses Dagster internals, and the only one that instance
configuration (`dagster.yaml`) names: nothing imports it to run the pipeline. It is a port
of dagster-postgres's `store_event_batch` to the SQLite and dagster-mysql storages,
verified against the pinned Dagster release (1.13.27) by `test_event_log.py`, which
compares every record with the stock storages'. Revisit it when the pin moves.

A single-run backfill makes Dagster record one materialization event per asset and
partition. Dagster buffers such events into one batch per asset when
`DAGSTER_EVENT_BATCH_SIZE` is set, but its open-source SQL storages then store them one by
one: each event is several transactions, a schema inspection and, on SQLite, a fresh
engine. These subclasses store a batch in one transaction per database, with the same rows
Dagster's own `store_event` writes:

- the event row (for SQLite, in the run's shard and mirrored in the index shard; if the
  index write fails, the run shard's rows are removed before Dagster's event-by-event
  fallback stores them again);
- the indexed asset-event tags;
- the asset's `asset_keys` entry, updated once, from the batch's last event: it holds
  only "last materialization" columns, so the end state equals event-by-event updates.

Anything that is not a plain asset materialization or observation (planned events, check
evaluations, run events) goes through Dagster's own `store_event` unchanged. Enable them in
`$DAGSTER_HOME/dagster.yaml` (see `deploy/dagster.yaml`; `store-anomaly` writes a SQLite one
for a new DAGSTER_HOME). The measured effect is in docs/performance.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import DagsterEventType
from dagster._core.event_api import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster_mysql import MySQLEventLogStorage
from dagster_mysql.utils import mysql_url_from_config
from sqlalchemy.engine import Connection

# Larger than any partition range, so one asset's range is one batch.
EVENT_BATCH_SIZE = "100000"

_BATCHED_TYPES = frozenset({DagsterEventType.ASSET_MATERIALIZATION,
                            DagsterEventType.ASSET_OBSERVATION})


def _batchable(events: Sequence[EventLogEntry]) -> bool:
    return (
        len(events) > 1
        and len({event.run_id for event in events}) == 1
        and all(event.is_dagster_event and event.dagster_event_type in _BATCHED_TYPES
                and event.get_dagster_event().asset_key is not None for event in events)
    )


def _index_batch(storage: Any, conn: Connection, events: Sequence[EventLogEntry],
                 rows: list[dict[str, Any]]) -> None:
    """The index-side rows of a batch on an open transaction: events, tags, asset keys.

    `rows` are the events' table rows (`_event_to_row`), serialized once by the caller.
    """
    # The tags and the asset_keys entry need each event's own id: one multi-row INSERT ..
    # RETURNING where the backend returns ids in row order (SQLite, MariaDB), else row by row
    # (MySQL 8 has no RETURNING).
    if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
        insert = SqlEventLogStorageTable.insert().returning(
            SqlEventLogStorageTable.c.id, sort_by_parameter_order=True)
        event_ids = conn.execute(insert, rows).scalars().all()
    else:
        event_ids = [conn.execute(SqlEventLogStorageTable.insert().values(**row))
                     .inserted_primary_key[0] for row in rows]
    storage._store_asset_event_tags(conn, events, event_ids)
    last_of_each_key: dict[Any, tuple[EventLogEntry, int]] = {}
    for event, event_id in zip(events, event_ids, strict=True):
        last_of_each_key[event.get_dagster_event().asset_key] = (event, event_id)
    for event, event_id in last_of_each_key.values():
        storage._store_asset_event(conn, event, event_id)


class _SingleRunBackfillEvents:
    """What the batched storages change about the events Dagster emits.

    A single-run backfill then logs one "planned" event per asset instead of one per asset
    and partition: half of Dagster's bookkeeping on a long range. The catch Dagster
    documents (partitions of a failed run are not marked failed) is acceptable: a failed
    run is rerun over its range. And Dagster hands each asset's materializations to the
    storage as one batch only when `DAGSTER_EVENT_BATCH_SIZE` is set; an instance that
    names these storages wants that, so it defaults to a batch larger than any range
    (the shipped `.env.example` sets it too).
    """

    supports_partition_subset_in_asset_materialization_planned_events = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        super().__init__(*args, **kwargs)


class BatchedSqliteEventLogStorage(_SingleRunBackfillEvents, SqliteEventLogStorage):
    """Dagster's SQLite event log (run shards + index shard) with batched asset events."""

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BatchedSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if not _batchable(events):
            super().store_event_batch(events)
            return
        rows = [self._event_to_row(event) for event in events]
        table = SqlEventLogStorageTable
        with self.run_connection(events[0].run_id) as conn:
            run_ids = conn.execute(table.insert().returning(table.c.id), rows).scalars().all()
        try:
            with self.index_transaction() as conn:
                _index_batch(self, conn, events, rows)
        except Exception:
            # Two files, two transactions. Dagster answers a failed batch by storing its
            # events one by one: take the run shard's rows back first, or the run's log
            # would show every event twice.
            with self.run_connection(events[0].run_id) as conn:
                conn.execute(table.delete().where(table.c.id.in_(run_ids)))
            raise


class BatchedMySQLEventLogStorage(_SingleRunBackfillEvents, MySQLEventLogStorage):
    """dagster-mysql's event log with batched asset events: one transaction per batch."""

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BatchedMySQLEventLogStorage:
        return cls(inst_data=inst_data, mysql_url=mysql_url_from_config(config_value))

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if not _batchable(events):
            super().store_event_batch(events)
            return
        # Runs and the asset index share one table here, so the batch is all-or-nothing.
        with self.index_transaction() as conn:
            _index_batch(self, conn, events, [self._event_to_row(event) for event in events])


def sqlite_instance_config(dagster_home: Path) -> dict[str, Any]:
    """dagster.yaml content for a local instance: Dagster's SQLite layout, batched events.

    Naming one constituent storage switches Dagster to per-storage configuration; runs and
    schedules keep their defaults under DAGSTER_HOME, and the event log keeps the folder
    Dagster's own default uses, so an existing instance's history stays readable.
    """
    return {
        "event_log_storage": {
            "module": __name__,
            "class": BatchedSqliteEventLogStorage.__name__,
            "config": {"base_dir": str(dagster_home / "history" / "runs")},
        },
        # Runs launched by the daemon whose process dies are marked failed; CLI runs
        # killed mid-way are marked by the pipeline's next run (run_lock.py).
        "run_monitoring": {"enabled": True, "max_resume_run_attempts": 0},
        "telemetry": {"enabled": False},
    }


def mysql_instance_config(mysql_db: Mapping[str, Any]) -> dict[str, Any]:
    """dagster.yaml storage for dagster-mysql with the batched event log (deploy/dagster.yaml)."""
    config = {"mysql_db": dict(mysql_db)}
    return {
        "run_storage": {"module": "dagster_mysql", "class": "MySQLRunStorage", "config": config},
        "event_log_storage": {"module": __name__, "class": BatchedMySQLEventLogStorage.__name__,
                              "config": config},
        "schedule_storage": {"module": "dagster_mysql", "class": "MySQLScheduleStorage",
                             "config": config},
    }
