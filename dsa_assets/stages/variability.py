"""The variability stage: every source's light curve from the products database, its VAST
variability statistics (:mod:`dsa_assets.variability`), its ESE and trend search
(:mod:`dsa_assets.ese`), and the published table with a PNG light curve for each variable
source and each ESE candidate.

Plain Python: ``VariabilityStage(config).execute(db)`` works in a notebook as in the asset.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .. import ese, fsutil
from .. import variability as stats


@dataclass(frozen=True)
class VariabilityConfig:
    output_dir: Path
    """The table goes to ``<output_dir>/variability/variability.csv``, light curves beside it."""
    scratch_dir: Path | None = None
    expected_false_variables: float = stats.EXPECTED_FALSE_VARIABLES
    """Constant sources (correct errors) expected to be flagged variable in one table: each
    source's false-alarm probability is this over the number of sources, at most 1e-3."""


@dataclass(frozen=True)
class VariableSource:
    name: str
    light_curve: list[dict]
    metrics: stats.Metrics
    plot: Path
    """The published PNG of its light curve."""


@dataclass(frozen=True)
class VariabilityResult:
    """The published table: one row per source with two or more usable measurements (an
    uncatalogued source's discovery left out; V, eta, Vs, m in the units of
    :mod:`dsa_assets.variability`), and the sources flagged variable."""

    table: Path
    rows: list[dict]
    """Per source: ``source``, the :class:`Metrics` fields but ``pair``, ``eta_threshold``, and
    the :class:`dsa_assets.ese.Search` fields but ``n_days``."""
    variable: list[VariableSource]
    ese_candidates: list[str]

    def statistics_rows(self) -> list[dict]:
        """The rows as the products database's ``source_statistics`` holds them."""
        return [{"name": r["source"], **{k: v for k, v in r.items() if k != "source"}} for r in self.rows]

    def markdown(self, top: int = 15) -> str:
        """The ``top`` sources by eta as a markdown table (fluxes in mJy)."""
        best = sorted(self.rows, key=lambda r: -r["eta"])[:top]
        head = "| source | n | mean mJy | V | eta | Vs | m | variable | ESE score |\n|---|---|---|---|---|---|---|---|---|\n"
        return head + "\n".join(
            f"| {r['source']} | {r['n']} | {r['mean_flux_jy'] * 1e3:.2f} | {r['v']:.3f} | {r['eta']:.2f} | "
            f"{r['vs']:.1f} | {r['m']:.2f} | {'yes' if r['variable'] else ''} | "
            f"{r['ese_score']:.1f}{' candidate' if r['ese_candidate'] else ''} |" for r in best)


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
        rows, flagged, candidates = [], [], []
        names = db.measured_sources()
        thresholds = stats.table_thresholds(len(names), self.config.expected_false_variables)
        for name in names:
            lc = db.light_curve(name, usable_only=True)
            if len(lc) < 2:
                continue
            t, flux, err = ([r[k] for r in lc] for k in ("epoch_unix", "flux_jy", "flux_err_jy"))
            m = stats.metrics(flux, err, thresholds)
            search = ese.search(t, flux, err)
            rows.append({"source": name, **{k: v for k, v in m.as_dict().items() if k != "pair"},
                         "eta_threshold": stats.eta_threshold(m.n, thresholds.false_alarm),
                         **{k: v for k, v in search.as_dict().items() if k != "n_days"}})
            if m.variable or search.ese_candidate:
                flagged.append((name, lc, m))
            if search.ese_candidate:
                candidates.append(name)
        with fsutil.scratch_directory(self.config.scratch_dir, "variability-") as tmp:
            bundle = tmp / "publish"
            bundle.mkdir()
            write_table(bundle / "variability.csv", rows)
            for name, lc, m in flagged:
                plot_light_curve(bundle / "lightcurves" / f"{safe_name(name)}.png", name, lc, m)
            fsutil.publish(bundle, self.directory)
        variable = [VariableSource(name, lc, m, self.directory / "lightcurves" / f"{safe_name(name)}.png")
                    for name, lc, m in flagged if m.variable]
        return VariabilityResult(self.directory / "variability.csv", rows, variable, candidates)

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
    """PNG of a light curve: flux density (mJy) with 1-sigma errors against UTC; rows its
    statistics leave out (``counted`` false, :meth:`ProductsDB.light_curve`) as grey crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    for counted, style in ((True, {"fmt": "o", "ms": 3}), (False, {"fmt": "x", "ms": 5, "color": "0.6"})):
        rows = [r for r in lc if r.get("counted", True) is counted]
        if rows:
            ax.errorbar([datetime.fromtimestamp(r["epoch_unix"], UTC) for r in rows], [r["flux_jy"] * 1e3 for r in rows],
                        yerr=[r["flux_err_jy"] * 1e3 for r in rows], **style)
    ax.set_ylabel("flux density (mJy)")
    ax.set_xlabel("UTC")
    title = name if metrics is None else f"{name}  V={metrics.v:.2f}  eta={metrics.eta:.1f}"
    ax.set_title(title, fontsize=9)
    fig.autofmt_xdate()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return fsutil.publish(tmp, path)
