"""Signed acknowledgment links: one incident, one named recipient, an expiry.

A link is `{public_url}/ack/{token}`. The token is the incident id, the recipient's name
and the expiry time, signed with `ACK_LINK_SECRET` (itsdangerous, HMAC-SHA1 over a
URL-safe payload). Anyone holding the link can acknowledge that incident under that name
until it expires, so links go only to the recipients routed the incident; the payload is
signed, not encrypted: it holds nothing secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from itsdangerous import BadSignature, URLSafeSerializer

if TYPE_CHECKING:
    from store_anomaly_assets.config import WebSettings

_SALT = "store-anomaly/ack-link"


class LinkRefused(ValueError):
    """A link that must not be honoured; the message says why, for the person holding it."""


@dataclass(frozen=True)
class AckGrant:
    """What a valid link allows: acknowledging `incident_id` as `name`, until `expires`."""

    incident_id: int
    name: str
    expires: datetime


class AckLinks:
    """Signs and checks acknowledgment links."""

    def __init__(self, secret: str, public_url: str, ttl: timedelta) -> None:
        self._serializer = URLSafeSerializer(secret, salt=_SALT)
        self.public_url = public_url.rstrip("/")
        self.ttl = ttl

    def token(self, incident_id: int, name: str, now: datetime | None = None) -> str:
        expires = (now or datetime.now(UTC)) + self.ttl
        return self._serializer.dumps({"i": int(incident_id), "n": name,
                                       "e": int(expires.timestamp())})

    def url(self, incident_id: int, name: str, now: datetime | None = None) -> str:
        return f"{self.public_url}/ack/{self.token(incident_id, name, now)}"

    def check(self, token: str, now: datetime | None = None) -> AckGrant:
        """The grant of a token; LinkRefused when it was altered or has expired."""
        try:
            payload = self._serializer.loads(token)
            grant = AckGrant(int(payload["i"]), str(payload["n"]),
                             datetime.fromtimestamp(int(payload["e"]), UTC))
        except (BadSignature, KeyError, TypeError, ValueError):
            raise LinkRefused("This link is not valid: it was changed or cut short. Open "
                              "the link from your notification again, or ask for a new "
                              "one.") from None
        if (now or datetime.now(UTC)) >= grant.expires:
            raise LinkRefused(f"This link expired on {grant.expires:%Y-%m-%d %H:%M} UTC. "
                              "Ask for a new one.")
        return grant

    def incident_page(self, incident_id: int) -> str:
        """The read-only page of an incident (no acknowledgment without a signed link)."""
        return f"{self.public_url}/incidents/{int(incident_id)}"

    def report_page(self, day: object, district: str | None = None) -> str:
        from urllib.parse import quote

        suffix = f"?district={quote(district)}" if district else ""
        return f"{self.public_url}/reports/{day}{suffix}"


def ack_links(web: WebSettings) -> AckLinks | None:
    """The configured link signer; None without ACK_LINK_SECRET (messages carry no link)."""
    if web.ack_link_secret is None:
        return None
    return AckLinks(web.ack_link_secret.get_secret_value(), web.public_url,
                    timedelta(hours=web.ack_link_ttl_hours))


def grafana_chart_url(dashboard_url: str, store_id: int, metric_name: str, first: date,
                      last: date) -> str:
    """The dashboard's control chart of one store and metric, 30 days before `first` to a
    week after `last` (Grafana's `from`/`to` in epoch milliseconds, UTC days)."""
    from urllib.parse import urlencode

    def ms(day: date) -> int:
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)

    query = urlencode({"var-store": store_id, "var-metric": metric_name,
                       "from": ms(first - timedelta(days=30)),
                       "to": ms(last + timedelta(days=8))})
    return f"{dashboard_url}{'&' if '?' in dashboard_url else '?'}{query}"
