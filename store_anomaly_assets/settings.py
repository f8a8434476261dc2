"""Every setting the product reads, in one place.

Values come from the process environment, then from a `.env` file in the working
directory (the operational guide's convention), then from the defaults below. Dagster
config can override the SPC settings per run (see `resources.AnomalySettings`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv

# The six databases, keyed by the guide's environment prefixes. The value is the
# default database name, which is also the embedded SQLite file name in demo mode.
DATABASE_PREFIXES: dict[str, str] = {
    "OPSHOP_": "luckyus_opshop",
    "SALESORDER_": "luckyus_sales_order",
    "OPPRODUCTION_": "luckyus_opproduction",
    "OPEMPEFFICIENCY_": "luckyus_opempefficiency",
    "OPQUALITYCONTROL_": "luckyus_opqualitycontrol",
    "DBATEST_": "test",
}
SOURCE_PREFIXES = tuple(p for p in DATABASE_PREFIXES if p != "DBATEST_")

# The data directory (demo chain, extracts, default DAGSTER_HOME) is per user, not per
# working directory, so every command finds the same one wherever it is started.
DEFAULT_DATA_DIR = Path("~/.store_anomaly")

# The settings besides the connections that change what a run computes, covers or logs
# (the notifiers' NOTIFY_* and the UI link are not among them).
BEHAVIOUR_SETTINGS = (
    "ACTIVE_STORES", "ALERT_PROFILE", "BASELINE_MASKING", "BUSINESS_TIMEZONE",
    "DAILY_SCHEDULE_ENABLED", "DOW_WEEKS", "KNOWN_EVENTS", "KNOWN_EVENTS_FILE",
    "KNOWN_EVENT_ALERTS", "LABOR_COST_PER_HOUR", "LOG_LEVEL", "LOG_RETENTION_DAYS",
    "LOOKBACK_DAYS", "PARTITION_START_DATE", "REBASELINE_DAYS", "ROLLING_WINDOW",
    "SIGMA_CRITICAL", "SIGMA_WARNING", "DB_CONNECT_TIMEOUT_SECONDS", "DB_READ_TIMEOUT_SECONDS",
    "RUN_LOCK_TIMEOUT_SECONDS",
)


def use_local_databases(
    databases: dict[str, str], data_dir: Path, host: str = "127.0.0.1", port: int = 3306,
    user: str = "root",
) -> None:
    """Point each prefix at its database on a local passwordless server (tests, benchmarks).

    Clears BEHAVIOUR_SETTINGS, so a developer's shell cannot change what is measured, and
    sets STORE_ANOMALY_DATA_DIR. Call it before importing modules that read settings at
    import time (partitions, sensors).
    """
    for prefix, database in databases.items():
        os.environ.update({f"{prefix}HOST": host, f"{prefix}PORT": str(port),
                           f"{prefix}USER": user, f"{prefix}DB": database})
        os.environ.pop(f"{prefix}PASS", None)
    for name in BEHAVIOUR_SETTINGS:
        os.environ.pop(name, None)
    os.environ["STORE_ANOMALY_DATA_DIR"] = str(data_dir)


class SettingsError(ValueError):
    """A setting has a value the product cannot use; the message names the setting."""


def load_env_file(path: str | os.PathLike[str] | None = None) -> None:
    """Read `.env` without overriding what the environment already says."""
    load_dotenv(path or Path.cwd() / ".env", override=False)


def _get(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = _get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"setting {name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"setting {name}={value} must be at least {minimum}")
    return value


def _int_within(name: str, default: int, minimum: int, maximum: int) -> int:
    value = _int(name, default, minimum)
    if value > maximum:
        raise SettingsError(f"setting {name}={value} must be at most {maximum}")
    return value


def _float(name: str, default: float) -> float:
    raw = _get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"setting {name}={raw!r} is not a number") from None
    # float() reads "nan" and "inf": neither is a threshold, and NaN compares false with
    # everything, which would silently switch rules off.
    if not math.isfinite(value):
        raise SettingsError(f"setting {name}={raw!r} must be a finite number")
    if value <= 0:
        raise SettingsError(f"setting {name}={raw!r} must be positive")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = _get(name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"setting {name}={raw!r} is not a boolean (use true or false)")


def _masking(raw: str | None) -> str:
    """BASELINE_MASKING: off, exclude or clip; booleans read as off / exclude."""
    value = (raw or "off").strip().lower()
    return {"false": "off", "0": "off", "no": "off", "true": "exclude", "1": "exclude",
            "yes": "exclude", "on": "exclude"}.get(value, value)


def parse_store_ids(raw: str | None, setting: str = "ACTIVE_STORES") -> tuple[int, ...]:
    """Parse an allow-list such as `1127, 1128` (empty means every active store)."""
    if raw is None or raw.strip() == "":
        return ()
    ids = []
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            ids.append(int(part))
        except ValueError:
            raise SettingsError(f"setting {setting}: {part!r} is not a store id") from None
    return tuple(sorted(set(ids)))


# The quiet profile's alerting metrics: one lead metric per dimension. order_count,
# production_count, orders/revenue per labor hour move with revenue and scheduled hours,
# headcount with scheduled hours, and each of them would repeat the same incident.
QUIET_ALERT_METRICS = ("revenue", "avg_production_seconds", "scheduled_hours",
                       "inspection_score")
# ... and of scheduled hours only the understaffed side (service at risk): over-scheduling
# is a cost for the weekly review, not a page.
QUIET_LOW_SIDE_ONLY = ("scheduled_hours",)


@dataclass(frozen=True)
class SpcSettings:
    """The guide's tunable SPC constants."""

    rolling_window: int = 28
    sigma_warning: float = 2.0
    sigma_critical: float = 3.0
    dow_weeks: int = 8
    # Inspections are sparse, so they get the guide's thresholds instead of SPC.
    inspection_critical: float = 70.0
    inspection_warning: float = 80.0
    # Health takes the latest inspection within this many days as the quality dimension.
    quality_lookback_days: int = 30
    # Detection quality (issue 3, docs/detection.md). BASELINE_MASKING: "off" (DESIGN
    # section 5), "exclude" (days beyond SIGMA_CRITICAL are left out of later baselines:
    # day-of-week factor and rolling mean/std) or "clip" (they enter later baselines at
    # their SIGMA_CRITICAL limit instead), until REBASELINE_DAYS consecutive masked days on
    # one side say the level has changed for good: those days are then taken back as
    # they were. Off by default: the benchmark shows it trades false alarms for recall.
    baseline_masking: str = "off"
    rebaseline_days: int = 7
    # ALERT_PROFILE: "guide" (DESIGN section 5) or "quiet": alerts on each dimension's
    # lead metric only (QUIET_ALERT_METRICS; the other metrics move with them and are
    # still scored), scheduled hours on the understaffed side only, no INFO alerts,
    # known-event days suppressed rather than marked.
    alert_profile: str = "guide"
    # KNOWN_EVENTS: built-in calendar ("us" public holidays, or "none");
    # KNOWN_EVENTS_FILE: CSV of closures/promotions (stats/calendar.py).
    known_events: str = "us"
    known_events_file: str | None = None
    # KNOWN_EVENT_ALERTS: "mark" keeps an event day's alert as INFO, prefixed EVENT:, so
    # it pages nobody; "suppress" leaves the score without severity and raises no alert.
    known_event_alerts: str = "mark"
    # LABOR_COST_PER_HOUR (USD): prices staffing and production-time gaps in impact_usd.
    labor_cost_per_hour: float = 20.0

    def __post_init__(self) -> None:
        if self.alert_profile not in ("guide", "quiet"):
            raise SettingsError(
                f"ALERT_PROFILE ({self.alert_profile!r}) must be 'guide' or 'quiet'"
            )
        if self.baseline_masking not in ("off", "exclude", "clip"):
            raise SettingsError(
                f"BASELINE_MASKING ({self.baseline_masking!r}) must be off, exclude or clip"
            )
        if self.known_events not in ("us", "none"):
            raise SettingsError(f"KNOWN_EVENTS ({self.known_events!r}) must be 'us' or 'none'")
        if self.known_event_alerts not in ("mark", "suppress"):
            raise SettingsError(
                f"KNOWN_EVENT_ALERTS ({self.known_event_alerts!r}) must be 'mark' or 'suppress'"
            )
        for name, value in (("SIGMA_WARNING", self.sigma_warning),
                            ("SIGMA_CRITICAL", self.sigma_critical),
                            ("LABOR_COST_PER_HOUR", self.labor_cost_per_hour)):
            if not math.isfinite(value) or value <= 0:
                raise SettingsError(f"{name} ({value}) must be a finite positive number")
        if self.sigma_warning >= self.sigma_critical:
            raise SettingsError(
                f"SIGMA_WARNING ({self.sigma_warning}) must be below "
                f"SIGMA_CRITICAL ({self.sigma_critical})"
            )
        if self.rolling_window < 2:
            raise SettingsError(f"ROLLING_WINDOW ({self.rolling_window}) must be at least 2")
        if self.dow_weeks < 1:
            raise SettingsError(f"DOW_WEEKS ({self.dow_weeks}) must be at least 1")
        # REBASELINE_DAYS only matters when masking is on: more masked days than the
        # baseline can spare (28 - 20) would leave days unscored.
        spare = self.rolling_window - self.min_baseline_values + 1
        if self.masking and not 1 <= self.rebaseline_days <= spare:
            raise SettingsError(
                f"REBASELINE_DAYS ({self.rebaseline_days}) must be between 1 and {spare} "
                f"with BASELINE_MASKING={self.baseline_masking} and ROLLING_WINDOW="
                f"{self.rolling_window} (the window minus the {self.min_baseline_values} "
                "baseline values a score needs, plus one)"
            )

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
        # Masks need accurate baselines (`plain` days) and shape the next `plain` days:
        # read twice the history so a daily run finds the masks a backfill found.
        return 2 * plain if self.masking else plain

    @property
    def masking(self) -> bool:
        return self.baseline_masking != "off"

    @property
    def alert_metrics(self) -> tuple[str, ...] | None:
        """The metrics that may alert: all (None), or the quiet profile's lead metrics."""
        return QUIET_ALERT_METRICS if self.alert_profile == "quiet" else None

    @property
    def low_side_only(self) -> tuple[str, ...]:
        """Two-sided metrics that alert only below the centre line (quiet profile)."""
        return QUIET_LOW_SIDE_ONLY if self.alert_profile == "quiet" else ()

    @property
    def info_alerts(self) -> bool:
        """WE5 (sustained decline) raises INFO alerts; off in the quiet profile."""
        return self.alert_profile == "guide"

    @property
    def suppress_known_events(self) -> bool:
        return self.alert_profile == "quiet" or self.known_event_alerts == "suppress"

    @classmethod
    def from_env(cls) -> SpcSettings:
        return cls(
            rolling_window=_int("ROLLING_WINDOW", 28, minimum=2),
            sigma_warning=_float("SIGMA_WARNING", 2.0),
            sigma_critical=_float("SIGMA_CRITICAL", 3.0),
            dow_weeks=_int("DOW_WEEKS", 8),
            baseline_masking=_masking(_get("BASELINE_MASKING", cls.baseline_masking)),
            rebaseline_days=_int("REBASELINE_DAYS", cls.rebaseline_days),
            alert_profile=(_get("ALERT_PROFILE", cls.alert_profile) or "").lower(),
            known_events=(_get("KNOWN_EVENTS", cls.known_events) or "").lower(),
            known_events_file=_get("KNOWN_EVENTS_FILE"),
            known_event_alerts=(_get("KNOWN_EVENT_ALERTS", cls.known_event_alerts) or "").lower(),
            labor_cost_per_hour=_float("LABOR_COST_PER_HOUR", cls.labor_cost_per_hour),
        )


