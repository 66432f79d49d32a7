"""Mosaics: an hour's observation images combined on one grid, weighted by primary beam and noise.

Each input i is its flat (not beam-corrected) image I_i = PB_i S + n_i with beam PB_i and noise
sigma_i (robust rms of its residual, Jy/beam). On the common grid each pixel is

    S = sum(PB_i I_i / sigma_i^2) / sum(PB_i^2 / sigma_i^2)      (Jy/beam)

the minimum-variance estimate of the sky, with noise 1 / sqrt(sum(PB_i^2 / sigma_i^2)) and
weight sum(PB_i^2 / sigma_i^2). The noise map is raised to the local robust rms of the residual
mosaic wherever that is higher: around bright sources the residuals hold sidelobes, the same
in consecutive observations of a transit array, which do not average down as that formula
assumes (found in mosaics at 5.6-7.8 times the formula's noise, they were eight of the twelve
false new sources of two hours of ``bench/false_variables.py``). The grid (``reproject.mosaicking.find_optimal_celestial_wcs``)
covers all inputs at the inputs' pixel size; images and beams are resampled with
``reproject_interp``. Pixels where the summed beam weight is below ``pb_cutoff`` of an input's
peak are blank. The residuals are combined with the same weights into a residual mosaic, and the
inputs' dirty beams (alike within an hour at one declination) averaged with weights 1/sigma^2
into the mosaic's: photometry fits the residual part of a source with it (see
:mod:`.photometry`). The restoring beam in the header is the inputs' median (they differ little over
an hour at one declination). Written under scratch and renamed into
``<output>/mosaics/<date>/``. Plain Python: no Dagster import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import fsutil, naming
from ..exceptions import MosaicError
from .imaging import render_thumbnail, robust_rms
from .photometry import PhotometryConfig, local_rms, psf_cutout

PRODUCTS = naming.MOSAIC_PRODUCTS
PSF_HALF_WIDTH = 128
"""Half-width (pixels) of the dirty-beam cut-out kept with a mosaic: several beams across."""


@dataclass(frozen=True)
class MosaicInput:
    """One observation's images (flat image, residual, primary beam, dirty beam), by path."""

    name: str
    image: Path
    residual: Path
    pb: Path
    psf: Path | None = None


@dataclass(frozen=True)
class MosaicConfig:
    output_dir: Path
    scratch_dir: Path | None = None
    pb_cutoff: float = 0.1
    noise_box_pixels: int = PhotometryConfig.noise_box_pixels
    """Cells (pixels) of the residual's local robust rms that the noise map is held to."""


@dataclass(frozen=True)
class MosaicResult:
    """A published hourly mosaic: FITS planes by kind, thumbnail, the inputs combined, noise
    metrics (Jy/beam) and step times (s)."""

    key: str
    paths: dict[str, Path]
    thumbnail: Path
    n_inputs: int
    inputs: list[str]
    metrics: dict
    timings_s: dict = field(default_factory=dict)


def footprint_box(wcs, shape: tuple[int, int], out_wcs, out_shape: tuple[int, int]) -> tuple[slice, slice]:
    """(rows, columns) slices of the output grid that hold an input image of ``shape`` on
    ``wcs``: the box around its edge pixels' positions, one pixel wider each side."""
    ny, nx = shape
    edge_x = np.concatenate([np.arange(nx), np.arange(nx), np.zeros(ny), np.full(ny, nx - 1)])
    edge_y = np.concatenate([np.zeros(nx), np.full(nx, ny - 1), np.arange(ny), np.arange(ny)])
    x, y = out_wcs.world_to_pixel_values(*wcs.pixel_to_world_values(edge_x, edge_y))
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return slice(0, out_shape[0]), slice(0, out_shape[1])
    x0, x1 = max(int(np.floor(x[ok].min())) - 1, 0), min(int(np.ceil(x[ok].max())) + 2, out_shape[1])
    y0, y1 = max(int(np.floor(y[ok].min())) - 1, 0), min(int(np.ceil(y[ok].max())) + 2, out_shape[0])
    return slice(y0, y1), slice(x0, x1)


def mean_dirty_beam(paths: list[Path | None], sigmas: list[float]) -> np.ndarray | None:
    """The inputs' dirty beams, cut to ``PSF_HALF_WIDTH`` about their peaks and averaged with
    weights 1/sigma^2 (sigma: each input's residual rms, Jy/beam); None unless every input has
    one. Zero beyond an input's own image."""
    from astropy.io import fits

    if not paths or any(p is None or not Path(p).exists() for p in paths):
        return None
    total, weights = 0.0, 0.0
    for path, sigma in zip(paths, sigmas):
        total = total + psf_cutout(np.squeeze(fits.getdata(path)).astype(np.float64), PSF_HALF_WIDTH) / sigma**2
        weights += 1.0 / sigma**2
    return total / weights


