"""The daily HTML report: `store-anomaly report --date D [--out FILE]`.

One self-contained page (inline CSS, charts as inline SVG drawn here; no script, no font,
no image, nothing fetched), readable offline and attachable to an email:

- a summary of the day (stores by health status, alerts by severity, revenue impact);
- the health grid: stores x the last 14 days coloured by `health_status`, with the day's
  score, worst store first;
- the day's alerts, most severe then costliest first, with their English and Chinese
  texts and estimated impact;
- one control chart per alerted store and metric: the last 60 days of values, the centre
  line, the 2σ and 3σ bands of `store_anomaly_scores` (limits for each day's weekday, so
  they step from day to day) and the flagged days. Inspection scores, which are scored on
  thresholds rather than SPC, show the 80/70-point thresholds instead of bands.

The builders are pure functions of polars frames (`ReportData`), so they are tested
without a database; `load_report_data` is the only reader (SQLAlchemy Core, MySQL and
SQLite alike).
"""

from __future__ import annotations

import argparse
import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.settings import Settings, SpcSettings
from store_anomaly_assets.stats.alerts import (
    LABELS,
    RULE_WORDS,
    SEVERITY_ORDER,
    WEEKDAYS,
    format_value,
)
from store_anomaly_assets.stats.spc import METRICS
from store_anomaly_assets.storage import schema
from store_anomaly_assets.storage.frames import read_frame

GRID_DAYS = 14
CHART_DAYS = 60

HEALTH_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "store_id": pl.Int64, "store_name": pl.String, "metric_date": pl.Date,
    "health_score": pl.Float64, "health_status": pl.String,
}
ALERT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "store_id": pl.Int64, "alert_date": pl.Date, "metric_name": pl.String,
    "store_name": pl.String, "severity": pl.String, "metric_value": pl.Float64,
    "expected_value": pl.Float64, "z_score": pl.Float64, "rules_violated": pl.String,
    "scope": pl.String, "impact_usd": pl.Float64, "description_en": pl.String,
    "description_zh": pl.String, "recommended_action": pl.String,
    "recommended_action_zh": pl.String, "acknowledged": pl.Boolean,
    "acknowledged_by": pl.String,
}
SERIES_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "store_id": pl.Int64, "metric_name": pl.String, "metric_date": pl.Date,
    "metric_value": pl.Float64, "z_score": pl.Float64, "cl": pl.Float64,
    "ucl_2s": pl.Float64, "lcl_2s": pl.Float64, "ucl_3s": pl.Float64, "lcl_3s": pl.Float64,
    "rules_violated": pl.String, "severity": pl.String,
}

# Colours: status of the health grid, severity of alerts and flagged points.
STATUS_COLOURS = {
    "HEALTHY": ("#43a047", "#ffffff"),
    "WATCH": ("#ffb300", "#3b2a00"),
    "AT_RISK": ("#e53935", "#ffffff"),
    "INSUFFICIENT_DATA": ("#cfd8dc", "#37474f"),
}
NO_ROW_COLOUR = "#f5f5f5"
STATUS_WORDS = {
    "HEALTHY": ("Healthy", "健康"),
    "WATCH": ("Watch", "关注"),
    "AT_RISK": ("At risk", "风险"),
    "INSUFFICIENT_DATA": ("Insufficient data", "数据不足"),
}
SEVERITY_COLOURS = {"CRITICAL": "#c62828", "WARNING": "#ef6c00", "INFO": "#1565c0"}
SEVERITY_ZH = {"CRITICAL": "严重", "WARNING": "警告", "INFO": "提示"}
BAND_2S = "#dcefdc"
BAND_3S = "#fcebc7"
LINE_COLOUR = "#1f3b73"
CL_COLOUR = "#546e7a"
FONT = ("system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', 'Noto Sans CJK SC', "
        "'PingFang SC', 'Microsoft YaHei', Arial, sans-serif")

# The y axis unit of each metric (the metric's name is the chart's heading).
AXIS_UNITS = {
    "revenue": "USD", "order_count": "orders", "aov": "USD per order",
    "production_count": "drinks", "avg_production_seconds": "seconds",
    "scheduled_hours": "hours", "headcount": "staff",
    "orders_per_labor_hour": "orders per labor hour",
    "revenue_per_labor_hour": "USD per labor hour", "inspection_score": "points (0-100)",
}


class NoReportData(LookupError):
    """The analytics tables hold nothing for the requested day."""


@dataclass(frozen=True)
class ReportData:
    """What one day's report shows.

    health: store_id, store_name, metric_date, health_score, health_status over the
        `GRID_DAYS` days ending on `day`.
    alerts: the day's rows of store_anomaly_alerts (columns of `ALERT_SCHEMA`).
    series: store_anomaly_scores rows (columns of `SERIES_SCHEMA`) of each alerted store
        and metric over the `CHART_DAYS` days ending on `day`.
    """

    day: date
    health: pl.DataFrame
    alerts: pl.DataFrame
    series: pl.DataFrame


# ---------------------------------------------------------------------------------------
# Formatting helpers


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _label(metric_name: str) -> tuple[str, str, str]:
    label = LABELS.get(metric_name)
    if label is None:
        return metric_name, metric_name, "ratio"
    return label.en, label.zh, label.unit


def _short_date(day: date) -> str:
    return f"{day:%b} {day.day}"


