"""Delivery through apprise, and the bookkeeping of which channel has which item.

A message goes to one *channel* (one apprise URL of one recipient) and carries *items*:
alert tokens (`id:SEVERITY`) or data-team failure tokens. An item is done once every
channel it was routed to has accepted it; a channel that failed gets it again on the next
tick, and channels that already have it never get it twice. The bookkeeping is plain data
that the sensors keep in their cursors.

URLs may hold secrets (webhook tokens, SMTP passwords): logs and errors show a URL's
scheme only (`url_scheme`), and channels are stored by a hash of their URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from store_anomaly_assets.notify.routing import Channel

# One logger for the whole package: the sensors take it as their default log.
log = logging.getLogger("store_anomaly_assets.notify")

EMAIL_SCHEMES = ("mailto", "mailtos")


def url_scheme(url: str) -> str:
    """The only part of an apprise URL that is safe to log: the rest may hold a secret."""
    return url.split(":", 1)[0]


def url_is_usable(url: str) -> bool:
    """Whether apprise knows how to send to `url` (no network)."""
    import apprise

    return bool(apprise.Apprise().add(url))


@dataclass(frozen=True)
class Message:
    """One message to one channel, and the items (alert or failure tokens) it carries."""

    channel: Channel
    title: str
    body: str
    notify_type: str
    items: tuple[str, ...]
    attachments: tuple[str, ...] = ()  # file paths, e.g. the daily HTML report
    html: str | None = None  # e-mails: the HTML body (apprise adds the plain-text part)


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


# --------------------------------------------------------------------------------------
# Sending


def send(url: str, title: str, body: str, notify_type: str = "info",
         timeout: float = 30.0, attach: Sequence[str] = (), html: str | None = None) -> bool:
    """Send one message through apprise; True when the service accepted it.

    With `html`, the message is sent as HTML: apprise's e-mail is then multipart, the
    HTML and a plain-text part derived from it.
    """
    import apprise

    app = apprise.Apprise()
    if not app.add(url):
        log.error("apprise cannot use a %s:// URL", url_scheme(url))
        return False
    return bool(app.notify(
        body=html or body, title=title, notify_type=apprise.NotifyType(notify_type),
        body_format=apprise.NotifyFormat.HTML if html else apprise.NotifyFormat.TEXT,
        timeout=timeout, attach=list(attach) or None))


def is_email(channel: Channel) -> bool:
    return url_scheme(channel.url).lower() in EMAIL_SCHEMES


Sender = Callable[..., bool]


def deliver(messages: Sequence[Message], sender: Sender = send, timeout: float = 30.0,
            max_workers: int = 8) -> list[bool]:
    """Send every message (in parallel threads); one True/False per message, in order.

    A sender that raises counts as a failed delivery, so one bad channel never stops the
    others.
    """

    def one(message: Message) -> bool:
        extra: dict[str, object] = {"attach": message.attachments} if message.attachments else {}
        if message.html is not None:
            extra["html"] = message.html
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
