"""The report as HTML: the self-contained page, its e-mail variant, and the files.

The markup is in templates/ (Jinja2, autoescaping on for `.html.j2`): `report.html.j2`
is the page and `_report.html.j2` its content, which is also the e-mail's HTML. This
module turns `ReportData` into what the templates show (sorted alerts, formatted values,
the SVG of charts.py) and renders them.

Styles live once, in templates/report.css. The page carries it in a <style> element and
class attributes; e-mail clients drop <style>, so the e-mail variant is rendered from
the same templates with every class attribute replaced by the style attribute of its
rules (`_Css`), no post-processing of the markup.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from markupsafe import Markup

from store_anomaly_assets.core.alerts import RULE_WORDS, WEEKDAYS, format_value, format_z
from store_anomaly_assets.core.contracts import SEVERITY_ORDER
from store_anomaly_assets.core.spc import METRICS
from store_anomaly_assets.report.charts import (
    FONT,
    NO_ROW_COLOUR,
    SEVERITY_COLOURS,
    STATUS_COLOURS,
    STATUS_WORDS,
    control_chart_svg,
    health_grid_svg,
    metric_label,
)
from store_anomaly_assets.report.data import CHART_DAYS, GRID_DAYS, ReportData, load_report_data
from store_anomaly_assets.templating import environment

_ENV = environment("store_anomaly_assets.report")


# ---------------------------------------------------------------------------------------
# Styles


@functools.cache
def stylesheet() -> str:
    """The report's CSS (templates/report.css), as the page's <style> element holds it."""
    return _ENV.get_template("report.css").render(font=FONT, severity_colours=SEVERITY_COLOURS)


def _class_rules(css: str) -> dict[str, str]:
    """The declarations of each top-level one-class rule (`.name {...}`) of `css`.

    Enough for report.css: comments are dropped and every other rule (`body`,
    `.report a:hover`, `@media` blocks) skipped; declarations come back `property:value`,
    joined by `;`, in their order.
    """
    while "/*" in css:
        head, _, rest = css.partition("/*")
        css = head + rest.partition("*/")[2]
    rules: dict[str, str] = {}
    depth, start, selector = 0, 0, ""
    for i, char in enumerate(css):
        if char == "{":
            if depth == 0:
                selector, start = css[start:i].strip(), i + 1
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                name = selector.removeprefix(".")
                if selector.startswith(".") and name.replace("-", "").isalnum():
                    pairs = (d.partition(":") for d in css[start:i].split(";"))
                    rules[name] = ";".join(f"{p.strip()}:{v.strip()}"
                                           for p, _, v in pairs if p.strip())
                start = i + 1
    return rules


STYLES: dict[str, str] = _class_rules(stylesheet())


@dataclass(frozen=True)
class _Css:
    """The templates' `css(classes, style)`: the attributes that style an element.

    For the page, `class="..."` (and the element's own `style="..."`); inlined for e-mail,
    one `style="..."` with the rules of its classes in order, its own style last so it
    still wins.
    """

    inline: bool

    def __call__(self, classes: str, style: str | None = None) -> Markup:
        if self.inline:
            rules = [STYLES[name] for name in classes.split() if name in STYLES]
            return Markup('style="{}"').format(";".join([*rules, *([style] if style else [])]))
        attributes = Markup('class="{}"').format(classes)
        if style:
            attributes += Markup(' style="{}"').format(style)
        return attributes


# ---------------------------------------------------------------------------------------
# What the templates show


@dataclass(frozen=True)
class _Tile:
    value: str
    label: str
    style: str | None = None


@dataclass(frozen=True)
class _AlertRow:
    severity: str
    sev: str  # lower case, for the class names
    store_name: str | None
    store_id: int
    anchor: str
    en: str
    zh: str
    value: str
    expected: str
    gap: str
    z: str
    rules: list[tuple[str, str | None]]  # (token, English words when known)
    scope: str
    impact: str
    status: str


@dataclass(frozen=True)
class _AlertCard:
    severity: str
    sev: str
    anchor: str
    store: str
    en: str
    zh: str
    scope: str
    impact: str | None
    description_en: str | None
    description_zh: str | None
    action_en: str | None
    action_zh: str | None
    chart: Markup
    incident_id: int | None = None
    evidence: tuple[_AlertRow, ...] = ()  # the incident's other alerts of the day


def total_impact(alerts: pl.DataFrame) -> float:
    """The day's estimated impact in USD: each store's largest alert impact, summed.

    A store's alerts of one day usually describe the same loss (low revenue, orders and
    drinks), so their impacts are not added up.
    """
    if alerts.is_empty():
        return 0.0
    per_store = alerts.group_by("store_id").agg(pl.col("impact_usd").max())
    return float(per_store.get_column("impact_usd").fill_null(0.0).sum())


def _sorted_alerts(alerts: pl.DataFrame) -> list[dict[str, Any]]:
    """Most severe first, then costliest, then by store and the metrics' order."""
    if alerts.is_empty():
        return []
    metric_rank = {m: i for i, m in enumerate(METRICS)}
    return alerts.with_columns(
        _sev=pl.col("severity").replace_strict(SEVERITY_ORDER, default=9, return_dtype=pl.Int32),
        _metric=pl.col("metric_name").replace_strict(metric_rank, default=99,
                                                     return_dtype=pl.Int32),
    ).sort(["_sev", "impact_usd", "store_id", "_metric"],
           descending=[False, True, False, False], nulls_last=True
           ).drop("_sev", "_metric").to_dicts()


