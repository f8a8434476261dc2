"""`store_anomaly_pipeline_log`: one row per step of every run, failed steps included.

Log rows are written in their own transaction, after the step, so a failed step's
rollback never takes its log row with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from store_anomaly_assets.db.analytics.schema import store_anomaly_pipeline_log

# The guide's step numbers.
STEPS: dict[int, str] = {
    1: "load_store_master",
    2: "extract_sales",
    3: "extract_production",
    4: "extract_staffing",
    5: "extract_quality",
    6: "compute_kpis",
    7: "compute_zscores",
    8: "evaluate_we_rules",
    9: "compute_health_scores",
    10: "generate_alerts",
    11: "log_run",
    12: "verify",
}

# The step of each asset's Dagster step key: a failure outside a logged step (an IO
# write, an input load) is logged under it.
STEP_OF_ASSET: dict[str, int] = {
    "store_master": 1,
    "sales_extract": 2,
    "production_extract": 3,
    "staffing_extract": 4,
    "quality_extract": 5,
    "store_data_quality": 6,
    "store_kpi_daily": 6,
    "store_anomaly_scores": 8,
    "store_health_scores": 9,
    "store_anomaly_alerts": 10,
}

_MAX_ERROR = 2000


def root_cause(error: object) -> str:
    """The first error of a Dagster error chain that is not Dagster's own wrapper, one line.

    Dagster wraps a step's exception ("Error occurred while executing op ..."); the
    exception the step raised is what a person can act on. Its own causes are not
    followed: the product's errors already explain theirs.
    """
    def wrapper(e: object) -> bool:
        return (getattr(e, "cls_name", None) or type(e).__name__).startswith("Dagster")

    while wrapper(error) and (getattr(error, "cause", None) or getattr(error, "context", None)):
        error = getattr(error, "cause", None) or error.context
    message = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
    return message.strip().splitlines()[0]


def utcnow() -> datetime:
    """Naive UTC now, the convention of every DATETIME the product writes."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


@dataclass
class StepResult:
    rows_affected: int | None = None
    status: str = "SUCCESS"
    notes: list[str] = field(default_factory=list)


def write_log_row(
    engine: sa.Engine,
    run_id: str,
    partition_start: date | None,
    partition_end: date | None,
    step_number: int,
    status: str,
    rows_affected: int | None = None,
    duration_seconds: float | None = None,
    error_message: str | None = None,
    started_at: datetime | None = None,
    step_name: str | None = None,
) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            store_anomaly_pipeline_log.insert().values(
                run_id=run_id,
                run_date=now.date(),
                partition_start=partition_start,
                partition_end=partition_end,
                step_number=step_number,
                step_name=step_name or STEPS[step_number],
                status=status,
                rows_affected=rows_affected,
                duration_seconds=duration_seconds,
                error_message=error_message[:_MAX_ERROR] if error_message else None,
                started_at=started_at or now,
                finished_at=now,
                updated_at=now,
            )
        )


@contextmanager
def logged_step(
    engine: sa.Engine,
    run_id: str,
    partition_start: date | None,
    partition_end: date | None,
    step_number: int,
    step_name: str | None = None,
) -> Iterator[StepResult]:
    """Time a step and log it as SUCCESS, or FAILED with the error, then re-raise."""
    result = StepResult()
    started_at, clock = utcnow(), time.perf_counter()
    try:
        yield result
    except Exception as exc:
        write_log_row(
            engine, run_id, partition_start, partition_end, step_number, "FAILED",
            duration_seconds=round(time.perf_counter() - clock, 3),
            error_message=f"{type(exc).__name__}: {exc}", started_at=started_at,
            step_name=step_name,
        )
        raise
    write_log_row(
        engine, run_id, partition_start, partition_end, step_number, result.status,
        rows_affected=result.rows_affected,
        duration_seconds=round(time.perf_counter() - clock, 3), started_at=started_at,
        step_name=step_name,
    )


def step_statuses(engine: sa.Engine, run_id: str) -> dict[int, set[str]]:
    """The statuses logged for each step of a run."""
    t = store_anomaly_pipeline_log
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.step_number, t.c.status).where(t.c.run_id == run_id))
        statuses: dict[int, set[str]] = {}
        for step, status in rows:
            statuses.setdefault(step, set()).add(status)
    return statuses


def purge_log(engine: sa.Engine, retention_days: int, today: date | None = None) -> int:
    """The guide's log rotation: delete log rows whose run_date is older than the retention."""
    cutoff = (today or utcnow().date()) - timedelta(days=retention_days)
    with engine.begin() as conn:
        return conn.execute(
            store_anomaly_pipeline_log.delete().where(
                store_anomaly_pipeline_log.c.run_date < cutoff
            )
        ).rowcount
