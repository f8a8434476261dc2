"""`store-anomaly`: run, backfill, initialise, diagnose and demo the pipeline.

Runs go through Dagster against the instance in DAGSTER_HOME, so they show in the UI
exactly like runs launched there.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, quote_plus

import dagster as dg
import sqlalchemy as sa
import yaml

from store_anomaly_assets.config import DATABASES, AppConfig, SettingsError, load_config
from store_anomaly_assets.db.analytics.pipeline_log import root_cause
from store_anomaly_assets.db.engines import DatabaseError, DatabaseMissingError, dispose_engines
from store_anomaly_assets.defs.resources import Database, resolved_databases

log = logging.getLogger("store_anomaly")


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


class RunFailed(Exception):
    """A Dagster run that failed; the message is its cause. Exit status 1."""


class DatabaseProblem(Exception):
    """A driver error on a known database; `database_error_message` words it."""

    def __init__(self, where: str, error: sa.exc.DBAPIError) -> None:
        super().__init__(where, error)
        self.where = where
        self.error = error


# ---------------------------------------------------------------------------- databases



@contextmanager
def on_database(db: Database, writable: bool = False) -> Iterator[sa.Engine]:
    """The database's engine; a driver error in the block is reported naming the database."""
    try:
        yield db.writable_engine() if writable else db.engine()
    except sa.exc.DBAPIError as exc:
        raise DatabaseProblem(db.describe(), exc) from exc


def require_tables(db: Database, engine: sa.Engine, tables: Collection[str]) -> None:
    """Refuse to go on when analytics tables are missing: say how to create them."""
    missing = sorted(set(tables) - set(sa.inspect(engine).get_table_names()))
    if missing:
        what = (f"table {missing[0]} is" if len(missing) == 1
                else f"tables {', '.join(missing)} are")
        raise CliError(f"analytics {what} missing in {db.describe()}: run `store-anomaly "
                       "init-db` (or `store-anomaly demo` for the embedded demo)")


# MySQL/MariaDB errors that mean no session was established: the server is down or
# unreachable, the session dropped, or the account or database was refused.
CONNECTION_ERRORS = frozenset({1044, 1045, 1049, 2002, 2003, 2005, 2006, 2013})
_TABLE_IN_MESSAGE = re.compile(r"(?:Table '(?:[^'.]+\.)?([^']+)'|no such table: (\w+))")
_TABLE_IN_STATEMENT = re.compile(
    r"\b(?:FROM|JOIN|UPDATE|INTO)\s+[`\"]?(?:\w+[`\"]?\.[`\"]?)?(\w+)", re.IGNORECASE
)


