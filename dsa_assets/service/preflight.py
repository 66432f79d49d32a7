"""Checks made before the service starts anything: every path the settings name is usable, the
reference catalogue reads, and each problem is one line naming the option, its value and what
is wrong. Nothing is created here; the service creates the output directories, and the input
directory only when asked (``--create-input-dir``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from resources.settings import Settings

from ..exceptions import CatalogueError


def writable_directory(flag: str, path: Path) -> str | None:
    """Why ``path`` cannot serve as a directory to write into, or None. An absent directory is
    judged by the nearest existing one above it, where it would be created; nothing is made."""
    if path.exists() and not path.is_dir():
        return f"{flag} {path}: not a directory"
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{flag} {path}: cannot be created ({existing} is a file)"
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".dsa110-probe-"):
            pass
    except OSError as exc:
        return f"{flag} {path}: cannot write in {existing} ({exc.strerror or exc})"
    return None


def problems(settings: Settings, create_input_dir: bool = False) -> list[str]:
    """Every reason the service could not start with ``settings``."""
    p, found = settings.pipeline, []
    inp = Path(p.input_dir)
    if inp.exists() and not inp.is_dir():
        found.append(f"--input-dir {inp}: not a directory")
    elif not inp.exists() and not create_input_dir:
        found.append(f"--input-dir {inp}: no such directory (--create-input-dir creates it)")
    elif not inp.exists():
        found += [why for why in [writable_directory("--input-dir", inp)] if why]
    elif not os.access(inp, os.R_OK | os.X_OK):
        found.append(f"--input-dir {inp}: not readable")
    directories = [("--output-dir", p.output_path), ("--scratch-dir", p.scratch_path),
                   ("--dagster-home", settings.dagster_home), ("--queue-db", p.queue_path.parent)]
    if "://" not in p.products_target:
        directories.append(("--products-db", Path(p.products_target).parent))
    for flag, path in directories:
        why = writable_directory(flag, path)
        if why:
            found.append(why)
            if flag == "--output-dir":
                break  # everything else defaults to a place under it
    if p.reference_catalogue:
        try:
            p.reference_sources()
        except CatalogueError as exc:
            found.append(f"--reference-catalogue {exc}")
    return found
