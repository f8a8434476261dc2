"""Alert notifications: the routing file, the messages, and delivery through apprise.

Everything here but `send`, `deliver` and the two small database helpers at the end is
pure: the routing file becomes dataclasses, messages are built from a polars frame of
alerts plus the store master, and the delivery bookkeeping (which channel already has
which alert) is plain data that the sensors keep in their cursors.

The routing follows the operational guide's escalation path (section 8):

- CRITICAL: regional VP, operations director and district manager, right away;
- WARNING: district manager, in a daily digest;
- INFO: store managers, in a weekly digest.

A *recipient* is a person or team with a role and one or more apprise URLs (its
*channels*). Each tick sends at most one message per channel, listing that recipient's
alerts most severe first, then by dollar impact. An alert is marked notified
(`notified_at`) only once every channel it was routed to has accepted it; a channel that
failed gets it again on the next tick, and channels that already have it never get it
twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
import sqlalchemy as sa
import yaml

from store_anomaly_assets.stats.alerts import LABELS, SEVERITY_ORDER
from store_anomaly_assets.storage.frames import read_frame
from store_anomaly_assets.storage.schema import store_anomaly_alerts

log = logging.getLogger(__name__)

ROLES: dict[str, tuple[str, str]] = {
    "store_manager": ("store manager", "店长"),
    "district_manager": ("district manager", "区域经理"),
    "regional_vp": ("regional VP", "大区副总裁"),
    "operations_director": ("operations director", "运营总监"),
    "data_team": ("data team", "数据团队"),
}
CADENCES = ("immediate", "daily", "weekly")
SEVERITY_ZH = {"CRITICAL": "严重", "WARNING": "警告", "INFO": "提示"}
# apprise's notification types: they colour Slack/Teams cards.
NOTIFY_TYPES = {"CRITICAL": "failure", "WARNING": "warning", "INFO": "info"}
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class RoutingError(ValueError):
    """The routing file cannot be used; the message says where in the file and why."""


# --------------------------------------------------------------------------------------
# The routing file


@dataclass(frozen=True)
class EscalationStep:
    """Who receives alerts of one severity, and when."""

    roles: tuple[str, ...]
    cadence: str  # immediate | daily | weekly


# The guide's escalation path (section 8), with the district manager kept informed of
# CRITICAL alerts in their district.
DEFAULT_ESCALATION: dict[str, EscalationStep] = {
    "CRITICAL": EscalationStep(("regional_vp", "operations_director", "district_manager"),
                               "immediate"),
    "WARNING": EscalationStep(("district_manager",), "daily"),
    "INFO": EscalationStep(("store_manager",), "weekly"),
}


def _norm(text: str | None) -> str | None:
    return None if text is None else " ".join(str(text).split()).casefold()


@dataclass(frozen=True)
class Recipient:
    """A person or team: a role, the stores it covers, and its apprise URLs."""

    id: str
    name: str
    role: str
    urls: tuple[str, ...] = field(repr=False)
    stores: frozenset[int] = frozenset()
    # (region or None for any region, district); names normalised (casefold, one space).
    # District names repeat across regions in t_shop_info ("District A" in East and West).
    districts: frozenset[tuple[str | None, str]] = frozenset()
    regions: frozenset[str] = frozenset()
    all_stores: bool = False

    def covers(self, store_id: int, district: str | None, region: str | None) -> bool:
        if self.all_stores or store_id in self.stores:
            return True
        if region is not None and _norm(region) in self.regions:
            return True
        if district is None:
            return False
        d, r = _norm(district), _norm(region)
        return any(d == dd and (rr is None or rr == r) for rr, dd in self.districts)

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(Channel(self, url) for url in self.urls)

    @property
    def role_label(self) -> str:
        en, zh = ROLES[self.role]
        return f"{en} / {zh}"


@dataclass(frozen=True)
class Channel:
    """One apprise URL of one recipient: the unit of delivery and of retry."""

    recipient: Recipient
    url: str = field(repr=False)

    @property
    def id(self) -> str:
        """Stable and safe to store: the URL (which may hold a secret) only as a hash."""
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        return f"{self.recipient.id}#{digest}"

    @property
    def label(self) -> str:
        """For logs: who and which service, never the URL itself."""
        return f"{self.recipient.name} ({self.recipient.role}) via {self.url.split(':', 1)[0]}"


@dataclass(frozen=True)
class DigestSchedule:
    """When the daily (WARNING) and weekly (INFO) digests go out, in local time."""

    timezone: str = "America/New_York"
    daily_at: time = time(8, 0)
    weekly_on: int = 0  # Monday
    weekly_at: time = time(8, 0)

    def slot(self, cadence: str, now: datetime) -> datetime | None:
        """Start of the newest `cadence` slot at or before `now` (aware); None if immediate."""
        if cadence == "immediate":
            return None
        local = now.astimezone(ZoneInfo(self.timezone))
        if cadence == "daily":
            start = datetime.combine(local.date(), self.daily_at, local.tzinfo)
            return start if start <= local else start - timedelta(days=1)
        if cadence == "weekly":
            monday_offset = (local.weekday() - self.weekly_on) % 7
            start = datetime.combine(
                local.date() - timedelta(days=monday_offset), self.weekly_at, local.tzinfo
            )
            return start if start <= local else start - timedelta(days=7)
        raise ValueError(f"unknown cadence {cadence!r}")


@dataclass(frozen=True)
class Routing:
    recipients: tuple[Recipient, ...]
    schedule: DigestSchedule = DigestSchedule()
    escalation: Mapping[str, EscalationStep] = field(
        default_factory=lambda: dict(DEFAULT_ESCALATION)
    )

    def with_role(self, role: str) -> list[Recipient]:
        return [r for r in self.recipients if r.role == role]

    def recipients_for(
        self, severity: str, store_id: int, district: str | None, region: str | None
    ) -> list[Recipient]:
        """Everyone an alert of `severity` at this store goes to, in routing-file order."""
        step = self.escalation.get(severity)
        if step is None:
            return []
        return [
            r for r in self.recipients
            if r.role in step.roles and r.covers(store_id, district, region)
        ]


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(text: str, where: str) -> str:
    """Replace `${NAME}` with the environment variable, so secrets stay out of the file."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise RoutingError(f"{where}: environment variable {name} is not set")
        return os.environ[name]

    return _ENV_REF.sub(value, text)


