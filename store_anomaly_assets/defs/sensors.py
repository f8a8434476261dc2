"""Dagster sensors that notify people: store alerts, failed checks, failed runs.

- `store_anomaly_alert_notifier` (every NOTIFY_INTERVAL_SECONDS): reads the un-notified,
  unacknowledged alerts from the analytics database, routes them through the routing
  file (notifications.py), sends, and sets `notified_at` once every channel an alert was
  routed to has it. CRITICAL goes out on the first tick after it appears, WARNING in the
  daily digest, INFO in the weekly one (times in the routing file's `schedule`).
- `store_anomaly_check_failure_notifier`: tells the data team about FAILED asset checks.
  A failed check does not fail its run, so run-failure sensors never see it; this one
  reads the check evaluations of every run that ended since its cursor.
- `store_anomaly_run_failure_notifier`: tells the data team about failed runs.

The two data-team sensors share one delivery loop over run-ending events: the cursor
moves past a run only once every data-team channel has its message, so a channel that is
down gets it on a later tick, and none gets it twice.

None of them launches a run, so there is no job to add. Each is built by a factory whose
clock, routing file and sender can be replaced in tests.

Not `from __future__ import annotations`: Dagster finds a sensor's resources from its
parameters' annotations, which must be real classes.
"""

import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
from dagster import DagsterEventType, EventLogRecord

