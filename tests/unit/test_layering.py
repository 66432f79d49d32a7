"""Imports point one way, down these layers, across the whole code base:

    service      dsa110-stream and its worker, the dsa110 query CLI
    dagster      partitions, resources, assets, checks, sensors, definitions
    science      stages, the simulator, the products database and catalogue
    ingest       the subband queue, scanner, watcher, incomplete-group policy
    foundation   constants, names, windows, geometry, files, logs, metrics, QA, truth, ...

A module may import from its own layer and those below. Everything under ``dagster`` may
import Dagster; nothing below it does, so stages, the simulator and the science modules work
in a notebook.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dsa_assets", "resources", "sensors")
LAYERS = ["foundation", "ingest", "science", "dagster", "service"]

# module (or package prefix) -> layer; the longest matching prefix wins
PLACES = {
    "dsa_assets": "foundation",
    "dsa_assets.streaming": "ingest",
    "dsa_assets.stages": "science",
    "dsa_assets.sim": "science",
    "dsa_assets.products": "science",
    "dsa_assets.product_catalogue": "science",
    "dsa_assets.retention": "science",
    "dsa_assets.exports": "science",
    "dsa_assets.partitions": "dagster",
    "dsa_assets.assets": "dagster",
    "dsa_assets.definitions": "dagster",
    "resources": "dagster",
    "sensors": "dagster",
    "dsa_assets.service": "service",
    "dsa_assets.cli": "service",
}
COMPATIBILITY = {
    # documented import paths kept where the service used to live: re-exports only
    "dsa_assets.streaming.worker": "service",
    "dsa_assets.streaming.cli": "service",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    if module in COMPATIBILITY:
        return COMPATIBILITY[module]
    best = max((p for p in PLACES if module == p or module.startswith(p + ".")), key=len, default=None)
    return PLACES[best] if best else None


def imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_every_module_has_a_layer():
    assert [module_name(p) for p in sources() if layer_of(module_name(p)) is None] == []
    assert len(sources()) > 60


def test_imports_point_down_the_layers():
    upward = []
    for path in sources():
        here = module_name(path)
        level = LAYERS.index(layer_of(here))
        for name in imports(path):
            there = layer_of(name)
            if there is not None and LAYERS.index(there) > level:
                upward.append(f"{here} ({layer_of(here)}) imports {name} ({there})")
    assert upward == []


def test_nothing_below_the_dagster_layer_imports_dagster():
    below = [p for p in sources() if LAYERS.index(layer_of(module_name(p))) < LAYERS.index("dagster")]
    offenders = {module_name(p): sorted(n for n in imports(p) if n.split(".")[0] == "dagster") for p in below}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(below) > 40
