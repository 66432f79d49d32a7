"""The variability stage: every source's light curve from the products database, its VAST
variability statistics (:mod:`dsa_assets.variability`), and the published table with a PNG
light curve for each variable source.

Plain Python: ``VariabilityStage(config).execute(db)`` works in a notebook as in the asset.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .. import fsutil
from .. import variability as stats


@dataclass(frozen=True)
class VariabilityConfig:
    output_dir: Path
    """The table goes to ``<output_dir>/variability/variability.csv``, light curves beside it."""
    scratch_dir: Path | None = None


@dataclass(frozen=True)
class VariableSource:
    name: str
    light_curve: list[dict]
    metrics: stats.Metrics
    plot: Path
    """The published PNG of its light curve."""


@dataclass(frozen=True)
class VariabilityResult:
    """The published table: one row per source with two or more measurements (V, eta, Vs, m in
    the units of :mod:`dsa_assets.variability`), and the sources flagged variable."""

    table: Path
    rows: list[dict]
    variable: list[VariableSource]

    def markdown(self, top: int = 15) -> str:
        """The ``top`` sources by eta as a markdown table (fluxes in mJy)."""
        best = sorted(self.rows, key=lambda r: -r["eta"])[:top]
        head = "| source | n | mean mJy | V | eta | Vs | m | variable |\n|---|---|---|---|---|---|---|---|\n"
        return head + "\n".join(
            f"| {r['source']} | {r['n']} | {r['mean_flux_jy'] * 1e3:.2f} | {r['v']:.3f} | {r['eta']:.2f} | "
            f"{r['vs']:.1f} | {r['m']:.2f} | {'yes' if r['variable'] else ''} |" for r in best)


class VariabilityStage:
    name = "variability"

    def __init__(self, config: VariabilityConfig):
        self.config = config

    @property
    def directory(self) -> Path:
        return Path(self.config.output_dir) / "variability"

    def validate(self, db) -> None:
        """Nothing to check beyond a readable database (``db`` answers or raises)."""
        db.count_measurements()

    def execute(self, db) -> VariabilityResult:
        """Compute every light curve's statistics from ``db`` (a ProductsDB) and publish the
        table with its light curves as one directory (built in scratch, renamed into place)."""
        rows, flagged = [], []
        for name in db.measured_sources():
            lc = db.light_curve(name, usable_only=True)
            if len(lc) < 2:
                continue
            m = stats.metrics([r["flux_jy"] for r in lc], [r["flux_err_jy"] for r in lc])
            rows.append({"source": name, **{k: v for k, v in m.as_dict().items() if k != "pair"}})
            if m.variable:
                flagged.append((name, lc, m))
        with fsutil.scratch_directory(self.config.scratch_dir, "variability-") as tmp:
            bundle = tmp / "publish"
            bundle.mkdir()
            write_table(bundle / "variability.csv", rows)
            for name, lc, m in flagged:
                plot_light_curve(bundle / "lightcurves" / f"{safe_name(name)}.png", name, lc, m)
            fsutil.publish(bundle, self.directory)
        variable = [VariableSource(name, lc, m, self.directory / "lightcurves" / f"{safe_name(name)}.png")
                    for name, lc, m in flagged]
        return VariabilityResult(self.directory / "variability.csv", rows, variable)

    def cleanup(self) -> list[Path]:
        """Remove the scratch directories of interrupted runs (a publish is one rename: the
        published table is whole or absent)."""
        return fsutil.sweep_scratch(self.config.scratch_dir, "variability-*")


def safe_name(name: str) -> str:
    """A source name as a file name."""
    return "".join(c if c.isalnum() or c in "+-._" else "_" for c in name)


def write_table(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        if rows:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


def plot_light_curve(path: Path, name: str, lc: list[dict], metrics=None) -> Path:
    """PNG of a light curve: flux density (mJy) with 1-sigma errors against UTC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    t = [datetime.fromtimestamp(r["epoch_unix"], UTC) for r in lc]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.errorbar(t, [r["flux_jy"] * 1e3 for r in lc], yerr=[r["flux_err_jy"] * 1e3 for r in lc], fmt="o", ms=3)
    ax.set_ylabel("flux density (mJy)")
    ax.set_xlabel("UTC")
    title = name if metrics is None else f"{name}  V={metrics.v:.2f}  eta={metrics.eta:.1f}"
    ax.set_title(title, fontsize=9)
    fig.autofmt_xdate()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return fsutil.publish(tmp, path)
