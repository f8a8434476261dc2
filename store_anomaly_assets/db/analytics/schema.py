"""The analytics tables and the run-lock holder (DESIGN section 4), as SQLAlchemy Core.

`sql/02_create_analytics_schema.sql` is the same schema for MySQL 8 and MariaDB 10.11;
`store_anomaly_tests/test_schema.py` proves the two do not drift.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Money = sa.Numeric(14, 2, asdecimal=False)
_Float = sa.Double()


def _audit() -> list[sa.Column]:
    return [
        sa.Column("run_id", sa.String(64)),
        sa.Column("updated_at", sa.DateTime),
    ]


def _place() -> list[sa.Column]:
    """The store's district and region (t_shop_info), for district views and routing.
    Nullable and last, so the guide's SQL runs as is and an existing table gains them."""
    return [
        sa.Column("district", sa.String(64)),
        sa.Column("region", sa.String(64)),
    ]


store_kpi_daily = sa.Table(
    "store_kpi_daily",
    metadata,
    sa.Column("store_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("metric_date", sa.Date, primary_key=True),
    sa.Column("store_name", sa.String(128)),
    sa.Column("revenue", _Money),
    sa.Column("order_count", sa.Integer),
    sa.Column("aov", _Float),
    sa.Column("production_count", sa.Integer),
    sa.Column("avg_production_seconds", _Float),
    sa.Column("scheduled_hours", sa.Numeric(10, 2, asdecimal=False)),
    sa.Column("headcount", sa.Integer),
    sa.Column("inspection_count", sa.Integer),
    sa.Column("inspection_score", _Float),
    sa.Column("orders_per_labor_hour", _Float),
    sa.Column("revenue_per_labor_hour", _Float),
    sa.Column("production_per_labor_hour", _Float),
    *_audit(),
    sa.Index("idx_kpi_metric_date", "metric_date"),
)

store_anomaly_scores = sa.Table(
    "store_anomaly_scores",
    metadata,
    sa.Column("store_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("metric_date", sa.Date, primary_key=True),
    sa.Column("metric_name", sa.String(64), primary_key=True),
    sa.Column("store_name", sa.String(128)),
    sa.Column("metric_value", _Float),
    sa.Column("baseline_mean", _Float),
    sa.Column("baseline_std", _Float),
    sa.Column("baseline_n", sa.Integer),
    sa.Column("dow_factor", _Float),
    sa.Column("z_score", _Float),
    sa.Column("cl", _Float),
    sa.Column("ucl_2s", _Float),
    sa.Column("lcl_2s", _Float),
    sa.Column("ucl_3s", _Float),
    sa.Column("lcl_3s", _Float),
    *[
        sa.Column(f"we_rule_{n}", sa.Boolean, nullable=False, server_default=sa.false())
        for n in range(1, 6)
    ],
    sa.Column("rules_violated", sa.String(64)),
    sa.Column("severity", sa.String(16)),
    *_audit(),
    sa.Index("idx_scores_metric_date", "metric_date"),
)

store_health_scores = sa.Table(
    "store_health_scores",
    metadata,
    sa.Column("store_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("metric_date", sa.Date, primary_key=True),
    sa.Column("store_name", sa.String(128)),
    sa.Column("sales_score", _Float),
    sa.Column("operations_score", _Float),
    sa.Column("staffing_score", _Float),
    sa.Column("quality_score", _Float),
    sa.Column("health_score", _Float),
    sa.Column("health_status", sa.String(20), nullable=False),
    sa.Column("dimensions_used", sa.String(64)),
    *_audit(),
    *_place(),
    sa.Index("idx_health_metric_date", "metric_date"),
)

store_anomaly_alerts = sa.Table(
    "store_anomaly_alerts",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("store_id", sa.BigInteger, nullable=False),
    sa.Column("alert_date", sa.Date, nullable=False),
    sa.Column("metric_name", sa.String(64), nullable=False),
    sa.Column("store_name", sa.String(128)),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("metric_value", _Float),
    sa.Column("expected_value", _Float),
    sa.Column("z_score", _Float),
    sa.Column("rules_violated", sa.String(64)),
    sa.Column("scope", sa.String(16), nullable=False, server_default="STORE"),
    sa.Column("impact_usd", _Money),
    sa.Column("description_en", sa.Text),
    sa.Column("description_zh", sa.Text),
    sa.Column("recommended_action", sa.Text),
    sa.Column("recommended_action_zh", sa.Text),
    sa.Column("acknowledged", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("acknowledged_by", sa.String(128)),
    sa.Column("acknowledged_at", sa.DateTime),
    sa.Column("ack_note", sa.Text),
    sa.Column("notified_at", sa.DateTime),
    sa.Column("created_at", sa.DateTime),
    *_audit(),
    # store_anomaly_incidents.id; no foreign key, so the guide's SQL on alerts runs as is.
    sa.Column("incident_id", sa.BigInteger),
    sa.UniqueConstraint("store_id", "alert_date", "metric_name", name="uq_alert_store_date_metric"),
    sa.Index("idx_alerts_alert_date", "alert_date"),
    sa.Index("idx_alerts_open", "acknowledged", "severity"),
    sa.Index("idx_alerts_incident", "incident_id"),
)

# One store's alerts that share a cause (core/incidents.py): the unit people act on.
# OPEN: not acknowledged, still alerting on the store's newest day; RESOLVED: not
# acknowledged, the store has had a day without alert since; ACKNOWLEDGED.
store_anomaly_incidents = sa.Table(
    "store_anomaly_incidents",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("store_id", sa.BigInteger, nullable=False),
    sa.Column("store_name", sa.String(128)),
    sa.Column("first_date", sa.Date, nullable=False),
    sa.Column("last_date", sa.Date, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("primary_metric", sa.String(64), nullable=False),
    sa.Column("dimensions", sa.String(64)),
    sa.Column("scope", sa.String(16), nullable=False, server_default="STORE"),
    sa.Column("status", sa.String(16), nullable=False, server_default="OPEN"),
    sa.Column("alert_count", sa.Integer, nullable=False),
    sa.Column("impact_usd", _Money),
    sa.Column("description_en", sa.Text),
    sa.Column("description_zh", sa.Text),
    sa.Column("acknowledged_by", sa.String(128)),
    sa.Column("acknowledged_at", sa.DateTime),
    sa.Column("ack_note", sa.Text),
    sa.Column("notified_at", sa.DateTime),
    sa.Column("created_at", sa.DateTime),
    *_audit(),
    *_place(),
    sa.Index("idx_incidents_store_dates", "store_id", "first_date", "last_date"),
    sa.Index("idx_incidents_status", "status", "severity"),
)

# Data-quality findings per store-day and source (core/quality.py). store_id is NULL for
# a finding about a whole source or the chain; such rows are replaced with the range too.
store_data_quality = sa.Table(
    "store_data_quality",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64)),
    sa.Column("store_id", sa.BigInteger),
    sa.Column("metric_date", sa.Date, nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("check_name", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(8), nullable=False),
    sa.Column("rows_affected", sa.Integer),
    sa.Column("detail", sa.Text),
    sa.Column("detail_zh", sa.Text),
    sa.Column("updated_at", sa.DateTime),
    sa.UniqueConstraint("store_id", "metric_date", "source", "check_name",
                        name="uq_quality_store_date_source_check"),
    sa.Index("idx_quality_metric_date", "metric_date"),
)

store_anomaly_pipeline_log = sa.Table(
    "store_anomaly_pipeline_log",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("run_date", sa.Date, nullable=False),
    sa.Column("partition_start", sa.Date),
    sa.Column("partition_end", sa.Date),
    sa.Column("step_number", sa.Integer, nullable=False),
    sa.Column("step_name", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rows_affected", sa.Integer),
    sa.Column("duration_seconds", _Float),
    sa.Column("error_message", sa.Text),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
    sa.Index("idx_log_run_date", "run_date"),
    sa.Index("idx_log_run_id", "run_id"),
)

# Who holds the pipeline's run lock, so a waiting run can say so and the next run can
# recognise one that was killed while holding it (released_at stays NULL). Not granted to
# readers: the lock itself is a named server lock (resources.RunLock).
store_anomaly_run_lock = sa.Table(
    "store_anomaly_run_lock",
    metadata,
    sa.Column("lock_scope", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("acquired_at", sa.DateTime, nullable=False),
    sa.Column("released_at", sa.DateTime),
    sa.Column("holder", sa.String(128)),
    sa.Column("partition_start", sa.Date),
    sa.Column("partition_end", sa.Date),
)

ANALYTICS_TABLES = (
    store_kpi_daily,
    store_anomaly_scores,
    store_health_scores,
    store_anomaly_alerts,
    store_anomaly_incidents,
    store_data_quality,
    store_anomaly_pipeline_log,
)
