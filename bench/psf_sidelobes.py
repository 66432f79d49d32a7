"""How high a 5-minute DSA-110 snapshot's dirty beam stands away from its peak, for the demo's
scaled-down array and the full one: what a source the image does not deconvolve (one beyond
its edge) puts into it, per Jy of apparent flux.

The uv coverage of one observation (the active stations, 24 integrations of 12.9 s around
transit, the band's channels, at a pointing declination) is gridded on a 4096-pixel grid
(8 deg field) and Fourier transformed; weighting natural or Briggs (robust 0.5, the imaging
default, from the gridded weights as WSClean computes it). Prints, per ring of offsets from
the peak (deg): the largest |PSF| and its rms, and the rms ratio of the two arrays. A source
of apparent flux S beyond the image leaves peaks of about S x the largest |PSF| at those
offsets; the image's noise is set by the SEFD, so how far the sidelobes stand above the noise
depends on both.

    python bench/psf_sidelobes.py                  # 20 and 96 antennas at Dec +55
    python bench/psf_sidelobes.py --dec 30 --antennas 20,48,96
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

RINGS_DEG = ((0.05, 0.2), (0.2, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 3.5))
GRID = 4096
FIELD_DEG = 8.0


def snapshot_psf(n_antennas: int, dec_deg: float, robust: float | None, channels: int = 64) -> np.ndarray:
    """The dirty beam (peak 1) of one observation's uv coverage on a GRID x GRID image of
    FIELD_DEG; ``robust`` None for natural weighting."""
    from dsa_assets import constants as C
    from dsa_assets import geometry
    from dsa_assets.sim.correlator import active_stations

    lat, lon = np.radians(C.OVRO_MMA_LATITUDE_DEG), np.radians(C.OVRO_MMA_LONGITUDE_DEG)
    to_enu = np.array([[-np.sin(lon), np.cos(lon), 0.0],
                       [-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)],
                       [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)]])
    enu = geometry.station_positions_ecef()[active_stations(n_antennas)] @ to_enu.T
    i, j = np.triu_indices(len(enu), 1)
    east, north, up = (enu[i] - enu[j]).T
    # local equatorial frame: X towards the meridian at the equator, Y east, Z the pole
    x, y, z = -np.sin(lat) * north + np.cos(lat) * up, east, np.cos(lat) * north + np.sin(lat) * up
    dec = np.radians(dec_deg)
    hour_angles = np.radians((np.arange(C.N_INTEGRATIONS) + 0.5 - C.N_INTEGRATIONS / 2) * C.INTEGRATION_TIME_S / 240.0)
    freqs = np.linspace(C.TOP_CHANNEL_FREQ_HZ - 16 * C.CHANNELS_PER_SUBBAND * C.CHANNEL_WIDTH_HZ,
                        C.TOP_CHANNEL_FREQ_HZ, channels)
    cell = 1.0 / np.radians(FIELD_DEG)  # wavelengths
    counts = np.zeros((GRID, GRID))
    for h in hour_angles:
        u = np.sin(h) * x + np.cos(h) * y
        v = -np.sin(dec) * np.cos(h) * x + np.sin(dec) * np.sin(h) * y + np.cos(dec) * z
        for f in freqs:
            for sign in (1, -1):
                iu = np.round(sign * u * f / 299_792_458.0 / cell).astype(int) + GRID // 2
                iv = np.round(sign * v * f / 299_792_458.0 / cell).astype(int) + GRID // 2
                np.add.at(counts, (iv, iu), 1.0)
    weights = counts
    if robust is not None:  # Briggs: each cell's weight W / (1 + W f^2)
        f2 = (5 * 10 ** -robust) ** 2 / (np.sum(counts**2) / np.sum(counts))
        weights = counts / (1 + counts * f2)
    psf = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(weights))).real
    return psf / psf.max()


def rings(psf: np.ndarray) -> list[tuple[float, float]]:
    """(largest |PSF|, rms) in each of RINGS_DEG."""
    axis = (np.arange(GRID) - GRID // 2) * FIELD_DEG / GRID
    r = np.hypot(*np.meshgrid(axis, axis))
    out = []
    for lo, hi in RINGS_DEG:
        ring = psf[(r > lo) & (r < hi)]
        out.append((float(np.abs(ring).max()), float(np.sqrt(np.mean(ring**2)))))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dec", type=float, default=55.0, help="pointing declination (deg)")
    p.add_argument("--antennas", default="20,96", help="comma-separated array sizes")
    args = p.parse_args()
    sizes = [int(n) for n in args.antennas.split(",")]
    print(f"5-minute snapshot at Dec {args.dec:+g}: |PSF| largest / rms by offset from the peak")
    for label, robust in (("natural", None), ("briggs 0.5", 0.5)):
        table = {n: rings(snapshot_psf(n, args.dec, robust)) for n in sizes}
        print(f"{label}:")
        for k, (lo, hi) in enumerate(RINGS_DEG):
            cells = "   ".join(f"{n} ant {table[n][k][0]:.3f} / {table[n][k][1]:.4f}" for n in sizes)
            ratio = table[sizes[0]][k][1] / table[sizes[-1]][k][1]
            print(f"  {lo:.2f}-{hi:.2f} deg   {cells}   rms ratio {sizes[0]}/{sizes[-1]} ant {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