def nice_ticks(lo: float, hi: float, target: int = 5) -> tuple[list[float], float]:
    """Round tick values covering lo..hi (about `target` of them) and their step."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-9:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude * 1.0001)
    first = math.floor(lo / step + 1e-9) * step
    last = math.ceil(hi / step - 1e-9) * step
    count = round((last - first) / step)
    return [round(first + i * step, 10) for i in range(count + 1)], step


def _tick_decimals(step: float) -> int:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if abs(step / 10 ** -decimals - round(step / 10 ** -decimals)) > 1e-6:
        decimals += 1  # 2.5, 0.25, ...
    return decimals


def _n(x: float) -> str:
    """A coordinate for SVG: one decimal, no trailing zeros."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _text_width(text: str, size: float) -> float:
    """Rough rendered width: wide CJK glyphs count double."""
    return sum(2 if ord(c) > 0x2E80 else 1 for c in text) * size * 0.56


# ---------------------------------------------------------------------------------------
# The health grid


def health_grid_svg(health: pl.DataFrame, day: date, days: int = GRID_DAYS) -> str:
    """Stores x the `days` days ending on `day`, coloured by health status.

    One row per store with any health row in the window, worst score of `day` first
    (stores without a score that day last); each cell shows the score, the last columns
    the day's score and status. Hover titles give the exact values.
    """
    start = day - timedelta(days=days - 1)
    dates = [start + timedelta(days=i) for i in range(days)]
    window = health.filter(pl.col("metric_date").is_between(start, day))
    cells = {
        (r["store_id"], r["metric_date"]): (r["health_score"], r["health_status"])
        for r in window.iter_rows(named=True)
    }
    stores = (
        window.sort("metric_date")
        .group_by("store_id", maintain_order=True)
        .agg(pl.col("store_name").last())
        .join(
            window.filter(pl.col("metric_date") == day).select("store_id", "health_score"),
            on="store_id",
            how="left",
        )
        .sort([pl.col("health_score").is_null(), "health_score", "store_id"])
    )
    name_w = min(260, max(150, max((_text_width(f"{s} {n}", 12) for s, n in
                                     stores.select("store_id", "store_name").iter_rows()),
                                    default=150) + 16))
    cell_w, cell_h, gap = 40, 24, 3
    top, left = 38, name_w
    score_x = left + days * (cell_w + gap) + 10
    width = score_x + 150
    height = top + max(1, stores.height) * (cell_h + gap) + 6
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" data-chart="health-grid" '
        f'data-stores="{stores.height}" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" role="img" '
        f'aria-label="Store health, {_e(start)} to {_e(day)}" font-family="{_e(FONT)}" '
        f'style="max-width:100%;height:auto">',
        f"<title>Store health, {_e(start)} to {_e(day)}</title>",
    ]
    for i, d in enumerate(dates):
        x = left + i * (cell_w + gap) + cell_w / 2
        weight = ' font-weight="700"' if d == day else ""
        fill = "#111" if d == day else "#555"
        out.append(f'<text x="{_n(x)}" y="14" font-size="10" text-anchor="middle" '
                   f'fill="{fill}"{weight}>{WEEKDAYS[d.weekday()][0][:3]}</text>')
        out.append(f'<text x="{_n(x)}" y="28" font-size="10" text-anchor="middle" '
                   f'fill="{fill}"{weight}>{_e(_short_date(d))}</text>')
    out.append(f'<text x="{_n(score_x)}" y="28" font-size="10" fill="#111" '
               f'font-weight="700">Score {_e(_short_date(day))}</text>')
    if stores.is_empty():
        out.append(f'<text x="8" y="{top + 16}" font-size="12" fill="#555">'
                   "No health scores in this window.</text>")
    for row, (store_id, store_name, _score) in enumerate(stores.iter_rows()):
        y = top + row * (cell_h + gap)
        full = f"{store_id} {store_name or ''}".strip()
        shown = full if len(full) <= 30 else full[:29] + "…"
        out.append(f'<text x="4" y="{_n(y + cell_h / 2 + 4)}" font-size="12" fill="#222">'
                   f"<title>{_e(full)}</title>{_e(shown)}</text>")
        for i, d in enumerate(dates):
            x = left + i * (cell_w + gap)
            score, status = cells.get((store_id, d), (None, None))
            if status is None:
                out.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{cell_w}" height="{cell_h}" '
                           f'rx="3" fill="{NO_ROW_COLOUR}" stroke="#e0e0e0">'
                           f"<title>{_e(full)}, {_e(d)}: no health row</title></rect>")
                continue
            fill, ink = STATUS_COLOURS.get(status, ("#9e9e9e", "#fff"))
            word = STATUS_WORDS.get(status, (status, status))[0]
            score_s = "n/a" if score is None else f"{score:.1f}"
            stroke = ' stroke="#111" stroke-width="2"' if d == day else ""
            out.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{cell_w}" height="{cell_h}" '
                       f'rx="3" fill="{fill}"{stroke}><title>{_e(full)}, {_e(d)}: '
                       f"{_e(word)}, health {score_s}</title></rect>")
            label = "–" if score is None else f"{score:.0f}"
            out.append(f'<text x="{_n(x + cell_w / 2)}" y="{_n(y + cell_h / 2 + 4)}" '
                       f'font-size="11" text-anchor="middle" fill="{ink}" '
                       f'pointer-events="none">{label}</text>')
        score, status = cells.get((store_id, day), (None, None))
        if status is None:
            out.append(f'<text x="{_n(score_x)}" y="{_n(y + cell_h / 2 + 4)}" font-size="12" '
                       'fill="#777">no data</text>')
        else:
            fill, _ink = STATUS_COLOURS.get(status, ("#9e9e9e", "#fff"))
            en, zh = STATUS_WORDS.get(status, (status, status))
            score_s = "–" if score is None else f"{score:.1f}"
            out.append(f'<text x="{_n(score_x)}" y="{_n(y + cell_h / 2 + 5)}" font-size="14" '
                       f'font-weight="700" fill="#111">{score_s}</text>')
            out.append(f'<text x="{_n(score_x + 44)}" y="{_n(y + cell_h / 2 + 4)}" '
                       f'font-size="12" font-weight="600" '
                       f'fill="{"#8a6100" if status == "WATCH" else fill}">'
                       f"{_e(en)} {_e(zh)}</text>")
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------------------
# Control charts


