"""Point the product at local databases through the environment, as a deployment would.

Every product setting is cleared first, so a developer's shell cannot change what the
tests or the benchmarks measure.
"""

from __future__ import annotations

import os
from pathlib import Path

from store_anomaly_assets.config import setting_names


def use_local_databases(
    databases: dict[str, str], data_dir: Path, host: str = "127.0.0.1", port: int = 3306,
    user: str = "root",
) -> None:
    """Each prefix's database on a local passwordless server; data under `data_dir`."""
    for name in setting_names():
        os.environ.pop(name, None)
    for prefix, database in databases.items():
        os.environ.update({f"{prefix}HOST": host, f"{prefix}PORT": str(port),
                           f"{prefix}USER": user, f"{prefix}DB": database})
    os.environ["STORE_ANOMALY_DATA_DIR"] = str(data_dir)


def without_settings(environ: dict[str, str]) -> dict[str, str]:
    """`environ` less every product setting (for a CLI subprocess's environment)."""
    names = setting_names()
    return {key: value for key, value in environ.items() if key.upper() not in names}
