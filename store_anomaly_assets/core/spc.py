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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

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
        .with_columns(pl.col("metric_value").cast(pl.Float64))
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
        # Six consecutive days, each strictly further this way than the day before.
        flags[f"we5_{side}"] = pl.all_horizontal([signed[i] > signed[i + 1] for i in range(6)])
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


def _rules_text(settings: SpcSettings) -> pl.Expr:
    threshold_only = (
        (pl.col("adverse_z") > settings.sigma_warning)
        & ~pl.any_horizontal([pl.col(f"we_rule_{n}") for n in range(1, 5)])
    )
    tokens = [
        pl.when(pl.col(f"we_rule_{n}")).then(pl.lit(f"WE{n}")) for n in range(1, 6)
    ] + [pl.when(threshold_only).then(pl.lit(f"Z>{settings.sigma_warning:g}"))]
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
    if settings.masking:
        frame = _masked_baseline(frame, settings)
    else:
        for stage in _baseline(settings):
            frame = frame.with_columns(stage)
    mean, std, factor = pl.col("baseline_mean"), pl.col("baseline_std"), pl.col("dow_factor")
    has_baseline = pl.col("eligible") & mean.is_not_null() & std.is_not_null()
    # Zero spread (constant history) gives no z rather than an infinite one.
    has_spread = std > 1e-9 * pl.max_horizontal(mean.abs(), pl.lit(1.0))
    return frame.with_columns(
        [pl.when(has_baseline).then(c).alias(c.meta.output_name())
         for c in (mean, std, pl.col("baseline_n"))]
    ).with_columns(
        z_score=pl.when(has_baseline & has_spread & pl.col("metric_value").is_not_null())
        .then((pl.col("adjusted") - mean) / std),
        cl=mean * factor,
        ucl_2s=(mean + 2 * std) * factor,
        lcl_2s=(mean - 2 * std) * factor,
        ucl_3s=(mean + 3 * std) * factor,
        lcl_3s=(mean - 3 * std) * factor,
    )


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
    ).with_columns(_lagged_z()).with_columns(_rule_flags(settings)).with_columns(
        [_adverse(f"we{n}").alias(f"we_rule_{n}") for n in range(1, 6)]
    )
    adverse_z = pl.col("adverse_z")
    critical = (adverse_z > settings.sigma_critical) | pl.col("we_rule_1")
    warning = (adverse_z > settings.sigma_warning) | pl.any_horizontal(
        [pl.col(f"we_rule_{n}") for n in (2, 3, 4)]
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
         pl.when(adverse_z > settings.sigma_critical).then(pl.lit(",Z>3"))
         .when(event_fired).then(pl.lit(",Z>2")).otherwise(pl.lit(""))]
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
    """Steps 7-8 for every metric of `kpis`: SPC metrics and inspection thresholds."""
    long = to_long(kpis)
    scored = evaluate_rules(compute_zscores(long, first_dates, settings, events), settings)
    return pl.concat(
        [scored, score_inspections(long, first_dates, settings)], how="vertical_relaxed"
    ).sort("store_id", "metric_date", "metric_name")
