"""Issue 3 (detection quality): baseline masking and re-baselining, the known-events
calendar, the quiet profile, impact_usd and alert order, the in-control chain options.

Expected numbers are hand computed or come from a small pure-Python reference of the
DESIGN section 5 formulas (`statistics`, no polars), never from the code's expressions.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from store_anomaly_assets.config import SettingsError, load_config
from store_anomaly_assets.core import alerts, calendar, health, spc
from store_anomaly_assets.core.kpis import KPI_COLUMNS
from store_anomaly_assets.core.settings import SpcSettings
from store_anomaly_assets.demo import synthetic

S = SpcSettings(alert_profile="guide")  # DESIGN section 5, whatever the default


def changed(settings: SpcSettings, **changes: object) -> SpcSettings:
    """`settings` with `changes`, validated like any other settings."""
    return SpcSettings.model_validate({**settings.model_dump(), **changes})

MASKED = changed(S, baseline_masking="exclude")
CLIPPED = changed(S, baseline_masking="clip")
QUIET = changed(S, alert_profile="quiet")
MONDAY = date(2025, 1, 6)

_INT = {"order_count", "production_count", "headcount", "inspection_count"}
KPI_SCHEMA = {
    c: (pl.Int64 if c in _INT else pl.Float64) for c in KPI_COLUMNS
} | {"store_id": pl.Int64, "metric_date": pl.Date, "store_name": pl.String}


def day(i: int) -> date:
    return MONDAY + timedelta(days=i)


def alt(n: int) -> list[float]:
    """95, 105, ...: with 8 whole weeks of history every day-of-week factor is exactly 1."""
    return [95.0 if i % 2 == 0 else 105.0 for i in range(n)]


def kpis(values: dict[str, list[float | None]], store_id: int = 1) -> pl.DataFrame:
    n = max(len(v) for v in values.values())
    rows = []
    for i in range(n):
        row: dict = dict.fromkeys(KPI_COLUMNS)
        row.update(store_id=store_id, metric_date=day(i), store_name=f"Store {store_id}")
        for m, v in values.items():
            row[m] = None if v[i] is None else float(v[i])
        rows.append(row)
    return pl.DataFrame(rows, schema=KPI_SCHEMA, orient="row")


def first_dates(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.group_by("store_id").agg(pl.col("metric_date").min().alias("first_date"))


def events(rows: list[tuple[int, date, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=calendar.EVENT_COLUMNS, orient="row")


def scored(values: dict[str, list[float | None]], settings: SpcSettings = S,
           ev: pl.DataFrame | None = None) -> pl.DataFrame:
    frame = kpis(values)
    return spc.score_metrics(frame, first_dates(frame), settings, ev)


def zs(values: list[float | None], settings: SpcSettings = S,
       ev: pl.DataFrame | None = None) -> pl.DataFrame:
    frame = kpis({"revenue": values})
    return spc.compute_zscores(spc.to_long(frame), first_dates(frame), settings,
                               ev).sort("metric_date")


def pick(frame: pl.DataFrame, i: int, metric: str = "revenue") -> dict:
    rows = frame.filter((pl.col("metric_date") == day(i)) & (pl.col("metric_name") == metric))
    assert rows.height == 1
    return rows.row(0, named=True)


def reference(values: list[float | None], excluded: set[int] = frozenset(),
              masking: bool = False, rebaseline: int = 7) -> list[dict]:
    """Section 5 steps 1-3, with days left out of baselines (events, or masks)."""
    out: list[dict] = []
    left_out = set(excluded)
    run: list[int] = []
    side = 0
    for i, x in enumerate(values):
        usable = [j for j in range(max(0, i - 56), i)
                  if values[j] is not None and j not in left_out]
        same = [j for j in usable if (i - j) % 7 == 0]
        factor = 1.0
        if usable and same:
            all_mean = statistics.fmean(values[j] for j in usable)
            wd_mean = statistics.fmean(values[j] for j in same)
            if all_mean > 0 and wd_mean > 0:
                factor = wd_mean / all_mean
        adj = None if x is None else x / factor
        prior = [out[j]["adjusted"] for j in range(max(0, i - 28), i)
                 if values[j] is not None and j not in left_out]
        mean = std = z = None
        if len(prior) >= 20:
            mean, std = statistics.fmean(prior), statistics.stdev(prior)
            if i >= 28 and x is not None and std > 1e-9:
                z = (adj - mean) / std
        out.append({"dow_factor": factor, "adjusted": adj, "baseline_mean": mean,
                    "baseline_std": std, "baseline_n": len(prior), "z_score": z})
        if masking and z is not None and i not in excluded:
            if abs(z) > 3 and len(prior) > 20:
                s = 1 if z > 0 else -1
                run = run if s == side else []
                side = s
                left_out.add(i)
                run.append(i)
                if len(run) >= rebaseline:
                    left_out -= set(run)
                    run, side = [], 0
            else:
                run, side = [], 0
    return out


def assert_matches(got: pl.DataFrame, want: list[dict], days: range) -> None:
    for i in days:
        row = pick(got, i)
        for col, v in want[i].items():
            if col == "adjusted":
                continue
            if v is None:
                assert row[col] is None, (i, col)
            else:
                assert row[col] == pytest.approx(v, rel=1e-9, abs=1e-9), (i, col, row[col], v)


# ------------------------------------------------------------------------ calendar


def test_us_holidays_hand_listed() -> None:
    h25, h26 = calendar.us_holidays(2025), calendar.us_holidays(2026)
    assert h25[date(2025, 1, 20)] == "Martin Luther King Jr. Day"
    assert h25[date(2025, 2, 17)] == "Presidents' Day"
    assert h25[date(2025, 5, 26)] == "Memorial Day"
    assert h25[date(2025, 7, 4)] == "Independence Day"
    assert h25[date(2025, 9, 1)] == "Labor Day"
    assert date(2025, 10, 13) not in h25 and date(2025, 11, 11) not in h25  # minor
    assert calendar.us_holidays(2025, minor=True)[date(2025, 10, 13)] == "Columbus Day"
    assert calendar.us_holidays(2025, minor=True)[date(2025, 11, 11)] == "Veterans Day"
    assert h25[date(2025, 11, 27)] == "Thanksgiving"
    assert h25[date(2025, 11, 28)] == "Black Friday"
    assert h25[date(2025, 12, 24)] == "Christmas Eve"
    assert h25[date(2025, 12, 25)] == "Christmas Day"
    assert h25[date(2025, 12, 31)] == "New Year's Eve"
    # 2026-07-04 is a Saturday: observed on Friday the 3rd; Thanksgiving is the 26th.
    assert h26[date(2026, 7, 3)] == "Independence Day (observed)"
    assert h26[date(2026, 11, 26)] == "Thanksgiving"
    assert h26[date(2026, 11, 27)] == "Black Friday"
    assert len(h25) == 12 and len(h26) == 13
    # 2027: Christmas on a Saturday, observed on Friday the 24th.
    h27 = calendar.us_holidays(2027)
    assert h27[date(2027, 12, 24)] == "Christmas Day (observed)"
    assert h27[date(2027, 12, 31)] == "New Year's Eve"
    assert calendar.us_holidays(2028)[date(2027, 12, 31)] == "New Year's Day (observed)"


def test_known_events_from_file_and_builtin(tmp_path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "date,end_date,store_id,kind,name\n"
        "2025-11-26,,,promotion,Pre-Thanksgiving BOGO\n"
        "2025-11-20,2025-11-22,2,closure,Renovation\n"
        "2025-11-27,,1,promotion,Local parade\n",
        encoding="utf-8",
    )
    got = calendar.known_events([1, 2], date(2025, 11, 20), date(2025, 11, 28), "us", path)
    assert got.rows() == [
        (1, date(2025, 11, 26), "Pre-Thanksgiving BOGO"),
        (1, date(2025, 11, 27), "Local parade"),  # the file wins over the built-in
        (1, date(2025, 11, 28), "Black Friday"),
        (2, date(2025, 11, 20), "Renovation"),
        (2, date(2025, 11, 21), "Renovation"),
        (2, date(2025, 11, 22), "Renovation"),
        (2, date(2025, 11, 26), "Pre-Thanksgiving BOGO"),
        (2, date(2025, 11, 27), "Thanksgiving"),
        (2, date(2025, 11, 28), "Black Friday"),
    ]
    assert calendar.known_events([1], date(2025, 11, 27), date(2025, 11, 27), "none").is_empty()


def test_known_events_missing_file(tmp_path) -> None:
    with pytest.raises(ValueError, match="KNOWN_EVENTS_FILE"):
        calendar.known_events([1], date(2025, 1, 1), date(2025, 1, 2), "us",
                              tmp_path / "nope.csv")


@pytest.mark.parametrize("line", ["2025-13-01,,,x,y", "2025-11-02,2025-11-01,,x,y",
                                  "2025-11-01,,abc,x,y"])
def test_known_events_file_errors(tmp_path, line: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"date,end_date,store_id,kind,name\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        calendar.read_events_file(path)


def test_event_day_is_scored_but_left_out_of_baselines() -> None:
    values: list[float | None] = alt(130)
    values[100] = 30.0  # Thanksgiving-like day
    ev = events([(1, day(100), "Thanksgiving")])
    got = zs(values, ev=ev)
    assert_matches(got, reference(values, excluded={100}), range(28, 130))
    # By hand: day 101's baseline is days 73..100 without 100 (all with factor 1):
    # 14 x 105 (odd days) and 13 x 95.
    row = pick(got, 101)
    assert row["baseline_n"] == 27
    assert row["baseline_mean"] == pytest.approx((14 * 105 + 13 * 95) / 27)
    assert row["baseline_std"] == pytest.approx(statistics.stdev([105.0] * 14 + [95.0] * 13))
    # Day 107 (same weekday): its factor leaves day 100 out of both means.
    same = [95.0 if j % 2 == 0 else 105.0 for j in range(51, 107) if j != 100]
    wd = [95.0 if j % 2 == 0 else 105.0 for j in range(51, 107, 7) if j != 100]
    assert pick(got, 107)["dow_factor"] == pytest.approx(
        statistics.fmean(wd) / statistics.fmean(same))
    # Without the event, day 100 drags the baseline down and inflates it.
    plain = pick(zs(values), 101)
    assert plain["baseline_n"] == 28 and plain["baseline_std"] > 2.5 * row["baseline_std"]


def test_event_day_alert_marked_info_or_suppressed() -> None:
    values: list[float | None] = alt(70)
    values[63] = 30.0
    ev = events([(1, day(63), "Thanksgiving")])
    mark = pick(scored({"revenue": values}, S, ev), 63)
    assert mark["z_score"] < -3
    assert (mark["severity"], mark["rules_violated"]) == ("INFO", "EVENT:Thanksgiving,Z>3")
    for settings in (changed(S, known_event_alerts="suppress"), QUIET):
        quiet = pick(scored({"revenue": values}, settings, ev), 63)
        assert quiet["severity"] is None
        assert quiet["rules_violated"] == "EVENT:Thanksgiving,Z>3"
    # A quiet event day carries no marks at all.
    assert pick(scored({"revenue": alt(70)}, S, ev), 63)["rules_violated"] is None


def test_event_day_breaks_rule_runs() -> None:
    # z = -2.5 on three days in a row, the middle one an event: WE2 never completes.
    frame = pl.DataFrame({
        "store_id": [1] * 10, "metric_name": ["revenue"] * 10, "store_name": ["S"] * 10,
        "metric_date": [day(i) for i in range(10)],
        "metric_value": [100.0] * 7 + [75.0] * 3, "z_score": [0.0] * 7 + [-2.5] * 3,
        "eligible": [True] * 10, "cl": [100.0] * 10,
        "event": [None] * 8 + ["Promo", None],
    })
    frame = frame.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in (
        "baseline_mean", "baseline_std", "dow_factor", "ucl_2s", "lcl_2s", "ucl_3s", "lcl_3s")]
    ).with_columns(baseline_n=pl.lit(28, dtype=pl.Int32))
    out = spc.evaluate_rules(frame, S).sort("metric_date")
    last = out.row(9, named=True)
    assert not last["we_rule_2"]
    assert (last["severity"], last["rules_violated"]) == ("WARNING", "Z>2")
    assert out.row(8, named=True)["rules_violated"] == "EVENT:Promo,Z>2"


def test_health_ignores_expected_event_rows() -> None:
    d = day(40)
    scores = spc.with_adverse_z(pl.DataFrame(
        [(1, d, "revenue", -8.0, "EVENT:Thanksgiving,Z>3"), (1, d, "order_count", -1.0, None)],
        schema={"store_id": pl.Int64, "metric_date": pl.Date, "metric_name": pl.String,
                "z_score": pl.Float64, "rules_violated": pl.String}, orient="row"))
    days = pl.DataFrame({"store_id": [1], "metric_date": [d], "store_name": ["S"],
                         "eligible": [True]})
    empty = pl.DataFrame(schema={"store_id": pl.Int64, "metric_date": pl.Date,
                                 "inspection_score": pl.Float64})
    got = health.health_scores(days, scores, empty, S).row(0, named=True)
    assert got["sales_score"] == pytest.approx(80.0)  # order_count only: 100 - 20 * 1


# -------------------------------------------------------------- masking, re-baselining


def test_masked_day_is_left_out_of_later_baselines() -> None:
    values: list[float | None] = alt(130)
    values[100] = 20.0  # one bad day: z far below -3
    got = zs(values, MASKED)
    assert_matches(got, reference(values, masking=True), range(28, 130))
    assert got.filter(pl.col("masked"))["metric_date"].to_list() == [day(100)]
    row = pick(got, 101)
    assert row["baseline_n"] == 27
    # By hand: days 73..100 without 100 hold 14 x 105 and 13 x 95 (factor 1).
    assert row["baseline_mean"] == pytest.approx((14 * 105 + 13 * 95) / 27)
    assert row["baseline_std"] == pytest.approx(
        statistics.stdev([105.0] * 14 + [95.0] * 13))
    # Plain: the bad day is in the next 28 baselines.
    assert pick(zs(values), 101)["baseline_n"] == 28
    assert pick(zs(values), 101)["baseline_std"] > 3 * row["baseline_std"]
    # The plain baseline hides a second, smaller drop a week later; masking does not.
    values[107] = 80.0
    assert pick(scored({"revenue": values}, MASKED), 107)["severity"] == "CRITICAL"
    assert pick(scored({"revenue": values}, S), 107)["severity"] is None


def test_clipped_day_enters_later_baselines_at_its_limit() -> None:
    values: list[float | None] = alt(130)
    values[100] = 20.0
    got = zs(values, CLIPPED)
    # Day 100: factor 1, baseline days 72..99 = 14 x 95 and 14 x 105.
    alt_std = statistics.stdev([95.0, 105.0] * 14)
    assert pick(got, 100)["baseline_std"] == pytest.approx(alt_std)
    clipped = 100 - 3 * alt_std
    prior = [105.0] * 14 + [95.0] * 13 + [clipped]
    row = pick(got, 101)
    assert row["baseline_n"] == 28
    assert row["baseline_mean"] == pytest.approx(statistics.fmean(prior))
    assert row["baseline_std"] == pytest.approx(statistics.stdev(prior))
    # Between excluded (27 values) and plain (the raw 20 in it).
    assert pick(zs(values, MASKED), 101)["baseline_std"] < row["baseline_std"] < pick(
        zs(values), 101)["baseline_std"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_masked_path_matches_plain_when_nothing_is_masked(seed: int) -> None:
    rng = random.Random(seed)
    base = [100.0, 90.0, 95.0, 100.0, 120.0, 160.0, 150.0]
    values: list[float | None] = [base[i % 7] * (1 + rng.gauss(0, 0.03)) for i in range(120)]
    for i in rng.sample(range(30, 120), 6):
        values[i] = None
    plain, masked = zs(values), zs(values, MASKED)
    assert_matches(masked, reference(values, masking=True), range(28, 120))
    if masked["masked"].any():  # compare up to the first masked day
        first = masked.filter(pl.col("masked"))["metric_date"].min()
        plain = plain.filter(pl.col("metric_date") <= first)
        masked = masked.filter(pl.col("metric_date") <= first)
    cols = ["dow_factor", "baseline_mean", "baseline_std", "baseline_n", "z_score", "cl",
            "lcl_3s", "ucl_2s"]
    for a, b in zip(plain.select(cols).iter_rows(), masked.select(cols).iter_rows(),
                    strict=True):
        for x, y in zip(a, b, strict=True):
            assert (x is None and y is None) or x == pytest.approx(y, rel=1e-9, abs=1e-9)


def test_rebaseline_after_a_permanent_level_change() -> None:
    values: list[float | None] = alt(60) + [v / 2 for v in alt(60)]  # -50% from day 60
    got = zs(values, MASKED)
    assert_matches(got, reference(values, masking=True, rebaseline=7), range(28, 120))
    # Days 60..66 are beyond -3 sigma; the 7th masked day re-baselines: all unmasked.
    assert [pick(got, i)["baseline_n"] for i in range(60, 68)] == [28, 27, 26, 25, 24, 23,
                                                                    22, 28]
    assert not got["masked"].any()
    out = scored({"revenue": values}, MASKED).sort("metric_date")
    sev = dict(zip(out["metric_date"], out["severity"], strict=True))
    assert all(sev[day(i)] == "CRITICAL" for i in range(60, 67))
    # CRITICAL stops once re-baselined; every alert stops within ROLLING_WINDOW + 8 days.
    assert all(sev[day(i)] != "CRITICAL" for i in range(67, 120))
    assert all(sev[day(i)] is None for i in range(60 + 7 + 28 + 8, 120))
    # Re-baselining must come before the masks starve the baseline (fewer than 20 of 28).
    assert changed(MASKED, rebaseline_days=9).rebaseline_days == 9
    with pytest.raises(ValueError, match="REBASELINE_DAYS"):
        changed(MASKED, rebaseline_days=10)


def test_masks_on_opposite_sides_do_not_rebaseline() -> None:
    values: list[float | None] = alt(80)
    for i, v in zip(range(60, 67), [20, 200, 20, 200, 20, 200, 20], strict=True):
        values[i] = float(v)
    got = zs(values, changed(MASKED, rebaseline_days=2))
    assert got.filter(pl.col("metric_date").is_between(day(60), day(66)))["masked"].all()
    assert pick(got, 67)["baseline_n"] == 21


def test_masks_never_starve_the_baseline() -> None:
    # Alternating extremes never re-baseline; masking stops at 21 values (more than 20),
    # so every later day still has a baseline and a z.
    values: list[float | None] = alt(100)
    for i in range(60, 75):
        values[i] = 20.0 if i % 2 else 200.0
    got = zs(values, changed(MASKED, rebaseline_days=2))
    assert got.filter(pl.col("metric_date") >= day(60))["baseline_n"].min() >= 20
    assert got.filter(pl.col("metric_date") >= day(60))["z_score"].null_count() == 0
    assert_matches(got, reference(values, masking=True, rebaseline=2), range(28, 100))


def test_history_days_cover_the_mask_warm_up() -> None:
    assert MASKED.history_days == 2 * S.history_days == 2 * (28 + 56 + 10)


# ------------------------------------------------------------------------ profiles


def zframe(z: list[float], metric: str = "revenue") -> pl.DataFrame:
    n = len(z)
    frame = pl.DataFrame({
        "store_id": [1] * n, "metric_name": [metric] * n, "store_name": ["S"] * n,
        "metric_date": [day(i) for i in range(n)],
        "metric_value": [100.0 + 10 * v for v in z], "z_score": z,
        "eligible": [True] * n, "cl": [100.0] * n,
    }).with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in (
        "baseline_mean", "baseline_std", "dow_factor", "ucl_2s", "lcl_2s", "ucl_3s", "lcl_3s")])
    return frame.with_columns(baseline_n=pl.lit(28, dtype=pl.Int32))


PAD = [0.0] * 8


@pytest.mark.parametrize(("tail", "guide", "quiet"), [
    ([-2.5], ("WARNING", "Z>2"), ("WARNING", "Z>2")),
    ([-2.5, -2.5], ("WARNING", "WE2"), ("WARNING", "WE2")),
    ([-3.5], ("CRITICAL", "WE1"), ("CRITICAL", "WE1")),
    ([-0.5] * 8, ("WARNING", "WE4"), ("WARNING", "WE4")),
    ([0.1, 0.0, -0.1, -0.2, -0.3, -0.4, -0.5], ("INFO", "WE5"), (None, "WE5")),
])
def test_quiet_profile_on_a_lead_metric(tail: list[float], guide: tuple, quiet: tuple) -> None:
    for settings, want in ((S, guide), (QUIET, quiet)):
        out = spc.evaluate_rules(zframe(PAD + tail), settings).sort("metric_date")
        last = out.row(out.height - 1, named=True)
        assert (last["severity"], last["rules_violated"]) == want, settings.alert_profile


@pytest.mark.parametrize("metric", ["order_count", "aov", "production_count", "headcount",
                                    "orders_per_labor_hour", "revenue_per_labor_hour"])
def test_quiet_profile_scores_but_never_alerts_other_metrics(metric: str) -> None:
    for tail, rules in (([-3.5], "WE1"), ([-2.5, -2.5], "WE2")):
        out = spc.evaluate_rules(zframe(PAD + tail, metric), QUIET).sort("metric_date")
        last = out.row(out.height - 1, named=True)
        assert (last["severity"], last["rules_violated"]) == (None, rules)
        guide = spc.evaluate_rules(zframe(PAD + tail, metric), S).sort("metric_date")
        assert guide.row(guide.height - 1, named=True)["severity"] is not None
    assert QUIET.alert_metrics == ("revenue", "avg_production_seconds", "scheduled_hours",
                                   "inspection_score")
    assert S.alert_metrics is None


def test_quiet_profile_scheduled_hours_low_side_only() -> None:
    for tail, guide, quiet in (([-3.5], "CRITICAL", "CRITICAL"), ([3.5], "CRITICAL", None),
                               ([2.5], "WARNING", None), ([-2.5], "WARNING", "WARNING")):
        for settings, want in ((S, guide), (QUIET, quiet)):
            out = spc.evaluate_rules(zframe(PAD + tail, "scheduled_hours"), settings)
            last = out.sort("metric_date").row(out.height - 1, named=True)
            assert last["severity"] == want, (tail, settings.alert_profile)


def test_settings_from_env(monkeypatch) -> None:
    monkeypatch.setenv("ALERT_PROFILE", "Quiet")
    monkeypatch.setenv("BASELINE_MASKING", "Clip")
    monkeypatch.setenv("REBASELINE_DAYS", "5")
    monkeypatch.setenv("KNOWN_EVENTS", "none")
    monkeypatch.setenv("KNOWN_EVENT_ALERTS", "suppress")
    monkeypatch.setenv("LABOR_COST_PER_HOUR", "22.5")
    got = load_config(env_file=None).spc
    assert (got.alert_profile, got.baseline_masking, got.rebaseline_days, got.known_events,
            got.known_event_alerts, got.labor_cost_per_hour) == ("quiet", "clip", 5, "none",
                                                                 "suppress", 22.5)
    assert got.alert_metrics and not got.info_alerts and got.suppress_known_events
    monkeypatch.setenv("ALERT_PROFILE", "loud")
    with pytest.raises(SettingsError, match="ALERT_PROFILE"):
        load_config(env_file=None)


# ------------------------------------------------------------------- impact and order


SCORE_SCHEMA = {c: pl.Float64 for c in spc.SCORE_COLUMNS} | {
    "store_id": pl.Int64, "metric_date": pl.Date, "metric_name": pl.String,
    "store_name": pl.String, "baseline_n": pl.Int32, "rules_violated": pl.String,
    "severity": pl.String, **{f"we_rule_{n}": pl.Boolean for n in range(1, 6)},
    "eligible": pl.Boolean,
}


def row(metric: str, value: float, cl: float, severity: str | None = None,
        rules: str | None = None, z: float = -2.5, store: int = 1) -> dict:
    r: dict = dict.fromkeys(SCORE_SCHEMA)
    r.update(store_id=store, metric_date=day(40), metric_name=metric, store_name="S",
             metric_value=value, cl=cl, z_score=z, severity=severity, rules_violated=rules,
             eligible=True, **{f"we_rule_{n}": False for n in range(1, 6)})
    return r


def test_impact_usd_every_metric_hand_computed() -> None:
    ctx = [row("revenue", 900.0, 1000.0, "WARNING", "Z>2"),
           row("order_count", 90.0, 100.0, "WARNING", "Z>2"),
           row("aov", 10.0, 10.5, "WARNING", "Z>2"),
           row("production_count", 85.0, 100.0, "WARNING", "Z>2"),
           row("scheduled_hours", 40.0, 50.0, "WARNING", "Z>2"),
           row("headcount", 5.0, 7.0, "WARNING", "Z>2"),
           row("avg_production_seconds", 240.0, 180.0, "CRITICAL", "WE1", z=4.0),
           row("orders_per_labor_hour", 2.25, 2.0, "WARNING", "Z>2", z=2.5),
           row("revenue_per_labor_hour", 22.5, 25.0, "WARNING", "Z>2"),
           row("inspection_score", 65.0, None, "CRITICAL", "SCORE<70")]
    built = alerts.build_alerts(pl.DataFrame(ctx, schema=SCORE_SCHEMA), S)
    got = dict(zip(built["metric_name"], built["impact_usd"], strict=True))
    assert got == pytest.approx({
        "revenue": 100.0,  # expected minus actual revenue
        "order_count": 10 * 10.5,  # orders short x expected AOV
        "aov": 0.5 * 90,  # AOV gap x orders
        "production_count": 15 * 10.5,
        "scheduled_hours": 10 * 20.0,  # hours out of line x $20
        "headcount": 2 * (40 / 5) * 20.0,  # heads short x hours per head x $20
        "avg_production_seconds": round(60 * 85 / 3600 * 20.0, 2),  # extra bar time x $20
        "orders_per_labor_hour": abs(90 / 2.0 - 40) * 20.0,  # hours vs orders served
        "revenue_per_labor_hour": 2.5 * 40,
        "inspection_score": 1000.0 * 15 / 100,  # expected revenue x points below 80
    })
    # Most severe first, then the largest impact.
    assert built["metric_name"].to_list()[:3] == ["inspection_score", "avg_production_seconds",
                                                  "headcount"]
    assert built["severity"].to_list()[:2] == ["CRITICAL", "CRITICAL"]
    warn = built.filter(pl.col("severity") == "WARNING")["impact_usd"].to_list()
    assert warn == sorted(warn, reverse=True)


def test_impact_never_negative_and_event_texts() -> None:
    ctx = [row("scheduled_hours", 60.0, 50.0, "WARNING", "Z>2", z=2.5),
           row("revenue", 400.0, 1000.0, "INFO", "EVENT:Thanksgiving,Z>3", z=-8.0)]
    built = alerts.build_alerts(pl.DataFrame(ctx, schema=SCORE_SCHEMA), S)
    hours = built.filter(pl.col("metric_name") == "scheduled_hours").row(0, named=True)
    assert hours["impact_usd"] == pytest.approx(200.0)  # over-scheduled 10 h x $20
    ev = built.filter(pl.col("metric_name") == "revenue").row(0, named=True)
    assert ev["impact_usd"] == pytest.approx(600.0)
    assert ev["description_en"] == (
        "Revenue was $400.00 on Saturday 2025-02-15, 60.0% below the expected $1,000.00 for "
        "a usual Saturday. Known event 'Thanksgiving': expected, left out of the baselines; "
        "no action needed.")
    assert "感恩" not in ev["description_zh"] and "Thanksgiving" in ev["description_zh"]
    assert ev["recommended_action"] == alerts.EVENT_ACTION[0]


# --------------------------------------------------------------- synthetic options


def test_shape_noise_keeps_marginal_and_adds_correlation() -> None:
    rng = np.random.default_rng(3)
    sigma = 0.05
    raw = rng.lognormal(-(sigma**2) / 2, sigma, 20_000)
    shaped = synthetic._shape_noise(raw, 0.6, 0.08)
    logs = np.log(shaped)
    assert math.isclose(float(logs.std()), 0.08, rel_tol=0.05)
    assert math.isclose(float(shaped.mean()), 1.0, abs_tol=0.005)
    lag1 = float(np.corrcoef(logs[:-1], logs[1:])[0, 1])
    assert math.isclose(lag1, 0.6, abs_tol=0.03)
    assert np.array_equal(synthetic._shape_noise(raw, 0.0, None), raw) or np.allclose(
        synthetic._shape_noise(raw, 0.0, None), raw)


def test_chain_options_default_leave_the_draws_unchanged() -> None:
    spec = synthetic.default_chain(scale=0.02)
    a = synthetic.generate(spec)
    b = synthetic.generate(replace(spec, noise_ar=0.0, noise_sigma=None))
    assert a.orders.equals(b.orders)
    c = synthetic.generate(replace(spec, noise_ar=0.5))
    assert not a.orders.equals(c.orders)
