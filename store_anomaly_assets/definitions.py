"""Assembles assets, checks, resources, jobs and schedules into the code location."""

from __future__ import annotations

import dagster as dg

from store_anomaly_assets.assets import ALL_ASSETS
from store_anomaly_assets.checks import ALL_CHECKS
from store_anomaly_assets.jobs import log_rotation_job, store_anomaly_job
from store_anomaly_assets.resources import (
    AnomalySettings,
    ExtractIOManager,
    database_resources,
)
from store_anomaly_assets.run_lock import RunLock
from store_anomaly_assets.schedules import daily_store_anomaly_schedule, log_rotation_schedule
from store_anomaly_assets.sensors import ALL_SENSORS
from store_anomaly_assets.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """The code location for `settings` (the environment and `.env` by default)."""
    settings = settings or Settings.from_env()
    resources = database_resources(settings)
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[store_anomaly_job, log_rotation_job],
        schedules=[daily_store_anomaly_schedule, log_rotation_schedule],
        sensors=ALL_SENSORS,
        # Runs the UI launches (backfills of any asset selection) execute in one process,
        # like the job: a subprocess per step would cost seconds of start-up each.
        executor=dg.in_process_executor,
        resources={
            **resources,
            "anomaly_settings": AnomalySettings.from_settings(settings),
            "run_lock": RunLock(analytics=resources["analytics"],
                                timeout_seconds=settings.run_lock_timeout_seconds),
            "extract_io_manager": ExtractIOManager(base_dir=str(settings.data_dir / "extracts")),
        },
    )


defs = build_definitions()
