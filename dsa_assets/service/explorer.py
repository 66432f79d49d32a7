"""The source explorer: read-only web pages over the products database for the survey's
scientists, beside the Dagster UI (which serves the operators).

    /                         search, the eta-V plot of every source (a point opens its page),
                              new sources of the last night, ESE candidates, variables
    /search?q=NAME|RA DEC     a name (or part of one) or a position (degrees or sexagesimal)
    /source/NAME              position, statistics, ESE score, light curve (forced and blind,
                              flagged epochs marked), an image cut-out at each epoch, exports
    /source/NAME/lightcurve.csv|.vot, /sources.csv|.vot   exports (astropy)
    /scs?RA=&DEC=&SR=         IVOA Simple Cone Search 1.03 (degrees), a VOTable
    /cutout?image=ID&source=NAME                          a PNG cut-out

Plots are Bokeh (its JavaScript served from the installed package: no network), chosen by
measured page load against Plotly and server-side matplotlib (README). The database is opened
read-only (:class:`dsa_assets.products.ProductsDB` with ``read_only``), so nothing on a page can
write to it, and every route answers GET only. ``serve`` runs it under uvicorn;
``dsa110 explore`` and ``dsa110-stream`` (``--explorer-port``) start it.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
from jinja2 import Environment

from .. import exports
from ..products import ProductsDB
from ..variability import Thresholds

CUTOUTS_SHOWN = 48
"""Cut-outs on a source page (the latest epochs; all with ?cutouts=all)."""
CUTOUT_HALF_PIXELS = 40
NEW_WINDOW_S = 86400.0
"""'New tonight': new sources first seen within this long (s) of the latest image."""
SEARCH_RADIUS_ARCMIN = 5.0
MAX_CONE_DEG = 10.0

PAGE = Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} - DSA-110 source explorer</title>
<script src="/static/bokeh/bokeh.min.js"></script>
<style>
body { font-family: system-ui, sans-serif; margin: 0 1.5em 2em; color: #222; }
header { display: flex; gap: 1.5em; align-items: center; border-bottom: 1px solid #ccc; padding: .6em 0; }
header a.home { font-weight: 600; text-decoration: none; color: #222; }
table { border-collapse: collapse; font-size: 90%; } td, th { padding: .15em .6em; text-align: left; }
tr:nth-child(even) { background: #f4f4f4; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.cutouts { display: flex; flex-wrap: wrap; gap: .4em; } .cutouts figure { margin: 0; font-size: 75%; width: 120px; }
.cutouts img { width: 120px; height: 120px; image-rendering: pixelated; background: #eee; }
.flag { color: #b00; } .muted { color: #777; }
</style></head>
<body data-rendered="{{ 'no' if plots else 'yes' }}">
<header><a class="home" href="/">DSA-110 source explorer</a>
<form action="/search" method="get"><input name="q" size="34" placeholder="name, or RA Dec (deg or hh:mm:ss dd:mm:ss)"
 value="{{ query or '' }}"> <button type="submit">Search</button></form>
<span class="muted">exports: <a href="/sources.csv">sources CSV</a> · <a href="/sources.vot">VOTable</a> ·
cone search <code>/scs?RA=&amp;DEC=&amp;SR=</code></span></header>
{{ body }}
{% if plots %}<script>
const items = {{ plots }};
Promise.all(Object.entries(items).map(([id, item]) => Bokeh.embed.embed_item(item, id))).then((views) => {
  window.explorerViews = Object.fromEntries(Object.keys(items).map((id, k) => [id, views[k]]));
  (function idle() {
    if (Bokeh.documents.length >= Object.keys(items).length && Bokeh.documents.every(d => d.is_idle)) {
      requestAnimationFrame(() => { window.renderedAt = performance.now(); document.body.dataset.rendered = "yes"; });
    } else { requestAnimationFrame(idle); }
  })();
});
</script>{% endif %}
</body></html>""")

