"""Alert notifications through apprise, for the sensors in `defs/sensors.py`.

- `routing`: the routing file (recipients, escalation, digest schedule, `${ENV_VAR}`s);
- `messages`: the bilingual messages and which channel gets which (pure);
- `delivery`: sending, and the per-channel bookkeeping the sensors keep in their cursors;
- `queries`: the alerts still to send, and `notified_at`.
"""

from store_anomaly_assets.notify.delivery import (
    DeliveryPlan,
    Message,
    Sender,
    alert_token,
    deliver,
    is_email,
    log,
    parse_alert_token,
    record_deliveries,
    send,
    settle,
)
from store_anomaly_assets.notify.messages import (
    CheckFailure,
    MessageLinks,
    plan_alert_notifications,
    plan_data_team,
    render_check_failures,
    render_run_failure,
)
from store_anomaly_assets.notify.queries import mark_notified, read_pending_alerts
from store_anomaly_assets.notify.routing import (
    Channel,
    DigestSchedule,
    EscalationStep,
    Recipient,
    Routing,
    RoutingError,
    due_cadences,
    initial_digest_state,
    load_routing,
    parse_routing,
)

__all__ = [
    "Channel",
    "CheckFailure",
    "DeliveryPlan",
    "DigestSchedule",
    "EscalationStep",
    "Message",
    "MessageLinks",
    "Recipient",
    "Routing",
    "RoutingError",
    "Sender",
    "alert_token",
    "deliver",
    "due_cadences",
    "initial_digest_state",
    "is_email",
    "load_routing",
    "log",
    "mark_notified",
    "parse_alert_token",
    "parse_routing",
    "plan_alert_notifications",
    "plan_data_team",
    "read_pending_alerts",
    "record_deliveries",
    "render_check_failures",
    "render_run_failure",
    "send",
    "settle",
]
