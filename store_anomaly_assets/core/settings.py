"""The settings the statistics read: the guide's SPC constants and the detection options.

A plain validated model with no environment behind it. `config.AppConfig` fills it from
the environment and `.env`, `defs.resources.AnomalySettings` from Dagster run config;
both inherit these fields, so every default and every bound is written here once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The quiet profile's alerting metrics: one lead metric per dimension. order_count,
# production_count, orders/revenue per labor hour move with revenue and scheduled hours,
# headcount with scheduled hours, and each of them would repeat the same incident.
QUIET_ALERT_METRICS = ("revenue", "avg_production_seconds", "scheduled_hours",
                       "inspection_score")
# ... and of scheduled hours only the understaffed side (service at risk): over-scheduling
# is a cost for the weekly review, not a page.
QUIET_LOW_SIDE_ONLY = ("scheduled_hours",)
# The standard profile alerts on the same lead metrics and on order_count, which
# measures demand with less noise than revenue (no basket-size noise) but duplicates it:
# it may warn, never page at CRITICAL, so that a dimension's two near-identical series do
# not double its false CRITICALs. The other metrics are scored alongside (health,
# dashboards); an incident groups whatever alerts on the same days.
STANDARD_ALERT_METRICS = (*QUIET_ALERT_METRICS, "order_count")
STANDARD_WARNING_ONLY = ("order_count",)

# Booleans people write for BASELINE_MASKING: false means off, true the default mode.
_MASKING_WORDS = {"false": "off", "0": "off", "no": "off", "true": "exclude", "1": "exclude",
                  "yes": "exclude", "on": "exclude"}


class SpcSettings(BaseModel):
    """The guide's tunable SPC constants and the detection-quality options."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    rolling_window: int = Field(28, ge=2, description="ROLLING_WINDOW: days in the baseline")
    sigma_warning: float = Field(2.0, gt=0, allow_inf_nan=False,
                                 description="SIGMA_WARNING: |z| beyond which a day warns")
    sigma_critical: float = Field(3.0, gt=0, allow_inf_nan=False,
                                  description="SIGMA_CRITICAL: |z| beyond which it is critical")
    dow_weeks: int = Field(8, ge=1, description="DOW_WEEKS: weeks in the day-of-week factor")
    # Masking keeps anomalous days out of later baselines (docs/detection.md): "exclude"
    # leaves days beyond SIGMA_CRITICAL out, "clip" enters them at that limit, until
    # REBASELINE_DAYS consecutive masked days on one side say the level has changed.
    baseline_masking: Literal["off", "exclude", "clip"] = Field(
        "off", description="BASELINE_MASKING: off, exclude or clip")
    rebaseline_days: int = Field(
        7, ge=1, description="REBASELINE_DAYS: masked days on one side that re-baseline")
    # "guide": DESIGN section 5 to the letter. "quiet": the guide's statistics, each
    # dimension's lead metric only, no INFO alerts, known events suppressed. "standard":
    # calibrated limits on the log scale, exact tails for small counts, a one-sided CUSUM
    # for sustained shifts, alerts on the lead metrics (docs/detection.md).
    alert_profile: Literal["guide", "quiet", "standard"] = Field(
        "standard", description="ALERT_PROFILE: standard, guide or quiet")
    # The standard profile's CUSUM on the calibrated z of the adverse side: reference k,
    # decision interval h, input winsorized at cusum_clip so that one outlying day (the
    # point test's business) cannot signal alone. The defaults put its in-control ARL
    # near a 3-sigma Shewhart chart's (calibration.cusum_arl, docs/detection.md).
    cusum_k: float = Field(0.5, gt=0, allow_inf_nan=False,
                           description="CUSUM_K: CUSUM reference value, in sigma")
    cusum_h: float = Field(4.0, gt=0, allow_inf_nan=False,
                           description="CUSUM_H: CUSUM decision interval, in sigma")
    cusum_clip: float = Field(2.5, gt=0, allow_inf_nan=False,
                              description="CUSUM_CLIP: CUSUM input winsorized at this z")
    known_events: Literal["us", "none"] = Field(
        "us", description="KNOWN_EVENTS: built-in calendar of public holidays, or none")
    known_events_file: str | None = Field(
        None, description="KNOWN_EVENTS_FILE: CSV of planned closures and promotions")
    # "mark" keeps an event day's alert as INFO, prefixed EVENT:, so it pages nobody.
    known_event_alerts: Literal["mark", "suppress"] = Field(
        "mark", description="KNOWN_EVENT_ALERTS: mark or suppress")
    labor_cost_per_hour: float = Field(
        20.0, gt=0, allow_inf_nan=False,
        description="LABOR_COST_PER_HOUR: USD, prices staffing gaps in impact_usd")
    # Inspections are sparse, so they get the guide's thresholds instead of SPC, and
    # health takes the latest inspection within this many days.
    inspection_critical: float = Field(70.0, description="Inspection score below: CRITICAL")
    inspection_warning: float = Field(80.0, description="Inspection score below: WARNING")
    quality_lookback_days: int = Field(30, ge=1, description="Days an inspection counts")

    @field_validator("baseline_masking", "alert_profile", "known_events",
                     "known_event_alerts", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            return _MASKING_WORDS.get(value, value)
        return value

    @field_validator("known_events_file", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent(self) -> SpcSettings:
        if self.sigma_warning >= self.sigma_critical:
            raise ValueError(f"SIGMA_WARNING ({self.sigma_warning}) must be below "
                             f"SIGMA_CRITICAL ({self.sigma_critical})")
        # REBASELINE_DAYS only matters with masking: more masked days than the baseline can
        # spare (28 - 20) would leave days unscored.
        spare = self.rolling_window - self.min_baseline_values + 1
        if self.masking and not 1 <= self.rebaseline_days <= spare:
            raise ValueError(
                f"REBASELINE_DAYS ({self.rebaseline_days}) must be between 1 and {spare} "
                f"with BASELINE_MASKING={self.baseline_masking} and ROLLING_WINDOW="
                f"{self.rolling_window} (the window minus the {self.min_baseline_values} "
                "baseline values a score needs, plus one)"
            )
        return self

    @property
    def min_baseline_values(self) -> int:
        """Fewest baseline values for a score: 20 of the guide's 28 (same share otherwise)."""
        return max(2, round(self.rolling_window * 20 / 28))

    @property
    def history_days(self) -> int:
        """Days of KPI history one day's score and rules need.

        The day-of-week factor of each baseline day looks `dow_weeks` weeks further back,
        and WE4/WE5 look 8 days back on the z series.
        """
        plain = self.rolling_window + 7 * self.dow_weeks + 10
        if self.calibrated:
            # Two robust passes, each a weekday effect over the previous `dow_weeks` weeks
            # and robust limits over the previous window, then the baseline window: a day
            # depends on 3 windows and 2 weekday spans before it (the CUSUM forgets its
            # start within days in control).
            return 3 * self.rolling_window + 2 * 7 * self.dow_weeks + 10
        # Masks need accurate baselines (`plain` days) and shape the next `plain` days:
        # read twice the history so a daily run finds the masks a backfill found.
        return 2 * plain if self.masking else plain

    @property
    def masking(self) -> bool:
        return self.baseline_masking != "off"

    @property
    def alert_metrics(self) -> tuple[str, ...] | None:
        """The metrics that may alert: all (None), or the profile's lead metrics."""
        return {"quiet": QUIET_ALERT_METRICS,
                "standard": STANDARD_ALERT_METRICS}.get(self.alert_profile)

    @property
    def low_side_only(self) -> tuple[str, ...]:
        """Two-sided metrics that alert only below the centre line (quiet, standard)."""
        return () if self.alert_profile == "guide" else QUIET_LOW_SIDE_ONLY

    @property
    def info_alerts(self) -> bool:
        """WE5 (sustained decline) raises INFO alerts; only in the guide profile."""
        return self.alert_profile == "guide"

    @property
    def warning_only(self) -> tuple[str, ...]:
        """Alerting metrics whose alerts stop at WARNING (standard: order_count)."""
        return STANDARD_WARNING_ONLY if self.calibrated else ()

    @property
    def calibrated(self) -> bool:
        """Prediction-interval z on the log scale, exact count tails, robust baselines."""
        return self.alert_profile == "standard"

    @property
    def zone_rules(self) -> tuple[int, ...]:
        """The Western Electric rules evaluated besides WE1 (the 3-sigma point test).

        The standard profile keeps WE2 (fast on large shifts) and replaces WE3-WE5 by
        the CUSUM, which detects small sustained shifts sooner at the same false-alarm
        rate (docs/detection.md).
        """
        return (2,) if self.calibrated else (2, 3, 4, 5)

    @property
    def point_warning(self) -> bool:
        """A single day beyond SIGMA_WARNING warns (the guide's Z>2); not in standard."""
        return not self.calibrated

    @property
    def cusum(self) -> bool:
        """The one-sided CUSUM on the adverse side runs (standard profile)."""
        return self.calibrated

    @property
    def suppress_known_events(self) -> bool:
        return self.alert_profile == "quiet" or self.known_event_alerts == "suppress"

    @property
    def spc(self) -> SpcSettings:
        """Just these settings, from a model that extends them (config, Dagster resource)."""
        return SpcSettings.model_validate(
            {name: getattr(self, name) for name in SpcSettings.model_fields})
