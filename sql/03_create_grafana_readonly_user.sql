-- UC-OP-02 Store Performance Anomaly Detection: read-only account for Grafana.
-- For MySQL 8 and MariaDB 10.11. Run as an administrator on the analytics server (dbatest)
-- after sql/02_create_analytics_schema.sql: a table-level GRANT needs the table to exist.
--
-- Before running:
--   * replace REPLACE_WITH_GENERATED_PASSWORD with a generated secret and give Grafana the
--     same value in STORE_ANOMALY_MYSQL_PASSWORD
--     (dashboards/provisioning/datasources/store_anomaly_mysql.yaml). Never commit it.
--   * narrow the host part '%' to the Grafana server's address where you can.
--   * if the analytics tables are not in database `test`, replace `test.` below.
-- Re-running is safe: an existing user keeps its password (rotate it with
-- ALTER USER 'grafana_ro'@'%' IDENTIFIED BY '...';) and the grants are re-applied.
-- The account can SELECT the analytics tables and nothing else: no writes, no other
-- tables, no other databases.

CREATE USER IF NOT EXISTS 'grafana_ro'@'%' IDENTIFIED BY 'REPLACE_WITH_GENERATED_PASSWORD';

GRANT SELECT ON test.store_kpi_daily            TO 'grafana_ro'@'%';
GRANT SELECT ON test.store_anomaly_scores       TO 'grafana_ro'@'%';
GRANT SELECT ON test.store_health_scores        TO 'grafana_ro'@'%';
GRANT SELECT ON test.store_anomaly_alerts       TO 'grafana_ro'@'%';
GRANT SELECT ON test.store_anomaly_incidents    TO 'grafana_ro'@'%';
GRANT SELECT ON test.store_data_quality         TO 'grafana_ro'@'%';
GRANT SELECT ON test.store_anomaly_pipeline_log TO 'grafana_ro'@'%';
