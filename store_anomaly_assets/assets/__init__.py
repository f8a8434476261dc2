"""The asset graph: source extracts (steps 1-5) feed the analytics tables (steps 6-10)."""

from store_anomaly_assets.assets.analytics import (
    store_anomaly_alerts,
    store_anomaly_scores,
    store_health_scores,
    store_kpi_daily,
)
from store_anomaly_assets.assets.sources import (
    production_extract,
    quality_extract,
    sales_extract,
    staffing_extract,
    store_master,
)

SOURCE_ASSETS = [store_master, sales_extract, production_extract, staffing_extract,
                 quality_extract]
ANALYTICS_ASSETS = [store_kpi_daily, store_anomaly_scores, store_health_scores,
                    store_anomaly_alerts]
ALL_ASSETS = [*SOURCE_ASSETS, *ANALYTICS_ASSETS]
