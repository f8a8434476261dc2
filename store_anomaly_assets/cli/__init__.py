"""`store-anomaly`: run, backfill, initialise, diagnose and demo the pipeline.

- app.py: the Typer app, its commands and `main(argv) -> int`;
- errors.py: the error contract (one `error:` line, exit 2 for bad input, 1 for a failed run);
- pipeline.py: one Dagster run over a range, on the DAGSTER_HOME instance;
- tasks.py: the other commands' work; render.py: tables, JSON, CSV and progress;
- demo.py: the embedded demo.
"""

from __future__ import annotations

import sys
from contextlib import suppress
from typing import NoReturn

from store_anomaly_assets.cli.app import main
from store_anomaly_assets.cli.errors import CliError, RunFailed
from store_anomaly_assets.cli.pipeline import RunOutcome, ensure_dagster_home, run_pipeline
from store_anomaly_assets.db.engines import dispose_engines

__all__ = [
    "CliError", "RunFailed", "RunOutcome", "ensure_dagster_home", "entrypoint", "finish",
    "main", "run_pipeline",
]


def finish(code: int) -> NoReturn:
    """Close the pooled database connections, flush the output and exit with `code`."""
    dispose_engines()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe: nothing left to say
            stream.flush()
    sys.exit(code)


def entrypoint() -> NoReturn:
    """The `store-anomaly` console script."""
    try:
        code = main()
    except BaseException:
        dispose_engines()
        raise
    finish(code)
