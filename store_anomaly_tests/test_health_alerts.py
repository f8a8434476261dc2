"""Steps 6, 9 and 10 (`stats/kpis.py`, `stats/health.py`, `stats/alerts.py`) against
DESIGN section 5, with hand-computed expectations."""

from __future__ import annotations

import statistics
from datetime import date, timedelta

import polars as pl
import pytest

from store_anomaly_assets.core import alerts, health, kpis, spc
from store_anomaly_assets.core.settings import SpcSettings

S = SpcSettings(alert_profile="guide")  # the guide's formulas, DESIGN section 5
D = date(2025, 3, 8)  # a Saturday
MONDAY = date(2025, 1, 6)

SCORE_SCHEMA = {c: pl.Float64 for c in spc.SCORE_COLUMNS} | {
    "store_id": pl.Int64, "metric_date": pl.Date, "metric_name": pl.String,
    "store_name": pl.String, "baseline_n": pl.Int32, "rules_violated": pl.String,
    "severity": pl.String, **{f"we_rule_{n}": pl.Boolean for n in range(1, 6)},
    "eligible": pl.Boolean,
}


def ago(n: int, d: date = D) -> date:
    return d - timedelta(days=n)


# ------------------------------------------------------------------------------ health


def days_frame(*rows: tuple[int, date, bool | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"store_id": s, "metric_date": d, "store_name": f"Store {s}", "eligible": e}
         for s, d, e in rows],
        schema={"store_id": pl.Int64, "metric_date": pl.Date, "store_name": pl.String,
                "eligible": pl.Boolean},
    )