def _runs(flags: Sequence[bool]) -> list[list[int]]:
    """Index runs where flags are true."""
    runs: list[list[int]] = []
    for i, flag in enumerate(flags):
        if flag:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
    return runs


def control_chart_svg(
    series: pl.DataFrame,
    day: date,
    metric_name: str,
    title: str = "",
    days: int = CHART_DAYS,
    width: int = 1000,
    height: int = 320,
) -> str:
    """A control chart of one store and metric over the `days` days ending on `day`.

    `series` holds one store's rows (columns of `SERIES_SCHEMA`); rows of other metrics
    and days outside the window are ignored.
    Values are a line with points (broken on a missing day); the centre line and the 2σ
    and 3σ bands step by day, since the limits are those of each day's weekday; days with
    a severity are drawn larger in the severity's colour; the report day is ringed.
    """
    start = day - timedelta(days=days - 1)
    dates = [start + timedelta(days=i) for i in range(days)]
    rows = {
        r["metric_date"]: r
        for r in series.filter(
            (pl.col("metric_name") == metric_name) & pl.col("metric_date").is_between(start, day)
        ).iter_rows(named=True)
    }

    def col(name: str) -> list[float | None]:
        values = []
        for d in dates:
            v = rows.get(d, {}).get(name)
            values.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
        return values

    values = col("metric_value")
    cl, u2, l2, u3, l3 = col("cl"), col("ucl_2s"), col("lcl_2s"), col("ucl_3s"), col("lcl_3s")
    severities = [rows.get(d, {}).get("severity") for d in dates]
    _en, _zh, unit = _label(metric_name)
    is_threshold = metric_name in METRICS and not METRICS[metric_name].spc
    thresholds = (SpcSettings().inspection_warning, SpcSettings().inspection_critical)

    left, right, top, bottom = 78, 18, 40, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    present = [v for v in (*values, *u3, *l3) if v is not None]
    if is_threshold:
        present += [thresholds[1] - 5, 100.0]
    lo, hi = (min(present), max(present)) if present else (0.0, 1.0)
    pad = (hi - lo) * 0.06 or abs(hi) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad
    if is_threshold:
        hi = min(hi, 100.0)  # a score out of 100
    if lo < 0 <= min((v for v in values if v is not None), default=0.0):
        lo = 0.0  # every metric is non-negative: a negative lower limit is clipped at zero
    ticks, step = nice_ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1]
    decimals = _tick_decimals(step)
    dx = plot_w / days

    def xl(i: int) -> float:
        return left + i * dx

    def xc(i: int) -> float:
        return left + (i + 0.5) * dx

    def y(v: float) -> float:
        v = min(max(v, lo), hi)
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    flagged = sum(1 for s in severities if s)
    aria = title or f"{metric_name} control chart"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" data-chart="control" '
        f'data-metric="{_e(metric_name)}" data-flagged="{flagged}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(aria)}" font-family="{_e(FONT)}" '
        f'style="max-width:100%;height:auto">',
        f"<title>{_e(aria)}</title>",
        f'<rect x="{left}" y="{top}" width="{_n(plot_w)}" height="{_n(plot_h)}" '
        f'fill="#ffffff" stroke="#cfd8dc"/>',
    ]
    # Bands: 3σ under 2σ, each a step polygon over the runs of days that have limits.
    for upper, lower, fill, name in ((u3, l3, BAND_3S, "band-3s"), (u2, l2, BAND_2S, "band-2s")):
        has = [a is not None and b is not None for a, b in zip(upper, lower, strict=True)]
        for run in _runs(has):
            pts = []
            for i in run:
                pts += [(xl(i), y(upper[i])), (xl(i) + dx, y(upper[i]))]
            for i in reversed(run):
                pts += [(xl(i) + dx, y(lower[i])), (xl(i), y(lower[i]))]
            path = "M" + " L".join(f"{_n(px)},{_n(py)}" for px, py in pts) + " Z"
            out.append(f'<path data-layer="{name}" d="{path}" fill="{fill}" stroke="none"/>')
    if is_threshold:
        warn, crit = thresholds
        out.append(f'<rect data-layer="zone-warning" x="{left}" y="{_n(y(warn))}" '
                   f'width="{_n(plot_w)}" height="{_n(y(crit) - y(warn))}" fill="{BAND_3S}"/>')
        out.append(f'<rect data-layer="zone-critical" x="{left}" y="{_n(y(crit))}" '
                   f'width="{_n(plot_w)}" height="{_n(y(lo) - y(crit))}" fill="#f9dada"/>')
    # Grid lines and y ticks.
    for t in ticks:
        out.append(f'<line x1="{left}" x2="{_n(left + plot_w)}" y1="{_n(y(t))}" '
                   f'y2="{_n(y(t))}" stroke="#000" stroke-opacity="0.07"/>')
        out.append(f'<text x="{left - 6}" y="{_n(y(t) + 4)}" font-size="11" '
                   f'text-anchor="end" fill="#444">{_e(format_value(t, unit, decimals))}</text>')
    # x ticks: the report day's weekday, every 7 days back.
    for i, d in enumerate(dates):
        if (days - 1 - i) % 7:
            continue
        out.append(f'<line x1="{_n(xc(i))}" x2="{_n(xc(i))}" y1="{top}" '
                   f'y2="{_n(top + plot_h)}" stroke="#000" stroke-opacity="0.05"/>')
        out.append(f'<line x1="{_n(xc(i))}" x2="{_n(xc(i))}" y1="{_n(top + plot_h)}" '
                   f'y2="{_n(top + plot_h + 4)}" stroke="#666"/>')
        out.append(f'<text x="{_n(xc(i))}" y="{_n(top + plot_h + 17)}" font-size="11" '
                   f'text-anchor="middle" fill="#444">{_e(_short_date(d))}</text>')
    # Band edges, centre line or thresholds.
    for series_, colour, dash, name in ((u3, "#e0a030", "", "ucl-3s"),
                                        (l3, "#e0a030", "", "lcl-3s"),
                                        (cl, CL_COLOUR, "6 4", "cl")):
        for run in _runs([v is not None for v in series_]):
            pts = []
            for i in run:
                pts += [(xl(i), y(series_[i])), (xl(i) + dx, y(series_[i]))]
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<polyline data-layer="{name}" points="'
                       + " ".join(f"{_n(px)},{_n(py)}" for px, py in pts)
                       + f'" fill="none" stroke="{colour}" stroke-width="1.2"{dash_attr}/>')
    if is_threshold:
        for value, colour, name in ((thresholds[0], "#ef6c00", "warning"),
                                    (thresholds[1], "#c62828", "critical")):
            out.append(f'<line data-layer="threshold-{name}" x1="{left}" '
                       f'x2="{_n(left + plot_w)}" y1="{_n(y(value))}" y2="{_n(y(value))}" '
                       f'stroke="{colour}" stroke-width="1.2" stroke-dasharray="6 4"/>')
            out.append(f'<text x="{left + 6}" y="{_n(y(value) - 4)}" font-size="10" '
                       f'fill="{colour}">{name} below {value:g}</text>')
    # Report day column.
    last = days - 1
    out.append(f'<rect x="{_n(xl(last))}" y="{top}" width="{_n(dx)}" height="{_n(plot_h)}" '
               'fill="#000" fill-opacity="0.06"/>')
    # Value line: broken on a missing day; inspections (sparse) join their points.
    has_value = [v is not None for v in values]
    runs = [[i for i, h in enumerate(has_value) if h]] if is_threshold else _runs(has_value)
    for run in runs:
        if len(run) < 2:
            continue
        dash_attr = ' stroke-dasharray="3 3"' if is_threshold else ""
        out.append('<polyline data-layer="value" points="'
                   + " ".join(f"{_n(xc(i))},{_n(y(values[i]))}" for i in run)
                   + f'" fill="none" stroke="{LINE_COLOUR}" stroke-width="1.8"'
                   f' stroke-linejoin="round"{dash_attr}/>')
    for i, v in enumerate(values):
        if v is None:
            continue
        d = dates[i]
        row = rows.get(d, {})
        z = row.get("z_score")
        tip = (f"{WEEKDAYS[d.weekday()][0][:3]} {d}: {format_value(v, unit)}"
               + (f"; expected {format_value(cl[i], unit)}" if cl[i] is not None else "")
               + (f"; z {z:+.2f}" if z is not None else "")
               + (f"; {severities[i]} {row.get('rules_violated') or ''}" if severities[i]
                  else ""))
        if severities[i]:
            colour = SEVERITY_COLOURS.get(severities[i], "#6a1b9a")
            out.append(f'<circle data-flagged="{_e(severities[i])}" data-date="{d}" '
                       f'cx="{_n(xc(i))}" cy="{_n(y(v))}" r="5.5" fill="{colour}" '
                       f'stroke="#fff" stroke-width="1.5"><title>{_e(tip)}</title></circle>')
        else:
            out.append(f'<circle data-date="{d}" cx="{_n(xc(i))}" cy="{_n(y(v))}" r="2.6" '
                       f'fill="{LINE_COLOUR}"><title>{_e(tip)}</title></circle>')
        if i == last:
            colour = SEVERITY_COLOURS.get(severities[i] or "", LINE_COLOUR)
            out.append(f'<circle cx="{_n(xc(i))}" cy="{_n(y(v))}" r="10" fill="none" '
                       f'stroke="{colour}" stroke-width="1.5"/>')
    if not any(has_value):
        out.append(f'<text x="{_n(left + plot_w / 2)}" y="{_n(top + plot_h / 2)}" '
                   'font-size="13" text-anchor="middle" fill="#777">'
                   "No values in this window</text>")
    # Axis titles.
    out.append(f'<text x="{_n(left + plot_w / 2)}" y="{height - 10}" font-size="11" '
               f'text-anchor="middle" fill="#333">Business day (store-local), {_e(start)} to '
               f"{_e(day)}; ticks on {WEEKDAYS[day.weekday()][0]}s</text>")
    axis_title = AXIS_UNITS.get(metric_name, unit)
    out.append(f'<text transform="translate(16 {_n(top + plot_h / 2)}) rotate(-90)" '
               f'font-size="11" text-anchor="middle" fill="#333">{_e(axis_title)}</text>')
    out.append(_chart_legend(left, is_threshold, severities))
    out.append("</svg>")
    return "".join(out)


