"""The daily report on a phone (420 px) and a desktop (1400 px), in headless Chromium.

The issue: at 420 px the health grid was unreadable (its SVG shrank to the screen) and the
"Insufficient data" label was cut off by the SVG's edge. Now:

- the page never scrolls sideways: `document.documentElement.scrollWidth` is the
  viewport's, and no element passes the viewport unless it sits in a box that scrolls on
  its own (`overflowing_elements`); nothing is cut off by an `overflow: hidden` box
  (`clipped_text`) or by an SVG's edge (`svg_text_outside`);
- the health grid keeps its size in a box that scrolls (`[data-box="health-grid"]`), store
  labels clear of the cells and status words clear of the scores;
- on the phone, tiles wrap two a row, the English and Chinese texts stack, the control
  charts keep a legible width and scroll in their own box, the incident cards are all there;
- full-page screenshots at both widths are real PNGs of that width, and not blank. With
  STORE_ANOMALY_SAVE_SCREENSHOTS=1 the phone's top (420 x 1600) is saved to
  docs/images/report-phone.png, for the README.

The report is the backfilled chain's CRITICAL day (2025-10-08, MariaDB, as in
test_report.py); a small hand-made report covers what the chain does not have: a store
with insufficient data on the day, long names and unbroken words.
"""

from __future__ import annotations

import os
import struct
import zlib
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from browser import chromium, clipped_text, overflowing_elements
from playwright.sync_api import Page
from test_report import DAY, PROJECT, health_frame, report_data

from store_anomaly_assets import report

PHONE, DESKTOP, HEIGHT = 420, 1400, 900
README_HEIGHT = 1600


# ---------------------------------------------------------------------------------------
# Checks run in the page


def svg_text_outside(page: Page) -> list[str]:
    """SVG text cut off by its SVG's edge (the SVG viewport hides what passes it)."""
    return page.evaluate(
        """() => {
        const out = [];
        for (const svg of document.querySelectorAll('svg')) {
            const s = svg.getBoundingClientRect();
            for (const t of svg.querySelectorAll('text')) {
                const r = t.getBoundingClientRect();
                if (r.width === 0) continue;
                if (r.left < s.left - 1 || r.right > s.right + 1
                        || r.top < s.top - 1 || r.bottom > s.bottom + 1) {
                    out.push(`${svg.dataset.chart}: "${t.textContent}" `
                             + `${Math.round(r.left)}..${Math.round(r.right)} outside `
                             + `${Math.round(s.left)}..${Math.round(s.right)}`);
                }
            }
        }
        return out;
    }"""
    )


def grid_overlaps(page: Page) -> list[str]:
    """Health grid labels running into the cells, or status words into the scores."""
    return page.evaluate(
        """() => {
        const svg = document.querySelector('svg[data-chart="health-grid"]');
        const out = [];
        const cells = [...svg.querySelectorAll('rect')].map(r => r.getBoundingClientRect());
        const firstCell = Math.min(...cells.map(r => r.left));
        for (const t of svg.querySelectorAll('text[x="4"]')) {
            const r = t.getBoundingClientRect();
            if (r.right > firstCell - 2) out.push(`label "${t.textContent}" reaches the cells`);
        }
        for (const t of svg.querySelectorAll('text[font-size="14"]')) {
            const status = t.nextElementSibling;
            if (status && status.tagName === 'text'
                    && status.getBoundingClientRect().left < t.getBoundingClientRect().right + 2) {
                out.push(`"${status.textContent}" runs into score ${t.textContent}`);
            }
        }
        return out;
    }"""
    )


# report.css: below 600 px a control chart keeps this width and scrolls in its box.
PHONE_CHART_WIDTH = 600


def layout(page: Page) -> dict:
    """What the assertions read: widths, the boxes that scroll, tiles, cards, charts."""
    return page.evaluate(
        """() => {
        const rect = (el) => { const r = el.getBoundingClientRect();
            return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                    width: r.width, height: r.height}; };
        const box = document.querySelector('[data-box="health-grid"]');
        const grid = box.querySelector('svg[data-chart="health-grid"]');
        const scrolling = [...document.body.querySelectorAll('*')].filter(el => {
            const o = getComputedStyle(el).overflowX;
            return (o === 'auto' || o === 'scroll') && el.scrollWidth > el.clientWidth + 1;
        });
        const cards = [...document.querySelectorAll('[data-incident-id]')];
        return {
            viewport: document.documentElement.clientWidth,
            pageScrollWidth: document.documentElement.scrollWidth,
            pageHeight: document.documentElement.scrollHeight,
            gridBox: {overflowX: getComputedStyle(box).overflowX, rect: rect(box),
                      scrollWidth: box.scrollWidth, clientWidth: box.clientWidth},
            grid: {rect: rect(grid), width: parseFloat(grid.getAttribute('width'))},
            scrolling: scrolling.map(el => el.dataset.box || el.className),
            hiddenOverflow: [...document.body.querySelectorAll('*')].filter(el =>
                el.namespaceURI === 'http://www.w3.org/1999/xhtml'
                && getComputedStyle(el).overflowX === 'hidden').map(el => el.className),
            tiles: [...document.querySelectorAll('.tile')].map(rect),
            cards: cards.map(card => ({
                id: card.dataset.incidentId, rect: rect(card),
                texts: [...card.querySelectorAll('.text-cell')].map(rect),
                charts: [...card.querySelectorAll('svg[data-chart="control"]')].map(svg => ({
                    rect: rect(svg), box: rect(svg.parentElement),
                    viewBox: svg.getAttribute('viewBox'),
                    ratio: svg.getAttribute('height') / svg.getAttribute('width')})),
            })),
        };
    }"""
    )


