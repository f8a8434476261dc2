"""The standard profile's statistics against independent references.

- Calibrated z: closed forms of the t distribution (1 and 2 degrees of freedom) and a
  Simpson-rule integral of the t density, with the standard library's normal quantile.
- Run lengths: the published CUSUM values (Brook and Evans; Lucas and Crosier), the
  closed form of the 3-sigma rule, and a Markov chain whose transitions are decided by
  the project's own rule engine (`spc.evaluate_rules`), not by the chain in
  `calibration`.
- A hand-computed standard-profile score, the exact Poisson tail of a small count, the
  CUSUM against its plain recursion, and incidents on a hand-made alert list.
"""

from __future__ import annotations

import functools
import math
import random
from datetime import date, timedelta
from statistics import NormalDist

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from store_anomaly_assets.core import calibration, incidents, spc
from store_anomaly_assets.core.kpis import KPI_COLUMNS
from store_anomaly_assets.core.settings import SpcSettings

GUIDE = SpcSettings(alert_profile="guide")
STANDARD = SpcSettings(alert_profile="standard")
MONDAY = date(2025, 1, 6)
PHI = NormalDist()

_INT = {"order_count", "production_count", "headcount", "inspection_count"}
KPI_SCHEMA = {c: (pl.Int64 if c in _INT else pl.Float64) for c in KPI_COLUMNS} | {
    "store_id": pl.Int64, "metric_date": pl.Date, "store_name": pl.String}


def day(i: int) -> date:
    return MONDAY + timedelta(days=i)


def kpis(values: dict[str, list[float | None]], store_id: int = 1) -> pl.DataFrame:
    n = max(len(v) for v in values.values())
    rows = []
    for i in range(n):
        row: dict = dict.fromkeys(KPI_COLUMNS)
        row.update(store_id=store_id, metric_date=day(i), store_name="S")
        for m, v in values.items():
            row[m] = None if v[i] is None else (round(v[i]) if m in _INT else float(v[i]))
        rows.append(row)
    return pl.DataFrame(rows, schema=KPI_SCHEMA, orient="row")


def score(values: dict[str, list[float | None]], settings: SpcSettings = STANDARD,
          events: pl.DataFrame | None = None) -> pl.DataFrame:
    frame = kpis(values)
    first = frame.group_by("store_id").agg(pl.col("metric_date").min().alias("first_date"))
    return spc.score_metrics(frame, first, settings, events)


def pick(frame: pl.DataFrame, i: int, metric: str = "revenue") -> dict:
    rows = frame.filter((pl.col("metric_date") == day(i)) & (pl.col("metric_name") == metric))
    assert rows.height == 1
    return rows.row(0, named=True)


# ------------------------------------------------------------ t tails, by hand


def t_density(x: float, df: int) -> float:
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    return c * (1 + x * x / df) ** (-(df + 1) / 2)


def t_upper_tail(t: float, df: int, steps: int = 20_000) -> float:
    """P(T > t) for t >= 0: 1/2 minus a Simpson integral of the density over [0, t]."""
    h = t / steps
    total = t_density(0.0, df) + t_density(t, df)
    total += sum((4 if k % 2 else 2) * t_density(k * h, df) for k in range(1, steps))
    return 0.5 - total * h / 3


def t_quantile(p: float, df: int) -> float:
    lo, hi = 0.0, 50.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 1 - t_upper_tail(mid, df, 4000) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@pytest.mark.parametrize(("t", "df", "tail"), [
    (1.0, 1, 0.25),  # Cauchy: 1/2 - atan(t)/pi
    (3.0, 1, 0.5 - math.atan(3.0) / math.pi),
    (2.0, 2, 0.5 * (1 - 2 / math.sqrt(6))),  # df 2: (1 - t / sqrt(2 + t^2)) / 2
    (-2.0, 2, 0.5 * (1 - 2 / math.sqrt(6))),
])
def test_calibrated_z_closed_forms(t: float, df: int, tail: float) -> None:
    want = math.copysign(PHI.inv_cdf(1 - tail), t)
    got = calibration.calibrated_z(np.array([t]), np.array([df]))[0]
    assert got == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize(("t", "df"), [(3.0, 27), (3.0, 19), (2.0, 27), (4.5, 22), (1.0, 27)])