def _chart_legend(x: float, is_threshold: bool, severities: Iterable[str | None]) -> str:
    items: list[tuple[str, str]] = [(
        f'<line x1="0" x2="18" y1="0" y2="0" stroke="{LINE_COLOUR}" stroke-width="1.8"/>'
        f'<circle cx="9" cy="0" r="2.6" fill="{LINE_COLOUR}"/>', "Daily value"
    )]
    if is_threshold:
        items += [
            ('<line x1="0" x2="18" y1="0" y2="0" stroke="#ef6c00" stroke-dasharray="6 4"/>',
             "Warning threshold"),
            ('<line x1="0" x2="18" y1="0" y2="0" stroke="#c62828" stroke-dasharray="6 4"/>',
             "Critical threshold"),
        ]
    else:
        items += [
            (f'<line x1="0" x2="18" y1="0" y2="0" stroke="{CL_COLOUR}" stroke-dasharray="6 4"/>',
             "Centre line (expected)"),
            (f'<rect x="0" y="-6" width="18" height="12" fill="{BAND_2S}"/>', "±2σ"),
            (f'<rect x="0" y="-6" width="18" height="12" fill="{BAND_3S}" stroke="#e0a030" '
             'stroke-width="1"/>', "±3σ"),
        ]
    present = set(severities)
    for severity in sorted(SEVERITY_COLOURS, key=SEVERITY_ORDER.get):
        if severity in present:
            items.append((f'<circle cx="9" cy="0" r="5.5" fill="{SEVERITY_COLOURS[severity]}"/>',
                          f"{severity.title()} day"))
    out = ['<g data-layer="legend" font-size="11" fill="#333">']
    cursor = x
    for swatch, text in items:
        out.append(f'<g transform="translate({_n(cursor)} 18)">{swatch}'
                   f'<text x="24" y="4">{_e(text)}</text></g>')
        cursor += 24 + _text_width(text, 11) + 18
    out.append("</g>")
    return "".join(out)


