"""Tests of the daily HTML report (store_anomaly_assets/report/).

- unit tests of the SVG and HTML builders on small hand-made frames: the control chart's
  bands in the right order, flagged days drawn, missing days breaking the line, units and
  dates on the axes; the health grid's order and colours; escaping of names like `<&>`;
  the email fragment; reading on SQLite; the CLI's arguments and errors;
- a browser test: the report of 2025-10-08 (a day of injected CRITICAL alerts) from the
  backfilled MariaDB, loaded in headless Chromium (Debian package `chromium`; the test
  fails, never skips, without it): the DOM holds every chart, and a screenshot is taken.
  With STORE_ANOMALY_SAVE_SCREENSHOTS=1 it also refreshes docs/images/report-*.png.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from browser import chromium_path

from store_anomaly_assets import report
from store_anomaly_assets.cli import main
from store_anomaly_assets.config import AppConfig
from store_anomaly_assets.db.analytics import schema
from store_anomaly_assets.db.frames import read_frame

PROJECT = Path(__file__).resolve().parents[1]
DAY = date(2025, 10, 8)
NASTY = 'Café <b>&</b> "Co" \'x\''
SVG_NS = "{http://www.w3.org/2000/svg}"


# ---------------------------------------------------------------------------------------
# Small frames


def series_frame(
    days: int = 14,
    day: date = DAY,
    store_id: int = 1,
    metric: str = "revenue",
    flagged: dict[date, str] | None = None,
    missing: tuple[date, ...] = (),
    limits_from: int = 0,
) -> pl.DataFrame:
    """A store-metric series with weekday-stepped limits; flagged days far below 3σ."""
    flagged = flagged or {}
    rows = []
    for i in range(days):
        d = day - timedelta(days=days - 1 - i)
        if d in missing:
            continue
        cl, std = 1000.0 + 60 * d.weekday(), 100.0
        value = cl - 450 if d in flagged else cl + (30 if i % 2 else -40)
        limits = i >= limits_from
        rows.append({
            "store_id": store_id, "metric_name": metric, "metric_date": d,
            "metric_value": value, "z_score": (value - cl) / std if limits else None,
            "cl": cl if limits else None,
            "ucl_2s": cl + 2 * std if limits else None, "lcl_2s": cl - 2 * std if limits else None,
            "ucl_3s": cl + 3 * std if limits else None, "lcl_3s": cl - 3 * std if limits else None,
            "rules_violated": "WE1" if d in flagged else None, "severity": flagged.get(d),
        })
    return pl.DataFrame(rows, schema=report.SERIES_SCHEMA)


def health_frame(stores: dict[int, tuple[str, list[tuple[float | None, str] | None]]],
                 day: date = DAY) -> pl.DataFrame:
    """Health rows: per store, (score, status) or no row (None) for the last len(list) days."""
    rows = []
    for store_id, (name, cells) in stores.items():
        for i, cell in enumerate(cells):
            if cell is None:
                continue
            score, status = cell
            rows.append({"store_id": store_id, "store_name": name,
                         "metric_date": day - timedelta(days=len(cells) - 1 - i),
                         "health_score": score, "health_status": status})
    return pl.DataFrame(rows, schema=report.HEALTH_SCHEMA)


def alert_row(store_id: int, store_name: str, metric: str, severity: str, **extra) -> dict:
    row = {
        "store_id": store_id, "alert_date": DAY, "metric_name": metric, "store_name": store_name,
        "severity": severity, "metric_value": 550.0, "expected_value": 1120.0, "z_score": -5.7,
        "rules_violated": "WE1", "scope": "STORE", "impact_usd": 570.0 if metric == "revenue"
        else None, "description_en": f"{metric} was low", "description_zh": f"{metric} 偏低",
        "recommended_action": "Investigate", "recommended_action_zh": "立即调查",
        "acknowledged": False, "acknowledged_by": None,
    }
    return row | extra


def report_data() -> report.ReportData:
    flagged = {DAY: "CRITICAL", DAY - timedelta(days=3): "WARNING"}
    series = pl.concat([
        series_frame(store_id=7, metric="revenue", flagged=flagged),
        series_frame(store_id=9, metric="order_count", flagged={DAY: "WARNING"}),
    ])
    health = health_frame({
        7: (NASTY, [(90.0, "HEALTHY")] * 13 + [(35.0, "AT_RISK")]),
        9: ("Plain Store", [(70.0, "WATCH")] * 14),
    })
    alerts = pl.DataFrame([
        alert_row(9, "Plain Store", "order_count", "WARNING"),
        alert_row(7, NASTY, "revenue", "CRITICAL",
                  description_en="Revenue <script>alert(1)</script> & more"),
    ], schema=report.ALERT_SCHEMA)
    return report.ReportData(day=DAY, health=health, alerts=alerts, series=series)


def parse_svg(svg: str) -> ET.Element:
    """Parse as XML: also proves the SVG is well formed (escaping included)."""
    return ET.fromstring(svg)


def layer(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if el.get("data-layer") == name]


def day_steps(points: list[tuple[float, float]]) -> dict[float, float]:
    """Step polyline (x_left, y), (x_right, y) per day to {x_left: y}."""
    return {round(points[k][0], 1): points[k][1] for k in range(0, len(points), 2)}


def polyline_points(el: ET.Element) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in el.get("points").split()]


def band_steps(path: ET.Element) -> tuple[dict[float, float], dict[float, float]]:
    """A step band path to ({x_left: upper y}, {x_left: lower y})."""
    pts = [tuple(map(float, p.split(","))) for p in re.findall(r"[\d.]+,[\d.]+", path.get("d"))]
    half = len(pts) // 2
    upper = {round(pts[k][0], 1): pts[k][1] for k in range(0, half, 2)}
    lower = {round(pts[k + 1][0], 1): pts[k + 1][1] for k in range(half, len(pts), 2)}
    return upper, lower


# ---------------------------------------------------------------------------------------
# Control chart


def test_control_chart_bands_are_ordered_and_drawn_under_the_values():
    svg = report.control_chart_svg(series_frame(), DAY, "revenue", days=14)
    root = parse_svg(svg)
    (band3,), (band2,) = layer(root, "band-3s"), layer(root, "band-2s")
    up3, lo3 = band_steps(band3)
    up2, lo2 = band_steps(band2)
    cl = day_steps(polyline_points(layer(root, "cl")[0]))
    ucl3 = day_steps(polyline_points(layer(root, "ucl-3s")[0]))
    lcl3 = day_steps(polyline_points(layer(root, "lcl-3s")[0]))
    assert len(cl) == 14 and set(cl) == set(up3) == set(up2) == set(lo2) == set(lo3)
    for x in cl:  # SVG y grows downwards: ucl_3s on top, lcl_3s at the bottom
        assert ucl3[x] == up3[x] < up2[x] < cl[x] < lo2[x] < lo3[x] == lcl3[x], x
    # The limits step with the weekday: not one flat band.
    assert len(set(cl.values())) == 7
    # Drawing order: 3σ band, then 2σ band over it, then the value line, then the points.
    order = [el.get("data-layer") or el.tag.removeprefix(SVG_NS) for el in root.iter()]
    assert order.index("band-3s") < order.index("band-2s") < order.index("value")
    assert order.index("value") < order.index("circle")


def test_control_chart_marks_flagged_days_and_rings_the_report_day():
    flagged = {DAY: "CRITICAL", DAY - timedelta(days=4): "WARNING", DAY - timedelta(days=9): "INFO"}
    svg = report.control_chart_svg(series_frame(flagged=flagged), DAY, "revenue", days=14)
    root = parse_svg(svg)
    assert root.get("data-flagged") == "3"
    marks = {c.get("data-date"): c for c in root.iter(f"{SVG_NS}circle") if c.get("data-flagged")}
    assert set(marks) == {d.isoformat() for d in flagged}
    lcl3 = day_steps(polyline_points(layer(root, "lcl-3s")[0]))
    for d, severity in flagged.items():
        mark = marks[d.isoformat()]
        assert mark.get("data-flagged") == severity
        assert mark.get("fill") == report.SEVERITY_COLOURS[severity]
        assert float(mark.get("r")) > 4
        # 450 below the centre line is beyond 3σ (300): drawn below that day's lower limit.
        day_left = max(x for x in lcl3 if x <= float(mark.get("cx")))
        assert float(mark.get("cy")) > lcl3[day_left]
    plain = [c for c in root.iter(f"{SVG_NS}circle") if c.get("data-date")
             and not c.get("data-flagged")]
    assert len(plain) == 14 - 3 and all(float(c.get("r")) < 4 for c in plain)
    ring = [c for c in root.iter(f"{SVG_NS}circle") if c.get("fill") == "none"]
    assert len(ring) == 1 and ring[0].get("cx") == marks[DAY.isoformat()].get("cx")
    legend = "".join(layer(root, "legend")[0].itertext())
    assert "Critical day" in legend and "Warning day" in legend and "Info day" in legend
    assert "±2σ" in legend and "±3σ" in legend


def test_control_chart_axes_have_dates_and_units_and_a_missing_day_breaks_the_line():
    gap = DAY - timedelta(days=5)
    svg = report.control_chart_svg(series_frame(missing=(gap,)), DAY, "revenue", days=14)
    root = parse_svg(svg)
    assert len(layer(root, "value")) == 2  # the line stops at the missing day
    assert gap.isoformat() not in {c.get("data-date") for c in root.iter(f"{SVG_NS}circle")}
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG_NS}text")]
    y_ticks = [t for t in texts if t.startswith("$")]
    assert len(y_ticks) >= 4 and all(re.fullmatch(r"\$[\d,]+", t) for t in y_ticks)
    assert "Oct 8" in texts and "Oct 1" in texts  # ticks on the report day's weekday
    assert "USD" in texts
    assert any("2025-09-25 to 2025-10-08" in t for t in texts)

    hours = report.control_chart_svg(series_frame(metric="scheduled_hours"), DAY,
                                     "scheduled_hours", days=14)
    texts = ["".join(t.itertext()) for t in parse_svg(hours).iter(f"{SVG_NS}text")]
    assert "hours" in texts and any(re.fullmatch(r"[\d,.]+ h", t) for t in texts)


def test_control_chart_without_limits_yet_and_for_inspection_thresholds():
    young = report.control_chart_svg(series_frame(limits_from=10), DAY, "revenue", days=14)
    root = parse_svg(young)
    up3, _ = band_steps(layer(root, "band-3s")[0])
    assert len(up3) == 4  # bands only where the baseline exists
    assert len(root.findall(f".//{SVG_NS}circle[@data-date]")) == 14

    inspections = pl.DataFrame([
        {"store_id": 1, "metric_name": "inspection_score", "metric_date": DAY - timedelta(days=d),
         "metric_value": v, "severity": s}
        for d, v, s in ((30, 91.0, None), (12, 88.5, None), (0, 66.0, "CRITICAL"))
    ], schema=report.SERIES_SCHEMA)
    root = parse_svg(report.control_chart_svg(inspections, DAY, "inspection_score"))
    assert not layer(root, "band-3s") and not layer(root, "cl")
    assert layer(root, "threshold-warning") and layer(root, "threshold-critical")
    assert len(layer(root, "value")) == 1  # sparse points joined
    assert root.get("data-flagged") == "1"
    ticks = [float(t.text) for t in root.iter(f"{SVG_NS}text")
             if t.text and re.fullmatch(r"\d+\.?\d*", t.text)]
    assert max(ticks) == 100 and min(ticks) <= 60


def test_nice_ticks():
    assert report.nice_ticks(0, 97) == ([0, 20, 40, 60, 80, 100], 20)
    ticks, step = report.nice_ticks(5.2, 6.9)
    assert step == 0.5 and ticks[0] <= 5.2 and ticks[-1] >= 6.9
    ticks, step = report.nice_ticks(42.0, 42.0)  # flat series still gets an axis
    assert ticks[0] < 42 < ticks[-1]


# ---------------------------------------------------------------------------------------
# Health grid and page


def test_health_grid_orders_worst_first_colours_by_status_and_escapes_names():
    health = health_frame({
        1: ("Good", [(95.0, "HEALTHY")] * 14),
        2: (NASTY, [(None, "INSUFFICIENT_DATA")] * 4 + [(85.0, "HEALTHY")] * 9
            + [(40.0, "AT_RISK")]),
        3: ("Meh", [(70.0, "WATCH")] * 5),  # opened 5 days ago
        4: ("Gone", [(90.0, "HEALTHY")] * 3 + [None] * 11),  # no row on the day
    })
    svg = report.health_grid_svg(health, DAY)
    assert "<b>" not in svg and "&lt;b&gt;&amp;&lt;/b&gt;" in svg
    root = parse_svg(svg)
    assert root.get("data-stores") == "4"
    names = [t.find(f"{SVG_NS}title").tail for t in root.iter(f"{SVG_NS}text")
             if t.get("x") == "4"]
    assert names[0] == f"2 {NASTY}"  # parsed back: the exact name
    assert [n.split()[0] for n in names] == ["2", "3", "1", "4"]  # worst, ..., no data last
    fills = [r.get("fill") for r in root.iter(f"{SVG_NS}rect")]
    assert len(fills) == 4 * 14
    assert fills.count(report.STATUS_COLOURS["AT_RISK"][0]) == 1
    assert fills.count(report.STATUS_COLOURS["WATCH"][0]) == 5
    assert fills.count(report.STATUS_COLOURS["INSUFFICIENT_DATA"][0]) == 4
    assert fills.count(report.NO_ROW_COLOUR) == 9 + 11
    outlined = [r for r in root.iter(f"{SVG_NS}rect") if r.get("stroke") == "#111"]
    assert len(outlined) == 3  # the report day's cells of the stores that have one


def test_report_html_is_self_contained_escaped_and_has_one_chart_per_alert():
    data = report_data()
    page = report.build_report_html(data)
    assert page.count("<svg") == data.alerts.height + 1
    assert page.count('data-chart="control"') == data.alerts.height
    lowered = page.lower()
    assert "<script" not in lowered and "<link" not in lowered and " src=" not in lowered
    assert "url(" not in lowered and "@import" not in lowered
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}
    assert NASTY not in page and "<b>&</b>" not in page
    assert "Café &lt;b&gt;&amp;&lt;/b&gt; &quot;Co&quot; &#x27;x&#x27;" in page
    assert "Revenue &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    # Most severe first; every table link has its card.
    assert page.index("CRITICAL 严重</span></td>") < page.index("WARNING 警告</span></td>")
    links = re.findall(r'href="#([^"]+)"', page)
    assert len(links) == 2 and all(f'id="{a}"' in page for a in links)
    # Both languages, the impact and the day's summary.
    assert "revenue 偏低" in page and "立即调查" in page and "$570.00" in page
    assert "营业额" in page and "Wednesday 2025-10-08" in page
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        parse_svg(svg)


def test_total_impact_takes_each_stores_largest():
    alerts = pl.DataFrame([
        alert_row(7, "A", "revenue", "CRITICAL", impact_usd=570.0),
        alert_row(7, "A", "order_count", "CRITICAL", impact_usd=540.0),
        alert_row(8, "B", "aov", "WARNING", impact_usd=30.5),
        alert_row(9, "C", "headcount", "WARNING", impact_usd=None),
    ], schema=report.ALERT_SCHEMA)
    assert report.total_impact(alerts) == 600.5
    assert report.total_impact(alerts.clear()) == 0.0


def test_report_without_alerts_says_so():
    data = report_data()
    quiet = report.ReportData(DAY, data.health, data.alerts.clear(), data.series.clear())
    page = report.build_report_html(quiet)
    assert page.count("<svg") == 1 and "No alerts on this day" in page


def test_email_fragment_inlines_every_style():
    email = report.build_email_html(report_data())
    assert email.startswith('<div style="font-family:')
    assert "class=" not in email and "<style" not in email and "<html" not in email
    assert email.count("<svg") == 3
    assert f'style="{report.STYLES["badge"]};{report.STYLES["sev-critical"]}"' in email
    assert not re.search(r'style="[^"]*" style=', email)  # one style attribute per element
    at_risk = report.STATUS_COLOURS["AT_RISK"][0]  # a tile's own colour survives
    assert f'style="{report.STYLES["tile-n"]};color:{at_risk}"' in email


# ---------------------------------------------------------------------------------------
# Reading (SQLite here, MariaDB in the browser test) and the CLI


@pytest.fixture()
def sqlite_analytics(tmp_path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'analytics.sqlite'}")
    schema.metadata.create_all(engine)
    health = health_frame({1: ("One", [(90.0, "HEALTHY")] * 20),
                           2: (NASTY, [(40.0, "AT_RISK")] * 20)})
    series = series_frame(days=70, store_id=2, flagged={DAY: "CRITICAL"})
    other = series_frame(days=70, store_id=1, metric="aov")  # not alerted: not read
    alert = alert_row(2, NASTY, "revenue", "CRITICAL")
    with engine.begin() as conn:
        conn.execute(schema.store_health_scores.insert(), health.to_dicts())
        conn.execute(schema.store_anomaly_scores.insert(), pl.concat([series, other]).to_dicts())
        conn.execute(schema.store_anomaly_alerts.insert(), [alert])
    return engine


def test_load_report_data_reads_the_windows_on_sqlite(sqlite_analytics: sa.Engine):
    data = report.load_report_data(sqlite_analytics, DAY)
    assert data.health.schema == pl.Schema(report.HEALTH_SCHEMA)
    assert data.health.get_column("metric_date").min() == DAY - timedelta(days=13)
    assert data.alerts.height == 1 and data.alerts.item(0, "store_name") == NASTY
    assert data.alerts.item(0, "acknowledged") is False
    assert data.series.select("store_id", "metric_name").unique().rows() == [(2, "revenue")]
    assert data.series.height == 60
    assert data.series.get_column("metric_date").max() == DAY
    page = report.build_report_html(data)
    assert page.count("<svg") == 2

    with pytest.raises(report.NoReportData, match=r"2030-01-01: store_health_scores covers "
                                                  r"2025-09-19\.\.2025-10-08"):
        report.load_report_data(sqlite_analytics, date(2030, 1, 1))


def test_load_report_data_on_empty_tables(tmp_path: Path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    schema.metadata.create_all(engine)
    with pytest.raises(report.NoReportData, match="is empty"):
        report.load_report_data(engine, DAY)


def last_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI's last stderr line, which must be its one `error:` line."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), lines
    return lines[-1]


def test_report_arguments(capsys: pytest.CaptureFixture[str]):
    assert main(["report", "--date", "10/08/2025"]) == 2
    assert "not a YYYY-MM-DD date" in last_error(capsys)
    assert main(["report"]) == 2
    assert "--date" in last_error(capsys)
    assert main(["report", "--date", "2025-10-08", "--out", ""]) == 2
    assert "--out" in last_error(capsys)


# ---------------------------------------------------------------------------------------
# The real day in a real browser

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
]


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.iterdir()))}"
    result = subprocess.run(
        [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def screenshot(tmp_path: Path, page: Path, png: Path, width: int, height: int) -> Path:
    run_chromium(tmp_path, f"--screenshot={png}", f"--window-size={width},{height}",
                 page.as_uri())
    assert png_size(png) == (width, height)
    # A blank page compresses to ~10 KB; the grid, table and charts to far more.
    assert png.stat().st_size > 60_000, f"{png} looks blank ({png.stat().st_size} bytes)"
    return png


@pytest.mark.browser
def test_report_of_a_critical_day_renders_in_chromium(
    backfilled_analytics: sa.Engine, settings: AppConfig, tmp_path: Path
):
    data = report.load_report_data(backfilled_analytics, DAY)
    assert "CRITICAL" in data.alerts.get_column("severity").to_list()  # the injected anomaly
    out = tmp_path / "out" / f"report-{DAY}.html"
    assert main(["report", "--date", str(DAY), "--out", str(out)]) == 0
    assert report.write_report(backfilled_analytics, DAY, out) == out

    dom = run_chromium(tmp_path, "--dump-dom", out.as_uri()).stdout
    # One card per incident: the lead alert's chart, the incident's other alerts as
    # evidence; every alert of the day belongs to one.
    assert data.alerts["incident_id"].null_count() == 0 and data.alerts.height > 0
    incidents = data.alerts["incident_id"].n_unique()
    assert incidents < data.alerts.height  # Midtown's drop is one incident of several alerts
    assert dom.count("<svg") == incidents + 1
    assert dom.count('data-chart="control"') == incidents
    assert dom.count("data-incident-id=") == incidents
    for (incident_id,) in data.alerts.select("incident_id").unique().iter_rows():
        card = re.search(rf'data-incident-id="{incident_id}".*?</svg>', dom, flags=re.S)
        assert card and 'data-metric="' in card.group(0), incident_id
        assert card.group(0).count("<circle") >= 30  # about 60 days of points
    assert "营业额" in dom and "Midtown Manhattan" in dom
    stores = data.health.filter(pl.col("metric_date") == DAY).height
    assert f'data-stores="{stores}"' in dom

    top = screenshot(tmp_path, out, tmp_path / "report-full.png", 1280, 2000)
    first = data.alerts.sort("metric_name").row(0, named=True)
    for a in data.alerts.iter_rows(named=True):
        if a["metric_name"] == "revenue":
            first = a
    card_page = tmp_path / "card.html"
    card_page.write_text(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>'
        f'{report.stylesheet()}</style></head><body><div class="report">'
        f"{report.alert_card_html(first, data.series, DAY)}</div></body></html>",
        encoding="utf-8",
    )
    chart = screenshot(tmp_path, card_page, tmp_path / "report-chart.png", 1280, 560)

    if os.environ.get("STORE_ANOMALY_SAVE_SCREENSHOTS"):
        images = PROJECT / "docs" / "images"
        images.mkdir(parents=True, exist_ok=True)
        screenshot(tmp_path, out, images / "report-top.png", 1280, 1010)
        shutil.copyfile(chart, images / "report-chart.png")
        for png in images.glob("report-*.png"):
            assert png.stat().st_size < 400_000, png
    assert top.exists() and chart.exists()


def test_report_command_errors_are_one_line(backfilled_analytics: sa.Engine, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "r.html"
    assert main(["report", "--date", "2030-01-01", "--out", str(out)]) == 2
    message = last_error(capsys)
    assert "no analytics data for 2030-01-01" in message
    assert "2025-07-01..2026-02-15" in message and "mysql root@127.0.0.1:3306/test" in message
    assert not out.exists()

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["report", "--date", str(DAY), "--out", str(blocker / "r.html")]) == 2
    assert "cannot write the report" in last_error(capsys)


def test_a_district_report_shows_only_its_stores(
    backfilled_analytics: sa.Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report --district`: the district's stores, their alerts and incidents only."""
    whole, district = tmp_path / "chain.html", tmp_path / "district.html"
    assert main(["report", "--date", str(DAY), "--out", str(whole)]) == 0
    assert main(["report", "--date", str(DAY), "--district", " district a ", "--out",
                 str(district)]) == 0
    capsys.readouterr()
    page, chain = district.read_text(), whole.read_text()
    # District A: 1101, 1102, 1106 and 1108 (1112 is not open yet).
    assert 'data-stores="4"' in page and 'data-stores="4"' not in chain
    assert "Midtown Manhattan" in page and "Brooklyn Heights" not in page
    assert 'id="alert-1101-revenue"' in page
    assert main(["report", "--date", str(DAY), "--district", "Nowhere"]) == 2
    assert "--district 'Nowhere'" in last_error(capsys)


