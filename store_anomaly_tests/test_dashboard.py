"""Tests for the Grafana part: dashboard JSON, provisioning, read-only user, macro expansion.

Three groups:
- structural checks of dashboards/store_anomaly_dashboard.json and the provisioning files;
- unit tests of grafana_macros (Grafana 11 MySQL macro and template-variable expansion);
- execution: every panel query, expanded for one store, several stores and All, runs on
  MariaDB against the analytics tables of the ``backfilled_analytics`` fixture (a SQLAlchemy
  engine), in a session set up like Grafana's (time zone +00:00) and with MySQL 8's default
  sql_mode (ONLY_FULL_GROUP_BY and strict), and returns what its panel type needs; so do
  the chained variable queries (region -> district -> store), the config (unit) queries,
  the incident annotation query and the rows behind the table data links.

docs/grafana.md explains the variable and link design and the two places where the JSON
goes beyond the generated Grafana 11.6 JSON schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

try:  # store_anomaly_tests/ is on sys.path (rootdir-style test directory without __init__)
    from grafana_macros import ALL, expand, expand_macros, interpolate_variables, parse_interval
except ImportError:  # store_anomaly_tests imported as a package
    from store_anomaly_tests.grafana_macros import (
        ALL,
        expand,
        expand_macros,
        interpolate_variables,
        parse_interval,
    )

PROJECT = Path(__file__).resolve().parents[1]
DASHBOARD_PATH = PROJECT / "dashboards" / "store_anomaly_dashboard.json"
DATASOURCE_YAML = (
    PROJECT / "dashboards" / "provisioning" / "datasources" / "store_anomaly_mysql.yaml"
)
PROVIDER_YAML = PROJECT / "dashboards" / "provisioning" / "dashboards" / "store_anomaly.yaml"
READONLY_SQL = PROJECT / "sql" / "03_create_grafana_readonly_user.sql"

DS_REF = {"type": "mysql", "uid": "${DS_MYSQL}"}
DS_UID = "store-anomaly-mysql"
ANALYTICS_TABLES = (
    "store_kpi_daily",
    "store_anomaly_scores",
    "store_health_scores",
    "store_anomaly_alerts",
    "store_data_quality",
    "store_anomaly_incidents",
    "store_anomaly_pipeline_log",
)
PER_STORE_TABLES = ANALYTICS_TABLES[:6]
METRICS = (
    "revenue",
    "order_count",
    "aov",
    "production_count",
    "avg_production_seconds",
    "scheduled_hours",
    "headcount",
    "orders_per_labor_hour",
    "revenue_per_labor_hour",
    "inspection_score",
)
HEALTH_STATUS_COLORS = {
    "HEALTHY": "green",
    "WATCH": "yellow",
    "AT_RISK": "red",
    "INSUFFICIENT_DATA": "#8e8e8e",
}

# Panel ids in the dashboard JSON (stable: the tests and links rely on them).
HEALTH_GRID, HEALTH_TREND, CONTROL_CHART, OPEN_ALERTS = 1, 2, 3, 4
ALERTS_PER_DAY, LATEST_RUN, FAILED_STEPS, FRESHNESS, DATA_QUALITY = 5, 6, 7, 8, 9
OPEN_INCIDENTS = 10
PANEL_TYPES = {
    HEALTH_GRID: "state-timeline",
    HEALTH_TREND: "timeseries",
    CONTROL_CHART: "timeseries",
    OPEN_ALERTS: "table",
    ALERTS_PER_DAY: "timeseries",
    LATEST_RUN: "table",
    FAILED_STEPS: "table",
    FRESHNESS: "table",
    DATA_QUALITY: "table",
    OPEN_INCIDENTS: "table",
}
TIME_SERIES_TYPES = {"timeseries", "state-timeline"}
DAILY_PANELS = {HEALTH_GRID, HEALTH_TREND, CONTROL_CHART, ALERTS_PER_DAY}

# "Data exists" for a panel: when its probe counts rows, the panel must return rows too.
PROBES = {
    HEALTH_GRID: "SELECT COUNT(*) FROM store_health_scores "
    "WHERE $__timeFilter(metric_date) AND store_id IN ($store)",
    HEALTH_TREND: "SELECT COUNT(*) FROM store_health_scores "
    "WHERE $__timeFilter(metric_date) AND store_id IN ($store) AND health_score IS NOT NULL",
    CONTROL_CHART: "SELECT COUNT(*) FROM store_anomaly_scores "
    "WHERE $__timeFilter(metric_date) AND store_id IN ($store) AND metric_name = '$metric'",
    OPEN_ALERTS: "SELECT COUNT(*) FROM store_anomaly_alerts "
    "WHERE acknowledged = FALSE AND store_id IN ($store)",
    ALERTS_PER_DAY: "SELECT COUNT(*) FROM store_anomaly_alerts "
    "WHERE $__timeFilter(alert_date) AND store_id IN ($store)",
    LATEST_RUN: "SELECT COUNT(*) FROM store_anomaly_pipeline_log",
    FAILED_STEPS: "SELECT COUNT(*) FROM store_anomaly_pipeline_log "
    "WHERE status = 'FAILED' AND run_date >= DATE_SUB(CURDATE(), INTERVAL 7 DAY)",
    FRESHNESS: "SELECT COUNT(*) FROM store_kpi_daily WHERE store_id IN ($store)",
    DATA_QUALITY: "SELECT COUNT(*) FROM store_data_quality "
    "WHERE $__timeFilter(metric_date) AND (store_id IN ($store) OR store_id IS NULL)",
    OPEN_INCIDENTS: "SELECT COUNT(*) FROM store_anomaly_incidents "
    "WHERE status <> 'ACKNOWLEDGED' AND store_id IN ($store)",
}
# Grafana unit ids of the control chart per $metric (the UNIT query); absent: "none".
METRIC_UNITS = {
    "revenue": "currencyUSD",
    "aov": "currencyUSD",
    "revenue_per_labor_hour": "currencyUSD",
    "avg_production_seconds": "s",
    "scheduled_hours": "h",
}
ACK_BASE_URL = "http://127.0.0.1:8088"
DASHBOARD_URL = "/d/uc-op-02-store-anomaly/store-anomaly-detection"
# Chained filter variables, in dashboard order; NULL district / region get these keys.
CHAINED = ("region", "district", "store")
NO_PLACE = "(none)"
# Override properties whose Grafana value is a scalar (CUE ``value?: _``): the generated
# JSON schema types every override value as an object, Grafana itself saves these scalars.
SCALAR_OVERRIDES = {
    "custom.fillBelowTo": str,
    "custom.fillOpacity": int,
    "custom.hidden": bool,
}

# MySQL 8.0's default sql_mode: MariaDB accepts it, so queries are held to MySQL 8's rules.
MYSQL8_SQL_MODE = (
    "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)


# ------------------------------------------------------------------------------- helpers


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))


def _panels() -> dict[int, dict[str, Any]]:
    return {panel["id"]: panel for panel in _dashboard()["panels"]}


def _variable(name: str) -> dict[str, Any]:
    matches = [v for v in _dashboard()["templating"]["list"] if v["name"] == name]
    assert len(matches) == 1, f"expected exactly one variable {name!r}"
    return matches[0]


def _config_ref_ids(panel: dict[str, Any]) -> set[str]:
    """refIds of targets feeding a "Config from query results" transformation (not data)."""
    return {
        t["options"]["configRefId"]
        for t in panel.get("transformations", [])
        if t["id"] == "configFromData"
    }


def _data_targets(panel: dict[str, Any]) -> list[dict[str, Any]]:
    config = _config_ref_ids(panel)
    return [t for t in panel["targets"] if t["refId"] not in config]


def _sql(panel: dict[str, Any]) -> str:
    """The panel's data SQL (config queries left out)."""
    return "\n".join(t["rawSql"] for t in _data_targets(panel))


def _all_sql(panel: dict[str, Any]) -> str:
    return "\n".join(t["rawSql"] for t in panel["targets"])


def _annotation(name: str) -> dict[str, Any]:
    matches = [a for a in _dashboard()["annotations"]["list"] if a["name"] == name]
    assert len(matches) == 1, f"expected exactly one annotation {name!r}"
    return matches[0]


def _flat(sql: str) -> str:
    return " ".join(sql.split())


