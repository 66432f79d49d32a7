"""``dsa110``: query the products database from the command line.

    dsa110 lightcurve --products-db out/state/products.sqlite3 --source "SIM J133931.6+304059"
    dsa110 lightcurve ... --csv lc.csv --png lc.png
    dsa110 variables --products-db ... [--all] [--csv table.csv]
    dsa110 sources --products-db ... --votable sources.vot
    dsa110 explore --products-db ... [--port 3001]      (the source explorer and cone search)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dsa110", description="Light curves and variability from the products database.")
    sub = p.add_subparsers(dest="command", required=True)
    lc = sub.add_parser("lightcurve", help="one source's forced flux densities in time order")
    lc.add_argument("--products-db", required=True, help="SQLAlchemy URL or SQLite path (<output>/state/products.sqlite3)")
    lc.add_argument("--source", required=True, help="source name as in the reference catalogue")
    lc.add_argument("--mosaics", action="store_true", help="measurements on hourly mosaics instead of observation images")
    lc.add_argument("--csv", type=Path, help="write the light curve as CSV")
    lc.add_argument("--votable", type=Path, help="write the light curve as a VOTable")
    lc.add_argument("--png", type=Path, help="plot it")
    var = sub.add_parser("variables", help="variability statistics of every source with two or more measurements")
    var.add_argument("--products-db", required=True)
    var.add_argument("--all", action="store_true", help="every source, not only those flagged variable")
    var.add_argument("--csv", type=Path, help="write the table as CSV")
    var.add_argument("--votable", type=Path, help="write the table as a VOTable")
    src = sub.add_parser("sources", help="every source with its variability and ESE statistics")
    src.add_argument("--products-db", required=True)
    src.add_argument("--csv", type=Path, help="write the table as CSV")
    src.add_argument("--votable", type=Path, help="write the table as a VOTable")
    web = sub.add_parser("explore", help="serve the source explorer (read-only web pages and a cone search)")
    web.add_argument("--products-db", required=True)
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=3001)
    return p


def lightcurve(args) -> int:
    from . import exports
    from .products import ProductsDB
    from .variability import metrics, table_thresholds

    db = ProductsDB(args.products_db, must_exist=True)
    image_kind = "mosaic" if args.mosaics else "observation"
    rows = db.light_curve(args.source, image_kind=image_kind)
    if not rows:
        print(f"no measurements of {args.source!r}", file=sys.stderr)
        return 1
    print(f"{'utc':20s} {'flux_mJy':>10s} {'err_mJy':>8s} {'snr':>7s}  {'image':24s} flags")
    for r in rows:
        print(f"{exports.utc(r['epoch_unix']):20s} {r['flux_jy'] * 1e3:10.3f} {r['flux_err_jy'] * 1e3:8.3f} "
              f"{(r['snr'] or 0):7.1f}  {r['image_id']:24s} {exports.shown_flags(r)}")
    usable = [r for r in rows if r["counted"]]
    if len(usable) > 1:
        # judged as in the variability table, whose thresholds follow its size
        m = metrics([r["flux_jy"] for r in usable], [r["flux_err_jy"] for r in usable],
                    table_thresholds(len(db.measured_sources())))
        print(f"n={m.n} V={m.v:.3f} eta={m.eta:.2f} Vs={m.vs:.1f} m={m.m:.2f} variable={'yes' if m.variable else 'no'}"
              + _left_out(rows))
    # the exports hold the blind detections too, marked by their kind (as the explorer's)
    _write(args, exports.light_curve_table(db, args.source, image_kind=image_kind))
    if args.png:
        from .stages.variability import plot_light_curve

        plot_light_curve(args.png, args.source, rows)
    return 0


def _left_out(rows: list[dict]) -> str:
    """What the statistics did not count (:meth:`ProductsDB.light_curve`'s ``counted``):
    flagged points, and the discovery of an uncatalogued source."""
    flagged = sum(not r["counted"] and not r["discovery"] for r in rows)
    discovery = any(r["discovery"] for r in rows)
    parts = ([f"{flagged} flagged point(s)"] if flagged else []) + (["its discovery"] if discovery else [])
    return f" ({' and '.join(parts)} left out)" if parts else ""


def variables(args) -> int:
    from .products import ProductsDB
    from .variability import metrics, table_thresholds

    db = ProductsDB(args.products_db, must_exist=True)
    table = []
    names = db.measured_sources()
    thresholds = table_thresholds(len(names))
    for name in names:
        rows = db.light_curve(name, usable_only=True)
        if len(rows) < 2:
            continue
        m = metrics([r["flux_jy"] for r in rows], [r["flux_err_jy"] for r in rows], thresholds)
        if m.variable or args.all:
            table.append((name, m))
    print(f"{'source':28s} {'n':>3s} {'mean_mJy':>9s} {'V':>6s} {'eta':>8s} {'Vs':>6s} {'m':>6s} variable")
    for name, m in sorted(table, key=lambda t: -t[1].eta):
        print(f"{name:28s} {m.n:3d} {m.mean_flux_jy * 1e3:9.2f} {m.v:6.3f} {m.eta:8.2f} {m.vs:6.1f} {m.m:6.2f} "
              f"{'yes' if m.variable else ''}")
    _write_tables(args, ["source", "n", "mean_flux_jy", "v", "eta", "vs", "m", "variable"],
                  [[name, m.n, m.mean_flux_jy, m.v, m.eta, m.vs, m.m, m.variable] for name, m in table],
                  {"mean_flux_jy": "Jy"}, "variability statistics (VAST definitions)")
    return 0


def _write_tables(args, columns: list[str], rows: list[list], units: dict[str, str], description: str) -> None:
    """The table as CSV (``--csv``) and as a VOTable (``--votable``, astropy; units on the
    columns)."""
    from . import exports

    data = exports.table(columns, rows, units, description)
    _write(args, data)


def _write(args, data) -> None:
    from . import exports

    for path, fmt in ((args.csv, "csv"), (args.votable, "vot")):
        if path:
            Path(path).write_bytes(exports.serialise(data, fmt))


def sources(args) -> int:
    from . import exports
    from .products import ProductsDB

    db = ProductsDB(args.products_db, must_exist=True)
    data = exports.source_table(db)
    print(f"{len(data)} sources ({int((~data['in_catalogue']).sum())} uncatalogued), "
          f"{int(data['variable'].sum())} variable, {int(data['ese_candidate'].sum())} ESE candidate(s)")
    _write(args, data)
    return 0


def explore(args) -> int:
    from .service import explorer

    explorer.serve(args.products_db, args.host, args.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .exceptions import ProductsError

    try:
        return {"lightcurve": lightcurve, "variables": variables, "sources": sources,
                "explore": explore}[args.command](args)
    except ProductsError as exc:
        print(f"dsa110: error: --products-db {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
