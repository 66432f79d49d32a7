"""Process environment for CASA and numerical libraries, applied before casatools is imported.

casatools reads its configuration when first imported and, by default, tries to download
measures data (which fails offline). We point it at the measures shipped by the PyPI
``casadata`` package through a site configuration file named by ``CASASITECONFIG``, turn
auto-updates off, and send CASA's log file to ``CASA_LOGDIR``. A user who has already set
``CASASITECONFIG`` (or any of the variables below) keeps their setting.

Defaults: ``CASA_LOGDIR=/tmp/casa_logs``, ``OMP_NUM_THREADS=4``, ``OPENBLAS_NUM_THREADS=1``,
``MKL_NUM_THREADS=1``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

ENV_DEFAULTS = {
    "CASA_LOGDIR": "/tmp/casa_logs",
    "OMP_NUM_THREADS": "4",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

HARMLESS_CASA_SEVERE = ("TAI_UTC seems out-of-date",)
"""SEVERE lines CASA prints that do not indicate a failure (casadata's leap-second table is
from 2025-09; it stays correct until the next leap second)."""

_SITE_TEMPLATE = """\
# Written by dsa_assets.casa_env: offline CASA using the measures of the casadata package.
import casadata
measurespath = casadata.datapath
datapath = [casadata.datapath]
measures_auto_update = False
data_auto_update = False
nologger = True
nogui = True
log2term = False
logfile = {logfile!r}
"""


def configure(env: dict | None = None) -> dict:
    """Set the environment defaults and the CASA site config in ``env`` (default os.environ).

    Idempotent and cheap (no CASA import). Returns the variables it set.
    """
    env = os.environ if env is None else env
    applied = {}
    for key, value in ENV_DEFAULTS.items():
        if not env.get(key):
            env[key] = value
            applied[key] = value
    logdir = Path(env["CASA_LOGDIR"])
    logdir.mkdir(parents=True, exist_ok=True)
    if not env.get("CASASITECONFIG"):
        site_dir = Path(tempfile.gettempdir()) / f"dsa110-casa-{os.getuid()}"
        site_dir.mkdir(parents=True, exist_ok=True)
        site = site_dir / "casasiteconfig.py"
        text = _SITE_TEMPLATE.format(logfile=str(logdir / "casa.log"))
        if not site.exists() or site.read_text() != text:
            tmp = site.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            tmp.replace(site)
        env["CASASITECONFIG"] = str(site)
        applied["CASASITECONFIG"] = str(site)
    return applied


def severe_lines(log_text: str) -> list[str]:
    """SEVERE lines of a CASA log that are real errors (known harmless ones removed)."""
    return [
        line
        for line in log_text.splitlines()
        if "SEVERE" in line and not any(h in line for h in HARMLESS_CASA_SEVERE)
    ]


logging.getLogger(__name__).addHandler(logging.NullHandler())
