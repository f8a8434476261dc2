"""Step 10: tiered, bilingual alerts from the day's scores.

One alert per store, day and metric at the highest severity. Scope is NETWORK when at
least two stores, and at least half of the stores scored on that metric that day, alert
together: a chain-wide pattern (weather, a holiday, a source outage) is a different
investigation from one store's problem. Texts follow the guide's alert response protocol.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import polars as pl

from store_anomaly_assets.core.calendar import EVENT_PREFIX
from store_anomaly_assets.core.contracts import ALERT_COLUMNS, SEVERITY_ORDER
from store_anomaly_assets.core.settings import SpcSettings
from store_anomaly_assets.core.spc import METRICS


@dataclass(frozen=True)
class Label:
    en: str
    zh: str
    unit: str  # "usd", "count", "seconds", "hours", "ratio", "points"


LABELS: dict[str, Label] = {
    "revenue": Label("Revenue", "营业额", "usd"),
    "order_count": Label("Order count", "订单量", "count"),
    "aov": Label("Average order value", "客单价", "usd"),
    "production_count": Label("Drinks produced", "出品数量", "count"),
    "avg_production_seconds": Label("Average production time", "平均出品时长", "seconds"),
    "scheduled_hours": Label("Scheduled labor hours", "排班工时", "hours"),
    "headcount": Label("Staff on schedule", "排班人数", "count"),
    "orders_per_labor_hour": Label("Orders per labor hour", "人时订单数", "ratio"),
    "revenue_per_labor_hour": Label("Revenue per labor hour", "人时营业额", "usd"),
    "inspection_score": Label("Quality inspection score", "质检得分", "points"),
}
RULE_WORDS: dict[str, tuple[str, str]] = {
    "WE1": ("one day beyond 3σ (WE1)", "单日超出3σ（WE1）"),
    "WE2": ("2 of the last 3 days beyond 2σ (WE2)", "近3天中有2天超出2σ（WE2）"),
    "WE3": ("4 of the last 5 days beyond 1σ (WE3)", "近5天中有4天超出1σ（WE3）"),
    "WE4": (
        "8 days in a row on one side of the centre line (WE4)",
        "连续8天位于中心线同一侧（WE4）",
    ),
    "WE5": ("6 days in a row each worse than the day before (WE5)", "连续6天逐日恶化（WE5）"),
    "CUSUM": ("a sustained shift away from the expected level (CUSUM)",
              "持续偏离预期水平（CUSUM累积和）"),
}
_THRESHOLD = re.compile(r"^Z>(\d+(?:\.\d+)?)$")


def rule_words(token: str) -> tuple[str, str]:
    """A `rules_violated` token in English and Chinese words."""
    if token in RULE_WORDS:
        return RULE_WORDS[token]
    threshold = _THRESHOLD.match(token)
    if threshold:
        k = threshold.group(1)
        return f"one day beyond {k}σ", f"单日超出{k}σ"
    return token, token


# The guide's investigation checklist for a CRITICAL or WARNING alert (section 8), as the
# acknowledgment page and the messages show it: (English, Chinese).
CHECKLIST: tuple[tuple[str, str], ...] = (
    ("Verify data quality: is the metric data correct? Check for data gaps or ETL issues.",
     "核实数据质量：指标数据是否正确？检查数据缺失或ETL问题。"),
    ("Check operational factors: equipment downtime? Staffing changes? Menu changes?",
     "检查运营因素：设备故障？人员变动？菜单调整？"),
    ("Review external factors: weather events? Local construction? Competitor activity?",
     "排查外部因素：天气？周边施工？竞品活动？"),
    ("Compare with the portfolio: is this store-specific or affecting several locations?",
     "与其他门店比较：是单店问题还是多店同时受影响？"),
    ("Check cannibalization: did a new store open nearby recently?",
     "检查分流：附近是否新开门店？"),
    ("Document findings: record the root cause and the action taken.",
     "记录结论：写下根本原因和已采取的措施。"),
    ("Acknowledge the incident with your notes.",
     "确认该事件并填写备注。"),
)

WEEKDAYS = [
    ("Monday", "周一"), ("Tuesday", "周二"), ("Wednesday", "周三"), ("Thursday", "周四"),
    ("Friday", "周五"), ("Saturday", "周六"), ("Sunday", "周日"),
]

# The guide's alert response protocol, with the checks that fit each dimension.
_RESPONSE = {
    "CRITICAL": (
        "Same day: investigate immediately. Verify the data first, then {check}. Identify the "
        "root cause, escalate to the regional manager, and acknowledge with notes.",
        "当日处理：立即调查。先核实数据，再{check}。找出根本原因，上报区域经理，并在系统中确认并备注。",
    ),
    "WARNING": (
        "Within 48 hours: review the metric's trend and {check}. Schedule a follow-up with the "
        "store.",
        "48小时内：查看该指标趋势并{check}。与门店安排跟进。",
    ),
    "INFO": (
        "Weekly review: monitor during the regular dashboard review and note it in the weekly "
        "report.",
        "每周复盘：在例行看板复盘中关注，并记入周报。",
    ),
}
_CHECKS = {
    "sales": (
        "check operational factors (equipment, staffing, menu changes), external factors "
        "(weather, construction, competitors) and whether a new store opened nearby",
        "检查运营因素（设备、人员、菜单调整）、外部因素（天气、施工、竞争对手）以及附近是否有新店开业",
    ),
    "operations": (
        "check equipment downtime, bar staffing and product mix",
        "检查设备故障、吧台人手和产品结构",
    ),
    "staffing": (
        "check the schedule for gaps, call-outs and overtime against demand",
        "检查排班缺口、临时缺勤以及工时与客流是否匹配",
    ),
    "quality": (
        "review the failed inspection items with the store manager and schedule a re-inspection",
        "与店长复核不合格项并安排复检",
    ),
}


def format_value(value: float | None, unit: str, decimals: int | None = None) -> str:
    """A value in a metric's unit (`LABELS[...].unit`), as alert texts and reports write it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    default, suffix = {"usd": (2, ""), "seconds": (0, " s"), "hours": (1, " h"),
                       "count": (0, "")}.get(unit, (2, ""))
    places = default if decimals is None else decimals
    prefix = "$" if unit == "usd" else ""
    return f"{prefix}{value:,.{places}f}{suffix}"