# ---------------------------------------------------------------------------------------
# Screenshots


def png_facts(path: Path) -> tuple[int, int, int]:
    """A PNG's width, height and how many distinct bytes its pixel data holds.

    A blank page's filtered rows are nearly all zeros: a handful of distinct bytes.
    """
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", blob[16:24])
    idat, at = b"", 8
    while at < len(blob):
        length, kind = struct.unpack(">I4s", blob[at:at + 8])
        if kind == b"IDAT":
            idat += blob[at + 8:at + 8 + length]
        at += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def assert_real_screenshot(path: Path, width: int, height: int) -> None:
    got_width, got_height, distinct = png_facts(path)
    assert (got_width, got_height) == (width, height), path
    assert distinct > 100 and path.stat().st_size > 30_000, f"{path} looks blank"


def open_page(browser, html: Path, width: int) -> Page:
    page = browser.new_page(viewport={"width": width, "height": HEIGHT})
    page.goto(html.as_uri())
    return page


def assert_fits(page: Page, width: int) -> dict:
    """The checks every width shares; returns the layout for the width's own."""
    facts = layout(page)
    assert facts["viewport"] == width
    assert facts["pageScrollWidth"] == width  # the page itself never scrolls sideways
    assert overflowing_elements(page) == []
    assert clipped_text(page) == []
    assert svg_text_outside(page) == []
    assert grid_overlaps(page) == []
    assert facts["hiddenOverflow"] == []  # nothing hides what passes its box
    assert facts["gridBox"]["overflowX"] == "auto"
    assert facts["gridBox"]["rect"]["left"] >= 0 and facts["gridBox"]["rect"]["right"] <= width
    # The grid keeps its own size (its labels readable), whatever the screen.
    assert facts["grid"]["rect"]["width"] == pytest.approx(facts["grid"]["width"], abs=1)
    for card in facts["cards"]:
        assert card["rect"]["right"] <= width and card["rect"]["left"] >= 0
        for chart in card["charts"]:  # aspect kept; its box stays inside the card
            assert chart["viewBox"] and chart["box"]["right"] <= card["rect"]["right"]
            if width >= PHONE_CHART_WIDTH + 100:  # scaled to the card
                assert chart["rect"]["right"] <= card["rect"]["right"]
            else:  # a legible width, scrolling in its box
                assert chart["rect"]["width"] == pytest.approx(PHONE_CHART_WIDTH, abs=1)
            assert chart["rect"]["height"] / chart["rect"]["width"] == pytest.approx(
                chart["ratio"], rel=0.02)
    return facts


def assert_phone_layout(facts: dict) -> None:
    # The grid is wider than the phone: its box scrolls, and it is the first box that does.
    assert facts["gridBox"]["scrollWidth"] > facts["gridBox"]["clientWidth"]
    assert facts["scrolling"][0] == "health-grid"
    assert all(s in ("health-grid", "scroll", "scroll chart-box", "table")
               for s in facts["scrolling"]), \
        facts["scrolling"]
    # Tiles wrap two a row.
    assert len({round(t["left"]) for t in facts["tiles"]}) == 2
    # English above Chinese in every card.
    for card in facts["cards"]:
        english, chinese = card["texts"]
        assert chinese["top"] >= english["bottom"] - 1
        assert chinese["left"] == pytest.approx(english["left"], abs=1)


def assert_desktop_layout(facts: dict) -> None:
    assert facts["gridBox"]["scrollWidth"] <= facts["gridBox"]["clientWidth"]
    assert len({round(t["top"]) for t in facts["tiles"]}) == 1  # tiles on one row
    for card in facts["cards"]:  # English and Chinese side by side
        english, chinese = card["texts"]
        assert chinese["top"] == pytest.approx(english["top"], abs=1)
        assert chinese["left"] > english["right"] - 1


# ---------------------------------------------------------------------------------------
# Tests