def test_calibrated_z_against_integrated_t(t: float, df: int) -> None:
    want = PHI.inv_cdf(1 - t_upper_tail(t, df))
    assert calibration.calibrated_z(np.array([t, -t]), np.array([df, df])) == pytest.approx(
        [want, -want], abs=1e-7)
    # The t tail is heavier: a t of 3 with 27 degrees of freedom is only about 2.8 sigma.
    assert abs(want) < t


def test_calibrated_z_is_finite_and_monotone() -> None:
    t = np.array([-np.inf, -1e6, -50.0, 0.0, 50.0, 1e6, np.inf, np.nan])
    z = calibration.calibrated_z(t, np.full(t.size, 27.0))
    assert np.isfinite(z[:7]).all() and np.isnan(z[7])
    assert (np.diff(z[:7]) >= 0).all() and z[3] == 0


def test_prediction_multiplier_by_hand() -> None:
    for k, n in ((3.0, 28), (2.0, 28), (3.0, 20)):
        want = t_quantile(PHI.cdf(k), n - 1) * math.sqrt(1 + 1 / n)
        assert calibration.prediction_multiplier(k, np.array([n]))[0] == pytest.approx(
            want, rel=1e-6)


def test_truncated_variance_by_hand() -> None:
    phi3 = math.exp(-4.5) / math.sqrt(2 * math.pi)
    inside = math.erf(3 / math.sqrt(2))
    assert calibration.truncated_variance(3.0) == pytest.approx(1 - 6 * phi3 / inside)


# ------------------------------------------------------- small counts: exact tails


def test_poisson_z_by_hand() -> None:
    mean = 5.0
    p2 = math.exp(-mean) * (1 + 5 + 12.5)  # P(X <= 2)
    p0 = math.exp(-mean)
    p9 = 1 - math.exp(-mean) * sum(mean**j / math.factorial(j) for j in range(9))  # P(X >= 9)
    got = calibration.poisson_z(np.array([2.0, 0.0, 9.0, 5.0]), np.full(4, mean))
    assert got == pytest.approx([PHI.inv_cdf(p2), PHI.inv_cdf(p0), -PHI.inv_cdf(p9), 0.0],
                                abs=1e-9)


def test_headcount_is_scored_from_poisson_tails_without_zone_rules() -> None:
    # A crew of 5 every day, then 2: scored (z from P(X <= 2 | 5) = 18.5 e^-5), no alert.
    scored = score({"headcount": [5] * 90 + [2]})
    row = pick(scored, 90, "headcount")
    assert row["cl"] == pytest.approx(5.0)
    assert row["z_score"] == pytest.approx(PHI.inv_cdf(18.5 * math.exp(-5)), abs=1e-9)
    assert row["severity"] is None
    # Two days in a row near 0: a continuous metric would fire WE2; a count does not.
    two = score({"headcount": [5] * 90 + [0, 0]})
    last = pick(two, 91, "headcount")
    assert last["z_score"] < -2 and not last["we_rule_2"] and last["rules_violated"] is None


# ------------------------------------------------ a standard score computed by hand


def log_alt(n: int, level: float = 100.0, d: float = 0.1) -> list[float]:
    """level * e^(+d), level * e^(-d), ...: with whole weeks every weekday effect is 0."""
    return [level * math.exp(d if i % 2 == 0 else -d) for i in range(n)]


