"""The CLI's argument types: each parser turns the text into a value or raises
typer.BadParameter, which the user sees after the command's usage line, naming the option.

Click also hands a parser the option's default, already a value: it is passed through.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from store_anomaly_assets.cli.render import OutputFormat
from store_anomaly_assets.core.contracts import SEVERITIES

MAX_ALERTS_LIMIT = 1_000_000


def parse_date(value: str | date) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a YYYY-MM-DD date") from None


def parse_whole_number(value: str | int) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a whole number") from None


def parse_limit(value: str | int) -> int:
    number = parse_whole_number(value)
    if not 1 <= number <= MAX_ALERTS_LIMIT:
        raise typer.BadParameter(f"{number} is not between 1 and {MAX_ALERTS_LIMIT:,}")
    return number


def parse_severity(value: str) -> str:
    name = value.strip().upper()
    if name not in SEVERITIES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(SEVERITIES)}")
    return name


def _comma_list(value: str) -> list[str]:
    parts = [part for part in value.split(",") if part.strip()]
    if not parts:
        raise typer.BadParameter(f"{value!r} names nothing")
    return parts


def parse_severities(value: str | tuple[str, ...]) -> tuple[str, ...]:
    """`CRITICAL,WARNING`: one or more severities, comma-separated."""
    if isinstance(value, tuple):
        return value
    return tuple(parse_severity(part) for part in _comma_list(value))


def parse_store_ids(value: str | tuple[int, ...]) -> tuple[int, ...]:
    """`1101,1102`: one or more store ids, comma-separated."""
    if isinstance(value, tuple):
        return value
    return tuple(parse_whole_number(part) for part in _comma_list(value))


def parse_district(value: str) -> str:
    if not value.strip():
        raise typer.BadParameter("an empty name is not a district")
    return value.strip()


def parse_format(value: str | OutputFormat) -> OutputFormat:
    try:
        return OutputFormat(value.strip().lower() if isinstance(value, str) else value)
    except ValueError:
        names = ", ".join(f.value for f in OutputFormat)
        raise typer.BadParameter(f"{value!r} is not one of {names}") from None


def parse_scale(value: str | float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number") from None
    if not 0 < number < float("inf"):
        raise typer.BadParameter(f"{value!r} is not a positive number")
    return number


def parse_out(value: str | Path) -> Path:
    if isinstance(value, Path):
        return value
    if not value.strip():
        raise typer.BadParameter("an empty path is not a file name")
    if value.endswith("/"):
        raise typer.BadParameter(f"{value!r} names a folder, not a file")
    return Path(value)
