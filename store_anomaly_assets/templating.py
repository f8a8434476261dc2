"""The one Jinja2 setup of the report, the e-mails and the web pages."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from store_anomaly_assets.core.contracts import SEVERITY_COLOURS, SEVERITY_ZH


def environment(package: str) -> Environment:
    """Templates of `package`/templates: HTML autoescaped, undefined names an error, and a
    NULL column shown as nothing."""
    env = Environment(
        loader=PackageLoader(package),
        autoescape=select_autoescape(("html", "html.j2")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=lambda value: "" if value is None else value,
    )
    env.globals.update(severity_zh=SEVERITY_ZH, severity_colours=SEVERITY_COLOURS)
    return env