def _order_by_keys(sql: str) -> list[str]:
    """Keys of the statement's last ORDER BY (the outer one in these queries)."""
    tail = re.split(r"\border\s+by\b", sql, flags=re.IGNORECASE)[-1]
    tail = re.split(r"\blimit\b", tail, flags=re.IGNORECASE)[0]
    return [_flat(key).lower() for key in tail.split(",")]


def _override(panel: dict[str, Any], field: str) -> dict[str, Any]:
    """Properties of the overrides whose ``byNames`` (include) matcher lists ``field``.

    Overrides use ``byNames`` because the dashboard schema wants matcher options (and
    property values) to be objects; ``byName`` takes a plain string.
    """
    props: dict[str, Any] = {}
    for override in panel["fieldConfig"]["overrides"]:
        matcher = override["matcher"]
        if (
            matcher["id"] == "byNames"
            and matcher["options"].get("mode", "include") == "include"
            and field in matcher["options"]["names"]
        ):
            props.update({p["id"]: p["value"] for p in override["properties"]})
    assert props, f"panel {panel['id']} has no override for field {field!r}"
    return props


def _renames(panel: dict[str, Any]) -> dict[str, str]:
    """Field renames of the panel's ``organize`` transformations (original -> shown name)."""
    renames: dict[str, str] = {}
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "organize":
            renames.update(transformation["options"].get("renameByName", {}))
    return renames


def _mapping_options(mappings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {}
    for mapping in mappings:
        if mapping["type"] == "value":
            options.update(mapping["options"])
    return options


def _yaml(path: Path) -> Any:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# -------------------------------------------------------------------- dashboard structure


def test_dashboard_is_valid_json_object():
    text = DASHBOARD_PATH.read_text(encoding="utf-8")
    dashboard = json.loads(text)
    assert isinstance(dashboard, dict)
    assert isinstance(dashboard["panels"], list)
    assert isinstance(dashboard["templating"]["list"], list)


def test_dashboard_identity_and_defaults():
    dashboard = _dashboard()
    assert dashboard["uid"] == "uc-op-02-store-anomaly"
    assert dashboard["title"] == "Store Anomaly Detection"
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["time"] == {"from": "now-30d", "to": "now"}
    # Business dates are encoded as midnight UTC; a UTC dashboard shows them as that day.
    assert dashboard["timezone"] == "utc"
    # File provisioning does not resolve import-time __inputs: a datasource variable is used.
    assert "__inputs" not in dashboard
    assert "id" not in dashboard or dashboard["id"] is None
    assert "annotations" in dashboard


def test_panel_ids_are_unique_and_cover_the_expected_panels():
    ids = [panel["id"] for panel in _dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) for i in ids)
    assert {i: _panels()[i]["type"] for i in ids} == PANEL_TYPES


def test_every_panel_has_a_datasource_and_raw_sql_targets():
    for panel in _dashboard()["panels"]:
        assert panel["datasource"] == DS_REF, panel["title"]
        assert panel.get("title"), panel["id"]
        targets = panel["targets"]
        assert targets, panel["title"]
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids))
        for target in targets:
            assert target["rawSql"].strip(), panel["title"]
            assert target.get("rawQuery") is True
            assert target.get("editorMode") == "code"
            assert target.get("datasource", DS_REF) == DS_REF
            expected = "time_series" if panel["type"] in TIME_SERIES_TYPES else "table"
            if target["refId"] in _config_ref_ids(panel):
                expected = "table"  # a config query returns one row of field config
            assert target["format"] == expected, panel["title"]


def test_grid_positions_fit_24_columns_without_overlap():
    boxes = []
    for panel in _dashboard()["panels"]:
        pos = panel["gridPos"]
        x, y, w, h = pos["x"], pos["y"], pos["w"], pos["h"]
        assert all(isinstance(v, int) for v in (x, y, w, h)), panel["title"]
        assert x >= 0 and y >= 0 and w > 0 and h > 0, panel["title"]
        assert x + w <= 24, panel["title"]
        boxes.append((panel["title"], x, y, w, h))
    for i, (name_a, xa, ya, wa, ha) in enumerate(boxes):
        for name_b, xb, yb, wb, hb in boxes[i + 1 :]:
            overlap = xa < xb + wb and xb < xa + wa and ya < yb + hb and yb < ya + ha
            assert not overlap, f"{name_a!r} overlaps {name_b!r}"


def test_datasource_variable_defaults_to_the_provisioned_datasource():
    variable = _variable("DS_MYSQL")
    assert variable["type"] == "datasource"
    assert variable["query"] == "mysql"
    assert variable["current"]["value"] == DS_UID
    assert not variable.get("multi") and not variable.get("includeAll")


def test_store_variable_is_multi_value_with_all():
    variable = _variable("store")
    assert variable["type"] == "query"
    assert variable["multi"] is True
    assert variable["includeAll"] is True
    assert variable["datasource"] == DS_REF
    query = _flat(variable["query"]).lower()
    assert "store_id as __value" in query
    assert "store_name" in query and "__text" in query
    assert "from store_kpi_daily" in query
    assert variable["current"]["value"] == ["$__all"]


def test_region_district_store_variables_are_chained():
    """Region -> District -> Store: each multi-value with All, each filtered by the previous.

    District names repeat across regions, so a district's value is 'Region / District'. A
    store without a health row, district or region gets the key '(none)' in its place: "All"
    expands to every option, and the options include that key, so such stores stay selected.
    """
    names = [v["name"] for v in _dashboard()["templating"]["list"]]
    assert [n for n in names if n in CHAINED] == list(CHAINED)
    assert names.index("DS_MYSQL") < names.index("region")
    for name in CHAINED:
        variable = _variable(name)
        assert variable["type"] == "query" and variable["datasource"] == DS_REF, name
        assert variable["multi"] is True and variable["includeAll"] is True, name
        assert variable["current"]["value"] == ["$__all"], name
        assert "allValue" not in variable, name  # All = every option, NULL keys included
        assert variable["refresh"] in (1, 2), name  # reloads when its parent changes
        query = _flat(variable["query"])
        assert "__value" in query and "__text" in query, name
        assert f"COALESCE(h.region, '{NO_PLACE}')" in query, name
    assert "IN ($region)" in _variable("district")["query"]
    assert f"COALESCE(h.district, '{NO_PLACE}')" in _variable("district")["query"]
    store_query = _flat(_variable("store")["query"])
    assert "IN ($district)" in store_query and "$region" not in store_query
    # The stores come from store_kpi_daily; their place is a LEFT JOIN (missing -> NULL).
    assert "LEFT JOIN store_health_scores h" in store_query


def test_ack_base_url_variable_defaults_to_the_local_app():
    variable = _variable("ack_base_url")
    assert variable["type"] in ("constant", "textbox")
    assert variable["query"] == ACK_BASE_URL
    assert variable["current"] == {"text": ACK_BASE_URL, "value": ACK_BASE_URL}
    assert not variable.get("multi") and not variable.get("includeAll")
    assert "/incidents/" in variable["description"]


def test_metric_variable_is_single_valued_metric_names():
    variable = _variable("metric")
    assert variable["type"] in ("custom", "query")
    assert not variable.get("multi")
    assert not variable.get("includeAll")
    if variable["type"] == "custom":
        assert [o["value"] for o in variable["options"]] == list(METRICS)
        assert variable["query"].split(",") == list(METRICS)
    assert variable["current"]["value"] in METRICS


def test_time_series_queries_select_time_and_order_by_it_ascending():
    for panel in _dashboard()["panels"]:
        if panel["type"] not in TIME_SERIES_TYPES:
            continue
        for target in _data_targets(panel):
            sql = target["rawSql"]
            assert "$__timeGroupAlias(" in sql or re.search(r"\bAS\s+\"?time\"?", sql, re.I)
            keys = _order_by_keys(sql)
            assert keys[0] in ("time", "time asc"), (panel["title"], keys)


def test_queries_use_time_and_store_filters():
    for panel in _dashboard()["panels"]:
        sql = _sql(panel)
        tables = set(re.findall(r"\bFROM\s+(\w+)", sql, re.IGNORECASE))
        assert tables <= set(ANALYTICS_TABLES), (panel["title"], tables)
        if tables & set(PER_STORE_TABLES):
            assert "store_id IN ($store)" in sql, panel["title"]
        if panel["type"] in TIME_SERIES_TYPES:
            assert re.search(r"\$__timeFilter\((metric_date|alert_date)\)", sql), panel["title"]


