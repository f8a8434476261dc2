"""The Dagster definitions as the data engineer sees them in the UI."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from store_anomaly_assets.definitions import defs
from store_anomaly_assets.schedules import daily_store_anomaly_schedule


def test_every_partitioned_asset_backfills_in_a_single_run() -> None:
    graph = defs.resolve_asset_graph()
    partitioned = [node for node in graph.asset_nodes if node.partitions_def is not None]
    assert len(partitioned) == 8  # four extracts, four analytics tables
    for node in partitioned:
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), node.key
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
        assert node.partitions_def.timezone == "America/New_York"
        assert node.partitions_def.start.date().isoformat() == "2025-07-01"


def test_every_analytics_table_has_a_check() -> None:
    graph = defs.resolve_asset_graph()
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assert {"store_kpi_daily", "store_anomaly_scores", "store_health_scores",
            "store_anomaly_alerts"} <= checked


def test_daily_schedule_requests_one_ranged_run_with_lookback() -> None:
    assert daily_store_anomaly_schedule.cron_schedule == "0 12 * * *"
    assert daily_store_anomaly_schedule.execution_timezone == "UTC"
    # 12:00 UTC on 2026-01-16 is 07:00 in New York: the last complete day is the 15th.
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 1, 16, 12, 0, tzinfo=UTC)
    )
    request = daily_store_anomaly_schedule.evaluate_tick(context).run_requests[0]
    assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == "2026-01-12"
    assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == "2026-01-15"


def test_passwords_reach_dagster_only_as_environment_variable_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from store_anomaly_assets.resources import database_resources
    from store_anomaly_assets.settings import Settings

    monkeypatch.setenv("SALESORDER_PASS", "not-in-the-ui")
    resource = database_resources(Settings.from_env())["sales_order"]
    # The UI and run config show a resource's field values: the password is an EnvVar.
    with pytest.raises(RuntimeError, match="EnvVar"):
        str(resource.password)
    assert "not-in-the-ui" not in resource.describe()
