"""Tests for the Grafana part: dashboard JSON, provisioning, read-only user, macro expansion.

Three groups:
- structural checks of dashboards/store_anomaly_dashboard.json and the provisioning files;
- unit tests of grafana_macros (Grafana 11 MySQL macro and template-variable expansion);
- execution: every panel query, expanded for one store, several stores and All, runs on
  MariaDB against the analytics tables of the ``backfilled_analytics`` fixture (a SQLAlchemy
  engine), in a session set up like Grafana's (time zone +00:00) and with MySQL 8's default
  sql_mode (ONLY_FULL_GROUP_BY and strict), and returns what its panel type needs.
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


def _sql(panel: dict[str, Any]) -> str:
    return "\n".join(t["rawSql"] for t in panel["targets"])


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
        for target in panel["targets"]:
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
    for panel in _dashboard()["panels"]:
        sql = _sql(panel)
        assert not re.search(r"\btest\.", sql), panel["title"]
        assert "sa_grafana_dev" not in sql
    assert "test." not in _variable("store")["query"]


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
                assert isinstance(prop.get("value", {}), dict), (title, prop)
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
        self.stores: list[str] = []
        store_query = self.expand(_variable("store")["query"], {})
        columns, rows = self.query(store_query)
        assert columns[:2] == ["__value", "__text"]
        texts = [r[1] for r in rows]
        assert len(texts) == len(set(texts)), "store texts must be unique (Grafana dedups them)"
        self.stores = [str(r[0]) for r in rows]
        assert self.stores, "the $store variable query returned no stores"

    def selections(self) -> dict[str, list[str] | str]:
        return {"single": self.stores[:1], "multi": self.stores[:3], "all": ALL}

    def variables(self, store: list[str] | str, metric: str | None = None) -> dict[str, Any]:
        return {"store": store, "metric": metric or self.metric}

    def expand(self, sql: str, variables: dict[str, Any]) -> str:
        expanded = expand(
            sql, variables, self.time_from, self.time_to, all_values={"store": self.stores}
        )
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


def test_health_grid_codes_are_all_mapped(grafana):
    panel = _panels()[HEALTH_GRID]
    columns, rows = grafana.query(grafana.expand(_sql(panel), grafana.variables(ALL)))
    codes = {str(row[columns.index("value")]) for row in rows}
    assert codes <= set(_mapping_options(panel["fieldConfig"]["defaults"]["mappings"]))


def test_backfilled_data_feeds_the_main_panels(grafana):
    everything = grafana.variables(ALL)
    for panel_id in (HEALTH_GRID, HEALTH_TREND, CONTROL_CHART, FRESHNESS, LATEST_RUN):
        assert grafana.count(panel_id, everything) > 0, _panels()[panel_id]["title"]


