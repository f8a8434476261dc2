"""`store-anomaly`: run, backfill, initialise, diagnose and demo the pipeline.

Runs go through Dagster against the instance in DAGSTER_HOME, so they show in the UI
exactly like runs launched there.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import NoReturn

import dagster as dg
import sqlalchemy as sa
import yaml

from store_anomaly_assets.report import add_report_parser
from store_anomaly_assets.resources import dispose_engines
from store_anomaly_assets.settings import Settings, SettingsError

log = logging.getLogger("store_anomaly")


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from None


def ensure_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME, defaulting to a folder beside the data so runs persist for the UI.

    A home without configuration gets the local SQLite layout with the batched event log;
    an operator's own dagster.yaml is left as it is.
    """
    from store_anomaly_assets.event_log import sqlite_instance_config

    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir / "dagster_home").absolute()
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "dagster.yaml"
    if not config_file.exists() or not config_file.read_text().strip():
        config_file.write_text(yaml.safe_dump(sqlite_instance_config(home), sort_keys=False))
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    error: str | None


def run_pipeline(
    settings: Settings,
    start: date,
    end: date,
    instance: dg.DagsterInstance | None = None,
    log_level: str = "INFO",
) -> RunOutcome:
    """Materialize the whole graph for start..end in one Dagster run."""
    from store_anomaly_assets.definitions import build_definitions
    from store_anomaly_assets.partitions import range_tags

    job = build_definitions(settings).resolve_job_def("store_anomaly_job")
    with ExitStack() as stack:
        if instance is None:
            instance = stack.enter_context(dg.DagsterInstance.get())
        result = job.execute_in_process(
            instance=instance,
            tags={**range_tags(start, end), "store_anomaly/trigger": "cli"},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            raise_on_error=False,
        )
    error = None
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        if failures:
            data = failures[0].step_failure_data
            error = f"step {failures[0].step_key} failed: {data.error.message.strip()}"
        else:
            error = "the run failed; see the Dagster UI for its events"
    return RunOutcome(result.run_id, result.success, error)


def _validate_run(settings: Settings, start: date, end: date) -> None:
    from store_anomaly_assets.partitions import validate_range
    from store_anomaly_assets.resources import database_resources
    from store_anomaly_assets.sources.extraction import load_store_master
    from store_anomaly_assets.storage.schema import metadata

    try:
        validate_range(start, end)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    resources = database_resources(settings)
    analytics = resources["analytics"]
    missing = set(metadata.tables) - set(sa.inspect(analytics.engine()).get_table_names())
    if missing:
        raise CliError(
            f"analytics tables {sorted(missing)} are missing in {analytics.describe()}: "
            "run `store-anomaly init-db` first"
        )
    try:
        load_store_master(resources["opshop"].engine(), settings.active_stores)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from store_anomaly_assets.partitions import daily_range, last_complete_day

    if args.date and (args.backfill_from or args.backfill_to):
        raise CliError("use either --date or --backfill-from/--backfill-to, not both")
    if bool(args.backfill_from) != bool(args.backfill_to):
        raise CliError("--backfill-from and --backfill-to go together")
    if args.date:
        start = end = args.date
    elif args.backfill_from:
        start, end = args.backfill_from, args.backfill_to
    else:
        start, end = daily_range(last_complete_day(), settings.lookback_days)
    _validate_run(settings, start, end)
    ensure_dagster_home(settings)
    print(f"Running the store anomaly pipeline for {start}..{end} "
          f"({(end - start).days + 1} business day(s), one Dagster run)...")
    outcome = run_pipeline(settings, start, end, log_level=_log_level())
    if not outcome.success:
        print(f"error: run {outcome.run_id} failed: {outcome.error}", file=sys.stderr)
        return 1
    _print_run_summary(settings, start, end, outcome.run_id)
    return 0


def _print_run_summary(settings: Settings, start: date, end: date, run_id: str) -> None:
    from store_anomaly_assets.storage import schema

    engine = _analytics_engine(settings)
    print(f"Run {run_id} succeeded.")
    with engine.connect() as conn:
        for table, col in ((schema.store_kpi_daily, "metric_date"),
                           (schema.store_anomaly_scores, "metric_date"),
                           (schema.store_health_scores, "metric_date"),
                           (schema.store_anomaly_alerts, "alert_date")):
            n = conn.execute(
                sa.select(sa.func.count()).select_from(table)
                .where(table.c[col].between(start, end))
            ).scalar_one()
            print(f"  {table.name:<28} {n:>8} rows in range")


def cmd_init_db(args: argparse.Namespace, settings: Settings) -> int:
    from store_anomaly_assets.resources import database_resources
    from store_anomaly_assets.storage.init_db import init_db

    analytics = database_resources(settings)["analytics"]
    tables = init_db(analytics.engine())
    print(f"Analytics schema ready in {analytics.describe()}: {', '.join(tables)}")
    return 0