def test_panel_queries_do_not_hard_code_database_names():
    dashboard = _dashboard()
    queries = [(panel["title"], _all_sql(panel)) for panel in dashboard["panels"]]
    queries += [
        (variable["name"], variable["query"])
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    queries += [
        (annotation["name"], annotation["target"]["rawSql"])
        for annotation in dashboard["annotations"]["list"]
        if "rawSql" in annotation.get("target", {})
    ]
    assert len(queries) >= len(PANEL_TYPES) + len(CHAINED) + 1
    for name, sql in queries:
        assert not re.search(r"\btest\.", sql), name
        assert "sa_grafana_dev" not in sql, name


def test_health_grid_is_state_timeline_with_status_colours():
    panel = _panels()[HEALTH_GRID]
    assert panel["type"] == "state-timeline"
    sql = _flat(_sql(panel))
    assert "FROM store_health_scores" in sql
    assert "AS metric" in sql  # one row (series) per store
    options = _mapping_options(panel["fieldConfig"]["defaults"]["mappings"])
    by_text = {}
    for key, result in options.items():
        by_text.setdefault(result["text"], set()).add((key, result["color"]))
    for status, color in HEALTH_STATUS_COLORS.items():
        assert status in by_text, status
        assert {c for _, c in by_text[status]} == {color}, status
        # The query sends the status as a numeric code: each code it can send is mapped.
        code = re.search(rf"WHEN '{status}' THEN (\d)", sql)
        code_key = code.group(1) if code else re.search(r"ELSE (\d)", sql).group(1)
        assert options[code_key]["text"] == status


def test_health_grid_groups_stores_by_district():
    """Rows are 'Region / District · Store (id)', sorted by that name: districts together.

    The place is the store's latest health row's (as in the District variable), so a store
    keeps one row even if its district changed inside the time range.
    """
    panel = _panels()[HEALTH_GRID]
    sql = _flat(_sql(panel))
    assert "district" in panel["title"].lower()
    assert "CONCAT(d.place, ' \u00b7 '," in sql
    assert "COALESCE(h.district, '(no district)')" in sql
    assert "COALESCE(h.region, '(no region)')" in sql
    assert "MAX(metric_date) AS metric_date FROM store_health_scores GROUP BY store_id" in sql
    assert _order_by_keys(sql) == ["time", "metric"]


def test_health_trend_is_one_series_per_store():
    panel = _panels()[HEALTH_TREND]
    sql = _flat(_sql(panel))
    assert "health_score AS value" in sql and "AS metric" in sql
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["min"] == 0 and defaults["max"] == 100


def test_control_chart_selects_value_centre_line_and_limits():
    panel = _panels()[CONTROL_CHART]
    sql = _flat(_sql(panel))
    for column in ("metric_value", "cl", "ucl_2s", "lcl_2s", "ucl_3s", "lcl_3s"):
        assert re.search(rf"[\s,]{column}\s*,", sql), column
    assert "FROM store_anomaly_scores" in sql
    assert "metric_name = '$metric'" in sql
    assert re.search(r"CASE WHEN severity IS NOT NULL THEN metric_value END AS flagged", sql)
    # Draw style and point size cannot be set per series under the dashboard schema (their
    # override values are not objects): every series shows its points, and the flagged
    # series (null except on flagged days, drawn last) is red over the blue value series.
    custom = panel["fieldConfig"]["defaults"]["custom"]
    assert custom["drawStyle"] == "line" and custom["showPoints"] == "always"
    assert custom["pointSize"] >= 5 and custom["spanNulls"] is False
    assert _override(panel, "flagged")["color"] == {"mode": "fixed", "fixedColor": "red"}
    assert _override(panel, "metric_value")["color"]["fixedColor"] == "blue"
    renames = _renames(panel)
    assert renames["cl"] == "CL"
    for limit in ("ucl_2s", "lcl_2s", "ucl_3s", "lcl_3s"):
        assert _override(panel, limit)["custom.lineStyle"]["fill"] == "dash", limit
        # Overrides match on the shown name: list the renamed name too.
        assert _override(panel, renames[limit]) == _override(panel, limit), limit
    assert panel.get("repeat") == "store"  # a control chart is per store
    assert "$metric" in panel["title"]


def test_control_chart_fills_the_bands_between_2_and_3_sigma():
    """UCL 3σ fills down to UCL 2σ and LCL 2σ down to LCL 3σ: the two warning zones.

    fillBelowTo names the target by its shown name (after the organize rename); no other
    series fills, so the value and the centre line stay plain lines.
    """
    panel = _panels()[CONTROL_CHART]
    renames = _renames(panel)
    assert panel["fieldConfig"]["defaults"]["custom"]["fillOpacity"] == 0
    assert "custom.fillBelowTo" not in panel["fieldConfig"]["defaults"]["custom"]
    bands = {"ucl_3s": "ucl_2s", "lcl_2s": "lcl_3s"}
    filled = {}
    for override in panel["fieldConfig"]["overrides"]:
        props = {p["id"]: p.get("value") for p in override["properties"]}
        if "custom.fillBelowTo" in props:
            names = override["matcher"]["options"]["names"]
            assert 0 < props["custom.fillOpacity"] <= 40, names
            filled[tuple(names)] = props["custom.fillBelowTo"]
    assert len(filled) == len(bands)
    for upper, lower in bands.items():
        assert filled[(upper, renames[upper])] == renames[lower], upper
    # The band edges keep the limits' colours (2σ orange, 3σ red): the fill takes the upper one.
    assert _override(panel, "ucl_3s")["color"] == _override(panel, "lcl_3s")["color"]
    assert _override(panel, "lcl_2s")["color"] == _override(panel, "ucl_2s")["color"]


def test_control_chart_unit_follows_the_metric():
    """The UNIT query maps $metric to a Grafana unit; configFromData applies it to the series."""
    panel = _panels()[CONTROL_CHART]
    (config,) = [t for t in panel["transformations"] if t["id"] == "configFromData"]
    assert panel["transformations"][0] == config  # before the renames
    options = config["options"]
    assert options["mappings"] == [{"fieldName": "unit", "handlerKey": "unit"}]
    assert options["applyTo"] == {"id": "byType", "options": "number"}
    (target,) = [t for t in panel["targets"] if t["refId"] == options["configRefId"]]
    sql = _flat(target["rawSql"])
    assert sql.startswith("SELECT CASE '$metric'") and sql.endswith("ELSE 'none' END AS unit")
    for metric, unit in METRIC_UNITS.items():
        assert f"WHEN '{metric}' THEN '{unit}'" in sql, metric
    assert panel["fieldConfig"]["defaults"]["unit"] == "none"


def test_open_alerts_table_uses_the_guides_order_and_colours():
    panel = _panels()[OPEN_ALERTS]
    sql = _flat(_sql(panel))
    assert "FROM store_anomaly_alerts" in sql
    assert "acknowledged = FALSE" in sql
    assert sql.endswith("ORDER BY FIELD(severity, 'CRITICAL', 'WARNING', 'INFO'), alert_date DESC")
    for column in (
        "store_name",
        "alert_date",
        "severity",
        "metric_name",
        "impact_usd",
        "description_en",
        "recommended_action",
    ):
        assert re.search(rf"\b{column}\b", sql), column
    severity = _override(panel, "severity")
    assert severity["custom.cellOptions"]["type"] in ("color-background", "color-text")
    # The severity value mapping sits in the defaults (it only matches severity texts); the
    # other cells keep the default "auto" cell type, so only severity cells are coloured.
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["cellOptions"]["type"] == "auto"
    colours = {k: v["color"] for k, v in _mapping_options(defaults["mappings"]).items()}
    assert colours == {"CRITICAL": "red", "WARNING": "orange", "INFO": "blue"}
    assert _renames(panel)["impact_usd"] == "impact (USD)"
    assert defaults["decimals"] == 2
    assert panel["options"]["footer"]["show"] is True
    assert "impact_usd" in panel["options"]["footer"]["fields"]


def test_alerts_per_day_are_stacked_bars_by_severity():
    panel = _panels()[ALERTS_PER_DAY]
    sql = _flat(_sql(panel))
    assert "severity AS metric" in sql and "COUNT(*) AS value" in sql
    custom = panel["fieldConfig"]["defaults"]["custom"]
    assert custom["drawStyle"] == "bars"
    assert custom["stacking"]["mode"] == "normal"
    for severity, colour in (("CRITICAL", "red"), ("WARNING", "orange"), ("INFO", "blue")):
        assert _override(panel, severity)["color"]["fixedColor"] == colour


def test_pipeline_panels_show_latest_run_and_recent_failures():
    latest = _flat(_sql(_panels()[LATEST_RUN]))
    assert "FROM store_anomaly_pipeline_log" in latest
    assert re.search(r"WHERE run_id = \( SELECT run_id FROM store_anomaly_pipeline_log", latest)
    assert _order_by_keys(latest)[0] == "step_number"
    failed = _flat(_sql(_panels()[FAILED_STEPS]))
    assert "status = 'FAILED'" in failed
    assert "run_date >= DATE_SUB(CURDATE(), INTERVAL 7 DAY)" in failed
    for panel_id in (LATEST_RUN, FAILED_STEPS):
        panel = _panels()[panel_id]
        status = _override(panel, "status")
        assert status["custom.cellOptions"]["type"] == "color-background"
        mapping = _mapping_options(panel["fieldConfig"]["defaults"]["mappings"])
        assert {k: v["color"] for k, v in mapping.items()} == {
            "SUCCESS": "green",
            "FAILED": "red",
            "SKIPPED": "#8e8e8e",
        }


def test_freshness_panel_is_the_guides_query():
    sql = _flat(_sql(_panels()[FRESHNESS]))
    guide_select = (
        "SELECT store_id, store_name, MAX(metric_date) as latest_date, "
        "DATEDIFF(CURDATE(), MAX(metric_date)) as days_stale FROM store_kpi_daily"
    )
    assert sql.startswith(guide_select)
    assert sql.endswith("GROUP BY store_id, store_name ORDER BY latest_date")
    panel = _panels()[FRESHNESS]
    days_stale = _override(panel, "days_stale")
    assert days_stale["custom.cellOptions"]["type"] == "color-background"
    assert days_stale["color"] == {"mode": "thresholds"}
    steps = days_stale["thresholds"]["steps"]
    assert [(s["value"], s["color"]) for s in steps[1:]] == [(2, "orange"), (3, "red")]


def _threshold_configs(panel: dict[str, Any]) -> Iterator[dict[str, Any]]:
    field_config = panel["fieldConfig"]
    if "thresholds" in field_config["defaults"]:
        yield field_config["defaults"]["thresholds"]
    for override in field_config["overrides"]:
        for prop in override["properties"]:
            if prop["id"] == "thresholds":
                yield prop["value"]


def test_field_config_fits_the_dashboard_schema_shapes():
    """Shapes the Grafana 11.6 dashboard JSON schema requires of field configs.

    Overrides: matcher options and property values are objects (so ``byName`` with a string,
    ``unit``, ``decimals``, ``displayName``, ``mappings`` or ``custom.width`` overrides are
    out); thresholds: every step value is a number (Grafana itself saves the base step's
    -Infinity as null, and treats the first step as -Infinity whatever its value).
    """
    for panel in _dashboard()["panels"]:
        title = panel["title"]
        field_config = panel["fieldConfig"]
        assert set(field_config) == {"defaults", "overrides"}, title
        assert isinstance(field_config["overrides"], list), title
        for override in field_config["overrides"]:
            assert set(override) == {"matcher", "properties"}, title
            matcher = override["matcher"]
            assert isinstance(matcher["id"], str), title
            assert isinstance(matcher.get("options", {}), dict), (title, matcher)
            for prop in override["properties"]:
                assert isinstance(prop["id"], str), title
                # Grafana's scalar-valued properties are the only exceptions (docs/grafana.md).
                expected = SCALAR_OVERRIDES.get(prop["id"], dict)
                assert isinstance(prop.get("value", expected()), expected), (title, prop)
                assert not isinstance(prop.get("value"), bool) or expected is bool, prop
        configs = list(_threshold_configs(panel))
        assert configs, title
        for thresholds in configs:
            values = [step["value"] for step in thresholds["steps"]]
            assert values, title
            assert all(_is_number(v) for v in values), (title, values)
            assert values == sorted(values), (title, values)
        for transformation in panel.get("transformations", []):
            assert isinstance(transformation["id"], str), title
            assert isinstance(transformation["options"], dict), title


DASHBOARD_LINK_KEYS = {
    "title", "type", "icon", "tooltip", "url", "tags", "asDropdown", "targetBlank",
    "includeVars", "keepTime",
}  # fmt: skip


def _links(panel_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The row's (control chart link, incident page link) of a table panel."""
    links = _panels()[panel_id]["fieldConfig"]["defaults"]["links"]
    assert len(links) == 2
    chart = [x for x in links if x["url"].startswith(DASHBOARD_URL + "?")]
    ack = [x for x in links if x["url"].startswith("${ack_base_url}/incidents/")]
    assert len(chart) == 1 and len(ack) == 1, links
    return chart[0], ack[0]


def _render_link(url: str, row: dict[str, Any], ack_base_url: str = ACK_BASE_URL) -> str:
    """The URL Grafana builds for one table row (``${__data.fields.x}`` is the row's x)."""

    def field(match: re.Match[str]) -> str:
        value = row[match.group(1)]
        assert value is not None, match.group(1)
        return str(value)

    url = re.sub(r"\$\{__data\.fields\.(\w+)\}", field, url)
    url = url.replace("${ack_base_url}", ack_base_url)
    assert "$" not in url.replace("%24__all", ""), url
    return url


@pytest.mark.parametrize(
    ("panel_id", "metric_field", "id_field", "date_fields"),
    [
        (OPEN_INCIDENTS, "primary_metric", "id", ("first_date", "last_date")),
        (OPEN_ALERTS, "metric_name", "incident_id", ("alert_date", "alert_date")),
    ],
)
def test_table_rows_link_to_the_control_chart_and_the_incident_page(
    panel_id, metric_field, id_field, date_fields
):
    """Each row: this dashboard on the row's store and metric, 30 days before to 7 after,
    and the acknowledgment app's read-only incident page. The epoch-ms window columns are
    computed in SQL and hidden (not excluded: data links read them from the row)."""
    panel = _panels()[panel_id]
    sql = _flat(_sql(panel))
    first, last = date_fields
    assert f"UNIX_TIMESTAMP(DATE_SUB({first}, INTERVAL 30 DAY)) * 1000 AS chart_from" in sql
    assert f"UNIX_TIMESTAMP(DATE_ADD({last}, INTERVAL 8 DAY)) * 1000 AS chart_to" in sql
    assert re.search(rf"\b{id_field}\b", sql) and re.search(rf"\b{metric_field}\b", sql)
    assert _override(panel, "chart_from")["custom.hidden"] is True
    assert _override(panel, "chart_to")["custom.hidden"] is True
    for transformation in panel.get("transformations", []):
        excluded = transformation["options"].get("excludeByName", {})
        assert not {"chart_from", "chart_to", "store_id", id_field} & set(excluded)
    chart, ack = _links(panel_id)
    for link in (chart, ack):
        # Field links follow the schema's DashboardLink shape (Grafana reads title/url/targetBlank).
        assert set(link) == DASHBOARD_LINK_KEYS, link
        assert link["type"] == "link" and link["tags"] == []
        assert link["title"] and link["tooltip"]
    query = dict(part.split("=", 1) for part in chart["url"].split("?", 1)[1].split("&"))
    assert query == {
        "var-region": "%24__all",
        "var-district": "%24__all",
        "var-store": "${__data.fields.store_id}",
        "var-metric": "${__data.fields." + metric_field + "}",
        "from": "${__data.fields.chart_from}",
        "to": "${__data.fields.chart_to}",
        "viewPanel": str(CONTROL_CHART),  # scenes and the old architecture both take the id
    }
    assert chart["targetBlank"] is False
    assert ack["url"] == "${ack_base_url}/incidents/${__data.fields." + id_field + "}"
    assert ack["targetBlank"] is True
    # The dashboard URL is this dashboard's.
    assert DASHBOARD_URL.split("/")[2] == _dashboard()["uid"]


def test_open_incidents_table_lists_unacknowledged_incidents():
    panel = _panels()[OPEN_INCIDENTS]
    sql = _flat(_sql(panel))
    assert "FROM store_anomaly_incidents" in sql
    assert "status <> 'ACKNOWLEDGED'" in sql and "acknowledged_at IS NULL" in sql
    assert sql.endswith(
        "ORDER BY FIELD(severity, 'CRITICAL', 'WARNING', 'INFO'), last_date DESC, id DESC"
    )
    for column in ("store_name", "district", "region", "status", "severity", "first_date",
                   "last_date", "primary_metric", "alert_count", "impact_usd",
                   "description_en"):  # fmt: skip
        assert re.search(rf"\b{column}\b", sql), column
    defaults = panel["fieldConfig"]["defaults"]
    colours = {k: v["color"] for k, v in _mapping_options(defaults["mappings"]).items()}
    assert colours == {"CRITICAL": "red", "WARNING": "orange", "INFO": "blue"}
    assert _override(panel, "severity")["custom.cellOptions"]["type"] == "color-background"
    assert "impact_usd" in panel["options"]["footer"]["fields"]
    # Above the alerts: incidents first, their alerts below.
    assert panel["gridPos"]["y"] < _panels()[OPEN_ALERTS]["gridPos"]["y"]


def _unit(panel: dict[str, Any], field: str) -> str:
    """The field's unit: from a config query applied to it by name, else the default.

    A unit override would be a string value, which the dashboard schema does not allow, so
    per-field units come from "Config from query results" (configFromData) transformations
    whose config query is ``SELECT '<unit>' AS unit``.
    """
    for transformation in panel.get("transformations", []):
        options = transformation["options"]
        if transformation["id"] != "configFromData":
            continue
        assert options["mappings"] == [{"fieldName": "unit", "handlerKey": "unit"}]
        if options["applyTo"] == {"id": "byName", "options": field}:
            (target,) = [t for t in panel["targets"] if t["refId"] == options["configRefId"]]
            unit = re.fullmatch(r"SELECT '(\w+)' AS unit", _flat(target["rawSql"]))
            assert unit, target["rawSql"]
            return unit.group(1)
    return panel["fieldConfig"]["defaults"].get("unit", "")


def test_units_are_set_where_they_apply():
    """currencyUSD for money, s for seconds, none for counts, scores and z-scores."""
    panels = _panels()
    for panel_id in (OPEN_ALERTS, OPEN_INCIDENTS):
        panel = panels[panel_id]
        assert _unit(panel, "impact_usd") == "currencyUSD", panel["title"]
        # Applied before the renames, so by the query's column name.
        assert panel["transformations"][0]["id"] == "configFromData", panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"] == "none", panel["title"]
    assert _unit(panels[OPEN_ALERTS], "z_score") == "none"
    assert _unit(panels[OPEN_INCIDENTS], "alert_count") == "none"
    # metric_value / expected_value change unit row by row (the alert's metric): none.
    assert _unit(panels[OPEN_ALERTS], "metric_value") == "none"
    latest = panels[LATEST_RUN]
    assert _unit(latest, "duration_seconds") == "s"
    assert latest["transformations"][0]["id"] == "configFromData"
    assert _unit(panels[FAILED_STEPS], "duration_seconds") == "s"
    assert panels[ALERTS_PER_DAY]["fieldConfig"]["defaults"]["unit"] == "none"
    assert panels[HEALTH_TREND]["fieldConfig"]["defaults"]["unit"] == "none"  # a 0-100 score
    assert set(METRIC_UNITS) <= set(METRICS)


def test_incident_annotations_mark_each_incident_span():
    """An annotation query over store_anomaly_incidents for the selected stores:
    time = first_date, timeend = the day after last_date (the span covers the last day)."""
    annotation = _annotation("Incidents")
    assert annotation["datasource"] == DS_REF
    assert annotation["enable"] is True and annotation["hide"] is False
    assert annotation["iconColor"]
    target = annotation["target"]
    assert target["rawQuery"] is True and target["editorMode"] == "code"
    # The keys the schema's AnnotationTarget requires (Grafana's own; the SQL query ignores
    # them). rawSql and the other query keys go beyond that schema: see docs/grafana.md.
    assert {k: target[k] for k in ("limit", "matchAny", "tags", "type")} == {
        "limit": 100,
        "matchAny": False,
        "tags": [],
        "type": "dashboard",
    }
    assert target["format"] == "table" and target["refId"]
    sql = _flat(target["rawSql"])
    assert "FROM store_anomaly_incidents" in sql
    assert "UNIX_TIMESTAMP(first_date) AS time" in sql
    assert "UNIX_TIMESTAMP(DATE_ADD(last_date, INTERVAL 1 DAY)) AS timeend" in sql
    assert "store_id IN ($store)" in sql
    assert "first_date < $__timeTo()" in sql
    assert "DATE_ADD(last_date, INTERVAL 1 DAY) > $__timeFrom()" in sql
    text = re.search(r"CONCAT\((.*)\) AS text", sql).group(1)
    for column in ("severity", "store_name", "store_id", "primary_metric", "description_en"):
        assert column in text, column
    assert re.search(r"AS tags\b", sql)
    assert _order_by_keys(sql)[0] == "time"
    # The built-in annotations stay.
    assert _annotation("Annotations & Alerts")["builtIn"] == 1


def test_acknowledgment_guidance_points_to_the_incident_page():
    dashboard = _dashboard()
    texts = [dashboard["description"]] + [p["description"] for p in dashboard["panels"]]
    texts += [v.get("description", "") for v in dashboard["templating"]["list"]]
    for text in texts:
        assert not re.search(r"\bUPDATE\b", text), text
    for panel_id in (OPEN_ALERTS, OPEN_INCIDENTS):
        description = _panels()[panel_id]["description"]
        assert "${ack_base_url}/incidents/<" in description
        assert "e-mail" in description


def test_data_quality_panel_follows_the_store_filter():
    """Region and District narrow $store, so the panel follows them; chain-wide rows stay."""
    panel = _panels()[DATA_QUALITY]
    sql = _flat(_sql(panel))
    assert "(store_id IN ($store) OR store_id IS NULL)" in sql
    assert "District" in panel["description"]


# ---------------------------------------------------------------- provisioning and grants


def test_datasource_provisioning_reads_credentials_from_the_environment():
    config = _yaml(DATASOURCE_YAML)
    assert config["apiVersion"] == 1
    (datasource,) = config["datasources"]
    assert datasource["type"] == "mysql"
    assert datasource["uid"] == DS_UID == _variable("DS_MYSQL")["current"]["value"]
    assert datasource["jsonData"]["database"] == "test"
    assert datasource["jsonData"]["timezone"] == "+00:00"
    env_ref = re.compile(r"^\$\{?[A-Z][A-Z0-9_]*\}?$")
    assert env_ref.match(datasource["url"])
    assert env_ref.match(datasource["user"])
    assert env_ref.match(datasource["secureJsonData"]["password"])
    assert "password" not in datasource and "password" not in datasource["jsonData"]
    assert "grafana_ro" in DATASOURCE_YAML.read_text(encoding="utf-8")


def test_dashboard_provider_puts_the_dashboard_in_ai_analytics():
    config = _yaml(PROVIDER_YAML)
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "AI Analytics"
    assert provider["options"]["path"]


def test_readonly_user_gets_select_on_exactly_the_analytics_tables():
    text = READONLY_SQL.read_text(encoding="utf-8")
    statements = [_flat(s) for s in re.sub(r"--[^\n]*", "", text).split(";") if s.strip()]
    create = [s for s in statements if s.upper().startswith("CREATE USER")]
    assert len(create) == 1
    assert create[0].startswith("CREATE USER IF NOT EXISTS 'grafana_ro'@")
    password = re.search(r"IDENTIFIED BY '([^']*)'", create[0]).group(1)
    assert "REPLACE" in password.upper()  # a placeholder, never a real secret
    grants = [s for s in statements if s.upper().startswith("GRANT")]
    granted = set()
    for grant in grants:
        match = re.fullmatch(r"GRANT SELECT ON test\.(\w+) TO 'grafana_ro'@'[^']+'", grant)
        assert match, grant
        granted.add(match.group(1))
    assert granted == set(ANALYTICS_TABLES) and len(grants) == 7
    assert len(statements) == 8


# ------------------------------------------------------------------------ macro expansion

T_FROM = datetime(2026, 1, 16, tzinfo=UTC)  # 1768521600
T_TO = datetime(2026, 2, 15, 12, 30, 15, 900_000, tzinfo=UTC)  # 1771158615.9


def test_time_filter_expands_to_between_from_unixtime():
    assert (
        expand_macros("WHERE $__timeFilter(metric_date)", T_FROM, T_TO)
        == "WHERE metric_date BETWEEN FROM_UNIXTIME(1768521600) AND FROM_UNIXTIME(1771158615)"
    )


def test_time_from_and_to():
    sql = "a >= $__timeFrom() AND a <= $__timeTo()"
    assert (
        expand_macros(sql, T_FROM, T_TO)
        == "a >= FROM_UNIXTIME(1768521600) AND a <= FROM_UNIXTIME(1771158615)"
    )


def test_naive_datetimes_are_utc():
    naive = expand_macros("$__timeFrom()", datetime(2026, 1, 16), T_TO)
    assert naive == "FROM_UNIXTIME(1768521600)"
    new_york_winter = timezone(timedelta(hours=-5))
    local = datetime(2026, 1, 15, 19, tzinfo=new_york_winter)  # = 2026-01-16 00:00 UTC
    assert expand_macros("$__timeFrom()", local, T_TO) == "FROM_UNIXTIME(1768521600)"


def test_time_group_and_alias_match_grafana_text():
    assert (
        expand_macros("$__timeGroup(metric_date, 1d)", T_FROM, T_TO)
        == "UNIX_TIMESTAMP(metric_date) DIV 86400 * 86400"
    )
    assert (
        expand_macros("$__timeGroupAlias(metric_date, '5m')", T_FROM, T_TO)
        == 'UNIX_TIMESTAMP(metric_date) DIV 300 * 300 AS "time"'
    )
    assert (
        expand_macros('$__timeGroupAlias(ts,"1h", 0)', T_FROM, T_TO)
        == 'UNIX_TIMESTAMP(ts) DIV 3600 * 3600 AS "time"'
    )
    assert "DIV 604800 * 604800" in expand_macros("$__timeGroup(d, 1w, NULL)", T_FROM, T_TO)
    assert "DIV 90 * 90" in expand_macros("$__timeGroup(d, 1m30s, previous)", T_FROM, T_TO)


def test_unix_epoch_macros():
    assert (
        expand_macros("$__unixEpochFilter(ts)", T_FROM, T_TO)
        == "ts >= 1768521600 AND ts <= 1771158615"
    )
    assert expand_macros("$__unixEpochFrom()-$__unixEpochTo()", T_FROM, T_TO) == (
        "1768521600-1771158615"
    )
    assert expand_macros("$__unixEpochGroupAlias(ts, '1d')", T_FROM, T_TO) == (
        'ts DIV 86400 * 86400 AS "time"'
    )
    assert expand_macros("$__unixEpochNanoTo()", T_FROM, T_TO) == "1771158615900000000"
    assert expand_macros("$__timeEpoch(c)", T_FROM, T_TO) == "UNIX_TIMESTAMP(c) as time_sec"


def test_time_filter_before_1970():
    early = datetime(1969, 12, 31, 23, 0, tzinfo=UTC)
    assert expand_macros("$__timeFilter(c)", early, T_TO) == (
        "c BETWEEN DATE_ADD(FROM_UNIXTIME(0), INTERVAL -3600 SECOND) AND FROM_UNIXTIME(1771158615)"
    )


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("$__timeGroup(c)", "needs time column and interval"),
        ("$__timeGroup(c, 5x)", "error parsing interval"),
        ("$__timeGroup(c, 1d, zero)", "error parsing fill value"),
        ("$__timeFilter()", "missing time column"),
        ("$__nope(c)", "unknown macro"),
        ("SELECT user() FROM t", "not allowed"),
        ("SELECT 1, current_user", "not allowed"),
    ],
)
def test_macro_errors(sql, message):
    with pytest.raises(ValueError, match=message):
        expand_macros(sql, T_FROM, T_TO)


