"""The daily schedule: 12:00 UTC (07:00 EST), after the forecast pipeline."""

import dagster as dg

from store_anomaly_assets.config import AppConfig
from store_anomaly_assets.defs.jobs import log_rotation_job, store_anomaly_job
from store_anomaly_assets.defs.partitions import daily_range, last_complete_day, range_tags


def build_schedules(config: AppConfig) -> list[dg.ScheduleDefinition]:
    @dg.schedule(
        cron_schedule="0 12 * * *",
        execution_timezone="UTC",
        job=store_anomaly_job,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING
            if config.schedule_enabled
            else dg.DefaultScheduleStatus.STOPPED
        ),
        description="The last complete business day plus the lookback for late records, "
        "as one ranged run. DAILY_SCHEDULE_ENABLED=false turns it off.",
    )
    def daily_store_anomaly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        start, end = daily_range(config,
                                 last_complete_day(config, context.scheduled_execution_time))
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
    return [daily_store_anomaly_schedule, log_rotation_schedule]