def format_z(z: float | None) -> str:
    """A z-score as every text, page and message writes it."""
    return "n/a" if z is None else f"{z:+.2f}"


def describe(row: dict) -> tuple[str, str]:
    """The English and Chinese description of one alert row."""
    label = LABELS[row["metric_name"]]
    day = row["alert_date"]
    weekday_en, weekday_zh = WEEKDAYS[day.weekday()]
    value, expected = row["metric_value"], row["expected_value"]
    value_s, expected_s = format_value(value, label.unit), format_value(expected, label.unit)
    rules_text = row["rules_violated"] or ""
    if rules_text.startswith(EVENT_PREFIX):
        return _describe_event(row, label, rules_text)
    rules = [r for r in rules_text.split(",") if r]
    rules_en = "; ".join(rule_words(r)[0] for r in rules)
    rules_zh = "；".join(rule_words(r)[1] for r in rules)
    if row["metric_name"] == "inspection_score":
        threshold = rules_en.replace("SCORE<", "")
        en = (f"{label.en} was {value_s} on {weekday_en} {day}, "
              f"below the {threshold}-point threshold.")
        zh = f"{day}（{weekday_zh}）{label.zh}为 {value_s}，低于 {threshold} 分阈值。"
        return en, zh
    gap = (value - expected) / expected * 100 if expected else None
    gap_en = (f"{abs(gap):.1f}% {'below' if gap < 0 else 'above'} the expected {expected_s} "
              f"for a {weekday_en}") if gap is not None else f"expected {expected_s}"
    gap_zh = (f"比{weekday_zh}预期值 {expected_s} {'低' if gap < 0 else '高'} {abs(gap):.1f}%"
              if gap is not None else f"预期值 {expected_s}")
    z = row["z_score"]
    z_s = f"z = {z:+.2f}" if z is not None else "z n/a"
    en = f"{label.en} was {value_s} on {weekday_en} {day}, {gap_en} ({z_s}). Rules: {rules_en}."
    zh = f"{day}（{weekday_zh}）{label.zh}为 {value_s}，{gap_zh}（{z_s}）。触发规则：{rules_zh}。"
    return en, zh


