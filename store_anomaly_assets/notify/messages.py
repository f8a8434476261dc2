"""The messages: bilingual (English and Chinese) text from alert rows and failures.

Pure: a polars frame of alerts plus the store master in, titles and bodies out. The
planners decide which channel gets which message: one message per channel per tick,
listing the alerts routed to that recipient, most severe first, then by dollar impact,
that the channel does not have yet.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from store_anomaly_assets.core.alerts import LABELS, format_z
from store_anomaly_assets.core.contracts import (
    ALERT_SCHEMA,
    SEVERITY_COLOURS,
    SEVERITY_ORDER,
    SEVERITY_ZH,
)
from store_anomaly_assets.notify.delivery import DeliveryPlan, Message, alert_token, is_email
from store_anomaly_assets.notify.routing import Recipient, Routing
from store_anomaly_assets.templating import environment
from store_anomaly_assets.web.links import AckLinks, grafana_chart_url

# apprise's notification types: they colour Slack/Teams cards.
NOTIFY_TYPES = {"CRITICAL": "failure", "WARNING": "warning", "INFO": "info"}
# The alert row as messages read it (and as the pending-alerts query selects it).
ALERT_TYPES: dict[str, pl.DataType | type[pl.DataType]] = {
    "id": pl.Int64, **ALERT_SCHEMA, "incident_id": pl.Int64}
_STORE_INFO = {"store_id": pl.Int64, "store_name_cn": pl.String, "district": pl.String,
               "region": pl.String}


def prepare_alerts(alerts: pl.DataFrame, stores: pl.DataFrame | None = None) -> pl.DataFrame:
    """Alerts with the store's district, region and Chinese name, in message order.

    Order: most severe first, then the highest impact_usd (none last), then the newest,
    then by store and metric, so every message lists the same alerts the same way.
    """
    frame = alerts.with_columns(
        [pl.col(c).cast(t, strict=False) for c, t in ALERT_TYPES.items() if c in alerts.columns]
    )
    if stores is not None and stores.height:
        info = stores.select(
            [pl.col(c).cast(t, strict=False) for c, t in _STORE_INFO.items()]
        ).unique("store_id", keep="first")
        frame = frame.join(info, on="store_id", how="left")
    for column in ("store_name_cn", "district", "region"):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    return frame.with_columns(
        _rank=pl.col("severity").replace_strict(SEVERITY_ORDER, default=9, return_dtype=pl.Int32)
    ).sort(
        ["_rank", "impact_usd", "alert_date", "store_id", "metric_name"],
        descending=[False, True, True, False, False],
        nulls_last=True,
    ).drop("_rank")


def _money(value: float | None) -> str | None:
    return None if value is None else f"${value:,.2f}"


@dataclass(frozen=True)
class MessageLinks:
    """What messages link to: signed acknowledgment links and the report pages (with
    ACK_LINK_SECRET), the dashboard's control chart (with GRAFANA_URL)."""

    ack: AckLinks | None = None
    grafana_url: str | None = None
    # When the links are signed (default: when the messages are planned, on the wall
    # clock), so that a plan's messages carry the same link for an incident and a person.
    now: datetime | None = None

    def at(self, now: datetime) -> MessageLinks:
        return replace(self, now=now)

    def acknowledge(self, row: Mapping[str, Any], name: str) -> str | None:
        incident = row.get("incident_id")
        if self.ack is None or incident is None:
            return None
        return self.ack.url(incident, name, self.now)

    def chart(self, row: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] = ()) -> str | None:
        if self.grafana_url is None:
            return None
        days = [r["alert_date"] for r in (row, *rows)]
        return grafana_chart_url(self.grafana_url, row["store_id"], row["metric_name"],
                                 min(days), max(days))

    def report(self, day: date) -> str | None:
        return None if self.ack is None else self.ack.report_page(day)


