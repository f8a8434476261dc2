"""`store_anomaly_incidents`: the alerts of a range grouped into incidents, stably.

An incident's identity follows its alerts: after a recompute, a group of alerts keeps the
id most of its alerts already had, so ids, acknowledgments and notification marks survive
recomputes the way alert ids do. An acknowledged incident is closed: alerts that join its
chain later (the drop goes on the next day) form a new incident, which pages again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.core.alerts import describe_incidents
from store_anomaly_assets.core.contracts import SEVERITIES
from store_anomaly_assets.core.incidents import summarize_incidents
from store_anomaly_assets.db.analytics.acknowledgments import AlertFilter
from store_anomaly_assets.db.analytics.pipeline_log import utcnow
from store_anomaly_assets.db.analytics.schema import (
    store_anomaly_alerts,
    store_anomaly_incidents,
    store_kpi_daily,
)
from store_anomaly_assets.db.frames import frame_rows, read_frame

_ALERT_COLUMNS = ["id", "store_id", "store_name", "alert_date", "metric_name", "severity",
                  "impact_usd", "scope", "rules_violated", "acknowledged", "incident_id",
                  "description_en", "description_zh"]
_ALERT_TYPES = {"id": pl.Int64, "store_id": pl.Int64, "alert_date": pl.Date,
                "impact_usd": pl.Float64, "acknowledged": pl.Boolean, "incident_id": pl.Int64}
# What a recompute rewrites on an incident; acknowledgment and notification are kept.
_RECOMPUTED = ("store_name", "first_date", "last_date", "severity", "primary_metric",
               "dimensions", "scope", "status", "alert_count", "impact_usd",
               "description_en", "description_zh", "district", "region")
PLACE_TYPES = {"store_id": pl.Int64, "district": pl.String, "region": pl.String}


@dataclass(frozen=True)
class IncidentMerge:
    inserted: int
    updated: int
    removed: int


def _window(conn: sa.Connection, store_ids: list[int], start: date,
            end: date) -> tuple[date, date]:
    """start..end widened to every incident that touches it, so chains are whole."""
    i = store_anomaly_incidents
    first, last = conn.execute(
        sa.select(sa.func.min(i.c.first_date), sa.func.max(i.c.last_date)).where(
            i.c.store_id.in_(store_ids), i.c.last_date >= start - timedelta(days=1),
            i.c.first_date <= end + timedelta(days=1))
    ).one()
    return min(first or start, start), max(last or end, end)


def _final_incidents(alerts: pl.DataFrame, acknowledged: set[int]) -> pl.DataFrame:
    """Alerts with `incident_id` (existing) or NULL (new), `incident_key` (its group) and
    `prior_id` (the incident the alert belonged to before).

    Alerts chain per store over consecutive days (core/incidents.py). A chain keeps the
    existing id most of its alerts carry; alerts of an acknowledged incident stay in it,
    and the rest of their chain becomes a new incident.
    """
    from store_anomaly_assets.core.incidents import assign_incidents

    chained = assign_incidents(alerts).with_columns(prior_id=pl.col("incident_id"))
    acked = pl.col("incident_id").is_in(list(acknowledged)).fill_null(False)
    open_part = chained.filter(~acked)
    reuse = (
        open_part.drop_nulls("incident_id")
        .group_by("incident_key", "incident_id").len()
        .sort(["incident_key", "len", "incident_id"], descending=[False, True, False])
        .group_by("incident_key", maintain_order=True).agg(pl.col("incident_id").first())
    )
    # An id is kept by one chain only: when a chain splits, the other part is new.
    reuse = reuse.unique("incident_id", keep="first")
    open_part = open_part.drop("incident_id").join(reuse, on="incident_key", how="left")
    kept = chained.filter(acked).with_columns(
        incident_key=pl.format("acked:{}", pl.col("incident_id")))
    return pl.concat([open_part.select(kept.columns), kept])


def _places(places: pl.DataFrame | None) -> pl.DataFrame:
    if places is None:
        return pl.DataFrame(schema=PLACE_TYPES)
    return places.select([pl.col(c).cast(t) for c, t in PLACE_TYPES.items()]).unique(
        "store_id", keep="first")


def merge_incidents(
    conn: sa.Connection, store_ids: Sequence[int], start: date, end: date, run_id: str,
    now: datetime, places: pl.DataFrame | None = None,
) -> IncidentMerge:
    """Group the stores' alerts around start..end into incidents, inside `conn`'s
    transaction (the one that merged the alerts), and link each alert to its incident.

    `places` (store_id, district, region) gives each incident its store's district and
    region; without it they are NULL."""
    a, i = store_anomaly_alerts, store_anomaly_incidents
    stores = list(store_ids)
    lo, hi = _window(conn, stores, start, end)
    alerts = read_frame(conn, sa.select(*[a.c[c] for c in _ALERT_COLUMNS]).where(
        a.c.store_id.in_(stores), a.c.alert_date.between(lo, hi)), schema_overrides=_ALERT_TYPES)
    existing = read_frame(conn, sa.select(i.c.id, i.c.acknowledged_at).where(
        i.c.store_id.in_(stores), i.c.last_date >= lo, i.c.first_date <= hi).with_for_update(),
        schema_overrides={"id": pl.Int64})
    acknowledged = set(existing.filter(pl.col("acknowledged_at").is_not_null())["id"])
    final = _final_incidents(alerts, acknowledged) if alerts.height else alerts
    inserted = updated = 0
    if final.height:
        newest = dict(conn.execute(
            sa.select(store_kpi_daily.c.store_id, sa.func.max(store_kpi_daily.c.metric_date))
            .where(store_kpi_daily.c.store_id.in_(stores)).group_by(store_kpi_daily.c.store_id)
        ).all())
        grouped = final.with_columns(
            incident_first_date=pl.col("alert_date").min().over("incident_key"))
        summary = describe_incidents(summarize_incidents(grouped), grouped).join(
            grouped.group_by("incident_key").agg(
                pl.col("incident_id").first(), pl.col("store_name").drop_nulls().last(),
                pl.col("acknowledged").all().alias("all_acknowledged")),
            on="incident_key",
        ).with_columns(
            newest=pl.col("store_id").replace_strict(newest, default=None,
                                                     return_dtype=pl.Date),
            alert_count=pl.col("n_alerts").cast(pl.Int64),
        ).join(_places(places), on="store_id", how="left").with_columns(
            status=pl.when(pl.col("incident_id").is_in(list(acknowledged))
                           & pl.col("all_acknowledged")).then(pl.lit("ACKNOWLEDGED"))
            .when(pl.col("last_date") < pl.col("newest")).then(pl.lit("RESOLVED"))
            .otherwise(pl.lit("OPEN")),
        )
        rows = frame_rows(summary, ["incident_key", "incident_id", "store_id", *_RECOMPUTED])
        fresh = [r for r in rows if r["incident_id"] is None]
        kept = [r for r in rows if r["incident_id"] is not None]
        ids = {r["incident_key"]: r["incident_id"] for r in kept}
        if fresh:
            # One statement for all new incidents; RETURNING in parameter order gives
            # each its id (MariaDB 10.5+, MySQL through SQLAlchemy's insertmanyvalues,
            # SQLite 3.35+).
            inserted_ids = conn.execute(
                i.insert().returning(i.c.id, sort_by_parameter_order=True),
                [{c: r[c] for c in ("store_id", *_RECOMPUTED)}
                 | {"run_id": run_id, "updated_at": now, "created_at": now} for r in fresh],
            ).scalars().all()
            ids.update(zip([r["incident_key"] for r in fresh], inserted_ids, strict=True))
            inserted = len(fresh)
        if kept:
            conn.execute(
                i.update().where(i.c.id == sa.bindparam("b_id")).values(
                    {c: sa.bindparam(f"b_{c}") for c in ("store_id", *_RECOMPUTED)}
                    | {"run_id": run_id, "updated_at": now}),
                [{f"b_{c}": r[c] for c in ("store_id", *_RECOMPUTED)} | {"b_id": r["incident_id"]}
                 for r in kept],
            )
            updated = len(kept)
        links = final.with_columns(
            new_id=pl.col("incident_key").replace_strict(ids, return_dtype=pl.Int64)
        ).filter(pl.col("prior_id").is_null() | (pl.col("prior_id") != pl.col("new_id")))
        if links.height:
            conn.execute(a.update().where(a.c.id == sa.bindparam("b_id"))
                         .values(incident_id=sa.bindparam("b_incident")),
                         [{"b_id": r[0], "b_incident": r[1]}
                          for r in links.select("id", "new_id").iter_rows()])
    # Incidents left without alerts (a recompute explained them away).
    has_alerts = sa.exists().where(a.c.incident_id == i.c.id)
    removed = conn.execute(i.delete().where(
        i.c.store_id.in_(stores), i.c.last_date >= lo, i.c.first_date <= hi, ~has_alerts,
        i.c.acknowledged_at.is_(None))
    ).rowcount
    return IncidentMerge(inserted, updated, removed)


def acknowledge_incident(engine: sa.Engine, incident_id: int, by: str,
                         note: str | None = None) -> int:
    """Acknowledge an incident and every alert in it, once; returns the alerts acknowledged.

    Raises LookupError for an unknown id and ValueError when it was already acknowledged.
    """
    a, i = store_anomaly_alerts, store_anomaly_incidents
    now = utcnow()
    with engine.begin() as conn:
        row = conn.execute(sa.select(i.c.acknowledged_by, i.c.acknowledged_at)
                           .where(i.c.id == incident_id).with_for_update()).first()
        if row is None:
            raise LookupError(f"incident {incident_id} does not exist")
        if row.acknowledged_at is not None:
            raise ValueError(f"incident {incident_id} was already acknowledged by "
                             f"{row.acknowledged_by} at {row.acknowledged_at}")
        conn.execute(i.update().where(i.c.id == incident_id).values(
            acknowledged_by=by, acknowledged_at=now, ack_note=note, status="ACKNOWLEDGED",
            updated_at=now))
        return conn.execute(a.update().where(a.c.incident_id == incident_id,
                                             a.c.acknowledged.is_(False)).values(
            acknowledged=True, acknowledged_by=by, acknowledged_at=now, ack_note=note)
        ).rowcount


INCIDENT_LIST_COLUMNS = ["id", "store_id", "store_name", "district", "region", "first_date",
                         "last_date", "severity", "primary_metric", "dimensions", "scope",
                         "status", "alert_count", "impact_usd", "description_en",
                         "description_zh"]


def _open_incident_conditions(filters: AlertFilter) -> list[sa.ColumnElement[bool]]:
    """Not acknowledged, with an unacknowledged alert, matching the alert filters."""
    a, i = store_anomaly_alerts, store_anomaly_incidents
    where = [i.c.acknowledged_at.is_(None),
             sa.exists().where(a.c.incident_id == i.c.id, a.c.acknowledged.is_(False))]
    if filters.severities:
        where.append(i.c.severity.in_(sorted(filters.severities)))
    if filters.store_ids is not None:
        where.append(i.c.store_id.in_(sorted(filters.store_ids)))
    if filters.since is not None:
        where.append(i.c.last_date >= filters.since)
    if filters.before is not None:
        where.append(i.c.first_date < filters.before)
    return where


def open_incidents(engine: sa.Engine, filters: AlertFilter, limit: int | None = None
                   ) -> tuple[pl.DataFrame, int]:
    """Open incidents in the guide's order (most severe, newest, costliest), and their count."""
    i = store_anomaly_incidents
    where = _open_incident_conditions(filters)
    rank = sa.case({s: n for n, s in enumerate(SEVERITIES)}, value=i.c.severity, else_=9)
    query = (sa.select(*[i.c[c] for c in INCIDENT_LIST_COLUMNS]).where(*where)
             .order_by(rank, i.c.last_date.desc(), i.c.impact_usd.is_(None),
                       i.c.impact_usd.desc(), i.c.id).limit(limit))
    rows = read_frame(engine, query, schema_overrides={
        "id": pl.Int64, "store_id": pl.Int64, "first_date": pl.Date, "last_date": pl.Date,
        "alert_count": pl.Int64, "impact_usd": pl.Float64})
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(i).where(*where)).scalar()
    return rows, int(total or 0)


INCIDENT_ALERT_COLUMNS = ["id", "alert_date", "metric_name", "severity", "metric_value",
                          "expected_value", "z_score", "rules_violated", "impact_usd",
                          "description_en", "description_zh", "recommended_action",
                          "recommended_action_zh", "acknowledged"]


def read_incident(engine: sa.Engine, incident_id: int) -> tuple[dict | None, pl.DataFrame]:
    """An incident's row (None when unknown) and its alerts, worst and newest first."""
    a, i = store_anomaly_alerts, store_anomaly_incidents
    with engine.connect() as conn:
        row = conn.execute(sa.select(i).where(i.c.id == incident_id)).mappings().first()
        rank = sa.case({s: n for n, s in enumerate(SEVERITIES)}, value=a.c.severity, else_=9)
        alerts = read_frame(conn, sa.select(*[a.c[c] for c in INCIDENT_ALERT_COLUMNS])
                            .where(a.c.incident_id == incident_id)
                            .order_by(rank, a.c.alert_date.desc(), a.c.metric_name),
                            schema_overrides={"id": pl.Int64, "alert_date": pl.Date,
                                              "impact_usd": pl.Float64,
                                              "acknowledged": pl.Boolean})
    return (None if row is None else dict(row)), alerts