from store_anomaly_assets import notify as nf
from store_anomaly_assets.config import AppConfig, NotifySettings
from store_anomaly_assets.db.sources.extraction import load_store_master
from store_anomaly_assets.defs.partitions import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG
from store_anomaly_assets.defs.resources import Database

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _status(enabled: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if enabled else dg.DefaultSensorStatus.STOPPED


def _load_routing(path: Path, timezone: str) -> nf.Routing | None:
    """The routing file, or None when there is none (notifications are then off)."""
    if not path.exists():
        return None
    return nf.load_routing(path, default_timezone=timezone)


def _range_of(tags: dict[str, str]) -> str | None:
    if RANGE_START_TAG in tags:
        return f"{tags[RANGE_START_TAG]}..{tags.get(RANGE_END_TAG, '')}"
    return tags.get(PARTITION_TAG)


def _load_cursor(raw: str | None) -> dict:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------------
# Store alerts

REPORTED_SEVERITIES = ("CRITICAL", "WARNING")


def attach_reports(
    engine, plan: nf.DeliveryPlan, alerts, report_dir: Path
) -> nf.DeliveryPlan:
    """E-mails with CRITICAL/WARNING alerts carry the daily report of their alert dates."""
    from store_anomaly_assets.report import NoReportData, write_report

    dates = dict(alerts.select("id", "alert_date").iter_rows()) if alerts.height else {}
    written: dict = {}
    messages = []
    for message in plan.messages:
        days = sorted({dates[i] for i, sev in map(nf.parse_alert_token, message.items)
                       if sev in REPORTED_SEVERITIES and i in dates})
        if not nf.is_email(message.channel) or not days:
            messages.append(message)
            continue
        paths = []
        for day in days:
            if day not in written:
                try:
                    written[day] = str(write_report(
                        engine, day, report_dir / f"store_anomaly_report_{day}.html"))
                except NoReportData:
                    written[day] = None
            if written[day]:
                paths.append(written[day])
        messages.append(dataclasses.replace(message, attachments=tuple(paths)))
    return dataclasses.replace(plan, messages=messages)


def alert_notification_tick(
    analytics: Database,
    opshop: Database | None,
    routing: nf.Routing,
    cursor: dict,
    now: datetime,
    notify: NotifySettings,
    sender: nf.Sender = nf.send,
    log=nf.log,
    report_dir: Path | None = None,
    links: nf.MessageLinks | None = None,
) -> tuple[dict, str]:
    """One evaluation of the alert sensor: returns the new cursor and a summary.

    With `report_dir`, e-mails carrying CRITICAL or WARNING alerts attach the daily HTML
    report of each alert date (written there).

    The cursor holds the last digest slot completed per cadence and, for alerts that
    reached only some of their channels, the channels that have them.
    """
    digests = dict(cursor.get("digests") or nf.initial_digest_state(routing.schedule, now))
    delivered: dict[str, list[str]] = dict(cursor.get("delivered") or {})
    due = nf.due_cadences(routing.schedule, now, digests)
    severities = [s for s, step in routing.escalation.items() if step.cadence in due]
    today = now.astimezone(ZoneInfo(routing.schedule.timezone)).date()
    since: date = today - timedelta(days=notify.lookback_days)

    engine = analytics.engine()
    alerts = nf.read_pending_alerts(engine, severities, since)
    stores = None
    if alerts.height and opshop is not None:
        stores = load_store_master(opshop.engine())
    plan = nf.plan_alert_notifications(
        alerts, routing, delivered, stores, notify.max_alerts_per_message, links
    )
    if report_dir is not None:
        plan = attach_reports(engine, plan, alerts, report_dir)
    # Forget partial deliveries of alerts that are no longer pending at that severity
    # (acknowledged, removed by a recompute, escalated, aged out).
    delivered = {
        t: v for t, v in delivered.items()
        if t in plan.required or nf.parse_alert_token(t)[1] not in severities
    }
    results = nf.deliver(plan.messages, sender, notify.timeout_seconds)
    delivered = nf.record_deliveries(delivered, plan.messages, results)
    done = nf.settle(plan.required, delivered)
    marked = nf.mark_notified(engine, done, now) if done else 0
    delivered = {t: v for t, v in delivered.items() if t not in set(done)}

    # A digest slot is complete when every alert of its cadence reached all its channels.
    for cadence, slot in due.items():
        if slot is None:
            continue
        cadence_severities = {
            s for s, step in routing.escalation.items() if step.cadence == cadence
        }
        pending = [t for t in plan.required
                   if nf.parse_alert_token(t)[1] in cadence_severities and t not in done]
        if not pending:
            digests[cadence] = slot

    failed = results.count(False)
    if failed:
        log.error(f"{failed} of {len(results)} alert message(s) failed; retried next tick")
    if plan.unrouted:
        log.warning(
            f"{len(plan.unrouted)} alert(s) match no recipient in the routing file "
            f"(e.g. {plan.unrouted[:3]}); they stay un-notified"
        )
    summary = (
        f"due: {', '.join(due)}; {alerts.height} pending alert(s); sent "
        f"{len(results) - failed}/{len(results)} message(s); {marked} alert(s) marked "
        f"notified; {len(plan.unrouted)} unrouted"
    )
    return {"digests": digests, "delivered": delivered}, summary


def build_alert_notification_sensor(
    name: str = "store_anomaly_alert_notifier",
    routing_file: str | Path | None = None,
    clock: Clock = _utc_now,
    sender: nf.Sender = nf.send,
    *,
    notify: NotifySettings,
    timezone: str = "America/New_York",
    report_dir: Path | None = None,
    links: nf.MessageLinks | None = None,
) -> dg.SensorDefinition:
    """The alert sensor; tests pass their own routing file, clock and settings."""
    path = Path(routing_file) if routing_file else notify.routing_file
    tz = timezone

    @dg.sensor(
        name=name,
        minimum_interval_seconds=notify.interval_seconds,
        default_status=_status(notify.sensors_enabled),
        description="Sends un-notified store anomaly alerts to the people in the routing file "
        "(CRITICAL at once, WARNING daily, INFO weekly) and sets notified_at.",
    )
    def _sensor(context: dg.SensorEvaluationContext, analytics: Database, opshop: Database):
        routing = _load_routing(path, tz)
        if routing is None:
            return dg.SkipReason(f"no routing file at {path} (NOTIFY_ROUTING_FILE)")
        cursor, summary = alert_notification_tick(
            analytics, opshop, routing, _load_cursor(context.cursor), clock(), notify,
            sender, context.log, report_dir=report_dir, links=links,
        )
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        return dg.SkipReason(summary)

    return _sensor


# --------------------------------------------------------------------------------------
# The data team: failed asset checks


_RUN_END_EVENTS = (
    DagsterEventType.RUN_SUCCESS,
    DagsterEventType.RUN_FAILURE,
    DagsterEventType.RUN_CANCELED,
)


def _latest_run_end(instance: dg.DagsterInstance, event_types: Sequence[DagsterEventType]) -> int:
    latest = -1
    for event_type in event_types:
        records = instance.fetch_run_status_changes(event_type, limit=1).records
        if records:
            latest = max(latest, records[0].storage_id)
    return latest


def _ended_runs(
    instance: dg.DagsterInstance, after: int, limit: int, event_types: Sequence[DagsterEventType]
) -> tuple[list[EventLogRecord], int]:
    """Run-ending event records after `after`, ascending, and the new high-water mark."""
    records, cap = [], None
    for event_type in event_types:
        batch = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after),
            limit=limit, ascending=True,
        ).records
        records += batch
        if len(batch) == limit:  # more may follow: stop where this page stops
            cap = batch[-1].storage_id if cap is None else min(cap, batch[-1].storage_id)
    records = sorted((r for r in records if cap is None or r.storage_id <= cap),
                     key=lambda r: r.storage_id)
    return records, (records[-1].storage_id if records else after)


