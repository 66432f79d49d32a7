"""Synthetic images with known content, for testing and benchmarking photometry and source
finding without running an imager: a SIN-projected header with a restoring beam, and Gaussian
noise whose pixel-to-pixel correlation is that beam, as in a CLEANed image."""

from __future__ import annotations

import numpy as np


def image_header(size: int, cell_arcsec: float, bmaj_arcsec: float, bmin_arcsec: float, bpa_deg: float,
                 centre_deg: tuple[float, float] = (150.0, 30.0)):
    """FITS header of a ``size`` x ``size`` image of ``cell_arcsec`` pixels centred on
    ``centre_deg`` (ICRS RA, Dec), with restoring beam BMAJ, BMIN (arcsec) and BPA (deg)."""
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = list(centre_deg)
    w.wcs.crpix = [size / 2 + 1, size / 2 + 1]
    w.wcs.cdelt = [-cell_arcsec / 3600, cell_arcsec / 3600]
    header = w.to_header()
    header.update(BMAJ=bmaj_arcsec / 3600, BMIN=bmin_arcsec / 3600, BPA=bpa_deg, BUNIT="JY/BEAM")
    return header


def beam_correlated_noise(header, shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of standard deviation ``sigma`` whose correlation is the header's beam:
    white noise smoothed by the beam at 1/sqrt(2) of its width (the autocorrelation of a
    Gaussian is the Gaussian sqrt(2) wider). Padded so the edges are as correlated as the middle."""
    from scipy.signal import fftconvolve

    from ..stages.photometry import beam_kernel

    half = header.copy()
    half.update(BMAJ=header["BMAJ"] / np.sqrt(2), BMIN=header["BMIN"] / np.sqrt(2))
    pad = 32
    kernel = beam_kernel(half, pad, pad, *np.meshgrid(np.arange(2 * pad + 1), np.arange(2 * pad + 1)))
    ny, nx = shape
    noise = fftconvolve(rng.standard_normal((ny + 2 * pad, nx + 2 * pad)), kernel, mode="same")[pad:-pad, pad:-pad]
    return noise * (sigma / noise.std())
