"""The source explorer with a year of data: page loads in headless Chromium and export sizes.

A simulated survey (dsa_assets.sim.survey): ``--sources`` sources measured 7 times a day on 90%
of a year's days (about 2,300 epochs each), with bad images, a flare, an ESE and a transient.
The explorer is served by ``dsa110 explore``; each page is loaded in a fresh browser (cold:
nothing cached) and again (warm), and timed from navigation start until its plots are drawn
(median of ``--repeats``). The server's own time is its Server-Timing header.

    python bench/explorer.py [--sources 1000] [--repeats 5] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from dsa_assets.sim.survey import write_survey

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def load(browser, url: str) -> tuple[float, float]:
    """(cold, warm) ms from navigation start to the page's plots drawn."""
    context = browser.new_context()
    page = context.new_page()
    times = []
    for _ in range(2):
        page.goto(url)
        page.wait_for_selector("body[data-rendered=yes]", timeout=120_000)
        times.append(page.evaluate("window.renderedAt || performance.getEntriesByType('navigation')[0].loadEventEnd"))
    context.close()
    return times[0], times[1]


def main() -> None:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--scratch", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        t = time.perf_counter()
        survey = write_survey(Path(tmp), days=365, n_sources=args.sources)
        print(f"survey: {args.sources} sources x {survey.n_epochs} epochs written in {time.perf_counter() - t:.0f} s; "
              f"database {survey.db_path.stat().st_size / 1e6:.0f} MB")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([str(Path(sys.executable).parent / "dsa110"), "explore", "--products-db",
                                   str(survey.db_path), "--port", str(port)])
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(base + "/search?q=", timeout=5)
                    break
                except OSError:
                    time.sleep(0.2)
            source = base + "/source/" + quote(survey.ese_source, safe="")
            pages = {"home (eta-V of every source)": base + "/", "source page (a year)": source,
                     "search by position": base + "/search?q=150.0+55.0"}
            print(f"{'page':30s} {'server ms':>9s} {'cold ms':>8s} {'warm ms':>8s}")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=FLAGS)
                for label, url in pages.items():
                    runs = [load(browser, url) for _ in range(args.repeats)]
                    with urllib.request.urlopen(url) as r:
                        server_ms = float(r.headers["Server-Timing"].split("dur=")[1])
                    print(f"{label:30s} {server_ms:9.0f} {statistics.median(c for c, _ in runs):8.0f} "
                          f"{statistics.median(w for _, w in runs):8.0f}")
                browser.close()
            print("exports: size, time")
            for label, url in (("sources.csv", base + "/sources.csv"), ("sources.vot", base + "/sources.vot"),
                               ("light curve (a year) csv", source + "/lightcurve.csv"),
                               ("light curve (a year) vot", source + "/lightcurve.vot"),
                               ("cone search, 0.5 deg", base + "/scs?RA=150&DEC=55&SR=0.5")):
                t = time.perf_counter()
                size = len(urllib.request.urlopen(url).read())
                print(f"  {label:28s} {size / 1e3:8.0f} kB {1e3 * (time.perf_counter() - t):6.0f} ms")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
