"""The source explorer as a scientist uses it: a real server over a simulated survey, read by
headless Chromium (Playwright); exports and the cone search read back with astropy; and
nothing on it can write to the products database."""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from astropy.io.votable import parse
from astropy.table import Table

from dsa_assets import catalogue
from dsa_assets.sim.survey import write_survey

CHROMIUM = shutil.which("chromium")
CHROME_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return write_survey(tmp_path_factory.mktemp("survey"), days=60, n_sources=40)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def server(survey):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = _digest(survey.db_path)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dsa110"), "explore", "--products-db", str(survey.db_path),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/search?q=", timeout=5)
            break
        except OSError:
            time.sleep(0.3)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert _digest(survey.db_path) == before, "browsing changed the products database"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    assert CHROMIUM, "chromium missing: scripts/bootstrap.sh installs Debian's chromium"
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_FLAGS)
        try:
            yield b
        finally:
            b.close()


def rendered(page, url: str) -> None:
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-rendered=yes]", timeout=60_000)
    assert not errors, errors


def test_home_plots_every_source_and_a_point_opens_its_page(server, browser, survey):
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    rendered(page, server + "/")
    plotted = page.evaluate("() => window.explorerViews.etav.roots[0].model.renderers[0].data_source.data.x.length")
    assert plotted == len(survey.names), "every catalogue source has a point"
    new_rows = page.locator("h2:has-text('New tonight') + table tr").all_inner_texts()
    assert len(new_rows) == 2 and survey.transient in new_rows[1]
    ese_list = page.locator("h2:has-text('ESE candidates') + table").inner_text()
    assert survey.ese_source in ese_list and survey.flaring not in ese_list
    assert survey.flaring in page.locator("h2:has-text('Variable sources') + table").inner_text()
    # the flaring source has the largest eta: click its point
    xy = page.evaluate("""() => { const pv = window.explorerViews.etav.roots[0];
        const src = pv.model.renderers[0].data_source.data;
        let k = 0; for (let i = 1; i < src.x.length; i++) if (src.x[i] > src.x[k]) k = i;
        pv.el.scrollIntoView({block: 'center'});
        const r = pv.el.getBoundingClientRect();
        return [r.left + pv.frame.x_scale.compute(src.x[k]), r.top + pv.frame.y_scale.compute(src.y[k]), src.name[k]]; }""")
    assert xy[2] == survey.flaring
    page.mouse.move(xy[0] - 3, xy[1] - 3)
    page.mouse.move(xy[0], xy[1], steps=3)
    page.mouse.click(xy[0], xy[1])
    page.wait_for_url("**/source/**", timeout=10_000)
    page.wait_for_selector("body[data-rendered=yes]", timeout=60_000)
    assert page.inner_text("h1") == survey.flaring
    page.close()


def test_search_finds_a_source_whose_page_shows_its_light_curve_and_cutouts(server, browser, survey):
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    rendered(page, server + "/")
    page.fill("input[name=q]", survey.ese_source.split()[-1])   # part of the name
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/source/" + quote(survey.ese_source, safe=""))
    page.wait_for_selector("body[data-rendered=yes]", timeout=60_000)
    text = page.inner_text("body")
    assert "candidate" in text and "30% dip" in text, "the injected ESE is reported with its depth"
    assert "not counted in its statistics" in text
    points = page.evaluate("""() => window.explorerViews.lightcurve.roots[0].model.renderers
        .filter(r => r.glyph && r.glyph.x).map(r => r.data_source.data.t.length)""")
    excluded = survey.n_epochs // 37
    assert points == [survey.n_epochs - excluded, excluded], "usable and excluded epochs drawn apart"
    first = page.locator(".cutouts img").first
    first.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=first.element_handle(), timeout=30_000)
    assert page.locator(".cutouts img").count() == 48
    # a position finds the nearest source first
    page.goto(server + "/search?q=" + quote(f"{150.0} {55.0}") + "&r=60")
    rows = page.locator("table tr")
    names = [rows.nth(i).locator("td").first.inner_text() for i in range(1, rows.count())]
    nearest = min(survey.names, key=lambda n: _separation(survey, n))
    assert names[0] == nearest
    page.close()


def _separation(survey, name):
    from dsa_assets.products import ProductsDB

    s = ProductsDB(survey.db_path, read_only=True).source(name)
    return float(catalogue.angular_distance_deg([s["ra_deg"]], [s["dec_deg"]], 150.0, 55.0)[0])


def test_exports_and_the_cone_search_read_back_with_astropy(server, survey):
    sources = parse(io.BytesIO(get(server + "/sources.vot"))).get_first_table().to_table()
    assert len(sources) == len(survey.names) + 1 and str(sources["ra_deg"].unit) == "deg"
    assert set(sources["name"][sources["ese_candidate"]]) == {survey.ese_source}
    url = server + "/source/" + quote(survey.ese_source, safe="")
    curve = Table.read(io.BytesIO(get(url + "/lightcurve.vot")), format="votable")
    assert len(curve) == survey.n_epochs and str(curve["flux_jy"].unit) == "Jy"
    assert int((curve["flags"] == "bad_image").sum()) == survey.n_epochs // 37
    as_csv = Table.read(get(url + "/lightcurve.csv").decode(), format="ascii.csv")
    assert np.allclose(as_csv["flux_jy"], curve["flux_jy"])
    # SCS: every source within the cone and none outside, nearest first, with the SCS UCDs
    ra, dec, sr = 150.1, 55.1, 0.3
    votable = parse(io.BytesIO(get(server + f"/scs?RA={ra}&DEC={dec}&SR={sr}"))).get_first_table()
    ucds = {f.ucd for f in votable.fields}
    assert {"ID_MAIN", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN"} <= ucds
    cone = votable.to_table()
    everything = sources
    inside = catalogue.angular_distance_deg(everything["ra_deg"], everything["dec_deg"], ra, dec) <= sr
    assert sorted(cone["name"]) == sorted(everything["name"][inside])
    assert list(cone["separation_deg"]) == sorted(cone["separation_deg"])
    error = parse(io.BytesIO(get(server + "/scs?RA=150&DEC=95&SR=1")))
    assert any(info.name == "Error" for info in error.infos)


def test_nothing_on_the_explorer_writes(server, survey):
    for path in ("/", "/search", "/sources.vot"):
        request = urllib.request.Request(server + path, data=b"q=x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 405
    from sqlalchemy.exc import OperationalError

    from dsa_assets.products import ProductsDB, sources

    reader = ProductsDB(survey.db_path, read_only=True)
    with pytest.raises(OperationalError, match="readonly"), reader.engine.begin() as conn:
        conn.execute(sources.delete())