def test_parse_interval():
    assert parse_interval("1d") == timedelta(days=1)
    assert parse_interval("2w") == timedelta(days=14)
    assert parse_interval("1h30m") == timedelta(minutes=90)
    assert parse_interval("250ms") == timedelta(milliseconds=250)
    assert parse_interval("1.5h") == timedelta(minutes=90)
    assert timedelta(days=28) <= parse_interval("1M") <= timedelta(days=31)
    with pytest.raises(ValueError):
        parse_interval("1 day")


def test_single_value_variable_is_escaped_not_quoted():
    sql = "metric_name = '$metric' AND x = ${metric} AND y = [[metric]]"
    assert (
        interpolate_variables(sql, {"metric": "revenue"})
        == "metric_name = 'revenue' AND x = revenue AND y = revenue"
    )
    assert interpolate_variables("'$v'", {"v": "O'Hare"}) == "'O''Hare'"


def test_multi_value_variable_is_quoted_and_comma_joined():
    sql = "store_id IN ($store)"
    assert interpolate_variables(sql, {"store": ["1127"]}) == "store_id IN ('1127')"
    assert (
        interpolate_variables(sql, {"store": ["1127", "1128", "O'x"]})
        == "store_id IN ('1127','1128','O''x')"
    )
    assert interpolate_variables("IN (${store})", {"store": ["1", "2"]}) == "IN ('1','2')"
    assert interpolate_variables("IN ([[store]])", {"store": ["1", "2"]}) == "IN ('1','2')"