def z_scores(rows: list[tuple[int, date, str, float | None]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        rows, schema={"store_id": pl.Int64, "metric_date": pl.Date, "metric_name": pl.String,
                      "z_score": pl.Float64}, orient="row",
    )
    return spc.with_adverse_z(frame)


def inspections(rows: list[tuple[int, date, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"store_id": pl.Int64, "metric_date": pl.Date,
                      "inspection_score": pl.Float64}, orient="row",
    )


NO_INSPECTIONS = inspections([])


def one(frame: pl.DataFrame, store_id: int = 1, d: date = D) -> dict:
    rows = frame.filter((pl.col("store_id") == store_id) & (pl.col("metric_date") == d))
    assert rows.height == 1
    return rows.row(0, named=True)


def test_health_all_dimensions_hand_computed() -> None:
    scores = z_scores([
        (1, D, "revenue", -1.0),  # 80
        (1, D, "order_count", 2.0),  # good side: 100
        (1, D, "aov", None),  # no z: not part of the mean
        (1, D, "production_count", 1.0),  # good side: 100
        (1, D, "avg_production_seconds", 2.0),  # 60
        (1, D, "scheduled_hours", 1.5),  # both ways: 70
        (1, D, "orders_per_labor_hour", -0.5),  # both ways: 90
        (1, D, "headcount", 3.0),  # good side: 100
        (1, D, "revenue_per_labor_hour", -1.0),  # 80
        (1, D, "inspection_score", None),
    ])
    got = one(health.health_scores(days_frame((1, D, True)), scores,
                                   inspections([(1, ago(3), 70.0)]), S))
    assert got["sales_score"] == pytest.approx(90.0)
    assert got["operations_score"] == pytest.approx(80.0)
    assert got["staffing_score"] == pytest.approx(85.0)
    assert got["quality_score"] == 70.0
    # 0.35*90 + 0.25*80 + 0.25*85 + 0.15*70
    assert got["health_score"] == pytest.approx(83.25)
    assert got["health_status"] == "HEALTHY"
    assert got["dimensions_used"] == "sales,operations,staffing,quality"
    assert got["store_name"] == "Store 1"
    assert list(got) == health.HEALTH_COLUMNS


def test_health_redistributes_weights_over_present_dimensions() -> None:
    scores = z_scores([(1, D, "revenue", -1.0), (1, D, "order_count", 0.0)])  # sales 90
    got = one(health.health_scores(days_frame((1, D, True)), scores,
                                   inspections([(1, ago(1), 70.0)]), S))
    assert got["operations_score"] is None and got["staffing_score"] is None
    # (0.35*90 + 0.15*70) / 0.50
    assert got["health_score"] == pytest.approx(84.0)
    assert got["dimensions_used"] == "sales,quality"
    staffing_only = z_scores([(1, D, "headcount", -2.5)])  # 50
    got = one(health.health_scores(days_frame((1, D, True)), staffing_only, NO_INSPECTIONS, S))
    assert (got["health_score"], got["health_status"], got["dimensions_used"]) == (
        pytest.approx(50.0), "AT_RISK", "staffing")


def test_health_clamps_metric_scores_at_zero() -> None:
    scores = z_scores([(1, D, "revenue", -6.0), (1, D, "aov", -5.0),
                       (1, D, "scheduled_hours", -9.0), (1, D, "headcount", 0.0)])
    got = one(health.health_scores(days_frame((1, D, True)), scores, NO_INSPECTIONS, S))
    assert got["sales_score"] == 0.0  # not -20
    assert got["staffing_score"] == pytest.approx(50.0)  # (0 + 100) / 2, not -40
    # (0.35*0 + 0.25*50) / 0.60
    assert got["health_score"] == pytest.approx(20.83)


@pytest.mark.parametrize(
    ("quality", "status"),
    [(100.0, "HEALTHY"), (80.0, "HEALTHY"), (79.99, "WATCH"), (60.0, "WATCH"),
     (59.99, "AT_RISK"), (0.0, "AT_RISK")],
)
def test_health_status_boundaries(quality: float, status: str) -> None:
    got = one(health.health_scores(days_frame((1, D, True)), z_scores([]),
                                   inspections([(1, D, quality)]), S))
    assert (got["health_score"], got["health_status"]) == (quality, status)
    assert got["dimensions_used"] == "quality"


@pytest.mark.parametrize(
    ("z", "status"), [(-1.0, "HEALTHY"), (-1.0005, "WATCH"), (-2.0, "WATCH"),
                      (-2.0005, "AT_RISK")],
)
def test_health_status_boundaries_from_z(z: float, status: str) -> None:
    got = one(health.health_scores(days_frame((1, D, True)), z_scores([(1, D, "revenue", z)]),
                                   NO_INSPECTIONS, S))
    assert got["health_status"] == status


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([(1, ago(30), 55.0)], 55.0),  # 30 days back is inside the lookback
        ([(1, ago(31), 55.0)], None),  # 31 is not
        ([(1, D, 66.0)], 66.0),  # the day itself
        ([(1, D + timedelta(days=1), 66.0)], None),  # never from the future
        ([(1, ago(20), 50.0), (1, ago(5), 90.0), (1, ago(40), 10.0)], 90.0),  # the latest
        ([(2, ago(1), 50.0)], None),  # another store's inspection
    ],
)
def test_quality_lookback(rows: list, expected: float | None) -> None:
    got = one(health.health_scores(days_frame((1, D, True), (2, D, True)), z_scores([]),
                                   inspections(rows), S))
    assert got["quality_score"] == expected
    assert got["health_score"] == expected
    assert got["health_status"] == ("INSUFFICIENT_DATA" if expected is None else "AT_RISK"
                                    if expected < 60 else "HEALTHY" if expected >= 80
                                    else "WATCH")


def test_health_insufficient_data() -> None:
    scores = z_scores([(1, D, "revenue", -1.0), (2, D, "revenue", -1.0),
                       (4, D, "revenue", None)])
    insp = inspections([(1, ago(2), 90.0), (2, ago(2), 90.0), (3, ago(2), 90.0)])
    days = days_frame((1, D, False), (2, D, None), (3, D, False), (4, D, True), (5, D, True))
    got = health.health_scores(days, scores, insp, S)
    assert got.height == 5
    for row in got.iter_rows(named=True):
        assert row["health_status"] == "INSUFFICIENT_DATA", row
        assert row["health_score"] is None and row["dimensions_used"] is None
        assert all(row[f"{d}_score"] is None for d in ("sales", "operations", "staffing",
                                                        "quality"))


def test_health_per_store_and_day() -> None:
    d2 = D + timedelta(days=1)
    scores = z_scores([(1, D, "revenue", -1.0), (1, d2, "revenue", -3.0),
                       (2, D, "revenue", -2.0)])
    got = health.health_scores(days_frame((1, D, True), (1, d2, True), (2, D, True)),
                               scores, NO_INSPECTIONS, S)
    assert got.select("store_id", "metric_date", "health_score").rows() == [
        (1, D, 80.0), (1, d2, 40.0), (2, D, 60.0)]