def format_alert(number: int, row: Mapping[str, Any],
                 same_incident: Sequence[Mapping[str, Any]] = (),
                 ack_url: str | None = None, chart_url: str | None = None) -> str:
    """One incident, bilingual, as a numbered block of a message: its lead alert in full,
    then the other alerts of `same_incident` in this message by metric, then its links."""
    severity = row["severity"]
    label = LABELS.get(row["metric_name"])
    metric = f"{label.en} / {label.zh}" if label else row["metric_name"]
    store = f"{row['store_name'] or ''}".strip()
    if row.get("store_name_cn"):
        store = f"{store} ({row['store_name_cn']})" if store else row["store_name_cn"]
    where = " / ".join(str(x) for x in (row.get("district"), row.get("region")) if x)
    lines = [
        f"{number}. [{severity} / {SEVERITY_ZH.get(severity, severity)}] "
        f"Store {row['store_id']} {store} - {metric} - {row['alert_date']}",
    ]
    if where:
        lines.append(f"   District/Region 区域: {where}")
    lines.append(f"   EN: {row['description_en'] or ''}")
    lines.append(f"   中文: {row['description_zh'] or ''}")
    impact = _money(row.get("impact_usd"))
    if impact is not None:
        lines.append(f"   Impact 影响: {impact} (estimated cost of the gap / 估算损失)")
    if row.get("scope") == "NETWORK":
        lines.append("   Scope 范围: NETWORK - half or more of the stores alerted on this metric "
                     "that day / 全网：半数以上门店当日同一指标告警")
    if same_incident:
        labels = [LABELS.get(r["metric_name"]) for r in same_incident]
        en = ", ".join(lb.en if lb else r["metric_name"]
                       for lb, r in zip(labels, same_incident, strict=True))
        zh = "、".join(lb.zh if lb else r["metric_name"]
                      for lb, r in zip(labels, same_incident, strict=True))
        lines.append(f"   Same incident 同一事件: {en} / {zh}")
    lines.append(f"   Action: {row['recommended_action'] or ''}")
    lines.append(f"   建议: {row['recommended_action_zh'] or ''}")
    incident = row.get("incident_id")
    if chart_url:
        lines.append(f"   Control chart 控制图: {chart_url}")
    if ack_url:
        lines.append(f"   Alert id 告警编号: {row['id']} · incident 事件 #{incident}")
        lines.append(f"   Acknowledge with notes 确认并备注: {ack_url}")
    elif incident is None:
        lines.append(f"   Alert id 告警编号: {row['id']} (acknowledge with notes / "
                     f"处理后请确认并备注: store-anomaly ack {row['id']} --by NAME --note ...)")
    else:
        lines.append(f"   Alert id 告警编号: {row['id']} · incident 事件 #{incident} (acknowledge "
                     "the incident with notes / 处理后请确认该事件并备注: store-anomaly ack "
                     f"--incident {incident} --by NAME --note ...)")
    return "\n".join(lines)