HOME = Environment(autoescape=True).from_string("""
<p>{{ n_sources }} sources ({{ n_uncatalogued }} uncatalogued), {{ n_images }} images measured{% if latest %},
the latest at {{ latest }} UTC{% endif %}.</p>
<h2>Variability: eta against V</h2>
<p class="muted">Each point a source with two or more usable measurements; dashed lines: V = {{ v_threshold }} and the
median eta threshold (chi-squared tail probability 0.001). Red: variable; orange: ESE candidate. Click a point to open it.</p>
<div id="etav"></div>
<h2>New tonight</h2>
{% if new %}<table><tr><th>source</th><th>RA (deg)</th><th>Dec (deg)</th><th>first seen (UTC)</th><th>detections</th>
<th>images, mosaics</th><th>status</th></tr>
{% for s in new %}<tr><td><a href="{{ s.url }}">{{ s.name }}</a></td><td class="num">{{ '%.5f' % s.ra_deg }}</td>
<td class="num">{{ '%.5f' % s.dec_deg }}</td><td>{{ s.first }}</td><td class="num">{{ s.n_detections }}</td>
<td class="num">{{ s.n_observation_images }}, {{ s.n_mosaics }}</td><td>{{ s.status }}</td></tr>{% endfor %}
</table>{% else %}<p class="muted">No new source in the last 24 hours of data.</p>{% endif %}
<p class="muted">Confirmed: detected in two or more observation images (or mosaics of different hours);
candidates have been seen in one.</p>
<h2>ESE candidates</h2>
{{ ese_table }}
<h2>Variable sources</h2>
{{ variable_table }}
""")

SOURCE = Environment(autoescape=True).from_string("""
<h1>{{ s.name }}</h1>
<table>
<tr><th>position (ICRS)</th><td>{{ '%.5f' % s.ra_deg }} {{ '%+.5f' % s.dec_deg }} deg{% if s.ra_err_arcsec %}
 ± {{ '%.1f' % s.ra_err_arcsec }}, {{ '%.1f' % s.dec_err_arcsec }} arcsec{% endif %}</td></tr>
<tr><th>reference catalogue</th><td>{% if s.in_catalogue %}yes, {{ '%.2f' % (s.catalogue_flux_jy * 1e3) }} mJy
{% else %}no: found by the pipeline{% if s.new %}, new when first seen{% endif %}
({{ s.n_detections or 0 }} detections){% endif %}</td></tr>
{% if s.n %}<tr><th>variability</th><td>n = {{ s.n }}, mean {{ '%.2f' % (s.mean_flux_jy * 1e3) }} mJy,
V = {{ '%.3f' % s.v }}, eta = {{ '%.2f' % s.eta }} (threshold {{ '%.2f' % s.eta_threshold }}), Vs = {{ '%.1f' % s.vs }},
m = {{ '%.2f' % s.m }}{% if s.variable %} <b class="flag">variable</b>{% endif %}</td></tr>
<tr><th>ESE search</th><td>score {{ '%.1f' % s.ese_score }}{% if s.ese_candidate %} <b class="flag">candidate</b>:
{{ '%.0f' % (s.ese_depth * 100) }}% dip lasting {{ '%.0f' % s.ese_width_days }} d centred {{ ese_t0 }} UTC{% endif %};
trend score {{ '%.1f' % s.trend_score }} ({{ '%+.0f' % (s.trend_per_year * 100) }}% a year){% if s.trend %}
<b class="flag">trend</b>{% endif %}</td></tr>
{% else %}<tr><th>variability</th><td class="muted">not computed yet</td></tr>{% endif %}
<tr><th>measurements</th><td>{{ n_forced }} forced, {{ n_blind }} blind,
{{ n_excluded }} not counted in its statistics ·
<a href="{{ url }}/lightcurve.csv">CSV</a> · <a href="{{ url }}/lightcurve.vot">VOTable</a></td></tr>
</table>
<h2>Light curve</h2>
<div id="lightcurve"></div>
<h2>Cut-outs</h2>
<p class="muted">{{ shown }} of {{ n_images }} epochs, latest first{% if shown < n_images %} ·
<a href="{{ url }}?cutouts=all">all</a>{% endif %}.</p>
<div class="cutouts">{% for c in cutouts %}<figure><img loading="lazy" alt="{{ c.image_id }}" src="{{ c.src }}">
<figcaption>{{ c.utc }}<br>{{ '%.2f' % (c.flux_jy * 1e3) }} ± {{ '%.2f' % (c.flux_err_jy * 1e3) }} mJy
{% if c.flags %}<span class="flag">{{ c.flags }}</span>{% endif %}</figcaption></figure>{% endfor %}</div>
""")