def test_all_expands_to_every_option():
    options = {"store": ["1127", "1128", "1129"]}
    expected = "store_id IN ('1127','1128','1129')"
    assert interpolate_variables("store_id IN ($store)", {"store": ALL}, all_values=options) == (
        expected
    )
    assert (
        interpolate_variables("store_id IN ($store)", {"store": [ALL]}, all_values=options)
        == expected
    )
    assert interpolate_variables("${store:text}", {"store": ALL}, all_values=options) == "All"
    with pytest.raises(ValueError, match="all_values"):
        interpolate_variables("$store", {"store": ALL})


def test_explicit_formats():
    values = {"store": ["1127", "O'x"], "one": "a'b"}
    assert interpolate_variables("${store:csv}", values) == "1127,O'x"
    assert interpolate_variables("${store:sqlstring}", values) == "'1127','O''x'"
    assert interpolate_variables("${store:singlequote}", values) == "'1127','O\\'x'"
    assert interpolate_variables("[[store:pipe]]", values) == "1127|O'x"
    assert interpolate_variables("${one:sqlstring}", values) == "'a''b'"
    assert interpolate_variables("${one:csv}", values) == "a'b"
    assert interpolate_variables("${store:json}", values) == '["1127","O\'x"]'
    with pytest.raises(ValueError, match="unsupported variable format"):
        interpolate_variables("${store:lucene}", values)


