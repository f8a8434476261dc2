"""The acknowledgment web app (`store-anomaly serve`) and its signed links.

- `links`: signing and checking the per-incident, per-recipient links messages carry;
- `app`: the Starlette app (incident page, acknowledgment form, reports);
- `templates/`: its pages (Jinja2).
"""