RESULTS = Environment(autoescape=True).from_string("""
<h1>{{ heading }}</h1>
{% if rows %}<table><tr><th>source</th><th>RA (deg)</th><th>Dec (deg)</th>{% if cone %}<th>distance (arcmin)</th>{% endif %}
<th>catalogue</th></tr>{% for r in rows %}<tr><td><a href="{{ r.url }}">{{ r.name }}</a></td>
<td class="num">{{ '%.5f' % r.ra_deg }}</td><td class="num">{{ '%.5f' % r.dec_deg }}</td>
{% if cone %}<td class="num">{{ '%.2f' % (r.separation_deg * 60) }}</td>{% endif %}
<td>{{ 'yes' if r.in_catalogue else 'no' }}</td></tr>{% endfor %}</table>
{% else %}<p>Nothing found.</p>{% endif %}
""")

LISTING = Environment(autoescape=True).from_string("""{% if rows %}<table><tr>{% for h in head %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in rows %}<tr><td><a href="{{ r[0] }}">{{ r[1] }}</a></td>{% for v in r[2:] %}<td class="num">{{ v }}</td>{% endfor %}
</tr>{% endfor %}</table>{% else %}<p class="muted">None.</p>{% endif %}""")


def source_url(name: str) -> str:
    return "/source/" + quote(name, safe="")


def parse_position(text: str) -> tuple[float, float] | None:
    """(ra_deg, dec_deg) from "RA Dec" in degrees or sexagesimal (hours for RA), else None."""
    parts = text.replace(",", " ").split()
    if len(parts) == 2 and all(re.fullmatch(r"[+-]?\d+(\.\d*)?", p) for p in parts):
        ra, dec = float(parts[0]), float(parts[1])
        return (ra % 360.0, dec) if -90 <= dec <= 90 else None
    if ":" in text or re.search(r"\d+h\d+m", text):
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        try:
            c = SkyCoord(text, unit=(u.hourangle, u.deg))
        except (ValueError, TypeError):
            return None
        return float(c.ra.deg), float(c.dec.deg)
    return None


def eta_v_plot(stats: list[dict]):
    """log eta against log V of every source with both positive; click opens the source."""
    from bokeh.models import ColumnDataSource, HoverTool, OpenURL, Span, TapTool
    from bokeh.plotting import figure

    usable = [r for r in stats if (r["eta"] or 0) > 0 and (r["v"] or 0) > 0]
    fig = figure(width=900, height=520, x_axis_label="log10 eta", y_axis_label="log10 V",
                 tools="pan,wheel_zoom,box_zoom,reset,tap", output_backend="canvas")
    colour = ["#d62728" if r["variable"] else "#ff7f0e" if r["ese_candidate"] else "#1f77b4" for r in usable]
    data = ColumnDataSource({"x": [math.log10(r["eta"]) for r in usable], "y": [math.log10(r["v"]) for r in usable],
                             "name": [r["name"] for r in usable],
                             "colour": colour, "ese": [round(r["ese_score"] or 0.0, 1) for r in usable]})
    fig.scatter("x", "y", source=data, size=5, alpha=0.7, color="colour")
    thresholds = [r["eta_threshold"] for r in usable if r["eta_threshold"] and math.isfinite(r["eta_threshold"])]
    if thresholds:
        fig.add_layout(Span(location=math.log10(float(np.median(thresholds))), dimension="height",
                            line_color="#d62728", line_dash="dashed"))
    fig.add_layout(Span(location=math.log10(Thresholds().v), dimension="width", line_color="#d62728",
                        line_dash="dashed"))
    # OpenURL encodes what it substitutes (encodeURIComponent): give it the plain name
    fig.select_one(TapTool).callback = OpenURL(url="/source/@name", same_tab=True)
    fig.add_tools(HoverTool(tooltips=[("source", "@name"), ("log eta", "@x{0.00}"), ("log V", "@y{0.00}"),
                                      ("ESE score", "@ese")]))
    return fig