@pytest.fixture(scope="module")
def critical_day(backfilled_analytics: sa.Engine,
                 tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The CRITICAL day's report as the CLI writes it, and its number of incidents."""
    data = report.load_report_data(backfilled_analytics, DAY)
    assert "CRITICAL" in data.alerts.get_column("severity").to_list()
    out = tmp_path_factory.mktemp("phone") / f"report-{DAY}.html"
    report.write_report_data(data, out)
    return out, data.alerts["incident_id"].n_unique()


@pytest.mark.browser
def test_critical_day_report_is_readable_on_a_phone(critical_day: tuple[Path, int],
                                                     tmp_path: Path):
    html, incidents = critical_day
    with chromium() as browser:
        page = open_page(browser, html, PHONE)
        facts = assert_fits(page, PHONE)
        assert_phone_layout(facts)
        assert incidents > 0
        assert page.locator("[data-incident-id]").count() == incidents
        assert len(facts["cards"]) == incidents
        assert page.locator(".hint").is_visible()  # "swipe the grid sideways"

        full = tmp_path / "report-phone-full.png"
        page.screenshot(path=str(full), full_page=True)
        assert_real_screenshot(full, PHONE, facts["pageHeight"])

        if os.environ.get("STORE_ANOMALY_SAVE_SCREENSHOTS"):
            readme = PROJECT / "docs" / "images" / "report-phone.png"
            readme.parent.mkdir(parents=True, exist_ok=True)
            top = browser.new_page(viewport={"width": PHONE, "height": README_HEIGHT})
            top.goto(html.as_uri())
            top.screenshot(path=str(readme))
            assert_real_screenshot(readme, PHONE, README_HEIGHT)
            assert readme.stat().st_size < 400_000, readme


@pytest.mark.browser
def test_critical_day_report_on_a_desktop(critical_day: tuple[Path, int], tmp_path: Path):
    html, incidents = critical_day
    with chromium() as browser:
        page = open_page(browser, html, DESKTOP)
        facts = assert_fits(page, DESKTOP)
        assert_desktop_layout(facts)
        assert len(facts["cards"]) == incidents
        assert not page.locator(".hint").is_visible()

        full = tmp_path / "report-desktop-full.png"
        page.screenshot(path=str(full), full_page=True)
        assert_real_screenshot(full, DESKTOP, facts["pageHeight"])


def awkward_report() -> report.ReportData:
    """Insufficient data on the day, a long store name, unbroken words and ids."""
    data = report_data()
    long_name = "Grand Central Terminal Lower Concourse Kiosk " + "Ü" * 12
    word = "x" * 160
    health = pl.concat([data.health, health_frame({
        3: ("Brand new store", [(None, "INSUFFICIENT_DATA")] * 3),
        4: (long_name, [(88.0, "HEALTHY")] * 13 + [(100.0, "HEALTHY")]),
    })])
    alerts = data.alerts.with_columns(
        pl.col("description_en") + f" {word}",
        pl.col("recommended_action_zh") + "。" + "数" * 80,
        pl.lit(f"store_id_{word}").alias("store_name"),
    )
    return report.ReportData(day=DAY, health=health, alerts=alerts, series=data.series)


@pytest.mark.browser
@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_labels_are_never_cut_off_and_long_words_wrap(width: int, tmp_path: Path):
    html = report.write_report_data(awkward_report(), tmp_path / "awkward.html")
    with chromium() as browser:
        page = open_page(browser, html, width)
        assert_fits(page, width)
        status = page.locator('svg[data-chart="health-grid"] text',
                              has_text="Insufficient data")
        assert status.count() == 1  # drawn whole, inside the SVG (assert_fits)


def test_grid_is_as_wide_as_its_labels():
    """Unit: the SVG leaves room for the longest status word and store name."""
    wide = report.health_grid_svg(awkward_report().health, DAY)
    narrow = report.health_grid_svg(report_data().health, DAY)
    def width(svg: str) -> float:
        return float(svg.split('width="', 1)[1].split('"', 1)[0])

    assert width(wide) > width(narrow)
    assert "Insufficient data 数据不足" in wide
    assert "…" in wide  # the long name, ellipsised; its title keeps it whole
    assert "<title>4 Grand Central Terminal Lower Concourse Kiosk ÜÜÜ" in wide


def test_email_keeps_the_scroll_boxes_and_drops_the_page_only_rules():
    email = report.build_email_html(report_data())
    assert f'<div style="{report.STYLES["scroll"]}" data-box="health-grid"><svg' in email
    assert "overflow-x:auto" in report.STYLES["scroll"]
    assert "display:none" in report.STYLES["hint"]  # the phone hint stays out of e-mails
    assert "@media" not in email and "!important" not in email
    assert "max-width:100%" in email.split('data-chart="health-grid"', 1)[1].split(">", 1)[0]
    assert "class=" not in email
    assert (DAY - timedelta(days=13)).isoformat() in email
