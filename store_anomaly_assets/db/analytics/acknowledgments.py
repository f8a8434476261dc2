"""Alert acknowledgments and the open-alert list: the guide's response protocol."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.core.contracts import SEVERITIES
from store_anomaly_assets.db.analytics.pipeline_log import utcnow
from store_anomaly_assets.db.analytics.schema import store_anomaly_alerts as alerts
from store_anomaly_assets.db.frames import read_frame


class AcknowledgmentError(ValueError):
    """An acknowledgment that cannot be recorded; the message says which alert and why."""


def severity_rank() -> sa.ColumnElement[int]:
    """The guide's FIELD(severity, 'CRITICAL', 'WARNING', 'INFO'), portable to SQLite."""
    return sa.case({s: i for i, s in enumerate(SEVERITIES)}, value=alerts.c.severity, else_=9)


@dataclass(frozen=True)
class AlertFilter:
    """Which open alerts a listing, a count or a bulk acknowledgment covers.

    Empty fields do not filter; `store_ids` of None is every store, an empty collection
    none. `since` is inclusive, `before` exclusive (alert_date).
    """

    severities: Collection[str] = ()
    store_ids: Collection[int] | None = None
    since: date | None = None
    before: date | None = None

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        where = [alerts.c.acknowledged.is_(False)]
        if self.severities:
            where.append(alerts.c.severity.in_(sorted(self.severities)))
        if self.store_ids is not None:
            where.append(alerts.c.store_id.in_(sorted(self.store_ids)))
        if self.since is not None:
            where.append(alerts.c.alert_date >= self.since)
        if self.before is not None:
            where.append(alerts.c.alert_date < self.before)
        return where


EVERY_OPEN_ALERT = AlertFilter()
# The open-alert order: most severe first, then the newest, then the costliest.
OPEN_ALERT_ORDER = (severity_rank(), alerts.c.alert_date.desc(), alerts.c.impact_usd.is_(None),
                    alerts.c.impact_usd.desc(), alerts.c.id)


def open_alerts(
    engine: sa.Engine, limit: int | None = None, filters: AlertFilter = EVERY_OPEN_ALERT
) -> pl.DataFrame:
    """Unacknowledged alerts matching `filters`, in OPEN_ALERT_ORDER, at most `limit`."""
    query = (
        sa.select(alerts.c.id, alerts.c.alert_date, alerts.c.store_id, alerts.c.store_name,
                  alerts.c.severity, alerts.c.metric_name, alerts.c.scope, alerts.c.impact_usd,
                  alerts.c.metric_value, alerts.c.expected_value, alerts.c.z_score,
                  alerts.c.rules_violated, alerts.c.description_en, alerts.c.description_zh,
                  alerts.c.recommended_action, alerts.c.recommended_action_zh)
        .where(*filters.conditions())
        .order_by(*OPEN_ALERT_ORDER)
        .limit(limit)
    )
    return read_frame(engine, query)


def count_open_alerts(engine: sa.Engine, filters: AlertFilter = EVERY_OPEN_ALERT) -> int:
    """How many unacknowledged alerts match `filters` (whatever a listing's limit)."""
    query = sa.select(sa.func.count()).select_from(alerts).where(*filters.conditions())
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


# MySQL's TEXT holds 65,535 bytes; VARCHAR(n) holds n characters (utf8mb4).
TEXT_BYTES = 65_535
# The bulk clean-up's reach: a century back; further would leave the calendar.
MAX_OLDER_THAN_DAYS = 36_500


def column_limit(column: sa.Column) -> tuple[int, str]:
    """The most a text column of `storage/schema.py` holds, and in what unit."""
    length = getattr(column.type, "length", None)
    return (length, "characters") if length else (TEXT_BYTES, "bytes")


def _check_fits(option: str, value: str, column: sa.Column) -> None:
    """Refuse a value its column cannot hold, by its size only: the value is not echoed."""
    limit, unit = column_limit(column)
    size = len(value.encode("utf-8")) if unit == "bytes" else len(value)
    if size > limit:
        raise AcknowledgmentError(
            f"{option} is {size:,} {unit} long; {alerts.name}.{column.name} holds at most "
            f"{limit:,} {unit}"
        )


def check_acknowledger(by: str | None) -> str:
    """The acknowledger's name, stripped; refused when empty or longer than its column."""
    name = (by or "").strip()
    if not name:
        raise AcknowledgmentError("--by needs the name of who acknowledges")
    if any(not char.isprintable() for char in name):
        raise AcknowledgmentError("--by must be a plain name, without control characters")
    _check_fits("--by", name, alerts.c.acknowledged_by)
    return name


def check_note(note: str | None) -> str | None:
    """The note as given; refused when longer than its column."""
    if note is not None:
        _check_fits("--note", note, alerts.c.ack_note)
    return note


def check_older_than(days: int) -> int:
    """The bulk clean-up's age in days, within 0..MAX_OLDER_THAN_DAYS."""
    if not 0 <= days <= MAX_OLDER_THAN_DAYS:
        raise AcknowledgmentError(
            f"--older-than {days} must be between 0 and {MAX_OLDER_THAN_DAYS} days"
        )
    return days


def acknowledge(engine: sa.Engine, alert_id: int, by: str, note: str | None = None) -> None:
    """Acknowledge one alert; unknown and already-acknowledged ids are errors.

    The name and note are checked against their columns before anything is written.
    """
    name = check_acknowledger(by)
    note = check_note(note)
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(alerts.c.acknowledged, alerts.c.acknowledged_by, alerts.c.acknowledged_at)
            .where(alerts.c.id == alert_id)
            .with_for_update()
        ).first()
        if row is None:
            raise AcknowledgmentError(f"alert {alert_id} does not exist")
        if row.acknowledged:
            raise AcknowledgmentError(
                f"alert {alert_id} was already acknowledged by {row.acknowledged_by} "
                f"at {row.acknowledged_at}"
            )
        conn.execute(
            alerts.update().where(alerts.c.id == alert_id).values(
                acknowledged=True, acknowledged_by=name, acknowledged_at=utcnow(),
                ack_note=note,
            )
        )


def cleanup_filter(severity: str, older_than_days: int, today: date | None = None
                   ) -> AlertFilter:
    """The bulk clean-up's alerts: open, of `severity`, dated more than N days before today."""
    if severity not in SEVERITIES:
        raise AcknowledgmentError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    check_older_than(older_than_days)
    cutoff = (today or utcnow().date()) - timedelta(days=older_than_days)
    return AlertFilter(severities=(severity,), before=cutoff)


def acknowledge_older(
    engine: sa.Engine, severity: str, older_than_days: int, by: str, today: date | None = None
) -> int:
    """The guide's bulk clean-up: acknowledge open alerts of a severity older than N days."""
    name = check_acknowledger(by)
    filters = cleanup_filter(severity, older_than_days, today)
    with engine.begin() as conn:
        return conn.execute(
            alerts.update()
            .where(*filters.conditions())
            .values(acknowledged=True, acknowledged_by=name, acknowledged_at=utcnow())
        ).rowcount
