"""The product's shared vocabulary: severities and the shape of an alert row.

Every module that ranks, labels, validates or reads alerts takes these from here.
"""

from __future__ import annotations

import polars as pl

# The guide's tiers, most severe first, with the words the Chinese texts use.
SEVERITIES = ("CRITICAL", "WARNING", "INFO")
SEVERITY_ORDER = {severity: rank for rank, severity in enumerate(SEVERITIES)}
SEVERITY_ZH = {"CRITICAL": "严重", "WARNING": "警告", "INFO": "提示"}
# Every page, chart and e-mail colours a severity the same way.
SEVERITY_COLOURS = {"CRITICAL": "#c62828", "WARNING": "#ef6c00", "INFO": "#1565c0"}

# An alert as the alert step builds it (store_anomaly_alerts without the bookkeeping
# columns), and the types a reader casts to.
ALERT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "store_id": pl.Int64, "alert_date": pl.Date, "metric_name": pl.String,
    "store_name": pl.String, "severity": pl.String, "metric_value": pl.Float64,
    "expected_value": pl.Float64, "z_score": pl.Float64, "rules_violated": pl.String,
    "scope": pl.String, "impact_usd": pl.Float64, "description_en": pl.String,
    "description_zh": pl.String, "recommended_action": pl.String,
    "recommended_action_zh": pl.String,
}
ALERT_COLUMNS = list(ALERT_SCHEMA)

# The source databases as `store_data_quality.source` names them, keyed by each one's
# environment prefix, with the table a finding is about.
DATA_SOURCES: dict[str, tuple[str, str]] = {
    "OPSHOP_": ("opshop", "t_shop_info"),
    "SALESORDER_": ("salesorder", "t_order"),
    "OPPRODUCTION_": ("opproduction", "t_production_record"),
    "OPEMPEFFICIENCY_": ("opempefficiency", "t_employee_schedule"),
    "OPQUALITYCONTROL_": ("opqualitycontrol", "t_inspection_record"),
}
SOURCE_TABLES = dict(DATA_SOURCES.values())

# A data-quality finding: ERROR makes the store-day's numbers for that source unknown (or
# stopped the run), WARN is worth reading and changes nothing. store_id is NULL for a
# finding about a whole source or the whole chain. `detail_zh` is the Chinese `detail`.
FINDING_SEVERITIES = ("ERROR", "WARN")
FINDING_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "store_id": pl.Int64, "metric_date": pl.Date, "source": pl.String,
    "check_name": pl.String, "severity": pl.String, "rows_affected": pl.Int64,
    "detail": pl.String, "detail_zh": pl.String,
}
FINDING_COLUMNS = list(FINDING_SCHEMA)