def test_standard_score_by_hand() -> None:
    values = [*log_alt(90), 100.0 * math.exp(-0.5)]
    row = pick(score({"revenue": values}), 90)
    # Baseline: days 62..89 hold 14 logs at ln100 + 0.1 and 14 at ln100 - 0.1, all kept;
    # the weekday effect is 0 (8 same-weekday values, 4 of each). The std is divided by
    # the trimmed normal's std, since days beyond 3 robust sigmas would be left out.
    phi3 = math.exp(-4.5) / math.sqrt(2 * math.pi)
    trimmed = 1 - 6 * phi3 / math.erf(3 / math.sqrt(2))
    sd = math.sqrt(28 * 0.01 / 27) / math.sqrt(trimmed)
    t = -0.5 / (sd * math.sqrt(1 + 1 / 28))
    assert row["baseline_n"] == 28
    assert row["dow_factor"] == pytest.approx(1.0, abs=1e-12)
    assert row["cl"] == pytest.approx(100.0, rel=1e-12)
    assert row["baseline_mean"] == pytest.approx(100.0, rel=1e-12)
    assert row["baseline_std"] == pytest.approx(100.0 * sd, rel=1e-9)
    assert row["z_score"] == pytest.approx(-PHI.inv_cdf(1 - t_upper_tail(-t, 27)), abs=1e-7)
    half3 = t_quantile(PHI.cdf(3.0), 27) * math.sqrt(1 + 1 / 28) * sd
    assert row["lcl_3s"] == pytest.approx(100.0 * math.exp(-half3), rel=1e-6)
    assert row["ucl_3s"] == pytest.approx(100.0 * math.exp(half3), rel=1e-6)
    assert row["severity"] == "CRITICAL" and row["rules_violated"] == "WE1"


def test_a_value_on_the_limit_scores_the_limit() -> None:
    values = [*log_alt(90), 100.0]
    row = pick(score({"revenue": values}), 90)
    for k, col in ((-3, "lcl_3s"), (-2, "lcl_2s"), (2, "ucl_2s"), (3, "ucl_3s")):
        on_limit = pick(score({"revenue": [*log_alt(90), row[col]]}), 90)
        assert on_limit["z_score"] == pytest.approx(k, abs=1e-6)


@pytest.mark.parametrize("seed", [1, 2])
def test_standard_limits_ordered_and_z_finite(seed: int) -> None:
    rng = random.Random(seed)
    shape = [1.0, 0.9, 0.95, 1.0, 1.2, 1.6, 1.5]
    n = 150
    revenue = [1000 * shape[i % 7] * math.exp(rng.gauss(0, 0.1)) for i in range(n)]
    revenue[120] = 0.0  # a closed day: beyond every limit, still a finite z
    scored = score({
        "revenue": revenue,
        "order_count": [200 * shape[i % 7] * math.exp(rng.gauss(0, 0.08)) for i in range(n)],
        "avg_production_seconds": [150 * math.exp(rng.gauss(0, 0.05)) for _ in range(n)],
        "scheduled_hours": [50 + rng.choice([-6, 0, 6]) for _ in range(n)],
        "headcount": [7 + rng.choice([-1, 0, 1]) for _ in range(n)],
        "orders_per_labor_hour": [4 * math.exp(rng.gauss(0, 0.1)) for _ in range(n)],
    })
    assert scored.columns == [*spc.SCORE_COLUMNS, "eligible", "adverse_z"]
    limited = scored.filter(pl.col("cl").is_not_null())
    assert limited.height > 500
    ordered = limited.filter(
        (pl.col("lcl_3s") <= pl.col("lcl_2s")) & (pl.col("lcl_2s") <= pl.col("cl"))
        & (pl.col("cl") <= pl.col("ucl_2s")) & (pl.col("ucl_2s") <= pl.col("ucl_3s")))
    assert ordered.height == limited.height
    z = scored["z_score"].drop_nulls()
    assert z.is_finite().all()
    closed = pick(scored, 120)
    assert closed["z_score"] == -calibration.Z_LIMIT and closed["severity"] == "CRITICAL"
    # The guide's literal tokens never appear in this profile.
    assert not scored["rules_violated"].drop_nulls().str.contains("WE3|WE4|WE5|Z>").any()


