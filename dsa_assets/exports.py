"""Standard exports of the products database as astropy tables: a source's light curve, the
source table with its statistics, and an IVOA Simple Cone Search (SCS 1.03) result; written as
CSV or VOTable by :func:`serialise`. The ``dsa110`` CLI and the source explorer both use them.

Fluxes in Jy, positions in ICRS degrees, times as ISO UTC and Unix seconds. Plain Python.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np

FORMATS = {"csv": "text/csv", "vot": "application/x-votable+xml"}
"""Export formats and their media types."""

LIGHT_CURVE_UNITS = {"epoch_unix": "s", "flux_jy": "Jy", "flux_err_jy": "Jy", "local_rms_jy": "Jy/beam"}
SOURCE_UNITS = {"ra_deg": "deg", "dec_deg": "deg", "catalogue_flux_jy": "Jy", "mean_flux_jy": "Jy",
                "weighted_mean_jy": "Jy", "ese_t0_unix": "s", "ese_width_days": "d", "separation_deg": "deg"}
SOURCE_COLUMNS = ("name", "ra_deg", "dec_deg", "in_catalogue", "catalogue_flux_jy", "n", "mean_flux_jy", "weighted_mean_jy",
                  "v", "eta", "eta_threshold", "vs", "m", "variable", "ese_score", "ese_t0_unix", "ese_width_days",
                  "ese_depth", "ese_candidate", "trend_score", "trend_per_year", "trend")
BOOLEAN_COLUMNS = {"in_catalogue", "variable", "ese_candidate", "trend", "counted"}


def utc(t_unix: float) -> str:
    return datetime.fromtimestamp(t_unix, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def table(columns, rows: list[list], units: dict[str, str], description: str):
    """An astropy table; None (a missing value) becomes a masked entry, so a VOTable holds null."""
    from astropy.table import MaskedColumn, Table

    out = Table(meta={"description": description})
    for k, name in enumerate(columns):
        values = [r[k] for r in rows]
        mask = [v is None or (isinstance(v, float) and np.isnan(v)) for v in values]
        if name in BOOLEAN_COLUMNS:
            data = np.array([bool(v) for v in values], dtype=bool)
        elif name == "n":
            data = np.array([0 if m else int(v) for v, m in zip(values, mask)], dtype=np.int64)
        elif all(isinstance(v, str) or v is None for v in values) and any(isinstance(v, str) for v in values):
            data = np.array(["" if v is None else v for v in values], dtype=str)
        else:
            data = np.array([np.nan if m else float(v) for v, m in zip(values, mask)], dtype=float)
        out[name] = MaskedColumn(data, mask=mask if any(mask) else None, unit=units.get(name))
    return out


def shown_flags(row: dict) -> str:
    """The flags a light-curve row (:meth:`ProductsDB.light_curve`) shows: its own, and
    "discovery" in the image that began an uncatalogued source (not counted either)."""
    return " ".join(filter(None, [row["flags"] or "", "discovery" if row["discovery"] else ""]))


def light_curve_table(db, name: str, image_kind: str | None = "observation"):
    """One source's measurements (forced and blind) in time order, with flags and whether its
    statistics count each."""
    rows = sorted(db.light_curve(name, kind="forced", image_kind=image_kind)
                  + [{**r, "kind": "blind"} for r in db.light_curve(name, kind="blind", image_kind=image_kind)],
                  key=lambda r: r["epoch_unix"])
    columns = ["utc", "epoch_unix", "kind", "flux_jy", "flux_err_jy", "local_rms_jy", "snr", "image_id", "flags",
               "counted"]
    values = [[utc(r["epoch_unix"]), r["epoch_unix"], r.get("kind", "forced"), r["flux_jy"], r["flux_err_jy"],
               r["local_rms_jy"], r["snr"], r["image_id"], r["flags"] or "", r["counted"]] for r in rows]
    return table(columns, values, LIGHT_CURVE_UNITS, f"light curve of {name}")


def source_table(db):
    """Every source with its variability and ESE statistics (null where it has none yet)."""
    stats = {r["name"]: r for r in db.source_statistics()}
    rows = []
    for s in db.sources():
        st = stats.get(s["name"], {})
        rows.append([s.get(c) if c in s else st.get(c) for c in SOURCE_COLUMNS])
    return table(SOURCE_COLUMNS, rows, SOURCE_UNITS, "sources of the DSA-110 continuum survey with their statistics")


def cone(db, ra_deg: float, dec_deg: float, radius_deg: float):
    """Simple Cone Search: the sources within ``radius_deg``, nearest first, with the UCDs SCS
    1.03 requires (ID_MAIN, POS_EQ_RA_MAIN, POS_EQ_DEC_MAIN)."""
    found = db.sources_within(ra_deg, dec_deg, radius_deg)
    columns = SOURCE_COLUMNS + ("separation_deg",)
    return table(columns, [[r.get(c) for c in columns] for r in found], SOURCE_UNITS,
                  f"sources within {radius_deg} deg of ({ra_deg}, {dec_deg})")


SCS_UCDS = {"name": "ID_MAIN", "ra_deg": "POS_EQ_RA_MAIN", "dec_deg": "POS_EQ_DEC_MAIN"}


def serialise(data, fmt: str, ucds: dict[str, str] | None = None) -> bytes:
    """The table as CSV or VOTable (``fmt``: a key of FORMATS); ``ucds``: column -> UCD."""
    if fmt == "csv":
        buffer = io.StringIO()
        data.write(buffer, format="ascii.csv")
        return buffer.getvalue().encode()
    if fmt != "vot":
        raise ValueError(f"unknown export format {fmt!r}: one of {sorted(FORMATS)}")
    from astropy.io.votable import from_table

    votable = from_table(data)
    resource_table = votable.get_first_table()
    if data.meta.get("description"):
        resource_table.description = data.meta["description"]
    for f in resource_table.fields:
        if ucds and f.name in ucds:
            f.ucd = ucds[f.name]
    buffer = io.BytesIO()
    votable.to_xml(buffer)
    return buffer.getvalue()


def scs_error(message: str) -> bytes:
    """An SCS error response: a VOTable whose INFO named Error carries ``message``."""
    from xml.sax.saxutils import escape

    return (f'<?xml version="1.0" encoding="utf-8"?>\n<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
            f'<INFO name="Error" value="{escape(message, {chr(34): "&quot;"})}"/></VOTABLE>\n').encode()
