"""Mosaicking: primary-beam and noise weighting on synthetic inputs with known sky."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from dsa_assets.stages.mosaic import MosaicConfig, MosaicError, MosaicInput, MosaicStage

SIZE, CELL = 200, 30.0 / 3600  # pixels, degrees


def gaussian(xs, ys, x, y, fwhm_pixels):
    return np.exp(-0.5 * ((xs - x) ** 2 + (ys - y) ** 2) / (fwhm_pixels / 2.3548) ** 2)


def dirty_beam(xs, ys, x, y):
    """A main lobe narrower than the restoring beam (FWHM 5 pixels), with a negative ring."""
    return 1.4 * gaussian(xs, ys, x, y, 4.25) - 0.4 * gaussian(xs, ys, x, y, 8.5)


def write_input(directory, name, ra0, sigma, sources, rng, uncleaned=0.0):
    """A flat image, its residual and its (Gaussian) primary beam centred on (ra0, 30). With
    ``uncleaned``, that fraction of each source is left in the residual with the shape of a
    dirty beam, which is written too."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [ra0, 30.0]
    w.wcs.crpix = [SIZE / 2 + 1, SIZE / 2 + 1]
    w.wcs.cdelt = [-CELL, CELL]
    header = w.to_header()
    header.update(BMAJ=150 / 3600, BMIN=150 / 3600, BPA=0.0, BUNIT="JY/BEAM")
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    r2 = ((xs - SIZE / 2) ** 2 + (ys - SIZE / 2) ** 2) * CELL**2
    pb = np.exp(-0.5 * r2 / 0.6**2)
    residual = sigma * rng.standard_normal((SIZE, SIZE))
    cleaned = np.zeros((SIZE, SIZE))
    for ra, dec, flux in sources:  # restored point sources: the beam (FWHM 5 pixels), peak = flux
        x, y = (float(v) for v in w.world_to_pixel_values(ra, dec))
        cleaned += pb * (1 - uncleaned) * flux * gaussian(xs, ys, x, y, 5)
        residual += pb * uncleaned * flux * dirty_beam(xs, ys, x, y)
    paths = {}
    planes = [("image", cleaned + residual), ("residual", residual), ("pb", pb)]
    if uncleaned:
        planes.append(("psf", dirty_beam(xs, ys, SIZE // 2, SIZE // 2)))
    for kind, data in planes:
        paths[kind] = directory / f"{name}-{kind}.fits"
        fits.writeto(paths[kind], data.astype(np.float32), header)
    return MosaicInput(name, paths["image"], paths["residual"], paths["pb"], paths.get("psf"))


def test_weighted_mosaic_recovers_flux_and_combines_noise(tmp_path):
    rng = np.random.default_rng(1)
    source = (150.5, 30.0, 1.0)  # between the two pointings
    a = write_input(tmp_path, "a", 150.0, 0.01, [source], rng)
    b = write_input(tmp_path, "b", 151.0, 0.02, [source], rng)
    out = tmp_path / "out"
    result = MosaicStage(MosaicConfig(output_dir=out, scratch_dir=tmp_path / "s")).execute("2026-01-15-13:00", [a, b])
    assert result.n_inputs == 2 and result.inputs == ["a", "b"]
    assert all(p.exists() for p in result.paths.values()) and result.thumbnail.exists()
    image = fits.getdata(result.paths["image"])
    noise = fits.getdata(result.paths["noise"])
    header = fits.getheader(result.paths["image"])
    assert header["NINPUTS"] == 2 and header["BMAJ"] == pytest.approx(150 / 3600)
    wcs = WCS(header).celestial
    x, y = (int(round(float(v))) for v in wcs.world_to_pixel_values(150.5, 30.0))
    assert np.isfinite(image[y, x])
    # the source's flux, measured on the mosaic with its noise map by forced photometry
    from dsa_assets.catalogue import CatalogueSource
    from dsa_assets.stages.photometry import PhotometryStage

    (m,) = PhotometryStage().execute_mosaic(result.paths["image"], result.paths["noise"],
                                            [CatalogueSource("src", 150.5, 30.0, 1.0)]).forced()
    assert m.flux_jy == pytest.approx(1.0, abs=0.02 + 3 * m.flux_err_jy)
    # at the source both beams respond: noise = 1 / sqrt(sum PB^2 / sigma^2)
    offset = 0.5 * np.cos(np.radians(30.0))
    pb = np.exp(-0.5 * offset**2 / 0.6**2)
    expected = 1.0 / np.sqrt(pb**2 / 0.01**2 + pb**2 / 0.02**2)
    assert noise[y, x] == pytest.approx(expected, rel=0.05)
    # at pointing a's centre, b contributes little: noise close to a's alone
    xa, ya = (int(round(float(v))) for v in wcs.world_to_pixel_values(150.0, 30.0))
    assert noise[ya, xa] == pytest.approx(0.01, rel=0.1)
    assert not list((tmp_path / "s").glob("mosaic-*")), "scratch cleaned"


def test_mosaic_residual_and_dirty_beam_measure_uncleaned_sources(tmp_path):
    """Sources left wholly in the inputs' residuals (below the cleaning threshold) keep the dirty
    beam's shape in the mosaic: the mosaic's residual and mean dirty beam let photometry fit them
    with it and read their flux; the restoring beam alone reads them low."""
    from dsa_assets.catalogue import CatalogueSource
    from dsa_assets.stages.photometry import PhotometryStage

    rng = np.random.default_rng(4)
    sources = [(150.5, 30.0 + d, 0.5) for d in (-0.4, 0.0, 0.4)]
    inputs = [write_input(tmp_path, name, ra0, 0.002, sources, rng, uncleaned=1.0)
              for name, ra0 in (("a", 150.0), ("b", 151.0))]
    result = MosaicStage(MosaicConfig(output_dir=tmp_path / "out")).execute("2026-01-15-13:00", inputs)
    psf = fits.getdata(result.paths["psf"])
    assert psf.max() == pytest.approx(1.0, abs=1e-6) and psf.min() < -0.1
    catalogue = [CatalogueSource(f"s{i}", ra, dec, f) for i, (ra, dec, f) in enumerate(sources)]
    stage = PhotometryStage()
    two_part = stage.execute_mosaic(result.paths["image"], result.paths["noise"], catalogue,
                                    result.paths["residual"], result.paths["psf"]).forced()
    beam_only = stage.execute_mosaic(result.paths["image"], result.paths["noise"], catalogue).forced()
    assert len(two_part) == len(beam_only) == 3
    for m in two_part:
        assert m.flux_jy == pytest.approx(0.5, abs=0.01 + 3 * m.flux_err_jy), m
    assert all(m.flux_jy < 0.45 for m in beam_only), [m.flux_jy for m in beam_only]


def test_mosaic_measurements_where_its_weight_is_low_are_flagged(tmp_path):
    """A source between the two pointings, where both beams respond, and one in the corner of
    the second input alone, where its beam is 0.21 and the mosaic's weight 0.011 of its peak
    (a noise 9.4 times the mosaic's lowest, as where an observation's beam is 0.11): with the
    weight map the corner's measurement is flagged ``low_beam``, the other is not."""
    from dsa_assets.catalogue import CatalogueSource
    from dsa_assets.stages.photometry import PhotometryStage

    rng = np.random.default_rng(2)
    sources = [(150.5, 30.0, 1.0), (151.0 + 0.75 / np.cos(np.radians(30.0)), 30.75, 1.0)]
    inputs = [write_input(tmp_path, name, ra0, sigma, sources, rng)
              for name, ra0, sigma in (("a", 150.0, 0.01), ("b", 151.0, 0.02))]
    result = MosaicStage(MosaicConfig(output_dir=tmp_path / "out")).execute("2026-01-15-13:00", inputs)
    catalogue = [CatalogueSource(name, ra, dec, f) for name, (ra, dec, f) in zip(("middle", "corner"), sources)]
    paths = result.paths
    flagged = {m.source: m for m in PhotometryStage().execute_mosaic(
        paths["image"], paths["noise"], catalogue, weight=paths["weight"]).forced()}
    assert flagged["middle"].flags == "" and flagged["corner"].flags == "low_beam"
    assert flagged["corner"].flux_jy == pytest.approx(1.0, abs=0.03 + 3 * flagged["corner"].flux_err_jy)
    unweighted = PhotometryStage().execute_mosaic(paths["image"], paths["noise"], catalogue).forced()
    assert [m.flags for m in unweighted] == ["", ""]


def test_remosaicking_replaces_the_whole_set_at_once(tmp_path):
    """An hour mosaicked again (a late image) replaces image, noise, weight and thumbnail
    together: the hour's directory is renamed in whole, never a mix of old and new files."""
    rng = np.random.default_rng(2)
    a = write_input(tmp_path, "a", 150.0, 0.01, [], rng)
    b = write_input(tmp_path, "b", 151.0, 0.01, [], rng)
    stage = MosaicStage(MosaicConfig(output_dir=tmp_path / "out", scratch_dir=tmp_path / "s"))
    first = stage.execute("2026-01-15-13:00", [a])
    hour_dir = first.thumbnail.parent
    assert sorted(p.name for p in hour_dir.iterdir()) == sorted(
        [p.name for p in first.paths.values()] + [first.thumbnail.name])
    inode = hour_dir.stat().st_ino
    second = stage.execute("2026-01-15-13:00", [a, b])
    assert second.paths == first.paths and hour_dir.stat().st_ino != inode, "a new directory renamed in"
    assert fits.getheader(second.paths["noise"])["NINPUTS"] == 2
    assert not [p for p in hour_dir.parent.iterdir() if p != hour_dir], "no retired or partial copy left"


def test_missing_input_is_refused(tmp_path):
    stage = MosaicStage(MosaicConfig(output_dir=tmp_path))
    with pytest.raises(MosaicError, match="no images"):
        stage.execute("2026-01-15-13:00", [])
    with pytest.raises(MosaicError, match="missing input"):
        stage.execute("2026-01-15-13:00", [MosaicInput("x", tmp_path / "i.fits", tmp_path / "r.fits", tmp_path / "p.fits")])


def test_mosaic_noise_is_held_to_artefacts_alike_in_its_inputs(tmp_path):
    """Two observations of one field whose residuals carry the same artefacts in one corner (a
    bright source's sidelobes, alike in consecutive observations of a transit array): averaging
    leaves them as they were, and the noise map says so there, where the minimum-variance formula
    would claim sqrt(2) below one input's noise; elsewhere it is the formula's."""
    rng = np.random.default_rng(8)
    inputs = [write_input(tmp_path, name, 150.0, 0.01, [], rng) for name in ("a", "b")]
    artefacts = np.zeros((SIZE, SIZE))
    artefacts[20:80, 20:80] = 0.1 * np.random.default_rng(9).standard_normal((60, 60))
    for i in inputs:
        for path in (i.residual, i.image):
            with fits.open(path, mode="update") as hdul:
                hdul[0].data = hdul[0].data + artefacts.astype(np.float32)
    # cells smaller than the corner: a robust rms sees what covers most of its cell
    stage = MosaicStage(MosaicConfig(output_dir=tmp_path / "out", noise_box_pixels=16))
    result = stage.execute("2026-01-15-13:00", inputs)
    noise = fits.getdata(result.paths["noise"])
    wcs = WCS(fits.getheader(result.paths["noise"])).celestial
    pb = np.exp(-0.5 * ((np.mgrid[0:SIZE, 0:SIZE] - SIZE / 2) ** 2).sum(axis=0) * CELL**2 / 0.6**2)
    formula = 0.01 / np.sqrt(2) / pb  # each input's robust rms is barely moved by the corner
    world = WCS(fits.getheader(inputs[0].residual)).celestial.pixel_to_world_values
    for (x, y), level in (((50, 50), 0.1), ((150, 150), None)):
        mx, my = (int(round(float(v))) for v in wcs.world_to_pixel_values(*world(x, y)))
        if level is None:
            assert noise[my, mx] == pytest.approx(formula[y, x], rel=0.15)
        else:
            assert noise[my, mx] == pytest.approx(level / pb[y, x], rel=0.3)
            assert noise[my, mx] > 5 * formula[y, x]