def light_curve_plot(forced: list[dict], blind: list[dict]):
    """Flux density (mJy) against UTC: counted forced fits with error bars, those the
    statistics leave out (flagged, or an uncatalogued source's discovery) as grey crosses,
    blind detections as triangles."""
    from bokeh.models import ColumnDataSource, HoverTool, Whisker
    from bokeh.plotting import figure

    fig = figure(width=900, height=380, x_axis_type="datetime", x_axis_label="UTC", y_axis_label="flux density (mJy)",
                 tools="pan,wheel_zoom,box_zoom,reset,hover", output_backend="canvas")

    def columns(rows):
        flux = np.array([r["flux_jy"] for r in rows]) * 1e3
        err = np.array([r["flux_err_jy"] for r in rows]) * 1e3
        return ColumnDataSource({"t": [r["epoch_unix"] * 1000.0 for r in rows], "f": flux, "lo": flux - err,
                                 "hi": flux + err, "image": [r["image_id"] for r in rows],
                                 "flags": [exports.shown_flags(r) for r in rows]})

    usable = [r for r in forced if r["counted"]]
    excluded = [r for r in forced if not r["counted"]]
    for rows, colour, marker, label in ((usable, "#1f77b4", "circle", "forced"), (excluded, "#999999", "x",
                                        "forced, not counted"), (blind, "#2ca02c", "triangle", "blind")):
        if not rows:
            continue
        data = columns(rows)
        if marker != "triangle":
            fig.add_layout(Whisker(source=data, base="t", lower="lo", upper="hi", line_color=colour,
                                   upper_head=None, lower_head=None))
        fig.scatter("t", "f", source=data, marker=marker, size=6 if marker != "x" else 8, color=colour, legend_label=label)
    fig.select_one(HoverTool).tooltips = [("UTC", "@t{%F %T}"), ("mJy", "@f{0.00}"), ("image", "@image"),
                                          ("flags", "@flags")]
    fig.select_one(HoverTool).formatters = {"@t": "datetime"}
    fig.legend.location = "top_left"
    return fig