def _describe_event(row: dict, label: Label, rules_text: str) -> tuple[str, str]:
    """A known-event day (stats/calendar.py): the gap, and that it was expected."""
    name = rules_text[len(EVENT_PREFIX):].split(",")[0]
    day = row["alert_date"]
    weekday_en, weekday_zh = WEEKDAYS[day.weekday()]
    value, expected = row["metric_value"], row["expected_value"]
    value_s, expected_s = format_value(value, label.unit), format_value(expected, label.unit)
    gap = (value - expected) / expected * 100 if expected else None
    gap_en = (f"{abs(gap):.1f}% {'below' if gap < 0 else 'above'} the expected {expected_s} "
              f"for a usual {weekday_en}") if gap is not None else f"expected {expected_s}"
    gap_zh = f"，比平常{weekday_zh}（{expected_s}）{'低' if gap < 0 else '高'} {abs(gap):.1f}%" \
        if gap is not None else ""
    en = (f"{label.en} was {value_s} on {weekday_en} {day}, {gap_en}. Known event "
          f"'{name}': expected, left out of the baselines; no action needed.")
    zh = (f"{day}（{weekday_zh}）{label.zh}为 {value_s}{gap_zh}。"
          f"已知事件“{name}”，属预期情况，不计入基线，无需处理。")
    return en, zh


EVENT_ACTION = (
    "No action needed: a known event (holiday, planned closure or promotion). Compare with "
    "the same event last year in the weekly review.",
    "无需处理：已知事件（节假日、计划停业或促销）。在每周复盘中与去年同一事件对比即可。",
)


def recommend(severity: str, metric_name: str) -> tuple[str, str]:
    """The guide's response for the severity, with the checks for the metric's dimension."""
    check_en, check_zh = _CHECKS[METRICS[metric_name].dimension]
    en, zh = _RESPONSE[severity]
    return en.format(check=check_en), zh.format(check=check_zh)


_CONTEXT_METRICS = ("revenue", "order_count", "aov", "production_count", "scheduled_hours",
                    "headcount")


def _impact_context(scores: pl.DataFrame) -> pl.DataFrame:
    """Per store and day: value and expected value (cl) of the metrics impact needs."""
    key = ["store_id", "metric_date"]
    ctx = scores.select(key).unique()
    for m in _CONTEXT_METRICS:
        part = scores.filter(pl.col("metric_name") == m).select(
            *key, pl.col("metric_value").cast(pl.Float64).alias(f"{m}_v"),
            pl.col("cl").cast(pl.Float64).alias(f"{m}_cl"),
        ).unique(key)
        ctx = ctx.join(part, on=key, how="left")
    return ctx


