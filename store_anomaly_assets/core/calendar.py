"""Known events: days whose KPIs are expected to be unusual (holidays, closures, promotions).

A known-event day is
- left out of every baseline (the day-of-week factor and the rolling mean/std), so
  Thanksgiving never drags the next four weeks' expectation down, and
- not alerted: its score keeps z and the limits, but `severity` is NULL and
  `rules_violated` reads `EVENT:<name>` (followed by the rules that fired, if any),
  so nobody is paged and the asset check "every CRITICAL score has an alert" holds.
  Its z is also left out of the Western Electric runs (a NULL breaks them).

Sources, merged:
1. Built-in US public holidays for the whole chain (`KNOWN_EVENTS=us`, the default):
   the federal holidays (and their observed weekday when they fall on a weekend) except
   Columbus Day and Veterans Day (offices and coffee shops work through them), plus the
   retail days a coffee chain feels: Black Friday, Christmas Eve and New Year's Eve.
   `KNOWN_EVENTS=none` turns them off.
2. A CSV file (`KNOWN_EVENTS_FILE`) of planned closures, promotions and local events:
   columns `date` (YYYY-MM-DD), optional `end_date` (inclusive), optional `store_id`
   (blank: every store), optional `kind` and `name`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path

import polars as pl

EVENT_COLUMNS = {"store_id": pl.Int64, "metric_date": pl.Date, "event": pl.String}
EVENT_PREFIX = "EVENT:"


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th (1-based) `weekday` (Mon=0) of the month; n=-1 for the last one."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date | None:
    """The federal observed weekday of a holiday on a weekend (Sat -> Fri, Sun -> Mon)."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return None


# Federal holidays most offices and every coffee shop work through: the chain's demand
# barely moves, so by default they are not known events (add them in the file if yours do).
MINOR_HOLIDAYS = ("Columbus Day", "Veterans Day")


def us_holidays(year: int, minor: bool = False) -> dict[date, str]:
    """US federal holidays of `year` (with observed days) and the chain's retail days.

    `minor` adds Columbus Day and Veterans Day, which leave a coffee chain's demand alone.
    """
    federal = {
        date(year, 1, 1): "New Year's Day",
        _nth_weekday(year, 1, 0, 3): "Martin Luther King Jr. Day",
        _nth_weekday(year, 2, 0, 3): "Presidents' Day",
        _nth_weekday(year, 5, 0, -1): "Memorial Day",
        date(year, 6, 19): "Juneteenth",
        date(year, 7, 4): "Independence Day",
        _nth_weekday(year, 9, 0, 1): "Labor Day",
        _nth_weekday(year, 10, 0, 2): "Columbus Day",
        date(year, 11, 11): "Veterans Day",
        _nth_weekday(year, 11, 3, 4): "Thanksgiving",
        date(year, 12, 25): "Christmas Day",
    }
    if not minor:
        federal = {d: n for d, n in federal.items() if n not in MINOR_HOLIDAYS}
    days = dict(federal)
    for day, name in federal.items():
        observed = _observed(day)
        if observed is not None:
            days.setdefault(observed, f"{name} (observed)")
    thanksgiving = _nth_weekday(year, 11, 3, 4)
    days.setdefault(thanksgiving + timedelta(days=1), "Black Friday")
    days.setdefault(date(year, 12, 24), "Christmas Eve")
    days.setdefault(date(year, 12, 31), "New Year's Eve")
    return days


def read_events_file(path: str | Path) -> list[tuple[int | None, date, date, str]]:
    """Rows of a known-events CSV as (store_id or None, first day, last day, name)."""
    rows = []
    if not Path(path).is_file():
        raise ValueError(f"KNOWN_EVENTS_FILE {path} does not exist (or is not a file)")
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for n, rec in enumerate(csv.DictReader(handle), start=2):
            rec = {(k or "").strip().lower(): (v or "").strip() for k, v in rec.items()}
            try:
                first = date.fromisoformat(rec["date"])
                last = date.fromisoformat(rec["end_date"]) if rec.get("end_date") else first
                store = int(rec["store_id"]) if rec.get("store_id") else None
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path}, line {n}: bad known-event row {rec} ({exc})") from None
            if last < first:
                raise ValueError(f"{path}, line {n}: end_date {last} is before date {first}")
            kind = rec.get("kind") or "event"
            name = rec.get("name") or kind
            rows.append((store, first, last, name))
    return rows


def known_events(
    store_ids: Sequence[int],
    start: date,
    end: date,
    builtin: str = "us",
    file: str | Path | None = None,
) -> pl.DataFrame:
    """One row per store and day in start..end that is a known event (first name wins)."""
    found: dict[tuple[int, date], str] = {}

    def add(stores: Iterable[int], day: date, name: str) -> None:
        if start <= day <= end:
            for s in stores:
                found.setdefault((s, day), name)

    if file:
        for store, first, last, name in read_events_file(file):
            stores = list(store_ids) if store is None else [store]
            day = first
            while day <= last:
                add(stores, day, name)
                day += timedelta(days=1)
    if builtin == "us":
        for year in range(start.year, end.year + 1):
            for day, name in us_holidays(year).items():
                add(store_ids, day, name)
    elif builtin not in ("none", ""):
        raise ValueError(f"unknown built-in calendar {builtin!r}; use 'us' or 'none'")
    return pl.DataFrame(
        [(s, d, n) for (s, d), n in sorted(found.items())], schema=EVENT_COLUMNS, orient="row"
    )


def empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_COLUMNS)
