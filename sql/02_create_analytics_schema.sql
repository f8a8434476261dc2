-- UC-OP-02 Store Performance Anomaly Detection: analytics schema.
-- For MySQL 8 and MariaDB 10.11. Run it in the analytics database (`test` by default):
--   store-anomaly init-db          (idempotent; applies this file)
-- The code's own definitions live in store_anomaly_assets/db/analytics/schema.py;
-- store_anomaly_tests/test_schema.py proves the two agree.

CREATE TABLE IF NOT EXISTS store_kpi_daily (
    store_id                  BIGINT        NOT NULL,
    metric_date               DATE          NOT NULL,
    store_name                VARCHAR(128)  NULL,
    revenue                   DECIMAL(14,2) NULL,
    order_count               INT           NULL,
    aov                       DOUBLE        NULL,
    production_count          INT           NULL,
    avg_production_seconds    DOUBLE        NULL,
    scheduled_hours           DECIMAL(10,2) NULL,
    headcount                 INT           NULL,
    inspection_count          INT           NULL,
    inspection_score          DOUBLE        NULL,
    orders_per_labor_hour     DOUBLE        NULL,
    revenue_per_labor_hour    DOUBLE        NULL,
    production_per_labor_hour DOUBLE        NULL,
    run_id                    VARCHAR(64)   NULL,
    updated_at                DATETIME      NULL,
    PRIMARY KEY (store_id, metric_date),
    KEY idx_kpi_metric_date (metric_date)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS store_anomaly_scores (
    store_id       BIGINT       NOT NULL,
    metric_date    DATE         NOT NULL,
    metric_name    VARCHAR(64)  NOT NULL,
    store_name     VARCHAR(128) NULL,
    metric_value   DOUBLE       NULL,
    baseline_mean  DOUBLE       NULL,
    baseline_std   DOUBLE       NULL,
    baseline_n     INT          NULL,
    dow_factor     DOUBLE       NULL,
    z_score        DOUBLE       NULL,
    cl             DOUBLE       NULL,
    ucl_2s         DOUBLE       NULL,
    lcl_2s         DOUBLE       NULL,
    ucl_3s         DOUBLE       NULL,
    lcl_3s         DOUBLE       NULL,
    we_rule_1      BOOLEAN      NOT NULL DEFAULT FALSE,
    we_rule_2      BOOLEAN      NOT NULL DEFAULT FALSE,
    we_rule_3      BOOLEAN      NOT NULL DEFAULT FALSE,
    we_rule_4      BOOLEAN      NOT NULL DEFAULT FALSE,
    we_rule_5      BOOLEAN      NOT NULL DEFAULT FALSE,
    rules_violated VARCHAR(64)  NULL,
    severity       VARCHAR(16)  NULL,
    run_id         VARCHAR(64)  NULL,
    updated_at     DATETIME     NULL,
    PRIMARY KEY (store_id, metric_date, metric_name),
    KEY idx_scores_metric_date (metric_date)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS store_health_scores (
    store_id         BIGINT       NOT NULL,
    metric_date      DATE         NOT NULL,
    store_name       VARCHAR(128) NULL,
    sales_score      DOUBLE       NULL,
    operations_score DOUBLE       NULL,
    staffing_score   DOUBLE       NULL,
    quality_score    DOUBLE       NULL,
    health_score     DOUBLE       NULL,
    health_status    VARCHAR(20)  NOT NULL,
    dimensions_used  VARCHAR(64)  NULL,
    run_id           VARCHAR(64)  NULL,
    updated_at       DATETIME     NULL,
    district         VARCHAR(64)  NULL,
    region           VARCHAR(64)  NULL,
    PRIMARY KEY (store_id, metric_date),
    KEY idx_health_metric_date (metric_date)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS store_anomaly_alerts (
    id                    BIGINT        NOT NULL AUTO_INCREMENT,
    store_id              BIGINT        NOT NULL,
    alert_date            DATE          NOT NULL,
    metric_name           VARCHAR(64)   NOT NULL,
    store_name            VARCHAR(128)  NULL,
    severity              VARCHAR(16)   NOT NULL,
    metric_value          DOUBLE        NULL,
    expected_value        DOUBLE        NULL,
    z_score               DOUBLE        NULL,
    rules_violated        VARCHAR(64)   NULL,
    scope                 VARCHAR(16)   NOT NULL DEFAULT 'STORE',
    impact_usd            DECIMAL(14,2) NULL,
    description_en        TEXT          NULL,
    description_zh        TEXT          NULL,
    recommended_action    TEXT          NULL,
    recommended_action_zh TEXT          NULL,
    acknowledged          BOOLEAN       NOT NULL DEFAULT FALSE,
    acknowledged_by       VARCHAR(128)  NULL,
    acknowledged_at       DATETIME      NULL,
    ack_note              TEXT          NULL,
    notified_at           DATETIME      NULL,
    created_at            DATETIME      NULL,
    run_id                VARCHAR(64)   NULL,
    updated_at            DATETIME      NULL,
    incident_id           BIGINT        NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_alert_store_date_metric (store_id, alert_date, metric_name),
    KEY idx_alerts_alert_date (alert_date),
    KEY idx_alerts_open (acknowledged, severity),
    KEY idx_alerts_incident (incident_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Incidents: one store's alerts that share a cause (the same day, or consecutive days of a
-- sustained event), the unit notifications, the report and acknowledgments work on.
-- status: OPEN (alerting on the store's newest day), RESOLVED (a day without alert since,
-- not acknowledged), ACKNOWLEDGED. Acknowledging an incident acknowledges its alerts.
CREATE TABLE IF NOT EXISTS store_anomaly_incidents (
    id              BIGINT        NOT NULL AUTO_INCREMENT,
    store_id        BIGINT        NOT NULL,
    store_name      VARCHAR(128)  NULL,
    first_date      DATE          NOT NULL,
    last_date       DATE          NOT NULL,
    severity        VARCHAR(16)   NOT NULL,
    primary_metric  VARCHAR(64)   NOT NULL,
    dimensions      VARCHAR(64)   NULL,
    scope           VARCHAR(16)   NOT NULL DEFAULT 'STORE',
    status          VARCHAR(16)   NOT NULL DEFAULT 'OPEN',
    alert_count     INT           NOT NULL,
    impact_usd      DECIMAL(14,2) NULL,
    description_en  TEXT          NULL,
    description_zh  TEXT          NULL,
    acknowledged_by VARCHAR(128)  NULL,
    acknowledged_at DATETIME      NULL,
    ack_note        TEXT          NULL,
    notified_at     DATETIME      NULL,
    created_at      DATETIME      NULL,
    run_id          VARCHAR(64)   NULL,
    updated_at      DATETIME      NULL,
    district        VARCHAR(64)   NULL,
    region          VARCHAR(64)   NULL,
    PRIMARY KEY (id),
    KEY idx_incidents_store_dates (store_id, first_date, last_date),
    KEY idx_incidents_status (status, severity)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Data-quality findings per store-day and source: rows left out of the KPIs (WARN), a
-- source missing on a day the store traded (ERROR: its KPIs are NULL), closures (WARN),
-- and deliberate rewrites over the gate. store_id is NULL for a whole-source finding.
CREATE TABLE IF NOT EXISTS store_data_quality (
    id            BIGINT      NOT NULL AUTO_INCREMENT,
    run_id        VARCHAR(64) NULL,
    store_id      BIGINT      NULL,
    metric_date   DATE        NOT NULL,
    source        VARCHAR(32) NOT NULL,
    check_name    VARCHAR(64) NOT NULL,
    severity      VARCHAR(8)  NOT NULL,
    rows_affected INT         NULL,
    detail        TEXT        NULL,
    detail_zh     TEXT        NULL,
    updated_at    DATETIME    NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_quality_store_date_source_check (store_id, metric_date, source, check_name),
    KEY idx_quality_metric_date (metric_date)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS store_anomaly_pipeline_log (
    id               BIGINT       NOT NULL AUTO_INCREMENT,
    run_id           VARCHAR(64)  NOT NULL,
    run_date         DATE         NOT NULL,
    partition_start  DATE         NULL,
    partition_end    DATE         NULL,
    step_number      INT          NOT NULL,
    step_name        VARCHAR(64)  NOT NULL,
    status           VARCHAR(16)  NOT NULL,
    rows_affected    INT          NULL,
    duration_seconds DOUBLE       NULL,
    error_message    TEXT         NULL,
    started_at       DATETIME     NULL,
    finished_at      DATETIME     NULL,
    updated_at       DATETIME     NULL,
    PRIMARY KEY (id),
    KEY idx_log_run_date (run_date),
    KEY idx_log_run_id (run_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Who holds the pipeline's run lock (the lock itself is a named server lock); not granted
-- to read-only accounts.
CREATE TABLE IF NOT EXISTS store_anomaly_run_lock (
    lock_scope      VARCHAR(64)  NOT NULL,
    run_id          VARCHAR(64)  NOT NULL,
    acquired_at     DATETIME     NOT NULL,
    released_at     DATETIME     NULL,
    holder          VARCHAR(128) NULL,
    partition_start DATE         NULL,
    partition_end   DATE         NULL,
    PRIMARY KEY (lock_scope)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
