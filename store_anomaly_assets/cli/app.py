"""The `store-anomaly` command line on Typer: each command parses, calls its work, prints.

`main(argv)` drives the app in-process and returns the exit status: 0, 1 for a failed
run (or `doctor` finding an unreachable database), 2 for bad input. Every error is one
`error: ...` line on stderr; an argument the parser refuses is preceded by the command's
usage line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer

from store_anomaly_assets.cli import render, tasks
from store_anomaly_assets.cli.arguments import (
    MAX_ALERTS_LIMIT,
    parse_date,
    parse_district,
    parse_format,
    parse_limit,
    parse_out,
    parse_scale,
    parse_severities,
    parse_severity,
    parse_store_ids,
    parse_whole_number,
)
from store_anomaly_assets.cli.errors import (
    EXPECTED,
    CliError,
    RunFailed,
    UsageProblem,
    error_lines,
)
from store_anomaly_assets.cli.pipeline import (
    check_run_arguments,
    ensure_dagster_home,
    run_pipeline,
    run_range,
    run_summary,
    validate_run,
)
from store_anomaly_assets.cli.render import OutputFormat
from store_anomaly_assets.config import AppConfig, load_config

log = logging.getLogger("store_anomaly")

PROG = "store-anomaly"
DISTRIBUTION = "store-anomaly"

app = typer.Typer(
    name=PROG,
    help="Daily store performance anomaly detection (UC-OP-02) on Dagster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# ---------------------------------------------------------------------------- global options


@dataclass(frozen=True)
class Options:
    """The global options: a log level overriding LOG_LEVEL, and no progress when quiet."""

    log_level: str | None = None
    quiet: bool = False


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        render.say(f"{PROG} {version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Show the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Log at DEBUG (overrides LOG_LEVEL).")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Log at WARNING and draw no progress (overrides LOG_LEVEL).")
    ] = False,
) -> None:
    if verbose and quiet:
        raise UsageProblem("-v/--verbose and -q/--quiet contradict each other; give one")
    ctx.obj = Options("DEBUG" if verbose else "WARNING" if quiet else None, quiet)


def _options(ctx: typer.Context) -> Options:
    return ctx.find_object(Options) or Options()


def configured(ctx: typer.Context) -> AppConfig:
    """Every setting, read once and validated; -v/-q win over LOG_LEVEL."""
    options = _options(ctx)
    # Library chatter (alembic, urllib3) stays at WARNING; the log level drives ours and
    # Dagster's run logs.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    config = load_config(**({"log_level": options.log_level} if options.log_level else {}))
    log.setLevel(config.log_level)
    return config


# ---------------------------------------------------------------------------- commands


@app.command(help="Process the last complete day plus the lookback, a date, or a range.")
def run(
    ctx: typer.Context,
    day: Annotated[date | None, typer.Option(
        "--date", parser=parse_date, metavar="YYYY-MM-DD", help="One business day.")] = None,
    backfill_from: Annotated[date | None, typer.Option(
        parser=parse_date, metavar="YYYY-MM-DD", help="First business day of a backfill.")
    ] = None,
    backfill_to: Annotated[date | None, typer.Option(
        parser=parse_date, metavar="YYYY-MM-DD", help="Last business day of a backfill.")
    ] = None,
    accept_source_gaps: Annotated[bool, typer.Option(
        "--accept-source-gaps",
        help="Write even when a source lost rows the analytics tables hold (a deliberate "
        "rewrite; recorded in store_data_quality).")] = False,
) -> int:
    check_run_arguments(day, backfill_from, backfill_to)
    config = configured(ctx)
    start, end = run_range(config, day, backfill_from, backfill_to)
    validate_run(config, start, end)
    ensure_dagster_home(config)
    render.say(f"Running the store anomaly pipeline for {start}..{end} "
               f"({(end - start).days + 1} business day(s), one Dagster run)...")
    with render.step_progress("Running", _options(ctx).quiet) as progress:
        outcome = run_pipeline(config, start, end, log_level=config.log_level,
                               progress=progress, accept_source_gaps=accept_source_gaps)
    if outcome.refused:
        raise CliError(f"run {outcome.run_id} refused by the data-quality gate: "
                       f"{outcome.error}")
    if not outcome.success:
        raise RunFailed(f"run {outcome.run_id} failed: {outcome.error}")
    render.say(f"Run {outcome.run_id} succeeded.")
    render.print_run_summary(run_summary(config, start, end))
    return 0


@app.command("init-db", help="Create the analytics tables (idempotent).")
def init_db(ctx: typer.Context) -> int:
    where, tables = tasks.init_analytics(configured(ctx))
    render.say(f"Analytics schema ready in {where}: {', '.join(tables)}")
    return 0


@app.command(help="Check the six database connections.")
def doctor(ctx: typer.Context) -> int:
    failed = 0
    for found in tasks.check_databases(configured(ctx)):
        failed += found.error is not None
        render.print_doctor_line(found.error is None, found.prefix, found.where,
                                 found.error or "")
    render.say("All six databases reachable." if not failed else f"{failed} of 6 failed.")
    return 1 if failed else 0


@app.command(help="List open incidents (or alerts) in the guide's order: most severe, "
             "newest, costliest.")
def alerts(
    ctx: typer.Context,
    severity: Annotated[list[str] | None, typer.Option(
        "--severity", "-s", parser=parse_severities, metavar="SEVERITY",
        help="CRITICAL, WARNING or INFO; repeat it or separate with commas.")] = None,
    store: Annotated[list[str] | None, typer.Option(
        "--store", parser=parse_store_ids, metavar="ID",
        help="A store id; repeat it or separate with commas.")] = None,
    district: Annotated[str | None, typer.Option(
        parser=parse_district, metavar="NAME",
        help="The stores of a district (t_shop_info.district).")] = None,
    since: Annotated[date | None, typer.Option(
        parser=parse_date, metavar="YYYY-MM-DD", help="Alerts dated on or after this day.")
    ] = None,
    limit: Annotated[int, typer.Option(
        parser=parse_limit, metavar="N", help=f"At most N alerts (1..{MAX_ALERTS_LIMIT:,}).")
    ] = 50,
    output: Annotated[OutputFormat, typer.Option(
        "--format", "-f", parser=parse_format, metavar="FORMAT", help="table, json or csv.")
    ] = OutputFormat.table,
    each_alert: Annotated[bool, typer.Option(
        "--each-alert", help="One row per alert (store, day and metric) instead of per "
        "incident.")] = False,
) -> int:
    query = tasks.AlertQuery(
        severities=tuple(dict.fromkeys(s for group in severity or () for s in group)),
        stores=tuple(dict.fromkeys(i for group in store or () for i in group)),
        district=district, since=since)
    if each_alert:
        page = tasks.list_alerts(configured(ctx), query, limit)
        render.print_alerts(page.rows, page.total, output, query.given(), query.describe())
    else:
        page = tasks.list_incidents(configured(ctx), query, limit)
        render.print_incidents(page.rows, page.total, output, query.given(),
                               query.describe())
    return 0


@app.command(help="Acknowledge an incident or an alert, or preview and bulk-acknowledge "
             "old alerts.")
def ack(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(metavar="NAME", help="Who acknowledges (name).")],
    alert_id: Annotated[int | None, typer.Argument(
        parser=parse_whole_number, metavar="ID", help="The alert's id.", show_default=False)
    ] = None,
    incident: Annotated[int | None, typer.Option(
        "--incident", parser=parse_whole_number, metavar="ID",
        help="An incident's id: acknowledges it and all its alerts.")] = None,
    note: Annotated[str | None, typer.Option(
        metavar="TEXT", help="What was found and done.")] = None,
    severity: Annotated[str | None, typer.Option(
        "--severity", parser=parse_severity, metavar="SEVERITY",
        help="Bulk: the severity to clean up (CRITICAL, WARNING or INFO).")] = None,
    older_than: Annotated[int | None, typer.Option(
        parser=parse_whole_number, metavar="DAYS", help="Bulk: alerts dated more than DAYS ago.")
    ] = None,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Bulk: acknowledge them; without it, only show what would be.")
    ] = False,
) -> int:
    bulk = severity is not None or older_than is not None
    if sum((alert_id is not None, incident is not None, bulk)) > 1:
        raise UsageProblem("give one of an alert ID, --incident ID or --severity/--older-than")
    if incident is not None:
        name, count = tasks.acknowledge_incident(configured(ctx), incident, by, note)
        render.say(f"Incident {incident} and its {count} open alert(s) acknowledged by "
                   f"{name}.")
        return 0
    if alert_id is None and (severity is None or older_than is None):
        raise UsageProblem("give an alert ID, --incident ID, or --severity and --older-than "
                           "for a bulk clean-up")
    config = configured(ctx)
    if alert_id is not None:
        name = tasks.acknowledge_one(config, alert_id, by, note)
        render.say(f"Alert {alert_id} acknowledged by {name}.")
        return 0
    assert severity is not None and older_than is not None
    done = tasks.acknowledge_older(config, severity, older_than, by, note, yes)
    if done.acknowledged is None:
        render.print_bulk_preview(done)
    else:
        render.say(f"{done.acknowledged} {severity} alert(s) older than {older_than} days "
                   f"acknowledged by {done.by}.")
    return 0


@app.command(help="Generate the embedded demo chain, backfill it, show health and alerts.")
def demo(
    ctx: typer.Context,
    scale: Annotated[float, typer.Option(
        parser=parse_scale, metavar="X", help="Order volume multiplier.")] = 1.0,
    fresh: Annotated[bool, typer.Option(help="Regenerate the demo chain.")] = False,
) -> int:
    from store_anomaly_assets.cli.demo import run_demo

    config = configured(ctx)
    if not config.embedded:
        raise CliError(
            "the demo runs on the embedded SQLite chain; unset the *_HOST config "
            "(or use another STORE_ANOMALY_DATA_DIR) to try it"
        )
    return run_demo(config, scale=scale, fresh=fresh, quiet=_options(ctx).quiet)


@app.command(help="Write the day's HTML report: health grid, alerts, control charts.")
def report(
    ctx: typer.Context,
    day: Annotated[date, typer.Option(
        "--date", parser=parse_date, metavar="YYYY-MM-DD", help="Business day to report.")],
    out: Annotated[Path | None, typer.Option(
        parser=parse_out, metavar="FILE",
        help="Output file (default: store_anomaly_report_<date>.html here).")] = None,
    district: Annotated[str | None, typer.Option(
        parser=parse_district, metavar="NAME",
        help="Only the stores of a district (t_shop_info.district).")] = None,
) -> int:
    written = tasks.write_report(configured(ctx), day, out, district)
    render.say(render.report_written(day, written))
    return 0


@app.command("ack-link", help="Print a signed link that acknowledges an incident as NAME.")
def ack_link(
    ctx: typer.Context,
    incident_id: Annotated[int, typer.Argument(
        parser=parse_whole_number, metavar="INCIDENT_ID", help="The incident's id.",
        show_default=False)],
    name: Annotated[str, typer.Option(
        "--for", metavar="NAME", help="Who the link is for: the acknowledgment's name.")],
) -> int:
    render.say(tasks.ack_link(configured(ctx), incident_id, name))
    return 0


@app.command(help="Serve the acknowledgment pages (signed links) and the daily reports.")
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(
        metavar="HOST", help="Address to bind (default SERVE_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(
        parser=parse_whole_number, metavar="PORT",
        help="Port (default SERVE_PORT, 8088).")] = None,
) -> int:
    config = configured(ctx)
    if port is not None and not 1 <= port <= 65535:
        raise UsageProblem(f"--port {port} is not a TCP port (1-65535)")
    tasks.serve(config, host, port, _options(ctx).log_level or config.log_level, render.say)
    return 0


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]); returns the exit status."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=list(argv) if argv is not None else None, prog_name=PROG,
                              standalone_mode=False)
    except EXPECTED as exc:
        lines, code = error_lines(exc, PROG)
        print("\n".join(lines), file=sys.stderr)
        return code
    except SystemExit as exc:  # a closed output pipe (Typer's EPIPE handling)
        return exc.code if isinstance(exc.code, int) else 1
    if result == 130:  # Typer turns Ctrl-C into exit status 130
        print(error_lines(KeyboardInterrupt(), PROG)[0][-1], file=sys.stderr)
    return result if isinstance(result, int) else 0
