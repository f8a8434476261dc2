"""Assembles assets, checks, resources, jobs, schedules and sensors into the code location.

Dagster loads `defs` lazily, so importing this module reads no setting; a bad setting
surfaces when the location loads, as one line naming it.
"""

from __future__ import annotations

import dagster as dg

from store_anomaly_assets.config import AppConfig, load_config
from store_anomaly_assets.defs.assets import build_assets
from store_anomaly_assets.defs.checks import ALL_CHECKS
from store_anomaly_assets.defs.jobs import log_rotation_job, store_anomaly_job
from store_anomaly_assets.defs.resources import (
    AnomalySettings,
    ExtractIOManager,
    database_resources,
)
from store_anomaly_assets.defs.run_lock import RunLock
from store_anomaly_assets.defs.schedules import build_schedules
from store_anomaly_assets.defs.sensors import build_sensors


def build_definitions(config: AppConfig) -> dg.Definitions:
    """The code location for `config`."""
    resources = database_resources(config)
    return dg.Definitions(
        assets=build_assets(config),
        asset_checks=ALL_CHECKS,
        jobs=[store_anomaly_job, log_rotation_job],
        schedules=build_schedules(config),
        sensors=build_sensors(config),
        # Runs the UI launches (backfills of any asset selection) execute in one process,
        # like the job: a subprocess per step would cost seconds of start-up each.
        executor=dg.in_process_executor,
        resources={
            **resources,
            "anomaly_settings": AnomalySettings.from_config(config),
            "run_lock": RunLock(analytics=resources["analytics"],
                                timeout_seconds=config.run_lock_timeout_seconds),
            "extract_io_manager": ExtractIOManager(base_dir=str(config.data_dir / "extracts")),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_config())
