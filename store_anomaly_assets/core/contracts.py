"""The product's shared vocabulary: severities and the shape of an alert row.

Every module that ranks, labels, validates or reads alerts takes these from here.
"""

from __future__ import annotations

import polars as pl

# The guide's tiers, most severe first, with the words the Chinese texts use.
SEVERITIES = ("CRITICAL", "WARNING", "INFO")
SEVERITY_ORDER = {severity: rank for rank, severity in enumerate(SEVERITIES)}
SEVERITY_ZH = {"CRITICAL": "严重", "WARNING": "警告", "INFO": "提示"}

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