def impact_expr(settings: SpcSettings) -> pl.Expr:
    """Estimated business impact in USD of an alert row joined with `_impact_context`.

    Sales metrics: lost revenue (expected minus actual revenue, orders priced at the
    expected average order value). Staffing: the labor hours out of line with the
    expected (or, for orders per labor hour, with the orders served) times
    `labor_cost_per_hour`. Production time: the extra bar time (seconds over expected
    times drinks made) times the labor cost. Inspections: the day's expected revenue
    times the points below the WARNING threshold, as a share (a rough risk proxy).
    Never negative; NULL when the inputs are missing.
    """
    m, v, cl = pl.col("metric_name"), pl.col("metric_value"), pl.col("cl")
    wage = pl.lit(settings.labor_cost_per_hour)
    aov_ref = pl.coalesce(pl.col("aov_cl"), pl.col("aov_v"),
                          pl.col("revenue_cl") / pl.col("order_count_cl"))
    hours = pl.col("scheduled_hours_v")
    per_head = hours / pl.col("headcount_v")
    expected_revenue = pl.coalesce(pl.col("revenue_cl"), pl.col("revenue_v"))
    usd = (
        pl.when(m == "revenue").then(cl - v)
        .when(m.is_in(["order_count", "production_count"])).then((cl - v) * aov_ref)
        .when(m == "aov").then((cl - v) * pl.col("order_count_v"))
        .when(m == "revenue_per_labor_hour").then((cl - v) * hours)
        .when(m == "orders_per_labor_hour")
        .then((pl.col("order_count_v") / cl - hours).abs() * wage)
        .when(m == "scheduled_hours").then((v - cl).abs() * wage)
        .when(m == "headcount").then((cl - v) * per_head * wage)
        .when(m == "avg_production_seconds")
        .then((v - cl) * pl.col("production_count_v") / 3600 * wage)
        .when(m == "inspection_score")
        .then(expected_revenue * (settings.inspection_warning - v) / 100)
    )
    return pl.max_horizontal(usd, pl.lit(0.0)).round(2)


def data_issue_notes(findings: pl.DataFrame) -> pl.DataFrame:
    """Per store-day, what its ERROR data-quality findings say, in both languages.

    The guide's investigation starts with "is the data correct?": an alert on such a
    day answers it in its own text.
    """
    return findings.filter(pl.col("severity") == "ERROR").drop_nulls("store_id").group_by(
        "store_id", "metric_date").agg(
        data_issue_en=pl.format(" Possible data issue: {}.",
                                pl.col("detail").sort().str.join("; ")),
        data_issue_zh=pl.format("可能存在数据问题：{}。",
                                pl.col("detail_zh").sort().str.join("；")),
    )