# ---------------------------------------------------------------------------------------
# The page

STYLES: dict[str, str] = {
    "report": f"font-family:{FONT};color:#1d2329;max-width:1120px;margin:0 auto;"
              "padding:20px 24px;background:#ffffff;line-height:1.45;font-size:14px",
    "h1": "font-size:24px;margin:0 0 2px 0;font-weight:700",
    "h2": "font-size:18px;margin:28px 0 8px 0;padding-bottom:4px;border-bottom:2px solid #e3e7ea",
    "sub": "color:#55606b;margin:0 0 14px 0",
    "tiles": "margin:6px 0 4px 0",
    "tile": "display:inline-block;min-width:118px;margin:0 8px 8px 0;padding:8px 12px;"
            "border:1px solid #e3e7ea;border-radius:6px;background:#fafbfc;vertical-align:top",
    "tile-n": "font-size:22px;font-weight:700;display:block",
    "tile-l": "font-size:12px;color:#55606b;display:block",
    "note": "color:#55606b;font-size:12.5px;margin:2px 0 8px 0",
    "legend": "display:inline-block;margin-right:14px;font-size:12.5px;color:#333",
    "swatch": "display:inline-block;width:14px;height:14px;border-radius:3px;"
              "vertical-align:-2px;margin-right:5px",
    "table": "border-collapse:collapse;width:100%;font-size:13px",
    "th": "text-align:left;padding:6px 8px;border-bottom:2px solid #cfd8dc;color:#37474f;"
          "font-weight:600;white-space:nowrap",
    "td": "padding:6px 8px;border-bottom:1px solid #eceff1;vertical-align:top",
    "nowrap": "white-space:nowrap",
    "num": "text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums",
    "zh": "color:#55606b;font-size:12px",
    "badge": "display:inline-block;padding:1px 7px;border-radius:10px;color:#ffffff;"
             "font-size:11.5px;font-weight:700;letter-spacing:0.02em;white-space:nowrap",
    "chip": "display:inline-block;padding:0 6px;border-radius:8px;font-size:11.5px;"
            "border:1px solid #b0bec5;color:#37474f;white-space:nowrap",
    "chip-network": "border-color:#6a1b9a;color:#6a1b9a;font-weight:600",
    "card": "border:1px solid #e3e7ea;border-radius:8px;margin:0 0 18px 0;padding:12px 16px;"
            "background:#ffffff",
    "card-h": "font-size:16px;margin:0 0 6px 0;font-weight:600",
    "texts": "border-collapse:collapse;width:100%;margin:4px 0 8px 0;font-size:13px",
    "text-cell": "width:50%;vertical-align:top;padding:4px 14px 4px 0",
    "lang": "font-size:11px;font-weight:700;color:#78909c;letter-spacing:0.06em",
    "action": "color:#37474f",
    "link": "color:#1565c0;text-decoration:none",
    "footer": "margin-top:28px;color:#78909c;font-size:12px;border-top:1px solid #e3e7ea;"
              "padding-top:8px",
    "empty": "color:#2e7d32;font-weight:600",
}
for _severity, _colour in SEVERITY_COLOURS.items():
    STYLES[f"sev-{_severity.lower()}"] = f"background:{_colour}"
    STYLES[f"card-{_severity.lower()}"] = f"border-left:6px solid {_colour}"
    STYLES[f"row-{_severity.lower()}"] = f"box-shadow:inset 4px 0 0 {_colour}"

_CLASS_ATTR = re.compile(r'class="([^"]*)"(?: style="([^"]*)")?')