# -------------------------------------------------------------------- the CUSUM


def zframe(zs: list[float | None], metric: str = "revenue") -> pl.DataFrame:
    n = len(zs)
    frame = pl.DataFrame({
        "store_id": [1] * n, "metric_name": [metric] * n, "store_name": ["S"] * n,
        "metric_date": [day(i) for i in range(n)],
        "metric_value": [None if z is None else 100.0 + 10 * z for z in zs],
        "z_score": zs, "eligible": [True] * n, "cl": [100.0] * n,
    }, schema_overrides={"z_score": pl.Float64, "metric_value": pl.Float64})
    frame = frame.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in (
        "baseline_mean", "baseline_std", "dow_factor", "ucl_2s", "lcl_2s", "ucl_3s", "lcl_3s")])
    return frame.with_columns(baseline_n=pl.lit(28, dtype=pl.Int32))


def reference_cusum(zs: list[float | None], s: SpcSettings, sign: float) -> list[bool]:
    """The capped CUSUM, its alarm on above h and off again at or below h / 2."""
    out, stat, alarm = [], 0.0, False
    for z in zs:
        if z is not None:
            stat = min(2 * s.cusum_h, max(0.0, stat + min(sign * z, s.cusum_clip) - s.cusum_k))
        if stat > s.cusum_h:
            alarm = True
        elif stat <= s.cusum_h / 2:
            alarm = False
        out.append(alarm)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_cusum_matches_its_recursion(seed: int) -> None:
    rng = random.Random(seed)
    zs: list[float | None] = []
    for i in range(400):
        shift = -1.0 if (i // 40) % 3 == 1 else 0.0
        zs.append(None if rng.random() < 0.05 else rng.gauss(shift, 1))
    out = spc.evaluate_rules(zframe(zs), STANDARD).sort("metric_date")
    want = [f for f, z in zip(reference_cusum(zs, STANDARD, -1.0), zs, strict=True)
            if z is not None]
    got = out["rules_violated"].fill_null("").str.contains("CUSUM").to_list()
    assert got == want and any(want)
    # Below the point test, the CUSUM warns; its days are WARNING at least.
    flagged = out.filter(pl.col("rules_violated").fill_null("").str.contains("CUSUM"))
    assert flagged["severity"].is_in(["WARNING", "CRITICAL"]).all()


def test_cusum_one_outlier_cannot_signal_alone() -> None:
    # One day at -9 sigma: the point test's CRITICAL, but its CUSUM input is clipped at
    # 2.5, so the statistic reaches 2 < h and the days after stay quiet.
    out = spc.evaluate_rules(zframe([0.0] * 10 + [-9.0] + [0.0] * 10), STANDARD)
    out = out.sort("metric_date")
    assert out.row(10, named=True)["rules_violated"] == "WE1"
    assert out["severity"].drop_nulls().to_list() == ["CRITICAL"]


@pytest.mark.parametrize(("h", "shift", "published", "digits"), [
    (4.0, 0.0, 336.0, 0), (5.0, 0.0, 930.0, 0), (4.0, 1.0, 8.38, 2), (5.0, 1.0, 10.4, 1),
    (3.42, 0.0, 2 * 91.75, 1), (3.42, 0.5, 21.0, 1), (3.42, 1.0, 7.2, 1), (3.42, 2.0, 3.0, 1),
])
def test_cusum_arl_published(h: float, shift: float, published: float, digits: int) -> None:
    # One-sided k = 0.5 (two-sided tables give half the in-control ARL), to the digits
    # published, plus the 400-state chain's discretization (a few tenths of a percent).
    got = calibration.cusum_arl(0.5, h, shift)
    assert abs(got - published) <= 0.5 * 10.0**-digits + 0.004 * published


def test_cusum_arl_of_the_configured_detector() -> None:
    s = STANDARD
    arl0 = calibration.cusum_arl(s.cusum_k, s.cusum_h, clip=s.cusum_clip)
    # About the 3-sigma point test's 370 days per series, adverse side.
    assert 330 < arl0 < 420
    assert calibration.cusum_h_for_arl(s.cusum_k, arl0, clip=s.cusum_clip) == pytest.approx(
        s.cusum_h, abs=1e-3)


# --------------------------------------------------- zone rules: exact run lengths


def test_rule_one_arl_closed_form() -> None:
    tail = 1 - PHI.cdf(3.0)
    assert calibration.zone_rules_arl(rules=(1,)) == pytest.approx(1 / (2 * tail), rel=1e-9)
    assert calibration.zone_rules_arl(2.0, rules=(1,), two_sided=False) == pytest.approx(
        1 / (1 - PHI.cdf(1.0)), rel=1e-9)


@functools.cache
def project_rule_chain() -> tuple[list, dict, list]:
    """One-sided WE1-4 as a Markov chain over the full last-7 history.

    Each observation is a zone class (adverse side within 1, 1-2 or 2-3 sigma, or the
    good side); whether a class completes a pattern after a history is decided by the
    project's `evaluate_rules` on a z series (class midpoints; a missing day before
    the first observation), one series per transition, all in one call.
    """
    classes = [0.5, 1.5, 2.5, -0.5]
    start: tuple = ()
    states, index, frontier = [start], {start: 0}, [start]
    while frontier:
        nxt = []
        for hist in frontier:
            for c in range(4):
                new = ((c, *hist))[:7]
                if new not in index:
                    index[new] = len(states)
                    states.append(new)
                    nxt.append(new)
        frontier = nxt
    # One series per (state, next class): 8 days, the oldest first, None before the start.
    rows_z, rows_series = [], []
    for s_idx, hist in enumerate(states):
        for c in range(4):
            seq = [classes[k] for k in reversed((c, *hist))]
            seq = [None] * (8 - len(seq)) + seq
            rows_z += seq
            rows_series += [s_idx * 4 + c] * 8
    n = len(rows_z)
    frame = pl.DataFrame({
        "store_id": rows_series, "metric_name": ["avg_production_seconds"] * n,
        "store_name": ["S"] * n,
        "metric_date": [day(i) for i in range(8)] * (n // 8),
        "metric_value": [None if z is None else 100.0 for z in rows_z],
        "z_score": rows_z, "eligible": [True] * n, "cl": [100.0] * n,
    }, schema_overrides={"z_score": pl.Float64, "metric_value": pl.Float64})
    frame = frame.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in (
        "baseline_mean", "baseline_std", "dow_factor", "ucl_2s", "lcl_2s", "ucl_3s", "lcl_3s")]
    ).with_columns(baseline_n=pl.lit(28, dtype=pl.Int32))
    out = spc.evaluate_rules(frame, GUIDE).filter(pl.col("metric_date") == day(7))
    out = out.sort("store_id")
    fires = out.select(pl.any_horizontal([f"we_rule_{k}" for k in range(1, 5)])).to_series()
    assert out.height == len(states) * 4
    moves = []
    for key, fired in zip(out["store_id"].to_list(), fires.to_list(), strict=True):
        s_idx, c = divmod(key, 4)
        if not fired:
            moves.append((s_idx, c, index[((c, *states[s_idx]))[:7]]))
    return states, index, moves


