"""From the e-mail to an acknowledged incident, with no shell and no SQL.

End to end, as deployed: the backfilled chain's analytics tables copied into their own
database, `store-anomaly serve` started from another directory as a subprocess with the
least-privilege account of sql/04 (a password full of URL characters) and a link secret;
the alert notifier sends its e-mail to a real SMTP server; headless Chromium opens the
e-mail's link, submits the form, and the rows are read back from MariaDB. Then the
refusals: a used, a tampered, an expired and a cross-site request write nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml
from browser import chromium
from conftest import SOURCE_DATABASES
from deployed import PORT, Cli, clean_environment, execute_admin, expect_ok
from sinks import SmtpSink, free_port

from store_anomaly_assets import notify as nf
from store_anomaly_assets.config import NotifySettings, load_config
from store_anomaly_assets.db.analytics.schema import ANALYTICS_TABLES
from store_anomaly_assets.defs.resources import Database
from store_anomaly_assets.defs.sensors import alert_notification_tick
from store_anomaly_assets.web.links import AckLinks, LinkRefused, grafana_chart_url

PROJECT = Path(__file__).resolve().parents[1]
DATABASE = "sat_web_ack"
USER = "sat_web_ack"
PASSWORD = "ack:/%#?@pw-x"
SECRET = "test-ack-link-secret-0123456789"
GRAFANA = "http://127.0.0.1:3000/d/store-anomaly"


# ---------------------------------------------------------------------------------------
# The links alone


def test_a_link_binds_incident_name_and_expiry() -> None:
    links = AckLinks(SECRET, "http://127.0.0.1:8088/", timedelta(hours=168))
    now = datetime(2026, 1, 10, 12, tzinfo=UTC)
    url = links.url(42, "Dana Li", now)
    assert url.startswith("http://127.0.0.1:8088/ack/")
    grant = links.check(url.rsplit("/", 1)[1], now + timedelta(hours=167))
    assert (grant.incident_id, grant.name) == (42, "Dana Li")
    assert grant.expires == now + timedelta(hours=168)

    token = url.rsplit("/", 1)[1]
    with pytest.raises(LinkRefused, match="expired on 2026-01-17 12:00 UTC"):
        links.check(token, now + timedelta(hours=168))
    # Another incident id or name in the payload, or another secret: not valid.
    signature = token.split(".")[1]
    forged = links.token(43, "Dana Li", now).split(".")[0]
    flipped = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    for bad in (f"{forged}.{signature}", flipped, token[:20], ""):
        with pytest.raises(LinkRefused, match="not valid"):
            links.check(bad, now)
    other = AckLinks("another-secret-0123456789", "http://x", timedelta(hours=1))
    with pytest.raises(LinkRefused, match="not valid"):
        other.check(token, now)


def test_the_chart_link_opens_the_dashboard_around_the_incident() -> None:
    url = grafana_chart_url(GRAFANA, 1101, "revenue", date(2025, 10, 8), date(2025, 10, 9))
    assert url.startswith(GRAFANA + "?var-store=1101&var-metric=revenue&from=")
    start = datetime(2025, 9, 8, tzinfo=UTC).timestamp() * 1000
    end = datetime(2025, 10, 17, tzinfo=UTC).timestamp() * 1000
    assert f"from={int(start)}&to={int(end)}" in url


def test_the_link_secret_is_checked_and_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    from store_anomaly_assets.config import SettingsError

    monkeypatch.setenv("ACK_LINK_SECRET", "short-secret")
    with pytest.raises(SettingsError) as error:
        load_config(env_file=None)
    assert "ACK_LINK_SECRET" in str(error.value) and "short-secret" not in str(error.value)


# ---------------------------------------------------------------------------------------
# The deployed app


def _copy_analytics(source: str) -> None:
    """The backfilled chain's analytics tables, copied into DATABASE."""
    statements = [f"DROP DATABASE IF EXISTS `{DATABASE}`",
                  f"CREATE DATABASE `{DATABASE}` CHARACTER SET utf8mb4"]
    for table in ANALYTICS_TABLES:
        statements += [f"CREATE TABLE `{DATABASE}`.`{table.name}` LIKE `{source}`.`{table.name}`",
                       f"INSERT INTO `{DATABASE}`.`{table.name}` SELECT * FROM "
                       f"`{source}`.`{table.name}`"]
    execute_admin(statements)