def _inline_styles(markup: str) -> str:
    """Replace class attributes by the equivalent style attributes (for email clients).

    An element's own style attribute (always written right after its class here) is
    merged in last, so it still wins. Safe on this module's output: escaped text cannot
    contain `class="`, since quotes are escaped, and the SVGs use presentation attributes.
    """

    def inline(match: re.Match[str]) -> str:
        rules = [STYLES[c] for c in match.group(1).split() if c in STYLES]
        if match.group(2):
            rules.append(match.group(2))
        return 'style="' + ";".join(rules) + '"'

    return _CLASS_ATTR.sub(inline, markup)


def stylesheet() -> str:
    rules = "\n".join(f".{name} {{{css}}}" for name, css in STYLES.items())
    return (f"body {{margin:0;background:#eef1f4}}\n{rules}\n"
            ".report a:hover {text-decoration:underline}\n"
            "@media print {body {background:#fff} .card {break-inside:avoid}}")


def _sorted_alerts(alerts: pl.DataFrame) -> pl.DataFrame:
    if alerts.is_empty():
        return alerts
    metric_rank = {m: i for i, m in enumerate(METRICS)}
    return alerts.with_columns(
        _sev=pl.col("severity").replace_strict(SEVERITY_ORDER, default=9, return_dtype=pl.Int32),
        _metric=pl.col("metric_name").replace_strict(metric_rank, default=99,
                                                     return_dtype=pl.Int32),
    ).sort(["_sev", "impact_usd", "store_id", "_metric"],
           descending=[False, True, False, False], nulls_last=True).drop("_sev", "_metric")


def _anchor(store_id: object, metric_name: object) -> str:
    return "alert-" + re.sub(r"[^A-Za-z0-9_-]", "-", f"{store_id}-{metric_name}")


def _badge(severity: str) -> str:
    return (f'<span class="badge sev-{_e(severity.lower())}">{_e(severity)} '
            f"{_e(SEVERITY_ZH.get(severity, ''))}</span>")


def total_impact(alerts: pl.DataFrame) -> float:
    """The day's estimated impact in USD: each store's largest alert impact, summed.

    A store's alerts of one day usually describe the same loss (low revenue, orders and
    drinks), so their impacts are not added up.
    """
    if alerts.is_empty():
        return 0.0
    per_store = alerts.group_by("store_id").agg(pl.col("impact_usd").max())
    return float(per_store.get_column("impact_usd").fill_null(0.0).sum())


def _summary(data: ReportData) -> str:
    day_health = data.health.filter(pl.col("metric_date") == data.day)
    counts = dict(day_health.group_by("health_status").len().iter_rows())
    tiles = [(str(day_health.height), "stores reported · 门店数", None)]
    for status in ("HEALTHY", "WATCH", "AT_RISK", "INSUFFICIENT_DATA"):
        if status == "INSUFFICIENT_DATA" and not counts.get(status):
            continue
        en, zh = STATUS_WORDS[status]
        tiles.append((str(counts.get(status, 0)), f"{en} · {zh}", STATUS_COLOURS[status][0]))
    by_severity = dict(data.alerts.group_by("severity").len().iter_rows())
    detail = ", ".join(f"{by_severity[s]} {s.lower()}"
                       for s in SEVERITY_ORDER if by_severity.get(s))
    tiles.append((str(data.alerts.height), f"alerts · 告警{f' ({detail})' if detail else ''}",
                  SEVERITY_COLOURS["CRITICAL"] if by_severity.get("CRITICAL") else None))
    tiles.append((format_value(total_impact(data.alerts), "usd", 0),
                  "est. impact · 预估影响", None))
    out = ['<div class="tiles">']
    for value, label, colour in tiles:
        style = f' style="color:{colour}"' if colour else ""
        out.append(f'<div class="tile"><span class="tile-n"{style}>{_e(value)}</span>'
                   f'<span class="tile-l">{_e(label)}</span></div>')
    out.append("</div>")
    return "".join(out)


def _grid_legend() -> str:
    items = [(STATUS_COLOURS[s][0], f"{STATUS_WORDS[s][0]} {STATUS_WORDS[s][1]}")
             for s in STATUS_COLOURS]
    items.append((NO_ROW_COLOUR, "No data 无数据"))
    return "".join(
        f'<span class="legend"><span class="swatch" style="background:{c};'
        f'border:1px solid #d0d5d9"></span>{_e(t)}</span>' for c, t in items
    )