# ------------------------------------------------------------------------------ alerts


def score_row(store_id: int, metric: str, value: float | None, z: float | None,
              severity: str | None = None, rules: str | None = None, cl: float | None = 100.0,
              d: date = D, eligible: bool = True) -> dict:
    row: dict = dict.fromkeys(SCORE_SCHEMA)
    row.update(store_id=store_id, metric_date=d, metric_name=metric,
               store_name=f"Store {store_id}", metric_value=value, z_score=z, cl=cl,
               severity=severity, rules_violated=rules, eligible=eligible,
               **{f"we_rule_{n}": bool(rules and f"WE{n}" in rules) for n in range(1, 6)})
    return row


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCORE_SCHEMA)


def scope_of(built: pl.DataFrame) -> dict[tuple[int, str], str]:
    return {(r["store_id"], r["metric_name"]): r["scope"] for r in built.iter_rows(named=True)}


def test_scope_four_scored_two_alert_is_network() -> None:
    rows = [score_row(1, "revenue", 60.0, -4.0, "CRITICAL", "WE1"),
            score_row(2, "revenue", 75.0, -2.5, "WARNING", "Z>2"),
            score_row(3, "revenue", 99.0, -0.1), score_row(4, "revenue", 101.0, 0.1)]
    assert scope_of(alerts.build_alerts(frame(rows))) == {
        (1, "revenue"): "NETWORK", (2, "revenue"): "NETWORK"}


def test_scope_five_scored_two_alert_is_store() -> None:
    rows = [score_row(1, "revenue", 60.0, -4.0, "CRITICAL", "WE1"),
            score_row(2, "revenue", 75.0, -2.5, "WARNING", "Z>2"),
            *[score_row(s, "revenue", 100.0, 0.0) for s in (3, 4, 5)]]
    assert set(scope_of(alerts.build_alerts(frame(rows))).values()) == {"STORE"}


def test_scope_single_store_is_store() -> None:
    built = alerts.build_alerts(frame([score_row(1, "revenue", 60.0, -4.0, "CRITICAL", "WE1")]))
    assert scope_of(built) == {(1, "revenue"): "STORE"}
    one_of_two = [score_row(1, "revenue", 60.0, -4.0, "CRITICAL", "WE1"),
                  score_row(2, "revenue", 100.0, 0.0)]
    assert scope_of(alerts.build_alerts(frame(one_of_two))) == {(1, "revenue"): "STORE"}


def test_scope_counts_only_scored_stores_of_that_metric_and_day() -> None:
    other_day = D + timedelta(days=1)
    rows = [
        score_row(1, "revenue", 60.0, -4.0, "CRITICAL", "WE1"),
        score_row(2, "revenue", 75.0, -2.5, "WARNING", "Z>2"),
        score_row(3, "revenue", 100.0, 0.0),
        score_row(4, "revenue", 100.0, 0.0),
        score_row(5, "revenue", 100.0, None, cl=None, eligible=False),  # not scored
        # other metrics and days do not count toward revenue on D
        score_row(3, "order_count", 50.0, -4.0, "CRITICAL", "WE1"),
        score_row(1, "order_count", 100.0, 0.0),
        score_row(2, "order_count", 100.0, 0.0),
        score_row(4, "order_count", 100.0, 0.0),
        score_row(3, "revenue", 50.0, -4.0, "CRITICAL", "WE1", d=other_day),
        *[score_row(s, "revenue", 100.0, 0.0, d=other_day) for s in (1, 2, 4)],
    ]
    built = alerts.build_alerts(frame(rows))
    got = {(r["store_id"], r["metric_name"], r["alert_date"]): r["scope"]
           for r in built.iter_rows(named=True)}
    assert got == {
        (1, "revenue", D): "NETWORK", (2, "revenue", D): "NETWORK",
        (3, "order_count", D): "STORE", (3, "revenue", other_day): "STORE",
    }


