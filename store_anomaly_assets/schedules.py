"""The daily schedule: 12:00 UTC (07:00 EST), after the forecast pipeline."""


import dagster as dg

from store_anomaly_assets.jobs import log_rotation_job, store_anomaly_job
from store_anomaly_assets.partitions import daily_range, last_complete_day, range_tags
from store_anomaly_assets.settings import Settings

_settings = Settings.from_env()


@dg.schedule(
    cron_schedule="0 12 * * *",
    execution_timezone="UTC",
    job=store_anomaly_job,
    default_status=(
        dg.DefaultScheduleStatus.RUNNING
        if _settings.schedule_enabled
        else dg.DefaultScheduleStatus.STOPPED
    ),
    description="The last complete business day plus the lookback for late records, "
    "as one ranged run. DAILY_SCHEDULE_ENABLED=false turns it off.",
)
def daily_store_anomaly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    start, end = daily_range(
        last_complete_day(context.scheduled_execution_time), _settings.lookback_days
    )
    return dg.RunRequest(
        run_key=f"daily-{end.isoformat()}",
        tags={**range_tags(start, end), "store_anomaly/trigger": "schedule"},
    )


log_rotation_schedule = dg.ScheduleDefinition(
    name="log_rotation_schedule",
    job=log_rotation_job,
    cron_schedule="30 12 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily after the pipeline: purge pipeline-log rows older than "
    "LOG_RETENTION_DAYS (90).",
)
