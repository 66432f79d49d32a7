"""Photometry: forced fits at catalogue positions and blind source finding, on an observation's
image or an hourly mosaic.

Forced photometry fits the restoring beam K (an elliptical Gaussian of the image's BMAJ, BMIN,
BPA, peak 1) at a known position, weighting each pixel by its noise sigma:

    S = sum(d K / sigma^2) / sum(K^2 / sigma^2)

in Jy (the peak of a point source, on a primary-beam-corrected image). Image noise is
correlated over the beam, so the error is that of this estimator under noise whose correlation
is the beam itself, sigma_S^2 = sum_ij K_i K_j rho_ij sigma_i sigma_j / (sum K^2)^2, about
1.15 sigma for a Gaussian beam, not the 1/sqrt(sum K^2/sigma^2) that independent pixels would
give.

A restored image is two images in one: the CLEAN components convolved with K, and the residual,
where whatever CLEAN did not take (all of a source below the cleaning threshold, part of a
brighter one) keeps the shape of the dirty beam P. K fitted to P reads it 13-19% low (the
dirty beam's main lobe is narrower, with negative sidelobes inside the fit radius), so a faint
source fitted with K alone reads low by as much. When the residual and the dirty beam are at
hand (an observation's image), the fit is therefore done in two parts, each with its own shape:

    S = sum((d - r) K w) / sum(K^2 w) + sum(r P w) / sum(P^2 w),    w = 1 / sigma^2

with r the residual and P the dirty beam centred on the position; the noise is the residual's,
correlated like P, and the error is the second term's under that correlation, at the level of
the residual's rms around the position (a 64-pixel square, the fit's own pixels left out):
the noise map, smoothed over cells wider than a neighbour's sidelobes, understates the noise
where they cross a source, and a constant source there read as variable.

Each position is fitted together with its neighbours within three fit radii, as VAST's forced
extraction fits clusters: the same two parts with one amplitude per position, solved by least
squares over the union of their fit pixels, so that a faint source beside a bright one reads
its own flux, not the bright one's wings. Detections that no catalogue source accounts for join the fit
(their flux stays theirs) without being reported; a source whose fitted shape correlates more
than 0.9 with a neighbour's cannot be separated, and its measurement is flagged ``blend``, as
is one whose flux a catalogued neighbour's position error (the catalogue's, 2 arcsec unless it
gives one) moves by more than its error: a 2 mJy source 25 arcsec from a 3.5 Jy one moved by
27 mJy when that one's position moved 0.2 arcsec.

Blind detection uses photutils (image segmentation above ``detect_snr`` of the local noise,
then a beam fit at each segment's centroid); detections are matched to the catalogue within
half the beam's major axis. ``bench/source_finding.py`` compares it with Aegean and PyBDSF. Plain Python: no Dagster import.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import catalogue
from ..exceptions import PhotometryError

log = logging.getLogger(__name__)

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class PhotometryConfig:
    detect_snr: float = 5.0
    """Blind detections: peak at least this many times the local noise."""
    noise_box_pixels: int = 64
    """Box (pixels) over which the local noise is estimated from the residual image."""
    pb_cutoff: float = 0.1
    """Positions where the primary beam is below this fraction are not measured."""
    low_beam: float = 0.2
    """Measurements where the primary beam is below this fraction (but at least ``pb_cutoff``;
    on a mosaic, where its weight is below this squared of its peak) are flagged ``low_beam``:
    stored and shown, but out of light-curve statistics, and no detection there is called a new
    source. Over a simulated day (``bench/false_variables.py``) forced fits fell beyond 4 sigma
    7.2 and 4.0 times in 10^4 where the beam was 0.10-0.15 and 0.15-0.20, against 0.8-2.6 above
    (where the beam is steep, a small error in its model moves a corrected flux most), and both
    constant sources flagged variable owed it to one such epoch. A drift scan sees such a source
    nearer the centre of the images before or after, unless it lies more than 2.0 deg north or
    south of the pointing (0.2 at 1.4 GHz)."""
    edge_margin_deg: float = 0.5
    """A detection no known source accounts for is not reported within this many degrees (on
    the image's rows, east or west) of where its row ends, at the image's edge or at blanked
    pixels: it joins its neighbours' forced fits, but begins no source. Sources just beyond an
    image, which deconvolution never sees, leave their sidelobes there. A drift scan's
    consecutive images overlap in right ascension by all but one observation's drift (0.74 deg
    at Dec +55), so a real source there lies nearer the centre of an image before or after;
    the margin shrinks to keep it so (:func:`edge_margin_deg`)."""
    fit_radius_beams: float = 1.0
    """Pixels within this many beam FWHM (major axis) of a position enter its forced fit."""
    blank_fits: int = 200
    """Forced fits at random source-free positions that calibrate the errors (0: off)."""
    position_systematic_beams: float = 0.1
    """Systematic position error of a detection (calibration phases, astrometric offsets), as a
    fraction of the restoring beam's FWHM along each axis; added in quadrature to the fit's."""
    catalogue_position_error_arcsec: float = 2.0
    """1-sigma position error (arcsec) of reference-catalogue sources that carry none."""
    systematic_fraction: float = 0.03
    """Fraction of the flux added in quadrature to every error, for what the image noise does
    not hold: calibration and deconvolution errors, which scale with the flux. Measured after
    calibration and imaging, sources above 20 sigma scatter about the truth by 2-4% at full
    scale (``bench/flux_accuracy.py``) and by 2.3% on the 24-antenna test array; on exact data
    the field reads within 1% (``bench/imaging.py``)."""


@dataclass(frozen=True)
class Measurement:
    """One flux density measurement. Fluxes in Jy; position in ICRS degrees."""

    source: str
    ra_deg: float
    dec_deg: float
    flux_jy: float
    flux_err_jy: float
    local_rms_jy: float
    kind: str
    """"forced" (at a catalogue position) or "blind" (a detection, matched or not)."""
    matched: str | None = None
    """For blind detections: the known source it is associated with (:mod:`dsa_assets.association`), if any."""
    flags: str = ""
    ra_err_arcsec: float = 0.0
    """Blind detections: 1-sigma position errors (arcsec on the sky), fit and systematic."""
    dec_err_arcsec: float = 0.0
    de_ruiter: float | None = None
    """Blind detections: de Ruiter radius to the source it was associated with."""

    @property
    def snr(self) -> float:
        return self.flux_jy / self.flux_err_jy if self.flux_err_jy > 0 else 0.0


@dataclass(frozen=True)
class PhotometryResult:
    """An image's measurements (forced and blind), its median noise (Jy/beam), restoring beam
    (arcsec, arcsec, deg) and step times (s)."""

    measurements: list[Measurement]
    rms_jy: float
    beam_arcsec: tuple[float, float, float]
    timings_s: dict = field(default_factory=dict)
    error_scale: float = 1.0
    """Factor applied to every error's noise part: the scatter of forced fits on blank sky over
    their predicted errors (at least 1); see :func:`blank_sky_error_scale`."""

    def forced(self) -> list[Measurement]:
        return [m for m in self.measurements if m.kind == "forced"]

    def blind(self) -> list[Measurement]:
        return [m for m in self.measurements if m.kind == "blind"]


@dataclass
class ImagePlanes:
    """An image's planes on one grid: data (Jy/beam, primary-beam corrected), noise (Jy/beam,
    per pixel, after the same correction), and the header carrying WCS and restoring beam."""

    data: np.ndarray
    noise: np.ndarray
    header: object
    residual: np.ndarray | None = None
    """The residual part of ``data`` (Jy/beam, corrected like it), when known."""
    psf: np.ndarray | None = None
    """The dirty beam (peak 1) on the image's pixel grid, when known."""
    noise_box_pixels: int = 64
    """Side (pixels) of the box around a measurement whose residual gives its noise
    (:meth:`surrounding_rms`)."""
    beam: np.ndarray | None = None
    """The primary beam's response (fraction of its peak) on the image's grid, when known; for a
    mosaic, sqrt(weight / its peak): its lowest noise over the noise there, as the beam is for
    an observation's image."""
    _psf_spline: tuple | None = field(default=None, repr=False, compare=False)
    _correlation: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_observation(cls, image: Path, residual: Path, pb: Path, config: PhotometryConfig,
                         psf: Path | None = None) -> ImagePlanes:
        """From an observation's flat image, residual and beam: the corrected image, and the
        residual's local robust rms divided by the beam. With the dirty beam ``psf``, forced
        fits are done in two parts (module docstring)."""
        from astropy.io import fits

        for p in (image, residual, pb) + ((psf,) if psf is not None else ()):
            if not Path(p).exists():
                raise PhotometryError(f"{p} does not exist")
        header = fits.getheader(image)
        flat = np.squeeze(fits.getdata(image)).astype(np.float64)
        beam = np.squeeze(fits.getdata(pb)).astype(np.float64)
        flat_residual = np.squeeze(fits.getdata(residual)).astype(np.float64)
        rms = local_rms(flat_residual, config.noise_box_pixels)
        ok = beam >= config.pb_cutoff

        def corrected(plane):
            return np.where(ok, plane / np.where(ok, beam, 1.0), np.nan)

        two_part = psf is not None
        return cls(corrected(flat), corrected(rms), header, corrected(flat_residual) if two_part else None,
                   np.squeeze(fits.getdata(psf)).astype(np.float64) if two_part else None,
                   config.noise_box_pixels, np.where(ok, beam, np.nan))

    def beam_at(self, x, y) -> np.ndarray:
        """The primary beam's response at pixels (x, y) (nearest pixel; NaN off the image or
        where it is not known)."""
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
        out = np.full(x.shape, np.nan)
        if self.beam is None:
            return out
        ny, nx = self.beam.shape
        ix, iy = np.rint(np.nan_to_num(x, nan=-1)).astype(int), np.rint(np.nan_to_num(y, nan=-1)).astype(int)
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        out[inside] = self.beam[iy[inside], ix[inside]]
        return out

    def dirty_beam(self, x: float, y: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """The dirty beam (peak 1) centred on pixel (x, y), at the whole pixels (xs, ys): its
        cubic spline (0 beyond the PSF image).

        Every pixel is offset from (x, y) by the same fraction of a pixel, so the spline is
        evaluated as two 4-tap filters over the box the pixels span, then read at them: the
        same values as ``scipy.ndimage.map_coordinates`` of order 3 in 0.4 of its time (the
        dirty beams of 10,000 dense sources' fits: 13 s against 33 s, profiled)."""
        from scipy.ndimage import spline_filter

        ix, iy = int(np.floor(x)), int(np.floor(y))
        ox, oy = np.asarray(xs, int) - ix, np.asarray(ys, int) - iy  # whole-pixel offsets
        need = int(max(np.abs(ox).max(initial=0), np.abs(oy).max(initial=0))) + 4
        if self._psf_spline is None or self._psf_spline[0] < need:
            # spline coefficients of a cut-out, computed once: filtering the whole PSF image
            # for every fit would dominate the photometry's time
            half = max(need, 32)
            self._psf_spline = (half, spline_filter(psf_cutout(self.psf, half), order=3, mode="constant"))
        half, coefficients = self._psf_spline
        (wx, sx), (wy, sy) = _bspline_taps(x - ix), _bspline_taps(y - iy)
        # each pixel's first tap (a coefficient index); the box of coefficients they reach
        cx, cy = half + ox + sx - 1, half + oy + sy - 1
        if cx.size == 0:
            return np.zeros(cx.shape)
        x0, x1, y0, y1 = cx.min(), cx.max(), cy.min(), cy.max()
        box = coefficients[y0 : y1 + 4, x0 : x1 + 4]
        rows = sum(w * box[:, k : k + x1 - x0 + 1] for k, w in enumerate(wx))
        shifted = sum(w * rows[k : k + y1 - y0 + 1] for k, w in enumerate(wy))
        return shifted[cy - y0, cx - x0]

    @cached_property
    def restoring_beam(self) -> RestoringBeam:
        """The header's restoring beam, read once: fits of a dense field evaluate it hundreds of
        thousands of times."""
        return RestoringBeam.from_header(self.header)

    def surrounding_rms(self, x: float, y: float, core_pixels: float, components=()) -> float | None:
        """The rms (Jy/beam) of the residual in the ``noise_box_pixels`` square centred on pixel
        (x, y), beyond ``core_pixels`` of it, once the fitted ``components`` ((x, y, peak in
        Jy/beam) of dirty beams) are taken out; None without a residual, or when less than a
        quarter of the square is on the image.

        The noise map is a median over cells a few boxes wide: where a neighbour's sidelobes or
        a deconvolution error cross a source, the noise its fit meets is higher than the map's,
        and a constant source reads as variable. The rms, not a robust estimate, because those
        are the tails a forced fit feels."""
        if self.residual is None or self.psf is None:
            return None
        ny, nx = self.residual.shape
        half = self.noise_box_pixels // 2
        xc, yc = int(round(x)), int(round(y))
        y0, y1, x0, x1 = max(yc - half, 0), min(yc + half, ny), max(xc - half, 0), min(xc + half, nx)
        if y1 <= y0 or x1 <= x0:
            return None
        ys, xs = np.mgrid[y0:y1, x0:x1]
        box = self.residual[y0:y1, x0:x1]
        if components:
            box = box - sum(a * self.dirty_beam(cx, cy, xs, ys) for cx, cy, a in components)
        use = np.isfinite(box) & ((xs - x) ** 2 + (ys - y) ** 2 > core_pixels**2)
        if use.sum() < 0.25 * (2 * half) ** 2:
            return None
        return float(np.sqrt(np.mean(box[use] ** 2)))

    def noise_correlation(self, half: int) -> np.ndarray:
        """Correlation of the image noise between pixels (dy, dx) apart, |dy| and |dx| up to
        ``half``: a (2 half + 1)-pixel square centred on zero lag. The noise of a restored image
        is the residual's, correlated like the dirty beam; without one, like the restoring beam."""
        cached = self._correlation.get("square")
        if cached is None or cached.shape[0] // 2 < half:
            # one square, grown by doubling, cropped for each fit: fits of neighbours together
            # ask for many sizes
            big = max(half, 2 * (cached.shape[0] // 2) if cached is not None else 32)
            if self.psf is not None and self.residual is not None:
                cached = psf_cutout(self.psf, big)
            else:
                ys, xs = np.mgrid[-big : big + 1, -big : big + 1]
                cached = self.restoring_beam.at(0.0, 0.0, xs, ys)
            self._correlation["square"] = cached
        c = cached.shape[0] // 2
        return cached[c - half : c + half + 1, c - half : c + half + 1]

    @classmethod
    def from_mosaic(cls, image: Path, noise: Path, residual: Path | None = None,
                    psf: Path | None = None, weight: Path | None = None) -> ImagePlanes:
        """From a mosaic and its noise map; with its residual and dirty beam, forced fits are
        done in two parts (module docstring); with its weight map, measurements where the
        weight is low are flagged as where an observation's beam is low."""
        from astropy.io import fits

        def plane(path):
            return np.squeeze(fits.getdata(path)).astype(np.float64)

        two_part = residual is not None and psf is not None
        beam = None
        if weight is not None:
            w = plane(weight)
            peak = np.nanmax(w) if np.isfinite(w).any() else 0.0
            beam = np.sqrt(np.where(w > 0, w, np.nan) / peak) if peak > 0 else np.full(w.shape, np.nan)
        return cls(plane(image), plane(noise), fits.getheader(image), plane(residual) if two_part else None,
                   plane(psf) if two_part else None, beam=beam)


def psf_cutout(psf: np.ndarray, half: int) -> np.ndarray:
    """The (2 half + 1)-pixel square of ``psf`` centred on its peak, zero beyond its edges."""
    cy, cx = np.unravel_index(np.argmax(psf), psf.shape)
    out = np.zeros((2 * half + 1, 2 * half + 1))
    y0, y1 = max(cy - half, 0), min(cy + half + 1, psf.shape[0])
    x0, x1 = max(cx - half, 0), min(cx + half + 1, psf.shape[1])
    out[y0 - cy + half : y1 - cy + half, x0 - cx + half : x1 - cx + half] = psf[y0:y1, x0:x1]
    return out


def _bspline_taps(fraction: float) -> tuple[np.ndarray, int]:
    """The cubic B-spline's four weights for the point ``fraction`` of a pixel (0 to 1) before
    a whole coefficient index n, and where the coefficients they weight start, relative to
    n - 1: 0 (n - 1 .. n + 2) when the point is on n, else -1 (n - 2 .. n + 1)."""
    # t: how far the point lies beyond the whole index before it
    start, t = (0, 0.0) if fraction == 0 else (-1, 1.0 - fraction)
    u = 1.0 - t
    return np.array([u**3 / 6, 2 / 3 - t**2 + t**3 / 2, 2 / 3 - u**2 + u**3 / 2, t**3 / 6]), start


def local_rms(residual: np.ndarray, box: int) -> np.ndarray:
    """Robust (MAD) rms of ``residual`` in ``box``-pixel cells, interpolated to every pixel."""
    from photutils.background import Background2D, MADStdBackgroundRMS, MedianBackground

    ny, nx = residual.shape
    box = max(8, min(box, ny // 2, nx // 2))
    bkg = Background2D(residual, box, filter_size=3, bkg_estimator=MedianBackground(),
                       bkg_rms_estimator=MADStdBackgroundRMS(), mask=~np.isfinite(residual))
    return np.asarray(bkg.background_rms)


def edge_margin_deg(header, columns: int, wanted_deg: float) -> float:
    """The east-west margin (deg) of an image (``header``: its WCS; ``columns`` wide) in which
    unexplained detections begin no source: ``wanted_deg``, at most half of what the image's
    width exceeds one observation's drift at its declination by, so that consecutive
    observations' images still search every position outside their margins."""
    from .. import constants as C

    width = columns * abs(header["CDELT1"])
    drift = C.OBSERVATION_CADENCE_S * SIDEREAL_DEG_PER_S * np.cos(np.radians(header["CRVAL2"]))
    return float(min(wanted_deg, max(0.0, (width - drift) / 2)))


SIDEREAL_DEG_PER_S = 360.0 / 86164.0905


def near_row_end(data: np.ndarray, x: float, y: float, margin_pixels: float) -> bool:
    """Whether pixel (x, y)'s row of ``data`` ends (the image's edge, or a blanked pixel) within
    ``margin_pixels`` of it on either side."""
    xi, yi, m = int(round(float(x))), int(round(float(y))), int(np.ceil(margin_pixels))
    if not 0 <= yi < data.shape[0] or xi - m < 0 or xi + m >= data.shape[1]:
        return True
    return not bool(np.isfinite(data[yi, xi - m : xi + m + 1]).all())


@dataclass(frozen=True)
class RestoringBeam:
    """An image's restoring beam on its pixel grid: the Gaussian's standard deviations (pixels)
    along its major and minor axes, its position angle (sine and cosine; north through east),
    and which way east lies along x (-1 when RA increases to the left, negative CDELT1)."""

    sigma_major: float
    sigma_minor: float
    sin_pa: float
    cos_pa: float
    east: float

    @classmethod
    def from_header(cls, header) -> RestoringBeam:
        if "BMAJ" not in header or "BMIN" not in header:
            raise PhotometryError("the image header has no restoring beam (BMAJ/BMIN)")
        cell = abs(header["CDELT1"])
        pa = np.radians(header.get("BPA", 0.0))
        return cls(header["BMAJ"] / cell * FWHM_TO_SIGMA, header["BMIN"] / cell * FWHM_TO_SIGMA, float(np.sin(pa)),
                   float(np.cos(pa)), -1.0 if header["CDELT1"] < 0 else 1.0)

    def at(self, x: float, y: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """The beam (peak 1) centred on pixel (x, y), evaluated at pixels (xs, ys)."""
        dx, dy = (xs - x) * self.east, ys - y
        # coordinates along the major (north rotated to east by BPA) and minor axes
        a = dx * self.sin_pa + dy * self.cos_pa
        b = dx * self.cos_pa - dy * self.sin_pa
        return np.exp(-0.5 * ((a / self.sigma_major) ** 2 + (b / self.sigma_minor) ** 2))


def beam_kernel(header, x: float, y: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The restoring beam of ``header`` (peak 1) centred on pixel (x, y), evaluated at pixels
    (xs, ys) (:class:`RestoringBeam`)."""
    return RestoringBeam.from_header(header).at(x, y, xs, ys)


BLEND_CORRELATION = 0.9
"""Two positions whose fitted shapes correlate more than this over the fit pixels cannot be
told apart: both measurements are flagged ``blend``."""
GROUP_RADII = 3.0
"""Neighbours closer than this many fit radii join a position's fit: farther, a beam one fit
radius (one FWHM) outside the fit's pixels puts 2^-16 of its peak into them."""
MAX_NEIGHBOURS = 8
"""At most this many (the nearest) join one fit, so that a dense field costs no more than a
few fits per position."""


def forced_fit(planes: ImagePlanes, x: float, y: float, radius_pixels: float) -> tuple[float, float, float] | None:
    """(flux, error, local rms) of the beam fitted at pixel (x, y), or None off the image."""
    fits, _ = fit_group(planes, [(x, y)], radius_pixels)
    return fits[0]


def fit_group(planes: ImagePlanes, positions: list[tuple[float, float]], radius_pixels: float,
              report: int | None = None, position_errors: list[float] | None = None,
              ) -> tuple[list[tuple[float, float, float] | None], list[float]]:
    """Beams fitted jointly at pixel ``positions`` over the pixels within ``radius_pixels`` of
    any of them (module docstring; one position is the single fit): a faint source beside a
    bright one reads its own flux, not the bright one's wings. Returns, per position, (flux
    (Jy), error (Jy), local rms (Jy/beam)) or None (off the image or on a blank pixel, too few
    pixels, or not the ``report`` position when one is given: the others are then only fitted),
    and its leakage (Jy): how far its flux moves when its neighbours are where
    ``position_errors`` (1 sigma per axis, pixels) allow rather than where they were placed (0
    when a bound on it keeps it within the flux's error), infinite when its shape correlates
    more than ``BLEND_CORRELATION`` with another's.

    With a residual, the error's noise is the residual's around the position
    (:meth:`ImagePlanes.surrounding_rms`) rather than the noise map's there."""
    from scipy.signal import correlate

    ny, nx = planes.data.shape
    r = int(np.ceil(radius_pixels))
    n = len(positions)
    fits: list[tuple[float, float, float] | None] = [None] * n
    leakage = [0.0] * n
    members = [i for i, (x, y) in enumerate(positions)
               if r <= int(round(x)) < nx - r and r <= int(round(y)) < ny - r]
    if not members or (report is not None and report not in members):
        return fits, leakage
    px = np.array([positions[i][0] for i in members])
    py = np.array([positions[i][1] for i in members])
    x0, x1 = max(int(np.floor(px.min())) - r, 0), min(int(np.ceil(px.max())) + r, nx - 1)
    y0, y1 = max(int(np.floor(py.min())) - r, 0), min(int(np.ceil(py.max())) + r, ny - 1)
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    d = planes.data[ys, xs]
    sigma = planes.noise[ys, xs]
    good = np.isfinite(d) & np.isfinite(sigma) & (sigma > 0)
    circles = [(xs - x) ** 2 + (ys - y) ** 2 <= radius_pixels**2 for x, y in zip(px, py)]
    # a position on a blank pixel (beyond the beam cutoff or a mosaic's coverage) is not
    # fitted: the few pixels of its circle that reach past the blank edge hold only a wing of
    # its source (such fits read mosaic sources 10-99 sigma low)
    centred = good[np.rint(py).astype(int) - y0, np.rint(px).astype(int) - x0]
    keep = [k for k, c in enumerate(circles) if centred[k] and (good & c).sum() >= 3]
    if not keep:
        return fits, leakage
    members, px, py = [members[k] for k in keep], px[keep], py[keep]
    use = good & np.logical_or.reduce([circles[k] for k in keep])
    # everything on the fit pixels alone, as vectors (a neighbour's box is mostly unused)
    xu, yu = xs[use], ys[use]
    w = 1.0 / sigma[use] ** 2

    def restoring(dx=0.0, dy=0.0, which=None):
        return np.stack([planes.restoring_beam.at(px[m] + dx, py[m] + dy, xu, yu)
                         for m in (range(len(px)) if which is None else which)])

    def dirty(dx=0.0, dy=0.0, which=None):
        return np.stack([planes.dirty_beam(px[m] + dx, py[m] + dy, xu, yu)
                         for m in (range(len(px)) if which is None else which)])

    kernels = restoring()
    two_part = planes.residual is not None and planes.psf is not None
    if not two_part:
        clean_estimator = None
        shapes, noisy = kernels, d[use]
    else:  # the CLEAN part with the restoring beam, the residual with the dirty beam
        resid = planes.residual[yu, xu]
        clean_estimator = np.linalg.pinv((kernels * w) @ kernels.T) @ (kernels * w)
        shapes, noisy = dirty(), resid
    normal = (shapes * w) @ shapes.T
    estimator = np.linalg.pinv(normal) @ (shapes * w)  # (members, pixels): flux = estimator @ data
    clean = clean_estimator @ (d[use] - resid) if two_part else np.zeros(len(members))
    noisy_part = estimator @ noisy
    flux = clean + noisy_part
    # each flux's variance: sum_ij u_i u_j rho(i - j), u = its estimator row times sigma, the
    # autocorrelation of u against the noise correlation rho, lag by lag
    h, wd = xs.shape
    rho = planes.noise_correlation(max(h, wd) - 1)
    c = rho.shape[0] // 2
    rho = rho[c - (h - 1) : c + h, c - (wd - 1) : c + wd]
    u_all = estimator * sigma[use]
    diag = np.sqrt(np.diag(normal))
    correlation = normal / np.outer(diag, diag)
    np.fill_diagonal(correlation, 0.0)
    errors = np.zeros(len(members)) if position_errors is None else np.array([position_errors[i] for i in members])
    # the dirty-beam parts well above the noise leave the error's box, the rest is its noise
    bright = [(px[j], py[j], noisy_part[j]) for j in range(len(members))
              if abs(noisy_part[j]) > 5 * planes.noise[int(round(py[j])), int(round(px[j]))]]
    # each neighbour's change is at most its amplitude times the estimator's summed |weights|
    # times the steepest slope of a unit beam (0.61 / sigma per pixel; the dirty beam's main
    # lobe is up to a fifth narrower): when even that bound stays within the error (which only
    # grows after the fit), the leakage is not worked out
    slope = 1.2 * 0.61 * 2.3548 * abs(planes.header["CDELT1"]) / planes.header["BMIN"]
    for k, i in enumerate(members):
        if report is not None and i != report:
            continue
        u = np.zeros((h, wd))
        u[use] = u_all[k]
        error = float(np.sqrt(max(float(np.sum(correlate(u, u, mode="full", method="fft") * rho)), 0.0)))
        yi, xi = int(round(py[k])), int(round(px[k]))
        rms = float(planes.noise[yi, xi])
        if (around := planes.surrounding_rms(px[k], py[k], radius_pixels, bright)) is not None and rms > 0:
            error, rms = error * around / rms, around
        fits[i] = (float(flux[k]), error, rms)
        if np.any(np.abs(correlation[k]) > BLEND_CORRELATION):
            leakage[i] = float("inf")
            continue
        reach = (np.abs(noisy_part) * np.abs(estimator[k]).sum()
                 + (np.abs(clean) * np.abs(clean_estimator[k]).sum() if two_part else 0.0)) * errors * slope
        reach[k] = 0.0
        if np.sqrt(2 * np.sum(reach**2)) > error:  # those that cannot move it by a tenth of it are left out
            movers = list(np.flatnonzero(reach > 0.1 * error))
            leakage[i] = _leakage(k, movers, errors, estimator, noisy_part, dirty if two_part else restoring,
                                  (clean_estimator, clean, restoring) if two_part else None)
    return fits, leakage


def _leakage(k: int, movers: list[int], errors: np.ndarray, estimator, amplitudes, shifted, clean_part=None) -> float:
    """The 1-sigma change (Jy) of member ``k``'s flux when each of the ``movers`` j moves by
    ``errors[j]`` pixels along each axis: its fitted amplitude times the estimator's response to
    its shape's slope (``shifted(dx, dy, which)``: the shapes moved), and the same for the CLEAN
    part (``clean_part``: its estimator, amplitudes and moved shapes), added in quadrature
    (:func:`fit_group`)."""
    step = 0.5  # pixels: a central difference, on shapes a few pixels wide

    def slope(moved, dx, dy):
        return ((moved(dx, dy, movers) - moved(-dx, -dy, movers)) / (2 * step)).T

    total = 0.0
    for dx, dy in ((step, 0.0), (0.0, step)):
        change = amplitudes[movers] * (estimator[k] @ slope(shifted, dx, dy))
        if clean_part is not None:
            c_estimator, c_amplitudes, c_shifted = clean_part
            change = change + c_amplitudes[movers] * (c_estimator[k] @ slope(c_shifted, dx, dy))
        total += float(np.sum((change * errors[movers]) ** 2))
    return float(np.sqrt(total))


def measure(planes: ImagePlanes, catalogue_sources, config: PhotometryConfig = PhotometryConfig(),
            only: set[str] | None = None) -> PhotometryResult:
    """Blind detections, then forced photometry at every catalogue position on the image, each
    fitted jointly with its neighbours (:func:`forced_measurements`). With ``only`` (source
    names), no blind detection: forced fits at those sources alone, the other catalogue
    sources fitted beside them as neighbours (sources found after the image was measured)."""
    from astropy.wcs import WCS

    t0 = time.perf_counter()
    header = planes.header
    wcs = WCS(header).celestial
    radius = config.fit_radius_beams * header["BMAJ"] / abs(header["CDELT1"])
    sources = list(catalogue_sources)
    if only is None:
        blind = blind_detections(planes, wcs, sources, config)
        targets, others = sources, [m for m in blind if m.matched is None]
    else:
        blind = []
        targets, others = [s for s in sources if s.name in only], [s for s in sources if s.name not in only]
    t1 = time.perf_counter()
    out, leakage = forced_measurements(planes, wcs, targets, others, radius, config.catalogue_position_error_arcsec)
    t2 = time.perf_counter()
    placed = out + blind if only is None else sources
    occupied = [(float(x), float(y)) for x, y in zip(*wcs.world_to_pixel_values(
        [m.ra_deg for m in placed], [m.dec_deg for m in placed]))] if placed else []
    scale = blank_sky_error_scale(planes, occupied, radius, config.blank_fits)
    measured = [replace(m, flux_err_jy=float(np.hypot(m.flux_err_jy * scale, config.systematic_fraction * m.flux_jy)))
                for m in out + blind]
    # a measurement its neighbours' position errors can move by more than its error is theirs
    # as much as its own
    measured[:len(out)] = [replace(m, flags="blend") if leak > m.flux_err_jy else m
                           for m, leak in zip(measured, leakage)]
    if planes.beam is not None and measured:
        response = planes.beam_at(*wcs.world_to_pixel_values([m.ra_deg for m in measured], [m.dec_deg for m in measured]))
        measured = [m if r >= config.low_beam else replace(m, flags=with_flag(m.flags, "low_beam"))
                    for m, r in zip(measured, response)]
    margin = edge_margin_deg(header, planes.data.shape[1], config.edge_margin_deg) / abs(header["CDELT1"])
    if blind and margin > 0:
        measured = [m for m in measured if m.kind == "forced" or m.matched is not None
                    or not near_row_end(planes.data, *wcs.world_to_pixel_values(m.ra_deg, m.dec_deg), margin)]
    finite = planes.noise[np.isfinite(planes.noise)]
    beam = (header["BMAJ"] * 3600, header["BMIN"] * 3600, header.get("BPA", 0.0))
    return PhotometryResult(measured, float(np.median(finite)) if finite.size else float("nan"), beam,
                            {"forced": t2 - t1, "blind": t1 - t0}, error_scale=scale)


def with_flag(flags: str, flag: str) -> str:
    """``flags`` (comma-separated) with ``flag`` added (nothing added when it is empty)."""
    return ",".join(f for f in (flags, flag) if f)


def forced_measurements(planes: ImagePlanes, wcs, sources, others: list[Measurement], radius_pixels: float,
                        catalogue_error_arcsec: float = 0.0) -> tuple[list[Measurement], list[float]]:
    """Forced fits at the ``sources``' positions, in their order, each fitted together with its
    nearest neighbours (up to ``MAX_NEIGHBOURS`` within ``GROUP_RADII`` fit radii) among the
    other sources and the ``others`` (detections no catalogue source accounts for), whose
    fluxes are fitted so that they stay theirs (:func:`fit_group`). Returns the measurements
    and each one's leakage (Jy) from its catalogued neighbours' position errors (their own
    ``position_error_arcsec`` or ``catalogue_error_arcsec``)."""
    from scipy.spatial import cKDTree

    if not sources:
        return [], []
    positions = list(sources) + list(others)
    xs, ys = wcs.world_to_pixel_values([p.ra_deg for p in positions], [p.dec_deg for p in positions])
    xy = np.column_stack([np.atleast_1d(xs), np.atleast_1d(ys)])
    cell_arcsec = abs(planes.header["CDELT1"]) * 3600
    # a detection is where this image has it, to within its fit's error: at the noise's level,
    # in the measurement's error already
    errors = [0.0 if isinstance(p, Measurement) else
              (getattr(p, "position_error_arcsec", None) or catalogue_error_arcsec) / cell_arcsec for p in positions]
    on_sky = np.flatnonzero(np.isfinite(xy).all(axis=1))  # the far side of the sky is not projected
    ny, nx = planes.data.shape
    tree = cKDTree(xy[on_sky])
    out, leakage = [], []
    for i in on_sky[on_sky < len(sources)]:
        x, y = xy[i]
        if not (-radius_pixels <= x < nx + radius_pixels and -radius_pixels <= y < ny + radius_pixels):
            continue  # off the image
        _, near = tree.query(xy[i], k=min(MAX_NEIGHBOURS + 1, len(on_sky)),
                             distance_upper_bound=GROUP_RADII * radius_pixels)
        group = [i] + [int(on_sky[j]) for j in np.atleast_1d(near) if j < len(on_sky) and on_sky[j] != i]
        fits, leaks = fit_group(planes, [tuple(xy[j]) for j in group], radius_pixels, report=0,
                                position_errors=[errors[j] for j in group])
        fit = fits[0]
        if fit is not None and np.isfinite(fit[0]):
            s = sources[i]
            out.append(Measurement(s.name, s.ra_deg, s.dec_deg, fit[0], fit[1], fit[2], "forced"))
            leakage.append(leaks[0])
    return out, leakage


def blank_sky_error_scale(planes: ImagePlanes, occupied: list[tuple[float, float]], radius_pixels: float,
                          n_fits: int, seed: int = 0) -> float:
    """How much the predicted errors understate the real scatter: forced fits at ``n_fits``
    random positions at least three fit radii from every ``occupied`` pixel position (sources
    measured or detected), each divided by its own predicted error; the robust standard
    deviation (1.4826 MAD) of those ratios, or 1 when it is smaller or fewer than 30 fits
    were possible.

    The predicted error assumes noise correlated like the restoring beam and uses the
    residual's local rms; on real images the noise also holds deconvolution sidelobes and is
    correlated like the dirty beam, which blank sky measures directly. Positions are drawn
    with a fixed seed, so a re-measured image gets the same scale."""
    ny, nx = planes.data.shape
    margin = int(np.ceil(radius_pixels)) + 1
    if n_fits <= 0 or nx <= 2 * margin or ny <= 2 * margin:
        return 1.0
    rng = np.random.default_rng(seed)
    xs = rng.uniform(margin, nx - margin, 4 * n_fits)
    ys = rng.uniform(margin, ny - margin, 4 * n_fits)
    if occupied:
        ox, oy = np.array(occupied, dtype=float).T
        clear = ((xs[:, None] - ox[None]) ** 2 + (ys[:, None] - oy[None]) ** 2).min(axis=1) > (3 * radius_pixels) ** 2
        xs, ys = xs[clear], ys[clear]
    ratios = []
    for x, y in zip(xs, ys):
        fit = forced_fit(planes, float(x), float(y), radius_pixels)
        if fit is not None and np.isfinite(fit[0]) and fit[1] > 0:
            ratios.append(fit[0] / fit[1])
        if len(ratios) == n_fits:
            break
    if len(ratios) < 30:
        return 1.0
    ratios = np.asarray(ratios)
    return float(max(1.0, 1.4826 * np.median(np.abs(ratios - np.median(ratios)))))


def blind_detections(planes: ImagePlanes, wcs, sources, config: PhotometryConfig) -> list[Measurement]:
    """Segments of the signal-to-noise map above ``detect_snr``, each measured by fitting the
    restoring beam at its centroid (a pixel peak under-reads a beam only ~2 pixels wide), with
    Condon's position errors, and associated with the known ``sources`` by the de Ruiter radius
    (:mod:`dsa_assets.association`; a source without ``position_error_arcsec`` has the
    catalogue's ``catalogue_position_error_arcsec``).

    A segment needs half the pixels inside the beam's half-power contour: a larger minimum
    (photutils' usual 5) drops 10-sigma sources when the beam spans two pixels.

    A segment that holds two or more known sources is their blend: its centroid falls between
    them, beyond the reach of either, and would pass for a source of its own beside them in
    every image (two catalogued sources 1.8 arcmin apart under a 1 x 0.7 arcmin beam did). It
    is associated with the brightest of them and flagged ``blend``; each is measured by the
    forced fits, jointly."""
    from photutils.segmentation import SourceCatalog, detect_sources

    from .. import association

    header = planes.header
    cell = abs(header["CDELT1"])
    half_power_pixels = 0.25 * np.pi * (header["BMAJ"] / cell) * (header["BMIN"] / cell)
    snr = np.where(np.isfinite(planes.data) & (planes.noise > 0), planes.data / planes.noise, 0.0)
    segments = detect_sources(snr, config.detect_snr, n_pixels=max(1, int(0.5 * half_power_pixels)))
    if segments is None:
        return []
    cat = SourceCatalog(np.nan_to_num(planes.data), segments)
    fit_radius = config.fit_radius_beams * header["BMAJ"] / cell
    beam = (header["BMAJ"] * 3600, header["BMIN"] * 3600, header.get("BPA", 0.0))
    fwhm_ra, fwhm_dec = association.beam_axis_fwhm(*beam)
    blends = _blends(segments.data, wcs, sources)
    fitted = []
    for row in cat:
        x, y = float(row.x_centroid), float(row.y_centroid)
        fit = forced_fit(planes, x, y, fit_radius)
        if fit is not None:
            ra, dec = (float(v) for v in wcs.pixel_to_world_values(x, y))
            fitted.append((ra, dec, fit, blends.get(int(row.label))))
    if not fitted:
        return []
    fit_snr = np.array([f[0] / f[1] if f[1] > 0 else 0.0 for _, _, f, _ in fitted])
    ra_err, dec_err = association.position_errors(fit_snr, beam, 0.0)
    ra_err = np.hypot(ra_err, config.position_systematic_beams * fwhm_ra)
    dec_err = np.hypot(dec_err, config.position_systematic_beams * fwhm_dec)
    detections = [association.Position("", ra, dec, float(e_ra), float(e_dec))
                  for (ra, dec, _, _), e_ra, e_dec in zip(fitted, ra_err, dec_err)]
    matches = association.associate(detections, association.known_positions(sources, config.catalogue_position_error_arcsec),
                                    association.MAX_SEPARATION_BEAMS * beam[0])
    out = []
    for d, (_, _, fit, blend), (match, r) in zip(detections, fitted, matches):
        flags = ""
        if match is None and blend is not None:
            match, r, flags = blend, None, "blend"
        out.append(Measurement(match or catalogue.iau_name(d.ra_deg, d.dec_deg, "DET"), d.ra_deg, d.dec_deg, fit[0],
                               fit[1], fit[2], "blind", matched=match, flags=flags, ra_err_arcsec=d.ra_err_arcsec,
                               dec_err_arcsec=d.dec_err_arcsec, de_ruiter=r if match else None))
    return out


def _blends(labels: np.ndarray, wcs, sources) -> dict[int, str]:
    """Segment label -> the brightest of the known ``sources`` (with ra_deg, dec_deg, flux_jy)
    in it, for the segments of ``labels`` (0: background) that hold two or more of them."""
    if not sources:
        return {}
    x, y = wcs.world_to_pixel_values([s.ra_deg for s in sources], [s.dec_deg for s in sources])
    on_grid = np.isfinite(x) & np.isfinite(y)  # not on a far side of the projection
    xi, yi = (np.round(np.where(on_grid, v, -1)).astype(int) for v in (x, y))
    inside = on_grid & (xi >= 0) & (xi < labels.shape[1]) & (yi >= 0) & (yi < labels.shape[0])
    held: dict[int, list] = {}
    for k in np.flatnonzero(inside):
        if label := int(labels[yi[k], xi[k]]):
            held.setdefault(label, []).append(sources[k])
    return {label: max(known, key=lambda s: s.flux_jy).name for label, known in held.items() if len(known) > 1}


def new_source_candidates(result: PhotometryResult, earlier_images: list[dict], factor: float = 5.0,
                          min_snr: float = 0.0, box: int = PhotometryConfig.noise_box_pixels) -> list[Measurement]:
    """Blind detections with no catalogue match, at least ``min_snr`` times their noise
    (:func:`dsa_assets.variability.new_source_snr`), whose peak exceeds ``factor`` times the lowest
    noise an earlier image had at their position (:func:`noise_at`: its local noise there, as
    VAST judges new sources, else its rms over the primary-beam response at that offset from
    its centre). With no earlier image covering the position there is nothing to compare
    with, and the detection is not called new."""
    from ..variability import is_new_source

    found = []
    for m in result.blind():
        if m.matched is not None or m.snr < min_snr or "low_beam" in m.flags:
            continue
        rms = [n for img in earlier_images if (n := noise_at(img, m.ra_deg, m.dec_deg, box)) is not None]
        if is_new_source(m.flux_jy, rms, factor):
            found.append(m)
    return found


def noise_at(image: dict, ra_deg: float, dec_deg: float, box: int = PhotometryConfig.noise_box_pixels
             ) -> float | None:
    """The noise (Jy/beam, beam-corrected) of an earlier image (a products-database ``images``
    row) at a position: the robust rms of its residual in a ``box``-pixel square there over
    the primary beam's response (observation images), or its noise map's value (mosaics).
    Beside a bright source that is the level of its sidelobes and artefacts, there in every
    image, which the image's median rms hides: an artefact as bright in a later image is no
    new source. Where the files are gone (retention), the image's rms over the beam's
    response at that offset from its centre. None: the image does not cover the position
    (outside it, blanked, or the beam below a tenth of its peak)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from .. import geometry

    offset = float(catalogue.angular_distance_deg(ra_deg, dec_deg, image["centre_ra_deg"], image["centre_dec_deg"]))
    if offset > (image.get("radius_deg") or 0.0):
        return None
    response = 1.0
    if image["kind"] == "observation":
        response = float(geometry.airy_power_beam(np.cos(np.radians(offset)), 1.4e9))
        if response <= 0.1:
            return None
    path = Path(image.get("path") or "")
    if not path.name.endswith("-image.fits"):
        return image["rms_jy"] / response
    planes = ("residual", "pb") if image["kind"] == "observation" else ("noise",)
    files = [path.with_name(path.name.replace("-image.fits", f"-{kind}.fits")) for kind in planes]
    if not all(f.exists() for f in files):
        return image["rms_jy"] / response
    try:
        with fits.open(files[0], memmap=True) as hdul:
            header, data = hdul[0].header, hdul[0].data
            x, y = (int(round(float(v))) for v in WCS(header).celestial.world_to_pixel_values(ra_deg, dec_deg))
            plane = data.reshape(data.shape[-2:])
            if not (0 <= x < plane.shape[1] and 0 <= y < plane.shape[0]) or not np.isfinite(plane[y, x]):
                return None
            if image["kind"] != "observation":
                return float(plane[y, x])
            half = box // 2
            cut = np.asarray(plane[max(y - half, 0):y + half, max(x - half, 0):x + half], dtype=float)
        with fits.open(files[1], memmap=True) as hdul:
            pb = float(hdul[0].data.reshape(hdul[0].data.shape[-2:])[y, x])
    except (OSError, ValueError) as exc:  # a damaged file: judge by the image's rms
        log.warning("%s: %s; its median rms stands for its noise at (%.4f, %.4f)", files[0], exc, ra_deg, dec_deg)
        return image["rms_jy"] / response
    cut = cut[np.isfinite(cut)]
    if not cut.size or not np.isfinite(pb) or pb <= 0.1:
        return None
    return float(1.4826 * np.median(np.abs(cut - np.median(cut))) / pb)


class PhotometryStage:
    """Forced and blind photometry of one image (an observation's or a mosaic)."""

    name = "photometry"

    def __init__(self, config: PhotometryConfig = PhotometryConfig()):
        self.config = config

    def validate(self, *paths: Path) -> None:
        from astropy.io import fits

        for p in paths:
            if not Path(p).exists():
                raise PhotometryError(f"{p} does not exist")
        header = fits.getheader(paths[0])
        if "BMAJ" not in header:
            raise PhotometryError(f"{paths[0]} has no restoring beam in its header")

    def execute_observation(self, image: Path, residual: Path, pb: Path, catalogue_sources,
                            psf: Path | None = None, only: set[str] | None = None) -> PhotometryResult:
        """Measure an observation's image: beam-corrected, noise from the residual; with its dirty
        beam ``psf`` (the imaging stage's ``psf`` product), the residual is fitted with it. With
        ``only``, forced fits at those sources alone (:func:`measure`)."""
        self.validate(image, residual, pb)
        return measure(ImagePlanes.from_observation(image, residual, pb, self.config, psf), catalogue_sources,
                       self.config, only)

    def execute_mosaic(self, image: Path, noise: Path, catalogue_sources, residual: Path | None = None,
                       psf: Path | None = None, weight: Path | None = None) -> PhotometryResult:
        """Measure a mosaic with its noise map; with its residual and dirty beam (the mosaic
        stage's ``residual`` and ``psf`` products), the residual is fitted with the dirty beam;
        with its ``weight``, measurements where it is below ``low_beam`` squared of its peak
        are flagged ``low_beam``."""
        self.validate(image, noise, *(p for p in (residual, psf, weight) if p is not None))
        return measure(ImagePlanes.from_mosaic(image, noise, residual, psf, weight), catalogue_sources, self.config)

    def cleanup(self) -> None:
        """Nothing to remove: measurements live in the products database."""