def test_unknown_variables_and_macros_are_left_for_the_next_stage():
    sql = "$__timeFilter(d) AND $unknown AND ${other:csv} AND $store"
    assert (
        interpolate_variables(sql, {"store": ["1"]})
        == "$__timeFilter(d) AND $unknown AND ${other:csv} AND '1'"
    )


def test_builtin_time_variables():
    assert interpolate_variables("$__from", {}, time_from=T_FROM) == "1768521600000"
    assert interpolate_variables("${__to:date}", {}, time_to=T_TO) == "2026-02-15T12:30:15.900Z"
    assert interpolate_variables("${__to:date:seconds}", {}, time_to=T_TO) == "1771158615"


def test_expand_runs_variables_before_macros():
    sql = (
        "SELECT $__timeGroupAlias(metric_date, 1d), value FROM t "
        "WHERE $__timeFilter(metric_date) AND store_id IN ($store) AND m = '$metric' "
        "ORDER BY time"
    )
    assert expand(sql, {"store": ["1127", "1128"], "metric": "aov"}, T_FROM, T_TO) == (
        'SELECT UNIX_TIMESTAMP(metric_date) DIV 86400 * 86400 AS "time", value FROM t '
        "WHERE metric_date BETWEEN FROM_UNIXTIME(1768521600) AND FROM_UNIXTIME(1771158615) "
        "AND store_id IN ('1127','1128') AND m = 'aov' ORDER BY time"
    )


# ------------------------------------------------------------------- execution on MariaDB