class MosaicStage:
    name = "mosaic"

    def __init__(self, config: MosaicConfig):
        self.config = config

    def validate(self, inputs: list[MosaicInput]) -> None:
        if not inputs:
            raise MosaicError("no images to combine")
        missing = [str(p) for i in inputs for p in (i.image, i.residual, i.pb) if not Path(p).exists()]
        if missing:
            raise MosaicError(f"missing input file(s): {', '.join(missing)}")

    def execute(self, key: str, inputs: list[MosaicInput]) -> MosaicResult:
        from astropy.io import fits
        from astropy.wcs import WCS
        from reproject import reproject_interp
        from reproject.mosaicking import find_optimal_celestial_wcs

        naming.hour_key(key)  # a malformed key is refused before anything is read or written
        self.validate(inputs)
        t0 = time.perf_counter()
        planes = []
        for i in inputs:
            header = fits.getheader(i.image)
            wcs = WCS(header).celestial
            image = np.squeeze(fits.getdata(i.image)).astype(np.float64)
            pb = np.squeeze(fits.getdata(i.pb)).astype(np.float64)
            residual = np.squeeze(fits.getdata(i.residual)).astype(np.float64)
            planes.append((header, wcs, image, pb, robust_rms(residual), residual))
        out_wcs, shape = find_optimal_celestial_wcs([(p[2], p[1]) for p in planes])
        num = np.zeros(shape)
        num_residual = np.zeros(shape)
        den = np.zeros(shape)
        for _header, wcs, image, pb, sigma, residual in planes:
            # each input onto the part of the grid it covers: an hour spans several image widths
            box = footprint_box(wcs, image.shape, out_wcs, shape)
            sub_wcs, sub_shape = out_wcs[box], (box[0].stop - box[0].start, box[1].stop - box[1].start)
            pb_cut = np.where(pb >= self.config.pb_cutoff * np.nanmax(pb), pb, 0.0)
            img_r, cover = reproject_interp((image, wcs), sub_wcs, shape_out=sub_shape)
            res_r, _ = reproject_interp((residual, wcs), sub_wcs, shape_out=sub_shape)
            pb_r, _ = reproject_interp((pb_cut, wcs), sub_wcs, shape_out=sub_shape)
            ok = (cover > 0) & np.isfinite(img_r) & np.isfinite(res_r) & np.isfinite(pb_r) & (pb_r > 0)
            num[box][ok] += pb_r[ok] * img_r[ok] / sigma**2
            num_residual[box][ok] += pb_r[ok] * res_r[ok] / sigma**2
            den[box][ok] += pb_r[ok] ** 2 / sigma**2
        timings = {"reproject": time.perf_counter() - t0}
        valid = den > 0
        mosaic = np.where(valid, num / np.where(valid, den, 1.0), np.nan)
        residual_mosaic = np.where(valid, num_residual / np.where(valid, den, 1.0), np.nan)
        psf = mean_dirty_beam([i.psf for i in inputs], [p[4] for p in planes])
        noise = np.where(valid, 1.0 / np.sqrt(np.where(valid, den, 1.0)), np.nan)
        if valid.any():
            noise = np.where(valid, np.fmax(noise, local_rms(residual_mosaic, self.config.noise_box_pixels)), np.nan)
        weight = np.where(valid, den, 0.0)

        header = out_wcs.to_header()
        first = planes[0][0]
        for k in ("BUNIT", "TELESCOP", "OBSERVER"):
            if k in first:
                header[k] = first[k]
        for k in ("BMAJ", "BMIN", "BPA"):
            header[k] = float(np.median([p[0][k] for p in planes if k in p[0]] or [0.0]))
        header["NINPUTS"] = (len(inputs), "observation images combined")
        for n, i in enumerate(inputs):
            header[f"INPUT{n:02d}"] = i.name
        dest = naming.mosaic_dir(self.config.output_dir, key)
        stem = naming.mosaic_stem(key)
        final = naming.mosaic_files(self.config.output_dir, key)
        t = time.perf_counter()
        with fsutil.scratch_directory(self.config.scratch_dir, f"mosaic-{stem}-") as tmp:
            bundle = tmp / "publish"
            bundle.mkdir()
            for kind, data in (("image", mosaic), ("noise", noise), ("weight", weight),
                               ("residual", residual_mosaic), ("psf", psf)):
                if data is None:
                    continue
                h = header.copy()
                if kind == "weight":
                    h["BUNIT"] = "beam2/Jy2"
                if kind == "psf":  # a cut-out centred on its peak: only the pixel scale applies
                    h["CRPIX1"], h["CRPIX2"], h["BUNIT"] = PSF_HALF_WIDTH + 1, PSF_HALF_WIDTH + 1, ""
                fits.writeto(bundle / final[kind].name, data.astype(np.float32), h)
            finite = noise[np.isfinite(noise)]
            median_noise = float(np.median(finite)) if finite.size else float("nan")
            render_thumbnail(bundle / final["image"].name, bundle / f"{stem}.png", median_noise, f"mosaic {key}")
            fsutil.publish(bundle, dest)
        timings["write"] = time.perf_counter() - t
        metrics = {
            "noise_median_jy": median_noise,
            "noise_min_jy": float(finite.min()) if finite.size else float("nan"),
            "noise_p90_jy": float(np.percentile(finite, 90)) if finite.size else float("nan"),
            "peak_jy": float(np.nanmax(mosaic)) if valid.any() else float("nan"),
            "shape": list(shape),
            "input_rms_jy": [p[4] for p in planes],
        }
        named = {kind: path for kind, path in final.items() if kind != "psf" or psf is not None}
        return MosaicResult(key, named, dest / f"{stem}.png", len(inputs), [i.name for i in inputs], metrics, timings)

    def cleanup(self) -> list[Path]:
        """Remove scratch directories of interrupted mosaics and partial publishes."""
        return fsutil.sweep_partials(naming.product_root(self.config.output_dir, "mosaics")) + fsutil.sweep_scratch(
            self.config.scratch_dir, "mosaic-*")