def _grant_statements() -> list[str]:
    """sql/04 for this module: its database, user and password."""
    sql = (PROJECT / "sql" / "04_create_ack_app_user.sql").read_text()
    sql = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    sql = (sql.replace("test.", f"`{DATABASE}`.").replace("'store_anomaly_ack'", f"'{USER}'")
           .replace("REPLACE_WITH_GENERATED_PASSWORD", PASSWORD.replace("'", "''")))
    return [s.strip() for s in sql.split(";") if s.strip()]


class Site:
    """`store-anomaly serve` running, and the CLI environment that reaches it."""

    def __init__(self, cli: Cli, port: int) -> None:
        self.cli, self.port = cli, port
        self.base = f"http://127.0.0.1:{port}"

    def rows(self, sql: str, **params: object) -> list[dict]:
        engine = sa.create_engine(f"mysql+pymysql://root@127.0.0.1:{PORT}/{DATABASE}")
        try:
            with engine.connect() as conn:
                return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def site(backfilled_analytics: sa.Engine, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Site]:
    _copy_analytics(backfilled_analytics.url.database)
    execute_admin([f"DROP USER IF EXISTS '{USER}'@'%'", *_grant_statements()])
    port = free_port()
    home = tmp_path_factory.mktemp("web-cwd")
    env = {**clean_environment(), "DBATEST_HOST": "127.0.0.1", "DBATEST_PORT": str(PORT),
           "DBATEST_USER": USER, "DBATEST_PASS": PASSWORD, "DBATEST_DB": DATABASE,
           "ACK_LINK_SECRET": SECRET, "SERVE_PORT": str(port), "GRAFANA_URL": GRAFANA,
           "STORE_ANOMALY_DATA_DIR": str(home / "data")}
    cli = Cli(home, env, home / "logs")
    server = cli.start("serve", "serve")
    try:
        for _ in range(150):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).text == "ok":
                    break
            except httpx.TransportError:
                pass
            assert server.proc.poll() is None, f"serve exited: {server.stderr[-2000:]}"
            time.sleep(0.2)
        else:
            pytest.fail(f"serve did not answer on port {port}: {server.stderr[-2000:]}")
        yield Site(cli, port)
    finally:
        cli.kill_background()
        log = server.stderr
        assert PASSWORD not in log and SECRET not in log
        assert "/ack/" not in log  # no access log: it would carry the links' tokens
        execute_admin([f"DROP USER IF EXISTS '{USER}'@'%'",
                       f"DROP DATABASE IF EXISTS `{DATABASE}`"])


def _open_incidents(site: Site) -> list[dict]:
    return site.rows(
        "SELECT id, store_id, store_name, severity, primary_metric, district FROM "
        "store_anomaly_incidents WHERE acknowledged_at IS NULL AND severity = 'CRITICAL' "
        "ORDER BY alert_count DESC, id")


def _acknowledgment(site: Site, incident_id: int) -> tuple[dict, list[dict]]:
    incident = site.rows("SELECT acknowledged_by, acknowledged_at, ack_note, status FROM "
                         "store_anomaly_incidents WHERE id = :i", i=incident_id)[0]
    alerts = site.rows("SELECT acknowledged, acknowledged_by, acknowledged_at, ack_note FROM "
                       "store_anomaly_alerts WHERE incident_id = :i", i=incident_id)
    return incident, alerts


def _routing(tmp_path: Path, smtp: SmtpSink, district: str) -> nf.Routing:
    """Dana Li, district manager of `district`, by e-mail."""
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump({"recipients": [{
        "id": "dm-dana", "name": "Dana Li", "role": "district_manager",
        "districts": [district], "urls": [smtp.url("dana@example.com")]}]}),
        encoding="utf-8")
    return nf.load_routing(path, "America/New_York")