@contextmanager
def _grafana_connection(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection set up like Grafana's provisioned datasource, restored afterwards."""
    with engine.connect() as conn:
        saved = conn.exec_driver_sql("SELECT @@session.time_zone, @@session.sql_mode").one()
        conn.exec_driver_sql("SET SESSION time_zone = '+00:00'")
        conn.exec_driver_sql(f"SET SESSION sql_mode = '{MYSQL8_SQL_MODE}'")
        try:
            yield conn
        finally:
            conn.rollback()
            conn.exec_driver_sql(
                "SET SESSION time_zone = %s, SESSION sql_mode = %s", (saved[0], saved[1])
            )


class _Grafana:
    """Runs panel SQL the way Grafana would for one variable selection."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn
        latest = conn.exec_driver_sql("SELECT MAX(metric_date) FROM store_kpi_daily").scalar()
        assert latest is not None, "store_kpi_daily is empty: no backfilled data"
        latest = latest if isinstance(latest, date) else date.fromisoformat(str(latest))
        # "Last 30 days" ending just after the newest business day in the data.
        self.time_to = datetime.combine(latest + timedelta(days=1), time.min, tzinfo=UTC)
        self.time_from = self.time_to - timedelta(days=30)
        self.metric = _variable("metric")["current"]["value"]
        self.options: dict[str, list[str]] = {}
        self.texts: dict[str, dict[str, str]] = {}
        # Grafana loads the chained variables in order, each with its parents at "All".
        for name in CHAINED:
            self.options[name] = self.variable_options(name, {parent: ALL for parent in CHAINED})
        self.stores = self.options["store"]
        assert self.stores, "the $store variable query returned no stores"

    def variable_options(self, name: str, selection: dict[str, Any]) -> list[str]:
        """Option values of a query variable given its parents' selection (texts kept too)."""
        columns, rows = self.query(self.expand(_variable(name)["query"], selection))
        assert columns[:2] == ["__value", "__text"], name
        values = [str(r[0]) for r in rows]
        texts = [str(r[1]) for r in rows]
        assert len(texts) == len(set(texts)), f"{name} texts must be unique (Grafana dedups them)"
        assert len(values) == len(set(values)), f"{name} values must be unique"
        self.texts[name] = dict(zip(values, texts, strict=True))
        return values

    def selections(self) -> dict[str, list[str] | str]:
        return {"single": self.stores[:1], "multi": self.stores[:3], "all": ALL}

    def variables(self, store: list[str] | str, metric: str | None = None) -> dict[str, Any]:
        return {"region": ALL, "district": ALL, "store": store, "metric": metric or self.metric}

    def expand(self, sql: str, variables: dict[str, Any]) -> str:
        expanded = expand(sql, variables, self.time_from, self.time_to, all_values=self.options)
        assert not re.search(r"\$\w|\$\{|\[\[", expanded), expanded
        return expanded

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        result = self.conn.exec_driver_sql(sql)
        return list(result.keys()), [tuple(row) for row in result]

    def count(self, panel_id: int, variables: dict[str, Any]) -> int:
        return int(self.conn.exec_driver_sql(self.expand(PROBES[panel_id], variables)).scalar())


@pytest.fixture
def grafana(backfilled_analytics: sa.Engine) -> Iterator[_Grafana]:
    with _grafana_connection(backfilled_analytics) as conn:
        yield _Grafana(conn)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _check_time_series(panel_id: int, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    assert columns[0] == "time", columns
    assert len(set(columns)) == len(columns), columns
    times = [row[0] for row in rows]
    assert all(isinstance(t, int) for t in times), "time must be epoch seconds"
    assert times == sorted(times), "time must be ascending"
    if panel_id in DAILY_PANELS:
        assert all(t % 86400 == 0 for t in times), "daily buckets must be UTC midnights"
    value_columns = [c for c in columns if c not in ("time", "metric")]
    assert value_columns, "a time series needs at least one value column"
    for index, column in enumerate(columns):
        if column in value_columns:
            assert all(row[index] is None or _is_number(row[index]) for row in rows), column
    if rows:
        value_indexes = [columns.index(c) for c in value_columns]
        assert any(row[i] is not None for row in rows for i in value_indexes)
    if "metric" in columns:
        # Long format: exactly time, metric, value, so Grafana names each series by metric.
        assert len(columns) == 3, columns
        metric_index = columns.index("metric")
        keys = [(row[0], row[metric_index]) for row in rows]
        assert all(isinstance(k[1], str) and k[1] for k in keys)
        assert len(keys) == len(set(keys)), "one value per series and time"
    else:
        assert len(times) == len(set(times)), "one row per time in wide format"


def _check_table(
    panel_id: int, columns: list[str], rows: list[tuple[Any, ...]], stores: list[str]
) -> None:
    assert columns and len(set(columns)) == len(columns), columns
    record = [dict(zip(columns, row, strict=True)) for row in rows]
    if panel_id == OPEN_ALERTS:
        rank = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}
        keys = [(rank[r["severity"]], -r["alert_date"].toordinal()) for r in record]
        assert keys == sorted(keys), "CRITICAL, WARNING, INFO; newest first"
        assert {str(r["store_id"]) for r in record} <= set(stores)
        assert "impact_usd" in columns
    elif panel_id == LATEST_RUN:
        assert len({r["run_id"] for r in record}) <= 1
        steps = [r["step_number"] for r in record]
        assert steps == sorted(steps)
    elif panel_id == FAILED_STEPS:
        assert all(r["status"] == "FAILED" for r in record)
    elif panel_id == FRESHNESS:
        assert columns == ["store_id", "store_name", "latest_date", "days_stale"]
        dates = [r["latest_date"] for r in record]
        assert dates == sorted(dates)
        assert {str(r["store_id"]) for r in record} <= set(stores)
    elif panel_id == DATA_QUALITY:
        assert columns[:5] == ["metric_date", "source", "check_name", "errors", "warnings"]
        dates = [r["metric_date"] for r in record]
        assert dates == sorted(dates, reverse=True)
    elif panel_id == OPEN_INCIDENTS:
        rank = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}
        keys = [(rank[r["severity"]], -r["last_date"].toordinal(), -r["id"]) for r in record]
        assert keys == sorted(keys), "CRITICAL, WARNING, INFO; newest first"
        assert {str(r["store_id"]) for r in record} <= set(stores)
        assert all(r["status"] in ("OPEN", "RESOLVED") for r in record)
        assert "impact_usd" in columns
    if panel_id in (OPEN_ALERTS, OPEN_INCIDENTS):
        for r in record:
            assert _is_number(r["chart_from"]) and _is_number(r["chart_to"])
            assert r["chart_from"] % 86_400_000 == 0 and r["chart_to"] > r["chart_from"]


@pytest.mark.parametrize("selection", ["single", "multi", "all"])
@pytest.mark.parametrize("panel_id", sorted(PANEL_TYPES))
def test_panel_sql_runs_on_mariadb(grafana, panel_id, selection):
    panel = _panels()[panel_id]
    chosen = grafana.selections()[selection]
    chosen_stores = grafana.stores if chosen == ALL else list(chosen)
    if panel.get("repeat") == "store":
        # A repeated panel gets one store per copy (still quoted: the variable is multi).
        runs = [grafana.variables([store]) for store in chosen_stores]
    else:
        runs = [grafana.variables(chosen)]
    for variables in runs:
        for target in panel["targets"]:
            columns, rows = grafana.query(grafana.expand(target["rawSql"], variables))
            if target["refId"] in _config_ref_ids(panel):
                assert columns == ["unit"] and len(rows) == 1, panel["title"]
                continue
            if panel["type"] in TIME_SERIES_TYPES:
                _check_time_series(panel_id, columns, rows)
            else:
                _check_table(panel_id, columns, rows, chosen_stores)
            if grafana.count(panel_id, variables) > 0:
                assert rows, f"{panel['title']}: data exists but the panel query returned none"


def test_control_chart_runs_for_every_metric(grafana):
    panel = _panels()[CONTROL_CHART]
    store = grafana.stores[:1]
    for metric in METRICS:
        variables = grafana.variables(store, metric)
        columns, rows = grafana.query(grafana.expand(_sql(panel), variables))
        _check_time_series(CONTROL_CHART, columns, rows)
        assert columns[1:] == [
            "metric_value",
            "cl",
            "ucl_2s",
            "lcl_2s",
            "ucl_3s",
            "lcl_3s",
            "flagged",
        ]
        if grafana.count(CONTROL_CHART, variables) > 0:
            assert rows, metric
        (unit_target,) = [t for t in panel["targets"] if t["refId"] in _config_ref_ids(panel)]
        unit = grafana.query(grafana.expand(unit_target["rawSql"], variables))[1]
        assert unit == [(METRIC_UNITS.get(metric, "none"),)], metric


def test_health_grid_codes_are_all_mapped(grafana):
    panel = _panels()[HEALTH_GRID]
    columns, rows = grafana.query(grafana.expand(_sql(panel), grafana.variables(ALL)))
    codes = {str(row[columns.index("value")]) for row in rows}
    assert codes <= set(_mapping_options(panel["fieldConfig"]["defaults"]["mappings"]))