def project_rules_arl(shift: float) -> float:
    """Zero-state ARL of `project_rule_chain` for observations N(shift, 1)."""
    from scipy import sparse
    from scipy.sparse.linalg import bicgstab

    states, _, moves = project_rule_chain()
    probs = [PHI.cdf(1 - shift) - PHI.cdf(-shift), PHI.cdf(2 - shift) - PHI.cdf(1 - shift),
             PHI.cdf(3 - shift) - PHI.cdf(2 - shift), PHI.cdf(-shift)]
    r = [m[0] for m in moves]
    col = [m[2] for m in moves]
    val = [probs[m[1]] for m in moves]
    q = sparse.csr_matrix((val, (r, col)), shape=(len(states), len(states)))
    # An iterative solver: the direct one fills in this chain's LU for seconds.
    arl, info = bicgstab(sparse.identity(len(states), format="csr") - q,
                         np.ones(len(states)), rtol=1e-13, atol=0.0, maxiter=100_000)
    assert info == 0
    return float(arl[0])


def test_zone_rules_arl_through_the_project_rules() -> None:
    for shift in (0.0, 0.5, 1.0, 2.0):
        got = project_rules_arl(shift)
        assert got == pytest.approx(
            calibration.zone_rules_arl(shift, two_sided=False), rel=1e-9)
    # One-sided WE1-4 in control: twice Champ and Woodall's two-sided 91.75, within 0.1%.
    assert project_rules_arl(0.0) == pytest.approx(2 * 91.75, rel=1e-3)


