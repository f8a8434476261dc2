"""Running the graph from the CLI: one Dagster run over a range, on the DAGSTER_HOME instance.

Runs go through Dagster against the instance in DAGSTER_HOME, so they show in the UI
exactly like runs launched there.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml

from store_anomaly_assets.cli.errors import CliError, UsageProblem, on_database, require_tables
from store_anomaly_assets.config import AppConfig
from store_anomaly_assets.db.analytics.pipeline_log import root_cause
from store_anomaly_assets.defs.resources import resolved_databases

# Called as steps start and end: (step key, steps finished, steps in the run).
StepProgress = Callable[[str, int, int], None]


def ensure_dagster_home(config: AppConfig) -> Path:
    """DAGSTER_HOME, defaulting to a folder beside the data so runs persist for the UI.

    A home without configuration gets the local SQLite layout with the batched event log;
    an operator's own dagster.yaml is left as it is.
    """
    from store_anomaly_assets.event_log import sqlite_instance_config

    configured = os.environ.get("DAGSTER_HOME")
    home = Path(configured or config.data_dir / "dagster_home").absolute()
    try:
        home.mkdir(parents=True, exist_ok=True)
        config_file = home / "dagster.yaml"
        if not config_file.exists() or not config_file.read_text().strip():
            config_file.write_text(yaml.safe_dump(sqlite_instance_config(home), sort_keys=False))
        with tempfile.TemporaryFile(dir=home):  # Dagster writes its storage here
            pass
    except OSError as exc:
        source = "" if configured else " (STORE_ANOMALY_DATA_DIR/dagster_home)"
        raise CliError(f"DAGSTER_HOME {home}{source} is not a writable folder: "
                       f"{exc.strerror or exc}") from None
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    error: str | None
    # The data-quality gate stopped the run (bad input, not a failure): `error` is its
    # message.
    refused: bool = False


_GATE_ERROR = "SourceGapError: "


_STEP_ENDS = frozenset({dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
                        dg.DagsterEventType.STEP_SKIPPED})


def _step_listener(progress: StepProgress, total: int) -> Callable[[dg.EventLogEntry], None]:
    """An instance event listener that reports step starts and ends to `progress`."""
    done = 0

    def listen(entry: dg.EventLogEntry) -> None:
        nonlocal done
        event = entry.dagster_event
        if event is None or not event.step_key:
            return
        if event.event_type == dg.DagsterEventType.STEP_START:
            progress(event.step_key, done, total)
        elif event.event_type in _STEP_ENDS:
            done += 1
            progress(event.step_key, done, total)

    return listen


def run_pipeline(
    config: AppConfig,
    start: date,
    end: date,
    instance: dg.DagsterInstance | None = None,
    log_level: str = "INFO",
    progress: StepProgress | None = None,
    accept_source_gaps: bool = False,
) -> RunOutcome:
    """Materialize the whole graph for start..end in one Dagster run.

    `progress`, when given, hears each step start and end as the run goes.
    `accept_source_gaps` writes over the data-quality gate (a deliberate rewrite).
    """
    from store_anomaly_assets.defs.assets.analytics import ACCEPT_SOURCE_GAPS_TAG
    from store_anomaly_assets.defs.definitions import build_definitions
    from store_anomaly_assets.defs.partitions import range_tags

    job = build_definitions(config).resolve_job_def("store_anomaly_job")
    run_id = str(uuid.uuid4())
    with ExitStack() as stack:
        if instance is None:
            instance = stack.enter_context(dg.DagsterInstance.get())
        if progress is not None:
            total = len(job.nodes_in_topological_order)
            instance.add_event_listener(run_id, _step_listener(progress, total))
            progress("starting", 0, total)
        result = job.execute_in_process(
            instance=instance,
            run_id=run_id,
            tags={**range_tags(start, end), "store_anomaly/trigger": "cli",
                  **({ACCEPT_SOURCE_GAPS_TAG: "true"} if accept_source_gaps else {})},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            raise_on_error=False,
        )
    error = None if result.success else run_failure_cause(result.all_events)
    if error is not None and _GATE_ERROR in error:
        return RunOutcome(result.run_id, False, error.split(_GATE_ERROR, 1)[1], refused=True)
    return RunOutcome(result.run_id, result.success, error)


def run_failure_cause(events: Sequence[dg.DagsterEvent]) -> str:
    """Why a run failed, one line: the innermost error, not Dagster's wrapper of it.

    The first failed step, named; else (a resource that failed to start, such as the run
    lock) the run failure's own error.
    """
    for event in events:
        if event.is_step_failure:
            return f"step {event.step_key} failed: {root_cause(event.step_failure_data.error)}"
    for event in reversed(events):
        if event.is_run_failure or event.is_resource_init_failure:
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                return root_cause(error)
            if event.message and event.message.strip():
                return event.message.strip().splitlines()[0]
    return "the run failed; see the Dagster UI for its events"


def check_run_arguments(day: date | None, first: date | None, last: date | None) -> None:
    """`run` takes --date, or --backfill-from with --backfill-to, or neither."""
    if day and (first or last):
        raise UsageProblem("use either --date or --backfill-from/--backfill-to, not both")
    if bool(first) != bool(last):
        raise UsageProblem("--backfill-from and --backfill-to go together")


def run_range(config: AppConfig, day: date | None, first: date | None,
              last: date | None) -> tuple[date, date]:
    """The range `run` processes: --date, --backfill-from/--backfill-to, or the daily one."""
    from store_anomaly_assets.defs.partitions import daily_range, last_complete_day

    check_run_arguments(day, first, last)
    if day:
        return day, day
    if first and last:
        return first, last
    return daily_range(config, last_complete_day(config))


def validate_run(config: AppConfig, start: date, end: date) -> None:
    """Refuse a run before it starts: a range outside the partitions, a missing analytics
    table, an unusable store master (missing table or column, unknown ACTIVE_STORES, no
    active store)."""
    from store_anomaly_assets.db.analytics.schema import metadata
    from store_anomaly_assets.db.sources.extraction import load_store_master, require_stores
    from store_anomaly_assets.defs.partitions import validate_range

    try:
        validate_range(config, start, end)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    databases = resolved_databases(config)
    with on_database(databases["analytics"]) as engine:
        require_tables(databases["analytics"], engine, metadata.tables)
    with on_database(databases["opshop"]) as engine:
        try:
            require_stores(load_store_master(engine, config.active_stores),
                           databases["opshop"].describe())
        except ValueError as exc:
            raise CliError(str(exc)) from None


@dataclass(frozen=True)
class RunSummary:
    rows: dict[str, int]  # table name: rows in the range
    days_without_data: str | None  # `2025-12-25, ...`, or None


def run_summary(config: AppConfig, start: date, end: date) -> RunSummary:
    """What a finished run left in the analytics tables for its range."""
    from store_anomaly_assets.db.analytics import schema
    from store_anomaly_assets.db.analytics.reads import days_without_kpis, format_days

    rows = {}
    with on_database(resolved_databases(config)["analytics"]) as engine, engine.connect() as conn:
        for table, col in ((schema.store_kpi_daily, "metric_date"),
                           (schema.store_anomaly_scores, "metric_date"),
                           (schema.store_health_scores, "metric_date"),
                           (schema.store_anomaly_alerts, "alert_date")):
            rows[table.name] = conn.execute(
                sa.select(sa.func.count()).select_from(table)
                .where(table.c[col].between(start, end))
            ).scalar_one()
        quiet_days = days_without_kpis(engine, start, end)
    return RunSummary(rows, format_days(quiet_days) if quiet_days else None)
