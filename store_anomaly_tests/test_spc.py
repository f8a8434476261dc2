"""Steps 7-8 (`stats/spc.py`) against DESIGN section 5.

Expected numbers come from hand computation or from a small pure-Python reference of the
section 5 formulas (`statistics` module, no polars), never from re-running the code's own
expressions.
"""

from __future__ import annotations

import random
import statistics
from datetime import date, timedelta

import polars as pl
import pytest

from store_anomaly_assets.core import spc
from store_anomaly_assets.core.kpis import KPI_COLUMNS
from store_anomaly_assets.core.settings import SpcSettings

S = SpcSettings(alert_profile="guide")  # DESIGN section 5, whatever the default
MONDAY = date(2025, 1, 6)
PAD = [0.0] * 8  # neutral days before a rule pattern: z = 0 breaks every run

_INT = {"order_count", "production_count", "headcount", "inspection_count"}
KPI_SCHEMA = {
    c: (pl.Int64 if c in _INT else pl.Float64) for c in KPI_COLUMNS
} | {"store_id": pl.Int64, "metric_date": pl.Date, "store_name": pl.String}

# DESIGN section 5 table, restated here rather than imported from the code under test.
ADVERSE = {
    "revenue": "low", "order_count": "low", "aov": "low", "production_count": "low",
    "avg_production_seconds": "high", "scheduled_hours": "both",
    "orders_per_labor_hour": "both", "headcount": "low", "revenue_per_labor_hour": "low",
}


# --------------------------------------------------------------------------- helpers


def day(i: int, start: date = MONDAY) -> date:
    return start + timedelta(days=i)


def kpis(values: dict[str, list[float | None]], store_id: int = 1,
         start: date = MONDAY) -> pl.DataFrame:
    """KPI rows from per-metric value lists; a day whose values are all None has no row."""
    n = max(len(v) for v in values.values())
    rows = []
    for i in range(n):
        row: dict = dict.fromkeys(KPI_COLUMNS)
        row.update(store_id=store_id, metric_date=day(i, start), store_name=f"Store {store_id}")
        got = {m: (v[i] if i < len(v) else None) for m, v in values.items()}
        if all(v is None for v in got.values()):
            continue
        for m, v in got.items():
            row[m] = None if v is None else (round(v) if m in _INT else float(v))
        rows.append(row)
    return pl.DataFrame(rows, schema=KPI_SCHEMA, orient="row")