def database_error_message(error: sa.exc.DBAPIError, where: str) -> str:
    """One line for a driver error: a failed connection, or a table that does not fit.

    A missing table or column (1146, 1054) is a schema problem in a reachable database,
    never "cannot connect"; the line names the table and the database.
    """
    orig = error.orig
    args = getattr(orig, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    reason = str(args[1] if code is not None and len(args) > 1 else orig).strip()
    reason = reason.splitlines()[0] if reason else type(orig).__name__
    if code in CONNECTION_ERRORS or (code is None and "unable to open database" in reason):
        return f"cannot connect to {where}: {reason}"
    found = _TABLE_IN_MESSAGE.search(reason) or _TABLE_IN_STATEMENT.search(error.statement or "")
    table = next((g for g in found.groups() if g), None) if found else None
    if table is None:
        return f"database error in {where}: {reason}"
    if code == 1146 or reason.startswith("no such table"):
        return f"table {table} is missing in {where}: {reason}"
    if code == 1054 or reason.startswith("no such column"):
        return f"table {table} in {where} lacks a column: {reason}"
    return f"table {table} in {where}: {reason}"


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from None


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


def run_pipeline(
    config: AppConfig,
    start: date,
    end: date,
    instance: dg.DagsterInstance | None = None,
    log_level: str = "INFO",
) -> RunOutcome:
    """Materialize the whole graph for start..end in one Dagster run."""
    from store_anomaly_assets.defs.definitions import build_definitions
    from store_anomaly_assets.defs.partitions import range_tags

    job = build_definitions(config).resolve_job_def("store_anomaly_job")
    with ExitStack() as stack:
        if instance is None:
            instance = stack.enter_context(dg.DagsterInstance.get())
        result = job.execute_in_process(
            instance=instance,
            tags={**range_tags(start, end), "store_anomaly/trigger": "cli"},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            raise_on_error=False,
        )
    error = None if result.success else run_failure_cause(result.all_events)
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


def _validate_run(config: AppConfig, start: date, end: date) -> None:
    from store_anomaly_assets.db.analytics.schema import metadata
    from store_anomaly_assets.db.sources.extraction import load_store_master
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
            load_store_master(engine, config.active_stores)
        except ValueError as exc:
            raise CliError(str(exc)) from None


def cmd_run(args: argparse.Namespace, config: AppConfig) -> int:
    from store_anomaly_assets.defs.partitions import daily_range, last_complete_day

    if args.date and (args.backfill_from or args.backfill_to):
        raise CliError("use either --date or --backfill-from/--backfill-to, not both")
    if bool(args.backfill_from) != bool(args.backfill_to):
        raise CliError("--backfill-from and --backfill-to go together")
    if args.date:
        start = end = args.date
    elif args.backfill_from:
        start, end = args.backfill_from, args.backfill_to
    else:
        start, end = daily_range(config, last_complete_day(config))
    _validate_run(config, start, end)
    ensure_dagster_home(config)
    print(f"Running the store anomaly pipeline for {start}..{end} "
          f"({(end - start).days + 1} business day(s), one Dagster run)...")
    outcome = run_pipeline(config, start, end, log_level=config.log_level)
    if not outcome.success:
        raise RunFailed(f"run {outcome.run_id} failed: {outcome.error}")
    _print_run_summary(config, start, end, outcome.run_id)
    return 0


def _print_run_summary(config: AppConfig, start: date, end: date, run_id: str) -> None:
    from store_anomaly_assets.db.analytics import schema
    from store_anomaly_assets.db.analytics.reads import days_without_kpis, format_days

    print(f"Run {run_id} succeeded.")
    with on_database(resolved_databases(config)["analytics"]) as engine, engine.connect() as conn:
        for table, col in ((schema.store_kpi_daily, "metric_date"),
                           (schema.store_anomaly_scores, "metric_date"),
                           (schema.store_health_scores, "metric_date"),
                           (schema.store_anomaly_alerts, "alert_date")):
            n = conn.execute(
                sa.select(sa.func.count()).select_from(table)
                .where(table.c[col].between(start, end))
            ).scalar_one()
            print(f"  {table.name:<28} {n:>8} rows in range")
        quiet_days = days_without_kpis(engine, start, end)
    if quiet_days:
        print(f"No source data for {format_days(quiet_days)}: no source had rows for those "
              "days (a closure, or data not loaded yet), so they have no KPIs, scores or alerts.")


def cmd_init_db(args: argparse.Namespace, config: AppConfig) -> int:
    from store_anomaly_assets.db.analytics.init_db import init_db

    analytics = resolved_databases(config)["analytics"]
    with on_database(analytics, writable=True) as engine:
        tables = init_db(engine)
    print(f"Analytics schema ready in {analytics.describe()}: {', '.join(tables)}")
    return 0


def _secrets() -> list[str]:
    """Every configured password, as given and URL-encoded, longest first."""
    passwords = {os.environ.get(f"{prefix}PASS", "").strip() for prefix in DATABASES}
    forms = {form for p in passwords if p for form in (p, quote_plus(p), quote(p, safe=""))}
    return sorted(forms, key=len, reverse=True)


def _scrub(message: str, secrets: Sequence[str]) -> str:
    """The message's first line with every secret replaced by ***."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = message.strip()
    return message.splitlines()[0] if message else message


def cmd_doctor(args: argparse.Namespace, config: AppConfig) -> int:

    resources = resolved_databases(config)
    secrets = _secrets()
    failed = 0
    for prefix, (key, _) in DATABASES.items():
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


def cmd_demo(args: argparse.Namespace, config: AppConfig) -> int:
    from store_anomaly_assets.cli.demo import run_demo

    if not config.embedded:
        raise CliError(
            "the demo runs on the embedded SQLite chain; unset the *_HOST config "
            "(or use another STORE_ANOMALY_DATA_DIR) to try it"
        )
    return run_demo(config, scale=args.scale, fresh=args.fresh)


def cmd_alerts(args: argparse.Namespace, config: AppConfig) -> int:
    from store_anomaly_assets.db.analytics.acknowledgments import open_alerts
    from store_anomaly_assets.db.analytics.schema import store_anomaly_alerts

    analytics = resolved_databases(config)["analytics"]
    with on_database(analytics) as engine:
        require_tables(analytics, engine, [store_anomaly_alerts.name])
        rows = open_alerts(engine, limit=args.limit)
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


def cmd_ack(args: argparse.Namespace, config: AppConfig) -> int:
    from store_anomaly_assets.db.analytics.acknowledgments import (
        AcknowledgmentError,
        acknowledge,
        acknowledge_older,
        check_acknowledger,
        check_note,
        check_older_than,
    )
    from store_anomaly_assets.db.analytics.schema import store_anomaly_alerts

    bulk = args.alert_id is None
    if not bulk and (args.severity or args.older_than is not None):
        raise CliError("give either an alert ID or --severity/--older-than, not both")
    if bulk and (not args.severity or args.older_than is None):
        raise CliError("give an alert ID, or --severity and --older-than for a bulk clean-up")
    try:
        # Every argument is checked before the database is touched.
        name = check_acknowledger(args.by)
        note = check_note(args.note)
        if bulk:
            check_older_than(args.older_than)
        analytics = resolved_databases(config)["analytics"]
        with on_database(analytics) as engine:
            require_tables(analytics, engine, [store_anomaly_alerts.name])
            if not bulk:
                acknowledge(engine, args.alert_id, name, note)
                print(f"Alert {args.alert_id} acknowledged by {name}.")
                return 0
            count = acknowledge_older(engine, args.severity, args.older_than, name)
    except AcknowledgmentError as exc:
        raise CliError(str(exc)) from None
    print(f"{count} {args.severity} alert(s) older than {args.older_than} days "
          f"acknowledged by {name}.")
    return 0


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line, like every other error of the CLI."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message}")


MAX_ALERTS_LIMIT = 1_000_000


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_ALERTS_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and {MAX_ALERTS_LIMIT}")
    return value


def _out_arg(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is not a file name")
    if text.endswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r} names a folder, not a file")
    return Path(text)


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `report --date D [--out FILE]` to the CLI's subcommands."""
    parser = subparsers.add_parser(
        "report", help="write the day's HTML report: health grid, alerts, control charts"
    )
    parser.add_argument("--date", type=_date, required=True,
                        help="business day to report (YYYY-MM-DD)")
    parser.add_argument("--out", type=_out_arg, metavar="FILE",
                        help="output file (default: store_anomaly_report_<date>.html here)")
    parser.set_defaults(func=cmd_report)
    return parser


def cmd_report(args: argparse.Namespace, config: AppConfig) -> int:
    from store_anomaly_assets.db.analytics import schema
    from store_anomaly_assets.report import NoReportData, load_report_data, write_report_data

    out = args.out or Path(f"store_anomaly_report_{args.date}.html")
    if out.is_dir():
        raise CliError(f"--out {out} is a folder; name the report file, e.g. "
                       f"{out / f'store_anomaly_report_{args.date}.html'}")
    analytics = resolved_databases(config)["analytics"]
    with on_database(analytics) as engine:
        require_tables(analytics, engine, [schema.store_health_scores.name,
                                           schema.store_anomaly_alerts.name,
                                           schema.store_anomaly_scores.name])
        try:
            data = load_report_data(engine, args.date)
        except NoReportData as exc:
            raise CliError(f"{exc} in {analytics.describe()}") from None
    try:
        path = write_report_data(data, out)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise CliError(f"--out {out}: cannot write the report: {exc.strerror or exc}{where}"
                       ) from None
    print(f"Report for {args.date} written to {path} ({data.alerts.height} alert(s), "
          f"{data.health.filter(data.health['metric_date'] == args.date).height} store(s))")
    return 0


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
    alerts.add_argument("--limit", type=_limit, default=50, help="at most this many (default 50)")
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


# Every error the CLI expects, mapped to its one line and exit status (2: fix the input,
# 1: a run failed). Anything else is a bug and keeps its traceback.
_ERRORS: tuple[tuple[type[BaseException], Callable[[Any], str], int], ...] = (
    (RunFailed, str, 1),
    (DatabaseProblem, lambda exc: database_error_message(exc.error, exc.where), 2),
    (sa.exc.DBAPIError, lambda exc: database_error_message(exc, "a database"), 2),
    (CliError, str, 2),
    (SettingsError, str, 2),
    (DatabaseMissingError, str, 2),
    (DatabaseError, str, 2),
    (KeyboardInterrupt, lambda exc: "interrupted", 130),
)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        # Library chatter (alembic, urllib3) stays at WARNING; LOG_LEVEL drives ours and
        # Dagster's run logs.
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
        config = load_config()
        log.setLevel(config.log_level)
        return args.func(args, config)
    except tuple(kind for kind, _, _ in _ERRORS) as exc:
        message, code = next((say(exc), code) for kind, say, code in _ERRORS
                             if isinstance(exc, kind))
        print(f"error: {_scrub(message, _secrets())}", file=sys.stderr)
        return code


def finish(code: int) -> NoReturn:
    """Close the pooled database connections, flush the output and exit with `code`."""
    dispose_engines()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe: nothing left to say
            stream.flush()
    sys.exit(code)


# benchmarks/backfill.py still imports the former name.


def entrypoint() -> NoReturn:
    """The `store-anomaly` console script."""
    try:
        code = main()
    except BaseException:
        dispose_engines()
        raise
    finish(code)

