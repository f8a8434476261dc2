"""The routing file: who receives which alerts, when, and through which apprise URLs.

The routing follows the operational guide's escalation path (section 8):

- CRITICAL: regional VP, operations director and district manager, right away;
- WARNING: district manager, in a daily digest;
- INFO: store managers, in a weekly digest.

A *recipient* is a person or team with a role and one or more apprise URLs (its
*channels*). The file is YAML (or TOML); secrets in it are written `${ENV_VAR}`. Parsing
is pure apart from the environment lookups and apprise's check that it can use each URL.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from store_anomaly_assets.core.contracts import SEVERITY_ORDER
from store_anomaly_assets.notify.delivery import url_is_usable, url_scheme

ROLES: dict[str, tuple[str, str]] = {
    "store_manager": ("store manager", "店长"),
    "district_manager": ("district manager", "区域经理"),
    "regional_vp": ("regional VP", "大区副总裁"),
    "operations_director": ("operations director", "运营总监"),
    "data_team": ("data team", "数据团队"),
}
CADENCES = ("immediate", "daily", "weekly")
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class RoutingError(ValueError):
    """The routing file cannot be used; the message says where in the file and why."""


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
        return f"{self.recipient.name} ({self.recipient.role}) via {url_scheme(self.url)}"


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
        if validate_urls and not url_is_usable(url):
            # The URL may hold a secret: name its scheme only.
            raise RoutingError(
                f"{where}.urls[{n}]: apprise cannot use this {url_scheme(url)}:// URL"
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
# Digest slots


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
