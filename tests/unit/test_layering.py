"""Stages, the simulator and the science modules import no Dagster: they work in a notebook."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "dsa_assets"
DAGSTER_FREE = [
    *sorted((ROOT / "stages").glob("*.py")),
    *sorted((ROOT / "sim").glob("*.py")),
    *(ROOT / name for name in ("constants.py", "geometry.py", "naming.py", "subband.py", "fsutil.py",
                               "products.py", "exceptions.py", "casa_env.py")),
    ROOT / "streaming" / "queue.py",
    ROOT / "streaming" / "scanner.py",
    ROOT / "streaming" / "watcher.py",
    ROOT / "streaming" / "observations.py",
]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_science_modules_do_not_import_dagster():
    offenders = {p.name: imported_modules(p) & {"dagster", "resources", "sensors"} for p in DAGSTER_FREE}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(DAGSTER_FREE) > 15