def _alerts_table(alerts: pl.DataFrame) -> str:
    if alerts.is_empty():
        return '<p class="empty">No alerts on this day. 当日无告警。</p>'
    head = (("Severity", "级别"), ("Store", "门店"), ("Metric", "指标"), ("Value", "实际"),
            ("Expected", "预期"), ("Gap", "偏差"), ("z", ""), ("Rules", "规则"),
            ("Scope", "范围"), ("Impact", "影响"), ("Status", "状态"))
    numeric = {3, 4, 5, 6, 9}
    out = ['<table class="table"><thead><tr>']
    for i, (en, zh) in enumerate(head):
        zh_html = f'<br><span class="zh">{_e(zh)}</span>' if zh else ""
        out.append(f'<th class="th{" num" if i in numeric else ""}">{_e(en)}{zh_html}</th>')
    out.append("</tr></thead><tbody>")
    for a in alerts.iter_rows(named=True):
        en, zh, unit = _label(a["metric_name"])
        value, expected = a["metric_value"], a["expected_value"]
        gap = ("n/a" if value is None or not expected
               else f"{(value - expected) / expected * 100:+.1f}%")
        z = "n/a" if a["z_score"] is None else f"{a['z_score']:+.2f}"
        rules = [r for r in (a["rules_violated"] or "").split(",") if r]
        rules_html = " ".join(
            f'<abbr title="{_e(RULE_WORDS[r][0])}">{_e(r)}</abbr>' if r in RULE_WORDS else _e(r)
            for r in rules
        ) or "–"
        scope = a["scope"] or "STORE"
        scope_cls = "chip chip-network" if scope == "NETWORK" else "chip"
        impact = "–" if a["impact_usd"] is None else format_value(a["impact_usd"], "usd")
        status = ("acknowledged" + (f" by {a['acknowledged_by']}" if a["acknowledged_by"] else "")
                  if a["acknowledged"] else "open")
        sev = (a["severity"] or "").lower()
        out.append(
            f'<tr class="row-{_e(sev)}">'
            f'<td class="td">{_badge(a["severity"] or "")}</td>'
            f'<td class="td nowrap">{_e(a["store_name"])} <span class="zh">{_e(a["store_id"])}'
            "</span></td>"
            f'<td class="td nowrap"><a class="link" '
            f'href="#{_anchor(a["store_id"], a["metric_name"])}">'
            f'{_e(en)}</a><br><span class="zh">{_e(zh)}</span></td>'
            f'<td class="td num">{_e(format_value(value, unit))}</td>'
            f'<td class="td num">{_e(format_value(expected, unit))}</td>'
            f'<td class="td num">{_e(gap)}</td>'
            f'<td class="td num">{_e(z)}</td>'
            f'<td class="td">{rules_html}</td>'
            f'<td class="td"><span class="{scope_cls}">{_e(scope)}</span></td>'
            f'<td class="td num">{_e(impact)}</td>'
            f'<td class="td">{_e(status)}</td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


def alert_card_html(alert: dict, series: pl.DataFrame, day: date) -> str:
    en, zh, _unit = _label(alert["metric_name"])
    store = f"{alert['store_name'] or ''} ({alert['store_id']})"
    severity = alert["severity"] or ""
    scope = alert["scope"] or "STORE"
    chips = [f'<span class="{"chip chip-network" if scope == "NETWORK" else "chip"}">'
             f"{_e(scope)}</span>"]
    if alert["impact_usd"] is not None:
        chips.append(f'<span class="chip">impact {_e(format_value(alert["impact_usd"], "usd"))}'
                     "</span>")
    own = series.filter((pl.col("store_id") == alert["store_id"])
                        & (pl.col("metric_name") == alert["metric_name"]))
    chart = control_chart_svg(own, day, alert["metric_name"],
                              title=f"{store}: {en} / {zh}, {CHART_DAYS} days to {day}")
    return (
        f'<div class="card card-{_e(severity.lower())}" '
        f'id="{_anchor(alert["store_id"], alert["metric_name"])}">'
        f'<h3 class="card-h">{_badge(severity)} {_e(store)} · {_e(en)} '
        f'<span class="zh">{_e(zh)}</span> {" ".join(chips)}</h3>'
        '<table class="texts"><tr>'
        f'<td class="text-cell"><div class="lang">ENGLISH</div>'
        f'<div>{_e(alert["description_en"])}</div>'
        f'<div class="action"><b>Action:</b> {_e(alert["recommended_action"])}</div></td>'
        f'<td class="text-cell"><div class="lang">中文</div>'
        f'<div>{_e(alert["description_zh"])}</div>'
        f'<div class="action"><b>建议措施：</b>{_e(alert["recommended_action_zh"])}</div></td>'
        f"</tr></table>{chart}</div>"
    )


def report_body(data: ReportData, generated_at: datetime | None = None) -> str:
    """The report's content (one `div.report`), with class attributes."""
    day = data.day
    weekday_en, weekday_zh = WEEKDAYS[day.weekday()]
    alerts = _sorted_alerts(data.alerts)
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    cards = "".join(alert_card_html(a, data.series, day) for a in alerts.iter_rows(named=True))
    charts_note = (
        '<p class="note">Last 60 days of each alerted store and metric. The bands are the '
        "2σ and 3σ control limits of each day (adjusted for the weekday, so they step from "
        "day to day), the dashed line the expected value; larger dots are flagged days, the "
        "ringed dot is the report day. 各告警指标近60天控制图：色带为按星期调整后的 2σ/3σ "
        "控制限，虚线为预期值，大圆点为异常日。</p>"
    )
    return "".join([
        '<div class="report">',
        '<h1 class="h1">Store performance report · 门店绩效日报</h1>',
        f'<p class="sub">{_e(weekday_en)} {_e(day)} ({_e(weekday_zh)}) · store-local '
        "business day · UC-OP-02 store anomaly detection</p>",
        _summary(data),
        '<h2 class="h2">Store health, last 14 days · 近14天门店健康度</h2>',
        '<p class="note">Worst store of the day first; each cell is the composite health '
        "score (0-100) of that day, the outlined column is the report day.</p>",
        f'<div class="note">{_grid_legend()}</div>',
        health_grid_svg(data.health, day),
        f'<h2 class="h2">Alerts · 当日告警 ({alerts.height})</h2>',
        '<p class="note">Impact: the estimated cost in USD of each alert (impact_usd); the '
        "summary adds up each store's largest, since one store's alerts of a day usually "
        "describe the same loss.</p>" if alerts.height else "",
        _alerts_table(alerts),
        *([f'<h2 class="h2">Alert details and control charts · 告警详情与控制图</h2>'
           f"{charts_note}{cards}"] if alerts.height else []),
        f'<div class="footer">Generated {_e(generated)} from the analytics tables '
        "store_health_scores, store_anomaly_alerts and store_anomaly_scores. "
        "Self-contained: no script, no external resource.</div>",
        "</div>",
    ])


def build_report_html(data: ReportData, generated_at: datetime | None = None) -> str:
    """The whole page: one HTML document with inline CSS and inline SVG."""
    day = data.day
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Store performance report {_e(day)} · 门店绩效日报</title>"
        f"<style>\n{stylesheet()}\n</style></head>\n<body>"
        f"{report_body(data, generated_at)}</body></html>\n"
    )