def test_critical_emails_attach_the_daily_report(
    backfilled_analytics: sa.Engine, tmp_path: Path
) -> None:
    from store_anomaly_assets import notify as nf
    from store_anomaly_assets.defs.sensors import attach_reports

    alerts = read_frame(backfilled_analytics, sa.text(
        "SELECT id, alert_date, severity, incident_id FROM store_anomaly_alerts "
        "WHERE alert_date = '2025-10-08' AND severity = 'CRITICAL'"))
    assert alerts.height
    tokens = tuple(nf.alert_token(i, s) for i, s in alerts.select("id", "severity").iter_rows())
    person = nf.Recipient("vp", "VP East", "regional_vp",
                          ("mailto://vp@example.com", "json://127.0.0.1:9/hook"))
    email, hook = (nf.Channel(person, url) for url in person.urls)
    plan = nf.DeliveryPlan(
        [nf.Message(email, "t", "b", "failure", tokens),
         nf.Message(hook, "t", "b", "failure", tokens)], {})
    attached = attach_reports(backfilled_analytics, plan, alerts, tmp_path)
    email_message, hook_message = attached.messages
    assert hook_message.attachments == ()  # webhooks get the text only
    (report,) = email_message.attachments
    html = Path(report).read_text()
    assert Path(report).name == "store_anomaly_report_2025-10-08.html"
    # The grid and one chart per incident of the day, at least the CRITICAL ones'.
    assert html.count("<svg") >= alerts["incident_id"].n_unique() + 1
