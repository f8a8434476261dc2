"""The batched event-log storages record a ranged run exactly as Dagster's own storages do.

A two-asset daily graph is materialized over 40 partitions in one run, on Dagster's stock
storage and on the project's batched one, for SQLite and for dagster-mysql on MariaDB.
What the UI and the partition status read must be identical; only the number of writes
differs.
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from conftest import recreate_database
from dagster import AssetExecutionContext
from dagster._core.event_api import EventLogRecord
from dagster._core.storage.event_log.schema import AssetKeyTable
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._serdes import deserialize_value

from store_anomaly_assets.event_log import (
    BatchedMySQLEventLogStorage,
    BatchedSqliteEventLogStorage,
    mysql_instance_config,
    sqlite_instance_config,
)

PROJECT = Path(__file__).resolve().parents[1]
DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-02-10")
KEYS = DAYS.get_partition_keys()
MYSQL_DB = {"username": "root", "password": "", "hostname": "127.0.0.1",
            "db_name": "sat_dagster_events", "port": 3306}


# Code versions make the data-version tags deterministic, so the two storages' tags compare.
@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(), code_version="1")
def daily_upstream(context: AssetExecutionContext) -> None:
    context.add_output_metadata({"partitions": len(context.partition_keys)})


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(),
          deps=[daily_upstream], code_version="1")
def daily_downstream() -> None:
    return None


@contextmanager
def open_instance(storage: str, batched: bool) -> Iterator[dg.DagsterInstance]:
    temp_dir = Path(tempfile.mkdtemp())
    if storage == "mysql":
        overrides = (mysql_instance_config(MYSQL_DB) if batched
                     else {"storage": {"mysql": {"mysql_db": MYSQL_DB}}})
    else:
        overrides = sqlite_instance_config(temp_dir) if batched else None
    with dg.instance_for_test(temp_dir=str(temp_dir), overrides=overrides) as instance:
        yield instance


def materialize_range(instance: dg.DagsterInstance) -> str:
    result = dg.materialize(
        [daily_upstream, daily_downstream], instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: KEYS[0], ASSET_PARTITION_RANGE_END_TAG: KEYS[-1]},
    )
    assert result.success
    return result.run_id


def asset_keys_row(instance: dg.DagsterInstance, key: dg.AssetKey, run_id: str) -> tuple:
    """The storage's own summary row of an asset, as Dagster's readers find it."""
    storage = instance.event_log_storage
    with storage.index_connection() as conn:
        last_materialization, last_run_id = conn.execute(
            sa.select(AssetKeyTable.c.last_materialization, AssetKeyTable.c.last_run_id)
            .where(AssetKeyTable.c.asset_key == key.to_string())).one()
    record = deserialize_value(last_materialization, EventLogRecord)
    return record.partition_key, record.run_id == run_id, last_run_id == run_id


def recorded(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """Everything a reader sees of the run's materializations, ids and run ids left out."""
    seen: dict[str, Any] = {}
    for asset in (daily_upstream, daily_downstream):
        key = asset.key
        records = instance.fetch_materializations(key, limit=1000, ascending=True).records
        latest = instance.get_latest_materialization_event(key)
        entry = instance.get_asset_records([key])[0].asset_entry
        seen[key.to_user_string()] = {
            "partitions in storage order": [r.partition_key for r in records],
            "materialized partitions": sorted(instance.get_materialized_partitions(key)),
            "latest partition": latest.dagster_event.partition,
            "latest metadata": latest.asset_materialization.metadata,
            "asset entry last run is this run": entry.last_run_id == run_id,
            "asset entry last partition": entry.last_materialization_record.partition_key,
            "partition status": instance.get_status_by_partition(
                key, KEYS, DAYS).get(KEYS[-1]),
            "indexed tags": sorted(
                tuple(sorted(tags.items()))
                for tags in instance.event_log_storage.get_event_tags_for_asset(key)),
            "asset_keys row": asset_keys_row(instance, key, run_id),
            "run events of this asset": sum(
                1 for e in instance.all_logs(run_id, of_type=dg.DagsterEventType
                                             .ASSET_MATERIALIZATION)
                if e.dagster_event.asset_key == key),
        }
    return seen


