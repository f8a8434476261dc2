"""The acknowledgment web app: `store-anomaly serve` (Starlette, served by uvicorn).

Routes, all reading the analytics database:

- `GET /ack/{token}`: the incident of a signed link (web/links.py), with the investigation
  checklist and a form (name prefilled, note);
- `POST /ack/{token}`: acknowledges the incident and all its alerts, once. The only route
  that writes;
- `GET /incidents/{id}`: the same incident page without the form (Grafana links here;
  acknowledging needs a signed link);
- `GET /reports/{day}[?district=NAME]`: the daily report;
- `GET /healthz`.

The form is protected against cross-site requests twice: a random token in a
SameSite=Strict cookie that the form must echo (a foreign page can neither read nor send
it), and a request whose Origin is not this server's is refused. Pages are never cached,
never framed, and send a Referer to this server only, so a link's token does not leak to
other sites (with no Referer at all, browsers would send the form's Origin as `null`).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import polars as pl
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store_anomaly_assets.core.alerts import CHECKLIST, LABELS, format_value, format_z
from store_anomaly_assets.db.analytics import acknowledgments as acks
from store_anomaly_assets.db.analytics.incidents import acknowledge_incident, read_incident
from store_anomaly_assets.db.analytics.schema import store_health_scores
from store_anomaly_assets.report import NoReportData, build_report_html, load_report_data
from store_anomaly_assets.report.charts import control_chart_svg
from store_anomaly_assets.report.data import load_series
from store_anomaly_assets.templating import environment
from store_anomaly_assets.web.links import AckGrant, AckLinks, LinkRefused

log = logging.getLogger("store_anomaly_assets.web")

CSRF_COOKIE = "ack_csrf"
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src data:; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

_ENV = environment("store_anomaly_assets.web")
_ENV.globals["checklist"] = CHECKLIST


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_ENV.get_template(template).render(**context), status_code=status,
                        headers=HEADERS)


def _refusal(title: str, message: str, status: int) -> HTMLResponse:
    return _page("message.html.j2", status, title=title, message=message, incident=None)


def _alert_rows(alerts: pl.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for alert in alerts.iter_rows(named=True):
        label = LABELS.get(alert["metric_name"])
        unit = label.unit if label else "ratio"
        rows.append({
            **alert,
            "en": label.en if label else alert["metric_name"],
            "zh": label.zh if label else alert["metric_name"],
            "value": format_value(alert["metric_value"], unit),
            "expected": format_value(alert["expected_value"], unit),
            "z": format_z(alert["z_score"]),
            "impact": None if alert["impact_usd"] is None
            else format_value(alert["impact_usd"], "usd"),
        })
    return rows


class AckApp:
    """The routes' shared state: the analytics engine and the link signer."""

    def __init__(self, engine: sa.Engine, links: AckLinks, grafana_url: str | None) -> None:
        self.engine, self.links, self.grafana_url = engine, links, grafana_url
        public = urlsplit(links.public_url)
        self.origins = {f"{public.scheme}://{public.netloc}"}
        self.secure_cookie = public.scheme == "https"

    # ------------------------------------------------------------------ reading

    def incident_context(self, incident_id: int) -> dict[str, Any] | None:
        incident, alerts = read_incident(self.engine, incident_id)
        if incident is None:
            return None
        lead = alerts.filter(pl.col("metric_name") == incident["primary_metric"])
        day = lead["alert_date"].max() if lead.height else incident["last_date"]
        label = LABELS.get(incident["primary_metric"])
        store = f"{incident['store_name'] or ''} ({incident['store_id']})".strip()
        chart = control_chart_svg(
            load_series(self.engine, incident["store_id"], incident["primary_metric"], day),
            day, incident["primary_metric"],
            title=f"{store}: {label.en if label else incident['primary_metric']}, to {day}")
        return {
            "incident": incident,
            "store": store,
            "alerts": _alert_rows(alerts),
            "chart": chart,
            "impact": None if incident["impact_usd"] is None
            else format_value(incident["impact_usd"], "usd"),
            "report_url": self.links.report_page(day),
            "grafana_url": self.grafana_url,
        }

    # ------------------------------------------------------------------ routes

    def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok", headers=HEADERS)

    def incident_page(self, request: Request) -> Response:
        context = self.incident_context(int(request.path_params["incident_id"]))
        if context is None:
            return _refusal("Unknown incident", "There is no such incident: it may have "
                            "been explained away by a later recompute.", 404)
        return _page("incident.html.j2", **context, form=None, grant=None)

    def _granted(self, token: str) -> tuple[AckGrant, dict[str, Any]] | HTMLResponse:
        try:
            grant = self.links.check(token)
        except LinkRefused as exc:
            return _refusal("Link refused", str(exc), 403)
        context = self.incident_context(grant.incident_id)
        if context is None:
            return _refusal("Unknown incident", f"Incident {grant.incident_id} no longer "
                            "exists: a later recompute explained it away.", 404)
        incident = context["incident"]
        if incident["acknowledged_at"] is not None:
            return _page("message.html.j2", 409, title="Already acknowledged",
                         message=f"Incident {incident['id']} was already acknowledged by "
                         f"{incident['acknowledged_by']} at "
                         f"{incident['acknowledged_at']:%Y-%m-%d %H:%M} UTC. This link "
                         "has been used; nothing was changed.", incident=incident)
        return grant, context

    def ack_page(self, request: Request) -> Response:
        found = self._granted(request.path_params["token"])
        if isinstance(found, Response):
            return found
        grant, context = found
        # One token per browser, kept: a second link opened in another tab must not void
        # the first tab's form. Path "/": behind a proxy the pages live under its prefix.
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = _page("incident.html.j2", **context, grant=grant,
                         form={"name": grant.name, "note": "", "csrf": csrf, "error": None})
        response.set_cookie(CSRF_COOKIE, csrf, max_age=int(self.links.ttl.total_seconds()),
                            path="/", httponly=True, samesite="strict",
                            secure=self.secure_cookie)
        return response

    def _cross_site(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.url.netloc}"
        return origin is not None and origin not in self.origins | {own}

    async def acknowledge(self, request: Request) -> Response:
        form = await request.form()
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = str(form.get("csrf", ""))
        if (self._cross_site(request) or not cookie
                or not hmac.compare_digest(cookie.encode(), sent.encode())):
            return _refusal("Request refused", "This form was not sent from the "
                            "acknowledgment page. Open the link from your notification "
                            "again and submit the form there.", 403)
        return await run_in_threadpool(self._acknowledge, request.path_params["token"],
                                       str(form.get("name", "")), str(form.get("note", "")),
                                       sent)

    def _acknowledge(self, token: str, name: str, note: str, csrf: str) -> Response:
        found = self._granted(token)
        if isinstance(found, Response):
            return found
        grant, context = found
        try:
            by = acks.check_acknowledger(name)
            # The link is signed for one person: whoever else uses it is recorded as such.
            if by != grant.name:
                by = acks.check_acknowledger(f"{by} (with {grant.name}'s link)")
            note_text = acks.check_note(note.strip() or None)
        except acks.AcknowledgmentError as exc:
            error = str(exc).replace("--by", "Name").replace("--note", "Note")
            return _page("incident.html.j2", 400, **context, grant=grant,
                         form={"name": name, "note": note, "csrf": csrf, "error": error})
        try:
            count = acknowledge_incident(self.engine, grant.incident_id, by, note_text)
        except ValueError as exc:  # acknowledged meanwhile, by another link
            return _page("message.html.j2", 409, title="Already acknowledged",
                         message=f"{exc}. Nothing was changed.", incident=context["incident"])
        except LookupError as exc:
            return _refusal("Unknown incident", str(exc), 404)
        log.info("incident %s acknowledged by %s (%s alerts)", grant.incident_id, by, count)
        return _page("message.html.j2", title="Acknowledged",
                     message=f"Incident {grant.incident_id} and its {count} open alert(s) "
                     f"are acknowledged by {by}. Thank you.", incident=context["incident"])

    def report(self, request: Request) -> Response:
        try:
            day = date.fromisoformat(request.path_params["day"])
        except ValueError:
            return _refusal("Not a date", "Reports are at /reports/YYYY-MM-DD.", 404)
        district = (request.query_params.get("district") or "").strip()
        store_ids = None
        if district:
            h = store_health_scores
            with self.engine.connect() as conn:
                store_ids = set(conn.execute(sa.select(h.c.store_id).distinct().where(
                    h.c.metric_date == day, sa.func.lower(h.c.district) == district.lower())
                ).scalars())
            if not store_ids:
                return _refusal("Unknown district", f"No store of district {district!r} "
                                f"has data on {day}.", 404)
        try:
            data = load_report_data(self.engine, day, store_ids)
        except NoReportData as exc:
            return _refusal("No report", str(exc), 404)
        return HTMLResponse(build_report_html(data), headers=HEADERS)


class SecurityHeaders:
    """Every response, Starlette's own 404 and 405 included, gets `HEADERS`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


def create_app(engine: sa.Engine, links: AckLinks, grafana_url: str | None = None) -> Starlette:
    """The ASGI app; the engine must be allowed to update the alerts and incidents."""
    app = AckApp(engine, links, grafana_url)
    return Starlette(middleware=[Middleware(SecurityHeaders)], routes=[
        Route("/healthz", app.healthz, methods=["GET"]),
        Route("/ack/{token}", app.ack_page, methods=["GET"]),
        Route("/ack/{token}", app.acknowledge, methods=["POST"]),
        Route("/incidents/{incident_id:int}", app.incident_page, methods=["GET"]),
        Route("/reports/{day}", app.report, methods=["GET"]),
    ])
