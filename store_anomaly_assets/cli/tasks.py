"""The commands' work apart from runs and printing: lookups, listings, acknowledgments.

Each function takes the AppConfig and arguments already parsed, reaches the databases
through `resolved_databases(config)`, raises CliError for anything the user can fix, and
returns what its command prints.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.cli.errors import CliError, on_database, require_tables, scrub, secrets
from store_anomaly_assets.config import DATABASES, AppConfig
from store_anomaly_assets.db.analytics import acknowledgments as acks
from store_anomaly_assets.db.analytics import incidents
from store_anomaly_assets.db.analytics.incidents import open_incidents
from store_anomaly_assets.db.analytics.schema import store_anomaly_alerts, store_anomaly_incidents
from store_anomaly_assets.defs.resources import resolved_databases

if TYPE_CHECKING:
    from store_anomaly_assets.web.links import AckLinks

# How many of a bulk acknowledgment's alerts its preview lists.
PREVIEW_ROWS = 5


# ---------------------------------------------------------------------------- stores


def district_store_ids(config: AppConfig, district: str) -> set[int]:
    """The ids of the stores of `district` (t_shop_info.district, any case), from opshop."""
    from store_anomaly_assets.db.sources.extraction import load_store_master

    opshop = resolved_databases(config)["opshop"]
    with on_database(opshop) as engine:
        try:
            stores = load_store_master(engine)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    wanted = district.strip().lower()
    found = stores.filter(pl.col("district").str.strip_chars().str.to_lowercase() == wanted)
    if found.is_empty():
        known = sorted({d.strip() for d in stores["district"].drop_nulls() if d.strip()})
        listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        raise CliError(f"--district {district!r} is not a district of any store in "
                       f"t_shop_info ({opshop.describe()}); "
                       + (f"districts: {listed}" if known else "no store has a district"))
    return set(found["store_id"].to_list())


# ---------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class AlertQuery:
    """The `alerts` command's filters, as given."""

    severities: tuple[str, ...] = ()
    stores: tuple[int, ...] = ()
    district: str | None = None
    since: date | None = None

    def given(self) -> dict[str, object]:
        """The filters that were given, for JSON output."""
        given: dict[str, object] = {"severity": list(self.severities), "store": list(self.stores),
                                    "district": self.district, "since": self.since}
        return {k: v for k, v in given.items() if v}

    def describe(self) -> str:
        """`severity CRITICAL, WARNING; district Manhattan`, or empty."""
        parts = []
        if self.severities:
            parts.append(f"severity {', '.join(self.severities)}")
        if self.stores:
            parts.append(f"store {', '.join(map(str, self.stores))}")
        if self.district:
            parts.append(f"district {self.district}")
        if self.since:
            parts.append(f"since {self.since}")
        return "; ".join(parts)


@dataclass(frozen=True)
class AlertPage:
    rows: pl.DataFrame
    total: int  # every open alert matching the filters, not only the page


def _alert_filter(config: AppConfig, query: AlertQuery) -> acks.AlertFilter:
    store_ids: set[int] | None = set(query.stores) if query.stores else None
    if query.district is not None:
        in_district = district_store_ids(config, query.district)
        store_ids = in_district if store_ids is None else store_ids & in_district
    return acks.AlertFilter(severities=query.severities, store_ids=store_ids,
                            since=query.since)


def list_alerts(config: AppConfig, query: AlertQuery, limit: int) -> AlertPage:
    """The first `limit` open alerts matching `query`, and how many match in all."""
    analytics = resolved_databases(config)["analytics"]
    with on_database(analytics) as engine:
        require_tables(analytics, engine, [store_anomaly_alerts.name])
        filters = _alert_filter(config, query)
        return AlertPage(acks.open_alerts(engine, limit=limit, filters=filters),
                         acks.count_open_alerts(engine, filters))


