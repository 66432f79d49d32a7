"""Screenshots of the Dagster UI for the README, taken with headless Chromium.

Drives Chromium through its DevTools protocol: opens each page, dismisses Dagster's
first-visit dialog, waits for the page to settle and saves a PNG.

    python scripts/screenshots.py --url http://127.0.0.1:3000 --partition 2026-01-15-12:00 --out docs/screenshots
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900"]
DISMISS = """[...document.querySelectorAll('button')].filter(b => b.textContent.trim() === 'Skip')
             .forEach(b => b.click()); true"""


async def capture(ws_url: str, pages: dict[str, str], out: Path, settle_s: float) -> None:
    import websockets

    async with websockets.connect(ws_url, max_size=None) as ws:
        counter = 0

        async def call(method, **params):
            nonlocal counter
            counter += 1
            await ws.send(json.dumps({"id": counter, "method": method, "params": params}))
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("id") == counter:
                    return msg.get("result", {})

        await call("Page.enable")
        for name, url in pages.items():
            await call("Page.navigate", url=url)
            await asyncio.sleep(settle_s)
            await call("Runtime.evaluate", expression=DISMISS)
            await asyncio.sleep(2)
            shot = await call("Page.captureScreenshot", format="png")
            (out / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
            print(out / f"{name}.png")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:3000")
    p.add_argument("--partition", required=True,
                   help="a materialized 5-minute partition key (its hour is shown for the mosaic)")
    p.add_argument("--out", default="docs/screenshots")
    p.add_argument("--settle", type=float, default=8.0, help="seconds to let each page load")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    profile = tempfile.mkdtemp(prefix="dsa110-chromium-")
    browser = subprocess.Popen([shutil.which("chromium"), *FLAGS, f"--remote-debugging-port={port}",
                                f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2))
                ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                break
            except (OSError, StopIteration):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        pages = {
            # everything downstream of the Measurement Sets, asset by asset (the global lineage
            # page shows collapsed groups)
            "asset-graph": f"{args.url}/assets/measurement_set?view=lineage&lineageScope=downstream&lineageDepth=6",
            "measurement-set-partitions": f"{args.url}/assets/measurement_set?view=partitions",
            "calibration-partition": f"{args.url}/assets/calibration_tables?view=partitions&partition={args.partition}",
            "image-partition": f"{args.url}/assets/image?view=partitions&partition={args.partition}",
            "photometry-partition": f"{args.url}/assets/photometry?view=partitions&partition={args.partition}",
            "mosaic-partition": f"{args.url}/assets/mosaic?view=partitions&partition={args.partition[:13]}:00",
            "variability": f"{args.url}/assets/variability",
        }
        asyncio.run(capture(ws_url, pages, out, args.settle))
    finally:
        browser.terminate()
        browser.wait(10)
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
