"""The operational guide's SQL, verbatim (sections 5, 6 and 7), as the users run it."""

LATEST_RUN = """\
SELECT run_id, run_date, step_name, status, rows_affected,
       duration_seconds, error_message
FROM test.store_anomaly_pipeline_log
WHERE run_date = CURDATE()
ORDER BY step_number;"""

FAILED_STEPS = """\
SELECT * FROM test.store_anomaly_pipeline_log
WHERE status = 'FAILED'
AND run_date >= DATE_SUB(CURDATE(), INTERVAL 7 DAY);"""

ACTIVE_ALERTS = """\
SELECT store_name, alert_date, severity, metric_name,
       description_en, recommended_action
FROM test.store_anomaly_alerts
WHERE acknowledged = FALSE
ORDER BY
  FIELD(severity, 'CRITICAL', 'WARNING', 'INFO'),
  alert_date DESC;"""

FRESHNESS = """\
SELECT store_id, store_name,
       MAX(metric_date) as latest_date,
       DATEDIFF(CURDATE(), MAX(metric_date)) as days_stale
FROM test.store_kpi_daily
GROUP BY store_id, store_name
ORDER BY latest_date;"""

LOG_ROTATION = """\
DELETE FROM test.store_anomaly_pipeline_log
WHERE run_date < DATE_SUB(CURDATE(), INTERVAL 90 DAY);"""

REBUILD_STORE = """\
DELETE FROM test.store_anomaly_scores WHERE store_id = 1127;
DELETE FROM test.store_health_scores WHERE store_id = 1127;
DELETE FROM test.store_anomaly_alerts WHERE store_id = 1127;"""

ACK_ONE = """\
UPDATE test.store_anomaly_alerts
SET acknowledged = TRUE,
    acknowledged_by = 'manager_name',
    acknowledged_at = NOW()
WHERE id = <alert_id>;"""

BULK_ACK_INFO = """\
UPDATE test.store_anomaly_alerts
SET acknowledged = TRUE, acknowledged_by = 'system_cleanup', acknowledged_at = NOW()
WHERE severity = 'INFO' AND alert_date < DATE_SUB(CURDATE(), INTERVAL 30 DAY)
AND acknowledged = FALSE;"""