@pytest.mark.parametrize("storage", ["sqlite", "mysql"])
def test_batched_storage_records_a_ranged_run_like_dagster_does(
    storage: str, server: sa.Engine
) -> None:
    batched_class = {"sqlite": BatchedSqliteEventLogStorage,
                     "mysql": BatchedMySQLEventLogStorage}[storage]
    observed = {}
    for batched in (False, True):
        if storage == "mysql":
            recreate_database(server, MYSQL_DB["db_name"])
        with open_instance(storage, batched) as instance:
            assert isinstance(instance.event_log_storage, batched_class) == batched
            with mock.patch.object(batched_class, "store_event_batch", autospec=True,
                                   side_effect=batched_class.store_event_batch) as spy:
                run_id = materialize_range(instance)
            observed[batched] = recorded(instance, run_id)
            sizes = sorted(len(call.args[1]) for call in spy.call_args_list)
        if batched:
            # Each asset's 40 materializations reach the storage as one batch.
            assert sizes.count(len(KEYS)) == 2, sizes
    assert observed[True] == observed[False]
    upstream = observed[True]["daily_upstream"]
    assert upstream["partitions in storage order"] == KEYS
    assert upstream["run events of this asset"] == len(KEYS)
    assert upstream["latest partition"] == KEYS[-1]


def test_a_failed_index_write_leaves_no_duplicate_in_the_sqlite_run_log() -> None:
    # SQLite keeps the run's events and the asset index in two files. When the index half
    # of a batch fails, Dagster stores the batch again event by event: the run half must
    # have been taken back, or the run's log shows each materialization twice.
    from store_anomaly_assets import event_log

    failing = mock.patch.object(event_log, "_index_batch",
                                side_effect=sa.exc.OperationalError("INSERT", {}, "disk I/O"))
    with open_instance("sqlite", batched=True) as instance, failing as index_batch:
        run_id = materialize_range(instance)
        assert index_batch.call_count == 2  # each asset's batch failed once, then fell back
        seen = recorded(instance, run_id)
    upstream = seen["daily_upstream"]
    assert upstream["run events of this asset"] == len(KEYS)
    assert upstream["partitions in storage order"] == KEYS
    assert upstream["materialized partitions"] == KEYS


def test_a_second_range_run_updates_the_asset_entry(server: sa.Engine) -> None:
    recreate_database(server, MYSQL_DB["db_name"])
    with open_instance("mysql", batched=True) as instance:
        materialize_range(instance)
        second = materialize_range(instance)
        entry = instance.get_asset_records([daily_downstream.key])[0].asset_entry
        assert entry.last_run_id == second
        records = instance.fetch_materializations(daily_downstream.key, limit=1000).records
        assert len(records) == 2 * len(KEYS)


def test_shipped_configurations_name_the_batched_storages(tmp_path: Path) -> None:
    deploy = yaml.safe_load((PROJECT / "deploy" / "dagster.yaml").read_text())
    assert deploy["event_log_storage"]["module"] == "store_anomaly_assets.event_log"
    assert deploy["event_log_storage"]["class"] == BatchedMySQLEventLogStorage.__name__
    # The CLI's default home: a new DAGSTER_HOME gets the batched SQLite event log.
    from store_anomaly_assets.cli import ensure_dagster_home
    from store_anomaly_assets.config import load_config

    home = tmp_path / "home"
    with mock.patch.dict("os.environ", {"DAGSTER_HOME": str(home)}):
        ensure_dagster_home(load_config(env_file=None))
        written = yaml.safe_load((home / "dagster.yaml").read_text())
        assert written == sqlite_instance_config(home)
        with dg.DagsterInstance.get() as instance:
            assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
        # An operator's own configuration is never overwritten.
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        ensure_dagster_home(load_config(env_file=None))
        assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