@pytest.mark.browser
def test_a_district_manager_acknowledges_from_the_email_in_chromium(
    site: Site, tmp_path: Path
) -> None:
    district = _open_incidents(site)[0]["district"]
    smtp = SmtpSink()
    smtp.controller.start()
    try:
        analytics = Database(host="127.0.0.1", port=PORT, user="root", database=DATABASE,
                             read_only=False)
        # The notifier routes by the store master's districts, in the chain's opshop.
        opshop = Database(host="127.0.0.1", port=PORT, user="root",
                          database=SOURCE_DATABASES["OPSHOP_"], read_only=True)
        links = nf.MessageLinks(AckLinks(SECRET, site.base, timedelta(hours=168)), GRAFANA)
        routing = _routing(tmp_path, smtp, district)
        alerts_of = site.rows("SELECT MAX(alert_date) AS d FROM store_anomaly_alerts")[0]["d"]
        now = datetime.combine(alerts_of + timedelta(days=1), datetime.min.time(), UTC)
        alert_notification_tick(analytics, opshop, routing, {}, now + timedelta(hours=13),
                                NotifySettings(lookback_days=400), links=links)
        mails = [m for m in smtp.take() if m.to == ["dana@example.com"]]
    finally:
        smtp.controller.stop()
    assert len(mails) == 1
    mail = mails[0]
    assert mail.content_type == "multipart/alternative" and mail.html and mail.text
    # One card per incident in the HTML, with its acknowledgment link; the plain-text part
    # carries the same links. Dana opens the first.
    cards = re.findall(r'data-incident-id="(\d+)"', mail.html)
    assert cards and len(cards) == len(set(cards))
    incident = site.rows("SELECT id, store_name, district FROM store_anomaly_incidents "
                         "WHERE id = :i", i=int(cards[0]))[0]
    assert incident["district"] == district
    link = re.search(rf"{re.escape(site.base)}/ack/[\w.-]+", mail.text)
    ack_urls = re.findall(rf"{re.escape(site.base)}/ack/[\w.-]+", mail.html)
    assert link and len(set(ack_urls)) == len(cards)
    assert f"{site.base}/reports/" in mail.text and GRAFANA in mail.text
    # The card of our incident: find its link in the HTML.
    card = mail.html[mail.html.index(f'data-incident-id="{incident["id"]}"'):]
    url = re.search(rf"{re.escape(site.base)}/ack/[\w.-]+", card).group(0)
    assert url in mail.text

    other = next(i for i in _open_incidents(site) if i["id"] != incident["id"])
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 420, "height": 900})
        response = page.goto(url)
        assert response.status == 200
        assert page.locator(f'h1[data-incident-id="{incident["id"]}"]').count() == 1
        assert incident["store_name"] in page.inner_text("h1")
        assert page.locator("svg[data-chart=control]").count() == 1
        assert page.locator("ol li").count() == 7  # the guide's investigation checklist
        assert page.input_value("#name") == "Dana Li"
        assert page.evaluate("document.documentElement.scrollWidth") <= 420
        page.fill("#note", "Espresso machine down 07:00-11:00; repaired. 已维修。")
        page.screenshot(path=str(tmp_path / "ack-page.png"), full_page=True)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.inner_text("h1") == "Acknowledged"

        acked, alerts = _acknowledgment(site, incident["id"])
        assert acked["acknowledged_by"] == "Dana Li" and acked["status"] == "ACKNOWLEDGED"
        assert acked["ack_note"].startswith("Espresso machine down")
        assert alerts and all(a["acknowledged"] and a["acknowledged_by"] == "Dana Li"
                              and a["ack_note"] == acked["ack_note"]
                              and a["acknowledged_at"] == acked["acknowledged_at"]
                              for a in alerts)

        # The link is used: it says so and changes nothing.
        response = page.goto(url)
        assert response.status == 409 and "already acknowledged by Dana Li" in page.content()
        assert _acknowledgment(site, incident["id"]) == (acked, alerts)

        # A tampered link is refused, and the incident it aimed at stays open.
        token = AckLinks(SECRET, site.base, timedelta(hours=1)).token(other["id"], "Mallory")
        tampered = f"{site.base}/ack/{token[:-2]}{'xy' if token[-2:] != 'xy' else 'zz'}"
        response = page.goto(tampered)
        assert response.status == 403 and "not valid" in page.content()
        assert page.locator("form").count() == 0
        # So is an expired one.
        expired = AckLinks(SECRET, site.base, timedelta(hours=-1)).url(other["id"], "Dana Li")
        response = page.goto(expired)
        assert response.status == 403 and "expired" in page.content()
        if os.environ.get("STORE_ANOMALY_SAVE_SCREENSHOTS"):
            images = PROJECT / "docs" / "images"
            images.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp_path / "ack-page.png", images / "ack-page.png")
    assert _acknowledgment(site, other["id"])[0]["acknowledged_at"] is None