def test_scope_for_inspections_counts_eligible_inspected_stores() -> None:
    def insp(store_id: int, value: float, eligible: bool = True) -> dict:
        severity = "CRITICAL" if value < 70 else "WARNING" if value < 80 else None
        rules = "SCORE<70" if value < 70 else "SCORE<80" if value < 80 else None
        return score_row(store_id, "inspection_score", value, None,
                         severity if eligible else None, rules if eligible else None,
                         cl=None, eligible=eligible)

    network = [insp(1, 65.0), insp(2, 75.0), insp(3, 90.0), insp(4, 50.0, eligible=False)]
    assert set(scope_of(alerts.build_alerts(frame(network))).values()) == {"NETWORK"}
    store = [insp(1, 65.0), insp(2, 75.0), insp(3, 90.0), insp(4, 95.0), insp(5, 85.0)]
    assert set(scope_of(alerts.build_alerts(frame(store))).values()) == {"STORE"}


def test_alert_fields_and_impact() -> None:
    rows = [score_row(1, "revenue", 750.0, -3.5, "CRITICAL", "WE1,WE2", cl=1000.0),
            score_row(1, "order_count", 150.0, -2.5, "WARNING", "Z>2", cl=200.0),
            score_row(1, "aov", 9.0, 0.3, None, None, cl=9.1),
            score_row(2, "avg_production_seconds", 180.0, 2.5, "WARNING", "WE2", cl=120.0)]
    built = alerts.build_alerts(frame(rows))
    assert built.columns == alerts.ALERT_COLUMNS
    assert built.height == 3  # one alert per flagged row; the aov row has no severity
    rev = one_alert(built, 1, "revenue")
    assert (rev["alert_date"], rev["severity"], rev["metric_value"], rev["expected_value"],
            rev["z_score"], rev["rules_violated"], rev["impact_usd"]) == (
        D, "CRITICAL", 750.0, 1000.0, -3.5, "WE1,WE2", 250.0)
    assert one_alert(built, 1, "order_count")["impact_usd"] is None
    assert one_alert(built, 2, "avg_production_seconds")["expected_value"] == 120.0
    assert rev["recommended_action"] == alerts.recommend("CRITICAL", "revenue")[0]
    assert rev["recommended_action_zh"] == alerts.recommend("CRITICAL", "revenue")[1]


def one_alert(built: pl.DataFrame, store_id: int, metric: str) -> dict:
    rows = built.filter((pl.col("store_id") == store_id) & (pl.col("metric_name") == metric))
    assert rows.height == 1
    return rows.row(0, named=True)


def test_no_alerts_gives_empty_frame_with_columns() -> None:
    built = alerts.build_alerts(frame([score_row(1, "revenue", 100.0, 0.1)]))
    assert built.is_empty() and built.columns == alerts.ALERT_COLUMNS


def test_texts_revenue_low() -> None:
    assert D.weekday() == 5
    built = alerts.build_alerts(frame([
        score_row(1, "revenue", 750.0, -3.5, "CRITICAL", "WE1,WE2", cl=1000.0)]))
    row = built.row(0, named=True)
    en, zh = row["description_en"], row["description_zh"]
    for part in ("Revenue", "$750.00", "$1,000.00", "25.0% below", "Saturday", "2025-03-08",
                 "z = -3.50", "one day beyond 3σ (WE1)", "2 of the last 3 days beyond 2σ (WE2)"):
        assert part in en, part
    for part in ("营业额", "$750.00", "$1,000.00", "低 25.0%", "周六", "2025-03-08", "z = -3.50",
                 "单日超出3σ（WE1）", "近3天中有2天超出2σ（WE2）"):
        assert part in zh, part
    assert (en, zh) == alerts.describe({"metric_name": "revenue", "alert_date": D,
                                        "metric_value": 750.0, "expected_value": 1000.0,
                                        "rules_violated": "WE1,WE2", "z_score": -3.5})