def build_email_html(data: ReportData, generated_at: datetime | None = None) -> str:
    """The report as an HTML fragment with inline styles, for an email body.

    Email clients drop <head> and <style>; every style is inlined here. Clients that strip
    inline SVG (Gmail, Outlook desktop) show the tables and texts without the charts.
    """
    return _inline_styles(report_body(data, generated_at))


# ---------------------------------------------------------------------------------------
# Reading and writing


def _coverage(engine: sa.Engine) -> tuple[date | None, date | None]:
    h = schema.store_health_scores
    with engine.connect() as conn:
        first, last = conn.execute(
            sa.select(sa.func.min(h.c.metric_date), sa.func.max(h.c.metric_date))
        ).one()
    return first, last


def load_report_data(engine: sa.Engine, day: date) -> ReportData:
    """Read the day's report data; NoReportData when no store has a health row that day."""
    h, a, s = schema.store_health_scores, schema.store_anomaly_alerts, schema.store_anomaly_scores
    grid_start = day - timedelta(days=GRID_DAYS - 1)
    health = read_frame(
        engine,
        sa.select(*(h.c[c] for c in HEALTH_SCHEMA))
        .where(h.c.metric_date.between(grid_start, day))
        .order_by(h.c.store_id, h.c.metric_date),
        schema_overrides=HEALTH_SCHEMA,
    )
    if health.filter(pl.col("metric_date") == day).is_empty():
        first, last = _coverage(engine)
        if first is None:
            raise NoReportData(f"no analytics data for {day}: store_health_scores is empty "
                               "(run the pipeline first)")
        raise NoReportData(f"no analytics data for {day}: store_health_scores covers "
                           f"{first}..{last}")
    alerts = read_frame(
        engine,
        sa.select(*(a.c[c] for c in ALERT_SCHEMA)).where(a.c.alert_date == day)
        .order_by(a.c.store_id, a.c.metric_name),
        schema_overrides=ALERT_SCHEMA,
    )
    pairs = alerts.select("store_id", "metric_name").unique()
    if pairs.is_empty():
        series = pl.DataFrame(schema=SERIES_SCHEMA)
    else:
        series = read_frame(
            engine,
            sa.select(*(s.c[c] for c in SERIES_SCHEMA))
            .where(s.c.metric_date.between(day - timedelta(days=CHART_DAYS - 1), day))
            .where(s.c.store_id.in_(pairs.get_column("store_id").unique().to_list()))
            .where(s.c.metric_name.in_(pairs.get_column("metric_name").unique().to_list()))
            .order_by(s.c.store_id, s.c.metric_name, s.c.metric_date),
            schema_overrides=SERIES_SCHEMA,
        ).join(pairs, on=["store_id", "metric_name"], how="semi")
    return ReportData(day=day, health=health, alerts=alerts, series=series)


def report_html(engine: sa.Engine, day: date) -> str:
    """The day's report as a full HTML document."""
    return build_report_html(load_report_data(engine, day))


def report_html_for_email(engine: sa.Engine, day: date) -> str:
    """The day's report as an inline-styled HTML fragment to embed in a notification email."""
    return build_email_html(load_report_data(engine, day))


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


# ---------------------------------------------------------------------------------------
# CLI


def _date_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from None


def _out_arg(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is not a file name")
    if text.endswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r} names a folder, not a file")
    return Path(text)


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `report --date D [--out FILE]` to the CLI's subcommands."""
    parser = subparsers.add_parser(
        "report", help="write the day's HTML report: health grid, alerts, control charts"
    )
    parser.add_argument("--date", type=_date_arg, required=True,
                        help="business day to report (YYYY-MM-DD)")
    parser.add_argument("--out", type=_out_arg, metavar="FILE",
                        help="output file (default: store_anomaly_report_<date>.html here)")
    parser.set_defaults(func=cmd_report)
    return parser


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from store_anomaly_assets.cli import CliError, on_database, require_tables
    from store_anomaly_assets.resources import resolved_databases

    out = args.out or Path(f"store_anomaly_report_{args.date}.html")
    if out.is_dir():
        raise CliError(f"--out {out} is a folder; name the report file, e.g. "
                       f"{out / f'store_anomaly_report_{args.date}.html'}")
    analytics = resolved_databases(settings)["analytics"]
    with on_database(analytics) as engine:
        require_tables(analytics, engine, [schema.store_health_scores.name,
                                           schema.store_anomaly_alerts.name,
                                           schema.store_anomaly_scores.name])
        try:
            data = load_report_data(engine, args.date)
        except NoReportData as exc:
            raise CliError(f"{exc} in {analytics.describe()}") from None
    try:
        path = write_report_data(data, out)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise CliError(f"--out {out}: cannot write the report: {exc.strerror or exc}{where}"
                       ) from None
    print(f"Report for {args.date} written to {path} ({data.alerts.height} alert(s), "
          f"{data.health.filter(pl.col('metric_date') == args.date).height} store(s))")
    return 0