def failed_checks_of_run(
    instance: dg.DagsterInstance, run_id: str, check_keys: set | None = None
) -> list[nf.CheckFailure]:
    """The failed asset check evaluations of one run."""
    run = instance.get_run_by_id(run_id)
    job_name = run.job_name if run else "?"
    tags = dict(run.tags) if run else {}
    failures = []
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION, limit=10_000
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
            continue
        if check_keys is not None and evaluation.asset_check_key not in check_keys:
            continue
        found = evaluation.metadata.get("found")
        failures.append(nf.CheckFailure(
            token=f"{run_id}:{record.storage_id}",
            asset=evaluation.asset_key.to_user_string(),
            check_name=evaluation.check_name,
            severity=evaluation.severity.value,
            run_id=run_id,
            job_name=job_name,
            partition_range=evaluation.partition or _range_of(tags),
            found=str(found.value) if found is not None else evaluation.description,
            at=datetime.fromtimestamp(record.event_log_entry.timestamp, UTC),
        ))
    return failures


def _data_team_tick(
    instance: dg.DagsterInstance,
    cursor: dict,
    event_types: Sequence[DagsterEventType],
    find: Callable[[EventLogRecord], dict[str, Any]],
    plan: Callable[[dict[str, Any], dict], nf.DeliveryPlan],
    noun: str,
    sender: nf.Sender,
    timeout: float,
    limit: int,
    log,
) -> tuple[dict, str]:
    """One tick of a data-team sensor: the new cursor and a summary.

    The cursor is the storage id of the last run-ending event (of `event_types`) whose
    items every data-team channel has; `delivered` holds partial deliveries until then.
    `find` gives a run-ending record's items by token, `plan` the messages for the items
    (given what each channel already has).
    """
    if "after" not in cursor:
        # Like Dagster's run-status sensors: start from now, not from all history.
        return {"after": _latest_run_end(instance, event_types), "delivered": {}}, "initialised"
    after = int(cursor["after"])
    ended, high_water = _ended_runs(instance, after, limit, event_types)
    items = {token: item for record in ended for token, item in find(record).items()}
    delivered = {t: v for t, v in (cursor.get("delivered") or {}).items() if t in items}
    todo = plan(items, delivered)
    results = nf.deliver(todo.messages, sender, timeout)
    delivered = nf.record_deliveries(delivered, todo.messages, results)
    if todo.unrouted:
        log.warning(f"{len(todo.unrouted)} {noun} but no data_team recipient")
    if len(nf.settle(todo.required, delivered)) == len(todo.required):
        new_cursor = {"after": high_water, "delivered": {}}
    else:
        log.error(f"{results.count(False)} data-team message(s) failed; retried next tick")
        new_cursor = {"after": after, "delivered": delivered}
    summary = (f"{len(ended)} run(s) ended, {len(items)} {noun}; sent "
               f"{results.count(True)}/{len(results)} message(s)")
    return new_cursor, summary


def check_failure_tick(
    instance: dg.DagsterInstance,
    routing: nf.Routing,
    cursor: dict,
    check_keys: set | None = None,
    sender: nf.Sender = nf.send,
    timeout: float = 30.0,
    webserver_url: str | None = None,
    limit: int = 100,
    log=nf.log,
) -> tuple[dict, str]:
    """One evaluation of the check-failure sensor: the new cursor and a summary."""
    def find(record: EventLogRecord) -> dict[str, nf.CheckFailure]:
        failures = failed_checks_of_run(instance, record.event_log_entry.run_id, check_keys)
        return {f.token: f for f in failures}

    def plan(items: dict[str, nf.CheckFailure], delivered: dict) -> nf.DeliveryPlan:
        return nf.plan_data_team(
            list(items), routing,
            lambda todo: nf.render_check_failures([items[t] for t in todo], webserver_url),
            delivered,
        )

    return _data_team_tick(instance, cursor, _RUN_END_EVENTS, find, plan, "failed check(s)",
                           sender, timeout, limit, log)


def _data_team_sensor(
    name: str,
    description: str,
    tick: Callable[..., tuple[dict, str]],
    scope_of: Callable[[dg.RepositoryDefinition], set],
    routing_file: str | Path | None,
    sender: nf.Sender,
    notify: NotifySettings,
    minimum_interval_seconds: int,
    timezone: str,
) -> dg.SensorDefinition:
    """A data-team sensor: `tick` over this code location's `scope_of(repository)`."""
    path = Path(routing_file) if routing_file else notify.routing_file

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=_status(notify.sensors_enabled),
        description=description,
    )
    def _sensor(context: dg.SensorEvaluationContext):
        routing = _load_routing(path, timezone)
        if routing is None:
            return dg.SkipReason(f"no routing file at {path} (NOTIFY_ROUTING_FILE)")
        repo = context.repository_def
        cursor, summary = tick(
            context.instance, routing, _load_cursor(context.cursor),
            scope_of(repo) if repo is not None else None, sender, notify.timeout_seconds,
            notify.webserver_url, log=context.log,
        )
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        return dg.SkipReason(summary)

    return _sensor