@pytest.mark.parametrize(
    ("metric", "value", "expected", "z", "rules", "en_parts", "zh_parts"),
    [
        ("avg_production_seconds", 180.0, 120.0, 3.2, "WE1",
         ["Average production time", "180 s", "120 s", "50.0% above", "z = +3.20",
          "one day beyond 3σ (WE1)"],
         ["平均出品时长", "180 s", "120 s", "高 50.0%", "z = +3.20", "单日超出3σ（WE1）"]),
        ("scheduled_hours", 64.0, 80.0, -1.4, "WE3,WE4",
         ["Scheduled labor hours", "64.0 h", "80.0 h", "20.0% below", "z = -1.40",
          "4 of the last 5 days beyond 1σ (WE3)",
          "8 days in a row on one side of the centre line (WE4)"],
         ["排班工时", "64.0 h", "80.0 h", "低 20.0%", "z = -1.40", "近5天中有4天超出1σ（WE3）",
          "连续8天位于中心线同一侧（WE4）"]),
        ("order_count", 150.0, 200.0, -0.9, "WE5",
         ["Order count", "150", "200", "25.0% below", "z = -0.90",
          "6 days in a row each worse than the day before (WE5)"],
         ["订单量", "150", "200", "低 25.0%", "z = -0.90", "连续6天逐日恶化（WE5）"]),
    ],
)
def test_texts_other_metrics(metric: str, value: float, expected: float, z: float, rules: str,
                             en_parts: list[str], zh_parts: list[str]) -> None:
    en, zh = alerts.describe({"metric_name": metric, "alert_date": D, "metric_value": value,
                              "expected_value": expected, "rules_violated": rules,
                              "z_score": z})
    for part in [*en_parts, "Saturday"]:
        assert part in en, (part, en)
    for part in [*zh_parts, "周六"]:
        assert part in zh, (part, zh)


@pytest.mark.parametrize("day_offset", range(7))
def test_texts_weekday_names(day_offset: int) -> None:
    d = MONDAY + timedelta(days=day_offset)
    names = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    names_zh = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"]
    en, zh = alerts.describe({"metric_name": "revenue", "alert_date": d, "metric_value": 90.0,
                              "expected_value": 100.0, "rules_violated": "WE1",
                              "z_score": -3.1})
    assert f"{names[day_offset]} {d}" in en and f"for a {names[day_offset]}" in en
    assert names_zh[day_offset] in zh


def test_texts_inspection() -> None:
    en, zh = alerts.describe({"metric_name": "inspection_score", "alert_date": D,
                              "metric_value": 69.99, "expected_value": None,
                              "rules_violated": "SCORE<70", "z_score": None})
    assert "69.99" in en and "70-point threshold" in en and "Saturday" in en
    assert "质检得分" in zh and "69.99" in zh and "低于 70 分阈值" in zh and "周六" in zh


def test_texts_threshold_only_warning_in_words() -> None:
    en, zh = alerts.describe({"metric_name": "revenue", "alert_date": D, "metric_value": 75.0,
                              "expected_value": 100.0, "rules_violated": "Z>2",
                              "z_score": -2.5})
    assert "Z>2" not in en and "2σ" in en
    assert "Z>2" not in zh and "2σ" in zh


def test_recommended_actions_by_severity_and_dimension() -> None:
    critical = {m: alerts.recommend("CRITICAL", m) for m in
                ("revenue", "avg_production_seconds", "scheduled_hours", "inspection_score")}
    # Different checks for each dimension, in both languages.
    assert len({en for en, _ in critical.values()}) == 4
    assert len({zh for _, zh in critical.values()}) == 4
    assert "weather" in critical["revenue"][0] and "天气" in critical["revenue"][1]
    assert "equipment downtime" in critical["avg_production_seconds"][0]
    assert "设备故障" in critical["avg_production_seconds"][1]
    assert "schedule" in critical["scheduled_hours"][0]
    assert "排班" in critical["scheduled_hours"][1]
    assert "re-inspection" in critical["inspection_score"][0]
    assert "复检" in critical["inspection_score"][1]
    # Same dimension, same checks.
    assert alerts.recommend("CRITICAL", "order_count") == critical["revenue"]
    en, zh = critical["revenue"]
    assert "Same day" in en and "regional manager" in en and "当日" in zh and "区域经理" in zh
    warn_en, warn_zh = alerts.recommend("WARNING", "revenue")
    assert "48 hours" in warn_en and "48小时" in warn_zh
    assert "weather" in warn_en and "天气" in warn_zh
    assert warn_en != en and warn_zh != zh
    info_en, info_zh = alerts.recommend("INFO", "revenue")
    assert "Weekly" in info_en and "每周" in info_zh
    assert len({en, warn_en, info_en}) == 3
    # The guide's INFO response is monitoring only, whatever the dimension.
    assert alerts.recommend("INFO", "scheduled_hours") == (info_en, info_zh)


# ------------------------------------------------------------- steps 7-10 together


def alt(n: int) -> list[float]:
    return [95.0 if i % 2 == 0 else 105.0 for i in range(n)]