def build_alerts(
    scores: pl.DataFrame,
    settings: SpcSettings | None = None,
    findings: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Alerts from scored rows (with `eligible`); only rows with a severity alert.

    With `settings` every alert carries an estimated `impact_usd` (`impact_expr`) and
    the alerts of a day are ordered by severity, then impact; without them only revenue
    alerts carry one (the original contract, kept for callers that pass no settings).
    `findings` (store_data_quality rows) add a data-issue note to the descriptions of
    the store-days with an ERROR finding.
    """
    day_metric = ["metric_date", "metric_name"]
    scored = (pl.col("z_score").is_not_null()) | (
        (pl.col("metric_name") == "inspection_score") & pl.col("eligible")
    )
    counts = scores.group_by(day_metric).agg(
        scored.sum().alias("n_scored"), pl.col("severity").is_not_null().sum().alias("n_alerting")
    )
    alerts = (
        scores.filter(pl.col("severity").is_not_null())
        .join(counts, on=day_metric, how="left")
        .with_columns(
            scope=pl.when((pl.col("n_alerting") >= 2)
                          & (2 * pl.col("n_alerting") >= pl.col("n_scored")))
            .then(pl.lit("NETWORK")).otherwise(pl.lit("STORE")),
            expected_value=pl.col("cl"),
        )
    )
    if settings is None:
        alerts = alerts.with_columns(
            # Revenue lost against the weekday's expectation.
            impact_usd=pl.when(pl.col("metric_name") == "revenue")
            .then((pl.col("cl") - pl.col("metric_value")).round(2)),
        )
    else:
        alerts = alerts.join(_impact_context(scores), on=["store_id", "metric_date"],
                             how="left").with_columns(impact_usd=impact_expr(settings))
    alerts = alerts.rename({"metric_date": "alert_date"})
    if alerts.is_empty():
        return pl.DataFrame(schema={c: alerts.schema.get(c, pl.String) for c in ALERT_COLUMNS})
    texts = [describe(r) for r in alerts.select(
        "metric_name", "alert_date", "metric_value", "expected_value", "rules_violated", "z_score"
    ).iter_rows(named=True)]
    actions = [
        EVENT_ACTION if (r or "").startswith(EVENT_PREFIX) else recommend(s, m)
        for s, m, r in alerts.select("severity", "metric_name", "rules_violated").iter_rows()
    ]
    alerts = alerts.with_columns(
        description_en=pl.Series([t[0] for t in texts], dtype=pl.String),
        description_zh=pl.Series([t[1] for t in texts], dtype=pl.String),
        recommended_action=pl.Series([a[0] for a in actions], dtype=pl.String),
        recommended_action_zh=pl.Series([a[1] for a in actions], dtype=pl.String),
    )
    if findings is not None and not findings.is_empty():
        notes = data_issue_notes(findings).rename({"metric_date": "alert_date"})
        alerts = alerts.join(notes, on=["store_id", "alert_date"], how="left").with_columns(
            description_en=pl.concat_str("description_en",
                                         pl.col("data_issue_en").fill_null("")),
            description_zh=pl.concat_str("description_zh",
                                         pl.col("data_issue_zh").fill_null("")),
        )
    return alerts.select(ALERT_COLUMNS).sort(
        pl.col("alert_date"), pl.col("severity").replace_strict(SEVERITY_ORDER),
        pl.col("impact_usd"), pl.col("store_id"), pl.col("metric_name"),
        descending=[False, False, True, False, False], nulls_last=True,
    )


def describe_incidents(incidents: pl.DataFrame, alerts: pl.DataFrame) -> pl.DataFrame:
    """`incidents` with description_en and description_zh, from their alerts' texts.

    `alerts` carry `incident_key`; an incident reads as its primary metric's latest alert
    text, then what else moved with it: "Same incident: order count, drinks produced
    (6 alerts, 2025-10-08)."
    """
    labels_en = {m: label.en.lower() for m, label in LABELS.items()}
    labels_zh = {m: label.zh for m, label in LABELS.items()}
    primary = (
        alerts.join(incidents.select("incident_key", "primary_metric"), on="incident_key")
        .filter(pl.col("metric_name") == pl.col("primary_metric"))
        .sort("alert_date", descending=True)
        .group_by("incident_key", maintain_order=True)
        .agg(pl.col("description_en").first(), pl.col("description_zh").first())
    )
    others = (
        alerts.join(incidents.select("incident_key", "primary_metric"), on="incident_key")
        .filter(pl.col("metric_name") != pl.col("primary_metric"))
        .group_by("incident_key")
        .agg(pl.col("metric_name").unique().sort().alias("_others"))
    )
    days = pl.when(pl.col("first_date") == pl.col("last_date")).then(
        pl.col("first_date").cast(pl.String)).otherwise(
        pl.format("{} to {}", pl.col("first_date"), pl.col("last_date")))
    days_zh = pl.when(pl.col("first_date") == pl.col("last_date")).then(
        pl.col("first_date").cast(pl.String)).otherwise(
        pl.format("{} 至 {}", pl.col("first_date"), pl.col("last_date")))
    other_en = pl.col("_others").list.eval(pl.element().replace_strict(labels_en)).list.join(", ")
    other_zh = pl.col("_others").list.eval(pl.element().replace_strict(labels_zh)).list.join("、")
    n = pl.col("n_alerts").cast(pl.String)
    return (
        incidents.join(primary, on="incident_key", how="left")
        .join(others, on="incident_key", how="left")
        .with_columns(
            description_en=pl.concat_str(
                pl.col("description_en").fill_null(""),
                pl.when(pl.col("_others").list.len() > 0)
                .then(pl.format(" Same incident: {} ({} alerts, {}).", other_en, n, days))
                .when(pl.col("n_alerts") > 1)
                .then(pl.format(" ({} alerts, {}).", n, days)).otherwise(pl.lit("")),
            ).str.strip_chars(),
            description_zh=pl.concat_str(
                pl.col("description_zh").fill_null(""),
                pl.when(pl.col("_others").list.len() > 0)
                .then(pl.format("同一事件还涉及：{}（共 {} 条告警，{}）。", other_zh, n, days_zh))
                .when(pl.col("n_alerts") > 1)
                .then(pl.format("（共 {} 条告警，{}）。", n, days_zh)).otherwise(pl.lit("")),
            ),
        )
        .drop("_others")
    )
