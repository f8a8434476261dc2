"""The one job: the whole graph over a partition range, in a single process.

In-process execution matters here: each step of a multiprocess run would pay Dagster's
import and start-up again, several seconds each on this class of machine.
"""

import dagster as dg

from store_anomaly_assets.db.analytics.pipeline_log import purge_log
from store_anomaly_assets.defs.resources import AnomalySettings, Database

store_anomaly_job = dg.define_asset_job(
    "store_anomaly_job",
    selection=dg.AssetSelection.groups("sources", "analytics"),
    executor_def=dg.in_process_executor,
    description="Steps 1-12 of the guide over a range of business days, in one run.",
)


@dg.op(description="The guide's log rotation: delete pipeline-log rows older than the retention.")
def purge_pipeline_log(
    context: dg.OpExecutionContext, analytics: Database, anomaly_settings: AnomalySettings
) -> int:
    retention = anomaly_settings.log_retention_days
    deleted = purge_log(analytics.engine(), retention)
    context.log.info(f"deleted {deleted} pipeline-log row(s) older than {retention} days")
    return deleted


@dg.job(description="Maintenance: rotate store_anomaly_pipeline_log (guide section 7).")
def log_rotation_job() -> None:
    purge_pipeline_log()