def _url_is_valid(url: str) -> bool:
    import apprise

    return bool(apprise.Apprise().add(url))


def _as_list(value: Any, where: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [value]
    if isinstance(value, list):
        return value
    raise RoutingError(f"{where}: expected a list, got {type(value).__name__}")


def _parse_time(value: Any, where: str) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 8:00 as the sexagesimal integer 480 (minutes).
        hours, minutes = divmod(value, 60)
        if 0 <= hours < 24:
            return time(hours, minutes)
    if isinstance(value, str):
        try:
            return time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise RoutingError(f"{where}: {value!r} is not a time of day such as \"08:00\"")


def _parse_schedule(raw: Any, default_timezone: str) -> DigestSchedule:
    if raw is None:
        return DigestSchedule(timezone=default_timezone)
    if not isinstance(raw, dict):
        raise RoutingError("schedule: expected a mapping")
    unknown = set(raw) - {"timezone", "daily_at", "weekly_on", "weekly_at"}
    if unknown:
        raise RoutingError(f"schedule: unknown key(s) {sorted(unknown)}")
    tz = str(raw.get("timezone") or default_timezone)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RoutingError(f"schedule.timezone: {tz!r} is not an IANA time zone") from None
    weekday = str(raw.get("weekly_on", "monday")).strip().casefold()
    if weekday not in WEEKDAY_NAMES:
        raise RoutingError(f"schedule.weekly_on: {weekday!r} is not a weekday name")
    return DigestSchedule(
        timezone=tz,
        daily_at=_parse_time(raw.get("daily_at", "08:00"), "schedule.daily_at"),
        weekly_on=WEEKDAY_NAMES.index(weekday),
        weekly_at=_parse_time(raw.get("weekly_at", "08:00"), "schedule.weekly_at"),
    )


def _parse_escalation(raw: Any) -> dict[str, EscalationStep]:
    escalation = dict(DEFAULT_ESCALATION)
    if raw is None:
        return escalation
    if not isinstance(raw, dict):
        raise RoutingError("escalation: expected a mapping of severity to roles and cadence")
    for severity, step in raw.items():
        where = f"escalation.{severity}"
        if severity not in SEVERITY_ORDER:
            raise RoutingError(f"{where}: severity must be one of {list(SEVERITY_ORDER)}")
        if not isinstance(step, dict):
            raise RoutingError(f"{where}: expected a mapping with roles and cadence")
        roles = tuple(str(r) for r in _as_list(step.get("roles"), f"{where}.roles"))
        bad = [r for r in roles if r not in ROLES or r == "data_team"]
        if bad or not roles:
            raise RoutingError(f"{where}.roles: {bad or 'empty'}; use {list(ROLES)[:4]}")
        cadence = str(step.get("cadence", DEFAULT_ESCALATION[severity].cadence))
        if cadence not in CADENCES:
            raise RoutingError(f"{where}.cadence: {cadence!r} is not one of {list(CADENCES)}")
        escalation[severity] = EscalationStep(roles, cadence)
    return escalation


def _parse_district(raw: Any, where: str) -> tuple[str | None, str]:
    """`District A` (in any region) or `{region: East, district: District A}`."""
    if isinstance(raw, dict):
        unknown = set(raw) - {"region", "district"}
        if unknown or not raw.get("district"):
            raise RoutingError(f"{where}: use {{region: ..., district: ...}} or a plain name")
        region = raw.get("region")
        return (_norm(region) if region else None), _norm(raw["district"])
    if isinstance(raw, str) and raw.strip():
        return None, _norm(raw)
    raise RoutingError(f"{where}: {raw!r} is not a district name")


def _parse_recipient(raw: Any, index: int, validate_urls: bool) -> Recipient:
    where = f"recipients[{index}]"
    if not isinstance(raw, dict):
        raise RoutingError(f"{where}: expected a mapping")
    unknown = set(raw) - {"id", "name", "role", "urls", "stores", "districts", "regions",
                          "all_stores"}
    if unknown:
        raise RoutingError(f"{where}: unknown key(s) {sorted(unknown)}")
    name = str(raw.get("name") or "").strip()
    if not name:
        raise RoutingError(f"{where}: a recipient needs a name")
    where = f"{where} ({name})"
    role = str(raw.get("role") or "")
    if role not in ROLES:
        raise RoutingError(f"{where}.role: {role!r} is not one of {list(ROLES)}")
    urls = []
    for n, url in enumerate(_as_list(raw.get("urls"), f"{where}.urls")):
        url = expand_env(str(url).strip(), f"{where}.urls[{n}]")
        if validate_urls and not _url_is_valid(url):
            # The URL may hold a secret: name its scheme only.
            raise RoutingError(
                f"{where}.urls[{n}]: apprise cannot use this {url.split(':', 1)[0]}:// URL"
            )
        urls.append(url)
    if not urls:
        raise RoutingError(f"{where}: needs at least one apprise URL under urls")
    try:
        stores = frozenset(int(s) for s in _as_list(raw.get("stores"), f"{where}.stores"))
    except (TypeError, ValueError):
        raise RoutingError(f"{where}.stores: store ids are whole numbers") from None
    districts = frozenset(
        _parse_district(d, f"{where}.districts[{n}]")
        for n, d in enumerate(_as_list(raw.get("districts"), f"{where}.districts"))
    )
    regions = frozenset(_norm(r) for r in _as_list(raw.get("regions"), f"{where}.regions"))
    all_stores = bool(raw.get("all_stores", False))
    if role in ("operations_director", "data_team") and not (stores or districts or regions):
        all_stores = True  # chain-wide roles cover every store unless narrowed
    if not (all_stores or stores or districts or regions):
        raise RoutingError(
            f"{where}: a {role} needs stores, districts or regions (or all_stores: true)"
        )
    return Recipient(
        id=str(raw.get("id") or name), name=name, role=role, urls=tuple(urls),
        stores=stores, districts=districts, regions=regions, all_stores=all_stores,
    )


def parse_routing(
    raw: Mapping[str, Any] | None,
    default_timezone: str = "America/New_York",
    validate_urls: bool = True,
) -> Routing:
    """A Routing from the parsed YAML/TOML mapping; RoutingError says what is wrong."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise RoutingError("the routing file must be a mapping with a recipients list")
    unknown = set(raw) - {"schedule", "escalation", "recipients"}
    if unknown:
        raise RoutingError(f"unknown top-level key(s) {sorted(unknown)}")
    recipients = tuple(
        _parse_recipient(r, i, validate_urls)
        for i, r in enumerate(_as_list(raw.get("recipients"), "recipients"))
    )
    seen: set[str] = set()
    for r in recipients:
        if r.id in seen:
            raise RoutingError(f"recipient id {r.id!r} is used twice: give each a unique id")
        seen.add(r.id)
    return Routing(
        recipients=recipients,
        schedule=_parse_schedule(raw.get("schedule"), default_timezone),
        escalation=_parse_escalation(raw.get("escalation")),
    )


def load_routing(
    path: str | os.PathLike[str],
    default_timezone: str = "America/New_York",
    validate_urls: bool = True,
) -> Routing:
    """Read a routing file: YAML (.yaml, .yml) or TOML (.toml)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise RoutingError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {exc}") from None
    try:
        return parse_routing(raw, default_timezone, validate_urls)
    except RoutingError as exc:
        raise RoutingError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------------------
# Messages and delivery bookkeeping (pure)


@dataclass(frozen=True)
class Message:
    """One message to one channel, and the items (alert or failure tokens) it carries."""

    channel: Channel
    title: str
    body: str
    notify_type: str
    items: tuple[str, ...]
    attachments: tuple[str, ...] = ()  # file paths, e.g. the daily HTML report


@dataclass(frozen=True)
class DeliveryPlan:
    """The tick's messages, and for each pending item the channels it must reach."""

    messages: list[Message]
    required: dict[str, frozenset[str]]  # item token -> channel ids
    unrouted: list[str] = field(default_factory=list)  # items nobody is routed to


Delivered = dict[str, list[str]]  # item token -> channel ids that accepted it


def record_deliveries(
    delivered: Mapping[str, Collection[str]], messages: Sequence[Message],
    results: Sequence[bool],
) -> Delivered:
    """The bookkeeping after a tick: each accepted message's items gain its channel."""
    out = {token: set(channels) for token, channels in delivered.items()}
    for message, ok in zip(messages, results, strict=True):
        if ok:
            for token in message.items:
                out.setdefault(token, set()).add(message.channel.id)
    return {token: sorted(channels) for token, channels in out.items()}


def settle(
    required: Mapping[str, Collection[str]], delivered: Mapping[str, Collection[str]]
) -> list[str]:
    """Items every required channel has accepted (the ones to mark as notified)."""
    return sorted(
        token for token, channels in required.items()
        if channels and set(channels) <= set(delivered.get(token, ()))
    )


def alert_token(alert_id: int, severity: str) -> str:
    """An alert at one severity: escalation is a new notification, so it is in the token."""
    return f"{alert_id}:{severity}"


def parse_alert_token(token: str) -> tuple[int, str]:
    alert_id, severity = token.split(":", 1)
    return int(alert_id), severity


ALERT_READ_COLUMNS = [
    "id", "store_id", "store_name", "alert_date", "metric_name", "severity", "metric_value",
    "expected_value", "z_score", "rules_violated", "scope", "impact_usd", "description_en",
    "description_zh", "recommended_action", "recommended_action_zh",
]
ALERT_TYPES: dict[str, pl.DataType | type[pl.DataType]] = {
    "id": pl.Int64, "store_id": pl.Int64, "store_name": pl.String, "alert_date": pl.Date,
    "metric_name": pl.String, "severity": pl.String, "metric_value": pl.Float64,
    "expected_value": pl.Float64, "z_score": pl.Float64, "rules_violated": pl.String,
    "scope": pl.String, "impact_usd": pl.Float64, "description_en": pl.String,
    "description_zh": pl.String, "recommended_action": pl.String,
    "recommended_action_zh": pl.String,
}
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


def format_alert(number: int, row: Mapping[str, Any]) -> str:
    """One alert, bilingual, as a numbered block of a message."""
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
    lines.append(f"   Action: {row['recommended_action'] or ''}")
    lines.append(f"   建议: {row['recommended_action_zh'] or ''}")
    lines.append(f"   Alert id 告警编号: {row['id']} (acknowledge with notes / 处理后请确认并备注: "
                 f"store-anomaly ack {row['id']} --by NAME --note ...)")
    return "\n".join(lines)


def _counts(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    counts = {s: sum(1 for r in rows if r["severity"] == s) for s in SEVERITY_ORDER}
    present = [(s, n) for s, n in counts.items() if n]
    en = ", ".join(f"{n} {s}" for s, n in present)
    zh = "，".join(f"{SEVERITY_ZH[s]} {n} 条" for s, n in present)
    return en, zh


def render_alert_message(
    recipient: Recipient, rows: Sequence[Mapping[str, Any]], more: int = 0
) -> tuple[str, str, str]:
    """Title, body and apprise type of one recipient's alert message."""
    counts_en, counts_zh = _counts(rows)
    worst = rows[0]["severity"]
    title = (f"[{worst}] Store anomaly alerts: {counts_en} | "
             f"门店异常告警：{counts_zh}")
    intro = [
        f"Hello {recipient.name} ({recipient.role_label}),",
        f"{len(rows)} store anomaly alert(s) for your stores, most severe first.",
        f"您好，以下 {len(rows)} 条门店异常告警需要您关注（按严重程度排序）。",
    ]
    blocks = [format_alert(i, r) for i, r in enumerate(rows, start=1)]
    outro = []
    if more:
        outro.append(f"{more} more alert(s) follow in a later message. / "
                     f"另有 {more} 条告警将在后续消息中发送。")
    outro.append(
        "Response: CRITICAL same day, WARNING within 48 hours, INFO at the weekly review. / "
        "响应时限：严重告警当日处理，警告48小时内处理，提示类在每周复盘中处理。"
    )
    body = "\n\n".join(["\n".join(intro), *blocks, "\n".join(outro)])
    return title, body, NOTIFY_TYPES.get(worst, "info")


def plan_alert_notifications(
    alerts: pl.DataFrame,
    routing: Routing,
    delivered: Mapping[str, Collection[str]] | None = None,
    stores: pl.DataFrame | None = None,
    max_alerts: int = 50,
) -> DeliveryPlan:
    """The messages for `alerts` (un-notified, unacknowledged, of the severities due).

    One message per channel, listing the alerts routed to its recipient that the channel
    does not have yet, at most `max_alerts` (the rest wait for the next tick).
    """
    delivered = delivered or {}
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
            title, body, kind = render_alert_message(
                recipient, [r for _, r in shown], more=len(todo) - len(shown)
            )
            messages.append(Message(channel, title, body, kind, tuple(t for t, _ in shown)))
    return DeliveryPlan(messages, required, unrouted)


def due_cadences(
    schedule: DigestSchedule, now: datetime, done: Mapping[str, str]
) -> dict[str, str | None]:
    """The cadences due at `now` and the slot each would complete.

    `immediate` is always due. A digest is due when its newest slot (e.g. today 08:00) is
    later than the last slot it completed (`done`, ISO timestamps from the cursor).
    """
    due: dict[str, str | None] = {"immediate": None}
    for cadence in ("daily", "weekly"):
        slot = schedule.slot(cadence, now)
        assert slot is not None
        last = done.get(cadence)
        if last is None or datetime.fromisoformat(last) < slot:
            due[cadence] = slot.isoformat()
    return due


def initial_digest_state(schedule: DigestSchedule, now: datetime) -> dict[str, str]:
    """A new sensor's digests start with the *next* slot: the current ones count as done."""
    return {c: s.isoformat() for c in ("daily", "weekly")
            if (s := schedule.slot(c, now)) is not None}


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


# --------------------------------------------------------------------------------------
# Delivery (the network) and the two database touches


def send(url: str, title: str, body: str, notify_type: str = "info",
         timeout: float = 30.0, attach: Sequence[str] = ()) -> bool:
    """Send one message through apprise; True when the service accepted it."""
    import apprise

    app = apprise.Apprise()
    if not app.add(url):
        log.error("apprise cannot use a %s:// URL", url.split(":", 1)[0])
        return False
    return bool(app.notify(body=body, title=title, notify_type=apprise.NotifyType(notify_type),
                           body_format=apprise.NotifyFormat.TEXT, timeout=timeout,
                           attach=list(attach) or None))


EMAIL_SCHEMES = ("mailto", "mailtos")


def is_email(channel: Channel) -> bool:
    return channel.url.split(":", 1)[0].lower() in EMAIL_SCHEMES


Sender = Callable[..., bool]


def deliver(messages: Sequence[Message], sender: Sender = send, timeout: float = 30.0,
            max_workers: int = 8) -> list[bool]:
    """Send every message (in parallel threads); one True/False per message, in order.

    A sender that raises counts as a failed delivery, so one bad channel never stops the
    others.
    """

    def one(message: Message) -> bool:
        extra = {"attach": message.attachments} if message.attachments else {}
        try:
            ok = bool(sender(message.channel.url, message.title, message.body,
                             message.notify_type, timeout, **extra))
        except Exception as exc:  # a broken channel must not stop the others
            log.error("delivery to %s raised %s", message.channel.label, type(exc).__name__)
            return False
        if not ok:
            log.warning("delivery to %s failed; retried on the next tick", message.channel.label)
        return ok

    if not messages:
        return []
    with ThreadPoolExecutor(max_workers=min(max_workers, len(messages))) as pool:
        return list(pool.map(one, messages))


def read_pending_alerts(engine: sa.Engine, severities: Iterable[str], since: date) -> pl.DataFrame:
    """Unacknowledged, un-notified alerts of `severities` dated `since` or later."""
    t = store_anomaly_alerts
    severities = list(severities)
    query = sa.select(*[t.c[c] for c in ALERT_READ_COLUMNS]).where(
        t.c.notified_at.is_(None),
        t.c.acknowledged.is_(False),
        t.c.severity.in_(severities),
        t.c.alert_date >= since,
    ).order_by(t.c.id)
    frame = read_frame(engine, query, schema_overrides=ALERT_TYPES)
    return frame.with_columns(
        [pl.col(c).cast(ty, strict=False) for c, ty in ALERT_TYPES.items()]
    )


def mark_notified(engine: sa.Engine, tokens: Iterable[str], now: datetime | None = None) -> int:
    """Set notified_at on the alerts of `tokens`, if they still have that severity.

    A recompute that changed an alert's severity in the meantime cleared notified_at on
    purpose (the escalation must be notified): the severity guard leaves it alone.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None, microsecond=0)
    by_severity: dict[str, list[int]] = {}
    for token in tokens:
        alert_id, severity = parse_alert_token(token)
        by_severity.setdefault(severity, []).append(alert_id)
    t = store_anomaly_alerts
    marked = 0
    with engine.begin() as conn:
        for severity, ids in by_severity.items():
            marked += conn.execute(
                t.update()
                .where(t.c.id.in_(ids), t.c.severity == severity, t.c.notified_at.is_(None))
                .values(notified_at=now)
            ).rowcount
    return marked
