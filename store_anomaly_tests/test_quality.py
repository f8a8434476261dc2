"""core/quality.py and the bucket choice of the extraction, without a database."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from store_anomaly_assets.core import quality
from store_anomaly_assets.core.quality import DataQualitySettings
from store_anomaly_assets.db.sources.extraction import zone_transitions

D1, D2, D3 = date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)
LIMITS = DataQualitySettings()


def _extract(rows: str, data: dict) -> pl.DataFrame:
    return pl.DataFrame(data, schema={"store_id": pl.Int64, "metric_date": pl.Date,
                                      rows: pl.Int64, "rows_excluded": pl.Int64})


def _extracts(sales: dict, production: dict, staffing: dict, inspections: dict) -> dict:
    return {
        "salesorder": _extract("order_count", sales),
        "opproduction": _extract("production_count", production),
        "opempefficiency": _extract("headcount", staffing),
        "opqualitycontrol": _extract("inspection_count", inspections),
    }


EXTRACTS = _extracts(
    # store 1 trades on D1 and D2 (no orders on D2), store 2 only has an inspection on D2,
    # and every order of store 2 on D3 broke the rules.
    {"store_id": [1, 2], "metric_date": [D1, D3], "order_count": [300, 0],
     "rows_excluded": [2, 5]},
    {"store_id": [1, 1], "metric_date": [D1, D2], "production_count": [310, 412],
     "rows_excluded": [0, 0]},
    {"store_id": [1, 1], "metric_date": [D1, D2], "headcount": [6, 6],
     "rows_excluded": [0, 1]},
    {"store_id": [2], "metric_date": [D2], "inspection_count": [1], "rows_excluded": [0]},
)


def test_excluded_rows_are_one_warn_per_store_day_and_source() -> None:
    found = quality.excluded_row_findings(EXTRACTS, LIMITS).sort("store_id", "metric_date")
    assert found.select("store_id", "metric_date", "source", "rows_affected").rows() == [
        (1, D1, "salesorder", 2), (1, D2, "opempefficiency", 1), (2, D3, "salesorder", 5)]
    assert set(found["severity"]) == {"WARN"}
    sales = found.filter(pl.col("source") == "salesorder").row(0, named=True)
    assert sales["detail"] == ("2 orders left out of the KPIs: amount missing, negative or "
                               "above 1,000.00 (MAX_ORDER_AMOUNT)")
    assert sales["detail_zh"].startswith("2笔订单未计入指标")
    shifts = found.filter(pl.col("source") == "opempefficiency")["detail"][0]
    assert shifts == "1 shifts left out of the KPIs: scheduled hours outside 0-16"


def test_a_source_missing_on_a_trading_day_is_an_error_naming_the_others() -> None:
    rows = quality.source_rows(EXTRACTS)
    found = quality.missing_source_findings(rows)
    assert found.select("store_id", "metric_date", "source", "severity").rows() == [
        (1, D2, "salesorder", "ERROR")]
    assert found["detail"][0] == ("salesorder had no valid rows for this store-day while "
                                  "opproduction had 412 production records and "
                                  "opempefficiency had 6 employees on shift")
    # An inspection alone is not trading; invalid orders alone are not either.
    assert rows.filter(pl.col("store_id") == 2)["active"].to_list() == [False, False]


def test_closures_are_per_store_and_chain_wide_days_are_one_finding() -> None:
    rows = quality.source_rows(EXTRACTS)
    first = pl.DataFrame({"store_id": [1, 2, 3], "first_date": [D1, D1, date(2027, 1, 1)]},
                         schema={"store_id": pl.Int64, "first_date": pl.Date})
    no_events = pl.DataFrame(schema={"store_id": pl.Int64, "metric_date": pl.Date})
    found = quality.closure_findings(rows, first, D1, D3, no_events)
    # Store 2 did not trade on D1 or D2; nobody traded on D3; store 3 opens later.
    assert found.select("store_id", "metric_date").rows() == [(2, D1), (2, D2), (None, D3)]
    assert set(found["check_name"]) == {"no_activity"} and set(found["severity"]) == {"WARN"}
    events = pl.DataFrame({"store_id": [2, 1, 2], "metric_date": [D1, D3, D3]},
                          schema={"store_id": pl.Int64, "metric_date": pl.Date})
    listed = quality.closure_findings(rows, first, D1, D3, events)
    assert listed.select("store_id", "metric_date").rows() == [(2, D2)]


@pytest.mark.parametrize(("totals", "held", "expected"), [
    ({"salesorder": 0, "opproduction": 900, "opempefficiency": 40}, {},
     ["salesorder (t_order) has no valid rows for 2026-01-05..2026-01-07 while opproduction "
      "has 900 production records"]),
    ({"salesorder": 400, "opproduction": 900, "opempefficiency": 40},
     {"salesorder": 1000, "opproduction": 900},
     ["salesorder (t_order) has 400 valid orders for 2026-01-05..2026-01-07, 40% of the "
      "1,000 the analytics tables hold (SOURCE_DROP_RATIO=0.5)"]),
    ({"salesorder": 600, "opproduction": 900, "opempefficiency": 40}, {"salesorder": 1000},
     []),
    # Too few rows held to call a drop: a day's handful of inspections.
    ({"salesorder": 600, "opproduction": 900, "opempefficiency": 40, "opqualitycontrol": 1},
     {"opqualitycontrol": 12}, []),
    # Nothing anywhere: a closed chain or a day not loaded yet, not a lost source.
    ({}, {}, []),
])
def test_the_gate(totals: dict, held: dict, expected: list[str]) -> None:
    gaps = quality.source_gaps(totals, held, D1, D3, LIMITS)
    assert [g.message for g in gaps] == expected


def test_an_accepted_gap_is_recorded() -> None:
    gaps = quality.source_gaps({"opproduction": 5}, {}, D1, D3, LIMITS)
    found = quality.accepted_gap_findings(gaps, D3)
    assert found.select("store_id", "metric_date", "source", "check_name", "severity").rows() == [
        (None, D3, "salesorder", "source_gap_accepted", "WARN"),
        (None, D3, "opempefficiency", "source_gap_accepted", "WARN")]
    assert found["detail"][0].endswith("written anyway (--accept-source-gaps)")


def test_zone_transitions_are_found_to_the_minute() -> None:
    """The offsets a local-day query uses: New York's two changes of 2025 at their UTC
    instants, a constant half-hour zone, and Lord Howe's half-hour daylight saving."""
    lo, hi = datetime(2025, 1, 1), datetime(2026, 1, 1)
    assert zone_transitions("America/New_York", lo, hi) == [
        (None, -300), (datetime(2025, 3, 9, 7, 0), -240), (datetime(2025, 11, 2, 6, 0), -300)]
    assert zone_transitions("Asia/Kolkata", lo, hi) == [(None, 330)]
    assert zone_transitions("UTC", lo, hi) == [(None, 0)]
    # Lord Howe: +11:00 until 2025-04-06 02:00 local (15:00 UTC the day before), then
    # +10:30 until 2025-10-05 02:00 local (15:30 UTC the day before).
    assert zone_transitions("Australia/Lord_Howe", lo, hi) == [
        (None, 660), (datetime(2025, 4, 5, 15, 0), 630), (datetime(2025, 10, 4, 15, 30), 660)]
    # St John's, Newfoundland: -3:30 / -2:30, changing at 02:00 local.
    assert zone_transitions("America/St_Johns", lo, hi) == [
        (None, -210), (datetime(2025, 3, 9, 5, 30), -150), (datetime(2025, 11, 2, 4, 30), -210)]