def cutout_png(image_path: Path, ra_deg: float, dec_deg: float, half: int = CUTOUT_HALF_PIXELS) -> bytes:
    """A (2 half + 1)-pixel square of the image around a position as a PNG (linear grey
    scale from -2 to +10 times the square's robust rms, a cross at the position)."""
    import matplotlib

    matplotlib.use("Agg")
    from astropy.io import fits
    from astropy.wcs import WCS
    from matplotlib.figure import Figure

    with fits.open(image_path, memmap=True) as hdul:
        header = hdul[0].header
        data = hdul[0].data
        plane = data.reshape(data.shape[-2:]) if data.ndim > 2 else data
        x, y = WCS(header).celestial.world_to_pixel_values(ra_deg, dec_deg)
        xi, yi = int(round(float(x))), int(round(float(y)))
        ny, nx = plane.shape
        square = np.full((2 * half + 1, 2 * half + 1), np.nan)
        y0, y1, x0, x1 = max(yi - half, 0), min(yi + half + 1, ny), max(xi - half, 0), min(xi + half + 1, nx)
        if y0 < y1 and x0 < x1:
            square[y0 - yi + half : y1 - yi + half, x0 - xi + half : x1 - xi + half] = plane[y0:y1, x0:x1]
    finite = square[np.isfinite(square)]
    rms = 1.4826 * float(np.median(np.abs(finite - np.median(finite)))) if finite.size else 1.0
    fig = Figure(figsize=(1.6, 1.6), dpi=75)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(square, origin="lower", cmap="gray_r", vmin=-2 * rms, vmax=10 * rms or 1.0, interpolation="nearest")
    ax.plot([half - 6, half - 2], [half, half], color="#d62728", lw=1)
    ax.plot([half + 2, half + 6], [half, half], color="#d62728", lw=1)
    ax.plot([half, half], [half - 6, half - 2], color="#d62728", lw=1)
    ax.plot([half, half], [half + 2, half + 6], color="#d62728", lw=1)
    ax.set_axis_off()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def build_app(products_db: str):
    """The explorer as an ASGI application over ``products_db`` (a URL or SQLite path), opened
    read-only."""
    from bokeh.embed import json_item
    from bokeh.util.paths import bokehjs_path
    from markupsafe import Markup
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    db = ProductsDB(products_db, read_only=True)

    def page(title: str, body: str, plots: dict | None = None, query: str | None = None, started: float = 0.0):
        # Bokeh decodes a reference only after its definition: keep json_item's key order
        # (Jinja's tojson sorts keys), and keep "</" out of the script element
        items = json.dumps({k: json_item(v) for k, v in plots.items()}).replace("</", "<\\/") if plots else ""
        html = PAGE.render(title=title, body=Markup(body), plots=Markup(items), query=query)
        return HTMLResponse(html, headers={"Server-Timing": f"build;dur={(time.perf_counter() - started) * 1e3:.1f}"})

    def listing(head, rows):
        return Markup(LISTING.render(head=head, rows=rows))

    async def home(request):
        started = time.perf_counter()
        stats = db.source_statistics()
        latest = db.latest_image_epoch()
        new = [{**s, "url": source_url(s["name"]), "first": exports.utc(s["first_epoch_unix"]), "status": status}
               for status, found in (("confirmed", db.new_sources()), ("candidate", db.new_source_candidates()))
               for s in found
               if latest is not None and s["first_epoch_unix"] is not None and s["first_epoch_unix"] >= latest - NEW_WINDOW_S]
        candidates = sorted((r for r in stats if r["ese_candidate"]), key=lambda r: -r["ese_score"])[:50]
        variable = sorted((r for r in stats if r["variable"]), key=lambda r: -r["eta"])[:50]
        counts = db.counts()
        body = HOME.render(
            n_sources=counts["sources"], n_uncatalogued=counts["uncatalogued"], n_images=counts["images"],
            latest=exports.utc(latest) if latest else None, v_threshold=Thresholds().v, new=new,
            ese_table=listing(["source", "ESE score", "depth", "duration (d)", "centred (UTC)"],
                              [(source_url(r["name"]), r["name"], f"{r['ese_score']:.1f}", f"{r['ese_depth']:.2f}",
                                f"{r['ese_width_days']:.0f}", exports.utc(r["ese_t0_unix"])) for r in candidates]),
            variable_table=listing(["source", "n", "mean (mJy)", "V", "eta", "Vs", "m"],
                                   [(source_url(r["name"]), r["name"], r["n"], f"{r['mean_flux_jy'] * 1e3:.2f}",
                                     f"{r['v']:.3f}", f"{r['eta']:.1f}", f"{r['vs']:.1f}", f"{r['m']:.2f}")
                                    for r in variable]))
        return page("sources", body, {"etav": eta_v_plot(stats)}, started=started)

    async def source(request):
        started = time.perf_counter()
        name = request.path_params["name"]
        s = db.source(name)
        if s is None:
            raise HTTPException(404, f"no source named {name!r}")
        forced = db.light_curve(name, kind="forced")
        blind = db.light_curve(name, kind="blind")
        latest_first = forced[::-1]
        shown = latest_first if request.query_params.get("cutouts") == "all" else latest_first[:CUTOUTS_SHOWN]
        cutouts = [{**r, "utc": exports.utc(r["epoch_unix"]), "flags": exports.shown_flags(r),
                    "src": f"/cutout?image={quote(r['image_id'], safe='')}&source={quote(name, safe='')}"} for r in shown]
        body = SOURCE.render(s=s, url=source_url(name), n_forced=len(forced), n_blind=len(blind),
                             n_excluded=sum(not r["counted"] for r in forced),
                             ese_t0=exports.utc(s["ese_t0_unix"]) if s.get("ese_candidate") else "",
                             cutouts=cutouts, shown=len(shown), n_images=len(forced))
        return page(name, body, {"lightcurve": light_curve_plot(forced, blind)}, started=started)

    async def light_curve_export(request):
        name, fmt = request.path_params["name"], request.path_params["fmt"]
        if fmt not in exports.FORMATS or db.source(name) is None:
            raise HTTPException(404)
        return Response(exports.serialise(exports.light_curve_table(db, name), fmt), media_type=exports.FORMATS[fmt],
                        headers={"Content-Disposition": f'attachment; filename="lightcurve.{fmt}"'})

    async def sources_export(request):
        fmt = request.path_params["fmt"]
        if fmt not in exports.FORMATS:
            raise HTTPException(404)
        return Response(exports.serialise(exports.source_table(db), fmt), media_type=exports.FORMATS[fmt],
                        headers={"Content-Disposition": f'attachment; filename="sources.{fmt}"'})

    async def search(request):
        started = time.perf_counter()
        q = (request.query_params.get("q") or "").strip()
        position = parse_position(q) if q else None
        if position:
            try:
                radius = min(float(request.query_params.get("r", SEARCH_RADIUS_ARCMIN)), 600.0) / 60.0
            except ValueError:
                radius = SEARCH_RADIUS_ARCMIN / 60.0
            rows = db.sources_within(position[0], position[1], radius)
            heading = f"Within {radius * 60:.1f} arcmin of {position[0]:.5f} {position[1]:+.5f}"
        else:
            rows = db.find_sources(q) if q else []
            exact = [r for r in rows if r["name"].lower() == q.lower()]
            if len(rows) == 1 or len(exact) == 1:
                return RedirectResponse(source_url((exact or rows)[0]["name"]), status_code=303)
            heading = f"Sources whose name contains {q!r}"
        body = RESULTS.render(heading=heading, cone=bool(position),
                              rows=[{**r, "url": source_url(r["name"])} for r in rows])
        return page("search", body, query=q, started=started)

    async def cone_search(request):
        try:
            ra, dec, sr = (float(request.query_params[k]) for k in ("RA", "DEC", "SR"))
            if not (-90 <= dec <= 90 and 0 <= sr <= MAX_CONE_DEG and math.isfinite(ra)):
                raise ValueError(f"RA, DEC in degrees with -90 <= DEC <= 90, 0 <= SR <= {MAX_CONE_DEG}")
        except (KeyError, ValueError) as exc:
            return Response(exports.scs_error(f"bad cone: {exc}"), media_type="text/xml")
        found = exports.cone(db, ra % 360.0, dec, sr)
        return Response(exports.serialise(found, "vot", exports.SCS_UCDS), media_type="text/xml")

    async def cutout(request):
        image_id, name = request.query_params.get("image"), request.query_params.get("source")
        img, s = db.image(image_id or ""), db.source(name or "")
        if img is None or s is None or not Path(img["path"]).exists():
            raise HTTPException(404, "no such image or source (or the image was removed by retention)")
        return Response(cutout_png(Path(img["path"]), s["ra_deg"], s["dec_deg"]), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    routes = [
        Route("/", home),
        Route("/search", search),
        Route("/scs", cone_search),
        Route("/cutout", cutout),
        Route("/sources.{fmt}", sources_export),
        Route("/source/{name}/lightcurve.{fmt}", light_curve_export),
        Route("/source/{name}", source),
        Mount("/static/bokeh", StaticFiles(directory=str(Path(bokehjs_path()) / "js")), name="bokeh"),
    ]
    app = Starlette(routes=routes)
    app.state.db = db
    return app


def serve(products_db: str, host: str = "127.0.0.1", port: int = 3001) -> None:
    """Serve the explorer until interrupted."""
    import uvicorn

    uvicorn.run(build_app(products_db), host=host, port=port, log_level="warning")
