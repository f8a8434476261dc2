"""The daily HTML report (`store-anomaly report --date D [--out FILE]`).

One self-contained page (inline CSS, charts as inline SVG; no script, no font, no image,
nothing fetched), readable offline and attachable to an email:

- a summary of the day (stores by health status, alerts by severity, revenue impact);
- the health grid: stores x the last 14 days coloured by `health_status`, with the day's
  score, worst store first;
- the day's alerts, most severe then costliest first, with their English and Chinese
  texts and estimated impact;
- one control chart per alerted store and metric: the last 60 days of values, the centre
  line, the 2σ and 3σ bands of `store_anomaly_scores` (limits for each day's weekday, so
  they step from day to day) and the flagged days. Inspection scores, which are scored on
  thresholds rather than SPC, show the 80/70-point thresholds instead of bands.

Modules: `data` reads the analytics tables into `ReportData` (the only database access);
`charts` draws the SVG; `render` fills the Jinja2 templates of `templates/` (page, e-mail
variant, files). The builders are pure functions of polars frames, tested without a
database.
"""

from store_anomaly_assets.report.charts import (
    NO_ROW_COLOUR,
    SEVERITY_COLOURS,
    STATUS_COLOURS,
    control_chart_svg,
    health_grid_svg,
    nice_ticks,
)
from store_anomaly_assets.report.data import (
    ALERT_SCHEMA,
    CHART_DAYS,
    GRID_DAYS,
    HEALTH_SCHEMA,
    SERIES_SCHEMA,
    NoReportData,
    ReportData,
    load_report_data,
)
from store_anomaly_assets.report.render import (
    STYLES,
    alert_card_html,
    build_email_html,
    build_report_html,
    stylesheet,
    total_impact,
    write_report,
    write_report_data,
)

__all__ = [
    "ALERT_SCHEMA",
    "CHART_DAYS",
    "GRID_DAYS",
    "HEALTH_SCHEMA",
    "NO_ROW_COLOUR",
    "SERIES_SCHEMA",
    "SEVERITY_COLOURS",
    "STATUS_COLOURS",
    "STYLES",
    "NoReportData",
    "ReportData",
    "alert_card_html",
    "build_email_html",
    "build_report_html",
    "control_chart_svg",
    "health_grid_svg",
    "load_report_data",
    "nice_ticks",
    "stylesheet",
    "total_impact",
    "write_report",
    "write_report_data",
]