# ------------------------------------------------------------- small fixes


def test_we5_ignores_ties_within_rounding() -> None:
    base = [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    out = spc.evaluate_rules(zframe([0.0] * 8 + [*base, -0.1]), GUIDE).sort("metric_date")
    assert out.row(out.height - 1, named=True)["we_rule_5"]
    # The last step is 1 ulp: a tie computed two ways, not a worsening.
    tie = [0.0] * 8 + [*base, float(np.nextafter(0.0, -1.0))]
    out = spc.evaluate_rules(zframe(tie), GUIDE).sort("metric_date")
    assert not out.row(out.height - 1, named=True)["we_rule_5"]


def test_event_text_uses_the_configured_sigmas() -> None:
    s = SpcSettings(sigma_warning=2.5, sigma_critical=3.5)
    frame = zframe([0.0] * 8 + [-3.7, -2.7]).with_columns(
        event=pl.when(pl.col("metric_date") >= day(8)).then(pl.lit("Holiday")))
    out = spc.evaluate_rules(frame, s).sort("metric_date")
    assert out["rules_violated"].to_list()[-2:] == ["EVENT:Holiday,Z>3.5", "EVENT:Holiday,Z>2.5"]
    assert out["severity"].to_list()[-2:] == ["INFO", "INFO"]


def test_score_metrics_takes_kpis_or_long() -> None:
    frame = kpis({"revenue": log_alt(60), "inspection_score": [None] * 59 + [65.0]})
    first = pl.DataFrame({"store_id": [1], "first_date": [day(0)]})
    for s in (GUIDE, STANDARD):
        wide = spc.score_metrics(frame, first, s)
        long = spc.score_metrics(spc.to_long(frame), first, s)
        assert wide.equals(long)
        assert pick(wide, 59, "inspection_score")["severity"] == "CRITICAL"


def test_profiles() -> None:
    assert GUIDE.alert_profile == "guide" and not GUIDE.calibrated and not GUIDE.cusum
    assert STANDARD.calibrated and STANDARD.cusum and STANDARD.zone_rules == (2,)
    assert STANDARD.alert_metrics == ("revenue", "avg_production_seconds", "scheduled_hours",
                                      "inspection_score", "order_count")
    assert STANDARD.warning_only == ("order_count",) and GUIDE.warning_only == ()
    assert not STANDARD.info_alerts and not STANDARD.point_warning
    # order_count may warn, never page at CRITICAL.
    out = spc.evaluate_rules(zframe([0.0] * 8 + [-4.0], "order_count"), STANDARD)
    last = out.sort("metric_date").row(out.height - 1, named=True)
    assert (last["severity"], last["rules_violated"]) == ("WARNING", "WE1")


# -------------------------------------------------------------------- incidents


def test_incidents_by_hand() -> None:
    d = date(2025, 10, 6)
    alerts = pl.DataFrame([
        (1, d, "revenue", "CRITICAL", 500.0, "STORE", "WE1"),
        (1, d, "order_count", "WARNING", 450.0, "STORE", "WE1"),
        (1, d, "revenue_per_labor_hour", "CRITICAL", 600.0, "STORE", "WE1"),
        (1, d + timedelta(days=1), "revenue", "WARNING", 300.0, "NETWORK", "CUSUM"),
        (1, d + timedelta(days=3), "scheduled_hours", "WARNING", 80.0, "STORE", "WE2"),
        (1, d + timedelta(days=3), "revenue", "INFO", 900.0, "STORE", "EVENT:Fair,Z>3"),
        (2, d, "avg_production_seconds", "INFO", None, "STORE", "WE5"),
    ], schema={"store_id": pl.Int64, "alert_date": pl.Date, "metric_name": pl.String,
               "severity": pl.String, "impact_usd": pl.Float64, "scope": pl.String,
               "rules_violated": pl.String}, orient="row")
    assigned, summary = incidents.group_incidents(alerts)
    assert assigned["incident_key"].to_list() == [
        "1:2025-10-06", "1:2025-10-06", "1:2025-10-06", "1:2025-10-06", "1:2025-10-09",
        "1:2025-10-09:event", "2:2025-10-06"]
    rows = {r["incident_key"]: r for r in summary.iter_rows(named=True)}
    first = rows["1:2025-10-06"]
    assert (first["first_date"], first["last_date"]) == (d, d + timedelta(days=1))
    assert first["severity"] == "CRITICAL" and first["n_alerts"] == 4
    # Most severe, then largest impact.
    assert first["primary_metric"] == "revenue_per_labor_hour"
    assert first["dimensions"] == "sales,staffing" and first["scope"] == "NETWORK"
    assert first["impact_usd"] == pytest.approx(600.0 + 300.0)  # per day the largest
    assert rows["1:2025-10-09"]["severity"] == "WARNING"
    assert rows["1:2025-10-09:event"]["known_event"] is True
    assert rows["2:2025-10-06"]["severity"] == "INFO"
    assert rows["2:2025-10-06"]["impact_usd"] == 0.0
    assert summary.columns == incidents.INCIDENT_COLUMNS
    # The keys do not depend on the order of the rows.
    again, _ = incidents.group_incidents(alerts.reverse())
    assert dict(zip(again["metric_name"] + again["alert_date"].cast(pl.String),
                    again["incident_key"], strict=True)) == dict(
        zip(assigned["metric_name"] + assigned["alert_date"].cast(pl.String),
            assigned["incident_key"], strict=True))


def test_a_run_over_history_days_scores_like_a_backfill() -> None:
    rng = random.Random(5)
    shape = [1.0, 0.9, 0.95, 1.0, 1.2, 1.6, 1.5]
    n = 420
    values = {
        "revenue": [1000 * shape[i % 7] * math.exp(rng.gauss(0, 0.1)) for i in range(n)],
        "order_count": [200 * shape[i % 7] * math.exp(rng.gauss(0, 0.08)) for i in range(n)],
        "headcount": [7 + rng.choice([-1, 0, 1]) for _ in range(n)],
    }
    for i in (250, 251, 300, 330):  # incidents inside the history a run reads
        values["revenue"][i] *= 0.5
    for i in range(340, 360):  # a sustained drop for the CUSUM
        values["order_count"][i] *= 0.85
    full = kpis(values)
    first = pl.DataFrame({"store_id": [1], "first_date": [day(0)]})
    start = n - 5
    s = STANDARD
    assert s.history_days == 3 * 28 + 2 * 56 + 10
    backfill = spc.score_metrics(full, first, s).filter(pl.col("metric_date") >= day(start))
    recent = full.filter(pl.col("metric_date") >= day(start - s.history_days))
    run = spc.score_metrics(recent, first, s).filter(pl.col("metric_date") >= day(start))
    # Equal up to the rounding of running window sums started elsewhere.
    assert_frame_equal(run, backfill, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    assert run["severity"].to_list() == backfill["severity"].to_list()
    assert run["rules_violated"].to_list() == backfill["rules_violated"].to_list()
