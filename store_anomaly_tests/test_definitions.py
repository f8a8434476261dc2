"""The Dagster definitions as the data engineer sees them in the UI."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from local_env import without_settings

from store_anomaly_assets.config import load_config
from store_anomaly_assets.defs.definitions import build_definitions
from store_anomaly_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG

defs = build_definitions(load_config(env_file=None))
daily_store_anomaly_schedule = defs.get_schedule_def("daily_store_anomaly_schedule")


def test_every_partitioned_asset_backfills_in_a_single_run() -> None:
    graph = defs.resolve_asset_graph()
    partitioned = [node for node in graph.asset_nodes if node.partitions_def is not None]
    assert len(partitioned) == 9  # four extracts, five analytics tables
    for node in partitioned:
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), node.key
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
        assert node.partitions_def.timezone == "America/New_York"
        assert node.partitions_def.start.date().isoformat() == "2025-07-01"


def test_every_analytics_table_has_a_check() -> None:
    graph = defs.resolve_asset_graph()
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assert {"store_data_quality", "store_kpi_daily", "store_anomaly_scores",
            "store_health_scores", "store_anomaly_alerts"} <= checked


def test_daily_schedule_requests_one_ranged_run_with_lookback() -> None:
    assert daily_store_anomaly_schedule.cron_schedule == "0 12 * * *"
    assert daily_store_anomaly_schedule.execution_timezone == "UTC"
    # 12:00 UTC on 2026-01-16 is 07:00 in New York: the last complete day is the 15th.
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 1, 16, 12, 0, tzinfo=UTC)
    )
    request = daily_store_anomaly_schedule.evaluate_tick(context).run_requests[0]
    assert request.tags[RANGE_START_TAG] == "2026-01-12"
    assert request.tags[RANGE_END_TAG] == "2026-01-15"


def test_passwords_reach_dagster_only_as_environment_variable_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from store_anomaly_assets.defs.resources import database_resources

    monkeypatch.setenv("SALESORDER_PASS", "not-in-the-ui")
    resource = database_resources(load_config(env_file=None))["sales_order"]
    # The UI and run config show a resource's field values: the password is an EnvVar.
    with pytest.raises(RuntimeError, match="EnvVar"):
        str(resource.password)
    assert "not-in-the-ui" not in resource.describe()


PROJECT = Path(__file__).resolve().parents[1]
PACKAGE = PROJECT / "store_anomaly_assets"


@pytest.mark.integration
def test_the_pure_core_imports_without_dagster_sqlalchemy_or_an_environment() -> None:
    probe = (
        "import sys, store_anomaly_assets.core as c, pkgutil, importlib\n"
        "for m in pkgutil.iter_modules(c.__path__):\n"
        "    importlib.import_module(f'{c.__name__}.{m.name}')\n"
        "bad = [m for m in ('dagster', 'sqlalchemy', 'pydantic_settings') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env={"PATH": "/usr/bin:/bin"},
                          cwd="/", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_only_the_event_log_module_uses_dagster_internals() -> None:
    users = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                   if "dagster._" in path.read_text())
    assert users == ["event_log.py"]


@pytest.mark.integration
def test_dg_loads_the_code_location_and_names_a_bad_setting() -> None:
    dg_cli = str(Path(sys.executable).with_name("dg"))
    env = {**without_settings(dict(os.environ)), "DG_CLI_SUPPRESS_WARNINGS": "1"}
    ok = subprocess.run([dg_cli, "check", "defs"], cwd=PROJECT, env=env, capture_output=True,
                        text=True, timeout=300)
    assert ok.returncode == 0 and "All definitions loaded successfully" in ok.stdout, ok.stderr
    bad = subprocess.run([dg_cli, "check", "defs"], cwd=PROJECT,
                         env={**env, "SIGMA_WARNING": "nan"}, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0
    assert "setting SIGMA_WARNING='nan'" in bad.stdout + bad.stderr