def _anchor(store_id: object, metric_name: object) -> str:
    """The id of an alert's card (letters, digits, `_` and `-` only)."""
    return "alert-" + "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-"
                              for c in f"{store_id}-{metric_name}")


def _tiles(data: ReportData) -> list[_Tile]:
    day_health = data.health.filter(pl.col("metric_date") == data.day)
    counts = dict(day_health.group_by("health_status").len().iter_rows())
    tiles = [_Tile(str(day_health.height), "stores reported · 门店数")]
    for status in ("HEALTHY", "WATCH", "AT_RISK", "INSUFFICIENT_DATA"):
        if status == "INSUFFICIENT_DATA" and not counts.get(status):
            continue
        en, zh = STATUS_WORDS[status]
        tiles.append(_Tile(str(counts.get(status, 0)), f"{en} · {zh}",
                           f"color:{STATUS_COLOURS[status][0]}"))
    by_severity = dict(data.alerts.group_by("severity").len().iter_rows())
    detail = ", ".join(f"{by_severity[s]} {s.lower()}"
                       for s in SEVERITY_ORDER if by_severity.get(s))
    tiles.append(_Tile(str(data.alerts.height),
                       f"alerts · 告警{f' ({detail})' if detail else ''}",
                       f"color:{SEVERITY_COLOURS['CRITICAL']}"
                       if by_severity.get("CRITICAL") else None))
    tiles.append(_Tile(format_value(total_impact(data.alerts), "usd", 0),
                       "est. impact · 预估影响"))
    return tiles


def _legend() -> list[dict[str, str]]:
    items = [{"colour": STATUS_COLOURS[s][0], "text": f"{STATUS_WORDS[s][0]} {STATUS_WORDS[s][1]}"}
             for s in STATUS_COLOURS]
    return [*items, {"colour": NO_ROW_COLOUR, "text": "No data 无数据"}]


def _row(alert: dict[str, Any]) -> _AlertRow:
    en, zh, unit = metric_label(alert["metric_name"])
    value, expected = alert["metric_value"], alert["expected_value"]
    severity = alert["severity"] or ""
    acknowledged_by = f" by {alert['acknowledged_by']}" if alert["acknowledged_by"] else ""
    return _AlertRow(
        severity=severity,
        sev=severity.lower(),
        store_name=alert["store_name"],
        store_id=alert["store_id"],
        anchor=_anchor(alert["store_id"], alert["metric_name"]),
        en=en,
        zh=zh,
        value=format_value(value, unit),
        expected=format_value(expected, unit),
        gap=("n/a" if value is None or not expected
             else f"{(value - expected) / expected * 100:+.1f}%"),
        z=format_z(alert["z_score"]),
        rules=[(r, RULE_WORDS[r][0] if r in RULE_WORDS else None)
               for r in (alert["rules_violated"] or "").split(",") if r],
        scope=alert["scope"] or "STORE",
        impact="–" if alert["impact_usd"] is None else format_value(alert["impact_usd"], "usd"),
        status=f"acknowledged{acknowledged_by}" if alert["acknowledged"] else "open",
    )