def list_incidents(config: AppConfig, query: AlertQuery, limit: int) -> AlertPage:
    """The first `limit` open incidents matching `query` (by their severity and days)."""
    analytics = resolved_databases(config)["analytics"]
    with on_database(analytics) as engine:
        require_tables(analytics, engine, [store_anomaly_incidents.name])
        rows, total = open_incidents(engine, _alert_filter(config, query), limit)
        return AlertPage(rows, total)


def acknowledge_incident(config: AppConfig, incident_id: int, by: str,
                         note: str | None) -> tuple[str, int]:
    """`ack --incident ID --by NAME`: the name as recorded and the alerts acknowledged."""
    try:
        name, note = acks.check_acknowledger(by), acks.check_note(note)
        analytics = resolved_databases(config)["analytics"]
        with on_database(analytics) as engine:
            require_tables(analytics, engine, [store_anomaly_incidents.name])
            return name, incidents.acknowledge_incident(engine, incident_id, name, note)
    except (acks.AcknowledgmentError, LookupError, ValueError) as exc:
        raise CliError(str(exc)) from None


def _ack_links(config: AppConfig) -> AckLinks:
    from store_anomaly_assets.web.links import ack_links

    links = ack_links(config.web)
    if links is None:
        raise CliError("setting ACK_LINK_SECRET is not set: acknowledgment links are signed "
                       "with it (use a random value of at least 16 characters, e.g. "
                       "`openssl rand -hex 32`, the same for the notifier and `serve`)")
    return links


def ack_link(config: AppConfig, incident_id: int, name: str) -> str:
    """`ack-link ID --for NAME`: a signed link acknowledging the incident as NAME."""
    links = _ack_links(config)
    try:
        name = acks.check_acknowledger(name)
    except acks.AcknowledgmentError as exc:
        raise CliError(str(exc).replace("--by", "--for")) from None
    analytics = resolved_databases(config)["analytics"]
    with on_database(analytics) as engine:
        require_tables(analytics, engine, [store_anomaly_incidents.name])
        i = store_anomaly_incidents
        with engine.connect() as conn:
            found = conn.execute(sa.select(i.c.acknowledged_by, i.c.acknowledged_at)
                                 .where(i.c.id == incident_id)).first()
    if found is None:
        raise CliError(f"incident {incident_id} does not exist in {analytics.describe()}")
    if found.acknowledged_at is not None:
        raise CliError(f"incident {incident_id} was already acknowledged by "
                       f"{found.acknowledged_by} at {found.acknowledged_at}")
    return links.url(incident_id, name)


