-- UC-OP-02 Store Performance Anomaly Detection: the account of the acknowledgment web app
-- (`store-anomaly serve`). For MySQL 8 and MariaDB 10.11. Run as an administrator on the
-- analytics server (dbatest) after sql/02_create_analytics_schema.sql.
--
-- Before running:
--   * replace REPLACE_WITH_GENERATED_PASSWORD with a generated secret and give `serve` the
--     same value in DBATEST_PASS (with DBATEST_USER=store_anomaly_ack). Never commit it.
--   * narrow the host part '%' to the web app's address where you can.
--   * if the analytics tables are not in database `test`, replace `test.` below.
-- The app reads the analytics tables for its pages and writes nothing but an
-- acknowledgment: the acknowledgment columns of alerts and incidents, nothing else.

CREATE USER IF NOT EXISTS 'store_anomaly_ack'@'%' IDENTIFIED BY 'REPLACE_WITH_GENERATED_PASSWORD';

GRANT SELECT ON test.store_kpi_daily            TO 'store_anomaly_ack'@'%';
GRANT SELECT ON test.store_anomaly_scores       TO 'store_anomaly_ack'@'%';
GRANT SELECT ON test.store_health_scores        TO 'store_anomaly_ack'@'%';
GRANT SELECT ON test.store_data_quality         TO 'store_anomaly_ack'@'%';
GRANT SELECT, UPDATE (acknowledged, acknowledged_by, acknowledged_at, ack_note)
    ON test.store_anomaly_alerts TO 'store_anomaly_ack'@'%';
GRANT SELECT, UPDATE (acknowledged_by, acknowledged_at, ack_note, status, updated_at)
    ON test.store_anomaly_incidents TO 'store_anomaly_ack'@'%';