def build_check_failure_sensor(
    name: str = "store_anomaly_check_failure_notifier",
    routing_file: str | Path | None = None,
    sender: nf.Sender = nf.send,
    *,
    notify: NotifySettings,
    minimum_interval_seconds: int = 60,
    timezone: str = "America/New_York",
) -> dg.SensorDefinition:
    """The data-team sensor for failed asset checks of this code location."""
    return _data_team_sensor(
        name, "Tells the data team about failed asset checks (which do not fail runs).",
        check_failure_tick, lambda repo: set(repo.asset_graph.asset_check_keys),
        routing_file, sender, notify, minimum_interval_seconds, timezone,
    )


# --------------------------------------------------------------------------------------
# The data team: failed runs


@dataclasses.dataclass(frozen=True)
class RunFailure:
    """A failed run, as the data team is told about it."""

    run_id: str
    job_name: str
    message: str
    steps: list[str]
    partition_range: str | None


def failed_run(
    instance: dg.DagsterInstance, record: EventLogRecord, job_names: set[str] | None = None
) -> RunFailure | None:
    """The failure of the run a RUN_FAILURE record ends; None for another location's job."""
    run_id = record.event_log_entry.run_id
    run = instance.get_run_by_id(run_id)
    if run is None or (job_names is not None and run.job_name not in job_names):
        return None
    steps, errors = [], []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        steps.append(event.step_key or "?")
        error = getattr(event.event_specific_data, "error", None)
        while error is not None and error.cause is not None:
            error = error.cause  # Dagster wraps the user's exception: report the cause
        if error is not None:
            errors.append(f"{event.step_key}: {error.message.strip()}")
    run_event = record.event_log_entry.dagster_event
    message = "; ".join(errors) or (run_event.message if run_event else None) or "unknown error"
    return RunFailure(run_id, run.job_name, message, steps, _range_of(dict(run.tags)))


def run_failure_tick(
    instance: dg.DagsterInstance,
    routing: nf.Routing,
    cursor: dict,
    job_names: set[str] | None = None,
    sender: nf.Sender = nf.send,
    timeout: float = 30.0,
    webserver_url: str | None = None,
    limit: int = 100,
    log=nf.log,
) -> tuple[dict, str]:
    """One evaluation of the run-failure sensor: one message per failed run and channel."""
    def find(record: EventLogRecord) -> dict[str, RunFailure]:
        failure = failed_run(instance, record, job_names)
        return {failure.run_id: failure} if failure else {}

    def plan(items: dict[str, RunFailure], delivered: dict) -> nf.DeliveryPlan:
        plans = [
            nf.plan_data_team(
                [run_id], routing,
                lambda _, f=failure: nf.render_run_failure(
                    f.job_name, f.run_id, f.message, f.steps, f.partition_range, webserver_url),
                delivered,
            )
            for run_id, failure in items.items()
        ]
        return nf.DeliveryPlan(
            [m for p in plans for m in p.messages],
            {t: c for p in plans for t, c in p.required.items()},
            [t for p in plans for t in p.unrouted],
        )

    return _data_team_tick(instance, cursor, (DagsterEventType.RUN_FAILURE,), find, plan,
                           "failed run(s)", sender, timeout, limit, log)


def build_run_failure_sensor(
    name: str = "store_anomaly_run_failure_notifier",
    routing_file: str | Path | None = None,
    sender: nf.Sender = nf.send,
    *,
    notify: NotifySettings,
    minimum_interval_seconds: int = 60,
    timezone: str = "America/New_York",
) -> dg.SensorDefinition:
    """The data-team sensor for failed runs of this code location's jobs.

    Not Dagster's `run_failure_sensor`: that one moves its cursor past a run even when the
    notification failed, so a channel that was down would never hear of the failure.
    """
    return _data_team_sensor(
        name, "Tells the data team about failed runs of this code location.",
        run_failure_tick,
        lambda repo: set(repo.job_names) | set(repo.get_implicit_asset_job_names()),
        routing_file, sender, notify, minimum_interval_seconds, timezone,
    )


def build_sensors(config: AppConfig) -> list[dg.SensorDefinition]:
    """The three notifiers for `config`. They only send messages: no job, no runs."""
    from store_anomaly_assets.web.links import ack_links

    common = {"notify": config.notify, "timezone": config.business_timezone}
    links = nf.MessageLinks(ack_links(config.web), config.web.grafana_url)
    return [
        build_alert_notification_sensor(**common, report_dir=config.data_dir / "reports",
                                        links=links),
        build_check_failure_sensor(**common),
        build_run_failure_sensor(**common),
    ]


__all__ = [
    "alert_notification_tick", "build_alert_notification_sensor",
    "build_check_failure_sensor", "build_run_failure_sensor", "build_sensors",
    "check_failure_tick", "failed_checks_of_run", "failed_run", "run_failure_tick",
]