def kpi_rows(store_id: int, revenue: list[float], start: date = MONDAY) -> pl.DataFrame:
    n = len(revenue)
    data = {c: [None] * n for c in kpis.KPI_COLUMNS}
    data.update(store_id=[store_id] * n, metric_date=[start + timedelta(days=i) for i in range(n)],
                store_name=[f"Store {store_id}"] * n, revenue=revenue)
    return pl.DataFrame(data, schema={c: pl.Float64 for c in kpis.KPI_COLUMNS} | {
        "store_id": pl.Int64, "metric_date": pl.Date, "store_name": pl.String,
        "order_count": pl.Int64, "production_count": pl.Int64, "headcount": pl.Int64,
        "inspection_count": pl.Int64})


def test_scored_kpis_to_alerts_and_health() -> None:
    # Store 1: 91 days, a revenue drop to 70 on the last; store 2: the same drop after 27
    # days of history, enough for a baseline (>= 20 values) but not for eligibility (28).
    last = MONDAY + timedelta(days=90)
    frame = pl.concat([kpi_rows(1, [*alt(90), 70.0]),
                       kpi_rows(2, [*alt(27), 70.0], start=last - timedelta(days=27))])
    first = frame.group_by("store_id").agg(pl.col("metric_date").min().alias("first_date"))
    scored = spc.score_metrics(frame, first, S)
    built = alerts.build_alerts(scored.filter(pl.col("metric_date") == last))
    assert built.height == 1
    row = built.row(0, named=True)
    std = statistics.stdev([95.0, 105.0] * 14)
    assert (row["store_id"], row["severity"], row["rules_violated"], row["scope"]) == (
        1, "CRITICAL", "WE1", "STORE")
    assert row["expected_value"] == pytest.approx(100.0)
    assert row["impact_usd"] == pytest.approx(30.0)
    assert row["z_score"] == pytest.approx(-30 / std)
    assert "30.0% below" in row["description_en"] and "$70.00" in row["description_en"]
    assert "$100.00" in row["description_en"] and f"z = {-30 / std:+.2f}" in row["description_en"]

    days = spc.with_eligibility(
        frame.filter(pl.col("metric_date") == last).select("store_id", "metric_date",
                                                           "store_name"),
        first, S.rolling_window)
    today = scored.filter(pl.col("metric_date") == last)
    got = health.health_scores(days, today, NO_INSPECTIONS, S)
    assert got.select("store_id", "health_status").rows() == [
        (1, "AT_RISK"), (2, "INSUFFICIENT_DATA")]
    assert one(got, 1, last)["health_score"] == pytest.approx(
        max(0.0, 100 - 20 * 30 / std), abs=0.005)


# ---------------------------------------------------------------------------- KPIs