def _scrub(message: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message.splitlines()[0] if message else message


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from store_anomaly_assets.resources import RESOURCE_KEYS, database_resources

    resources = database_resources(settings)
    secrets = [db.password or "" for db in settings.databases.values()]
    failed = 0
    for prefix, key in RESOURCE_KEYS.items():
        db = resources[key]
        try:
            with db.engine().connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            print(f"OK    {prefix:<18} {db.describe()}")
        except Exception as exc:  # any driver error is a finding here, not a crash
            failed += 1
            reason = _scrub(str(getattr(exc, "orig", exc)), secrets)
            print(f"FAIL  {prefix:<18} {db.describe()}: {reason}")
    print("All six databases reachable." if not failed else f"{failed} of 6 failed.")
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from store_anomaly_assets.demo import run_demo

    if not settings.embedded:
        raise CliError(
            "the demo runs on the embedded SQLite chain; unset the *_HOST settings "
            "(or use another STORE_ANOMALY_DATA_DIR) to try it"
        )
    return run_demo(settings, scale=args.scale, fresh=args.fresh)


def _analytics_engine(settings: Settings) -> sa.Engine:
    from store_anomaly_assets.resources import database_resources

    return database_resources(settings)["analytics"].engine()


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from store_anomaly_assets.storage.acknowledgments import open_alerts

    rows = open_alerts(_analytics_engine(settings), limit=args.limit)
    if rows.is_empty():
        print("No open alerts.")
        return 0
    for r in rows.iter_rows(named=True):
        impact = f" impact ${r['impact_usd']:,.2f}" if r["impact_usd"] is not None else ""
        print(f"#{r['id']:<6} {r['severity']:<8} {r['alert_date']} {r['store_name']} "
              f"[{r['store_id']}] {r['metric_name']} ({r['scope']}){impact}")
        print(f"        {r['description_en']}")
    print(f"{rows.height} open alert(s); acknowledge with: store-anomaly ack ID --by NAME")
    return 0


def cmd_ack(args: argparse.Namespace, settings: Settings) -> int:
    from store_anomaly_assets.storage.acknowledgments import (
        AcknowledgmentError,
        acknowledge,
        acknowledge_older,
    )

    engine = _analytics_engine(settings)
    try:
        if args.alert_id is not None:
            if args.severity or args.older_than is not None:
                raise CliError("give either an alert ID or --severity/--older-than, not both")
            acknowledge(engine, args.alert_id, args.by, args.note)
            print(f"Alert {args.alert_id} acknowledged by {args.by.strip()}.")
            return 0
        if not args.severity or args.older_than is None:
            raise CliError("give an alert ID, or --severity and --older-than for a bulk clean-up")
        count = acknowledge_older(engine, args.severity, args.older_than, args.by)
        print(f"{count} {args.severity} alert(s) older than {args.older_than} days "
              f"acknowledged by {args.by.strip()}.")
        return 0
    except AcknowledgmentError as exc:
        raise CliError(str(exc)) from None


def _log_level() -> str:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise CliError(f"setting LOG_LEVEL={level!r} is not DEBUG, INFO, WARNING or ERROR")
    return level


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line, like every other error of the CLI."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="store-anomaly",
        description="Daily store performance anomaly detection (UC-OP-02) on Dagster.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run", help="process the last complete day plus the lookback, a date, or a range"
    )
    run.add_argument("--date", type=_date, help="process one business day")
    run.add_argument("--backfill-from", type=_date, help="first business day of a backfill")
    run.add_argument("--backfill-to", type=_date, help="last business day of a backfill")
    run.set_defaults(func=cmd_run)
    sub.add_parser("init-db", help="create the analytics tables (idempotent)").set_defaults(
        func=cmd_init_db
    )
    sub.add_parser("doctor", help="check the six database connections").set_defaults(
        func=cmd_doctor
    )
    alerts = sub.add_parser("alerts", help="list open alerts in the guide's order")
    alerts.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    alerts.set_defaults(func=cmd_alerts)
    ack = sub.add_parser("ack", help="acknowledge an alert, or bulk-acknowledge old ones")
    ack.add_argument("alert_id", type=int, nargs="?", help="the alert's id")
    ack.add_argument("--by", required=True, help="who acknowledges (name)")
    ack.add_argument("--note", help="what was found and done")
    ack.add_argument("--severity", choices=["CRITICAL", "WARNING", "INFO"],
                     help="bulk: the severity to clean up")
    ack.add_argument("--older-than", type=int, metavar="DAYS",
                     help="bulk: alerts dated more than DAYS days ago")
    ack.set_defaults(func=cmd_ack)
    demo = sub.add_parser("demo", help="generate the embedded demo chain and backfill it")
    demo.add_argument("--scale", type=float, default=1.0, help="order volume multiplier")
    demo.add_argument("--fresh", action="store_true", help="regenerate the demo chain")
    demo.set_defaults(func=cmd_demo)
    add_report_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        # Library chatter (alembic, urllib3) stays at WARNING; LOG_LEVEL drives ours and
        # Dagster's run logs.
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
        log.setLevel(_log_level())
        settings = Settings.from_env()
        return args.func(args, settings)
    except (CliError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except sa.exc.OperationalError as exc:
        print(f"error: database unreachable: {str(exc.orig).splitlines()[0]}", file=sys.stderr)
        return 2


def exit_promptly(code: int) -> NoReturn:
    """End the process once its work is recorded, skipping the interpreter's teardown.

    The teardown is Python freeing Dagster's and polars' module state object by object:
    about 0.7 s on every invocation, a seventh of the daily run's 5-second budget, spent on
    nothing. Callers have closed the Dagster instance; the pooled database connections are
    closed here, and the output is flushed.
    """
    dispose_engines()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe: nothing left to say
            stream.flush()
    os._exit(code)


def entrypoint() -> NoReturn:
    """The `store-anomaly` console script."""
    exit_promptly(main())


if __name__ == "__main__":
    entrypoint()