def first_dates(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.group_by("store_id").agg(pl.col("metric_date").min().alias("first_date"))


def score(frame: pl.DataFrame, fd: pl.DataFrame | None = None) -> pl.DataFrame:
    return spc.score_metrics(frame, first_dates(frame) if fd is None else fd, S)


def zscores(frame: pl.DataFrame, fd: pl.DataFrame | None = None) -> pl.DataFrame:
    return spc.compute_zscores(spc.to_long(frame), first_dates(frame) if fd is None else fd, S)


def pick(frame: pl.DataFrame, metric: str, d: date, store_id: int = 1) -> dict:
    rows = frame.filter(
        (pl.col("metric_name") == metric) & (pl.col("metric_date") == d)
        & (pl.col("store_id") == store_id)
    )
    assert rows.height == 1, rows
    return rows.row(0, named=True)


def alt(n: int) -> list[float]:
    """95, 105, 95, ...: every 8-week weekday mean and 56-day mean is exactly 100."""
    return [95.0 if i % 2 == 0 else 105.0 for i in range(n)]


# stdev of 28 consecutive `alt` values (14 x 95, 14 x 105): sqrt(28 * 25 / 27)
ALT_STD = statistics.stdev([95.0, 105.0] * 14)


def zframe(zs: list[float | None], metric: str = "revenue", store_id: int = 1,
           start: date = MONDAY) -> pl.DataFrame:
    """A step-7 frame with the given z series (None = a missing day, no value)."""
    n = len(zs)
    return pl.DataFrame(
        {
            "store_id": [store_id] * n,
            "metric_name": [metric] * n,
            "store_name": [f"Store {store_id}"] * n,
            "metric_date": [day(i, start) for i in range(n)],
            "metric_value": [None if z is None else 100.0 + 10.0 * z for z in zs],
            "baseline_mean": [100.0] * n,
            "baseline_std": [10.0] * n,
            "baseline_n": [28] * n,
            "dow_factor": [1.0] * n,
            "z_score": zs,
            "cl": [100.0] * n,
            "ucl_2s": [120.0] * n,
            "lcl_2s": [80.0] * n,
            "ucl_3s": [130.0] * n,
            "lcl_3s": [70.0] * n,
            "eligible": [True] * n,
        },
        schema_overrides={"z_score": pl.Float64, "metric_value": pl.Float64,
                          "baseline_n": pl.Int32},
    )


def last_rules(zs: list[float | None], metric: str) -> dict:
    out = spc.evaluate_rules(zframe(zs, metric), S)
    return out.filter(pl.col("metric_date") == out["metric_date"].max()).row(0, named=True)


# ------------------------------------------------------------ pure-Python references


def reference_scores(values: list[float | None], first: date, start: date = MONDAY,
                     s: SpcSettings = S) -> list[dict]:
    """Section 5 steps 1-3 per calendar day, from the text of the contract."""
    n, weeks = len(values), s.dow_weeks
    factors, adjusted = [], []
    for i in range(n):
        lo = max(0, i - 7 * weeks)
        every = [values[j] for j in range(lo, i) if values[j] is not None]
        same = [values[j] for j in range(lo, i) if (i - j) % 7 == 0 and values[j] is not None]
        f = 1.0
        if every and same and statistics.mean(every) > 0 and statistics.mean(same) > 0:
            f = statistics.mean(same) / statistics.mean(every)
        factors.append(f)
        adjusted.append(None if values[i] is None else values[i] / f)
    out = []
    for i in range(n):
        prior = [adjusted[j] for j in range(max(0, i - s.rolling_window), i)
                 if adjusted[j] is not None]
        eligible = (day(i, start) - first).days >= s.rolling_window
        row = {"dow_factor": factors[i], "baseline_mean": None, "baseline_std": None,
               "baseline_n": None, "z_score": None, "cl": None, "ucl_2s": None,
               "lcl_2s": None, "ucl_3s": None, "lcl_3s": None}
        if eligible and len(prior) >= s.min_baseline_values:
            mean, std, f = statistics.mean(prior), statistics.stdev(prior), factors[i]
            row.update(baseline_mean=mean, baseline_std=std, baseline_n=len(prior),
                       cl=mean * f, ucl_2s=(mean + 2 * std) * f, lcl_2s=(mean - 2 * std) * f,
                       ucl_3s=(mean + 3 * std) * f, lcl_3s=(mean - 3 * std) * f)
            if adjusted[i] is not None and std > 0:
                row["z_score"] = (adjusted[i] - mean) / std
        out.append(row)
    return out


def reference_rules(zs: list[float | None], adverse: str, s: SpcSettings = S) -> list[dict]:
    """Section 5 step 4-5 on a z series (None breaks every window that contains it)."""

    def side_flags(i: int, sign: float) -> dict[int, bool]:
        def window(k: int) -> list[float] | None:
            if i - k + 1 < 0:
                return None
            w = zs[i - k + 1:i + 1]
            return None if any(v is None for v in w) else [sign * v for v in w]

        w1, w3, w5, w8, w7 = window(1), window(3), window(5), window(8), window(7)
        return {
            1: w1 is not None and w1[-1] > s.sigma_critical,
            2: w3 is not None and w3[-1] > s.sigma_warning
            and sum(v > s.sigma_warning for v in w3) >= 2,
            3: w5 is not None and w5[-1] > 1 and sum(v > 1 for v in w5) >= 4,
            4: w8 is not None and all(v > 0 for v in w8),
            5: w7 is not None and all(w7[k + 1] > w7[k] for k in range(6)),
        }

    out = []
    for i, z in enumerate(zs):
        hi, lo = side_flags(i, 1.0), side_flags(i, -1.0)
        flags = {n: {"high": hi[n], "low": lo[n], "both": hi[n] or lo[n]}[adverse]
                 for n in range(1, 6)}
        bad = None if z is None else {"high": z, "low": -z, "both": abs(z)}[adverse]
        if (bad is not None and bad > s.sigma_critical) or flags[1]:
            severity = "CRITICAL"
        elif (bad is not None and bad > s.sigma_warning) or flags[2] or flags[3] or flags[4]:
            severity = "WARNING"
        elif flags[5]:
            severity = "INFO"
        else:
            severity = None
        out.append({"flags": flags, "severity": severity})
    return out


# ------------------------------------------------------------------- to_long and shape


def test_to_long_unpivots_metrics_drops_nulls_and_casts() -> None:
    frame = kpis({"revenue": [1000.0, None], "order_count": [200, 180],
                  "inspection_score": [None, 91.5], "inspection_count": [0, 1],
                  "production_per_labor_hour": [3.0, 3.1]})
    long = spc.to_long(frame)
    assert long.schema["metric_value"] == pl.Float64
    got = sorted((r["metric_date"], r["metric_name"], r["metric_value"])
                 for r in long.iter_rows(named=True))
    assert got == [
        (day(0), "order_count", 200.0), (day(0), "revenue", 1000.0),
        (day(1), "inspection_score", 91.5), (day(1), "order_count", 180.0),
    ]


def test_score_metrics_columns_and_order() -> None:
    frame = kpis({"revenue": alt(40), "order_count": alt(40)})
    scored = score(frame)
    assert scored.columns == [*spc.SCORE_COLUMNS, "eligible", "adverse_z"]
    assert scored.height == 80
    keys = scored.select("store_id", "metric_date", "metric_name").rows()
    assert keys == sorted(keys)


# ------------------------------------------------ day-of-week factor, baseline, limits


def weekly_pattern(weeks: int) -> list[float]:
    """Mon-Fri 100, Sat-Sun 170, +10 in even weeks and -10 in odd weeks.

    Every 8 same-weekday values hold 4 even and 4 odd weeks, so with full history the
    weekday mean is exactly 100 or 170 and the 56-day mean exactly 120: f = 100/120 or
    170/120, and the adjusted values are 120 +/- 12 (weekdays), 120 +/- 1200/170 (weekend).
    """
    return [(170.0 if i % 7 >= 5 else 100.0) + (10.0 if (i // 7) % 2 == 0 else -10.0)
            for i in range(7 * weeks)]


# 28 adjusted baseline values over 4 whole weeks: 20 weekdays and 8 weekend days.
PATTERN_STD = statistics.stdev([132.0, 108.0] * 10 + [120 + 1200 / 170, 120 - 1200 / 170] * 4)


def test_dow_factor_and_limits_on_a_weekly_pattern() -> None:
    values = weekly_pattern(14)[:97]  # index 96 is the Saturday of week 13
    values[96] = 140.0
    saturday, monday = day(96), day(91)
    assert saturday.weekday() == 5 and monday.weekday() == 0
    z = zscores(kpis({"revenue": values}))

    sat = pick(z, "revenue", saturday)
    assert sat["dow_factor"] == pytest.approx(170 / 120, rel=1e-12)
    assert sat["baseline_mean"] == pytest.approx(120.0, rel=1e-12)
    assert sat["baseline_std"] == pytest.approx(PATTERN_STD, rel=1e-9)
    assert sat["baseline_n"] == 28
    # Limits in revenue dollars for a Saturday, not in adjusted units.
    assert sat["cl"] == pytest.approx(170.0, rel=1e-12)
    assert sat["ucl_2s"] == pytest.approx((120 + 2 * PATTERN_STD) * 170 / 120, rel=1e-9)
    assert sat["lcl_2s"] == pytest.approx((120 - 2 * PATTERN_STD) * 170 / 120, rel=1e-9)
    assert sat["ucl_3s"] == pytest.approx((120 + 3 * PATTERN_STD) * 170 / 120, rel=1e-9)
    assert sat["lcl_3s"] == pytest.approx((120 - 3 * PATTERN_STD) * 170 / 120, rel=1e-9)
    assert sat["lcl_3s"] < sat["lcl_2s"] < sat["cl"] < sat["ucl_2s"] < sat["ucl_3s"]
    assert sat["z_score"] == pytest.approx((140 * 120 / 170 - 120) / PATTERN_STD, rel=1e-9)

    mon = pick(z, "revenue", monday)  # odd week: 90
    assert mon["dow_factor"] == pytest.approx(100 / 120, rel=1e-12)
    assert mon["cl"] == pytest.approx(100.0, rel=1e-12)
    assert mon["ucl_3s"] == pytest.approx((120 + 3 * PATTERN_STD) * 100 / 120, rel=1e-9)
    assert mon["z_score"] == pytest.approx((90 * 1.2 - 120) / PATTERN_STD, rel=1e-9)


def test_weekend_peak_is_not_an_anomaly_after_adjustment() -> None:
    values = weekly_pattern(13)  # index 89 = Saturday of week 12 (even week: 180)
    scored = score(kpis({"revenue": values, "avg_production_seconds": values}))
    for metric in ("revenue", "avg_production_seconds"):
        row = pick(scored, metric, day(89))
        # Unadjusted, 180 against a 120 mean would be about +5 sigma.
        assert row["z_score"] == pytest.approx((180 * 120 / 170 - 120) / PATTERN_STD)
        assert row["severity"] is None


def test_dow_factor_is_one_when_not_computable() -> None:
    # Day 0 has no history, days 1-6 no same-weekday history; a zero history mean too.
    z = zscores(kpis({"revenue": [0.0] * 9 + [50.0], "order_count": [10, 20] * 5}))
    for i in range(7):
        assert pick(z, "order_count", day(i))["dow_factor"] == 1.0
    # Day 7: same-weekday mean 10 over all-days mean (10+20+10+20+10+20+10)/7 = 100/7.
    assert pick(z, "order_count", day(7))["dow_factor"] == pytest.approx(10 / (100 / 7))
    assert pick(z, "revenue", day(9))["dow_factor"] == 1.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_reference_on_noisy_weekly_series_with_gaps(seed: int) -> None:
    rng = random.Random(seed)
    base = [100.0, 90.0, 95.0, 100.0, 120.0, 160.0, 150.0]
    values: list[float | None] = [
        base[i % 7] * (1 + 0.002 * i) * (1 + rng.gauss(0, 0.08)) for i in range(130)
    ]
    for i in rng.sample(range(20, 130), 9):
        values[i] = None
    values[-1] = 40.0  # a deep drop on the last day
    first = day(0)
    z = zscores(kpis({"revenue": values})).sort("metric_date")
    assert z.height == 130  # the calendar is complete: missing days are NULL rows
    expected = reference_scores(values, first)
    checked = 0
    for got, want, value in zip(z.iter_rows(named=True), expected, values, strict=True):
        assert got["metric_value"] == value
        if value is None:
            assert got["z_score"] is None
            continue
        for col, v in want.items():
            if v is None:
                assert got[col] is None, (got["metric_date"], col)
            else:
                assert got[col] == pytest.approx(v, rel=1e-9, abs=1e-9), (got["metric_date"], col)
        checked += got["z_score"] is not None
    assert checked > 80
    assert pick(z, "revenue", day(129))["z_score"] < -3


# ------------------------------------------------ baseline size, zero spread, eligibility


def test_zero_std_is_floored_so_a_change_still_scores() -> None:
    # A constant history has std 0; the floor (a thousandth of the mean, and for whole
    # numbers their rounding resolution 1/sqrt(12)) still scores a change.
    scored = score(kpis({"revenue": [100.0] * 90 + [0.0],
                         "avg_production_seconds": [55.5] * 90 + [900.0],
                         "headcount": [5] * 90 + [2]}))
    for metric, cl, std in (("revenue", 100.0, 0.1), ("avg_production_seconds", 55.5, 0.0555),
                            ("headcount", 5.0, 12 ** -0.5)):
        row = pick(scored, metric, day(90))
        assert row["baseline_std"] == pytest.approx(std, rel=1e-12)
        assert row["cl"] == pytest.approx(cl)
        value = {"revenue": 0.0, "avg_production_seconds": 900.0, "headcount": 2.0}[metric]
        assert row["z_score"] == pytest.approx((value - cl) / std, rel=1e-12)
        assert row["severity"] == "CRITICAL" and row["rules_violated"] == "WE1"
    # The days before the change are on the centre line: z = 0, no alert.
    before = scored.filter(pl.col("metric_date") < day(90), pl.col("z_score").is_not_null())
    assert before["z_score"].abs().max() == 0 and before["severity"].null_count() == before.height


def test_nan_kpi_is_no_value() -> None:
    # polars sorts NaN above every number: as a value it would score as an extreme day.
    values = [*alt(90), float("nan")]
    long = spc.to_long(kpis({"revenue": values}))
    assert long.height == 90 and long["metric_value"].is_nan().sum() == 0
    assert score(kpis({"revenue": values})).filter(
        pl.col("metric_date") == day(90)).is_empty()


@pytest.mark.parametrize(("missing", "scored_ok"), [(8, True), (9, False)])
def test_needs_twenty_baseline_values(missing: int, scored_ok: bool) -> None:
    values: list[float | None] = [*alt(90), 70.0]
    for i in range(89, 89 - missing, -1):  # knock out the newest baseline days
        values[i] = None
    row = pick(score(kpis({"revenue": values})), "revenue", day(90))
    if scored_ok:
        assert row["baseline_n"] == 20
        want = reference_scores(values, day(0))[90]
        assert row["baseline_mean"] == pytest.approx(want["baseline_mean"])
        assert row["z_score"] == pytest.approx(want["z_score"])
        assert row["severity"] == "CRITICAL"
    else:
        assert row["baseline_mean"] is None and row["baseline_std"] is None
        assert row["baseline_n"] is None and row["cl"] is None
        assert row["z_score"] is None and row["severity"] is None


def test_alt_series_hand_computed_z() -> None:
    row = pick(score(kpis({"revenue": [*alt(90), 70.0]})), "revenue", day(90))
    assert row["dow_factor"] == 1.0
    assert row["baseline_mean"] == pytest.approx(100.0)
    assert row["baseline_std"] == pytest.approx(ALT_STD)
    assert row["z_score"] == pytest.approx(-30 / ALT_STD)
    assert row["adverse_z"] == pytest.approx(30 / ALT_STD)
    assert (row["cl"], row["severity"], row["rules_violated"]) == (100.0, "CRITICAL", "WE1")
    assert row["we_rule_1"] and not row["we_rule_5"]


def test_store_with_under_28_days_of_history_is_not_scored() -> None:
    # Store 1 has 28 days (day 27 is 27 days after its first), store 2 has 29 days.
    young = kpis({"revenue": [*alt(27), 40.0]}, store_id=1, start=day(1))
    old = kpis({"revenue": [*alt(28), 40.0]}, store_id=2, start=day(0))
    scored = score(pl.concat([young, old]))
    last = day(28)
    y = pick(scored, "revenue", last, store_id=1)
    assert y["eligible"] is False
    assert y["z_score"] is None and y["baseline_mean"] is None and y["cl"] is None
    assert y["severity"] is None and not y["we_rule_1"]
    o = pick(scored, "revenue", last, store_id=2)
    assert o["eligible"] is True
    assert o["z_score"] < -3 and o["severity"] == "CRITICAL"
    # Nothing of store 1 is ever scored.
    assert scored.filter(pl.col("store_id") == 1)["z_score"].null_count() == 28


def test_with_eligibility_boundary_and_unknown_store() -> None:
    frame = pl.DataFrame({"store_id": [1, 1, 2], "metric_date": [day(27), day(28), day(28)]})
    fd = pl.DataFrame({"store_id": [1], "first_date": [day(0)]})
    got = spc.with_eligibility(frame, fd, 28).sort("store_id", "metric_date")
    assert got["eligible"].to_list() == [False, True, None]


# ----------------------------------------------------------- Western Electric rules

RULE_CASES = [
    # metric, z tail (after PAD), we_rule flags set, severity, rules_violated
    ("revenue", [-3.01], {1}, "CRITICAL", "WE1"),
    ("revenue", [-3.0], set(), "WARNING", "Z>2"),  # exactly 3 sigma is not beyond
    ("revenue", [3.5], set(), None, None),  # a good day never alerts
    ("avg_production_seconds", [3.01], {1}, "CRITICAL", "WE1"),
    ("avg_production_seconds", [3.0], set(), "WARNING", "Z>2"),
    ("avg_production_seconds", [-3.5], set(), None, None),
    ("revenue", [-2.0], set(), None, None),  # exactly 2 sigma: no threshold warning
    ("revenue", [-2.01], set(), "WARNING", "Z>2"),
    # WE2: 2 of the last 3 beyond 2 sigma, today among them, no NULL in the 3 days
    ("revenue", [-2.5, 0.0, -2.5], {2}, "WARNING", "WE2"),
    ("revenue", [0.0, -2.5, -2.5], {2}, "WARNING", "WE2"),
    ("revenue", [-2.5, -2.5, 0.0], set(), None, None),
    ("revenue", [0.0, 0.0, -2.5], set(), "WARNING", "Z>2"),
    ("revenue", [-2.0, 0.0, -2.5], set(), "WARNING", "Z>2"),
    ("revenue", [-2.5, None, -2.5], set(), "WARNING", "Z>2"),
    ("revenue", [None, -2.5, 0.0, -2.5], {2}, "WARNING", "WE2"),
    ("revenue", [2.5, 0.0, -2.5], set(), "WARNING", "Z>2"),
    ("revenue", [2.5, 0.0, 2.5], set(), None, None),
    ("avg_production_seconds", [2.5, 0.0, 2.5], {2}, "WARNING", "WE2"),
    ("avg_production_seconds", [2.0, 0.0, 2.5], set(), "WARNING", "Z>2"),
    ("avg_production_seconds", [-2.5, 0.0, -2.5], set(), None, None),
    # WE3: 4 of the last 5 beyond 1 sigma, today among them, no NULL in the 5 days
    ("revenue", [-1.5, -1.5, -1.5, 0.0, -1.5], {3}, "WARNING", "WE3"),
    ("revenue", [-1.5, -1.5, -1.5, -1.5, 0.0], set(), None, None),
    ("revenue", [-1.0, -1.5, 0.0, -1.5, -1.5], set(), None, None),
    ("revenue", [-1.01, -1.5, 0.0, -1.5, -1.5], {3}, "WARNING", "WE3"),
    ("revenue", [-1.5, -1.5, None, -1.5, -1.5], set(), None, None),
    ("revenue", [None, -1.5, -1.5, -1.5, 0.0, -1.5], {3}, "WARNING", "WE3"),
    ("revenue", [-1.5, -1.5, 1.5, -1.5, -1.5], {3}, "WARNING", "WE3"),
    ("revenue", [1.5, 1.5, 1.5, 0.0, 1.5], set(), None, None),
    ("avg_production_seconds", [1.5, 1.5, 1.5, 0.0, 1.5], {3}, "WARNING", "WE3"),
    ("avg_production_seconds", [1.5, 1.5, -1.5, 1.5, 1.5], {3}, "WARNING", "WE3"),
    ("avg_production_seconds", [1.5, 1.5, -1.5, 0.0, 1.5], set(), None, None),
    ("avg_production_seconds", [-1.5, -1.5, -1.5, 0.0, -1.5], set(), None, None),
    # WE4: 8 in a row strictly on one side; 0 or a NULL breaks the run
    ("revenue", [-0.5] * 8, {4}, "WARNING", "WE4"),
    ("revenue", [-0.5] * 12, {4}, "WARNING", "WE4"),
    ("revenue", [-0.5] * 7, set(), None, None),
    ("revenue", [-0.5] * 3 + [0.0] + [-0.5] * 4, set(), None, None),
    ("revenue", [-0.5] * 3 + [None] + [-0.5] * 4, set(), None, None),
    ("revenue", [-0.5] * 7 + [0.5], set(), None, None),
    ("revenue", [0.5] * 8, set(), None, None),
    ("avg_production_seconds", [0.5] * 8, {4}, "WARNING", "WE4"),
    ("avg_production_seconds", [0.5] * 4 + [None] + [0.5] * 3, set(), None, None),
    ("avg_production_seconds", [-0.5] * 8, set(), None, None),
    # WE5: 7 values, 6 strict steps in the adverse direction; ties and NULLs break it
    ("revenue", [0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1], {5}, "INFO", "WE5"),
    ("revenue", [0.4, 0.3, 0.2, 0.1, 0.0, -0.1], set(), None, None),
    ("revenue", [0.5, 0.4, 0.3, 0.3, 0.2, 0.1, 0.0], set(), None, None),
    ("revenue", [0.5, 0.4, 0.3, None, 0.2, 0.1, 0.0], set(), None, None),
    ("revenue", [-0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5], set(), None, None),
    ("revenue", [0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -2.5], {5}, "WARNING", "WE5,Z>2"),
    ("avg_production_seconds", [-0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5], {5}, "INFO", "WE5"),
    ("avg_production_seconds", [-0.1, 0.0, 0.1, 0.2, 0.2, 0.4, 0.5], set(), None, None),
    ("avg_production_seconds", [0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1], set(), None, None),
    # combinations: one row, the highest severity, every rule listed
    ("revenue", [-2.5, 0.0, -3.5], {1, 2}, "CRITICAL", "WE1,WE2"),
    ("revenue", [-1.5] * 7 + [-3.5], {1, 3, 4}, "CRITICAL", "WE1,WE3,WE4"),
    ("revenue", [-1.5] * 6 + [-2.5, -2.5], {2, 3, 4}, "WARNING", "WE2,WE3,WE4"),
    # scheduled_hours and orders_per_labor_hour are adverse both ways, per side
    ("scheduled_hours", [3.5], {1}, "CRITICAL", "WE1"),
    ("scheduled_hours", [-3.5], {1}, "CRITICAL", "WE1"),
    ("scheduled_hours", [2.5], set(), "WARNING", "Z>2"),
    ("scheduled_hours", [-2.5], set(), "WARNING", "Z>2"),
    ("scheduled_hours", [2.5, 0.0, -2.5], set(), "WARNING", "Z>2"),  # sides don't mix
    ("scheduled_hours", [-2.5, 0.0, -2.5], {2}, "WARNING", "WE2"),
    ("scheduled_hours", [0.5] * 8, {4}, "WARNING", "WE4"),
    ("scheduled_hours", [-0.5] * 8, {4}, "WARNING", "WE4"),
    ("scheduled_hours", [0.5] * 4 + [-0.5] * 4, set(), None, None),
    ("scheduled_hours", [-1.5, -1.5, 1.5, -1.5, -1.5], {3}, "WARNING", "WE3"),
    ("scheduled_hours", [1.5, 1.5, -1.5, 1.5, 1.5], {3}, "WARNING", "WE3"),
    ("scheduled_hours", [-0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5], {5}, "INFO", "WE5"),
    ("scheduled_hours", [0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1], {5}, "INFO", "WE5"),
    ("orders_per_labor_hour", [-3.5], {1}, "CRITICAL", "WE1"),
    ("orders_per_labor_hour", [3.5], {1}, "CRITICAL", "WE1"),
]


@pytest.mark.parametrize(("metric", "tail", "rules", "severity", "text"), RULE_CASES)
def test_western_electric_rules(metric: str, tail: list[float | None], rules: set[int],
                                severity: str | None, text: str | None) -> None:
    row = last_rules(PAD + tail, metric)
    assert {n for n in range(1, 6) if row[f"we_rule_{n}"]} == rules
    assert row["severity"] == severity
    assert row["rules_violated"] == text


@pytest.mark.parametrize(("metric", "adverse"), sorted(ADVERSE.items()))
def test_adverse_side_per_metric(metric: str, adverse: str) -> None:
    for z in (4.0, -4.0):
        row = last_rules([*PAD, z], metric)
        alerting = adverse == "both" or (adverse == "high") == (z > 0)
        assert row["severity"] == ("CRITICAL" if alerting else None), (metric, z)
        assert row["we_rule_1"] is alerting
        assert row["adverse_z"] == (4.0 if alerting else -4.0)


def test_rule_flags_on_completing_day_only() -> None:
    out = spc.evaluate_rules(zframe([*PAD, *([-0.5] * 9)]), S).sort("metric_date")
    assert out["we_rule_4"].to_list() == [False] * 15 + [True, True]


def test_runs_do_not_leak_across_series() -> None:
    a = zframe([-0.5] * 8, "revenue", store_id=1)
    b = zframe([-0.5] * 3, "revenue", store_id=2)
    c = zframe([-2.5, -2.5], "order_count", store_id=1)
    out = spc.evaluate_rules(pl.concat([a, b, c]), S)
    flagged = out.filter(pl.col("we_rule_4") | pl.col("we_rule_2"))
    assert flagged.select("store_id", "metric_name", "metric_date").rows() == [
        (1, "revenue", day(7))
    ]


def test_ineligible_rows_never_flag() -> None:
    frame = zframe([-4.0] * 10).with_columns(eligible=pl.lit(False))
    frame = frame.with_columns(z_score=pl.lit(None, dtype=pl.Float64))
    out = spc.evaluate_rules(frame, S)
    assert out["severity"].null_count() == 10
    assert not out.select(pl.any_horizontal([f"we_rule_{n}" for n in range(1, 6)]).any()).item()


def test_we5_is_about_direction_not_position() -> None:
    # Decided semantics: six steps in the adverse direction alert (INFO) even while every
    # value is still above the revenue centre line (z = +0.5 today).
    row = last_rules([*PAD, 3.0, 2.5, 2.0, 1.5, 1.0, 0.8, 0.5], "revenue")
    assert (row["severity"], row["rules_violated"], row["z_score"]) == ("INFO", "WE5", 0.5)


def test_rules_do_not_depend_on_input_row_order() -> None:
    z = zscores(kpis({"revenue": [*alt(90), *([97.0] * 8)]}))

    def flagged(frame: pl.DataFrame) -> list[date]:
        out = spc.evaluate_rules(frame, S).filter(pl.col("we_rule_4"))
        return sorted(out["metric_date"].to_list())

    assert flagged(z) == [day(97)]
    assert flagged(z.reverse()) == [day(97)]


def test_stores_are_scored_independently() -> None:
    rng = random.Random(7)
    a = [100 + rng.gauss(0, 8) for _ in range(100)]
    b = [300 + rng.gauss(0, 30) for _ in range(70)]
    one_a, one_b = kpis({"revenue": a}, 1), kpis({"revenue": b}, 2, start=day(30))
    together = score(pl.concat([one_a, one_b]))
    apart = pl.concat([score(one_a), score(one_b)])
    assert together.equals(apart.sort("store_id", "metric_date", "metric_name"))
    assert together["z_score"].null_count() < together.height


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("metric", ["revenue", "avg_production_seconds", "scheduled_hours"])
def test_rules_match_reference_on_random_z(seed: int, metric: str) -> None:
    rng = random.Random(seed * 31 + len(metric))
    zs: list[float | None] = []
    for _ in range(300):
        r = rng.random()
        if r < 0.05:
            zs.append(None)
        elif r < 0.15:  # sustained shifts and exact boundary values
            zs.append(rng.choice([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]))
        else:
            drift = 1.2 * ((len(zs) // 25) % 3 - 1)
            zs.append(round(rng.gauss(drift, 1.3), 2))
    # Plant monotone runs (WE5 is rare in noise) in both directions.
    zs[50:57] = [-1.2, -0.8, -0.3, 0.1, 0.6, 0.9, 1.4]
    zs[150:157] = [1.1, 0.7, 0.2, -0.1, -0.4, -0.9, -1.5]
    out = spc.evaluate_rules(zframe(zs, metric), S).sort("metric_date")
    want = [w for w, z in zip(reference_rules(zs, ADVERSE[metric]), zs, strict=True)
            if z is not None]
    assert out.height == len(want)
    seen = set()
    for got, ref in zip(out.iter_rows(named=True), want, strict=True):
        assert {n: got[f"we_rule_{n}"] for n in range(1, 6)} == ref["flags"], got
        assert got["severity"] == ref["severity"], got
        seen |= {n for n, v in ref["flags"].items() if v}
    assert seen == {1, 2, 3, 4, 5}  # every rule was exercised


# --------------------------------------------------- end to end from KPI values


def test_end_to_end_spike_direction() -> None:
    values = alt(90)
    scored = score(kpis({
        "revenue": [*values, 130.0],
        "avg_production_seconds": [*values, 130.0],
        "scheduled_hours": [*values, 130.0],
        "headcount": [*values, 70.0],
        "orders_per_labor_hour": [*values, 70.0],
    }))
    z = 30 / ALT_STD
    expect = {
        "revenue": (z, None),  # a revenue spike is good news
        "avg_production_seconds": (z, "CRITICAL"),
        "scheduled_hours": (z, "CRITICAL"),
        "headcount": (-z, "CRITICAL"),
        "orders_per_labor_hour": (-z, "CRITICAL"),
    }
    for metric, (zz, severity) in expect.items():
        row = pick(scored, metric, day(90))
        assert row["z_score"] == pytest.approx(zz), metric
        assert row["severity"] == severity, metric


def test_end_to_end_sustained_shift_and_a_gap() -> None:
    shifted = [*alt(90), *([97.0] * 8)]
    with_gap: list[float | None] = [*alt(90), *([97.0] * 8)]
    with_gap[93] = None
    up = [*alt(89), 95.0, *([103.0] * 8)]  # day 89 below the centre, then 8 above
    scored = score(kpis({"revenue": shifted, "order_count": with_gap,
                         "avg_production_seconds": up, "aov": up}))
    for metric, fires in (("revenue", True), ("order_count", False),
                          ("avg_production_seconds", True), ("aov", False)):
        last = pick(scored, metric, day(97))
        before = pick(scored, metric, day(96))
        assert last["we_rule_4"] is fires, metric
        assert last["severity"] == ("WARNING" if fires else None), metric
        assert not before["we_rule_4"]
        assert not (last["we_rule_1"] or last["we_rule_2"] or last["we_rule_3"])
    assert pick(scored, "revenue", day(97))["rules_violated"] == "WE4"
    # the missing day is a NULL row in step 7, which is what broke the run
    z = zscores(kpis({"order_count": with_gap}))
    gap = pick(z, "order_count", day(93))
    assert gap["metric_value"] is None and gap["z_score"] is None


# ------------------------------------------------------------ inspection thresholds


@pytest.mark.parametrize(
    ("value", "severity", "text"),
    [(69.99, "CRITICAL", "SCORE<70"), (70.0, "WARNING", "SCORE<80"),
     (75.0, "WARNING", "SCORE<80"), (79.99, "WARNING", "SCORE<80"), (80.0, None, None),
     (95.0, None, None), (0.0, "CRITICAL", "SCORE<70")],
)
def test_inspection_thresholds(value: float, severity: str | None, text: str | None) -> None:
    frame = kpis({"inspection_score": [value]}, start=day(40))
    fd = pl.DataFrame({"store_id": [1], "first_date": [day(0)]})
    row = pick(score(frame, fd), "inspection_score", day(40))
    assert (row["severity"], row["rules_violated"]) == (severity, text)
    assert row["metric_value"] == value and row["eligible"] is True
    assert row["z_score"] is None and row["adverse_z"] is None and row["cl"] is None
    assert not any(row[f"we_rule_{n}"] for n in range(1, 6))


def test_inspection_of_a_young_store_does_not_alert() -> None:
    frame = kpis({"inspection_score": [50.0]}, start=day(27))
    fd = pl.DataFrame({"store_id": [1], "first_date": [day(0)]})
    row = pick(score(frame, fd), "inspection_score", day(27))
    assert row["eligible"] is False and row["severity"] is None and row["rules_violated"] is None


def test_inspection_only_kpis() -> None:
    frame = kpis({"inspection_score": [65.0, None, 85.0]}, start=day(40))
    fd = pl.DataFrame({"store_id": [1], "first_date": [day(0)]})
    scored = score(frame, fd)
    assert scored.columns == [*spc.SCORE_COLUMNS, "eligible", "adverse_z"]
    assert scored["severity"].to_list() == ["CRITICAL", None]
