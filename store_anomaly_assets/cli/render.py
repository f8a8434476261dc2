"""What the CLI shows: Rich tables for people, JSON and CSV for programs, progress on stderr.

Tables wrap long texts instead of cutting them. Output that is not a terminal gets no
colour and a fixed width (COLUMNS, else 160), so captured output is the same on every
machine. Progress is drawn on stderr, and only when stderr is a terminal.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING

import polars as pl
from rich import box
from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from store_anomaly_assets.cli.pipeline import RunSummary
    from store_anomaly_assets.cli.tasks import BulkAck, WrittenReport

# Width of output that is not a terminal (a file, a pipe, a test's capture).
CAPTURED_WIDTH = 160
SEVERITY_STYLES = {"CRITICAL": "bold red", "WARNING": "yellow", "INFO": "cyan"}
STATUS_STYLES = {"HEALTHY": "green", "WATCH": "yellow", "AT_RISK": "bold red",
                 "INSUFFICIENT_DATA": "dim"}


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def is_terminal(stream: object) -> bool:
    """Whether `stream` is a terminal (asked of the stream itself: FORCE_COLOR and
    TTY_COMPATIBLE do not make a pipe or a test's capture draw progress or colours)."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def console(stderr: bool = False) -> Console:
    """A console on the current sys.stdout (or sys.stderr), sized for where it writes."""
    terminal = is_terminal(sys.stderr if stderr else sys.stdout)
    width = None
    if not terminal:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else CAPTURED_WIDTH
    return Console(stderr=stderr, force_terminal=terminal, width=width, highlight=False,
                   soft_wrap=False)


def say(text: str) -> None:
    """One plain line on stdout, never wrapped or styled."""
    print(text)


# ---------------------------------------------------------------------------- tables


def _money(value: float | None) -> str:
    return "" if value is None else f"${value:,.2f}"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _severity(value: str) -> Text:
    return Text(value, style=SEVERITY_STYLES.get(value, ""))


ALERT_FIELDS = ("Severity", "Date", "Store", "Metric", "Scope", "Impact")


def _listing(id_header: str, fields: Sequence[str], rows: pl.DataFrame,
             cells: list[tuple[str, ...]]) -> Table:
    """`#id` and two lines and more per row: the `cells` aligned under `fields` on the
    first, the description below, wrapped to the width, never cut."""
    widths = [max(len(text) for text in column) for column in zip(fields, *cells, strict=True)]

    def line(values: Sequence[str], severity: str | None = None) -> Text:
        text = Text()
        for i, (value, width) in enumerate(zip(values, widths, strict=True)):
            padded = value.rjust(width) if i == len(widths) - 1 else value.ljust(width)
            text.append(padded, style=SEVERITY_STYLES.get(severity or "", "") if i == 0 else "")
            text.append("" if i == len(widths) - 1 else "  ")
        return text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(id_header, no_wrap=True)
    table.add_column(line(fields), overflow="fold")
    for r, values in zip(rows.iter_rows(named=True), cells, strict=True):
        table.add_row(f"#{r['id']}", Group(line(values, r["severity"]),
                                           Text(r["description_en"] or "")))
    return table


def alerts_table(rows: pl.DataFrame) -> Table:
    """Open alerts: `#id`, severity, date, store, metric, scope and impact."""
    return _listing("ID", ALERT_FIELDS, rows, [
        (r["severity"], str(r["alert_date"]), f"{r['store_name']} [{r['store_id']}]",
         r["metric_name"], r["scope"], _money(r["impact_usd"]))
        for r in rows.iter_rows(named=True)
    ])


INCIDENT_FIELDS = ("Severity", "Days", "Store", "Metrics", "Status", "Impact")


def incidents_table(rows: pl.DataFrame) -> Table:
    """Open incidents: `#id`, severity, days, store, lead metric (+ the others), status."""
    def days(r: dict) -> str:
        first, last = r["first_date"], r["last_date"]
        return str(first) if first == last else f"{first}..{last}"

    return _listing("Incident", INCIDENT_FIELDS, rows, [
        (r["severity"], days(r), f"{r['store_name']} [{r['store_id']}]",
         r["primary_metric"] + (f" +{r['alert_count'] - 1}" if r["alert_count"] > 1 else ""),
         r["status"], _money(r["impact_usd"]))
        for r in rows.iter_rows(named=True)
    ])


def health_table(grid: pl.DataFrame) -> Table:
    """The health grid of a day: one row per store, worst first; names wrap when narrow."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("Store", no_wrap=True)
    table.add_column("Name", overflow="fold")
    table.add_column("Health", justify="right", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    for name in ("Sales", "Ops", "Staffing", "Quality"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in grid.iter_rows(named=True):
        status = r["health_status"] or ""
        table.add_row(str(r["store_id"]), Text(r["store_name"] or ""), _score(r["health_score"]),
                      Text(status, style=STATUS_STYLES.get(status, "")),
                      _score(r["sales_score"]), _score(r["operations_score"]),
                      _score(r["staffing_score"]), _score(r["quality_score"]))
    return table


# ---------------------------------------------------------------------------- alerts


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def alerts_footer(shown: int, total: int, filters: str) -> str:
    """`showing 50 of 784 open alerts matching ...`: the true total, not the page size."""
    matching = f" matching {filters}" if filters else ""
    if total == 0:
        return f"No open alerts{matching}."
    return f"showing {shown:,} of {_plural(total, 'open alert')}{matching}"


def _json_value(value: object) -> object:
    return value.isoformat() if isinstance(value, date) else value


def print_alerts(rows: pl.DataFrame, total: int, output: OutputFormat,
                 filters: dict[str, object], filters_text: str) -> None:
    """The alerts page in `output` format, with the true total of matching open alerts."""
    footer = alerts_footer(rows.height, total, filters_text)
    if output is OutputFormat.json:
        document = {
            "total": total, "shown": rows.height,
            "filters": {k: _json_value(v) for k, v in filters.items()},
            "alerts": [{k: _json_value(v) for k, v in r.items()}
                       for r in rows.iter_rows(named=True)],
        }
        say(json.dumps(document, ensure_ascii=False, indent=2))
    elif output is OutputFormat.csv:
        sys.stdout.write(rows.write_csv())
        if rows.height < total:  # a truncated export says so, outside the data
            print(f"{footer} (raise --limit for more)", file=sys.stderr)
    elif rows.is_empty():
        say(footer)
    else:
        print_table(alerts_table(rows))
        say(f"{footer}; acknowledge one with: store-anomaly ack ID --by NAME")


def print_incidents(rows: pl.DataFrame, total: int, output: OutputFormat,
                    filters: dict[str, object], filters_text: str) -> None:
    """The open incidents in `output` format, with the true total."""
    matching = f" matching {filters_text}" if filters_text else ""
    footer = (f"No open incidents{matching}." if total == 0 else
              f"showing {rows.height:,} of {_plural(total, 'open incident')}{matching}")
    if output is OutputFormat.json:
        say(json.dumps({
            "total": total, "shown": rows.height,
            "filters": {k: _json_value(v) for k, v in filters.items()},
            "incidents": [{k: _json_value(v) for k, v in r.items()}
                          for r in rows.iter_rows(named=True)],
        }, ensure_ascii=False, indent=2))
    elif output is OutputFormat.csv:
        sys.stdout.write(rows.write_csv())
        if rows.height < total:
            print(f"{footer} (raise --limit for more)", file=sys.stderr)
    elif rows.is_empty():
        say(footer)
    else:
        print_table(incidents_table(rows))
        say(f"{footer}; acknowledge one with: store-anomaly ack --incident ID --by NAME "
            "(its alerts: alerts --each-alert)")


def print_bulk_preview(bulk: BulkAck) -> None:
    """What `ack --severity S --older-than N` would acknowledge; nothing is written."""
    alerts = "alert" if bulk.total == 1 else "alerts"
    what = (f"{bulk.severity} {alerts} older than {bulk.older_than} days "
            f"(dated before {bulk.before})")
    if bulk.total == 0:
        say(f"No open {bulk.severity} alerts older than {bulk.older_than} days (dated before "
            f"{bulk.before}): nothing to acknowledge.")
        return
    say(f"{bulk.total:,} open {what} would be acknowledged by {bulk.by}:")
    print_table(alerts_table(bulk.first))
    if bulk.total > bulk.first.height:
        say(f"... and {bulk.total - bulk.first.height:,} more.")
    say("Nothing was acknowledged: add --yes to acknowledge "
        + ("it." if bulk.total == 1 else f"these {bulk.total:,}."))


def print_run_summary(summary: RunSummary) -> None:
    """A finished run's rows per table in its range, and its days without source data."""
    for table, n in summary.rows.items():
        say(f"  {table:<28} {n:>8} rows in range")
    if summary.days_without_data:
        say(f"No source data for {summary.days_without_data}: no source had rows for those "
            "days (a closure, or data not loaded yet), so they have no KPIs, scores or alerts.")


def print_doctor_line(ok: bool, prefix: str, where: str, reason: str = "") -> None:
    line = Text("OK    " if ok else "FAIL  ", style="green" if ok else "bold red")
    line.append(f"{prefix:<18} {where}" + ("" if ok else f": {reason}"))
    console().print(line, soft_wrap=True)


def report_written(day: date, written: WrittenReport) -> str:
    """`report`'s one line: where the file is and what it holds."""
    return (f"Report for {day} written to {written.path} ({written.alerts} alert(s), "
            f"{written.stores} store(s))")


def print_table(table: Table) -> None:
    """A table on stdout; captured output has no trailing blanks."""
    out = console()
    if out.is_terminal:
        out.print(table)
        return
    with out.capture() as captured:
        out.print(table)
    for line in captured.get().splitlines():
        say(line.rstrip())


def print_tables(*titled: tuple[str, Table]) -> None:
    for title, table in titled:
        say(title)
        print_table(table)


# ---------------------------------------------------------------------------- progress


def _progress_console(quiet: bool) -> Console | None:
    return console(stderr=True) if is_terminal(sys.stderr) and not quiet else None


@contextmanager
def status(message: str, quiet: bool = False) -> Iterator[None]:
    """A spinner with `message` on stderr while the block runs (terminals only)."""
    err = _progress_console(quiet)
    if err is None:
        yield
        return
    with err.status(Text(message)):
        yield


@contextmanager
def step_progress(label: str, quiet: bool = False
                  ) -> Iterator[Callable[[str, int, int], None] | None]:
    """A bar of a Dagster run's steps on stderr (terminals only); yields the callback
    `run_pipeline(progress=...)` takes, or None when nothing is drawn."""
    err = _progress_console(quiet)
    if err is None:
        yield None
        return
    columns: Sequence = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                         MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(step: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=f"{label}: {step}")

        yield update