@dataclass(frozen=True)
class DatabaseSettings:
    """One database's connection; a blank host means the embedded SQLite file."""

    prefix: str
    host: str | None
    port: int
    user: str | None
    password: str | None = field(repr=False)
    database: str

    @property
    def configured(self) -> bool:
        return self.host is not None

    @classmethod
    def from_env(cls, prefix: str) -> DatabaseSettings:
        return cls(
            prefix=prefix,
            host=_get(f"{prefix}HOST"),
            port=_int(f"{prefix}PORT", 3306),
            user=_get(f"{prefix}USER", "root"),
            password=_get(f"{prefix}PASS", ""),
            database=_get(f"{prefix}DB", DATABASE_PREFIXES[prefix]) or DATABASE_PREFIXES[prefix],
        )


@dataclass(frozen=True)
class NotifySettings:
    """Alert notifications (sensors.py, notifications.py).

    Who receives what is in the routing file; these settings say where that file is and
    how the sensors behave. Without a routing file the sensors send nothing.
    """

    routing_file: Path = Path("config/routing.yaml")
    interval_seconds: int = 300
    lookback_days: int = 7
    sensors_enabled: bool = True
    timeout_seconds: int = 30
    max_alerts_per_message: int = 50
    webserver_url: str | None = None

    @classmethod
    def from_env(cls) -> NotifySettings:
        return cls(
            routing_file=Path(_get("NOTIFY_ROUTING_FILE", "config/routing.yaml")).absolute(),
            interval_seconds=_int("NOTIFY_INTERVAL_SECONDS", 300, minimum=30),
            lookback_days=_int("NOTIFY_LOOKBACK_DAYS", 7),
            sensors_enabled=_bool("NOTIFY_SENSORS_ENABLED", True),
            timeout_seconds=_int("NOTIFY_TIMEOUT_SECONDS", 30),
            max_alerts_per_message=_int("NOTIFY_MAX_ALERTS_PER_MESSAGE", 50),
            webserver_url=(_get("DAGSTER_WEBSERVER_URL") or "").rstrip("/") or None,
        )


