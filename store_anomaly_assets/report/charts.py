"""The report's hand-drawn SVG: the health grid and the control charts.

Each builder is a pure function of polars frames that returns one `<svg>` element as
`markupsafe.Markup`, so the Jinja2 templates embed it as is. Text inside the SVG is
escaped here (`_e`); the charts use presentation attributes only (no class, no CSS), so
they look the same in the page and in an e-mail. Hand-drawn on purpose: a few hundred
lines of SVG are simpler than a plotting dependency and keep the page self-contained.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

import polars as pl
from markupsafe import Markup

from store_anomaly_assets.core.alerts import LABELS, WEEKDAYS, format_value
from store_anomaly_assets.core.contracts import SEVERITY_COLOURS, SEVERITY_ORDER
from store_anomaly_assets.core.settings import SpcSettings
from store_anomaly_assets.core.spc import METRICS
from store_anomaly_assets.report.data import CHART_DAYS, GRID_DAYS

# Colours: status of the health grid, severity of alerts and flagged points (the page's
# stylesheet, tiles and legend use the same ones).
STATUS_COLOURS = {
    "HEALTHY": ("#43a047", "#ffffff"),
    "WATCH": ("#ffb300", "#3b2a00"),
    "AT_RISK": ("#e53935", "#ffffff"),
    "INSUFFICIENT_DATA": ("#cfd8dc", "#37474f"),
}
# The status word next to the day's score, where the cell colour is too light on white.
STATUS_TEXT_COLOURS = {"WATCH": "#8a6100", "INSUFFICIENT_DATA": "#546e7a"}
NO_ROW_COLOUR = "#f5f5f5"
NAME_MAX = 280  # widest store-name column of the health grid, in px
STATUS_WORDS = {
    "HEALTHY": ("Healthy", "健康"),
    "WATCH": ("Watch", "关注"),
    "AT_RISK": ("At risk", "风险"),
    "INSUFFICIENT_DATA": ("Insufficient data", "数据不足"),
}
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


# ---------------------------------------------------------------------------------------
# Formatting helpers


def _e(text: object) -> str:
    """Text for SVG markup: escaped, quotes included; None is empty."""
    return html.escape("" if text is None else str(text), quote=True)


def metric_label(metric_name: str) -> tuple[str, str, str]:
    """A metric's English and Chinese names and its unit (`LABELS`, or the raw name)."""
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


def _text_width(text: str, size: float, latin: float = 0.56) -> float:
    """Rough rendered width: `latin` em a glyph, wide CJK glyphs two of 0.56 em.

    0.56 em is an average for legends; a label that must never be cut off or run into the
    cells is measured with `_LABEL_EM`, which errs on the wide side.
    """
    return sum(1.12 if ord(c) > 0x2E80 else latin for c in text) * size


_LABEL_EM = 0.66  # wide enough for DejaVu Sans (semi)bold, a usual fallback font


def _fit(text: str, size: float, room: float) -> str:
    """`text`, cut with an ellipsis to `room` pixels (by `_text_width` at `_LABEL_EM`)."""
    if _text_width(text, size, _LABEL_EM) <= room:
        return text
    while text and _text_width(text + "…", size, _LABEL_EM) > room:
        text = text[:-1]
    return text.rstrip() + "…"


# ---------------------------------------------------------------------------------------
# The health grid


def health_grid_svg(health: pl.DataFrame, day: date, days: int = GRID_DAYS) -> Markup:
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
    # Columns sized to their labels, which are never cut by the SVG's edge: store names
    # (ellipsised past NAME_MAX, the full name in the hover title) and the day's status.
    labels = {store_id: f"{store_id} {name or ''}".strip()
              for store_id, name in stores.select("store_id", "store_name").iter_rows()}
    name_w = min(NAME_MAX, max(150, max((_text_width(t, 12, _LABEL_EM) for t in
                                         labels.values()), default=150) + 16))
    day_statuses = window.filter(pl.col("metric_date") == day).get_column("health_status")
    status_dx = 50  # the status word after the score ("100.0" in 14 px bold)
    status_w = max((_text_width(" ".join(STATUS_WORDS.get(s, (s, s))), 12, _LABEL_EM)
                    for s in day_statuses.unique().drop_nulls()), default=0.0)
    cell_w, cell_h, gap = 40, 24, 3
    top, left = 38, name_w
    score_x = left + days * (cell_w + gap) + 10
    width = score_x + max(150, status_dx + status_w + 8)
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
    for row, (store_id, _name, _score) in enumerate(stores.iter_rows()):
        y = top + row * (cell_h + gap)
        full = labels[store_id]
        shown = _fit(full, 12, name_w - 12)
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
            out.append(f'<text x="{_n(score_x + status_dx)}" y="{_n(y + cell_h / 2 + 4)}" '
                       f'font-size="12" font-weight="600" '
                       f'fill="{STATUS_TEXT_COLOURS.get(status, fill)}">'
                       f"{_e(en)} {_e(zh)}</text>")
    out.append("</svg>")
    return Markup("".join(out))


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
) -> Markup:
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
    _en, _zh, unit = metric_label(metric_name)
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
    return Markup("".join(out))


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
