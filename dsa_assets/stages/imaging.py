"""Imaging: one Measurement Set -> restored, residual, PSF, model, primary-beam and
primary-beam-corrected FITS images, with quality metrics and a PNG thumbnail.

WSClean (Debian package ``wsclean``) is the default imager; CASA ``tclean`` (w-projection)
the alternative. The command is built by a pure function (testable without the imager) and
run by one runner that keeps the imager's log and turns a failure into ImagingError. Images
are made under the scratch directory and renamed into ``<output>/images/<date>/``.

The primary beam of a transit array moves over the sky during the observation: the beam
image is the 4.65 m Airy power pattern centred on the pointing (the meridian at the pointing
declination) at every integration, averaged over the integrations and over the band.

Sources peeled from the visibilities before imaging (:mod:`.peeling`) that lie inside the
image are put back into the restored image at the flux peeling took (:func:`peeling.restore`).

Plain Python: no Dagster import.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import constants as C
from .. import fsutil, geometry, naming, qa
from ..exceptions import ImagingError
from .ms_inspect import pointing_directions, radec_unit
from .peeling import read_record, restore
from .selfcal import ROUNDS, self_calibrate

log = logging.getLogger(__name__)

PRODUCTS = naming.IMAGE_PRODUCTS
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
MIN_PIXELS_PER_BEAM = 5.0
"""Pixels across the restoring beam's minor axis below which a point source's CLEAN components
spread over neighbouring pixels enough to lower its fitted peak by percents, depending on where
it falls within its pixel: measured 1.5% at 3.2 pixels (full scale, 12"), up to 3.5% at 4
(24 antennas, 12"), none at 6-8 (``bench/imaging.py``)."""


@dataclass(frozen=True)
class ImagingConfig:
    """How to image. Angles in arcseconds, sizes in pixels."""

    output_dir: Path
    scratch_dir: Path | None = None
    imager: str = "wsclean"
    """"wsclean" (default) or "tclean"."""
    size: int = 2048
    """Image width and height (pixels): 2048 x 6" = 3.4 deg, the primary beam's FWHM."""
    cell_arcsec: float = 6.0
    """Pixel size. 6" holds every baseline of the array (2.6 km: 13,000 wavelengths at the top of
    the band; the uv grid reaches 1 / (2 x cell) = 17,000) and puts 6 pixels across the beam's
    minor axis (~38" at full scale). With 12" pixels 7.6% of the baselines fell outside the
    grid and were dropped, and a source between pixels read up to 3.5% low; at 6", with the
    default baseline averaging, sources across the field read within 1% (``bench/imaging.py``)."""
    weighting: str = "briggs"
    robust: float = 0.5
    niter: int = 1000
    auto_threshold: float = 3.0
    """Stop cleaning at this many times the residual rms."""
    auto_mask: float = 5.0
    """Clean freely down to this many sigma, then only inside the mask so formed."""
    mgain: float = 0.8
    gridder: str = "wgridder"
    """WSClean's gridder: "wgridder" (Reinecke's w-gridder) or "wstacking" (WSClean's own
    default). W-stacking mis-models the far sidelobes of a bright source away from the phase
    centre: a noise-free 0.7 Jy source 1.4 deg out (125 mJy apparent) left a 12.5 mJy false
    source at its 9.4' grating lobe on the 20-antenna array (CLEAN components of +-5 mJy on the
    two lobes), the same in every observation of that field, where the data matched a direct
    Fourier transform to 0.5 deg of phase; the w-gridder leaves 1 mJy there, and on a noisy
    observation of the realistic sky took 4% off the residual rms in a quarter of the time
    (``tests/unit/test_imaging.py::test_a_bright_source_away_from_the_centre_leaves_no_false_source_at_its_sidelobes``)."""
    padding: float = 1.5
    """WSClean's padding of the gridded image. With its default, 1.2, w-stacking read sources at
    1.4-1.6 deg (the outer sixth of the image) 4.5-8% low at 12" pixels and 1.5 brought them to
    4-5%; with the w-gridder at 6" both read them within 1% (``bench/imaging.py --compare
    gridders``)."""
    channels_out: int = 1
    """Sub-bands deconvolved jointly (WSClean ``-channels-out N -join-channels
    -fit-spectral-pol 2``; 1: one image of the whole band). A source's apparent spectrum, its
    own times the beam's at its offset, changes across the 18% band, and its grating lobes move
    with frequency, which one band-averaged dirty beam cannot follow: a noise-free 0.89 Jy source
    1.7 deg out (270 mJy apparent) left 2.0% of itself on its 20' lobe with one band, 0.4% with 4; on a noisy
    observation of the realistic sky 4 lowered the residual rms 4% (2: 3%) for 3 times the
    imaging time (2: 1.7) at 20 antennas. The products are the band's (WSClean's MFS images)."""
    baseline_averaging_wavelengths: float = 4.0
    """WSClean's baseline-dependent averaging (0: off): short baselines, whose fringes turn
    slowly, are averaged in time until they would rotate by this many wavelengths of uv-track.
    Averaging smears sources far from the phase centre: at full scale with 6" pixels, 10
    wavelengths read sources at 1.2-1.6 deg 1-2% low and 4 wavelengths as well as none, in 57 s
    against 49 s (10) and 94 s (none) (``bench/imaging.py``)."""
    threads: int = 2
    data_column: str = "auto"
    """Column imaged: "auto" takes CORRECTED_DATA where the Measurement Set has it (calibrated
    data), else DATA."""
    pb_cutoff: float = 0.1
    """The corrected image is blank where the beam falls below this fraction of its peak."""
    sefd_jy: float = C.SEFD_JY
    """System equivalent flux density per antenna (Jy) for the thermal-noise expectation of the
    image: the SEFD the data were taken (or simulated) with."""
    self_calibration: str = "off"
    """"off", "phase" (one phase-only round per integration) or "phase+amplitude" (then one
    amplitude-and-phase round over the observation) against the observation's own CLEAN model
    (:mod:`dsa_assets.stages.selfcal`); WSClean only. A round is kept only if it lowers the
    residual rms by ``selfcal_min_improvement`` and raises the dynamic range."""
    selfcal_min_improvement: float = 0.02
    """Fraction by which a self-calibration round must lower the residual rms to be kept."""

    def __post_init__(self):
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.scratch_dir is not None:
            object.__setattr__(self, "scratch_dir", Path(self.scratch_dir))
        if self.imager not in ("wsclean", "tclean"):
            raise ValueError(f"imager must be 'wsclean' or 'tclean', got {self.imager!r}")
        if self.gridder not in ("wgridder", "wstacking"):
            raise ValueError(f"gridder must be 'wgridder' or 'wstacking', got {self.gridder!r}")
        if self.channels_out < 1:
            raise ValueError(f"channels_out must be 1 or more, got {self.channels_out}")
        if self.channels_out > 1 and self.imager != "wsclean":
            raise ValueError("channels_out above 1 needs WSClean; imager is tclean")
        if self.self_calibration not in ("off", *ROUNDS):
            raise ValueError(f"self_calibration must be 'off', 'phase' or 'phase+amplitude', got {self.self_calibration!r}")
        if self.self_calibration != "off" and self.imager != "wsclean":
            raise ValueError("self-calibration needs WSClean (its model visibilities); imager is tclean")


@dataclass(frozen=True)
class ImagingResult:
    """Products (FITS paths by kind, thumbnail) and metrics (Jy/beam, arcsec, deg, s)."""

    group_id: str
    images: dict[str, Path]
    thumbnail: Path
    metrics: dict
    wall_time_s: float
    timings_s: dict = field(default_factory=dict)


def wsclean_command(ms_path: Path, prefix: Path, cfg: ImagingConfig, temp_dir: Path,
                    update_model: bool = False) -> list[str]:
    """The WSClean argument list (pure); ``update_model`` writes the CLEAN model's visibilities
    to MODEL_DATA (self-calibration needs them)."""
    argv = [
        "wsclean", "-quiet",
        "-size", str(cfg.size), str(cfg.size),
        "-scale", f"{cfg.cell_arcsec}asec",
        "-pol", "I",
        "-data-column", cfg.data_column,
        "-niter", str(cfg.niter),
        "-mgain", str(cfg.mgain),
        "-auto-threshold", str(cfg.auto_threshold),
        "-auto-mask", str(cfg.auto_mask),
        "-j", str(cfg.threads),
        *([] if update_model else ["-no-update-model-required"]),
        "-temp-dir", str(temp_dir),
        *(["-use-wgridder"] if cfg.gridder == "wgridder" else []),
        "-padding", str(cfg.padding),
        *(["-baseline-averaging", str(cfg.baseline_averaging_wavelengths)] if cfg.baseline_averaging_wavelengths else []),
        *(["-channels-out", str(cfg.channels_out), "-join-channels", "-fit-spectral-pol", "2"]
          if cfg.channels_out > 1 else []),
        "-name", str(prefix),
    ]
    if cfg.weighting == "briggs":
        argv[2:2] = ["-weight", "briggs", str(cfg.robust)]
    else:
        argv[2:2] = ["-weight", cfg.weighting]
    return [*argv, str(ms_path)]


def run_wsclean(ms_path: Path, prefix: Path, cfg: ImagingConfig, temp_dir: Path, log_path: Path,
                update_model: bool = False) -> None:
    """Run WSClean (:func:`wsclean_command`) and leave the band's products at
    ``<prefix>-<kind>.fits`` whether it made one image or several sub-bands (whose band
    images it calls ``<prefix>-MFS-<kind>.fits``)."""
    run_external(wsclean_command(ms_path, prefix, cfg, temp_dir, update_model), log_path)
    if cfg.channels_out > 1:
        for band in prefix.parent.glob(f"{prefix.name}-MFS-*.fits"):
            band.rename(prefix.parent / band.name.replace("-MFS-", "-", 1))


def run_external(argv: list[str], log_path: Path) -> None:
    """Run an external tool, keeping its output in ``log_path``; ImagingError on failure."""
    with open(log_path, "w") as fh:
        proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "".join(Path(log_path).read_text().splitlines(keepends=True)[-15:])
        raise ImagingError(f"{argv[0]} exited with status {proc.returncode}:\n{tail}")


def _tclean(ms_path: Path, prefix: Path, cfg: ImagingConfig) -> None:
    from casatasks import exportfits, tclean

    tclean(
        vis=str(ms_path), imagename=str(prefix), imsize=cfg.size, cell=f"{cfg.cell_arcsec}arcsec",
        specmode="mfs", gridder="wproject", wprojplanes=-1, weighting=cfg.weighting, robust=cfg.robust,
        niter=cfg.niter, gain=0.1, nsigma=cfg.auto_threshold, datacolumn=cfg.data_column.lower().replace("_data", ""),
        stokes="I",
    )
    for casa_kind, kind in (("image", "image"), ("residual", "residual"), ("psf", "psf"), ("model", "model")):
        exportfits(imagename=f"{prefix}.{casa_kind}", fitsimage=f"{prefix}-{kind}.fits", overwrite=True)


def primary_beam(header, pointing_unit: np.ndarray, freqs_hz: np.ndarray, grid: int = 96) -> np.ndarray:
    """Time- and band-averaged Airy power beam on the image grid of ``header`` (2-D, peak ~1),
    for the pointing directions ``pointing_unit`` (ICRS unit vectors, one per integration).

    Evaluated on a ``grid`` x ``grid`` subsample and interpolated (the beam is smooth).
    """
    from astropy.wcs import WCS
    from scipy.interpolate import RegularGridInterpolator

    wcs = WCS(header).celestial
    ny, nx = wcs.array_shape
    xs = np.linspace(0, nx - 1, grid)
    ys = np.linspace(0, ny - 1, grid)
    gx, gy = np.meshgrid(xs, ys)
    ra, dec = wcs.pixel_to_world_values(gx, gy)
    ra, dec = np.radians(ra), np.radians(dec)
    f = np.asarray(freqs_hz)[np.linspace(0, len(freqs_hz) - 1, min(len(freqs_hz), 16)).astype(int)]
    pixels = radec_unit(ra, dec)
    beam = np.zeros_like(ra)
    for p in pointing_unit:
        cos_off = pixels @ p
        beam += geometry.airy_power_beam(cos_off[..., None], f[None, None, :]).mean(axis=-1)
    beam /= len(pointing_unit)
    interp = RegularGridInterpolator((ys, xs), beam)
    yy, xx = np.mgrid[0:ny, 0:nx]
    return interp(np.stack([yy.ravel(), xx.ravel()], axis=-1)).reshape(ny, nx)


def image_extent(path: Path) -> tuple[float, float, float]:
    """(RA, Dec) of a FITS image's centre pixel and its half-diagonal, in degrees (RA in 0-360)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from ..catalogue import CatalogueSource, separation_deg

    wcs = WCS(fits.getheader(path)).celestial
    ny, nx = wcs.array_shape
    ra, dec = (float(v) for v in wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
    corner_ra, corner_dec = (float(v) for v in wcs.pixel_to_world_values(0, 0))
    half_diagonal = float(separation_deg([CatalogueSource("", corner_ra, corner_dec, 0.0)], ra, dec)[0])
    return ra % 360.0, dec, half_diagonal


def robust_rms(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation of the finite values (Jy/beam)."""
    v = values[np.isfinite(values)]
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def fit_point_source(image: np.ndarray, header, x: float, y: float, box: int = 6) -> tuple[float, float, float]:
    """Fit the restoring beam (fixed shape) at pixel (x, y): returns (peak, x, y) of the fit."""
    from scipy.optimize import least_squares

    cell = abs(header["CDELT1"])
    smaj = header["BMAJ"] / cell * FWHM_TO_SIGMA
    smin = header["BMIN"] / cell * FWHM_TO_SIGMA
    pa = np.radians(header.get("BPA", 0.0))
    xi, yi = int(round(x)), int(round(y))
    cut = image[yi - box : yi + box + 1, xi - box : xi + box + 1]
    yy, xx = np.mgrid[yi - box : yi + box + 1, xi - box : xi + box + 1]

    def model(p):
        a, x0, y0 = p
        dx, dy = xx - x0, yy - y0
        # position angle east of north: major axis along +y rotated towards -x (RA increases left)
        u = dx * np.cos(pa) + dy * np.sin(pa)
        v = -dx * np.sin(pa) + dy * np.cos(pa)
        return a * np.exp(-0.5 * ((u / smin) ** 2 + (v / smaj) ** 2))

    j, i = np.unravel_index(np.nanargmax(cut), cut.shape)
    start = [cut[j, i], xx[j, i], yy[j, i]]
    fit = least_squares(lambda p: (model(p) - cut).ravel(), start)
    return float(fit.x[0]), float(fit.x[1]), float(fit.x[2])


def source_recovery(image_path: Path, pb_path: Path, sources, rms: float, snr_min: float = qa.RECOVERY_SNR) -> list[dict]:
    """Measure known point sources in an image: for each source whose beam-attenuated flux
    exceeds ``snr_min`` x ``rms`` (Jy/beam), fit the restoring beam at its true position.

    ``sources``: objects with ``name``, ``ra_deg``, ``dec_deg``, ``flux_jy``. Returns rows with
    the beam-corrected flux (Jy), the true flux, the position offset and the beam minor axis
    (arcsec), and the local noise after beam correction (Jy).
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    header = fits.getheader(image_path)
    image = np.squeeze(fits.getdata(image_path)).astype(np.float64)
    pb = np.squeeze(fits.getdata(pb_path)).astype(np.float64)
    wcs = WCS(header).celestial
    cell = abs(header["CDELT1"]) * 3600
    rows = []
    for s in sources:
        x, y = (float(v) for v in wcs.world_to_pixel_values(s.ra_deg, s.dec_deg))
        xi, yi = int(round(x)), int(round(y))
        if not (8 <= xi < image.shape[1] - 8 and 8 <= yi < image.shape[0] - 8):
            continue
        if s.flux_jy * pb[yi, xi] < snr_min * rms:
            continue
        peak, fx, fy = fit_point_source(image, header, x, y)
        rows.append({
            "name": s.name,
            "flux_jy": peak / pb[int(round(fy)), int(round(fx))],
            "true_flux_jy": s.flux_jy,
            "offset_arcsec": float(np.hypot(fx - x, fy - y) * cell),
            "beam_minor_arcsec": float(header["BMIN"] * 3600),
            "noise_jy": rms / pb[yi, xi],
        })
    return rows


def image_metrics(image: np.ndarray, residual: np.ndarray, header, expected_rms: float) -> dict:
    """rms (robust, from the residual), peak, restoring beam, pixels across its minor axis,
    dynamic range, source count."""
    from scipy import ndimage

    rms = robust_rms(residual)
    peak = float(np.nanmax(image))
    labels, n = ndimage.label(np.nan_to_num(image) > 5 * rms)
    return {
        "rms_jy": rms,
        "expected_rms_jy": expected_rms,
        "rms_over_thermal": rms / expected_rms if expected_rms > 0 else float("nan"),
        "peak_jy": peak,
        "dynamic_range": peak / rms if rms > 0 else float("inf"),
        "beam_major_arcsec": float(header["BMAJ"] * 3600),
        "beam_minor_arcsec": float(header["BMIN"] * 3600),
        "beam_pa_deg": float(header.get("BPA", 0.0)),
        "pixels_per_beam": float(header["BMIN"] / abs(header["CDELT2"])),
        "n_sources_5sigma": int(n),
    }


def render_thumbnail(fits_path: Path, png_path: Path, rms: float, title: str) -> None:
    """PNG of an image with RA/Dec axes (astropy WCSAxes), scaled from -3 to +20 rms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(fits_path) as hdul:
        data = np.squeeze(hdul[0].data)
        wcs = WCS(hdul[0].header).celestial
    fig = plt.figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot(projection=wcs)
    im = ax.imshow(data, origin="lower", cmap="inferno", vmin=-3 * rms, vmax=20 * rms)
    ax.set_xlabel("RA (ICRS)")
    ax.set_ylabel("Dec (ICRS)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Jy/beam")
    fig.savefig(png_path, bbox_inches="tight")
    plt.close(fig)


def ms_summary(ms_path: Path) -> dict:
    """What imaging needs from the MS: unique times (MJD s), frequencies (Hz), the number of
    unflagged cross-correlation visibilities per polarisation, the phase centre (rad), and
    whether it holds calibrated data (a CORRECTED_DATA column)."""
    from casacore import tables

    with tables.table(str(ms_path), ack=False) as t:
        times = np.unique(t.getcol("TIME"))
        has_corrected = "CORRECTED_DATA" in t.colnames()
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        uvw = t.getcol("UVW")
        n_good = 0
        used = np.zeros(len(a1), bool)
        for start in range(0, t.nrows(), 50_000):
            flags = t.getcol("FLAG", start, 50_000)
            cross = (a1 != a2)[start : start + 50_000]
            n_good += int(np.sum(~flags[cross]))
            used[start : start + 50_000] = cross & ~flags.all(axis=(1, 2))
        n_pol = flags.shape[-1]
    with tables.table(f"{ms_path}/SPECTRAL_WINDOW", ack=False) as t:
        freqs = t.getcol("CHAN_FREQ")[0]
    return {"times_mjd_s": times, "freqs_hz": freqs, "n_vis_per_pol": n_good / n_pol,
            "uv_extent_m": np.abs(uvw[used, :2]).max(axis=1), "has_corrected_data": has_corrected}


def uv_outside_grid_fraction(uv_extent_m: np.ndarray, max_freq_hz: float, cell_arcsec: float) -> float:
    """Fraction (0..1) of the used cross-correlation rows whose top channel falls outside the
    imager's uv grid, which reaches 1 / (2 x cell) wavelengths along u and v: the imager drops
    those samples, losing resolution and sensitivity. ``uv_extent_m``: max(|u|, |v|) per row."""
    if not len(uv_extent_m):
        return 0.0
    limit_m = geometry.SPEED_OF_LIGHT_M_S / max_freq_hz / (2.0 * np.radians(cell_arcsec / 3600.0))
    return float(np.mean(uv_extent_m > limit_m))


def undersampled(metrics: dict) -> bool:
    """Whether an image's pixels are too coarse (its ``pixels_per_beam`` and
    ``uv_outside_grid_fraction`` metrics): fewer than ``MIN_PIXELS_PER_BEAM`` across the beam's
    minor axis, or any baseline beyond the uv grid."""
    return metrics["uv_outside_grid_fraction"] > 0 or metrics["pixels_per_beam"] < MIN_PIXELS_PER_BEAM


class ImagingStage:
    """Images one observation's Measurement Set."""

    name = "imaging"

    def __init__(self, config: ImagingConfig):
        self.config = config

    def validate(self, ms_path: Path | str) -> None:
        """The MS exists and the imager is installed."""
        if not Path(ms_path, "table.dat").exists():
            raise ImagingError(f"{ms_path}: not a Measurement Set (no table.dat)")
        if self.config.imager == "wsclean" and shutil.which("wsclean") is None:
            raise ImagingError("wsclean is not installed (Debian package 'wsclean')")

    def expected_rms(self, n_vis_per_pol: float) -> float:
        """Thermal noise (Jy/beam) of a naturally weighted Stokes I image."""
        sigma_vis = self.config.sefd_jy / np.sqrt(2 * C.CHANNEL_WIDTH_HZ * C.INTEGRATION_TIME_S)
        return float(sigma_vis / np.sqrt(2 * n_vis_per_pol)) if n_vis_per_pol else float("nan")

    def execute(self, *, group_id: str, ms_path: Path | str) -> ImagingResult:
        """Image, build the beam and corrected images, measure, render, publish."""
        from astropy.io import fits

        t_start = time.perf_counter()
        timings = {}
        ms_path = Path(ms_path)
        self.validate(ms_path)
        summary = ms_summary(ms_path)
        cfg = self.config
        if cfg.data_column == "auto":
            cfg = replace(cfg, data_column="CORRECTED_DATA" if summary["has_corrected_data"] else "DATA")
        dest_dir = naming.image_dir(cfg.output_dir, group_id)
        with fsutil.scratch_directory(cfg.scratch_dir, f"image-{group_id}-") as scratch:
            prefix = scratch / group_id
            t0 = time.perf_counter()
            selfcal_rounds = []
            if cfg.imager == "wsclean":
                (scratch / "tmp").mkdir()
                if cfg.self_calibration == "off":
                    run_wsclean(ms_path, prefix, cfg, scratch / "tmp", scratch / "imager.log")
                else:
                    selfcal_rounds = self._self_calibrated(ms_path, prefix, cfg, scratch)
            else:
                _tclean(ms_path, prefix, cfg)
            timings["imager"] = time.perf_counter() - t0
            image_path = Path(f"{prefix}-image.fits")
            if not image_path.exists():
                raise ImagingError(f"{cfg.imager} produced no image for {group_id}")
            t0 = time.perf_counter()
            with fits.open(image_path) as hdul:
                header = hdul[0].header.copy()
                image = np.squeeze(hdul[0].data).astype(np.float64)
            with fits.open(f"{prefix}-residual.fits") as hdul:
                residual = np.squeeze(hdul[0].data).astype(np.float64)
            pointing = pointing_directions(ms_path, np.unique(summary["times_mjd_s"]))
            pb = primary_beam(header, pointing, summary["freqs_hz"])
            shape = np.shape(fits.getdata(image_path))
            pb_header = header.copy()
            pb_header["BUNIT"] = ""
            fits.writeto(f"{prefix}-pb.fits", pb.reshape(shape).astype(np.float32), pb_header, overwrite=True)
            restored = restore(image, header, pb, read_record(ms_path))
            if restored:
                fits.writeto(image_path, image.reshape(shape).astype(np.float32), header, overwrite=True)
            pbcor = np.where(pb >= cfg.pb_cutoff, image / np.maximum(pb, 1e-12), np.nan)
            fits.writeto(f"{prefix}-pbcor.fits", pbcor.reshape(shape).astype(np.float32), header, overwrite=True)
            metrics = image_metrics(image, residual, header, self.expected_rms(summary["n_vis_per_pol"]))
            metrics["imager"] = cfg.imager
            metrics["self_calibration"] = [r.as_dict() for r in selfcal_rounds]
            metrics["restored"] = restored
            metrics["uv_outside_grid_fraction"] = uv_outside_grid_fraction(
                summary["uv_extent_m"], float(np.max(summary["freqs_hz"])), cfg.cell_arcsec)
            if undersampled(metrics):
                log.warning("%s: %.1f pixels across the beam's minor axis, %.1f%% of baselines beyond the uv "
                            "grid: smaller pixels (cell_arcsec) would measure fluxes more accurately", group_id,
                            metrics["pixels_per_beam"], 100 * metrics["uv_outside_grid_fraction"])
            timings["beam_and_metrics"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            thumb = scratch / f"{group_id}.png"
            render_thumbnail(image_path, thumb, metrics["rms_jy"], f"{group_id}  rms {metrics['rms_jy'] * 1e3:.2f} mJy/beam")
            timings["thumbnail"] = time.perf_counter() - t0
            bundle = scratch / "publish"
            bundle.mkdir()
            images = {}
            for kind in PRODUCTS:
                src = Path(f"{prefix}-{kind}.fits")
                if src.exists():
                    src.rename(bundle / src.name)
                    images[kind] = dest_dir / src.name
            thumb.rename(bundle / thumb.name)
            fsutil.publish(bundle, dest_dir)
            thumbnail = dest_dir / thumb.name
        wall = time.perf_counter() - t_start
        log.info("imaged %s: rms %.3g Jy/beam (%.2f x thermal) in %.1f s", group_id, metrics["rms_jy"],
                 metrics["rms_over_thermal"], wall)
        return ImagingResult(group_id, images, thumbnail, metrics, wall, timings)

    def _self_calibrated(self, ms_path: Path, prefix: Path, cfg: ImagingConfig, scratch: Path) -> list:
        """Image with self-calibration (:func:`selfcal.self_calibrate`) and leave the kept
        round's products at ``prefix``; returns the rounds."""
        from astropy.io import fits

        # WSClean cannot write the model of baseline-averaged data: these images go without
        # baseline-dependent averaging (slower, and as accurate)
        selfcal_cfg = replace(cfg, baseline_averaging_wavelengths=0.0)

        def image_into(ms: Path, column: str, name: str) -> dict:
            out = scratch / name
            run_wsclean(ms, out, replace(selfcal_cfg, data_column=column), scratch / "tmp", scratch / f"{name}.log",
                        update_model=True)
            rms = robust_rms(np.squeeze(fits.getdata(f"{out}-residual.fits")))
            peak = float(np.nanmax(fits.getdata(f"{out}-image.fits")))
            return {"rms_jy": rms, "dynamic_range": peak / rms if rms > 0 else float("inf")}

        kept, rounds = self_calibrate(ms_path, cfg.data_column, scratch, image_into, cfg.self_calibration,
                                      cfg.selfcal_min_improvement)
        for kind in PRODUCTS:
            src = Path(f"{scratch / kept}-{kind}.fits")
            if src.exists():
                src.rename(f"{prefix}-{kind}.fits")
        return rounds

    def cleanup(self) -> list[Path]:
        """Remove scratch directories of interrupted imaging runs and partial publishes."""
        return fsutil.sweep_partials(naming.product_root(self.config.output_dir, "images")) + fsutil.sweep_scratch(
            self.config.scratch_dir, "image-*")
