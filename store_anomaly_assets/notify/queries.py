"""The notifier's two database touches: the alerts still to send, and `notified_at`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime

import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.db.analytics.schema import store_anomaly_alerts
from store_anomaly_assets.db.frames import read_frame
from store_anomaly_assets.notify.delivery import parse_alert_token
from store_anomaly_assets.notify.messages import ALERT_TYPES


def read_pending_alerts(engine: sa.Engine, severities: Iterable[str], since: date) -> pl.DataFrame:
    """Unacknowledged, un-notified alerts of `severities` dated `since` or later."""
    t = store_anomaly_alerts
    severities = list(severities)
    query = sa.select(*[t.c[c] for c in ALERT_TYPES]).where(
        t.c.notified_at.is_(None),
        t.c.acknowledged.is_(False),
        t.c.severity.in_(severities),
        t.c.alert_date >= since,
    ).order_by(t.c.id)
    return read_frame(engine, query, schema_overrides=ALERT_TYPES)


def mark_notified(engine: sa.Engine, tokens: Iterable[str], now: datetime | None = None) -> int:
    """Set notified_at on the alerts of `tokens`, if they still have that severity.

    A recompute that changed an alert's severity in the meantime cleared notified_at on
    purpose (the escalation must be notified): the severity guard leaves it alone.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None, microsecond=0)
    by_severity: dict[str, list[int]] = {}
    for token in tokens:
        alert_id, severity = parse_alert_token(token)
        by_severity.setdefault(severity, []).append(alert_id)
    t = store_anomaly_alerts
    marked = 0
    with engine.begin() as conn:
        for severity, ids in by_severity.items():
            marked += conn.execute(
                t.update()
                .where(t.c.id.in_(ids), t.c.severity == severity, t.c.notified_at.is_(None))
                .values(notified_at=now)
            ).rowcount
    return marked