def by_incident(rows: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The rows grouped by incident, in the order each incident first appears."""
    groups: dict[object, list[Mapping[str, Any]]] = {}
    for row in rows:
        key = row.get("incident_id")
        groups.setdefault(("alert", row["id"]) if key is None else key, []).append(row)
    return list(groups.values())


def _counts(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    counts = {s: sum(1 for r in rows if r["severity"] == s) for s in SEVERITY_ORDER}
    present = [(s, n) for s, n in counts.items() if n]
    en = ", ".join(f"{n} {s}" for s, n in present)
    zh = "，".join(f"{SEVERITY_ZH[s]} {n} 条" for s, n in present)
    return en, zh


def render_alert_message(
    recipient: Recipient, rows: Sequence[Mapping[str, Any]], more: int = 0,
    links: MessageLinks | None = None,
) -> tuple[str, str, str]:
    """Title, body and apprise type of one recipient's alert message."""
    links = links or MessageLinks()
    counts_en, counts_zh = _counts(rows)
    worst = rows[0]["severity"]
    title = (f"[{worst}] Store anomaly alerts: {counts_en} | "
             f"门店异常告警：{counts_zh}")
    incidents = by_incident(rows)
    intro = [
        f"Hello {recipient.name} ({recipient.role_label}),",
        f"{len(incidents)} incident(s), {len(rows)} store anomaly alert(s) for your stores, "
        "most severe first.",
        f"您好，以下 {len(incidents)} 个事件（{len(rows)} 条门店异常告警）"
        "需要您关注（按严重程度排序）。",
    ]
    blocks = [format_alert(i, group[0], group[1:], links.acknowledge(group[0], recipient.name),
                           links.chart(group[0], group[1:]))
              for i, group in enumerate(incidents, start=1)]
    outro = []
    if more:
        outro.append(f"{more} more alert(s) follow in a later message. / "
                     f"另有 {more} 条告警将在后续消息中发送。")
    outro.append(
        "Response: CRITICAL same day, WARNING within 48 hours, INFO at the weekly review. / "
        "响应时限：严重告警当日处理，警告48小时内处理，提示类在每周复盘中处理。"
    )
    for day in sorted({r["alert_date"] for r in rows}, reverse=True):
        if (url := links.report(day)) is not None:
            outro.append(f"Daily report {day} 日报: {url}")
    if links.grafana_url:
        outro.append(f"Dashboard 看板: {links.grafana_url}")
    body = "\n\n".join(["\n".join(intro), *blocks, "\n".join(outro)])
    return title, body, NOTIFY_TYPES.get(worst, "info")


_EMAIL = environment("store_anomaly_assets.notify")


def _email_card(number: int, group: Sequence[Mapping[str, Any]], name: str,
                links: MessageLinks) -> dict[str, Any]:
    lead = group[0]
    label = LABELS.get(lead["metric_name"])
    days = sorted({r["alert_date"] for r in group})
    store = f"{lead['store_name'] or ''} ({lead['store_id']})".strip()
    if lead.get("store_name_cn"):
        store = f"{store} {lead['store_name_cn']}"
    severity = lead["severity"]
    return {
        "number": number,
        "incident_id": lead.get("incident_id"),
        "alert_id": lead["id"],
        "severity": severity,
        "severity_zh": SEVERITY_ZH.get(severity, severity),
        "colour": SEVERITY_COLOURS.get(severity, "#57606a"),
        "store": store,
        "metric": f"{label.en} / {label.zh}" if label else lead["metric_name"],
        "days": str(days[0]) if len(days) == 1 else f"{days[0]} – {days[-1]}",
        "place": " · ".join(str(x) for x in (lead.get("district"), lead.get("region")) if x),
        "description_en": lead["description_en"],
        "description_zh": lead["description_zh"],
        "action_en": lead["recommended_action"],
        "action_zh": lead["recommended_action_zh"],
        "impact": _money(lead.get("impact_usd")),
        "evidence": [{"severity": r["severity"], "day": r["alert_date"],
                      "metric": (LABELS[r["metric_name"]].en if r["metric_name"] in LABELS
                                 else r["metric_name"]),
                      "z": format_z(r["z_score"])}
                     for r in group[1:]],
        "ack_url": links.acknowledge(lead, name),
        "chart_url": links.chart(lead, group[1:]),
    }


def render_alert_email(
    recipient: Recipient, rows: Sequence[Mapping[str, Any]], more: int = 0,
    links: MessageLinks | None = None,
) -> str:
    """The HTML body of one recipient's alert e-mail: one card per incident, with links."""
    links = links or MessageLinks()
    incidents = by_incident(rows)
    reports = [(day, url) for day in sorted({r["alert_date"] for r in rows}, reverse=True)
               if (url := links.report(day)) is not None]
    return _EMAIL.get_template("alert_email.html.j2").render(
        greeting=f"Hello {recipient.name} ({recipient.role_label}),",
        summary_en=f"{len(incidents)} incident(s), {len(rows)} store anomaly alert(s) for "
                   "your stores, most severe first.",
        summary_zh=f"您好，以下 {len(incidents)} 个事件（{len(rows)} 条门店异常告警）需要您关注。",
        incidents=[_email_card(i, g, recipient.name, links)
                   for i, g in enumerate(incidents, start=1)],
        more=more, reports=reports, dashboard=links.grafana_url,
    )


def plan_alert_notifications(
    alerts: pl.DataFrame,
    routing: Routing,
    delivered: Mapping[str, Collection[str]] | None = None,
    stores: pl.DataFrame | None = None,
    max_alerts: int = 50,
    links: MessageLinks | None = None,
) -> DeliveryPlan:
    """The messages for `alerts` (un-notified, unacknowledged, of the severities due).

    One message per channel, listing the alerts routed to its recipient that the channel
    does not have yet, at most `max_alerts` (the rest wait for the next tick). E-mails
    also get an HTML body; every channel gets the same links.
    """
    delivered = delivered or {}
    links = links or MessageLinks()
    links = links if links.now is not None else links.at(datetime.now(UTC))
    rows = prepare_alerts(alerts, stores).to_dicts()
    required: dict[str, frozenset[str]] = {}
    per_recipient: dict[str, list[tuple[str, dict]]] = {}
    unrouted: list[str] = []
    by_id = {r.id: r for r in routing.recipients}
    for row in rows:
        token = alert_token(row["id"], row["severity"])
        recipients = routing.recipients_for(
            row["severity"], row["store_id"], row["district"], row["region"]
        )
        if not recipients:
            unrouted.append(token)
            continue
        required[token] = frozenset(c.id for r in recipients for c in r.channels)
        for r in recipients:
            per_recipient.setdefault(r.id, []).append((token, row))
    messages = []
    for recipient_id, items in per_recipient.items():
        recipient = by_id[recipient_id]
        for channel in recipient.channels:
            todo = [(t, r) for t, r in items if channel.id not in delivered.get(t, ())]
            if not todo:
                continue
            shown = todo[:max_alerts]
            shown_rows, more = [r for _, r in shown], len(todo) - len(shown)
            title, body, kind = render_alert_message(recipient, shown_rows, more, links)
            html = (render_alert_email(recipient, shown_rows, more, links)
                    if is_email(channel) else None)
            messages.append(Message(channel, title, body, kind, tuple(t for t, _ in shown),
                                    html=html))
    return DeliveryPlan(messages, required, unrouted)


# --------------------------------------------------------------------------------------
# Data-team messages


@dataclass(frozen=True)
class CheckFailure:
    """A failed asset check evaluation, as the data team is told about it."""

    token: str  # run_id:storage_id, unique
    asset: str
    check_name: str
    severity: str
    run_id: str
    job_name: str
    partition_range: str | None
    found: str | None
    at: datetime


def _run_link(webserver_url: str | None, run_id: str) -> str:
    return f"{webserver_url}/runs/{run_id}" if webserver_url else f"run {run_id}"


def render_check_failures(
    failures: Sequence[CheckFailure], webserver_url: str | None = None
) -> tuple[str, str, str]:
    """Title, body and apprise type of a data-team message about failed asset checks."""
    errors = sum(1 for f in failures if f.severity == "ERROR")
    title = (f"[DATA] {len(failures)} asset check(s) failed ({errors} ERROR) | "
             f"数据校验失败 {len(failures)} 项")
    lines = [
        "Store anomaly pipeline: these asset checks failed. A failed check does not fail the "
        "run, so the run shows as successful. / 以下资产校验未通过（运行本身仍显示成功）。",
        "",
    ]
    for i, f in enumerate(failures, start=1):
        lines.append(f"{i}. [{f.severity}] {f.asset} / {f.check_name}")
        lines.append(f"   Job {f.job_name}, {_run_link(webserver_url, f.run_id)}, "
                     f"at {f.at:%Y-%m-%d %H:%M} UTC"
                     + (f", range {f.partition_range}" if f.partition_range else ""))
        if f.found:
            lines.append(f"   Found: {f.found[:1000]}")
    lines += ["", "Check store_anomaly_pipeline_log (step 12) and rerun the range once fixed. / "
              "请查看 pipeline_log 第12步，修复后重跑该日期范围。"]
    return title, "\n".join(lines), "failure" if errors else "warning"


def render_run_failure(
    job_name: str, run_id: str, message: str, steps: Sequence[str],
    partition_range: str | None, webserver_url: str | None = None,
) -> tuple[str, str, str]:
    """Title, body and apprise type of a data-team message about a failed run."""
    title = f"[DATA] Run failed: {job_name} | 运行失败：{job_name}"
    lines = [
        f"Job {job_name} failed: {_run_link(webserver_url, run_id)}"
        + (f", range {partition_range}" if partition_range else "") + ".",
        f"Failed step(s): {', '.join(steps) if steps else 'n/a'}",
        f"Error: {message[:2000]}",
        "",
        "The analytics tables keep their previous rows for the failed range; rerun it once "
        "fixed (store-anomaly run --backfill-from ... --backfill-to ...). / "
        "失败日期范围保留原有数据，修复后请重跑。",
    ]
    return title, "\n".join(lines), "failure"


def plan_data_team(
    items: Sequence[str], routing: Routing, render: Callable[[list[str]], tuple[str, str, str]],
    delivered: Mapping[str, Collection[str]] | None = None,
) -> DeliveryPlan:
    """One message per data-team channel listing the items it does not have yet."""
    delivered = delivered or {}
    channels = [c for r in routing.with_role("data_team") for c in r.channels]
    required = {t: frozenset(c.id for c in channels) for t in items} if channels else {}
    messages = []
    for channel in channels:
        todo = [t for t in items if channel.id not in delivered.get(t, ())]
        if todo:
            title, body, kind = render(todo)
            messages.append(Message(channel, title, body, kind, tuple(todo)))
    return DeliveryPlan(messages, required, [] if channels else list(items))