def serve(config: AppConfig, host: str | None, port: int | None, log_level: str,
          announce: Callable[[str], None] = print) -> None:
    """`serve`: the acknowledgment web app, until interrupted."""
    import uvicorn

    from store_anomaly_assets.web.app import create_app

    links = _ack_links(config)
    analytics = resolved_databases(config)["analytics"]
    with on_database(analytics) as engine:
        require_tables(analytics, engine, [store_anomaly_incidents.name,
                                           store_anomaly_alerts.name])
        app = create_app(engine, links, config.web.grafana_url)
    host, port = host or config.web.serve_host, port or config.web.serve_port
    try:  # bound here, so a taken port is one line, not uvicorn's log and exit status 3
        sock = socket.create_server((host, port))
    except OSError as exc:
        raise CliError(f"serve cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    announce(f"Serving on http://{host}:{port}; links point to {config.web.public_url}")
    # No access log: its lines would carry the links' tokens.
    server = uvicorn.Server(uvicorn.Config(app, access_log=False, log_level=log_level.lower(),
                                           server_header=False))
    server.run(sockets=[sock])


@dataclass(frozen=True)
class BulkAck:
    """A bulk acknowledgment: previewed (`acknowledged` None, `first` alerts listed) or done."""

    severity: str
    older_than: int  # days
    before: date  # the alerts are dated before this day
    by: str
    total: int
    first: pl.DataFrame = field(default_factory=pl.DataFrame)
    acknowledged: int | None = None


def acknowledge_one(config: AppConfig, alert_id: int, by: str, note: str | None) -> str:
    """`ack ID --by NAME`: returns the name as recorded. Arguments are checked first."""
    try:
        name, note = acks.check_acknowledger(by), acks.check_note(note)
        analytics = resolved_databases(config)["analytics"]
        with on_database(analytics) as engine:
            require_tables(analytics, engine, [store_anomaly_alerts.name])
            acks.acknowledge(engine, alert_id, name, note)
    except acks.AcknowledgmentError as exc:
        raise CliError(str(exc)) from None
    return name


def acknowledge_older(config: AppConfig, severity: str, older_than: int, by: str,
                      note: str | None, yes: bool) -> BulkAck:
    """The bulk clean-up: a preview of what it would acknowledge, or with `yes` done.

    Arguments are checked first. (The guide's clean-up records no note.)
    """
    try:
        name = acks.check_acknowledger(by)
        acks.check_note(note)
        bulk = acks.cleanup_filter(severity, older_than)
        assert bulk.before is not None
        analytics = resolved_databases(config)["analytics"]
        with on_database(analytics) as engine:
            require_tables(analytics, engine, [store_anomaly_alerts.name])
            if yes:
                count = acks.acknowledge_older(engine, severity, older_than, name)
                return BulkAck(severity, older_than, bulk.before, name, count,
                               acknowledged=count)
            return BulkAck(severity, older_than, bulk.before, name,
                           acks.count_open_alerts(engine, bulk),
                           acks.open_alerts(engine, limit=PREVIEW_ROWS, filters=bulk))
    except acks.AcknowledgmentError as exc:
        raise CliError(str(exc)) from None


# ---------------------------------------------------------------------------- the rest


def init_analytics(config: AppConfig) -> tuple[str, list[str]]:
    """Create the analytics tables (idempotent): where, and which tables."""
    from store_anomaly_assets.db.analytics.init_db import init_db

    analytics = resolved_databases(config)["analytics"]
    with on_database(analytics, writable=True) as engine:
        return analytics.describe(), list(init_db(engine))


@dataclass(frozen=True)
class Reachability:
    prefix: str
    where: str
    error: str | None  # None: reachable


def check_databases(config: AppConfig) -> Iterator[Reachability]:
    """Connect to each of the six databases in turn; a failure is a finding, not an error."""
    resources = resolved_databases(config)
    hidden = secrets()
    for prefix, (key, _) in DATABASES.items():
        db = resources[key]
        try:
            with db.engine().connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            yield Reachability(prefix, db.describe(), None)
        except Exception as exc:  # any driver error is a finding here, not a crash
            yield Reachability(prefix, db.describe(),
                               scrub(str(getattr(exc, "orig", exc)), hidden))


@dataclass(frozen=True)
class WrittenReport:
    path: Path
    alerts: int
    stores: int


def write_report(config: AppConfig, day: date, out: Path | None,
                 district: str | None = None) -> WrittenReport:
    """The day's HTML report, written to `out` (default: store_anomaly_report_<day>.html);
    with `district`, of that district's stores only."""
    from store_anomaly_assets.db.analytics import schema
    from store_anomaly_assets.report import NoReportData, load_report_data, write_report_data

    out = out or Path(f"store_anomaly_report_{day}.html")
    if out.is_dir():
        raise CliError(f"--out {out} is a folder; name the report file, e.g. "
                       f"{out / f'store_anomaly_report_{day}.html'}")
    analytics = resolved_databases(config)["analytics"]
    with on_database(analytics) as engine:
        require_tables(analytics, engine, [schema.store_health_scores.name,
                                           schema.store_anomaly_alerts.name,
                                           schema.store_anomaly_scores.name])
        try:
            store_ids = None if district is None else district_store_ids(config, district)
            data = load_report_data(engine, day, store_ids)
        except NoReportData as exc:
            raise CliError(f"{exc} in {analytics.describe()}") from None
    try:
        path = write_report_data(data, out)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise CliError(f"--out {out}: cannot write the report: {exc.strerror or exc}{where}"
                       ) from None
    stores = data.health.filter(data.health["metric_date"] == day).height
    return WrittenReport(path, data.alerts.height, stores)
