"""The asset graph: source extracts (steps 1-5) feed the analytics tables (steps 6-10)."""

import warnings

import dagster as dg

from store_anomaly_assets.config import DATABASES, AppConfig
from store_anomaly_assets.defs.assets.analytics import build_analytics_assets
from store_anomaly_assets.defs.assets.sources import build_source_assets
from store_anomaly_assets.defs.partitions import daily_partitions


def build_assets(config: AppConfig) -> list[dg.AssetsDefinition]:
    """Every asset, partitioned by the configured business days, labelled by storage."""
    partitions = daily_partitions(config)
    kind = "sqlite" if config.embedded else "mysql"
    names = {key: config.database_name(prefix) for prefix, (key, _) in DATABASES.items()}
    with warnings.catch_warnings():
        # Single-run backfills are the design; Dagster still calls the policy beta.
        warnings.simplefilter("ignore", dg.BetaWarning)
        return [*build_source_assets(partitions, kind, names),
                *build_analytics_assets(partitions, kind, names["analytics"])]