def test_build_kpis_unknown_sources_and_ratios() -> None:
    d = [MONDAY + timedelta(days=i) for i in range(6)]
    stores = pl.DataFrame({"store_id": [1, 2, 3], "store_name": ["One", "Two", "Three"],
                           "is_active": [True, False, True]})
    sales = pl.DataFrame(
        {"store_id": [1, 1, 2, 9], "metric_date": [d[0], d[2], d[0], d[0]],
         "revenue": [1000.0, 450.0, 5.0, 5.0], "order_count": [200, 90, 1, 1]},
        schema_overrides={"order_count": pl.Int64})
    production = pl.DataFrame(
        {"store_id": [1, 1], "metric_date": [d[0], d[1]], "production_count": [210, 40],
         "avg_production_seconds": [95.5, 80.0]},
        schema_overrides={"production_count": pl.Int64})
    staffing = pl.DataFrame(
        {"store_id": [1, 1, 1, 3], "metric_date": [d[0], d[1], d[3], d[3]],
         "scheduled_hours": [40.0, 16.0, 0.0, 8.0], "headcount": [5, 2, 1, 1]},
        schema_overrides={"headcount": pl.Int64})
    quality = pl.DataFrame(
        {"store_id": [1, 1, 3], "metric_date": [d[0], d[4], d[5]], "inspection_count": [1, 2, 1],
         "inspection_score": [88.0, 71.5, 64.0]},
        schema_overrides={"inspection_count": pl.Int64})
    got = kpis.build_kpis(stores, sales, production, staffing, quality)
    assert got.columns == kpis.KPI_COLUMNS
    rows = {(r["store_id"], r["metric_date"]): r for r in got.iter_rows(named=True)}
    # The inactive store and the store outside the master are dropped.
    assert sorted(rows) == [(1, d[0]), (1, d[1]), (1, d[2]), (1, d[3]), (1, d[4]),
                            (3, d[3]), (3, d[5])]
    assert got.select("store_id", "metric_date").rows() == sorted(rows)

    full = rows[(1, d[0])]
    assert full["store_name"] == "One"
    assert (full["revenue"], full["order_count"], full["aov"]) == (1000.0, 200, 5.0)
    assert full["production_count"] == 210 and full["avg_production_seconds"] == 95.5
    assert (full["scheduled_hours"], full["headcount"]) == (40.0, 5)
    assert full["orders_per_labor_hour"] == 5.0
    assert full["revenue_per_labor_hour"] == 25.0
    assert full["production_per_labor_hour"] == 5.25
    assert (full["inspection_count"], full["inspection_score"]) == (1, 88.0)

    # Production and shifts but no orders: a missing export, so sales are unknown, not 0.
    no_sales = rows[(1, d[1])]
    assert (no_sales["revenue"], no_sales["order_count"], no_sales["aov"]) == (None, None, None)
    assert no_sales["orders_per_labor_hour"] is None
    assert no_sales["revenue_per_labor_hour"] is None
    assert no_sales["production_per_labor_hour"] == 2.5
    assert no_sales["inspection_count"] == 0 and no_sales["inspection_score"] is None

    # Orders but no production or shifts: production and labor unknown.
    no_staff = rows[(1, d[2])]
    assert (no_staff["production_count"], no_staff["avg_production_seconds"]) == (None, None)
    assert no_staff["aov"] == 5.0
    assert no_staff["scheduled_hours"] is None and no_staff["headcount"] is None
    assert no_staff["orders_per_labor_hour"] is None
    assert no_staff["revenue_per_labor_hour"] is None
    assert no_staff["production_per_labor_hour"] is None

    # Zero scheduled hours: no division by zero.
    zero_hours = rows[(1, d[3])]
    assert zero_hours["scheduled_hours"] == 0.0
    assert zero_hours["orders_per_labor_hour"] is None
    assert zero_hours["revenue_per_labor_hour"] is None
    assert zero_hours["production_per_labor_hour"] is None
    assert (zero_hours["revenue"], zero_hours["order_count"]) == (None, None)

    # Only an inspection: operational values stay unknown.
    inspection_only = rows[(1, d[4])]
    for col in ("revenue", "order_count", "aov", "production_count", "avg_production_seconds",
                "scheduled_hours", "headcount", "orders_per_labor_hour",
                "revenue_per_labor_hour", "production_per_labor_hour"):
        assert inspection_only[col] is None, col
    assert (inspection_only["inspection_count"], inspection_only["inspection_score"]) == (2, 71.5)
    assert rows[(3, d[5])]["revenue"] is None and rows[(3, d[3])]["revenue"] is None
    assert rows[(3, d[3])]["production_count"] is None


def test_build_kpis_feeds_scoring() -> None:
    stores = pl.DataFrame({"store_id": [1], "store_name": ["One"], "is_active": [True]})
    empty = {
        "production": pl.DataFrame(schema={"store_id": pl.Int64, "metric_date": pl.Date,
                                           "production_count": pl.Int64,
                                           "avg_production_seconds": pl.Float64}),
        "staffing": pl.DataFrame(schema={"store_id": pl.Int64, "metric_date": pl.Date,
                                         "scheduled_hours": pl.Float64,
                                         "headcount": pl.Int64}),
        "quality": pl.DataFrame(schema={"store_id": pl.Int64, "metric_date": pl.Date,
                                        "inspection_count": pl.Int64,
                                        "inspection_score": pl.Float64}),
    }
    sales = pl.DataFrame({"store_id": [1, 1], "metric_date": [MONDAY, MONDAY + timedelta(1)],
                          "revenue": [100.0, 120.0], "order_count": [10, 12]},
                         schema_overrides={"order_count": pl.Int64})
    got = kpis.build_kpis(stores, sales, **empty)
    assert got["production_count"].to_list() == [None, None]
    assert got["aov"].to_list() == [10.0, 10.0]
    long = spc.to_long(got)
    assert sorted(set(long["metric_name"])) == ["aov", "order_count", "revenue"]