def test_cross_site_and_foreign_requests_write_nothing(site: Site) -> None:
    incident = _open_incidents(site)[-1]
    url = AckLinks(SECRET, site.base, timedelta(hours=1)).url(incident["id"], "Dana Li")
    with httpx.Client() as client:
        page = client.get(url)
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert SECRET not in page.text and PASSWORD not in page.text
        assert page.headers["referrer-policy"] == "same-origin"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        form = {"csrf": csrf, "name": "Mallory", "note": "cross-site"}
        # Another site's page posting the form: the browser sends its Origin.
        refused = client.post(url, data=form, headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403
        # Without the cookie (a form on another site cannot send a SameSite=Strict one).
        assert httpx.post(url, data=form).status_code == 403
        # A wrong token in the form.
        assert client.post(url, data={**form, "csrf": "x"}).status_code == 403
        # A token that is not even ASCII: refused, not a server error.
        assert client.post(url, data={**form, "csrf": "é"}).status_code == 403
        # An empty name, or one that would forge a log line, is refused with the form.
        empty = client.post(url, data={**form, "name": "  "})
        assert empty.status_code == 400 and "Name needs the name" in empty.text
        forged = client.post(url, data={**form, "name": "Dana\r\nINFO fake"})
        assert forged.status_code == 400 and "control characters" in forged.text
        assert _acknowledgment(site, incident["id"])[0]["acknowledged_at"] is None
        # Two tabs: opening a second link keeps the browser's token, so the first tab's
        # form still works. Whoever submits another person's link is recorded as such.
        second = _open_incidents(site)[-2]
        other_url = AckLinks(SECRET, site.base, timedelta(hours=1)).url(second["id"], "Vic")
        assert client.get(other_url).status_code == 200
        done = client.post(url, data=form)
        assert done.status_code == 200 and "Acknowledged" in done.text
    incident_row, alerts = _acknowledgment(site, incident["id"])
    assert incident_row["acknowledged_by"] == "Mallory (with Dana Li's link)"
    assert incident_row["ack_note"] == "cross-site" and all(a["acknowledged"] for a in alerts)
    # Nothing else writes: no other method or route takes a request body.
    for method, path in (("POST", f"/incidents/{incident['id']}"), ("PUT", "/ack/x"),
                         ("DELETE", "/ack/x"), ("POST", "/reports/2025-10-08"),
                         ("POST", "/healthz")):
        assert httpx.request(method, site.base + path).status_code == 405, (method, path)


def test_read_only_pages_and_the_cli_link(site: Site) -> None:
    incident = _open_incidents(site)[-3]
    page = httpx.get(f"{site.base}/incidents/{incident['id']}")
    assert page.status_code == 200 and "<form" not in page.text
    assert "signed for you" in page.text and 'data-chart="control"' in page.text
    assert httpx.get(f"{site.base}/incidents/999999999").status_code == 404
    report = httpx.get(f"{site.base}/reports/2025-10-08")
    assert report.status_code == 200 and "data-incident-id" in report.text
    district = incident["district"]
    assert district, "the synthetic chain's stores have districts"
    one = httpx.get(f"{site.base}/reports/2025-10-08", params={"district": district})
    assert one.status_code == 200 and len(one.text) < len(report.text)
    assert httpx.get(f"{site.base}/reports/2025-10-08",
                     params={"district": "Nowhere"}).status_code == 404
    assert httpx.get(f"{site.base}/reports/not-a-day").status_code == 404

    # `ack-link` prints a link the server honours, for operators.
    result = site.cli("ack-link", str(incident["id"]), "--for", "Sam Ops")
    expect_ok(result)
    url = result.stdout.strip()
    assert url.startswith(f"{site.base}/ack/")
    assert 'value="Sam Ops"' in httpx.get(url).text
    unknown = site.cli("ack-link", "999999999", "--for", "Sam")
    assert unknown.returncode == 2 and "incident 999999999 does not exist" in unknown.stderr
    no_secret = site.cli("ack-link", str(incident["id"]), "--for", "Sam",
                         env_overrides={"ACK_LINK_SECRET": ""})
    assert no_secret.returncode == 2 and "ACK_LINK_SECRET is not set" in no_secret.stderr
    assert PASSWORD not in result.stderr + unknown.stderr + no_secret.stderr


def test_the_account_of_sql04_cannot_write_anything_else(site: Site) -> None:
    engine = sa.create_engine(sa.URL.create("mysql+pymysql", username=USER, password=PASSWORD,
                                            host="127.0.0.1", port=PORT, database=DATABASE))
    try:
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT COUNT(*) FROM store_anomaly_incidents")).scalar()
            for statement in ("UPDATE store_anomaly_alerts SET severity = 'INFO' LIMIT 1",
                              "DELETE FROM store_anomaly_incidents LIMIT 1",
                              "UPDATE store_health_scores SET health_score = 0 LIMIT 1"):
                with pytest.raises(sa.exc.OperationalError, match="denied"):
                    c.execute(sa.text(statement))
    finally:
        engine.dispose()


def test_health_and_incidents_carry_the_store_district_and_region(site: Site) -> None:
    """District and region come from t_shop_info, on every health row and incident."""
    opshop = SOURCE_DATABASES["OPSHOP_"]
    for table in ("store_health_scores", "store_anomaly_incidents"):
        rows = site.rows(
            f"SELECT COUNT(*) AS n, SUM(t.district <=> s.district AND t.region <=> s.region) "
            f"AS same, SUM(t.district IS NOT NULL) AS named FROM {table} t "
            f"JOIN `{opshop}`.t_shop_info s ON s.dept_id = t.store_id")[0]
        assert rows["n"] > 0 and rows["same"] == rows["n"] and rows["named"] > 0, table


def test_every_channel_gets_the_links_and_emails_get_html() -> None:
    """Slack, Teams and webhooks get the e-mail's links as text; each link is signed for
    the recipient of that message."""
    import polars as pl

    routing = nf.parse_routing({"recipients": [
        {"id": "dm", "name": "Dana Li", "role": "operations_director",
         "urls": ["json://127.0.0.1:9/hook", "mailto://127.0.0.1:9?from=alerts@example.com&to=dana@example.com",
                  "slack://T000/B000/XXXX"]},
        {"id": "vp", "name": "Vic Park", "role": "operations_director",
         "urls": ["json://127.0.0.1:9/vp"]}]})
    day = date(2025, 10, 8)
    alerts = pl.DataFrame([
        {"id": 7, "incident_id": 70, "metric_name": "revenue", "severity": "CRITICAL",
         "impact_usd": 900.0, "z_score": -6.5},
        {"id": 8, "incident_id": 70, "metric_name": "order_count", "severity": "CRITICAL",
         "impact_usd": None, "z_score": -6.7},
    ]).with_columns(store_id=pl.lit(1101), alert_date=pl.lit(day), store_name=pl.lit("Midtown"),
                    description_en=pl.lit("Revenue fell"), description_zh=pl.lit("营业额下降"),
                    recommended_action=pl.lit("Investigate"),
                    recommended_action_zh=pl.lit("排查"))
    ack = AckLinks(SECRET, "https://ops.example.com/ack-app", timedelta(hours=168))
    plan = nf.plan_alert_notifications(alerts, routing, links=nf.MessageLinks(ack, GRAFANA))
    assert len(plan.messages) == 4
    for message in plan.messages:
        name = "Dana Li" if message.channel.url != "json://127.0.0.1:9/vp" else "Vic Park"
        url = re.search(r"https://ops\.example\.com/ack-app/ack/[\w.-]+", message.body).group(0)
        assert ack.check(url.rsplit("/", 1)[1]).name == name
        assert ack.check(url.rsplit("/", 1)[1]).incident_id == 70
        assert message.body.count("/ack/") == 1  # one link per incident, not per alert
        assert "https://ops.example.com/ack-app/reports/2025-10-08" in message.body
        assert f"{GRAFANA}?var-store=1101&var-metric=revenue" in message.body
        is_email = message.channel.url.startswith("mailto")
        assert (message.html is not None) == is_email
        if is_email:
            assert message.html.count('data-incident-id="70"') == 1
            assert url in message.html and "Order count" in message.html
    # A plan signs once: Dana's three channels carry the same link.
    danas = {re.search(r"/ack/[\w.-]+", m.body).group(0) for m in plan.messages
             if m.channel.url != "json://127.0.0.1:9/vp"}
    assert len(danas) == 1
    # Without a secret the messages say how to acknowledge from the shell instead.
    plain = nf.plan_alert_notifications(alerts, routing)
    assert all("/ack/" not in m.body and "store-anomaly ack --incident 70" in m.body
               for m in plain.messages)
