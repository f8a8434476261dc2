"""Receivers on loopback for the notification tests: a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import socket
from dataclasses import dataclass
from email import policy

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mail:
    to: list[str]
    subject: str
    text: str
    html: str = ""
    content_type: str = ""


class SmtpSink:
    """aiosmtpd on a random loopback port, keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[Mail] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:  # the aiosmtpd hook name
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        self.messages.append(Mail(list(envelope.rcpt_tos), str(message["Subject"]),
                                  text.get_content() if text else "",
                                  html.get_content() if html else "",
                                  message.get_content_type()))
        return "250 OK"

    def url(self, to: str) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=alerts@example.com&to={to}"

    def take(self) -> list[Mail]:
        taken, self.messages = self.messages, []
        return taken