@dataclass(frozen=True)
class Settings:
    partition_start: date
    business_timezone: str
    lookback_days: int
    active_stores: tuple[int, ...]
    data_dir: Path
    schedule_enabled: bool
    log_retention_days: int
    spc: SpcSettings
    notify: NotifySettings = field(default_factory=NotifySettings)
    # Every database connection: how long to wait for the server to accept, and for any
    # one answer (a backfill's source aggregate must fit in the read timeout).
    connect_timeout_seconds: int = 10
    read_timeout_seconds: int = 600
    # How long a run waits for another run's lock before it fails, saying who holds it.
    run_lock_timeout_seconds: int = 900

    @property
    def databases(self) -> dict[str, DatabaseSettings]:
        return {prefix: DatabaseSettings.from_env(prefix) for prefix in DATABASE_PREFIXES}

    @property
    def embedded(self) -> bool:
        """True when no database host is configured: the SQLite demo chain."""
        return not any(db.configured for db in self.databases.values())

    @classmethod
    def from_env(cls) -> Settings:
        load_env_file()
        raw_start = _get("PARTITION_START_DATE", "2025-07-01")
        try:
            start = date.fromisoformat(raw_start)
        except ValueError:
            raise SettingsError(
                f"setting PARTITION_START_DATE={raw_start!r} is not a YYYY-MM-DD date"
            ) from None
        timezone = _get("BUSINESS_TIMEZONE", "America/New_York")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"setting BUSINESS_TIMEZONE={timezone!r} is not an IANA time zone"
            ) from None
        embedded = not any(_get(f"{prefix}HOST") for prefix in DATABASE_PREFIXES)
        return cls(
            partition_start=start,
            business_timezone=timezone,
            lookback_days=_int("LOOKBACK_DAYS", 3, minimum=0),
            active_stores=parse_store_ids(_get("ACTIVE_STORES")),
            data_dir=Path(_get("STORE_ANOMALY_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
            .absolute(),
            # The embedded demo chain ends on a fixed day, so its schedule would ask for days
            # without data: off unless asked for.
            schedule_enabled=_bool("DAILY_SCHEDULE_ENABLED", not embedded),
            log_retention_days=_int("LOG_RETENTION_DAYS", 90),
            spc=SpcSettings.from_env(),
            notify=NotifySettings.from_env(),
            connect_timeout_seconds=_int_within("DB_CONNECT_TIMEOUT_SECONDS", 10, 1, 3600),
            read_timeout_seconds=_int_within("DB_READ_TIMEOUT_SECONDS", 600, 1, 86400),
            run_lock_timeout_seconds=_int_within("RUN_LOCK_TIMEOUT_SECONDS", 900, 0, 86400),
        )