def test_backfilled_data_feeds_the_main_panels(grafana):
    everything = grafana.variables(ALL)
    for panel_id in (HEALTH_GRID, HEALTH_TREND, CONTROL_CHART, FRESHNESS, LATEST_RUN):
        assert grafana.count(panel_id, everything) > 0, _panels()[panel_id]["title"]


def _places(grafana: _Grafana) -> dict[str, tuple[str | None, str | None]]:
    """store_id -> (region, district) of the store's latest health row (None: no row)."""
    rows = grafana.query(
        "SELECT k.store_id, h.region, h.district FROM "
        "(SELECT DISTINCT store_id FROM store_kpi_daily) k "
        "LEFT JOIN (SELECT store_id, MAX(metric_date) AS d FROM store_health_scores "
        "GROUP BY store_id) l ON l.store_id = k.store_id "
        "LEFT JOIN store_health_scores h ON h.store_id = l.store_id AND h.metric_date = l.d"
    )[1]
    return {str(store): (region, district) for store, region, district in rows}


def _district_key(region: str | None, district: str | None) -> str:
    return f"{region or NO_PLACE} / {district or NO_PLACE}"


def test_chained_variables_narrow_districts_and_stores(grafana):
    places = _places(grafana)
    assert set(grafana.stores) == set(places), "All lists every store in store_kpi_daily"
    assert set(grafana.options["region"]) == {r or NO_PLACE for r, _ in places.values()}
    assert set(grafana.options["district"]) == {_district_key(*p) for p in places.values()}
    # The synthetic chain repeats district names across regions: the key tells them apart.
    assert len({d for _, d in places.values()}) < len(grafana.options["district"])
    for region in grafana.options["region"]:
        districts = grafana.variable_options("district", {"region": [region]})
        assert districts and all(d.startswith(f"{region} / ") for d in districts), region
    for district in grafana.options["district"]:
        stores = grafana.variable_options("store", {"district": [district]})
        expected = {s for s, p in places.items() if _district_key(*p) == district}
        assert set(stores) == expected, district
    # Several regions: their districts together; a district picked from another region's list
    # (stale after the region changed) simply selects nothing.
    two = grafana.options["region"][:2]
    districts = grafana.variable_options("district", {"region": two})
    assert {d.split(" / ")[0] for d in districts} == set(two)
    assert grafana.variable_options("store", {"district": ["Nowhere / Nothing"]}) == []


def test_stores_without_district_or_region_stay_selectable_under_all(grafana):
    """NULL district / region (and no health row at all) become the '(none)' key, an option
    like any other, so All still expands to every store. Changes are rolled back."""
    no_district, no_place, no_health = grafana.stores[:3]
    grafana.conn.exec_driver_sql(
        "UPDATE store_health_scores SET district = NULL WHERE store_id = %s", (no_district,)
    )
    grafana.conn.exec_driver_sql(
        "UPDATE store_health_scores SET district = NULL, region = NULL WHERE store_id = %s",
        (no_place,),
    )
    grafana.conn.exec_driver_sql(
        "DELETE FROM store_health_scores WHERE store_id = %s", (no_health,)
    )
    assert grafana.conn.in_transaction()  # rolled back by _grafana_connection
    regions = grafana.variable_options("region", {})
    assert NO_PLACE in regions and grafana.texts["region"][NO_PLACE] == "(no region)"
    districts = grafana.variable_options("district", {"region": regions})
    stores = grafana.variable_options("store", {"district": districts})
    assert set(stores) == set(grafana.stores)
    none_key = f"{NO_PLACE} / {NO_PLACE}"
    assert grafana.texts["district"][none_key] == "(no region) / (no district)"
    assert set(grafana.variable_options("store", {"district": [none_key]})) == {
        no_place,
        no_health,
    }
    region = _places(grafana)[no_district][0]
    assert region is not None
    assert no_district in grafana.variable_options(
        "store", {"district": [f"{region} / {NO_PLACE}"]}
    )
    # The health grid shows them too, under '(no region) / (no district)'.
    grafana.options.update(region=regions, district=districts, store=stores)
    columns, rows = grafana.query(
        grafana.expand(_sql(_panels()[HEALTH_GRID]), grafana.variables(ALL))
    )
    names = {row[columns.index("metric")] for row in rows}
    assert any(n.startswith("(no region) / (no district) \u00b7 ") and f"({no_place})" in n
               for n in names)  # fmt: skip


def test_health_grid_rows_are_sorted_by_district(grafana):
    panel = _panels()[HEALTH_GRID]
    _, rows = grafana.query(grafana.expand(_sql(panel), grafana.variables(ALL)))
    places = _places(grafana)
    first_day = min(row[0] for row in rows)
    names = [row[1] for row in rows if row[0] == first_day]
    assert names == sorted(names)
    by_store = {}
    for name in {row[1] for row in rows}:
        store = re.search(r"\((\d+)\)$", name).group(1)
        assert store not in by_store, f"one row per store: {name!r}, {by_store.get(store)!r}"
        by_store[store] = name
        region, district = places[store]
        assert name.startswith(f"{region} / {district} \u00b7 "), name


@pytest.mark.parametrize("panel_id", [OPEN_INCIDENTS, OPEN_ALERTS])
def test_row_links_resolve_to_a_window_around_the_date(grafana, panel_id):
    panel = _panels()[panel_id]
    columns, rows = grafana.query(grafana.expand(_sql(panel), grafana.variables(ALL)))
    assert rows, panel["title"]
    chart, ack = _links(panel_id)
    first, last = (
        ("first_date", "last_date") if panel_id == OPEN_INCIDENTS else ("alert_date", "alert_date")
    )
    id_field = "id" if panel_id == OPEN_INCIDENTS else "incident_id"
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        start = datetime.combine(record[first] - timedelta(days=30), time.min, tzinfo=UTC)
        end = datetime.combine(record[last] + timedelta(days=8), time.min, tzinfo=UTC)
        assert record["chart_from"] == int(start.timestamp()) * 1000
        assert record["chart_to"] == int(end.timestamp()) * 1000
        url = _render_link(chart["url"], record)
        query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
        assert query["var-store"] == str(record["store_id"])
        assert query["var-metric"] in METRICS
        assert int(query["from"]) < int(query["to"])
        if record[id_field] is not None:
            assert _render_link(ack["url"], record) == (
                f"{ACK_BASE_URL}/incidents/{record[id_field]}"
            )
    if panel_id == OPEN_ALERTS:
        # Every open alert belongs to an incident, so its incident link works.
        assert all(dict(zip(columns, r, strict=True))["incident_id"] for r in rows)


@pytest.mark.parametrize("selection", ["single", "multi", "all"])
def test_incident_annotation_query_runs_on_mariadb(grafana, selection):
    chosen = grafana.selections()[selection]
    chosen_stores = grafana.stores if chosen == ALL else list(chosen)
    sql = grafana.expand(_annotation("Incidents")["target"]["rawSql"], grafana.variables(chosen))
    columns, rows = grafana.query(sql)
    assert columns == ["time", "timeend", "text", "tags"]
    start, end = grafana.time_from.timestamp(), grafana.time_to.timestamp()
    times = [row[0] for row in rows]
    assert times == sorted(times)
    for time_, time_end, text, tags in rows:
        assert isinstance(time_, int) and isinstance(time_end, int)
        assert time_ % 86400 == 0 and time_end % 86400 == 0 and time_end > time_
        assert time_ < end and time_end > start  # overlaps the range
        assert text.split(" ")[0] in ("CRITICAL", "WARNING", "INFO")
        assert re.search(r"\((\d+)\)", text).group(1) in chosen_stores
        assert tags.split(",")[0] == text.split(" ")[0]
    spans = grafana.query(
        grafana.expand(
            "SELECT first_date, last_date FROM store_anomaly_incidents WHERE store_id IN ($store)",
            grafana.variables(chosen),
        )
    )[1]
    day = timedelta(days=1)
    expected = [
        (first, last) for first, last in spans
        if datetime.combine(first, time.min, tzinfo=UTC) < grafana.time_to
        and datetime.combine(last + day, time.min, tzinfo=UTC) > grafana.time_from
    ]  # fmt: skip
    assert len(rows) == len(expected)
    if selection == "all":
        assert rows, "the synthetic chain has incidents in the last 30 days"
