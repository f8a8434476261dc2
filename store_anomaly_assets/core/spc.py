"""Steps 7-8: day-of-week adjusted z-scores, control limits and Western Electric rules.

DESIGN section 5, for store s, metric m and day D with value x(D):
1. f(D) = mean of x on D's weekday over the previous `dow_weeks` weeks / mean of x
   over all days of those weeks (D excluded); 1 when not computable.
2. a(D) = x(D) / f(D); baseline = mean and sample std (ddof 1) of a over the previous
   `rolling_window` days (D excluded), at least `min_baseline_values` of them.
3. z(D) = (a(D) - mean) / std; limits in the metric's units: cl = mean*f,
   ucl/lcl_k = (mean +/- k*std)*f.
4. Rules on the z series of consecutive calendar days; a missing day (NULL z) breaks
   every pattern, so a window that contains one never fires.
5. Severity from the adverse side only: a good day never alerts.

Everything is a polars expression over a complete per-series calendar, so "the previous
28 days" is "the previous 28 rows".

That is the `guide` (and `quiet`) profile, to the letter. The `standard` profile
(`settings.calibrated`) scores on the log scale with robust baselines and calibrated
prediction limits (`_calibrated_scores`), small counts from exact Poisson tails, keeps
the 3-sigma point test and WE2, and adds a one-sided CUSUM per series on the adverse side
(token `CUSUM` in rules_violated). `score_metrics` is the one entry point for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import polars as pl

from store_anomaly_assets.core import calibration
from store_anomaly_assets.core.calendar import EVENT_PREFIX
from store_anomaly_assets.core.settings import SpcSettings

Adverse = Literal["low", "high", "both"]


@dataclass(frozen=True)
class Metric:
    dimension: str
    adverse: Adverse
    spc: bool = True  # inspection scores use thresholds instead


METRICS: dict[str, Metric] = {
    "revenue": Metric("sales", "low"),
    "order_count": Metric("sales", "low"),
    "aov": Metric("sales", "low"),
    "production_count": Metric("operations", "low"),
    "avg_production_seconds": Metric("operations", "high"),
    "scheduled_hours": Metric("staffing", "both"),
    "orders_per_labor_hour": Metric("staffing", "both"),
    "headcount": Metric("staffing", "low"),
    "revenue_per_labor_hour": Metric("staffing", "low"),
    "inspection_score": Metric("quality", "low", spc=False),
}
SPC_METRICS = [name for name, m in METRICS.items() if m.spc]
# Whole numbers: their std never falls below the rounding resolution, 1/sqrt(12).
INTEGER_METRICS = ("order_count", "production_count", "headcount")
# Small counts: the standard profile scores them from exact Poisson tails, with the point
# test only (zone rules and the CUSUM assume a continuous, symmetric z).
DISCRETE_METRICS = ("headcount",)
# The std floor: a constant history still scores a change (a crew of 5 dropping to 2).
STD_FLOOR_REL = 1e-3  # of the baseline mean (guide scale)
LOG_STD_FLOOR = 5e-3  # on the log scale (standard profile): half a percent
# Standard profile. Robust baselines leave out the days beyond ROBUST_SIGMAS robust
# sigmas of their own baseline, the sigma from the 10%-90% quantile range.
ROBUST_SIGMAS = 3.0
ROBUST_Z90 = 1.2815515655446004  # the standard normal's 90% quantile
# The weekday variance model of the metrics driven by the order count (see
# `_calibrated_scores`): std proportional to level^(-POWER_GAMMA).
POWER_GAMMA = 1 / 3
POWER_METRICS = ("revenue", "order_count", "production_count")
WE5_TOLERANCE = 1e-9  # WE5 steps smaller than this are ties, not a worsening

SCORE_COLUMNS = [
    "store_id", "metric_date", "metric_name", "store_name", "metric_value", "baseline_mean",
    "baseline_std", "baseline_n", "dow_factor", "z_score", "cl", "ucl_2s", "lcl_2s", "ucl_3s",
    "lcl_3s", "we_rule_1", "we_rule_2", "we_rule_3", "we_rule_4", "we_rule_5",
    "rules_violated", "severity",
]
_SERIES = ["store_id", "metric_name"]


def to_long(kpis: pl.DataFrame) -> pl.DataFrame:
    """KPI rows to one row per store, day and metric (metrics without a value dropped)."""
    return (
        kpis.unpivot(
            index=["store_id", "metric_date", "store_name"],
            on=list(METRICS),
            variable_name="metric_name",
            value_name="metric_value",
        )
        # NaN is not a value: polars sorts it above every number, so it would score
        # as an extreme day.
        .with_columns(pl.col("metric_value").cast(pl.Float64).fill_nan(None))
        .drop_nulls("metric_value")
    )


def with_eligibility(
    frame: pl.DataFrame, first_dates: pl.DataFrame, rolling_window: int
) -> pl.DataFrame:
    """Add `eligible`: the store has at least `rolling_window` days of history before D.

    `first_dates` has store_id and first_date (a store's first day with any KPI row).
    """
    return frame.join(first_dates, on="store_id", how="left").with_columns(
        eligible=(pl.col("metric_date") - pl.col("first_date")).dt.total_days()
        >= rolling_window
    ).drop("first_date")


def _complete_calendar(long: pl.DataFrame) -> pl.DataFrame:
    """Every day from a series' first value to the last day in the frame, in order."""
    last_day = long["metric_date"].max()
    series = long.group_by(_SERIES).agg(
        pl.col("metric_date").min().alias("first"), pl.col("store_name").last()
    )
    calendar = series.with_columns(
        metric_date=pl.date_ranges("first", pl.lit(last_day), interval="1d")
    ).explode("metric_date")
    return (
        calendar.drop("first")
        .join(long.drop("store_name"), on=[*_SERIES, "metric_date"], how="left")
        .sort([*_SERIES, "metric_date"])
    )


def _baseline(settings: SpcSettings) -> list[list[pl.Expr]]:
    """Stages of expressions computing dow_factor, the baseline and z.

    Baselines read `base_value`: the value, or NULL on a known-event day, so an event
    day is scored but never shapes another day's expectation.
    """
    x = pl.col("metric_value")
    base = pl.col("base_value")
    weeks = settings.dow_weeks
    all_mean = base.shift(1).rolling_mean(7 * weeks, min_samples=1).over(_SERIES)
    weekday_mean = base.shift(1).rolling_mean(weeks, min_samples=1).over(
        [*_SERIES, "weekday"]
    )
    factor = (
        pl.when((all_mean > 0) & (weekday_mean > 0)).then(weekday_mean / all_mean).otherwise(1.0)
    )
    window, min_n = settings.rolling_window, settings.min_baseline_values
    prior = pl.when(base.is_not_null()).then(pl.col("adjusted")).shift(1)
    mean = prior.rolling_mean(window, min_samples=min_n).over(_SERIES)
    std = prior.rolling_std(window, min_samples=min_n, ddof=1).over(_SERIES)
    count = prior.is_not_null().cast(pl.Int32).rolling_sum(window, min_samples=1).over(_SERIES)
    return [
        [pl.col("metric_date").dt.weekday().alias("weekday")],
        [factor.alias("dow_factor")],
        [(x / pl.col("dow_factor")).alias("adjusted")],
        [mean.alias("baseline_mean"), std.alias("baseline_std"), count.alias("baseline_n"),
         pl.lit(False).alias("masked")],
    ]


def _masked_series(
    x: np.ndarray, event: np.ndarray, eligible: np.ndarray, settings: SpcSettings
) -> tuple[np.ndarray, ...]:
    """Section 5 steps 1-3 for one series, day by day, with baseline masking.

    The same formulas as `_baseline`, except that a day whose |z| exceeds
    `sigma_critical` is masked: left out of every later day-of-week factor and baseline
    ("exclude"), or entered there at its limit, mean +/- sigma_critical * std ("clip").
    Re-baselining: when `rebaseline_days` consecutive masked days lie on the same side
    (days without a value or known events neither extend nor break the run), the level
    has changed for good; those days are unmasked, so the baseline moves to the new level
    and the alerts stop within a bounded number of days (docs/detection.md).
    """
    n = len(x)
    weeks, window = settings.dow_weeks, settings.rolling_window
    min_n, crit = settings.min_baseline_values, settings.sigma_critical
    use = ~np.isnan(x) & ~event  # may shape later baselines
    clip = settings.baseline_masking == "clip"
    xb = x.copy()  # the values later baselines see (a clipped day: its limit)
    factor = np.ones(n)
    adjusted = np.full(n, np.nan)
    ab = np.full(n, np.nan)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    count = np.zeros(n, dtype=np.int32)
    masked = np.zeros(n, dtype=bool)
    run: list[int] = []
    run_side = 0.0
    for i in range(n):
        lo = max(0, i - 7 * weeks)
        hist = xb[lo:i][use[lo:i]]
        if hist.size:
            same = np.arange(i - 7, lo - 1, -7)
            same = same[use[same]]
            all_mean = hist.mean()
            weekday_mean = xb[same].mean() if same.size else np.nan
            if all_mean > 0 and weekday_mean > 0:
                factor[i] = weekday_mean / all_mean
        adjusted[i] = ab[i] = x[i] / factor[i]
        lo = max(0, i - window)
        prior = ab[lo:i][use[lo:i]]
        count[i] = prior.size
        if prior.size >= min_n:
            mean[i] = prior.mean()
            std[i] = prior.std(ddof=1)
        if np.isnan(x[i]) or event[i]:
            continue
        z = np.nan
        if eligible[i] and not np.isnan(mean[i]) and std[i] > 1e-9 * max(abs(mean[i]), 1.0):
            z = (adjusted[i] - mean[i]) / std[i]
        # Masking never starves a baseline: a day is masked only while its own baseline
        # holds more than the minimum, so the next one keeps at least that many values.
        if abs(z) > crit and count[i] > min_n:  # NaN compares False
            side = float(np.sign(z))
            if side != run_side:
                run, run_side = [], side
            if clip:
                ab[i] = mean[i] + side * crit * std[i]
                xb[i] = ab[i] * factor[i]
            else:
                use[i] = False
            masked[i] = True
            run.append(i)
            if len(run) >= settings.rebaseline_days:
                use[run] = True
                masked[run] = False
                ab[run] = adjusted[run]
                xb[run] = x[run]
                run, run_side = [], 0.0
        else:
            run, run_side = [], 0.0
    return factor, adjusted, mean, std, count, masked


def _masked_baseline(frame: pl.DataFrame, settings: SpcSettings) -> pl.DataFrame:
    """`_baseline` with masking, series by series (the masks make it sequential)."""
    parts = []
    for part in frame.partition_by(_SERIES, maintain_order=True):
        x = part["metric_value"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        event = part["base_value"].is_null().to_numpy() & ~np.isnan(x)
        eligible = part["eligible"].fill_null(False).to_numpy()
        factor, adjusted, mean, std, count, masked = _masked_series(x, event, eligible,
                                                                    settings)
        parts.append(part.with_columns(
            pl.Series("dow_factor", factor),
            pl.Series("adjusted", adjusted).fill_nan(None),
            pl.Series("baseline_mean", mean).fill_nan(None),
            pl.Series("baseline_std", std).fill_nan(None),
            pl.Series("baseline_n", count, dtype=pl.Int32),
            pl.Series("masked", masked),
        ))
    return pl.concat(parts) if parts else frame


_LAGS = 8  # WE4 looks at 8 days; WE5 at 7 values


def _lagged_z() -> list[pl.Expr]:
    """z of the same series 0..7 days back, computed once for every rule to share."""
    return [pl.col("z_rules").shift(i).over(_SERIES).alias(f"_z{i}") for i in range(_LAGS)]


def _rule_flags(settings: SpcSettings) -> list[pl.Expr]:
    """Western Electric flags per side, on the day that completes the pattern."""
    z = [pl.col(f"_z{i}") for i in range(_LAGS)]

    def complete(k: int) -> pl.Expr:
        return pl.all_horizontal([zi.is_not_null() for zi in z[:k]])

    def beyond_count(k: int, signed: list[pl.Expr], limit: float) -> pl.Expr:
        return pl.sum_horizontal([(zi > limit).cast(pl.Int32) for zi in signed[:k]])

    crit, warn = settings.sigma_critical, settings.sigma_warning
    flags = {}
    for side, sign in (("hi", 1.0), ("lo", -1.0)):
        signed = [zi * sign for zi in z]  # positive when on this side
        flags[f"we1_{side}"] = signed[0] > crit
        flags[f"we2_{side}"] = (
            (signed[0] > warn) & complete(3) & (beyond_count(3, signed, warn) >= 2)
        )
        flags[f"we3_{side}"] = (
            (signed[0] > 1.0) & complete(5) & (beyond_count(5, signed, 1.0) >= 4)
        )
        flags[f"we4_{side}"] = pl.all_horizontal([zi > 0 for zi in signed])
        # Six consecutive days, each strictly further this way than the day before (by
        # more than rounding: equal values computed two ways are a tie).
        flags[f"we5_{side}"] = pl.all_horizontal(
            [signed[i] > signed[i + 1] + WE5_TOLERANCE for i in range(6)])
    return [expr.fill_null(False).alias(name) for name, expr in flags.items()]


def _adverse(flag: str) -> pl.Expr:
    """The flag on the metric's adverse side(s)."""
    adverse = pl.col("adverse")
    return (
        pl.when(adverse == "low").then(pl.col(f"{flag}_lo"))
        .when(adverse == "high").then(pl.col(f"{flag}_hi"))
        .otherwise(pl.col(f"{flag}_lo") | pl.col(f"{flag}_hi"))
    )


def _adverse_z() -> pl.Expr:
    z, adverse = pl.col("z_score"), pl.col("adverse")
    return (
        pl.when(adverse == "low").then(-z).when(adverse == "high").then(z).otherwise(z.abs())
    )


# The CUSUM statistic is capped at CUSUM_CAP * h and its alarm, once on, holds until the
# statistic is back at CUSUM_REARM * h: once a lasting change has entered the baseline
# the alarm ends within about (CUSUM_CAP - CUSUM_REARM) * h / k days.
CUSUM_CAP = 2.0
CUSUM_REARM = 0.5


def _with_cusum(frame: pl.DataFrame, settings: SpcSettings) -> pl.DataFrame:
    """`cusum_hi`/`cusum_lo`: the one-sided CUSUM of each side signals on that day.

    S_t = min(cap, max(0, S_(t-1) + min(z_t, clip) - k)) on the side's rule z, from 0 at
    the series' first row; a day without a rule z (missing, known event, not scored, a
    discrete metric) adds nothing. In control S returns to 0 within days, and from then
    on the start no longer matters: a run over the usual history finds what a backfill
    finds. `frame` is sorted by series and day.
    """
    series = frame.select(pl.struct(_SERIES).rle_id()).to_series().to_numpy()
    z = frame["_zc"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    h = settings.cusum_h
    out = {}
    for side, sign in (("hi", 1.0), ("lo", -1.0)):
        step = np.minimum(sign * z, settings.cusum_clip) - settings.cusum_k
        statistic = calibration.capped_cusum(np.nan_to_num(step, nan=0.0), series,
                                             CUSUM_CAP * h)
        # The alarm holds until the statistic falls back to CUSUM_REARM * h: a shift
        # that lasts keeps one run of alert days instead of flickering around h.
        state = np.where(statistic > h, 1.0, np.where(statistic <= CUSUM_REARM * h, 0.0,
                                                      np.nan))
        out[f"_state_{side}"] = pl.Series(state).fill_nan(None)
    return frame.with_columns(**out).with_columns(
        [pl.col(f"_state_{side}").forward_fill().over(_SERIES).fill_null(0.0).cast(pl.Boolean)
         .alias(f"cusum_{side}") for side in ("hi", "lo")])


def _rules_text(settings: SpcSettings) -> pl.Expr:
    threshold_only = (
        pl.lit(settings.point_warning)
        & (pl.col("adverse_z") > settings.sigma_warning)
        & ~pl.any_horizontal([pl.col(f"we_rule_{n}") for n in range(1, 5)])
    )
    tokens = [
        pl.when(pl.col(f"we_rule_{n}")).then(pl.lit(f"WE{n}")) for n in range(1, 6)
    ] + [pl.when(pl.col("cusum")).then(pl.lit("CUSUM")),
         pl.when(threshold_only).then(pl.lit(f"Z>{settings.sigma_warning:g}"))]
    text = pl.concat_str(tokens, separator=",", ignore_nulls=True)
    return pl.when(text == "").then(None).otherwise(text)


def compute_zscores(
    long: pl.DataFrame,
    first_dates: pl.DataFrame,
    settings: SpcSettings,
    events: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Step 7: dow_factor, baseline, z and limits for every SPC series, every calendar day.

    `long` is `to_long(kpis)` over the history the settings need (`history_days` before
    the first day to score). Days without a value stay in the result (with a NULL z) so
    that `evaluate_rules` sees the gaps that break runs. `events` (store_id, metric_date,
    event; see stats/calendar.py) are known-event days: left out of every baseline and
    carried in the `event` column. With `settings.baseline_masking`, days beyond
    `sigma_critical` are left out of (or clipped in) later baselines too (`masked`).
    """
    spc = long.filter(pl.col("metric_name").is_in(SPC_METRICS))
    if spc.is_empty():
        return _empty_scores().drop("eligible", "adverse_z")
    frame = _complete_calendar(spc)
    if events is not None and not events.is_empty():
        frame = frame.join(
            events.select("store_id", "metric_date", pl.col("event").cast(pl.String)),
            on=["store_id", "metric_date"], how="left",
        )
    else:
        frame = frame.with_columns(event=pl.lit(None, dtype=pl.String))
    frame = frame.with_columns(
        base_value=pl.when(pl.col("event").is_null()).then(pl.col("metric_value"))
    )
    # Windows are shifts over rows: keep each series in date order after the joins.
    frame = with_eligibility(frame, first_dates, settings.rolling_window).sort(
        [*_SERIES, "metric_date"]
    )
    if settings.calibrated:
        return _calibrated_scores(frame, settings)
    if settings.masking:
        frame = _masked_baseline(frame, settings)
    else:
        for stage in _baseline(settings):
            frame = frame.with_columns(stage)
    mean, std, factor = pl.col("baseline_mean"), pl.col("baseline_std"), pl.col("dow_factor")
    has_baseline = pl.col("eligible") & mean.is_not_null() & std.is_not_null()
    # A constant history still scores a change: the std never falls below a floor far
    # under any real day-to-day spread (a thousandth of the mean; for whole numbers
    # their rounding resolution).
    floor = pl.max_horizontal(
        STD_FLOOR_REL * mean.abs(),
        pl.when(pl.col("metric_name").is_in(INTEGER_METRICS)).then(12 ** -0.5).otherwise(0.0),
        pl.lit(1e-9),
    )
    std_used = pl.max_horizontal(std, floor)
    frame = frame.with_columns(
        [pl.when(has_baseline).then(c).alias(c.meta.output_name())
         for c in (mean, std_used, pl.col("baseline_n"))]
    )
    return frame.with_columns(
        z_score=pl.when(has_baseline & pl.col("metric_value").is_not_null())
        .then((pl.col("adjusted") - mean) / std),
        cl=mean * factor,
        ucl_2s=(mean + 2 * std) * factor,
        lcl_2s=(mean - 2 * std) * factor,
        ucl_3s=(mean + 3 * std) * factor,
        lcl_3s=(mean - 3 * std) * factor,
    )


def _calibrated_scores(frame: pl.DataFrame, settings: SpcSettings) -> pl.DataFrame:
    """Steps 1-3 of the standard profile: log scale, robust baseline, calibrated z.

    - Log scale with additive weekday effects: demand, times and ratios vary by a
      multiplicative factor, so on the log scale one spread fits every weekday (a
      pooled spread scaled by the weekday factor makes quiet days alarm more often).
      effect(D) = mean log value on D's weekday over `dow_weeks` weeks minus the mean
      over all days of those weeks; adjusted = log x - effect; 0 when not computable.
    - Weekday variance: for the metrics driven by the order count the std also scales
      with the weekday's level (`POWER_GAMMA`), since a quiet day's Poisson noise is
      relatively larger.
    - Robust baseline: a day beyond `ROBUST_SIGMAS` robust sigmas of its own baseline
      is left out of later weekday effects and baselines (clipped at the limit where
      leaving it out would leave fewer than `min_baseline_values`), so one incident does
      not shift or widen the next weeks' expectation; a lasting change moves the
      median within half a window and the baseline follows it.
    - z is calibrated for the estimated mean and std (prediction interval, t with n - 1
      degrees of freedom, see `calibration`); limits are where it crosses +/-2 and 3.
    - Small counts (`DISCRETE_METRICS`): z from the exact Poisson tails around the
      expected count, limits the Poisson quantiles.
    Reported in the metric's units: baseline_mean = exp(mean) (the weekday-adjusted
    level), baseline_std = baseline_mean * std (the day's spread, to first order; for a
    count the Poisson sqrt(mean)), dow_factor = exp(effect), cl = baseline_mean *
    dow_factor. A value of 0 or below scores beyond every limit (`calibration.Z_LIMIT`).
    """
    x, base = pl.col("metric_value"), pl.col("base_value")
    weeks, window = settings.dow_weeks, settings.rolling_window
    min_n, c = settings.min_baseline_values, ROBUST_SIGMAS

    def weekday_effect(logs: pl.Expr, average: str) -> pl.Expr:
        prior_logs = logs.shift(1)
        if average == "median":
            every = prior_logs.rolling_median(7 * weeks, min_samples=1)
            same = prior_logs.rolling_median(weeks, min_samples=1)
        else:
            every = prior_logs.rolling_mean(7 * weeks, min_samples=1)
            same = prior_logs.rolling_mean(weeks, min_samples=1)
        return (same.over([*_SERIES, "weekday"]) - every.over(_SERIES)).fill_null(0.0)

    def robust_clean(values: str) -> list[list[pl.Expr]]:
        """`values` without the days beyond their own baseline's robust limits.

        Limits: median +/- c robust sigmas, the sigma from the 10% and 90% quantiles
        (they ignore the few incidents a month holds, and, unlike the quartiles, do not
        collapse on a staffing series whose values are mostly one number). `_clean`
        leaves those days out, `_clip` keeps them at the limit (used where leaving them
        out would starve the baseline).
        """
        prior = pl.col(values).shift(1)
        lo_q = prior.rolling_quantile(0.10, "linear", window, min_samples=min_n).over(_SERIES)
        hi_q = prior.rolling_quantile(0.90, "linear", window, min_samples=min_n).over(_SERIES)
        median = prior.rolling_median(window, min_samples=min_n).over(_SERIES)
        spread = (pl.col("_hi_q") - pl.col("_lo_q")) / (2 * ROBUST_Z90)
        lo, hi = pl.col("_med") - c * spread, pl.col("_med") + c * spread
        return [
            [median.alias("_med"), lo_q.alias("_lo_q"), hi_q.alias("_hi_q")],
            [pl.when(pl.col("_med").is_null() | pl.col(values).is_between(lo, hi))
             .then(pl.col(values)).alias("_clean"),
             pl.when(pl.col("_med").is_not_null()).then(pl.col(values).clip(lo, hi))
             .otherwise(pl.col(values)).alias("_clip")],
        ]

    base_log = pl.when(base > 0).then(base.log())
    effect = pl.col("_effect")

    def window_stats(values: pl.Expr, prefix: str) -> list[pl.Expr]:
        prior = values.shift(1)
        return [
            prior.rolling_mean(window, min_samples=min_n).over(_SERIES).alias(f"{prefix}mean"),
            prior.rolling_std(window, min_samples=min_n, ddof=1).over(_SERIES)
            .alias(f"{prefix}sd"),
            prior.is_not_null().cast(pl.Int32).rolling_sum(window, min_samples=1)
            .over(_SERIES).alias(f"{prefix}n"),
        ]

    # Incidents often recur on one weekday (a weekly delivery, a shift that goes
    # unfilled): the weekday effect must not absorb them either. First pass: medians,
    # which a bad week or two do not move, to find the outlying days; second: the means
    # without them, as efficient as plain means in control.
    stages = [
        [pl.col("metric_date").dt.weekday().alias("weekday"), base_log.alias("_base_log")],
        [weekday_effect(pl.col("_base_log"), "median").alias("_effect0")],
        [(pl.col("_base_log") - pl.col("_effect0")).alias("_adj0")],
        *robust_clean("_adj0"),
        [(pl.col("_clean") + pl.col("_effect0")).alias("_log_clean")],
        [weekday_effect(pl.col("_log_clean"), "mean").alias("_effect")],
        [pl.when(x > 0).then(x.log() - effect).alias("adjusted"),
         (pl.col("_log_clean") - effect).alias("_base_adj")],
        *robust_clean("_base_adj"),
        window_stats(pl.col("_clean"), "_x") + window_stats(pl.col("_clip"), "_c"),
        # Leaving days out keeps an incident from widening the next weeks' limits; when
        # too many are out (a rough month), their clipped values stand in.
        [pl.when(pl.col("_xn") >= min_n).then(pl.col(f"_x{k}")).otherwise(pl.col(f"_c{k}"))
         .alias(name) for k, name in (("mean", "_mean"), ("sd", "_sd"), ("n", "baseline_n"))],
    ]
    # Weekday variance model: a count's Poisson part makes a quiet weekday vary more,
    # in relative terms, than a busy one. For the metrics driven by the order count the
    # std on weekday w is sigma * g_w with g_w = exp(-POWER_GAMMA * effect_w) (variance
    # proportional to level^(-2 gamma), between pure demand shocks at 0 and pure Poisson
    # at 1/2). The baseline's pooled std estimates sigma * rms(g) over its days.
    power = pl.col("metric_name").is_in(POWER_METRICS)
    g = pl.when(power).then((-POWER_GAMMA * pl.col("_effect")).exp()).otherwise(1.0)
    g2_mean = (pl.when(pl.col("_clean").is_not_null()).then(pl.col("_g").pow(2)).shift(1)
               .rolling_mean(window, min_samples=1).over(_SERIES))
    stages += [
        [g.alias("_g")],
        [(pl.col("_g") / g2_mean.sqrt()).fill_null(1.0).alias("_scale")],
    ]
    for stage in stages:
        frame = frame.with_columns(stage)
    has_baseline = pl.col("eligible") & pl.col("_mean").is_not_null()
    # Leaving out the days beyond c sigmas trims the in-control spread too: the std of a
    # normal truncated at +/-c is sqrt(1 - 2c phi(c) / (2 Phi(c) - 1)) of the full one.
    trimmed = calibration.truncated_variance(ROBUST_SIGMAS)
    sd = pl.max_horizontal(pl.col("_sd") * pl.col("_scale") / np.sqrt(trimmed),
                           pl.lit(LOG_STD_FLOOR))
    frame = frame.with_columns(
        _has=has_baseline.fill_null(False),
        _sd=sd,
        _discrete=pl.col("metric_name").is_in(DISCRETE_METRICS),
        # Zero or negative on the log scale: beyond every limit, below the centre.
        _t=pl.when(x <= 0).then(pl.lit(-np.inf))
        .otherwise((pl.col("adjusted") - pl.col("_mean"))
                   / (sd * (1 + 1 / pl.col("baseline_n")).sqrt())),
    )
    has = frame["_has"].to_numpy()
    n = frame["baseline_n"].cast(pl.Float64).to_numpy()
    mean = frame["_mean"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    spread = frame["_sd"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    effect_v = frame["_effect"].to_numpy()
    value = frame["metric_value"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    discrete = frame["_discrete"].to_numpy()
    t = frame["_t"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    centre = np.exp(mean + effect_v)

    def on_counts(function, *arrays: np.ndarray) -> np.ndarray:
        # The exact Poisson tails are costly: computed for the count metrics' rows only.
        out = np.full(discrete.shape, np.nan)
        if discrete.any():
            out[discrete] = function(*(a[discrete] for a in arrays))
        return out

    z = np.where(discrete, on_counts(calibration.poisson_z, value, centre),
                 calibration.calibrated_z(t, n - 1))
    z = np.where(has & ~np.isnan(value), z, np.nan)
    limits = {}
    for k in (2, 3):
        half = calibration.prediction_multiplier(k, n) * spread
        limits[f"lcl_{k}s"] = np.where(
            discrete, on_counts(partial(calibration.poisson_limit, -k), centre),
            np.exp(mean + effect_v - half))
        limits[f"ucl_{k}s"] = np.where(
            discrete, on_counts(partial(calibration.poisson_limit, k), centre),
            np.exp(mean + effect_v + half))
    level = np.exp(mean)
    spread_units = np.where(discrete, np.sqrt(level), level * spread)
    keep = pl.Series(has)

    def column(name: str, values: np.ndarray) -> pl.Series:
        return pl.Series(name, values, dtype=pl.Float64).fill_nan(None)

    out = frame.with_columns(
        column("z_score", z),
        column("cl", centre), *(column(name, v) for name, v in limits.items()),
        column("baseline_mean", level), column("baseline_std", spread_units),
        column("dow_factor", np.exp(effect_v)),
        pl.lit(False).alias("masked"),
    ).with_columns(
        [pl.when(keep).then(pl.col(name)).alias(name)
         for name in ("cl", "ucl_2s", "lcl_2s", "ucl_3s", "lcl_3s", "baseline_mean",
                      "baseline_std", "baseline_n")]
    )
    return out.drop([col for col in out.columns if col.startswith("_")])


def with_adverse_z(frame: pl.DataFrame) -> pl.DataFrame:
    """Add `adverse`, the metric's adverse side, and `adverse_z`, z signed so bad is > 0."""
    adverse = pl.DataFrame(
        {"metric_name": list(METRICS), "adverse": [m.adverse for m in METRICS.values()]}
    )
    return frame.join(adverse, on="metric_name", how="left").with_columns(
        adverse_z=_adverse_z()
    )


def evaluate_rules(zscores: pl.DataFrame, settings: SpcSettings) -> pl.DataFrame:
    """Step 8: Western Electric rules and severity on `compute_zscores` output.

    Returns the days with a value: SCORE_COLUMNS plus `eligible` and `adverse_z`.
    """
    if zscores.is_empty():
        return _empty_scores()
    # The rule windows look back by row: each series must be in calendar order.
    zscores = zscores.sort([*_SERIES, "metric_date"])
    if "event" not in zscores.columns:
        zscores = zscores.with_columns(event=pl.lit(None, dtype=pl.String))
    event = pl.col("event")
    # A known-event day's z stays on its row but is left out of every run (NULL).
    frame = with_adverse_z(zscores).with_columns(
        z_rules=pl.when(event.is_null()).then(pl.col("z_score"))
    ).with_columns(_lagged_z()).with_columns(_rule_flags(settings))
    # The profile's rules only; a small count's discrete z gets the point test alone.
    discrete = (pl.lit(settings.calibrated)
                & pl.col("metric_name").is_in(DISCRETE_METRICS))
    frame = frame.with_columns(
        [_adverse("we1").alias("we_rule_1")]
        + [(_adverse(f"we{n}") & ~discrete if n in settings.zone_rules else pl.lit(False))
           .alias(f"we_rule_{n}") for n in range(2, 6)]
    )
    if settings.cusum:
        frame = frame.with_columns(_zc=pl.when(~discrete).then(pl.col("z_rules")))
        frame = _with_cusum(frame, settings)
        # Over-scheduling is no page in the profiles that alert below only.
        below_only = pl.col("metric_name").is_in(list(settings.low_side_only))
        frame = frame.with_columns(
            cusum=pl.when(below_only).then(pl.col("cusum_lo")).otherwise(_adverse("cusum"))
            .fill_null(False))
    else:
        frame = frame.with_columns(cusum=pl.lit(False))
    adverse_z = pl.col("adverse_z")
    beyond_critical = (adverse_z > settings.sigma_critical) | pl.col("we_rule_1")
    warning_only = pl.col("metric_name").is_in(list(settings.warning_only))
    critical = beyond_critical & ~warning_only
    warning = pl.any_horizontal(
        [pl.col(f"we_rule_{n}") for n in (2, 3, 4)]
        + [pl.col("cusum"), beyond_critical,
           pl.lit(settings.point_warning) & (adverse_z > settings.sigma_warning)]
    )
    info = pl.col("we_rule_5") if settings.info_alerts else pl.lit(False)
    # The quiet profile alerts on each dimension's lead metric only (scheduled hours on
    # the low side only); the others are still scored (health, dashboards) and their
    # rules recorded.
    alerting = (
        pl.lit(True) if settings.alert_metrics is None
        else pl.col("metric_name").is_in(list(settings.alert_metrics))
    )
    if settings.low_side_only:
        alerting = alerting & ~(
            pl.col("metric_name").is_in(list(settings.low_side_only))
            & (pl.col("z_score") > 0)
        ).fill_null(False)
    # On a known-event day only the day's own deviation counts, and it pages nobody:
    # INFO marked EVENT:<name>, or no severity at all when suppressed.
    event_fired = adverse_z > settings.sigma_warning
    event_text = pl.concat_str(
        [pl.lit(EVENT_PREFIX), event,
         pl.when(adverse_z > settings.sigma_critical)
         .then(pl.lit(f",Z>{settings.sigma_critical:g}"))
         .when(event_fired).then(pl.lit(f",Z>{settings.sigma_warning:g}"))
         .otherwise(pl.lit(""))]
    ).str.slice(0, 64)
    event_severity = (
        pl.lit(None, dtype=pl.String) if settings.suppress_known_events
        else pl.when(event_fired).then(pl.lit("INFO"))
    )
    return (
        frame.filter(pl.col("metric_value").is_not_null())
        .with_columns(
            severity=pl.when(event.is_not_null()).then(event_severity)
            .when(~alerting).then(pl.lit(None, dtype=pl.String))
            .when(critical).then(pl.lit("CRITICAL"))
            .when(warning).then(pl.lit("WARNING"))
            .when(info).then(pl.lit("INFO")),
            rules_violated=pl.when(event.is_not_null())
            .then(pl.when(event_fired).then(event_text))
            .otherwise(_rules_text(settings)),
        )
        .select([*SCORE_COLUMNS, "eligible", "adverse_z"])
    )


def score_inspections(
    long: pl.DataFrame, first_dates: pl.DataFrame, settings: SpcSettings
) -> pl.DataFrame:
    """Inspection scores against the guide's thresholds (too sparse for SPC)."""
    rows = long.filter(pl.col("metric_name") == "inspection_score")
    rows = with_eligibility(rows, first_dates, settings.rolling_window)
    value = pl.col("metric_value")
    critical = pl.col("eligible") & (value < settings.inspection_critical)
    warning = pl.col("eligible") & (value < settings.inspection_warning)
    return (
        rows.with_columns(
            severity=pl.when(critical).then(pl.lit("CRITICAL"))
            .when(warning).then(pl.lit("WARNING")),
            rules_violated=pl.when(critical)
            .then(pl.lit(f"SCORE<{settings.inspection_critical:g}"))
            .when(warning)
            .then(pl.lit(f"SCORE<{settings.inspection_warning:g}")),
            adverse_z=pl.lit(None, dtype=pl.Float64),
            **{f"we_rule_{n}": pl.lit(False) for n in range(1, 6)},
        )
        .pipe(_fill_missing_columns)
        .select([*SCORE_COLUMNS, "eligible", "adverse_z"])
    )


def _fill_missing_columns(frame: pl.DataFrame) -> pl.DataFrame:
    schema = _empty_scores().schema
    return frame.with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in frame.columns]
    ).with_columns([pl.col(c).cast(t) for c, t in schema.items()])


def _empty_scores() -> pl.DataFrame:
    floats = {c: pl.Float64 for c in SCORE_COLUMNS}
    floats.update(
        store_id=pl.Int64, metric_date=pl.Date, metric_name=pl.String, store_name=pl.String,
        baseline_n=pl.Int32, rules_violated=pl.String, severity=pl.String,
        **{f"we_rule_{n}": pl.Boolean for n in range(1, 6)},
    )
    return pl.DataFrame(schema={**floats, "eligible": pl.Boolean, "adverse_z": pl.Float64})


def score_metrics(
    kpis: pl.DataFrame,
    first_dates: pl.DataFrame,
    settings: SpcSettings,
    events: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Steps 7-8 for every metric: SPC metrics and inspection thresholds, one path.

    `kpis` is the KPI table (one row per store and day) or `to_long` of it, over the
    history the settings need (`history_days` before the first day to score);
    `first_dates` has store_id and first_date; `events` the known events (calendar).
    Returns one row per store, day and metric with a value: SCORE_COLUMNS, `eligible`
    and `adverse_z`, sorted by store, day and metric. Callers keep the days they score.
    """
    long = kpis if "metric_name" in kpis.columns else to_long(kpis)
    scored = evaluate_rules(compute_zscores(long, first_dates, settings, events), settings)
    return pl.concat(
        [scored, score_inspections(long, first_dates, settings)], how="vertical_relaxed"
    ).sort("store_id", "metric_date", "metric_name")