def _incidents(alerts: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The day's alerts per incident, in the order each incident's lead alert comes."""
    groups: dict[object, list[dict[str, Any]]] = {}
    for position, alert in enumerate(alerts):
        key = alert.get("incident_id")
        groups.setdefault(("alert", position) if key is None else key, []).append(alert)
    return list(groups.values())


def _incident_card(group: list[dict[str, Any]], series: pl.DataFrame, day: date) -> _AlertCard:
    """One card per incident: its lead alert's texts and chart, the others as evidence."""
    lead = _card(group[0], series, day)
    return replace(lead, incident_id=group[0].get("incident_id"),
                   evidence=tuple(_row(a) for a in group[1:]))


def _card(alert: dict[str, Any], series: pl.DataFrame, day: date) -> _AlertCard:
    en, zh, _unit = metric_label(alert["metric_name"])
    store = f"{alert['store_name'] or ''} ({alert['store_id']})"
    severity = alert["severity"] or ""
    own = series.filter((pl.col("store_id") == alert["store_id"])
                        & (pl.col("metric_name") == alert["metric_name"]))
    return _AlertCard(
        severity=severity,
        sev=severity.lower(),
        anchor=_anchor(alert["store_id"], alert["metric_name"]),
        store=store,
        en=en,
        zh=zh,
        scope=alert["scope"] or "STORE",
        impact=None if alert["impact_usd"] is None else format_value(alert["impact_usd"], "usd"),
        description_en=alert["description_en"],
        description_zh=alert["description_zh"],
        action_en=alert["recommended_action"],
        action_zh=alert["recommended_action_zh"],
        chart=control_chart_svg(own, day, alert["metric_name"],
                                title=f"{store}: {en} / {zh}, {CHART_DAYS} days to {day}"),
    )


def _quality(findings: pl.DataFrame, day: date) -> dict[str, Any]:
    """The data-quality panel: findings per day and source, and the day's own."""
    by_day = findings.group_by("metric_date", "source").agg(
        errors=(pl.col("severity") == "ERROR").sum(),
        warnings=(pl.col("severity") == "WARN").sum(),
        stores=pl.col("store_id").drop_nulls().n_unique(),
    ).sort(["metric_date", "errors", "source"], descending=[True, True, False])
    today = findings.filter(pl.col("metric_date") == day).sort(
        "severity", "source", "store_id", nulls_last=True)
    return {"summary": by_day.to_dicts(), "today": today.to_dicts()}


def _context(data: ReportData, generated_at: datetime | None) -> dict[str, Any]:
    """The variables of `_report.html.j2`, except `css`."""
    day = data.day
    weekday_en, weekday_zh = WEEKDAYS[day.weekday()]
    alerts = _sorted_alerts(data.alerts)
    incidents = _incidents(alerts)
    card_of = {id(a): _anchor(g[0]["store_id"], g[0]["metric_name"])
               for g in incidents for a in g}
    return {
        "day": day,
        "weekday_en": weekday_en,
        "weekday_zh": weekday_zh,
        "tiles": _tiles(data),
        "legend": _legend(),
        "grid": health_grid_svg(data.health, day),
        "grid_days": GRID_DAYS,
        "rows": [replace(_row(a), anchor=card_of[id(a)]) for a in alerts],
        "cards": [_incident_card(g, data.series, day) for g in incidents],
        "chart_days": CHART_DAYS,
        "quality": _quality(data.findings, day),
        "generated": (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ---------------------------------------------------------------------------------------
# Rendering


def alert_card_html(alert: dict[str, Any], series: pl.DataFrame, day: date) -> str:
    """One alert's card (a `div.card` with class attributes): texts and control chart."""
    return _ENV.get_template("_alert_card.html.j2").render(
        card=_card(alert, series, day), css=_Css(inline=False))


def build_report_html(data: ReportData, generated_at: datetime | None = None) -> str:
    """The whole page: one HTML document with inline CSS and inline SVG."""
    return _ENV.get_template("report.html.j2").render(
        _context(data, generated_at), css=_Css(inline=False),
        stylesheet=Markup(stylesheet()),  # CSS, not text: <style> content is not unescaped
    ) + "\n"


def build_email_html(data: ReportData, generated_at: datetime | None = None) -> str:
    """The report as an HTML fragment with inline styles, for an email body.

    Email clients drop <head> and <style>; every style is inlined here. Clients that strip
    inline SVG (Gmail, Outlook desktop) show the tables and texts without the charts.
    """
    return _ENV.get_template("_report.html.j2").render(
        _context(data, generated_at), css=_Css(inline=True))


def write_report_data(data: ReportData, out: Path) -> Path:
    """Write an already loaded report to `out` (parents created, replaced atomically)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(build_report_html(data), encoding="utf-8")
    tmp.replace(out)
    return out


def write_report(engine: sa.Engine, day: date, out: Path) -> Path:
    """Write the day's report to `out`; NoReportData when the day has no data."""
    return write_report_data(load_report_data(engine, day), out)
